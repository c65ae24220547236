"""OKX adapter (API v5): spot, perpetual swaps, dated futures and options, public channels.

Sans-I/O: raw websocket frames and REST bodies in, normalized events and actions out
(see gateways/adapter.py). Channels and the OKX channel each one uses:

=============  ==========================================================  ===========
channel        OKX channel (argument)                                      endpoint
=============  ==========================================================  ===========
trades         ``trades`` (instId)                                         public
l2_book        ``books`` (instId; ``book_channel`` may pick books-l2-tbt)  public
ticker         ``tickers`` (instId)                                        public
bbo            ``bbo-tbt`` (instId)                                        public
funding        ``funding-rate`` (instId, swaps)                            public
open_interest  ``open-interest`` (instId, derivatives)                     public
mark           ``mark-price`` (instId, derivatives)                        public
index          ``index-tickers`` (instId = the underlying index)           public
liquidations   ``liquidation-orders`` (instType; filtered to our symbols)  public
candles        ``candle<bar>`` (instId)                                    business
=============  ==========================================================  ===========

Books: every ``books`` push carries ``seqId``/``prevSeqId`` (a push with
``prevSeqId == seqId`` only confirms the sequence) and a CRC32 ``checksum`` of the
top 25 levels (``okx_checksum``), both verified on every push through
``gateways.books.Books`` with :func:`~gateways.books.prev_rule`. Older captures
(2022) lack seqId; their books are verified by checksum alone. A broken book is
resynced by unsubscribing and resubscribing that one instId (OKX answers with a
fresh snapshot); other symbols on the connection are untouched.

OKX announces a connection's closing for a service upgrade (``notice`` event, code 64008): the
adapter asks the driver to replace it at once, make-before-break (``Rotate``); at the handover the
new subscription's snapshot of a book kept synced through the overlap is dropped (counted
``ignored.handoff_snapshot``; a newer one is applied), so no book breaks.

Symbols: instIds are self-describing (``BTC-USDT``, ``BTC-USD-SWAP``,
``BTC-USD-220527``, ``BTC-USD-220527-30000-C``) and map to ``BTC-USDT``,
``BTC-USD-PERP``, ``BTC-USD-20220527``, ``BTC-USD-20220527-30000-C``; the REST
instruments add tick size (tickSz), lot size (lotSz), contract size (ctVal × ctMult)
and settlement currency. An instId missing from the loaded instruments is still
mapped from its text (counted as ``symbols.guessed``).

Values: OKX sends prices and sizes as JSON strings; they are kept verbatim.
Timestamps are milliseconds, converted to integer nanoseconds. Volumes (ticker,
candles) are in the base currency: ``vol24h``/``vol`` for spot, ``volCcy24h``/``volCcy``
for derivatives (whose ``vol`` counts contracts). Open interest is ``oi`` (contracts).
Frames may arrive raw-DEFLATE compressed (as in cryptofeed's captures): they are
inflated first.

Spread trading channels (``sprd-*``, instrument ``sprdId``) are not supported: their
messages are counted as ``ignored.spreads_not_supported``.

Retired OKEx API v3 (``"table"`` messages, recordings only): trades, tickers, depth,
funding, mark price, liquidations and index tickers are parsed so that old recordings
replay; JSON-number values there go through ``dec_str``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
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
    OrderBook,
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
    IncreasingIds,
    Output,
    Rotate,
    Send,
    Subscription,
)
from gateways.books import SYNCED, Books, prev_rule
from gateways.resync import Resubscriber
from gateways.system_status import MAINTENANCE, ONLINE, PARTIAL, POST_ONLY, ms_text

EXCHANGE = "OKX"
# OKX's notice that a connection will be closed soon for a service upgrade (replaced at once).
SERVICE_UPGRADE = "64008"
PUBLIC = "public"
BUSINESS = "business"

# OKX limits a subscribe message to 64 KiB and a connection to 480 subscribe
# requests an hour: few, large batches.
BATCH = 100
# A resubscribe is two of those requests (unsubscribe + subscribe): at most 200 an hour per
# connection (400 requests, the rest left for the reconnection's own subscribes), one symbol
# at most every 15 s, retried after 30 s when its snapshot never comes.
RESUBSCRIBES_PER_HOUR = 200
RESUBSCRIBE_MIN_INTERVAL_NS = 15_000_000_000
RESUBSCRIBE_RETRY_NS = 30_000_000_000
PING_INTERVAL = 20.0  # OKX closes a connection after 30 s without a message from us

_CHANNELS = {
    TRADES: "trades",
    TICKER: "tickers",
    BBO_CHANNEL: "bbo-tbt",
    FUNDING: "funding-rate",
    OPEN_INTEREST: "open-interest",
    MARK: "mark-price",
    INDEX: "index-tickers",
}
_BOOK_CHANNELS = ("books", "books-l2-tbt", "books50-l2-tbt")

# normalized candle interval -> (OKX bar, length in ms)
CANDLE_INTERVALS: dict[str, tuple[str, int]] = {
    "1m": ("1m", 60_000), "3m": ("3m", 180_000), "5m": ("5m", 300_000), "15m": ("15m", 900_000),
    "30m": ("30m", 1_800_000), "1h": ("1H", 3_600_000), "2h": ("2H", 7_200_000), "4h": ("4H", 14_400_000),
    "6h": ("6Hutc", 21_600_000), "12h": ("12Hutc", 43_200_000), "1d": ("1Dutc", 86_400_000),
    "1w": ("1Wutc", 604_800_000),
}
_BAR_TO_INTERVAL = {bar: (name, ms) for name, (bar, ms) in CANDLE_INTERVALS.items()}
_BAR_TO_INTERVAL.update({"6H": ("6h", 21_600_000), "12H": ("12h", 43_200_000), "1D": ("1d", 86_400_000),
                         "1W": ("1w", 604_800_000)})

# The ``status`` channel's maintenance service types (serviceType) that stop the whole exchange, and
# those that stop a batch of it; the others (block trading, bots, spread and copy trading, ...)
# concern no public market data.
_WIDE_SERVICES = {"0": "WebSocket", "5": "trading service"}
_PARTIAL_SERVICES = {"8": "trading service (a batch of accounts)", "9": "trading service (a batch of products)"}
_PHASES = {"ongoing": MAINTENANCE, "pre_open": POST_ONLY}   # no matching in either
_KIND_TO_INST_TYPE = {SPOT: "SPOT", PERPETUAL: "SWAP", FUTURE: "FUTURES", OPTION: "OPTION"}
_MS = 1_000_000


def _ns(ms: Any) -> int | None:
    """OKX millisecond timestamp (string or int) -> int ns; '' or None -> None."""
    if ms is None or ms == "":
        return None
    return int(ms) * _MS


def _opt(v: Any) -> Any:
    """OKX sends '' for absent values."""
    return None if v == "" else v


def _iso_ns(text: str | None) -> int | None:
    """'2019-08-01T00:00:08.930Z' -> int ns (OKEx v3 timestamps; None or '' stays None)."""
    return iso_ns(text) if text else None


def _expiry(yymmdd: str) -> str:
    if len(yymmdd) != 6 or not yymmdd.isdigit():
        raise ValueError(f"not an OKX expiry (YYMMDD): {yymmdd!r}")
    return "20" + yymmdd


def symbol_from_inst_id(inst_id: str, **metadata: Any) -> Symbol:
    """A Symbol from an OKX instId alone (``BTC-USDT``, ``BTC-USD-SWAP``, ``BTC-USD-220527``,
    ``BTC-USD-220527-30000-C``); ValueError for anything else."""
    parts = inst_id.split("-")
    if len(parts) == 2:
        return Symbol(parts[0], parts[1], SPOT, exchange_symbol=inst_id, **metadata)
    if len(parts) == 3 and parts[2] == "SWAP":
        return Symbol(parts[0], parts[1], PERPETUAL, exchange_symbol=inst_id, **metadata)
    if len(parts) == 3:
        return Symbol(parts[0], parts[1], FUTURE, expiry=_expiry(parts[2]), exchange_symbol=inst_id, **metadata)
    if len(parts) == 5 and parts[4] in ("C", "P"):
        return Symbol(parts[0], parts[1], OPTION, expiry=_expiry(parts[2]), strike=parts[3], option_type=parts[4],
                      exchange_symbol=inst_id, **metadata)
    raise ValueError(f"not an OKX instId: {inst_id!r}")


def symbol_from_instrument(item: Mapping[str, Any]) -> Symbol:
    """A Symbol (with tick/lot/contract size, settlement currency) from one REST instruments row."""
    inst_type = item.get("instType")
    meta: dict[str, Any] = {"tick_size": _opt(item.get("tickSz")), "lot_size": _opt(item.get("lotSz"))}
    if inst_type in ("SWAP", "FUTURES", "OPTION"):
        ct_val = _opt(item.get("ctVal"))
        ct_mult = _opt(item.get("ctMult"))
        if ct_val is not None:
            meta["contract_size"] = Decimal(ct_val) * Decimal(ct_mult or "1")
        settle = _opt(item.get("settleCcy"))
        if settle is not None:
            meta["settle"] = settle
    sym = symbol_from_inst_id(item["instId"], **meta)
    if _KIND_TO_INST_TYPE[sym.kind] != inst_type and not (inst_type == "MARGIN" and sym.kind == SPOT):
        raise ValueError(f"instId {item['instId']!r} does not look like instType {inst_type!r}")
    return sym


def index_id(sym: Symbol) -> str:
    """The instId of the index a symbol refers to (``BTC-USD`` for BTC-USD-PERP, ``BTC-USDT`` for spot)."""
    return f"{sym.base}-{sym.quote}"


def _okx_checksum_counted(counters: Any) -> Any:
    def check(book: OrderBook) -> int:
        counters["book.checksum_verified"] += 1
        return book.checksum_okx()
    return check


class OKXAdapter(Adapter):
    """OKX v5 spot, swaps, futures and options: trades, L2 book (seqId, checksum), tickers, bbo, funding, candles."""

    exchange: ClassVar[str] = EXCHANGE
    urls: ClassVar[Mapping[str, str]] = {
        "rest": "https://www.okx.com",
        PUBLIC: "wss://ws.okx.com:8443/ws/v5/public",
        BUSINESS: "wss://ws.okx.com:8443/ws/v5/business",
    }
    # /api/v5/public/instruments: 20 requests / 2 s per IP.
    rest_weight_per_minute: ClassVar[int] = 600
    # The timer retries resubscriptions whose snapshot never came and sends deferred ones.
    timer_interval = 5.0

    def __init__(self, subscription: Subscription, *, urls: Mapping[str, str] | None = None,
                 symbols: Iterable[Symbol] | None = None, book_channel: str = "books") -> None:
        if book_channel not in _BOOK_CHANNELS:
            raise ValueError(f"book_channel: one of {_BOOK_CHANNELS}, got {book_channel!r}")
        self.book_channel = book_channel
        super().__init__(subscription, urls=urls, symbols=symbols)
        self.books = Books(EXCHANGE, prev_rule, checksum=_okx_checksum_counted(self.counters),
                           counters=self.counters)
        self._book_conn: dict[str, str] = {}
        self._handoff: set[str] = set()      # books whose next snapshot comes from a replacing connection
        self._trade_ids = IncreasingIds()    # instId → last tradeId published
        self.resubscribes = Resubscriber(self.counters, min_interval_ns=RESUBSCRIBE_MIN_INTERVAL_NS,
                                         retry_ns=RESUBSCRIBE_RETRY_NS, per_hour=RESUBSCRIBES_PER_HOUR)
        self._index_targets: dict[str, list[str]] = {}  # index instId -> subscribed symbols using it

    # ---------------------------------------------------------------- instruments
    def instrument_requests(self) -> list[Fetch]:
        base = self.url["rest"] + "/api/v5/public/instruments?instType="
        kinds: set[str] = set()
        families: set[str] = set()
        for text in self.subscription.all_symbols():
            try:
                sym = Symbol.parse(text)
            except ValueError:
                continue
            kinds.add(sym.kind)
            if sym.kind == OPTION:
                families.add(index_id(sym))
        fetches = [Fetch(base + _KIND_TO_INST_TYPE[k], tag="instruments") for k in (SPOT, PERPETUAL, FUTURE)
                   if k in kinds or not kinds]
        fetches += [Fetch(base + "OPTION&instFamily=" + fam, tag="instruments") for fam in sorted(families)]
        return fetches

    def parse_instruments(self, url: str, body: str | bytes) -> list[Symbol]:
        doc = orjson.loads(body)
        if str(doc.get("code")) != "0":
            raise AdapterError("instruments_error", f"{url}: {doc.get('code')} {doc.get('msg')}")
        out = []
        for item in doc["data"]:
            try:
                out.append(symbol_from_instrument(item))
            except (ValueError, KeyError):
                self.count("instruments.skipped")
        return out

    def set_symbols(self, symbols: Iterable[Symbol]) -> None:
        super().set_symbols(symbols)
        self._index_targets = {}

    def _symbol(self, inst_id: str) -> Symbol:
        sym = self.from_exchange.get(inst_id)
        if sym is None:
            try:
                sym = symbol_from_inst_id(inst_id)
            except ValueError as exc:
                raise AdapterError("unknown_symbol", str(exc)) from None
            self.set_symbols([sym])
            self.count("symbols.guessed")
        return sym

    # ---------------------------------------------------------------- subscriptions
    def _args(self) -> dict[str, list[dict[str, str]]]:
        args: dict[str, list[dict[str, str]]] = {PUBLIC: [], BUSINESS: []}
        seen: set[tuple[str, str]] = set()

        def add(conn: str, arg: dict[str, str]) -> None:
            key = (conn, orjson.dumps(arg, option=orjson.OPT_SORT_KEYS).decode())
            if key not in seen:
                seen.add(key)
                args[conn].append(arg)

        for channel, okx_channel in _CHANNELS.items():
            for text in self.subscribed(channel):
                inst = self.exchange_symbol(text)
                kind = self.symbols[text].kind
                if (channel == FUNDING and kind != PERPETUAL) or (channel in (OPEN_INTEREST, MARK) and kind == SPOT):
                    self.count(f"subscription.unsupported.{channel}")  # OKX has no such stream for it
                    continue
                if channel == INDEX:
                    inst = index_id(self.symbols[text])
                add(PUBLIC, {"channel": okx_channel, "instId": inst})
        for text in self.subscribed(L2_BOOK):
            add(PUBLIC, {"channel": self.book_channel, "instId": self.exchange_symbol(text)})
        for text in self.subscribed(LIQUIDATIONS):
            kind = self.symbols[text].kind
            if kind != SPOT:
                add(PUBLIC, {"channel": "liquidation-orders", "instType": _KIND_TO_INST_TYPE[kind]})
        if self.subscribed(CANDLES):
            bar = CANDLE_INTERVALS.get(self.candle_interval)
            if bar is None:
                raise ValueError(f"OKX candles: interval one of {sorted(CANDLE_INTERVALS)}, "
                                 f"got {self.candle_interval!r}")
            for text in self.subscribed(CANDLES):
                add(BUSINESS, {"channel": "candle" + bar[0], "instId": self.exchange_symbol(text)})
        if args[PUBLIC]:
            add(PUBLIC, {"channel": "status"})   # maintenance of the exchange (Status feed 'system')
        return args

    def build_connections(self) -> list[ConnectionSpec]:
        specs = []
        sub = self.subscription
        for conn, conn_args in self._args().items():
            if not conn_args:
                continue
            msgs = tuple(orjson.dumps({"op": "subscribe", "args": conn_args[i:i + BATCH]}).decode()
                         for i in range(0, len(conn_args), BATCH))
            channels = (CANDLES,) if conn == BUSINESS else tuple(c for c in sub.channels if c != CANDLES)
            streams = tuple((c, s) for c in channels for s in self.subscribed(c))
            specs.append(ConnectionSpec(id=conn, url=self.url[conn], subscribe=msgs, subscribe_interval=0.1,
                                        ping="ping", ping_interval=PING_INTERVAL, silence_timeout=30.0,
                                        streams=streams))
        return specs

    def match_connection(self, url: str) -> str | None:
        return BUSINESS if "/business" in url else PUBLIC

    # ---------------------------------------------------------------- messages
    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        if isinstance(raw, (bytes, bytearray, memoryview)):
            raw = bytes(raw)
            if raw[:1] not in (b"{", b"[", b"p"):
                try:
                    raw = zlib.decompress(raw, -15)
                except zlib.error as exc:
                    raise AdapterError("bad_deflate", str(exc)) from None
        if raw == "pong" or raw == b"pong":
            self.ignore("pong")
            return
        msg = orjson.loads(raw)
        if not isinstance(msg, dict):
            raise AdapterError("unexpected_message", "not a JSON object")
        event = msg.get("event")
        if event is not None:
            self._on_event(conn, event, msg, out)
            return
        arg = msg.get("arg")
        if arg is None:
            if "table" in msg:
                self._on_v3(msg, ts, out)
                return
            raise AdapterError("unexpected_message", "no arg")
        channel = arg.get("channel", "")
        if channel.startswith("sprd-"):
            # Spread trading (sprdId "BTC-USD-SWAP_BTC-USD-240329"): a spread has no normalized
            # symbol or event kind; not supported, counted and skipped.
            self.ignore("spreads_not_supported")
            return
        data = msg["data"]
        if channel in _BOOK_CHANNELS:
            self._on_book(conn, arg["instId"], msg.get("action"), data, channel, ts, out)
        elif channel == "trades" or channel == "trades-all":
            self._on_trades(data, ts, out)
        elif channel == "tickers":
            self._on_tickers(data, ts, out)
        elif channel == "bbo-tbt":
            self._on_bbo(arg["instId"], data, ts, out)
        elif channel == "funding-rate":
            self._on_funding(data, ts, out)
        elif channel == "open-interest":
            for d in data:
                sym = self._symbol(d["instId"])
                out.events.append(OpenInterest(EXCHANGE, sym.normalized, d["oi"], exchange_symbol=d["instId"],
                                               timestamp=_ns(d.get("ts")), receipt_timestamp=ts))
        elif channel == "mark-price":
            for d in data:
                sym = self._symbol(d["instId"])
                out.events.append(MarkPrice(EXCHANGE, sym.normalized, d["markPx"], exchange_symbol=d["instId"],
                                            timestamp=_ns(d.get("ts")), receipt_timestamp=ts))
        elif channel == "index-tickers":
            self._on_index(data, ts, out)
        elif channel == "liquidation-orders" or channel == "liquidations":
            self._on_liquidations(arg, data, ts, out)
        elif channel.startswith("candle"):
            self._on_candles(arg["instId"], channel[6:], data, ts, out)
        elif channel == "status":
            self._on_status(data, ts, out)
        else:
            self.ignore(f"channel.{channel}")

    def _on_status(self, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        """Maintenance events of the ``status`` channel (its current ones on subscribe, then each
        change): ongoing or pre-open maintenance of the WebSocket or trading service is the whole
        exchange's, of a batch of accounts or products ``partial``; a scheduled one is logged."""
        if not data:
            self.ignore("system_status_empty")
            return
        bad = None
        stamp = None
        for d in data:
            service = str(d.get("serviceType"))
            what = _WIDE_SERVICES.get(service) or _PARTIAL_SERVICES.get(service)
            if what is None:
                self.ignore(f"system_service_{service}")
                continue
            phase = d.get("state")
            title = d.get("title") or what
            key = d.get("id") or (d.get("title"), d.get("begin"), service)
            stamp = _ns(d.get("ts")) or stamp
            if phase == "scheduled":
                self.system.notice("scheduled", f"maintenance of its {what} scheduled from {ms_text(d.get('begin'))} "
                                                f"to {ms_text(d.get('end'))}: {title}", key=(key, d.get("begin"), d.get("end")))
            elif phase in ("completed", "canceled"):
                self.system.set(key, ONLINE, f"OKX maintenance of its {what} {phase}: {title}")
            elif phase in _PHASES:
                state = _PHASES[phase] if service in _WIDE_SERVICES else PARTIAL
                self.system.set(key, state, f"OKX {phase.replace('_', '-')} of its {what} until "
                                            f"{ms_text(d.get('end'))}: {title}")
            else:
                bad = phase
        self.system.publish(ts, out, timestamp=stamp)
        if bad is not None:
            raise AdapterError("bad_system_status", repr(bad))

    def _on_event(self, conn: str, event: str, msg: dict[str, Any], out: Output) -> None:
        if event in ("subscribe", "unsubscribe"):
            self.ignore(event)
        elif event == "error":
            raise AdapterError("exchange_error", f"{msg.get('code')} {msg.get('msg')}")
        elif event == "notice" and str(msg.get("code")) == SERVICE_UPGRADE:
            # This connection closes soon: replace it first, without a break (handle_handoff).
            self.count("notice.service_upgrade")
            out.actions.append(Rotate(conn, f"OKX notice {SERVICE_UPGRADE}: {msg.get('msg') or 'service upgrade'}"))
        else:  # other notices, channel-conn-count, ...
            self.ignore(f"event.{event}")

    # ---- books
    def _on_book(self, conn: str, inst_id: str, action: str | None, data: list[dict[str, Any]], channel: str,
                 ts: int, out: Output) -> None:
        sym = self._symbol(inst_id)
        symbol = sym.normalized
        books = self.books
        sb = books.add(symbol, inst_id)
        self._book_conn[symbol] = conn
        try:
            for d in data:
                bids = [lvl[:2] for lvl in d["bids"]]
                asks = [lvl[:2] for lvl in d["asks"]]
                seq = d.get("seqId")
                checksum = d.get("checksum")
                tstamp = _ns(d.get("ts"))
                if action == "snapshot":
                    if symbol in self._handoff:
                        self._handoff.discard(symbol)
                        if self._behind(symbol, seq):
                            # The replacing connection's own snapshot of a book this one kept: not news.
                            self.ignore("handoff_snapshot")
                            continue
                    # A subscription starts with its snapshot: updates buffered before it are older (and,
                    # in recordings without seqId, could not be told apart by the sequence rule).
                    sb.buffer.clear()
                    books.snapshot(symbol, bids, asks, seq, out, timestamp=tstamp, receipt_timestamp=ts,
                                   checksum=checksum)
                elif action == "update":
                    if not bids and not asks:
                        # A sequence confirmation (prevSeqId == seqId): check it, publish nothing.
                        self._book_heartbeat(symbol, seq, d.get("prevSeqId"), tstamp, ts, out)
                        continue
                    books.delta(symbol, bids, asks, out, last=seq, prev=d.get("prevSeqId"), timestamp=tstamp,
                                receipt_timestamp=ts, checksum=checksum)
                else:
                    raise AdapterError("book_action", repr(action))
        except Exception:
            books.malformed(symbol, out, ts)   # lost: the book is invalid from here, not silently behind
            raise

    def _behind(self, symbol: str, seq: int | None) -> bool:
        """A snapshot at ``seq`` holds nothing the synced book of ``symbol`` lacks."""
        sb = self.books.get(symbol)
        current = None if sb is None or sb.state != SYNCED else sb.book.sequence
        return seq is not None and current is not None and seq <= current

    def handle_handoff(self, conn: str, ts: int, out: Output) -> None:
        # The new connection subscribed afresh: each book's first push on it is a snapshot, which a
        # book kept up to date through the overlap does not need (_on_book drops it unless newer).
        # Updates both connections carried were taken out by the driver; the rest continue the chain.
        self._handoff = {s for s, c in self._book_conn.items() if c == conn}

    def _book_heartbeat(self, symbol: str, seq: int | None, prev: int | None, tstamp: int | None, ts: int,
                        out: Output) -> None:
        sb = self.books.get(symbol)
        if sb is None or sb.state != SYNCED or seq is None:
            self.ignore("book_empty_update")
            return
        if prev != sb.book.sequence:
            self.books.invalidate(symbol, "sequence", out, expected=sb.book.sequence, received=prev,
                                  timestamp=tstamp, receipt_timestamp=ts)
            return
        sb.book.apply_delta((), (), seq)
        self.ignore("book_empty_update")

    def handle_resync(self, symbol: str, ts: int, out: Output) -> None:
        if symbol not in self.to_exchange:
            raise AdapterError("resync_unknown_symbol", symbol)
        if self.resubscribes.request(symbol, ts, self._book_conn.get(symbol, PUBLIC)):
            self._resubscribe(symbol, out)

    def _resubscribe(self, symbol: str, out: Output) -> None:
        conn = self._book_conn.get(symbol, PUBLIC)
        arg = [{"channel": self.book_channel, "instId": self.to_exchange[symbol]}]
        out.actions.append(Send(conn, orjson.dumps({"op": "unsubscribe", "args": arg}).decode()))
        out.actions.append(Send(conn, orjson.dumps({"op": "subscribe", "args": arg}).decode()))
        self.count("book.resubscribe")

    def handle_timer(self, ts: int, out: Output) -> None:
        for symbol in self.resubscribes.due(ts, self.books.settled):
            self._resubscribe(symbol, out)

    def handle_close(self, conn: str, ts: int, reason: str, out: Output) -> None:
        if conn == PUBLIC:
            self._trade_ids.forget()   # trades come on the public connection
        # The driver reconnects and resubscribes: the new snapshot rebuilds these books.
        syms = [s for s, c in self._book_conn.items() if c == conn]
        self.resubscribes.forget(syms)
        self.books.invalidate_all("disconnected", out, symbols=syms, receipt_timestamp=ts, resync=False)

    # ---- other channels
    def _on_trades(self, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        trade_ids = self._trade_ids
        for d in data:
            inst_id = d["instId"]
            sym = self._symbol(inst_id)
            tid = d.get("tradeId")
            # Trade ids grow per instrument: a repeat was published already.
            if type(tid) is str and tid.isdigit() and not trade_ids.is_new(inst_id, int(tid)):
                self.ignore("duplicate_trade")
                continue
            out.events.append(Trade(EXCHANGE, sym.normalized, d["side"], d["sz"], d["px"], id=d.get("tradeId"),
                                    exchange_symbol=inst_id, timestamp=_ns(d.get("ts")), receipt_timestamp=ts))

    def _on_tickers(self, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        for d in data:
            inst_id = d["instId"]
            sym = self._symbol(inst_id)
            volume = d.get("vol24h") if sym.kind == SPOT else d.get("volCcy24h")
            out.events.append(Ticker(EXCHANGE, sym.normalized, bid=_opt(d.get("bidPx")), ask=_opt(d.get("askPx")),
                                     last=_opt(d.get("last")), volume=_opt(volume), exchange_symbol=inst_id,
                                     timestamp=_ns(d.get("ts")), receipt_timestamp=ts))

    def _on_bbo(self, inst_id: str, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        sym = self._symbol(inst_id)
        for d in data:
            bid = d["bids"][0] if d.get("bids") else (None, None)
            ask = d["asks"][0] if d.get("asks") else (None, None)
            out.events.append(BBO(EXCHANGE, sym.normalized, bid=bid[0], bid_size=bid[1], ask=ask[0],
                                  ask_size=ask[1], sequence=d.get("seqId"), exchange_symbol=inst_id,
                                  timestamp=_ns(d.get("ts")), receipt_timestamp=ts))

    def _on_funding(self, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        for d in data:
            rate = _opt(d.get("fundingRate"))
            if rate is None:
                # Some pushes only announce the next period's estimate.
                self.ignore("funding_without_rate")
                continue
            inst_id = d["instId"]
            sym = self._symbol(inst_id)
            out.events.append(Funding(EXCHANGE, sym.normalized, rate, next_funding_time=_ns(d.get("fundingTime")),
                                      predicted_rate=_opt(d.get("nextFundingRate")), exchange_symbol=inst_id,
                                      timestamp=_ns(d.get("ts")), receipt_timestamp=ts))

    def _on_index(self, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        # One index serves several instruments: publish it under each subscribed symbol that uses it.
        for d in data:
            idx = d["instId"]
            targets = self._index_targets.get(idx)
            if targets is None:
                targets = self._index_targets[idx] = [s for s in self.subscription.symbols(INDEX)
                                                      if s in self.symbols and index_id(self.symbols[s]) == idx]
            if not targets:
                targets = [self._symbol(idx).normalized]
            for symbol in targets:
                out.events.append(IndexPrice(EXCHANGE, symbol, d["idxPx"], exchange_symbol=idx,
                                             timestamp=_ns(d.get("ts")), receipt_timestamp=ts))

    def _on_liquidations(self, arg: dict[str, Any], data: list[dict[str, Any]], ts: int, out: Output) -> None:
        wanted = set(self.subscription.symbols(LIQUIDATIONS))
        for d in data:
            inst_id = d.get("instId") or arg.get("instId")
            if inst_id is None:
                raise AdapterError("unknown_symbol", "liquidation without instId")
            sym = self._symbol(inst_id)
            if wanted and sym.normalized not in wanted:
                self.ignore("liquidation_other_symbol")
                continue
            details = d.get("details")
            if details is None:  # the older per-instrument 'liquidations' shape: the row is the detail
                details = [d]
            for x in details:
                out.events.append(Liquidation(EXCHANGE, sym.normalized, x["side"], x["sz"], x["bkPx"],
                                              status="filled", exchange_symbol=inst_id, timestamp=_ns(x.get("ts")),
                                              receipt_timestamp=ts))

    # ---- OKEx API v3 ("table" messages, retired in 2022): replay of old recordings only
    def _on_v3(self, msg: dict[str, Any], ts: int, out: Output) -> None:
        table = msg["table"]
        kind = table.partition("/")[2]
        ev = out.events
        for d in msg["data"]:
            inst_id = d["instrument_id"]
            symbol = self._symbol(inst_id).normalized
            tstamp = _iso_ns(d.get("timestamp") or d.get("created_at") or d.get("funding_time"))
            if kind == "trade":
                ev.append(Trade(EXCHANGE, symbol, d["side"], dec_str(d.get("size", d.get("qty"))),
                                dec_str(d["price"]), id=d.get("trade_id"), exchange_symbol=inst_id,
                                timestamp=tstamp, receipt_timestamp=ts))
            elif kind == "ticker":
                vol = d.get("base_volume_24h") or d.get("volume_token_24h")
                ev.append(Ticker(EXCHANGE, symbol, bid=_opt(d.get("best_bid")), ask=_opt(d.get("best_ask")),
                                 last=_opt(d.get("last")), volume=_opt(vol), exchange_symbol=inst_id,
                                 timestamp=tstamp, receipt_timestamp=ts))
            elif kind in ("depth", "depth_l2_tbt"):
                # v3 books have no sequence ids; their checksum is v5's (CRC32 of 25 levels).
                books = self.books
                sb = books.add(symbol, inst_id)
                try:
                    bids = [(dec_str(lvl[0]), dec_str(lvl[1])) for lvl in d["bids"]]
                    asks = [(dec_str(lvl[0]), dec_str(lvl[1])) for lvl in d["asks"]]
                    if msg.get("action") == "partial":
                        sb.buffer.clear()
                        books.snapshot(symbol, bids, asks, None, out, timestamp=tstamp, receipt_timestamp=ts,
                                       checksum=d.get("checksum"))
                    else:
                        books.delta(symbol, bids, asks, out, timestamp=tstamp, receipt_timestamp=ts,
                                    checksum=d.get("checksum"))
                except Exception:
                    books.malformed(symbol, out, ts)   # lost: the book is invalid from here, not silently behind
                    raise
            elif kind == "funding_rate":
                ev.append(Funding(EXCHANGE, symbol, d["funding_rate"], next_funding_time=tstamp,
                                  predicted_rate=_opt(d.get("estimated_rate")), exchange_symbol=inst_id,
                                  timestamp=None, receipt_timestamp=ts))
            elif kind == "mark_price":
                ev.append(MarkPrice(EXCHANGE, symbol, d["mark_price"], exchange_symbol=inst_id, timestamp=tstamp,
                                    receipt_timestamp=ts))
            elif kind == "liquidation":
                # type 3: a long position closed (a sell order), 4: a short one (a buy order).
                side = {"3": "sell", "4": "buy"}.get(str(d.get("type")))
                if side is None:
                    raise AdapterError("liquidation_type", repr(d.get("type")))
                ev.append(Liquidation(EXCHANGE, symbol, side, d["size"], d["price"], status="filled",
                                      exchange_symbol=inst_id, timestamp=tstamp, receipt_timestamp=ts))
            elif table == "index/ticker":
                ev.append(IndexPrice(EXCHANGE, symbol, d["last"], exchange_symbol=inst_id, timestamp=tstamp,
                                     receipt_timestamp=ts))
            else:  # option/summary (greeks) and others with no event kind
                self.ignore(f"legacy_v3.{table}")

    def _on_candles(self, inst_id: str, bar: str, data: list[list[str]], ts: int, out: Output) -> None:
        interval = _BAR_TO_INTERVAL.get(bar)
        if interval is None:
            raise AdapterError("candle_interval", bar)
        name, length = interval
        sym = self._symbol(inst_id)
        for row in data:
            start = int(row[0])
            volume = row[5] if sym.kind == SPOT else row[6]
            closed = row[8] == "1" if len(row) > 8 else None
            out.events.append(Candle(EXCHANGE, sym.normalized, start * _MS, (start + length - 1) * _MS, name,
                                     row[1], row[4], row[2], row[3], volume, closed=closed, exchange_symbol=inst_id,
                                     timestamp=None, receipt_timestamp=ts))
