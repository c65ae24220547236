"""The publisher: a gateway's PUB socket, per-topic sequencing, heartbeats and its snapshot service.

The socket is an XPUB (the same as PUB for subscribers) so that each new subscription is
greeted with a heartbeat at once. Every message gets the gateway id, the epoch
(``time.time_ns()`` at :meth:`Publisher.start`) and a per-topic sequence number that grows
by exactly 1 per topic per epoch, starting at 1. Sends never block: a PUB socket drops messages for a subscriber whose high-water mark is
reached (libzmq does this silently, per subscriber), and the subscriber sees the drop as a
sequence gap and recovers from the snapshot service. If libzmq ever reports ``EAGAIN`` we
count it in ``dropped``.

Threading: :meth:`publish` may be called from any thread (typically a gateway's asyncio
thread). A background service thread sends heartbeats and answers snapshot requests. We
chose a lock around "state update + send" rather than moving all sends onto the service
thread: the lock is uncontended almost always (~100 ns), publishing stays a direct call with
no queue hop (the latency target is tens of microseconds), and the snapshot service only
holds the lock while copying state, never while encoding or sending its reply. The PUB
socket is used by both threads, always under the lock, which is the full memory barrier
libzmq asks for when a socket changes threads.
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType
from typing import Any

import zmq
from loguru import logger

from bus import codec
from bus.codec import WireError
from bus.security import CurveServer, apply_server, prepare_ipc, release_server
from bus.snapshot import STATEFUL_CHANNELS, BookProvider, StateStore, error_reply, parse_request, serve
from cryptofeed_types.events import Event, Gap, Heartbeat, Status

try:  # direct libzmq send (bus/_zmqio.pyx); without it, three pyzmq sends
    from bus._zmqio import AVAILABLE as _HAVE_ZMQIO
    from bus._zmqio import send3 as _send3
except ImportError:
    _HAVE_ZMQIO = False

# Header and body are written by compiled code (cryptofeed_types.events) that keeps the GIL.
_pack_header = codec._pack_header
_time_ns = time.time_ns
_SNDMORE_NB = zmq.SNDMORE | zmq.NOBLOCK
_NB = zmq.NOBLOCK
_SUBSCRIPTION_CHECK = 0.05  # seconds between looks at new subscriptions


class Publisher:
    """Publishes events of one gateway; see the module docstring for guarantees.

    ``exchange`` names the exchange in the Status events of :meth:`set_feed_state`
    (default: the gateway id).
    """

    def __init__(self, gateway: str, endpoint: str, snapshot_endpoint: str | None = None, *,
                 sndhwm: int = 100_000, heartbeat_interval: float = 1.0,
                 curve: CurveServer | None = None, context: zmq.Context | None = None,
                 exchange: str | None = None, linger_ms: int = 200) -> None:
        if not gateway or "." in gateway or " " in gateway:
            raise ValueError(f"gateway id {gateway!r} must be non-empty without '.' or ' '")
        self.gateway = gateway
        self.exchange = exchange or gateway
        self.endpoint = endpoint
        self.snapshot_endpoint = snapshot_endpoint
        self.sndhwm = sndhwm
        self.heartbeat_interval = heartbeat_interval
        self.curve = curve
        self.linger_ms = linger_ms
        self._ctx = context or zmq.Context.instance()
        self.epoch = 0
        self._header_prefix = b""
        self.counters: dict[str, int] = {"messages": 0, "bytes": 0, "dropped": 0, "errors": 0,
                                         "heartbeats": 0, "snapshot_requests": 0, "snapshot_errors": 0}
        self._extra: dict[str, int] = {}
        self._described: dict[str, Any] = {}   # describe(): carried by every heartbeat as is
        self._subscribed: dict[str, int] = {}   # prefix → subscribe messages read (XPUB_VERBOSE: every one)
        self._feeds: dict[str, str] = {}
        self._seqs: dict[str, int] = {}
        self._kinds: dict[type, tuple[bool, str, bool]] = {}
        self.store = StateStore()
        self._lock = threading.Lock()
        self._pub: zmq.Socket | None = None
        self._router: zmq.Socket | None = None
        self._domains: list[str] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        self._closed = False
        self.bound_endpoint: str | None = None
        self.bound_snapshot_endpoint: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the PUB socket (and the snapshot ROUTER), then start heartbeats and the service."""
        if self._pub is not None:
            raise RuntimeError("publisher already started")
        self.epoch = time.time_ns()
        self._header_prefix = codec.header_prefix(self.gateway, self.epoch)
        try:
            self._bind()
        except Exception:
            # e.g. the address is in use: leave nothing half-open behind the exception.
            for sock in (self._pub, self._router):
                if sock is not None:
                    sock.close(linger=0)
            self._pub = self._router = None
            raise
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._service, name=f"publisher-{self.gateway}", daemon=True)
        self._thread.start()
        logger.bind(gateway=self.gateway).info("publisher {} epoch {} on {} (snapshot {})",
                                               self.gateway, self.epoch, self.bound_endpoint,
                                               self.bound_snapshot_endpoint)

    def _bind(self) -> None:
        # XPUB rather than PUB: identical for subscribers, but it tells us when one subscribes,
        # so we greet it with a heartbeat at once (a subscriber joins on its first message
        # from us, which would otherwise take up to a heartbeat interval).
        self._pub = pub = self._ctx.socket(zmq.XPUB)
        pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        pub.rcvhwm = 10_000
        pub.sndhwm = self.sndhwm
        pub.linger = self.linger_ms
        if self.curve is not None:
            self._domains.append(apply_server(pub, self.curve))
        prepare_ipc(self.endpoint)
        pub.bind(self.endpoint)
        # With a wildcard port ("tcp://127.0.0.1:*") this is the port the OS chose.
        self.bound_endpoint = pub.last_endpoint.decode()
        if self.snapshot_endpoint:
            self._router = router = self._ctx.socket(zmq.ROUTER)
            router.sndhwm = max(self.sndhwm, 10_000)
            router.linger = 0
            # Unroutable or full replies raise instead of vanishing, so they are counted.
            router.router_mandatory = 1
            if self.curve is not None:
                self._domains.append(apply_server(router, self.curve))
            prepare_ipc(self.snapshot_endpoint)
            router.bind(self.snapshot_endpoint)
            self.bound_snapshot_endpoint = router.last_endpoint.decode()

    def close(self) -> None:
        """Stop the service thread and close the sockets (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for sock in (self._pub, self._router):
                if sock is not None:
                    sock.close()
            self._pub = None
        for domain in self._domains:
            release_server(domain, self._ctx)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)

    def __enter__(self) -> Publisher:
        if self._pub is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- publishing --------------------------------------------------------------------------

    def publish(self, event: Event) -> int:
        """Send one event; returns its per-topic sequence number. Never blocks."""
        topic = event.topic()
        body = event.wire_pack()   # = msgpack of wire_body(), written without the dict
        topic_b = topic.encode("ascii")
        # Per event class, once: does the snapshot service keep its state, which per-channel
        # counter it bumps, is it a Status (saves a set lookup, an attribute and a dict get).
        kind = self._kinds.get(type(event))
        if kind is None:
            # A Gap too: the books (and bbo) it declares invalid are not served until rebuilt.
            kind = self._kinds[type(event)] = (event.CHANNEL in STATEFUL_CHANNELS or event.SCALAR or type(event) is Gap,
                                               "channel." + event.CHANNEL, type(event) is Status)
        keep, key, status = kind
        if status:
            # Every feed state published (the driver's connections, an adapter's exchange system
            # status) is also in the heartbeat's ``feeds``.
            self._feeds[event.feed] = event.state
        with self._lock:
            pub = self._pub
            if pub is None:
                raise RuntimeError("publisher is not started (or closed)")
            seqs = self._seqs
            seq = seqs.get(topic, 0) + 1
            seqs[topic] = seq
            if keep:
                self.store.apply(event, topic, seq)
            # codec.encode_header inlined, from this epoch's encoded prefix (made in start()).
            header = _pack_header(self._header_prefix, seq, event.timestamp, event.receipt_timestamp, _time_ns())
            counters = self.counters
            try:
                if _HAVE_ZMQIO:
                    _send3(pub, topic_b, header, body)  # ~0.25 µs vs ~1.3 µs for three pyzmq sends
                else:
                    pub.send(topic_b, _SNDMORE_NB)
                    pub.send(header, _SNDMORE_NB)
                    pub.send(body, _NB)
            except zmq.Again:
                counters["dropped"] += 1
                return seq
            except zmq.ZMQError as exc:
                counters["errors"] += 1
                logger.bind(gateway=self.gateway).error("publish {} failed: {}", topic, exc)
                return seq
            counters["messages"] += 1
            counters["bytes"] += len(topic_b) + len(header) + len(body)
            counters[key] = counters.get(key, 0) + 1
        return seq

    def set_feed_state(self, feed: str, state: str, reason: str | None = None) -> None:
        """Publish a Status event for ``feed`` (publish() shows ``state`` in the heartbeat's ``feeds``)."""
        self.publish(Status(self.exchange, feed, state, reason=reason, receipt_timestamp=time.time_ns()))

    def share_books(self, exchange: str, provider: BookProvider) -> None:
        """Serve the ``book.<exchange>.*`` snapshots from the gateway's own books.

        ``provider(symbol)`` returns the gateway's OrderBook of that symbol (None: nothing to
        serve yet). The publisher then keeps no copy of those books: no per-update work and
        no second copy in memory. Why serving a book that may be ahead of the published
        stream is correct: :meth:`bus.snapshot.StateStore.share_books`. Call it before the
        exchange's first book event is published.
        """
        with self._lock:
            self.store.share_books(exchange, provider)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to an extra counter reported in heartbeats (e.g. ``parse_errors``)."""
        with self._lock:
            self._extra[name] = self._extra.get(name, 0) + n

    def books_invalid(self) -> int:
        """How many books were announced invalid (a Gap) and are not rebuilt yet, e.g. for a metrics endpoint."""
        with self._lock:
            return len(self.store.invalid())

    def describe(self, key: str, value: Any) -> None:
        """Carry ``value`` (msgpack-able: maps, lists, strings, numbers) under ``key`` in the
        ``counters`` of every heartbeat from now on, e.g. a gateway's ``feed_quotes``."""
        with self._lock:
            self._described[key] = value

    def feed_states(self) -> dict[str, str]:
        """The last state published for each feed (as the heartbeat's ``feeds``), e.g. for a metrics endpoint."""
        with self._lock:
            return dict(self._feeds)

    def all_counters(self) -> dict[str, int]:
        """Every counter a heartbeat reports: the publisher's own and the extra ones (:meth:`count`:
        the adapter's, the driver's, ...), e.g. for a metrics endpoint."""
        with self._lock:
            return {**self.counters, **self._extra}

    def subscriptions(self) -> dict[str, int]:
        """Subscribe messages read so far in this epoch, per prefix: one per subscriber and per
        (re)connection (XPUB_VERBOSE). A prefix counted here is in libzmq's filter: every message
        published from now on reaches those subscribers (read every 50 ms by the service thread)."""
        with self._lock:
            return dict(self._subscribed)

    def seq(self, topic: str) -> int:
        """The last sequence number sent on ``topic`` in this epoch (0 if none)."""
        with self._lock:
            return self._seqs.get(topic, 0)

    def state(self, prefix: str = "") -> list[tuple[str, int, int | None, int, dict]]:
        """What the snapshot service would answer for ``prefix`` now: ``(topic, seq, ts, rts, body)``."""
        with self._lock:
            return self.store.collect(prefix)

    def heartbeat(self) -> int:
        """Publish a heartbeat now (the service thread does this every ``heartbeat_interval``)."""
        with self._lock:
            counters: dict = dict(self.counters)
            counters.update(self._extra)
            counters.update(self._described)
            counters["heartbeats"] += 1
            self.counters["heartbeats"] += 1
            # The last sequence number of every book: a subscriber that lost the tail of a
            # book's stream (no later message would reveal it) sees the gap here.
            store = self.store
            seqs = {t: st.seq for t, st in store.books.items()}
            seqs.update((t, st.seq) for t, st in store.l3.items())
            counters["book_seqs"] = seqs
            # The books announced invalid (a Gap) and not rebuilt yet, for operators.
            counters["book_invalid"] = store.invalid()
        return self.publish(Heartbeat(self.gateway, counters, dict(self._feeds), receipt_timestamp=time.time_ns()))

    # -- service thread ----------------------------------------------------------------------

    def _service(self) -> None:
        log = logger.bind(gateway=self.gateway)
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        if self._router is not None:
            poller.register(self._router, zmq.POLLIN)
        next_hb = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            greet = self._new_subscribers()
            if now >= next_hb or greet:
                try:
                    self.heartbeat()
                except Exception as exc:  # a heartbeat failure must not stop the service
                    self.counters["errors"] += 1
                    log.error("heartbeat failed: {}", exc)
                if now >= next_hb:
                    next_hb = now + self.heartbeat_interval
            # The XPUB is shared with publishing threads, so it is never polled here (that
            # would need the lock while blocking); subscriptions are collected every 50 ms.
            timeout = min(max(0.0, next_hb - time.monotonic()), _SUBSCRIPTION_CHECK)
            events = dict(poller.poll(int(timeout * 1000)))   # ms; pyzmq truncates a float the same way
            if self._stop.is_set():
                break
            if self._router is not None and events.get(self._router):
                self._answer(log)

    def _new_subscribers(self) -> bool:
        """Drain the XPUB's subscription messages; True if anyone subscribed."""
        subscribed = False
        with self._lock:
            pub = self._pub
            if pub is None:
                return False
            while True:
                try:
                    msg = pub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    return subscribed
                except zmq.ZMQError:
                    return subscribed
                if msg[:1] == b"\x01":
                    subscribed = True
                    prefix = msg[1:].decode("utf-8", "replace")
                    self._subscribed[prefix] = self._subscribed.get(prefix, 0) + 1

    def _answer(self, log) -> None:
        router = self._router
        assert router is not None   # the service thread runs only between start() and close()
        for _ in range(100):  # bounded batch so heartbeats stay on time under a request flood
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            ident, rest = frames[0], frames[1:]
            try:
                request = parse_request(rest)
            except WireError as exc:
                self.counters["snapshot_errors"] += 1
                log.warning("bad snapshot request: {}", exc)
                if len(rest) == 3 and len(rest[2]) <= 64:
                    self._reply(ident, [error_reply(rest[2], str(exc))], log)
            else:
                self._reply(ident, serve(request, self.store, self._lock, self.gateway, self.epoch), log)
            # Counted once answered: a count that reached N says N replies hold what was published
            # before them (tests synchronise on it).
            self.counters["snapshot_requests"] += 1

    def _reply(self, ident: bytes, messages: list[list[bytes]], log) -> None:
        router = self._router
        assert router is not None
        try:
            for msg in messages:
                router.send(ident, _SNDMORE_NB)
                last = len(msg) - 1
                for i, frame in enumerate(msg):
                    router.send(frame, _NB if i == last else _SNDMORE_NB)
        except zmq.ZMQError as exc:
            # The client retries after its timeout; a partial reply has no end marker.
            self.counters["snapshot_errors"] += 1
            log.warning("snapshot reply aborted: {}", exc)
