"""The long tail: any exchange ccxt knows and feedfabric has no native adapter for, polled over REST
or streamed through ccxt.pro.

``CCXT_<ID>`` (``CCXT_KUCOIN``, ``CCXT_GATE``...; ``<ID>`` is a ccxt exchange id) names this
adapter for ccxt's exchange ``<id>``; its events carry the exchange ``<ID>`` (``KUCOIN``). It is
sans-I/O like every adapter: its requests are :class:`~gateways.adapter.Fetch` actions whose URL
names a ccxt call (``ccxt:fetch_trades?symbol=BTC%2FUSDT``), which the ccxt driver
(gateways/longtail_driver.py) performs through ``ccxt.async_support`` and answers with the call's
result as JSON (ccxt's unified structures). So a capture records those results, and a replay feeds
them back through this same code.

Channels (ccxt call, polled → events):

- trades: ``fetch_trades`` every ``poll_interval`` → Trade, only after the first poll, each once;
- l2_book: ``fetch_order_book`` (``depth`` levels, or the exchange's default), same interval →
  L2Snapshot first, then L2Delta of what changed between two polls (+ BBO);
- ticker: ``fetch_ticker``, same interval → Ticker when it changed;
- candles: ``fetch_ohlcv`` through the shared CandlePoller → Candle, closed bars only, each once;
- funding: ``fetch_funding_rate`` every 60 s → Funding when it changed;
- open_interest: ``fetch_open_interest`` every ``open_interest_interval`` → OpenInterest when it changed;
- mark, index: ``fetch_mark_price`` (the ticker where ccxt has no such call) every ``poll_interval``
  → MarkPrice / IndexPrice when it changed (one call for both when both are subscribed);
- bbo: ``fetch_ticker`` (one call with the ticker's) → BBO when it changed, for symbols without
  l2_book (a book publishes its own BBO).

Liquidations are not offered: ccxt's unified liquidation has no side, which a Liquidation needs.

Streaming (``ccxt_stream``, gateway config): trades, l2_book, ticker and bbo are streamed through
ccxt.pro where it can watch them on this exchange (``watchTrades``, ``watchOrderBook``,
``watchTicker``); the others stay polled. The adapter declares one connection
(``<EXCHANGE>.pro``, URL ``ccxtpro:<id>``) whose subscribe messages are the watch calls
(``ccxt:watch_trades?symbol=...``, the same URL form as a poll); the driver keeps one watch loop per
call and hands each result to :meth:`CcxtAdapter.on_message` as ``{"call": URL, "result": ...}``
(recorded like any frame, so a replay feeds it back). A result goes through the poll's own code: a
streamed book is ccxt.pro's synced book, diffed against ours (Snapshot, then Deltas); streamed
trades are new ones, each published once (no first page to skip); a ticker publishes when it
changed. The connection ending (a network error in any watch) invalidates the streamed books
(Gap); the reconnection's first book of each is its snapshot.

``poll_interval`` (gateway config, default 1 s) spaces the polls of each (channel, symbol); the
first polls of a channel are spread over one interval. A channel the exchange lacks in ccxt
(``exchange.has``) is refused once: logged, ``subscription.unsupported_channel`` counted; the
others run. Instruments come from ``load_markets`` (spot, swaps, futures, options; tick size
from ``precision`` in ccxt's precision mode, contract size). A book found crossed is resynced
like any other (Gap, then the next poll is its snapshot, after Reset). Prices and sizes are kept as the exchange's text where ccxt
gives text (the driver sets ccxt's ``number`` to ``str``) and otherwise turned into their
shortest exact decimal text (ccxt parses order books into floats; a float's ``repr`` is the
decimal the exchange sent for every price of up to 15 significant digits).

Polled data is coarser than a stream: a book is the exchange's top levels at each poll (levels
that left them are published as deletes), trades between two polls beyond the exchange's page
size are missed (``trades.page_full`` counts the polls that may have missed some). A poll is
never asked again before its answer came or failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

import orjson
from loguru import logger

from cryptofeed_types import (
    BBO,
    FUTURE,
    OPTION,
    PERPETUAL,
    SPOT,
    Funding,
    IndexPrice,
    MarkPrice,
    OpenInterest,
    Symbol,
    Ticker,
    Trade,
    price_key,
)
from gateways.adapter import (
    BBO_CHANNEL,
    CANDLES,
    FUNDING,
    INDEX,
    L2_BOOK,
    MARK,
    OPEN_INTEREST,
    TICKER,
    TRADES,
    Adapter,
    AdapterError,
    ConnectionSpec,
    Fetch,
    Output,
    Subscription,
)
from gateways.books import SYNCED, Books, no_rule
from gateways.exchanges import CCXT_PREFIX
from gateways.polling import Bar, CandlePoller, PolledCandles

SCHEME = "ccxt:"          # the URL scheme of a ccxt call
STREAM_SCHEME = "ccxtpro:"   # the URL of the connection that streams through ccxt.pro
_S = 1_000_000_000
_MS = 1_000_000
OHLCV_LIMIT = 300         # bars one fetch_ohlcv asks for (every exchange serves at least this many)

# channel → (ccxt call, its `has` key)
CALLS: dict[str, tuple[str, str]] = {
    TRADES: ("fetch_trades", "fetchTrades"),
    L2_BOOK: ("fetch_order_book", "fetchOrderBook"),
    TICKER: ("fetch_ticker", "fetchTicker"),
    FUNDING: ("fetch_funding_rate", "fetchFundingRate"),
    OPEN_INTEREST: ("fetch_open_interest", "fetchOpenInterest"),
    # Mark and index prices: fetch_mark_price where ccxt has it, else the ticker (whose unified
    # structure carries markPrice/indexPrice on most derivatives exchanges); see _call.
    MARK: ("fetch_mark_price", "fetchMarkPrice"),
    INDEX: ("fetch_mark_price", "fetchMarkPrice"),
    BBO_CHANNEL: ("fetch_ticker", "fetchTicker"),
}
# channel → (ccxt.pro call, its `has` key): streamed with ccxt_stream where ccxt.pro can watch it.
# bbo rides on the ticker's watch, as on its poll.
WATCHES: dict[str, tuple[str, str]] = {
    TRADES: ("watch_trades", "watchTrades"),
    L2_BOOK: ("watch_order_book", "watchOrderBook"),
    TICKER: ("watch_ticker", "watchTicker"),
    BBO_CHANNEL: ("watch_ticker", "watchTicker"),
}
# A channel another one's call answers too: polled itself only for the symbols the other is not.
RIDES_ON = {INDEX: MARK, BBO_CHANNEL: TICKER}
FUNDING_PERIOD = 60.0     # s between funding polls (rates change every few hours; the mark moves)
CANDLE_INTERVALS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200,
                    "4h": 14400, "6h": 21600, "12h": 43200, "1d": 86400}
_KINDS = {"spot": SPOT, "swap": PERPETUAL, "future": FUTURE, "option": OPTION}


def call_url(method: str, **params: Any) -> str:
    """The Fetch URL of a ccxt call: ``ccxt:<method>?<params>`` (params sorted, None left out)."""
    query = urlencode(sorted((k, v) for k, v in params.items() if v is not None))
    return f"{SCHEME}{method}?{query}" if query else f"{SCHEME}{method}"


def parse_call(url: str) -> tuple[str, dict[str, Any]]:
    """``(method, params)`` of a :func:`call_url` (numbers back as ints)."""
    if not url.startswith(SCHEME):
        raise ValueError(f"not a ccxt call: {url!r}")
    method, _, query = url[len(SCHEME):].partition("?")
    params: dict[str, Any] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        params[k] = int(v) if v.lstrip("-").isdigit() else v
    return method, params


def dec(value: Any) -> str | None:
    """A ccxt number as exact plain decimal text (None stays None): text as given, a float by the
    shortest decimal that reads back as it (``repr``), never in exponent form."""
    # Exact type tests, floats first: a streamed book sends every level's two numbers through here.
    kind = type(value)
    if kind is float:
        text = repr(value)
        if not text[-1].isdigit():    # 'inf', '-inf', 'nan'
            raise AdapterError("bad_number", text)
        return format(Decimal(text), "f") if "e" in text else text
    if kind is str or value is None:
        return value
    if kind is int:
        return repr(value)
    raise AdapterError("bad_number", repr(value))   # bool, Decimal, anything else


def market_symbol(market: Mapping[str, Any], tick_is_size: bool) -> Symbol:
    """Our Symbol of a ccxt market (raises ValueError/KeyError/TypeError on one we can't name)."""
    kind = _KINDS[market["type"]]
    expiry = strike = option_type = None
    if kind in (FUTURE, OPTION):
        expiry = datetime.fromtimestamp(int(market["expiry"]) / 1000, UTC).strftime("%Y%m%d")
    if kind == OPTION:
        strike = dec(market["strike"])
        option_type = {"call": "C", "put": "P"}[market["optionType"]]
    precision = market.get("precision") or {}

    def size(value: Any) -> str | Decimal | None:
        # ccxt's TICK_SIZE mode gives the size; DECIMAL_PLACES the number of decimals.
        if value is None:
            return None
        return dec(value) if tick_is_size else Decimal(1).scaleb(-int(value))

    return Symbol(market["base"], market["quote"], kind, expiry=expiry, strike=strike, option_type=option_type,
                  settle=market.get("settle") or None, exchange_symbol=str(market["id"]),
                  tick_size=size(precision.get("price")), lot_size=size(precision.get("amount")),
                  contract_size=dec(market.get("contractSize")) if kind != SPOT else None)


class CcxtAdapter(PolledCandles, Adapter):
    """An exchange through ccxt's unified REST API (see the module docstring); made per ccxt id by
    :func:`adapter_class`."""

    ccxt_id: ClassVar[str] = ""
    # Whether ccxt gives tick and lot sizes (TICK_SIZE) rather than numbers of decimals.
    tick_is_size: ClassVar[bool] = True
    # ccxt's `has` of this exchange (what it can fetch), read from ccxt when the class is made.
    has: ClassVar[Mapping[str, Any]] = {}
    # ccxt.pro's `has` (what it can watch; empty: ccxt.pro lacks the exchange).
    pro_has: ClassVar[Mapping[str, Any]] = {}
    # "": ccxt's own endpoints; a base URL replaces the scheme and host of all of them (rest: its
    # http(s) endpoints, ws: ccxt.pro's websocket ones).
    urls = {"rest": "", "ws": ""}
    driver = "gateways.longtail_driver:CcxtDriver"   # its Fetches are ccxt calls
    # One load_markets is one Fetch of weight 1 here but several HTTP calls for many exchanges
    # (Binance: four lists), out of sight of the budget: re-matches at most once a minute.
    instruments_reload_min = 60.0
    timer_interval = 0.1

    def __init__(self, subscription: Subscription, **kwargs: Any) -> None:
        super().__init__(subscription, **kwargs)
        self.books = Books(self.exchange, no_rule, counters=self.counters)
        self.candle_poller = CandlePoller(self, {k: v * _S for k, v in CANDLE_INTERVALS.items()},
                                          self._ohlcv_request, self._ohlcv_bars, OHLCV_LIMIT)
        self.ccxt_symbols: dict[str, str] = {}          # normalized → ccxt's unified symbol
        self.from_ccxt: dict[str, str] = {}             # ccxt's unified symbol → normalized
        self._next: dict[tuple[str, str], int] = {}     # (channel, symbol) → ts of its next poll
        self._inflight: set[tuple[str, str]] = set()    # polls asked and not answered yet
        # symbol → (newest ts ms, ids at it: None for a trade the exchange gives no id)
        self._last_trade: dict[str, tuple[int, set[str | None]]] = {}
        self._last: dict[tuple[str, str], tuple[Any, ...]] = {}  # (channel, symbol) → last published values
        self._plan: list[tuple[str, list[str], int]] | None = None   # _polls(), per set of symbols
        self._candles = False   # candles polled (subscribed and offered): set with the plan
        self._book_symbols = frozenset(subscription.symbols(L2_BOOK))
        # BBO from the ticker only where no book gives it (a book publishes BBO on top changes).
        self._bbo_from_ticker = frozenset(subscription.symbols(BBO_CHANNEL)) - self._book_symbols
        # Channels streamed through ccxt.pro (ccxt_stream, where it can watch them); the rest is polled.
        self.streamed = frozenset(ch for ch, (_, has) in WATCHES.items()
                                  if subscription.ccxt_stream and subscription.symbols(ch) and self.pro_has.get(has))

    # ------------------------------------------------------------ instruments
    def instrument_requests(self) -> list[Fetch]:
        return [Fetch(call_url("load_markets"), 1, "instruments")]

    def parse_instruments(self, url: str, body: str | bytes) -> list[Symbol]:
        markets = orjson.loads(body)
        if type(markets) is not dict:
            raise AdapterError("instruments_error", str(markets)[:200])
        out: list[Symbol] = []
        for ccxt_symbol, market in markets.items():
            try:
                sym = market_symbol(market, self.tick_is_size)
            except (ValueError, KeyError, TypeError, InvalidOperation, AdapterError):
                self.count("instruments.skipped")
                continue
            if sym.normalized in self.ccxt_symbols and self.ccxt_symbols[sym.normalized] != ccxt_symbol:
                self.count("instruments.duplicate")   # two markets, one name: the first listed wins
                continue
            self.ccxt_symbols[sym.normalized] = ccxt_symbol
            self.from_ccxt[ccxt_symbol] = sym.normalized
            out.append(sym)
        return out

    def build_connections(self) -> list[ConnectionSpec]:
        """Polled: none. Streamed channels: one connection whose subscribe messages are the watch calls."""
        calls: dict[str, None] = {}   # a symbol's ticker and bbo share one watch_ticker: the same URL
        pairs: list[tuple[str, str]] = []
        for ch, (method, _) in WATCHES.items():
            if ch not in self.streamed:
                continue
            for sym in self.subscribed(ch):
                if sym not in self.ccxt_symbols or (ch == BBO_CHANNEL and sym not in self._bbo_from_ticker):
                    continue
                pairs.append((ch, sym))
                limit = (self.subscription.depth or None) if ch == L2_BOOK else None
                calls.setdefault(call_url(method, symbol=self.ccxt_symbols[sym], limit=limit))
        if not calls:
            return []
        return [ConnectionSpec(f"{self.exchange}.pro", f"{STREAM_SCHEME}{self.ccxt_id}", subscribe=tuple(calls),
                               streams=tuple(pairs))]

    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        msg = orjson.loads(raw)
        if type(msg) is not dict or not isinstance(msg.get("call"), str):
            raise AdapterError("bad_stream_message", str(raw)[:200])
        method, params = parse_call(msg["call"])
        symbol = self.from_ccxt.get(params.get("symbol", ""))
        if symbol is None:
            raise AdapterError("stream_unknown_symbol", msg["call"])
        result = msg.get("result")
        if method == "watch_trades":
            if type(result) is not list:
                raise AdapterError("bad_trades", str(result)[:200])
            self._trades(symbol, result, ts, out, streamed=True)
            return
        if type(result) is not dict:
            raise AdapterError("bad_stream_result", str(result)[:200])
        if method == "watch_order_book":
            self._book(symbol, result, ts, out)
        elif method == "watch_ticker":
            if symbol in self.subscription.symbols(TICKER):
                self._ticker(symbol, result, ts, out)   # and the bbo of a symbol without a book
            else:
                self._bbo(symbol, result, ts, out)
        else:
            raise AdapterError("stream_unexpected", msg["call"])

    def handle_close(self, conn: str, ts: int, reason: str, out: Output) -> None:
        # The watches are gone with the connection: the streamed books are invalid until the
        # reconnection's first book of each, which _book installs whole.
        if L2_BOOK in self.streamed:
            books = [s for s in self.subscribed(L2_BOOK) if self.books.get(s) is not None]
            self.books.invalidate_all(f"disconnected: {reason}", out, symbols=books, receipt_timestamp=ts)

    # ------------------------------------------------------------ polls
    def _call(self, channel: str) -> tuple[str, str]:
        """(ccxt method, its ``has`` key) polled for ``channel`` on this exchange."""
        method, has = CALLS[channel]
        if channel in (MARK, INDEX) and not self.has.get(has):
            return "fetch_ticker", "fetchTicker"
        return method, has

    def _offered(self, channel: str, has: str) -> bool:
        """Whether ccxt offers ``channel`` here (``has``); refused once otherwise: logged, counted."""
        if self.has.get(has):
            return True
        self.count("subscription.unsupported_channel")
        logger.bind(exchange=self.exchange).error("{}: {} not polled: ccxt's {} has no {}", self.exchange, channel,
                                                  self.ccxt_id, has)
        return False

    def _polls(self) -> list[tuple[str, list[str], int]]:
        """What the timer polls: (channel, symbols, period ns) per polled channel, derived once per set of
        symbols (``set_symbols`` clears it). A channel another one's call answers (RIDES_ON) is polled
        only for the symbols that one is not; bbo only where no book gives it."""
        if self._plan is None:
            offered = [ch for ch in CALLS if ch not in self.streamed and self.subscription.symbols(ch)
                       and self._offered(ch, self._call(ch)[1])]
            self._candles = bool(self.subscription.symbols(CANDLES)) and self._offered(CANDLES, "fetchOHLCV")
            plan = []
            for ch in offered:
                syms = [s for s in self.subscribed(ch) if s in self.ccxt_symbols]
                host = RIDES_ON.get(ch)
                if host in offered:
                    hosted = set(self.subscribed(host))
                    syms = [s for s in syms if s not in hosted]
                if ch == BBO_CHANNEL:
                    syms = [s for s in syms if s not in self._book_symbols]
                plan.append((ch, syms, int(self._period(ch) * _S)))
            self._plan = plan
        return self._plan

    def set_symbols(self, symbols: Iterable[Symbol]) -> None:
        super().set_symbols(symbols)
        self._plan = None

    def _period(self, channel: str) -> float:
        if channel == OPEN_INTEREST:
            return self.subscription.open_interest_interval
        if channel == FUNDING:
            return FUNDING_PERIOD
        return self.subscription.poll_interval

    def _request(self, channel: str, symbol: str) -> Fetch:
        method = self._call(channel)[0]
        ccxt_symbol = self.ccxt_symbols[symbol]
        if channel == L2_BOOK:
            url = call_url(method, symbol=ccxt_symbol, limit=self.subscription.depth or None)
        else:
            url = call_url(method, symbol=ccxt_symbol)
        return Fetch(url, 1, channel, symbol)

    def handle_timer(self, ts: int, out: Output) -> None:
        for ch, syms, period in self._polls():
            for i, sym in enumerate(syms):
                key = (ch, sym)
                due = self._next.get(key)
                if due is None:
                    # The first polls spread over one period, so they don't burst the rate limit.
                    due = self._next[key] = ts + (period * i) // len(syms)
                if ts >= due and key not in self._inflight:
                    self._next[key] = max(due + period, ts)
                    self._inflight.add(key)
                    out.actions.append(self._request(ch, sym))
        if self._candles:
            self.candle_poller.poll(ts, out)

    def handle_resync(self, symbol: str, ts: int, out: Output) -> None:
        # A polled book is rebuilt by its next poll, which finds it invalid and installs it whole:
        # asked now unless one is out.
        key = (L2_BOOK, symbol)
        if symbol in self.ccxt_symbols and key not in self._inflight:
            self._inflight.add(key)
            out.actions.append(self._request(L2_BOOK, symbol))

    def rest_failed(self, fetch: Fetch, ts: int, out: Output) -> None:
        self._inflight.discard((fetch.tag, fetch.symbol or ""))

    def handle_rest(self, fetch: Fetch, body: str | bytes, ts: int, out: Output) -> None:
        if fetch.tag == CANDLES:
            self.candle_poller.on_response(fetch, body, ts, out)
            return
        symbol = fetch.symbol
        if fetch.tag not in CALLS or symbol is None:
            raise AdapterError("rest_unexpected", fetch.url)
        self._inflight.discard((fetch.tag, symbol))
        data = orjson.loads(body)
        if fetch.tag == TRADES:
            if type(data) is not list:
                raise AdapterError("bad_trades", str(data)[:200])
            self._trades(symbol, data, ts, out)
            return
        if type(data) is not dict:
            raise AdapterError(f"bad_{fetch.tag}", str(data)[:200])
        self._HANDLERS[fetch.tag](self, symbol, data, ts, out)

    # ------------------------------------------------------------ results → events
    def _book(self, symbol: str, data: dict[str, Any], ts: int, out: Output) -> None:
        bids, asks = _levels(data["bids"]), _levels(data["asks"])
        t = data.get("timestamp")
        stamp = int(t) * _MS if t else None
        xs = self.to_exchange.get(symbol)
        sb = self.books.get(symbol)
        if sb is None or sb.state != SYNCED:
            self.books.add(symbol, xs)
            self.books.snapshot(symbol, bids, asks, None, out, timestamp=stamp, receipt_timestamp=ts)
            return
        old_bids, old_asks = sb.book.snapshot()
        d_bids, d_asks = _diff(old_bids, bids), _diff(old_asks, asks)
        if not d_bids and not d_asks:
            self.ignore("book_unchanged")
            return
        self.books.delta(symbol, d_bids, d_asks, out, timestamp=stamp, receipt_timestamp=ts)

    def _ticker(self, symbol: str, data: dict[str, Any], ts: int, out: Output) -> None:
        if symbol in self._bbo_from_ticker:
            self._bbo(symbol, data, ts, out)
        values = (dec(data.get("bid")), dec(data.get("ask")), dec(data.get("last")), dec(data.get("baseVolume")))
        if not self._changed((TICKER, symbol), values):
            return
        bid, ask, last, volume = values
        out.events.append(Ticker(self.exchange, symbol, bid=bid, ask=ask, last=last, volume=volume,
                                 **self._stamps(symbol, data, ts)))

    def _bbo(self, symbol: str, data: dict[str, Any], ts: int, out: Output) -> None:
        values = (dec(data.get("bid")), dec(data.get("bidVolume")), dec(data.get("ask")), dec(data.get("askVolume")))
        if values[0] is None and values[2] is None:
            self.ignore("bbo_missing")
            return
        if not self._changed((BBO_CHANNEL, symbol), values):
            return
        bid, bid_size, ask, ask_size = values
        out.events.append(BBO(self.exchange, symbol, bid=bid, bid_size=bid_size, ask=ask, ask_size=ask_size,
                              **self._stamps(symbol, data, ts)))

    def _funding(self, symbol: str, data: dict[str, Any], ts: int, out: Output) -> None:
        rate = dec(data.get("fundingRate"))
        if rate is None:
            raise AdapterError("bad_funding", "no fundingRate")
        nxt = data.get("nextFundingTimestamp") or data.get("fundingTimestamp")
        values = (rate, dec(data.get("markPrice")), int(nxt) * _MS if nxt else None, dec(data.get("nextFundingRate")))
        if not self._changed((FUNDING, symbol), values):
            return
        out.events.append(Funding(self.exchange, symbol, values[0], mark_price=values[1], next_funding_time=values[2],
                                  predicted_rate=values[3], **self._stamps(symbol, data, ts)))

    def _open_interest(self, symbol: str, data: dict[str, Any], ts: int, out: Output) -> None:
        oi = dec(data.get("openInterestAmount"))
        if oi is None:
            oi = dec(data.get("baseVolume"))   # some exchanges give it there (ccxt's own fallback)
        if oi is None:
            raise AdapterError("bad_open_interest", "no openInterestAmount")
        if not self._changed((OPEN_INTEREST, symbol), (oi,)):
            return
        out.events.append(OpenInterest(self.exchange, symbol, oi, **self._stamps(symbol, data, ts)))

    def _mark(self, symbol: str, data: dict[str, Any], ts: int, out: Output) -> None:
        self._price(MARK, "markPrice", symbol, data, ts, out)
        if symbol in self.subscription.symbols(INDEX):
            self._price(INDEX, "indexPrice", symbol, data, ts, out)

    def _index(self, symbol: str, data: dict[str, Any], ts: int, out: Output) -> None:
        self._price(INDEX, "indexPrice", symbol, data, ts, out)

    def _price(self, channel: str, field: str, symbol: str, data: dict[str, Any], ts: int, out: Output) -> None:
        price = dec(data.get(field))
        if price is None:
            self.ignore(f"{channel}_missing")   # this exchange's answer has no such price for the symbol
            return
        if not self._changed((channel, symbol), (price,)):
            return
        cls = MarkPrice if channel == MARK else IndexPrice
        out.events.append(cls(self.exchange, symbol, price, **self._stamps(symbol, data, ts)))

    def _stamps(self, symbol: str, data: dict[str, Any], ts: int) -> dict[str, Any]:
        """An event's exchange id and times: the answer's ``timestamp`` (ms) when it has one."""
        t = data.get("timestamp")
        return {"exchange_symbol": self.to_exchange.get(symbol), "timestamp": int(t) * _MS if t else None,
                "receipt_timestamp": ts}

    def _changed(self, key: tuple[str, str], values: tuple[Any, ...]) -> bool:
        if self._last.get(key) == values:
            self.ignore(f"{key[0]}_unchanged")
            return False
        self._last[key] = values
        return True

    _HANDLERS: ClassVar[dict[str, Any]] = {L2_BOOK: _book, TICKER: _ticker, FUNDING: _funding,
                                           OPEN_INTEREST: _open_interest, MARK: _mark, INDEX: _index,
                                           BBO_CHANNEL: _bbo}

    def _trades(self, symbol: str, rows: list[Any], ts: int, out: Output, *, streamed: bool = False) -> None:
        """New trades of one fetch_trades answer: after the newest of the previous answer, each once.
        The first answer sets the mark only (its trades happened before the gateway looked; none at
        all: every later one is new). ``streamed`` (a watch_trades result): every trade is new, none
        is history, and no page can have been cut."""
        # (ms, id, row), oldest first: each row's instant and id read once.
        stamped = sorted(((int(r["timestamp"] or 0), None if r.get("id") is None else str(r["id"]), r) for r in rows),
                         key=lambda x: x[0])
        mark = self._last_trade.get(symbol)
        if mark is None and streamed:
            mark = (0, set())
        newest = stamped[-1][0] if stamped else (mark[0] if mark else 0)
        at_newest = {rid for t, rid, _ in stamped if t == newest}
        if mark is None:
            self._last_trade[symbol] = (newest, at_newest)
            if stamped:
                self.count("ignored.trade_history", len(stamped))
            return
        last_ts, last_ids = mark
        if stamped and last_ts and stamped[0][0] > last_ts and not streamed:
            # The page starts after our mark: trades between the two answers may be missing.
            self.count("trades.page_full")
        xs = self.to_exchange.get(symbol)
        built = []
        for t, rid, r in stamped:
            if t < last_ts or (t == last_ts and rid in last_ids):
                continue
            side = r.get("side")
            if side not in ("buy", "sell"):
                raise AdapterError("bad_trade_side", repr(side))
            built.append(Trade(self.exchange, symbol, side, dec(r["amount"]), dec(r["price"]), id=rid,
                               exchange_symbol=xs, timestamp=t * _MS if t else None, receipt_timestamp=ts))
        out.events.extend(built)
        if stamped:
            self._last_trade[symbol] = (newest, at_newest | (last_ids if newest == last_ts else set()))

    # ------------------------------------------------------------ candles
    def _ohlcv_request(self, symbol: str, start: int) -> Fetch:
        return Fetch(call_url("fetch_ohlcv", symbol=self.ccxt_symbols[symbol], timeframe=self.candle_interval,
                              since=start // _MS, limit=OHLCV_LIMIT), 1, CANDLES, symbol)

    @staticmethod
    def _ohlcv_bars(body: str | bytes) -> tuple[list[Bar], bool]:
        rows = orjson.loads(body)
        if type(rows) is not list:
            raise AdapterError("bad_candles", str(rows)[:200])
        bars: list[Bar] = []
        for r in rows:
            t, o, h, low, c, v = r[:6]
            if type(t) is not int:
                raise AdapterError("bad_candle_time", repr(t))
            po, ph, plow, pc, pv = dec(o), dec(h), dec(low), dec(c), dec(v)
            if po is None or ph is None or plow is None or pc is None:
                # A Bar holds numbers only: a malformed answer is the parser's to refuse (gateways.polling).
                raise AdapterError("bad_candle", repr(r))
            bars.append((t * _MS, po, ph, plow, pc, "0" if pv is None else pv))
        return bars, False


def _levels(rows: Iterable[Any]) -> list[tuple[str, str]]:
    """ccxt's ``[price, amount, (count...)]`` levels as (price, size) text; one missing a number
    is refused (``bad_level``) before it reaches the book."""
    out = []
    for lv in rows:
        p, s = dec(lv[0]), dec(lv[1])
        if p is None or s is None:
            raise AdapterError("bad_level", repr((p, s)))
        out.append((p, s))
    return out


def _diff(old: Iterable[tuple[str, str]], new: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The levels that change ``old`` into ``new``: new or resized levels, and removed ones at size 0.
    Compared as text first (a streamed book repeats ~all its levels, unchanged, on every update);
    the few that differ are settled as the book keys them (``price_key``: "1.50" is "1.5")."""
    before = dict(old)
    after: dict[str, str] = {}
    for p, s in new:
        after[p] = s
    changed = [(p, s) for p, s in after.items() if before.get(p) != s]
    removed = [p for p in before if p not in after]
    if not changed and not removed:
        return []
    was = {price_key(p): price_key(before[p]) for p in removed}
    was.update((price_key(p), price_key(before[p])) for p, _ in changed if p in before)
    out = [(p, s) for p, s in changed if was.get(price_key(p)) != price_key(s)]
    now = {price_key(p) for p, _ in changed}
    out += [(p, "0") for p in removed if price_key(p) not in now]
    return out


def adapter_class(ccxt_id: str) -> type[CcxtAdapter]:
    """A new adapter class for ccxt's exchange ``ccxt_id`` (KeyError when ccxt has none). The
    registry makes (and keeps) it for the name ``CCXT_<ID>``: ``gateways.exchanges.get``."""
    import ccxt

    if ccxt_id not in ccxt.exchanges:
        raise KeyError(f"unknown exchange {CCXT_PREFIX + ccxt_id.upper()!r}: ccxt has no exchange {ccxt_id!r} "
                       f"(ccxt {ccxt.__version__} knows {len(ccxt.exchanges)}: ccxt.exchanges)")
    import ccxt.pro

    probe = getattr(ccxt, ccxt_id)()
    pro_has = dict(getattr(ccxt.pro, ccxt_id)().has) if ccxt_id in ccxt.pro.exchanges else {}
    rate_limit_ms = float(probe.rateLimit or 50)
    return type(f"Ccxt_{ccxt_id}", (CcxtAdapter,), {
        "__doc__": f"{ccxt_id} through ccxt's unified REST API (polled; streamed through ccxt.pro with ccxt_stream).",
        "exchange": ccxt_id.upper(), "ccxt_id": ccxt_id, "has": dict(probe.has), "pro_has": pro_has,
        "tick_is_size": probe.precisionMode == ccxt.TICK_SIZE,
        # ccxt spaces its calls by rateLimit ms; the driver's budget allows the same rate.
        "rest_weight_per_minute": max(1, int(60_000 / rate_limit_ms)),
    })
