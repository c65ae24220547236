"""`feedfabric latency`: the sans-I/O statistics, and the command against a live in-process publisher."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from bus.codec import Header
from bus.endpoints import GatewayEndpoint
from bus.publisher import Publisher
from bus.subscriber import Message
from cryptofeed_types.events import Heartbeat, Reset, Trade
from feedfabric.cli import main
from feedfabric.latency import LatencyStats, format_ns, format_table, latency, quantiles

pytestmark = pytest.mark.timeout(60)

MS = 1_000_000


def _msg(topic: str, gateway: str, seq: int, ts: int | None, rts: int, pts: int) -> Message:
    ev = Trade("EX", "BTC-USDT", "buy", "1", "100", timestamp=ts, receipt_timestamp=rts)
    return Message(topic, Header(1, gateway, 1, seq, ts, rts, pts), ev)


def test_quantiles_nearest_rank() -> None:
    q = quantiles(list(range(100, 0, -1)))    # 1..100, unsorted
    assert q is not None and (q.n, q.p50, q.p90, q.p99, q.max) == (100, 51, 91, 100, 100)
    assert quantiles([]) is None
    one = quantiles([-7])
    assert one is not None and (one.p50, one.p99, one.max) == (-7, -7, -7)


def test_legs_per_source_and_channel() -> None:
    stats = LatencyStats(seed=1)
    t0 = 1_700_000_000 * 10**9
    for i in range(100):
        # exchange -> receipt 3 ms, receipt -> publish (i+1) µs, publish -> here 50 µs
        assert stats.add(_msg("trades.EX.BTC-USDT.", "gw1", i + 1, t0, t0 + 3 * MS, t0 + 3 * MS + (i + 1) * 1000),
                         t0 + 3 * MS + (i + 1) * 1000 + 50_000)
    # No exchange timestamp: only the two gateway-side legs.
    stats.add(_msg("ticker.EX.BTC-USDT.", "gw1", 1, None, t0, t0 + 2000), t0 + 2000 + 10_000)
    stats.add(_msg("trades.EX.BTC-USDT.", "gw2", 1, t0, t0 - MS, t0), t0)   # clocks disagree: negative
    # Made by the subscriber itself, or control traffic: not market data.
    local = Message("book.EX.BTC-USDT.", Header(1, "gw1", 1, 0, None, t0, t0), Reset("EX", "book", "gap", symbol="BTC-USDT"))
    assert not stats.add(local, t0)
    hb = Message("heartbeat.gw1.", Header(1, "gw1", 1, 5, None, t0, t0), Heartbeat("gw1", {}, {}))
    assert not stats.add(hb, t0)

    rows = {(r.source, r.channel): r for r in stats.rows()}
    assert set(rows) == {("gw1", "ticker"), ("gw1", "trades"), ("gw2", "trades")}
    trades = rows[("gw1", "trades")]
    assert trades.messages == 100 and not trades.recorded
    ex, gw, bus = (trades.legs[k] for k in ("exchange_to_receipt", "receipt_to_publish", "publish_to_here"))
    assert ex is not None and (ex.p50, ex.max) == (3 * MS, 3 * MS)
    assert gw is not None and (gw.p50, gw.p90, gw.p99, gw.max) == (51_000, 91_000, 100_000, 100_000)
    assert bus is not None and bus.p99 == 50_000
    assert rows[("gw1", "ticker")].legs["exchange_to_receipt"] is None
    assert rows[("gw2", "trades")].legs["exchange_to_receipt"].p50 == -MS   # type: ignore[union-attr]

    stats.reset()
    assert stats.rows() == []


def test_reservoir_bounds_memory_but_keeps_the_exact_maximum() -> None:
    stats = LatencyStats(reservoir=50, seed=3)
    t0 = 10**18
    for i in range(10_000):
        delay = 1_000_000 if i == 7 else 1000 + i % 10    # one 1 ms outlier among ~1 µs
        stats.add_sample("gw", "book", None, t0, t0 + delay, t0 + delay)
    (row,) = stats.rows()
    leg = row.legs["receipt_to_publish"]
    assert row.messages == 10_000 and leg is not None and leg.n == 50
    assert leg.max == 1_000_000 and 1000 <= leg.p50 <= 1009


def test_replayed_source_is_flagged_and_formatting() -> None:
    stats = LatencyStats()
    recorded = 1_600_000_000 * 10**9
    now = 1_700_000_000 * 10**9
    stats.add_sample("replay", "trades", recorded - MS, recorded, now, now + 40_000)
    (row,) = stats.rows()
    assert row.recorded and row.to_dict()["recorded"] is True
    lines = format_table([row])
    assert lines[0].split()[:3] == ["source", "channel", "msgs"]
    assert "(recorded 1157 days ago)" in lines[1] and lines[-1].startswith("(recorded)")
    assert [format_ns(x) for x in (None, 850_000, -2_500_000, 3 * 10**10)] == ["-", "850µs", "-2.5ms", "30s"]


@pytest.fixture
def live_gateway(live_publisher: Callable[..., GatewayEndpoint]) -> GatewayEndpoint:
    """A publisher 'gw1' whose trades are stamped 3 ms after the exchange and received 2 ms before publish."""
    def tick(pub: Publisher, i: int) -> None:
        rts = time.time_ns() - 2 * MS
        pub.publish(Trade("TESTEX", "BTC-USDT", "buy", "0.01", "100", id=str(i), timestamp=rts - 3 * MS,
                          receipt_timestamp=rts))
    return live_publisher("gw1", tick, 0.005)


def test_latency_of_a_live_publisher(live_gateway: GatewayEndpoint) -> None:
    out: list[str] = []
    rows = latency([live_gateway], [""], duration=1.5, interval=0.7, write=out.append)
    assert sum(line.startswith("source") for line in out) == 3      # two intervals and the end
    (row,) = rows                                                   # heartbeats are not counted
    assert (row.source, row.channel) == ("gw1", "trades") and row.messages > 10
    ex, gw, bus = (row.legs[k] for k in ("exchange_to_receipt", "receipt_to_publish", "publish_to_here"))
    assert ex is not None and ex.p50 == ex.max == 3 * MS             # both stamped by the test
    assert gw is not None and 2 * MS <= gw.p50 < 500 * MS            # 2 ms before publish, plus the call
    assert bus is not None and 0 <= bus.p50 < 1000 * MS


def test_latency_command_json(live_gateway: GatewayEndpoint) -> None:
    endpoint = f"{live_gateway.pub},{live_gateway.snapshot}"
    res = CliRunner().invoke(main, ["latency", "trades.", "-e", endpoint, "--duration", "1", "--json"])
    assert res.exit_code == 0, res.output
    (row,) = [json.loads(line) for line in res.output.strip().splitlines()]
    assert row["source"] == "gw1" and row["channel"] == "trades" and row["messages"] > 10
    assert row["exchange_to_receipt"]["p50_us"] == 3000.0 and row["recorded"] is False

    res = CliRunner().invoke(main, ["latency", "-e", endpoint, "--interval", "0"])
    assert res.exit_code != 0 and "--interval" in res.output


def test_latency_nothing_received(short_run_dir: Path) -> None:
    ghost = GatewayEndpoint.ipc(short_run_dir, "ghost")
    out: list[str] = []
    assert latency([ghost], [""], duration=0.3, write=out.append) == []
    assert out == ["no market data received (nothing published under these prefixes?)"]
