"""Run one process of a topology: ``feedfabric gateway NAME`` / ``feedfabric consumer NAME``.

This module maps a topology entry onto the code that does the work:

- a live gateway runs ``gateways.process.Gateway`` (adapter + asyncio driver) with a bus
  Publisher made here (so CURVE from the topology applies to its endpoints);
- a replaying gateway (``replay: {path, pace, loop, start_delay}``) runs
  ``gateways.replay.Replayer`` on the capture, publishing through a Publisher; when the
  capture ends it keeps heartbeating and serving its books until stopped;
- a consumer is the class of its ``kind`` (:data:`CONSUMER_CLASSES`), constructed with the
  sources' endpoints, its prefixes, its own PUB endpoint and its ``options`` as keyword
  arguments (storage kinds: ``options`` configure the store).

Before anything binds, each process runs :func:`start_problems` on its entry (options
against the adapter's/consumer kind's parameters, symbols, captures, CURVE keys) and
refuses to start with every problem's field path and reason; ``feedfabric check`` and
``feedfabric up`` run the same function on the whole file first. CURVE is decided per
process from every endpoint it binds (:func:`secured`).

Each gets an optional Prometheus endpoint (feedfabric.metrics) and stops cleanly on
SIGINT/SIGTERM. Logging is set up by the CLI (feedfabric.logs).
"""

from __future__ import annotations

import importlib
import signal
import threading
import time
from collections import Counter
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


def secured(topo: Topology, name: str) -> bool:
    """Whether process ``name`` serves CURVE: security.curve is set and one of its endpoints is tcp.

    CURVE is decided per process, from *every* endpoint it binds (PUB and snapshot service):
    a tcp snapshot service next to an ipc PUB is secured as well. The bus Publisher takes one
    CurveServer for both its sockets and a subscriber one key pair for both connections to a
    source, so the ipc sibling of a tcp endpoint requires CURVE too.
    """
    if topo.security.curve is None:
        return False
    ep = topo.gateway_endpoint(name)
    return any(e is not None and e.startswith("tcp://") for e in (ep.pub, ep.snapshot))


def curve_server(topo: Topology, name: str) -> Any:
    """The CurveServer of process ``name`` when it is :func:`secured` (None otherwise).

    ``name`` is a gateway or consumer name; an endpoint string (older callers) is accepted
    and decides by that endpoint alone.
    """
    curve = topo.security.curve
    if curve is None:
        return None
    if name in topo.gateways or name in topo.consumers:
        if not secured(topo, name):
            return None
        where = name
    elif not name.startswith("tcp://"):
        return None
    else:
        where = name
    if curve.server_secret_key is None or curve.server_public_key is None:
        raise RunError(f"security.curve: server_public_key and server_secret_key are needed by {where} "
                       "(it binds a tcp endpoint with CURVE)")
    from bus.security import CurveServer

    # The keys as bytes, encoded as CurveServer itself encodes str keys (z85 is ASCII).
    return CurveServer(curve.server_public_key.get_secret_value().encode("ascii"),
                       curve.server_secret_key.get_secret_value().encode("ascii"),
                       frozenset(k.encode("ascii") for k in curve.allowed_clients))


def curve_client(topo: Topology, consumer: str) -> Any:
    """A CurveClient for a consumer whose sources are :func:`secured`, when CURVE is configured."""
    curve = topo.security.curve
    sec = [secured(topo, s) for s in topo.source_names(consumer)]
    if curve is None or not any(sec):
        return None
    if not all(sec):
        raise RunError(f"consumers.{consumer}.sources: {_mixed_sources(topo, consumer)}")
    if curve.client_secret_key is None or curve.client_public_key is None or curve.server_public_key is None:
        raise RunError(f"security.curve: client_public_key, client_secret_key and server_public_key are needed "
                       f"by consumer {consumer} (its sources serve CURVE)")
    from bus.security import CurveClient

    # The keys as bytes, encoded as CurveClient itself encodes str keys (z85 is ASCII).
    return CurveClient(curve.client_public_key.get_secret_value().encode("ascii"),
                       curve.client_secret_key.get_secret_value().encode("ascii"),
                       curve.server_public_key.get_secret_value().encode("ascii"))


def _mixed_sources(topo: Topology, consumer: str) -> str:
    names = topo.source_names(consumer)
    on = [n for n in names if secured(topo, n)]
    off = [n for n in names if not secured(topo, n)]
    return (f"with CURVE, a consumer's sources must all serve CURVE (have a tcp endpoint) or none "
            f"(one client key pair serves all its connections): {', '.join(on)} serve(s) CURVE, "
            f"{', '.join(off)} do(es) not")


# ---------------------------------------------------------------- start-time validation
#
# One set of checks, used both before anything starts (``feedfabric check``/``up``, through
# bus.topology's ``checks`` hook, so problems get their file line) and by each process at
# start (``run_gateway``/``run_consumer`` raise RunError with the same text): whatever the
# runner would refuse at start, ``check`` refuses first.

Problem = tuple[tuple, str]

# Fields of gateways.process.GatewayConfig that the runner fills from topology keys: an option
# may not set them (the topology key is the place to write it).
_FROM_TOPOLOGY = {"name": None, "exchange": "exchange", "channels": "channels", "symbols": "symbols",
                  "depth": "book_depth", "candle_interval": "candle_interval", "pub": "pub",
                  "snapshot": "snapshot", "urls": "urls", "record": "record",
                  "heartbeat_interval": "heartbeat_interval", "sndhwm": "sndhwm", "ws_proxy": "proxy",
                  "rest_proxy": "proxy"}
# Constructor parameters of consumer classes (and stores) that the runner fills itself.
_RUNNER_PARAMS = {"self", "name", "sources", "prefixes", "store", "publish", "heartbeat_interval",
                  "heartbeat_timeout", "subscriber_options", "root", "url", "dsn"}


def start_problems(topo: Topology, names: Any = None, *, keys: bool = True) -> list[Problem]:
    """Everything that would make a process of ``topo`` fail at start, as ``(path, reason)``.

    ``names`` limits the check to those processes (default: all). ``keys=False`` skips the
    presence of CURVE secret keys (a multi-host topology holds each host's keys only there).
    """
    out: list[Problem] = []
    for section, fn in (("gateways", _gateway_problems), ("consumers", _consumer_problems)):
        for name in getattr(topo, section):
            if names is not None and name not in names:
                continue
            try:
                out.extend(fn(topo, name, keys))
            except (KeyError, ValueError):
                continue  # a topology broken elsewhere (sources, endpoints): already reported there
    return list(dict.fromkeys(out))


def start_checks(names: Any = None, *, keys: bool = True) -> Callable[[Topology], list[Problem]]:
    """:func:`start_problems` as a bus.topology ``checks`` hook."""
    return lambda topo: start_problems(topo, names, keys=keys)


def _format_problems(problems: list[Problem]) -> str:
    from bus.topology import format_path

    return "; ".join(f"{format_path(p)}: {msg}" for p, msg in problems)


def _require_startable(topo: Topology, name: str) -> None:
    problems = start_problems(topo, [name])
    if problems:
        raise RunError(_format_problems(problems))


def _process_fields() -> dict[str, Any] | None:
    try:
        from gateways.process import GatewayConfig as ProcessConfig
    except ImportError:
        return None
    return dict(ProcessConfig.model_fields)


def _server_key_problems(topo: Topology, name: str, section: str) -> list[Problem]:
    curve = topo.security.curve
    if curve is None or not secured(topo, name):
        return []
    missing = [k for k in ("server_public_key", "server_secret_key") if getattr(curve, k) is None]
    return [(("security", "curve", k), f"needed by {section}.{name}, which binds a tcp endpoint with CURVE "
                                       f"(on a host that does not run it, check with --only)") for k in missing]


def _gateway_problems(topo: Topology, name: str, keys: bool) -> list[Problem]:
    from pydantic import TypeAdapter, ValidationError

    cfg = topo.gateways[name]
    base: tuple = ("gateways", name)
    out: list[Problem] = []
    live = cfg.replay is None
    # (A replaying gateway without options does not need gateways.process, nor its import time:
    # paced replays that share a start_at must be ready in time.)
    fields = _process_fields() if live or cfg.options else {}
    if fields is None:
        if live:
            out.append((base, "the live gateway (gateways.process) is not installed"))
        fields = {}
    allowed = sorted(k for k in fields if k not in _FROM_TOPOLOGY)
    for key, value in cfg.options.items():
        path = (*base, "options", key)
        if key in _FROM_TOPOLOGY:
            target = _FROM_TOPOLOGY[key]
            out.append((path, "not an option: the gateway id is its name in the topology" if target is None
                        else f"not an option: write it as gateways.{name}.{target}"))
        elif key not in fields:
            out.append((path, f"unknown gateway option; accepted: {', '.join(allowed) or 'none'}"))
        else:
            info = fields[key]
            from typing import Annotated

            # The field's own type and constraints, built at run time: a type form mypy cannot know.
            field_type: Any = Annotated[info.annotation, info]
            try:
                TypeAdapter(field_type).validate_python(value)
            except ValidationError as exc:
                out.append((path, exc.errors(include_url=False)[0]["msg"]))
    try:
        from gateways import exchanges as registry

        adapter = registry.get(cfg.exchange)
    except Exception as exc:  # noqa: BLE001 - reported below, or already by the topology check
        adapter = None
        if isinstance(exc, KeyError) and registry.unknown(cfg.exchange) is None:
            # A name the topology check let through, refused once imported (a CCXT_<ID> ccxt lacks).
            out.append(((*base, "exchange"), str(exc.args[0])))
    if adapter is not None:
        known = dict(getattr(adapter, "urls", {}) or {})
        for key in cfg.urls:
            if key not in known:
                out.append(((*base, "urls", key), f"unknown url name for {cfg.exchange}; "
                                                  f"known: {', '.join(sorted(known)) or 'none'}"))
    if not live and cfg.replay is not None and not Path(cfg.replay.path).exists():
        out.append(((*base, "replay", "path"), f"capture {cfg.replay.path} does not exist"))
    if keys:
        out.extend(_server_key_problems(topo, name, "gateways"))
    if live and not out and fields:
        # Whatever else the process config would refuse (same model as at start).
        try:
            live_config(topo, name)
        except _ProcessConfigError as exc:
            out.extend(exc.problems)
    return out


def _keyword_params(cls: type) -> dict[str, Any] | None:
    """Keyword parameters of ``cls(...)`` following ``**kwargs`` up the MRO (None: accepts anything)."""
    import inspect

    params: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            return params
        try:
            sig = inspect.signature(init)
        except (TypeError, ValueError):
            return None
        var_kw = False
        for p in sig.parameters.values():
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                var_kw = True
            elif p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
                params.setdefault(p.name, p)
        if not var_kw:
            return params
    return params


def _store_class(kind: str) -> type:
    targets = {"parquet": "consumers.storage.parquet:ParquetStore",
               "redis": "consumers.storage.redis_streams:RedisStreamsStore",
               "postgres": "consumers.storage.postgres:PostgresStore"}
    return _load((targets[kind],), f"the {kind} store")


def _consumer_problems(topo: Topology, name: str, keys: bool) -> list[Problem]:
    import inspect

    cfg = topo.consumers[name]
    base: tuple = ("consumers", name)
    out: list[Problem] = []
    try:
        target = _store_class(cfg.kind) if cfg.kind in STORAGE_KINDS else consumer_class(cfg.kind)
    except RunError as exc:
        return [((*base, "kind"), str(exc))]
    params = _keyword_params(target)
    if params is not None:
        accepted = sorted(k for k in params if k not in _RUNNER_PARAMS)
        what = f"the {cfg.kind} store" if cfg.kind in STORAGE_KINDS else f"the {cfg.kind} consumer kind"
        for key in cfg.options:
            if key in _RUNNER_PARAMS:
                out.append(((*base, "options", key), "not an option: set by the topology (sources, prefixes, pub, "
                                                     "path/url, heartbeat_*)"))
            elif key not in params:
                out.append(((*base, "options", key), f"unknown option of {what}; accepted: "
                                                     f"{', '.join(accepted) or 'none'}"))
        for key, p in params.items():
            if key not in _RUNNER_PARAMS and p.default is inspect.Parameter.empty and key not in cfg.options:
                out.append(((*base, "options"), f"{what} needs option {key!r}"))
    if topo.security.curve is not None:
        if keys:
            out.extend(_server_key_problems(topo, name, "consumers"))
        try:
            sec = [secured(topo, s) for s in topo.source_names(name)]
        except KeyError:
            sec = []
        if any(sec) and not all(sec):
            out.append(((*base, "sources"), _mixed_sources(topo, name)))
        elif any(sec) and keys:
            curve = topo.security.curve
            for k in ("client_public_key", "client_secret_key", "server_public_key"):
                if getattr(curve, k) is None:
                    out.append((("security", "curve", k), f"needed by consumers.{name}, whose sources serve CURVE "
                                                          "(on a host that does not run it, check with --only)"))
    return out


def _stop_on_signals(stop: Callable[[], None]) -> None:
    def handler(signum: int, frame: Any) -> None:
        logger.info("{} received, stopping", signal.Signals(signum).name)
        stop()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


# ---------------------------------------------------------------- consumers

def build_consumer(topo: Topology, name: str) -> Any:
    """The consumer object of topology entry ``name`` (not yet running)."""
    _require_startable(topo, name)
    cfg: ConsumerConfig = topo.consumers[name]
    cls = consumer_class(cfg.kind)
    own = topo.gateway_endpoint(name)
    server = curve_server(topo, name)
    common: dict[str, Any] = {"publish": None if server is not None else own,
                              "heartbeat_interval": cfg.heartbeat_interval,
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
            consumer = cls(name, sources, store, cfg.prefixes, **common)
        else:
            consumer = cls(name, sources, cfg.prefixes, **common, **cfg.options)
    except TypeError as exc:
        raise RunError(f"consumers.{name}.options: {exc}") from None
    except ValueError as exc:  # e.g. an ohlcv interval the aggregation cannot parse
        raise RunError(f"consumers.{name}.options: {exc}") from None
    if server is not None:
        # The consumer's own PUB (and snapshot service) with CURVE: made here, as for gateways.
        from bus.publisher import Publisher

        consumer.publisher = Publisher(name, own.pub, own.snapshot, heartbeat_interval=cfg.heartbeat_interval,
                                       curve=server)
        consumer.publisher.start()
    return consumer


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
    _require_startable(topo, name)
    ensure_private_dir(topo.run_dir)
    stop = threading.Event()
    _stop_on_signals(stop.set)
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    log = logger.bind(gateway=name, exchange=cfg.exchange)
    if cfg.replay is not None:
        return _replay_gateway(topo, name, stop, log)
    return _live_gateway(topo, name, stop, log)


class _ProcessConfigError(RunError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(_format_problems(problems))


def live_config(topo: Topology, name: str) -> Any:
    """The gateway process's own config (gateways.process.GatewayConfig) for topology gateway ``name``."""
    from pydantic import ValidationError

    try:
        from gateways.process import GatewayConfig as ProcessConfig
    except ImportError as exc:
        raise RunError(f"the live gateway (gateways.process) is not installed: {exc}") from None
    cfg = topo.gateways[name]
    ep = topo.gateway_endpoint(name)
    data: dict[str, Any] = {
        # 'all' is the pattern of every instrument the exchange lists (gateways.selection).
        "name": name, "exchange": cfg.exchange, "channels": list(cfg.channels),
        "symbols": ["*"] if cfg.symbols is None else list(cfg.symbols),
        "depth": cfg.book_depth, "candle_interval": cfg.candle_interval, "pub": ep.pub, "snapshot": ep.snapshot,
        "urls": dict(cfg.urls), "record": cfg.record, "heartbeat_interval": cfg.heartbeat_interval,
        "sndhwm": cfg.sndhwm, "ws_proxy": cfg.proxy, "rest_proxy": cfg.proxy,
    }
    # Driver settings (backoff_initial, silence_timeout, ...) come through options.
    data.update(cfg.options)
    try:
        return ProcessConfig.model_validate(data)
    except ValidationError as exc:
        problems: list[Problem] = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if not loc:
                path: tuple = ("gateways", name)
            elif loc[0] in cfg.options:
                path = ("gateways", name, "options", *loc)
            else:
                path = ("gateways", name, _FROM_TOPOLOGY.get(str(loc[0])) or str(loc[0]), *loc[1:])
            problems.append((path, msg))
        raise _ProcessConfigError(problems) from None


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
                        curve=curve_server(topo, name))
        pub.start()
        gw = Gateway(config, publisher=pub)
        async with gw:
            stop_metrics = (serve_metrics(cfg.metrics_port, name, pub.all_counters, feeds=pub.feed_states,
                                          books_invalid=pub.books_invalid)
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
    from gateways.capture import later_parts, read_capture
    from gateways.replay import replay_parts

    cfg = topo.gateways[name]
    replay = cfg.replay
    assert replay is not None
    if not Path(replay.path).exists():
        raise RunError(f"gateways.{name}.replay.path: {replay.path} does not exist")
    # A recording whose gateway subscribed later listings on parts of their own: all of it.
    files = [Path(replay.path), *later_parts(replay.path)]
    if len(files) > 1:
        log.info("replaying {} parts of one recording: {}", len(files), ", ".join(f.name for f in files))
    ep = topo.gateway_endpoint(name)
    channels = None if cfg.symbols is None else {ch: list(cfg.symbols) for ch in cfg.channels}
    options: dict[str, Any] = {}
    if cfg.book_depth:
        options["depth"] = cfg.book_depth
    pub = Publisher(name, ep.pub, ep.snapshot, sndhwm=cfg.sndhwm, heartbeat_interval=cfg.heartbeat_interval,
                    exchange=cfg.exchange, curve=curve_server(topo, name))
    pub.start()
    stop_metrics = (serve_metrics(cfg.metrics_port, name, pub.all_counters, feeds=pub.feed_states,
                                  books_invalid=pub.books_invalid)
                    if cfg.metrics_port else None)

    def records(path: Path) -> Any:
        for rec in read_capture(path):
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
            results = replay_parts([records(f) for f in files], exchange=cfg.exchange, channels=channels,
                                   publisher=pub, pace=replay.pace > 0, speed=replay.pace or 1.0,
                                   subscription_options=options, start_at=replay.start_at if passes == 1 else None)
            errors = sum(v for r in results for k, v in r.adapter.counters.items() if k.startswith("errors."))
            if errors:
                pub.count("adapter_errors", errors)
            pub.count("replay_passes")
            kinds: Counter[str] = sum((r.events_by_kind for r in results), Counter())
            events = sum(kinds.values())
            log.info("replay pass {} of {}: {} events ({})", passes, replay.path, events,
                     ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
            if not replay.loop:
                pub.set_feed_state("replay", "finished", f"{events} events")
                break
        stop.wait()
    finally:
        if stop_metrics:
            stop_metrics()
        pub.close()
    log.info("gateway {} stopped", name)
    return 0
