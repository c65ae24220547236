"""``feedfabric status``: a live table of every gateway's and consumer's health, from heartbeats.

Every process of a topology publishes a Heartbeat about once a second on its PUB endpoint
(counters and feed states). This module subscribes to ``heartbeat.``/``status.``/``gap.``
on all of them and shows, per process:

- STATE: ``up`` (heartbeat fresh), ``stale`` (older than 3 heartbeat intervals), ``down``
  (never heard since the board started), or the worst feed state it reports;
- HB AGE: seconds since its last heartbeat; EV/S: messages per second between its last two
  heartbeats (publisher ``messages`` counter, or a consumer's ``received``);
- LAG ms: heartbeat publish time → our receipt (bus + clock skew), or the process's own
  ``lag_ms`` counter when it reports one;
- GAPS, RESYNCS, RECONN, ERRORS, DROPPED: sums of the matching counters it reports, plus
  the gaps we saw on its ``gap.`` topics;
- INVALID: the books it announced invalid (a ``gap``) and has not rebuilt yet, as its last
  heartbeat lists them (``book_invalid``): a number that stays above 0 means resyncs are not
  getting through (a REST outage, a budget exhausted).

``--once`` listens for a few heartbeats, prints the table once and exits (status code 1 when
a process is not up, so scripts and probes can use it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bus.endpoints import GatewayEndpoint
from bus.subscriber import Message, Subscriber
from cryptofeed_types.events import Gap, Heartbeat, Status

# Feed states that count as up (a gateway's connections, a replay's, an exchange's system status).
UP_STATES = frozenset({"connected", "running", "live", "up", "finished", "online"})
COLUMNS = ("NAME", "ROLE", "STATE", "HB AGE", "EV/S", "LAG ms", "GAPS", "RESYNCS", "INVALID", "RECONN", "ERRORS",
           "DROPPED")


def _sum(counters: Mapping[str, Any], *words: str) -> int:
    total = 0
    for key, value in counters.items():
        if isinstance(value, int) and not isinstance(value, bool) and any(w in key for w in words):
            total += value
    return total


@dataclass
class Row:
    """What we know of one process."""

    name: str
    role: str
    last_hb: float | None = None           # monotonic time of the last heartbeat
    last_count: tuple[int, int] | None = None   # (publish ts ns, messages)
    rate: float | None = None
    lag_ms: float | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    feeds: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)   # feed → reason of its last Status seen
    gaps_seen: int = 0
    epoch: int | None = None
    restarts_seen: int = 0

    def state(self, now: float, stale_after: float) -> str:
        if self.last_hb is None:
            return "down"
        if now - self.last_hb > stale_after:
            return "stale"
        bad = [s for s in self.feeds.values() if s not in UP_STATES]
        return bad[0] if bad else "up"

    def why(self) -> str | None:
        """``feed: reason`` of the first feed that is not up, when a Status said why (None otherwise)."""
        for feed, state in self.feeds.items():
            if state not in UP_STATES:
                reason = self.reasons.get(feed)
                return f"{feed} {state}: {reason}" if reason else None
        return None


class StatusBoard:
    """Heartbeat bookkeeping for :func:`status` (feed it messages, read :meth:`table`)."""

    def __init__(self, roles: Mapping[str, str], stale_after: float = 3.0) -> None:
        self.rows: dict[str, Row] = {n: Row(n, r) for n, r in roles.items()}
        self.stale_after = stale_after

    def update(self, msg: Message, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        ev = msg.event
        gw = msg.header.gateway
        row = self.rows.get(gw)
        if row is None:
            row = self.rows[gw] = Row(gw, "?")
        if isinstance(ev, Heartbeat):
            counters: dict[str, Any] = dict(ev.counters)
            count = counters.get("messages", counters.get("received", 0))
            ts = msg.header.publish_timestamp or ev.receipt_timestamp
            if row.epoch is not None and msg.header.epoch != row.epoch:
                row.restarts_seen += 1
                row.last_count = None
            row.epoch = msg.header.epoch
            if row.last_count is not None and ts > row.last_count[0]:
                row.rate = max(0.0, (count - row.last_count[1]) * 1e9 / (ts - row.last_count[0]))
            row.last_count = (ts, count)
            own_lag = counters.get("lag_ms")
            row.lag_ms = float(own_lag) if isinstance(own_lag, (int, float)) else (time.time_ns() - ts) / 1e6
            row.counters = counters
            row.feeds = {str(k): str(v) for k, v in dict(ev.feeds).items()}
            row.last_hb = now
        elif isinstance(ev, Gap) and msg.header.seq:
            row.gaps_seen += 1
        elif isinstance(ev, Status) and msg.header.seq:
            row.feeds[ev.feed] = ev.state
            row.reasons[ev.feed] = ev.reason or ""

    def table(self, now: float | None = None) -> list[list[str]]:
        now = time.monotonic() if now is None else now
        out = []
        for row in self.rows.values():
            c = row.counters
            out.append([
                row.name, row.role, row.state(now, self.stale_after),
                "-" if row.last_hb is None else f"{now - row.last_hb:.1f}s",
                "-" if row.rate is None else f"{row.rate:.0f}",
                "-" if row.lag_ms is None else f"{row.lag_ms:.1f}",
                str(_sum(c, "gap") + row.gaps_seen), str(_sum(c, "resync")),
                str(len(inv)) if isinstance(inv := c.get("book_invalid"), dict) else "-",
                str(_sum(c, "reconnect")),
                str(_sum({k: v for k, v in c.items() if k == "errors" or k.endswith(".errors")}, "errors")),
                str(_sum({k: v for k, v in c.items() if k == "dropped" or k.endswith(".dropped")}, "dropped")),
            ])
        return out

    def render(self, now: float | None = None) -> str:
        rows = [list(COLUMNS), *self.table(now)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        lines = ["  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
                 for r in rows]
        # Why a process is not up, where the Status that said so was seen (a board started later
        # knows the state from heartbeats, not the reason).
        lines += [f"  {row.name}: {why}" for row in self.rows.values() if (why := row.why())]
        return "\n".join(lines)

    def all_up(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return all(r.state(now, self.stale_after) == "up" for r in self.rows.values())


def _write_stdout(s: str) -> None:
    sys.stdout.write(s)
    sys.stdout.flush()


def status(endpoints: Mapping[str, GatewayEndpoint], roles: Mapping[str, str], *, once: bool = False,
           interval: float = 1.0, wait: float = 2.5, stale_after: float = 3.0,
           write: Callable[[str], None] | None = None) -> int:
    """Show the table (live until Ctrl-C, or once after ``wait`` seconds); returns an exit status."""
    write = write or _write_stdout
    board = StatusBoard(roles, stale_after)
    # No books: status needs no snapshots, only heartbeats and control topics.
    with Subscriber([ep.pub for ep in endpoints.values()], ["heartbeat.", "status.", "gap."], books=False,
                    heartbeat_timeout=stale_after) as sub:
        start = time.monotonic()
        next_draw = start + (wait if once else 0.0)
        try:
            while True:
                now = time.monotonic()
                if now >= next_draw:
                    if once:
                        write(board.render() + "\n")
                        return 0 if board.all_up() else 1
                    tty = sys.stdout.isatty()
                    write(("\x1b[H\x1b[2J" if tty else "") + time.strftime("%H:%M:%S ") +
                          f"{len(roles)} processes (Ctrl-C quits)\n" + board.render() + "\n")
                    next_draw = now + interval
                msg = sub.recv(timeout=max(0.01, next_draw - time.monotonic()))
                if msg is not None:
                    board.update(msg)
                    # --once can stop early when every process has sent two heartbeats (a rate).
                    if once and all(r.rate is not None for r in board.rows.values()):
                        next_draw = time.monotonic()
        except KeyboardInterrupt:
            return 0
