"""The publisher's snapshot service serving the gateway's own books (Books.shared_book), and the
depth cut: levels a depth-limited book drops are published as deletes, so a subscriber's book,
built only from what was published, equals the gateway's."""

from __future__ import annotations

import random

import pytest

from bus.endpoints import GatewayEndpoint
from bus.subscriber import Subscriber
from cryptofeed_types import Gap, L2Delta, L2Snapshot, OrderBook
from gateways.adapter import Output, Resync
from gateways.books import Books, no_rule, range_rule, share_books


def mirror_of(events: list, book: OrderBook | None = None) -> OrderBook:
    """A subscriber-side book (no depth limit) built from published events only."""
    book = book if book is not None else OrderBook()
    for ev in events:
        if type(ev) is L2Snapshot:
            book.apply_snapshot(ev.bids_str, ev.asks_str, ev.sequence)
        elif type(ev) is L2Delta:
            book.apply_delta(ev.bids_str, ev.asks_str, ev.sequence)
    return book


def test_depth_cut_levels_are_published_as_deletes() -> None:
    books = Books("EX", no_rule, max_depth=3, check_crossed=False, bbo=False)
    books.add("A-B")
    out = Output()
    books.snapshot("A-B", [("100", "1"), ("99", "1"), ("98", "1")], [("101", "1"), ("102", "1"), ("103", "1")],
                   1, out)
    # A better bid pushes 98 out; an ask beyond the depth is set and cut at once.
    books.delta("A-B", [("100.5", "2")], [("104", "7")], out)
    delta = out.events[-1]
    assert type(delta) is L2Delta
    assert delta.bids_str == (("100.5", "2"), ("98", "0"))
    assert delta.asks_str == (("104", "7"), ("104", "0"))
    assert mirror_of(out.events).snapshot() == books.book("A-B").snapshot()
    # Without a cut, the published delta is exactly the update.
    books.delta("A-B", [("99", "5")], [], out)
    assert out.events[-1].bids_str == (("99", "5"),) and out.events[-1].asks_str == ()


def test_depth_limited_random_stream_mirror_equals_gateway_book() -> None:
    rng = random.Random(3)
    books = Books("EX", no_rule, max_depth=10, check_crossed=False, bbo=False)
    books.add("A-B")
    out = Output()
    books.snapshot("A-B", [(str(1000 - i), "1") for i in range(10)], [(str(1001 + i), "1") for i in range(10)],
                   None, out)
    for _ in range(2000):
        # Bids below 1000.5, asks above: never crossed; sizes 0 delete (sometimes a missing level).
        bids = [(str(rng.randrange(950, 1001)), str(rng.choice([0, 1, 2, 3]))) for _ in range(rng.randrange(3))]
        asks = [(str(rng.randrange(1001, 1051)), str(rng.choice([0, 1, 2, 3]))) for _ in range(rng.randrange(3))]
        books.delta("A-B", bids, asks, out)
    gateway = books.book("A-B")
    assert len(gateway.bids) <= 10 and len(gateway.asks) <= 10
    assert any(lvl[1] == "0" for ev in out.events if type(ev) is L2Delta for lvl in ev.bids_str + ev.asks_str)
    assert mirror_of(out.events).snapshot() == gateway.snapshot()


def test_shared_book_serves_nothing_while_the_book_is_invalid() -> None:
    # A late joiner served the last valid book during a rebuild would hold it as valid (it never
    # saw the Gap) until the Reset: nothing is served until the rebuilt book is.
    books = Books("EX", range_rule, bbo=False)
    books.add("A-B")
    out = Output()
    assert books.shared_book("A-B") is None and books.shared_book("X-Y") is None  # nothing valid yet
    books.snapshot("A-B", [("10", "1")], [("11", "1")], 5, out)
    live = books.shared_book("A-B")
    assert live is books.book("A-B")
    books.delta("A-B", [("10", "2")], [], out, first=6, last=6)
    books.delta("A-B", [("9", "1")], [], out, first=9, last=9)   # gap: the book is rebuilt
    assert isinstance(out.events[-1], Gap) and books.shared_book("A-B") is None
    assert live.snapshot() == ([("10", "2")], [("11", "1")])     # a reader of the old object is undisturbed
    books.snapshot("A-B", [("10", "3")], [("12", "1")], 20, out)
    assert books.shared_book("A-B") is books.book("A-B")
    assert books.shared_book("A-B").snapshot() == ([("10", "3")], [("12", "1")])


def test_a_snapshot_refused_on_a_valid_book_is_a_gap_and_nothing_is_served_meanwhile() -> None:
    served = []
    books = Books("EX", no_rule, bbo=False, checksum=lambda b: served.append(books.shared_book("A-B")) or 0)
    books.add("A-B")
    out = Output()
    books.snapshot("A-B", [("10", "1")], [("11", "1")], None, out)
    first = books.book("A-B")
    out = Output()
    # While the new snapshot is checked (the checksum fails here), nothing is served; refused, it
    # leaves subscribers' valid book without its updates until the resync: a Gap says so.
    assert books.snapshot("A-B", [("10", "9")], [("11", "9")], None, out, checksum=1) is False
    assert served[-1] is None and books.shared_book("A-B") is None
    assert first.snapshot() == ([("10", "1")], [("11", "1")])
    (gap,) = out.events
    assert isinstance(gap, Gap) and gap.reason == "snapshot_checksum" and gap.symbol == "A-B"
    assert out.actions == [Resync("A-B", "snapshot_checksum")]


class _FakePublisher:
    def __init__(self) -> None:
        self.shared: dict = {}

    def share_books(self, exchange, provider) -> None:
        self.shared[exchange] = provider


def test_share_books_helper() -> None:
    class WithBooks:
        exchange = "EX"
        books = Books("EX-BOOKS")

    pub = _FakePublisher()
    assert share_books(WithBooks(), pub) is True
    assert pub.shared == {"EX-BOOKS": WithBooks.books.shared_book}   # keyed by the events' exchange
    assert share_books(object(), pub) is False
    assert share_books(WithBooks(), object()) is False


def test_books_shared_again_are_served_by_the_new_provider() -> None:
    # A replay whose next capture session has an adapter of its own shares that adapter's books:
    # the topics already published are served from them, not from the old adapter's.
    from bus.snapshot import StateStore

    old, new = Books("EX", no_rule), Books("EX", no_rule)
    for books, price in ((old, "100"), (new, "200")):
        books.add("A-B")
        books.snapshot("A-B", [(price, "1")], [(str(int(price) + 1), "1")], 1, Output())
    store = StateStore()
    store.share_books("EX", old.shared_book)
    store.apply(L2Snapshot("EX", "A-B", [("100", "1")], [("101", "1")], sequence=1), "book.EX.A-B.", 1)
    assert store.item("book.EX.A-B.")[4]["bids"] == [("100", "1")]
    store.share_books("EX", new.shared_book)
    assert store.item("book.EX.A-B.")[4]["bids"] == [("200", "1")]


def test_publisher_serves_the_gateway_books_without_a_copy(bus_endpoint, publisher_factory) -> None:
    pub = publisher_factory("gw", bus_endpoint("gw"))
    books = Books("EX", range_rule, max_depth=3, check_crossed=False, bbo=False)
    pub.share_books("EX", books.shared_book)
    books.add("A-B")
    out = Output()
    books.snapshot("A-B", [("10", "1"), ("9", "1"), ("8", "1")], [("11", "1")], 1, out)
    books.delta("A-B", [("10.5", "1")], [], out, first=2, last=2)
    for ev in out.events:
        pub.publish(ev)
    st = pub.store.books["book.EX.A-B."]
    assert st.book is None and st.seq == 2          # no mirrored copy
    (topic, seq, _ts, _rts, body), = pub.state("book.EX.")
    assert (topic, seq) == ("book.EX.A-B.", 2)
    assert body["bids"] == books.book("A-B").bids.top() and body["sequence"] == 2
    # The gateway applied an update it has not published yet: the snapshot includes it under
    # the last published seq; re-applying that delta (absolute sizes) gives the same book.
    pending = Output()
    books.delta("A-B", [("9", "4")], [], pending, first=3, last=3)
    (_, seq, _, _, body), = pub.state("book.EX.")
    assert seq == 2
    sub_book = OrderBook()
    sub_book.apply_snapshot(body["bids"], body["asks"], body["sequence"])
    mirror_of(pending.events, sub_book)
    assert sub_book.snapshot() == books.book("A-B").snapshot()


@pytest.mark.timeout(60)
def test_late_joiner_gets_gateway_book_through_snapshot_service(bus_endpoint, publisher_factory) -> None:
    ep: GatewayEndpoint = bus_endpoint("gw2")
    pub = publisher_factory("gw2", ep, heartbeat_interval=0.05)
    books = Books("EX", range_rule, max_depth=5, check_crossed=False, bbo=False)
    pub.share_books("EX", books.shared_book)
    books.add("A-B")
    out = Output()
    books.snapshot("A-B", [(str(100 - i), "1") for i in range(5)], [(str(101 + i), "1") for i in range(5)], 1, out)
    for i in range(2, 50):
        books.delta("A-B", [(str(95 + i % 6) + ".5", str(i))], [], out, first=i, last=i)
    for ev in out.events:
        pub.publish(ev)
    with Subscriber(ep, ["book."]) as sub:
        for i in range(50, 60):   # the stream goes on after the join
            o = Output()
            books.delta("A-B", [(str(96 + i % 5) + ".25", str(i))], [], o, first=i, last=i)
            for ev in o.events:
                pub.publish(ev)
            while sub.recv(timeout=0.01) is not None:
                pass
        for _ in range(500):
            b = sub.book("EX", "A-B")
            if b is not None and b.sequence == 59:
                break
            sub.recv(timeout=0.02)
        b = sub.book("EX", "A-B")
        assert b is not None and b.snapshot() == books.book("A-B").snapshot()
        assert sub.counters["gaps"] == 0


@pytest.mark.timeout(60)
def test_late_joiner_during_a_resync_gets_no_book_until_the_rebuild(bus_endpoint, publisher_factory) -> None:
    # The book broke (a Gap) before this subscriber joined: it must not start from the old book
    # as if valid. It has none until the gateway's Reset + L2Snapshot, then exactly that one.
    ep: GatewayEndpoint = bus_endpoint("gw3")
    pub = publisher_factory("gw3", ep, heartbeat_interval=0.05)
    books = Books("EX", range_rule)
    pub.share_books("EX", books.shared_book)
    for sym in ("A-B", "C-D"):
        books.add(sym)
    out = Output()
    books.snapshot("A-B", [("100", "1")], [("101", "1")], 1, out)
    books.snapshot("C-D", [("50", "1")], [("51", "1")], 1, out)
    books.delta("A-B", [("99", "2")], [], out, first=5, last=5)   # a sequence gap: A-B resyncs
    assert [type(e).__name__ for e in out.events][-1] == "Gap"
    for ev in out.events:
        pub.publish(ev)
    with Subscriber(ep, ["book.", "bbo."]) as sub:
        for _ in range(300):
            if sub.book("EX", "C-D") is not None:
                break
            sub.recv(timeout=0.02)
        assert sub.book("EX", "C-D") is not None          # the other book is served
        for _ in range(10):
            sub.recv(timeout=0.02)
        assert sub.book("EX", "A-B") is None              # not the broken one
        o = Output()
        books.snapshot("A-B", [("98", "3")], [("102", "1")], 9, o)   # the rebuild
        for ev in o.events:
            pub.publish(ev)
        for _ in range(300):
            if sub.book("EX", "A-B") is not None:
                break
            sub.recv(timeout=0.02)
        b = sub.book("EX", "A-B")
        assert b is not None and b.snapshot() == ([("98", "3")], [("102", "1")])
        assert sub.counters["gaps"] == 0
