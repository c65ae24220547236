"""The user's own consumer in a few lines: iterate, or register callbacks; correct books included.

Iterate (blocking)::

    from consumers.user import Feed

    with Feed("ipc:///run/ff/binance.pub,ipc:///run/ff/binance.snap", ["trades.", "book.BINANCE.BTC-USDT."]) as feed:
        for event in feed.events():
            print(event)
            book = feed.book("BINANCE", "BTC-USDT")   # validated OrderBook or None

Callbacks::

    feed = Feed(SOURCES, ["trades.", "book."])
    feed.on(Trade, lambda ev: print(ev.price))
    feed.on("book.BINANCE.", lambda ev: print(feed.book(ev.exchange, ev.symbol).best_bid()))
    feed.run()            # until Ctrl-C / SIGTERM or feed.stop()

Async (``AsyncFeed``): ``async with AsyncFeed(...) as feed: async for event in feed.events(): ...``
and ``await feed.run()`` (callbacks may be coroutines).

A source is an endpoint string ``"PUB[,SNAPSHOT]"``, a :class:`bus.endpoints.GatewayEndpoint`,
or a list of them. Books are kept by :class:`bus.subscriber.Subscriber`: a gap never goes
unnoticed — you receive ``Gap`` then ``Reset`` and a fresh ``L2Snapshot`` (register them
like any other kind if you care).
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

from bus.endpoints import GatewayEndpoint
from bus.subscriber import AsyncSubscriber, Message, Subscriber
from cryptofeed_types.book import OrderBook
from cryptofeed_types.events import Event

Handler = Callable[[Event], Any]


def endpoints(sources: Any) -> list[GatewayEndpoint]:
    """Normalize ``"pub[,snap]"`` strings / GatewayEndpoints / lists of them."""
    if isinstance(sources, (str, GatewayEndpoint)):
        sources = [sources]
    out = []
    for s in sources:
        if isinstance(s, GatewayEndpoint):
            out.append(s)
        else:
            pub, _, snap = str(s).partition(",")
            out.append(GatewayEndpoint(pub.strip(), snap.strip() or None))
    return out


class _Dispatch:
    """Callback registry shared by Feed and AsyncFeed: by event class or by topic prefix."""

    def __init__(self) -> None:
        self._by_class: dict[type, list[Handler]] = {}
        self._by_prefix: list[tuple[str, Handler]] = []
        self.errors = 0

    def on(self, what: type | str, handler: Handler) -> Handler:
        """Call ``handler(event)`` for events of class ``what`` or topics starting with ``what``."""
        if isinstance(what, str):
            self._by_prefix.append((what, handler))
        else:
            self._by_class.setdefault(what, []).append(handler)
        return handler

    def handlers(self, msg: Message) -> list[Handler]:
        hs = list(self._by_class.get(type(msg.event), ()))
        hs.extend(h for p, h in self._by_prefix if msg.topic.startswith(p))
        return hs


class Feed(_Dispatch):
    """Blocking feed; see the module docstring."""

    def __init__(self, sources: Any, prefixes: Sequence[str] = ("",), *, books: bool = True,
                 **subscriber_options: Any) -> None:
        super().__init__()
        self.sub = Subscriber(endpoints(sources), list(prefixes), books=books, **subscriber_options)
        self._stop = threading.Event()

    def messages(self, timeout: float | None = None) -> Iterator[Message]:
        """Messages (topic, header, event) until :meth:`stop` (or ``timeout`` s of silence)."""
        while not self._stop.is_set():
            msg = self.sub.recv(0.2 if timeout is None else timeout)
            if msg is None:
                if timeout is not None:
                    return
                continue
            yield msg

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Events until :meth:`stop` (or ``timeout`` s of silence)."""
        for msg in self.messages(timeout):
            yield msg.event

    __iter__ = events

    def book(self, exchange: str, symbol: str) -> OrderBook | None:
        """The validated book of (exchange, symbol), or None while it is not (yet) valid."""
        return self.sub.book(exchange, symbol)

    def run(self, *, install_signals: bool = True, timeout: float | None = None) -> None:
        """Dispatch to the callbacks until stopped (SIGINT/SIGTERM stop it when ``install_signals``)."""
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stop())
        for msg in self.messages(timeout):
            for h in self.handlers(msg):
                try:
                    h(msg.event)
                except Exception:  # noqa: BLE001 - one bad callback must not end the feed
                    self.errors += 1
                    from loguru import logger
                    logger.opt(exception=True).error("callback failed on {}", msg.topic)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()
        self.sub.close()

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncFeed(_Dispatch):
    """asyncio feed; same API with ``async``: ``events()``, ``messages()``, ``await run()``."""

    def __init__(self, sources: Any, prefixes: Sequence[str] = ("",), *, books: bool = True,
                 **subscriber_options: Any) -> None:
        super().__init__()
        self.sub = AsyncSubscriber(endpoints(sources), list(prefixes), books=books, **subscriber_options)
        self._stop = asyncio.Event()

    async def messages(self, timeout: float | None = None) -> AsyncIterator[Message]:
        while not self._stop.is_set():
            msg = await self.sub.recv(0.2 if timeout is None else timeout)
            if msg is None:
                if timeout is not None:
                    return
                continue
            yield msg

    async def events(self, timeout: float | None = None) -> AsyncIterator[Event]:
        async for msg in self.messages(timeout):
            yield msg.event

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    def book(self, exchange: str, symbol: str) -> OrderBook | None:
        return self.sub.book(exchange, symbol)

    async def run(self, timeout: float | None = None) -> None:
        async for msg in self.messages(timeout):
            for h in self.handlers(msg):
                try:
                    r = h(msg.event)
                    if inspect.isawaitable(r):
                        await r
                except Exception:  # noqa: BLE001
                    self.errors += 1
                    from loguru import logger
                    logger.opt(exception=True).error("callback failed on {}", msg.topic)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self.sub.close()

    async def __aenter__(self) -> AsyncFeed:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()
