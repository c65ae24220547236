"""Helpers for sans-I/O exchange adapter tests: recorded bytes in, events and counters out.

No sockets and no event loop, as the adapters themselves (docs/adding-an-exchange.md):

- :func:`capture_parts`: a capture in any format :func:`gateways.capture.read_capture` reads,
  as the REST bodies by url (instruments, snapshots) and the received messages.
- :func:`feed`: ``adapter.on_message`` for each message; all the events and actions.
- :func:`silent_messages`: replay a capture and list the received messages that published
  nothing and bumped no such counter ([] when no message was dropped silently).
- :func:`published_books`: the books a subscriber rebuilds from published events (None: a Gap
  left that book invalid).
- :func:`malformed_book_problems`: corrupt one value in a book message of a capture, replay,
  and list what went wrong: a book that differs from what its published events build, or that
  silently lost the update (no Gap), for each of a few such messages in turn.
- :func:`accounted`: how many of the adapter's counters name a reason for a message that
  published nothing, so a test can prove that no message is dropped silently::

      for ts, raw in parts.messages:
          before = accounted(adapter.counters)
          out = adapter.on_message(conn, raw, ts)
          assert out.events or accounted(adapter.counters) > before, raw[:200]
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from cryptofeed_types import OrderBook
from gateways.adapter import Adapter, Output
from gateways.capture import RECV, REST, Record, read_capture
from gateways.replay import Replayer, ReplayResult

# Counters that name a reason for publishing nothing. ``book.*`` counts both kinds of book
# event, so the ones that come with a published event are excluded below.
_REASONS = ("ignored.", "errors.", "book.", "sequence.")
_NOT_REASONS = frozenset({"book.snapshots", "book.resets", "book.checksum_verified", "book.depth_mismatch"})


class CaptureParts(NamedTuple):
    """A capture taken apart: REST bodies by url, received messages as (receipt ns, raw)."""

    rest: dict[str, str | bytes]
    messages: list[tuple[int, str | bytes]]


def capture_parts(path: str | Path) -> CaptureParts:
    """The REST bodies and the received websocket messages of the capture at ``path``."""
    rest: dict[str, str | bytes] = {}
    messages: list[tuple[int, str | bytes]] = []
    for rec in read_capture(path):
        if rec.kind == REST and rec.url is not None:
            rest[rec.url] = rec.data
        elif rec.kind == RECV:
            messages.append((rec.ts, rec.data))
    return CaptureParts(rest, messages)


def feed(adapter: Adapter, messages: Iterable[tuple[int, str | bytes]], conn: str) -> tuple[list, list]:
    """Every (receipt ns, raw) message through ``adapter.on_message`` on connection ``conn``:
    (all the events, all the actions), in order."""
    out = Output()
    for ts, raw in messages:
        out.extend(adapter.on_message(conn, raw, ts))
    return out.events, out.actions


def accounted(counters: Mapping[str, int]) -> int:
    """The sum of the counters that name a reason for publishing nothing (``ignored.*``,
    ``errors.*``, ``sequence.*`` and the ``book.*`` counters of held, stale or refused
    updates), for "every message made events or a counted reason" checks."""
    return sum(v for k, v in counters.items() if k.startswith(_REASONS) and k not in _NOT_REASONS)


def silent_messages(records: Iterable[Record], **replayer: Any) -> tuple[ReplayResult, list[str | bytes]]:
    """Replay ``records`` (a capture's, header first) through a :class:`~gateways.replay.Replayer`
    made with the ``replayer`` keywords; returns its result and the first 200 characters of
    every received message that published no event and bumped no :func:`accounted` counter."""
    player = Replayer(**replayer)
    silent: list[str | bytes] = []

    def watched() -> Iterator[Record]:
        for rec in records:
            result, adapter = player.result, player.adapter
            before = (result.event_count if result else 0, accounted(adapter.counters) if adapter else 0)
            yield rec   # the replayer handles rec before asking for the next one
            # Replaying any record leaves a result and an adapter (or raises, never resuming us).
            assert player.result is not None and player.adapter is not None
            if rec.kind == RECV and (player.result.event_count, accounted(player.adapter.counters)) == before:
                silent.append(rec.data[:200])

    return player.run(watched()), silent


# Values no exchange sends for a price, size, id, sequence or time: each must end in a counted
# error and, if it hit a book, that book invalid (Gap) — never a book silently different.
JUNK_VALUES: tuple[Any, ...] = ("abc", "", None, "1.2.3", "NaN", [], {})


def _numeric_leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numeric_leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numeric_leaves(v, (*path, i))
    elif isinstance(obj, (str, int, float)) and not isinstance(obj, bool):
        try:
            float(obj)
        except ValueError:
            return
        yield path


def _books_of(result: ReplayResult) -> dict[str, tuple[list, list]]:
    books = getattr(result.adapter, "books", None)
    return {} if books is None else {sb.symbol: sb.book.snapshot() for sb in books if sb.state == "synced"}


def published_books(events: Iterable[Any]) -> dict[str, OrderBook | None]:
    """The L2 books a bus subscriber rebuilds from these events (one exchange's), per symbol: None
    while a ``book`` Gap (of that symbol, or feed-wide) has left it invalid. A delta for a book that
    is not valid is an error of the publisher (AssertionError)."""
    books: dict[str, OrderBook | None] = {}
    for ev in events:
        kind = ev.KIND
        if kind == "book_snapshot":
            book = books[ev.symbol] = OrderBook()
            book.apply_snapshot(ev.bids_str, ev.asks_str, ev.sequence)
        elif kind == "book_delta":
            book = books.get(ev.symbol)
            assert book is not None, f"delta for an invalid book {ev.symbol}"
            book.apply_delta(ev.bids_str, ev.asks_str, ev.sequence)
        elif kind == "gap" and ev.channel == "book":
            for symbol in [ev.symbol] if ev.symbol is not None else list(books):
                books[symbol] = None
    return books


def malformed_book_problems(records: Sequence[Record], *, picks: int = 6, seed: int = 0,
                            **replayer: Any) -> list[str]:
    """Corrupt a capture's book messages one at a time and report every book left wrong silently.

    ``records``: a capture (header first, as :func:`~gateways.capture.read_capture` gives it).
    Among the received messages that made an ``L2Delta`` in a clean replay, ``picks`` evenly
    spaced ones are corrupted in turn: one numeric value in it (a price, a size, an id, a
    sequence number, a time, chosen with ``seed``) becomes one of :data:`JUNK_VALUES`. Each
    corrupted capture is replayed (``Replayer(**replayer)``); a problem is a book the adapter
    holds as synced that differs from the book its published events build, or, with no Gap, from
    the clean replay's (the update lost silently). [] when every corruption ended in a counted
    error and, where it touched a book, a Gap.
    """
    clean_player = Replayer(**replayer)
    deltas: list[int] = []

    def watched() -> Iterator[Record]:
        for i, rec in enumerate(records):
            result = clean_player.result
            before = result.events_by_kind["book_delta"] if result is not None else 0
            yield rec
            # Replaying any record leaves a result (or raises, never resuming us).
            assert clean_player.result is not None
            if rec.kind == RECV and clean_player.result.events_by_kind["book_delta"] > before:
                deltas.append(i)

    truth = _books_of(clean_player.run(watched()))
    rng = random.Random(seed)
    chosen = [deltas[len(deltas) * (k + 1) // (picks + 1)] for k in range(picks)] if deltas else []
    problems: list[str] = []
    for k, i in enumerate(chosen):
        try:
            msg = orjson.loads(records[i].data)
        except orjson.JSONDecodeError:
            continue
        leaves = list(_numeric_leaves(msg))
        if not leaves:
            continue
        path = rng.choice(leaves)
        junk = JUNK_VALUES[k % len(JUNK_VALUES)]
        node = msg
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = junk
        corrupted = list(records)
        corrupted[i] = records[i]._replace(data=orjson.dumps(msg).decode())
        result = Replayer(collect=True, **replayer).run(corrupted)
        published = published_books(result.events)
        what = f"record {i}, {'/'.join(map(str, path))} = {junk!r}"
        for symbol, book in _books_of(result).items():
            held = published.get(symbol)
            if held is not None and held.snapshot() != book:
                problems.append(f"{what}: {symbol}'s book differs from what was published")
            elif held is not None and symbol in truth and truth[symbol] != book:
                problems.append(f"{what}: {symbol}'s book lost the update with no Gap")
    return problems
