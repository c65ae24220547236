"""The topology model: ``topology.yaml`` parsed, interpolated and validated (pydantic v2).

A topology names every process of a fabric: the **gateways** (one per exchange feed set,
each binding a PUB endpoint and a snapshot service) and the **consumers** (nbbo, storage,
aggregations) with what they subscribe to and where they publish or write. It is the single
source of truth for ``feedfabric up``, ``feedfabric gateway NAME`` and ``feedfabric consumer
NAME``; docs/topology.md is the reference of every key.

Loading (:func:`load_topology`) goes in three steps, each reporting problems as
:class:`Issue` (exact field path, source line where known, reason) collected into one
:class:`TopologyError` rather than stopping at the first:

1. YAML parse (syntax errors carry their line);
2. ``${VAR}`` / ``${VAR:-default}`` interpolation from the environment (``$${`` is a literal
   ``${``); an unset variable without a default is an error at the field that uses it;
3. pydantic validation (unknown keys are errors: every model forbids extras), then the
   cross-checks that need the whole file (sources that exist, unique endpoints, CURVE keys
   present where tcp endpoints require them, ipc path lengths).

Environment settings (:class:`Settings`, pydantic-settings, prefix ``FEEDFABRIC_``) choose
the default topology file and can override the run/log directories without editing it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.endpoints import IPC_PATH_MAX, GatewayEndpoint, ipc_endpoint, ipc_path

# Same words as gateways.adapter.CHANNELS (kept here so the bus package does not import gateways).
CHANNELS = ("trades", "l2_book", "l3_book", "ticker", "bbo", "candles", "funding", "open_interest",
            "liquidations", "index", "mark")
# Consumer kinds and whether they publish their own topics (then they get a PUB endpoint).
CONSUMER_KINDS: dict[str, bool] = {
    "nbbo": True, "ohlcv": True, "throttle": True, "renko": True,
    "parquet": False, "redis": False, "postgres": False,
}
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# ---------------------------------------------------------------- errors

@dataclass(frozen=True)
class Issue:
    """One problem in a topology: ``path`` like ``gateways.binance.channels[2]``, ``line`` (1-based) or None."""

    path: str
    message: str
    line: int | None = None

    def format(self, source: str | None = None) -> str:
        where = f"{source}:{self.line}: " if source and self.line else (f"{source}: " if source else "")
        return f"{where}{self.path or '<top>'}: {self.message}"


class TopologyError(ValueError):
    """A topology that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[Issue], source: str | None = None) -> None:
        self.issues = issues
        self.source = source
        lines = "\n".join("  " + i.format(source) for i in issues)
        super().__init__(f"invalid topology ({len(issues)} error{'s' if len(issues) != 1 else ''}):\n{lines}")


def format_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """``('gateways', 'binance', 'channels', 2)`` → ``gateways.binance.channels[2]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# ---------------------------------------------------------------- models

def _channel(value: str) -> str:
    if value not in CHANNELS:
        raise ValueError(f"unknown channel {value!r}; known: {', '.join(CHANNELS)}")
    return value


def _symbol(value: str) -> str:
    from cryptofeed_types import Symbol

    if not _PATTERN_CHARS.isdisjoint(value):
        # A pattern over normalized symbols (gateways.selection), matched when the gateway starts.
        if any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not a symbol pattern: write a symbol pattern without white space "
                             "(BTC-*, *-USDT-PERP)")
        return value
    try:
        parsed = Symbol.parse(value)
    except Exception as exc:  # noqa: BLE001 - the parser's own message says what is wrong
        raise ValueError(f"{value!r} is not a normalized symbol (BTC-USDT, BTC-USDT-PERP, ...): {exc}") from None
    if parsed.normalized != value:
        raise ValueError(f"{value!r} is not in normalized form; write {parsed.normalized!r}")
    return value


def _prefix(value: str) -> str:
    if value and not value.endswith("."):
        raise ValueError(f"prefix {value!r} must end with '.' (topics are '<channel>.<key>.'; write {value + '.'!r})")
    return value


_PATTERN_CHARS = frozenset("*?[")   # as gateways.selection.is_pattern (bus does not import gateways)
Channel = Annotated[str, AfterValidator(_channel)]
SymbolName = Annotated[str, AfterValidator(_symbol)]
Prefix = Annotated[str, AfterValidator(_prefix)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplayConfig(_Strict):
    """Make a gateway replay a capture instead of connecting to the exchange."""

    path: Path = Field(description="capture file (feedfabric capture, or a format the replayer knows)")
    pace: float = Field(0.0, ge=0.0, description="0 = as fast as possible, 1 = recorded pace, 2 = twice as fast")
    loop: bool = Field(False, description="start again at the end of the capture")
    start_delay: float = Field(0.0, ge=0.0, description="seconds between binding and replaying (consumers connect)")
    start_at: float | None = Field(None, ge=0.0, description="unix time (s) at which to begin replaying: gateways "
                                   "given the same value replay their captures in step (after start_delay)")


class CurveConfig(_Strict):
    """CURVE keys (z85) for tcp endpoints; values usually come from ``${VAR}``."""

    server_public_key: SecretStr | None = None
    server_secret_key: SecretStr | None = None
    client_public_key: SecretStr | None = None
    client_secret_key: SecretStr | None = None
    allowed_clients: list[str] = Field(default_factory=list, description="z85 public keys of clients let in")

    @field_validator("server_public_key", "server_secret_key", "client_public_key", "client_secret_key",
                     mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        # '${SECRET:-}' on a host that does not hold this key: absent, not malformed.
        return None if value == "" else value

    @field_validator("server_public_key", "server_secret_key", "client_public_key", "client_secret_key")
    @classmethod
    def _z85(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) != 40:
            # The value is a secret: its length is all we say about it.
            raise ValueError(f"must be a 40-character z85 CURVE key (got {len(value.get_secret_value())} characters)")
        return value

    @field_validator("allowed_clients")
    @classmethod
    def _z85_list(cls, value: list[str]) -> list[str]:
        for i, key in enumerate(value):
            if len(key) != 40:
                raise ValueError(f"allowed_clients[{i}] must be a 40-character z85 public key")
        return value


class SecurityConfig(_Strict):
    curve: CurveConfig | None = Field(None, description="CURVE encryption/authentication on tcp endpoints")


class SupervisorConfig(_Strict):
    """How ``feedfabric up`` restarts crashed processes."""

    backoff_initial: float = Field(0.5, gt=0, description="seconds before the first restart")
    backoff_max: float = Field(30.0, gt=0, description="cap of the exponential backoff")
    backoff_reset: float = Field(60.0, gt=0, description="a process up this long gets its backoff reset")
    stop_timeout: float = Field(10.0, gt=0, description="seconds between SIGTERM and SIGKILL when stopping")


class GatewayConfig(_Strict):
    """One gateway process: an exchange, its channels and symbols, where it binds."""

    exchange: str = Field(description="exchange id, e.g. BINANCE, COINBASE, KRAKEN, OKX, BYBIT")
    channels: list[Channel] = Field(min_length=1, description="channels to subscribe (see CHANNELS)")
    symbols: list[SymbolName] | None = Field(
        description="normalized symbols or patterns of them (BTC-*, *-USDT-PERP), or 'all' (stored as None): "
                    "every instrument of a live exchange, every symbol of a replayed capture")
    pub: str | None = Field(None, description="PUB endpoint (default ipc://<run_dir>/<name>.pub)")
    snapshot: str | Literal[False] | None = Field(
        None, description="snapshot service endpoint (default ipc://<run_dir>/<name>.snap; false = none)")
    book_depth: int = Field(0, ge=0, description="levels kept/published per book side (0 = exchange default)")
    checksum: str = Field(
        "resync", description="on a failed exchange checksum: resync the symbol (the only policy implemented)")
    candle_interval: str | None = Field(
        None, description="candle bar length, e.g. 1m, 5m, 1h (default: the exchange's own, 1m; 5m on Coinbase, whose channel offers only that)")
    urls: dict[str, str] = Field(default_factory=dict, description="override the adapter's named endpoints")
    proxy: str | list[str] | None = Field(
        None, description="HTTP/SOCKS proxy URL for REST and websockets, or a pool of them used in turn")
    replay: ReplayConfig | None = None
    record: Path | None = Field(None, description="also record every raw frame to this capture file")
    sndhwm: int = Field(100_000, ge=0)
    heartbeat_interval: float = Field(1.0, gt=0)
    metrics_port: int | None = Field(None, ge=1, le=65535, description="serve Prometheus metrics on this port")
    options: dict[str, Any] = Field(default_factory=dict, description="adapter-specific options")

    @field_validator("exchange")
    @classmethod
    def _upper(cls, value: str) -> str:
        if not value or not re.fullmatch(r"[A-Za-z0-9_]+", value):
            raise ValueError("must be an exchange id of letters, digits and '_' (e.g. BINANCE)")
        return value.upper()

    @field_validator("checksum", mode="before")
    @classmethod
    def _checksum_word(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false.
        return "off" if value is False else value

    @field_validator("checksum")
    @classmethod
    def _checksum(cls, value: str) -> str:
        if value in ("warn", "off"):
            # The gateways' book engine always invalidates and resyncs a book whose checksum fails.
            raise ValueError(f"{value!r} is not implemented: the gateways always resync a book whose exchange "
                             "checksum fails; write 'resync' (or leave checksum out)")
        if value != "resync":
            raise ValueError(f"unknown checksum policy {value!r}; the only policy is 'resync'")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _all(cls, value: Any) -> Any:
        if value == "all":
            return None
        if value is None:
            raise ValueError("give a list of symbols, or 'all'")
        return value

    @field_validator("symbols")
    @classmethod
    def _some(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("give at least one symbol, or 'all'")
        return value


class ConsumerConfig(_Strict):
    """One consumer process: its kind, its sources and prefixes, its output."""

    kind: str = Field(description="nbbo, parquet, redis, postgres, ohlcv, throttle, renko")
    sources: list[str] | None = Field(
        None, description="gateway / publishing-consumer names to connect to; 'gateways' (default) = every gateway")
    prefixes: list[Prefix] | None = Field(None, description="topic prefixes to subscribe (default: the kind's own)")
    pub: str | None = Field(None, description="PUB endpoint: its heartbeats, and its topics for publishing kinds "
                                              "(default ipc://<run_dir>/<name>.pub)")
    snapshot: str | Literal[False] | None = Field(None, description="snapshot service of a publishing consumer")
    path: Path | None = Field(None, description="output directory (parquet)")
    url: SecretStr | None = Field(None, description="server URL (redis, postgres); may hold a password")
    heartbeat_interval: float = Field(1.0, gt=0)
    heartbeat_timeout: float = Field(3.0, gt=0, description="a source silent this long is stale")
    metrics_port: int | None = Field(None, ge=1, le=65535)
    options: dict[str, Any] = Field(default_factory=dict, description="kind-specific options")

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in CONSUMER_KINDS:
            raise ValueError(f"unknown consumer kind {value!r}; known: {', '.join(CONSUMER_KINDS)}")
        return value

    @field_validator("sources", mode="before")
    @classmethod
    def _gateways(cls, value: Any) -> Any:
        return None if value == "gateways" else value

    @property
    def publishes(self) -> bool:
        return CONSUMER_KINDS[self.kind]


class Topology(_Strict):
    """A whole fabric: see the module docstring and docs/topology.md."""

    version: Literal[1] = 1
    run_dir: Path = Field(Path("./run"), description="directory of ipc sockets (private, mode 0700)")
    log_dir: Path = Field(Path("./logs"), description="one log file per process")
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = "INFO"
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)
    gateways: dict[str, GatewayConfig] = Field(default_factory=dict)
    consumers: dict[str, ConsumerConfig] = Field(default_factory=dict)

    # -- derived endpoints -----------------------------------------------------------------

    def process_names(self) -> list[str]:
        return [*self.gateways, *self.consumers]

    def gateway_endpoint(self, name: str) -> GatewayEndpoint:
        """Where gateway (or publishing consumer) ``name`` binds: PUB and snapshot endpoints."""
        if name in self.gateways:
            cfg: GatewayConfig | ConsumerConfig = self.gateways[name]
        elif name in self.consumers:
            # Every consumer binds a PUB for its heartbeats; publishing kinds also send their topics.
            cfg = self.consumers[name]
        else:
            raise KeyError(f"no gateway or consumer named {name!r}")
        pub = cfg.pub or ipc_endpoint(self.run_dir / f"{name}.pub")
        if cfg.snapshot is False:
            snap = None
        else:
            default_snap = pub.startswith("ipc://") and (name in self.gateways or self.consumers[name].publishes)
            snap = cfg.snapshot or (ipc_endpoint(self.run_dir / f"{name}.snap") if default_snap else None)
        return GatewayEndpoint(pub, snap)

    def source_names(self, consumer: str) -> list[str]:
        cfg = self.consumers[consumer]
        return list(self.gateways) if cfg.sources is None else list(cfg.sources)

    def source_endpoints(self, consumer: str) -> list[GatewayEndpoint]:
        """The endpoints consumer ``consumer`` connects to."""
        return [self.gateway_endpoint(n) for n in self.source_names(consumer)]

    def all_endpoints(self) -> dict[str, GatewayEndpoint]:
        return {n: self.gateway_endpoint(n) for n in self.process_names()}

    def ipc_paths(self) -> list[Path]:
        """Every ipc socket file the fabric creates (removed by ``feedfabric up`` on stop)."""
        out = []
        for ep in self.all_endpoints().values():
            for e in (ep.pub, ep.snapshot):
                p = ipc_path(e) if e else None
                if p is not None:
                    out.append(p)
        return out


class Settings(BaseSettings):
    """Environment overrides (``FEEDFABRIC_TOPOLOGY``, ``FEEDFABRIC_RUN_DIR``, ``FEEDFABRIC_LOG_DIR`` ...)."""

    model_config = SettingsConfigDict(env_prefix="FEEDFABRIC_", extra="ignore")

    topology: Path = Path("topology.yaml")
    run_dir: Path | None = None
    log_dir: Path | None = None
    log_level: str | None = None


# ---------------------------------------------------------------- loading

class _LineMap:
    """Maps field paths (tuples) to the YAML line they start on."""

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple, int] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            return
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                self.lines[(*path, key)] = k.start_mark.line + 1
                self._walk(v, (*path, key))
                self.lines[(*path, key)] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._walk(v, (*path, i))

    def line(self, path: tuple) -> int | None:
        # The deepest known ancestor: an error on a missing key points at its parent mapping.
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def interpolate(data: Any, env: Mapping[str, str] | None = None) -> tuple[Any, list[tuple[tuple, str]]]:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of ``data``.

    Returns the new tree and a list of ``(path, reason)`` for variables that are unset.
    """
    env = os.environ if env is None else env
    errors: list[tuple[tuple, str]] = []

    def sub(text: str, path: tuple) -> str:
        def repl(m: re.Match) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            errors.append((path, f"environment variable {name} is not set (write ${{{name}:-default}} "
                                 f"for a default)"))
            return ""
        return _VAR.sub(repl, text)

    def walk(node: Any, path: tuple) -> Any:
        if isinstance(node, str):
            return sub(node, path)
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        return node

    return walk(data, ()), errors


def _pydantic_issues(exc: ValidationError, lines: _LineMap) -> Iterator[Issue]:
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # Union members add their type name to the path ('symbols.list[str]'); drop those parts.
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("literal"))))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here; check spelling against docs/topology.md)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        yield Issue(format_path(loc), msg, lines.line(loc))


def _union_dedupe(issues: list[Issue]) -> list[Issue]:
    """Unions (e.g. ``symbols: list | 'all'``) report one error per member; keep the first per path."""
    seen: set[str] = set()
    out = []
    for i in issues:
        if i.path in seen:
            continue
        seen.add(i.path)
        out.append(i)
    return out


def _cross_check(topo: Topology, lines: _LineMap) -> list[Issue]:
    issues: list[Issue] = []

    def add(path: tuple, msg: str) -> None:
        issues.append(Issue(format_path(path), msg, lines.line(path)))

    names: dict[str, str] = {}
    for section in ("gateways", "consumers"):
        for name in getattr(topo, section):
            if not _NAME.match(name):
                add((section, name), "process names use letters, digits, '_' and '-' only (at most 64)")
            if name in names:
                add((section, name), f"name {name!r} is already used by a {names[name][:-1]}")
            names.setdefault(name, section)

    publishers = set(topo.gateways) | {n for n, c in topo.consumers.items() if c.publishes}
    for name, cfg in topo.consumers.items():
        if cfg.sources is None:
            if not topo.gateways:
                add(("consumers", name, "sources"), "sources is 'gateways' but the topology has no gateways")
        elif not cfg.sources:
            add(("consumers", name, "sources"), "give at least one source")
        for i, src in enumerate(cfg.sources or ()):
            if src == name:
                add(("consumers", name, "sources", i), "a consumer cannot subscribe to itself")
            elif src not in publishers:
                if src in topo.consumers:
                    add(("consumers", name, "sources", i),
                        f"{src!r} is a {topo.consumers[src].kind} consumer, which publishes nothing")
                else:
                    known = ", ".join(sorted(publishers)) or "none"
                    add(("consumers", name, "sources", i), f"no gateway or publishing consumer named {src!r} "
                                                           f"(known: {known})")
        if cfg.kind in ("redis", "postgres") and cfg.url is None:
            add(("consumers", name, "url"), f"a {cfg.kind} consumer needs url (e.g. ${{REDIS_URL}})")

    # Endpoints: valid transports, unique, ipc paths short enough, CURVE keys where tcp is used.
    seen: dict[str, tuple] = {}
    for section in ("gateways", "consumers"):
        for name, cfg in getattr(topo, section).items():
            for key in ("pub", "snapshot"):
                given = getattr(cfg, key)
                path = (section, name, key)
                if isinstance(given, str) and not re.match(r"^(ipc|tcp)://.+", given):
                    add(path, f"endpoint {given!r} must start with ipc:// or tcp://")
                    continue
                try:
                    ep = topo.gateway_endpoint(name)
                except ValueError as exc:  # ipc path too long for a unix socket
                    add(("run_dir",) if given is None else path, str(exc))
                    break
                value = ep.pub if key == "pub" else ep.snapshot
                if value is None:
                    continue
                p = ipc_path(value)
                if p is not None and len(str(p).encode()) > IPC_PATH_MAX:
                    add(path, f"ipc path is {len(str(p).encode())} bytes; unix sockets allow {IPC_PATH_MAX}")
                if value in seen and not value.endswith(":*"):
                    add(path, f"endpoint {value} is also used by {format_path(seen[value])}")
                seen.setdefault(value, path)
    if not topo.gateways and not topo.consumers:
        add((), "the topology defines no gateways and no consumers")
    # Names no gateway adapter can have (only when the registry is importable; what importing an
    # adapter reveals, e.g. a CCXT_<ID> ccxt lacks, is for the start-time checks).
    registry = _registry()
    if registry is not None:
        for name, gw in topo.gateways.items():
            problem = registry.unknown(gw.exchange)
            if problem is not None:
                add(("gateways", name, "exchange"), problem)
    return _dedupe_exact(issues)


def _dedupe_exact(issues: list[Issue]) -> list[Issue]:
    out: list[Issue] = []
    for i in issues:
        if i not in out:
            out.append(i)
    return out


def _registry() -> Any:
    """The gateway adapter registry (gateways.exchanges), None where it is not installed."""
    try:
        from gateways import exchanges
    except Exception:  # noqa: BLE001 - the registry is optional for validation
        return None
    return exchanges


#: A whole-topology check run after the model validated (``feedfabric.runner.start_problems``):
#: returns ``(path tuple, reason)`` pairs; used so ``check``/``up`` refuse what would fail at start.
Checks = Callable[[Topology], Iterable[tuple[tuple, str]]]


def parse_topology(text: str, *, source: str | None = None, env: Mapping[str, str] | None = None,
                   base_dir: Path | None = None, settings: Settings | None = None,
                   checks: Checks | None = None) -> Topology:
    """Validate topology ``text``; relative paths resolve against ``base_dir``. Raises :class:`TopologyError`.

    ``checks`` (optional) adds the start-time checks of the processes (see :data:`Checks`).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise TopologyError([Issue("", f"YAML syntax error: {reason}", line)], source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TopologyError([Issue("", f"the file must be a mapping of keys, not a {type(data).__name__}", 1)],
                            source)
    lines = _LineMap(text)
    data, missing = interpolate(data, env)
    issues = [Issue(format_path(p), msg, lines.line(p)) for p, msg in missing]
    if settings is not None:
        for key in ("run_dir", "log_dir", "log_level"):
            value = getattr(settings, key)
            if value is not None:
                data[key] = str(value)
    try:
        topo = Topology.model_validate(data)
    except ValidationError as exc:
        issues.extend(_union_dedupe(list(_pydantic_issues(exc, lines))))
        raise TopologyError(issues, source) from None
    issues.extend(_cross_check(topo, lines))
    if base_dir is not None:
        topo = _resolve_paths(topo, base_dir)
    if checks is not None:
        issues = _dedupe_exact(issues + [Issue(format_path(p), msg, lines.line(p)) for p, msg in checks(topo)])
    if issues:
        raise TopologyError(issues, source)
    return topo


def _resolve_paths(topo: Topology, base: Path) -> Topology:
    def r(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (base / p))

    gws = {}
    for name, gw in topo.gateways.items():
        upd: dict[str, Any] = {"record": r(gw.record)}
        if gw.replay is not None:
            upd["replay"] = gw.replay.model_copy(update={"path": r(gw.replay.path)})
        gws[name] = gw.model_copy(update=upd)
    cons = {n: c.model_copy(update={"path": r(c.path)}) for n, c in topo.consumers.items()}
    return topo.model_copy(update={"run_dir": r(topo.run_dir), "log_dir": r(topo.log_dir),
                                   "gateways": gws, "consumers": cons})


def load_topology(path: str | Path, *, env: Mapping[str, str] | None = None,
                  settings: Settings | None = None, resolve: bool = True, checks: Checks | None = None) -> Topology:
    """Read and validate a topology file; relative paths in it resolve against the current directory.

    (Resolving against the working directory, not the file's, matches how users read
    ``./data`` in the default topology: relative to where they run ``feedfabric``.)
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise TopologyError([Issue("", f"cannot read {p}: {exc.strerror or exc}")], str(p)) from None
    return parse_topology(text, source=str(p), env=env, settings=settings,
                          base_dir=Path.cwd() if resolve else None, checks=checks)


def check_file(path: str | Path, env: Mapping[str, str] | None = None, checks: Checks | None = None) -> list[Issue]:
    """Every problem in a topology file (empty list: it is valid)."""
    try:
        load_topology(path, env=env, checks=checks)
    except TopologyError as exc:
        return exc.issues
    return []
