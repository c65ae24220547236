"""Aggregations: OHLCV against a group-by, throttle windows, renko bricks."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from consumers.aggregations import OHLCV, Renko, Throttle
from consumers.aggregations.ohlcv import parse_interval
from cryptofeed_types.events import BBO, L2Delta, Trade

S = 1_000_000_000


def _trades(n: int, seed: int = 3) -> list[Trade]:
    rng = random.Random(seed)
    t, out = 0, []
    for i in range(n):
        t += rng.randint(0, 3 * S)
        out.append(Trade("EX", rng.choice(["A-B", "C-D"]), "buy", f"0.{rng.randint(1, 999):03d}",
                         f"{rng.randint(90, 110)}.{rng.randint(0, 99):02d}", id=str(i), timestamp=t,
                         receipt_timestamp=t + 5))
    return out


def test_ohlcv_equals_group_by() -> None:
    trades = _trades(2000)
    agg = OHLCV("10s")
    bars = [c for t in trades for c in agg.on_trade(t)] + agg.flush(10**30)
    groups: dict[tuple, list[Trade]] = {}
    for t in trades:
        groups.setdefault((t.symbol, t.timestamp // (10 * S)), []).append(t)
    expected = {(sym, b * 10 * S): (g[0].price, max(x.price for x in g), min(x.price for x in g), g[-1].price,
                                    sum((x.amount for x in g), Decimal(0)), len(g))
                for (sym, b), g in groups.items()}
    got = {(c.symbol, c.start): (c.open, c.high, c.low, c.close, c.volume, c.trades) for c in bars}
    assert got == expected
    assert all(c.stop - c.start == 10 * S and c.closed and c.interval == "10s" for c in bars)


def test_ohlcv_late_trade_and_intervals() -> None:
    agg = OHLCV("1m")
    agg.on_trade(Trade("EX", "A-B", "buy", "1", "10", timestamp=120 * S, receipt_timestamp=0))
    assert agg.on_trade(Trade("EX", "A-B", "buy", "1", "11", timestamp=30 * S, receipt_timestamp=0)) == []
    assert agg.counters["late"] == 1
    assert parse_interval("250ms") == 250_000_000 and parse_interval("1h") == 3600 * S
    with pytest.raises(ValueError):
        parse_interval("5 minutes")


def test_ohlcv_bar_closed_by_flush_is_never_emitted_again() -> None:
    agg = OHLCV("1m", grace=2.0)
    agg.on_trade(Trade("EX", "A-B", "buy", "1", "10", timestamp=60 * S, receipt_timestamp=0))
    (first,) = agg.flush(123 * S)          # wall clock past the bar's end + grace
    assert (first.start, first.trades) == (60 * S, 1)
    # A straggler of that same minute (a delayed feed) must not open and later emit a second bar.
    assert agg.on_trade(Trade("EX", "A-B", "buy", "1", "11", timestamp=90 * S, receipt_timestamp=0)) == []
    assert agg.counters["late"] == 1 and agg.flush(10**30) == []
    # The next minute opens normally.
    agg.on_trade(Trade("EX", "A-B", "buy", "2", "12", timestamp=121 * S, receipt_timestamp=0))
    (nxt,) = agg.flush(10**30)
    assert (nxt.start, nxt.open, nxt.volume) == (120 * S, Decimal("12"), Decimal("2"))


def test_throttle_last_value_per_window() -> None:
    th = Throttle(1.0)
    ev = [BBO("EX", "A-B", bid=str(i), ask=str(i + 1), receipt_timestamp=i) for i in range(5)]
    assert th.offer("bbo.EX.A-B.", ev[0], 0) == [ev[0]]          # first passes at once
    assert th.offer("bbo.EX.A-B.", ev[1], S // 4) == []
    assert th.offer("bbo.EX.A-B.", ev[2], S // 2) == []
    assert th.flush(S - 1) == []
    assert th.flush(S) == [ev[2]]                                   # last value of the window
    assert th.flush(3 * S) == []
    assert th.offer("bbo.EX.A-B.", ev[3], 3 * S) == [ev[3]]
    assert th.offer("book.EX.A-B.", L2Delta("EX", "A-B", (), (), receipt_timestamp=0), 3 * S) == []
    assert th.counters["refused"] == 1 and th.counters["replaced"] == 1


def test_renko_bricks() -> None:
    r = Renko("10")
    prices = ["100", "105", "109.99", "110", "95", "79", "100"]
    bricks = []
    for i, p in enumerate(prices):
        bricks += r.on_trade(Trade("EX", "A-B", "buy", "1", p, timestamp=i, receipt_timestamp=i))
    assert [(c.open, c.close) for c in bricks] == [
        (Decimal(100), Decimal(110)), (Decimal(110), Decimal(100)), (Decimal(100), Decimal(90)),
        (Decimal(90), Decimal(80)), (Decimal(80), Decimal(90)), (Decimal(90), Decimal(100))]
    assert bricks[0].volume == Decimal(4) and bricks[0].trades == 4 and bricks[0].interval == "renko:10"
    assert sum(c.volume for c in bricks) == Decimal(7)


@pytest.mark.timeout(60)
def test_aggregation_consumers_on_the_bus(bus_endpoint, publisher_factory) -> None:
    """OHLCV and renko as processes would run them: trades in over the bus, candles out on their
    own PUBs, equal to the pure calculators over the same trades."""
    import threading
    import time

    from bus.subscriber import Subscriber
    from consumers.aggregations import OHLCVConsumer, RenkoConsumer
    from cryptofeed_types.events import Candle
    from feedfabric.testing.bus import drain_until

    src = bus_endpoint("tgw")
    pub = publisher_factory("tgw", src, heartbeat_interval=0.05)
    # Exchange times in the future: no bar is closed by the wall clock during the test, so the
    # bars emitted are exactly those closed by later trades (deterministic).
    hour = 3600 * S
    base = (time.time_ns() // hour + 240) * hour
    rng = random.Random(11)
    trades = [Trade("EX", rng.choice(["A-B", "C-D"]), "buy", f"0.{rng.randint(1, 99):02d}",
                    f"{rng.randint(90, 110)}.{rng.randint(0, 9)}", id=str(i), timestamp=base + i * 20 * S,
                    receipt_timestamp=i) for i in range(600)]
    pure_ohlcv, pure_renko = OHLCV("1h"), Renko("5")
    want_bars = [c for t in trades for c in pure_ohlcv.on_trade(t)]
    want_bricks = [c for t in trades for c in pure_renko.on_trade(t)]
    assert len(want_bars) >= 4 and len(want_bricks) >= 4

    consumers = [OHLCVConsumer("ohlcv", src, interval="1h", publish=bus_endpoint("ohlcv"), heartbeat_interval=0.05),
                 RenkoConsumer("renko", src, size="5", publish=bus_endpoint("renko"), heartbeat_interval=0.05)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in consumers]
    outs = [Subscriber(bus_endpoint(c.name), ["candles."], heartbeat_timeout=30) for c in consumers]
    try:
        for t in threads:
            t.start()
        for c, out in zip(consumers, outs, strict=True):
            drain_until(out, lambda out=out, c=c: out.core.ready(c.name))
            deadline = time.monotonic() + 20
            while not c.subscriber.core.ready("tgw"):   # the consumer thread's own subscription
                assert time.monotonic() < deadline
                time.sleep(0.01)
        for t in trades:
            pub.publish(t)
        got: list[list[Candle]] = [[], []]
        for out, want, bag in zip(outs, (want_bars, want_bricks), got, strict=True):
            drain_until(out, lambda bag=bag, want=want: len(bag) >= len(want),
                        on_message=lambda m, bag=bag: bag.append(m.event) if type(m.event) is Candle else None)
        for bag, want in zip(got, (want_bars, want_bricks), strict=True):
            assert [c.to_dict() for c in bag] == [c.to_dict() for c in want]
    finally:
        for c in consumers:
            c.stop()
        for t in threads:
            t.join(10)
        for out in outs:
            out.close()
