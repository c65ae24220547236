"""An exchange's own system status (maintenance, cancel-only, ...): the part every adapter shares.

Exchanges announce the state of their trading system in their own words: Kraken one state for
the whole exchange, OKX and Bybit maintenance events with a service, a product and a phase,
Deribit a lock per price index, Coinbase a status per product, Binance spot a REST flag. An adapter turns each announcement into a *condition* (a key of its choosing, a
normalized state, a reason in words) and its :class:`SystemStatus` turns the current conditions
into one state for the exchange, published as ``Status(feed='system')`` when it changes, so that
consumers (the NBBO, ``feedfabric status``) need to know no exchange's vocabulary.

States, most severe first:

- ``maintenance``: the exchange does not trade (markets closed, orders neither placed nor cancelled);
- ``cancel_only``: orders can be cancelled, not placed; no matching;
- ``post_only``: only resting limit orders can be placed; no matching (Kraken's post-only, OKX's
  pre-open phase after a maintenance);
- ``partial``: part of the exchange is down (one Deribit index locked, OKX upgrading a batch of
  products or accounts); the reason says which;
- ``online``: nothing announced is in force.

A state an exchange adds that this module does not know is published as the exchange words it,
ranked with ``post_only`` (not fully up, not known to be down). The published state is the most
severe current condition (``online`` when none) and its reason the current conditions' reasons;
a repeat of what was last published is counted ``ignored.system_status_unchanged`` and not sent
again, each change is counted ``system.<state>``. Nothing is published before the exchange has
said something: a feed that never hears of its exchange's system status publishes none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loguru import logger

from cryptofeed_types import Status

if TYPE_CHECKING:   # the adapter owns a SystemStatus: no import at run time either way round
    from gateways.adapter import Output

MAINTENANCE = "maintenance"
CANCEL_ONLY = "cancel_only"
POST_ONLY = "post_only"
PARTIAL = "partial"
ONLINE = "online"
# Lower = more severe.
_SEVERITY = {MAINTENANCE: 0, CANCEL_ONLY: 1, POST_ONLY: 2, PARTIAL: 3, ONLINE: 4}
_UNKNOWN_SEVERITY = _SEVERITY[POST_ONLY]


def ms_text(ms: Any) -> str:
    """An exchange's millisecond time as UTC text for a reason ('?' when it gives none)."""
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError):
        return "?"


class SystemStatus:
    """The conditions an exchange has announced and the Status last published for them."""

    __slots__ = ("exchange", "counters", "active", "_conditions", "_online_reason", "_published", "_next_poll",
                 "_noticed")

    def __init__(self, exchange: str, counters: Counter[str]) -> None:
        self.exchange = exchange
        self.counters = counters
        # False in the later parts of a re-matched gateway (gateways/process.py): its first part alone
        # asks and publishes the exchange's system status, so parts that see different instruments
        # never publish different states for the one feed 'system'.
        self.active = True
        self._conditions: dict[Hashable, tuple[str, str]] = {}   # key → (state, reason), never online
        self._online_reason = f"{exchange} system status: online"
        self._published: tuple[str, str] | None = None
        self._next_poll: int | None = None
        self._noticed: set[Hashable] = set()

    @property
    def state(self) -> str | None:
        """The state last published (None: the exchange has said nothing yet)."""
        return None if self._published is None else self._published[0]

    def set(self, key: Hashable, state: str, reason: str) -> None:
        """Condition ``key`` is now ``state`` (``online``: it is over); call :meth:`publish` after."""
        if not isinstance(state, str) or not state:
            raise ValueError(f"a system state is a non-empty string, not {state!r}")
        if state == ONLINE:
            self._conditions.pop(key, None)
            self._online_reason = reason
        else:
            self._conditions[key] = (state, reason)

    def set_share(self, key: Hashable, affected: int, total: int, reason: str) -> None:
        """Condition ``key`` stops ``affected`` of the gateway's ``total`` instruments: ``maintenance``
        when that is all of them, ``partial`` when some, over (``online``) when none."""
        self.set(key, ONLINE if affected <= 0 else MAINTENANCE if affected >= total else PARTIAL, reason)

    def clear(self) -> None:
        """Forget every condition: a full listing of the exchange's announcements follows (a REST
        answer lists all of them, ended ones included)."""
        self._conditions.clear()

    def due(self, ts: int, interval_ns: int) -> bool:
        """For an exchange that tells its status over REST: True at the first call and then once per
        ``interval_ns`` (the adapter's timer asks; a failed poll waits for the next period)."""
        if not self.active or (self._next_poll is not None and ts < self._next_poll):
            return False
        self._next_poll = ts + interval_ns
        return True

    def current(self) -> tuple[str, str]:
        """(state, reason) of the exchange from its current conditions."""
        if not self._conditions:
            return ONLINE, self._online_reason
        ranked = sorted(self._conditions.values(), key=lambda c: (_SEVERITY.get(c[0], _UNKNOWN_SEVERITY), c[1]))
        return ranked[0][0], "; ".join(reason for _, reason in ranked)

    def publish(self, ts: int, out: Output, timestamp: int | None = None) -> None:
        """Publish the exchange's state if it (or its reason) changed since the last Status."""
        if not self.active:
            self.counters["ignored.system_status_other_part"] += 1
            return
        now = self.current()
        if now == self._published:
            self.counters["ignored.system_status_unchanged"] += 1
            return
        self._published = now
        state, reason = now
        self.counters[f"system.{state}"] += 1
        logger.bind(exchange=self.exchange).log("INFO" if state == ONLINE else "WARNING", "{} system status {}: {}",
                                                self.exchange, state, reason)
        out.events.append(Status(self.exchange, "system", state, reason=reason, timestamp=timestamp,
                                 receipt_timestamp=ts))

    def notice(self, kind: str, text: str, key: Hashable = None) -> None:
        """An announcement that changes no state yet (a maintenance scheduled): counted
        ``system.<kind>`` and logged, nothing published; with a ``key``, only the first time (a REST
        poll lists the same scheduled maintenance every time)."""
        if key is not None:
            if key in self._noticed:
                return
            self._noticed.add(key)
        self.counters[f"system.{kind}"] += 1
        logger.bind(exchange=self.exchange).info("{} {}", self.exchange, text)
