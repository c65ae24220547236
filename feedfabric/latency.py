"""``feedfabric latency``: how old the data is when it reaches you, leg by leg, per source and channel.

Every frame's header carries the event's three clocks (docs/wire.md): the exchange's own
timestamp of the event (when it gives one), the gateway's receipt time of the websocket frame or
REST response it came in, and the gateway's publish time; this process adds its own receive time.
Their differences are the three legs of a message's age:

- ``exchange→receipt``: the exchange's internal delay plus the network, plus the clock offset
  between the exchange and the gateway's host (it can be negative: clocks differ);
- ``receipt→publish``: the gateway's own work (parse, normalize, book, encode), in one host's clock;
- ``publish→here``: the bus (ZeroMQ, the network between hosts) and this subscriber's queue, plus
  the clock offset between the two hosts when they differ.

:class:`LatencyStats` is the sans-I/O part (messages and receive times in, quantiles out; a bounded
reservoir per source and channel, so a fast stream costs constant memory); :func:`latency` the
driver around a :class:`bus.subscriber.Subscriber`. A replaying gateway keeps its capture's recorded
receipt times, so its ``receipt→publish`` is the age of the recording, not processing time: rows
whose median is over a minute are flagged ``recorded``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from bus.endpoints import GatewayEndpoint
from bus.subscriber import CONTROL_CHANNELS, LOCAL_SEQ, Message, Subscriber

LEGS = ("exchange_to_receipt", "receipt_to_publish", "publish_to_here")
LEG_TITLES = {"exchange_to_receipt": "exchange→receipt", "receipt_to_publish": "receipt→publish",
              "publish_to_here": "publish→here"}
QUANTILES = (0.5, 0.9, 0.99)
RECORDED_NS = 60 * 1_000_000_000   # a median receipt→publish above this: recorded receipt times


@dataclass(frozen=True)
class Quantiles:
    """One leg's distribution over a window, in nanoseconds (``n``: samples it is computed from)."""

    n: int
    p50: int
    p90: int
    p99: int
    max: int


@dataclass(frozen=True)
class LatencyRow:
    """The latency of one (source gateway, channel) over a window."""

    source: str
    channel: str
    messages: int
    legs: dict[str, Quantiles | None] = field(default_factory=dict)

    @property
    def recorded(self) -> bool:
        """The source replays a capture (its receipt times are the recorded ones)."""
        leg = self.legs.get("receipt_to_publish")
        return leg is not None and leg.p50 > RECORDED_NS

    def to_dict(self) -> dict:
        legs = {name: None if q is None else {"n": q.n, "p50_us": q.p50 / 1e3, "p90_us": q.p90 / 1e3,
                                               "p99_us": q.p99 / 1e3, "max_us": q.max / 1e3}
                for name, q in self.legs.items()}
        return {"source": self.source, "channel": self.channel, "messages": self.messages,
                "recorded": self.recorded, **legs}


def quantiles(samples: list[int], worst: int | None = None) -> Quantiles | None:
    """Nearest-rank quantiles of ``samples`` (None when empty); ``worst``: the true maximum when the
    samples are a subset."""
    if not samples:
        return None
    s = sorted(samples)
    n = len(s)
    p50, p90, p99 = (s[min(n - 1, int(q * n))] for q in QUANTILES)
    return Quantiles(n, p50, p90, p99, s[-1] if worst is None else worst)


class _Window:
    """One key's samples: a uniform reservoir (Vitter's algorithm R) of (leg values) tuples, and
    each leg's exact maximum (the reservoir may miss the single worst message)."""

    __slots__ = ("seen", "samples", "maxima")

    def __init__(self) -> None:
        self.seen = 0
        self.samples: list[tuple[int | None, int, int]] = []
        self.maxima: list[int | None] = [None, None, None]


class LatencyStats:
    """Latency samples per (source, channel), reset at will; sans-I/O (the caller gives the clock)."""

    def __init__(self, reservoir: int = 20_000, seed: int | None = None) -> None:
        if reservoir < 1:
            raise ValueError("reservoir must be >= 1")
        self.reservoir = reservoir
        self._rng = random.Random(seed)
        self._windows: dict[tuple[str, str], _Window] = {}

    def add(self, msg: Message, received_ns: int) -> bool:
        """Count one delivered message received at ``received_ns`` (epoch ns). Messages the
        subscriber made itself (Gap, Reset, Status on a silent gateway) and control channels
        (heartbeats, statuses) are not market data and are skipped: returns False for them."""
        header = msg.header
        channel = msg.topic.partition(".")[0]
        if header.seq == LOCAL_SEQ or channel in CONTROL_CHANNELS:
            return False
        self.add_sample(header.gateway, channel, header.timestamp, header.receipt_timestamp,
                        header.publish_timestamp, received_ns)
        return True

    def add_sample(self, source: str, channel: str, timestamp: int | None, receipt: int, publish: int,
                   received: int) -> None:
        """One message's clocks (ns): exchange timestamp (None when the exchange gives none),
        gateway receipt, gateway publish, and here."""
        key = (source, channel)
        win = self._windows.get(key)
        if win is None:
            win = self._windows[key] = _Window()
        sample = (None if not timestamp else receipt - timestamp, publish - receipt, received - publish)
        maxima = win.maxima
        for i, v in enumerate(sample):
            m = maxima[i]
            if v is not None and (m is None or v > m):
                maxima[i] = v
        win.seen += 1
        if len(win.samples) < self.reservoir:
            win.samples.append(sample)
        else:
            j = self._rng.randrange(win.seen)
            if j < self.reservoir:
                win.samples[j] = sample

    def rows(self) -> list[LatencyRow]:
        """The window's rows, by source then channel."""
        out = []
        for (source, channel), win in sorted(self._windows.items()):
            legs: dict[str, Quantiles | None] = {}
            for i, name in enumerate(LEGS):
                legs[name] = quantiles([v for s in win.samples if (v := s[i]) is not None], win.maxima[i])
            out.append(LatencyRow(source, channel, win.seen, legs))
        return out

    def reset(self) -> None:
        self._windows.clear()


def format_ns(ns: int | None) -> str:
    """A duration for a table cell: µs below 1 ms, ms below 10 s, else s."""
    if ns is None:
        return "-"
    a = abs(ns)
    if a < 1_000_000:
        return f"{ns / 1e3:.0f}µs"
    if a < 10_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e9:.0f}s"


def format_table(rows: Sequence[LatencyRow]) -> list[str]:
    """The rows as an aligned text table: p50 / p99 / max of each leg."""
    head = ["source", "channel", "msgs"] + [f"{LEG_TITLES[leg]} p50/p99/max" for leg in LEGS]
    body = []
    for r in rows:
        cells = [r.source, r.channel, f"{r.messages:,}"]
        for leg in LEGS:
            q = r.legs.get(leg)
            if q is None:
                cells.append("-")
            elif leg == "receipt_to_publish" and r.recorded:
                cells.append(f"(recorded {q.p50 / 86_400e9:.0f} days ago)")
            else:
                cells.append(f"{format_ns(q.p50)} / {format_ns(q.p99)} / {format_ns(q.max)}")
        body.append(cells)
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [head, *body]]
    if any(r.recorded for r in rows):
        lines.append("(recorded): the source replays a capture, whose receipt times are the recorded ones")
    return lines


def latency(endpoints: Sequence[GatewayEndpoint | str], prefixes: Sequence[str], *, duration: float | None = 10.0,
            interval: float | None = None, as_json: bool = False, write: Callable[[str], None] = print,
            clock: Callable[[], int] = time.time_ns) -> list[LatencyRow]:
    """Listen for ``duration`` seconds (None: until Ctrl-C) and report the latency of what came.

    ``interval``: also report every that many seconds, each report covering its own window.
    Returns the last window's rows (also when nothing came: then an empty list, and a line says so).
    """
    stats = LatencyStats()
    end = None if duration is None else time.monotonic() + duration
    next_report = None if interval is None else time.monotonic() + interval
    rows: list[LatencyRow] = []

    def report() -> None:
        nonlocal rows
        rows = stats.rows()
        if as_json:
            for r in rows:
                write(orjson.dumps(r.to_dict()).decode())
        elif rows:
            for line in format_table(rows):
                write(line)
        else:
            write("no market data received (nothing published under these prefixes?)")
        stats.reset()

    with Subscriber(list(endpoints), list(prefixes), books=False) as sub:
        try:
            while True:
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                if next_report is not None and now >= next_report:
                    report()
                    next_report = now + interval  # type: ignore[operator]
                waits = [t - now for t in (end, next_report) if t is not None]
                msg = sub.recv(timeout=min([0.5, *waits]))
                if msg is not None:
                    stats.add(msg, clock())
        except KeyboardInterrupt:
            pass
    report()
    return rows
