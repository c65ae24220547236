"""Binance adapters: spot (BINANCE), USDⓈ-M futures (BINANCE_FUTURES), COIN-M futures (BINANCE_DELIVERY).

One shared implementation, three configurations. Public market data only:

============  =====================================  ==========================================
channel       stream / request                       events
============  =====================================  ==========================================
trades        ``<s>@aggTrade`` (``@trade`` parsed)   Trade (id = aggregate trade id ``a``)
l2_book       ``<s>@depth@100ms`` + REST ``depth``   L2Snapshot, L2Delta, BBO (top changes)
ticker        ``<s>@bookTicker`` (``24hrTicker``)    Ticker (bid/ask; last/volume from 24hr)
bbo           ``<s>@bookTicker``                     BBO (only for symbols without l2_book)
candles       ``<s>@kline_<interval>``               Candle
funding       ``<s>@markPrice@1s`` (futures)         Funding
mark          ``<s>@markPrice@1s`` (futures)         MarkPrice
index         markPrice ``i`` (USDⓈ-M) /             IndexPrice
              ``<pair>@indexPrice@1s`` (COIN-M)
liquidations  ``<s>@forceOrder`` (futures)           Liquidation
open_interest REST ``openInterest`` polled (futures) OpenInterest
(system)      REST ``/sapi/v1/system/status`` polled  Status(feed='system'): online / maintenance
              every minute (spot)
============  =====================================  ==========================================

Book sync follows Binance's documented rules: buffer the diff stream, fetch the REST
snapshot when the first diff of a symbol arrives, drop diffs it already includes, then
spot: each diff's ``U`` <= book id + 1 (``range_rule``); futures: each diff's ``pu`` equals
the previous ``u``, the first one straddling the snapshot's ``lastUpdateId``
(``prev_rule``). A break publishes Gap and refetches that symbol's snapshot only.

Binance ends every connection after 24 hours: each ConnectionSpec says so (``max_lifetime``) and
the driver replaces it ahead of time, make-before-break (and at once on a ``serverShutdown``
event, which announces a server going down); at the handover the books accept an
update straddling their last id (the new connection may batch the diffs otherwise), and the
driver takes out the overlap's messages both connections delivered, so no book breaks and no
trade is published twice.

Tardis-style generated messages (``<s>@depthSnapshot``, ``<s>@openInterest`` with
``"generated": true``) are accepted as snapshot / open interest, so tardis recordings
replay through the same code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson

from cryptofeed_types import (
    BBO,
    FUTURE,
    PERPETUAL,
    SPOT,
    Candle,
    Funding,
    IndexPrice,
    Liquidation,
    MarkPrice,
    OpenInterest,
    Symbol,
    Ticker,
    Trade,
)
from gateways.adapter import (
    BBO_CHANNEL,
    CANDLES,
    FUNDING,
    INDEX,
    L2_BOOK,
    LIQUIDATIONS,
    MARK,
    OPEN_INTEREST,
    TICKER,
    TRADES,
    Adapter,
    AdapterError,
    ConnectionSpec,
    Fetch,
    IncreasingIds,
    Output,
    Rotate,
    Subscription,
)
from gateways.books import SYNCED, Books, prev_rule, range_rule
from gateways.system_status import MAINTENANCE, ONLINE

_MS = 1_000_000  # ms → ns
# Binance closes every websocket connection 24 hours after it opened (documented for spot, USDⓈ-M
# and COIN-M): the driver replaces each one before then, without a break.
CONNECTION_LIFETIME = 24 * 3600.0

# Quote currencies tried (longest first) to split an exchange id whose instrument is unknown.
_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY", "GBP",
           "AUD", "BRL", "RUB", "UAH", "NGN", "PAX", "XRP", "TRX", "DOGE", "BIDR", "IDRT", "ZAR", "JPY",
           "USD")

_CONTRACT_KINDS_FUTURE = ("CURRENT_QUARTER", "NEXT_QUARTER", "CURRENT_MONTH", "NEXT_MONTH",
                          "CURRENT_QUARTER DELIVERING", "NEXT_QUARTER DELIVERING")


def _expiry_from_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y%m%d")


def _filters(info: dict[str, Any]) -> tuple[str | None, str | None]:
    tick = lot = None
    for f in info.get("filters", ()):
        if f.get("filterType") == "PRICE_FILTER":
            tick = f.get("tickSize")
        elif f.get("filterType") == "LOT_SIZE":
            lot = f.get("stepSize")
    return tick, lot


class _Binance(Adapter):
    """Shared implementation; the three exchanges differ by the class attributes below."""

    # Every REST answer says the weight this IP used in the current minute (all processes on it).
    rest_used_weight_header = "X-MBX-USED-WEIGHT-1M"

    futures: ClassVar[bool] = False
    inverse: ClassVar[bool] = False
    rest_prefix: ClassVar[str] = "/api/v3"
    instruments_weight: ClassVar[int] = 20
    snapshot_weights: ClassVar[tuple[tuple[int, int], ...]] = ((100, 5), (500, 25), (1000, 50), (5000, 250))
    default_depth: ClassVar[int] = 1000
    streams_per_connection: ClassVar[int] = 1024
    streams_per_message: ClassVar[int] = 100
    messages_per_second: ClassVar[float] = 5.0
    timer_interval = 1.0
    snapshot_retry_ns: ClassVar[int] = 1_000_000_000

    def __init__(self, subscription: Subscription, **kwargs: Any) -> None:
        super().__init__(subscription, **kwargs)
        self.books = Books(self.exchange, prev_rule if self.futures else range_rule,
                           on_resync=self._resync_now, counters=self.counters)
        self._wanted = frozenset(ch for ch, syms in subscription.channels.items() if syms)
        self._book_symbols = set(subscription.symbols(L2_BOOK))
        self._pending: dict[str, int] = {}         # symbol → ts the snapshot fetch was requested
        self._trade_ids = IncreasingIds()          # (exchange symbol, aggregate?) → last trade id published
        self._failed_at: dict[str, int] = {}       # symbol → ts of the last failed snapshot
        self._oi_next: dict[str, int] = {}         # symbol → ts of its next open-interest poll
        self._pair_symbols: dict[str, list[str]] = {}  # COIN-M pair → subscribed symbols (index stream)

    # ------------------------------------------------------------ instruments
    def instrument_requests(self) -> list[Fetch]:
        return [Fetch(f"{self.url['rest']}{self.rest_prefix}/exchangeInfo", self.instruments_weight, "instruments")]

    def parse_instruments(self, url: str, body: str | bytes) -> list[Symbol]:
        data = orjson.loads(body)
        out: list[Symbol] = []
        for info in data["symbols"]:
            try:
                sym = self._instrument(info)
            except (ValueError, KeyError, TypeError):
                self.count("instruments.skipped")
                continue
            if sym is not None:
                out.append(sym)
        return out

    def _instrument(self, info: dict[str, Any]) -> Symbol | None:
        tick, lot = _filters(info)
        xs = info["symbol"]
        base, quote = info["baseAsset"], info["quoteAsset"]
        if not self.futures:
            return Symbol(base, quote, SPOT, exchange_symbol=xs, tick_size=tick, lot_size=lot)
        ctype = info.get("contractType") or ""
        settle = info.get("marginAsset")
        csize = info.get("contractSize") if self.inverse else None
        if "PERPETUAL" in ctype:
            return Symbol(base, quote, PERPETUAL, exchange_symbol=xs, tick_size=tick, lot_size=lot,
                          settle=settle, contract_size=csize)
        if ctype in _CONTRACT_KINDS_FUTURE or (ctype and info.get("deliveryDate")):
            return Symbol(base, quote, FUTURE, expiry=_expiry_from_ms(int(info["deliveryDate"])),
                          exchange_symbol=xs, tick_size=tick, lot_size=lot, settle=settle, contract_size=csize)
        self.count("instruments.skipped")
        return None

    def guess_symbol(self, xs: str) -> Symbol | None:
        """A Symbol from the exchange id alone, for messages of instruments never loaded
        (tardis recordings, delisted symbols); counted as ``symbols.guessed``."""
        name, _, suffix = xs.partition("_")
        for q in _QUOTES:
            if name.endswith(q) and len(name) > len(q):
                base, quote = name[: -len(q)], q
                break
        else:
            return None
        try:
            if not self.futures:
                sym = Symbol(base, quote, SPOT, exchange_symbol=xs)
            elif not suffix or suffix == "PERP":
                sym = Symbol(base, quote, PERPETUAL, exchange_symbol=xs)
            else:
                sym = Symbol(base, quote, FUTURE, expiry="20" + suffix, exchange_symbol=xs)
        except ValueError:
            return None
        self.count("symbols.guessed")
        self.set_symbols([sym])
        return sym

    def _symbol(self, xs: str) -> Symbol:
        sym = self.from_exchange.get(xs)
        if sym is None:
            sym = self.guess_symbol(xs)
            if sym is None:
                raise AdapterError("unknown_symbol", xs)
        return sym

    # ------------------------------------------------------------ connections
    def _streams(self) -> list[tuple[str, str, str]]:
        """(stream name, channel, normalized symbol) for the whole subscription.

        Symbols the instruments don't know are left out (logged and counted once as
        ``subscription.unknown_symbol`` by :meth:`Adapter.known_symbols`), so one bad symbol
        never blocks the others.
        """
        sub = self.subscription
        out: list[tuple[str, str, str]] = []

        def ids(*channels: str) -> list[tuple[str, str]]:
            syms = self.known_symbols(dict.fromkeys(s for ch in channels for s in sub.symbols(ch)))
            return [(s, self.to_exchange[s]) for s in syms]

        for sym, xs in ids(TRADES):
            out.append((f"{xs.lower()}@aggTrade", TRADES, sym))
        for sym, xs in ids(L2_BOOK):
            out.append((f"{xs.lower()}@depth@100ms", L2_BOOK, sym))
        for sym, xs in ids(TICKER, BBO_CHANNEL):
            out.append((f"{xs.lower()}@bookTicker", TICKER, sym))
        for sym, xs in ids(CANDLES):
            out.append((f"{xs.lower()}@kline_{self.candle_interval}", CANDLES, sym))
        if self.futures:
            for sym, xs in ids(FUNDING, MARK, *(() if self.inverse else (INDEX,))):
                out.append((f"{xs.lower()}@markPrice@1s", MARK, sym))
            for sym, xs in ids(LIQUIDATIONS):
                out.append((f"{xs.lower()}@forceOrder", LIQUIDATIONS, sym))
            if self.inverse:
                for sym, xs in ids(INDEX):
                    pair = xs.split("_")[0]
                    if pair not in self._pair_symbols:
                        out.append((f"{pair.lower()}@indexPrice@1s", INDEX, sym))
                    self._pair_symbols.setdefault(pair, []).append(sym)
        return out

    def build_connections(self) -> list[ConnectionSpec]:
        self._pair_symbols.clear()
        streams = self._streams()
        specs: list[ConnectionSpec] = []
        per = self.streams_per_connection
        msg_id = 0
        for n, start in enumerate(range(0, len(streams), per)):
            chunk = streams[start:start + per]
            messages = []
            for m in range(0, len(chunk), self.streams_per_message):
                msg_id += 1
                params = [s for s, _, _ in chunk[m:m + self.streams_per_message]]
                messages.append(orjson.dumps({"method": "SUBSCRIBE", "params": params, "id": msg_id}).decode())
            specs.append(ConnectionSpec(
                id=f"{self.exchange}.{n}", url=f"{self.url['ws']}/stream", subscribe=tuple(messages),
                subscribe_interval=1.0 / self.messages_per_second, ping=None, ping_interval=20.0,
                silence_timeout=60.0, streams=tuple((ch, sym) for _, ch, sym in chunk),
                max_lifetime=CONNECTION_LIFETIME))
        return specs

    # ------------------------------------------------------------ websocket messages
    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        msg = orjson.loads(raw)
        if type(msg) is not dict:
            raise AdapterError("not_an_object")
        data = msg.get("data")
        stream = msg.get("stream", "")
        if data is None:
            if "result" in msg and "id" in msg:
                self.ignore("subscribe_ack")
                return
            if "error" in msg or "code" in msg:
                raise AdapterError("exchange_error", str(msg.get("error") or msg.get("msg")))
            if "e" not in msg:
                raise AdapterError("unknown_message")
            data = msg  # a raw (non-combined) stream payload
        if type(data) is not dict:
            raise AdapterError("bad_data")
        kind = data.get("e")
        if kind is None:
            if stream.endswith("@bookTicker"):
                kind = "bookTicker"
            elif msg.get("generated") and stream.endswith(("@depthSnapshot", "@openInterest")):
                kind = stream.rpartition("@")[2]
                if "symbol" not in data:  # spot snapshots don't name their symbol
                    data = {**data, "symbol": stream.partition("@")[0].upper()}
        if kind == "serverShutdown":
            # This connection's server goes down soon: replace the connection first, without a break.
            self.count("server_shutdown")
            out.actions.append(Rotate(conn, "serverShutdown: the exchange's server is about to shut down"))
            return
        handler = self._handlers.get(kind)  # type: ignore[arg-type]
        if handler is None:
            raise AdapterError("unknown_event", str(kind))
        handler(self, data, ts, out)

    def _trade(self, d: dict[str, Any], ts: int, out: Output) -> None:
        xs = d["s"]
        sym = self._symbol(xs)
        agg = d["e"] == "aggTrade"
        tid = d.get("a") if agg else d.get("t")
        # Aggregate and raw trade ids each grow per symbol: a repeat was published already.
        if type(tid) is int and not self._trade_ids.is_new((xs, agg), tid):
            self.ignore("duplicate_trade")
            return
        out.events.append(Trade(self.exchange, sym.normalized, "sell" if d["m"] else "buy", d["q"], d["p"],
                                id=None if tid is None else str(tid), type=d.get("X"),
                                exchange_symbol=sym.exchange_symbol, timestamp=d["T"] * _MS,
                                receipt_timestamp=ts))

    def _depth(self, d: dict[str, Any], ts: int, out: Output) -> None:
        sym = self._symbol(d["s"])
        name = sym.normalized
        books = self.books
        if name not in books:
            if self._wanted and name not in self._book_symbols:
                self.ignore("unsubscribed_book")
                return
            books.add(name, sym.exchange_symbol)
        try:
            books.delta(name, d["b"], d["a"], out, first=d["U"], last=d["u"], prev=d.get("pu"),
                        timestamp=d["E"] * _MS, receipt_timestamp=ts)
        except Exception:
            books.malformed(name, out, ts)   # lost: the book is invalid from here, not silently behind
            raise
        sb = books.get(name)
        if sb is not None and sb.state != SYNCED and name not in self._pending:
            failed = self._failed_at.get(name)
            if failed is None or ts - failed >= self.snapshot_retry_ns:
                self._request_snapshot(name, ts, out)

    def _depth_snapshot(self, d: dict[str, Any], ts: int, out: Output) -> None:
        sym = self._symbol(d["symbol"])
        name = sym.normalized
        self.books.add(name, sym.exchange_symbol)
        self._pending.pop(name, None)
        t = d.get("T") or d.get("E")
        self.books.snapshot(name, d["bids"], d["asks"], d["lastUpdateId"], out,
                            timestamp=t * _MS if t else None, receipt_timestamp=ts)

    def _book_ticker(self, d: dict[str, Any], ts: int, out: Output) -> None:
        sym = self._symbol(d["s"])
        name = sym.normalized
        t = d.get("E")
        t = t * _MS if t else None
        wanted = self._wanted
        if not wanted or TICKER in wanted:
            out.events.append(Ticker(self.exchange, name, bid=d["b"], ask=d["a"], exchange_symbol=sym.exchange_symbol,
                                     timestamp=t, receipt_timestamp=ts))
        if (not wanted or BBO_CHANNEL in wanted) and name not in self._book_symbols:
            out.events.append(BBO(self.exchange, name, bid=d["b"], bid_size=d["B"], ask=d["a"], ask_size=d["A"],
                                  sequence=d.get("u"), exchange_symbol=sym.exchange_symbol, timestamp=t,
                                  receipt_timestamp=ts))

    def _ticker_24h(self, d: dict[str, Any], ts: int, out: Output) -> None:
        sym = self._symbol(d["s"])
        out.events.append(Ticker(self.exchange, sym.normalized, bid=d.get("b"), ask=d.get("a"), last=d.get("c"),
                                 volume=d.get("v"), exchange_symbol=sym.exchange_symbol, timestamp=d["E"] * _MS,
                                 receipt_timestamp=ts))

    def _kline(self, d: dict[str, Any], ts: int, out: Output) -> None:
        sym = self._symbol(d["s"])
        k = d["k"]
        out.events.append(Candle(self.exchange, sym.normalized, k["t"] * _MS, k["T"] * _MS, k["i"], k["o"], k["c"],
                                 k["h"], k["l"], k["v"], trades=k.get("n"), closed=k.get("x"),
                                 exchange_symbol=sym.exchange_symbol, timestamp=d["E"] * _MS,
                                 receipt_timestamp=ts))

    def _mark_price(self, d: dict[str, Any], ts: int, out: Output) -> None:
        sym = self._symbol(d["s"])
        name, xs, t = sym.normalized, sym.exchange_symbol, d["E"] * _MS
        wanted = self._wanted
        rate = d.get("r")
        if rate not in (None, "") and (not wanted or FUNDING in wanted):
            nft = d.get("T")
            out.events.append(Funding(self.exchange, name, rate, mark_price=d.get("p"),
                                      next_funding_time=nft * _MS if nft else None, exchange_symbol=xs,
                                      timestamp=t, receipt_timestamp=ts))
        if not wanted or MARK in wanted:
            out.events.append(MarkPrice(self.exchange, name, d["p"], exchange_symbol=xs, timestamp=t,
                                        receipt_timestamp=ts))
        index = d.get("i")
        if index not in (None, "") and (not wanted or INDEX in wanted):
            out.events.append(IndexPrice(self.exchange, name, index, exchange_symbol=xs, timestamp=t,
                                         receipt_timestamp=ts))

    def _index_price(self, d: dict[str, Any], ts: int, out: Output) -> None:
        pair = d["i"]
        targets = self._pair_symbols.get(pair)
        if not targets:
            sym = self._symbol(f"{pair}_PERP")
            targets = [sym.normalized]
        for name in targets:
            out.events.append(IndexPrice(self.exchange, name, d["p"], exchange_symbol=self.to_exchange.get(name),
                                         timestamp=d["E"] * _MS, receipt_timestamp=ts))

    def _force_order(self, d: dict[str, Any], ts: int, out: Output) -> None:
        o = d["o"]
        sym = self._symbol(o["s"])
        out.events.append(Liquidation(self.exchange, sym.normalized, o["S"].lower(), o["q"], o["p"],
                                      status=o.get("X", "").lower() or None, exchange_symbol=sym.exchange_symbol,
                                      timestamp=o["T"] * _MS, receipt_timestamp=ts))

    def _open_interest(self, d: dict[str, Any], ts: int, out: Output) -> None:
        sym = self._symbol(d["symbol"])
        t = d.get("time")
        out.events.append(OpenInterest(self.exchange, sym.normalized, d["openInterest"],
                                       exchange_symbol=sym.exchange_symbol, timestamp=t * _MS if t else None,
                                       receipt_timestamp=ts))

    _handlers: ClassVar[dict[str, Any]] = {
        "aggTrade": _trade, "trade": _trade, "depthUpdate": _depth, "depthSnapshot": _depth_snapshot,
        "bookTicker": _book_ticker, "24hrTicker": _ticker_24h, "kline": _kline,
        "markPriceUpdate": _mark_price, "indexPriceUpdate": _index_price, "forceOrder": _force_order,
        "openInterest": _open_interest,
    }

    # ------------------------------------------------------------ REST
    def _snapshot_weight(self, limit: int) -> int:
        for upto, weight in self.snapshot_weights:
            if limit <= upto:
                return weight
        return self.snapshot_weights[-1][1]

    def snapshot_fetch(self, symbol: str) -> Fetch:
        limit = self.subscription.depth or self.default_depth
        return Fetch(f"{self.url['rest']}{self.rest_prefix}/depth?symbol={self.exchange_symbol(symbol)}&limit={limit}",
                     self._snapshot_weight(limit), "snapshot", symbol)

    def _request_snapshot(self, symbol: str, ts: int, out: Output) -> None:
        self._pending[symbol] = ts
        out.actions.append(self.snapshot_fetch(symbol))

    def _resync_now(self, symbol: str, reason: str, out: Output) -> None:
        # Deltas keep flowing after a gap; the next one would request it anyway.
        if symbol not in self._pending:
            self._request_snapshot(symbol, 0, out)

    def handle_resync(self, symbol: str, ts: int, out: Output) -> None:
        self.books.invalidate(symbol, "requested", out, receipt_timestamp=ts, resync=False)
        self._request_snapshot(symbol, ts, out)

    def handle_rest(self, fetch: Fetch, body: str | bytes, ts: int, out: Output) -> None:
        data = orjson.loads(body)
        if fetch.tag == "snapshot":
            name = fetch.symbol
            assert name is not None
            self._pending.pop(name, None)
            self._failed_at.pop(name, None)
            if "lastUpdateId" not in data:
                raise AdapterError("bad_snapshot", str(data)[:200])
            self.books.add(name, self.to_exchange.get(name))
            t = data.get("T") or data.get("E")
            self.books.snapshot(name, data["bids"], data["asks"], data["lastUpdateId"], out,
                                timestamp=t * _MS if t else None, receipt_timestamp=ts)
        elif fetch.tag == "open_interest":
            self._open_interest(data, ts, out)
        elif fetch.tag == "instruments":
            self.set_symbols(self.parse_instruments(fetch.url, body))
        else:
            raise AdapterError("rest_unexpected", fetch.url)

    def rest_failed(self, fetch: Fetch, ts: int, out: Output) -> None:
        if fetch.tag == "snapshot" and fetch.symbol is not None:
            # A body the book refused half read (malformed levels) made it ask for the next
            # snapshot at once; like any failed answer, that one waits snapshot_retry_ns instead
            # (from the timer), or a server answering junk would be asked again as fast as it answers.
            out.actions[:] = [a for a in out.actions
                              if not (type(a) is Fetch and a.tag == "snapshot" and a.symbol == fetch.symbol)]
            self._pending.pop(fetch.symbol, None)
            self._failed_at[fetch.symbol] = ts

    # ------------------------------------------------------------ lifecycle
    def handle_close(self, conn: str, ts: int, reason: str, out: Output) -> None:
        streams = self._conn_streams(conn)
        traded = [self.to_exchange[sym] for ch, sym in streams if ch == TRADES and sym in self.to_exchange]
        self._trade_ids.forget([(xs, agg) for xs in traded for agg in (True, False)])
        symbols = [sym for ch, sym in streams if ch == L2_BOOK and sym in self.books]
        for sym in symbols:
            self._pending.pop(sym, None)
        self.books.invalidate_all(f"disconnected: {reason}" if reason else "disconnected", out, symbols=symbols,
                                  receipt_timestamp=ts, resync=False)

    def handle_handoff(self, conn: str, ts: int, out: Output) -> None:
        # The new connection's depth batches may be cut elsewhere than the old one's were: its first
        # update of each book may straddle the book's last id (applied: sizes are absolute).
        self.books.bridge(sym for ch, sym in self._conn_streams(conn) if ch == L2_BOOK)

    def _retry_snapshots(self, ts: int, out: Output) -> None:
        # A failed snapshot is retried by its symbol's next depth update (_depth); a quiet symbol,
        # or a burst that ended before the REST API came back, may bring none for a long time.
        for name, failed in list(self._failed_at.items()):
            sb = self.books.get(name)
            if sb is None or sb.state == SYNCED:
                del self._failed_at[name]
            elif name not in self._pending and ts - failed >= self.snapshot_retry_ns:
                self.count("book.snapshot_retries")
                self._request_snapshot(name, ts, out)

    def _conn_streams(self, conn: str) -> tuple[tuple[str, str], ...]:
        for spec in self.connections():
            if spec.id == conn:
                return spec.streams
        return ()

    def handle_system_status(self, body: str | bytes, ts: int, out: Output) -> None:
        """``{"status": 0, "msg": "normal"}`` or ``{"status": 1, "msg": "system_maintenance"}``."""
        data = orjson.loads(body)
        status = data.get("status") if isinstance(data, dict) else None
        if status not in (0, 1):
            raise AdapterError("bad_system_status", str(data)[:200])
        self.system.set("system", ONLINE if status == 0 else MAINTENANCE,
                        f"Binance system status: {data.get('msg') or status}")
        self.system.publish(ts, out)

    def handle_timer(self, ts: int, out: Output) -> None:
        self._retry_snapshots(ts, out)
        if not self.futures:
            return
        period = int(self.subscription.open_interest_interval * 1e9)
        syms = self.subscribed(OPEN_INTEREST)
        for i, sym in enumerate(syms):
            due = self._oi_next.get(sym)
            if due is None:
                # Spread the first polls over the period so they don't burst the REST budget.
                due = self._oi_next[sym] = ts + (period * i) // max(len(syms), 1)
            if ts >= due:
                self._oi_next[sym] = ts + period
                out.actions.append(Fetch(f"{self.url['rest']}{self.rest_prefix}/openInterest?symbol="
                                         f"{self.exchange_symbol(sym)}", 1, "open_interest", sym))


class BinanceSpot(_Binance):
    """Binance spot."""

    exchange = "BINANCE"
    urls = {"ws": "wss://stream.binance.com:9443", "rest": "https://api.binance.com"}
    rest_weight_per_minute = 6000
    system_status_path = "/sapi/v1/system/status"   # spot only: the futures APIs have none


class BinanceFutures(_Binance):
    """Binance USDⓈ-M futures (perpetual and quarterly, linear)."""

    exchange = "BINANCE_FUTURES"
    urls = {"ws": "wss://fstream.binance.com", "rest": "https://fapi.binance.com"}
    rest_weight_per_minute = 2400
    futures = True
    rest_prefix = "/fapi/v1"
    instruments_weight = 1
    snapshot_weights = ((50, 2), (100, 5), (500, 10), (1000, 20))
    streams_per_connection = 200
    messages_per_second = 10.0


class BinanceDelivery(_Binance):
    """Binance COIN-M futures (inverse perpetual and quarterly, contracts in USD)."""

    exchange = "BINANCE_DELIVERY"
    urls = {"ws": "wss://dstream.binance.com", "rest": "https://dapi.binance.com"}
    rest_weight_per_minute = 2400
    futures = True
    inverse = True
    rest_prefix = "/dapi/v1"
    instruments_weight = 1
    snapshot_weights = ((50, 2), (100, 5), (500, 10), (1000, 20))
    streams_per_connection = 200
    messages_per_second = 10.0
