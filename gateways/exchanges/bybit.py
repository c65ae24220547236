"""Bybit adapter (API v5): spot, linear (USDT/USDC perpetuals and futures), inverse and options.

Sans-I/O: raw websocket frames and REST bodies in, normalized events and actions out
(see gateways/adapter.py). Bybit v5 has one public websocket per category
(``wss://stream.bybit.com/v5/public/{spot,linear,inverse,option}``); this adapter
opens one connection per category it needs, with the connection id equal to the
category. The same exchange symbol exists in several categories (``BTCUSDT`` is
both spot and a linear perpetual), so symbols are resolved per connection.

=============  =========================================================================
channel        Bybit topic
=============  =========================================================================
trades         ``publicTrade.{symbol}``
l2_book        ``orderbook.{depth}.{symbol}`` (depth 200, options 25; ``Subscription.depth``
               picks the smallest offered depth that covers it)
ticker         ``tickers.{symbol}``
funding        ``tickers.{symbol}`` (fundingRate, nextFundingTime; perpetuals)
open_interest  ``tickers.{symbol}`` (openInterest; derivatives)
index, mark    ``tickers.{symbol}`` (indexPrice, markPrice; derivatives)
liquidations   ``allLiquidation.{symbol}`` (the retired ``liquidation.{symbol}`` is parsed too)
candles        ``kline.{interval}.{symbol}``
(system)       REST ``/v5/system/status`` polled every minute: Status(feed='system')
=============  =========================================================================

System status: Bybit lists its maintenance events over REST (the same rows its separate
``/v5/public/misc/status`` websocket pushes; polled instead, so that no extra connection's outage
reads as a feed going down). An ``ongoing`` event of the trading or market data service
(``serviceTypes`` 1, 5) on a product the gateway serves (``product`` 1 futures: linear and
inverse, 2 spot, 3 options) is ``maintenance`` when it covers all of them for every account,
``partial`` otherwise (some products, or some accounts: ``uidSuffix``); a ``scheduled`` one is
logged once; none in force is ``online``.

Derivative tickers arrive as a snapshot then deltas holding only the changed
fields: the adapter merges them per symbol and publishes Ticker on a change of
bid/ask/last/volume, Funding on a change of the funding fields, OpenInterest,
IndexPrice and MarkPrice when their field is in the push.

Books: ``u`` is the per-topic update id; each delta must carry the previous
``u`` + 1 (checked by ``gateways.books.Books`` with the range rule). A snapshot
replaces the book (Bybit re-sends one after a restart, with ``u`` = 1; a delta
with ``u`` = 1 is treated the same way); an unchanged re-sent snapshot (same ``u``,
sent for depth 1 every 3 s) is dropped. ``seq`` (the cross sequence) is not
continuous per topic and is not checked. A broken book is resynced by
unsubscribing and resubscribing that one topic (a new snapshot follows).

Symbols: ``BTCUSDT`` (spot) → ``BTC-USDT``; linear ``BTCUSDT`` → ``BTC-USDT-PERP``,
``BTCPERP`` → ``BTC-USDC-PERP``, ``BTC-27DEC24`` → ``BTC-USDC-20241227``; inverse
``BTCUSD`` → ``BTC-USD-PERP``, ``BTCUSDH24`` → ``BTC-USD-20240329``; options
``BTC-28APR23-29500-C`` → ``BTC-USD-20230428-29500-C``. Instruments give tick size
(priceFilter.tickSize), lot size (qtyStep, spot basePrecision) and settle coin.

Retired API v2 (recordings only): ``orderBookL2_25``/``orderBook_200`` and ``trade`` are parsed so
that old captures replay (connections ``realtime_public`` → linear, ``realtime`` → inverse; their
JSON-number sizes go through ``dec_str``); other v2 topics are counted ``ignored.legacy_v2``.

Values: prices and sizes are JSON strings kept verbatim; timestamps are ms →
int ns. Volumes are base currency: ``volume``/``volume24h`` except on inverse
contracts, whose volume counts USD contracts and whose ``turnover`` is in the
base coin. Liquidation side: Bybit gives the side of the liquidated *position*;
the event carries the side of the liquidation *order* (the opposite).
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from cryptofeed_types import (
    BBO,
    FUTURE,
    OPTION,
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
    dec_str,
    iso_ns,
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
    Output,
    Send,
    Subscription,
)
from gateways.books import SYNCED, Books, range_rule
from gateways.resync import Resubscriber
from gateways.system_status import MAINTENANCE, ONLINE, PARTIAL, ms_text

EXCHANGE = "BYBIT"
CATEGORIES = ("spot", "linear", "inverse", "option")
# Spot accepts at most 10 topics per subscribe request; the others 21,000 characters of args.
BATCH = 10
PING_INTERVAL = 20.0  # Bybit drops a connection after ~30 s without a ping
# Bybit publishes no limit on subscribe messages (only on connections: 500 per 5 min per IP);
# one symbol is resubscribed at most every 5 s, and again after 30 s if its snapshot never comes.
RESUBSCRIBE_MIN_INTERVAL_NS = 5_000_000_000
RESUBSCRIBE_RETRY_NS = 30_000_000_000

BOOK_DEPTHS = {"spot": (1, 50, 200, 1000), "linear": (1, 50, 200, 1000), "inverse": (1, 50, 200, 1000),
               "option": (25, 100)}
DEFAULT_DEPTH = {"spot": 200, "linear": 200, "inverse": 200, "option": 25}

# normalized interval -> (Bybit interval, length in ms)
CANDLE_INTERVALS: dict[str, tuple[str, int]] = {
    "1m": ("1", 60_000), "3m": ("3", 180_000), "5m": ("5", 300_000), "15m": ("15", 900_000),
    "30m": ("30", 1_800_000), "1h": ("60", 3_600_000), "2h": ("120", 7_200_000), "4h": ("240", 14_400_000),
    "6h": ("360", 21_600_000), "12h": ("720", 43_200_000), "1d": ("D", 86_400_000), "1w": ("W", 604_800_000),
    "1M": ("M", 0),
}
_BYBIT_TO_INTERVAL = {b: name for name, (b, _) in CANDLE_INTERVALS.items()}

_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_FUTURE_CODES = {"F": 1, "G": 2, "H": 3, "J": 4, "K": 5, "M": 6, "N": 7, "Q": 8, "U": 9, "V": 10, "X": 11, "Z": 12}
_QUOTES = ("USDT", "USDC", "USDE", "USD", "EUR", "BRL", "TRY", "BTC", "ETH", "DAI", "MNT", "BRZ", "PLN")
_MS = 1_000_000

_V2_CONNECTIONS = {"realtime_public": "linear", "realtime": "inverse"}
# System status: Bybit's product numbers of our categories, and the services whose maintenance stops
# public market data or trading (not HTTP order entry or private streams alone).
_PRODUCT = {"spot": 2, "linear": 1, "inverse": 1, "option": 3}
_MARKET_SERVICES = frozenset({1, 5})
_TICKER_FIELDS = ("bid1Price", "ask1Price", "bidPrice", "askPrice", "lastPrice", "volume24h", "turnover24h")
_FUNDING_FIELDS = ("fundingRate", "nextFundingTime", "markPrice")


def _ns(ms: Any) -> int | None:
    if ms is None or ms == "" or ms == "0" or ms == 0:
        return None
    return int(ms) * _MS


def _opt(v: Any) -> Any:
    return None if v == "" else v


def _date_from_ms(ms: Any) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).strftime("%Y%m%d")


def _expiry_ddmmmyy(text: str) -> str:
    """'27DEC24' / '3JAN25' -> '20241227' / '20250103'."""
    day, mon, year = text[:-5], text[-5:-2], text[-2:]
    if not day.isdigit() or mon not in _MONTHS or not year.isdigit():
        raise ValueError(f"not a Bybit expiry (DDMMMYY): {text!r}")
    return f"20{year}{_MONTHS[mon]:02d}{int(day):02d}"


def _last_friday(year: int, month: int) -> str:
    last = calendar.monthrange(year, month)[1]
    day = last - (calendar.weekday(year, month, last) - calendar.FRIDAY) % 7
    return f"{year:04d}{month:02d}{day:02d}"


def _split_pair(text: str) -> tuple[str, str]:
    for q in _QUOTES:
        if text.endswith(q) and len(text) > len(q):
            return text[:-len(q)], q
    raise ValueError(f"cannot split {text!r} into base and quote")


def category_of(sym: Symbol) -> str:
    """The Bybit category (websocket / REST) of a Symbol: inverse contracts settle in the base coin."""
    if sym.kind == SPOT:
        return "spot"
    if sym.kind == OPTION:
        return "option"
    if sym.settle is not None:
        return "inverse" if sym.settle == sym.base else "linear"
    return "inverse" if sym.quote == "USD" else "linear"


def symbol_from_text(category: str, text: str) -> Symbol:
    """A Symbol from a Bybit symbol alone (no instruments loaded); ValueError when it cannot be read."""
    if category == "spot":
        base, quote = _split_pair(text)
        return Symbol(base, quote, SPOT, exchange_symbol=text)
    if category == "option":
        parts = text.split("-")
        if len(parts) not in (4, 5) or parts[3] not in ("C", "P"):
            raise ValueError(f"not a Bybit option symbol: {text!r}")
        quote = parts[4] if len(parts) == 5 else "USD"
        return Symbol(parts[0], quote, OPTION, expiry=_expiry_ddmmmyy(parts[1]), strike=parts[2],
                      option_type=parts[3], exchange_symbol=text)
    if "-" in text:  # linear futures: BTC-27DEC24 (USDC) or BTCUSDT-27DEC24
        head, exp = text.split("-", 1)
        try:
            base, quote = _split_pair(head)
        except ValueError:
            base, quote = head, "USDC"
        return Symbol(base, quote, FUTURE, expiry=_expiry_ddmmmyy(exp), settle=quote, exchange_symbol=text)
    if text.endswith("PERP"):
        return Symbol(text[:-4], "USDC", PERPETUAL, settle="USDC", exchange_symbol=text)
    if category == "inverse":
        if text.endswith("USD"):
            return Symbol(text[:-3], "USD", PERPETUAL, settle=text[:-3], exchange_symbol=text)
        head, code, yy = text[:-3], text[-3], text[-2:]
        if head.endswith("USD") and code in _FUTURE_CODES and yy.isdigit():
            base = head[:-3]
            return Symbol(base, "USD", FUTURE, expiry=_last_friday(2000 + int(yy), _FUTURE_CODES[code]), settle=base,
                          exchange_symbol=text)
        raise ValueError(f"not a Bybit inverse symbol: {text!r}")
    base, quote = _split_pair(text)
    return Symbol(base, quote, PERPETUAL, settle=quote, exchange_symbol=text)


def symbol_from_instrument(category: str, item: Mapping[str, Any]) -> Symbol:
    """A Symbol with tick/lot/contract size from one ``/v5/market/instruments-info`` row."""
    text = item["symbol"]
    lot = item.get("lotSizeFilter") or {}
    meta: dict[str, Any] = {
        "tick_size": _opt((item.get("priceFilter") or {}).get("tickSize")),
        "lot_size": _opt(lot.get("qtyStep") or lot.get("basePrecision")),
        "exchange_symbol": text,
    }
    base, quote = item["baseCoin"], item["quoteCoin"]
    if category == "spot":
        return Symbol(base, quote, SPOT, **meta)
    settle = _opt(item.get("settleCoin"))
    if category == "option":
        sym = symbol_from_text("option", text)
        return Symbol(base, sym.quote, OPTION, expiry=sym.expiry, strike=sym.strike, option_type=sym.option_type,
                      settle=settle, contract_size="1", **meta)
    meta["contract_size"] = "1"
    ctype = item.get("contractType", "")
    if ctype.endswith("Perpetual"):
        return Symbol(base, quote, PERPETUAL, settle=settle, **meta)
    if ctype.endswith("Futures"):
        return Symbol(base, quote, FUTURE, expiry=_date_from_ms(item["deliveryTime"]), settle=settle, **meta)
    raise ValueError(f"unknown contractType {ctype!r} of {text!r}")


class BybitAdapter(Adapter):
    """Bybit v5 spot, linear, inverse and options: trades, L2 book (update ids), tickers, candles, liquidations."""

    exchange: ClassVar[str] = EXCHANGE
    urls: ClassVar[Mapping[str, str]] = {
        "rest": "https://api.bybit.com",
        "spot": "wss://stream.bybit.com/v5/public/spot",
        "linear": "wss://stream.bybit.com/v5/public/linear",
        "inverse": "wss://stream.bybit.com/v5/public/inverse",
        "option": "wss://stream.bybit.com/v5/public/option",
    }
    # 600 requests per 5 s per IP for public endpoints; stay far below.
    rest_weight_per_minute: ClassVar[int] = 1200
    # The timer retries resubscriptions whose snapshot never came and sends deferred ones, and asks
    # the system status.
    timer_interval = 5.0
    system_status_path: ClassVar[str | None] = "/v5/system/status"

    def __init__(self, subscription: Subscription, *, urls: Mapping[str, str] | None = None,
                 symbols: Iterable[Symbol] | None = None) -> None:
        self._by_cat: dict[str, dict[str, Symbol]] = {c: {} for c in CATEGORIES}
        self._category: dict[str, str] = {}  # normalized -> category
        super().__init__(subscription, urls=urls, symbols=symbols)
        self.books = Books(EXCHANGE, range_rule, counters=self.counters)
        # Symbols wanting only the top of book: orderbook.1 kept apart, only its BBO events published.
        self._bbo_only = frozenset(subscription.symbols(BBO_CHANNEL)) - frozenset(subscription.symbols(L2_BOOK))
        self._bbo_books = Books(EXCHANGE, range_rule, channel="bbo", counters=Counter())
        self._tickers: dict[tuple[str, str], dict[str, Any]] = {}
        self._book_topic: dict[str, tuple[str, str]] = {}  # normalized -> (category, topic)
        self.resubscribes = Resubscriber(self.counters, min_interval_ns=RESUBSCRIBE_MIN_INTERVAL_NS,
                                         retry_ns=RESUBSCRIBE_RETRY_NS)

    # ---------------------------------------------------------------- instruments
    def instrument_requests(self) -> list[Fetch]:
        syms = [Symbol.parse(s) for s in self.subscription.all_symbols()]
        cats = {category_of(s) for s in syms} or set(CATEGORIES[:3])
        base = self.url["rest"] + "/v5/market/instruments-info?category="
        fetches = [Fetch(f"{base}{c}&limit=1000", tag="instruments") for c in CATEGORIES[:3] if c in cats]
        # Options are listed per base coin (Bybit returns only BTC's without baseCoin).
        coins = sorted({s.base for s in syms if s.kind == OPTION})
        fetches += [Fetch(f"{base}option&baseCoin={c}&limit=1000", tag="instruments") for c in coins]
        return fetches

    def next_instrument_request(self, fetch: Fetch, body: str | bytes) -> Fetch | None:
        """The next page of a list longer than ``limit`` (options): ``result.nextPageCursor`` is the
        ``cursor`` of the next request, empty (or absent, spot) on the last page."""
        doc = orjson.loads(body)
        result = doc.get("result") if type(doc) is dict else None
        if type(result) is not dict or not result.get("list"):
            return None
        cursor = result.get("nextPageCursor")
        if not cursor or type(cursor) is not str:
            return None
        # Bybit sends the cursor already percent-encoded ("0%2C1000"): keep '%' as is, encode the rest.
        url = f"{fetch.url.split('&cursor=', 1)[0]}&cursor={quote(cursor, safe='%')}"
        return None if url == fetch.url else Fetch(url, fetch.weight, fetch.tag, fetch.symbol)

    def parse_instruments(self, url: str, body: str | bytes) -> list[Symbol]:
        doc = orjson.loads(body)
        if doc.get("retCode") != 0:
            raise AdapterError("instruments_error", f"{url}: {doc.get('retCode')} {doc.get('retMsg')}")
        result = doc["result"]
        category = result.get("category") or next((c for c in CATEGORIES if f"category={c}" in url), "")
        out = []
        for item in result["list"]:
            try:
                out.append(symbol_from_instrument(category, item))
            except (ValueError, KeyError, TypeError):
                self.count("instruments.skipped")
        return out

    def set_symbols(self, symbols: Iterable[Symbol]) -> None:
        symbols = list(symbols)
        super().set_symbols(symbols)
        for sym in symbols:
            cat = category_of(sym)
            self._category[sym.normalized] = cat
            if sym.exchange_symbol is not None:
                self._by_cat[cat][sym.exchange_symbol] = sym

    def _symbol(self, category: str, text: str) -> Symbol:
        table = self._by_cat.get(category)
        if table is None:
            raise AdapterError("unknown_connection", category)
        sym = table.get(text)
        if sym is None:
            try:
                sym = symbol_from_text(category, text)
            except ValueError as exc:
                raise AdapterError("unknown_symbol", str(exc)) from None
            self.set_symbols([sym])
            self.count("symbols.guessed")
        return sym

    # ---------------------------------------------------------------- subscriptions
    def book_depth(self, category: str) -> int:
        want = self.subscription.depth
        if not want:
            return DEFAULT_DEPTH[category]
        offered = BOOK_DEPTHS[category]
        return next((d for d in offered if d >= want), offered[-1])

    def category(self, symbol: str) -> str:
        """The v5 category (``spot``, ``linear``, ``inverse``, ``option``) of a normalized symbol: the
        instrument list's, or read from the symbol before the instruments are loaded."""
        return self._category.get(symbol) or category_of(Symbol.parse(symbol))

    def _topics(self) -> dict[str, list[str]]:
        topics: dict[str, list[str]] = {c: [] for c in CATEGORIES}

        def add(text: str, topic: str) -> None:
            cat = self.category(text)
            t = topic.format(self.exchange_symbol(text))
            if t not in topics[cat]:
                topics[cat].append(t)

        for text in self.subscribed(TRADES):
            add(text, "publicTrade.{}")
        for text in self.subscribed(L2_BOOK):
            cat = self.category(text)
            add(text, f"orderbook.{self.book_depth(cat)}.{{}}")
        for text in self.known_symbols(sorted(self._bbo_only)):
            add(text, "orderbook.1.{}")
        for channel in (TICKER, FUNDING, OPEN_INTEREST, INDEX, MARK):
            for text in self.subscribed(channel):
                add(text, "tickers.{}")
        for text in self.subscribed(LIQUIDATIONS):
            if self.category(text) in ("linear", "inverse"):
                add(text, "allLiquidation.{}")
        if self.subscribed(CANDLES):
            interval = CANDLE_INTERVALS.get(self.candle_interval)
            if interval is None:
                raise ValueError(f"Bybit candles: interval one of {sorted(CANDLE_INTERVALS)}, "
                                 f"got {self.candle_interval!r}")
            for text in self.subscribed(CANDLES):
                add(text, f"kline.{interval[0]}.{{}}")
        return topics

    def build_connections(self) -> list[ConnectionSpec]:
        specs = []
        sub = self.subscription
        for cat, topics in self._topics().items():
            if not topics:
                continue
            msgs = tuple(orjson.dumps({"op": "subscribe", "args": topics[i:i + BATCH]}).decode()
                         for i in range(0, len(topics), BATCH))
            streams = tuple((c, s) for c in sub.channels for s in self.subscribed(c)
                            if self.category(s) == cat)
            specs.append(ConnectionSpec(id=cat, url=self.url[cat], subscribe=msgs, subscribe_interval=0.05,
                                        ping='{"op":"ping"}', ping_interval=PING_INTERVAL, silence_timeout=30.0,
                                        streams=streams))
        return specs

    def match_connection(self, url: str) -> str | None:
        tail = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if tail in CATEGORIES:
            return tail
        # Retired v2 endpoints, as in old recordings: USDT contracts on realtime_public, inverse on realtime.
        return _V2_CONNECTIONS.get(tail)

    # ---------------------------------------------------------------- messages
    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        msg = orjson.loads(raw)
        if not isinstance(msg, dict):
            raise AdapterError("unexpected_message", "not a JSON object")
        topic = msg.get("topic")
        if topic is None:
            self._on_op(msg)
            return
        if "params" in msg or "request" in msg:
            self.ignore("legacy_v1")  # Bybit spot v1 / v2 formats: retired
            return
        kind, _, rest = topic.partition(".")
        if kind == "orderbook":
            self._on_book(conn, topic, msg, ts, out)
        elif kind == "publicTrade":
            self._on_trades(conn, msg, ts, out)
        elif kind == "tickers":
            self._on_ticker(conn, msg, ts, out)
        elif kind == "kline":
            self._on_kline(conn, rest, msg, ts, out)
        elif kind == "allLiquidation":
            self._on_all_liquidation(conn, msg, ts, out)
        elif kind == "liquidation":
            self._on_liquidation(conn, msg, ts, out)
        elif kind == "orderBookL2_25" or kind == "orderBook_200":
            self._on_v2_book(conn, rest, msg, ts, out)
        elif kind == "trade":
            self._on_v2_trades(conn, msg, ts, out)
        elif kind in ("instrument_info", "klineV2", "candle"):
            self.ignore("legacy_v2")  # Bybit API v2 (retired 2023): only old recordings have it
        else:
            self.ignore(f"topic.{kind}")

    def _on_op(self, msg: dict[str, Any]) -> None:
        op = msg.get("op") or (msg.get("request") or {}).get("op")
        if op in ("ping", "pong"):
            self.ignore("pong")
        elif msg.get("success") is False:
            raise AdapterError("exchange_error", str(msg.get("ret_msg")))
        elif op in ("subscribe", "unsubscribe"):
            self.ignore(op)
        else:
            raise AdapterError("unexpected_message", "no topic")

    # ---- books
    def _on_book(self, conn: str, topic: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        d = msg["data"]
        inst = d["s"]
        sym = self._symbol(conn, inst)
        symbol = sym.normalized
        if symbol in self._bbo_only and topic.startswith("orderbook.1."):
            self._on_bbo_book(symbol, inst, conn, topic, msg, d, ts, out)
            return
        books = self.books
        sb = books.get(symbol) or books.add(symbol, inst)
        self._book_topic[symbol] = (conn, topic)
        try:
            u = d["u"]
            tstamp = _ns(msg.get("ts"))
            kind = msg.get("type")
            if kind == "snapshot" or (kind == "delta" and u == 1):
                if sb.state == SYNCED and sb.book.sequence == u and u != 1:
                    self.ignore("book_snapshot_repeat")
                    return
                sb.buffer.clear()  # a subscription starts with its snapshot: anything buffered is older
                books.snapshot(symbol, d["b"], d["a"], u, out, timestamp=tstamp, receipt_timestamp=ts)
            elif kind == "delta":
                books.delta(symbol, d["b"], d["a"], out, first=u, last=u, timestamp=tstamp, receipt_timestamp=ts)
            else:
                raise AdapterError("book_type", repr(kind))
        except Exception:
            books.malformed(symbol, out, ts)   # lost: the book is invalid from here, not silently behind
            raise

    def _on_bbo_book(self, symbol: str, inst: str, conn: str, topic: str, msg: dict[str, Any], d: dict[str, Any],
                     ts: int, out: Output) -> None:
        books = self._bbo_books
        if symbol not in books:
            books.add(symbol, inst)
        self._book_topic[symbol] = (conn, topic)
        tmp = Output()
        u = d["u"]
        if msg.get("type") == "snapshot" or u == 1:
            books.snapshot(symbol, d["b"], d["a"], u, tmp, timestamp=_ns(msg.get("ts")), receipt_timestamp=ts)
        else:
            books.delta(symbol, d["b"], d["a"], tmp, first=u, last=u, timestamp=_ns(msg.get("ts")),
                        receipt_timestamp=ts)
        out.actions.extend(tmp.actions)
        bbos = [e for e in tmp.events if isinstance(e, BBO)]
        out.events.extend(bbos)
        if not bbos:
            self.ignore("bbo_unchanged_or_resyncing")

    # ---- Bybit API v2 (retired in 2023): replay of old recordings only
    def _on_v2_book(self, conn: str, rest: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        # v2 levels carry an id, a side and a JSON-number size; cross_seq is not continuous per topic,
        # so these books are checked for crossing only.
        inst = rest.rsplit(".", 1)[-1]
        sym = self._symbol(conn, inst)
        symbol = sym.normalized
        books = self.books
        sb = books.add(symbol, inst)
        self._book_topic[symbol] = (conn, msg["topic"])
        data = msg["data"]
        try:
            e6 = msg.get("timestamp_e6") or msg.get("timestampE6")
            tstamp = int(e6) * 1000 if e6 else None
            if msg.get("type") == "snapshot":
                rows = data if isinstance(data, list) else (data.get("order_book") or data.get("orderBook") or [])
                bids, asks = _v2_levels(rows, ())
                sb.buffer.clear()
                books.snapshot(symbol, bids, asks, None, out, timestamp=tstamp, receipt_timestamp=ts)
                return
            bids, asks = _v2_levels(list(data.get("insert") or ()) + list(data.get("update") or ()),
                                    data.get("delete") or ())
            books.delta(symbol, bids, asks, out, timestamp=tstamp, receipt_timestamp=ts)
        except Exception:
            books.malformed(symbol, out, ts)   # lost: the book is invalid from here, not silently behind
            raise

    def _on_v2_trades(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        for d in msg["data"]:
            inst = d["symbol"]
            sym = self._symbol(conn, inst)
            ms = d.get("trade_time_ms") or d.get("tradeTimeMs")
            tstamp = int(ms) * _MS if ms else _iso_ns(d["timestamp"])
            out.events.append(Trade(EXCHANGE, sym.normalized, d["side"].lower(), dec_str(d["size"]),
                                    dec_str(d["price"]), id=d.get("trade_id") or d.get("tradeId"),
                                    exchange_symbol=inst, timestamp=tstamp, receipt_timestamp=ts))

    def handle_resync(self, symbol: str, ts: int, out: Output) -> None:
        where = self._book_topic.get(symbol)
        if where is None:
            raise AdapterError("resync_unknown_symbol", symbol)
        if self.resubscribes.request(symbol, ts, where[0]):
            self._resubscribe(symbol, out)

    def _resubscribe(self, symbol: str, out: Output) -> None:
        conn, topic = self._book_topic[symbol]
        out.actions.append(Send(conn, orjson.dumps({"op": "unsubscribe", "args": [topic]}).decode()))
        out.actions.append(Send(conn, orjson.dumps({"op": "subscribe", "args": [topic]}).decode()))
        self.count("book.resubscribe")

    def _book_settled(self, symbol: str) -> bool:
        # Top-of-book-only symbols keep their book in _bbo_books.
        books = self._bbo_books if symbol in self._bbo_books and symbol not in self.books else self.books
        return books.settled(symbol)

    def handle_timer(self, ts: int, out: Output) -> None:
        for symbol in self.resubscribes.due(ts, self._book_settled):
            self._resubscribe(symbol, out)

    def handle_system_status(self, body: str | bytes, ts: int, out: Output) -> None:
        doc = orjson.loads(body)
        rows = doc.get("result", {}).get("list") if isinstance(doc, dict) and doc.get("retCode") == 0 else None
        if not isinstance(rows, list):
            raise AdapterError("bad_system_status", str(doc)[:200])
        ours = {_PRODUCT[c] for c in self._categories()}
        self.system.clear()   # the answer lists every event: what is not ongoing in it is over
        for row in rows:
            title, key = row.get("title") or "maintenance", row.get("id") or (row.get("title"), row.get("begin"))
            services, products = set(row.get("serviceTypes") or ()), set(row.get("product") or ())
            if not services & _MARKET_SERVICES or not products & ours or str(row.get("env", 1)) != "1":
                continue
            if row.get("state") == "scheduled":
                self.system.notice("scheduled", f"maintenance scheduled from {ms_text(row.get('begin'))} to "
                                                f"{ms_text(row.get('end'))}: {title}", key=(key, row.get("begin")))
            elif row.get("state") == "ongoing":
                whole = ours <= products and not row.get("uidSuffix")
                self.system.set(key, MAINTENANCE if whole else PARTIAL,
                                f"Bybit maintenance until {ms_text(row.get('end'))}: {title}"
                                + ("" if whole else " (part of the products or accounts)"))
        self.system.set("none", ONLINE, "Bybit: no maintenance in progress")   # the reason when none is set
        self.system.publish(ts, out)

    def _categories(self) -> set[str]:
        """The categories of the subscribed symbols."""
        return {self.category(s) for s in self.subscription.all_symbols()}

    def handle_close(self, conn: str, ts: int, reason: str, out: Output) -> None:
        syms = [s for s, (c, _) in self._book_topic.items() if c == conn]
        self.resubscribes.forget(syms)
        self.books.invalidate_all("disconnected", out, symbols=[s for s in syms if s in self.books],
                                  receipt_timestamp=ts, resync=False)
        # Top-of-book-only books publish no Gap (their consumers see only BBO): reset them quietly.
        self._bbo_books.invalidate_all("disconnected", Output(), symbols=[s for s in syms if s in self._bbo_books],
                                       receipt_timestamp=ts, resync=False)
        for key in [k for k in self._tickers if k[0] == conn]:
            del self._tickers[key]

    # ---- trades, tickers, candles, liquidations
    def _on_trades(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        for d in msg["data"]:
            inst = d["s"]
            sym = self._symbol(conn, inst)
            out.events.append(Trade(EXCHANGE, sym.normalized, d["S"].lower(), d["v"], d["p"], id=d.get("i"),
                                    type="block" if d.get("BT") else None, exchange_symbol=inst,
                                    timestamp=_ns(d.get("T")), receipt_timestamp=ts))

    def _wants(self, channel: str, symbol: str) -> bool:
        sub = self.subscription
        if symbol in sub.channels.get(channel, ()):
            return True
        # A stream nobody subscribed by channel (a foreign capture): publish everything it carries.
        return not any(symbol in sub.channels.get(c, ()) for c in (TICKER, FUNDING, OPEN_INTEREST, INDEX, MARK))

    def _on_ticker(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        d = msg["data"]
        inst = d["symbol"]
        sym = self._symbol(conn, inst)
        key = (conn, inst)
        if msg.get("type") == "delta":
            state = self._tickers.get(key)
            if state is None:
                self.ignore("ticker_delta_before_snapshot")
                return
            state.update(d)
        else:
            state = self._tickers[key] = dict(d)
        tstamp = _ns(msg.get("ts"))
        ev = out.events
        before = len(ev)
        self._ticker_events(conn, sym, inst, d, state, tstamp, ts, ev)
        if len(ev) == before:
            self.ignore("ticker_no_published_field")

    def _ticker_events(self, conn: str, sym: Symbol, inst: str, d: dict[str, Any], state: dict[str, Any],
                       tstamp: int | None, ts: int, ev: list[Any]) -> None:
        symbol = sym.normalized
        inverse = conn == "inverse"
        if self._wants(TICKER, symbol) and any(f in d for f in _TICKER_FIELDS):
            volume = state.get("turnover24h") if inverse else state.get("volume24h")
            ev.append(Ticker(EXCHANGE, symbol, bid=_opt(state.get("bid1Price", state.get("bidPrice"))),
                             ask=_opt(state.get("ask1Price", state.get("askPrice"))),
                             last=_opt(state.get("lastPrice")), volume=_opt(volume), exchange_symbol=inst,
                             timestamp=tstamp, receipt_timestamp=ts))
        if sym.kind == SPOT:
            return
        if (sym.kind == PERPETUAL and _opt(state.get("fundingRate")) is not None and self._wants(FUNDING, symbol)
                and any(f in d for f in ("fundingRate", "nextFundingTime"))):
            ev.append(Funding(EXCHANGE, symbol, state["fundingRate"], mark_price=_opt(state.get("markPrice")),
                              next_funding_time=_ns(state.get("nextFundingTime")), exchange_symbol=inst,
                              timestamp=tstamp, receipt_timestamp=ts))
        if _opt(d.get("openInterest")) is not None and self._wants(OPEN_INTEREST, symbol):
            ev.append(OpenInterest(EXCHANGE, symbol, d["openInterest"], exchange_symbol=inst, timestamp=tstamp,
                                   receipt_timestamp=ts))
        if _opt(d.get("indexPrice")) is not None and self._wants(INDEX, symbol):
            ev.append(IndexPrice(EXCHANGE, symbol, d["indexPrice"], exchange_symbol=inst, timestamp=tstamp,
                                 receipt_timestamp=ts))
        if _opt(d.get("markPrice")) is not None and self._wants(MARK, symbol):
            ev.append(MarkPrice(EXCHANGE, symbol, d["markPrice"], exchange_symbol=inst, timestamp=tstamp,
                                receipt_timestamp=ts))

    def _on_kline(self, conn: str, rest: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        interval, _, inst = rest.partition(".")
        name = _BYBIT_TO_INTERVAL.get(interval)
        if name is None:
            raise AdapterError("candle_interval", interval)
        sym = self._symbol(conn, inst)
        inverse = conn == "inverse"
        for d in msg["data"]:
            volume = d["turnover"] if inverse else d["volume"]
            out.events.append(Candle(EXCHANGE, sym.normalized, int(d["start"]) * _MS, int(d["end"]) * _MS, name,
                                     d["open"], d["close"], d["high"], d["low"], volume, closed=bool(d["confirm"]),
                                     exchange_symbol=inst, timestamp=_ns(d.get("timestamp")), receipt_timestamp=ts))

    def _on_all_liquidation(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        for d in msg["data"]:
            inst = d["s"]
            sym = self._symbol(conn, inst)
            out.events.append(Liquidation(EXCHANGE, sym.normalized, _order_side(d["S"]), d["v"], d["p"],
                                          status="filled", exchange_symbol=inst, timestamp=_ns(d.get("T")),
                                          receipt_timestamp=ts))

    def _on_liquidation(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        d = msg["data"]
        if not isinstance(d, dict) or "size" not in d:
            self.ignore("legacy_v2")  # v2 rows carry 'qty'/'time'
            return
        inst = d["symbol"]
        sym = self._symbol(conn, inst)
        out.events.append(Liquidation(EXCHANGE, sym.normalized, _order_side(d["side"]), d["size"], d["price"],
                                      status="filled", exchange_symbol=inst, timestamp=_ns(d.get("updatedTime")),
                                      receipt_timestamp=ts))


def _v2_levels(rows: Iterable[Mapping[str, Any]], deletes: Iterable[Mapping[str, Any]]
               ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    bids: list[tuple[str, str]] = []
    asks: list[tuple[str, str]] = []
    for r in rows:
        (bids if r["side"] == "Buy" else asks).append((dec_str(r["price"]), dec_str(r["size"])))
    for r in deletes:
        (bids if r["side"] == "Buy" else asks).append((dec_str(r["price"]), "0"))
    return bids, asks


def _iso_ns(text: str) -> int:
    """ISO time of the retired liquidation records, to the millisecond (as Bybit's ms stamps)."""
    return iso_ns(text) // _MS * _MS


def _order_side(position_side: str) -> str:
    """Bybit names the liquidated position's side ('Buy' = a long); the order that closes it is the opposite."""
    if position_side == "Buy":
        return "sell"
    if position_side == "Sell":
        return "buy"
    raise AdapterError("liquidation_side", repr(position_side))
