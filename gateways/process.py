"""The gateway process: one exchange adapter + the asyncio driver + the bus publisher.

:class:`GatewayConfig` (pydantic) is everything one gateway needs: exchange, channels
and symbols, depth, where to publish, exchange URL overrides (e.g. the loopback
exchange), driver behaviour (backoff, proxies, silence timeout) and an optional capture
file to record into. Symbols may be patterns (gateways.selection): the gateway matches them
against the exchange's instruments before it builds its adapter. :class:`Gateway` runs it
inside an event loop (tests, embedding);
:func:`run_gateway` runs it as a process until SIGINT/SIGTERM.

The adapter's counters (parse errors, ignored messages by reason, book gaps...) are
copied into the publisher's heartbeat counters every ``counters_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gateways import exchanges
from gateways.adapter import CHANNELS, Adapter, Subscription
from gateways.books import share_books
from gateways.driver import Driver, DriverConfig, proxy_problem
from gateways.selection import expand, has_patterns, instrument_requests


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
    heartbeat_interval: float = Field(1.0, gt=0)
    sndhwm: int = Field(100_000, ge=0)
    counters_interval: float = Field(1.0, gt=0)
    backoff_initial: float = Field(0.5, gt=0)
    backoff_max: float = Field(30.0, gt=0)
    silence_timeout: float | None = Field(None, gt=0)
    ws_proxy: str | list[str] | None = Field(None, description="proxy URL, or a pool of them used in turn")
    rest_proxy: str | list[str] | None = Field(None, description="proxy URL, or a pool of them used in turn")
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

    @model_validator(mode="after")
    def _channels(self) -> GatewayConfig:
        if isinstance(self.channels, list):
            if not self.symbols:
                raise ValueError("channels given as a list need `symbols`")
            self.channels = {ch: list(self.symbols) for ch in self.channels}
        unknown = set(self.channels) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}; known: {', '.join(CHANNELS)}")
        return self

    def subscription(self) -> Subscription:
        assert isinstance(self.channels, dict)
        return Subscription(self.channels, depth=self.depth, candle_interval=self.candle_interval,
                            open_interest_interval=self.open_interest_interval, poll_interval=self.poll_interval)

    def driver_config(self) -> DriverConfig:
        cfg = DriverConfig(backoff_initial=self.backoff_initial, backoff_max=self.backoff_max,
                           ws_proxy=self.ws_proxy, rest_proxy=self.rest_proxy, silence_timeout=self.silence_timeout,
                           ccxt=self.ccxt or None)
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


class Gateway:
    """A running gateway inside the current event loop: ``async with Gateway(cfg) as gw: ...``.

    ``publisher`` may be given (tests); otherwise a bus Publisher is created and bound. When the
    config's symbols hold patterns (gateways.selection), the adapter, the driver and the recorder
    are built once they are resolved, inside the gateway's task: :attr:`adapter` and
    :attr:`driver` raise until then, :attr:`resolved` is set then.
    """

    def __init__(self, config: GatewayConfig, *, publisher: Any = None, driver_config: DriverConfig | None = None
                 ) -> None:
        self.config = config
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
        self._adapter: Adapter | None = None
        self._driver: Driver | None = None
        self.recorder: Any = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._counters_task: asyncio.Task[None] | None = None
        self._copied: Counter[str] = Counter()
        assert isinstance(config.channels, dict)
        if not has_patterns(config.channels):
            self._build(config)

    @property
    def adapter(self) -> Adapter:
        if self._adapter is None:
            raise RuntimeError(f"gateway {self.config.name}: symbol patterns not resolved yet "
                               "(they are matched once the instruments load; await gw.resolved.wait())")
        return self._adapter

    @property
    def driver(self) -> Driver:
        if self._driver is None:
            raise RuntimeError(f"gateway {self.config.name}: symbol patterns not resolved yet")
        return self._driver

    def _build(self, config: GatewayConfig) -> None:
        """The adapter, its recorder and driver, for a config whose symbols are all explicit."""
        self.config = config
        adapter = self._adapter = config.make_adapter()
        share_books(adapter, self.publisher)  # its snapshot service serves the adapter's own books
        if config.record is not None:
            from gateways.capture import CaptureWriter
            # The registry's name (CCXT_<ID> for the long tail), so a replay picks the same adapter.
            self.recorder = CaptureWriter(config.record, exchange=config.exchange,
                                          channels=config.subscription().channels,
                                          meta={"gateway": config.name, "depth": config.depth,
                                                "candle_interval": config.candle_interval,
                                                "open_interest_interval": config.open_interest_interval,
                                                "poll_interval": config.poll_interval})
        self._driver = driver_class(adapter)(adapter, self.publisher, config=self._driver_config,
                                             recorder=self.recorder)
        self.resolved.set()

    async def _resolve(self) -> GatewayConfig | None:
        """The config with its patterns replaced by the instruments they match (None: stopped first).

        The instrument lists are loaded by a driver of their own (same proxies, budget and retries
        as the gateway's); the gateway's driver then loads them again for the adapter it runs, so
        its capture holds them as always.
        """
        config = self.config
        assert isinstance(config.channels, dict)
        cls = exchanges.get(config.exchange)
        probe = cls(Subscription({}), urls=config.urls or None)
        resolver = self.resolver = driver_class(probe)(probe, self.publisher, config=self._driver_config)
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
        channels, unmatched = expand(config.channels, probe.symbols)
        for pattern in unmatched:
            resolver._count("subscription.unmatched_pattern")
            log.warning("{}: symbol pattern {!r} matches none of its {} instruments", probe.exchange, pattern,
                        len(probe.symbols))
        log.info("{}: symbol patterns resolved: {}", probe.exchange,
                 ", ".join(f"{ch} {len(syms)}" for ch, syms in channels.items()))
        return config.model_copy(update={"channels": channels})

    async def _run(self) -> None:
        if self._driver is None:
            config = await self._resolve()
            if config is None:
                return
            self._build(config)
            if self._stopping:
                return
        await self.driver.run()

    async def start(self) -> Gateway:
        if self._own_publisher:
            self.publisher.start()
        self._task = asyncio.create_task(self._run(), name=f"gateway:{self.config.name}")
        self._counters_task = asyncio.create_task(self._copy_counters())
        return self

    def request_stop(self) -> None:
        """Ask the gateway to stop (from a signal handler too): its driver, or its pattern resolution."""
        self._stopping = True
        for driver in (self.resolver, self._driver):
            if driver is not None:
                driver.stop()

    async def stop(self) -> None:
        self.request_stop()
        for task in (self._task, self._counters_task):
            if task is not None:
                if task is self._counters_task:
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.copy_counters()
        if self.recorder is not None:
            self.recorder.close()
        if self._own_publisher:
            self.publisher.close()

    async def __aenter__(self) -> Gateway:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

    def copy_counters(self) -> None:
        count = getattr(self.publisher, "count", None)
        if count is None or self._adapter is None:
            return
        for name, value in self._adapter.counters.items():
            delta = value - self._copied[name]
            if delta:
                count(f"adapter.{name}", delta)
                self._copied[name] = value

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
