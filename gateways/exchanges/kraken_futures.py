"""Kraken Futures adapter (KRAKEN_FUTURES): public market data of futures.kraken.com, sans-I/O.

=============  =============================  ===============================================
channel        websocket feed                 events
=============  =============================  ===============================================
trades         ``trade``                      Trade (id = ``uid``, taker side, ``type``)
liquidations   ``trade`` with type            Liquidation
               ``liquidation``
l2_book        ``book`` (``book_snapshot``)   L2Snapshot, L2Delta, BBO (top changes)
ticker         ``ticker`` (``ticker_lite``)   Ticker
funding        ``ticker`` (perpetuals)        Funding (rate = ``relative_funding_rate``)
open_interest  ``ticker``                     OpenInterest (contracts)
index          ``ticker``                     IndexPrice
mark           ``ticker``                     MarkPrice
candles        REST charts API polled:        Candle (closed bars only, ``closed`` True)
               ``/api/charts/v1/trade/
               <product>/<candle_interval>``
=============  =============================  ===============================================

Integrity: every ``book`` message carries the product's ``seq``, +1 per message after the
``book_snapshot``'s; a hole (or a crossed book) invalidates that product's book only
(Gap) and resubscribes its ``book`` feed (unsubscribe + subscribe), whose new
``book_snapshot`` rebuilds it (Reset + L2Snapshot). Buffered updates older than the new
snapshot are dropped as stale.

Candles: the websocket has none, so the charts API is polled on the timer by a
:class:`gateways.polling.CandlePoller` (its docstring has the rules: closed bars only, each once,
an unsupported ``candle_interval`` refused); this module gives it the URL (``from`` the first
unpublished bar) and the body's parser. ``candle_interval`` is one of the API's resolutions
(:data:`CANDLE_INTERVALS`); ``more_candles`` is the poller's "more"; volume is as the API gives it.

Numbers arrive as JSON numbers; prices/sizes become text with
:func:`cryptofeed_types.dec_str` (the float's shortest repr, plain notation: ``20108.0``,
``0.000001739491032443``). Timestamps are ms → ns.

Symbols: ``PI_XBTUSD`` (inverse perpetual) → ``BTC-USD-PERP``; ``FI_XBTUSD_210924`` →
``BTC-USD-20210924``; ``PF_XBTUSD`` (linear multi-collateral perpetual) →
``BTC-USD-PERP`` as well: when both exist for one base the linear one keeps
``BTC-USD-PERP`` and the inverse one becomes ``BTC-USDINV-PERP`` (docs/exchanges.md).
XBT is called BTC.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from cryptofeed_types import (
    FUTURE,
    PERPETUAL,
    Funding,
    IndexPrice,
    Liquidation,
    MarkPrice,
    OpenInterest,
    Symbol,
    Ticker,
    Trade,
    dec_str,
)
from gateways.adapter import (
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
    Output,
    Send,
    Subscription,
)
from gateways.books import Books, range_rule
from gateways.polling import TAG, Bar, CandlePoller, PolledCandles, json_rows
from gateways.resync import ResubscribeByConnection, Resubscriber

_MS = 1_000_000
_S = 1_000_000_000
# The charts API's resolutions (the same words as candle_interval) → bar length in ns.
CANDLE_INTERVALS: dict[str, int] = {
    "1m": 60 * _S, "5m": 300 * _S, "15m": 900 * _S, "30m": 1800 * _S, "1h": 3600 * _S, "4h": 4 * 3600 * _S,
    "12h": 12 * 3600 * _S, "1d": 86400 * _S, "1w": 7 * 86400 * _S,
}
_ALIASES = {"XBT": "BTC"}
_INVERSE_QUOTE = "USDINV"  # quote of an inverse perpetual whose name a linear one already uses


def _asset(code: str) -> str:
    code = code.upper()
    return _ALIASES.get(code, code)


def _num(v: Any) -> str:
    """A JSON number (or numeric string) as exact decimal text."""
    if type(v) is str:
        return v
    if v is None or type(v) is bool:
        raise AdapterError("bad_number", repr(v))
    return dec_str(v)


def _split_pair(pair: str) -> tuple[str, str]:
    """``xbtusd`` → (BTC, USD); Kraken Futures pairs end in a 3-letter quote (USD, EUR, GBP...)."""
    if len(pair) <= 3:
        raise ValueError(pair)
    return _asset(pair[:-3]), _asset(pair[-3:])


class KrakenFutures(ResubscribeByConnection, PolledCandles, Adapter):
    """Kraken Futures (inverse and linear perpetuals, fixed-maturity futures)."""

    exchange = "KRAKEN_FUTURES"
    urls = {"ws": "wss://futures.kraken.com/ws/v1", "rest": "https://futures.kraken.com"}
    rest_weight_per_minute = 500
    products_per_message: ClassVar[int] = 100
    products_per_connection: ClassVar[int] = 200
    timer_interval = 5.0
    # A resubscribed book whose snapshot hasn't come after this long is resubscribed again.
    resubscribe_timeout_ns: ClassVar[int] = 30_000_000_000
    # One symbol is resubscribed at most this often (no published subscribe-rate limit; a bad
    # snapshot must not trigger another resubscribe at once).
    resubscribe_min_interval_ns: ClassVar[int] = 5_000_000_000
    # Candle poll timing (candle_poll_min_ns, candle_poll_max_ns, candle_settle_ns,
    # candle_close_grace_ns): PolledCandles' defaults suit the charts API.

    def __init__(self, subscription: Subscription, **kwargs: Any) -> None:
        super().__init__(subscription, **kwargs)
        self.books = Books(self.exchange, range_rule, on_resync=self._resubscribe, counters=self.counters)
        self._wanted = frozenset(ch for ch, syms in subscription.channels.items() if syms)
        self._book_conn: dict[str, str] = {}
        self.resubscribes = Resubscriber(self.counters, min_interval_ns=self.resubscribe_min_interval_ns,
                                         retry_ns=self.resubscribe_timeout_ns)
        self._now = 0
        self.candle_poller = CandlePoller(self, CANDLE_INTERVALS, self._charts_request, self._charts_bars)

    # ------------------------------------------------------------ instruments
    def instrument_requests(self) -> list[Fetch]:
        return [Fetch(f"{self.url['rest']}/derivatives/api/v3/instruments", 1, "instruments")]

    def parse_instruments(self, url: str, body: str | bytes) -> list[Symbol]:
        data = orjson.loads(body)
        infos = data["instruments"]
        linear_perps = set()
        for info in infos:
            xs = str(info.get("symbol", "")).upper()
            if xs.startswith("PF_"):
                linear_perps.add(xs[3:])
        out: list[Symbol] = []
        for info in infos:
            try:
                sym = self._instrument(info, linear_perps)
            except (ValueError, KeyError, TypeError):
                sym = None
            if sym is None:
                self.count("instruments.skipped")
                continue
            out.append(sym)
        return out

    def _instrument(self, info: dict[str, Any], linear_perps: set[str]) -> Symbol | None:
        xs = info["symbol"].upper()
        prefix, _, rest = xs.partition("_")
        if prefix not in ("PI", "PF", "FI", "FF", "PV", "FV"):
            return None  # indices (IN_, RR_) and spreads are not tradeable instruments
        pair, _, maturity = rest.partition("_")
        base, quote = _split_pair(pair.lower())
        tick = _num(info["tickSize"]) if info.get("tickSize") is not None else None
        csize = _num(info["contractSize"]) if info.get("contractSize") is not None else None
        inverse = prefix in ("PI", "FI")
        settle = base if inverse else quote
        lot = None
        cvp = info.get("contractValueTradePrecision")
        if cvp is not None:
            p = int(cvp)
            lot = dec_str(10.0 ** -p) if p > 0 else str(10 ** -p)
        if not maturity:
            if prefix == "PI" and pair in linear_perps:
                quote = _INVERSE_QUOTE
            return Symbol(base, quote, PERPETUAL, exchange_symbol=xs, tick_size=tick, lot_size=lot,
                          contract_size=csize, settle=settle)
        expiry = info.get("lastTradingTime")
        expiry = expiry[:10].replace("-", "") if expiry else "20" + maturity
        return Symbol(base, quote, FUTURE, expiry=expiry, exchange_symbol=xs, tick_size=tick, lot_size=lot,
                      contract_size=csize, settle=settle)

    def _symbol(self, xs: str) -> Symbol:
        sym = self.from_exchange.get(xs)
        if sym is None:
            sym = self.from_exchange.get(xs.upper())
        if sym is None:
            sym = self._guess(xs.upper())
        return sym

    def _guess(self, xs: str) -> Symbol:
        """A Symbol from the product id alone (recordings of instruments never loaded)."""
        try:
            sym = self._instrument({"symbol": xs}, set())
        except (ValueError, KeyError, TypeError):
            sym = None
        if sym is None:
            raise AdapterError("unknown_symbol", xs)
        self.count("symbols.guessed")
        self.set_symbols([sym])
        return sym

    # ------------------------------------------------------------ connections
    def _feeds(self) -> list[tuple[str, str, list[str]]]:
        """(feed, our channel, normalized symbols) to subscribe."""
        feeds: list[tuple[str, str, list[str]]] = []
        if self.subscribed(L2_BOOK):
            feeds.append(("book", L2_BOOK, self.subscribed(L2_BOOK)))
        trade_like = list(dict.fromkeys(self.subscribed(TRADES) + self.subscribed(LIQUIDATIONS)))
        if trade_like:
            feeds.append(("trade", TRADES, trade_like))
        ticker_like = list(dict.fromkeys(self.subscribed(TICKER) + self.subscribed(FUNDING) + self.subscribed(OPEN_INTEREST)
                                         + self.subscribed(INDEX) + self.subscribed(MARK)))
        if ticker_like:
            feeds.append(("ticker", TICKER, ticker_like))
        return feeds

    def _sub(self, event: str, feed: str, pids: list[str]) -> list[str]:
        per = self.products_per_message
        return [orjson.dumps({"event": event, "feed": feed, "product_ids": pids[i:i + per]}).decode()
                for i in range(0, len(pids), per)]

    def build_connections(self) -> list[ConnectionSpec]:
        feeds = self._feeds()
        symbols = list(dict.fromkeys(s for _, _, syms in feeds for s in syms))
        specs: list[ConnectionSpec] = []
        self._book_conn.clear()
        for n, i in enumerate(range(0, len(symbols), self.products_per_connection)):
            keep = set(symbols[i:i + self.products_per_connection])
            cid = f"{self.exchange}.{n}"
            messages: list[str] = []
            streams: list[tuple[str, str]] = []
            for feed, ch, syms in feeds:
                mine = [s for s in syms if s in keep]
                if not mine:
                    continue
                messages += self._sub("subscribe", feed, [self.exchange_symbol(s) for s in mine])
                streams += [(ch, s) for s in mine]
                if feed == "book":
                    for s in mine:
                        self._book_conn[s] = cid
            # The heartbeat feed (one message a minute) proves a quiet connection alive.
            messages.append(orjson.dumps({"event": "subscribe", "feed": "heartbeat"}).decode())
            specs.append(ConnectionSpec(id=cid, url=self.url["ws"], subscribe=tuple(messages),
                                        subscribe_interval=0.1, ping=None, ping_interval=30.0,
                                        silence_timeout=90.0, streams=tuple(streams)))
        return specs

    # ------------------------------------------------------------ messages
    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        self._now = ts
        msg = orjson.loads(raw)
        if type(msg) is not dict:
            raise AdapterError("not_an_object")
        feed = msg.get("feed")
        event = msg.get("event")
        if event is not None:
            if event in ("subscribed", "unsubscribed", "info", "pong"):
                self.ignore(f"event_{event}")
                return
            if event in ("error", "alert", "subscribed_failed"):
                raise AdapterError("exchange_error", str(msg.get("message") or msg)[:200])
            raise AdapterError("unknown_event", str(event))
        handler = None if feed is None else self._handlers.get(feed)
        if handler is None:
            raise AdapterError("unknown_feed", str(feed))
        handler(self, conn, msg, ts, out)

    def _book_symbol(self, msg: dict[str, Any]) -> str | None:
        sym = self._symbol(msg["product_id"])
        name = sym.normalized
        if name not in self.books:
            if self._wanted and L2_BOOK not in self._wanted:
                self.ignore("unsubscribed_book")
                return None
            self.books.add(name, sym.exchange_symbol)
        return name

    def _book_snapshot(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        name = self._book_symbol(msg)
        if name is None:
            return
        self._book_conn.setdefault(name, conn)
        try:
            bids = [(_num(lv["price"]), _num(lv["qty"])) for lv in msg["bids"]]
            asks = [(_num(lv["price"]), _num(lv["qty"])) for lv in msg["asks"]]
            t = msg.get("timestamp")
            self.books.snapshot(name, bids, asks, int(msg["seq"]), out, timestamp=t * _MS if t else None,
                                receipt_timestamp=ts)
        except Exception:
            self.books.malformed(name, out, ts)   # lost: the book is invalid from here, not silently behind
            raise

    def _book(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        name = self._book_symbol(msg)
        if name is None:
            return
        try:
            level = [(_num(msg["price"]), _num(msg["qty"]))]
            side = msg["side"]
            if side == "buy":
                bids, asks = level, []
            elif side == "sell":
                bids, asks = [], level
            else:
                raise AdapterError("bad_side", str(side))
            seq = int(msg["seq"])
            t = msg.get("timestamp")
            self.books.delta(name, bids, asks, out, first=seq, last=seq, timestamp=t * _MS if t else None,
                             receipt_timestamp=ts)
        except Exception:
            self.books.malformed(name, out, ts)   # lost: the book is invalid from here, not silently behind
            raise

    def _trade(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        sym = self._symbol(msg["product_id"])
        side = msg["side"]
        if side not in ("buy", "sell"):
            raise AdapterError("bad_side", str(side))
        t = msg.get("time")
        t = t * _MS if t else None
        kind = msg.get("type")
        price, qty = _num(msg["price"]), _num(msg["qty"])
        uid = msg.get("uid")
        tid = str(uid) if uid is not None else (str(msg["seq"]) if msg.get("seq") is not None else None)
        wanted = self._wanted
        if not wanted or TRADES in wanted:
            out.events.append(Trade(self.exchange, sym.normalized, side, qty, price, id=tid, type=kind,
                                    exchange_symbol=sym.exchange_symbol, timestamp=t, receipt_timestamp=ts))
        if kind == "liquidation" and (not wanted or LIQUIDATIONS in wanted):
            out.events.append(Liquidation(self.exchange, sym.normalized, side, qty, price, id=tid, status="filled",
                                          exchange_symbol=sym.exchange_symbol, timestamp=t, receipt_timestamp=ts))

    def _trade_snapshot(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        # Recent history sent on subscribe: already-published trades, not new ones.
        self.ignore("trade_snapshot")

    def _ticker(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        sym = self._symbol(msg["product_id"])
        name, xs = sym.normalized, sym.exchange_symbol
        t = msg.get("time")
        t = t * _MS if t else None
        wanted = self._wanted
        g = msg.get

        def opt(key: str) -> str | None:
            v = g(key)
            return None if v is None else _num(v)

        if not wanted or TICKER in wanted:
            out.events.append(Ticker(self.exchange, name, bid=opt("bid"), ask=opt("ask"), last=opt("last"),
                                     volume=opt("volume"), exchange_symbol=xs, timestamp=t, receipt_timestamp=ts))
        if msg.get("feed") == "ticker_lite":
            return
        rate = g("relative_funding_rate")
        if rate is None:
            rate = g("funding_rate")
        if rate is not None and sym.kind == PERPETUAL and (not wanted or FUNDING in wanted):
            predicted = g("relative_funding_rate_prediction")
            if predicted is None:
                predicted = g("funding_rate_prediction")
            nft = g("next_funding_rate_time")
            out.events.append(Funding(self.exchange, name, _num(rate), mark_price=opt("markPrice"),
                                      next_funding_time=nft * _MS if nft else None,
                                      predicted_rate=None if predicted is None else _num(predicted),
                                      exchange_symbol=xs, timestamp=t, receipt_timestamp=ts))
        if g("openInterest") is not None and (not wanted or OPEN_INTEREST in wanted):
            out.events.append(OpenInterest(self.exchange, name, _num(g("openInterest")), exchange_symbol=xs,
                                           timestamp=t, receipt_timestamp=ts))
        if g("index") is not None and (not wanted or INDEX in wanted):
            out.events.append(IndexPrice(self.exchange, name, _num(g("index")), exchange_symbol=xs, timestamp=t,
                                         receipt_timestamp=ts))
        if g("markPrice") is not None and (not wanted or MARK in wanted):
            out.events.append(MarkPrice(self.exchange, name, _num(g("markPrice")), exchange_symbol=xs, timestamp=t,
                                        receipt_timestamp=ts))

    def _heartbeat(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        self.ignore("heartbeat")

    _handlers: ClassVar[dict[str, Any]] = {
        "book_snapshot": _book_snapshot, "book": _book, "trade": _trade, "trade_snapshot": _trade_snapshot,
        "ticker": _ticker, "ticker_lite": _ticker, "heartbeat": _heartbeat,
    }

    # ------------------------------------------------------------ candles (REST charts API)
    # The schedule, closing rule and dedupe are the CandlePoller's; the charts URL and body are ours.
    def _charts_request(self, symbol: str, start: int) -> Fetch:
        return Fetch(f"{self.url['rest']}/api/charts/v1/trade/{self.exchange_symbol(symbol)}/{self.candle_interval}"
                     f"?from={start // _S}", 1, TAG, symbol)

    @staticmethod
    def _charts_bars(body: str | bytes) -> tuple[list[Bar], bool]:
        data, rows = json_rows(body)
        bars: list[Bar] = []
        for r in rows:
            t = r["time"]
            if type(t) is not int:
                raise AdapterError("bad_candle_time", repr(t))
            bars.append((t * _MS, _num(r["open"]), _num(r["high"]), _num(r["low"]), _num(r["close"]),
                         _num(r["volume"])))
        return bars, data.get("more_candles") is True

    def handle_rest(self, fetch: Fetch, body: str | bytes, ts: int, out: Output) -> None:
        self.candle_poller.on_response(fetch, body, ts, out)

    # ------------------------------------------------------------ resync and lifecycle
    # Resync and close: ResubscribeByConnection; this is the exchange's part.
    def _send_resubscribe(self, symbol: str, conn: str, out: Output) -> None:
        pid = self.to_exchange.get(symbol, symbol)
        for event in ("unsubscribe", "subscribe"):
            out.actions.append(Send(conn, self._sub(event, "book", [pid])[0]))
        self.count("book.resubscribes")

    def handle_timer(self, ts: int, out: Output) -> None:
        super().handle_timer(ts, out)   # resubscribe retries
        self.candle_poller.poll(ts, out)

