"""Python, Node and C subscribers side by side on one publisher: identical streams and books.

A real :class:`bus.publisher.Publisher` (ipc, snapshot service) is driven in phases by a
seeded generator of book deltas, trades, tickers and BBOs:

1. history published before anyone subscribes (the clients are late joiners and must
   start from the snapshot service);
2. live traffic;
3. a lost book delta followed by another one (a sequence gap: Gap, Reset, fresh snapshot);
4. live traffic;
5. a lost *last* delta of a book, revealed only by the next heartbeat's ``book_seqs``;
6. live traffic;
7. the publisher's own gap on a book, which no client asked for (no ``gap.`` prefix): each drops
   that book all the same (docs/wire.md, "The publisher's own gaps") and hands the gap to nobody;
8. the publisher's own gap on another book, lost: the next heartbeat's ``book_invalid`` reveals
   it, each client drops the book and rebuilds it from the stream's snapshot; until every
   subscriber has seen the last sequence number of every topic.

Heartbeats are sent by the test itself (the periodic ones are pushed out to an hour) so
that where a heartbeat falls in the stream is part of the script, not of timing. Each phase
waits until all three subscribers have caught up, so a snapshot reply never races live
traffic and the delivered streams must be equal message for message. Every client prints
one canonical JSON line per message (docs/clients.md); Python builds the same lines.

Further cases: a real Binance futures capture replayed through the gateway path
(:class:`gateways.replay.Replayer` driving the exchange adapter and a Publisher whose
snapshot service serves the adapter's own books) with the three subscribers connected
before the replay starts; two publishers at once; a publisher restart (new epoch) on the
same endpoints; seeded random losses and publisher gaps with snapshot replies racing the stream
(final books compared); a publisher gap read after a newer snapshot reply.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bus import codec
from bus.endpoints import GatewayEndpoint
from bus.publisher import Publisher
from bus.subscriber import Subscriber
from bus.topics import topic
from cryptofeed_types.events import Event, Gap, Heartbeat, L2Delta, L2Snapshot
from feedfabric.testing.bus import BookEventGenerator
from gateways.capture import read_capture
from gateways.replay import Replayer, replay_capture

GATEWAY = "gw-e2e"
WAIT = 30.0

Lines = list[dict[str, Any]]


class Collector:
    """The canonical lines one subscriber printed so far (appended by a reader thread)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: Lines = []
        self.cond = threading.Condition()
        self.errors: list[str] = []

    def add(self, obj: dict[str, Any]) -> None:
        with self.cond:
            self.lines.append(obj)
            self.cond.notify_all()

    def holds(self, pred: Callable[[Lines], bool]) -> bool:
        with self.cond:
            return pred(self.lines)

    def wait(self, pred: Callable[[Lines], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: pred(self.lines), timeout)


class ClientProcess(Collector):
    """A Node or C example subscriber in a child process, its stdout parsed line by line."""

    def __init__(self, name: str, argv: list[str]) -> None:
        super().__init__(name)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.add(json.loads(line))
            except ValueError:
                self.errors.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self.reader.join(timeout=10)

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""


class PythonSubscriber(Collector):
    """bus.subscriber.Subscriber in a thread, producing the same canonical lines."""

    def __init__(self, endpoint: GatewayEndpoint | list[GatewayEndpoint], prefixes: list[str]) -> None:
        super().__init__("python")
        self.sub = Subscriber(endpoint, prefixes, heartbeat_timeout=600)
        self.done = threading.Event()
        self.add({"type": "ready"})
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            m = self.sub.recv(timeout=0.05)
            if m is None:
                continue
            h = m.header
            self.add({"type": "msg", "topic": m.topic, "gateway": h.gateway, "epoch": h.epoch, "seq": h.seq,
                      "timestamp": h.timestamp, "receipt_timestamp": h.receipt_timestamp,
                      "event": orjson.loads(orjson.dumps(m.event.wire_body()))})

    def gateway_of(self, book_topic: str) -> str:
        gws = {x["gateway"] for x in _msgs(self.lines) if x["topic"] == book_topic}
        assert len(gws) == 1, (book_topic, gws)
        return gws.pop()

    def stop(self, books: list[tuple[str, str]] = ()) -> None:  # type: ignore[override]
        """Stop, then print the books of ``books`` ((exchange, symbol), sorted by topic)."""
        self.done.set()
        self.thread.join(timeout=10)
        for exchange, symbol in books:
            book = self.sub.book(exchange, symbol)
            if book is not None:
                bids, asks = book.snapshot()
                self.add({"type": "book", "gateway": self.gateway_of(topic("book", exchange, symbol)),
                          "topic": topic("book", exchange, symbol),
                          "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]})
        self.add({"type": "end", "counters": dict(self.sub.counters)})
        self.sub.close()


def _msgs(lines: Lines) -> Lines:
    return [x for x in lines if x.get("type") == "msg"]


def _has_topics(topics: set[str]) -> Callable[[Lines], bool]:
    return lambda lines: topics <= {x["topic"] for x in _msgs(lines)}


def _rebuilt(exchange: str, symbol: str, nth: int, min_seq: int | None = None) -> Callable[[Lines], bool]:
    """The nth Reset of a book has been followed by its fresh book_snapshot (``min_seq``: by a
    message of the book at that sequence number or later)."""
    reset, book = topic("reset", exchange, symbol), topic("book", exchange, symbol)

    def pred(lines: Lines) -> bool:
        resets = 0
        for x in _msgs(lines):
            if x["topic"] == reset:
                resets += 1
            elif resets >= nth and x["topic"] == book and (
                    x["event"]["kind"] == "book_snapshot" if min_seq is None else x["seq"] >= min_seq):
                return True
        return False
    return pred


def _caught_up(last: dict[str, int], epoch: int | None = None) -> Callable[[Lines], bool]:
    """Every topic of ``last`` delivered up to its sequence number (only messages of ``epoch``, if given)."""
    def pred(lines: Lines) -> bool:
        seen: dict[str, int] = {}
        for x in _msgs(lines):
            if epoch is None or x["epoch"] == epoch:
                seen[x["topic"]] = max(seen.get(x["topic"], 0), x["seq"])
        return all(seen.get(t, 0) >= s for t, s in last.items())
    return pred


LOST_GAP = "publisher gap lost (seen in heartbeat)"


def _reported(reason: str) -> Callable[[Lines], bool]:
    """The client delivered a gap (its own) with this reason."""
    return lambda lines: any(x["event"].get("reason") == reason for x in _msgs(lines) if x["topic"].startswith("gap."))


def _lose(pub: Publisher, event: Event) -> None:
    """Account for ``event`` as published (sequence number, snapshot state) but never send it:
    what a PUB high-water-mark drop does to one subscriber, here to all of them at once."""
    _send_late(pub, event)   # and never call the sender


def _send_late(pub: Publisher, event: Event) -> Callable[[], None]:
    """Account for ``event`` as published now (sequence number, snapshot state) and return the
    call that sends it: the stream delivers it later than what is published meanwhile (a
    subscriber reading its SUB socket behind its snapshot replies sees the same)."""
    topic_ = event.topic()
    with pub._lock:
        seq = pub._seqs.get(topic_, 0) + 1
        pub._seqs[topic_] = seq
        pub.store.apply(event, topic_, seq)
        frames = codec.encode(event, pub.gateway, pub.epoch, seq, publish_ts=time.time_ns())

    def send() -> None:
        with pub._lock:
            assert pub._pub is not None
            pub._pub.send_multipart(list(frames))
    return send


def _rebuild(pub: Publisher, exchange: str, symbol: str) -> L2Snapshot:
    """The snapshot that rebuilds a book the publisher declared broken: its own book as it stands
    (the snapshot service's copy, no provider here; ``pub.state`` leaves invalid books out)."""
    with pub._lock:
        book = pub.store.books[topic("book", exchange, symbol)].book
        assert book is not None
        bids, asks = book.snapshot()
    return L2Snapshot(exchange, symbol, bids, asks, receipt_timestamp=time.time_ns())


def _by_topic(lines: Lines, since: dict[int, int] | None = None) -> dict[str, Lines]:
    """Messages grouped per topic in arrival order; locally made ones (seq 0) without clocks.

    ``since`` maps an epoch to the first heartbeat every client was confirmed to receive
    (:func:`_confirm`): the heartbeats before it depend on when each client connected.
    """
    out: dict[str, Lines] = defaultdict(list)
    for x in _msgs(lines):
        if since and x["topic"].startswith("heartbeat.") and x["seq"] < since.get(x["epoch"], 0):
            continue
        x = dict(x)
        if x["seq"] == 0:
            x.pop("timestamp")
            x.pop("receipt_timestamp")
        out[x["topic"]].append(x)
    return dict(out)


def _books(lines: Lines) -> Lines:
    return [x for x in lines if x.get("type") == "book"]


def _end(lines: Lines) -> dict[str, Any]:
    ends = [x for x in lines if x.get("type") == "end"]
    assert ends, "no end line"
    return ends[-1]["counters"]


def _lost_delta(pub: Publisher, book_topic: str, template: Event) -> L2Delta:
    """A delta on ``book_topic`` that changes its best bid's size (or adds a level)."""
    body = next(b for t, _s, _ts, _rts, b in pub.state(book_topic) if t == book_topic)
    price = body["bids"][0][0] if body["bids"] else "0.001"
    return L2Delta(template.exchange, template.symbol, [(price, "0.123")], [],
                   exchange_symbol=template.exchange_symbol, receipt_timestamp=time.time_ns())


# -- the three subscribers ------------------------------------------------------------------

def _start_clients(node_client: Path, c_client: Path, endpoints: list[GatewayEndpoint],
                   prefixes: list[str]) -> list[Collector]:
    """Python, Node and C subscribers on ``endpoints`` (in this order)."""
    args: list[str] = []
    for ep in endpoints:
        assert ep.snapshot is not None
        args += ["--pub", ep.pub, "--snapshot", ep.snapshot]
    args += ["--heartbeat-timeout", "600"] + [x for p in prefixes for x in ("--prefix", p)]
    return [PythonSubscriber(endpoints if len(endpoints) > 1 else endpoints[0], prefixes),
            ClientProcess("node", ["node", str(node_client / "examples" / "subscribe.js"), *args]),
            ClientProcess("c", [str(c_client / "ff_subscribe"), *args])]


def _phase(clients: list[Collector], pred: Callable[[Lines], bool], what: str,
           nudge: Callable[[], Any] | None = None) -> None:
    """Wait until ``pred`` holds for every client (calling ``nudge`` meanwhile), or fail saying where each is."""
    deadline = time.monotonic() + WAIT
    for c in clients:
        while not c.holds(pred):
            if time.monotonic() > deadline:
                tail = "\n".join(json.dumps(x)[:300] for x in c.lines[-5:])
                err = c.stderr() if isinstance(c, ClientProcess) else ""
                pytest.fail(f"{c.name}: {what} not reached in {WAIT} s; last lines:\n{tail}\n{err}")
            if nudge is not None:
                nudge()
            c.wait(pred, 0.1)


def _confirm(clients: list[Collector], pub: Publisher, prefixes: list[str]) -> int:
    """Wait until ``pub`` has every client's subscription to every prefix (a heartbeat alone
    would only prove ``heartbeat.``: a client's other prefixes may reach the publisher later, e.g.
    resent in another order on a reconnect), then heartbeats until every client delivered one of
    ``pub``'s current epoch, then one more that all must deliver: its sequence number; then until
    every client holds what the snapshot service holds for the prefixes.

    From the returned heartbeat on, every client receives everything ``pub`` sends.
    """
    deadline = time.monotonic() + WAIT
    while any(pub.subscriptions().get(p, 0) < len(clients) for p in prefixes):
        if time.monotonic() > deadline:
            pytest.fail(f"subscriptions not all at the publisher in {WAIT} s: {pub.subscriptions()}")
        time.sleep(0.01)
    hb_topic = topic("heartbeat", pub.gateway)

    def seen(min_seq: int) -> Callable[[Lines], bool]:
        return lambda lines: any(x["topic"] == hb_topic and x["epoch"] == pub.epoch and x["seq"] >= min_seq
                                 for x in _msgs(lines))
    _phase(clients, seen(1), f"a heartbeat of epoch {pub.epoch}", nudge=pub.heartbeat)
    first = pub.heartbeat()
    _phase(clients, seen(first), f"heartbeat {first} of epoch {pub.epoch}")
    # Each client asked for the snapshot of every prefix when it first saw this epoch. Until the
    # service has answered them all, a late reply could hold messages published next (a last
    # value, a book's state) for one client and not for another, which then drops them from the
    # stream as already seen: the clients' message lists would differ by timing alone.
    asked = len(clients) * len(prefixes)
    while pub.counters["snapshot_requests"] < asked:
        if time.monotonic() > deadline:
            pytest.fail(f"{pub.counters['snapshot_requests']} of {asked} snapshot requests answered in {WAIT} s")
        time.sleep(0.01)
    # The count is the publisher's, not each client's: a client that asked twice (a retry after
    # its request timeout on a loaded machine) fills it for one whose reply is still on its way
    # (CI once saw Node read its first book from a reply sent after the next phase had begun).
    # Every client holding the state of every prefix is what says each one's reply has been read.
    held = {t: seq for p in prefixes for t, seq, *_ in pub.state(p)}
    _phase(clients, _caught_up(held, pub.epoch), f"the state of {prefixes} at epoch {pub.epoch}")
    return first


def _stop(clients: list[Collector], books: list[tuple[str, str]]) -> None:
    """Stop every client; they print their final books (Python: those of ``books``) and counters."""
    for c in clients:
        if isinstance(c, PythonSubscriber):
            c.stop(sorted(books, key=lambda x: topic("book", *x)))
        else:
            c.stop()


def _check_identical(clients: list[Collector], since: dict[int, int] | None = None) -> dict[str, Lines]:
    """The clients ran cleanly and delivered the same messages per topic, in the same order,
    and the same final books. Returns Python's messages by topic."""
    for client in clients:
        assert not client.errors, f"{client.name} printed non-JSON lines: {client.errors[:3]}"
        if isinstance(client, ClientProcess):
            assert client.proc.returncode == 0, f"{client.name} exited {client.proc.returncode}: {client.stderr()}"
    py, *others = clients
    want = _by_topic(py.lines, since)
    for other in others:
        got = _by_topic(other.lines, since)
        assert sorted(got) == sorted(want), f"{other.name}: different topics"
        for t in want:
            assert got[t] == want[t], f"{other.name} differs from Python on {t}"
        assert _books(other.lines) == _books(py.lines), f"{other.name}: different final books"
    return want


def _check_books(py: Collector, truth: dict[str, dict], prefixes: list[str]) -> None:
    """Python's final books (hence everyone's) are the publisher's own."""
    final = _books(py.lines)
    assert {b["topic"] for b in final} == {t for t in truth if t.startswith(tuple(prefixes))}
    for b in final:
        assert b["bids"] == [list(x) for x in truth[b["topic"]]["bids"]], b["topic"]
        assert b["asks"] == [list(x) for x in truth[b["topic"]]["asks"]], b["topic"]


def _gaps(want: dict[str, Lines]) -> list[tuple[str, str]]:
    """(book topic, reason) of every Gap delivered, sorted."""
    gaps = [x["event"] for t, xs in want.items() if t.startswith("gap.") for x in xs]
    return sorted((topic("book", g["exchange"], g["symbol"]), g["reason"]) for g in gaps)


# -- the cases ------------------------------------------------------------------------------

def run_side_by_side(node_client: Path, c_client: Path, endpoint: GatewayEndpoint, events: list[Event],
                     n_history: int) -> None:
    """The scenario of the module docstring on ``events``: ``n_history`` before the join, the
    rest split in three live phases around a sequence gap and a tail loss."""
    history, live = events[:n_history], events[n_history:]
    k = len(live) // 3
    phases = [live[:k], live[k:2 * k], live[2 * k:]]
    prefixes = sorted({e.topic().split(".")[0] + "." for e in events})
    books = sorted({e.topic(): e for e in history if e.CHANNEL == "book"}.items())
    assert books, "the history must contain a book"
    gap_topic, gap_ev = books[0]
    tail_topic, tail_ev = books[1] if len(books) > 1 else books[0]
    pub = Publisher(GATEWAY, endpoint.pub, endpoint.snapshot, heartbeat_interval=3600)
    pub.start()
    clients: list[Collector] = []
    try:
        # 1. history before anyone listens
        for ev in history:
            pub.publish(ev)
        clients = _start_clients(node_client, c_client, [endpoint], prefixes)
        stateful = {t for p in prefixes for t, *_ in pub.state(p)}
        at_join = {t: pub.seq(t) for t in stateful}

        # The clients ask for snapshots once the stream flows: heartbeats make it flow.
        _phase(clients, _has_topics(stateful), "late join (snapshots of every stateful topic)", nudge=pub.heartbeat)

        # 2. live, then 3. a lost delta revealed by the next one
        for ev in phases[0]:
            pub.publish(ev)
        _lose(pub, _lost_delta(pub, gap_topic, gap_ev))
        pub.publish(_lost_delta(pub, gap_topic, gap_ev))
        _phase(clients, _rebuilt(gap_ev.exchange, gap_ev.symbol, 1), f"recovery of {gap_topic} after a gap")

        # 4. live, then 5. a lost last delta revealed only by a heartbeat
        for ev in phases[1]:
            pub.publish(ev)
        _lose(pub, _lost_delta(pub, tail_topic, tail_ev))
        pub.heartbeat()
        _phase(clients, _rebuilt(tail_ev.exchange, tail_ev.symbol, 2 if tail_topic == gap_topic else 1),
               f"recovery of {tail_topic} after a tail loss")

        # 6. live, to the end
        for ev in phases[2]:
            pub.publish(ev)
        # 7. the publisher's own gap on a book; the event after it shows every client got past it
        assert "gap." not in prefixes
        dropped = books[-1][1]
        pub.publish(Gap(dropped.exchange, "book", "checksum", symbol=dropped.symbol, receipt_timestamp=time.time_ns()))
        pub.publish(next(e for e in reversed(live) if e.CHANNEL != "book"))
        # 8. a lost publisher gap on another book, revealed by the next heartbeat, then the rebuild
        lost_topic, lost = books[0]
        assert lost_topic != books[-1][0]
        body = next(b for t, _s, _ts, _rts, b in pub.state(lost_topic) if t == lost_topic)
        _lose(pub, Gap(lost.exchange, "book", "checksum", symbol=lost.symbol, receipt_timestamp=time.time_ns()))
        pub.heartbeat()
        _phase(clients, _reported(LOST_GAP), f"the lost gap of {lost_topic} seen in the heartbeat")
        pub.publish(L2Snapshot(lost.exchange, lost.symbol, body["bids"], body["asks"], sequence=body["sequence"],
                               receipt_timestamp=time.time_ns()))
        _phase(clients, _rebuilt(lost.exchange, lost.symbol, 2 + (tail_topic == gap_topic)),
               f"recovery of {lost_topic} after a lost publisher gap")
        # (topics seen only before the join are not served by the snapshot service: trades, status...)
        last = {t: pub.seq(t) for t in {e.topic() for e in live} | stateful}
        _phase(clients, _caught_up(last), "the last sequence number of every topic")
        truth = {t: body for t, _seq, _ts, _rts, body in pub.state("book.")}
    finally:
        _stop(clients, list({(e.exchange, e.symbol) for e in events if e.CHANNEL == "book"}))
        pub.close()

    want = _check_identical(clients)
    assert sum(map(len, want.values())) >= len(live), "fewer messages than were published live"
    assert _gaps(want) == sorted([(gap_topic, "sequence gap"), (tail_topic, "tail loss (seen in heartbeat)"),
                                  (gap_topic, LOST_GAP)])
    for t in stateful:  # late joiners start from the snapshot service, not from the stream
        first = want[t][0]
        assert first["seq"] == at_join[t], first
        assert not t.startswith("book.") or first["event"]["kind"] == "book_snapshot", first
    assert books[-1][0] not in truth   # invalid at the publisher: not served, and no client kept it
    _check_books(clients[0], truth, prefixes)
    for other in clients[1:]:
        counters = _end(other.lines)
        assert counters["gaps"] == 3 and counters["resyncs"] == 3, (other.name, counters)
        assert counters["junk"] == 0 and counters["duplicates"] == 0, (other.name, counters)


def test_generated_stream(node_client: Path, c_client: Path, bus_endpoint: Callable[..., GatewayEndpoint]) -> None:
    gen = BookEventGenerator(symbols=("BTC-USDT", "ETH-USDT"), seed=7, depth=10)
    events = gen.initial() + list(gen.events(410))
    run_side_by_side(node_client, c_client, bus_endpoint("gw"), events, n_history=62)


class ScriptedPublisher(Publisher):
    """A Publisher with a test script around every event but heartbeats: ``before(event)``
    returns True when the script took the event over (it was lost: it is not sent), and
    ``after(event)`` runs once the event is sent. Both run in the publishing thread, so a
    script that waits there pauses whatever drives the publisher (here a replay)."""

    def __init__(self, *args: Any, before: Callable[[Event], bool], after: Callable[[Event], None],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before, self.after = before, after

    def publish(self, event: Event) -> int:
        if type(event) is Heartbeat:
            return super().publish(event)
        if self.before(event):
            return self.seq(event.topic())
        seq = super().publish(event)
        self.after(event)
        return seq


@pytest.mark.shared_data
def test_replayed_capture_through_the_gateway(node_client: Path, c_client: Path,
                                              bus_endpoint: Callable[..., GatewayEndpoint],
                                              shared_data: Path) -> None:
    """A real Binance futures capture through the gateway path: the Replayer drives the exchange
    adapter and a Publisher (whose snapshot service serves the adapter's own books, as in a live
    gateway) while the three subscribers, connected and confirmed before the replay starts,
    live through a lost delta (sequence gap) and a lost last delta (seen in a heartbeat)."""
    capture = shared_data / "cryptofeed" / "BINANCE_FUTURES"
    # A dry run (no publisher) tells what the adapter will publish, to place the two losses.
    dry = replay_capture(capture, collect=True)
    planned = dry.events
    assert len(planned) > 1000
    deltas = [e.topic() for e in planned if type(e) is L2Delta]
    book_topics = sorted(set(deltas))
    assert len(book_topics) >= 2, book_topics
    gap_topic, tail_topic = book_topics[:2]
    gap_n = 20                                   # the 20th delta of gap_topic is lost, the 21st reveals it
    revealed_at = [i for i, t in enumerate(deltas) if t == gap_topic][gap_n]
    # the tail loss comes after the gap was repaired (a heartbeat in between would reveal both)
    tail_n = next(n for n, i in enumerate((i for i, t in enumerate(deltas) if t == tail_topic), 1)
                  if i > revealed_at + 10)
    prefixes = sorted({e.topic().split(".")[0] + "." for e in planned} | {"heartbeat."})
    books = list({(e.exchange, e.symbol) for e in planned if e.CHANNEL == "book"})

    ep = bus_endpoint("gw")
    counts: dict[str, int] = defaultdict(int)
    clients: list[Collector] = []

    def recovered(ev: Event, what: str) -> None:
        _phase(clients, _rebuilt(ev.exchange, ev.symbol, 1), f"recovery of {ev.topic()} after {what}")

    def before(ev: Event) -> bool:
        if type(ev) is not L2Delta:
            return False
        t = ev.topic()
        counts[t] += 1
        if t == gap_topic and counts[t] == gap_n:
            _lose(pub, ev)
            return True
        if t == tail_topic and counts[t] == tail_n:
            _lose(pub, ev)
            pub.heartbeat()                      # its book_seqs shows the loss
            recovered(ev, "a tail loss")
            return True
        return False

    def after(ev: Event) -> None:
        if type(ev) is L2Delta and ev.topic() == gap_topic and counts[gap_topic] == gap_n + 1:
            recovered(ev, "a gap")               # the replay waits: snapshots never race the stream

    pub = ScriptedPublisher(GATEWAY, ep.pub, ep.snapshot, heartbeat_interval=3600, exchange="BINANCE_FUTURES",
                            before=before, after=after)
    pub.start()
    try:
        clients = _start_clients(node_client, c_client, [ep], prefixes)
        since = {pub.epoch: _confirm(clients, pub, prefixes)}
        result = Replayer(publisher=pub).run(read_capture(capture))
        assert result.events_by_kind == dry.events_by_kind and not result.unanswered
        assert pub.store.providers, "the snapshot service should serve the adapter's books"
        last = {t: pub.seq(t) for t in pub._seqs}
        _phase(clients, _caught_up(last), "the last sequence number of every topic")
        truth = {t: body for t, _seq, _ts, _rts, body in pub.state("book.")}
    finally:
        _stop(clients, books)
        pub.close()

    want = _check_identical(clients, since)
    assert _gaps(want) == sorted([(gap_topic, "sequence gap"), (tail_topic, "tail loss (seen in heartbeat)")])
    for t, n in last.items():   # connected from the start: every topic complete from seq 1
        seqs = [x["seq"] for x in want[t]]
        if t.startswith("book."):
            assert want[t][0]["seq"] == 1 and want[t][0]["event"]["kind"] == "book_snapshot", want[t][0]
            assert seqs[-1] == n and seqs == sorted(set(seqs)), t
        elif not t.startswith("heartbeat."):
            assert seqs == list(range(1, n + 1)), t
    _check_books(clients[0], truth, prefixes)
    for other in clients[1:]:
        counters = _end(other.lines)
        assert counters["gaps"] == 2 and counters["resyncs"] == 2, (other.name, counters)
        assert counters["junk"] == 0 and counters["duplicates"] == 0, (other.name, counters)


def test_two_gateways(node_client: Path, c_client: Path, bus_endpoint: Callable[..., GatewayEndpoint]) -> None:
    """One subscriber, two publishers (each with its snapshot service): HELLO maps endpoints to
    gateways, each gateway's books join late and stay correct, streams stay identical."""
    eps = [bus_endpoint("gwa"), bus_endpoint("gwb")]
    gens = [BookEventGenerator(exchange="EXA", symbols=("BTC-USDT",), seed=1, depth=5),
            BookEventGenerator(exchange="EXB", symbols=("BTC-USDT", "ETH-USDT"), seed=2, depth=5)]
    pubs = [Publisher(name, ep.pub, ep.snapshot, heartbeat_interval=3600) for name, ep in zip(("gwa", "gwb"), eps,
                                                                                                strict=True)]
    prefixes = ["book.", "trades.", "ticker.", "bbo."]
    clients: list[Collector] = []
    try:
        for pub, gen in zip(pubs, gens, strict=True):
            pub.start()
            for ev in gen.initial() + list(gen.events(40)):
                pub.publish(ev)
        clients = _start_clients(node_client, c_client, eps, prefixes)
        stateful = {t for pub in pubs for p in prefixes for t, *_ in pub.state(p)}
        _phase(clients, _has_topics(stateful), "late join on two gateways",
               nudge=lambda: [pub.heartbeat() for pub in pubs])
        for _ in range(60):
            for pub, gen in zip(pubs, gens, strict=True):
                pub.publish(gen.next())
        last = {t: pub.seq(t) for pub in pubs for t in pub._seqs if t.startswith(tuple(prefixes))}
        _phase(clients, _caught_up(last), "the last sequence number of every topic")
    finally:
        _stop(clients, [("EXA", "BTC-USDT"), ("EXB", "BTC-USDT"), ("EXB", "ETH-USDT")])
        for pub in pubs:
            pub.close()
    want = _check_identical(clients)
    assert {x["gateway"] for xs in want.values() for x in xs} == {"gwa", "gwb"}
    for other in clients[1:]:
        assert _end(other.lines)["gaps"] == 0
    assert len(_books(clients[0].lines)) == 3


def test_publisher_restart(node_client: Path, c_client: Path, bus_endpoint: Callable[..., GatewayEndpoint]) -> None:
    """The publisher is closed and a new one (same gateway id, new epoch, other books) starts on
    the same endpoints: each client reports a Gap for every book it held, forgets the old
    sequences, rebuilds the republished book (Reset, then the new book_snapshot at seq 1) and
    drops the book the new incarnation does not publish."""
    ep = bus_endpoint("gw")
    prefixes = ["bbo.", "book.", "heartbeat.", "ticker.", "trades."]
    first_gen = BookEventGenerator(symbols=("BTC-USDT", "ETH-USDT"), seed=3, depth=6)
    second_gen = BookEventGenerator(symbols=("BTC-USDT",), seed=4, depth=6)   # no ETH-USDT after the restart
    first = Publisher(GATEWAY, ep.pub, ep.snapshot, heartbeat_interval=3600)
    first.start()
    pubs = [first]
    clients: list[Collector] = []
    since: dict[int, int] = {}
    try:
        clients = _start_clients(node_client, c_client, [ep], prefixes)
        since[first.epoch] = _confirm(clients, first, prefixes)
        for ev in first_gen.initial() + list(first_gen.events(80)):
            first.publish(ev)
        _phase(clients, _caught_up(dict(first._seqs), first.epoch), "the end of the first epoch")
        first.close()

        second = Publisher(GATEWAY, ep.pub, ep.snapshot, heartbeat_interval=3600)
        second.start()
        pubs.append(second)
        assert second.epoch > first.epoch
        since[second.epoch] = _confirm(clients, second, prefixes)   # the clients saw the restart here
        for ev in second_gen.initial() + list(second_gen.events(80)):
            second.publish(ev)
        _phase(clients, _caught_up(dict(second._seqs), second.epoch), "the end of the second epoch")
        truth = {t: body for t, _seq, _ts, _rts, body in second.state("book.")}
    finally:
        _stop(clients, [("TESTEX", "BTC-USDT"), ("TESTEX", "ETH-USDT")])
        for pub in pubs:
            pub.close()

    want = _check_identical(clients, since)
    restarted = "publisher restarted (new epoch)"
    assert _gaps(want) == [("book.TESTEX.BTC-USDT.", restarted), ("book.TESTEX.ETH-USDT.", restarted)]
    btc = [x for x in want["book.TESTEX.BTC-USDT."] if x["epoch"] == second.epoch]
    assert btc[0]["seq"] == 1 and btc[0]["event"]["kind"] == "book_snapshot"
    assert [x["event"]["reason"] for x in want["reset.TESTEX.BTC-USDT."]] == ["rebuilt from snapshot"]
    # a restart Gap carries the epoch of the books it invalidates
    assert {x["epoch"] for t in ("gap.TESTEX.BTC-USDT.", "gap.TESTEX.ETH-USDT.") for x in want[t]} == {first.epoch}
    _check_books(clients[0], truth, prefixes)
    assert [b["topic"] for b in _books(clients[0].lines)] == ["book.TESTEX.BTC-USDT."]
    for other in clients[1:]:
        counters = _end(other.lines)
        assert counters["epochs"] == 1 and counters["gaps"] == 2 and counters["old_epoch"] == 0, (other.name,
                                                                                                 counters)
        assert counters["junk"] == 0 and counters["duplicates"] == 0, (other.name, counters)


@pytest.mark.parametrize("seed", range(5, 25))
def test_random_losses_end_with_the_publishers_books(node_client: Path, c_client: Path,
                                                     bus_endpoint: Callable[..., GatewayEndpoint], seed: int) -> None:
    """Seeded random trouble while the three subscribers keep books, with nothing synchronised
    but the start: bursts of lost messages (any kind: deltas, snapshots, the publisher's own
    gaps), books the publisher declares broken (a Gap, published or lost) and rebuilds later
    (an L2Snapshot), heartbeats now and then; snapshot replies race live traffic. Then the losses
    stop, the broken books are rebuilt and heartbeats flow until every client has caught up:
    each client's books must be exactly the publisher's."""
    rng = random.Random(seed)
    symbols = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
    gen = BookEventGenerator(symbols=symbols, seed=seed, depth=10)
    endpoint = bus_endpoint("gw")
    prefixes = ["bbo.", "book.", "heartbeat.", "ticker.", "trades."]
    pub = Publisher(GATEWAY, endpoint.pub, endpoint.snapshot, heartbeat_interval=3600)
    pub.start()
    clients: list[Collector] = []
    broken: set[str] = set()

    def rebuild(symbol: str, lost: bool = False) -> None:
        event = _rebuild(pub, "TESTEX", symbol)
        if lost:
            _lose(pub, event)
        else:
            pub.publish(event)
        broken.discard(symbol)

    try:
        for ev in gen.initial() + list(gen.events(100)):
            pub.publish(ev)
        clients = _start_clients(node_client, c_client, [endpoint], prefixes)
        _confirm(clients, pub, prefixes)
        burst = 0
        counts = {"lost": 0, "gaps": 0, "lost_gaps": 0, "rebuilds": 0}
        for i, ev in enumerate(gen.events(1500)):
            if burst == 0 and rng.random() < 0.02:
                burst = rng.randint(1, 20)
            lose = burst > 0
            burst = max(0, burst - 1)
            if ev.CHANNEL == "book" and ev.symbol in broken:
                continue   # a broken book publishes nothing until it is rebuilt
            if rng.random() < 0.004 and len(broken) < len(symbols) - 1:
                symbol = rng.choice([s for s in symbols if s not in broken])
                gap = Gap("TESTEX", "book", "checksum", symbol=symbol, receipt_timestamp=time.time_ns())
                if lose:
                    _lose(pub, gap)
                else:
                    pub.publish(gap)
                broken.add(symbol)
                counts["lost_gaps" if lose else "gaps"] += 1
                continue
            if broken and rng.random() < 0.02:
                rebuild(rng.choice(sorted(broken)), lost=lose)
                counts["rebuilds"] += 1
                continue
            if lose:
                _lose(pub, ev)
                counts["lost"] += 1
            else:
                pub.publish(ev)
            if i % 150 == 0:
                pub.heartbeat()
            if i % 100 == 0:
                time.sleep(0.01)   # let snapshot replies interleave with live traffic
        assert counts["lost"] and counts["rebuilds"] and counts["gaps"] + counts["lost_gaps"], counts
        # Every client reads the stream past everything published so far: no gap of the publisher
        # is still on its way (one read after a newer snapshot reply makes that book resnapshot).
        hb = pub.heartbeat()
        hb_topic = topic("heartbeat", pub.gateway)
        _phase(clients, lambda lines: any(x["topic"] == hb_topic and x["seq"] >= hb for x in _msgs(lines)),
               f"heartbeat {hb}")
        # Once every client has a book at its last message, that book's next and last message is
        # lost: only a heartbeat can reveal it.
        tail = next(s for s in symbols if s not in broken)
        tail_topic = topic("book", "TESTEX", tail)
        _phase(clients, _caught_up({tail_topic: pub.seq(tail_topic)}), f"{tail_topic} caught up", nudge=pub.heartbeat)
        _lose(pub, _lost_delta(pub, tail_topic, L2Delta("TESTEX", tail, [], [], receipt_timestamp=1)))
        for symbol in sorted(broken):
            rebuild(symbol)
        # A last delta on every other book: each client has it once its book is live at the end.
        for symbol in symbols:
            if symbol != tail:
                pub.publish(_lost_delta(pub, topic("book", "TESTEX", symbol),
                                        L2Delta("TESTEX", symbol, [], [], receipt_timestamp=1)))
        last = {t: pub.seq(t) for t in (topic("book", "TESTEX", s) for s in symbols)}
        _phase(clients, _caught_up(last), "every book at the publisher's last sequence number", nudge=pub.heartbeat)
        truth = {t: body for t, _seq, _ts, _rts, body in pub.state("book.")}
    finally:
        _stop(clients, [("TESTEX", s) for s in symbols])
        pub.close()

    assert set(truth) == {topic("book", "TESTEX", s) for s in symbols}
    for client in clients:
        assert not client.errors, (client.name, client.errors[:3])
        if isinstance(client, ClientProcess):
            assert client.proc.returncode == 0, f"{client.name} exited {client.proc.returncode}: {client.stderr()}"
        _check_books(client, truth, prefixes)
        assert all(_book_seqs_increase(client.lines, t) for t in truth), client.name
        counters = _end(client.lines)
        assert counters["junk"] == 0 and counters["gaps"] > 0, (client.name, counters)


def _book_seqs_increase(lines: Lines, book_topic: str) -> bool:
    """The sequence numbers a client delivered on a book topic never go back (one epoch): each
    message is after the previous one, except that a rebuild (a snapshot after a Reset) may
    restate the point the book had reached."""
    msgs = [x for x in _msgs(lines) if x["topic"] == book_topic]
    return all(b["seq"] > a["seq"] or (b["seq"] == a["seq"] and b["event"]["kind"] == "book_snapshot")
               for a, b in zip(msgs, msgs[1:]))


def test_a_publisher_gap_read_after_a_newer_snapshot_reply(node_client: Path, c_client: Path,
                                                            bus_endpoint: Callable[..., GatewayEndpoint]) -> None:
    """A snapshot reply can overtake the stream (two sockets): a book rebuilt from a reply that
    already holds the publisher's invalidation and rebuild then reads that older gap, and after it
    the older rebuild. Each client must resnapshot the book (not drop it for good while its deltas
    go to no book), drop the older rebuild as seen (its state never goes back), and end with the
    publisher's book. Made deterministic by sending the gap and the rebuild late, after the reply."""
    gen = BookEventGenerator(symbols=("BTC-USDT",), seed=5, depth=10, other_events=False)
    endpoint = bus_endpoint("gw")
    prefixes = ["book.", "heartbeat."]
    pub = Publisher(GATEWAY, endpoint.pub, endpoint.snapshot, heartbeat_interval=3600)
    pub.start()
    clients: list[Collector] = []
    book_topic = topic("book", "TESTEX", "BTC-USDT")
    template = L2Delta("TESTEX", "BTC-USDT", [], [], receipt_timestamp=1)
    try:
        for ev in gen.initial() + list(gen.events(20)):
            pub.publish(ev)
        clients = _start_clients(node_client, c_client, [endpoint], prefixes)
        _confirm(clients, pub, prefixes)
        # The publisher declares the book broken and rebuilds it: both held back on the stream.
        send_gap = _send_late(pub, Gap("TESTEX", "book", "checksum", symbol="BTC-USDT", receipt_timestamp=1))
        send_rebuild = _send_late(pub, _rebuild(pub, "TESTEX", "BTC-USDT"))
        # A lost delta: every client resynchronises from a reply that holds the rebuild.
        _lose(pub, _lost_delta(pub, book_topic, template))
        pub.publish(_lost_delta(pub, book_topic, template))
        _phase(clients, _rebuilt("TESTEX", "BTC-USDT", 1), "the resync after the lost delta")
        send_gap()        # the older gap and rebuild arrive now, after the newer state
        send_rebuild()
        pub.publish(_lost_delta(pub, book_topic, template))
        last = pub.seq(book_topic)
        _phase(clients, _rebuilt("TESTEX", "BTC-USDT", 2, last), "the book resnapshotted after the old gap",
               nudge=pub.heartbeat)
        truth = {t: body for t, _seq, _ts, _rts, body in pub.state("book.")}
    finally:
        _stop(clients, [("TESTEX", "BTC-USDT")])
        pub.close()
    for client in clients:
        assert not client.errors, (client.name, client.errors[:3])
        if isinstance(client, ClientProcess):
            assert client.proc.returncode == 0, f"{client.name} exited {client.proc.returncode}: {client.stderr()}"
        _check_books(client, truth, ["book."])
        assert _book_seqs_increase(client.lines, book_topic), client.name
        assert _end(client.lines)["duplicates"] >= 1, client.name   # the older rebuild, dropped as seen
