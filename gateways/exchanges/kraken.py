"""Kraken spot adapter (KRAKEN), sans-I/O: websocket **v2** live, v1 parsed for replay.

Live connections use websocket v2 (``wss://ws.kraken.com/v2``, JSON objects). The
shared recordings (cryptofeed's 2021 capture, tardis) are websocket v1 (arrays);
:meth:`Kraken.handle_message` recognises either shape, so both replay through one adapter.

============  =================================  ============================================
channel       v2 channel (v1 name)               events
============  =================================  ============================================
trades        ``trade`` (``trade``)              Trade (taker side; id = ``trade_id``, v1 none)
l2_book       ``book`` (``book-<depth>``)        L2Snapshot, L2Delta, BBO (top changes)
ticker        ``ticker`` (``ticker``)            Ticker (bid, ask, last, 24h volume)
bbo           ``ticker`` event_trigger=bbo       BBO (symbols without l2_book)
              (v1 ``spread``)
candles       ``ohlc`` (``ohlc-<minutes>``)      Candle (``closed`` None: Kraken doesn't say)
============  =================================  ============================================

Integrity: Kraken's books carry no sequence number but a CRC32 over the top 10 levels of
each side, in every v2 snapshot and update (v1: updates only). Each one is verified
(``counters['book.checksum_verified']``); a mismatch or a crossed book invalidates that
pair only (Gap) and resubscribes its book (unsubscribe + subscribe), whose snapshot
rebuilds it (Reset + L2Snapshot). Updates reaching a book that waits for that snapshot
are dropped (``ignored.book_waiting_snapshot``). Books are truncated to the subscribed
depth after each update, as Kraken requires (it sends no delete for levels pushed out);
the published L2Delta carries the levels cut as deletes (``gateways.books``).

Prices and sizes: v1 sends exact strings, kept as sent. v2 sends JSON numbers; they are
formatted with the pair's price/quantity precision (AssetPairs ``pair_decimals`` /
``lot_decimals``), the text Kraken's checksum is defined on (``0.00100000``). A pair
whose precision is unknown falls back to :func:`cryptofeed_types.dec_str` and its
checksum is not verified (``book.checksum_unverifiable``).

Symbols: AssetPairs ``wsname`` ``XBT/USD`` → ``BTC-USD`` (XBT→BTC, XDG→DOGE); the v2 name
``BTC/USD`` is the exchange symbol; v1 names map through the ``wsname``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import orjson

from cryptofeed_types import BBO, SPOT, Candle, Symbol, Ticker, Trade, dec_str, iso_ns, seconds_ns
from gateways.adapter import (
    BBO_CHANNEL,
    CANDLES,
    L2_BOOK,
    TICKER,
    TRADES,
    Adapter,
    AdapterError,
    ConnectionSpec,
    Fetch,
    Output,
    Send,
    Subscription,
)
from gateways.books import APPLY, SYNCED, Books, no_rule
from gateways.resync import ResubscribeByConnection, Resubscriber

_S = 1_000_000_000
_MS = 1_000_000  # candle stop = the bar's last millisecond, as the other adapters
_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}
_DEPTHS = (10, 25, 100, 500, 1000)
_INTERVALS = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "4h": 240, "1d": 1440, "1w": 10080, "15d": 21600}
_INTERVAL_NAMES = {v: k for k, v in _INTERVALS.items()}


def _asset(code: str) -> str:
    code = code.upper()
    return _ALIASES.get(code, code)


def _checksum(book: Any) -> int:
    return book.checksum_kraken()


class Kraken(ResubscribeByConnection, Adapter):
    """Kraken spot: websocket v2 live, v1 recordings replayed through the same adapter."""

    exchange = "KRAKEN"
    urls = {"ws": "wss://ws.kraken.com/v2", "rest": "https://api.kraken.com"}
    # Public REST: roughly one call per second sustained.
    rest_weight_per_minute = 60
    default_depth: ClassVar[int] = 1000
    symbols_per_message: ClassVar[int] = 100
    symbols_per_connection: ClassVar[int] = 200
    timer_interval = 5.0
    # A resubscribed book whose snapshot hasn't come after this long is resubscribed again.
    resubscribe_timeout_ns: ClassVar[int] = 30_000_000_000
    # One symbol is resubscribed at most this often (no published subscribe-rate limit; a bad
    # snapshot must not trigger another resubscribe at once).
    resubscribe_min_interval_ns: ClassVar[int] = 5_000_000_000

    def __init__(self, subscription: Subscription, **kwargs: Any) -> None:
        self._v1: dict[str, Symbol] = {}                     # v1 wsname → Symbol
        self._precision: dict[str, tuple[int, int]] = {}     # normalized → (price, qty) decimals
        super().__init__(subscription, **kwargs)
        depth = subscription.depth or self.default_depth
        if depth not in _DEPTHS:
            raise ValueError(f"KRAKEN: book depth must be one of {_DEPTHS}, got {depth}")
        self.depth = depth
        self.books = Books(self.exchange, no_rule, max_depth=depth, checksum=_checksum,
                           on_resync=self._resubscribe, counters=self.counters)
        self._wanted = frozenset(ch for ch, syms in subscription.channels.items() if syms)
        self._bbo_symbols = set(subscription.symbols(BBO_CHANNEL)) - set(subscription.symbols(L2_BOOK))
        # A bbo-only symbol's v2 ticker messages must not publish Ticker events.
        self._ticker_symbols = frozenset(subscription.symbols(TICKER))
        self._book_conn: dict[str, str] = {}
        self.resubscribes = Resubscriber(self.counters, min_interval_ns=self.resubscribe_min_interval_ns,
                                         retry_ns=self.resubscribe_timeout_ns)
        self._now = 0
        self._v1_depth: dict[str, int] = {}   # v1 replay: pair → depth of its book-<depth> channel

    # ------------------------------------------------------------ instruments
    def instrument_requests(self) -> list[Fetch]:
        return [Fetch(f"{self.url['rest']}/0/public/AssetPairs", 1, "instruments")]

    def parse_instruments(self, url: str, body: str | bytes) -> list[Symbol]:
        data = orjson.loads(body)
        if data.get("error"):
            raise AdapterError("exchange_error", str(data["error"])[:200])
        out: list[Symbol] = []
        for info in data["result"].values():
            wsname = info.get("wsname")
            try:
                sym = self._instrument(info) if wsname else None
            except (ValueError, KeyError, TypeError):
                sym = None
            if sym is None:
                self.count("instruments.skipped")
                continue
            out.append(sym)
        return out

    def _instrument(self, info: dict[str, Any]) -> Symbol:
        wsname = info["wsname"]
        base, quote = wsname.split("/")
        base, quote = _asset(base), _asset(quote)
        pdec, ldec = int(info["pair_decimals"]), int(info["lot_decimals"])
        tick = info.get("tick_size") or (f"{10.0 ** -pdec:.{pdec}f}" if pdec > 0 else "1")
        lot = f"{10.0 ** -ldec:.{ldec}f}" if ldec > 0 else "1"
        sym = Symbol(base, quote, SPOT, exchange_symbol=f"{base}/{quote}", tick_size=tick, lot_size=lot)
        self._precision[sym.normalized] = (pdec, ldec)
        self._v1[wsname] = sym
        return sym

    def set_symbols(self, symbols: Iterable[Symbol]) -> None:
        symbols = list(symbols)
        super().set_symbols(symbols)
        for sym in symbols:
            # Symbols installed without AssetPairs (a cache, a config): precision from tick/lot size.
            if sym.normalized not in self._precision and sym.tick_size is not None and sym.lot_size is not None:
                self._precision[sym.normalized] = (max(0, -sym.tick_size.as_tuple().exponent),
                                                   max(0, -sym.lot_size.as_tuple().exponent))

    def _symbol(self, name: str) -> Symbol:
        """A v2 name (``BTC/USD``) or v1 wsname (``XBT/USD``) → Symbol."""
        sym = self.from_exchange.get(name) or self._v1.get(name)
        if sym is not None:
            return sym
        base, sep, quote = name.partition("/")
        if not sep:
            raise AdapterError("unknown_symbol", name)
        try:
            sym = Symbol(_asset(base), _asset(quote), SPOT)
        except ValueError:
            raise AdapterError("unknown_symbol", name) from None
        known = self.symbols.get(sym.normalized)
        if known is not None:
            self._v1[name] = known
            return known
        # Keep the exchange's own spelling (``AAPLx/USD``), with v1 aliases mapped to v2 names.
        sym = sym.with_metadata(exchange_symbol=f"{_ALIASES.get(base, base)}/{_ALIASES.get(quote, quote)}")
        self.count("symbols.guessed")
        self.set_symbols([sym])
        self._v1[name] = sym
        return sym

    # ------------------------------------------------------------ connections
    def _sub(self, method: str, params: dict[str, Any], symbols: list[str], req: int) -> list[str]:
        per = self.symbols_per_message
        return [orjson.dumps({"method": method, "params": {**params, "symbol": symbols[i:i + per]},
                              "req_id": req + i}).decode()
                for i in range(0, len(symbols), per)]

    def _channel_params(self) -> list[tuple[str, dict[str, Any], list[str]]]:
        out: list[tuple[str, dict[str, Any], list[str]]] = []
        if self.subscribed(L2_BOOK):
            out.append((L2_BOOK, {"channel": "book", "depth": self.depth, "snapshot": True}, self.subscribed(L2_BOOK)))
        if self.subscribed(TRADES):
            out.append((TRADES, {"channel": "trade", "snapshot": False}, self.subscribed(TRADES)))
        if self.subscribed(TICKER):
            out.append((TICKER, {"channel": "ticker", "event_trigger": "trades"},
                        [s for s in self.subscribed(TICKER) if s not in self._bbo_symbols]))
        if self._bbo_symbols:
            out.append((BBO_CHANNEL, {"channel": "ticker", "event_trigger": "bbo"},
                        [s for s in self.subscribed(BBO_CHANNEL) if s in self._bbo_symbols]))
        if self.subscribed(CANDLES):
            minutes = _INTERVALS.get(self.candle_interval)
            if minutes is None:
                raise ValueError(f"KRAKEN: candle interval one of {sorted(_INTERVALS)}, got {self.candle_interval!r}")
            out.append((CANDLES, {"channel": "ohlc", "interval": minutes, "snapshot": False}, self.subscribed(CANDLES)))
        return [(ch, p, syms) for ch, p, syms in out if syms]

    def build_connections(self) -> list[ConnectionSpec]:
        groups = self._channel_params()
        symbols = list(dict.fromkeys(s for _, _, syms in groups for s in syms))
        specs: list[ConnectionSpec] = []
        self._book_conn.clear()
        req = 1
        for n, i in enumerate(range(0, len(symbols), self.symbols_per_connection)):
            keep = set(symbols[i:i + self.symbols_per_connection])
            cid = f"{self.exchange}.{n}"
            messages: list[str] = []
            streams: list[tuple[str, str]] = []
            for ch, params, syms in groups:
                mine = [s for s in syms if s in keep]
                if not mine:
                    continue
                messages += self._sub("subscribe", params, [self.exchange_symbol(s) for s in mine], req)
                req += len(mine)
                streams += [(ch, s) for s in mine]
                if ch == L2_BOOK:
                    for s in mine:
                        self._book_conn[s] = cid
            specs.append(ConnectionSpec(id=cid, url=self.url["ws"], subscribe=tuple(messages),
                                        subscribe_interval=0.1, ping=orjson.dumps({"method": "ping"}).decode(),
                                        ping_interval=30.0, silence_timeout=60.0, streams=tuple(streams)))
        return specs

    # ------------------------------------------------------------ messages
    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        self._now = ts
        msg = orjson.loads(raw)
        if type(msg) is list:
            self._v1_message(conn, msg, ts, out)
            return
        if type(msg) is not dict:
            raise AdapterError("not_an_object")
        channel = msg.get("channel")
        if channel is None:
            self._control(msg, ts, out)
            return
        handler = self._handlers.get(channel)
        if handler is None:
            raise AdapterError("unknown_channel", str(channel))
        handler(self, conn, msg, ts, out)

    def _control(self, msg: dict[str, Any], ts: int, out: Output) -> None:
        method = msg.get("method")
        if method is not None:  # v2 responses
            if msg.get("success") is False:
                raise AdapterError("exchange_error", str(msg.get("error"))[:200])
            self.ignore(f"response_{method}")
            return
        event = msg.get("event")  # v1 events
        if event == "systemStatus":
            self._system(msg.get("status"), ts, out)
            return
        if event in ("heartbeat", "subscriptionStatus", "pong"):
            if event == "subscriptionStatus" and msg.get("status") == "error":
                raise AdapterError("exchange_error", str(msg.get("errorMessage"))[:200])
            self.ignore(f"v1_{event}")
            return
        if event == "error":
            raise AdapterError("exchange_error", str(msg.get("errorMessage"))[:200])
        raise AdapterError("unknown_message", str(event or method))

    # ---- v2
    def _levels(self, levels: list[dict[str, Any]], prec: tuple[int, int] | None) -> list[tuple[str, str]]:
        if prec is None:
            return [(_num(lv["price"]), _num(lv["qty"])) for lv in levels]
        p, q = prec
        return [(_fmt(lv["price"], p), _fmt(lv["qty"], q)) for lv in levels]

    def _book_name(self, sym: Symbol) -> str | None:
        name = sym.normalized
        if name not in self.books:
            if self._wanted and L2_BOOK not in self._wanted:
                self.ignore("unsubscribed_book")
                return None
            self.books.add(name, sym.exchange_symbol)
        return name

    def _book_v2(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        kind = msg.get("type")
        for d in msg["data"]:
            try:
                xs = d["symbol"]
            except (KeyError, TypeError, IndexError):
                # Whose update this was is unknown, and Kraken's checksum covers only the top 10
                # levels: every book of this connection may now miss it for good.
                self.books.invalidate_all("malformed", out, receipt_timestamp=ts, resync=True,
                                          symbols=sorted(s for s, c in self._book_conn.items() if c == conn
                                                         and (sb := self.books.get(s)) and sb.state == SYNCED))
                raise
            sym = self._symbol(xs)
            name = self._book_name(sym)
            if name is None:
                continue
            self._book_conn.setdefault(name, conn)
            try:
                prec = self._precision.get(name)
                bids = self._levels(d.get("bids", ()), prec)
                asks = self._levels(d.get("asks", ()), prec)
                checksum = d.get("checksum")
                if checksum is not None and prec is None:
                    self.count("book.checksum_unverifiable")
                    checksum = None
                t = d.get("timestamp")
                t = iso_ns(t) if t else None
                if kind == "snapshot":
                    if self.books.snapshot(name, bids, asks, None, out, timestamp=t, receipt_timestamp=ts,
                                           checksum=checksum) and checksum is not None:
                        self.count("book.checksum_verified")
                elif kind == "update":
                    if self.books.state(name) != SYNCED:
                        self.ignore("book_waiting_snapshot")
                        continue
                    if self.books.delta(name, bids, asks, out, timestamp=t, receipt_timestamp=ts,
                                        checksum=checksum) == APPLY and checksum is not None:
                        self.count("book.checksum_verified")
                else:
                    raise AdapterError("unknown_book_type", str(kind))
            except Exception:
                self.books.malformed(name, out, ts)   # lost: the book is invalid from here, not silently behind
                raise

    def _trade_v2(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        if msg.get("type") == "snapshot":
            # Recent history (only when subscribed with snapshot=true): already-published trades.
            self.ignore("trade_snapshot")
            return
        for d in msg["data"]:
            sym = self._symbol(d["symbol"])
            prec = self._precision.get(sym.normalized)
            side = d["side"]
            if side not in ("buy", "sell"):
                raise AdapterError("bad_side", str(side))
            price = _fmt(d["price"], prec[0]) if prec else _num(d["price"])
            qty = _fmt(d["qty"], prec[1]) if prec else _num(d["qty"])
            tid = d.get("trade_id")
            t = d.get("timestamp")
            out.events.append(Trade(self.exchange, sym.normalized, side, qty, price,
                                    id=None if tid is None else str(tid), type=d.get("ord_type"),
                                    exchange_symbol=sym.exchange_symbol, timestamp=iso_ns(t) if t else None,
                                    receipt_timestamp=ts))

    def _ticker_v2(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        wanted = self._wanted
        for d in msg["data"]:
            sym = self._symbol(d["symbol"])
            name = sym.normalized
            t = d.get("timestamp")
            t = (iso_ns(t) or None) if t else None
            bid, ask = _opt_price(d.get("bid")), _opt_price(d.get("ask"))
            if not wanted or name in self._ticker_symbols:
                out.events.append(Ticker(self.exchange, name, bid=bid, ask=ask, last=_opt_price(d.get("last")),
                                         volume=_opt(d.get("volume")), exchange_symbol=sym.exchange_symbol,
                                         timestamp=t, receipt_timestamp=ts))
            if name in self._bbo_symbols:
                out.events.append(BBO(self.exchange, name, bid=bid, bid_size=None if bid is None else _opt(d.get("bid_qty")),
                                      ask=ask, ask_size=None if ask is None else _opt(d.get("ask_qty")),
                                      exchange_symbol=sym.exchange_symbol, timestamp=t, receipt_timestamp=ts))

    def _ohlc_v2(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        if msg.get("type") == "snapshot":
            self.ignore("ohlc_snapshot")
            return
        for d in msg["data"]:
            sym = self._symbol(d["symbol"])
            minutes = int(d["interval"])
            start = iso_ns(d["interval_begin"])
            t = d.get("timestamp")
            out.events.append(Candle(self.exchange, sym.normalized, start, start + minutes * 60 * _S - _MS,
                                     _INTERVAL_NAMES.get(minutes, f"{minutes}m"), _num(d["open"]), _num(d["close"]),
                                     _num(d["high"]), _num(d["low"]), _num(d["volume"]), trades=d.get("trades"),
                                     exchange_symbol=sym.exchange_symbol, timestamp=iso_ns(t) if t else None,
                                     receipt_timestamp=ts))

    def _ignore_channel(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        self.ignore(f"channel_{msg.get('channel')}")

    def _status_v2(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        for d in msg.get("data") or ():
            self._system(d.get("system"), ts, out)

    def _system(self, state: object, ts: int, out: Output) -> None:
        """Kraken's system status (every connection gets it, then its changes): one condition for the
        whole exchange, published as ``Status(feed='system')`` when it changes (gateways/system_status.py),
        so consumers (NBBO) leave Kraken out while it is in maintenance or cancel-only."""
        if not isinstance(state, str) or not state:
            raise AdapterError("bad_system_status", repr(state))
        self.system.set("engine", state, f"Kraken system status: {state}")
        self.system.publish(ts, out)

    _handlers: ClassVar[dict[str, Any]] = {
        "book": _book_v2, "trade": _trade_v2, "ticker": _ticker_v2, "ohlc": _ohlc_v2,
        "heartbeat": _ignore_channel, "status": _status_v2, "instrument": _ignore_channel,
        "pong": _ignore_channel,
    }

    # ---- v1 (replay of recordings)
    def _v1_message(self, conn: str, msg: list[Any], ts: int, out: Output) -> None:
        if len(msg) < 4:
            raise AdapterError("v1_short_message")
        channel, pair = msg[-2], msg[-1]
        if type(channel) is not str or type(pair) is not str:
            raise AdapterError("v1_bad_message")
        sym = self._symbol(pair)
        payloads = msg[1:-2]
        if channel == "trade":
            for p, v, t, side, order_type, *_ in payloads[0]:
                if side not in ("b", "s"):
                    raise AdapterError("bad_side", str(side))
                out.events.append(Trade(self.exchange, sym.normalized, "buy" if side == "b" else "sell", v, p,
                                        type="limit" if order_type == "l" else "market",
                                        exchange_symbol=sym.exchange_symbol, timestamp=seconds_ns(t),
                                        receipt_timestamp=ts))
        elif channel.startswith("book-"):
            self._book_v1(conn, sym, int(channel[5:]), payloads, ts, out)
        elif channel == "ticker":
            d = payloads[0]
            out.events.append(Ticker(self.exchange, sym.normalized, bid=_nonzero(d["b"][0]), ask=_nonzero(d["a"][0]),
                                     last=_nonzero(d["c"][0]), volume=d["v"][1], exchange_symbol=sym.exchange_symbol,
                                     receipt_timestamp=ts))
        elif channel == "spread":
            bid, ask, t, bsz, asz = payloads[0][:5]
            bid, ask = _nonzero(bid), _nonzero(ask)
            out.events.append(BBO(self.exchange, sym.normalized, bid=bid, bid_size=bsz if bid else None,
                                  ask=ask, ask_size=asz if ask else None, exchange_symbol=sym.exchange_symbol,
                                  timestamp=seconds_ns(t) or None, receipt_timestamp=ts))
        elif channel.startswith("ohlc-"):
            minutes = int(channel[5:])
            _t, etime, o, h, lo, c, _vwap, vol, count = payloads[0][:9]
            stop = seconds_ns(etime)
            out.events.append(Candle(self.exchange, sym.normalized, stop - minutes * 60 * _S, stop - _MS,
                                     _INTERVAL_NAMES.get(minutes, f"{minutes}m"), o, c, h, lo, vol, trades=int(count),
                                     exchange_symbol=sym.exchange_symbol, timestamp=seconds_ns(_t),
                                     receipt_timestamp=ts))
        else:
            raise AdapterError("unknown_channel", channel)

    def _book_v1(self, conn: str, sym: Symbol, depth: int, payloads: list[Any], ts: int, out: Output) -> None:
        name = self._book_name(sym)
        if name is None:
            return
        self._book_conn.setdefault(name, conn)
        if depth != self.depth:
            # Kraken sends no delete for levels pushed out of the subscribed depth: a recording
            # must be replayed with Subscription(depth=<its depth>) for its books to stay exact.
            self.count("book.depth_mismatch")
        try:
            bids: list[Any] = []
            asks: list[Any] = []
            checksum = None
            latest = 0
            snapshot = False
            for part in payloads:
                if type(part) is not dict:
                    continue  # tardis recordings hold a null between the two book parts
                if "as" in part or "bs" in part:
                    snapshot = True
                    asks += part.get("as", ())
                    bids += part.get("bs", ())
                else:
                    asks += part.get("a", ())
                    bids += part.get("b", ())
                    if "c" in part:
                        checksum = int(part["c"])
            if len(bids) + len(asks) == 1:  # the common update: one level
                latest = seconds_ns((bids or asks)[0][2])
            elif bids or asks:
                latest = max(map(seconds_ns, [lv[2] for lv in bids] + [lv[2] for lv in asks]))
            b = [(lv[0], lv[1]) for lv in bids]
            a = [(lv[0], lv[1]) for lv in asks]
            t = latest or None
            if snapshot:
                self.books.snapshot(name, b, a, None, out, timestamp=t, receipt_timestamp=ts)
                return
            if self.books.state(name) != SYNCED:
                self.ignore("book_waiting_snapshot")
                return
            if self.books.delta(name, b, a, out, timestamp=t, receipt_timestamp=ts, checksum=checksum) == APPLY \
                    and checksum is not None:
                self.count("book.checksum_verified")
        except Exception:
            self.books.malformed(name, out, ts)   # lost: the book is invalid from here, not silently behind
            raise

    # ------------------------------------------------------------ resync and lifecycle
    # Resync, timer and close: ResubscribeByConnection; this is the exchange's part.
    def _send_resubscribe(self, symbol: str, conn: str, out: Output) -> None:
        xs = self.to_exchange.get(symbol, symbol.replace("-", "/"))
        out.actions.append(Send(conn, self._sub("unsubscribe", {"channel": "book", "depth": self.depth}, [xs], 0)[0]))
        out.actions.append(Send(conn, self._sub("subscribe", {"channel": "book", "depth": self.depth,
                                                               "snapshot": True}, [xs], 0)[0]))
        self.count("book.resubscribes")


def _fmt(v: Any, decimals: int) -> str:
    """A v2 JSON number at the pair's precision (the text Kraken's checksum uses)."""
    if type(v) is str:
        return v
    if type(v) is bool or v is None:
        raise AdapterError("bad_number", repr(v))
    return f"{v:.{decimals}f}"


def _num(v: Any) -> str:
    if type(v) is str:
        return v
    if type(v) is bool or v is None:
        raise AdapterError("bad_number", repr(v))
    return dec_str(v)


def _opt(v: Any) -> str | None:
    return None if v is None else _num(v)


def _opt_price(v: Any) -> str | None:
    """A price, None when absent or zero (Kraken's placeholder for 'no quote')."""
    if v is None or v == 0:
        return None
    return _num(v)


def _nonzero(s: str) -> str | None:
    return None if not s.strip("0.") else s
