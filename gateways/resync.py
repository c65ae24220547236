"""Resync plumbing for adapters that rebuild a broken book by unsubscribe + subscribe.

:class:`Resubscriber` decides *when* (throttled per symbol and per connection, retried when
the snapshot never comes); :class:`ResubscribeByConnection` is the ``handle_timer`` /
``handle_resync`` / ``handle_close`` mixin of adapters that resubscribe on the connection
carrying the book (Kraken, Kraken Futures). Both are sans-I/O: every call takes the time.
The books themselves live in :mod:`gateways.books`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from gateways.adapter import ConnectionSpec, Output

if TYPE_CHECKING:
    from gateways.books import Books


class Resubscriber:
    """When to resubscribe broken books, for adapters that resync by unsubscribe + subscribe.

    Sans-I/O (every call takes the time ``ts`` in ns). Two rules:

    - **throttle**: one symbol is resubscribed at most once per ``min_interval_ns`` (a bad
      snapshot must not trigger an immediate storm of resubscribes), and, with ``per_hour``,
      at most that many resubscribes per connection per hour (token bucket holding
      ``burst``), within the exchange's subscribe-rate limit. A request that comes too soon is
      *deferred* (``book.resubscribe_deferred``) and returned by :meth:`due` once allowed;
    - **retry**: a resubscribed symbol whose book is still not synced ``retry_ns`` later (the
      snapshot never came: a lost or refused subscription) is returned by :meth:`due` again
      (``book.resubscribe_retries``).

    The adapter calls :meth:`request` from ``handle_resync``, :meth:`due` from
    ``handle_timer`` (with a ``settled(symbol)`` predicate: book synced or gone) and
    :meth:`forget` when a connection closes (its reconnection subscribes everything afresh).
    """

    def __init__(self, counters: Counter[str], *, min_interval_ns: int, retry_ns: int = 30_000_000_000,
                 per_hour: int | None = None, burst: int = 20) -> None:
        self.counters = counters
        self.min_interval_ns = min_interval_ns
        self.retry_ns = retry_ns
        self.per_hour = per_hour
        self.burst = float(burst)
        self.last: dict[str, int] = {}         # symbol → ts of its last resubscribe
        self.waiting: dict[str, int] = {}      # symbol → ts of the resubscribe whose snapshot is awaited
        self.deferred: dict[str, str] = {}     # symbol → conn: resubscribe asked for, not yet allowed
        self.conn: dict[str, str] = {}         # symbol → connection of its last request
        self._tokens: dict[str, tuple[float, int]] = {}  # conn → (tokens, ts of the last refill)

    def _bucket_take(self, conn: str, ts: int) -> bool:
        if self.per_hour is None:
            return True
        tokens, at = self._tokens.get(conn, (self.burst, ts))
        tokens = min(self.burst, tokens + (ts - at) * self.per_hour / 3_600e9)
        if tokens < 1.0:
            self._tokens[conn] = (tokens, ts)
            return False
        self._tokens[conn] = (tokens - 1.0, ts)
        return True

    def _allowed(self, symbol: str, conn: str, ts: int) -> bool:
        last = self.last.get(symbol)
        if last is not None and ts - last < self.min_interval_ns:
            return False
        return self._bucket_take(conn, ts)

    def _sent(self, symbol: str, ts: int) -> None:
        self.last[symbol] = ts
        self.waiting[symbol] = ts
        self.deferred.pop(symbol, None)

    def request(self, symbol: str, ts: int, conn: str = "") -> bool:
        """True: resubscribe ``symbol`` now (recorded as sent). False: too soon, deferred to :meth:`due`."""
        self.conn[symbol] = conn
        if self._allowed(symbol, conn, ts):
            self._sent(symbol, ts)
            return True
        if symbol not in self.deferred:
            self.counters["book.resubscribe_deferred"] += 1
        self.deferred[symbol] = conn
        return False

    def due(self, ts: int, settled: Callable[[str], bool]) -> list[str]:
        """Symbols to resubscribe now (each recorded as sent): deferred ones whose interval has
        passed, and resubscribed ones whose snapshot hasn't come after ``retry_ns``."""
        out: list[str] = []
        for symbol, conn in list(self.deferred.items()):
            if settled(symbol):
                del self.deferred[symbol]
            elif self._allowed(symbol, conn, ts):
                self._sent(symbol, ts)
                out.append(symbol)
        for symbol, at in list(self.waiting.items()):
            if symbol in out:
                continue
            if settled(symbol):
                del self.waiting[symbol]
            elif ts - at >= self.retry_ns and symbol not in self.deferred:
                if self._allowed(symbol, self.conn.get(symbol, ""), ts):
                    self.counters["book.resubscribe_retries"] += 1
                    self._sent(symbol, ts)
                    out.append(symbol)
                else:
                    self.deferred[symbol] = self.conn.get(symbol, "")
        return out

    def forget(self, symbols: Sequence[str] | None = None) -> None:
        """Drop pending work (all, or ``symbols``): their connection closed and is resubscribed whole."""
        for symbol in list(self.waiting if symbols is None else symbols):
            self.waiting.pop(symbol, None)
        for symbol in list(self.deferred if symbols is None else symbols):
            self.deferred.pop(symbol, None)


class ResubscribeByConnection:
    """Resync plumbing of adapters that resubscribe a broken book on the connection carrying it
    (Kraken, Kraken Futures): the :class:`Books` ``on_resync`` callback (``_resubscribe``) and
    ``handle_timer`` / ``handle_resync`` / ``handle_close``, throttled and retried by a
    :class:`Resubscriber`. Mixed in before :class:`~gateways.adapter.Adapter`; the adapter
    provides what is annotated below (``_send_resubscribe``: the exchange's unsubscribe +
    subscribe messages of one book).
    """

    # Provided by the adapter (annotations only: nothing here shadows the adapter's own).
    exchange: ClassVar[str]
    books: Books
    resubscribes: Resubscriber
    _book_conn: dict[str, str]          # symbol → id of the connection its book was subscribed on
    _now: int                           # the latest receipt time seen, ns
    connections: Callable[[], list[ConnectionSpec]]
    _send_resubscribe: Callable[[str, str, Output], None]

    def _conn_of(self, symbol: str) -> str:
        conn = self._book_conn.get(symbol)
        if conn is None:
            # A book never subscribed here (e.g. a recording): the first connection carries books.
            specs = self.connections()
            conn = specs[0].id if specs else f"{self.exchange}.0"
        return conn

    def _resubscribe(self, symbol: str, reason: str, out: Output) -> None:
        conn = self._conn_of(symbol)
        if self.resubscribes.request(symbol, self._now, conn):
            self._send_resubscribe(symbol, conn, out)

    def handle_timer(self, ts: int, out: Output) -> None:
        self._now = max(self._now, ts)
        for sym in self.resubscribes.due(ts, self.books.settled):
            self._send_resubscribe(sym, self._conn_of(sym), out)

    def handle_resync(self, symbol: str, ts: int, out: Output) -> None:
        self._now = max(self._now, ts)
        self.books.invalidate(symbol, "requested", out, receipt_timestamp=ts, resync=False)
        self._resubscribe(symbol, "requested", out)

    def handle_close(self, conn: str, ts: int, reason: str, out: Output) -> None:
        symbols = [s for s, c in self._book_conn.items() if c == conn and s in self.books]
        self.books.invalidate_all(f"disconnected: {reason}" if reason else "disconnected", out, symbols=symbols,
                                  receipt_timestamp=ts, resync=False)
        self.resubscribes.forget(symbols)  # the reconnection subscribes them afresh
