"""The bus end to end with real processes and sockets: late joiners, forced drops, a SIGKILLed
publisher, fan-out, CURVE and junk. Every wait is on a condition with a bounded timeout.

The assertion that matters is exact equality (every level, exact strings) of the subscriber's
books with the publisher's own books, as the publisher process reports them.
"""

from __future__ import annotations

import asyncio

import msgpack
import zmq

from bus import codec
from bus.endpoints import GatewayEndpoint
from bus.security import CurveClient, CurveServer, generate_keypair
from bus.subscriber import AsyncSubscriber
from cryptofeed_types.events import Gap, Heartbeat, L2Snapshot, Reset, Status, Trade
from feedfabric.testing.bus import BookEventGenerator, books_match, drain_until

SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")


def books_live(sub) -> bool:
    return all(sub.book("TESTEX", s) is not None for s in SYMBOLS)


def caught_up(sub, state, gateway="gw") -> bool:
    """Every book topic of the publisher is live at the publisher's last sequence number."""
    return all(sub.core.seq(gateway, t) == b["seq"] for t, b in state["books"].items())


def test_late_joiner_ends_with_identical_books(bus_endpoint, publisher_process, subscriber_factory):
    pp = publisher_process("gw", bus_endpoint("gw"), options={"heartbeat_interval": 0.2})
    pp.initial()
    pp.publish(3000)
    sub = subscriber_factory(pp.endpoint, ["book.", "ticker."])
    # The stream goes on while the subscriber asks for, and applies, its snapshot.
    pp.publish_async(3000, rate=6000)
    got = drain_until(sub, lambda: books_live(sub))
    done = []
    got += drain_until(sub, lambda: done or done.extend(x for x in [pp.poll_done()] if x is not None))
    state = pp.state()
    got += drain_until(sub, lambda: caught_up(sub, state))
    assert books_match(sub, state)
    first = {}
    for m in got:
        first.setdefault(m.topic, m)
    for s in SYMBOLS:
        m = first[f"book.TESTEX.{s}."]
        assert isinstance(m.event, L2Snapshot) and m.header.seq > 1  # joined mid-stream from the snapshot
    assert "ticker.TESTEX.BTC-USDT." in first  # last value served to the late joiner
    assert sub.counters["junk"] == 0 and sub.counters["gaps"] == 0


def test_throttled_subscriber_sees_gaps_and_recovers(bus_endpoint, publisher_process, subscriber_factory):
    pp = publisher_process("gw", bus_endpoint("gw"), options={"heartbeat_interval": 0.2, "sndhwm": 20})
    pp.initial()
    sub = subscriber_factory(pp.endpoint, [""], rcvhwm=20)
    drain_until(sub, lambda: books_live(sub))
    pp.publish(20000)  # we read nothing meanwhile: both HWMs and the socket buffers overflow
    assert sub.counters["gaps"] == 0
    # More traffic on every topic, read as it comes, reveals the losses; the snapshot repairs them.
    pp.publish_async(600, rate=3000)
    done = []
    got = drain_until(sub, lambda: done or done.extend(x for x in [pp.poll_done()] if x is not None))
    state = pp.state()
    got += drain_until(sub, lambda: caught_up(sub, state))
    assert books_match(sub, state)
    gaps = [m for m in got if isinstance(m.event, Gap) and m.event.channel == "book"]
    assert gaps and sub.counters["resyncs"] >= 1
    # After each book's first gap: a Reset, then the fresh L2Snapshot, on that book.
    for g in gaps[:1]:
        topic = f"book.TESTEX.{g.event.symbol}."
        after = [m for m in got[got.index(g):] if m.topic == topic or isinstance(m.event, Reset)]
        reset_i = next(i for i, m in enumerate(after) if isinstance(m.event, Reset) and m.event.symbol == g.event.symbol)
        assert isinstance(after[reset_i + 1].event, L2Snapshot)


def test_publisher_sigkilled_and_restarted_recovers_on_new_epoch(bus_endpoint, publisher_process,
                                                                 subscriber_factory):
    ep = bus_endpoint("gw")
    opts = {"heartbeat_interval": 0.2}
    pp = publisher_process("gw", ep, seed=1, options=opts)
    pp.initial()
    pp.publish(500)
    state1 = pp.state()
    sub = subscriber_factory(ep, [""], heartbeat_timeout=1.0)
    drain_until(sub, lambda: caught_up(sub, state1))
    assert books_match(sub, state1)
    pp.kill()
    stale = drain_until(sub, lambda: sub.counters["stale"] >= 1)
    assert any(isinstance(m.event, Status) and m.event.state == "stale" for m in stale)

    pp2 = publisher_process("gw", ep, seed=2, options=opts)
    assert pp2.epoch > state1["epoch"]
    pp2.initial()
    pp2.publish(500)
    state2 = pp2.state()
    got = drain_until(sub, lambda: sub.core.gateways["gw"].epoch == state2["epoch"] and caught_up(sub, state2))
    assert books_match(sub, state2)
    assert not books_match(sub, state1)
    assert any(isinstance(m.event, Gap) and "epoch" in m.event.reason for m in got)
    assert any(isinstance(m.event, Reset) for m in got)
    assert any(isinstance(m.event, Status) and m.event.state == "connected" for m in got)


def test_one_publisher_four_subscribers_get_everything_in_order(bus_endpoint, publisher_process,
                                                                subscriber_factory):
    pp = publisher_process("gw", bus_endpoint("gw"), options={"heartbeat_interval": 0.2})
    subs = [subscriber_factory(pp.endpoint, [""]) for _ in range(4)]
    for s in subs:  # a heartbeat proves each subscription is active, and its snapshot is answered
        drain_until(s, lambda s=s: s.core.ready("gw"))
    pp.initial()
    pp.publish_async(4000)
    seqs = [dict() for _ in subs]
    done = []
    while not done:
        for s, seen in zip(subs, seqs, strict=True):
            while (m := s.recv(timeout=0)) is not None:
                if not isinstance(m.event, Heartbeat) and m.header.seq:
                    seen.setdefault(m.topic, []).append(m.header.seq)
        if (n := pp.poll_done()) is not None:
            done.append(n)
    state = pp.state()
    expected = {t: n for t, n in state["seqs"].items() if not t.startswith("heartbeat.")}
    for s, seen in zip(subs, seqs, strict=True):
        drain_until(s, lambda s=s, seen=seen: all(seen.get(t, [0])[-1] == n for t, n in expected.items()),
                    on_message=lambda m, seen=seen: None if isinstance(m.event, Heartbeat) or not m.header.seq
                    else seen.setdefault(m.topic, []).append(m.header.seq))
        assert {t: v for t, v in seen.items()} .keys() == expected.keys()
        for t, v in seen.items():
            assert v == list(range(1, expected[t] + 1)), t  # every message, in order, from seq 1
        assert s.counters["gaps"] == 0 and s.counters["duplicates"] == 0
        assert books_match(s, state)


def test_curve_unlisted_client_gets_nothing_listed_gets_everything(bus_endpoint, publisher_process,
                                                                   subscriber_factory):
    server_pub, server_sec = generate_keypair()
    good_pub, good_sec = generate_keypair()
    bad_pub, bad_sec = generate_keypair()
    curve = CurveServer(server_pub, server_sec, frozenset({good_pub}))
    pp = publisher_process("gw", bus_endpoint("gw", transport="tcp"),
                           options={"heartbeat_interval": 0.2, "curve": curve})
    good = subscriber_factory(pp.endpoint, [""], curve=CurveClient(good_pub, good_sec, server_pub))
    bad = subscriber_factory(pp.endpoint, [""], curve=CurveClient(bad_pub, bad_sec, server_pub))
    plain = subscriber_factory(pp.endpoint, [""])  # no CURVE at all
    drain_until(good, lambda: good.core.ready("gw"))
    drain_until(bad, lambda: bad.counters["auth_failed"] >= 1)
    pp.initial()
    pp.publish(1000)
    state = pp.state()
    drain_until(good, lambda: caught_up(good, state))
    assert books_match(good, state)
    assert bad.recv(timeout=0.3) is None and plain.recv(timeout=0.3) is None
    assert bad.counters["messages"] == 0 and plain.counters["messages"] == 0
    assert bad.core.gateways == {} and bad.book("TESTEX", "BTC-USDT") is None


def test_junk_from_a_second_publisher_is_counted_and_skipped(bus_endpoint, publisher_process,
                                                           subscriber_factory):
    pp = publisher_process("gw", bus_endpoint("gw"), options={"heartbeat_interval": 0.2})
    rogue_ep = bus_endpoint("rogue", snapshot=False)
    rogue = zmq.Context.instance().socket(zmq.PUB)
    rogue.linger = 0
    rogue.bind(rogue_ep.pub)
    try:
        sub = subscriber_factory([pp.endpoint, rogue_ep], [""])
        ok = list(codec.encode(Trade("TESTEX", "BTC-USDT", "buy", "1", "1", receipt_timestamp=1), "gw", 1, 1))
        junk = [[b"hello"], [b"trades.X.Y.", b"\xc1", b"\xc1"], [ok[0], ok[1], b"\x80"],
                [b"book.TESTEX.BTC-USDT.", ok[1], ok[2]], [ok[0], msgpack.packb([7, "gw", 1, 1, None, 1, 1]), ok[2]],
                [ok[0], ok[1], ok[2], b"extra"], [b"\xfe\xff.", ok[1], ok[2]], [b"x" * 2000 + b".", ok[1], ok[2]]]

        def spray() -> bool:
            for frames in junk:
                rogue.send_multipart(frames)
            return sub.counters["junk"] >= 3 * len(junk)

        drain_until(sub, spray)
        pp.initial()
        pp.publish(2000)
        state = pp.state()
        drain_until(sub, lambda: spray() and caught_up(sub, state))
        assert books_match(sub, state)
        assert sub.counters["gaps"] == 0
    finally:
        rogue.close()


async def test_async_subscriber_late_joiner(bus_endpoint, publisher_factory):
    pub = publisher_factory("agw", bus_endpoint("agw"), heartbeat_interval=0.1)
    gen = BookEventGenerator(seed=3, symbols=SYMBOLS)
    for ev in gen.initial():
        pub.publish(ev)
    for ev in gen.events(500):
        pub.publish(ev)
    async with AsyncSubscriber(GatewayEndpoint(pub.endpoint, pub.snapshot_endpoint), ["book."]) as sub:
        kinds = []
        publishing = [True]

        async def until(cond, timeout=20.0):
            async def loop():
                while not cond() or sub.pending():
                    if publishing:
                        for ev in gen.events(2):  # the stream goes on while the subscriber joins
                            pub.publish(ev)
                    m = await sub.recv(timeout=0.5)
                    if m is not None:
                        kinds.append(type(m.event))
            await asyncio.wait_for(loop(), timeout)

        await until(lambda: books_live(sub))
        await until(lambda: len(kinds) > 300)
        publishing.clear()
        state = {"books": {}}
        for topic, seq, _ts, _rts, body in pub.state("book."):
            state["books"][topic] = {"seq": seq, "bids": [tuple(x) for x in body["bids"]],
                                     "asks": [tuple(x) for x in body["asks"]]}
        await until(lambda: caught_up(sub, state, "agw"))
        assert books_match(sub, state)
        assert kinds[0] is L2Snapshot and sub.counters["gaps"] == 0


def test_one_subscriber_many_gateways(bus_endpoint, publisher_factory, subscriber_factory):
    """Two gateways on their own endpoints: each snapshot comes from the right service."""
    from feedfabric.testing.bus import publisher_state

    pubs, gens = [], []
    for i in (1, 2):
        p = publisher_factory(f"gw{i}", bus_endpoint(f"gw{i}"), heartbeat_interval=0.1)
        g = BookEventGenerator(exchange=f"EX{i}", seed=10 + i, symbols=SYMBOLS[:2])
        for ev in [*g.initial(), *g.events(800)]:
            p.publish(ev)
        pubs.append(p)
        gens.append(g)
    sub = subscriber_factory([GatewayEndpoint(p.endpoint, p.snapshot_endpoint) for p in pubs], ["book."])

    def live() -> bool:
        return all(sub.book(f"EX{i}", s) is not None for i in (1, 2) for s in SYMBOLS[:2])

    drain_until(sub, live)
    for p, g in zip(pubs, gens, strict=True):
        for ev in g.events(300):
            p.publish(ev)
    states = [publisher_state(p) for p in pubs]
    drain_until(sub, lambda: all(caught_up(sub, st, f"gw{i}") for i, st in zip((1, 2), states, strict=True)))
    for i, st in zip((1, 2), states, strict=True):
        assert books_match(sub, st, exchange=f"EX{i}")
    assert sub.counters["gaps"] == 0 and sub.counters["junk"] == 0


def test_gap_prefixes() -> None:
    from bus.subscriber import gap_prefixes

    assert gap_prefixes(["book.EX."]) == ["gap.EX."]
    assert gap_prefixes(["book.EX.A-B.", "l3.EX.A-B."]) == ["gap.EX.A-B.", "gap.EX._."]
    assert gap_prefixes(["book."]) == gap_prefixes([""]) == gap_prefixes(["bo"]) == ["gap."]
    assert gap_prefixes(["trades.EX.", "ticker."]) == []


def test_a_publishers_gap_invalidates_books_of_subscribers_that_did_not_ask_for_gaps(
        bus_endpoint, publisher_factory, subscriber_factory):
    """A subscriber of ``book.`` alone still learns that the gateway's book broke (its own gap
    topic is subscribed for it): sub.book() is None until the rebuild, and the Gap is not handed
    to a user who did not ask for it. A user who did gets it."""
    pub = publisher_factory("gg", bus_endpoint("gg"), heartbeat_interval=0.05)
    ep = GatewayEndpoint(pub.endpoint, pub.snapshot_endpoint)
    for sym in ("A-B", "C-D"):
        pub.publish(L2Snapshot("EX", sym, [("10", "1")], [("11", "1")], sequence=1, receipt_timestamp=1))
    only_one = subscriber_factory(ep, ["book.EX.A-B."])
    books = subscriber_factory(ep, ["book."])
    with_gaps = subscriber_factory(ep, ["book.", "gap."])
    subs = (only_one, books, with_gaps)
    got: dict = {id(s): [] for s in subs}

    def pump(cond) -> None:
        def step() -> bool:
            for s in subs:
                while (m := s.recv(timeout=0.01)) is not None:
                    got[id(s)].append(m.event)
            return cond()
        drain_until(books, step)

    pump(lambda: all(s.book("EX", "A-B") is not None for s in subs) and books.book("EX", "C-D") is not None)
    pub.publish(Gap("EX", "book", "checksum", symbol="A-B", receipt_timestamp=2))
    pump(lambda: all(s.book("EX", "A-B") is None for s in subs))
    assert books.book("EX", "C-D") is not None                             # the other book stands
    pub.publish(L2Snapshot("EX", "A-B", [("10", "2")], [("12", "1")], sequence=5, receipt_timestamp=3))
    pump(lambda: all(s.book("EX", "A-B") is not None for s in subs))
    assert all(s.book("EX", "A-B").snapshot() == ([("10", "2")], [("12", "1")]) for s in subs)
    pub.publish(Gap("EX", "book", "disconnected", receipt_timestamp=4))      # feed-wide (symbol nil)
    pump(lambda: all(s.book("EX", "A-B") is None for s in subs) and books.book("EX", "C-D") is None)
    assert [type(e) for e in got[id(with_gaps)] if type(e) is Gap] == [Gap, Gap]
    assert not [e for s in (only_one, books) for e in got[id(s)] if type(e) is Gap]
    assert all(s.counters["gaps"] == 0 for s in subs)                      # none of their own
    # "delivered" counts what the user got (as the Node and C clients count it).
    assert [s.counters["delivered"] for s in subs] == [len(got[id(s)]) for s in subs]
