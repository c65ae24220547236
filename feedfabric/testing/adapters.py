"""Helpers for sans-I/O exchange adapter tests: recorded bytes in, events and counters out.

No sockets and no event loop, as the adapters themselves (docs/adding-an-exchange.md):

- :func:`capture_parts`: a capture in any format :func:`gateways.capture.read_capture` reads,
  as the REST bodies by url (instruments, snapshots) and the received messages.
- :func:`feed`: ``adapter.on_message`` for each message; all the events and actions.
- :func:`silent_messages`: replay a capture and list the received messages that published
  nothing and bumped no such counter ([] when no message was dropped silently).
- :func:`accounted`: how many of the adapter's counters name a reason for a message that
  published nothing, so a test can prove that no message is dropped silently::

      for ts, raw in parts.messages:
          before = accounted(adapter.counters)
          out = adapter.on_message(conn, raw, ts)
          assert out.events or accounted(adapter.counters) > before, raw[:200]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

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
            if rec.kind == RECV and (player.result.event_count, accounted(player.adapter.counters)) == before:
                silent.append(rec.data[:200])

    return player.run(watched()), silent
