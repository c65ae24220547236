"""The asyncio driver: performs every I/O a sans-I/O adapter asks for and publishes its events.

- websockets (``websockets.asyncio.client``) for streams: one task per
  :class:`~gateways.adapter.ConnectionSpec`, reconnected forever with capped, jittered
  exponential backoff (at least the ``Retry-After`` of a handshake the exchange refused with an
  HTTP status); subscribe messages sent staggered (``subscribe_interval``);
  websocket ping frames (``ping=None``) or an application ping message every
  ``ping_interval``; a silence watchdog closes a connection that received nothing for
  ``silence_timeout`` seconds.
- Planned rotation: a connection the exchange closes after a lifetime (``spec.max_lifetime``,
  Binance's 24 h) is replaced ``rotate_before`` s ahead, make-before-break: the new one is opened
  and subscribed while the old one runs, both overlap ``rotate_overlap`` s, then the old one is
  closed and the new one's buffered messages are handed to the adapter, those the old one
  delivered too taken out (an exchange sends a message to every subscribed connection with the
  same text): no disconnect, no Gap, no resync, no duplicate (the overlap's state:
  :class:`gateways.rotation.Rotation`). Counted: ``rotations``, ``rotation_duplicates``,
  ``rotation_failures``.
- aiohttp for REST, every request charged to a per-exchange weight budget
  (:class:`RestBudget`, a token bucket of ``rest_weight_per_minute``), failures retried by
  the adapter (``rest_failed``), never by a loop here. A 429/418 empties the bucket, and its
  ``Retry-After`` holds every request until then; the used or remaining weight an exchange
  reports (the adapter's ``rest_used_weight_header`` / ``rest_remaining_header``) caps what is left.
- Proxies (``http://`` for REST and websockets; ``socks5://`` where python-socks /
  aiohttp-socks are installed): one, or a pool (:class:`ProxyPool`) taken in turn, so that
  each websocket (re)connection and each REST request goes through the next proxy; a dead
  proxy costs one reconnect, not the gateway.
- Publishes every event through the bus Publisher, and Status on connect/disconnect
  (``publisher.set_feed_state(conn_id, ...)``); counters go to ``publisher.count``.
- Optionally records every frame and REST response with its HTTP status (0: no response)
  (:class:`~gateways.capture.CaptureWriter`), so a replay sees the same 429s and 5xxs.
- Logs with ``exchange`` bound (and ``symbol`` for a resync or a symbol's REST request):
  reconnects, resyncs and what they became, REST failures; per-symbol lines are rate-limited
  (:class:`~gateways.adapter.LogLimit`), counters count every one.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import importlib.util
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from loguru import logger
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI, WebSocketException

from gateways.adapter import (
    Adapter,
    Close,
    ConnectionSpec,
    Fetch,
    InstrumentPages,
    LogLimit,
    Open,
    Output,
    Resync,
    Rotate,
    Send,
    describe_resync,
)
from gateways.rotation import Rotation, close_quietly


@dataclass
class DriverConfig:
    """Connection behaviour; every value can be set from the gateway config."""

    backoff_initial: float = 0.5     # first reconnect delay (s)
    backoff_max: float = 30.0        # cap of the exponential backoff (s)
    backoff_jitter: float = 0.5      # delay is multiplied by uniform(1 - jitter, 1)
    stable_after: float = 10.0       # a connection up this long resets the backoff
    open_timeout: float = 10.0
    rest_timeout: float = 10.0
    max_message_size: int = 1 << 24
    # None: no proxy (not even from the environment); a list: a pool used in turn (ProxyPool).
    ws_proxy: str | Sequence[str] | None = None
    rest_proxy: str | Sequence[str] | None = None
    instrument_retry: float = 5.0    # seconds between attempts to load instruments
    silence_timeout: float | None = None   # overrides every spec's silence_timeout when set
    # Planned rotation of connections the exchange closes after a lifetime (spec.max_lifetime):
    rotate_before: float = 600.0     # replace a connection this long before its lifetime ends (s)
    rotate_overlap: float = 2.0      # both connections run this long after the new one subscribed (s)
    connection_lifetime: float | None = None   # replace them after this long instead (s; tests, caution)
    ccxt: Mapping[str, Any] | None = None  # the long tail's ccxt exchange config (gateways/longtail_driver.py)


PROXY_SCHEMES = ("http", "https", "socks4", "socks5", "socks5h")


def proxy_problem(url: str, *, websocket: bool) -> str | None:
    """Why ``url`` can't serve as a proxy here (None: it can): scheme, host, SOCKS support."""
    parts = urlsplit(url)
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname:
        return f"{redact(url)!r}: a proxy is scheme://[user:password@]host:port, scheme one of {', '.join(PROXY_SCHEMES)}"
    if parts.scheme.startswith("socks"):
        module, package = ("python_socks", "python-socks") if websocket else ("aiohttp_socks", "aiohttp-socks")
        if importlib.util.find_spec(module) is None:
            return (f"{redact(url)!r}: SOCKS proxies for {'websockets' if websocket else 'REST'} need the "
                    f"{package} package (pip install {package})")
    return None


def redact(url: str) -> str:
    """A proxy URL without its credentials, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]


class ProxyPool:
    """Proxies taken in turn (round robin), sans-I/O.

    Each websocket connection attempt and each REST request takes the next one, so the load
    spreads over the pool and a reconnect after a failure goes through another proxy. Empty
    (no proxy configured) gives None.
    """

    def __init__(self, proxies: str | Sequence[str] | None) -> None:
        if proxies is None:
            self.proxies: list[str] = []
        elif isinstance(proxies, str):
            self.proxies = [proxies]
        else:
            self.proxies = list(proxies)
        self._next = 0

    def take(self) -> str | None:
        if not self.proxies:
            return None
        proxy = self.proxies[self._next % len(self.proxies)]
        self._next += 1
        return proxy

    def __len__(self) -> int:
        return len(self.proxies)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """An HTTP ``Retry-After`` value in seconds from now: delay-seconds or an HTTP date (None when
    absent or unreadable)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, cfg: DriverConfig, rng: random.Random | None = None) -> float:
    """Delay before reconnect number ``attempt`` (0-based): capped exponential, jittered."""
    base = min(cfg.backoff_max, cfg.backoff_initial * (2 ** min(attempt, 30)))
    r = (rng or random).uniform(1.0 - cfg.backoff_jitter, 1.0)
    return base * r


class RestBudget:
    """Token bucket of request weight per minute (refilled continuously).

    The exchange's own word overrides it: :meth:`pause` (a 429/418 with ``Retry-After``: nothing
    is sent before then) and :meth:`sync_used` (the weight the exchange says this IP used in its
    window, e.g. Binance's ``X-MBX-USED-WEIGHT-1M``, which counts other processes on the IP too).
    """

    def __init__(self, per_minute: int, clock: Any = time.monotonic) -> None:
        self.capacity = float(max(per_minute, 1))
        self.rate = self.capacity / 60.0
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self.paused_until = 0.0
        self.waited = 0.0
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the exchange asked: Retry-After), with an empty bucket after."""
        self.paused_until = max(self.paused_until, self.clock() + max(seconds, 0.0))
        self.tokens = 0.0

    def sync_used(self, used: float) -> None:
        """The exchange counts ``used`` weight in its current window: no more left than the rest."""
        self.sync_left(self.capacity - used)

    def sync_left(self, left: float) -> None:
        """The exchange says ``left`` weight remains in its current window: no more than that."""
        self._refill()
        self.tokens = max(0.0, min(self.tokens, left))

    def try_acquire(self, weight: int) -> float:
        """Take ``weight`` now and return 0, or return the seconds to wait before it is available."""
        paused = self.paused_until - self.clock()
        if paused > 0:
            return paused
        self._refill()
        need = min(float(weight), self.capacity)   # a request heavier than the bucket waits for a full one
        if self.tokens >= need:
            self.tokens -= need
            return 0.0
        return (need - self.tokens) / self.rate

    async def acquire(self, weight: int) -> None:
        async with self._lock:  # FIFO: a heavy request is not starved by light ones
            while True:
                wait = self.try_acquire(weight)
                if wait <= 0:
                    return
                self.waited += wait
                await asyncio.sleep(wait)


class _Watchdog:
    """Aborts a websocket that received nothing for ``timeout`` seconds."""

    def __init__(self, ws: ClientConnection, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.last = time.monotonic()
        self.fired = False

    async def run(self) -> None:
        step = max(min(self.timeout / 4, 1.0), 0.01)
        while True:
            await asyncio.sleep(step)
            if time.monotonic() - self.last >= self.timeout:
                self.fired = True
                transport = getattr(self.ws, "transport", None)
                if transport is not None:
                    transport.abort()   # no close handshake with a dead peer
                return


class Driver:
    """Runs one adapter against the network. ``await driver.run()`` until ``stop()``."""

    def __init__(self, adapter: Adapter, publisher: Any, *, config: DriverConfig | None = None,
                 recorder: Any = None, instruments: Mapping[str, Any] | None = None) -> None:
        self.adapter = adapter
        self.publisher = publisher
        self.config = config or DriverConfig()
        self.recorder = recorder
        self.preloaded_instruments = instruments
        self.budget = RestBudget(adapter.rest_weight_per_minute)
        # Appended to connection ids in Status (set_feed_state): a gateway that runs several
        # adapters of one exchange (symbols listed after its start, gateways.process) keeps the
        # feeds of each apart, e.g. "BINANCE_FUTURES.0" and "BINANCE_FUTURES.0+1".
        self.feed_suffix = ""
        self.counters: Counter[str] = Counter()
        self.ws: dict[str, ClientConnection] = {}
        self._rotations: dict[str, Rotation] = {}   # of the connections up now
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._aux: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._socks_sessions: dict[str, aiohttp.ClientSession] = {}   # one per SOCKS proxy of the REST pool
        self._ws_proxies = ProxyPool(self.config.ws_proxy)
        self._rest_proxies = ProxyPool(self.config.rest_proxy)
        self._rng = random.Random()
        self.log_limit = LogLimit()   # resync and REST failure lines per (what, symbol)
        self.log = logger.bind(exchange=adapter.exchange)

    # ------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        async with self.rest_session():
            try:
                await self._load_instruments()
                if self._stop.is_set():
                    return
                for spec in self._connection_specs():
                    self._start_connection(spec)
                if self.adapter.timer_interval:
                    self._spawn(self._timer(self.adapter.timer_interval))
                await self._stop.wait()
            finally:
                await self._shutdown()

    @contextlib.asynccontextmanager
    async def rest_session(self) -> AsyncIterator[None]:
        """The REST session(s) every request of this driver goes through, for the block's duration
        (proxies checked first: a bad one raises here, before any request)."""
        for pool, websocket in ((self._ws_proxies, True), (self._rest_proxies, False)):
            for proxy in pool.proxies:
                problem = proxy_problem(proxy, websocket=websocket)
                if problem is not None:
                    raise RuntimeError(problem)
        timeout = aiohttp.ClientTimeout(total=self.config.rest_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            try:
                yield
            finally:
                for socks in self._socks_sessions.values():
                    await socks.close()
                self._socks_sessions.clear()
                self._session = None

    def stop(self) -> None:
        self._stop.set()

    def _connection_specs(self) -> list[ConnectionSpec]:
        """The adapter's connections; an adapter bug or a wrong config there is logged and counted
        (``errors.connections``) and the gateway keeps running (timer, heartbeats, status) without them."""
        try:
            return list(self.adapter.connections())
        except Exception as exc:  # noqa: BLE001 - never let a subscription bug end the gateway
            self._count("errors.connections")
            self.log.opt(exception=exc).error("{}: building the connections failed, nothing subscribed: {!r}",
                                              self.adapter.exchange, exc)
            return []

    def _rest_route(self) -> tuple[aiohttp.ClientSession, str | None]:
        """The session and ``proxy=`` argument of the next REST request (the pool's next proxy).

        aiohttp speaks HTTP proxies per request; a SOCKS proxy needs a connector of its own
        (aiohttp-socks), hence a session per SOCKS proxy, made on first use.
        """
        assert self._session is not None
        proxy = self._rest_proxies.take()
        if proxy is None or not proxy.startswith("socks"):
            return self._session, proxy
        session = self._socks_sessions.get(proxy)
        if session is None:
            from aiohttp_socks import ProxyConnector  # type: ignore[import-not-found]

            session = self._socks_sessions[proxy] = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.rest_timeout),
                connector=ProxyConnector.from_url(proxy))
        return session, None

    async def _shutdown(self) -> None:
        tasks = list(self._tasks.values()) + list(self._aux)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._aux.clear()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._aux.add(task)
        task.add_done_callback(self._aux.discard)
        return task

    async def _sleep_or_stop(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self._stop.wait()
        except TimeoutError:
            pass

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n
        count = getattr(self.publisher, "count", None)
        if count is not None:
            count(name, n)

    # ------------------------------------------------------------ instruments
    async def _load_instruments(self) -> None:
        adapter = self.adapter
        if self.preloaded_instruments is not None:
            adapter.load_instruments(self.preloaded_instruments)
            return
        if not await self.load_instruments(adapter.instrument_requests()):
            return   # stopped, or no instrument lists to load
        unknown = adapter.check_subscription()
        if unknown:
            self.log.warning("{}: subscribed symbols unknown to the exchange: {}", adapter.exchange, unknown)
            self._count("unknown_symbols", len(unknown))

    async def load_instruments(self, requests: Sequence[Fetch]) -> dict[str, Any] | None:
        """GET every page of ``requests`` (instrument lists) and load them into the adapter, inside
        :meth:`rest_session`. A failure (an HTTP error, a body the adapter can't parse) is logged,
        counted (``instrument_errors``) and all is tried again ``instrument_retry`` s later, until it
        works (returns the bodies by URL) or the driver stops (returns None)."""
        adapter = self.adapter
        if not requests:
            return {}
        while not self._stop.is_set():
            bodies: dict[str, Any] = {}
            try:
                for first in requests:
                    pages = InstrumentPages(adapter, first)
                    while (fetch := pages.next) is not None:
                        status, body, _ = await self._get(fetch)
                        if status != 200 or body is None:
                            raise RuntimeError(f"{fetch.url}: HTTP {status}")
                        bodies[fetch.url] = body
                        pages.got(body)
                    if pages.unfinished:
                        self._count("instrument_pages_unfinished")
                        self.log.warning("{}: {}: instrument pages do not end after {}; using those",
                                         adapter.exchange, first.url, pages.pages)
                adapter.load_instruments(bodies)
                return bodies
            except Exception as exc:  # noqa: BLE001 - retried until it works or we stop
                self._count("instrument_errors")
                self.log.warning("{}: loading instruments failed ({}); retrying in {} s", adapter.exchange, exc,
                                 self.config.instrument_retry)
                await self._sleep_or_stop(self.config.instrument_retry)
        return None

    # ------------------------------------------------------------ REST
    async def _get(self, fetch: Fetch) -> tuple[int, str | None, int]:
        """Perform ``fetch`` within the REST budget, record its answer: ``(status, body, ts)``
        (status 0 and body None: no response)."""
        await self.budget.acquire(fetch.weight)
        self._count("rest_requests")
        status, body = await self._request(fetch)
        ts = time.time_ns()
        if self.recorder is not None:
            self.recorder.rest(ts, fetch.url, body, status=status)  # a failure is replayed as the same
        if status == 429 or status == 418:
            self._count("rest_rate_limited")
            self._log_symbol("WARNING", "rate_limited", None, "GET {} -> HTTP {}: rate limited by the exchange; "
                             "REST requests wait for the budget to refill", fetch.url, status)
            # The exchange says we exceeded its budget: empty ours so later requests wait (and
            # until its Retry-After, which _rate_headers read, when it gave one).
            self.budget.pause(0.0)
        return status, body, ts

    async def _request(self, fetch: Fetch) -> tuple[int, str | None]:
        """The HTTP GET of ``fetch`` (through the pool's next proxy): ``(status, body)``; a request
        with no response is logged, counted (``rest_errors``) and answered ``(0, None)``."""
        session, proxy = self._rest_route()
        try:
            async with session.get(fetch.url, proxy=proxy) as resp:
                self._rate_headers(fetch, resp.status, resp.headers)
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._count("rest_errors")
            via = f" via proxy {redact(proxy)}" if proxy else ""
            self._log_symbol("WARNING", fetch.tag or "rest", fetch.symbol, "{} GET {} failed{}: {!r}",
                             fetch.tag or "REST", fetch.url, via, exc)
            return 0, None

    def _rate_headers(self, fetch: Fetch, status: int, headers: Mapping[str, str]) -> None:
        """What the exchange says of our request rate: ``Retry-After`` on a 429/418 pauses every REST
        request (``rest_retry_after``); the adapter's used-weight or remaining header syncs the budget."""
        if status in (429, 418):
            pause = retry_after_seconds(headers.get("Retry-After"))
            if pause is not None:
                self._count("rest_retry_after")
                self.budget.pause(pause)
                self._log_symbol("WARNING", "retry_after", None, "GET {} -> HTTP {}: no REST request for {:.0f} s "
                                 "(Retry-After)", fetch.url, status, pause)
        adapter = self.adapter
        for name, sync in ((adapter.rest_used_weight_header, self.budget.sync_used),
                           (adapter.rest_remaining_header, self.budget.sync_left)):
            if name is not None and (value := headers.get(name)) is not None:
                with contextlib.suppress(ValueError):
                    sync(float(value))

    async def _fetch(self, fetch: Fetch) -> None:
        status, body, ts = await self._get(fetch)
        await self.handle(self.adapter.on_rest(fetch, status, body, ts))

    # ------------------------------------------------------------ outputs
    async def handle(self, out: Output) -> None:
        publish = self.publisher.publish
        for ev in out.events:
            publish(ev)
        for action in out.actions:
            if isinstance(action, Send):
                await self._send(action.conn, action.payload)
            elif isinstance(action, Fetch):
                self._spawn(self._fetch(action))
            elif isinstance(action, Resync):
                self._count("resyncs")
                res = self.adapter.resync(action.symbol, time.time_ns())
                self._log_symbol("INFO", "resync", action.symbol, "book resync ({}): {}", action.reason,
                                 describe_resync(res.actions))
                await self.handle(res)
            elif isinstance(action, Close):
                ws = self.ws.get(action.conn)
                if ws is not None:
                    self._count("closes_requested")
                    await ws.close(reason=action.reason[:100])
                if not action.reconnect:
                    task = self._tasks.pop(action.conn, None)
                    if task is not None:
                        task.cancel()
            elif isinstance(action, Open):
                if action.spec.id not in self._tasks:
                    self._start_connection(action.spec)
            elif isinstance(action, Rotate):
                rotation = self._rotations.get(action.conn)
                if rotation is None:
                    self._count("rotation_requests_ignored")   # not connected now: nothing to replace
                else:
                    self.log.info("{} {}: replacing the connection now, make-before-break: {}",
                                  self.adapter.exchange, action.conn, action.reason)
                    rotation.requested.set()

    def _log_symbol(self, level: str, what: str, symbol: str | None, message: str, *args: Any) -> None:
        """One incident line, ``symbol`` bound when given, rate-limited per (what, symbol)."""
        left_out = self.log_limit.check((what, symbol))
        if left_out is None:
            return
        log = self.log if symbol is None else self.log.bind(symbol=symbol)
        who = f"{self.adapter.exchange} {symbol}" if symbol else self.adapter.exchange
        log.log(level, "{}: " + message + "{}", who, *args, LogLimit.note(left_out))

    async def _send(self, conn: str, payload: str | bytes) -> None:
        ws = self.ws.get(conn)
        if ws is None:
            self._count("send_dropped")
            return
        try:
            await ws.send(payload)
        except WebSocketException:
            self._count("send_failed")
            return
        if self.recorder is not None:
            self.recorder.send(conn, time.time_ns(), payload)

    # ------------------------------------------------------------ websockets
    def _start_connection(self, spec: ConnectionSpec) -> None:
        self._tasks[spec.id] = asyncio.create_task(self._connection(spec), name=f"ws:{spec.id}")

    async def _connection(self, spec: ConnectionSpec) -> None:
        attempt = 0
        cfg = self.config
        while not self._stop.is_set():
            started = time.monotonic()
            reason = "closed"
            wait: float | None = None   # the exchange's Retry-After, when it refused the connection
            try:
                reason = await self._session_once(spec)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, InvalidURI, InvalidHandshake, WebSocketException) as exc:
                reason = f"{type(exc).__name__}: {exc}"[:200]
                wait = self._refused(spec, exc)
            except Exception as exc:  # noqa: BLE001 - never let one connection's bug end the gateway
                reason = f"error {type(exc).__name__}: {exc}"[:200]
                self.log.exception("{} {}: unexpected error", self.adapter.exchange, spec.id)
            if time.monotonic() - started >= cfg.stable_after:
                attempt = 0
            delay = backoff_delay(attempt, cfg, self._rng)
            if wait is not None and wait > delay:
                delay = wait
            attempt += 1
            self._count("reconnects")
            self.log.info("{} {}: {}; reconnecting in {:.2f} s", self.adapter.exchange, spec.id, reason, delay)
            await self._sleep_or_stop(delay)

    def _refused(self, spec: ConnectionSpec, exc: BaseException) -> float | None:
        """A handshake the exchange answered with an HTTP status instead of the upgrade (429: too many
        connections, 418: banned, 5xx): counted ``ws_refused.<status>``; returns its Retry-After in
        seconds (the next attempt waits at least that long), None when it gives none."""
        cause = exc.__cause__ if isinstance(exc, OSError) and exc.__cause__ is not None else exc  # via a proxy
        response = getattr(cause, "response", None) if isinstance(cause, InvalidStatus) else None
        if response is None:
            return None
        self._count(f"ws_refused.{response.status_code}")
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if wait is not None:
            self.log.warning("{} {}: connection refused with HTTP {}; next attempt in {:.0f} s (Retry-After)",
                             self.adapter.exchange, spec.id, response.status_code, wait)
        return wait

    async def _connect(self, spec: ConnectionSpec) -> ClientConnection:
        """Open a websocket to ``spec.url`` through the pool's next proxy (a failure through a proxy
        is counted and names it)."""
        cfg = self.config
        ws_ping = spec.ping_interval if spec.ping is None else None
        proxy = self._ws_proxies.take()
        try:
            return await connect(spec.url, open_timeout=cfg.open_timeout, ping_interval=ws_ping,
                                 ping_timeout=ws_ping, max_size=cfg.max_message_size, compression="deflate",
                                 proxy=proxy)
        except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
            if proxy is None:
                raise
            # Named in the reconnect line; the next attempt takes the pool's next proxy.
            self._count("proxy_connect_failures")
            raise OSError(f"via proxy {redact(proxy)}: {type(exc).__name__}: {exc}") from exc

    def rotation_due(self, spec: ConnectionSpec) -> float | None:
        """Seconds after a connection of ``spec`` opens at which it is replaced (None: never)."""
        if spec.max_lifetime is None:
            return None
        if self.config.connection_lifetime is not None:
            return self.config.connection_lifetime
        due = spec.max_lifetime - self.config.rotate_before
        return due if due > 0 else spec.max_lifetime / 2

    async def _session_once(self, spec: ConnectionSpec) -> str:
        silence = self.config.silence_timeout if self.config.silence_timeout is not None else spec.silence_timeout
        ws = await self._connect(spec)
        conn = spec.id
        reason = "closed"
        self.ws[conn] = ws
        helpers: list[asyncio.Task[None]] = []
        rotation = self._rotations[conn] = Rotation(self.rotation_due(spec))
        try:
            await self._opened(spec)
            helpers.append(asyncio.create_task(self._subscribe(spec)))
            if spec.ping is not None and spec.ping_interval:
                helpers.append(asyncio.create_task(self._app_ping(spec)))   # sends on self.ws[conn]: any ws
            while True:
                watchdog = _Watchdog(ws, silence)
                session = [asyncio.create_task(watchdog.run()), asyncio.create_task(self._rotate(spec, ws, rotation))]
                try:
                    reason = await self._read(conn, ws, watchdog, rotation)
                finally:
                    for t in session:
                        t.cancel()
                    await asyncio.gather(*session, return_exceptions=True)
                if not rotation.ready():
                    return reason   # closed, silent, dropped: a reconnect (an overlap just begun is abandoned)
                # Handed over: on our close (switching), or the old one ended once the new one was subscribed.
                ws = await self._hand_over(conn, ws, rotation)
        finally:
            for t in helpers:
                t.cancel()
            self.ws.pop(conn, None)
            self._rotations.pop(conn, None)
            await rotation.abandon()
            await close_quietly(ws)
            await self._closed(conn, reason)

    async def _read(self, conn: str, ws: ClientConnection, watchdog: _Watchdog, rotation: Rotation) -> str:
        """Hand every message of ``ws`` to the adapter until it closes; returns why it closed. While a
        rotation overlaps (``rotation.seen``), each message is also counted there."""
        on_message = self.adapter.on_message
        recorder = self.recorder
        handle = self.handle
        try:
            # No timeout wrapper around recv(): the watchdog task aborts a silent connection
            # (asyncio.wait_for on 3.11 can swallow a cancellation racing a message).
            async for msg in ws:
                ts = time.time_ns()
                watchdog.last = time.monotonic()
                if recorder is not None:
                    recorder.recv(conn, ts, msg)
                seen = rotation.seen
                if seen is not None:
                    seen[msg] += 1
                await handle(on_message(conn, msg, ts))
        except WebSocketException as exc:
            if not watchdog.fired:
                return f"{type(exc).__name__}: {exc}"[:200]
        if watchdog.fired:
            self._count("silence_timeouts")
            return f"silent for {watchdog.timeout} s"
        return "closed"

    # ------------------------------------------------------------ planned rotation (make-before-break)
    async def _rotate(self, spec: ConnectionSpec, old: ClientConnection, rotation: Rotation) -> None:
        """When ``rotation.due`` s have passed, or a :class:`Rotate` asks: open the next connection,
        subscribe it, buffer what it receives while both run for ``rotate_overlap`` s (counting the
        old one's messages), then close the old one; :meth:`_session_once` takes the new one over
        (:meth:`_hand_over`). A new connection that fails is closed and counted
        (``rotation_failures``), and tried again a minute later."""
        delay = rotation.due
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):   # None: only when asked (Rotate)
                    await rotation.requested.wait()
            rotation.requested.clear()
            delay = min(60.0, rotation.due or 60.0)
            try:
                new = await self._connect(spec)
            except (OSError, TimeoutError, InvalidURI, InvalidHandshake, WebSocketException) as exc:
                self._rotation_failed(spec, f"{type(exc).__name__}: {exc}", delay)
                continue
            rotation.start(new)
            try:
                await self._subscribe(spec, new)
                rotation.subscribed = True
                await asyncio.sleep(self.config.rotate_overlap)
            except WebSocketException:
                pass
            if rotation.reader is None or rotation.reader.done():
                await rotation.abandon()
                self._rotation_failed(spec, "the new connection closed during the overlap", delay)
                continue
            rotation.switching = True
            await close_quietly(old)   # ends _read; _session_once goes on with the new one
            return

    def _rotation_failed(self, spec: ConnectionSpec, why: str, retry: float) -> None:
        self._count("rotation_failures")
        self.log.warning("{} {}: planned rotation failed ({}); the current connection goes on, next try in {:.0f} s",
                         self.adapter.exchange, spec.id, why, retry)

    async def _hand_over(self, conn: str, old: ClientConnection, rotation: Rotation) -> ClientConnection:
        """Make the rotation's new connection ``conn``: the adapter's :meth:`~Adapter.on_handoff`,
        then the messages it buffered, less those the old one delivered too (each message text
        counts once per delivery), then it is read as the connection itself."""
        new, buffered, seen = await rotation.take()
        await close_quietly(old)
        self.ws[conn] = new
        ts = time.time_ns()
        self._count("rotations")
        await self.handle(self.adapter.on_handoff(conn, ts))
        on_message = self.adapter.on_message
        duplicates = 0
        for ts, msg in buffered:
            if seen[msg]:
                seen[msg] -= 1
                duplicates += 1
                continue
            if self.recorder is not None:
                self.recorder.recv(conn, ts, msg)
            await self.handle(on_message(conn, msg, ts))
        self._count("rotation_duplicates", duplicates)
        self.log.info("{} {}: connection replaced (make-before-break): {} message(s) of the overlap "
                      "delivered on both were taken once", self.adapter.exchange, conn, duplicates)
        return new

    async def _opened(self, spec: ConnectionSpec) -> None:
        """A connection is up: counted, recorded, said (Status), and told to the adapter."""
        ts = time.time_ns()
        self._count("connects")
        if self.recorder is not None:
            self.recorder.connect(spec.id, ts, spec.url)
        self.publisher.set_feed_state(spec.id + self.feed_suffix, "connected")
        self.connected.set()
        await self.handle(self.adapter.on_open(spec.id, ts))

    async def _closed(self, conn: str, reason: str) -> None:
        """A connection ended: counted, recorded, said (Status), and told to the adapter."""
        ts = time.time_ns()
        if self.recorder is not None:
            self.recorder.close_conn(conn, ts, reason)
        self._count("disconnects")
        self.publisher.set_feed_state(conn + self.feed_suffix, "disconnected", reason)
        await self.handle(self.adapter.on_close(conn, ts, reason))

    async def _subscribe(self, spec: ConnectionSpec, ws: ClientConnection | None = None) -> None:
        """Send ``spec``'s subscribe messages on its connection, or on ``ws`` (a rotation's new
        connection, not yet the connection: not recorded), spaced by the exchange's rate limit."""
        for i, msg in enumerate(spec.subscribe):
            if i and spec.subscribe_interval:
                await asyncio.sleep(spec.subscribe_interval)  # the exchange's message-rate limit
            if ws is None:
                await self._send(spec.id, msg)
            else:
                await ws.send(msg)

    async def _app_ping(self, spec: ConnectionSpec) -> None:
        assert spec.ping is not None and spec.ping_interval
        while True:
            await asyncio.sleep(spec.ping_interval)
            await self._send(spec.id, spec.ping)

    async def _timer(self, interval: float) -> None:
        while True:
            await self.handle(self.adapter.on_timer(time.time_ns()))
            await asyncio.sleep(interval)
