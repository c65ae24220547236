"""Shared book keeping for every adapter: one OrderBook plus a sync state per symbol.

A symbol's book is in one of three states:

- ``WAITING``: no snapshot yet; deltas are buffered (bounded) until one arrives.
- ``SYNCED``: the book is valid; each delta is checked by the sequence *rule*,
  applied, optionally checksummed and checked for a crossed top, then published.
- ``RESYNCING``: the book was valid and broke (sequence gap, bad checksum, crossed
  book, disconnect); deltas are buffered again until the next snapshot.

:class:`Books` produces, for one symbol at a time and never touching the others,
``L2Snapshot`` (after a snapshot and the buffered deltas it bridges), ``L2Delta``,
``BBO`` (only when the top of book changes), ``Gap`` (the book became invalid),
``Reset`` (an invalid book was rebuilt; the L2Snapshot follows) and a resync request
for the adapter (a :class:`~gateways.adapter.Resync` action, or the adapter's own
``on_resync`` callback, e.g. one that fetches the REST snapshot directly).

Every incident (a book declared broken, a snapshot refused, a book rebuilt) is logged once
with ``exchange`` and ``symbol`` bound (``logger.bind``), saying what broke and what happens
next, rate-limited per (symbol, reason) by :class:`~gateways.adapter.LogLimit`; the
counters count every one. Nothing is logged or bound for a delta that applies cleanly.

Sequence rules are small functions ``rule(current, first, last, prev, bridging)``
returning APPLY, STALE (already included: drop) or GAP; ``current`` is the sequence of
the book, ``first``/``last`` the update's id range, ``prev`` the previous update's last
id as the exchange states it, ``bridging`` True for the first delta after a snapshot.

The resubscribe plumbing of adapters that rebuild a book by unsubscribe + subscribe is in
:mod:`gateways.resync`.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from loguru import logger

from cryptofeed_types import BBO, Gap, L2Delta, L2Snapshot, OrderBook, Reset
from gateways.adapter import LogLimit, Output, Resync, describe_resync

APPLY, STALE, GAP = 0, 1, 2
WAITING, SYNCED, RESYNCING = "waiting", "synced", "resyncing"

Rule = Callable[[int | None, int | None, int | None, int | None, bool], int]
Levels = Sequence[Sequence[str]]

# What broke, in words, for the log line of each invalidation reason.
_BROKE = {
    "sequence": "sequence gap: expected {expected}, got {received}",
    "checksum": "checksum mismatch",
    "crossed": "crossed book (best bid >= best ask)",
    "snapshot_checksum": "snapshot checksum mismatch",
    "snapshot_too_old": "the buffered updates do not continue the snapshot: expected {expected}, got {received}",
    "snapshot_replay_checksum": "checksum mismatch replaying the buffered updates onto the snapshot",
    "snapshot_crossed": "crossed book after the snapshot (best bid >= best ask)",
    "malformed": "a malformed update or snapshot could not be applied whole",
}
# _bad_snapshot reasons (counter names) whose log line needs its own words.
_SNAPSHOT_LOG_REASON = {"checksum": "snapshot_replay_checksum", "crossed": "snapshot_crossed"}


def range_rule(current: int | None, first: int | None, last: int | None, prev: int | None,
               bridging: bool) -> int:
    """Updates carry an id range [first, last] that must continue the book without a hole.

    Already-covered updates (last <= current) are stale; an update starting after
    current + 1 is a gap; an overlapping one is applied (levels are absolute sizes).
    Binance spot U/u, and single-id feeds (first == last == seq: Coinbase, Kraken Futures).
    """
    if current is None:
        return APPLY
    if last is not None and last <= current:
        return STALE
    if first is not None and first > current + 1:
        return GAP
    return APPLY


def prev_rule(current: int | None, first: int | None, last: int | None, prev: int | None,
              bridging: bool) -> int:
    """Each update names the id of the previous one (``prev``), which must be the book's.

    The first update after a snapshot may instead straddle it (first <= current <= last):
    Binance futures pu/U/u; OKX prevSeqId/seqId (no range).
    """
    if current is None or prev == current:
        return APPLY
    if bridging and first is not None and last is not None and first <= current <= last:
        return APPLY
    if last is not None and (last < current if bridging else last <= current):
        return STALE
    return GAP


def no_rule(current: int | None, first: int | None, last: int | None, prev: int | None,
            bridging: bool) -> int:
    """No sequence numbers (integrity from checksums only): always apply."""
    return APPLY


class SymbolBook:
    """The book of one symbol and its sync state."""

    __slots__ = ("symbol", "exchange_symbol", "book", "state", "buffer", "bridging", "top", "published",
                 "resyncs")

    def __init__(self, symbol: str, exchange_symbol: str | None, max_depth: int, max_buffer: int) -> None:
        self.symbol = symbol
        self.exchange_symbol = exchange_symbol
        self.book = OrderBook(max_depth)
        self.state = WAITING
        self.buffer: deque[tuple[Any, ...]] = deque(maxlen=max_buffer)
        self.bridging = False
        self.top: tuple[Any, Any] | None = None
        self.published = False  # a valid book was published (so a rebuild is announced by Reset)
        self.resyncs = 0


class Books:
    """Books of one adapter (see the module docstring).

    ``checksum(book) -> int`` verifies deltas/snapshots that carry a checksum;
    ``on_resync(symbol, reason, out)`` replaces the default Resync action;
    ``counters`` (the adapter's) receive ``book.*`` counts.
    """

    def __init__(self, exchange: str, rule: Rule = range_rule, *, max_depth: int = 0, max_buffer: int = 10_000,
                 check_crossed: bool = True, checksum: Callable[[OrderBook], int] | None = None,
                 bbo: bool = True, channel: str = "book",
                 on_resync: Callable[[str, str, Output], None] | None = None,
                 counters: Counter[str] | None = None) -> None:
        self.exchange = exchange
        self.rule = rule
        self.max_depth = max_depth
        self.max_buffer = max_buffer
        self.check_crossed = check_crossed
        self.checksum = checksum
        self.bbo = bbo
        self.channel = channel
        self.on_resync = on_resync
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.log_limit = LogLimit()   # incident log lines per (symbol, reason)
        self._books: dict[str, SymbolBook] = {}

    # ---- registry
    def add(self, symbol: str, exchange_symbol: str | None = None) -> SymbolBook:
        sb = self._books.get(symbol)
        if sb is None:
            sb = self._books[symbol] = SymbolBook(symbol, exchange_symbol, self.max_depth, self.max_buffer)
        return sb

    def get(self, symbol: str) -> SymbolBook | None:
        return self._books.get(symbol)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._books

    def __iter__(self):
        return iter(self._books.values())

    def state(self, symbol: str) -> str:
        return self._books[symbol].state

    def settled(self, symbol: str) -> bool:
        """No resync is pending for ``symbol``: its book is synced, or not kept here at all
        (the predicate :meth:`gateways.resync.Resubscriber.due` takes)."""
        sb = self._books.get(symbol)
        return sb is None or sb.state == SYNCED

    def book(self, symbol: str) -> OrderBook:
        return self._books[symbol].book

    def shared_book(self, symbol: str) -> OrderBook | None:
        """The book the bus snapshot service serves for ``symbol`` (``Publisher.share_books``):
        the live book while it is valid, else None (nothing is served). A book that is not
        valid was announced invalid by a Gap (or was never published, or a snapshot replacing
        it is being installed and will be published): a late joiner starts it from the
        stream's next L2Snapshot rather than from a book no longer true."""
        sb = self._books.get(symbol)
        return sb.book if sb is not None and sb.state == SYNCED else None

    def _retire(self, sb: SymbolBook) -> None:
        # A fresh object rather than clear(): the snapshot service may be reading the old one.
        sb.book = OrderBook(self.max_depth)

    # ---- snapshot
    def snapshot(self, symbol: str, bids: Levels, asks: Levels, sequence: int | None, out: Output, *,
                 timestamp: int | None = None, receipt_timestamp: int = 0, checksum: int | None = None) -> bool:
        """Install a full book, replay the buffered deltas it bridges, publish it.

        Returns False when the snapshot could not be used (it does not connect to the
        buffered deltas, fails its checksum or is crossed): a new resync is requested.
        """
        sb = self._books.get(symbol) or self.add(symbol)
        replaces = sb.state == SYNCED   # a valid book subscribers hold: refusing this snapshot is a Gap
        if replaces:
            self._retire(sb)
            sb.state = RESYNCING
        try:
            return self._install(sb, bids, asks, sequence, out, timestamp, receipt_timestamp, checksum, replaces)
        except Exception:
            if sb.state == SYNCED:   # installed and published; what raised came after
                self.malformed(symbol, out, receipt_timestamp)
            else:                    # the snapshot, or a buffered update it was bridging to
                self._bad_snapshot(sb, "malformed", out, receipt_timestamp, replaces=replaces)
            raise

    def _install(self, sb: SymbolBook, bids: Levels, asks: Levels, sequence: int | None, out: Output,
                 ts: int | None, receipt_timestamp: int, checksum: int | None, replaces: bool) -> bool:
        book = sb.book
        book.apply_snapshot(bids, asks, sequence)
        if checksum is not None and self.checksum is not None and self.checksum(book) != checksum:
            return self._bad_snapshot(sb, "snapshot_checksum", out, receipt_timestamp, replaces=replaces)
        sb.bridging = True
        rule = self.rule
        while sb.buffer:
            b_bids, b_asks, first, last, prev, b_ts, b_rts, b_ck = sb.buffer.popleft()
            verdict = rule(book.sequence, first, last, prev, sb.bridging)
            if verdict == STALE:
                self.counters["book.stale"] += 1
                continue
            if verdict == GAP:
                return self._bad_snapshot(sb, "snapshot_too_old", out, receipt_timestamp,
                                          expected=None if book.sequence is None else book.sequence + 1,
                                          received=first if first is not None else prev, replaces=replaces)
            book.apply_delta(b_bids, b_asks, last)
            sb.bridging = False
            ts = b_ts
            if b_ck is not None and self.checksum is not None and self.checksum(book) != b_ck:
                return self._bad_snapshot(sb, "checksum", out, receipt_timestamp, replaces=replaces)
        if self.check_crossed and book.is_crossed():
            return self._bad_snapshot(sb, "crossed", out, receipt_timestamp, replaces=replaces)
        snap_bids, snap_asks = book.snapshot()
        # Every event is built before any is published or the state changes: a malformed field
        # raises here with nothing half done.
        snapshot = L2Snapshot(self.exchange, sb.symbol, snap_bids, snap_asks, sequence=book.sequence,
                              exchange_symbol=sb.exchange_symbol, timestamp=ts, receipt_timestamp=receipt_timestamp)
        if sb.published:
            out.events.append(Reset(self.exchange, self.channel, "resynced", symbol=sb.symbol, timestamp=ts,
                                    receipt_timestamp=receipt_timestamp))
            self.counters["book.resets"] += 1
            self._log("INFO", sb.symbol, "resynced", "book resynced at sequence {} after resync #{} (Reset + "
                      "snapshot published)", book.sequence, sb.resyncs)
        sb.state = SYNCED
        sb.published = True
        out.events.append(snapshot)
        self.counters["book.snapshots"] += 1
        self._bbo(sb, out, ts, receipt_timestamp)
        return True

    def malformed(self, symbol: str, out: Output, receipt_timestamp: int = 0) -> None:
        """An update or snapshot of ``symbol`` raised half way (a malformed level or field; the
        adapter counts the error): the book may hold part of it that was never published, or miss
        it, so it is invalid from here (Gap ``malformed`` if it was published, and a resync) rather
        than silently different from what subscribers hold. :meth:`delta` and :meth:`snapshot`
        call it themselves; an adapter calls it when what it reads of a book message before calling
        them fails (every adapter here does). Nothing of the message is trusted, not its timestamp."""
        sb = self._books.get(symbol)
        if sb is not None and sb.state == SYNCED:   # else it is invalid already, its resync asked for
            self.invalidate(symbol, "malformed", out, receipt_timestamp=receipt_timestamp)

    def _bad_snapshot(self, sb: SymbolBook, reason: str, out: Output, rts: int, *, expected: int | None = None,
                      received: int | None = None, replaces: bool = False) -> bool:
        """Refuse a snapshot and ask for another. ``replaces``: it was to replace a valid book
        that subscribers hold, which no longer gets its updates: that is announced by a Gap."""
        self.counters[f"book.{reason}"] += 1
        if replaces and sb.published:
            out.events.append(Gap(self.exchange, self.channel, reason, symbol=sb.symbol, expected=expected,
                                  received=received, receipt_timestamp=rts))
        self._retire(sb)
        sb.buffer.clear()
        sb.state = RESYNCING if sb.published else WAITING
        sb.top = None
        start = len(out.actions)
        self._request_resync(sb, reason, out)
        self._log_broken(sb.symbol, _SNAPSHOT_LOG_REASON.get(reason, reason), "snapshot refused", expected, received,
                         describe_resync(out.actions[start:]))
        return False

    def _log(self, level: str, symbol: str, kind: str, message: str, *args: Any) -> None:
        # Only ever called for an incident: the bind and the rate limit cost nothing per delta.
        left_out = self.log_limit.check((symbol, kind))
        if left_out is None:
            return
        # The channel is named when it isn't the L2 book (e.g. Bybit's separate bbo books).
        where = symbol if self.channel == "book" else f"{symbol} {self.channel}"
        logger.bind(exchange=self.exchange, symbol=symbol).log(
            level, "{} {}: " + message + "{}", self.exchange, where, *args, LogLimit.note(left_out))

    def _log_broken(self, symbol: str, reason: str, what: str, expected: int | None, received: int | None,
                    next_step: str) -> None:
        broke = _BROKE.get(reason)
        broke = (f"{what} ({reason})" if broke is None
                 else broke.format(expected="?" if expected is None else expected,
                                   received="?" if received is None else received))
        self._log("WARNING", symbol, reason, "{}; {}", broke, next_step)

    def bridge(self, symbols: Iterable[str]) -> None:
        """Let the next update of each synced book straddle its id instead of continuing it
        (``prev_rule``'s bridging), as after a snapshot: a new connection of the same streams
        (a planned rotation) may batch the updates around the switch otherwise than the old one."""
        for symbol in symbols:
            sb = self._books.get(symbol)
            if sb is not None and sb.state == SYNCED:
                sb.bridging = True

    # ---- deltas
    def delta(self, symbol: str, bids: Levels, asks: Levels, out: Output, *, first: int | None = None,
              last: int | None = None, prev: int | None = None, timestamp: int | None = None,
              receipt_timestamp: int = 0, checksum: int | None = None) -> int:
        """Check, apply and publish one exchange update (or buffer it while waiting for a snapshot).

        Returns APPLY, STALE or GAP (buffered deltas count as APPLY).
        """
        sb = self._books.get(symbol)
        if sb is None:
            self.counters["book.unknown_symbol"] += 1
            return STALE
        if sb.state != SYNCED:
            # Held until the snapshot (counted: a replay or a session may end before it comes).
            self.counters["book.buffered"] += 1
            if len(sb.buffer) == sb.buffer.maxlen:
                self.counters["book.buffer_overflow"] += 1
            sb.buffer.append((bids, asks, first, last, prev, timestamp, receipt_timestamp, checksum))
            return APPLY
        book = sb.book
        current = book.sequence
        verdict = self.rule(current, first, last, prev, sb.bridging)
        if verdict == STALE:
            self.counters["book.stale"] += 1
            return STALE
        if verdict == GAP:
            self.invalidate(symbol, "sequence", out, expected=None if current is None else current + 1,
                            received=first if first is not None else prev, timestamp=timestamp,
                            receipt_timestamp=receipt_timestamp)
            return GAP
        try:
            if self.max_depth:
                cut_bids, cut_asks = book.apply_delta_cut(bids, asks, last)
                # Levels pushed past max_depth leave our book: publish them as deletes, or
                # subscribers (whose books have no depth limit) would keep them forever. Appended
                # after the update's own levels, so a level it set and that was cut ends deleted.
                if cut_bids:
                    bids = [*bids, *[(p, "0") for p in cut_bids]]
                if cut_asks:
                    asks = [*asks, *[(p, "0") for p in cut_asks]]
            else:
                book.apply_delta(bids, asks, last)
            sb.bridging = False
            if checksum is not None and self.checksum is not None and self.checksum(book) != checksum:
                self.invalidate(symbol, "checksum", out, timestamp=timestamp, receipt_timestamp=receipt_timestamp)
                return GAP
            if self.check_crossed and book.is_crossed():
                self.invalidate(symbol, "crossed", out, timestamp=timestamp, receipt_timestamp=receipt_timestamp)
                return GAP
            out.events.append(L2Delta(self.exchange, symbol, bids, asks, sequence=last, checksum=checksum,
                                      exchange_symbol=sb.exchange_symbol, timestamp=timestamp,
                                      receipt_timestamp=receipt_timestamp))
            self._bbo(sb, out, timestamp, receipt_timestamp)
        except Exception:
            self.malformed(sb.symbol, out, receipt_timestamp)
            raise
        return APPLY

    # ---- invalidation
    def invalidate(self, symbol: str, reason: str, out: Output, *, expected: int | None = None,
                   received: int | None = None, timestamp: int | None = None, receipt_timestamp: int = 0,
                   resync: bool = True, log: bool = True) -> None:
        """Mark one book invalid: publish Gap (if it was published) and request its resync.

        Logged (WARNING, rate-limited) unless ``log`` is False; ``resync=False`` means the
        caller rebuilds the book itself.
        """
        sb = self._books.get(symbol)
        if sb is None:
            return
        self.counters[f"book.gap.{reason}"] += 1
        if sb.published and sb.state == SYNCED:
            out.events.append(Gap(self.exchange, self.channel, reason, symbol=symbol, expected=expected,
                                  received=received, timestamp=timestamp, receipt_timestamp=receipt_timestamp))
        self._retire(sb)
        sb.state = RESYNCING if sb.published else WAITING
        sb.buffer.clear()
        sb.top = None
        sb.bridging = False
        start = len(out.actions)
        if resync:
            self._request_resync(sb, reason, out)
        if not log:
            return
        if reason == "requested":
            # An operator's or the driver's resync: the adapter's handle_resync rebuilds the book.
            self._log("INFO", symbol, reason, "resync requested; book invalid until rebuilt")
            return
        self._log_broken(symbol, reason.split(":", 1)[0], "book invalid", expected, received,
                         describe_resync(out.actions[start:]) if resync else "resync by the adapter")

    def invalidate_all(self, reason: str, out: Output, *, symbols: Sequence[str] | None = None,
                       receipt_timestamp: int = 0, resync: bool = False) -> None:
        """Invalidate many books at once (e.g. their connection closed), logged as one line."""
        syms = list(self._books) if symbols is None else list(symbols)
        start = len(out.actions)
        for sym in syms:
            self.invalidate(sym, reason, out, receipt_timestamp=receipt_timestamp, resync=resync, log=False)
        if not syms:
            return
        left_out = self.log_limit.check(("*", reason.split(":", 1)[0]))
        if left_out is None:
            return
        shown = ", ".join(syms[:5]) + (f" and {len(syms) - 5} more" if len(syms) > 5 else "")
        log = (logger.bind(exchange=self.exchange, symbol=syms[0]) if len(syms) == 1
               else logger.bind(exchange=self.exchange))
        log.info("{}: {} book(s) invalid ({}): {}; {}{}", self.exchange, len(syms), reason, shown,
                 describe_resync(out.actions[start:]) if resync else "rebuilt after the reconnect",
                 LogLimit.note(left_out))

    def _request_resync(self, sb: SymbolBook, reason: str, out: Output) -> None:
        sb.resyncs += 1
        self.counters["book.resyncs"] += 1
        if self.on_resync is not None:
            self.on_resync(sb.symbol, reason, out)
        else:
            out.actions.append(Resync(sb.symbol, reason))

    def _bbo(self, sb: SymbolBook, out: Output, ts: int | None, rts: int) -> None:
        if not self.bbo:
            return
        book = sb.book
        top = (book.best_bid(), book.best_ask())
        if top == sb.top:
            return
        sb.top = top
        bid, ask = top
        out.events.append(BBO(self.exchange, sb.symbol,
                              bid=None if bid is None else bid[0], bid_size=None if bid is None else bid[1],
                              ask=None if ask is None else ask[0], ask_size=None if ask is None else ask[1],
                              sequence=book.sequence, exchange_symbol=sb.exchange_symbol, timestamp=ts,
                              receipt_timestamp=rts))


def share_books(adapter: Any, publisher: Any, adapters: Callable[[], Iterable[Any]] | None = None) -> bool:
    """Let ``publisher``'s snapshot service serve ``adapter.books`` instead of mirroring them.

    True when done: the adapter keeps its L2 books in a :class:`Books` (every L2 event it
    publishes comes from there) and the publisher supports ``share_books``. ``adapters``: serve
    instead the books of the adapters it returns at each request (the first holding the symbol),
    for one exchange's books spread over several adapters or held by an adapter that is replaced
    (a gateway's parts, gateways.process; a replay's sessions, gateways.replay).
    """
    books = getattr(adapter, "books", None)
    share = getattr(publisher, "share_books", None)
    if not isinstance(books, Books) or share is None:
        return False
    share(books.exchange, books.shared_book if adapters is None else _books_of(adapters))
    return True


def _books_of(adapters: Callable[[], Iterable[Any]]) -> Callable[[str], OrderBook | None]:
    def provider(symbol: str) -> OrderBook | None:
        for adapter in adapters():
            books = getattr(adapter, "books", None)
            if isinstance(books, Books) and (book := books.shared_book(symbol)) is not None:
                return book
        return None
    return provider
