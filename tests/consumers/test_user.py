"""The user's API: iteration and callbacks, blocking and async, with correct books."""

from __future__ import annotations

import time

from consumers.user import AsyncFeed, Feed
from cryptofeed_types.events import L2Delta, Trade
from feedfabric.testing.bus import BookEventGenerator, publisher_state


def _publish(pub, gen, n: int) -> None:
    for ev in gen.events(n):
        pub.publish(ev)


def test_feed_callbacks_and_books(bus_endpoint, publisher_factory) -> None:
    ep = bus_endpoint("gw")
    pub = publisher_factory("gw", ep, heartbeat_interval=0.1)
    gen = BookEventGenerator(seed=5)
    for ev in gen.initial():
        pub.publish(ev)        # a late joiner: the book comes from the snapshot service
    feed = Feed(f"{ep.pub},{ep.snapshot}", ["book.", "trades."])
    trades, deltas = [], []
    feed.on(Trade, trades.append)
    feed.on("book.TESTEX.", lambda ev: deltas.append(ev) if type(ev) is L2Delta else None)
    feed.on(Trade, lambda ev: 1 / 0)    # a broken callback is counted, not fatal
    deadline = time.monotonic() + 20
    while not deltas:                   # PUB/SUB joins asynchronously: publish until it flows
        assert time.monotonic() < deadline, "feed never received anything"
        _publish(pub, gen, 50)
        feed.run(install_signals=False, timeout=0.05)
    _publish(pub, gen, 2000)
    feed.run(install_signals=False, timeout=0.5)   # returns after 0.5 s without a message
    for topic, b in publisher_state(pub)["books"].items():
        bids, asks = feed.book("TESTEX", topic.split(".")[2]).snapshot()
        assert [tuple(x) for x in bids] == b["bids"] and [tuple(x) for x in asks] == b["asks"]
    assert len(deltas) > 1000 and trades and feed.errors == len(trades)
    feed.close()


async def test_async_feed_iteration(bus_endpoint, publisher_factory) -> None:
    ep = bus_endpoint("ga")
    pub = publisher_factory("ga", ep, heartbeat_interval=0.1)

    def trade(i: int) -> Trade:
        return Trade("EX", "A-B", "buy", "1", f"{i}.5", receipt_timestamp=i)

    async with AsyncFeed([ep], ["trades."], books=False) as feed:
        got: list[Trade] = []
        i = 0
        deadline = time.monotonic() + 10
        while not got:                    # PUB/SUB joins asynchronously: publish until it flows
            assert time.monotonic() < deadline, "nothing received"
            pub.publish(trade(i))
            i += 1
            async for ev in feed.events(timeout=0.05):
                got.append(ev)
                break
        last = i + 199
        for j in range(i, last + 1):
            pub.publish(trade(j))
        async for ev in feed.events(timeout=5):
            got.append(ev)
            if ev.price_str == f"{last}.5":
                break
        prices = [int(ev.price_str.split(".")[0]) for ev in got]
        assert prices == list(range(prices[0], last + 1)), "in order, nothing lost once joined"
