"""Helpers for the command-line tests: a simulated capture set and a `feedfabric up` runner.

Every subprocess is started in its own session and killed (group-wide) at teardown, so
a failing test never leaves processes behind; every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bus.endpoints import GatewayEndpoint
from bus.publisher import Publisher
from feedfabric.simulator import Simulator


@pytest.fixture(scope="session")
def sim_captures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """binance/coinbase/kraken .ffcap files from the seeded simulator (10 simulated seconds)."""
    out = tmp_path_factory.mktemp("captures")
    Simulator(seed=11, seconds=10).write(out)
    return out


@pytest.fixture
def short_run_dir() -> Iterator[Path]:
    """A short private directory for ipc sockets (unix socket paths are limited to 107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="ffcli-"))
    yield d
    for p in d.glob("*"):
        p.unlink(missing_ok=True)
    d.rmdir()


@pytest.fixture
def live_publisher(short_run_dir: Path) -> Iterator[Callable[..., GatewayEndpoint]]:
    """``live_publisher(name, tick, period=0.01)``: a started Publisher ``name`` on ipc in
    ``short_run_dir`` and a thread calling ``tick(publisher, i)`` (i = 0, 1, ...) every ``period``
    seconds until the test ends; returns its endpoint. Several may run at once."""
    running: list[tuple[Publisher, threading.Event, threading.Thread]] = []

    def start(name: str, tick: Callable[[Publisher, int], None], period: float = 0.01) -> GatewayEndpoint:
        ep = GatewayEndpoint.ipc(short_run_dir, name)
        pub = Publisher(name, ep.pub, ep.snapshot, heartbeat_interval=0.2, exchange="TESTEX")
        pub.start()
        stop = threading.Event()

        def run() -> None:
            i = 0
            tick(pub, i)
            while not stop.wait(period):
                i += 1
                tick(pub, i)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        running.append((pub, stop, thread))
        return ep

    yield start
    for pub, stop, thread in running:
        stop.set()
        thread.join(timeout=5)
        pub.close()


class Proc:
    """A `feedfabric ...` subprocess whose combined output is collected line by line."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "feedfabric.cli", *args], cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
                                     start_new_session=True, text=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match:
        """The first output line (from index ``start``) matching ``pattern``; fails after ``timeout``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    tail = "\n".join(self.lines[-40:])
                    pytest.fail(f"no line matching {pattern!r} within {timeout}s; output tail:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


@pytest.fixture
def run_cli(tmp_path: Path) -> Iterator:
    """Factory: ``run_cli(args, env=None) -> Proc``; everything started is killed at teardown."""
    procs: list[Proc] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Proc:
        p = Proc(args, tmp_path, env)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()


@pytest.fixture
def proc_alive():
    """``proc_alive(pid)``: True if ``pid`` exists and is not a zombie."""
    return _alive


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
