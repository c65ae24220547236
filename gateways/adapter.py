"""The sans-I/O exchange adapter shape shared by every exchange.

An adapter never touches a socket, a clock or the event loop. The driver (live),
the replayer (captures) and tests all call the same methods:

- ``instrument_requests()`` → REST requests whose bodies ``parse_instruments()``
  turns into :class:`~cryptofeed_types.Symbol` (tick/lot/contract size, exchange id);
  ``set_symbols()`` installs them (the exchange↔normalized maps).
- ``connections()`` → one :class:`ConnectionSpec` per websocket: url, subscribe
  messages (already batched within the exchange's limits), ping, silence timeout; the
  subclass writes ``build_connections()``, kept until the symbols change.
- ``on_open / on_message / on_rest / on_close / on_timer / on_handoff`` → an :class:`Output`:
  ``events`` (cryptofeed_types events to publish) and ``actions`` (:class:`Send`,
  :class:`Open`, :class:`Close`, :class:`Fetch`, :class:`Resync`, :class:`Rotate`) for the caller to perform.

The exchange's own system status (maintenance, ...) goes through ``self.system`` (a
:class:`~gateways.system_status.SystemStatus`): from its websocket messages, or polled over REST
where the subclass sets ``system_status_path`` and writes ``handle_system_status``.

A malformed message never raises out of ``on_message``/``on_rest``: it becomes a
counted, logged error (``counters['errors.<reason>']``); messages deliberately not
turned into events are counted with a reason too (``counters['ignored.<reason>']``),
so nothing is dropped silently. Logs are bound with ``exchange`` (and ``symbol`` when the
failing call names one) and rate-limited per reason by :class:`LogLimit`, which the books
and the driver use for their incidents too.

Subclasses implement the ``handle_*`` methods, which may raise freely.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from loguru import logger

from cryptofeed_types import Symbol
from gateways.system_status import SystemStatus

# Channel names used in subscriptions (same words as cryptofeed's, plus the bus topics).
TRADES = "trades"
L2_BOOK = "l2_book"
TICKER = "ticker"
BBO_CHANNEL = "bbo"
CANDLES = "candles"
FUNDING = "funding"
OPEN_INTEREST = "open_interest"
LIQUIDATIONS = "liquidations"
INDEX = "index"
MARK = "mark"
L3_BOOK = "l3_book"
CHANNELS = (TRADES, L2_BOOK, L3_BOOK, TICKER, BBO_CHANNEL, CANDLES, FUNDING, OPEN_INTEREST, LIQUIDATIONS, INDEX,
            MARK)
# The channels whose events include quotes (BBO): a connection carrying none of them quotes nothing.
QUOTE_CHANNELS = frozenset({L2_BOOK, BBO_CHANNEL, TICKER})

# The Fetch tag of the system status poll (Adapter.system_status_path).
SYSTEM_STATUS_TAG = "system_status"

# How many times one error reason is logged in full before it is rate-limited.
_LOG_FIRST = 5


class LogLimit:
    """Rate limit of incident log lines, per key (e.g. ``(symbol, reason)`` of one exchange).

    The first ``burst`` incidents of a key are logged in full; after that at most one line
    per ``interval`` seconds, which also says how many were left out since the previous one
    (:meth:`note`). A key quiet for a whole interval gets its burst back. Only the log is
    limited: callers count every incident in their counters. Consulted only when an incident
    happens, never per message.
    """

    __slots__ = ("burst", "interval", "clock", "max_keys", "_keys")

    def __init__(self, burst: int = _LOG_FIRST, interval: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
        self._keys: dict[Hashable, list[Any]] = {}   # key → [lines in this burst, left out, time of last line]

    def check(self, key: Hashable) -> int | None:
        """None: leave this incident out of the log. Otherwise log it: the value is how many
        incidents of ``key`` were left out before it (0: none)."""
        now = self.clock()
        st = self._keys.get(key)
        if st is None:
            if len(self._keys) >= self.max_keys:
                self._keys.clear()  # bounded memory: forgetting only means a fresh burst
            self._keys[key] = [1, 0, now]
            return 0
        if st[0] < self.burst:
            st[0] += 1
            st[2] = now
            return 0
        if now - st[2] >= self.interval:
            left_out = st[1]
            if not left_out:
                st[0] = 1  # nothing since the last line, an interval ago: the storm is over
            st[1] = 0
            st[2] = now
            return left_out
        st[1] += 1
        return None

    @staticmethod
    def note(left_out: int) -> str:
        """The suffix of a line logged after ``left_out`` incidents were left out ('' for none)."""
        return f" [{left_out} more like this not logged since the previous line]" if left_out else ""


class IncreasingIds:
    """The last id per key of ids an exchange makes grow (trade ids per symbol): :meth:`is_new` is
    False for one not above the last seen, i.e. a message already published (a rotation's overlap
    in another text, a resend). Lives as long as the connection that carries them
    (:meth:`forget` on close: the next connection, or a capture's next session, starts afresh)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[Hashable, int] = {}

    def is_new(self, key: Hashable, n: int) -> bool:
        last = self._last.get(key)
        if last is not None and n <= last:
            return False
        self._last[key] = n
        return True

    def forget(self, keys: Iterable[Hashable] | None = None) -> None:
        """Forget these keys (None: all)."""
        if keys is None:
            self._last.clear()
            return
        for key in keys:
            self._last.pop(key, None)


# ---------------------------------------------------------------- actions

@dataclass(frozen=True, slots=True)
class Send:
    """Send ``payload`` on connection ``conn``."""

    conn: str
    payload: str | bytes


@dataclass(frozen=True, slots=True)
class Open:
    """Open (or reopen) the connection described by ``spec``."""

    spec: ConnectionSpec


@dataclass(frozen=True, slots=True)
class Close:
    """Close connection ``conn`` (the driver reconnects it unless ``reconnect`` is False)."""

    conn: str
    reason: str
    reconnect: bool = True


@dataclass(frozen=True, slots=True)
class Rotate:
    """Replace connection ``conn`` now, make-before-break (the exchange announced it will close it,
    e.g. OKX's service-upgrade notice); the adapter must handle the handover (``handle_handoff``)."""

    conn: str
    reason: str


@dataclass(frozen=True, slots=True)
class Fetch:
    """GET ``url``; the response goes back to ``on_rest(fetch, status, body, ts)``.

    ``weight`` is charged to the exchange's REST budget; ``tag`` says why
    (``'snapshot'``, ``'instruments'``, ``'open_interest'``...), ``symbol`` for which
    normalized symbol (or None).
    """

    url: str
    weight: int = 1
    tag: str = ""
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Resync:
    """The book of ``symbol`` is invalid; the driver calls ``adapter.resync(symbol, ts)``."""

    symbol: str
    reason: str


Action = Send | Open | Close | Fetch | Resync | Rotate


def describe_resync(actions: Sequence[Action]) -> str:
    """What a resync request produced (the actions it appended), in words for a log line."""
    if any(isinstance(a, Fetch) for a in actions):
        return "resync by REST snapshot"
    if any(isinstance(a, Send) for a in actions):
        return "resync by resubscribe"
    if any(isinstance(a, Resync) for a in actions):
        return "resync requested (REST snapshot or resubscribe, by the adapter)"
    # Nothing asked for now: a snapshot fetch is already out, or the resubscribe rate limit
    # deferred it to the adapter's timer.
    return "resync already pending or deferred"


class Output:
    """What one adapter call produced: events to publish and actions to perform, in order."""

    __slots__ = ("events", "actions")

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.actions: list[Action] = []

    def __repr__(self) -> str:
        return f"Output(events={len(self.events)}, actions={self.actions!r})"

    def extend(self, other: Output) -> None:
        self.events.extend(other.events)
        self.actions.extend(other.actions)


# ---------------------------------------------------------------- configuration

@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """One websocket connection the driver keeps alive.

    ``subscribe`` messages are sent in order after connecting, ``subscribe_interval``
    seconds apart (the exchange's message-rate limit); ``ping`` is sent every
    ``ping_interval`` s; no message for ``silence_timeout`` s means the connection is dead.
    """

    id: str
    url: str
    subscribe: tuple[str | bytes, ...] = ()
    subscribe_interval: float = 0.0
    ping: str | bytes | None = None
    ping_interval: float | None = None
    silence_timeout: float = 30.0
    # Which (channel, normalized symbol) pairs this connection carries (for Status and docs).
    streams: tuple[tuple[str, str], ...] = ()
    # The exchange closes a connection this many seconds after it opened (Binance: 24 h). Set, the
    # driver replaces the connection before then, make-before-break (see gateways/driver.py), and
    # the adapter's handle_handoff readies it for the overlap.
    max_lifetime: float | None = None


@dataclass(frozen=True)
class Subscription:
    """What to subscribe: channel → normalized symbols, plus per-channel options."""

    channels: Mapping[str, Sequence[str]]
    depth: int = 0                      # REST snapshot depth (0 = the adapter's default)
    candle_interval: str | None = None   # None: the adapter's default_candle_interval
    open_interest_interval: float = 60.0  # REST polling period where OI has no stream
    poll_interval: float = 1.0            # seconds between polls of a channel that is only polled (ccxt long tail)
    ccxt_stream: bool = False             # ccxt long tail: stream through ccxt.pro what it can watch

    def symbols(self, channel: str) -> list[str]:
        return list(self.channels.get(channel, ()))

    def all_symbols(self) -> list[str]:
        seen: dict[str, None] = {}
        for syms in self.channels.values():
            for s in syms:
                seen.setdefault(s, None)
        return list(seen)


class AdapterError(Exception):
    """A message the adapter understood to be wrong; ``reason`` becomes the counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ---------------------------------------------------------------- instrument pages

# Pages of one paginated instruments list followed before giving up on a cursor that never ends.
MAX_INSTRUMENT_PAGES = 100


class InstrumentPages:
    """Walks one paginated instruments list (Bybit's ``nextPageCursor``), sans-I/O.

    The driver (live), the replayer and ``feedfabric symbols`` share it, so all three read every
    page the same way::

        pages = InstrumentPages(adapter, first)
        while (fetch := pages.next) is not None:
            body = GET(fetch.url)
            pages.got(body)

    A cursor that repeats, or more than ``limit`` pages, ends the walk with ``unfinished`` set
    (the pages read so far are still used).
    """

    __slots__ = ("adapter", "next", "pages", "unfinished", "limit", "_seen")

    def __init__(self, adapter: Adapter, first: Fetch, limit: int = MAX_INSTRUMENT_PAGES) -> None:
        self.adapter = adapter
        self.next: Fetch | None = first
        self.pages = 0
        self.unfinished = False
        self.limit = limit
        self._seen: set[str] = set()

    def got(self, body: str | bytes) -> Fetch | None:
        """Record the body of ``self.next``; returns (and becomes ``next``) the following page's request."""
        fetch = self.next
        if fetch is None:
            raise RuntimeError("InstrumentPages.got after the last page")
        self._seen.add(fetch.url)
        self.pages += 1
        nxt = self.adapter.next_instrument_request(fetch, body)
        if nxt is not None and (nxt.url in self._seen or self.pages >= self.limit):
            self.unfinished = True
            nxt = None
        self.next = nxt
        return nxt


# ---------------------------------------------------------------- the base class

class Adapter:
    """Base class of every exchange adapter (see the module docstring).

    Class attributes a subclass sets: ``exchange`` (the id used in events, e.g.
    ``'BINANCE'``), ``urls`` (named endpoints; a config can override any of them,
    e.g. to point at the loopback exchange), ``rest_weight_per_minute``, and ``driver`` when
    its actions are not websockets and HTTP GETs.
    """

    exchange: ClassVar[str] = ""
    urls: ClassVar[Mapping[str, str]] = {}
    rest_weight_per_minute: ClassVar[int] = 1200
    # The response header in which the exchange says how much weight this IP used in its current
    # window (None: it says nothing), or how much it has left: the driver's budget keeps no more.
    rest_used_weight_header: ClassVar[str | None] = None
    rest_remaining_header: ClassVar[str | None] = None
    # The shortest time between two loads of the instrument lists a gateway re-matching its symbol
    # patterns may ask (0: what the REST budget allows, gateways.selection.rematch_floor).
    instruments_reload_min: ClassVar[float] = 0.0
    # "module:Class" of the driver that performs this adapter's actions (named, not imported: the
    # adapter stays free of I/O code); gateways.process.driver_class resolves it.
    driver: ClassVar[str] = "gateways.driver:Driver"
    # Seconds between on_timer calls (None: the adapter needs no timer).
    timer_interval: ClassVar[float | None] = None
    # Where the exchange tells its system status over REST (None: it does not, or on its websocket),
    # asked from the timer (so the adapter needs a timer_interval) every system_status_interval_ns;
    # the subclass reads the answer in handle_system_status.
    system_status_path: ClassVar[str | None] = None
    system_status_interval_ns: ClassVar[int] = 60_000_000_000
    # The candle bar length when the subscription names none (an exchange with a single
    # candle length, like Coinbase's websocket, sets its own).
    default_candle_interval: ClassVar[str] = "1m"

    def __init__(self, subscription: Subscription, *, urls: Mapping[str, str] | None = None,
                 symbols: Iterable[Symbol] | None = None) -> None:
        self.subscription = subscription
        self.url = dict(self.urls)
        if urls:
            unknown = set(urls) - set(self.url)
            if unknown:
                raise ValueError(f"{self.exchange}: unknown url names {sorted(unknown)}; known: {sorted(self.url)}")
            self.url.update(urls)
        self.counters: Counter[str] = Counter()
        # The exchange's own system status, from what the subclass hears of it (gateways/system_status.py).
        self.system = SystemStatus(self.exchange, self.counters)
        self.symbols: dict[str, Symbol] = {}          # normalized → Symbol
        self.to_exchange: dict[str, str] = {}         # normalized → exchange id
        self.from_exchange: dict[str, Symbol] = {}    # exchange id → Symbol
        self.log_limit = LogLimit()   # _error lines, per error reason
        self._unknown_subscribed: set[str] = set()   # subscribed symbols already reported unknown
        self._connections: list[ConnectionSpec] | None = None   # built once per set of symbols
        if symbols is not None:
            self.set_symbols(symbols)

    # ---- instruments
    def instrument_requests(self) -> list[Fetch]:
        """REST requests whose bodies describe the instruments (tag ``'instruments'``)."""
        return []

    def next_instrument_request(self, fetch: Fetch, body: str | bytes) -> Fetch | None:
        """The request for the next page of a paginated instruments response, None when it was the
        last (the default: instrument lists come in one response). Whoever loads the instruments
        (the driver) GETs it and passes every page's body to :meth:`load_instruments`."""
        return None

    def parse_instruments(self, url: str, body: str | bytes) -> list[Symbol]:
        """Symbols from one instruments response (raise on a malformed body)."""
        raise NotImplementedError

    def load_instruments(self, bodies: Mapping[str, str | bytes]) -> list[Symbol]:
        """Parse every instruments response (url → body) and install the symbols."""
        symbols: list[Symbol] = []
        for url, body in bodies.items():
            symbols.extend(self.parse_instruments(url, body))
        self.set_symbols(symbols)
        return symbols

    def set_symbols(self, symbols: Iterable[Symbol]) -> None:
        self._connections = None   # subscriptions name exchange ids: build them again
        for sym in symbols:
            self.symbols[sym.normalized] = sym
            if sym.exchange_symbol is not None:
                self.to_exchange[sym.normalized] = sym.exchange_symbol
                self.from_exchange[sym.exchange_symbol] = sym

    def exchange_symbol(self, normalized: str) -> str:
        """The exchange's id of a normalized symbol (KeyError with a clear message when unknown)."""
        try:
            return self.to_exchange[normalized]
        except KeyError:
            raise KeyError(f"{self.exchange}: unknown symbol {normalized!r} (instruments not loaded?)") from None

    def check_subscription(self) -> list[str]:
        """Subscribed symbols the instruments don't know (empty when all are known)."""
        return [s for s in self.subscription.all_symbols() if s not in self.to_exchange]

    def known_symbols(self, symbols: Iterable[str]) -> list[str]:
        """The symbols the loaded instruments know, in order, for building subscriptions.

        Every adapter's ``build_connections()`` goes through this (or :meth:`subscribed`): an unknown
        symbol is left out, logged once (``"<EX>: unknown symbol ... not subscribed"``) and counted
        once as ``subscription.unknown_symbol``, so one bad symbol in a config never stops the
        others from being subscribed (nor the gateway from running).
        """
        known: list[str] = []
        for s in symbols:
            if s in self.to_exchange:
                known.append(s)
            elif s not in self._unknown_subscribed:
                self._unknown_subscribed.add(s)
                self.counters["subscription.unknown_symbol"] += 1
                logger.bind(exchange=self.exchange, symbol=s).warning(
                    "{}: unknown symbol {!r} not subscribed (not in the loaded instruments)", self.exchange, s)
        return known

    @property
    def candle_interval(self) -> str:
        """The candle bar length in force: the subscription's, else the adapter's default."""
        return self.subscription.candle_interval or self.default_candle_interval

    def subscribed(self, channel: str) -> list[str]:
        """The known symbols subscribed on ``channel`` (see :meth:`known_symbols`)."""
        return self.known_symbols(self.subscription.symbols(channel))

    # ---- connections
    def connections(self) -> list[ConnectionSpec]:
        """The websocket connections to keep open: :meth:`build_connections`, built once and kept
        until :meth:`set_symbols` changes the symbols (the driver, the replayer and resubscribes
        ask for them often)."""
        if self._connections is None:
            self._connections = self.build_connections()
        return self._connections

    def build_connections(self) -> list[ConnectionSpec]:
        """One :class:`ConnectionSpec` per websocket, from the subscription and the loaded symbols."""
        raise NotImplementedError

    def match_connection(self, url: str) -> str | None:
        """The id of our connection a recorded connection (by its url) corresponds to (replay)."""
        specs = self.connections()
        path = url.split("?", 1)[0]
        for spec in specs:
            if spec.url.split("?", 1)[0] == path:
                return spec.id
        return specs[0].id if specs else None

    # ---- the event entry points (never raise)
    def on_open(self, conn: str, ts: int) -> Output:
        out = Output()
        try:
            self.handle_open(conn, ts, out)
        except Exception as exc:  # noqa: BLE001 - an adapter bug must not kill the gateway
            self._error("open_failed", exc, conn)
        return out

    def on_message(self, conn: str, raw: str | bytes, ts: int) -> Output:
        out = Output()
        self.counters["messages"] += 1
        try:
            self.handle_message(conn, raw, ts, out)
        except AdapterError as exc:
            self._error(exc.reason, exc, raw)
        except Exception as exc:  # noqa: BLE001 - malformed input becomes a counted error
            self._error(f"parse.{type(exc).__name__}", exc, raw)
        self.counters["events"] += len(out.events)
        return out

    def on_rest(self, fetch: Fetch, status: int, body: str | bytes | None, ts: int) -> Output:
        """A REST response (``status`` 0 and ``body`` None: the request failed without a response)."""
        out = Output()
        self.counters["rest_responses"] += 1
        try:
            if status != 200 or body is None:
                raise AdapterError(f"rest_status.{fetch.tag or 'other'}", f"{fetch.url} -> {status}")
            if fetch.tag == SYSTEM_STATUS_TAG:
                self.handle_system_status(body, ts, out)
            else:
                self.handle_rest(fetch, body, ts, out)
        except AdapterError as exc:
            self._error(exc.reason, exc, body, fetch.symbol)
            self.rest_failed(fetch, ts, out)
        except Exception as exc:  # noqa: BLE001
            self._error(f"rest_parse.{type(exc).__name__}", exc, body, fetch.symbol)
            self.rest_failed(fetch, ts, out)
        self.counters["events"] += len(out.events)
        return out

    def on_close(self, conn: str, ts: int, reason: str = "") -> Output:
        out = Output()
        try:
            self.handle_close(conn, ts, reason, out)
        except Exception as exc:  # noqa: BLE001
            self._error("close_failed", exc, conn)
        return out

    def on_timer(self, ts: int) -> Output:
        out = Output()
        try:
            self.handle_timer(ts, out)
            if self.system_status_path is not None and self.system.due(ts, self.system_status_interval_ns):
                out.actions.append(Fetch(self.url["rest"] + self.system_status_path, 1, SYSTEM_STATUS_TAG))
        except Exception as exc:  # noqa: BLE001
            self._error("timer_failed", exc, None)
        return out

    def on_handoff(self, conn: str, ts: int) -> Output:
        """Connection ``conn`` was replaced by a new one without a break (a planned rotation); the
        new one's messages follow, the old one's duplicates taken out (docs/gateways.md)."""
        out = Output()
        try:
            self.handle_handoff(conn, ts, out)
        except Exception as exc:  # noqa: BLE001
            self._error("handoff_failed", exc, conn)
        return out

    def resync(self, symbol: str, ts: int) -> Output:
        """Start rebuilding the book of one symbol (REST snapshot or resubscribe)."""
        out = Output()
        try:
            self.handle_resync(symbol, ts, out)
        except Exception as exc:  # noqa: BLE001
            self._error("resync_failed", exc, symbol, symbol)
        return out

    # ---- what subclasses implement (may raise)
    def handle_open(self, conn: str, ts: int, out: Output) -> None:
        pass

    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        raise NotImplementedError

    def handle_rest(self, fetch: Fetch, body: str | bytes, ts: int, out: Output) -> None:
        raise AdapterError("rest_unexpected", fetch.url)

    def handle_system_status(self, body: str | bytes, ts: int, out: Output) -> None:
        """The answer to the ``system_status_path`` poll: ``self.system.set(...)`` then ``publish``."""
        raise AdapterError("rest_unexpected", "system status")

    def rest_failed(self, fetch: Fetch, ts: int, out: Output) -> None:
        """A REST request failed (bad status or body); e.g. retry the snapshot later."""

    def handle_close(self, conn: str, ts: int, reason: str, out: Output) -> None:
        pass

    def handle_timer(self, ts: int, out: Output) -> None:
        pass

    def handle_resync(self, symbol: str, ts: int, out: Output) -> None:
        raise NotImplementedError

    def handle_handoff(self, conn: str, ts: int, out: Output) -> None:
        """Ready the state of ``conn`` for the new connection's messages (only adapters whose specs
        set ``max_lifetime``, or that ask for a :class:`Rotate`, are rotated): e.g. let each book's
        first update straddle its id, or drop the new subscription's snapshot of a synced book."""

    # ---- counters
    def ignore(self, reason: str) -> None:
        """Count a message deliberately not turned into events (acks, pongs, unsubscribed streams)."""
        self.counters[f"ignored.{reason}"] += 1

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def _error(self, reason: str, exc: BaseException, raw: object, symbol: str | None = None) -> None:
        key = f"errors.{reason}"
        self.counters[key] += 1
        self.counters["errors"] += 1
        left_out = self.log_limit.check(key)
        if left_out is None:
            return
        text = raw if isinstance(raw, str) else repr(raw)
        log = logger.bind(exchange=self.exchange) if symbol is None else logger.bind(exchange=self.exchange,
                                                                                      symbol=symbol)
        log.warning("{} {}: {} | {:.300}{}", self.exchange, key, exc, text, LogLimit.note(left_out))

    def error_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.counters.items() if k.startswith("errors.")}

    def ignored_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.counters.items() if k.startswith("ignored.")}

