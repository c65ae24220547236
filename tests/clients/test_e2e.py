"""Python, Node and C subscribers side by side on one publisher: identical streams and books.

A real :class:`bus.publisher.Publisher` (ipc, snapshot service) is driven by a seeded
stream of book deltas, trades, tickers and BBOs in phases:

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
from cryptofeed_types.events import Event, L2Delta
from feedfabric.testing.bus import BookEventGenerator

PREFIXES = ("book.TESTEX.", "trades.TESTEX.", "ticker.TESTEX.", "bbo.TESTEX.")
SYMBOLS = ("BTC-USDT", "ETH-USDT")
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

    def __init__(self, endpoint: GatewayEndpoint) -> None:
        super().__init__("python")
        self.sub = Subscriber(endpoint, PREFIXES, heartbeat_timeout=600)
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

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=10)
        for sym in SYMBOLS:
            book = self.sub.book("TESTEX", sym)
            if book is not None:
                bids, asks = book.snapshot()
                self.add({"type": "book", "gateway": "gw-e2e", "topic": f"book.TESTEX.{sym}.",
                          "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]})
        self.add({"type": "end", "counters": dict(self.sub.counters)})
        self.sub.close()


def _msgs(lines: Lines) -> Lines:
    return [x for x in lines if x.get("type") == "msg"]


def _has_topics(topics: set[str]) -> Callable[[Lines], bool]:
    return lambda lines: topics <= {x["topic"] for x in _msgs(lines)}


def _rebuilt(symbol: str, nth: int) -> Callable[[Lines], bool]:
    """The nth Reset of symbol's book has been followed by its fresh book_snapshot."""
    def pred(lines: Lines) -> bool:
        resets = 0
        for x in _msgs(lines):
            if x["topic"] == f"reset.TESTEX.{symbol}.":
                resets += 1
            elif resets >= nth and x["topic"] == f"book.TESTEX.{symbol}." and x["event"]["kind"] == "book_snapshot":
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


@pytest.fixture
def endpoint(tmp_path: Path) -> GatewayEndpoint:
    run = Path(f"/tmp/ffe2e-{time.time_ns()}")  # short: unix socket paths are limited to 107 bytes
    run.mkdir(mode=0o700)
    yield GatewayEndpoint.ipc(run, "gw")
    for p in run.iterdir():
        p.unlink()
    run.rmdir()


def test_python_node_and_c_subscribers_agree(node_client: Path, c_client: Path, endpoint: GatewayEndpoint) -> None:
    gen = BookEventGenerator(symbols=SYMBOLS, seed=7, depth=10)
    pub = Publisher("gw-e2e", endpoint.pub, endpoint.snapshot, heartbeat_interval=3600)
    pub.start()
    clients: list[Collector] = []
    try:
        # 1. history before anyone listens
        for ev in gen.initial():
            pub.publish(ev)
        for ev in gen.events(60):
            pub.publish(ev)
        args = ["--pub", endpoint.pub, "--snapshot", endpoint.snapshot, "--heartbeat-timeout", "600"]
        for p in PREFIXES:
            args += ["--prefix", p]
        clients = [PythonSubscriber(endpoint),
                   ClientProcess("node", ["node", str(node_client / "examples" / "subscribe.js"), *args]),
                   ClientProcess("c", [str(c_client / "ff_subscribe"), *args])]
        history = {t for p in PREFIXES for t, *_ in pub.state(p)}
        assert {f"book.TESTEX.{s}." for s in SYMBOLS} <= history

        def phase(pred: Callable[[Lines], bool], what: str, nudge: Callable[[], None] | None = None) -> None:
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
        phase(_has_topics(history), "late join (snapshots of every topic)", nudge=pub.heartbeat)

        # 2. live
        for ev in gen.events(150):
            pub.publish(ev)
        # 3. a lost delta, revealed by the next one
        _lose(pub, L2Delta("TESTEX", "BTC-USDT", [("990.00", "1.5000")], [], receipt_timestamp=time.time_ns()))
        pub.publish(L2Delta("TESTEX", "BTC-USDT", [("989.00", "2.25")], [("1012.00", "0")],
                            receipt_timestamp=time.time_ns()))
        phase(_rebuilt("BTC-USDT", 1), "recovery of BTC-USDT after a gap")

        # 4. live
        for ev in gen.events(100):
            pub.publish(ev)
        # 5. a lost last delta, revealed only by a heartbeat
        _lose(pub, L2Delta("TESTEX", "ETH-USDT", [], [("1011.00", "7")], receipt_timestamp=time.time_ns()))
        pub.heartbeat()
        phase(_rebuilt("ETH-USDT", 1), "recovery of ETH-USDT after a tail loss")

        # 6. live, to the end
        for ev in gen.events(100):
            pub.publish(ev)
        last = {t: pub.seq(t) for t in {t for p in PREFIXES for t, *_ in pub.state(p)} | history}
        last.update({t: pub.seq(t) for t in pub._seqs if t.startswith(PREFIXES)})
        phase(_caught_up(last), "the last sequence number of every topic")
        truth = {t: body for t, _seq, _ts, _rts, body in pub.state("book.")}
    finally:
        for c in clients:
            c.stop()
        pub.close()

    py, node, c = clients
    for client in clients:
        assert not client.errors, f"{client.name} printed non-JSON lines: {client.errors[:3]}"

    # The same messages, per topic and in order, from all three.
    want = _by_topic(py.lines)
    assert set(want) >= {f"gap.TESTEX.{s}." for s in SYMBOLS} | {f"reset.TESTEX.{s}." for s in SYMBOLS}
    gaps = [x["event"] for s in SYMBOLS for x in want[f"gap.TESTEX.{s}."]]
    assert [(g["symbol"], g["reason"]) for g in gaps] == [("BTC-USDT", "sequence gap"),
                                                          ("ETH-USDT", "tail loss (seen in heartbeat)")]
    for s in SYMBOLS:  # late joiners start from a snapshot, not from the first delta
        first = want[f"book.TESTEX.{s}."][0]
        assert first["event"]["kind"] == "book_snapshot" and first["seq"] > 1
    for other in (node, c):
        got = _by_topic(other.lines)
        assert sorted(got) == sorted(want), f"{other.name}: different topics"
        for topic in want:
            assert got[topic] == want[topic], f"{other.name} differs from Python on {topic}"

    # The same final books, equal to the publisher's own.
    books = _books(py.lines)
    assert [b["topic"] for b in books] == [f"book.TESTEX.{s}." for s in SYMBOLS]
    for b in books:
        assert b["bids"] == [list(x) for x in truth[b["topic"]]["bids"]]
        assert b["asks"] == [list(x) for x in truth[b["topic"]]["asks"]]
    assert _books(node.lines) == books
    assert _books(c.lines) == books

    for other in (node, c):
        counters = _end(other.lines)
        assert counters["gaps"] == 2 and counters["resyncs"] == 2, (other.name, counters)
        assert counters["junk"] == 0 and counters["duplicates"] == 0, (other.name, counters)
