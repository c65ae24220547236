"""Replay: shared captures through the adapter and a real bus Publisher; pacing; record → replay."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from feedfabric.testing.exchange import RecordingPublisher, wait_until
from gateways.capture import read_capture
from gateways.process import Gateway, GatewayConfig
from gateways.replay import Replayer, replay_capture


def test_replay_through_publisher(shared_data: Path, bus_endpoint, publisher_factory, subscriber_factory) -> None:
    ep = bus_endpoint("binance")
    pub = publisher_factory("binance", ep, heartbeat_interval=0.05, exchange="BINANCE")
    sub = subscriber_factory(ep, ["trades.", "book.", "heartbeat."])
    deadline = time.monotonic() + 10
    while True:   # the subscription is live once heartbeats arrive
        msg = sub.recv(0.1)
        if msg is not None and msg.event.KIND == "heartbeat":
            break
        assert time.monotonic() < deadline, "no heartbeat from the publisher"
    result = replay_capture(shared_data / "cryptofeed" / "BINANCE", publisher=pub, collect=True)
    trades = [e for e in result.events if e.KIND == "trade"]
    symbols = result.adapter.subscription.symbols("l2_book")
    got = []
    deadline = time.monotonic() + 10
    while len(got) < len(trades) or any(sub.book("BINANCE", s) is None or sub.book("BINANCE", s).sequence
                                        != result.adapter.books.book(s).sequence for s in symbols):
        msg = sub.recv(0.1)
        if msg is not None and msg.event.KIND == "trade":
            got.append(msg.event)
        assert time.monotonic() < deadline, "replayed events did not all arrive"
    assert [t.wire_body() for t in got] == [t.wire_body() for t in trades]
    for s in symbols:
        assert sub.book("BINANCE", s).snapshot() == result.adapter.books.book(s).snapshot()
    assert pub.counters["messages"] >= result.event_count


def test_recorded_pace(shared_data: Path) -> None:
    recs = list(read_capture(shared_data / "cryptofeed" / "BINANCE"))
    stamps = [r.ts for r in recs if r.kind != "header" and r.ts]
    span = (max(stamps) - min(stamps)) / 1e9
    speed = span / 0.3            # about 0.3 s of wall time
    t0 = time.monotonic()
    paced = replay_capture(recs and shared_data / "cryptofeed" / "BINANCE", pace=True, speed=speed)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.3 * 0.9
    fast = replay_capture(shared_data / "cryptofeed" / "BINANCE")
    assert paced.events_by_kind == fast.events_by_kind


@pytest.mark.timeout(60)
async def test_record_then_replay(shared_data: Path, loopback_exchange, tmp_path: Path) -> None:
    """A live session through the loopback recorded to .ffcap replays to the same events and books."""
    import asyncio, sys
    async def dump():
        await asyncio.sleep(15)
        for t in asyncio.all_tasks():
            print("TASK", t.get_name(), file=sys.stderr)
            t.print_stack(file=sys.stderr)
    asyncio.create_task(dump())
    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE"))
    channels = records[0].data["channels"]
    lb = await loopback_exchange(records)
    path = tmp_path / "binance.ffcap"
    cfg = GatewayConfig(name="rec", exchange="BINANCE", channels=channels, pub="inproc://unused",
                        urls=lb.urls(), record=path, silence_timeout=5)
    pub = RecordingPublisher("BINANCE")
    gw = Gateway(cfg, publisher=pub)
    symbols = channels["l2_book"]
    async with gw:
        await lb.wait_subscribed()
        lb.release(None)
        await lb.wait_sent()
        await wait_until(lambda: all(gw.adapter.books.get(s) is not None and gw.adapter.books.get(s).state == "synced"
                                     and gw.adapter.books.book(s).snapshot() == lb.profile.truth_book(s.replace("-", ""))
                                     for s in symbols), 10, "books equal to the truth")
        live_books = {s: gw.adapter.books.book(s).snapshot() for s in symbols}
    kinds = [r.kind for r in read_capture(path)]
    assert kinds[0] == "header" and "connect" in kinds and "send" in kinds and "rest" in kinds and "close" in kinds
    # The capture ends with the close of the connection, which (rightly) invalidates the books:
    # replay up to it.
    recorded = list(read_capture(path))
    assert recorded[-1].kind == "close"
    result = Replayer(collect=True).run(recorded[:-1])
    assert result.adapter.error_counts() == {}
    assert result.unanswered == []
    for s in symbols:
        assert result.adapter.books.book(s).snapshot() == live_books[s]
    live_trades = [e.wire_body() for e in pub.events if e.KIND == "trade"]
    assert live_trades and [e.wire_body() for e in result.events if e.KIND == "trade"] == live_trades
