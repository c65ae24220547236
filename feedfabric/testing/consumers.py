"""Fixtures that start real storage servers (Redis, PostgreSQL) on loopback for the tests.

Each server runs from the Debian packages (``apt-get install -y redis-server postgresql``)
in a fresh temporary directory on a free port of 127.0.0.1 and is torn down at the end of
the session. Both can be stopped and started again on the same port (``restart``) to test
reconnection. A test needing a server that is not installed is skipped with the reason.

PostgreSQL refuses to run as root: when we are root, initdb and postgres run as the
``postgres`` system user through ``runuser`` (the temp dir is handed over to it).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(ready: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if ready():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout} s")


class _Server:
    """A server process of the tests in its own temp dir: ``start``/``stop`` come from the subclass."""

    dir: Path

    def start(self) -> _Server:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop it and delete its files."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(_Server):
    """redis-server on 127.0.0.1:<port> in a temp dir (AOF on, so a clean restart keeps the data)."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server not installed (apt-get install -y redis-server)")
        self.exe = exe
        self.dir = Path(tempfile.mkdtemp(prefix="ffredis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def _ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self._ping, 15, "redis-server", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class PostgresServer(_Server):
    """A throwaway PostgreSQL cluster on 127.0.0.1:<port> (trust auth, user ``ff``, db ``ff``)."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if bins:
            self.bin = Path(bins[-1])
        else:
            initdb = shutil.which("initdb")
            if initdb is None:
                raise FileNotFoundError("postgresql not installed (apt-get install -y postgresql)")
            self.bin = Path(initdb).parent
        self.dir = Path(tempfile.mkdtemp(prefix="ffpg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.dsn = f"host=127.0.0.1 port={self.port} user=ff dbname=ff connect_timeout=5"
        self.proc: subprocess.Popen | None = None
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self.as_user, str(self.bin / "initdb"), "-D", str(self.data), "-U", "ff",
                        "--auth=trust", "-E", "UTF8", "--no-sync"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn.replace("dbname=ff", "dbname=postgres"), connect_timeout=1) as c:
                c.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def start(self) -> PostgresServer:
        self.proc = subprocess.Popen(
            [*self.as_user, str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.dir), "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self._ready, 30, "postgres", self.proc)
        import psycopg

        with psycopg.connect(self.dsn.replace("dbname=ff", "dbname=postgres"), autocommit=True) as c:
            if not c.execute("SELECT 1 FROM pg_database WHERE datname = 'ff'").fetchone():
                c.execute("CREATE DATABASE ff")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # runuser forwards SIGTERM? Not reliably: signal postgres itself (smart -> fast shutdown).
            pid_file = self.data / "postmaster.pid"
            pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else self.proc.pid
            subprocess.run(["kill", "-INT", str(pid)], check=False)
            self.proc.wait(30)
        self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on loopback for the session (``.url``, ``.restart()``, ``.stop()``)."""
    try:
        server = RedisServer().start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL on loopback for the session (``.dsn``, ``.restart()``, ``.stop()``)."""
    try:
        server = PostgresServer().start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    yield server
    server.close()
