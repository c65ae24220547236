"""feedfabric.testing.adapters, the shipped helpers of sans-I/O adapter tests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from feedfabric.testing.adapters import (
    accounted,
    capture_parts,
    feed,
    malformed_book_problems,
    silent_messages,
)
from gateways.adapter import Output, Subscription
from gateways.books import Books
from gateways.capture import CONNECT, HEADER, RECV, Record, read_capture
from gateways.exchanges.kraken_futures import KrakenFutures


def test_accounted_counts_reasons_only() -> None:
    counters = Counter({"messages": 9, "events": 7, "errors": 2, "errors.parse.JSONDecodeError": 2,
                        "ignored.heartbeat": 3, "book.buffered": 4, "book.stale": 1, "sequence.gaps": 1,
                        "book.snapshots": 5, "book.resets": 1, "book.checksum_verified": 8})
    # Totals and counters that come with a published event are no reason for publishing nothing.
    assert accounted(counters) == 2 + 3 + 4 + 1 + 1


def test_capture_parts_and_feed(shared_data: Path) -> None:
    parts = capture_parts(shared_data / "cryptofeed" / "KRAKEN_FUTURES")
    assert any("instruments" in url for url in parts.rest) and len(parts.messages) == 7175
    assert all(type(ts) is int and ts > 0 for ts, _ in parts.messages[:10])
    adapter = KrakenFutures(Subscription({"l2_book": ["BTC-USD-PERP"], "trades": ["BTC-USD-PERP"]}))
    adapter.load_instruments(parts.rest)
    events, actions = feed(adapter, parts.messages[:500], "KRAKEN_FUTURES.0")
    kinds = {e.KIND for e in events}
    assert {"book_snapshot", "book_delta"} <= kinds and adapter.counters["messages"] == 500
    assert actions == [] and adapter.error_counts() == {}


class _Swallows(KrakenFutures):
    """Drops one kind of message without an event or a counter: the bug silent_messages finds."""

    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        if "swallowed" in str(raw):
            return
        super().handle_message(conn, raw, ts, out)


def test_silent_messages_names_what_an_adapter_drops_without_a_reason() -> None:
    records = [Record(HEADER, "", 0, {"exchange": "KRAKEN_FUTURES", "channels": {}}),
               Record(CONNECT, "c", 1, url="wss://futures.kraken.com/ws/v1"),
               Record(RECV, "c", 2, '{"event": "info", "version": 1}'),        # ignored.event_info
               Record(RECV, "c", 3, '{"feed": "swallowed"}'),
               Record(RECV, "c", 4, '{"feed": "no such feed"}')]                # errors.unknown_feed
    adapter = _Swallows(Subscription({}))
    result, silent = silent_messages(records, adapter=adapter)
    assert silent == ['{"feed": "swallowed"}']
    assert result.adapter is adapter and adapter.counters["messages"] == 3
    assert silent_messages(records[:3] + records[4:], adapter=KrakenFutures(Subscription({})))[1] == []


def test_malformed_book_problems_finds_books_left_wrong(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # BitMEX books have no sequence numbers: without the malformed guards (Books.malformed made a
    # no-op) a junk row loses its update silently or leaves a book half updated, and the helper says so.
    records = list(read_capture(shared_data / "cryptofeed" / "BITMEX"))
    assert malformed_book_problems(records, picks=14) == []
    monkeypatch.setattr(Books, "malformed", lambda self, symbol, out, receipt_timestamp=0: None)
    problems = malformed_book_problems(records, picks=14)
    assert problems and all(p.startswith("record ") and "book" in p for p in problems)
