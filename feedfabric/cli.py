"""The ``feedfabric`` command (click): one entry point for every process and tool.

Commands: ``check`` (validate a topology), ``up`` (run all its processes under supervision),
``gateway NAME`` / ``consumer NAME`` (run one process, for systemd/Kubernetes), ``tap PREFIX``
(print live events), ``status`` (live health table), ``demo`` (offline end-to-end run), plus
the gateway tools ``record``, ``replay``, ``exchanges``, ``symbols`` from gateways.commands.

The topology file is ``--topology/-t``, else ``$FEEDFABRIC_TOPOLOGY``, else ``./topology.yaml``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from feedfabric import __version__


def _settings():
    from bus.topology import Settings

    return Settings()


def _load(path: str | None, *, startable: bool = False, only: tuple[str, ...] | None = None, status: int = 2):
    """Load a topology or exit with every problem listed (``status``, default 2).

    ``startable``: also run the checks each process applies at start (feedfabric.runner),
    for the processes ``only`` (default all), so nothing starts half-configured.
    """
    from bus.topology import TopologyError, load_topology

    settings = _settings()
    file = Path(path) if path else settings.topology
    checks = None
    if startable:
        from feedfabric.runner import start_checks

        checks = start_checks(list(only) if only else None)
    try:
        return load_topology(file, settings=settings, checks=checks), file
    except TopologyError as exc:
        click.echo(str(exc), err=True)
        sys.exit(status)


topology_option = click.option("-t", "--topology", "topology", type=click.Path(dir_okay=False), default=None,
                               help="topology file (default: $FEEDFABRIC_TOPOLOGY or ./topology.yaml)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="feedfabric")
def main() -> None:
    """feedfabric: exchange gateways publishing normalized market data on ZeroMQ."""


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--only", multiple=True, help="check only what these processes need at start (repeatable; "
                                            "e.g. on a host that runs only them)")
def check(file: str | None, only: tuple[str, ...]) -> None:
    """Validate a topology file: every error with its field path and reason.

    Runs the same checks each process applies at start (adapter and consumer options,
    symbols, captures, CURVE keys), so a topology that passes does not fail at start.
    """
    topo, path = _load(file, startable=True, only=only or None, status=1)
    unknown = [n for n in only if n not in topo.process_names()]
    if unknown:
        raise click.UsageError(f"no process named {', '.join(unknown)} in the topology "
                               f"(known: {', '.join(topo.process_names())})")
    click.echo(f"{path}: OK — {len(topo.gateways)} gateway(s), {len(topo.consumers)} consumer(s)")
    for name, gw in topo.gateways.items():
        ep = topo.gateway_endpoint(name)
        src = f"replay {gw.replay.path} (pace {gw.replay.pace})" if gw.replay else "live"
        syms = "all symbols" if gw.symbols is None else ", ".join(gw.symbols)
        click.echo(f"  gateway  {name:<12} {gw.exchange:<10} {','.join(gw.channels)} [{syms}] {src} -> {ep.pub}")
    for name, c in topo.consumers.items():
        click.echo(f"  consumer {name:<12} {c.kind:<10} <- {', '.join(topo.source_names(name))} "
                   f"{list(c.prefixes) if c.prefixes else '(default prefixes)'}")


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--only", multiple=True, help="start only these processes (repeatable)")
def up(file: str | None, only: tuple[str, ...]) -> None:
    """Start every process of the topology; restart crashed ones; Ctrl-C/SIGTERM stops all."""
    from feedfabric.supervisor import Supervisor

    # Everything each process would refuse at start is refused here, before anything starts.
    topo, path = _load(file, startable=True, only=only or None)
    try:
        sup = Supervisor(topo, path, only=only or None)
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from None
    try:
        sys.exit(sup.run())
    except RuntimeError as exc:
        click.echo(f"feedfabric up: {exc}", err=True)
        sys.exit(1)


def _process_logging(topo, name: str) -> None:
    from feedfabric.logs import setup_logging

    setup_logging(name, topo.log_dir, topo.log_level)


@main.command()
@click.argument("name")
@topology_option
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
def gateway(name: str, topology: str | None, duration: float | None) -> None:
    """Run gateway NAME of the topology in this process."""
    from feedfabric.runner import RunError, run_gateway

    topo, _ = _load(topology)
    if name not in topo.gateways:
        raise click.UsageError(f"no gateway {name!r} in the topology (gateways: {', '.join(topo.gateways) or 'none'})")
    _process_logging(topo, name)
    try:
        sys.exit(run_gateway(topo, name, duration=duration))
    except RunError as exc:
        click.echo(f"gateway {name}: {exc}", err=True)
        sys.exit(3)


@main.command()
@click.argument("name")
@topology_option
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
def consumer(name: str, topology: str | None, duration: float | None) -> None:
    """Run consumer NAME of the topology in this process."""
    from feedfabric.runner import RunError, run_consumer

    topo, _ = _load(topology)
    if name not in topo.consumers:
        raise click.UsageError(
            f"no consumer {name!r} in the topology (consumers: {', '.join(topo.consumers) or 'none'})")
    _process_logging(topo, name)
    try:
        sys.exit(run_consumer(topo, name, duration=duration))
    except RunError as exc:
        click.echo(f"consumer {name}: {exc}", err=True)
        sys.exit(3)


def _endpoints(topology: str | None, sources: tuple[str, ...], endpoint: tuple[str, ...]):
    from bus.endpoints import GatewayEndpoint

    if endpoint:
        out = []
        for e in endpoint:
            pub, _, snap = e.partition(",")
            out.append(GatewayEndpoint(pub, snap or None))
        return out
    topo, _ = _load(topology)
    known = topo.all_endpoints()
    bad = [s for s in sources if s not in known]
    if bad:
        raise click.UsageError(f"unknown source {', '.join(bad)} (known: {', '.join(known)})")
    return [known[s] for s in (sources or known)]


@main.command()
@click.argument("prefix", default="")
@topology_option
@click.option("-s", "--source", "sources", multiple=True, help="only these gateways/consumers (repeatable)")
@click.option("-e", "--endpoint", multiple=True, help="connect here instead of the topology: PUB[,SNAPSHOT]")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("-n", "--count", type=int, default=None, help="stop after N events")
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
@click.option("--heartbeats", is_flag=True, help="also show heartbeats (hidden under an empty prefix)")
def tap(prefix: str, topology: str | None, sources: tuple[str, ...], endpoint: tuple[str, ...], as_json: bool,
        count: int | None, duration: float | None, heartbeats: bool) -> None:
    """Print live decoded events whose topic starts with PREFIX (e.g. trades.BINANCE.)."""
    from feedfabric.tap import tap as run_tap

    eps = _endpoints(topology, sources, endpoint)
    run_tap(eps, [prefix], as_json=as_json, count=count, duration=duration, heartbeats=heartbeats,
            write=lambda line: click.echo(line))


@main.command()
@click.argument("prefix", default="")
@topology_option
@click.option("-s", "--source", "sources", multiple=True, help="only these gateways/consumers (repeatable)")
@click.option("-e", "--endpoint", multiple=True, help="connect here instead of the topology: PUB[,SNAPSHOT]")
@click.option("--duration", type=float, default=10.0, show_default=True,
              help="listen this many seconds, then report (0: until Ctrl-C)")
@click.option("--interval", type=float, default=None, help="also report every this many seconds (own window each)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per source and channel")
def latency(prefix: str, topology: str | None, sources: tuple[str, ...], endpoint: tuple[str, ...],
            duration: float, interval: float | None, as_json: bool) -> None:
    """How old data is on arrival: exchange→receipt, receipt→publish, publish→here (p50/p99/max),
    per source and channel, for topics starting with PREFIX."""
    from feedfabric.latency import latency as run_latency

    if interval is not None and interval <= 0:
        raise click.BadParameter("must be > 0", param_hint="--interval")
    eps = _endpoints(topology, sources, endpoint)
    run_latency(eps, [prefix], duration=duration or None, interval=interval, as_json=as_json,
                write=lambda line: click.echo(line))


@main.command()
@topology_option
@click.option("-s", "--source", "sources", multiple=True, help="only these gateways/consumers (repeatable)")
@click.option("--once", is_flag=True, help="print the table once (after a few heartbeats) and exit")
@click.option("--interval", type=float, default=1.0, help="refresh period of the live table")
@click.option("--wait", type=float, default=2.5, help="with --once: how long to listen at most")
def status(topology: str | None, sources: tuple[str, ...], once: bool, interval: float, wait: float) -> None:
    """Live table of every process: heartbeat age, event rate, lag, gaps, resyncs, reconnects."""
    from feedfabric.status import status as run_status

    topo, _ = _load(topology)
    roles = {n: "gateway" for n in topo.gateways} | {n: f"consumer/{c.kind}" for n, c in topo.consumers.items()}
    bad = [s for s in sources if s not in roles]
    if bad:
        raise click.UsageError(f"unknown process {', '.join(bad)} (known: {', '.join(roles)})")
    if sources:
        roles = {n: r for n, r in roles.items() if n in sources}
    eps = {n: e for n, e in topo.all_endpoints().items() if n in roles}
    sys.exit(run_status(eps, roles, once=once, interval=interval, wait=wait))


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="where Parquet files go (default: a new temporary directory)")
@click.option("--seconds", type=float, default=60.0, show_default=True, help="give up after this long")
@click.option("--regenerate", is_flag=True, help="rebuild the simulated captures before running")
@click.option("--pace", type=float, default=4.0, show_default=True,
              help="replay speed: 1 = recorded pace, 4 = four times faster, 0 = as fast as possible")
def demo(data_dir: str | None, seconds: float, regenerate: bool, pace: float) -> None:
    """Run a fully offline fabric: replayed exchanges -> NBBO -> Parquet, then say what to look at."""
    from feedfabric.demo import run_demo

    sys.exit(run_demo(Path(data_dir) if data_dir else None, timeout=seconds, regenerate=regenerate, pace=pace))


def _register_gateway_commands() -> None:
    """Add record/replay/exchanges/symbols from gateways.commands when that module is installed."""
    try:
        from gateways import commands as gw_commands
    except ImportError:
        return
    for attr in ("record", "replay", "exchanges", "symbols"):
        cmd = getattr(gw_commands, attr, None) or getattr(gw_commands, f"{attr}_command", None)
        if isinstance(cmd, click.Command):
            main.add_command(cmd, attr)
    for cmd in getattr(gw_commands, "COMMANDS", ()):
        if isinstance(cmd, click.Command) and cmd.name not in main.commands:
            main.add_command(cmd)


_register_gateway_commands()


if __name__ == "__main__":
    main()
