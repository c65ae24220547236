"""Planned rotation of a websocket connection, make-before-break: the state of one overlap.

An exchange that ends a connection after a lifetime (Binance: 24 h), or announces its end (OKX's
service-upgrade notice, Binance's ``serverShutdown``), would break every book it carries. The driver
(:meth:`gateways.driver.Driver._rotate` and ``_hand_over``) opens the next connection while the old one
runs, subscribes it, and lets both overlap; :class:`Rotation` holds that overlap: the new connection,
what it received (buffered with receipt times) and the texts the old one delivered meanwhile (counted),
so that at the handover each message is given to the adapter once. docs/gateways.md, "Planned rotation".
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException


async def close_quietly(ws: ClientConnection) -> None:
    """Close ``ws``, waiting at most 2 s for the handshake; a dead peer is no error."""
    try:
        async with asyncio.timeout(2.0):
            await ws.close()
    except (TimeoutError, WebSocketException, OSError):
        pass


class Rotation:
    """The planned replacement of one connection: ``due`` s after it opened (None: only when a
    :class:`~gateways.adapter.Rotate` sets ``requested``).

    While the new connection overlaps the old one, ``reader`` buffers the new one's messages with
    their receipt times and ``seen`` counts the old one's by text; ``switching`` says the old one
    was closed to hand over.
    """

    def __init__(self, due: float | None) -> None:
        self.due = due
        self.new: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.buffer: list[tuple[int, str | bytes]] = []
        self.seen: Counter[str | bytes] | None = None
        self.subscribed = False    # every subscribe message was sent on the new connection
        self.switching = False
        self.requested = asyncio.Event()   # a Rotate action: now

    def start(self, new: ClientConnection) -> None:
        self.new = new
        self.buffer = []
        self.seen = Counter()
        self.reader = asyncio.create_task(self._buffer(new))

    def ready(self) -> bool:
        """The new connection can take over: we closed the old one for it, or it is subscribed and up."""
        return self.switching or (self.subscribed and self.reader is not None and not self.reader.done())

    async def _buffer(self, ws: ClientConnection) -> None:
        append = self.buffer.append
        async for msg in ws:   # cancelling recv() loses no message (websockets' guarantee)
            append((time.time_ns(), msg))

    async def take(self) -> tuple[ClientConnection, list[tuple[int, str | bytes]], Counter[str | bytes]]:
        """Stop buffering; the new connection, its buffered messages and the old one's counts."""
        assert self.new is not None and self.seen is not None
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        out = (self.new, self.buffer, self.seen)
        self.new, self.reader, self.buffer, self.seen = None, None, [], None
        self.subscribed = self.switching = False
        # A request that came during the overlap was about the connection being replaced; one the
        # new connection's own messages make (fed after this) asks again.
        self.requested.clear()
        return out

    async def abandon(self) -> None:
        """Close a new connection that will not be handed over (a failure, or the session ended)."""
        if self.new is None:
            return
        new = self.new
        await self.take()
        await close_quietly(new)
