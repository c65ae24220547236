"""gateways.books: sync states, sequence rules, Gap/Reset/resync of one symbol, BBO on top changes."""

from __future__ import annotations

from cryptofeed_types import BBO, Gap, L2Delta, L2Snapshot, Reset
from gateways.adapter import Output, Resync
from gateways.books import (
    APPLY,
    GAP,
    RESYNCING,
    STALE,
    SYNCED,
    WAITING,
    Books,
    no_rule,
    prev_rule,
    range_rule,
)


def kinds(out: Output) -> list[str]:
    return [type(e).__name__ for e in out.events]


def test_range_rule() -> None:
    assert range_rule(None, 5, 6, None, True) == APPLY
    assert range_rule(10, 5, 10, None, True) == STALE
    assert range_rule(10, 9, 12, None, True) == APPLY     # straddles
    assert range_rule(10, 11, 12, None, False) == APPLY   # contiguous
    assert range_rule(10, 12, 13, None, False) == GAP     # hole at 11
    assert range_rule(10, 11, 11, None, False) == APPLY   # single-id feeds
    assert range_rule(10, 13, 13, None, False) == GAP


def test_prev_rule() -> None:
    assert prev_rule(100, 90, 110, 80, True) == APPLY     # straddles the snapshot
    assert prev_rule(100, 101, 110, 100, True) == APPLY   # names the snapshot
    assert prev_rule(100, 80, 99, 70, True) == STALE
    assert prev_rule(100, 102, 110, 101, True) == GAP
    assert prev_rule(110, 111, 120, 110, False) == APPLY
    assert prev_rule(110, 111, 120, 109, False) == GAP
    assert prev_rule(110, 100, 110, 99, False) == STALE
    assert no_rule(1, 5, 5, 4, False) == APPLY


def test_buffer_then_snapshot_bridges() -> None:
    books = Books("EX", range_rule)
    books.add("A-B", "AB")
    out = Output()
    assert books.delta("A-B", [["10", "1"]], [], out, first=5, last=7) == APPLY
    assert books.delta("A-B", [["11", "1"]], [["12", "3"]], out, first=8, last=9) == APPLY
    assert out.events == [] and books.state("A-B") == WAITING
    assert books.snapshot("A-B", [["9", "1"]], [["13", "1"]], 7, out)
    assert kinds(out) == ["L2Snapshot", "BBO"]
    snap = out.events[0]
    assert isinstance(snap, L2Snapshot) and snap.sequence == 9
    assert snap.bids_str == (("11", "1"), ("9", "1"))   # delta 5-7 was stale, 8-9 applied
    assert snap.asks_str == (("12", "3"), ("13", "1"))
    assert books.state("A-B") == SYNCED
    assert books.counters["book.stale"] == 1


def test_snapshot_too_old_requests_another() -> None:
    books = Books("EX", range_rule)
    books.add("A-B")
    out = Output()
    books.delta("A-B", [["10", "1"]], [], out, first=20, last=21)
    assert not books.snapshot("A-B", [["9", "1"]], [["13", "1"]], 10, out)
    assert out.events == []  # nothing was ever published: no Gap needed
    assert out.actions == [Resync("A-B", "snapshot_too_old")]
    assert books.state("A-B") == WAITING


def test_gap_affects_one_symbol_and_reset_follows() -> None:
    books = Books("EX", range_rule)
    out = Output()
    for sym in ("A-B", "C-D"):
        books.add(sym)
        books.snapshot(sym, [["9", "1"]], [["13", "1"]], 100, out)
    out = Output()
    assert books.delta("A-B", [["9", "2"]], [], out, first=105, last=106, receipt_timestamp=7) == GAP
    assert kinds(out) == ["Gap"]
    gap = out.events[0]
    assert isinstance(gap, Gap) and gap.symbol == "A-B" and gap.expected == 101 and gap.received == 105
    assert out.actions == [Resync("A-B", "sequence")]
    assert books.state("A-B") == RESYNCING and books.state("C-D") == SYNCED
    # The other symbol keeps publishing.
    out = Output()
    assert books.delta("C-D", [["10", "1"]], [], out, first=101, last=101) == APPLY
    assert kinds(out) == ["L2Delta", "BBO"]
    # The broken one buffers, then is rebuilt with Reset before its snapshot.
    out = Output()
    books.delta("A-B", [["8", "1"]], [], out, first=200, last=201)
    assert out.events == []
    books.snapshot("A-B", [["9", "1"]], [["13", "1"]], 200, out)
    assert kinds(out) == ["Reset", "L2Snapshot", "BBO"]
    assert isinstance(out.events[0], Reset) and out.events[0].symbol == "A-B"
    assert out.events[1].sequence == 201


def test_bbo_only_when_top_changes() -> None:
    books = Books("EX", range_rule)
    books.add("A-B")
    out = Output()
    books.snapshot("A-B", [["9", "1"], ["8", "1"]], [["13", "1"]], 1, out)
    out = Output()
    books.delta("A-B", [["8", "5"]], [], out, first=2, last=2)   # below the top
    assert kinds(out) == ["L2Delta"]
    out = Output()
    books.delta("A-B", [["9", "2"]], [], out, first=3, last=3)   # top size changes
    assert kinds(out) == ["L2Delta", "BBO"]
    bbo = out.events[1]
    assert isinstance(bbo, BBO) and bbo.bid_str == "9" and bbo.bid_size_str == "2" and bbo.ask_str == "13"


def test_crossed_book_is_a_gap() -> None:
    books = Books("EX", range_rule)
    books.add("A-B")
    out = Output()
    books.snapshot("A-B", [["9", "1"]], [["13", "1"]], 1, out)
    out = Output()
    assert books.delta("A-B", [["14", "1"]], [], out, first=2, last=2) == GAP
    assert kinds(out) == ["Gap"] and out.events[0].reason == "crossed"


def test_checksum_hook() -> None:
    calls: list[str] = []
    books = Books("EX", no_rule, checksum=lambda book: book.checksum_kraken(),
                  on_resync=lambda sym, reason, out: calls.append(f"{sym}:{reason}"))
    books.add("A-B")
    out = Output()
    bids, asks = [["9.0", "1.5"]], [["13.0", "2.5"]]
    books.snapshot("A-B", bids, asks, None, out)
    good = books.book("A-B").checksum_kraken()
    out = Output()
    assert books.delta("A-B", [], [], out, checksum=good) == APPLY
    assert isinstance(out.events[0], L2Delta)
    out = Output()
    assert books.delta("A-B", [["9.0", "2"]], [], out, checksum=good) == GAP
    assert kinds(out) == ["Gap"] and out.events[0].reason == "checksum"
    assert calls == ["A-B:checksum"] and out.actions == []


def test_buffer_is_bounded() -> None:
    books = Books("EX", range_rule, max_buffer=3)
    books.add("A-B")
    out = Output()
    for i in range(5):
        books.delta("A-B", [["1", "1"]], [], out, first=i, last=i)
    assert len(books.get("A-B").buffer) == 3
    assert books.counters["book.buffer_overflow"] == 2


def _synced(rule=range_rule) -> tuple[Books, Output]:
    books = Books("EX", rule)
    out = Output()
    assert books.snapshot("A-B", [["10", "1"], ["9", "2"]], [["11", "1"]], 5, out)
    return books, Output()


def test_a_malformed_level_half_way_through_an_update_invalidates_the_book_not_silently() -> None:
    # The first level applies, the second is junk: the book would hold half an update that is
    # never published. Instead: Gap 'malformed' and a resync; the error still reaches the adapter.
    books, out = _synced()
    try:
        books.delta("A-B", [["10", "5"], ["junk", "1"]], [], out, first=6, last=6)
    except ValueError:
        pass
    else:
        raise AssertionError("a junk price must raise for the adapter to count")
    (gap,) = out.events
    assert isinstance(gap, Gap) and gap.reason == "malformed" and gap.symbol == "A-B"
    assert out.actions == [Resync("A-B", "malformed")]
    assert books.state("A-B") == RESYNCING and books.counters["book.gap.malformed"] == 1
    # The book holding half an update no subscriber has is not served until rebuilt.
    assert books.shared_book("A-B") is None


def test_a_malformed_field_read_after_the_levels_applied_invalidates_the_book() -> None:
    # Binance's event time '' * 1_000_000 is '' (no error in the adapter), refused by the L2Delta
    # built after the book changed.
    books, out = _synced()
    try:
        books.delta("A-B", [["10", "5"]], [], out, first=6, last=6, timestamp="")
    except TypeError:
        pass
    else:
        raise AssertionError("a str timestamp must raise")
    assert kinds(out) == ["Gap"] and out.events[0].timestamp is None   # nothing of the message trusted
    assert books.state("A-B") == RESYNCING


def test_negative_sizes_are_refused_negative_prices_are_not() -> None:
    books, out = _synced()
    try:
        books.delta("A-B", [["10", "-5"]], [], out, first=6, last=6)
    except ValueError as exc:
        assert "negative" in str(exc)
    else:
        raise AssertionError("a negative size must raise")
    assert kinds(out) == ["Gap"]
    books, out = _synced(no_rule)
    assert books.delta("A-B", [["-1", "5"]], [], out) == APPLY   # spreads and combos go below zero
    assert isinstance(out.events[0], L2Delta) and out.events[0].bids_str == (("-1", "5"),)


def test_a_malformed_buffered_update_refuses_the_snapshot_and_asks_again() -> None:
    books = Books("EX", range_rule)
    books.add("A-B", "AB")
    out = Output()
    books.delta("A-B", [["10", "abc"]], [], out, first=8, last=8)   # buffered as received
    try:
        books.snapshot("A-B", [["9", "1"]], [["13", "1"]], 7, out)
    except ValueError:
        pass
    else:
        raise AssertionError("the buffered junk size must raise")
    assert out.events == [] and out.actions == [Resync("A-B", "malformed")]
    assert books.state("A-B") == WAITING and books.counters["book.malformed"] == 1
    assert books.shared_book("A-B") is None   # nothing valid was ever served
    # The next snapshot starts clean (the junk update was dropped with the refused one).
    assert books.snapshot("A-B", [["9", "1"]], [["13", "1"]], 9, out)
    assert books.state("A-B") == SYNCED


def test_malformed_is_for_adapters_that_convert_rows_first_and_is_idempotent() -> None:
    books, out = _synced()
    books.malformed("A-B", out, 7)
    books.malformed("A-B", out, 8)      # invalid already, its resync asked for: nothing more
    books.malformed("X-Y", out, 9)      # no such book: nothing
    assert kinds(out) == ["Gap"] and len(out.actions) == 1
