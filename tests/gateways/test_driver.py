"""Driver pieces that need no capture: backoff, REST budget, reconnecting to a dead endpoint."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from cryptofeed_types import Status
from feedfabric.testing.exchange import RecordingPublisher, wait_until
from gateways.adapter import Adapter, Close, ConnectionSpec, Output, Resync, Send, Subscription
from gateways.driver import Driver, DriverConfig, RestBudget, backoff_delay, retry_after_seconds


def test_backoff_is_capped_and_jittered() -> None:
    cfg = DriverConfig(backoff_initial=0.5, backoff_max=8.0, backoff_jitter=0.5)
    rng = random.Random(1)
    delays = [backoff_delay(i, cfg, rng) for i in range(12)]
    for i, d in enumerate(delays):
        base = min(8.0, 0.5 * 2 ** i)
        assert base * 0.5 <= d <= base
    assert max(delays) <= 8.0
    assert len({round(d, 6) for d in delays[6:]}) > 1      # jitter spreads the capped delays
    assert backoff_delay(10_000, cfg, rng) <= 8.0            # no overflow on long outages


def test_rest_budget() -> None:
    now = [0.0]
    budget = RestBudget(600, clock=lambda: now[0])        # 10 weight per second
    assert budget.try_acquire(500) == 0.0
    assert budget.try_acquire(100) == 0.0
    wait = budget.try_acquire(50)
    assert wait == pytest.approx(5.0)
    now[0] += 5.0
    assert budget.try_acquire(50) == 0.0
    assert budget.try_acquire(10_000) > 0                  # heavier than the bucket: waits for a full one


def test_rest_budget_obeys_the_exchange() -> None:
    now = [0.0]
    budget = RestBudget(600, clock=lambda: now[0])
    budget.pause(30.0)                                     # Retry-After: 30
    assert budget.try_acquire(1) == pytest.approx(30.0)
    now[0] += 29.0
    assert budget.try_acquire(1) == pytest.approx(1.0)
    now[0] += 1.0
    assert budget.try_acquire(5) == 0.0                    # 30 s of refill since the (emptied) pause
    budget.sync_used(590)                                  # the exchange counts 590 of 600 used
    assert budget.tokens == pytest.approx(10.0)
    assert budget.try_acquire(10) == 0.0 and budget.try_acquire(1) > 0
    budget.sync_used(10_000)                               # over its limit (another process): none left
    assert budget.tokens == 0.0
    now[0] += 10.0
    budget.sync_left(30)                                   # 100 refilled, but the exchange says 30 remain
    assert budget.tokens == pytest.approx(30.0)


def test_retry_after_seconds() -> None:
    assert retry_after_seconds("120") == 120.0 and retry_after_seconds(" 7 ") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0   # already past
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None and retry_after_seconds("") is None


class _Dummy(Adapter):
    exchange = "DUMMY"
    urls = {"ws": "ws://127.0.0.1:9"}

    def connections(self) -> list[ConnectionSpec]:
        return [ConnectionSpec("DUMMY.0", self.url["ws"], subscribe=("hello",))]

    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        self.ignore("any")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_reconnects_forever_to_a_dead_endpoint() -> None:
    adapter = _Dummy(Subscription({}), urls={"ws": f"ws://127.0.0.1:{_closed_port()}"})
    pub = RecordingPublisher("DUMMY")
    driver = Driver(adapter, pub, config=DriverConfig(backoff_initial=0.01, backoff_max=0.05, open_timeout=1))
    task = asyncio.create_task(driver.run())
    await wait_until(lambda: driver.counters["reconnects"] >= 5, 10, "5 reconnect attempts")
    driver.stop()
    async with asyncio.timeout(5):
        await task
    assert pub.feeds == {}                                 # never connected, so no Status flapping
    assert adapter.counters["errors"] == 0


class _Resyncing(_Dummy):
    def handle_resync(self, symbol: str, ts: int, out: Output) -> None:
        out.actions.append(Send("DUMMY.0", f"resubscribe {symbol}"))


class _FakeWs:
    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.closed_with: str | None = None

    async def send(self, payload: str | bytes) -> None:
        self.sent.append(payload)

    async def close(self, reason: str = "") -> None:
        self.closed_with = reason


async def test_actions_are_performed() -> None:
    adapter = _Resyncing(Subscription({}))
    pub = RecordingPublisher("DUMMY")
    driver = Driver(adapter, pub)
    ws = _FakeWs()
    driver.ws["DUMMY.0"] = ws  # type: ignore[assignment]
    out = Output()
    out.events.append(Status("DUMMY", "x", "connected"))
    out.actions += [Resync("A-B", "checksum"), Send("DUMMY.0", "ping"), Send("NOPE", "lost"),
                    Close("DUMMY.0", "asked")]
    await driver.handle(out)
    assert [e.KIND for e in pub.events] == ["status"]
    assert ws.sent == ["resubscribe A-B", "ping"] and ws.closed_with == "asked"
    assert driver.counters["resyncs"] == 1 and driver.counters["send_dropped"] == 1


def test_gateway_config_validation() -> None:
    from pydantic import ValidationError

    from gateways.process import GatewayConfig
    ok = GatewayConfig(name="bn", exchange="BINANCE", channels=["trades", "l2_book"], symbols=["BTC-USDT"],
                       pub="ipc:///tmp/x.pub")
    assert ok.subscription().channels == {"trades": ["BTC-USDT"], "l2_book": ["BTC-USDT"]}
    for bad, field in (({"exchange": "NOPE"}, "unknown exchange"), ({"channels": ["trade"]}, "unknown channels"),
                       ({"name": "a.b"}, "without '.'"), ({"colour": 1}, "Extra inputs")):
        args = dict(name="bn", exchange="BINANCE", channels=["trades"], symbols=["BTC-USDT"], pub="x") | bad
        with pytest.raises(ValidationError, match=field):
            GatewayConfig(**args)


class _BrokenConnections(_Dummy):
    timer_interval = 0.01

    def connections(self) -> list[ConnectionSpec]:
        raise KeyError("DUMMY: unknown symbol 'NOPE-USD'")

    def handle_timer(self, ts: int, out: Output) -> None:
        self.count("timer")


async def test_an_adapter_failing_to_build_connections_does_not_stop_the_gateway() -> None:
    adapter = _BrokenConnections(Subscription({"trades": ["NOPE-USD"]}))
    pub = RecordingPublisher("DUMMY")
    driver = Driver(adapter, pub, instruments={})
    task = asyncio.create_task(driver.run())
    # The timer keeps running: the gateway is alive (heartbeats, status) though nothing is subscribed.
    await wait_until(lambda: adapter.counters["timer"] >= 3, 10, "timer ticks after the failure")
    assert not task.done()
    assert driver.counters["errors.connections"] == 1 and driver.ws == {}
    driver.stop()
    async with asyncio.timeout(5):
        await task
