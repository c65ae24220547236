"""The buffered writer shared by the server backends (Redis Streams, PostgreSQL).

The consumer thread calls :meth:`BufferedWriter.put` (never blocks); a writer thread takes
batches (up to ``batch_size`` rows, or what arrived within ``flush_interval``) and hands them
to the backend. When the server is dead or slow, rows back up into a **bounded** buffer
(``max_buffer`` rows); beyond it new rows are dropped and counted in ``dropped`` (with a
rate-limited error log) — never silently, never by crashing. A failed batch is kept, the
connection is closed and re-opened with capped, jittered exponential backoff, and the batch
is retried through the backend's ``write_retry`` (which skips rows the server already has, so
an uncertain commit is not written twice).

A backend implements ``connect()``, ``write(batch)``, ``write_retry(batch)`` and ``close()``;
``write`` returning normally means the server acknowledged the rows (they count in
``acknowledged``).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from typing import Any

from loguru import logger


class BufferedWriter:
    """See the module docstring."""

    def __init__(self, backend: Any, *, name: str = "storage", max_buffer: int = 200_000, batch_size: int = 2_000,
                 flush_interval: float = 0.05, backoff_initial: float = 0.05, backoff_max: float = 5.0) -> None:
        self.backend = backend
        self.name = name
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.buffer: deque[Any] = deque()
        self.counters = {"queued": 0, "acknowledged": 0, "dropped": 0, "write_errors": 0, "reconnects": 0,
                         "batches": 0, "buffered": 0, "lost_at_close": 0}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = False
        self._last_drop_log = 0.0
        self.log = logger.bind(consumer=name)
        self._thread = threading.Thread(target=self._run, name=f"writer-{name}", daemon=True)
        self._thread.start()

    def put(self, row: Any) -> bool:
        """Queue one row; False (and counted in ``dropped``) when the buffer is full.

        Lock-free on purpose: only this (the consumer's) thread appends and counts ``queued``
        and ``dropped``, only the writer thread pops; ``deque`` appends/pops are atomic.
        """
        buf = self.buffer
        if len(buf) >= self.max_buffer:
            self.counters["dropped"] += 1
            now = time.monotonic()
            if now - self._last_drop_log > 5:
                self._last_drop_log = now
                self.log.error("{}: buffer full ({} rows), dropping; {} dropped so far", self.name,
                               self.max_buffer, self.counters["dropped"])
            return False
        buf.append(row)
        counters = self.counters
        counters["queued"] += 1
        # Kept current on both sides: while the server is down the writer thread takes no
        # batch, and the figure heartbeats report must still grow with the backlog.
        counters["buffered"] = len(buf)
        if len(buf) >= self.batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    def _take(self) -> list[Any]:
        buf = self.buffer
        if len(buf) < self.batch_size and not self._stop.is_set():
            self._wake.wait(self.flush_interval)
        self._wake.clear()
        n = min(len(buf), self.batch_size)
        batch = [buf.popleft() for _ in range(n)]
        self.counters["buffered"] = len(buf)
        return batch

    def _run(self) -> None:
        batch: list[Any] = []
        retry = False
        delay = self.backoff_initial
        while True:
            if not batch:
                if self._stop.is_set() and not self.buffer:
                    break
                batch = self._take()
                if not batch:
                    continue
            try:
                if not self._connected:
                    self.backend.connect()
                    self._connected = True
                (self.backend.write_retry if retry else self.backend.write)(batch)
            except Exception as exc:  # noqa: BLE001 - any server/driver failure: back off, reconnect
                self.counters["write_errors"] += 1
                self.log.warning("{}: write of {} rows failed ({}: {}); retrying in {:.2f} s", self.name,
                                 len(batch), type(exc).__name__, exc, delay)
                self._disconnect()
                retry = True
                if self._stop.wait(delay * (0.5 + random.random() / 2)) and self._give_up:
                    break
                delay = min(delay * 2, self.backoff_max)
                self.counters["reconnects"] += 1
                continue
            self.counters["acknowledged"] += len(batch)
            self.counters["batches"] += 1
            batch = []
            retry = False
            delay = self.backoff_initial
        if batch or self.buffer:
            self.counters["lost_at_close"] += len(batch) + len(self.buffer)
            self.log.error("{}: closing with {} rows never written (server unreachable)", self.name,
                           len(batch) + len(self.buffer))
        self._disconnect()

    _give_up = False

    def _disconnect(self) -> None:
        if self._connected:
            self._connected = False
            try:
                self.backend.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued row was acknowledged or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.counters
            if c["acknowledged"] + c["dropped"] >= c["queued"]:
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered (for up to ``timeout`` s while the server is down), then stop."""
        self.wait_idle(timeout)
        self._give_up = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout + 5)
