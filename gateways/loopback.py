"""A loopback exchange: websocket + REST server on 127.0.0.1 (random port) serving a capture.

Gateways are tested end to end through it with their real network code (the adapter's
``urls`` point here). It

- accepts websocket connections on the exchange's stream path, checks the subscribe
  messages it receives against what the capture subscribed (:attr:`Loopback.errors`
  lists every mismatch) and then streams the capture's received messages to the
  connection that subscribed to each stream;
- answers REST requests: book snapshots from a *truth* book it maintains (the recorded
  snapshot plus every update of the capture it has passed, sent or not), other URLs
  from the capture's recorded responses (instruments);
- on command: :meth:`drop` (abort every connection), :meth:`silence` / :meth:`resume`,
  :meth:`garbage` (send malformed frames), :meth:`break_sequence` (skip one book update
  of a symbol, which the truth still includes, so the client sees a sequence gap).

Streaming is gated: :meth:`release` lets the next n messages go (``None``: all), so a
test can act at a known point of the capture. Exchange specifics (stream names, book
formats) live in a :class:`Profile`; :data:`PROFILES` maps exchange ids to them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from aiohttp import WSMsgType, web
from loguru import logger

from gateways.adapter import Fetch
from gateways.capture import CONNECT, HEADER, RECV, REST, SEND, Record
from gateways.replay import RestPool


class Profile:
    """Exchange-specific knowledge of the loopback (subclass per exchange)."""

    ws_path = "/stream"

    def __init__(self) -> None:
        self.truth: dict[str, dict[str, Any]] = {}   # exchange symbol → {"bids", "asks", "seq"}

    def expected_streams(self, records: list[Record]) -> set[str]:
        """The streams the capture subscribed (what a correct client must ask for)."""
        return set()

    def subscribed(self, message: str | bytes) -> tuple[set[str], str | bytes | None]:
        """Streams a client message subscribes and the reply to send (None: no reply)."""
        return set(), None

    def stream_of(self, message: str | bytes) -> str | None:
        """The stream a capture message belongs to (None: send to every connection)."""
        return None

    def book_symbol(self, message: str | bytes) -> str | None:
        """Exchange symbol when the message is a book update, else None."""
        return None

    def apply_truth(self, message: str | bytes) -> None:
        """Update the truth book from a capture message (whether or not it is sent)."""

    def load_snapshot(self, url: str, body: str | bytes) -> None:
        """A recorded REST snapshot: the truth book starts here."""

    def rest(self, path: str, query: dict[str, str]) -> bytes | None:
        """Answer a REST request from the truth (None: use the recorded responses)."""
        return None

    def keepalive(self) -> str | bytes | None:
        """A harmless message sent while the capture is held back (None: stay quiet), so a
        client's silence watchdog only fires on :meth:`Loopback.silence`."""
        return None


class BinanceProfile(Profile):
    """Binance spot/futures: combined streams, SUBSCRIBE messages, depth snapshots with lastUpdateId."""

    def expected_streams(self, records: list[Record]) -> set[str]:
        streams: set[str] = set()
        for rec in records:
            if rec.kind == CONNECT and rec.url and "streams=" in rec.url:
                streams.update(rec.url.split("streams=", 1)[1].split("/"))
            elif rec.kind == SEND:
                try:
                    msg = orjson.loads(rec.data)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(msg, dict) and msg.get("method") == "SUBSCRIBE":
                    streams.update(msg.get("params") or ())
        return streams

    def subscribed(self, message: str | bytes) -> tuple[set[str], str | bytes | None]:
        msg = orjson.loads(message)
        if not isinstance(msg, dict) or msg.get("method") != "SUBSCRIBE" or not isinstance(msg.get("params"), list):
            raise ValueError(f"not a SUBSCRIBE message: {message!r:.200}")
        return set(msg["params"]), orjson.dumps({"result": None, "id": msg.get("id")}).decode()

    def stream_of(self, message: str | bytes) -> str | None:
        head = message[:120] if isinstance(message, str) else message[:120].decode("latin-1")
        start = head.find('"stream":"')
        if start < 0:
            return None
        start += 10
        return head[start:head.index('"', start)]

    def book_symbol(self, message: str | bytes) -> str | None:
        stream = self.stream_of(message)
        if stream and "@depth" in stream:
            return stream.split("@", 1)[0].upper()
        return None

    def load_snapshot(self, url: str, body: str | bytes) -> None:
        query = dict(parse_qsl(urlsplit(url).query))
        xs = query.get("symbol")
        if not xs or xs in self.truth:
            return
        snap = orjson.loads(body)
        self.truth[xs] = {"bids": {p: q for p, q in snap["bids"]}, "asks": {p: q for p, q in snap["asks"]},
                          "seq": snap["lastUpdateId"], "extra": {k: v for k, v in snap.items()
                                                                 if k not in ("bids", "asks", "lastUpdateId")}}

    def apply_truth(self, message: str | bytes) -> None:
        d = orjson.loads(message).get("data") or {}
        if d.get("e") != "depthUpdate":
            return
        book = self.truth.get(d["s"])
        if book is None or d["u"] <= book["seq"]:
            return
        for side, levels in (("bids", d["b"]), ("asks", d["a"])):
            lv = book[side]
            for p, q in levels:
                if float(q) == 0:
                    lv.pop(p, None)
                else:
                    lv[p] = q
        book["seq"] = d["u"]

    def rest(self, path: str, query: dict[str, str]) -> bytes | None:
        if not path.endswith("/depth"):
            return None
        book = self.truth.get(query.get("symbol", ""))
        if book is None:
            return None
        bids = sorted(book["bids"].items(), key=lambda kv: float(kv[0]), reverse=True)
        asks = sorted(book["asks"].items(), key=lambda kv: float(kv[0]))
        return orjson.dumps({"lastUpdateId": book["seq"], **book["extra"], "bids": bids, "asks": asks})

    def keepalive(self) -> str | bytes | None:
        return '{"result":null,"id":0}'

    def truth_book(self, xs: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The truth as (bids, asks) best first, in the exchange's strings."""
        book = self.truth[xs]
        bids = sorted(book["bids"].items(), key=lambda kv: float(kv[0]), reverse=True)
        asks = sorted(book["asks"].items(), key=lambda kv: float(kv[0]))
        return bids, asks


PROFILES: dict[str, type[Profile]] = {
    "BINANCE": BinanceProfile,
    "BINANCE_FUTURES": BinanceProfile,
    "BINANCE_DELIVERY": BinanceProfile,
}


class _Client:
    __slots__ = ("ws", "request", "streams", "subscribed", "number")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, number: int) -> None:
        self.ws = ws
        self.request = request
        self.streams: set[str] = set()
        self.subscribed = asyncio.Event()
        self.number = number


class Loopback:
    """The server (see the module docstring). ``async with Loopback(records) as lb: lb.ws_url ...``"""

    def __init__(self, records: Iterable[Record], *, exchange: str | None = None, profile: Profile | None = None,
                 subscribe_timeout: float = 5.0, keepalive_interval: float | None = 0.1) -> None:
        self.records = list(records)
        header = next((r.data for r in self.records if r.kind == HEADER), {}) or {}
        self.exchange = exchange or header.get("exchange") or ""
        self.profile = profile or PROFILES.get(self.exchange, Profile)()
        self.expected = self.profile.expected_streams(self.records)
        self.messages = [r.data for r in self.records if r.kind == RECV]
        self.pool = RestPool()
        for r in self.records:
            if r.kind == REST:
                self.pool.add(r)
                self.profile.load_snapshot(r.url or "", r.data)
        self.subscribe_timeout = subscribe_timeout
        self.errors: list[str] = []
        self.subscribe_messages: list[str | bytes] = []
        self.rest_requests: list[str] = []
        self.connections = 0
        self.cursor = 0
        self.sent = 0
        self.done = asyncio.Event()
        self._limit: int | None = 0
        self._wake = asyncio.Event()
        self._silent = False
        self._skip: set[str] = set()
        self._clients: list[_Client] = []
        self._runner: web.AppRunner | None = None
        self._sender: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self.keepalive_interval = keepalive_interval
        self.port = 0

    # ---- lifecycle
    async def start(self) -> Loopback:
        app = web.Application()
        app.router.add_get(self.profile.ws_path, self._ws_handler)
        app.router.add_route("GET", "/{tail:.*}", self._rest_handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._sender = asyncio.create_task(self._send_loop())
        if self.keepalive_interval and self.profile.keepalive() is not None:
            self._keepalive = asyncio.create_task(self._keepalive_loop())
        return self

    async def stop(self) -> None:
        for task in (self._sender, self._keepalive):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for c in list(self._clients):
            transport = c.request.transport
            if transport is not None:
                transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Loopback:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def urls(self) -> dict[str, str]:
        """Adapter URL overrides pointing here (``ws`` and ``rest``)."""
        return {"ws": self.ws_url, "rest": self.rest_url}

    # ---- commands
    def release(self, n: int | None = None) -> None:
        """Let the next ``n`` capture messages go (``None``: all the rest)."""
        self._limit = None if n is None else (self.cursor if self._limit is None else max(self._limit, self.cursor)) + n
        self._wake.set()

    def silence(self) -> None:
        """Stop sending (connections stay open) until :meth:`resume`."""
        self._silent = True

    def resume(self) -> None:
        self._silent = False
        self._wake.set()

    async def drop(self) -> int:
        """Abort every websocket connection (no close handshake); returns how many."""
        n = 0
        for c in list(self._clients):
            transport = c.request.transport
            if transport is not None:
                transport.abort()
                n += 1
        return n

    async def garbage(self, frames: Iterable[str | bytes] = ("{not json", b"\x00\xff\xfe garbage", "[]")) -> None:
        for c in list(self._clients):
            for frame in frames:
                if isinstance(frame, bytes):
                    await c.ws.send_bytes(frame)
                else:
                    await c.ws.send_str(frame)

    def break_sequence(self, exchange_symbol: str) -> None:
        """Skip the next book update of ``exchange_symbol`` (the truth still applies it)."""
        self._skip.add(exchange_symbol)

    async def wait_subscribed(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not any(c.subscribed.is_set() for c in self._clients):
                await asyncio.sleep(0.01)

    async def wait_sent(self, timeout: float = 30.0) -> None:
        """Until every released message has been passed (sent or skipped)."""
        async with asyncio.timeout(timeout):
            while self._limit is None or self.cursor < min(self._limit, len(self.messages)):
                if self._limit is None and self.cursor >= len(self.messages):
                    return
                await asyncio.sleep(0.01)

    # ---- websocket side
    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, compress=False)
        await ws.prepare(request)
        self.connections += 1
        client = _Client(ws, request, self.connections)
        self._clients.append(client)
        pending_expected = set(self.expected)
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                self.subscribe_messages.append(msg.data)
                try:
                    streams, reply = self.profile.subscribed(msg.data)
                except (ValueError, orjson.JSONDecodeError) as exc:
                    self.errors.append(f"conn {client.number}: {exc}")
                    continue
                unexpected = streams - self.expected if self.expected else set()
                if unexpected:
                    self.errors.append(f"conn {client.number}: unexpected streams {sorted(unexpected)}")
                client.streams |= streams
                pending_expected -= streams
                if reply is not None:
                    await ws.send_str(reply) if isinstance(reply, str) else await ws.send_bytes(reply)
                if not pending_expected or not self.expected:
                    client.subscribed.set()
                    self._wake.set()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if self.expected and pending_expected and client.subscribed.is_set() is False and client.streams:
                self.errors.append(f"conn {client.number}: never subscribed {sorted(pending_expected)[:10]}")
            self._clients.remove(client)
        return ws

    def _target(self, message: str | bytes) -> list[_Client]:
        stream = self.profile.stream_of(message)
        live = [c for c in self._clients if c.subscribed.is_set() and not c.ws.closed]
        if stream is None:
            return live
        return [c for c in live if stream in c.streams]

    async def _send_loop(self) -> None:
        profile = self.profile
        messages = self.messages
        while True:
            can_send = (not self._silent and self.cursor < len(messages)
                        and (self._limit is None or self.cursor < self._limit)
                        and any(c.subscribed.is_set() for c in self._clients))
            if not can_send:
                if self.cursor >= len(messages):
                    self.done.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            msg = messages[self.cursor]
            self.cursor += 1
            try:
                profile.apply_truth(msg)
            except Exception as exc:  # noqa: BLE001 - the capture itself may hold odd messages
                logger.debug("loopback: truth not updated from {!r:.80}: {}", msg, exc)
            xs = profile.book_symbol(msg)
            if xs is not None and xs in self._skip:
                self._skip.discard(xs)
                continue
            for c in self._target(msg):
                try:
                    if isinstance(msg, bytes):
                        await c.ws.send_bytes(msg)
                    else:
                        await c.ws.send_str(msg)
                    self.sent += 1
                except (ConnectionResetError, RuntimeError):
                    pass
            if self.cursor % 50 == 0:
                await asyncio.sleep(0)  # let clients and commands run

    async def _keepalive_loop(self) -> None:
        msg = self.profile.keepalive()
        assert msg is not None and self.keepalive_interval
        while True:
            await asyncio.sleep(self.keepalive_interval)
            if self._silent:
                continue
            for c in [c for c in self._clients if c.subscribed.is_set() and not c.ws.closed]:
                try:
                    await (c.ws.send_str(msg) if isinstance(msg, str) else c.ws.send_bytes(msg))
                except (ConnectionResetError, RuntimeError):
                    pass

    # ---- REST side
    async def _rest_handler(self, request: web.Request) -> web.Response:
        url = str(request.url)
        self.rest_requests.append(url)
        query = dict(request.query)
        body = self.profile.rest(request.path, query)
        if body is None:
            rec = self.pool.take(Fetch(url), loose=False)
            if rec is not None:
                self.pool.add(rec)  # recorded responses can be asked for again (reconnects)
                body = rec.data if isinstance(rec.data, bytes) else str(rec.data).encode()
        if body is None:
            return web.Response(status=404, text='{"code":-1121,"msg":"Invalid symbol."}')
        return web.Response(body=body, content_type="application/json")
