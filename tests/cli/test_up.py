"""`feedfabric up`: three replaying gateways + NBBO + Parquet storage as separate processes.

Checks: everything starts; `status --once` and `tap --json` see it; a gateway killed with
SIGKILL is restarted by the supervisor and its subscribers resync onto the new epoch (a
fresh book snapshot, NBBO quotes from it again); SIGTERM stops everything with no process
and no ipc socket left behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from bus.subscriber import Subscriber
from bus.topology import load_topology
from cryptofeed_types.events import NBBO, L2Snapshot

pytestmark = pytest.mark.timeout(110)

TOPOLOGY = """
run_dir: {run}
log_dir: {work}/logs
supervisor: {{backoff_initial: 0.2, stop_timeout: 8}}
gateways:
  binance:
    exchange: BINANCE
    channels: [trades, l2_book, ticker]
    symbols: [BTC-USDT, ETH-USDT]
    heartbeat_interval: 0.5
    replay: {{path: {caps}/binance.ffcap, pace: 2, loop: true}}
  coinbase:
    exchange: COINBASE
    channels: [trades, l2_book, ticker]
    symbols: [BTC-USD, ETH-USD]
    heartbeat_interval: 0.5
    replay: {{path: {caps}/coinbase.ffcap, pace: 2, loop: true}}
  kraken:
    exchange: KRAKEN
    channels: [trades, l2_book, ticker]
    symbols: [BTC-USD, ETH-USD]
    heartbeat_interval: 0.5
    replay: {{path: {caps}/kraken.ffcap, pace: 2, loop: true}}
consumers:
  nbbo:
    kind: nbbo
    heartbeat_interval: 0.5
    options: {{quote_equivalence: {{USDT: USD}}}}
  storage:
    kind: parquet
    sources: [binance, coinbase, kraken, nbbo]
    prefixes: [trades., book., nbbo.]
    path: {work}/data
    heartbeat_interval: 0.5
    options: {{checkpoint_interval: 1}}
"""


def _recv_until(sub: Subscriber, pred, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = sub.recv(timeout=0.2)
        if msg is not None and pred(msg):
            return msg
    pytest.fail(f"condition not met within {timeout}s")


def test_up_restart_resync_and_clean_stop(tmp_path: Path, sim_captures: Path, short_run_dir: Path,
                                          run_cli, proc_alive) -> None:
    topo_file = tmp_path / "topology.yaml"
    topo_file.write_text(TOPOLOGY.format(run=short_run_dir, work=tmp_path, caps=sim_captures))
    topo = load_topology(topo_file)
    up = run_cli(["up", str(topo_file)])

    pids: dict[str, int] = {}
    for name in ("binance", "coinbase", "kraken", "nbbo", "storage"):
        m = up.wait_for(rf"started (gateway|consumer) {name} \(pid (\d+)\)", 30)
        pids[name] = int(m.group(2))
    eps = topo.all_endpoints()

    with Subscriber([eps["binance"]], ["book.BINANCE.BTC-USDT."]) as books, \
            Subscriber([eps["nbbo"]], ["nbbo."], books=False) as nbbo:
        first = _recv_until(books, lambda m: isinstance(m.event, L2Snapshot), 30)
        old_epoch = first.header.epoch
        _recv_until(nbbo, lambda m: isinstance(m.event, NBBO), 30)

        # status and tap against the running fabric
        status = run_cli(["status", "--once", "--wait", "8", "-t", str(topo_file)])
        status.proc.wait(timeout=20)
        table = status.output()
        assert status.proc.returncode == 0, table
        for name in pids:
            row = re.search(rf"^{name}\s+(gateway|consumer/\w+)\s+up\s+\d+\.\ds\s+\d+", table, re.M)
            assert row, f"{name} not up in:\n{table}"
        tap = run_cli(["tap", "nbbo.", "--json", "-n", "3", "-t", str(topo_file), "-s", "nbbo"])
        tap.proc.wait(timeout=20)
        rows = [json.loads(line) for line in tap.output().splitlines() if line.startswith("{")]
        assert len(rows) == 3 and all(r["topic"].startswith("nbbo.") for r in rows), tap.output()
        assert rows[0]["event"]["kind"] == "nbbo" and rows[0]["gateway"] == "nbbo"

        # kill -9 one gateway: the supervisor restarts it, subscribers resync on the new epoch
        mark = len(up.lines)
        os.kill(pids["binance"], signal.SIGKILL)
        up.wait_for(rf"binance \(pid {pids['binance']}\) killed by SIGKILL.*restarting in", 10, mark)
        m = up.wait_for(r"started gateway binance \(pid (\d+)\)", 15, mark)
        new_pid = int(m.group(1))
        assert new_pid != pids["binance"]
        snap = _recv_until(books, lambda m: isinstance(m.event, L2Snapshot) and m.header.epoch != old_epoch, 30)
        assert snap.header.gateway == "binance"
        book = books.book("BINANCE", "BTC-USDT")
        assert book is not None and book.best_bid() is not None and not book.is_crossed()
        # The NBBO consumer resynced too: it quotes Binance again (it left the NBBO when stale).
        _recv_until(nbbo, lambda m: isinstance(m.event, NBBO) and m.header.publish_timestamp > snap.header.publish_timestamp
                    and "BINANCE" in (m.event.bid_exchange, m.event.ask_exchange), 30)
        all_pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", up.output())]

    # SIGTERM: everything stops, nothing left behind
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=30) == 0
    up.wait_for(r"all processes stopped", 5)
    assert not [p for p in set(all_pids) if proc_alive(p)]
    leftovers = [p.name for p in short_run_dir.iterdir()]
    assert leftovers == [], leftovers
    logs = {p.name for p in (tmp_path / "logs").iterdir()}
    assert {"binance.log", "coinbase.log", "kraken.log", "nbbo.log", "storage.log"} <= logs
    assert list((tmp_path / "data").rglob("*.parquet")), "storage wrote no Parquet file"
