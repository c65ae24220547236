"""Python, Node and C subscribers side by side on one publisher: identical streams and books.

A real :class:`bus.publisher.Publisher` (ipc, snapshot service) is driven in phases by a
stream of events: a seeded generator of book deltas, trades, tickers and BBOs, or a real
Binance futures capture replayed through its gateway adapter (``shared_data``):

1. history published before anyone subscribes (the clients are late joiners and must
   start from the snapshot service);
2. live traffic;
3. a lost book delta followed by another one (a sequence gap: Gap, Reset, fresh snapshot);
4. live traffic;
5. a lost *last* delta of a book, revealed only by the next heartbeat's ``book_seqs``;
6. live traffic until every subscriber has seen the last sequence number of every topic.

Heartbeats are sent by the test itself (the periodic ones are pushed out to an hour) so
that where a heartbeat falls in the stream is part of the script, not of timing. Each phase
waits until all three subscribers have caught up, so a snapshot reply never races live
traffic and the delivered streams must be equal message for message. Every client prints
one canonical JSON line per message (docs/clients.md); Python builds the same lines.
A last test connects the three to two publishers at once.
"""

from __future__ import annotations

import json
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

from bus.endpoints import GatewayEndpoint
from bus.publisher import Publisher
from bus.subscriber import Subscriber
from bus.topics import topic
from cryptofeed_types.events import Event, L2Delta, L2Snapshot
from feedfabric.testing.bus import BookEventGenerator
from gateways.replay import replay_capture

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


def _rebuilt(exchange: str, symbol: str, nth: int) -> Callable[[Lines], bool]:
    """The nth Reset of a book has been followed by its fresh book_snapshot."""
    reset, book = topic("reset", exchange, symbol), topic("book", exchange, symbol)

    def pred(lines: Lines) -> bool:
        resets = 0
        for x in _msgs(lines):
            if x["topic"] == reset:
                resets += 1
            elif resets >= nth and x["topic"] == book and x["event"]["kind"] == "book_snapshot":
                return True
        return False
    return pred


def _caught_up(last: dict[str, int]) -> Callable[[Lines], bool]:
    def pred(lines: Lines) -> bool:
        seen: dict[str, int] = {}
        for x in _msgs(lines):
            seen[x["topic"]] = max(seen.get(x["topic"], 0), x["seq"])
        return all(seen.get(t, 0) >= s for t, s in last.items())
    return pred


def _lose(pub: Publisher, event: Event) -> None:
    """Account for ``event`` as published (sequence number, snapshot state) but never send it:
    what a PUB high-water-mark drop does to one subscriber, here to all of them at once."""
    topic = event.topic()
    with pub._lock:
        seq = pub._seqs.get(topic, 0) + 1
        pub._seqs[topic] = seq
        pub.store.apply(event, topic, seq)


def _by_topic(lines: Lines) -> dict[str, Lines]:
    """Messages grouped per topic in arrival order; locally made ones (seq 0) without clocks."""
    out: dict[str, Lines] = defaultdict(list)
    for x in _msgs(lines):
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
        args = ["--pub", endpoint.pub, "--snapshot", endpoint.snapshot, "--heartbeat-timeout", "600"]
        for p in prefixes:
            args += ["--prefix", p]
        clients = [PythonSubscriber(endpoint, prefixes),
                   ClientProcess("node", ["node", str(node_client / "examples" / "subscribe.js"), *args]),
                   ClientProcess("c", [str(c_client / "ff_subscribe"), *args])]
        stateful = {t for p in prefixes for t, *_ in pub.state(p)}
        at_join = {t: pub.seq(t) for t in stateful}

        def phase(pred: Callable[[Lines], bool], what: str, nudge: Callable[[], Any] | None = None) -> None:
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

        # The clients ask for snapshots once the stream flows: heartbeats make it flow.
        phase(_has_topics(stateful), "late join (snapshots of every stateful topic)", nudge=pub.heartbeat)

        # 2. live, then 3. a lost delta revealed by the next one
        for ev in phases[0]:
            pub.publish(ev)
        _lose(pub, _lost_delta(pub, gap_topic, gap_ev))
        pub.publish(_lost_delta(pub, gap_topic, gap_ev))
        phase(_rebuilt(gap_ev.exchange, gap_ev.symbol, 1), f"recovery of {gap_topic} after a gap")

        # 4. live, then 5. a lost last delta revealed only by a heartbeat
        for ev in phases[1]:
            pub.publish(ev)
        _lose(pub, _lost_delta(pub, tail_topic, tail_ev))
        pub.heartbeat()
        phase(_rebuilt(tail_ev.exchange, tail_ev.symbol, 2 if tail_topic == gap_topic else 1),
              f"recovery of {tail_topic} after a tail loss")

        # 6. live, to the end
        for ev in phases[2]:
            pub.publish(ev)
        # (topics seen only before the join are not served by the snapshot service: trades, status...)
        last = {t: pub.seq(t) for t in {e.topic() for e in live} | stateful}
        phase(_caught_up(last), "the last sequence number of every topic")
        truth = {t: body for t, _seq, _ts, _rts, body in pub.state("book.")}
    finally:
        book_names = sorted({(e.exchange, e.symbol) for e in events if e.CHANNEL == "book"},
                            key=lambda x: topic("book", *x))
        for c in clients:
            if isinstance(c, PythonSubscriber):
                c.stop(book_names)
            else:
                c.stop()
        pub.close()

    py, node, c = clients
    for client in clients:
        assert not client.errors, f"{client.name} printed non-JSON lines: {client.errors[:3]}"
        if isinstance(client, ClientProcess):
            assert client.proc.returncode == 0, f"{client.name} exited {client.proc.returncode}: {client.stderr()}"

    # The same messages, per topic and in order, from all three.
    want = _by_topic(py.lines)
    assert sum(map(len, want.values())) >= len(live), "fewer messages than were published live"
    gaps = [x["event"] for t, xs in want.items() if t.startswith("gap.") for x in xs]
    assert sorted((topic("book", g["exchange"], g["symbol"]), g["reason"]) for g in gaps) == sorted(
        [(gap_topic, "sequence gap"), (tail_topic, "tail loss (seen in heartbeat)")])
    for t in stateful:  # late joiners start from the snapshot service, not from the stream
        first = want[t][0]
        assert first["seq"] == at_join[t], first
        assert not t.startswith("book.") or first["event"]["kind"] == "book_snapshot", first
    for other in (node, c):
        got = _by_topic(other.lines)
        assert sorted(got) == sorted(want), f"{other.name}: different topics"
        for t in want:
            assert got[t] == want[t], f"{other.name} differs from Python on {t}"

    # The same final books, equal to the publisher's own.
    final = _books(py.lines)
    assert {b["topic"] for b in final} == {t for t in truth if t.startswith(tuple(prefixes))}
    for b in final:
        assert b["bids"] == [list(x) for x in truth[b["topic"]]["bids"]]
        assert b["asks"] == [list(x) for x in truth[b["topic"]]["asks"]]
    assert _books(node.lines) == final
    assert _books(c.lines) == final

    for other in (node, c):
        counters = _end(other.lines)
        assert counters["gaps"] == 2 and counters["resyncs"] == 2, (other.name, counters)
        assert counters["junk"] == 0 and counters["duplicates"] == 0, (other.name, counters)


def test_generated_stream(node_client: Path, c_client: Path, bus_endpoint: Callable[..., GatewayEndpoint]) -> None:
    gen = BookEventGenerator(symbols=("BTC-USDT", "ETH-USDT"), seed=7, depth=10)
    events = gen.initial() + list(gen.events(410))
    run_side_by_side(node_client, c_client, bus_endpoint("gw"), events, n_history=62)


@pytest.mark.shared_data
def test_replayed_capture(node_client: Path, c_client: Path, bus_endpoint: Callable[..., GatewayEndpoint],
                          shared_data: Path) -> None:
    """A real Binance futures capture, replayed through the gateway adapter, as the stream."""
    events = replay_capture(shared_data / "cryptofeed" / "BINANCE_FUTURES", collect=True).events
    assert len(events) > 1000
    first_book = next(i for i, e in enumerate(events) if type(e) is L2Snapshot)
    run_side_by_side(node_client, c_client, bus_endpoint("gw"), events, n_history=max(300, first_book + 50))


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
        args = []
        for ep in eps:
            args += ["--pub", ep.pub, "--snapshot", ep.snapshot]
        args += ["--heartbeat-timeout", "600"] + [x for p in prefixes for x in ("--prefix", p)]
        py = PythonSubscriber(eps, prefixes)
        clients = [py, ClientProcess("node", ["node", str(node_client / "examples" / "subscribe.js"), *args]),
                   ClientProcess("c", [str(c_client / "ff_subscribe"), *args])]
        stateful = {t for pub in pubs for p in prefixes for t, *_ in pub.state(p)}
        deadline = time.monotonic() + WAIT
        for c in clients:
            while not c.holds(_has_topics(stateful)):
                assert time.monotonic() < deadline, f"{c.name}: late join on two gateways not reached"
                for pub in pubs:
                    pub.heartbeat()
                c.wait(_has_topics(stateful), 0.1)
        for _ in range(60):
            for pub, gen in zip(pubs, gens, strict=True):
                pub.publish(gen.next())
        last = {t: pub.seq(t) for pub in pubs for t in pub._seqs if t.startswith(tuple(prefixes))}
        for c in clients:
            assert c.wait(_caught_up(last), WAIT), f"{c.name}: did not catch up"
    finally:
        for c in clients:
            if isinstance(c, PythonSubscriber):
                c.stop([("EXA", "BTC-USDT"), ("EXB", "BTC-USDT"), ("EXB", "ETH-USDT")])
            else:
                c.stop()
        for pub in pubs:
            pub.close()
    py, node, c = clients
    want = _by_topic(py.lines)
    assert {x["gateway"] for xs in want.values() for x in xs} == {"gwa", "gwb"}
    for other in (node, c):
        assert _by_topic(other.lines) == want, f"{other.name} differs from Python"
        assert _end(other.lines)["gaps"] == 0
    books = _books(py.lines)
    assert len(books) == 3
    assert _books(node.lines) == books and _books(c.lines) == books
