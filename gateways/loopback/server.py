"""The loopback exchange's server (:class:`Loopback`): websocket + REST on 127.0.0.1 serving a
capture, its fault commands, and :data:`PROFILES`, the profile it uses for each exchange id
(the package docstring, :mod:`gateways.loopback`, describes the whole)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from aiohttp import WSMsgType, web
from loguru import logger

from gateways.adapter import Fetch
from gateways.capture import CONNECT, HEADER, RECV, REST, Record
from gateways.loopback.base import ClientRequest, Profile
from gateways.loopback.binance import BinanceProfile
from gateways.loopback.bitmex import BitMEXProfile
from gateways.loopback.bybit import BybitProfile
from gateways.loopback.coinbase import CoinbaseProfile
from gateways.loopback.deribit import DeribitProfile
from gateways.loopback.kraken import KrakenProfile
from gateways.loopback.kraken_futures import KrakenFuturesProfile
from gateways.loopback.okx import OKXProfile
from gateways.replay import RestPool


def _refusal(status: int, retry_after: str | None, text: str) -> web.Response:
    """An exchange's error answer (a REST failure, a refused websocket handshake), with its
    ``Retry-After`` when it gives one."""
    return web.Response(status=status, text=text, headers=None if retry_after is None else {"Retry-After": retry_after})

PROFILES: dict[str, type[Profile]] = {
    "BINANCE": BinanceProfile,
    "BINANCE_FUTURES": BinanceProfile,
    "BINANCE_DELIVERY": BinanceProfile,
    "BITMEX": BitMEXProfile,
    "BYBIT": BybitProfile,
    "COINBASE": CoinbaseProfile,
    "DERIBIT": DeribitProfile,
    "KRAKEN": KrakenProfile,
    "KRAKEN_FUTURES": KrakenFuturesProfile,
    "OKX": OKXProfile,
}


class _Client:
    __slots__ = ("ws", "request", "streams", "subscribed", "number", "path", "conns", "state")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, number: int, conns: set[str]) -> None:
        self.ws = ws
        self.request = request
        self.streams: set[str] = set()
        self.subscribed = asyncio.Event()
        self.number = number
        self.path = request.path
        self.conns = conns            # the capture connections whose messages this client may get
        self.state: dict[str, Any] = {}   # per-connection state of the profile (e.g. sequence counters)


def _path(url: str | None) -> str:
    return (urlsplit(url).path or "/") if url else "/"


class Loopback:
    """The server (see the module docstring). ``async with Loopback(records) as lb: lb.ws_url ...``"""

    def __init__(self, records: Iterable[Record], *, exchange: str | None = None, profile: Profile | None = None,
                 subscribe_timeout: float = 5.0, keepalive_interval: float | None = 0.1,
                 rest_only: bool = False) -> None:
        # rest_only: the capture plays out (the truth moves on as released) with no websocket client
        # subscribed, for a client that only polls REST (the ccxt long tail).
        self.rest_only = rest_only
        self.records = list(records)
        header: dict[str, Any] = next((r.data for r in self.records if r.kind == HEADER), {}) or {}
        self.exchange = exchange or header.get("exchange") or ""
        self.profile = profile or PROFILES.get(self.exchange, Profile)()
        self.conn_path = {r.conn: _path(r.url) for r in self.records if r.kind == CONNECT}
        self.profile.conn_path = self.conn_path
        self.expected = self.profile.expected_streams(self.records)
        self.messages: list[tuple[str, str | bytes]] = [(r.conn, r.data) for r in self.records if r.kind == RECV]
        self.pool = RestPool()
        self._rest_records: list[Record] = []
        for r in self.records:
            if r.kind == REST:
                self.pool.add(r)
                self._rest_records.append(r)
                self.profile.load_snapshot(r.url or "", r.data)
        self.subscribe_timeout = subscribe_timeout
        self.errors: list[str] = []
        self.subscribe_messages: list[str | bytes] = []
        self.client_messages: list[tuple[int, str, frozenset[str]]] = []   # (conn number, op, streams)
        self.snapshots_sent: list[tuple[int, str]] = []                     # (conn number, stream)
        self.rest_requests: list[str] = []
        self.rest_times: list[float] = []           # time.monotonic() of each REST request
        self.ws_attempts: list[float] = []          # time.monotonic() of each websocket handshake
        self._ws_refusal: tuple[int, str | None] | None = None   # (status, Retry-After) handshakes get
        self.rest_headers: dict[str, str] = {}      # added to every REST answer (e.g. a used-weight header)
        self.connections = 0
        self.cursor = 0
        self.sent = 0
        self.skipped: list[tuple[int, str, str | bytes]] = []               # (cursor, book key, message)
        self.done = asyncio.Event()
        self._limit: int | None = 0
        self._wake = asyncio.Event()
        self._silent = False
        # (status, Retry-After) REST requests get instead (status 0: dropped unanswered)
        self._rest_failure: tuple[int, str | None] | None = None
        self.rest_failures = 0
        # (path, body) -> the body answered instead, e.g. an instrument list without the instrument
        # a test "lists" later by setting this back to None.
        self.rest_filter: Callable[[str, bytes], bytes] | None = None
        self._skip: set[str] = set()
        self._clients: list[_Client] = []
        self._lock = asyncio.Lock()   # a truth snapshot and the capture's messages never interleave
        self._runner: web.AppRunner | None = None
        self._sender: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self.keepalive_interval = keepalive_interval
        self.port = 0

    # ---- lifecycle
    async def start(self) -> Loopback:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handler)   # websockets on every path, REST otherwise
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

    def urls(self, exchange: str | None = None) -> dict[str, str]:
        """Adapter URL overrides pointing here: every endpoint the adapter of ``exchange``
        (default: the capture's) declares, with its path kept (``ws://…/ws/v5/public``,
        ``ws://…/v5/public/linear``) and ``wss``/``https`` replaced by ``ws``/``http``."""
        from gateways import exchanges

        name = exchange or self.exchange
        try:
            declared = dict(exchanges.get(name).urls)
        except KeyError:
            declared = {}
        if not declared:
            return {"ws": self.ws_url, "rest": self.rest_url}
        out = {}
        for key, url in declared.items():
            parts = urlsplit(url)
            base = self.ws_url if parts.scheme in ("ws", "wss") else self.rest_url
            out[key] = base + parts.path.rstrip("/") + (f"?{parts.query}" if parts.query else "")
        return out

    # ---- commands
    @property
    def released(self) -> int:
        """Where the next release starts: the index of the first capture message not released
        yet (the cursor, once the rest of the capture is released)."""
        return self.cursor if self._limit is None else max(self._limit, self.cursor)

    def release(self, n: int | None = None) -> None:
        """Let the next ``n`` capture messages go (``None``: all the rest)."""
        self._limit = None if n is None else self.released + n
        self._wake.set()

    def release_book_updates(self, key: str, n: int = 1) -> int:
        """Release the capture up to and including the ``n``-th next book message of book ``key``
        (so a test can act right after a given update); returns how many messages that releases."""
        released = self._release_through(n, lambda msg, conn: self.profile.book_key(msg, conn) == key)
        if released is None:
            raise ValueError(f"the capture has fewer than {n} more book messages of {key!r}")
        return released

    def _release_through(self, n: int, hit: Callable[[str | bytes, str], bool]) -> int | None:
        """Release the capture through the ``n``-th next message ``hit(message, conn)`` is true of;
        returns how many messages that releases (None, and nothing released: fewer than ``n``)."""
        start = self.released
        seen = 0
        for i in range(start, len(self.messages)):
            conn, msg = self.messages[i]
            try:
                found = hit(msg, conn)
            except Exception:  # noqa: BLE001 - odd capture messages are no book updates
                found = False
            if found:
                seen += 1
                if seen == n:
                    self.release(i + 1 - start)
                    return i + 1 - start
        return None

    def release_first_books(self, keys: Iterable[str]) -> int:
        """Release the capture far enough that the first book message (the recorded snapshot)
        of every one of ``keys`` goes out; returns how many more messages that releases."""
        wanted = set(keys)
        start = self.released
        last = -1
        for i in range(self.cursor, len(self.messages)):
            if not wanted:
                break
            conn, msg = self.messages[i]
            try:
                key = self.profile.book_key(msg, conn)
            except Exception:  # noqa: BLE001
                key = None
            if key in wanted:
                wanted.discard(key)
                last = i
        if wanted:
            raise ValueError(f"the capture has no more book messages of {sorted(wanted)}")
        n = max(0, last + 1 - start)
        if n:
            self.release(n)
        return n

    def release_past_gap(self, n: int = 1) -> int:
        """After the last :meth:`break_sequence` skip: release the capture through the ``n``-th
        later message that reveals the gap to a client (:meth:`Profile.reveals`)."""
        if not self.skipped:
            raise ValueError("nothing was skipped yet")
        _, key, skipped_msg = self.skipped[-1]
        released = self._release_through(n, lambda msg, conn: self.profile.reveals(key, skipped_msg, msg, conn))
        if released is None:
            raise ValueError(f"no {n} later messages of the capture reveal the gap in {key!r}")
        return released

    def silence(self) -> None:
        """Stop sending (connections stay open) until :meth:`resume`."""
        self._silent = True

    def resume(self) -> None:
        self._silent = False
        self._wake.set()

    async def drop(self, numbers: Iterable[int] | None = None) -> int:
        """Abort every websocket connection, or those numbered ``numbers`` (1 = the first one
        accepted; no close handshake); returns how many."""
        wanted = None if numbers is None else set(numbers)
        n = 0
        for c in list(self._clients):
            if wanted is not None and c.number not in wanted:
                continue
            transport = c.request.transport
            if transport is not None:
                transport.abort()
                n += 1
        return n

    async def garbage(self, frames: Iterable[str | bytes] = ("{not json", b"\x00\xff\xfe garbage", "[]")) -> None:
        """Send malformed frames to every connection."""
        await self.broadcast(frames)

    async def broadcast(self, frames: Iterable[str | bytes]) -> None:
        """Send these frames to every connection now (e.g. an exchange's notice), between capture
        messages, as the exchange would on each (its per-connection rewrite: Coinbase's sequence_num)."""
        frames = list(frames)
        async with self._lock:
            for c in self.live_clients():
                for frame in frames:
                    await self._send(c, frame)

    def fail_rest(self, status: int = 503, retry_after: str | None = None) -> None:
        """Fail every REST request until :meth:`restore_rest`: answered with ``status`` (an
        overloaded or broken API; ``retry_after``: its ``Retry-After`` header, e.g. for 429), or,
        with 0, dropped without an answer (a dead server)."""
        self._rest_failure = (status, retry_after)

    def restore_rest(self) -> None:
        self._rest_failure = None

    def refuse_ws(self, status: int = 429, retry_after: str | None = None) -> None:
        """Answer every websocket handshake with ``status`` (and ``Retry-After``) instead of the
        upgrade, until :meth:`accept_ws` (an exchange refusing connections: too many, or banned)."""
        self._ws_refusal = (status, retry_after)

    def accept_ws(self) -> None:
        self._ws_refusal = None

    def break_sequence(self, key: str) -> None:
        """Skip the next book update of book ``key`` (the profile's truth key: the exchange
        symbol; ``category/SYMBOL`` for Bybit); the truth still applies it, so the client
        sees the exchange's own kind of sequence gap."""
        self._skip.add(key)

    def live_clients(self) -> list[_Client]:
        return [c for c in self._clients if c.subscribed.is_set() and not c.ws.closed]

    def subscribed_streams(self) -> set[str]:
        """Streams some live connection is subscribed to now."""
        return set().union(*(c.streams for c in self.live_clients()))

    def fully_subscribed(self) -> bool:
        """Every stream the capture subscribed is subscribed by a live connection."""
        return bool(self.live_clients()) and self.expected <= self.subscribed_streams()

    async def wait_subscribed(self, timeout: float = 10.0, *, connections: int | None = None) -> None:
        """Until every stream of the capture is subscribed by a live connection (for a capture
        without recorded subscriptions: until one connection subscribed) and, when given,
        ``connections`` connections were accepted in all."""
        async with asyncio.timeout(timeout):
            while not (self.fully_subscribed() and (connections is None or self.connections >= connections)):
                await asyncio.sleep(0.01)

    async def wait_sent(self, timeout: float = 30.0) -> None:
        """Until every released message has been passed (sent or skipped)."""
        async with asyncio.timeout(timeout):
            while self._limit is None or self.cursor < min(self._limit, len(self.messages)):
                if self._limit is None and self.cursor >= len(self.messages):
                    return
                await asyncio.sleep(0.01)

    # ---- websocket side
    async def _handler(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            self.ws_attempts.append(time.monotonic())
            if self._ws_refusal is not None:
                return _refusal(*self._ws_refusal, '{"code":-1003,"msg":"Too many requests."}')
            return await self._ws_handler(request)
        return await self._rest_handler(request)

    async def _send(self, c: _Client, frame: str | bytes) -> bool:
        frame = self.profile.outgoing(frame, c)
        try:
            if isinstance(frame, bytes):
                await c.ws.send_bytes(frame)
            else:
                await c.ws.send_str(frame)
            return True
        except (ConnectionResetError, RuntimeError):
            return False

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, compress=False)
        await ws.prepare(request)
        self.connections += 1
        conns = {conn for conn, path in self.conn_path.items() if path.rstrip("/") == request.path.rstrip("/")}
        client = _Client(ws, request, self.connections, conns or set(self.conn_path) or {""})
        self._clients.append(client)
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    req = self.profile.parse_client(msg.data)
                except (ValueError, orjson.JSONDecodeError) as exc:
                    self.subscribe_messages.append(msg.data)
                    self.errors.append(f"conn {client.number}: {exc}")
                    continue
                if req.op != "ping":
                    self.subscribe_messages.append(msg.data)
                    self.client_messages.append((client.number, req.op, req.streams))
                async with self._lock:
                    await self._on_request(client, req)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.remove(client)
        return ws

    async def _on_request(self, client: _Client, req: ClientRequest) -> None:
        for reply in req.replies:
            await self._send(client, reply)
        if req.op == "unsubscribe":
            client.streams -= req.streams
        elif req.op == "subscribe":
            unexpected = {s for s in req.streams - self.expected if not self.profile.system_stream(s)} \
                if self.expected else set()
            if unexpected:
                self.errors.append(f"conn {client.number}: unexpected streams {sorted(unexpected)}")
            client.streams |= req.streams
            # A book the capture's snapshot was already passed for (a resubscribe, a reconnect):
            # the exchange answers with a fresh snapshot, the truth at this point.
            for stream in sorted(req.streams):
                for frame in self.profile.snapshot_frames(stream, client.path):
                    if await self._send(client, frame):
                        self.snapshots_sent.append((client.number, stream))
            client.subscribed.set()
            self._wake.set()

    def _targets(self, conn: str, message: str | bytes) -> list[_Client]:
        stream = self.profile.stream_of(message)
        return [c for c in self.live_clients()
                if conn in c.conns and (stream is None or stream in c.streams)]

    async def _send_loop(self) -> None:
        profile = self.profile
        messages = self.messages
        while True:
            can_send = (not self._silent and self.cursor < len(messages)
                        and (self._limit is None or self.cursor < self._limit)
                        and (self.rest_only or any(c.subscribed.is_set() for c in self._clients)))
            if not can_send:
                if self.cursor >= len(messages):
                    self.done.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            async with self._lock:
                conn, msg = messages[self.cursor]
                self.cursor += 1
                skip = False
                try:
                    key = profile.book_key(msg, conn)
                    skip = key is not None and key in self._skip and profile.detectable(msg, conn)
                    msg = profile.apply_truth(msg, conn)
                except Exception as exc:  # noqa: BLE001 - the capture itself may hold odd messages
                    logger.debug("loopback: truth not updated from {!r:.80}: {}", msg, exc)
                if skip:
                    assert key is not None
                    self._skip.discard(key)
                    self.skipped.append((self.cursor - 1, key, messages[self.cursor - 1][1]))
                    for c in self._targets(conn, msg):
                        profile.skipped(msg, c)
                    continue
                for c in self._targets(conn, msg):
                    if await self._send(c, msg):
                        self.sent += 1
            if self.cursor % 50 == 0:
                await asyncio.sleep(0)  # let clients and commands run

    async def _keepalive_loop(self) -> None:
        msg = self.profile.keepalive()
        assert msg is not None and self.keepalive_interval
        while True:
            await asyncio.sleep(self.keepalive_interval)
            if self._silent:
                continue
            async with self._lock:
                for c in self.live_clients():
                    await self._send(c, msg)

    # ---- REST side
    def _recorded(self, url: str) -> Record | None:
        rec = self.pool.take(Fetch(url), loose=False)
        if rec is not None:
            self.pool.add(rec)  # recorded responses can be asked for again (reconnects)
            return rec
        # The same path, one query a subset of the other (a capture asking ``&status=Trading`` more).
        parts = urlsplit(url)
        query = set(parse_qsl(parts.query))
        for r in self._rest_records:
            rp = urlsplit(r.url or "")
            rq = set(parse_qsl(rp.query))
            if rp.path == parts.path and (query <= rq or rq <= query):
                return r
        return None

    async def _rest_handler(self, request: web.Request) -> web.Response:
        url = str(request.url)
        self.rest_requests.append(url)
        self.rest_times.append(time.monotonic())
        if self._rest_failure is not None:
            self.rest_failures += 1
            status, retry_after = self._rest_failure
            if status == 0 and request.transport is not None:
                request.transport.abort()
            return _refusal(status or 503, retry_after, '{"code":-1,"msg":"Service unavailable"}')
        query = dict(request.query)
        body = self.profile.rest(request.path, query)
        if body is None:
            rec = self._recorded(url)
            if rec is not None:
                body = rec.data if isinstance(rec.data, bytes) else str(rec.data).encode()
        if body is None:
            body = self.profile.rest_fallback(request.path, query)
        if body is None:
            return web.Response(status=404, text='{"code":-1121,"msg":"Invalid symbol."}')
        if self.rest_filter is not None:
            body = self.rest_filter(request.path, body)
        return web.Response(body=body, content_type="application/json", headers=self.rest_headers or None)
