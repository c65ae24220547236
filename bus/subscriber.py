"""The subscriber: correct, gap-free books and in-order streams from one or many publishers.

Usage (blocking)::

    with Subscriber(GatewayEndpoint("ipc:///run/ff/binance.pub", "ipc:///run/ff/binance.snap"),
                    ["book.BINANCE.", "trades.BINANCE."]) as sub:
        for msg in sub:
            print(msg.topic, msg.event)
        # sub.book("BINANCE", "BTC-USDT") -> a validated OrderBook

``AsyncSubscriber`` has the same constructor; ``await sub.recv()`` / ``async for msg in sub``.

Structure: :class:`SubscriberCore` is a sans-I/O state machine (frames in, messages and
snapshot requests out, no sockets, no clock of its own); :class:`Subscriber` and
:class:`AsyncSubscriber` are thin drivers doing the ZeroMQ I/O around it. The books are
kept by :class:`BookKeeper` from the messages as they are handed to the user, so
``sub.book()`` always matches the last message received (the core reads ahead in batches). The rules it
implements (normative text in docs/wire.md, "Snapshot service, heartbeats and recovery"):

- per (gateway, topic) the sequence number must grow by exactly 1; a larger jump is a gap;
  a smaller or equal one is a duplicate and is dropped;
- ``book.``/``l3.`` topics (when ``books=True``) start from the snapshot service: messages
  are buffered until the snapshot arrives, those at or below its sequence are dropped and
  the rest applied. A gap yields a ``Gap`` message, invalidates the book, re-requests its
  snapshot and yields ``Reset`` + the fresh ``L2Snapshot``. A topic whose first message in
  an epoch has sequence 1 needs no snapshot (nothing came before it);
- a publisher's own ``Gap`` of a book (its exchange broke it) invalidates that book too: the
  ``gap.`` topics covering the book prefixes are subscribed whether the user asked for them or
  not (:func:`gap_prefixes`), and handed to the user only under the user's prefixes; a lost one
  is revealed by the next heartbeat's ``book_invalid`` (a ``Gap`` "publisher gap lost");
- a new epoch from a gateway (it restarted) invalidates everything of that gateway;
- a gateway silent for ``heartbeat_timeout`` yields ``Status(state='stale')``, and
  ``Status(state='connected')`` when it speaks again;
- malformed frames are counted in ``counters['junk']`` and skipped.
Messages the subscriber makes itself (Gap, Reset, Status) carry sequence number 0.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from types import MappingProxyType, TracebackType
from typing import NamedTuple

import zmq
import zmq.asyncio
from loguru import logger
from zmq.utils.monitor import recv_monitor_message

from bus import codec, snapshot
from bus.codec import Header, WireError
from bus.endpoints import GatewayEndpoint, as_endpoint
from bus.security import CurveClient, apply_client
from bus.snapshot import STATEFUL_CHANNELS
from bus.topics import gap_scope
from bus.topics import topic as make_topic
from cryptofeed_types.book import OrderBook, is_zero
from cryptofeed_types.events import (
    Event,
    Gap,
    Heartbeat,
    L2Delta,
    L2Snapshot,
    L3Delta,
    L3Snapshot,
    Reset,
    Status,
)

try:  # direct libzmq receive (bus/_zmqio.pyx); without it, the plain pyzmq path below
    from bus._zmqio import AVAILABLE as _HAVE_ZMQIO
    from bus._zmqio import recv_messages as _recv_messages
except ImportError:
    _HAVE_ZMQIO = False

HEARTBEAT_PREFIX = "heartbeat."
CONTROL_CHANNELS = frozenset({"heartbeat", "status", "gap", "reset"})
_NB = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
LOCAL_SEQ = 0


def gap_prefixes(prefixes: Sequence[str]) -> list[str]:
    """The ``gap.`` prefixes a client keeping books subscribes beside ``prefixes``, asked for or not.

    A publisher's own ``gap`` (its book broke with the exchange: checksum, exchange sequence,
    disconnect) invalidates the book until the ``book_snapshot`` that rebuilds it; a client
    subscribed to ``book.`` alone would otherwise hold the old book as valid meanwhile.
    ``book.EX.`` → ``gap.EX.``; ``book.EX.SYM.`` → ``gap.EX.SYM.`` and the exchange's feed-wide
    ``gap.EX._.``; a prefix shorter than a channel (``""``, ``"bo"``) → ``gap.``.
    """
    out: list[str] = []
    for p in prefixes:
        if p.startswith(("book.", "l3.")):
            rest = p.split(".", 1)[1]
            out.append("gap." + rest)
            exchange, dot, symbol = rest.partition(".")
            if dot and symbol:
                out.append(f"gap.{exchange}._.")
        elif "book.".startswith(p) or "l3.".startswith(p):
            out.append("gap.")
    return list(dict.fromkeys(out))


class Message(NamedTuple):
    """One delivered message: its topic, decoded header and event."""

    topic: str
    header: Header
    event: Event


# Message(topic, header, event) goes through a Python-level __new__; tuple.__new__ builds
# the same NamedTuple from decode()'s 3-tuple in one C call (per message on the hot path).
_new_message = tuple.__new__
_decode = codec.decode
# Messages decoded ahead per read of the SUB socket. Small on purpose: decoded messages
# waiting in ``_pending`` are GC-tracked containers (~6 each) that survive collections.
# With 1000 ahead, about 6000 live young objects kept the cyclic GC busy (gen0 every ~100
# messages, then gen1/gen2 promotions and full collections): ~1.7 µs per message, a
# third of the subscriber's work. With 64 ahead (< 700, gen0's threshold, in objects)
# collections almost never run while streaming (measured: 706 -> 2 per 100k messages),
# and the per-batch overhead (one poll) is still < 0.2 µs per message.
_BATCH = 64


class _Topic:
    """Sequence (and book) state of one topic of one gateway in its current epoch."""

    __slots__ = ("topic", "stateful", "seq", "live", "had_valid", "buffer", "channel", "exchange", "symbol",
                 "gap_seen_at", "reply_seq", "plain")

    def __init__(self, topic: str, stateful: bool, event: Event | None = None) -> None:
        self.topic = topic
        self.stateful = stateful
        self.seq = 0
        self.live = False
        self.had_valid = False
        self.buffer: list[Message] = []
        parts = topic[:-1].split(".")
        self.channel = parts[0]
        # Names for Gap/Reset events: the event's own (topic keys are escaped), else the topic's.
        self.exchange = getattr(event, "exchange", None) or (parts[1] if len(parts) > 1 else "")
        self.symbol = getattr(event, "symbol", None) or (parts[2] if len(parts) > 2 else None)
        # Our seq when the publisher's own gap of this book reached us (-1: none): a heartbeat
        # listing the book invalid at another seq means we lost that gap (_check_tails).
        self.gap_seen_at = -1
        # The seq of the snapshot reply the book went live from, while it is still our seq (no
        # message of the stream has followed it yet): -1 otherwise (see _publisher_gap).
        self.reply_seq = -1
        # In sequence, delivered as is (the fast path): not a book, a heartbeat nor a gap (those
        # are looked into: _check_tails, _publisher_gap).
        self.plain = not stateful and self.channel != "heartbeat" and self.channel != "gap"


class _Gateway:
    __slots__ = ("name", "epoch", "last_seen", "stale", "states", "need_snapshot", "seen_on_sub")

    def __init__(self, name: str, epoch: int, now: float) -> None:
        self.name = name
        self.epoch = epoch
        self.last_seen = now
        self.stale = False
        self.states: dict[str, _Topic] = {}
        self.need_snapshot = False
        self.seen_on_sub = False


class _Request:
    __slots__ = ("rid", "endpoint", "gateway", "kind", "prefix", "deadline", "items")

    def __init__(self, rid: bytes, endpoint: int, gateway: str | None, kind: bytes, prefix: str,
                 deadline: float) -> None:
        self.rid = rid
        self.endpoint = endpoint
        self.gateway = gateway
        self.kind = kind
        self.prefix = prefix
        self.deadline = deadline
        self.items: list[snapshot.Item] = []


class SubscriberCore:
    """The sans-I/O state machine shared by both drivers.

    Feed it with :meth:`on_sub` (frames from the SUB socket), :meth:`on_snapshot` (frames
    from the DEALER of snapshot endpoint ``i``) and :meth:`tick` (time passes); each returns
    the messages to deliver in order. Snapshot requests to send accumulate in ``outbox`` as
    ``(endpoint_index, frames)``. ``now`` is a monotonic time in seconds.
    """

    def __init__(self, prefixes: Sequence[str], snapshot_endpoints: Sequence[int], *, books: bool = True,
                 heartbeat_timeout: float = 3.0, request_timeout: float = 2.0,
                 max_buffer: int = 100_000) -> None:
        self.prefixes = tuple(prefixes)
        self.deliver_heartbeats = any(HEARTBEAT_PREFIX.startswith(p) or p.startswith(HEARTBEAT_PREFIX)
                                      for p in self.prefixes)
        self.books = books
        self.heartbeat_timeout = heartbeat_timeout
        self.request_timeout = request_timeout
        self.max_buffer = max_buffer
        self.snapshot_endpoints = tuple(snapshot_endpoints)
        self.outbox: list[tuple[int, list[bytes]]] = []
        self.counters: dict[str, int] = {
            "messages": 0, "delivered": 0, "junk": 0, "gaps": 0, "resyncs": 0, "duplicates": 0,
            "old_epoch": 0, "epochs": 0, "buffer_overflows": 0, "snapshot_requests": 0,
            "snapshot_timeouts": 0, "snapshot_junk": 0, "stale": 0, "auth_failed": 0, "control_gaps": 0}
        self.gateways: dict[str, _Gateway] = {}
        self._endpoint_of: dict[str, int] = {}
        self._gateway_at: dict[int, str] = {}
        self._requests: dict[bytes, _Request] = {}
        self._rid = itertools.count(1)

    # -- requests ----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Say hello to every snapshot endpoint to learn which gateway lives there."""
        if self.books:
            for i in self.snapshot_endpoints:
                self._send(i, None, snapshot.HELLO, "", now)

    def _send(self, endpoint: int, gateway: str | None, kind: bytes, prefix: str, now: float) -> None:
        rid = b"%d" % next(self._rid)
        self._requests[rid] = _Request(rid, endpoint, gateway, kind, prefix, now + self.request_timeout)
        self.outbox.append((endpoint, snapshot.encode_request(kind, prefix, rid)))
        if kind == snapshot.SNAPSHOT:
            self.counters["snapshot_requests"] += 1

    def _request_gateway(self, gw: _Gateway, prefixes: Sequence[str], now: float) -> None:
        """Ask gw's snapshot service for ``prefixes`` (deferred until its endpoint is known)."""
        ep = self._endpoint_of.get(gw.name)
        if ep is None:
            gw.need_snapshot = True
            return
        for p in prefixes:
            covered = any(r.gateway == gw.name and r.kind == snapshot.SNAPSHOT and p.startswith(r.prefix)
                          for r in self._requests.values())
            if not covered:
                self._send(ep, gw.name, snapshot.SNAPSHOT, p, now)

    def next_deadline(self) -> float | None:
        """The monotonic time at which :meth:`tick` has something to do (None: nothing pending)."""
        times = [r.deadline for r in self._requests.values()]
        times.extend(g.last_seen + self.heartbeat_timeout for g in self.gateways.values() if not g.stale)
        return min(times) if times else None

    def tick(self, now: float) -> list[Message]:
        """Retry timed-out snapshot requests; report gateways silent for ``heartbeat_timeout``."""
        out: list[Message] = []
        for rid, r in list(self._requests.items()):
            if now >= r.deadline:
                del self._requests[rid]
                self.counters["snapshot_timeouts"] += 1
                self._send(r.endpoint, r.gateway, r.kind, r.prefix, now)
        for gw in self.gateways.values():
            if not gw.stale and now - gw.last_seen >= self.heartbeat_timeout:
                gw.stale = True
                self.counters["stale"] += 1
                out.append(self._status(gw, "stale", f"no message for {self.heartbeat_timeout:g} s"))
        return out

    # -- synthesized messages ----------------------------------------------------------------

    def _local(self, gw: _Gateway, event: Event) -> Message:
        now_ns = time.time_ns()
        return Message(event.topic(), Header(codec.WIRE_VERSION, gw.name, gw.epoch, LOCAL_SEQ, None, now_ns, now_ns),
                       event)

    def _status(self, gw: _Gateway, state: str, reason: str) -> Message:
        return self._local(gw, Status(gw.name, "gateway", state, reason=reason, receipt_timestamp=time.time_ns()))

    def _gap_msg(self, gw: _Gateway, st: _Topic, expected: int | None, received: int | None,
                 reason: str) -> Message:
        self.counters["gaps"] += 1
        return self._local(gw, Gap(st.exchange, st.channel, reason, symbol=st.symbol, expected=expected,
                                   received=received, receipt_timestamp=time.time_ns()))

    def _reset_msg(self, gw: _Gateway, st: _Topic, reason: str) -> Message:
        return self._local(gw, Reset(st.exchange, st.channel, reason, symbol=st.symbol,
                                     receipt_timestamp=time.time_ns()))

    # -- gateways and epochs -----------------------------------------------------------------

    def _gateway(self, name: str, epoch: int, now: float, out: list[Message]) -> _Gateway | None:
        """The gateway's record, handling a new epoch; None when ``epoch`` is older than known."""
        gw = self.gateways.get(name)
        if gw is None:
            gw = self.gateways[name] = _Gateway(name, epoch, now)
            return gw
        if epoch == gw.epoch:
            return gw
        if epoch < gw.epoch and not gw.stale:
            # An old incarnation still talking (e.g. a late message): drop it. Once the known
            # epoch has gone silent (stale), a smaller epoch is taken as a restart anyway: a
            # publisher whose clock stepped back must not be ignored forever.
            self.counters["old_epoch"] += 1
            return None
        # The publisher restarted: its sequences and state start over.
        self.counters["epochs"] += 1
        for st in gw.states.values():
            if st.stateful and st.live:
                out.append(self._gap_msg(gw, st, None, None, "publisher restarted (new epoch)"))
                st.had_valid = True
            st.live = False
            st.seq = 0
            st.buffer = []
        gw.epoch = epoch
        for rid in [rid for rid, r in self._requests.items() if r.gateway == name]:
            del self._requests[rid]
        if gw.seen_on_sub and self.books:
            self._request_gateway(gw, self.prefixes, now)
        return gw

    def _alive(self, gw: _Gateway, now: float, out: list[Message]) -> None:
        gw.last_seen = now
        if gw.stale:
            gw.stale = False
            out.append(self._status(gw, "connected", "messages resumed"))

    # -- the PUB stream ----------------------------------------------------------------------

    def on_sub(self, frames: list[bytes], now: float) -> list[Message]:
        """One multipart message from the SUB socket -> messages to deliver."""
        try:
            decoded = _decode(frames)
        except WireError as exc:
            self._junk("junk", exc)
            return []
        self.counters["messages"] += 1
        topic, header, event = decoded
        # Fast path, the steady state of nearly every message: a known gateway in its
        # current epoch, already flowing and not stale, the topic in sequence (a live book,
        # or a non-book topic that is not a heartbeat). It does exactly what the general
        # path below does in that case, minus its checks and allocations.
        gw = self.gateways.get(header.gateway)
        if gw is not None and gw.epoch == header.epoch and gw.seen_on_sub and not gw.stale:
            gw.last_seen = now
            st = gw.states.get(topic)
            if st is not None and header.seq == st.seq + 1 and st.seq and (st.live or st.plain):
                st.seq = header.seq
                return [_new_message(Message, decoded)]
        return self._on_decoded(topic, header, event, decoded, now)

    def _on_decoded(self, topic: str, header: Header, event: Event, decoded: tuple, now: float) -> list[Message]:
        out: list[Message] = []
        gw = self.gateways.get(header.gateway)
        if gw is None or gw.epoch != header.epoch:
            gw = self._gateway(header.gateway, header.epoch, now, out)
            if gw is None:
                return out
        gw.last_seen = now
        if gw.stale:
            self._alive(gw, now, out)
        if not gw.seen_on_sub:
            gw.seen_on_sub = True
            if self.books:
                # The SUB stream of this gateway is flowing, so our subscriptions are active:
                # now a snapshot is guaranteed to connect to what we receive next.
                self._request_gateway(gw, self.prefixes, now)
        st = gw.states.get(topic)
        if st is None:
            st = gw.states[topic] = _Topic(topic, self.books and event.CHANNEL in STATEFUL_CHANNELS, event)
        msg = _new_message(Message, decoded)
        seq = header.seq
        if not st.stateful:
            if st.seq == 0 or seq == st.seq + 1:
                st.seq = seq
            elif seq <= st.seq:
                self.counters["duplicates"] += 1
                return out
            else:
                if st.channel in CONTROL_CHANNELS:
                    # A lost heartbeat or status is no market data to repair: count it only
                    # (a Gap with a nil symbol would mean a whole feed is invalid).
                    self.counters["control_gaps"] += 1
                else:
                    out.append(self._gap_msg(gw, st, st.seq + 1, seq, "sequence gap"))
                st.seq = seq
            if type(event) is Heartbeat:
                self._check_tails(gw, event, now, out)
                if not self.deliver_heartbeats:
                    return out
            elif type(event) is Gap and self.books:
                self._publisher_gap(gw, event, now)
            out.append(msg)
            return out
        if st.live:
            if seq == st.seq + 1:
                st.seq = seq
                out.append(msg)
            elif seq <= st.seq:
                self.counters["duplicates"] += 1
            else:
                out.append(self._gap_msg(gw, st, st.seq + 1, seq, "sequence gap"))
                self._invalidate(gw, st, now)
                st.buffer.append(msg)
            return out
        if seq <= st.seq:
            # Older than the book we last held (a snapshot reply overtook the stream, then a gap
            # read from the stream took the book: _publisher_gap): the state is not to go back.
            self.counters["duplicates"] += 1
            return out
        # Not live: start from this message if nothing can precede it, else wait for a snapshot.
        if type(event) is L2Snapshot or type(event) is L3Snapshot or (seq == 1 and not st.buffer):
            st.buffer = []
            self._go_live(gw, st, msg, out)
            return out
        if len(st.buffer) >= self.max_buffer:
            self.counters["buffer_overflows"] += 1
            st.buffer = []
        st.buffer.append(msg)
        self._request_gateway(gw, (topic,), now)
        return out

    def _check_tails(self, gw: _Gateway, hb: Heartbeat, now: float, out: list[Message]) -> None:
        """A heartbeat lists each book's last sequence number; PUB keeps order, so a live book
        behind it lost its last messages (which no later message would have revealed)."""
        seqs = hb.counters.get("book_seqs")
        states = gw.states
        for topic, seq in (seqs.items() if type(seqs) is dict else ()):
            st = states.get(topic)
            if st is None or type(seq) is not int:
                continue
            if st.stateful and st.live and seq > st.seq:
                out.append(self._gap_msg(gw, st, st.seq + 1, seq, "tail loss (seen in heartbeat)"))
                self._invalidate(gw, st, now)
            elif seq >= st.reply_seq >= 0:
                # The stream has passed the state the reply gave: a gap read from now on is newer.
                st.reply_seq = -1
        # A live book the publisher lists as invalid, whose gap we did not see at that point of
        # its stream: we lost that gap (an invalid book publishes nothing that would reveal it).
        invalid = hb.counters.get("book_invalid")
        if type(invalid) is not dict:
            return
        for topic, seq in invalid.items():
            st = states.get(topic)
            if (st is not None and st.stateful and st.live and type(seq) is int and st.seq <= seq
                    and st.gap_seen_at != seq):
                out.append(self._gap_msg(gw, st, None, None, "publisher gap lost (seen in heartbeat)"))
                self._invalidate(gw, st, now)

    def _publisher_gap(self, gw: _Gateway, gap: Gap, now: float) -> None:
        """The publisher announced books invalid (the driver's BookKeeper drops them): note where
        each one's stream stood, so that a heartbeat's ``book_invalid`` is not taken for a lost gap.

        A book that went live from a snapshot reply and that no message of the stream has
        advanced since (nor a heartbeat shown the stream past it) may hold a state *newer* than
        this gap: the reply can overtake the stream (another socket), so the gap may have been
        published before the invalidation and rebuild the reply already contains. Dropping that
        book and waiting for the stream's rebuild would wait for good (that rebuild is older than
        the book: dropped as seen); instead it is rebuilt from a fresh snapshot: served if the
        book is valid at the publisher, else the stream's next rebuild comes as usual.
        """
        if gap.channel not in STATEFUL_CHANNELS:
            return
        head = gap_scope(gap.channel, gap.exchange, gap.symbol)
        for st in gw.states.values():
            if st.topic.startswith(head):
                st.gap_seen_at = st.seq
                if st.live and st.seq == st.reply_seq:
                    self._invalidate(gw, st, now)

    def _invalidate(self, gw: _Gateway, st: _Topic, now: float) -> None:
        st.live = False
        st.had_valid = True
        st.buffer = []
        self.counters["resyncs"] += 1
        self._request_gateway(gw, (st.topic,), now)

    def _go_live(self, gw: _Gateway, st: _Topic, first: Message, out: list[Message]) -> None:
        """Start ``st`` from ``first`` (a snapshot, or sequence 1), then drain what was buffered."""
        if st.had_valid:
            out.append(self._reset_msg(gw, st, "rebuilt from snapshot"))
        st.live = True
        st.seq = first.header.seq
        st.reply_seq = -1
        out.append(first)
        buffered, st.buffer = st.buffer, []
        for i, m in enumerate(buffered):
            s = m.header.seq
            if s <= st.seq:
                continue
            if s != st.seq + 1:
                out.append(self._gap_msg(gw, st, st.seq + 1, s, "sequence gap"))
                self._invalidate(gw, st, gw.last_seen)
                st.buffer = buffered[i:]
                return
            st.seq = s
            out.append(m)

    # -- the snapshot service ----------------------------------------------------------------

    def on_snapshot(self, endpoint: int, frames: list[bytes], now: float) -> list[Message]:
        """One reply message from snapshot endpoint ``endpoint`` -> messages to deliver."""
        try:
            reply = snapshot.decode_reply(frames)
        except WireError as exc:
            self._junk("snapshot_junk", exc)
            return []
        r = self._requests.get(reply.request_id)
        if r is None or r.endpoint != endpoint:
            return []  # a late answer to a request we retried or abandoned
        if isinstance(reply, snapshot.Item):
            if len(r.items) < self.max_buffer:
                r.items.append(reply)
            return []
        del self._requests[reply.request_id]
        out: list[Message] = []
        self._gateway_at[endpoint] = reply.gateway
        self._endpoint_of[reply.gateway] = endpoint
        gw = self._gateway(reply.gateway, reply.epoch, now, out)
        if gw is None:
            return out
        if r.kind == snapshot.HELLO:
            if gw.need_snapshot:
                gw.need_snapshot = False
                self._request_gateway(gw, self.prefixes, now)
            return out
        if len(r.items) != reply.item_count:
            self.counters["snapshot_junk"] += 1
            self._send(endpoint, gw.name, r.kind, r.prefix, now)
            return out
        seen: set[str] = set()
        for item in r.items:
            h = item.header
            if h.gateway != gw.name or h.epoch != gw.epoch:
                continue
            seen.add(item.topic)
            st = gw.states.get(item.topic)
            if st is None:
                st = gw.states[item.topic] = _Topic(item.topic, item.event.CHANNEL in STATEFUL_CHANNELS, item.event)
            msg = Message(item.topic, h, item.event)
            if st.stateful:
                if not st.live and h.seq < st.seq:
                    # Served before a state we held since (a reply read late, to a request that
                    # covered a later resync too): the book is not to go back; ask again.
                    self._request_gateway(gw, (st.topic,), now)
                elif not st.live:
                    self._go_live(gw, st, msg, out)
                    if st.live and st.seq == h.seq:   # nothing buffered followed it: the stream is behind
                        st.reply_seq = h.seq
            elif st.seq == 0 or h.seq > st.seq:
                # A last value newer than anything we have (late joiner's ticker/bbo/...).
                st.seq = h.seq
                out.append(msg)
        # Topics we wait for that the publisher did not have when it answered: if what we
        # buffered starts at sequence 1 it is complete, otherwise our request raced the stream.
        for st in gw.states.values():
            if st.stateful and not st.live and st.buffer and st.topic.startswith(r.prefix) \
                    and st.topic not in seen:
                if st.buffer[0].header.seq == 1:
                    first, st.buffer = st.buffer[0], st.buffer[1:]
                    self._go_live(gw, st, first, out)
                else:
                    self._request_gateway(gw, (st.topic,), now)
        return out

    def _junk(self, counter: str, exc: Exception) -> None:
        n = self.counters[counter] = self.counters[counter] + 1
        if n <= 10 or n % 1000 == 0:
            logger.warning("skipping malformed frames ({} so far): {}", n, exc)

    # -- queries -----------------------------------------------------------------------------

    def ready(self, gateway: str) -> bool:
        """True once ``gateway``'s stream flows on the SUB socket (our subscriptions are
        active) and no snapshot request to it is outstanding: from here on, everything it
        publishes is delivered in order (what a test or a start-up barrier waits for)."""
        gw = self.gateways.get(gateway)
        return gw is not None and gw.seen_on_sub and not any(
            r.gateway in (gateway, None) for r in self._requests.values())

    def is_live(self, topic: str) -> bool:
        """True when every gateway publishing ``topic`` has it in sync."""
        states = [gw.states[topic] for gw in self.gateways.values() if topic in gw.states]
        return bool(states) and all(s.live or not s.stateful for s in states)

    def seq(self, gateway: str, topic: str) -> int:
        """The last sequence number applied for ``topic`` of ``gateway`` (0 if none)."""
        gw = self.gateways.get(gateway)
        st = gw.states.get(topic) if gw else None
        return st.seq if st is not None and (st.live or not st.stateful) else 0


class BookKeeper:
    """The books of the messages a user has received, in the order received.

    It follows only the delivered stream (``L2Snapshot`` replaces a book, ``L2Delta``
    updates it, a ``Gap`` on a book invalidates it), so ``book()`` always matches the
    last message returned to the user, never the messages decoded ahead of it. The core
    guarantees that what it delivers is in sequence.
    """

    def __init__(self) -> None:
        self._books: dict[str, dict[str, OrderBook]] = {}   # book topic -> gateway -> book
        # l3 topic -> gateway -> {order id: (order id, side, price, size)} (exact strings)
        self._l3: dict[str, dict[str, dict[str, tuple[str, str, str, str]]]] = {}

    def on_delivered(self, m: Message) -> None:
        ev = m.event
        t = type(ev)
        if t is L2Delta:
            per_gw = self._books.get(m.topic)
            if per_gw is not None:
                b = per_gw.get(m.header.gateway)
                if b is not None:
                    b.apply_delta(ev.bids_str, ev.asks_str, ev.sequence)
        elif t is L2Snapshot:
            b = OrderBook()
            b.apply_snapshot(ev.bids_str, ev.asks_str, ev.sequence)
            self._books.setdefault(m.topic, {})[m.header.gateway] = b
        elif t is L3Delta:
            orders = self._l3.get(m.topic, {}).get(m.header.gateway)
            if orders is not None:
                _apply_orders(orders, ev.orders_str)
        elif t is L3Snapshot:
            orders = {}
            _apply_orders(orders, ev.orders_str)
            self._l3.setdefault(m.topic, {})[m.header.gateway] = orders
        elif t is Gap and (ev.channel == "book" or ev.channel == "l3"):
            gw = m.header.gateway
            books = self._books if ev.channel == "book" else self._l3
            head = gap_scope(ev.channel, ev.exchange, ev.symbol)   # nil symbol: every book of that exchange
            for name, per_gw in books.items():
                if name.startswith(head):
                    per_gw.pop(gw, None)

    def book(self, exchange: str, symbol: str) -> OrderBook | None:
        per_gw = self._books.get(make_topic("book", exchange, symbol))
        if not per_gw:
            return None
        return next(iter(per_gw.values()))


    def l3_book(self, exchange: str, symbol: str) -> MappingProxyType | None:
        """The resting orders of exchange/symbol, ``{order id: (order id, side, price, size)}``
        (exact strings, read-only view), or None while unknown or being resynced."""
        per_gw = self._l3.get(make_topic("l3", exchange, symbol))
        if not per_gw:
            return None
        return MappingProxyType(next(iter(per_gw.values())))


def _apply_orders(orders: dict[str, tuple[str, str, str, str]], rows: Sequence[tuple[str, str, str, str]]) -> None:
    # The same rule as the publisher's snapshot state (bus.snapshot): size 0 removes the order.
    for row in rows:
        if is_zero(row[3]):
            orders.pop(row[0], None)
        else:
            orders[row[0]] = row


def _endpoints(endpoints: str | GatewayEndpoint | Sequence[str | GatewayEndpoint]) -> list[GatewayEndpoint]:
    if isinstance(endpoints, str | GatewayEndpoint):
        return [as_endpoint(endpoints)]
    return [as_endpoint(e) for e in endpoints]


class _Driver:
    """Socket set-up and frame pumping shared by the blocking and asyncio drivers."""

    def __init__(self, endpoints: str | GatewayEndpoint | Sequence[str | GatewayEndpoint],
                 prefixes: Sequence[str] = ("",), *, books: bool = True, curve: CurveClient | None = None,
                 rcvhwm: int = 100_000, heartbeat_timeout: float = 3.0, context: zmq.Context | None = None,
                 request_timeout: float = 2.0) -> None:
        if isinstance(prefixes, str):
            prefixes = (prefixes,)
        self.endpoints = _endpoints(endpoints)
        if not self.endpoints:
            raise ValueError("no endpoint to connect to")
        ctx = context or zmq.Context.instance()
        self._ctx = ctx
        self._closed = False
        sub = ctx.socket(zmq.SUB)
        sub.rcvhwm = rcvhwm
        sub.linger = 0
        self._monitors: list[zmq.Socket] = []
        if curve is not None:
            apply_client(sub, curve)
            self._monitors.append(sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH))
        wanted = list(dict.fromkeys(prefixes))
        self._wanted = tuple(wanted)
        # Publishers' gaps on the books kept, whether or not the user asked for them (gap_prefixes).
        for p in wanted + [HEARTBEAT_PREFIX] + (gap_prefixes(wanted) if books else []):
            sub.setsockopt(zmq.SUBSCRIBE, p.encode("ascii"))
        for ep in self.endpoints:
            sub.connect(ep.pub)
        self._sub = sub
        self._dealers: list[zmq.Socket] = []
        snap_idx = []
        for ep in self.endpoints:
            if ep.snapshot and books:
                d = ctx.socket(zmq.DEALER)
                d.linger = 0
                d.rcvhwm = 0  # replies are bounded by our own requests; never drop half a reply
                if curve is not None:
                    apply_client(d, curve)
                d.connect(ep.snapshot)
                snap_idx.append(len(self._dealers))
                self._dealers.append(d)
        self.core = SubscriberCore(wanted, snap_idx, books=books, heartbeat_timeout=heartbeat_timeout,
                                   request_timeout=request_timeout)
        self.counters = self.core.counters
        self.books = BookKeeper() if books else None
        self._pending: deque[Message] = deque()
        self.core.start(time.monotonic())
        self._flush()

    def _flush(self) -> None:
        outbox = self.core.outbox
        while outbox:
            i, frames = outbox.pop(0)
            try:
                self._dealers[i].send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                pass  # the request's timeout resends it

    def _pump(self, ready: set[zmq.Socket]) -> None:
        """Read what is ready (bounded batches) and feed the core."""
        core = self.core
        pending = self._pending
        before = len(pending)
        now = time.monotonic()
        if self._sub in ready and _HAVE_ZMQIO:
            # One C call for the whole batch: per message ~0.25 µs instead of ~2.4 µs through
            # pyzmq (whose RCVMORE check converts the option to an enum on every frame).
            on_sub = core.on_sub
            for frames in _recv_messages(self._sub, _BATCH):
                pending.extend(on_sub(frames, now))
        elif self._sub in ready:
            # recv + RCVMORE by hand: recv_multipart spends a third of its time on enum flags.
            recv = self._sub.recv
            more = self._sub.get
            on_sub = core.on_sub
            for _ in range(_BATCH):
                try:
                    frames = [recv(_NB)]
                except zmq.Again:
                    break
                while more(_RCVMORE):
                    frames.append(recv(_NB))
                pending.extend(on_sub(frames, now))
        for i, d in enumerate(self._dealers):
            if d in ready:
                for _ in range(1000):
                    try:
                        frames = d.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    pending.extend(core.on_snapshot(i, frames, now))
        for m in self._monitors:
            if m in ready:
                while True:
                    try:
                        ev = recv_monitor_message(m, zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                        core.counters["auth_failed"] += 1
                        logger.error("CURVE handshake refused by {} (our key is not allowed)",
                                     ev.get("endpoint"))
        pending.extend(core.tick(now))
        core.counters["delivered"] += len(pending) - before
        self._flush()

    def _take(self) -> Message | None:
        pending = self._pending
        while pending:
            m = pending.popleft()
            if self.books is not None:
                self.books.on_delivered(m)
                # A publisher's gap received only for the books (gap_prefixes): not the user's.
                if type(m.event) is Gap and m.header.seq and not m.topic.startswith(self._wanted):
                    self.counters["delivered"] -= 1   # counted when decoded, never handed out
                    continue
            return m
        return None

    def pending(self) -> int:
        """Messages already decoded and sequenced but not yet returned by ``recv``."""
        return len(self._pending)

    def _wait_ms(self, deadline: float | None) -> int:
        now = time.monotonic()
        t = self.core.next_deadline()
        if deadline is not None:
            t = deadline if t is None else min(t, deadline)
        if t is None:
            return -1
        ms = (t - now) * 1000
        return 0 if ms <= 0 else int(ms) + 1

    def _sockets(self) -> list[zmq.Socket]:
        return [self._sub, *self._dealers, *self._monitors]

    def book(self, exchange: str, symbol: str) -> OrderBook | None:
        """The validated book of exchange/symbol, None while unknown or being resynced.

        It reflects exactly the messages ``recv`` has returned so far (it is live: later
        ``recv`` calls keep updating the same object until a gap replaces it).
        """
        return self.books.book(exchange, symbol) if self.books is not None else None

    def l3_book(self, exchange: str, symbol: str) -> MappingProxyType | None:
        """The validated order-level (L3) book of exchange/symbol as a read-only mapping
        ``{order id: (order id, side, price, size)}``, None while unknown or being resynced;
        like :meth:`book`, it follows exactly the messages ``recv`` has returned."""
        return self.books.l3_book(exchange, symbol) if self.books is not None else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._monitors:
            try:
                self._sub.disable_monitor()
            except zmq.ZMQError:
                pass
        for s in self._sockets():
            s.close(linger=0)


class Subscriber(_Driver):
    """Blocking subscriber (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._poller = zmq.Poller()
        for s in self._sockets():
            self._poller.register(s, zmq.POLLIN)

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message, or None when ``timeout`` seconds pass without one."""
        m = self._take()
        if m is not None:
            return m
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready = {s for s, _ in self._poller.poll(self._wait_ms(deadline))}
            self._pump(ready)
            m = self._take()
            if m is not None:
                return m
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def __iter__(self) -> Iterator[Message]:
        while True:
            m = self.recv()
            if m is not None:
                yield m

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncSubscriber(_Driver):
    """asyncio subscriber: ``await sub.recv(timeout)``, ``async for msg in sub``, ``async with``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Async shadows of the same sockets, used only to wait; reads stay non-blocking and sync.
        self._shadow: dict[zmq.asyncio.Socket, zmq.Socket] = {}
        self._poller = zmq.asyncio.Poller()
        for s in self._sockets():
            a = zmq.asyncio.Socket.from_socket(s)
            self._shadow[a] = s
            self._poller.register(a, zmq.POLLIN)

    async def recv(self, timeout: float | None = None) -> Message | None:
        """The next message, or None when ``timeout`` seconds pass without one."""
        m = self._take()
        if m is not None:
            return m
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Drain what is already queued without touching the event loop.
            self._pump(set(self._sockets()))
            m = self._take()
            if m is not None:
                return m
            if deadline is not None and time.monotonic() >= deadline:
                return None
            await self._poller.poll(self._wait_ms(deadline))

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Message]:
        while True:
            m = await self.recv()
            if m is not None:
                yield m

    async def __aenter__(self) -> AsyncSubscriber:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()


__all__ = ["AsyncSubscriber", "LOCAL_SEQ", "Message", "Subscriber", "SubscriberCore"]
