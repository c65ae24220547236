"""``feedfabric up``: run every process of a topology, restart crashed ones, stop all cleanly.

Each gateway and consumer runs as its own OS process (``feedfabric gateway NAME`` /
``feedfabric consumer NAME``, the same commands systemd or Kubernetes would run). The
supervisor:

- starts consumers first, then gateways (ZeroMQ does not need an order, but consumers that
  are already connecting when a gateway binds miss less of its first messages);
- reads each child's stderr and prints it prefixed with the process name (the combined
  console view); each child also writes its own log file under ``log_dir``;
- does not restart a process that exits with status 2 or 3 (its configuration is refused:
  restarting cannot help), and says so; ``run`` then returns 1;
- restarts a process that exits while the fabric is running, after a capped exponential
  backoff (``supervisor.backoff_initial`` doubling up to ``backoff_max``, reset once a
  process stayed up ``backoff_reset`` seconds), and says so on the console;
- on SIGINT/SIGTERM sends SIGTERM to every child, waits ``stop_timeout`` seconds, SIGKILLs
  what is left, reaps everything and removes the ipc socket files of the topology.

Children are started with ``PR_SET_PDEATHSIG`` (Linux) so that even a ``kill -9`` of the
supervisor leaves no orphan behind.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger

from bus.security import ensure_private_dir
from bus.topology import Topology

_PR_SET_PDEATHSIG = 1
#: Exit statuses of ``feedfabric gateway|consumer`` that mean "this configuration is refused"
#: (2: the topology does not load; 3: the process refused its entry at start). Restarting
#: cannot help, so the supervisor stops retrying that process.
CONFIG_EXIT_CODES = frozenset({2, 3})
_COLORS = ("36", "35", "33", "32", "34", "31", "96", "95", "93", "92", "94", "91")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # noqa: BLE001 - not Linux: the supervisor's own stop path still reaps children
        pass


@dataclass
class Child:
    """One supervised process."""

    name: str
    role: str                         # 'gateway' or 'consumer'
    argv: list[str]
    color: str = "0"
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    failures: int = 0                 # consecutive quick failures (drives the backoff)
    restart_at: float | None = None
    reader: threading.Thread | None = None
    history: list[int] = field(default_factory=list)  # pids, oldest first
    gave_up: bool = False             # exited because its configuration is refused: not restarted

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class Supervisor:
    """Runs the processes of ``topology`` (see the module docstring).

    ``topology_file`` is passed to the children, which load it themselves; ``only`` limits
    the processes started; ``console`` receives the combined view (default: stdout).
    """

    def __init__(self, topology: Topology, topology_file: str | Path, *, only: Sequence[str] | None = None,
                 console=None, python: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.topology = topology
        self.topology_file = str(Path(topology_file).absolute())
        self.console = console or sys.stdout
        self.python = python or sys.executable
        self.extra_env = extra_env or {}
        self.cfg = topology.supervisor
        self._stop = threading.Event()
        self._print_lock = threading.Lock()
        self._lock_fd: int | None = None
        names = [*topology.consumers, *topology.gateways]
        unknown = [n for n in (only or ()) if n not in names]
        if unknown:
            raise KeyError(f"no process named {', '.join(unknown)} in the topology (known: {', '.join(names)})")
        self.children: dict[str, Child] = {}
        for i, name in enumerate(n for n in names if not only or n in only):
            role = "gateway" if name in topology.gateways else "consumer"
            argv = [self.python, "-m", "feedfabric.cli", role, name, "--topology", self.topology_file]
            self.children[name] = Child(name, role, argv, _COLORS[i % len(_COLORS)])
        self.width = max((len(n) for n in self.children), default=4)

    # -- console ---------------------------------------------------------------------------

    def say(self, text: str, name: str = "up") -> None:
        """One line on the combined console, prefixed like the children's lines."""
        color = self.children[name].color if name in self.children else "1"
        tty = getattr(self.console, "isatty", lambda: False)()
        prefix = f"\x1b[{color}m{name:<{self.width}}\x1b[0m |" if tty else f"{name:<{self.width}} |"
        with self._print_lock:
            self.console.write(f"{prefix} {text}\n")
            self.console.flush()

    def _pump(self, child: Child, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.say(raw.decode(errors="replace").rstrip("\n"), child.name)

    # -- lifecycle -------------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["FEEDFABRIC_SUPERVISED"] = "1"
        env.setdefault("PYTHONUNBUFFERED", "1")
        proc = subprocess.Popen(child.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent,
                                close_fds=True)
        child.proc = proc
        child.started = time.monotonic()
        child.restart_at = None
        child.history.append(proc.pid)
        child.reader = threading.Thread(target=self._pump, args=(child, proc), daemon=True,
                                        name=f"console-{child.name}")
        child.reader.start()
        self.say(f"started {child.role} {child.name} (pid {proc.pid})")

    def _lock(self) -> None:
        """Refuse to run twice on one run directory (a second bind would steal the ipc sockets)."""
        if self._lock_fd is not None:
            return
        path = self.topology.run_dir / ".supervisor.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RuntimeError(f"another `feedfabric up` (pid {other}) is running on {self.topology.run_dir}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def start(self, names: Sequence[str] | None = None) -> None:
        """Start the processes ``names`` (default: all not yet running)."""
        ensure_private_dir(self.topology.run_dir)
        self._lock()
        self.topology.log_dir.mkdir(parents=True, exist_ok=True)
        for child in self.children.values():
            if (names is None or child.name in names) and child.proc is None:
                self._spawn(child)

    def _backoff(self, child: Child) -> float:
        return min(self.cfg.backoff_initial * (2 ** max(child.failures - 1, 0)), self.cfg.backoff_max)

    def poll(self) -> None:
        """Notice exited children and (re)start those whose backoff elapsed."""
        now = time.monotonic()
        for child in self.children.values():
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                code = proc.returncode
                how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                uptime = now - child.started
                if code in CONFIG_EXIT_CODES:
                    child.proc = None
                    child.restart_at = None
                    child.gave_up = True
                    if child.reader is not None:
                        child.reader.join(timeout=1)
                    self.say(f"{child.role} {child.name} (pid {proc.pid}) {how} after {uptime:.1f}s: its "
                             "configuration is refused (error above); not restarting it — fix the topology "
                             "and start it again")
                    continue
                child.failures = 1 if uptime >= self.cfg.backoff_reset else child.failures + 1
                delay = self._backoff(child)
                child.proc = None
                child.restart_at = now + delay
                if child.reader is not None:
                    child.reader.join(timeout=1)
                self.say(f"{child.role} {child.name} (pid {proc.pid}) {how} after {uptime:.1f}s; "
                         f"restarting in {delay:.1f}s (restart #{child.restarts + 1})")
            elif child.proc is None and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)

    def run(self) -> int:
        """Start everything and supervise until SIGINT/SIGTERM; returns the exit status."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.say(f"starting {len(self.children)} processes; logs in {self.topology.log_dir}, "
                     f"sockets in {self.topology.run_dir}; Ctrl-C stops everything")
            self.start()
            while not self._stop.wait(0.1):
                self.poll()
                if self.children and all(c.gave_up for c in self.children.values()):
                    self.say("no process left to run: every one was refused its configuration")
                    break
        finally:
            self.stop()
            for s, h in previous.items():
                signal.signal(s, h)
        return 1 if any(c.gave_up for c in self.children.values()) else 0

    def _on_signal(self, signum: int, frame) -> None:
        if not self._stop.is_set():
            self.say(f"{signal.Signals(signum).name} received: stopping all processes")
        self._stop.set()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        """SIGTERM every child, SIGKILL after ``stop_timeout``, reap all, remove ipc sockets."""
        self._stop.set()
        running = [(c, p) for c in self.children.values() if (p := c.proc) is not None and p.poll() is None]
        for _, proc in running:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.cfg.stop_timeout
        for child, proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} (pid {child.pid}) ignored SIGTERM for {self.cfg.stop_timeout}s: SIGKILL")
                proc.kill()
                proc.wait(timeout=5)
        for child in self.children.values():
            if child.reader is not None:
                child.reader.join(timeout=2)
            if child.proc is not None:
                code = child.proc.returncode
                self.say(f"stopped {child.name} (pid {child.pid}, exit {code})")
                child.proc = None
        if self._lock_fd is None:
            return  # never started (e.g. another supervisor owns the run directory): touch nothing
        removed = 0
        for path in self.topology.ipc_paths():
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("cannot remove {}: {}", path, exc)
        (self.topology.run_dir / ".supervisor.lock").unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None
        self.say(f"all processes stopped; {removed} leftover ipc socket(s) removed")
