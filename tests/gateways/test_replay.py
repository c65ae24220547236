"""Replay: shared captures through the adapter and a real bus Publisher; pacing; record → replay."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from feedfabric.testing.adapters import silent_messages
from feedfabric.testing.exchange import RecordingPublisher, wait_until
from gateways.capture import CaptureWriter, Record, read_capture
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


def test_paced_replay_with_a_past_start_at_catches_up(shared_data: Path) -> None:
    """A venue whose process started late replays without sleeping until it is on schedule
    (so venues sharing a start_at stay in step), then at the recorded pace."""
    recs = list(read_capture(shared_data / "cryptofeed" / "BINANCE"))
    stamps = [r.ts for r in recs if r.kind != "header" and r.ts]
    span = (max(stamps) - min(stamps)) / 1e9
    speed = span / 2.0            # 2 s of wall time when started on time
    t0 = time.monotonic()
    late = replay_capture(shared_data / "cryptofeed" / "BINANCE", pace=True, speed=speed,
                          start_at=time.time() - 1.7)   # 1.7 s late: 0.3 s left to replay
    elapsed = time.monotonic() - t0
    assert 0.3 * 0.9 <= elapsed < 1.5
    assert late.events_by_kind == replay_capture(shared_data / "cryptofeed" / "BINANCE").events_by_kind


@pytest.mark.timeout(60)
async def test_record_then_replay(shared_data: Path, loopback_exchange, tmp_path: Path) -> None:
    """A live session through the loopback recorded to .ffcap replays to the same events and books."""
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
    assert {r.status for r in recorded if r.kind == "rest"} == {200}   # the driver records the HTTP status
    result = Replayer(collect=True).run(recorded[:-1])
    assert result.adapter.error_counts() == {}
    assert result.unanswered == []
    for s in symbols:
        assert result.adapter.books.book(s).snapshot() == live_books[s]
    live_trades = [e.wire_body() for e in pub.events if e.KIND == "trade"]
    assert live_trades and [e.wire_body() for e in result.events if e.KIND == "trade"] == live_trades


# ------------------------------------------------------------------ several sessions, recorded REST status

def _copy_session(w: CaptureWriter, recs: list[Record]) -> None:
    for r in recs[1:]:
        w.write(r)


def test_reopened_capture_replays_every_session(shared_data: Path, tmp_path: Path) -> None:
    """A writer reopened the file after a crash (torn tail): the replay covers both sessions, the
    second header ends the first session's connections instead of resetting the results."""
    src = shared_data / "cryptofeed" / "BINANCE"
    recs = list(read_capture(src))
    channels = recs[0].data["channels"]
    one = replay_capture(src)
    path = tmp_path / "two.ffcap"
    with CaptureWriter(path, exchange="BINANCE", channels=channels, flush_bytes=4096) as w:
        _copy_session(w, recs)
    with open(path, "ab") as f:
        f.write(b"\x28\xb5\x2f\xfd\x64\x00")          # the crash: a block written in part
    with CaptureWriter(path, exchange="BINANCE", channels=channels, flush_bytes=4096) as w:
        _copy_session(w, recs)
    two = Replayer(collect=True).run(read_capture(path))
    assert two.sessions == 2 and two.records["header"] == 2
    assert two.records["recv"] == 2 * one.records["recv"]
    for kind in ("trade", "book_snapshot", "book_delta", "candle", "ticker"):
        assert two.events_by_kind[kind] == 2 * one.events_by_kind[kind], kind
    # The restart is visible: the first session's books were invalidated when it ended.
    assert two.events_by_kind["gap"] >= len(channels["l2_book"])
    assert two.adapter.error_counts() == {}
    assert two.unanswered == [] and two.abandoned == []


def test_recorded_rest_failures_replay_as_failures(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "cryptofeed" / "BINANCE"
    recs = list(read_capture(src))
    path = tmp_path / "limited.ffcap"
    first_snapshot = next(r for r in recs if r.kind == "rest" and "/depth" in (r.url or ""))
    instruments = next(r for r in recs if r.kind == "rest" and "exchangeInfo" in (r.url or ""))
    with CaptureWriter(path, exchange="BINANCE", channels=recs[0].data["channels"]) as w:
        for r in recs[1:]:
            if r is instruments:   # the first instruments request failed with a 503; the retry worked
                w.rest(r.ts - 2, r.url, "Service Unavailable", status=503)
            if r is first_snapshot:  # the first snapshot request was rate limited
                w.rest(r.ts - 1, r.url, '{"code":-1003,"msg":"Too many requests"}', status=429)
            w.write(r if r.kind != "rest" else r._replace(status=200))
    kinds = [(r.kind, r.status) for r in read_capture(path) if r.kind == "rest"]
    assert kinds[:3] == [("rest", 503), ("rest", 200), ("rest", 429)]
    result = replay_capture(path)
    a = result.adapter
    assert a.counters["replay.instruments_failed_response"] == 1
    assert a.error_counts() == {"errors.rest_status.snapshot": 1}
    # The adapter retried that snapshot, answered by the recorded 200: every book synced as in the original.
    plain = replay_capture(src)
    assert result.events_by_kind["book_snapshot"] == plain.events_by_kind["book_snapshot"]
    assert all(a.books.state(s) == "synced" for s in a.subscription.symbols("l2_book"))


# ------------------------------------------------------------------ every tardis file of our exchanges

_TARDIS_IDS = ("binance", "binance-futures", "binance-delivery", "coinbase", "kraken", "cryptofacilities",
               "okex", "okex-swap", "okex-futures", "okex-options", "okex-spreads", "bybit", "bybit-spot",
               "bybit-options", "bitmex", "deribit")


def test_tardis_ids_cover_every_file_of_our_exchanges(shared_data: Path) -> None:
    from gateways.capture import TARDIS_EXCHANGES
    prefixes = ("binance", "coinbase", "kraken", "cryptofacilities", "okex", "bybit", "bitmex", "deribit")
    ours = {p.stem for p in (shared_data / "tardis_messages").glob("*.jsonl")
            if p.stem.startswith(prefixes) and p.stem in TARDIS_EXCHANGES}
    assert ours == set(_TARDIS_IDS)
    # The other ids starting like ours are other exchanges' (Binance DEX, European options, Coinbase International).
    assert {p.stem for p in (shared_data / "tardis_messages").glob("*.jsonl") if p.stem.startswith(prefixes)} - ours \
        == {"binance-dex", "binance-european-options", "coinbase-international"}


@pytest.mark.parametrize("tardis_id", _TARDIS_IDS)
def test_every_tardis_file_replays(shared_data: Path, tardis_id: str) -> None:
    """Each message gives events or a named counter (ignored with a reason, an error, a book state)."""
    path = shared_data / "tardis_messages" / f"{tardis_id}.jsonl"
    result, silent = silent_messages(read_capture(path), collect=True)
    counters = result.adapter.counters
    assert result.records["recv"] == counters["messages"] > 0
    assert silent == []
    assert counters["errors.unknown_connection"] == 0
    # The only error: tardis' deliberately invalid size "0.-10000" in a Coinbase snapshot.
    assert result.adapter.error_counts() == ({"errors.bad_level": 1} if tardis_id == "coinbase" else {})
    if tardis_id == "okex-spreads":
        assert counters["ignored.spreads_not_supported"] == result.records["recv"]
    else:
        assert result.event_count > 0


def test_replay_takes_the_recorded_subscription_options(tmp_path: Path) -> None:
    from gateways.capture.ffcap import CaptureWriter
    from gateways.replay import Replayer, read_capture

    cap = tmp_path / "opts.ffcap"
    with CaptureWriter(cap, exchange="BINANCE", channels={"candles": ["BTC-USDT"]},
                       meta={"depth": 100, "candle_interval": "5m", "open_interest_interval": None}):
        pass
    res = Replayer().run(read_capture(cap))
    sub = res.adapter.subscription
    assert (sub.depth, sub.candle_interval, res.adapter.candle_interval) == (100, "5m", "5m")
    assert sub.open_interest_interval == 60.0                     # not recorded: the default
    # Options given to the replayer win over the recording's.
    res = Replayer(subscription_options={"candle_interval": "1h"}).run(read_capture(cap))
    assert res.adapter.candle_interval == "1h" and res.adapter.subscription.depth == 100


def test_recorded_polls_are_matched_without_their_time_window() -> None:
    from gateways.adapter import Fetch
    from gateways.capture import REST
    from gateways.replay import RestPool

    base = "https://api.coinbase.com/api/v3/brokerage/market/products/BTC-USD/candles"
    pool = RestPool()
    pool.add(Record(REST, "http", 1, b"1m", f"{base}?start=1699999860&end=1700017860&granularity=ONE_MINUTE"))
    pool.add(Record(REST, "http", 2, b"5m", f"{base}?start=1699999800&end=1700089800&granularity=FIVE_MINUTE"))
    # A poll whose window starts a bar later (the replay's timer is not the recorder's clock) still
    # finds the response of its granularity; the granularity (what is asked) still counts.
    later = Fetch(f"{base}?start=1699999920&end=1700017920&granularity=ONE_MINUTE", 1, "candles", "BTC-USD")
    rec = pool.take(later)
    assert rec is not None and rec.data == b"1m"
    assert pool.take(later) is None and len(pool) == 1
    assert pool.take(Fetch(f"{base}?start=1&end=2&granularity=ONE_HOUR", 1, "candles", "BTC-USD")) is None
