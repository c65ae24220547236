"""``feedfabric demo``: a whole fabric running offline, end to end, in under a minute.

What it does:

1. takes the simulated captures of the project's ``sample_data/`` (Binance, Coinbase and
   Kraken in their native message formats, written by :mod:`feedfabric.simulator`), or
   generates them when absent (an installed wheel has no sample_data) or on ``--regenerate``;
2. runs the embedded topology ``feedfabric/data/demo.yaml`` under the same supervisor as
   ``feedfabric up``: three replaying gateways → the NBBO consumer → Parquet storage, each
   its own OS process talking ZeroMQ over ipc sockets in a private temporary directory;
3. watches the bus (heartbeats and ``nbbo.`` topics) until every replay has finished and
   the NBBO has gone quiet, prints a few NBBO updates as they happen;
4. stops everything cleanly (storage commits its files on SIGTERM) and tells the user what
   was written and how to look at it (pyarrow, DuckDB, the logs, ``tap``/``status``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

import click

from bus.subscriber import Subscriber
from bus.topology import TopologyError, parse_topology
from cryptofeed_types.events import NBBO, Heartbeat

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
CAPTURES = ("binance", "coinbase", "kraken")
_DEMO_VAR = re.compile(r"\$\{(FEEDFABRIC_DEMO_[A-Z]+)(?::-([^}]*))?\}")


def demo_yaml() -> str:
    return resources.files("feedfabric").joinpath("data/demo.yaml").read_text()


def captures_dir(work: Path, regenerate: bool) -> Path:
    """Where the demo's captures are: the shipped sample_data/, else freshly simulated ones."""
    if not regenerate and all((SAMPLE_DATA / f"{c}.ffcap").exists() for c in CAPTURES):
        return SAMPLE_DATA
    from feedfabric.simulator import Simulator

    out = work / "captures"
    click.echo(f"generating simulated captures into {out} (seeded; see feedfabric/simulator.py) ...")
    for name, path in Simulator().write(out).items():
        click.echo(f"  {name:<9} {path.name} {path.stat().st_size:>8,} bytes")
    return out


def _parquet_summary(root: Path) -> tuple[list[Path], dict[str, int]]:
    import pyarrow.parquet as pq

    files = sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))
    rows: dict[str, int] = {}
    for f in files:
        channel = f.relative_to(root).parts[0]
        rows[channel] = rows.get(channel, 0) + pq.ParquetFile(f).metadata.num_rows
    return files, rows


def run_demo(data_dir: Path | None = None, *, timeout: float = 60.0, regenerate: bool = False,
             pace: float = 4.0, echo=click.echo) -> int:
    """Run the demo (see the module docstring); returns 0 when Parquet files and NBBO events appeared."""
    from feedfabric.supervisor import Supervisor

    work = Path(data_dir).absolute() if data_dir else Path(tempfile.mkdtemp(prefix="feedfabric-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    # ipc socket paths must stay short (unix socket limit), so the run dir is its own temp dir.
    run_dir = work / "run"
    if len(str(run_dir)) > 80:
        run_dir = Path(tempfile.mkdtemp(prefix="ffdemo-"))
    caps = captures_dir(work, regenerate)
    env = {"FEEDFABRIC_DEMO_DIR": str(work), "FEEDFABRIC_DEMO_RUN": str(run_dir),
           "FEEDFABRIC_DEMO_CAPTURES": str(caps), "FEEDFABRIC_DEMO_PACE": str(pace),
           # Every gateway begins replaying at this instant, so the venues' quotes stay in step.
           "FEEDFABRIC_DEMO_START": f"{time.time() + 3.0:.3f}"}
    # A self-contained copy (demo variables filled in): the user can run it again with `up`.
    topo_file = work / "demo-topology.yaml"
    topo_file.write_text(_DEMO_VAR.sub(lambda m: env.get(m.group(1), m.group(2) or ""), demo_yaml()))
    try:
        topo = parse_topology(topo_file.read_text(), source=str(topo_file))
    except TopologyError as exc:
        echo(str(exc), err=True)
        return 2
    echo(f"feedfabric demo — offline: {len(topo.gateways)} replaying gateways -> NBBO -> Parquet\n"
         f"  work dir  {work}\n  topology  {topo_file} (the embedded demo.yaml)\n  captures  {caps}\n")
    sup = Supervisor(topo, topo_file)
    nbbo_count = 0
    shown = 0
    finished: set[str] = set()
    try:
        sup.start()
        eps = topo.all_endpoints()
        with Subscriber([eps[n] for n in (*topo.gateways, "nbbo")], ["heartbeat.", "nbbo."], books=False) as sub:
            deadline = time.monotonic() + timeout
            last_nbbo = time.monotonic()
            while time.monotonic() < deadline:
                sup.poll()
                msg = sub.recv(timeout=0.2)
                now = time.monotonic()
                if msg is not None:
                    ev = msg.event
                    if isinstance(ev, NBBO):
                        nbbo_count += 1
                        last_nbbo = now
                        if shown < 5 or nbbo_count % 500 == 0:
                            shown += 1
                            sup.say(f"NBBO {ev.symbol}: bid {ev.bid_str} ({ev.bid_exchange}) / ask {ev.ask_str} "
                                    f"({ev.ask_exchange})  [{nbbo_count} updates so far]", "demo")
                    elif isinstance(ev, Heartbeat) and dict(ev.feeds).get("replay") == "finished":
                        if msg.header.gateway not in finished:
                            finished.add(msg.header.gateway)
                            sup.say(f"{msg.header.gateway}: capture fully replayed", "demo")
                if finished >= set(topo.gateways) and now - last_nbbo > 1.0:
                    break
            else:
                sup.say(f"timeout after {timeout:.0f}s (replays finished: {sorted(finished) or 'none'})", "demo")
    except KeyboardInterrupt:
        sup.say("interrupted", "demo")
    finally:
        sup.stop()
        if run_dir.name.startswith("ffdemo-"):
            shutil.rmtree(run_dir, ignore_errors=True)
    data = work / "data"
    files, rows = _parquet_summary(data) if data.exists() else ([], {})
    echo("")
    echo(f"NBBO updates seen on the bus: {nbbo_count}")
    echo(f"Parquet files written: {len(files)} under {data}")
    for channel, n in sorted(rows.items()):
        echo(f"  {channel:<10} {n:>8,} rows")
    example = next((f for f in files if f.relative_to(data).parts[0] == "nbbo"), files[0] if files else None)
    echo(f"""
What to look at:
  ls -R {data} | head -40                  # channel/exchange/symbol/day partitions
  python -c "import pyarrow.parquet as pq; print(pq.read_table('{example}').to_pandas().head())"
  python -c "import duckdb; print(duckdb.sql(\\"select exchange, symbol, count(*) from read_parquet('{data}/trades/**/*.parquet', hive_partitioning=false) group by all\\"))"
  less {work / 'logs'}/nbbo.log            # one log per process (also binance.log, storage.log, ...)
  feedfabric up {topo_file}      # run the same fabric yourself; in another terminal:
  feedfabric tap nbbo. -t {topo_file}      #   NBBO updates live (tap trades. / book.BINANCE. ...)
  feedfabric status -t {topo_file}         #   the health table of every process
  docs/topology.md explains the topology file; topology.yaml is the live (network) one.""")
    ok = bool(files) and nbbo_count > 0
    if not ok:
        echo("demo FAILED: " + ("no NBBO events" if not nbbo_count else "no Parquet files"), err=True)
    return 0 if ok else 1
