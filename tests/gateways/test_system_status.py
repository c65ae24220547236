"""gateways.system_status: the exchange's announced conditions → one published system state."""

from __future__ import annotations

from collections import Counter

import pytest

from gateways.adapter import Output
from gateways.system_status import SystemStatus


def _published(system: SystemStatus, ts: int) -> list[tuple[str, str | None]]:
    out = Output()
    system.publish(ts, out)
    return [(e.state, e.reason) for e in out.events]


def test_most_severe_condition_wins_and_each_change_is_published_once() -> None:
    counters: Counter[str] = Counter()
    system = SystemStatus("EX", counters)
    assert system.state is None                       # nothing said, nothing published
    system.set("a", "partial", "index x locked")
    system.set("b", "cancel_only", "engine cancel-only")
    assert _published(system, 1) == [("cancel_only", "engine cancel-only; index x locked")]
    assert _published(system, 2) == [] and counters["ignored.system_status_unchanged"] == 1
    system.set("b", "online", "engine back")
    assert _published(system, 3) == [("partial", "index x locked")]
    system.set("a", "online", "index x unlocked")
    assert _published(system, 4) == [("online", "index x unlocked")] and system.state == "online"
    assert (counters["system.cancel_only"], counters["system.partial"], counters["system.online"]) == (1, 1, 1)


def test_a_state_it_does_not_know_is_published_in_the_exchange_words() -> None:
    """Ranked with post_only: worse than partial, not as bad as cancel_only."""
    system = SystemStatus("EX", Counter())
    system.set("a", "partial", "p")
    system.set("b", "limit_only", "new Kraken state")
    assert _published(system, 1)[0][0] == "limit_only"
    system.set("c", "cancel_only", "c")
    assert _published(system, 2)[0][0] == "cancel_only"
    with pytest.raises(ValueError):
        system.set("d", "", "empty")


def test_notice_is_counted_not_published() -> None:
    counters: Counter[str] = Counter()
    system = SystemStatus("EX", counters)
    system.notice("scheduled", "maintenance tomorrow")
    assert counters["system.scheduled"] == 1 and system.state is None


def test_an_inactive_one_neither_polls_nor_publishes() -> None:
    """The later parts of a re-matched gateway: their instruments differ from the first part's, so
    only the first part asks and publishes the exchange's system status."""
    counters: Counter[str] = Counter()
    system = SystemStatus("EX", counters)
    system.active = False
    system.set("a", "maintenance", "down")
    assert not system.due(1, 10) and _published(system, 1) == []
    assert counters["ignored.system_status_other_part"] == 1 and system.state is None


def test_a_gateways_later_parts_leave_the_system_status_to_the_first() -> None:
    from feedfabric.testing.exchange import RecordingPublisher
    from gateways.process import Gateway, GatewayConfig
    cfg = GatewayConfig(name="bn", exchange="BINANCE", channels={"trades": ["BTC-USDT"]}, pub="inproc://unused")
    gw = Gateway(cfg, publisher=RecordingPublisher("BINANCE"))
    gw._build(cfg.model_copy(update={"channels": {"trades": ["ETH-USDT"]}}))   # as a re-match adds a part
    first, later = (p.adapter for p in gw.parts)
    assert (first.system.active, later.system.active) == (True, False)
    polls = [[a for a in adapter.on_timer(1).actions if a.tag == "system_status"] for adapter in (first, later)]
    assert [len(p) for p in polls] == [1, 0]
