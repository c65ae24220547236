"""The gateway process: one exchange adapter + the asyncio driver + the bus publisher.

:class:`GatewayConfig` (pydantic) is everything one gateway needs: exchange, channels
and symbols, depth, where to publish, exchange URL overrides (e.g. the loopback
exchange), driver behaviour (backoff, proxies, silence timeout) and an optional capture
file to record into. Symbols may be patterns (gateways.selection): the gateway matches them
against the exchange's instruments before it builds its adapter, and with ``rematch_interval``
again that often, subscribing instruments listed since on a :class:`Part` of their own (adapter,
driver, capture file; the running feeds untouched). :class:`Gateway` runs it inside an event
loop (tests, embedding); :func:`run_gateway` runs it as a process until SIGINT/SIGTERM.

The adapter's counters (parse errors, ignored messages by reason, book gaps...) are
copied into the publisher's heartbeat counters every ``counters_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gateways import exchanges
from gateways.adapter import CHANNELS, QUOTE_CHANNELS, Adapter, Subscription
from gateways.books import share_books
from gateways.driver import Driver, DriverConfig, proxy_problem
from gateways.selection import REMATCH_BUDGET_SHARE, expand, has_patterns, instrument_requests, rematch_floor


def _channel_map(channels: dict[str, list[str]] | list[str], symbols: list[str]) -> dict[str, list[str]]:
    """``channels`` as channel → symbols: a list of channels gets ``symbols`` each."""
    return channels if isinstance(channels, dict) else {ch: list(symbols) for ch in channels}


class GatewayConfig(BaseModel):
    """One gateway. ``channels`` maps channel → symbols; ``symbols`` fills channels given as a list."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="gateway id on the bus (no '.' or ' ')")
    exchange: str = Field(description="adapter name, see `feedfabric exchanges`")
    channels: dict[str, list[str]] | list[str]
    symbols: list[str] = Field(default_factory=list)
    depth: int = Field(0, ge=0, description="REST snapshot depth (0: the adapter's default)")
    candle_interval: str | None = Field(None, description="candle bar length (None: the adapter's default)")
    open_interest_interval: float = Field(60.0, gt=0)
    poll_interval: float = Field(1.0, gt=0, description="seconds between polls of trades, books and tickers "
                                 "(CCXT_<ID> exchanges, which have no stream)")
    pub: str = Field(description="PUB endpoint, e.g. ipc:///run/ff/binance.pub")
    snapshot: str | None = None
    urls: dict[str, str] = Field(default_factory=dict, description="exchange URL overrides by name (ws, rest)")
    record: Path | None = Field(None, description="capture file to append every frame to (.ffcap)")
    rematch_interval: float | None = Field(None, gt=0, description="symbol patterns: seconds between matches "
                                           "against the exchange's instruments again; instruments listed "
                                           "since are subscribed (None: matched once, at start)")
    rematch_max_parts: int = Field(4, ge=2, description="re-matching: the most parts (sets of connections) "
                                   "a gateway runs; at the limit the newest part is rebuilt with the new "
                                   "instruments added")
    heartbeat_interval: float = Field(1.0, gt=0)
    sndhwm: int = Field(100_000, ge=0)
    counters_interval: float = Field(1.0, gt=0)
    backoff_initial: float = Field(0.5, gt=0)
    backoff_max: float = Field(30.0, gt=0)
    silence_timeout: float | None = Field(None, gt=0)
    rotate_before: float = Field(600.0, ge=0, description="connections the exchange ends after a lifetime "
                                 "(Binance: 24 h): replaced, make-before-break, this many seconds before")
    rotate_overlap: float = Field(2.0, ge=0, description="a planned replacement: seconds both connections run "
                                  "after the new one subscribed")
    connection_lifetime: float | None = Field(None, gt=0, description="replace those connections after this "
                                              "many seconds instead (None: the exchange's lifetime less "
                                              "rotate_before)")
    ws_proxy: str | list[str] | None = Field(None, description="proxy URL, or a pool of them used in turn")
    rest_proxy: str | list[str] | None = Field(None, description="proxy URL, or a pool of them used in turn")
    ccxt_stream: bool = Field(False, description="CCXT_<ID> exchanges: stream trades, books and tickers "
                              "through ccxt.pro's websockets where it can watch them (the other channels, and "
                              "all without it, are polled)")
    ccxt: dict[str, Any] = Field(default_factory=dict, description="CCXT_<ID> exchanges: the ccxt exchange's "
                                 "config, e.g. {options: {fetchMarkets: [spot]}} (no API keys: market data only)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or "." in v or " " in v:
            raise ValueError("a non-empty id without '.' or ' '")
        return v

    @field_validator("ws_proxy", "rest_proxy")
    @classmethod
    def _proxies(cls, v: str | list[str] | None, info: ValidationInfo) -> str | list[str] | None:
        # Refused here, so `feedfabric check` says it before a gateway starts and fails.
        for url in [v] if isinstance(v, str) else (v or []):
            problem = proxy_problem(url, websocket=info.field_name == "ws_proxy")
            if problem is not None:
                raise ValueError(problem)
        if isinstance(v, list) and not v:
            raise ValueError("an empty proxy pool: leave the key out for no proxy")
        return v

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, v: str) -> str:
        try:
            exchanges.get(v)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        return v

    @field_validator("ccxt_stream")
    @classmethod
    def _ccxt_stream(cls, v: bool, info: ValidationInfo) -> bool:
        name = info.data.get("exchange")
        if not v or name is None:
            return v
        adapter = exchanges.get(name)
        if not hasattr(adapter, "pro_has"):
            raise ValueError(f"for CCXT_<ID> exchanges only: {name} streams through its own adapter")
        if not adapter.pro_has:
            raise ValueError(f"ccxt.pro has no {name}: leave ccxt_stream out (its channels are polled)")
        return v

    @field_validator("rematch_interval")
    @classmethod
    def _rematch(cls, v: float | None, info: ValidationInfo) -> float | None:
        data = info.data
        if v is None or "exchange" not in data or "channels" not in data:
            return v   # no re-matching, or the fields it depends on are refused already
        channels = _channel_map(data["channels"], data.get("symbols") or [])
        if not has_patterns(channels):
            raise ValueError("rematch_interval needs symbol patterns (e.g. 'BTC-*'): exact symbols have "
                             "nothing to match again")
        adapter = exchanges.get(data["exchange"])
        floor = rematch_floor(adapter, channels, data.get("urls"))
        if v < floor:
            why = (f"its adapter reloads instrument lists at most every {floor:g} s" if floor == adapter.instruments_reload_min
                   else f"its instrument lists would take over {REMATCH_BUDGET_SHARE:.0%} of its REST weight per "
                        "minute, which resyncs need")
            raise ValueError(f"{v:g} s is too short for {data['exchange']}: {why}; at least {floor:g} s")
        return v

    @model_validator(mode="after")
    def _channels(self) -> GatewayConfig:
        if isinstance(self.channels, list):
            if not self.symbols:
                raise ValueError("channels given as a list need `symbols`")
            self.channels = _channel_map(self.channels, self.symbols)
        unknown = set(self.channels) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}; known: {', '.join(CHANNELS)}")
        return self

    def subscription(self) -> Subscription:
        assert isinstance(self.channels, dict)
        return Subscription(self.channels, depth=self.depth, candle_interval=self.candle_interval,
                            open_interest_interval=self.open_interest_interval, poll_interval=self.poll_interval,
                            ccxt_stream=self.ccxt_stream)

    def driver_config(self) -> DriverConfig:
        cfg = DriverConfig(backoff_initial=self.backoff_initial, backoff_max=self.backoff_max,
                           ws_proxy=self.ws_proxy, rest_proxy=self.rest_proxy, silence_timeout=self.silence_timeout,
                           rotate_before=self.rotate_before, rotate_overlap=self.rotate_overlap,
                           connection_lifetime=self.connection_lifetime, ccxt=self.ccxt or None)
        return cfg

    def make_adapter(self) -> Adapter:
        return exchanges.get(self.exchange)(self.subscription(), urls=self.urls or None)


def driver_class(adapter: Adapter) -> type[Driver]:
    """The driver that performs ``adapter``'s actions: the one its class names (``Adapter.driver``)."""
    module, _, attr = adapter.driver.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise TypeError(f"{adapter.driver} is not a Driver subclass")
    return cls


@dataclass(eq=False)
class Part:
    """One adapter of a gateway with its driver and recorder. A gateway runs one; with
    ``rematch_interval`` each re-match that finds new instruments adds one for them."""

    config: GatewayConfig          # its explicit channels and symbols
    adapter: Adapter
    driver: Driver
    recorder: Any = None           # a CaptureWriter when the gateway records
    task: asyncio.Task[None] | None = None
    copied: Counter[str] = field(default_factory=Counter)   # adapter counters already reported


class Gateway:
    """A running gateway inside the current event loop: ``async with Gateway(cfg) as gw: ...``.

    ``publisher`` may be given (tests); otherwise a bus Publisher is created and bound. When the
    config's symbols hold patterns (gateways.selection), the adapter, the driver and the recorder
    are built once they are resolved, inside the gateway's task: :attr:`adapter` and
    :attr:`driver` raise until then, :attr:`resolved` is set then. With ``rematch_interval`` the
    patterns are matched again that often; instruments listed since get a :class:`Part` of their
    own (its own connections, the same publisher), so the running feeds are never touched.
    """

    def __init__(self, config: GatewayConfig, *, publisher: Any = None, driver_config: DriverConfig | None = None
                 ) -> None:
        self.config = config
        self.requested = config   # as given, patterns included (config becomes the resolved one)
        self._driver_config = driver_config or config.driver_config()
        self._own_publisher = publisher is None
        if publisher is None:
            from bus.publisher import Publisher
            publisher = Publisher(config.name, config.pub, config.snapshot, sndhwm=config.sndhwm,
                                  heartbeat_interval=config.heartbeat_interval,
                                  exchange=exchanges.get(config.exchange).exchange)
        self.publisher = publisher
        self.resolved = asyncio.Event()
        self.resolver: Driver | None = None   # the instrument loading that resolves patterns, while it runs
        self.parts: list[Part] = []
        self._feed_quotes: dict[str, list[str]] = {}   # last described (see _describe_feed_quotes)
        self.unlisted: set[str] = set()       # subscribed symbols a re-match no longer found listed
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._counters_task: asyncio.Task[None] | None = None
        self._rematch_task: asyncio.Task[None] | None = None
        assert isinstance(config.channels, dict)
        if not has_patterns(config.channels):
            self._build(config)

    @property
    def adapter(self) -> Adapter:
        """The first part's adapter (the only one unless a re-match added instruments)."""
        if not self.parts:
            raise RuntimeError(f"gateway {self.config.name}: symbol patterns not resolved yet "
                               "(they are matched once the instruments load; await gw.resolved.wait())")
        return self.parts[0].adapter

    @property
    def driver(self) -> Driver:
        if not self.parts:
            raise RuntimeError(f"gateway {self.config.name}: symbol patterns not resolved yet")
        return self.parts[0].driver

    @property
    def recorder(self) -> Any:
        return self.parts[0].recorder if self.parts else None

    def subscribed(self) -> dict[str, list[str]]:
        """Channel → symbols over all parts, in the order they were added."""
        out: dict[str, list[str]] = {}
        for part in self.parts:
            assert isinstance(part.config.channels, dict)
            for ch, syms in part.config.channels.items():
                out.setdefault(ch, []).extend(syms)
        return out

    def _build(self, config: GatewayConfig) -> Part:
        """A part (adapter, recorder, driver) for a config whose symbols are all explicit."""
        n = len(self.parts)
        adapter = config.make_adapter()
        recorder = None
        if config.record is not None:
            from gateways.capture import CaptureWriter, part_capture
            # The registry's name (CCXT_<ID> for the long tail), so a replay picks the same adapter.
            recorder = CaptureWriter(part_capture(config.record, n), exchange=config.exchange,
                                     channels=config.subscription().channels,
                                     meta={"gateway": config.name, "part": n, "depth": config.depth,
                                           "candle_interval": config.candle_interval,
                                           "open_interest_interval": config.open_interest_interval,
                                           "poll_interval": config.poll_interval,
                                           "ccxt_stream": config.ccxt_stream})
        driver = driver_class(adapter)(adapter, self.publisher, config=self._driver_config, recorder=recorder)
        part = Part(config, adapter, driver, recorder)
        self.parts.append(part)
        if n == 0:
            self.config = config
            # The snapshot service serves the adapters' own books, those of every part (later
            # parts hold other symbols): registered once, before the first book event.
            share_books(adapter, self.publisher, lambda: [p.adapter for p in self.parts])
            self.resolved.set()
        else:
            driver.budget = self.parts[0].driver.budget   # one REST budget per exchange
            driver.feed_suffix = f"+{n}"
            adapter.system.active = False   # the first part asks and publishes the exchange's system status
        return part

    async def _resolve(self, *, again: bool = False) -> GatewayConfig | None:
        """The requested config with its patterns replaced by the instruments they match (None:
        stopped first). ``again``: a re-match, which logs quietly and reports no unmatched pattern twice.

        The instrument lists are loaded by a driver of their own (same proxies, budget and retries
        as the gateway's); the gateway's driver then loads them again for the adapter it runs, so
        its capture holds them as always.
        """
        config = self.requested
        assert isinstance(config.channels, dict)
        cls = exchanges.get(config.exchange)
        probe = cls(Subscription({}), urls=config.urls or None)
        resolver = self.resolver = driver_class(probe)(probe, self.publisher, config=self._driver_config)
        if self.parts:
            resolver.budget = self.parts[0].driver.budget
        if self._stopping:
            return None
        log = logger.bind(exchange=probe.exchange, gateway=config.name)
        try:
            async with resolver.rest_session():
                bodies = await resolver.load_instruments(instrument_requests(cls, config.channels, config.urls))
        finally:
            self.resolver = None
        if bodies is None:
            return None
        if again and not probe.symbols:
            # An exchange in maintenance may answer an empty list: not a delisting of everything.
            resolver._count("subscription.rematch_empty")
            log.warning("{}: the instrument lists came back empty; nothing re-matched this time", probe.exchange)
            return config.model_copy(update={"channels": self.subscribed()})
        channels, unmatched = expand(config.channels, probe.symbols)
        if again:
            self._unlisted(probe.symbols, log)
            return config.model_copy(update={"channels": channels})
        for pattern in unmatched:
            resolver._count("subscription.unmatched_pattern")
            log.warning("{}: symbol pattern {!r} matches none of its {} instruments", probe.exchange, pattern,
                        len(probe.symbols))
        log.info("{}: symbol patterns resolved: {}", probe.exchange,
                 ", ".join(f"{ch} {len(syms)}" for ch, syms in channels.items()))
        return config.model_copy(update={"channels": channels})

    def _unlisted(self, listed: Any, log: Any) -> None:
        # Kept subscribed (the exchange may only have paused it, and its feeds cost nothing once
        # silent), but said once and counted, so a dashboard sees a delisting.
        for symbol in sorted(s for s in self.unlisted if s in listed):
            self.unlisted.discard(symbol)   # so a later delisting is said again
            log.info("{}: {} is listed again", self.requested.exchange, symbol)
        subscribed = {s for syms in self.subscribed().values() for s in syms}
        for symbol in sorted(subscribed - self.unlisted):
            if symbol not in listed:
                self.unlisted.add(symbol)
                self._count("subscription.unlisted")
                log.warning("{}: {} is no longer listed; its feeds are kept", self.requested.exchange, symbol)

    async def _rematch(self, interval: float) -> None:
        """Every ``interval`` s: match the patterns again; a part for the instruments listed since."""
        log = logger.bind(exchange=self.requested.exchange, gateway=self.requested.name)
        while not self._stopping:
            await asyncio.sleep(interval)
            try:
                if not await self._rematch_once(log):
                    return
            except Exception as exc:  # noqa: BLE001 - one failed round must not end re-matching
                self._count("subscription.rematch_errors")
                log.opt(exception=exc).error("{}: re-matching the symbol patterns failed ({}); again in {} s",
                                             self.requested.exchange, exc, interval)

    async def _rematch_once(self, log: Any) -> bool:
        """One re-match: subscribe what was listed since (False: the gateway stopped meanwhile)."""
        config = await self._resolve(again=True)
        if config is None or self._stopping:
            return False
        have = {ch: set(syms) for ch, syms in self.subscribed().items()}
        assert isinstance(config.channels, dict)
        new = {ch: [s for s in syms if s not in have.get(ch, ())] for ch, syms in config.channels.items()}
        new = {ch: syms for ch, syms in new.items() if syms}
        if not new:
            return True
        added = sorted({s for syms in new.values() for s in syms})
        rebuilt = len(self.parts) >= self.requested.rematch_max_parts
        if rebuilt:
            # Connections stay bounded: the newest part (the latest listings) is rebuilt with these
            # added, so only its few symbols reconnect and resync.
            last = self.parts[-1]
            self.copy_counters()
            last.driver.stop()
            if last.task is not None:
                await asyncio.gather(last.task, return_exceptions=True)
            if self._stopping:
                return False   # stop() closes it with the others
            self.parts.pop()
            if last.recorder is not None:
                last.recorder.close()
            assert isinstance(last.config.channels, dict)
            merged = {ch: list(syms) for ch, syms in last.config.channels.items()}
            for ch, syms in new.items():
                merged.setdefault(ch, []).extend(syms)
            new = merged
        part = self._build(config.model_copy(update={"channels": new}))
        n = len(self.parts) - 1
        part.task = asyncio.create_task(part.driver.run(), name=f"gateway:{self.config.name}+{n}")
        part.task.add_done_callback(lambda task: self._part_ended(n, task))
        self._count("subscription.listed", len(added))
        log.info("{}: newly listed, subscribed on connections of their own (part {}{}): {}", self.requested.exchange,
                 n, ", rebuilt: rematch_max_parts reached" if rebuilt else "", ", ".join(added))
        return True

    def _part_ended(self, n: int, task: asyncio.Task[None]) -> None:
        # Part 0's end reaches wait(); a later part's error would otherwise pass unseen.
        if task.cancelled() or task.exception() is None:
            return
        self._count("gateway.part_errors")
        logger.opt(exception=task.exception()).error("gateway {}: part {} stopped on an error",
                                                     self.requested.name, n)

    async def _run(self) -> None:
        if not self.parts:
            config = await self._resolve()
            if config is None:
                return
            self._build(config)
            if self._stopping:
                return
        interval = self.requested.rematch_interval
        if interval is not None:
            self._rematch_task = asyncio.create_task(self._rematch(interval), name=f"rematch:{self.config.name}")
        await self.driver.run()

    async def start(self) -> Gateway:
        if self._own_publisher:
            self.publisher.start()
        self._task = asyncio.create_task(self._run(), name=f"gateway:{self.config.name}")
        self._counters_task = asyncio.create_task(self._copy_counters())
        return self

    def request_stop(self) -> None:
        """Ask the gateway to stop (from a signal handler too): its drivers, or its pattern resolution."""
        self._stopping = True
        drivers = [self.resolver] + [p.driver for p in self.parts]
        for driver in drivers:
            if driver is not None:
                driver.stop()

    async def stop(self) -> None:
        self.request_stop()
        for task in (self._rematch_task, self._counters_task):
            if task is not None:
                task.cancel()
        tasks = [self._task, self._rematch_task, self._counters_task] + [p.task for p in self.parts]
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
        self.copy_counters()
        for part in self.parts:
            if part.recorder is not None:
                part.recorder.close()
        if self._own_publisher:
            self.publisher.close()

    async def __aenter__(self) -> Gateway:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

    def _count(self, name: str, n: int = 1) -> None:
        count = getattr(self.publisher, "count", None)
        if count is not None:
            count(name, n)

    def copy_counters(self) -> None:
        if getattr(self.publisher, "count", None) is None:
            return
        for part in self.parts:
            for name, value in part.adapter.counters.items():
                delta = value - part.copied[name]
                if delta:
                    self._count(f"adapter.{name}", delta)
                    part.copied[name] = value
        self._describe_feed_quotes()

    def _describe_feed_quotes(self) -> None:
        """Heartbeats say which symbols' quotes each connection carries (``feed_quotes``): the NBBO
        then leaves out only those symbols when a connection is down, not the whole exchange (a
        candles-only connection, another category's)."""
        describe = getattr(self.publisher, "describe", None)
        if describe is None:
            return
        quotes: dict[str, list[str]] = {}
        for part in self.parts:
            try:
                specs = part.adapter.connections()
            except Exception:  # noqa: BLE001 - the driver reports a connections bug; nothing to describe
                continue
            for spec in specs:
                if spec.streams:   # a connection that does not say what it carries is not described
                    quotes[spec.id + part.driver.feed_suffix] = sorted(
                        {sym for channel, sym in spec.streams if channel in QUOTE_CHANNELS})
        if quotes != self._feed_quotes:
            self._feed_quotes = quotes
            describe("feed_quotes", quotes)

    async def _copy_counters(self) -> None:
        while True:
            await asyncio.sleep(self.config.counters_interval)
            self.copy_counters()


async def _amain(config: GatewayConfig) -> None:
    gw = Gateway(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, gw.request_stop)
    logger.info("gateway {} ({}) publishing on {}", config.name, config.exchange, config.pub)
    async with gw:
        await gw.wait()
    logger.info("gateway {} stopped", config.name)


def run_gateway(config: GatewayConfig | dict[str, Any]) -> None:
    """Run one gateway in this process until SIGINT/SIGTERM."""
    if not isinstance(config, GatewayConfig):
        config = GatewayConfig.model_validate(config)
    asyncio.run(_amain(config))
