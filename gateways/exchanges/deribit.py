"""Deribit adapter (JSON-RPC websocket API v2): perpetuals, dated futures, options, spot.

Sans-I/O: raw websocket frames and REST bodies in, normalized events and actions out
(see gateways/adapter.py). Channels and the Deribit subscription each one uses
(``<i>`` is the instrument name, ``<iv>`` the interval: ``100ms`` by default, since
``raw`` needs an authenticated connection today):

=============  ===================================  =================================================
channel        Deribit channel                      events
=============  ===================================  =================================================
trades         ``trades.<i>.<iv>``                  Trade (id = trade_id, amount in the instrument's unit)
l2_book        ``book.<i>.<iv>``                    L2Snapshot, L2Delta, BBO (top changes)
ticker         ``ticker.<i>.<iv>``                  Ticker (best bid/ask, last, 24h volume)
bbo            ``quote.<i>``                        BBO (only for symbols without l2_book)
funding        ``ticker.<i>.<iv>`` (perpetuals)     Funding (rate = funding_8h, mark price)
open_interest  ``ticker.<i>.<iv>``                  OpenInterest (open_interest)
index          ``ticker.<i>.<iv>``                  IndexPrice (index_price)
mark           ``ticker.<i>.<iv>``                  MarkPrice (mark_price)
liquidations   ``trades.<i>.<iv>``                  Liquidation (trades flagged ``liquidation``: T/M/MT)
candles        ``chart.trades.<i>.<resolution>``    Candle (closed = None: Deribit does not say)
=============  ===================================  =================================================

Books: the first ``book`` notification of a subscription is ``type: snapshot`` with a
``change_id``; every ``change`` names its predecessor in ``prev_change_id``, which must
equal the book's last ``change_id`` (:func:`~gateways.books.prev_rule`). Entries are
``[action, price, amount]`` with action new/change/delete (delete → size 0). A broken
chain or a crossed book publishes Gap for that instrument and resubscribes its book
channel alone (Deribit answers with a new snapshot: Reset + L2Snapshot). Deribit offers
no book checksum. Old recordings (2019) have snapshots without ``type``: a book
message without ``prev_change_id`` is a snapshot.

Keepalive: ``public/set_heartbeat`` (interval 10 s) is sent on open; Deribit's
``test_request`` heartbeats are answered with ``public/test`` (a connection that
misses them is closed by Deribit).

Symbols: from ``public/get_instruments?currency=<C>&expired=false``. ``BTC-PERPETUAL``
→ ``BTC-USD-PERP``, ``SOL_USDC-PERPETUAL`` → ``SOL-USDC-PERP``, ``BTC-24SEP21`` →
``BTC-USD-20210924``, ``BTC-24SEP21-8000-P`` → ``BTC-USD-20210924-8000-P`` (options are
quoted in the coin but struck in USD: the normalized quote is the counter currency,
USD), ``XRP_USDC-30JUL21-0d5-C`` → ``XRP-USDC-20210730-0.5-C``, ``BTC_USDC`` →
``BTC-USDC``. tick size, lot size (min_trade_amount), contract size and settlement
currency come from the instrument. Combos are skipped. Subscriptions may also name
options in cryptofeed's spelling (``BTC-8000-21U24-put``), as the shared captures do;
they are resolved against the loaded instruments.

Values: Deribit sends JSON numbers; they are normalized with
:func:`cryptofeed_types.dec_str`. Timestamps are milliseconds, converted to integer ns.
A ticker side with no orders is reported by Deribit as price 0 / amount 0: Ticker
keeps it verbatim, BBO publishes it as None.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
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
from gateways.books import Books, prev_rule
from gateways.resync import Resubscriber
from gateways.system_status import MAINTENANCE, ONLINE

EXCHANGE = "DERIBIT"
WS = "ws"

# Deribit charges each subscribe request 3000 credits from a 30000 pool refilled at ~10000/s
# (about 3 requests/s sustained, bursts of 10): few messages of many channels, 0.3 s apart.
BATCH = 100
SUBSCRIBE_INTERVAL = 0.3
HEARTBEAT_INTERVAL = 10  # seconds; Deribit's minimum
# public/subscribe and unsubscribe each cost 3000 of the 30000 credits (about 3 per second
# sustained, see SUBSCRIBE_INTERVAL): one symbol is resubscribed at most every 5 s, the
# connection at most once a second (bursts of 4), again after 30 s without a snapshot.
RESUBSCRIBE_MIN_INTERVAL_NS = 5_000_000_000
RESUBSCRIBE_RETRY_NS = 30_000_000_000
RESUBSCRIBES_PER_HOUR = 3600
RESUBSCRIBE_BURST = 4
CURRENCIES = ("BTC", "ETH", "USDC", "USDT")

_MS = 1_000_000
_MONTHS = {m: i + 1 for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                                           "NOV", "DEC"))}
_CF_MONTHS = "FGHJKMNQUVXZ"
_CF_OPTION = re.compile(r"^([A-Z0-9]+)-([0-9.]+)-(?:(\d\d)([FGHJKMNQUVXZ])(\d{1,2})|(20\d{6}))-(call|put)$")

# normalized candle interval -> (Deribit resolution, length in ns)
CANDLE_INTERVALS: dict[str, tuple[str, int]] = {
    "1m": ("1", 60 * 10**9), "3m": ("3", 180 * 10**9), "5m": ("5", 300 * 10**9), "10m": ("10", 600 * 10**9),
    "15m": ("15", 900 * 10**9), "30m": ("30", 1800 * 10**9), "1h": ("60", 3600 * 10**9),
    "2h": ("120", 7200 * 10**9), "3h": ("180", 10800 * 10**9), "6h": ("360", 21600 * 10**9),
    "12h": ("720", 43200 * 10**9), "1d": ("1D", 86400 * 10**9),
}
_RES_TO_INTERVAL = {res: (name, length) for name, (res, length) in CANDLE_INTERVALS.items()}
_OPPOSITE = {"buy": "sell", "sell": "buy"}
_COMBO_TAG = re.compile(r"^[A-Z]+\d*$")
_TICKER_CHANNELS = (TICKER, FUNDING, OPEN_INTEREST, INDEX, MARK)
# Subscribed on every connection: Deribit's locks of price indices, and whether it serves
# unauthenticated requests at all (the exchange's system status, Status feed 'system').
PLATFORM_STATE = "platform_state"
PUBLIC_METHODS_STATE = "platform_state.public_methods_state"


def _ns(ms: Any) -> int | None:
    return None if ms is None else int(ms) * _MS


def _num(v: Any) -> str | None:
    return None if v is None else dec_str(v)


def _strike(v: Any) -> str:
    """A strike in its shortest exact form: 8000.0 -> '8000', '0.50' -> '0.5'."""
    d = Decimal(dec_str(v)).normalize()
    return format(d, "f")


def _expiry(text: str) -> str:
    """'24SEP21' / '1OCT21' -> '20210924' / '20211001'."""
    m = re.fullmatch(r"(\d{1,2})([A-Z]{3})(\d\d)", text)
    if m is None or m.group(2) not in _MONTHS:
        raise ValueError(f"not a Deribit expiry: {text!r}")
    return f"20{m.group(3)}{_MONTHS[m.group(2)]:02d}{int(m.group(1)):02d}"


def symbol_from_name(name: str, **metadata: Any) -> Symbol:
    """A Symbol from a Deribit instrument name alone (ValueError for combos and unknown forms)."""
    parts = name.split("-")
    head = parts[0]
    base, _, quote = head.partition("_")
    if len(parts) == 1:
        if not quote:
            raise ValueError(f"not a Deribit instrument: {name!r}")
        return Symbol(base, quote, SPOT, exchange_symbol=name, **metadata)
    quote = quote or "USD"
    if len(parts) == 2 and parts[1] == "PERPETUAL":
        return Symbol(base, quote, PERPETUAL, exchange_symbol=name, **metadata)
    if len(parts) == 2:
        return Symbol(base, quote, FUTURE, expiry=_expiry(parts[1]), exchange_symbol=name, **metadata)
    if len(parts) == 4 and parts[3] in ("C", "P"):
        strike = _strike(parts[2].replace("d", "."))
        return Symbol(base, quote, OPTION, expiry=_expiry(parts[1]), strike=strike, option_type=parts[3],
                      exchange_symbol=name, **metadata)
    raise ValueError(f"not a Deribit instrument: {name!r}")


def is_combo(name: str) -> bool:
    """Combo instruments: 'BTC-FS-30SEP22_PERP', 'BTC-STRD-30SEP22-20000', 'BTC-CSR12-16SEP22-21000_23000'."""
    parts = name.split("-")
    return len(parts) >= 3 and _COMBO_TAG.match(parts[1]) is not None


def symbol_from_instrument(row: Mapping[str, Any]) -> Symbol | None:
    """A Symbol from one get_instruments row (None for combos)."""
    kind = row.get("kind")
    if kind not in ("future", "option", "spot"):
        return None
    meta: dict[str, Any] = {"tick_size": _num(row.get("tick_size")), "lot_size": _num(row.get("min_trade_amount"))}
    if kind != "spot":
        meta["contract_size"] = _num(row.get("contract_size"))
        settle = row.get("settlement_currency") or row.get("base_currency")
        if settle:
            meta["settle"] = settle
    name = row["instrument_name"]
    base = row["base_currency"]
    if kind == "spot":
        return Symbol(base, row["quote_currency"], SPOT, exchange_symbol=name, **meta)
    quote = row.get("counter_currency") or ("USD" if kind == "option" else row.get("quote_currency")) or "USD"
    if kind == "future" and row.get("settlement_period") == "perpetual":
        return Symbol(base, quote, PERPETUAL, exchange_symbol=name, **meta)
    expiry = datetime.fromtimestamp(int(row["expiration_timestamp"]) / 1000, tz=UTC).strftime("%Y%m%d")
    if kind == "future":
        return Symbol(base, quote, FUTURE, expiry=expiry, exchange_symbol=name, **meta)
    option_type = {"call": "C", "put": "P"}[row["option_type"]]
    return Symbol(base, quote, OPTION, expiry=expiry, strike=_strike(row["strike"]), option_type=option_type,
                  exchange_symbol=name, **meta)


def cryptofeed_option_key(text: str) -> tuple[str, str, str, str] | None:
    """cryptofeed's option spelling 'BTC-8000-21U24-put' -> ('BTC', '20210924', '8000', 'P');
    also with the date already expanded ('BTC-8000-20210924-put', as the capture reader gives it)."""
    m = _CF_OPTION.match(text)
    if m is None:
        return None
    base, strike, yy, month, day, full, kind = m.groups()
    expiry = full or f"20{yy}{_CF_MONTHS.index(month) + 1:02d}{int(day):02d}"
    return base, expiry, _strike(strike), "C" if kind == "call" else "P"


class Deribit(Adapter):
    """Deribit perpetuals, futures, options and spot: trades, L2 book (change ids), ticker stats, quotes."""

    exchange: ClassVar[str] = EXCHANGE
    urls: ClassVar[Mapping[str, str]] = {
        "rest": "https://www.deribit.com",
        WS: "wss://www.deribit.com/ws/api/v2",
    }
    # Non-matching-engine requests: ~20 per second per account/IP.
    rest_weight_per_minute: ClassVar[int] = 600
    # The timer retries resubscriptions whose snapshot never came and sends deferred ones.
    timer_interval = 5.0

    def __init__(self, subscription: Subscription, *, urls: Mapping[str, str] | None = None,
                 symbols: Iterable[Symbol] | None = None, interval: str = "100ms") -> None:
        if interval not in ("raw", "100ms", "agg2"):
            raise ValueError(f"interval: one of raw, 100ms, agg2; got {interval!r}")
        self.interval = interval
        self._option_keys: dict[tuple[str, str, str, str], str] = {}
        self._price_index: dict[str, str] = {}      # exchange symbol → its price index (btc_usd)
        self._requested = subscription
        super().__init__(subscription, urls=urls, symbols=symbols)
        self.books = Books(EXCHANGE, prev_rule, counters=self.counters)
        self._rpc_id = 0
        self._locked: set[str] = set()              # price indices Deribit says are locked
        self.resubscribes = Resubscriber(self.counters, min_interval_ns=RESUBSCRIBE_MIN_INTERVAL_NS,
                                         retry_ns=RESUBSCRIBE_RETRY_NS, per_hour=RESUBSCRIBES_PER_HOUR,
                                         burst=RESUBSCRIBE_BURST)
        self._resolve_subscription()

    # ---------------------------------------------------------------- instruments
    def instrument_requests(self) -> list[Fetch]:
        currencies = list(CURRENCIES)
        for text in self._requested.all_symbols():
            base = text.split("-", 1)[0]
            if base not in currencies:
                currencies.append(base)
        base_url = self.url["rest"] + "/api/v2/public/get_instruments?currency="
        return [Fetch(f"{base_url}{c}&expired=false", 1, "instruments") for c in currencies]

    def parse_instruments(self, url: str, body: str | bytes) -> list[Symbol]:
        doc = orjson.loads(body)
        if "result" not in doc:
            # One unknown currency must not stop the others from loading.
            self.count("instruments.error_response")
            return []
        out = []
        for row in doc["result"]:
            try:
                sym = symbol_from_instrument(row)
            except (ValueError, KeyError, TypeError):
                sym = None
            if sym is None:
                self.count("instruments.skipped")
            else:
                out.append(sym)
                if isinstance(row.get("price_index"), str):
                    self._price_index[row["instrument_name"]] = row["price_index"]
        return out

    def set_symbols(self, symbols: Iterable[Symbol]) -> None:
        symbols = list(symbols)
        super().set_symbols(symbols)
        for sym in symbols:
            if sym.kind == OPTION:
                self._option_keys[(sym.base, sym.expiry, _strike(sym.strike), sym.option_type)] = sym.normalized
        if hasattr(self, "books"):
            self._resolve_subscription()

    def _resolve(self, text: str) -> str:
        if text in self.symbols:
            return text
        key = cryptofeed_option_key(text)
        if key is not None:
            return self._option_keys.get(key, text)
        return text

    def _resolve_subscription(self) -> None:
        """Map subscription symbols given in cryptofeed's option spelling to ours."""
        req = self._requested
        channels = {ch: [self._resolve(s) for s in syms] for ch, syms in req.channels.items()}
        self.subscription = dataclasses.replace(req, channels=channels)
        self._any = not any(channels.values())
        self._wanted = {ch: frozenset(syms) for ch, syms in channels.items()}
        self._bbo_only = self._wanted.get(BBO_CHANNEL, frozenset()) - self._wanted.get(L2_BOOK, frozenset())

    def _wants(self, channel: str, symbol: str) -> bool:
        return self._any or symbol in self._wanted.get(channel, ())

    def _symbol(self, name: str) -> Symbol:
        sym = self.from_exchange.get(name)
        if sym is None:
            try:
                sym = symbol_from_name(name)
            except ValueError as exc:
                raise AdapterError("unknown_symbol", str(exc)) from None
            Adapter.set_symbols(self, [sym])
            self.count("symbols.guessed")
        return sym

    # ---------------------------------------------------------------- subscriptions
    def channels(self) -> list[tuple[str, str, str]]:
        """(Deribit channel, our channel, normalized symbol) for the whole subscription."""
        iv = self.interval
        out: list[tuple[str, str, str]] = []
        seen: set[str] = set()

        def add(name: str, channel: str, symbol: str) -> None:
            if name not in seen:
                seen.add(name)
                out.append((name, channel, symbol))

        for s in self.subscribed(TRADES) + self.subscribed(LIQUIDATIONS):
            add(f"trades.{self.exchange_symbol(s)}.{iv}", TRADES, s)
        for s in self.subscribed(L2_BOOK):
            add(f"book.{self.exchange_symbol(s)}.{iv}", L2_BOOK, s)
        for channel in _TICKER_CHANNELS:
            for s in self.subscribed(channel):
                name = self.exchange_symbol(s)
                kind = self.symbols[s].kind
                if (channel == FUNDING and kind != PERPETUAL) or (channel != TICKER and kind == SPOT):
                    self.count(f"subscription.unsupported.{channel}")
                    continue
                add(f"ticker.{name}.{iv}", channel, s)
        for s in self.known_symbols(sorted(self._bbo_only)):
            add(f"quote.{self.exchange_symbol(s)}", BBO_CHANNEL, s)
        if self.subscribed(CANDLES):
            res = CANDLE_INTERVALS.get(self.candle_interval)
            if res is None:
                raise ValueError(f"Deribit candles: interval one of {sorted(CANDLE_INTERVALS)}, "
                                 f"got {self.candle_interval!r}")
            for s in self.subscribed(CANDLES):
                add(f"chart.trades.{self.exchange_symbol(s)}.{res[0]}", CANDLES, s)
        return out

    def _rpc(self, method: str, params: dict[str, Any]) -> str:
        self._rpc_id += 1
        return orjson.dumps({"jsonrpc": "2.0", "id": self._rpc_id, "method": method, "params": params}).decode()

    def build_connections(self) -> list[ConnectionSpec]:
        chans = self.channels()
        names = [c for c, _, _ in chans] + [PLATFORM_STATE, PUBLIC_METHODS_STATE]
        msgs = tuple(self._rpc("public/subscribe", {"channels": names[i:i + BATCH]})
                     for i in range(0, len(names), BATCH))
        return [ConnectionSpec(WS, self.url[WS], subscribe=msgs, subscribe_interval=SUBSCRIBE_INTERVAL,
                               silence_timeout=3.0 * HEARTBEAT_INTERVAL,
                               streams=tuple((ch, s) for _, ch, s in chans))]

    def match_connection(self, url: str) -> str | None:
        return WS

    def handle_open(self, conn: str, ts: int, out: Output) -> None:
        out.actions.append(Send(conn, self._rpc("public/set_heartbeat", {"interval": HEARTBEAT_INTERVAL})))

    # ---------------------------------------------------------------- messages
    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        msg = orjson.loads(raw)
        if not isinstance(msg, dict):
            raise AdapterError("unexpected_message", "not a JSON object")
        method = msg.get("method")
        if method == "subscription":
            params = msg["params"]
            self._on_subscription(conn, params["channel"], params["data"], ts, out)
        elif method == "heartbeat":
            if msg.get("params", {}).get("type") == "test_request":
                out.actions.append(Send(conn, self._rpc("public/test", {})))
            self.ignore("heartbeat")
        elif "error" in msg:
            err = msg["error"]
            raise AdapterError("exchange_error", f"{err.get('code')} {err.get('message')}")
        elif "result" in msg:
            self.ignore("rpc_result")
        else:
            raise AdapterError("unexpected_message", "neither subscription nor RPC response")

    def _on_subscription(self, conn: str, channel: str, data: Any, ts: int, out: Output) -> None:
        kind, _, rest = channel.partition(".")
        name = rest.split(".", 2)[1 if kind == "chart" else 0]
        if name not in self.from_exchange and is_combo(name):
            self.ignore("combo_instrument")  # strategies (straddles, spreads...): no normalized form
            return
        if kind == "book":
            self._on_book(data, ts, out)
        elif kind == "trades":
            self._on_trades(data, ts, out)
        elif kind == "ticker":
            self._on_ticker(data, ts, out)
        elif kind == "quote":
            self._on_quote(data, ts, out)
        elif kind == "chart":
            self._on_candle(rest, data, ts, out)
        elif kind == PLATFORM_STATE:   # last: rare, and its name part ('', public_methods_state) is no combo
            self._on_platform_state(channel, data, ts, out)
        else:  # perpetual (instantaneous interest), deribit_price_index, markprice.options ...
            self.ignore(f"channel.{kind}")

    # ---- system status
    def _index_of(self, symbol: str) -> str:
        """The price index an instrument trades on: as get_instruments says, else from its
        currencies (BTC-PERPETUAL and BTC options: btc_usd; SOL_USDC-PERPETUAL: sol_usdc)."""
        name = self.to_exchange.get(symbol, symbol)
        index = self._price_index.get(name)
        if index is None:
            sym = self.symbols.get(symbol)
            index = f"{sym.base}_{sym.quote}".lower() if sym is not None else ""
        return index

    def _on_platform_state(self, channel: str, data: Any, ts: int, out: Output) -> None:
        """A lock of a price index stops the instruments on it: the whole gateway's when every
        index of its instruments is locked (maintenance), some of them otherwise (partial); a lock
        of an index none of them uses changes nothing. Refused unauthenticated requests stop all."""
        if not isinstance(data, dict):
            raise AdapterError("bad_system_status", repr(data))
        if channel == PUBLIC_METHODS_STATE:
            allowed = data.get("allow_unauthenticated_public_requests")
            if not isinstance(allowed, bool):
                raise AdapterError("bad_system_status", repr(data))
            self.system.set("public_methods", ONLINE if allowed else MAINTENANCE,
                            "Deribit serves unauthenticated requests" if allowed else
                            "Deribit refuses unauthenticated requests (public market data stops)")
        elif channel == PLATFORM_STATE:
            index, locked = data.get("price_index"), data.get("locked")
            if not isinstance(index, str) or not isinstance(locked, bool):
                raise AdapterError("bad_system_status", repr(data))
            (self._locked.add if locked else self._locked.discard)(index)
            wanted = self.subscription.all_symbols() if not self._any else list(self.symbols)
            ours = Counter(self._index_of(s) for s in wanted)
            hit = sorted(self._locked & ours.keys())
            n = sum(ours[i] for i in hit)
            self.system.set_share("locks", n, len(wanted),
                                  f"Deribit locked index {', '.join(hit)} ({n} of this gateway's {len(wanted)} "
                                  f"instruments)" if hit else "Deribit: no index of this gateway's instruments locked")
        else:
            self.ignore(f"channel.{channel}")
            return
        self.system.publish(ts, out)

    # ---- books
    def _on_book(self, d: dict[str, Any], ts: int, out: Output) -> None:
        name = d["instrument_name"]
        symbol = self._symbol(name).normalized
        books = self.books
        sb = books.add(symbol, name)
        try:
            bids = [(dec_str(p), "0" if a == "delete" else dec_str(q)) for a, p, q in d["bids"]]
            asks = [(dec_str(p), "0" if a == "delete" else dec_str(q)) for a, p, q in d["asks"]]
            tstamp = _ns(d.get("timestamp"))
            change_id = d["change_id"]
            kind = d.get("type")
            if kind == "snapshot" or (kind is None and "prev_change_id" not in d):
                # A subscription starts with its snapshot: anything buffered before it is older.
                sb.buffer.clear()
                books.snapshot(symbol, bids, asks, change_id, out, timestamp=tstamp, receipt_timestamp=ts)
            elif kind in ("change", None):
                books.delta(symbol, bids, asks, out, last=change_id, prev=d["prev_change_id"], timestamp=tstamp,
                            receipt_timestamp=ts)
            else:
                raise AdapterError("book_type", repr(kind))
        except Exception:
            books.malformed(symbol, out, ts)   # lost: the book is invalid from here, not silently behind
            raise

    def handle_resync(self, symbol: str, ts: int, out: Output) -> None:
        if symbol not in self.to_exchange:
            raise AdapterError("resync_unknown_symbol", symbol)
        if self.resubscribes.request(symbol, ts, WS):
            self._resubscribe(symbol, out)

    def _resubscribe(self, symbol: str, out: Output) -> None:
        chans = [f"book.{self.to_exchange[symbol]}.{self.interval}"]
        out.actions.append(Send(WS, self._rpc("public/unsubscribe", {"channels": chans})))
        out.actions.append(Send(WS, self._rpc("public/subscribe", {"channels": chans})))
        self.count("book.resubscribe")

    def handle_timer(self, ts: int, out: Output) -> None:
        for symbol in self.resubscribes.due(ts, self.books.settled):
            self._resubscribe(symbol, out)

    def handle_close(self, conn: str, ts: int, reason: str, out: Output) -> None:
        # The driver reconnects and resubscribes: the new snapshots rebuild these books.
        self.resubscribes.forget()
        self.books.invalidate_all("disconnected", out, receipt_timestamp=ts, resync=False)

    # ---- other channels
    def _on_trades(self, data: list[dict[str, Any]], ts: int, out: Output) -> None:
        n = len(out.events)
        for d in data:
            name = d["instrument_name"]
            symbol = self._symbol(name).normalized
            tstamp = _ns(d.get("timestamp"))
            if self._wants(TRADES, symbol):
                out.events.append(Trade(EXCHANGE, symbol, d["direction"], d["amount"], d["price"],
                                        id=str(d["trade_id"]), exchange_symbol=name, timestamp=tstamp,
                                        receipt_timestamp=ts))
            liq = d.get("liquidation")
            if liq and self._wants(LIQUIDATIONS, symbol):
                # 'T': the taker was liquidated (its order has the trade's direction), 'M': the maker
                # (the opposite side), 'MT': both.
                taker = d["direction"]
                sides = ([taker] if "T" in liq else []) + ([_OPPOSITE[taker]] if "M" in liq else [])
                for side in sides:
                    out.events.append(Liquidation(EXCHANGE, symbol, side, d["amount"], d["price"],
                                                  id=str(d["trade_id"]), status="filled", exchange_symbol=name,
                                                  timestamp=tstamp, receipt_timestamp=ts))
        if len(out.events) == n:
            self.ignore("trades_unsubscribed")

    def _on_ticker(self, d: dict[str, Any], ts: int, out: Output) -> None:
        name = d["instrument_name"]
        sym = self._symbol(name)
        symbol = sym.normalized
        tstamp = _ns(d.get("timestamp"))
        ev = out.events
        n = len(ev)
        if self._wants(TICKER, symbol):
            stats = d.get("stats") or {}
            ev.append(Ticker(EXCHANGE, symbol, bid=d.get("best_bid_price"), ask=d.get("best_ask_price"),
                             last=d.get("last_price"), volume=stats.get("volume"), exchange_symbol=name,
                             timestamp=tstamp, receipt_timestamp=ts))
        if sym.kind == PERPETUAL and d.get("funding_8h") is not None and self._wants(FUNDING, symbol):
            ev.append(Funding(EXCHANGE, symbol, d["funding_8h"], mark_price=d.get("mark_price"),
                              exchange_symbol=name, timestamp=tstamp, receipt_timestamp=ts))
        if d.get("open_interest") is not None and self._wants(OPEN_INTEREST, symbol):
            ev.append(OpenInterest(EXCHANGE, symbol, d["open_interest"], exchange_symbol=name, timestamp=tstamp,
                                   receipt_timestamp=ts))
        if d.get("index_price") is not None and self._wants(INDEX, symbol):
            ev.append(IndexPrice(EXCHANGE, symbol, d["index_price"], exchange_symbol=name, timestamp=tstamp,
                                 receipt_timestamp=ts))
        if d.get("mark_price") is not None and self._wants(MARK, symbol):
            ev.append(MarkPrice(EXCHANGE, symbol, d["mark_price"], exchange_symbol=name, timestamp=tstamp,
                                receipt_timestamp=ts))
        if len(ev) == n:
            self.ignore("ticker_unsubscribed")

    def _on_quote(self, d: dict[str, Any], ts: int, out: Output) -> None:
        name = d["instrument_name"]
        symbol = self._symbol(name).normalized
        if not (self._any or symbol in self._bbo_only):
            self.ignore("quote_unsubscribed")
            return
        bid, bid_size = d.get("best_bid_price"), d.get("best_bid_amount")
        ask, ask_size = d.get("best_ask_price"), d.get("best_ask_amount")
        if not bid_size:
            bid = bid_size = None
        if not ask_size:
            ask = ask_size = None
        out.events.append(BBO(EXCHANGE, symbol, bid=bid, bid_size=bid_size, ask=ask, ask_size=ask_size,
                              exchange_symbol=name, timestamp=_ns(d.get("timestamp")), receipt_timestamp=ts))

    def _on_candle(self, rest: str, d: dict[str, Any], ts: int, out: Output) -> None:
        # rest: 'trades.<instrument>.<resolution>'; the data does not repeat the instrument.
        source, _, tail = rest.partition(".")
        name, _, res = tail.rpartition(".")
        interval = _RES_TO_INTERVAL.get(res)
        if source != "trades" or interval is None:
            raise AdapterError("candle_channel", rest)
        label, length = interval
        start = int(d["tick"]) * _MS
        out.events.append(Candle(EXCHANGE, self._symbol(name).normalized, start, start + length - _MS, label,
                                 d["open"], d["close"], d["high"], d["low"], d["volume"], exchange_symbol=name,
                                 timestamp=None, receipt_timestamp=ts))
