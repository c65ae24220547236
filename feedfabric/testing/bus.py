"""Reusable bus test helpers and pytest fixtures (registered in feedfabric.testing.plugin).

- :class:`BookEventGenerator` — deterministic (seeded) random walk of L2 books plus
  a few scalar/trade events, for driving publishers in tests and benchmarks.
- :class:`PublisherProcess` — a real :class:`bus.publisher.Publisher` in a child process
  (multiprocessing, spawn), driven by commands; reports its own books for comparison.
- :func:`drain_until` — receive from a subscriber until a condition holds (bounded wait).
- :class:`PumpedSubscribers` — asyncio subscribers joining at any time, each received from in
  the background (so its books follow the stream), closed together.
- fixtures: ``bus_dir`` (private run directory for ipc sockets), ``bus_endpoint``
  (factory of GatewayEndpoint), ``publisher_factory``, ``subscriber_factory``,
  ``publisher_process`` (factory of PublisherProcess).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bus.endpoints import GatewayEndpoint
from cryptofeed_types.events import BBO, Event, L2Delta, L2Snapshot, Ticker, Trade


def _price(ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}"


class BookEventGenerator:
    """A seeded random walk of L2 books on ``symbols`` (deterministic for a given seed).

    :meth:`initial` gives one L2Snapshot per symbol; :meth:`next` gives mostly L2Delta
    (1–4 level changes, deletions included, sizes with varied trailing zeros so exact
    string equality means something) and now and then a Trade, Ticker or BBO.
    """

    def __init__(self, exchange: str = "TESTEX", symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT", "SOL-USDT"),
                 seed: int = 0, depth: int = 20, other_events: bool = True) -> None:
        self.exchange = exchange
        self.symbols = symbols
        self.rng = random.Random(seed)
        self.depth = depth
        self.other_events = other_events
        self.mid = {s: 100_000 + 1000 * i for i, s in enumerate(symbols)}
        self.count = 0

    def _size(self) -> str:
        r = self.rng
        return f"{r.randint(0, 50)}.{r.randint(1, 9999):04d}" + "0" * r.randint(0, 3)

    def initial(self) -> list[Event]:
        out = []
        for s in self.symbols:
            m = self.mid[s]
            bids = [(_price(m - 1 - i), self._size()) for i in range(self.depth)]
            asks = [(_price(m + 1 + i), self._size()) for i in range(self.depth)]
            out.append(L2Snapshot(self.exchange, s, bids, asks, sequence=0, receipt_timestamp=time.time_ns()))
        return out

    def next(self) -> Event:
        r = self.rng
        self.count += 1
        s = r.choice(self.symbols)
        now = time.time_ns()
        roll = r.random()
        if self.other_events and roll < 0.05:
            return Trade(self.exchange, s, r.choice(("buy", "sell")), self._size(), _price(self.mid[s]),
                         id=str(self.count), timestamp=now, receipt_timestamp=now)
        if self.other_events and roll < 0.08:
            return Ticker(self.exchange, s, bid=_price(self.mid[s] - 1), ask=_price(self.mid[s] + 1),
                          last=_price(self.mid[s]), volume=self._size(), receipt_timestamp=now)
        if self.other_events and roll < 0.11:
            return BBO(self.exchange, s, bid=_price(self.mid[s] - 1), bid_size=self._size(),
                       ask=_price(self.mid[s] + 1), ask_size=self._size(), receipt_timestamp=now)
        self.mid[s] += r.choice((-1, 0, 0, 1))
        m = self.mid[s]
        bids, asks = [], []
        for _ in range(r.randint(1, 4)):
            off = r.randint(1, self.depth + 5)
            size = "0" if r.random() < 0.3 else self._size()
            if r.random() < 0.5:
                bids.append((_price(m - off), size))
            else:
                asks.append((_price(m + off), size))
        return L2Delta(self.exchange, s, bids, asks, sequence=self.count, timestamp=now, receipt_timestamp=now)

    def events(self, n: int) -> Iterator[Event]:
        for _ in range(n):
            yield self.next()


# -- a publisher in a child process -----------------------------------------------------------

def _publisher_main(gateway: str, pub: str, snap: str | None, seed: int, symbols: tuple[str, ...],
                    options: dict[str, Any], commands: Any, results: Any) -> None:
    """Child process: start a Publisher, publish on command, report state."""
    from bus.publisher import Publisher

    curve = options.pop("curve", None)
    p = Publisher(gateway, pub, snap, curve=curve, **options)
    p.start()
    gen = BookEventGenerator(symbols=symbols, seed=seed)
    results.put(("started", p.bound_endpoint, p.bound_snapshot_endpoint, p.epoch, os.getpid()))
    while True:
        cmd = commands.get()
        if cmd[0] == "initial":
            for ev in gen.initial():
                p.publish(ev)
            results.put(("done", p.counters["messages"]))
        elif cmd[0] == "publish":
            _, n, rate = cmd
            start = time.perf_counter()
            for i in range(n):
                p.publish(gen.next())
                if rate and i % 64 == 63:
                    # Pacing only (not synchronisation): keep to ``rate`` events per second.
                    ahead = (i + 1) / rate - (time.perf_counter() - start)
                    if ahead > 0:
                        time.sleep(ahead)
            results.put(("done", p.counters["messages"]))
        elif cmd[0] == "state":
            results.put(("state", publisher_state(p)))
        elif cmd[0] == "stop":
            p.close()
            results.put(("stopped",))
            return


def publisher_state(publisher: Any) -> dict[str, Any]:
    """Books (exact level strings) and per-topic sequence numbers of a publisher."""
    books = {}
    for topic, seq, _ts, _rts, body in publisher.state(""):
        if body["kind"] == "book_snapshot":
            books[topic] = {"seq": seq, "bids": [tuple(x) for x in body["bids"]],
                            "asks": [tuple(x) for x in body["asks"]]}
    return {"epoch": publisher.epoch, "books": books, "seqs": dict(publisher._seqs)}


@dataclass
class PublisherProcess:
    """Handle on a publisher running in a child process (see :func:`_publisher_main`)."""

    gateway: str
    endpoint: GatewayEndpoint
    seed: int = 0
    symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
    options: dict[str, Any] = field(default_factory=dict)
    timeout: float = 30.0

    def start(self) -> PublisherProcess:
        ctx = mp.get_context("spawn")
        self._commands = ctx.Queue()
        self._results = ctx.Queue()
        self.process = ctx.Process(target=_publisher_main, daemon=True, args=(
            self.gateway, self.endpoint.pub, self.endpoint.snapshot, self.seed, self.symbols, dict(self.options),
            self._commands, self._results))
        self.process.start()
        _, pub, snap, self.epoch, self.pid = self._get("started")
        # Wildcard tcp ports resolve to real ones here.
        self.endpoint = GatewayEndpoint(pub, snap)
        return self

    def _get(self, kind: str) -> tuple:
        reply = self._results.get(timeout=self.timeout)
        assert reply[0] == kind, reply
        return reply

    def initial(self) -> int:
        """Publish one L2Snapshot per symbol; returns the publisher's message count."""
        self._commands.put(("initial",))
        return self._get("done")[1]

    def publish(self, n: int, rate: float = 0) -> int:
        """Publish ``n`` generated events (at ``rate``/s, 0 = full speed); returns when done."""
        self._commands.put(("publish", n, rate))
        return self._get("done")[1]

    def publish_async(self, n: int, rate: float = 0) -> None:
        """Start publishing ``n`` events; collect completion with :meth:`wait_done`."""
        self._commands.put(("publish", n, rate))

    def wait_done(self) -> int:
        return self._get("done")[1]

    def poll_done(self) -> int | None:
        """Non-blocking :meth:`wait_done`: the message count once publishing finished, else None."""
        try:
            reply = self._results.get_nowait()
        except queue.Empty:
            return None
        assert reply[0] == "done", reply
        return reply[1]

    def state(self) -> dict[str, Any]:
        """``{'epoch', 'books': {topic: {'seq', 'bids', 'asks'}}, 'seqs': {topic: seq}}``."""
        self._commands.put(("state",))
        return self._get("state")[1]

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as in a crash."""
        pid = self.process.pid   # None only before start(), when it is not alive either
        if self.process.is_alive() and pid is not None:
            os.kill(pid, signal.SIGKILL)
        self.process.join(timeout=10)

    def stop(self) -> None:
        if self.process.is_alive():
            self._commands.put(("stop",))
            try:
                self._get("stopped")
            except Exception:
                pass
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.kill()


def drain_until(sub: Any, done: Callable[[], bool], timeout: float = 20.0,
                on_message: Callable[[Any], None] | None = None) -> list:
    """Receive from a blocking Subscriber until ``done()`` holds; returns the messages.

    Fails (AssertionError with the subscriber's counters) after ``timeout`` seconds.
    """
    got = []
    deadline = time.monotonic() + timeout
    # Also empty what the subscriber decoded ahead: its books follow delivered messages only.
    while not (done() and not sub.pending()):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"condition not reached in {timeout} s; counters={sub.counters}")
        m = sub.recv(timeout=min(left, 0.5))
        if m is not None:
            got.append(m)
            if on_message is not None:
                on_message(m)
    return got


class PumpedSubscribers:
    """:class:`bus.subscriber.AsyncSubscriber` s on one endpoint, each joining when a test says
    (from the start, halfway, after the fact) and received from in the background, so that
    ``sub.book(...)`` follows the stream; all closed on exit::

        async with PumpedSubscribers(endpoint, ["book."]) as subs:
            subs.join()
            ...
            late = subs.join()        # its books can only come from the snapshot service
    """

    def __init__(self, endpoint: Any, prefixes: list[str], **options: Any) -> None:
        self.endpoint = endpoint
        self.prefixes = prefixes
        self.options = {"heartbeat_timeout": 10, **options}
        self.subscribers: list[Any] = []
        self._pumps: list[Any] = []

    def join(self) -> Any:
        from bus.subscriber import AsyncSubscriber

        sub = AsyncSubscriber(self.endpoint, self.prefixes, **self.options)
        self.subscribers.append(sub)

        async def pump() -> None:
            while True:
                await sub.recv(0.05)
        self._pumps.append(asyncio.create_task(pump()))
        return sub

    def __iter__(self) -> Iterator[Any]:
        return iter(self.subscribers)

    def __len__(self) -> int:
        return len(self.subscribers)

    async def __aenter__(self) -> PumpedSubscribers:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for sub in self.subscribers:
            sub.close()


def books_match(sub: Any, state: dict[str, Any], exchange: str = "TESTEX") -> bool:
    """True when the subscriber's books equal the publisher's (every level, exact strings)."""
    for topic, b in state["books"].items():
        symbol = topic.split(".")[2]
        book = sub.book(exchange, symbol)
        if book is None:
            return False
        bids, asks = book.snapshot()
        if [tuple(x) for x in bids] != b["bids"] or [tuple(x) for x in asks] != b["asks"]:
            return False
    return True


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture
def bus_dir(tmp_path: Path) -> Iterator[Path]:
    """A private (0700) run directory for ipc sockets, short enough for unix socket paths."""
    if len(str(tmp_path)) < 80:
        d = tmp_path / "run"
        d.mkdir(mode=0o700)
        yield d
    else:
        d = Path(tempfile.mkdtemp(prefix="ffbus-", dir="/tmp"))
        yield d
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def bus_endpoint(bus_dir: Path) -> Callable[..., GatewayEndpoint]:
    """Factory: ``bus_endpoint(name, transport='ipc', snapshot=True)`` -> GatewayEndpoint.

    tcp endpoints use wildcard ports on 127.0.0.1 (resolved when the publisher binds).
    """

    def make(name: str = "gw", transport: str = "ipc", snapshot: bool = True) -> GatewayEndpoint:
        if transport == "ipc":
            return GatewayEndpoint.ipc(bus_dir, name, snapshot=snapshot)
        if transport == "tcp":
            return GatewayEndpoint("tcp://127.0.0.1:*", "tcp://127.0.0.1:*" if snapshot else None)
        raise ValueError(f"unknown transport {transport!r}")

    return make


@pytest.fixture
def publisher_factory() -> Iterator[Callable[..., Any]]:
    """Factory of started in-process Publishers (closed at teardown): same arguments as Publisher."""
    from bus.publisher import Publisher

    made: list[Publisher] = []

    def make(gateway: str, endpoint: GatewayEndpoint | str, **kwargs: Any) -> Publisher:
        ep = endpoint if isinstance(endpoint, GatewayEndpoint) else GatewayEndpoint(endpoint)
        p = Publisher(gateway, ep.pub, ep.snapshot, **kwargs)
        made.append(p)
        p.start()
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[..., Any]]:
    """Factory of blocking Subscribers (closed at teardown): same arguments as Subscriber."""
    from bus.subscriber import Subscriber

    made: list[Subscriber] = []

    def make(*args: Any, **kwargs: Any) -> Subscriber:
        s = Subscriber(*args, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def publisher_process() -> Iterator[Callable[..., PublisherProcess]]:
    """Factory of started :class:`PublisherProcess` (stopped or killed at teardown)."""
    made: list[PublisherProcess] = []

    def make(gateway: str, endpoint: GatewayEndpoint, **kwargs: Any) -> PublisherProcess:
        p = PublisherProcess(gateway, endpoint, **kwargs)
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.stop()
