"""The supervisor restarts a failing process with capped exponential backoff and says so."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pytest

from bus.topology import parse_topology
from feedfabric.supervisor import Supervisor

pytestmark = pytest.mark.timeout(60)


def _crashing_python(tmp_path: Path) -> str:
    """Stands for the interpreter: a child that crashes at once (status 1, not a config refusal)."""
    fake = tmp_path / "crashing-python"
    fake.write_text("#!/bin/sh\necho \"boom: simulated crash of $4\" >&2\nexit 1\n")
    fake.chmod(0o755)
    return str(fake)


def _broken_gateway(tmp_path: Path, run_dir: Path, extra: str = "", **kwargs) -> tuple[Supervisor, io.StringIO]:
    """A supervisor of one gateway 'broken' (fast backoff), and its console."""
    text = f"""
run_dir: {run_dir}
log_dir: {tmp_path}/logs
supervisor: {{backoff_initial: 0.1, backoff_max: 0.4, stop_timeout: 5}}
gateways:
  broken:
    exchange: BINANCE
    channels: [trades]
    symbols: [BTC-USDT]
{extra}"""
    topo_file = tmp_path / "t.yaml"
    topo_file.write_text(text)
    console = io.StringIO()
    return Supervisor(parse_topology(text, env={}), topo_file, console=console, **kwargs), console


def test_crash_loop_backoff_is_capped(tmp_path: Path, short_run_dir: Path) -> None:
    sup, console = _broken_gateway(tmp_path, short_run_dir, python=_crashing_python(tmp_path))
    delays: list[float] = []
    try:
        sup.start()
        deadline = time.monotonic() + 40
        while len(delays) < 4 and time.monotonic() < deadline:
            sup.poll()
            delays = [float(d) for d in re.findall(r"restarting in ([\d.]+)s", console.getvalue())]
            time.sleep(0.05)  # polling period of this in-process supervisor loop, not a synchronisation
    finally:
        sup.stop()
    out = console.getvalue()
    assert delays[:4] == [0.1, 0.2, 0.4, 0.4], out
    assert "exited with code 1" in out and "restart #3" in out
    assert "boom: simulated crash of broken" in out             # the child's own error reached the console
    assert sup.children["broken"].restarts >= 3


def test_config_refused_at_start_is_not_restarted(tmp_path: Path, short_run_dir: Path) -> None:
    # A capture that does not exist: the child refuses its configuration (status 3) at start.
    sup, console = _broken_gateway(tmp_path, short_run_dir, f"    replay: {{path: {tmp_path}/missing.ffcap}}\n")
    code = sup.run()        # returns by itself: its only process was refused
    out = console.getvalue()
    assert code == 1, out
    assert "exited with code 3" in out and "not restarting it" in out, out
    assert "replay.path" in out and "does not exist" in out      # the child's own error reached the console
    assert sup.children["broken"].restarts == 0 and "restarting in" not in out


def test_second_supervisor_on_same_run_dir_is_refused(tmp_path: Path, short_run_dir: Path) -> None:
    text = f"run_dir: {short_run_dir}\nlog_dir: {tmp_path}/logs\nconsumers: {{n: {{kind: nbbo, sources: [x]}}}}\n" \
           "gateways: {x: {exchange: BINANCE, channels: [trades], symbols: [BTC-USDT]}}\n"
    topo = parse_topology(text, env={})
    first = Supervisor(topo, tmp_path / "t.yaml", console=io.StringIO(), only=["n"])
    first._lock()
    marker = short_run_dir / "x.pub"
    marker.write_text("")              # stands for a socket of the running fabric
    second = Supervisor(topo, tmp_path / "t.yaml", console=io.StringIO())
    try:
        with pytest.raises(RuntimeError, match=rf"another `feedfabric up` \(pid {os.getpid()}\)"):
            second.start()
        second.stop()
        assert marker.exists()         # the refused supervisor removed nothing
    finally:
        first.stop()
    assert not marker.exists() and not (short_run_dir / ".supervisor.lock").exists()
