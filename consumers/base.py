"""The consumer framework: a named process that subscribes on the bus and publishes or stores.

A :class:`Consumer` owns a :class:`bus.subscriber.Subscriber` (its subscriptions) and,
optionally, a :class:`bus.publisher.Publisher` of its own (its outputs, heartbeat and
status, exactly like a gateway: the consumer name is the publisher's gateway id). Subclasses
implement :meth:`Consumer.handle` (one message) and optionally :meth:`Consumer.tick`
(periodic work such as time-based flushes) and :meth:`Consumer.finish` (clean shutdown).

:meth:`Consumer.run` is the process loop: it receives with a bounded wait so that ``tick``
runs at least every ``tick_interval`` seconds, and it returns cleanly on SIGINT/SIGTERM
(when ``install_signals``) or :meth:`Consumer.stop`. An exception in ``handle`` is logged
and counted in ``counters['errors']``; it never ends the process (DESIGN §7).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import Any

from loguru import logger

from bus.endpoints import GatewayEndpoint, as_endpoint
from bus.publisher import Publisher
from bus.subscriber import Message, Subscriber
from cryptofeed_types.events import Event


class Consumer:
    """Base class of every consumer process; see the module docstring."""

    #: Prefixes subscribed when the caller gives none.
    default_prefixes: tuple[str, ...] = ("",)
    #: Whether the subscriber should maintain validated books (costs a snapshot request per book).
    books: bool = False

    def __init__(self, name: str, sources: Any, prefixes: Sequence[str] | None = None, *,
                 publish: str | GatewayEndpoint | None = None, heartbeat_interval: float = 1.0,
                 heartbeat_timeout: float = 3.0, tick_interval: float = 0.2,
                 subscriber_options: dict[str, Any] | None = None) -> None:
        self.name = name
        self.prefixes = tuple(prefixes) if prefixes is not None else self.default_prefixes
        self.tick_interval = tick_interval
        self.counters: dict[str, int] = {"received": 0, "errors": 0, "published": 0}
        self._reported: dict[str, int] = {}
        self._stop = threading.Event()
        self.log = logger.bind(consumer=name)
        opts = {"books": self.books, "heartbeat_timeout": heartbeat_timeout}
        opts.update(subscriber_options or {})
        self.subscriber = Subscriber(sources, self.prefixes, **opts)
        self.publisher: Publisher | None = None
        if publish is not None:
            ep = as_endpoint(publish)
            self.publisher = Publisher(name, ep.pub, ep.snapshot, heartbeat_interval=heartbeat_interval)
            self.publisher.start()

    # -- to override -------------------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        """Process one message from the bus."""
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Periodic work (``now`` is ``time.monotonic()``); called at least every tick_interval."""

    def finish(self) -> None:
        """Flush and release outputs at shutdown (before the sockets close)."""

    # -- outputs -----------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Publish ``event`` on this consumer's own PUB (no-op without one)."""
        if self.publisher is not None:
            self.publisher.publish(event)
            self.counters["published"] += 1

    def _report_counters(self) -> None:
        """Mirror our counters into the publisher's heartbeat (as deltas: Publisher.count adds)."""
        pub = self.publisher
        if pub is None:
            return
        for key, value in self.counters.items():
            delta = value - self._reported.get(key, 0)
            if delta:
                pub.count(key, delta)
                self._reported[key] = value

    # -- the loop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe, also used by the signal handlers)."""
        self._stop.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.log.info("consumer {} got signal {}, stopping", self.name, signum)
        self.stop()

    def run_once(self, timeout: float) -> int:
        """Receive and handle messages for up to ``timeout`` seconds; returns how many were handled."""
        deadline = time.monotonic() + timeout
        handled = 0
        sub = self.subscriber
        while True:
            left = deadline - time.monotonic()
            msg = sub.recv(max(left, 0.0))
            if msg is None:
                return handled
            handled += 1
            self.counters["received"] += 1
            try:
                self.handle(msg)
            except Exception as exc:  # noqa: BLE001 - bad input never kills a consumer
                self.counters["errors"] += 1
                self.log.opt(exception=exc).error("{} failed on {}: {}", self.name, msg.topic, exc)
            if left <= 0:
                return handled

    def run(self, *, install_signals: bool = False, duration: float | None = None) -> None:
        """Run until :meth:`stop`, a signal (with ``install_signals``) or ``duration`` seconds."""
        if install_signals:
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGTERM, self._on_signal)
        end = None if duration is None else time.monotonic() + duration
        if self.publisher is not None:
            self.publisher.set_feed_state("consumer", "connected", "running")
        try:
            while not self._stop.is_set():
                self.run_once(self.tick_interval)
                now = time.monotonic()
                try:
                    self.tick(now)
                except Exception as exc:  # noqa: BLE001
                    self.counters["errors"] += 1
                    self.log.opt(exception=exc).error("{} tick failed: {}", self.name, exc)
                self._report_counters()
                if end is not None and now >= end:
                    break
        finally:
            self.close()

    def close(self) -> None:
        """Finish, then close the subscriber and publisher (idempotent)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        try:
            self.finish()
        finally:
            self._report_counters()
            if self.publisher is not None:
                try:
                    self.publisher.set_feed_state("consumer", "disconnected", "stopped")
                    self.publisher.heartbeat()
                finally:
                    self.publisher.close()
            self.subscriber.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
