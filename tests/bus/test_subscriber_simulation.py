"""Seeded simulations of one publisher and one subscriber's sans-I/O core over a lossy network.

The publisher side is the real snapshot state (:class:`bus.snapshot.StateStore`, served by
:func:`bus.snapshot.serve`) and the real codec, stepped by hand: per-topic sequence numbers,
book updates of a random walk, now and then a book declared broken (Gap) and rebuilt (Reset,
L2Snapshot) as a gateway does, heartbeats with ``book_seqs`` and ``book_invalid``. The network
loses SUB messages in bursts (a high-water mark overflowing) and snapshot replies now and then,
answers requests late, from the state of the moment they are served, and lets the subscriber
read the stream at its own pace, so a reply often overtakes the stream (as on two sockets).

The property, checked after every message the subscriber delivers: a book it holds is exactly
the publisher's book at the sequence number it has reached (never silently wrong); and once the
losses stop, every book valid at the publisher is held again and equal to it, every invalid one
is not held.
"""

from __future__ import annotations

import random
import threading

import pytest

from bus import codec, snapshot
from bus.subscriber import HEARTBEAT_PREFIX, BookKeeper, SubscriberCore, gap_prefixes
from bus.topics import topic as make_topic
from cryptofeed_types import OrderBook
from cryptofeed_types.events import Gap, Heartbeat, L2Snapshot, Reset
from feedfabric.testing.bus import BookEventGenerator

GATEWAY, EPOCH, EXCHANGE = "gw", 7, "TESTEX"
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT")
PREFIXES = ["book."]
# What the SUB socket lets through, as bus.subscriber.Subscriber subscribes it.
SOCKET_PREFIXES = tuple(PREFIXES + [HEARTBEAT_PREFIX] + gap_prefixes(PREFIXES))


class SimPublisher:
    """A gateway's publishing side without sockets: what ``bus.publisher.Publisher.publish`` and
    ``heartbeat`` do to the state and the frames, one event at a time.

    ``shared``: the snapshot service serves the gateway's own books (``StateStore.share_books``,
    as gateways do), which the gateway changes *before* publishing the change: a request served in
    between (``between``) gets a book one update ahead of the sequence number it is labelled with.
    """

    def __init__(self, seed: int, shared: bool = False) -> None:
        self.gen = BookEventGenerator(EXCHANGE, SYMBOLS, seed=seed, depth=8)
        self.store = snapshot.StateStore()
        self.lock = threading.Lock()
        self.seqs: dict[str, int] = {}
        self.books = {s: OrderBook() for s in SYMBOLS}   # the gateway's books (the truth)
        self.valid = dict.fromkeys(SYMBOLS, False)
        self.history: dict[str, dict[int, tuple]] = {make_topic("book", EXCHANGE, s): {} for s in SYMBOLS}
        self.shared = shared
        self.breaks = self.served_between = 0
        if shared:
            # As gateways.books.Books.shared_book: no book while it is not valid.
            self.store.share_books(EXCHANGE, lambda sym: self.books[sym] if self.valid[sym] else None)

    def publish(self, event, applied: bool = False) -> list[bytes]:
        topic = event.topic()
        seq = self.seqs[topic] = self.seqs.get(topic, 0) + 1
        self.store.apply(event, topic, seq)   # it ignores what has no state (Publisher filters first)
        if topic in self.history:
            if not applied:
                self._apply(event)
            self.history[topic][seq] = self.books[event.symbol].snapshot()
        return list(codec.encode(event, GATEWAY, EPOCH, seq, publish_ts=1))

    def _apply(self, event) -> None:
        book = self.books[event.symbol]
        if type(event) is L2Snapshot:
            book.apply_snapshot(event.bids_str, event.asks_str, event.sequence)
        else:
            book.apply_delta(event.bids_str, event.asks_str, event.sequence)

    def initial(self) -> list[list[bytes]]:
        self.valid = dict.fromkeys(SYMBOLS, True)
        return [self.publish(e) for e in self.gen.initial()]

    def step(self, rng: random.Random, between=lambda: None) -> list[list[bytes]]:
        """The next message(s): mostly an update of a valid book; sometimes a book breaks or is
        rebuilt. ``between`` runs where the gateway's state has changed and the change is not
        published yet."""
        broken = [s for s in SYMBOLS if not self.valid[s]]
        if broken and rng.random() < 0.05:
            sym = rng.choice(broken)
            bids, asks = self.books[sym].snapshot()
            self.valid[sym] = True
            between()
            return [self.publish(Reset(EXCHANGE, "book", "resynced", symbol=sym, receipt_timestamp=1)),
                    self.publish(L2Snapshot(EXCHANGE, sym, bids, asks, receipt_timestamp=1), applied=True)]
        if rng.random() < 0.01:
            sym = rng.choice([s for s in SYMBOLS if self.valid[s]] or [SYMBOLS[0]])
            if self.valid[sym]:
                self.valid[sym] = False
                self.breaks += 1
                between()
                return [self.publish(Gap(EXCHANGE, "book", "sequence", symbol=sym, receipt_timestamp=1))]
        while True:
            event = self.gen.next()
            if event.KIND != "book_delta":
                return [self.publish(event)]
            # A broken book publishes nothing until it is rebuilt (the gateway's book goes on:
            # the rebuild's snapshot then differs from the book before the break).
            self._apply(event)
            if self.valid[event.symbol]:
                between()
                return [self.publish(event, applied=True)]

    def heartbeat(self) -> list[bytes]:
        counters = {"book_seqs": {t: st.seq for t, st in self.store.books.items()},
                    "book_invalid": self.store.invalid()}
        return self.publish(Heartbeat(GATEWAY, counters, {}, receipt_timestamp=1))

    def serve(self, frames: list[bytes]) -> list[list[bytes]]:
        request = snapshot.parse_request(frames)
        return snapshot.serve(request, self.store, self.lock, GATEWAY, EPOCH)


class SimSubscriber:
    """The subscriber's core and book keeper, checking the property after every delivery."""

    def __init__(self, pub: SimPublisher) -> None:
        self.pub = pub
        self.core = SubscriberCore(PREFIXES, [0], request_timeout=0.5)
        self.keeper = BookKeeper()
        self.at: dict[str, int] = {}   # topic -> wire seq of the last book message delivered
        self.ahead: dict[str, bool] = {}
        self.delivered = 0

    def take(self, messages) -> None:
        for m in messages:
            self.keeper.on_delivered(m)
            self.delivered += 1
            ev = m.event
            if ev.KIND in ("book_snapshot", "book_delta"):
                # Never back (a rebuild may restate the point reached: a snapshot at the same seq).
                before = self.at.get(m.topic, 0)
                assert m.header.seq > before or (m.header.seq == before and ev.KIND == "book_snapshot"), (
                    f"{m.topic}: {ev.KIND} {m.header.seq} after {before}")
                self.at[m.topic] = m.header.seq
                # A delta delivered where no book is held would be lost on the book: never.
                assert self.keeper.book(ev.exchange, ev.symbol) is not None, f"{m.topic} {m.header.seq}: no book"
                # A shared book served may hold the next update already, until that update comes.
                self.ahead[m.topic] = ev.KIND == "book_snapshot" and self.pub.shared
            self.check()

    def check(self) -> None:
        """Every held book is the publisher's at the sequence number reached (or, from a snapshot of
        a shared book to the next update, the book after that update, which it may contain)."""
        for sym in SYMBOLS:
            held = self.keeper.book(EXCHANGE, sym)
            if held is None:
                continue
            topic = make_topic("book", EXCHANGE, sym)
            seq = self.at.get(topic)
            assert seq is not None, f"{sym}: a book is held but no book message was delivered"
            history = self.pub.history[topic]
            # Ahead: the next published update's book, or the gateway's book now if that update is
            # not published yet (served between the change and its publication).
            fits = held.snapshot() == history[seq] or (
                self.ahead[topic] and held.snapshot() in (history.get(seq + 1), self.pub.books[sym].snapshot()))
            assert fits, f"{sym}: held book differs at seq {seq}"


def simulate(seed: int, steps: int = 3000, shared: bool = False) -> tuple[SimPublisher, SimSubscriber]:
    rng = random.Random(seed)
    pub = SimPublisher(seed, shared)
    sub = SimSubscriber(pub)
    core = sub.core
    now = 0.0
    core.start(now)
    pending: list[tuple[int, list[bytes]]] = []   # (step at which it is served, request frames)
    burst = 0

    def serve_due(step: int, lossy: bool, between: bool = False) -> None:
        for item in [p for p in pending if p[0] <= step]:
            pending.remove(item)
            if lossy and rng.random() < 0.05:
                continue   # the reply is lost: the core times out and asks again
            for reply in pub.serve(item[1]):
                sub.take(core.on_snapshot(0, reply, now))
            pub.served_between += between

    def network(step: int, lossy: bool) -> None:
        for _, frames in core.outbox:
            pending.append((step + (rng.randint(0, 40) if lossy else 0), frames))
        core.outbox.clear()
        serve_due(step, lossy)
        sub.take(core.tick(now))

    pipe: list[list[bytes]] = []   # SUB messages sent and not read yet: replies overtake them

    def deliver(batch: list[list[bytes]], lossy: bool) -> None:
        nonlocal burst
        for frames in batch:
            if not frames[0].decode().startswith(SOCKET_PREFIXES):
                continue
            if lossy and burst == 0 and rng.random() < 0.02:
                burst = rng.randint(1, 30)   # the high-water mark overflows for a while
            if lossy and burst:
                burst -= 1
                continue
            pipe.append(frames)
        # The subscriber reads the stream at its own pace: sometimes several messages behind.
        n = len(pipe) if not lossy or rng.random() < 0.05 else min(len(pipe), rng.choice((0, 0, 1, 2)))
        for frames in pipe[:n]:
            sub.take(core.on_sub(frames, now))
        del pipe[:n]

    # A late joiner: the publisher has published for a while before the subscriber connects.
    pub.initial()
    for _ in range(200):
        pub.step(rng)
    for step in range(steps):
        now += 0.001
        # Requests are served while the publisher is between a change and its publication too.
        deliver(pub.step(rng, lambda at=step: serve_due(at, True, True) if rng.random() < 0.5 else None), lossy=True)
        if step % 97 == 0:
            deliver([pub.heartbeat()], lossy=True)
        network(step, lossy=True)
    # The losses stop: a heartbeat reveals any lost tail; the requests are answered.
    for step in range(steps, steps + 400):
        now += 0.01
        deliver([pub.heartbeat()] if step % 50 == 0 else [], lossy=False)
        network(step, lossy=False)
    return pub, sub


@pytest.mark.parametrize("shared", [False, True], ids=["store-books", "shared-books"])
@pytest.mark.parametrize("seed", range(30))
def test_held_books_are_never_wrong_and_all_valid_books_come_back(seed: int, shared: bool) -> None:
    pub, sub = simulate(seed, shared=shared)
    core = sub.core
    assert core.counters["junk"] == 0 and core.counters["snapshot_junk"] == 0, core.counters
    # The run did exercise what it is about: losses, the publisher's own gaps, late replies.
    assert core.counters["gaps"] > 0 and core.counters["resyncs"] > 0, core.counters
    assert pub.breaks > 0 and (pub.served_between > 0 or not shared)
    for sym in SYMBOLS:
        held = sub.keeper.book(EXCHANGE, sym)
        if pub.valid[sym]:
            assert held is not None, (seed, sym, core.counters)
            assert held.snapshot() == pub.books[sym].snapshot(), (seed, sym)
        else:
            assert held is None, (seed, sym)
