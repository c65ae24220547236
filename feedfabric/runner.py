"""Run one process of a topology: ``feedfabric gateway NAME`` / ``feedfabric consumer NAME``.

This module maps a topology entry onto the code that does the work:

- a live gateway runs ``gateways.process.Gateway`` (adapter + asyncio driver) with a bus
  Publisher made here (so CURVE from the topology applies to tcp endpoints);
- a replaying gateway (``replay: {path, pace, loop, start_delay}``) runs
  ``gateways.replay.Replayer`` on the capture, publishing through a Publisher; when the
  capture ends it keeps heartbeating and serving its books until stopped;
- a consumer is the class of its ``kind`` (:data:`CONSUMER_CLASSES`), constructed with the
  sources' endpoints, its prefixes, its own PUB endpoint and its ``options`` as keyword
  arguments (storage kinds: ``options`` configure the store).

Each gets an optional Prometheus endpoint (feedfabric.metrics) and stops cleanly on
SIGINT/SIGTERM. Logging is set up by the CLI (feedfabric.logs).
"""

from __future__ import annotations

import importlib
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from bus.security import ensure_private_dir
from bus.topology import ConsumerConfig, GatewayConfig, Topology

# kind -> "module:Class" candidates, imported on use (first importable wins).
CONSUMER_CLASSES: dict[str, tuple[str, ...]] = {
    "nbbo": ("consumers.nbbo:NBBOConsumer",),
    "parquet": ("consumers.storage.consumer:StorageConsumer",),
    "redis": ("consumers.storage.consumer:StorageConsumer",),
    "postgres": ("consumers.storage.consumer:StorageConsumer",),
    "ohlcv": ("consumers.aggregations.ohlcv:OHLCVConsumer",),
    "throttle": ("consumers.aggregations.throttle:ThrottleConsumer",),
    "renko": ("consumers.aggregations.renko:RenkoConsumer",),
}
STORAGE_KINDS = ("parquet", "redis", "postgres")


class RunError(RuntimeError):
    """A process cannot be started (missing component, bad option); the message says why."""


def _load(targets: tuple[str, ...], what: str) -> type:
    errors = []
    for target in targets:
        module, _, attr = target.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            errors.append(f"{target}: {exc}")
            continue
        return obj
    raise RunError(f"no implementation of {what} is installed ({'; '.join(errors)})")


def consumer_class(kind: str) -> type:
    return _load(CONSUMER_CLASSES[kind], f"consumer kind {kind!r}")


def curve_server(topo: Topology, endpoint: str) -> Any:
    """A CurveServer for a tcp ``endpoint`` when the topology configures CURVE (None otherwise)."""
    curve = topo.security.curve
    if curve is None or not endpoint.startswith("tcp://"):
        return None
    if curve.server_secret_key is None or curve.server_public_key is None:
        raise RunError(f"security.curve: server_public_key and server_secret_key are needed to bind {endpoint} "
                       "with CURVE")
    from bus.security import CurveServer

    return CurveServer(curve.server_public_key.get_secret_value(), curve.server_secret_key.get_secret_value(),
                       frozenset(curve.allowed_clients))


def curve_client(topo: Topology, consumer: str) -> Any:
    """A CurveClient for a consumer whose sources are tcp endpoints, when CURVE is configured."""
    curve = topo.security.curve
    eps = topo.source_endpoints(consumer)
    tcp = [e.pub.startswith("tcp://") for e in eps]
    if curve is None or not any(tcp):
        return None
    if not all(tcp):
        raise RunError(f"consumers.{consumer}.sources: with CURVE, a consumer's sources must all be tcp "
                       "(one client key pair serves all its connections)")
    if curve.client_secret_key is None or curve.server_public_key is None:
        raise RunError("security.curve: client_public_key/client_secret_key and server_public_key are needed "
                       f"by consumer {consumer} (its sources are tcp)")
    from bus.security import CurveClient

    return CurveClient(curve.client_public_key.get_secret_value(), curve.client_secret_key.get_secret_value(),
                       curve.server_public_key.get_secret_value())


def _check_gateway_support(topo: Topology, name: str) -> None:
    cfg = topo.gateways[name]
    if cfg.checksum != "resync":
        # Adapters verify checksums and resync on failure; softer policies are not implemented yet.
        raise RunError(f"gateways.{name}.checksum: {cfg.checksum!r} is not supported by the gateways yet "
                       "(only 'resync')")


def _stop_on_signals(stop: Callable[[], None]) -> None:
    def handler(signum: int, frame: Any) -> None:
        logger.info("{} received, stopping", signal.Signals(signum).name)
        stop()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


# ---------------------------------------------------------------- consumers

def build_consumer(topo: Topology, name: str) -> Any:
    """The consumer object of topology entry ``name`` (not yet running)."""
    cfg: ConsumerConfig = topo.consumers[name]
    cls = consumer_class(cfg.kind)
    own = topo.gateway_endpoint(name)
    if topo.security.curve is not None and own.pub.startswith("tcp://"):
        raise RunError(f"consumers.{name}.pub: CURVE on a consumer's own tcp PUB is not supported yet; "
                       "use ipc, or tcp without security.curve")
    common: dict[str, Any] = {"publish": own, "heartbeat_interval": cfg.heartbeat_interval,
                              "heartbeat_timeout": cfg.heartbeat_timeout}
    client = curve_client(topo, name)
    if client is not None:
        common["subscriber_options"] = {"curve": client}
    sources = topo.source_endpoints(name)
    try:
        if cfg.kind in STORAGE_KINDS:
            from consumers.storage.consumer import make_store

            # Storage options configure the store (e.g. checkpoint_interval, fsync).
            opts: dict[str, Any] = dict(cfg.options)
            if cfg.kind == "parquet":
                opts["root"] = cfg.path or Path("data")
            else:
                assert cfg.url is not None  # the topology check requires it
                opts["url" if cfg.kind == "redis" else "dsn"] = cfg.url.get_secret_value()
            store = make_store(cfg.kind, **opts)
            return cls(name, sources, store, cfg.prefixes, **common)
        return cls(name, sources, cfg.prefixes, **common, **cfg.options)
    except TypeError as exc:
        raise RunError(f"consumers.{name}.options: {exc}") from None


def run_consumer(topo: Topology, name: str, *, duration: float | None = None) -> int:
    """Run consumer ``name`` until SIGINT/SIGTERM (or ``duration`` seconds)."""
    cfg = topo.consumers[name]
    ensure_private_dir(topo.run_dir)
    from feedfabric.metrics import serve_metrics

    consumer = build_consumer(topo, name)
    _stop_on_signals(consumer.stop)
    stop_metrics = serve_metrics(cfg.metrics_port, name, lambda: _counters_of(consumer)) if cfg.metrics_port else None
    logger.bind(consumer=name).info("consumer {} ({}) on {} source(s): {}", name, cfg.kind,
                                    len(topo.source_names(name)), ", ".join(topo.source_names(name)))
    try:
        consumer.run(duration=duration)
    finally:
        if stop_metrics:
            stop_metrics()
    return 0


def _counters_of(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr in ("counters",):
        c = getattr(obj, attr, None)
        if isinstance(c, dict):
            out.update(c)
    pub = getattr(obj, "publisher", None)
    if pub is not None:
        out.update({f"publisher.{k}": v for k, v in pub.counters.items()})
    return out


# ---------------------------------------------------------------- gateways

def run_gateway(topo: Topology, name: str, *, duration: float | None = None) -> int:
    """Run gateway ``name`` (live, or replaying its capture) until SIGINT/SIGTERM (or ``duration``)."""
    cfg: GatewayConfig = topo.gateways[name]
    ensure_private_dir(topo.run_dir)
    stop = threading.Event()
    _stop_on_signals(stop.set)
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    log = logger.bind(gateway=name, exchange=cfg.exchange)
    _check_gateway_support(topo, name)
    if cfg.replay is not None:
        return _replay_gateway(topo, name, stop, log)
    return _live_gateway(topo, name, stop, log)


def live_config(topo: Topology, name: str) -> Any:
    """The gateway process's own config (gateways.process.GatewayConfig) for topology gateway ``name``."""
    from pydantic import ValidationError

    try:
        from gateways.process import GatewayConfig as ProcessConfig
    except ImportError as exc:
        raise RunError(f"the live gateway (gateways.process) is not installed: {exc}") from None
    cfg = topo.gateways[name]
    if cfg.symbols is None:
        raise RunError(f"gateways.{name}.symbols: 'all' is only supported for replay so far; list the symbols")
    ep = topo.gateway_endpoint(name)
    data: dict[str, Any] = {
        "name": name, "exchange": cfg.exchange, "channels": list(cfg.channels), "symbols": list(cfg.symbols),
        "depth": cfg.book_depth, "candle_interval": cfg.candle_interval, "pub": ep.pub, "snapshot": ep.snapshot,
        "urls": dict(cfg.urls), "record": cfg.record, "heartbeat_interval": cfg.heartbeat_interval,
        "sndhwm": cfg.sndhwm, "ws_proxy": cfg.proxy, "rest_proxy": cfg.proxy,
    }
    # Driver settings (backoff_initial, silence_timeout, ...) come through options.
    data.update(cfg.options)
    try:
        return ProcessConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RunError(f"gateways.{name}: {loc}: {first['msg']}") from None


def _live_gateway(topo: Topology, name: str, stop: threading.Event, log: Any) -> int:
    """Run the gateway process (adapter + asyncio driver + publisher) until ``stop``."""
    import asyncio

    from feedfabric.metrics import serve_metrics
    from gateways.process import Gateway

    config = live_config(topo, name)
    cfg = topo.gateways[name]

    async def amain() -> None:
        from bus.publisher import Publisher

        # Our own Publisher, so CURVE from the topology applies to tcp endpoints.
        pub = Publisher(name, config.pub, config.snapshot, sndhwm=config.sndhwm,
                        heartbeat_interval=config.heartbeat_interval, exchange=cfg.exchange,
                        curve=curve_server(topo, config.pub))
        pub.start()
        gw = Gateway(config, publisher=pub)
        async with gw:
            stop_metrics = (serve_metrics(cfg.metrics_port, name, lambda: gw.publisher.counters)
                            if cfg.metrics_port else None)
            # The signal handler sets a threading.Event; poll it from the loop.
            driver_done = asyncio.create_task(gw.wait())
            try:
                while not stop.is_set() and not driver_done.done():
                    await asyncio.sleep(0.2)
            finally:
                if stop_metrics:
                    stop_metrics()
        pub.close()

    log.info("gateway {} ({}) live, publishing on {}", name, cfg.exchange, config.pub)
    asyncio.run(amain())
    log.info("gateway {} stopped", name)
    return 0


def _replay_gateway(topo: Topology, name: str, stop: threading.Event, log: Any) -> int:
    """A gateway whose source is a capture: gateways.replay.Replayer feeding a bus Publisher.

    After the capture ends (and ``loop`` is off) the publisher stays up, heartbeating and
    serving snapshots, until stopped: consumers that join late still get the final books.
    """
    from bus.publisher import Publisher
    from feedfabric.metrics import serve_metrics
    from gateways.capture import read_capture
    from gateways.replay import Replayer

    cfg = topo.gateways[name]
    replay = cfg.replay
    assert replay is not None
    if not Path(replay.path).exists():
        raise RunError(f"gateways.{name}.replay.path: {replay.path} does not exist")
    ep = topo.gateway_endpoint(name)
    channels = None if cfg.symbols is None else {ch: list(cfg.symbols) for ch in cfg.channels}
    options: dict[str, Any] = {}
    if cfg.book_depth:
        options["depth"] = cfg.book_depth
    pub = Publisher(name, ep.pub, ep.snapshot, sndhwm=cfg.sndhwm, heartbeat_interval=cfg.heartbeat_interval,
                    exchange=cfg.exchange, curve=curve_server(topo, ep.pub))
    pub.start()
    stop_metrics = serve_metrics(cfg.metrics_port, name, lambda: pub.counters) if cfg.metrics_port else None

    def records():
        for rec in read_capture(replay.path):
            if stop.is_set():
                return
            yield rec

    try:
        if replay.start_delay:
            stop.wait(replay.start_delay)
        if replay.start_at is not None:
            # Paced replays of several venues only make a sensible NBBO when they start together.
            stop.wait(max(0.0, replay.start_at - time.time()))
        passes = 0
        while not stop.is_set():
            passes += 1
            replayer = Replayer(exchange=cfg.exchange, channels=channels, publisher=pub,
                                pace=replay.pace > 0, speed=replay.pace or 1.0, subscription_options=options)
            result = replayer.run(records())
            errors = sum(v for k, v in result.adapter.counters.items() if k.startswith("errors."))
            if errors:
                pub.count("adapter_errors", errors)
            pub.count("replay_passes")
            log.info("replay pass {} of {}: {} events ({})", passes, replay.path, result.event_count,
                     ", ".join(f"{k}={v}" for k, v in sorted(result.events_by_kind.items())))
            if not replay.loop:
                pub.set_feed_state("replay", "finished", f"{result.event_count} events")
                break
        stop.wait()
    finally:
        if stop_metrics:
            stop_metrics()
        pub.close()
    log.info("gateway {} stopped", name)
    return 0
