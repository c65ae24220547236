"""Throttle: at most one event per topic per window, the last value of the window.

The first event of a quiet topic passes at once (no added latency); later events within the
window replace each other and the last one is emitted when the window ends. Works for any
scalar-like kind (bbo, ticker, trades as "last trade", nbbo, funding ...); book deltas are
not throttleable (dropping deltas breaks books) and are refused with a counter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bus.subscriber import Message
from consumers.base import Consumer
from cryptofeed_types.events import Event

UNTHROTTLEABLE = frozenset({"book", "l3"})


class Throttle:
    """Pure: ``offer(topic, event, now_ns)`` and ``flush(now_ns)`` return what to emit."""

    def __init__(self, window: float) -> None:
        if window <= 0:
            raise ValueError("window must be > 0 seconds")
        self.window_ns = int(window * 1e9)
        self.next_open: dict[str, int] = {}       # topic -> time its window ends
        self.pending: dict[str, Event] = {}
        self.counters = {"in": 0, "out": 0, "replaced": 0, "refused": 0}

    def offer(self, topic: str, ev: Event, now_ns: int) -> list[Event]:
        self.counters["in"] += 1
        if ev.CHANNEL in UNTHROTTLEABLE:
            self.counters["refused"] += 1
            return []
        out = self.flush(now_ns)
        end = self.next_open.get(topic)
        if end is None or now_ns >= end:
            self.next_open[topic] = now_ns + self.window_ns
            self.counters["out"] += 1
            out.append(ev)
        else:
            if topic in self.pending:
                self.counters["replaced"] += 1
            self.pending[topic] = ev
        return out

    def flush(self, now_ns: int) -> list[Event]:
        """Emit pending last values whose window has ended (and start their next window)."""
        out = []
        for topic in [t for t in self.pending if now_ns >= self.next_open[t]]:
            out.append(self.pending.pop(topic))
            self.next_open[topic] = now_ns + self.window_ns
            self.counters["out"] += 1
        return out


class ThrottleConsumer(Consumer):
    """Re-publishes its subscriptions throttled to one event per topic per ``window`` seconds."""

    default_prefixes = ("bbo.",)

    def __init__(self, name: str, sources: Any, prefixes: Sequence[str] | None = None, *,
                 window: float = 1.0, **kwargs: Any) -> None:
        super().__init__(name, sources, prefixes, **kwargs)
        self.throttle = Throttle(window)

    def handle(self, msg: Message) -> None:
        import time

        if msg.header.seq == 0:
            return  # subscriber-made control messages (gap/stale) are not ours to republish
        for ev in self.throttle.offer(msg.topic, msg.event, time.monotonic_ns()):
            self.emit(ev)

    def tick(self, now: float) -> None:
        for ev in self.throttle.flush(int(now * 1e9)):
            self.emit(ev)
        self.counters.update(self.throttle.counters)
