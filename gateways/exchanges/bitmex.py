"""BitMEX adapter (realtime websocket API v1): perpetuals, dated futures, spot, public tables.

Sans-I/O: raw websocket frames and REST bodies in, normalized events and actions out
(see gateways/adapter.py). Channels and the BitMEX table each one uses:

=============  =========================================  ==========================================
channel        BitMEX subscription (``op: subscribe``)    events
=============  =========================================  ==========================================
trades         ``trade:<sym>``                            Trade (id = trdMatchID, amount = contracts)
l2_book        ``orderBookL2:<sym>``                      L2Snapshot, L2Delta, BBO (top changes)
ticker         ``quote:<sym>``                            Ticker (bid/ask)
bbo            ``quote:<sym>``                            BBO (only for symbols without l2_book)
candles        ``tradeBin1m|5m|1h|1d:<sym>``              Candle (closed bins)
funding        ``instrument:<sym>`` (+ ``funding`` rows)  Funding (rate, predicted, next time)
open_interest  ``instrument:<sym>``                       OpenInterest (openInterest, contracts)
mark           ``instrument:<sym>``                       MarkPrice (markPrice)
index          ``instrument:<sym>``                       IndexPrice (indicativeSettlePrice)
liquidations   ``liquidation:<sym>``                      Liquidation (insert: open, update: partial)
=============  =========================================  ==========================================

Books: BitMEX has no sequence numbers or checksums. ``orderBookL2`` sends a
``partial`` (the full book, one row per price level keyed by ``id``) and then
``insert``/``update``/``delete`` rows by id. Today's rows carry ``price`` in every
action; older recordings send it only on ``partial``/``insert``, so the adapter keeps
id → (side, price) per symbol. Integrity checks: an ``update``/``delete`` of an id
the book does not hold, an ``insert`` of an id it already holds, and a crossed book
each invalidate that symbol's book (Gap) and resubscribe ``orderBookL2`` for it alone
(BitMEX answers with a fresh ``partial``: Reset + L2Snapshot). Rows received before a
symbol's ``partial`` are dropped (counted ``ignored.book_before_partial``), as BitMEX
documents.

Symbols: from ``GET /api/v1/instrument/active``. XBT is BTC everywhere; ``typ``
FFWCSX → perpetual (``XBTUSD`` → ``BTC-USD-PERP``, ``SOLUSDT`` → ``SOL-USDT-PERP``),
FFCCSX → future (``XRPU21`` → ``XRP-BTC-20210924``), IFXXXP → spot (``XBT_USDT`` →
``BTC-USDT``), OCECCS/OPECCS → options. Tick and lot size come from the row; contract
size is |multiplier| / |underlyingToSettleMultiplier| (quote units) for inverse
contracts, multiplier / quoteToSettleMultiplier (base units) for linear ones, and
unknown (None) for quanto contracts, whose value depends on a price. ``instrument``
``partial`` rows of unknown symbols define them too (tardis recordings).

Values: BitMEX sends prices and sizes as JSON numbers; they are normalized with
:func:`cryptofeed_types.dec_str` (the float's shortest repr, plain notation).
Timestamps are ISO-8601 (ms) converted to integer ns. ``trade`` and ``quote``
``partial`` rows (the latest trade/quote at subscription time) are published like
inserts; a trade already published (same trdMatchID, e.g. after a resubscription)
is not repeated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, ClassVar

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
)
from cryptofeed_types import iso_ns as _iso_ns
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
from gateways.books import GAP, SYNCED, Books, no_rule
from gateways.resync import Resubscriber

EXCHANGE = "BITMEX"
WS = "ws"

# BitMEX rejects a subscribe request of more than 20 args ("Too many args sent. Max length
# is 20"); the connection's request budget (the welcome message's "limit") is small: space them out.
BATCH = 20
SUBSCRIBE_INTERVAL = 0.5
PING_INTERVAL = 15.0  # BitMEX answers the text "ping" with "pong"; silence is how dead links show
# BitMEX publishes no limit on subscribe messages (it limits connections per IP); one symbol is
# resubscribed at most every 10 s, and again after 30 s if its partial never comes.
RESUBSCRIBE_MIN_INTERVAL_NS = 10_000_000_000
RESUBSCRIBE_RETRY_NS = 30_000_000_000

# Currency codes BitMEX spells its own way (XBt: satoshi-denominated settlement).
_CURRENCY = {"XBT": "BTC", "XBt": "BTC", "USDt": "USDT", "Gwei": "ETH", "LAMp": "USDT", "MUSDC": "USDC"}

# normalized candle interval -> (BitMEX bin, length in ns)
CANDLE_INTERVALS: dict[str, tuple[str, int]] = {
    "1m": ("1m", 60 * 10**9), "5m": ("5m", 300 * 10**9), "1h": ("1h", 3600 * 10**9), "1d": ("1d", 86400 * 10**9),
}
_BIN_TO_INTERVAL = {b: (name, length) for name, (b, length) in CANDLE_INTERVALS.items()}

_MS = 1_000_000
_INSTRUMENT_CHANNELS = (FUNDING, OPEN_INTEREST, MARK, INDEX)
_PERP_GUESS = re.compile(r"^([A-Z0-9]+?)(USDT|USDC|USD|EUR)$")
_FUTURE_GUESS = re.compile(r"^([A-Z0-9]+?)(USDT|USDC|USD)?([FGHJKMNQUVXZ])(\d\d)$")
_MONTHS = "FGHJKMNQUVXZ"
_FUNDING_FIELDS = ("fundingRate", "indicativeFundingRate", "fundingTimestamp")


def currency(code: str) -> str:
    """A BitMEX currency code in the common spelling (XBT/XBt → BTC, USDt → USDT)."""
    return _CURRENCY.get(code) or _CURRENCY.get(code.upper()) or code.upper()


def iso_ns(text: str | None) -> int | None:
    """'2021-07-22T22:36:10.014Z' -> integer ns (None or '' stays None)."""
    return _iso_ns(text) if text else None


def _num(v: Any) -> str | None:
    """A JSON number (or None) as an exact decimal string."""
    return None if v is None else dec_str(v)


def _contract_size(row: Mapping[str, Any]) -> Decimal | None:
    mult = row.get("multiplier")
    if not mult or row.get("isQuanto"):
        return None
    if row.get("isInverse"):
        u2s = row.get("underlyingToSettleMultiplier")
        return abs(Decimal(dec_str(mult)) / Decimal(dec_str(u2s))) if u2s else None
    q2s = row.get("quoteToSettleMultiplier")
    return abs(Decimal(dec_str(mult)) / Decimal(dec_str(q2s))) if q2s else None


def symbol_from_instrument(row: Mapping[str, Any]) -> Symbol | None:
    """A Symbol from one ``instrument`` row (REST or websocket); None for kinds we don't map
    (indices, spreads, prediction markets)."""
    typ = row.get("typ") or ""
    xs = row["symbol"]
    base = currency(row.get("underlying") or row.get("rootSymbol") or "")
    quote = currency(row.get("quoteCurrency") or "")
    if not base or not quote:
        return None
    meta: dict[str, Any] = {"exchange_symbol": xs, "tick_size": _num(row.get("tickSize")),
                            "lot_size": _num(row.get("lotSize"))}
    settle = row.get("settlCurrency")
    if settle:
        meta["settle"] = currency(settle)
    expiry = (row.get("expiry") or "")[:10].replace("-", "")
    if typ == "FFWCSX":
        return Symbol(base, quote, PERPETUAL, contract_size=_contract_size(row), **meta)
    if typ == "FFCCSX" and expiry:
        return Symbol(base, quote, FUTURE, expiry=expiry, contract_size=_contract_size(row), **meta)
    if typ == "IFXXXP":
        meta.pop("settle", None)
        return Symbol(base, quote, SPOT, **meta)
    if typ in ("OCECCS", "OPECCS") and expiry and row.get("optionStrikePrice") is not None:
        return Symbol(base, quote, OPTION, expiry=expiry, strike=dec_str(row["optionStrikePrice"]),
                      option_type="C" if typ == "OCECCS" else "P", contract_size=_contract_size(row), **meta)
    return None


def _last_friday(year: int, month: int) -> str:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    day = nxt - timedelta(days=1)
    day -= timedelta(days=(day.weekday() - 4) % 7)
    return day.strftime("%Y%m%d")


def guess_symbol(xs: str) -> Symbol | None:
    """A Symbol from a BitMEX id alone, for instruments never loaded (recordings of delisted
    contracts): ``XBTUSD``/``SOLUSDT`` → perpetual; ``XBTZ21`` → BTC-USD future, ``EOSM19`` →
    EOS-BTC future (alt futures are XBT-quoted unless the id names the quote), expiring on
    the month's last Friday (BitMEX's schedule). None when the id fits neither pattern."""
    m = _PERP_GUESS.match(xs)
    if m is not None:
        return Symbol(currency(m.group(1)), m.group(2), PERPETUAL, exchange_symbol=xs)
    m = _FUTURE_GUESS.match(xs)
    if m is not None:
        root, quote, month, yy = m.groups()
        if quote is None:
            quote = "USD" if root == "XBT" else "BTC"
        expiry = _last_friday(2000 + int(yy), _MONTHS.index(month) + 1)
        return Symbol(currency(root), quote, FUTURE, expiry=expiry, exchange_symbol=xs)
    return None


class BitMEX(Adapter):
    """BitMEX perpetuals, futures and spot: trades, full L2 book, quotes, instrument stats, liquidations."""

    exchange: ClassVar[str] = EXCHANGE
    urls: ClassVar[Mapping[str, str]] = {
        "rest": "https://www.bitmex.com",
        WS: "wss://ws.bitmex.com/realtime",
    }
    # REST: 120 requests per minute (unauthenticated: 30); instruments is one request.
    rest_weight_per_minute: ClassVar[int] = 30
    # Every REST answer says how many requests this IP has left in the current minute.
    rest_remaining_header: ClassVar[str | None] = "x-ratelimit-remaining"
    # The timer retries resubscriptions whose partial never came and sends deferred ones.
    timer_interval = 5.0

    def __init__(self, subscription: Subscription, *, urls: Mapping[str, str] | None = None,
                 symbols: Iterable[Symbol] | None = None) -> None:
        super().__init__(subscription, urls=urls, symbols=symbols)
        self.books = Books(EXCHANGE, no_rule, counters=self.counters)
        self._ids: dict[str, dict[tuple[int, str], str]] = {}     # symbol -> (id, side) -> price
        self._instrument: dict[str, dict[str, Any]] = {}         # exchange id -> merged instrument row
        self._liquidations: dict[str, tuple[str, str]] = {}      # orderID -> (side, price)
        self._last_trade: dict[str, str] = {}                    # symbol -> last published trdMatchID
        self.resubscribes = Resubscriber(self.counters, min_interval_ns=RESUBSCRIBE_MIN_INTERVAL_NS,
                                         retry_ns=RESUBSCRIBE_RETRY_NS)
        self._any = not any(subscription.channels.values())     # no subscription: publish everything
        self._wanted = {ch: frozenset(subscription.symbols(ch)) for ch in subscription.channels}
        self._bbo_only = self._wanted.get(BBO_CHANNEL, frozenset()) - self._wanted.get(L2_BOOK, frozenset())

    def _wants(self, channel: str, symbol: str) -> bool:
        return self._any or symbol in self._wanted.get(channel, ())

    # ---------------------------------------------------------------- instruments
    def instrument_requests(self) -> list[Fetch]:
        return [Fetch(self.url["rest"] + "/api/v1/instrument/active", 1, "instruments")]

    def parse_instruments(self, url: str, body: str | bytes) -> list[Symbol]:
        rows = orjson.loads(body)
        if not isinstance(rows, list):
            raise AdapterError("instruments_error", f"{url}: {str(rows)[:200]}")
        out = []
        for row in rows:
            try:
                sym = symbol_from_instrument(row)
            except (ValueError, KeyError, TypeError, ArithmeticError):
                sym = None
            if sym is None:
                self.count("instruments.skipped")
            else:
                out.append(sym)
        return out

    def _symbol(self, xs: str) -> Symbol:
        sym = self.from_exchange.get(xs)
        if sym is None:
            sym = guess_symbol(xs)
            if sym is None:
                raise AdapterError("unknown_symbol", xs)
            self.set_symbols([sym])
            self.count("symbols.guessed")
        return sym

    # ---------------------------------------------------------------- subscriptions
    def topics(self) -> list[tuple[str, str, str]]:
        """(BitMEX topic, channel, normalized symbol) for the whole subscription."""
        out: list[tuple[str, str, str]] = []
        seen: set[str] = set()

        def add(topic: str, channel: str, symbol: str) -> None:
            out.append((topic, channel, symbol))
            seen.add(topic)

        for channel, table in ((TRADES, "trade"), (L2_BOOK, "orderBookL2"), (LIQUIDATIONS, "liquidation")):
            for s in self.subscribed(channel):
                add(f"{table}:{self.exchange_symbol(s)}", channel, s)
        for s in self.subscribed(TICKER) + self.known_symbols(sorted(self._bbo_only)):
            topic = f"quote:{self.exchange_symbol(s)}"
            if topic not in seen:
                add(topic, TICKER if s in self._wanted.get(TICKER, ()) else BBO_CHANNEL, s)
        for channel in _INSTRUMENT_CHANNELS:
            for s in self.subscribed(channel):
                topic = f"instrument:{self.exchange_symbol(s)}"
                kind = self.symbols[s].kind
                if kind == SPOT or (channel == FUNDING and kind != PERPETUAL):
                    self.count(f"subscription.unsupported.{channel}")
                    continue
                if topic not in seen:
                    add(topic, channel, s)
        if self.subscribed(CANDLES):
            interval = CANDLE_INTERVALS.get(self.candle_interval)
            if interval is None:
                raise ValueError(f"BitMEX candles: interval one of {sorted(CANDLE_INTERVALS)}, "
                                 f"got {self.candle_interval!r}")
            for s in self.subscribed(CANDLES):
                add(f"tradeBin{interval[0]}:{self.exchange_symbol(s)}", CANDLES, s)
        return out

    def build_connections(self) -> list[ConnectionSpec]:
        topics = self.topics()
        args = [t for t, _, _ in topics]
        msgs = tuple(orjson.dumps({"op": "subscribe", "args": args[i:i + BATCH]}).decode()
                     for i in range(0, len(args), BATCH))
        return [ConnectionSpec(WS, self.url[WS], subscribe=msgs, subscribe_interval=SUBSCRIBE_INTERVAL,
                               ping="ping", ping_interval=PING_INTERVAL, silence_timeout=30.0,
                               streams=tuple((ch, s) for _, ch, s in topics))]

    def match_connection(self, url: str) -> str | None:
        return WS

    # ---------------------------------------------------------------- messages
    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        if raw == "pong" or raw == b"pong":
            self.ignore("pong")
            return
        msg = orjson.loads(raw)
        if not isinstance(msg, dict):
            raise AdapterError("unexpected_message", "not a JSON object")
        table = msg.get("table")
        if table is None:
            self._control(msg)
            return
        action = msg.get("action")
        data = msg.get("data")
        if not isinstance(data, list):
            raise AdapterError("unexpected_message", "data is not a list")
        if table == "orderBookL2" or table == "orderBookL2_25":
            self._on_book(action, data, msg.get("filter"), ts, out)
        elif table == "trade":
            self._on_trades(action, data, ts, out)
        elif table == "quote":
            self._on_quotes(data, ts, out)
        elif table == "instrument":
            self._on_instrument(action, data, ts, out)
        elif table == "funding":
            self._on_funding_table(data, ts, out)
        elif table == "liquidation":
            self._on_liquidation(action, data, ts, out)
        elif table.startswith("tradeBin"):
            self._on_candles(table[8:], data, ts, out)
        else:
            self.ignore(f"table.{table}")

    def _control(self, msg: dict[str, Any]) -> None:
        if "info" in msg:
            self.ignore("welcome")
        elif msg.get("success") and "subscribe" in msg:
            self.ignore("subscribed")
        elif msg.get("success") and "unsubscribe" in msg:
            self.ignore("unsubscribed")
        elif "error" in msg:
            raise AdapterError("exchange_error", f"{msg.get('status')} {msg.get('error')}")
        else:
            raise AdapterError("unexpected_message", "no table")

    # ---- books
    def _on_book(self, action: str | None, data: list[dict[str, Any]], flt: Any, ts: int, out: Output) -> None:
        groups: dict[str, list[dict[str, Any]]] = {}
        try:
            for row in data:
                groups.setdefault(row["symbol"], []).append(row)
        except (KeyError, TypeError):
            if action not in ("insert", "update", "delete"):
                raise
            # Whose rows these were is unknown, and BitMEX has no sequence numbers to reveal a lost
            # update later: every book may now miss one for good.
            synced = [sb.symbol for sb in self.books if sb.state == SYNCED]
            for symbol in synced:
                self._ids.pop(symbol, None)
            self.books.invalidate_all("malformed", out, receipt_timestamp=ts, resync=True, symbols=synced)
            raise
        if action == "partial":
            if not groups and isinstance(flt, dict) and flt.get("symbol"):
                groups[flt["symbol"]] = []  # an empty book
            for xs, rows in groups.items():
                self._partial(xs, rows, ts, out)
        elif action in ("insert", "update", "delete"):
            for xs, rows in groups.items():
                self._delta(xs, action, rows, ts, out)
        else:
            raise AdapterError("book_action", repr(action))

    def _partial(self, xs: str, rows: list[dict[str, Any]], ts: int, out: Output) -> None:
        symbol = self._symbol(xs).normalized
        books = self.books
        sb = books.add(symbol, xs)
        ids: dict[tuple[int, str], str] = {}
        bids: list[tuple[str, str]] = []
        asks: list[tuple[str, str]] = []
        tstamp = None
        for row in rows:
            price = dec_str(row["price"])
            side = row["side"]
            ids[(row["id"], side)] = price
            (bids if side == "Buy" else asks).append((price, str(row["size"])))
            t = row.get("timestamp")
            if t:   # absent, null or '' (no timestamp): skipped without a call per row
                tstamp = max(tstamp or 0, _iso_ns(t))
        self._ids[symbol] = ids
        # Rows of an earlier subscription buffered by Books must not be replayed onto this partial.
        sb.buffer.clear()
        if not books.snapshot(symbol, bids, asks, None, out, timestamp=tstamp, receipt_timestamp=ts):
            self._ids.pop(symbol, None)

    def _delta(self, xs: str, action: str, rows: list[dict[str, Any]], ts: int, out: Output) -> None:
        symbol = self._symbol(xs).normalized
        sb = self.books.get(symbol)
        if sb is None or sb.state != SYNCED:
            self.ignore("book_before_partial")
            return
        try:
            ids = self._ids[symbol]
            bids: list[tuple[str, str]] = []
            asks: list[tuple[str, str]] = []
            tstamp = None
            for row in rows:
                side = row["side"]
                key = (row["id"], side)
                known = ids.get(key)
                levels = bids if side == "Buy" else asks
                if action == "insert":
                    if known is not None:
                        self._broken(symbol, "duplicate_id", out, tstamp, ts)
                        return
                    price = dec_str(row["price"])
                    ids[key] = price
                    levels.append((price, str(row["size"])))
                else:
                    if known is None:
                        self._broken(symbol, "unknown_id", out, tstamp, ts)
                        return
                    if action == "delete":
                        del ids[key]
                        levels.append((known, "0"))
                    else:
                        price = known
                        if "price" in row:
                            new_price = dec_str(row["price"])
                            if new_price != price:  # a level id moved: remove the old price
                                levels.append((price, "0"))
                                price = new_price
                                ids[key] = price
                        levels.append((price, str(row["size"])))
                t = row.get("timestamp")
                if t:   # absent, null or '' (no timestamp): skipped without a call per row
                    tstamp = max(tstamp or 0, _iso_ns(t))
            if self.books.delta(symbol, bids, asks, out, timestamp=tstamp, receipt_timestamp=ts) == GAP:
                self._ids.pop(symbol, None)
        except Exception:
            # A malformed row: the id map may hold part of the message, the book none of it
            # (BitMEX has no sequence numbers to catch the lost update later).
            self._ids.pop(symbol, None)
            self.books.malformed(symbol, out, ts)
            raise

    def _broken(self, symbol: str, reason: str, out: Output, tstamp: int | None, ts: int) -> None:
        self._ids.pop(symbol, None)
        self.books.invalidate(symbol, reason, out, timestamp=tstamp, receipt_timestamp=ts)

    def handle_resync(self, symbol: str, ts: int, out: Output) -> None:
        if symbol not in self.to_exchange:
            raise AdapterError("resync_unknown_symbol", symbol)
        if self.resubscribes.request(symbol, ts, WS):
            self._resubscribe(symbol, out)

    def _resubscribe(self, symbol: str, out: Output) -> None:
        arg = [f"orderBookL2:{self.to_exchange[symbol]}"]
        out.actions.append(Send(WS, orjson.dumps({"op": "unsubscribe", "args": arg}).decode()))
        out.actions.append(Send(WS, orjson.dumps({"op": "subscribe", "args": arg}).decode()))
        self.count("book.resubscribe")

    def handle_timer(self, ts: int, out: Output) -> None:
        for symbol in self.resubscribes.due(ts, self.books.settled):
            self._resubscribe(symbol, out)

    def handle_close(self, conn: str, ts: int, reason: str, out: Output) -> None:
        # The driver reconnects and resubscribes: the new partials rebuild these books.
        self.resubscribes.forget()
        self._ids.clear()
        self.books.invalidate_all("disconnected", out, receipt_timestamp=ts, resync=False)

    # ---- other tables
    def _on_trades(self, action: str | None, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        last = self._last_trade
        for d in data:
            xs = d["symbol"]
            sym = self._symbol(xs)
            tid = d.get("trdMatchID")
            if action == "partial" and tid is not None and last.get(sym.normalized) == tid:
                self.ignore("trade_repeated")
                continue
            if tid is not None:
                last[sym.normalized] = tid
            out.events.append(Trade(EXCHANGE, sym.normalized, d["side"].lower(), d["size"], d["price"], id=tid,
                                    exchange_symbol=xs, timestamp=iso_ns(d.get("timestamp")),
                                    receipt_timestamp=ts))
        if not data:
            self.ignore("empty_partial")

    def _on_quotes(self, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        for d in data:
            xs = d["symbol"]
            symbol = self._symbol(xs).normalized
            tstamp = iso_ns(d.get("timestamp"))
            emitted = False
            if self._wants(TICKER, symbol):
                out.events.append(Ticker(EXCHANGE, symbol, bid=d.get("bidPrice"), ask=d.get("askPrice"),
                                         exchange_symbol=xs, timestamp=tstamp, receipt_timestamp=ts))
                emitted = True
            if symbol in self._bbo_only:
                out.events.append(BBO(EXCHANGE, symbol, bid=d.get("bidPrice"), bid_size=d.get("bidSize"),
                                      ask=d.get("askPrice"), ask_size=d.get("askSize"), exchange_symbol=xs,
                                      timestamp=tstamp, receipt_timestamp=ts))
                emitted = True
            if not emitted:
                self.ignore("quote_unsubscribed")
        if not data:
            self.ignore("empty_partial")

    def _on_instrument(self, action: str | None, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        n = len(out.events)
        for d in data:
            xs = d["symbol"]
            if action == "partial" and xs not in self.from_exchange:
                try:
                    sym = symbol_from_instrument(d)
                except (ValueError, KeyError, TypeError, ArithmeticError):
                    sym = None
                if sym is not None:
                    self.set_symbols([sym])
                    self.count("symbols.from_instrument_table")
            state = self._instrument.get(xs)
            if state is None or action == "partial":
                state = self._instrument[xs] = {}
            state.update(d)
            if xs not in self.from_exchange and guess_symbol(xs) is None:
                continue  # an index (.BXBT) or an instrument kind we don't map
            symbol = self._symbol(xs).normalized
            tstamp = iso_ns(d.get("timestamp") or state.get("timestamp"))
            if d.get("openInterest") is not None and self._wants(OPEN_INTEREST, symbol):
                out.events.append(OpenInterest(EXCHANGE, symbol, d["openInterest"], exchange_symbol=xs,
                                               timestamp=tstamp, receipt_timestamp=ts))
            if d.get("markPrice") is not None and self._wants(MARK, symbol):
                out.events.append(MarkPrice(EXCHANGE, symbol, d["markPrice"], exchange_symbol=xs,
                                            timestamp=tstamp, receipt_timestamp=ts))
            if d.get("indicativeSettlePrice") is not None and self._wants(INDEX, symbol):
                out.events.append(IndexPrice(EXCHANGE, symbol, d["indicativeSettlePrice"], exchange_symbol=xs,
                                             timestamp=tstamp, receipt_timestamp=ts))
            if state.get("fundingRate") is not None and any(f in d for f in _FUNDING_FIELDS) \
                    and self._wants(FUNDING, symbol):
                out.events.append(Funding(EXCHANGE, symbol, state["fundingRate"],
                                          predicted_rate=state.get("indicativeFundingRate"),
                                          next_funding_time=iso_ns(state.get("fundingTimestamp")),
                                          exchange_symbol=xs, timestamp=tstamp, receipt_timestamp=ts))
        if len(out.events) == n:
            self.ignore("instrument_other_fields")

    def _on_funding_table(self, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        for d in data:
            xs = d["symbol"]
            symbol = self._symbol(xs).normalized
            out.events.append(Funding(EXCHANGE, symbol, d["fundingRate"], exchange_symbol=xs,
                                      timestamp=iso_ns(d.get("timestamp")), receipt_timestamp=ts))
        if not data:
            self.ignore("empty_partial")

    def _on_liquidation(self, action: str | None, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        n = len(out.events)
        for d in data:
            oid = d["orderID"]
            if action == "delete":
                self._liquidations.pop(oid, None)
                continue
            xs = d["symbol"]
            symbol = self._symbol(xs).normalized
            known = self._liquidations.get(oid)
            side = d.get("side") or (known[0] if known else None)
            price = d.get("price")
            price = dec_str(price) if price is not None else (known[1] if known else None)
            if side is None or price is None or d.get("leavesQty") is None:
                raise AdapterError("liquidation_incomplete", oid)
            self._liquidations[oid] = (side, price)
            if len(self._liquidations) > 10_000:  # deletes can be missed across reconnects
                self._liquidations.pop(next(iter(self._liquidations)))
            out.events.append(Liquidation(EXCHANGE, symbol, side.lower(), d["leavesQty"], price, id=oid,
                                          status="partial" if action == "update" else "open",
                                          exchange_symbol=xs, timestamp=iso_ns(d.get("timestamp")),
                                          receipt_timestamp=ts))
        if len(out.events) == n:
            self.ignore("liquidation_removed" if action == "delete" else "empty_partial")

    def _on_candles(self, bin_size: str, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        interval = _BIN_TO_INTERVAL.get(bin_size)
        if interval is None:
            raise AdapterError("candle_interval", bin_size)
        name, length = interval
        for d in data:
            xs = d["symbol"]
            symbol = self._symbol(xs).normalized
            # A bin's timestamp is its END (BitMEX labels bins by close time).
            end = iso_ns(d["timestamp"])
            if end is None:
                raise AdapterError("bad_candle_time", repr(d["timestamp"]))
            volume = d.get("homeNotional")
            out.events.append(Candle(EXCHANGE, symbol, end - length, end - _MS, name, d["open"], d["close"],
                                     d["high"], d["low"], volume if volume is not None else d["volume"],
                                     trades=d.get("trades"), closed=True, exchange_symbol=xs, timestamp=end,
                                     receipt_timestamp=ts))
        if not data:
            self.ignore("empty_partial")
