"""Gateway test helpers and fixtures (registered in feedfabric.testing.plugin).

- :class:`RecordingPublisher`: an in-memory stand-in for :class:`bus.publisher.Publisher`
  (same ``publish`` / ``set_feed_state`` / ``count`` calls) that keeps every event and
  lets async tests wait for a condition with a bounded timeout.
- :func:`wait_until`: poll a condition inside the event loop, bounded.
- :class:`HttpProxy`: a minimal HTTP proxy on loopback that counts what it relays (proxy tests).
- :class:`ThreadedLoopback`: the loopback exchange on a background thread's event loop, for
  synchronous tests of command-line tools.
- :class:`LoopbackGateway`: a gateway of an exchange on a loopback exchange serving a capture,
  publishing into a :class:`RecordingPublisher`: the shape of an end-to-end test of an adapter.
- fixtures: ``loopback_exchange`` (async factory: a started :class:`gateways.loopback.Loopback`
  serving a capture, stopped at teardown), ``loopback_gateway`` (async factory: a
  :class:`LoopbackGateway` on a started loopback), ``recording_publisher``.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from cryptofeed_types import OrderBook, Status
from feedfabric.testing.adapters import published_books


class HttpProxy:
    """A minimal HTTP proxy on 127.0.0.1 (CONNECT tunnels and absolute-form requests) that counts
    what it relays: ``proxy = HttpProxy(); await proxy.start()``, then ``http://127.0.0.1:{proxy.port}``;
    ``proxy.close()``."""

    def __init__(self) -> None:
        self.connects = 0
        self.forwards = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if method == b"CONNECT":
            self.connects += 1
            host, port = target.decode().rsplit(":", 1)
            up_r, up_w = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            self.forwards += 1
            hostport = target.split(b"/")[2].decode()
            host, port = hostport.rsplit(":", 1)
            up_r, up_w = await asyncio.open_connection(host, int(port))
            up_w.write(head)
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))

    def close(self) -> None:
        # Not awaiting wait_closed(): since Python 3.12 it waits for relayed connections too.
        if self.server is not None:
            self.server.close()


class RecordingPublisher:
    """Collects published events (thread-safe enough for one asyncio thread)."""

    def __init__(self, exchange: str = "") -> None:
        self.exchange = exchange
        self.events: list[Any] = []
        self.counters: Counter[str] = Counter()
        self.feeds: dict[str, str] = {}
        self.described: dict[str, Any] = {}   # what Publisher.describe would put in heartbeats

    def publish(self, event: Any) -> int:
        self.events.append(event)
        self.counters[f"kind.{event.KIND}"] += 1
        return self.counters[f"kind.{event.KIND}"]

    def set_feed_state(self, feed: str, state: str, reason: str | None = None) -> None:
        self.feeds[feed] = state
        self.publish(Status(self.exchange, feed, state, reason=reason, receipt_timestamp=time.time_ns()))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def describe(self, key: str, value: Any) -> None:
        self.described[key] = value

    def of_kind(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.KIND == kind]

    def books(self) -> dict[str, OrderBook | None]:
        """The books a bus consumer rebuilds from what was published, per symbol (None: invalid
        since a Gap; :func:`feedfabric.testing.adapters.published_books`)."""
        return published_books(self.events)

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Return as soon as ``condition()`` is true; TimeoutError (naming ``what``) after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


class LoopbackGateway:
    """A gateway of ``exchange`` on the started loopback ``lb`` serving ``records`` (the capture's own
    subscription), publishing into :attr:`pub`; ``async with ses.gw:`` runs it. ``options`` are
    :class:`gateways.process.GatewayConfig` fields (reconnect backoff shortened for tests)."""

    def __init__(self, records: list[Any], lb: Any, exchange: str, **options: Any) -> None:
        from gateways.process import Gateway, GatewayConfig

        self.records, self.lb = records, lb
        self.channels: dict[str, list[str]] = records[0].data["channels"]
        self.pub = RecordingPublisher(exchange)
        config = {"backoff_initial": 0.05, "backoff_max": 0.2, **options}
        self.gw = Gateway(GatewayConfig(name="gw", exchange=exchange, channels=self.channels, pub="inproc://unused",
                                        urls=lb.urls(), **config), publisher=self.pub)

    @property
    def adapter(self) -> Any:
        return self.gw.adapter

    @property
    def symbols(self) -> list[str]:
        """The book symbols in the adapter's spelling (Deribit options resolved once instruments load)."""
        return self.adapter.subscription.symbols("l2_book")

    def key(self, symbol: str) -> str:
        """The loopback's truth key of the book of ``symbol`` (``Profile.truth_key``)."""
        return self.lb.profile.truth_key(self.adapter, symbol)

    def truth(self, symbol: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The loopback's truth of the book of ``symbol``: (bids, asks) best first."""
        return self.lb.profile.truth_book(self.key(symbol))

    def synced(self, symbols: Iterable[str] | None = None) -> bool:
        """The adapter's books of ``symbols`` (default: every book symbol) are all valid."""
        books = self.adapter.books
        return all((sb := books.get(s)) is not None and sb.state == "synced"
                   for s in (self.symbols if symbols is None else symbols))

    def at_truth(self, symbols: Iterable[str] | None = None) -> bool:
        """The adapter's books of ``symbols`` (default: every book symbol) valid and equal to the
        loopback's truth of them."""
        books = self.adapter.books
        return all((sb := books.get(s)) is not None and sb.state == "synced" and sb.book.snapshot() == self.truth(s)
                   for s in (self.symbols if symbols is None else symbols))

    def states(self, feed: str) -> list[str]:
        """The states published for ``feed`` (a connection id, ``system``), in order."""
        return [e.state for e in self.pub.of_kind("status") if e.feed == feed]


@pytest.fixture
def recording_publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest_asyncio.fixture
async def loopback_exchange() -> AsyncIterator[Callable[..., Any]]:
    """``lb = await loopback_exchange(path_or_records, **kwargs)``: a started loopback exchange."""
    from gateways.capture import read_capture
    from gateways.loopback import Loopback

    started: list[Loopback] = []

    async def factory(capture: Any, **kwargs: Any) -> Loopback:
        records = read_capture(capture) if isinstance(capture, (str, Path)) else capture
        lb = Loopback(records, **kwargs)
        await lb.start()
        started.append(lb)
        return lb

    yield factory
    for lb in started:
        await lb.stop()


@pytest_asyncio.fixture
async def loopback_gateway(loopback_exchange: Callable[..., Any]) -> Callable[..., Any]:
    """``ses = await loopback_gateway(path_or_records, exchange, **options)``: a
    :class:`LoopbackGateway` on a started loopback exchange serving that capture."""
    from gateways.capture import read_capture

    async def factory(capture: Any, exchange: str, **options: Any) -> LoopbackGateway:
        records = list(read_capture(capture) if isinstance(capture, (str, Path)) else capture)
        return LoopbackGateway(records, await loopback_exchange(records), exchange, **options)

    return factory


class ThreadedLoopback:
    """A loopback exchange on its own event loop in a background thread, for synchronous tests
    (command-line tools that run ``asyncio.run`` themselves)::

        with ThreadedLoopback(path) as lb:
            lb.call(lb.exchange.release, None)       # any Loopback method, run on its loop
            CliRunner().invoke(record, [..., "--url", f"rest={lb.urls()['rest']}"])
    """

    def __init__(self, capture: Any, **kwargs: Any) -> None:
        self._capture = capture
        self._kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="loopback", daemon=True)
        self.exchange: Any = None   # the gateways.loopback.Loopback, once started

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 30.0) -> Any:
        """``fn(*args)`` on the loopback's loop (awaited when it is a coroutine); its result."""
        async def run() -> Any:
            result = fn(*args)
            return await result if inspect.isawaitable(result) else result
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def urls(self) -> dict[str, str]:
        return self.exchange.urls()

    def __enter__(self) -> ThreadedLoopback:
        from gateways.capture import read_capture
        from gateways.loopback import Loopback

        self._thread.start()
        records = read_capture(self._capture) if isinstance(self._capture, (str, Path)) else self._capture

        async def start() -> Any:
            lb = Loopback(records, **self._kwargs)
            await lb.start()
            return lb
        self.exchange = self.call(start)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.exchange is not None:
                self.call(self.exchange.stop)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()
