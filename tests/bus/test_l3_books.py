"""Order-level (L3) books through the bus: a late joiner starts from the snapshot service's
L3 state and the subscriber keeps the resting orders; a gap on an L3 topic drops that book."""

from __future__ import annotations

import random

from bus.codec import WIRE_VERSION, Header
from bus.subscriber import BookKeeper, Message, Subscriber
from cryptofeed_types.events import Gap, L3Delta, L3Snapshot
from feedfabric.testing.bus import drain_until


def _orders_stream(rng: random.Random, n: int) -> tuple[list, dict]:
    """n L3 deltas after a snapshot, and the resting orders they leave (computed independently)."""
    resting = {f"o{i}": (f"o{i}", "bid" if i % 2 else "ask", f"{100 + i}.5", "1") for i in range(10)}
    events = [L3Snapshot("EX", "A-B", list(resting.values()), sequence=1, receipt_timestamp=1)]
    for k in range(n):
        oid = f"o{rng.randrange(30)}"
        size = rng.choice(["0", "0.25", "2", "3.125"])
        side = "bid" if int(oid[1:]) % 2 else "ask"
        row = (oid, side, f"{100 + int(oid[1:])}.5", size)
        if size == "0":
            resting.pop(oid, None)
        else:
            resting[oid] = row
        events.append(L3Delta("EX", "A-B", [row], sequence=k + 2, receipt_timestamp=1))
    return events, resting


def test_late_joiner_gets_the_resting_orders(bus_endpoint, publisher_factory) -> None:
    ep = bus_endpoint("l3gw")
    pub = publisher_factory("l3gw", ep, heartbeat_interval=0.05)
    events, resting = _orders_stream(random.Random(5), 400)
    for ev in events[:300]:
        pub.publish(ev)
    with Subscriber(ep, ["l3."]) as sub:
        # Joined mid-stream: only the snapshot service can give it the 300 first changes.
        drain_until(sub, lambda: sub.core.ready("l3gw"))
        for ev in events[300:]:
            pub.publish(ev)
        drain_until(sub, lambda: sub.core.seq("l3gw", "l3.EX.A-B.") == len(events))
        book = sub.l3_book("EX", "A-B")
        assert book is not None and dict(book) == resting
        assert sub.counters["gaps"] == 0


def _msg(ev, seq: int) -> Message:
    return Message(ev.topic(), Header(WIRE_VERSION, "gw", 1, seq, None, 1, 1), ev)


def test_gap_on_an_l3_topic_drops_that_book_only() -> None:
    keeper = BookKeeper()
    keeper.on_delivered(_msg(L3Snapshot("EX", "A-B", [("x", "bid", "1", "2")], receipt_timestamp=1), 1))
    keeper.on_delivered(_msg(L3Snapshot("EX", "C-D", [("y", "ask", "3", "4")], receipt_timestamp=1), 1))
    keeper.on_delivered(_msg(L3Delta("EX", "A-B", [("x", "bid", "1", "0"), ("z", "ask", "5", "1")],
                                     receipt_timestamp=1), 2))
    assert dict(keeper.l3_book("EX", "A-B")) == {"z": ("z", "ask", "5", "1")}
    keeper.on_delivered(_msg(Gap("EX", "l3", "sequence gap", symbol="A-B", receipt_timestamp=1), 0))
    assert keeper.l3_book("EX", "A-B") is None
    assert dict(keeper.l3_book("EX", "C-D")) == {"y": ("y", "ask", "3", "4")}
    # A gap on the L2 book of the same symbol leaves the L3 book alone.
    keeper.on_delivered(_msg(Gap("EX", "book", "sequence gap", symbol="C-D", receipt_timestamp=1), 0))
    assert keeper.l3_book("EX", "C-D") is not None
