"""Replay: feed a capture through the same adapter (and publisher) as the live gateway.

Any capture :func:`gateways.capture.read_capture` reads works: ours (.ffcap), the
cryptofeed 2.x and v3 captures and tardis message files. The adapter is chosen by the
capture's exchange name (``CAPTURE_EXCHANGES`` maps other spellings) and subscribed to
the recorded channels. REST requests the adapter makes are answered from the capture's
REST responses (matched by path and query, host and ``limit`` ignored), delivered no
earlier than they were recorded, so book sync sees the same interleaving as live, and with
their recorded HTTP status (a recorded 429 or 5xx is replayed as that failure; records
without a status, as in older captures, are 200s).

A capture may hold several sessions (a writer reopened the file, e.g. after a crash): each
later ``header`` record ends the connections of the session before it (``on_close``, as
the restart did live) and reloads the instruments; a session recorded with other channels
gets an adapter subscribed to them; the results cover the whole file. :class:`PartsReplayer`
replays the parts of one recording together (a gateway that subscribed instruments listed
after its start on parts of their own, gateways.process).

The adapter's timer runs on the capture's clock: ``on_timer`` every ``timer_interval`` of
recorded time, as the driver calls it live, so polled channels (open interest, Kraken
Futures candles) and resubscribe retries happen in a replay too. A poll is answered by the
recorded response to the same URL when the capture has one; polls it lacks (a capture from a
recorder that did not poll) are counted in ``ReplayResult.unanswered_polls``, not kept as
unanswered requests.

Full speed by default; ``pace=True`` sleeps to reproduce the recorded timing
(``speed`` > 1 replays faster).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from loguru import logger

from cryptofeed_types import Status
from gateways import exchanges
from gateways.adapter import Adapter, Close, Fetch, InstrumentPages, Open, Output, Resync, Send, Subscription
from gateways.books import share_books
from gateways.capture import CLOSE, CONNECT, HEADER, RECV, REST, Record, read_capture
from gateways.selection import expand, has_patterns

# Capture exchange name → registry name, where they differ.
CAPTURE_EXCHANGES: dict[str, str] = {}

# Query parameters that depend on when or how a request was made, not on what it asks for:
# ``limit`` (depth asked of a snapshot), ``from``, ``start`` and ``end`` (the time window of a
# poll, e.g. Kraken Futures' and Coinbase's candles: the replay's timer does not tick at the
# recorder's wall-clock instants, so its first window may begin a bar away from the recorded one).
_IGNORED_QUERY = frozenset({"limit", "from", "start", "end"})
_NEVER = 1 << 63   # the next timer call of an adapter without a timer
# Subscription options a gateway writes into its capture's header (gateways.process).
_RECORDED_OPTIONS = ("depth", "candle_interval", "open_interest_interval", "poll_interval", "ccxt_stream")


def _url_key(url: str) -> tuple[str, frozenset[tuple[str, str]]]:
    parts = urlsplit(url)
    query = frozenset((k, v) for k, v in parse_qsl(parts.query) if k not in _IGNORED_QUERY and v != "")
    return parts.path.rstrip("/"), query


@dataclass
class ReplayResult:
    """What a replay did: the adapter (its books and counters), event counts, leftovers."""

    adapter: Adapter
    records: Counter[str] = field(default_factory=Counter)
    events_by_kind: Counter[str] = field(default_factory=Counter)
    events: list[Any] = field(default_factory=list)   # only with collect=True
    unanswered: list[Fetch] = field(default_factory=list)
    abandoned: list[Fetch] = field(default_factory=list)  # pending when their session ended
    unused_rest: int = 0
    unanswered_polls: int = 0     # timer polls (open interest, candles...) the capture had no response to
    timers: int = 0               # on_timer calls made on the capture's clock
    sessions: int = 0
    actions: Counter[str] = field(default_factory=Counter)

    @property
    def event_count(self) -> int:
        return sum(self.events_by_kind.values())


class RestPool:
    """Recorded REST responses, answering the adapter's Fetches by URL (oldest first)."""

    def __init__(self) -> None:
        self._recs: list[tuple[tuple[str, frozenset[tuple[str, str]]], Record]] = []

    def add(self, rec: Record) -> None:
        self._recs.append((_url_key(rec.url or ""), rec))

    def take(self, fetch: Fetch, *, loose: bool = False) -> Record | None:
        """The oldest unused response for ``fetch`` (``loose``: the same path is enough)."""
        key = _url_key(fetch.url)
        for i, (k, rec) in enumerate(self._recs):
            if k == key:
                del self._recs[i]
                return rec
        if loose:
            for i, (k, rec) in enumerate(self._recs):
                if k[0] == key[0]:
                    del self._recs[i]
                    return rec
        return None

    def has(self, fetch: Fetch) -> bool:
        """Whether a response for ``fetch`` is here (exact URL)."""
        key = _url_key(fetch.url)
        return any(k == key for k, _ in self._recs)

    def __len__(self) -> int:
        return len(self._recs)


def capture_adapter(header: Mapping[str, Any], *, exchange: str | None = None,
                    channels: Mapping[str, Iterable[str]] | None = None,
                    options: Mapping[str, Any] | None = None, urls: Mapping[str, str] | None = None) -> Adapter:
    """The adapter a capture was recorded with, from its header record: its exchange and
    channels (unless given) and the subscription options the recording gateway wrote there
    (``depth``, ``candle_interval``...; given ``options`` win), so that e.g. its candles keep
    their bar length and its books their depth. Patterns among the given channels' symbols
    (gateways.selection) match the symbols the capture recorded, on any channel."""
    name = exchange or header.get("exchange") or ""
    cls = exchanges.get(CAPTURE_EXCHANGES.get(name, name))
    recorded: Mapping[str, Iterable[str]] = header.get("channels") or {}
    if channels is None:
        channels = recorded
    elif has_patterns(channels):
        channels, unmatched = expand({ch: list(syms) for ch, syms in channels.items()},
                                     {s for syms in recorded.values() for s in syms})
        for pattern in unmatched:
            logger.warning("{}: symbol pattern {!r} matches none of the capture's symbols", name, pattern)
    opts = dict(options or {})
    for key in _RECORDED_OPTIONS:
        if header.get(key) and key not in opts:
            opts[key] = header[key]
    return cls(Subscription({ch: list(syms) for ch, syms in channels.items()}, **opts), urls=urls or None)


@dataclass
class RecordedInstruments:
    """What :func:`recorded_instruments` found: the bodies to ``load_instruments`` and what was not there."""

    bodies: dict[str, Any] = field(default_factory=dict)
    missing: list[Fetch] = field(default_factory=list)   # requests (a list's first page or a later one) not recorded
    failed_responses: int = 0   # recorded non-200 answers skipped (the live driver retried after them)
    unfinished: int = 0         # lists whose pages did not end (InstrumentPages.unfinished)


def recorded_instruments(adapter: Adapter, pool: RestPool) -> RecordedInstruments:
    """Every page of every instruments list of ``adapter``, answered from ``pool`` as live."""
    found = RecordedInstruments()
    for first in adapter.instrument_requests():
        pages = InstrumentPages(adapter, first)
        while (fetch := pages.next) is not None:
            # Later pages differ only by their cursor: never let one stand in for another.
            loose = pages.pages == 0
            rec = pool.take(fetch, loose=loose)
            while rec is not None and not _ok(rec):
                # Live, the driver retried after a failed instruments request: the next response is the retry.
                found.failed_responses += 1
                rec = pool.take(fetch, loose=loose)
            if rec is None:
                found.missing.append(fetch)
                break
            found.bodies[rec.url or fetch.url] = rec.data
            pages.got(rec.data)
        found.unfinished += pages.unfinished
    return found


class Replayer:
    """Drives one adapter from a record stream (see the module docstring)."""

    def __init__(self, adapter: Adapter | None = None, *, exchange: str | None = None,
                 channels: Mapping[str, Iterable[str]] | None = None, publisher: Any = None,
                 sink: Callable[[Any], None] | None = None, collect: bool = False,
                 pace: bool = False, speed: float = 1.0, subscription_options: Mapping[str, Any] | None = None,
                 start_at: float | None = None,
                 adapters: Callable[[], Iterable[Adapter | None]] | None = None) -> None:
        self.adapter = adapter
        self._own_adapter = adapter is None   # built from the capture's header (a session may rebuild it)
        # Paced replay: the wall-clock instant (time.time()) the first record belongs to. Several
        # venues replayed with one start_at stay in step even when one process starts late: it
        # catches up (no sleeps until it is on schedule) instead of lagging the others.
        self.start_at = start_at
        self.exchange = exchange
        self.channels = channels
        self.publisher = publisher
        self.sink = sink
        self.collect = collect
        self.pace = pace
        self.speed = speed
        self.subscription_options = dict(subscription_options or {})
        self.pool = RestPool()
        self.pending: list[Fetch] = []
        # Timer polls waiting for their recorded response, by URL: a poll repeated before its
        # answer replaces the older one (live, each would have had its own response).
        self.polls: dict[str, Fetch] = {}
        self._next_timer = 0   # capture time of the next on_timer call (0: the first record sets it)
        self.open: dict[str, str] = {}      # capture conn → adapter conn
        self.result: ReplayResult | None = None
        self._instruments_done = False
        # Whose books the publisher's snapshot service serves: this replay's adapter, looked up at
        # each request (a later session may replace it), or those ``adapters`` returns (PartsReplayer).
        # None: a replayer whose capture header has not come yet (it serves no books).
        self._adapters = adapters or (lambda: (self.adapter,))
        self._shared = False
        self._now = 0

    # ---- setup
    def _make_adapter(self, header: Mapping[str, Any]) -> Adapter:
        return capture_adapter(header, exchange=self.exchange, channels=self.channels,
                               options=self.subscription_options)

    def _load_instruments(self) -> None:
        self._instruments_done = True
        if not self._next_timer:
            # Live, the driver's timer ticks first right after the instruments load.
            self._next_timer = self._now
        adapter = self.adapter
        assert adapter is not None
        if self.publisher is not None and not self._shared:
            self._shared = True
            share_books(adapter, self.publisher, self._adapters)
        found = recorded_instruments(adapter, self.pool)
        for name, n in (("instruments_failed_response", found.failed_responses),
                        ("instruments_missing", len(found.missing)),
                        ("instrument_pages_unfinished", found.unfinished)):
            if n:
                adapter.count(f"replay.{name}", n)
        if found.bodies:
            try:
                adapter.load_instruments(found.bodies)
            except Exception as exc:  # noqa: BLE001 - a bad capture must not stop the replay
                adapter.count("replay.instruments_error")
                logger.warning("{}: instruments from capture unusable: {}", adapter.exchange, exc)
        unknown = adapter.check_subscription()
        if unknown:
            adapter.count("replay.unknown_symbols", len(unknown))

    def _polled_after_instruments(self, rec: Record) -> bool:
        """Whether ``rec``, a REST response, came after the instruments were loaded: in a capture
        with no websocket (a polling adapter: the ccxt long tail) no connect record says when
        that was; the first response to anything but an instrument list does, once every list is here."""
        adapter = self.adapter
        assert adapter is not None
        requests = adapter.instrument_requests()
        paths = {f.url.split("?", 1)[0] for f in requests}
        return (bool(requests) and (rec.url or "").split("?", 1)[0] not in paths
                and all(self.pool.has(f) for f in requests))

    # ---- output handling
    def _emit(self, out: Output, polls: bool = False) -> None:
        result = self.result
        assert result is not None
        for ev in out.events:
            result.events_by_kind[ev.KIND] += 1
            if self.collect:
                result.events.append(ev)
            if self.publisher is not None:
                self.publisher.publish(ev)
            if self.sink is not None:
                self.sink(ev)
        if out.actions:
            self._act(out.actions, polls)

    def _act(self, actions: list[Any], polls: bool = False) -> None:
        result = self.result
        adapter = self.adapter
        assert result is not None and adapter is not None
        for action in actions:
            if isinstance(action, Fetch):
                result.actions["fetch"] += 1
                rec = self.pool.take(action)
                if rec is None:
                    if polls:
                        if action.url in self.polls:
                            result.unanswered_polls += 1
                        self.polls[action.url] = action
                    else:
                        self.pending.append(action)
                else:
                    self._emit(adapter.on_rest(action, _status(rec), rec.data, max(rec.ts, self._now)))
            elif isinstance(action, Resync):
                result.actions["resync"] += 1
                self._emit(adapter.resync(action.symbol, self._now))
            elif isinstance(action, Send):
                result.actions["send"] += 1   # the capture holds what was really sent
            elif isinstance(action, (Open, Close)):
                result.actions[type(action).__name__.lower()] += 1

    def _status(self, conn: str, state: str, reason: str | None = None) -> None:
        adapter = self.adapter
        assert adapter is not None
        if self.publisher is not None:
            self.publisher.set_feed_state(conn, state, reason)
        elif self.sink is not None or self.collect:
            ev = Status(adapter.exchange, conn, state, reason=reason, receipt_timestamp=self._now)
            if self.collect and self.result is not None:
                self.result.events.append(ev)
            if self.sink is not None:
                self.sink(ev)

    def _timer(self, ts: int) -> None:
        """Call ``on_timer`` for every timer interval of recorded time up to ``ts``."""
        adapter = self.adapter
        assert adapter is not None
        if not adapter.timer_interval:
            self._next_timer = _NEVER
            return
        step = int(adapter.timer_interval * 1e9)
        nxt = self._next_timer
        if not nxt:
            self._next_timer = ts + step
            return
        if ts - nxt > step:
            # A pause in the recording (no traffic): live, ticks during it would have found
            # nothing new to do but the last one, so one tick stands for them all.
            nxt = ts
        while nxt <= ts:
            assert self.result is not None
            self.result.timers += 1
            out = adapter.on_timer(nxt)
            nxt += step
            self._emit(out, polls=True)
        self._next_timer = nxt

    def _answer_polls(self) -> None:
        adapter = self.adapter
        assert adapter is not None
        for url, fetch in list(self.polls.items()):
            rec = self.pool.take(fetch)
            if rec is not None:
                del self.polls[url]
                self._emit(adapter.on_rest(fetch, _status(rec), rec.data, max(rec.ts, self._now)))

    def _answer_pending(self) -> None:
        if self.polls:
            self._answer_polls()
        if not self.pending:
            return
        adapter = self.adapter
        assert adapter is not None
        still: list[Fetch] = []
        for fetch in self.pending:
            rec = self.pool.take(fetch)
            if rec is None:
                still.append(fetch)
            else:
                self.pending = still + self.pending[self.pending.index(fetch) + 1:]
                self._emit(adapter.on_rest(fetch, _status(rec), rec.data, max(rec.ts, self._now)))
                self._answer_pending()
                return
        self.pending = still

    def _open(self, cap_conn: str, url: str | None) -> str:
        adapter = self.adapter
        assert adapter is not None
        if cap_conn in self.open:
            conn = self.open[cap_conn]
            self._emit(adapter.on_close(conn, self._now, "reconnect"))
            self._status(conn, "disconnected", "reconnect")
        try:
            # Our own recordings name each connection by its id; several connections may share
            # a url (Coinbase, Kraken: symbols spread over connections), so the id comes first.
            ours = any(spec.id == cap_conn for spec in adapter.connections())
            conn = cap_conn if ours else adapter.match_connection(url or "") or cap_conn
        except Exception:  # noqa: BLE001 - unknown symbols: connection specs can't be built
            conn = cap_conn
        self.open[cap_conn] = conn
        self._status(conn, "connected")
        self._emit(adapter.on_open(conn, self._now))
        return conn

    def _end_session(self) -> None:
        """A later header: the capture was reopened (a restarted gateway). Its connections are gone."""
        adapter = self.adapter
        result = self.result
        assert adapter is not None and result is not None
        for conn in list(self.open.values()):
            self._emit(adapter.on_close(conn, self._now, "capture session ended"))
            self._status(conn, "disconnected", "capture session ended")
        self.open.clear()
        result.abandoned.extend(self.pending)
        self.pending = []
        result.unanswered_polls += len(self.polls)
        self.polls = {}
        self._next_timer = 0
        self._instruments_done = False  # the restarted gateway loaded them again

    def _next_session(self, header: Mapping[str, Any]) -> None:
        """A later header: end the session before it; a session recorded with other channels (a
        capture appended to with other symbols, a gateway part rebuilt with new listings) gets an
        adapter subscribed to them, the counters carried over."""
        self._end_session()
        adapter, result = self.adapter, self.result
        assert adapter is not None and result is not None
        recorded = {ch: list(syms) for ch, syms in (header.get("channels") or {}).items()}
        if (not self._own_adapter or self.channels is not None or not recorded
                or recorded == {ch: list(syms) for ch, syms in adapter.subscription.channels.items()}):
            return
        fresh = self._make_adapter(header)
        fresh.counters.update(adapter.counters)
        self.adapter = result.adapter = fresh

    # ---- the loop
    def run(self, records: Iterable[Record]) -> ReplayResult:
        pacer = Pacer(self.speed, self.start_at) if self.pace else None
        for rec in records:
            if pacer is not None and rec.kind != HEADER:
                pacer.wait(rec.ts)
            self.feed(rec)
        return self.finish()

    def feed(self, rec: Record) -> None:
        """Replay one record (:meth:`run` feeds a whole stream, then :meth:`finish`)."""
        kind = rec.kind
        if kind == HEADER:
            if self.result is None:
                if self.adapter is None:
                    self.adapter = self._make_adapter(rec.data or {})
                self.result = ReplayResult(self.adapter)
            else:
                self._next_session(rec.data or {})
            self.result.records[HEADER] += 1
            self.result.sessions += 1
            return
        if self.adapter is None:
            raise ValueError("capture has no header record and no adapter was given")
        if self.result is None:
            self.result = ReplayResult(self.adapter)
        self.result.records[kind] += 1
        if rec.ts > self._now:
            self._now = rec.ts
        if kind == REST:
            if not self._instruments_done and self._polled_after_instruments(rec):
                self._load_instruments()
            if self._instruments_done:
                # The timer ticks up to the response first: live, a tick may have asked for it
                # (a retried snapshot, a poll) after the last message before it.
                if rec.ts >= self._next_timer and rec.ts:
                    self._timer(rec.ts)
                self.pool.add(rec)
                self._answer_pending()
            else:
                self.pool.add(rec)
            return
        if not self._instruments_done:
            self._load_instruments()
        if rec.ts >= self._next_timer and rec.ts:
            self._timer(rec.ts)
        if kind == RECV:
            conn = self.open.get(rec.conn)
            if conn is None:
                conn = self._open(rec.conn, None)
            self._emit(self.adapter.on_message(conn, rec.data, rec.ts))
        elif kind == CONNECT:
            self._open(rec.conn, rec.url)
        elif kind == CLOSE:
            conn = self.open.pop(rec.conn, None)
            if conn is not None:
                self._emit(self.adapter.on_close(conn, rec.ts, rec.data or "closed"))
                self._status(conn, "disconnected", rec.data or None)

    def finish(self) -> ReplayResult:
        """After the last record: the result (ValueError for a capture without records)."""
        if self.result is None:
            raise ValueError("empty capture")
        if not self._instruments_done and self.adapter is not None:
            self._load_instruments()
        self.result.unanswered = list(self.pending)
        self.result.unanswered_polls += len(self.polls)
        self.result.unused_rest = len(self.pool)
        return self.result


class Pacer:
    """Sleeps to reproduce recorded timing: record time ``ts`` is played ``(ts - first) / speed``
    after the start (``start_at``: a wall-clock instant, time.time(), shared by several venues'
    replays; a replay that starts late catches up instead of lagging them)."""

    def __init__(self, speed: float = 1.0, start_at: float | None = None) -> None:
        self.speed = speed
        self.start_wall = time.monotonic() - (time.time() - start_at if start_at is not None else 0.0)
        self.first: int | None = None

    def wait(self, ts: int) -> None:
        if not ts:
            return
        if self.first is None:
            self.first = ts
        delay = (ts - self.first) / 1e9 / self.speed - (time.monotonic() - self.start_wall)
        if delay > 0:
            time.sleep(delay)  # reproducing recorded pacing is the feature here


class PartsReplayer:
    """Replays the parts of one live recording together, as the gateway ran them: a gateway that
    re-matches symbol patterns subscribes instruments listed after its start on a part of its own,
    recorded beside the first file (gateways.capture.part_capture). One :class:`Replayer` (adapter)
    per part, the records of all in recorded order, one publisher whose snapshot service serves
    every part's books. ``kwargs`` go to each part's Replayer.
    """

    def __init__(self, parts: int, *, pace: bool = False, speed: float = 1.0, start_at: float | None = None,
                 **kwargs: Any) -> None:
        self.pace, self.speed, self.start_at = pace, speed, start_at
        self.replayers = [Replayer(pace=pace, speed=speed, start_at=start_at,
                                   adapters=lambda: [r.adapter for r in self.replayers], **kwargs)
                          for _ in range(parts)]

    @property
    def event_count(self) -> int:
        """Events so far, over all parts."""
        return sum(r.result.event_count for r in self.replayers if r.result is not None)

    def run(self, streams: Sequence[Iterable[Record]]) -> list[ReplayResult]:
        """One result per part (``streams``: the parts' records, as many as parts)."""
        if len(streams) != len(self.replayers):
            raise ValueError(f"{len(streams)} record streams for {len(self.replayers)} parts")
        if len(streams) == 1:
            return [self.replayers[0].run(streams[0])]   # nothing to merge, nothing per record more
        pacer = Pacer(self.speed, self.start_at) if self.pace else None

        def tagged(i: int, stream: Iterable[Record]) -> Iterator[tuple[int, int, Record]]:
            for rec in stream:
                yield rec.ts, i, rec

        replayers = self.replayers
        for _, i, rec in heapq.merge(*(tagged(i, s) for i, s in enumerate(streams)), key=lambda t: t[0]):
            if pacer is not None and rec.kind != HEADER:
                pacer.wait(rec.ts)
            replayers[i].feed(rec)
        return [r.finish() for r in replayers]


def replay_parts(streams: Sequence[Iterable[Record]], **kwargs: Any) -> list[ReplayResult]:
    """:class:`PartsReplayer` ``(len(streams), **kwargs).run(streams)``."""
    return PartsReplayer(len(streams), **kwargs).run(streams)


def _ok(rec: Record) -> bool:
    return rec.status is None or rec.status == 200


def _status(rec: Record) -> int:
    """The HTTP status to replay (records without one, as in older captures and other formats: 200)."""
    return 200 if rec.status is None else rec.status


def replay_capture(path: str | Path, **kwargs: Any) -> ReplayResult:
    """Replay one capture file/prefix (see :class:`Replayer` for the keyword arguments)."""
    return Replayer(**kwargs).run(read_capture(path))
