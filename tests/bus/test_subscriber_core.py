"""SubscriberCore (the sans-I/O sequence/book state machine) driven with hand-made frames, no sockets."""

from __future__ import annotations

import msgpack

from bus import codec, snapshot
from bus.subscriber import LOCAL_SEQ, BookKeeper, SubscriberCore
from cryptofeed_types.events import Gap, Heartbeat, L2Delta, L2Snapshot, Reset, Status, Trade

EPOCH = 1_000


def frames(event, seq, epoch=EPOCH, gateway="gw"):
    return list(codec.encode(event, gateway, epoch, seq, publish_ts=1))


def delta(price, size="1"):
    return L2Delta("EX", "BTC-USDT", [(price, size)], [], receipt_timestamp=1)


def snap_item(rid, event, seq, epoch=EPOCH, gateway="gw"):
    return [rid, *codec.encode(event, gateway, epoch, seq, publish_ts=1)]


def end(rid, count, epoch=EPOCH, gateway="gw"):
    return [rid, snapshot.END, msgpack.packb([codec.WIRE_VERSION, gateway, epoch, count])]


class Core(SubscriberCore):
    """The core plus the BookKeeper a driver would feed with every delivered message."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.keeper = BookKeeper()

    def _fed(self, out):
        for m in out:
            self.keeper.on_delivered(m)
        return out

    def on_sub(self, frames, now):
        return self._fed(super().on_sub(frames, now))

    def on_snapshot(self, endpoint, frames, now):
        return self._fed(super().on_snapshot(endpoint, frames, now))

    def tick(self, now):
        return self._fed(super().tick(now))

    def book(self, exchange, symbol):
        return self.keeper.book(exchange, symbol)


def kinds(msgs):
    return [type(m.event).__name__ for m in msgs]


def joined_core():
    """A core that said hello, saw gateway 'gw' on SUB and holds a live book at seq 10."""
    core = Core([""], [0])
    core.start(0.0)
    (_, hello), = core.outbox
    core.outbox.clear()
    assert hello[0] == snapshot.HELLO
    assert core.on_snapshot(0, end(hello[2], 0), 0.0) == []
    out = core.on_sub(frames(delta("99"), 11), 0.0)  # buffered: the book needs its snapshot first
    assert out == []
    (_, req), = core.outbox
    core.outbox.clear()
    assert req[:2] == [snapshot.SNAPSHOT, b""]
    book = L2Snapshot("EX", "BTC-USDT", [("100", "1")], [("101", "2")], receipt_timestamp=1)
    assert core.on_snapshot(0, snap_item(req[2], book, 10), 0.0) == []
    out = core.on_snapshot(0, end(req[2], 1), 0.0)
    assert kinds(out) == ["L2Snapshot", "L2Delta"]
    assert [m.header.seq for m in out] == [10, 11]
    return core


def test_late_joiner_drops_buffered_deltas_at_or_below_snapshot_seq():
    core = Core([""], [0])
    core.start(0.0)
    rid_hello = core.outbox.pop()[1][2]
    core.on_snapshot(0, end(rid_hello, 0), 0.0)
    for seq, price in ((9, "90"), (10, "91"), (11, "92")):
        core.on_sub(frames(delta(price), seq), 0.0)
    rid = core.outbox.pop()[1][2]
    book = L2Snapshot("EX", "BTC-USDT", [("91", "5")], [], receipt_timestamp=1)
    core.on_snapshot(0, snap_item(rid, book, 10), 0.0)
    out = core.on_snapshot(0, end(rid, 1), 0.0)
    assert [(type(m.event).__name__, m.header.seq) for m in out] == [("L2Snapshot", 10), ("L2Delta", 11)]
    assert core.book("EX", "BTC-USDT").snapshot() == ([("92", "1"), ("91", "5")], [])


def test_gap_invalidates_book_and_resyncs_with_reset_then_snapshot():
    core = joined_core()
    out = core.on_sub(frames(delta("98"), 13), 0.0)  # 12 is missing
    assert kinds(out) == ["Gap"]
    gap = out[0].event
    assert isinstance(gap, Gap) and (gap.expected, gap.received, gap.symbol, gap.channel) == (12, 13, "BTC-USDT", "book")
    assert out[0].header.seq == LOCAL_SEQ
    assert core.book("EX", "BTC-USDT") is None
    (_, req), = core.outbox
    assert req[:2] == [snapshot.SNAPSHOT, b"book.EX.BTC-USDT."]
    core.outbox.clear()
    core.on_sub(frames(delta("97"), 14), 0.0)
    book = L2Snapshot("EX", "BTC-USDT", [("100", "3")], [], receipt_timestamp=1)
    core.on_snapshot(0, snap_item(req[2], book, 13), 0.0)
    out = core.on_snapshot(0, end(req[2], 1), 0.0)
    assert kinds(out) == ["Reset", "L2Snapshot", "L2Delta"]
    assert isinstance(out[0].event, Reset)
    assert core.book("EX", "BTC-USDT").snapshot() == ([("100", "3"), ("97", "1")], [])
    assert core.counters["gaps"] == 1 and core.counters["resyncs"] == 1


def _heartbeat(invalid, seqs=None):
    return Heartbeat("gw", {"book_seqs": seqs or {"book.EX.BTC-USDT.": 11}, "book_invalid": invalid}, {},
                     receipt_timestamp=1)


def _no_heartbeats(msgs):
    return [m for m in msgs if type(m.event) is not Heartbeat]   # this core (prefix "") delivers them


def test_a_publisher_gap_seen_is_not_reported_again_by_the_heartbeat():
    core = joined_core()                                       # live at seq 11
    out = core.on_sub(frames(Gap("EX", "book", "checksum", symbol="BTC-USDT", receipt_timestamp=1), 1), 0.0)
    assert kinds(out) == ["Gap"] and core.book("EX", "BTC-USDT") is None
    assert _no_heartbeats(core.on_sub(frames(_heartbeat({"book.EX.BTC-USDT.": 11}), 1), 0.0)) == []
    assert core.outbox == [] and core.counters["gaps"] == 0
    # The rebuild: the stream's snapshot (seq 12); the next heartbeat lists nothing.
    book = L2Snapshot("EX", "BTC-USDT", [("100", "3")], [], receipt_timestamp=1)
    assert kinds(core.on_sub(frames(book, 12), 0.0)) == ["L2Snapshot"]
    assert _no_heartbeats(core.on_sub(frames(_heartbeat({}, {"book.EX.BTC-USDT.": 12}), 2), 0.0)) == []
    assert core.book("EX", "BTC-USDT").snapshot() == ([("100", "3")], [])


def test_a_lost_publisher_gap_is_revealed_by_the_heartbeat():
    # The publisher's gap of this book was lost (a dropped message): the book publishes nothing
    # while invalid, so only the heartbeat's book_invalid can tell. The book is dropped, and
    # rebuilt from the stream's snapshot when the publisher has it again.
    core = joined_core()
    core.on_sub(frames(Gap("EX", "book", "checksum", symbol="BTC-USDT", receipt_timestamp=1), 1), 0.0)
    core.on_sub(frames(L2Snapshot("EX", "BTC-USDT", [("100", "3")], [], receipt_timestamp=1), 12), 0.0)
    # gap.EX.BTC-USDT. seq 2 is lost; the heartbeat lists the book invalid at 12.
    out = _no_heartbeats(core.on_sub(frames(_heartbeat({"book.EX.BTC-USDT.": 12}, {"book.EX.BTC-USDT.": 12}), 1),
                                     0.0))
    assert kinds(out) == ["Gap"]
    gap = out[0].event
    assert (gap.reason, gap.expected, gap.received, out[0].header.seq) == (
        "publisher gap lost (seen in heartbeat)", None, None, LOCAL_SEQ)
    assert core.book("EX", "BTC-USDT") is None and core.counters["gaps"] == 1
    (_, req), = core.outbox
    assert req[:2] == [snapshot.SNAPSHOT, b"book.EX.BTC-USDT."]
    assert core.on_snapshot(0, end(req[2], 0), 0.0) == []      # not served while invalid
    out = core.on_sub(frames(L2Snapshot("EX", "BTC-USDT", [("99", "1")], [], receipt_timestamp=1), 13), 0.0)
    assert kinds(out) == ["Reset", "L2Snapshot"] and core.book("EX", "BTC-USDT").snapshot() == ([("99", "1")], [])


def test_a_feed_wide_publisher_gap_counts_as_seen_for_every_book_of_its_exchange():
    core = joined_core()
    core.on_sub(frames(Gap("EX", "book", "disconnected", receipt_timestamp=1), 1), 0.0)
    assert _no_heartbeats(core.on_sub(frames(_heartbeat({"book.EX.BTC-USDT.": 11}), 1), 0.0)) == []
    assert core.counters["gaps"] == 0



def _live_from_a_reply_ahead_of_the_stream():
    """A core whose book went live from a snapshot reply (seq 13) ahead of the stream (at 11)."""
    core = Core([""], [0])
    core.start(0.0)
    (_, hello), = core.outbox
    core.outbox.clear()
    core.on_snapshot(0, end(hello[2], 0), 0.0)
    core.on_sub(frames(delta("99"), 11), 0.0)                  # buffered; a request goes out
    (_, req), = core.outbox
    core.outbox.clear()
    book = L2Snapshot("EX", "BTC-USDT", [("100", "5")], [("101", "2")], receipt_timestamp=1)
    core.on_snapshot(0, snap_item(req[2], book, 13), 0.0)
    assert kinds(core.on_snapshot(0, end(req[2], 1), 0.0)) == ["L2Snapshot"]
    return core


def test_a_publisher_gap_older_than_the_reply_resnapshots_and_the_state_never_goes_back():
    # The reply (13) already holds the publisher's gap and its rebuild (12), both still unread
    # on the stream. Taking the gap as current would drop the book and wait for a rebuild that is
    # older than it: instead the book is resnapshotted, and the older rebuild is dropped as seen.
    core = _live_from_a_reply_ahead_of_the_stream()
    out = core.on_sub(frames(Gap("EX", "book", "checksum", symbol="BTC-USDT", receipt_timestamp=1), 1), 0.0)
    assert kinds(out) == ["Gap"] and core.book("EX", "BTC-USDT") is None
    (_, req), = core.outbox
    core.outbox.clear()
    assert req[:2] == [snapshot.SNAPSHOT, b"book.EX.BTC-USDT."]
    rebuild = L2Snapshot("EX", "BTC-USDT", [("100", "4")], [("101", "2")], receipt_timestamp=1)
    assert core.on_sub(frames(rebuild, 12), 0.0) == [] and core.counters["duplicates"] == 1
    assert core.on_sub(frames(delta("100", "5"), 13), 0.0) == []
    assert core.on_sub(frames(delta("98"), 14), 0.0) == []     # buffered until the reply
    book = L2Snapshot("EX", "BTC-USDT", [("100", "5")], [("101", "2")], receipt_timestamp=1)
    core.on_snapshot(0, snap_item(req[2], book, 13), 0.0)
    out = core.on_snapshot(0, end(req[2], 1), 0.0)
    assert kinds(out) == ["Reset", "L2Snapshot", "L2Delta"] and [m.header.seq for m in out[1:]] == [13, 14]
    assert core.book("EX", "BTC-USDT").snapshot() == ([("100", "5"), ("98", "1")], [("101", "2")])
    assert core.counters["gaps"] == 0    # the publisher's gap was the only one


def test_once_the_stream_has_passed_the_reply_a_publisher_gap_is_current():
    # A stream message advancing the book, or a heartbeat listing it at the reply's seq, shows the
    # stream past the reply's state: a gap read later is current (the book waits for the rebuild).
    for passed in ("delta", "heartbeat"):
        core = _live_from_a_reply_ahead_of_the_stream()
        if passed == "delta":
            core.on_sub(frames(delta("97"), 14), 0.0)
        else:
            core.on_sub(frames(_heartbeat({}, {"book.EX.BTC-USDT.": 13}), 1), 0.0)
        core.on_sub(frames(Gap("EX", "book", "checksum", symbol="BTC-USDT", receipt_timestamp=1), 1), 0.0)
        assert core.book("EX", "BTC-USDT") is None and core.outbox == [], passed


def test_a_reply_older_than_the_state_held_since_is_not_applied():
    # A request out for one resync can cover a later one; its reply, served before the book moved
    # on and read late, must not take the book back: the core asks again.
    core = joined_core()                                       # live at 11
    core.on_sub(frames(_heartbeat({}, {"book.EX.BTC-USDT.": 12}), 1), 0.0)   # tail loss: request 1
    (_, first), = core.outbox
    core.outbox.clear()
    rebuild = L2Snapshot("EX", "BTC-USDT", [("100", "6")], [], receipt_timestamp=1)
    assert kinds(core.on_sub(frames(rebuild, 14), 0.0)) == ["Reset", "L2Snapshot"]   # the stream's rebuild
    core.on_sub(frames(delta("99", "2"), 15), 0.0)
    assert kinds(core.on_sub(frames(delta("98"), 17), 0.0)) == ["Gap"]   # 16 lost; request 1 still covers it
    assert core.outbox == []
    old = L2Snapshot("EX", "BTC-USDT", [("100", "1")], [], receipt_timestamp=1)
    core.on_snapshot(0, snap_item(first[2], old, 12), 0.0)
    assert core.on_snapshot(0, end(first[2], 1), 0.0) == []   # not applied: 12 is before 15
    (_, again), = core.outbox
    assert again[:2] == [snapshot.SNAPSHOT, b"book.EX.BTC-USDT."]
    book = L2Snapshot("EX", "BTC-USDT", [("100", "6"), ("98", "1")], [], receipt_timestamp=1)
    core.on_snapshot(0, snap_item(again[2], book, 17), 0.0)
    assert kinds(core.on_snapshot(0, end(again[2], 1), 0.0)) == ["Reset", "L2Snapshot"]
    assert core.book("EX", "BTC-USDT").snapshot() == ([("100", "6"), ("98", "1")], [])

def test_duplicates_are_dropped_and_non_book_gaps_reported():
    core = joined_core()
    assert core.on_sub(frames(delta("99"), 11), 0.0) == []
    assert core.counters["duplicates"] == 1
    t = Trade("EX", "BTC-USDT", "buy", "1", "100", receipt_timestamp=1)
    assert kinds(core.on_sub(frames(t, 5), 0.0)) == ["Trade"]  # joining mid-stream is not a gap
    out = core.on_sub(frames(t, 7), 0.0)
    assert kinds(out) == ["Gap", "Trade"] and out[0].event.channel == "trades"
    # A lost heartbeat is counted, not reported as a (feed-wide) Gap.
    hb = Heartbeat("gw", {}, {}, receipt_timestamp=1)
    core.on_sub(frames(hb, 1), 0.0)
    assert kinds(core.on_sub(frames(hb, 3), 0.0)) == ["Heartbeat"]  # no Gap before it
    assert core.counters["control_gaps"] == 1 and core.counters["gaps"] == 1


def test_new_epoch_invalidates_and_restarts_from_seq_1():
    core = joined_core()
    out = core.on_sub(frames(L2Snapshot("EX", "BTC-USDT", [("50", "1")], [], receipt_timestamp=1), 1,
                             epoch=EPOCH + 1), 0.0)
    assert kinds(out) == ["Gap", "Reset", "L2Snapshot"]
    assert "epoch" in out[0].event.reason
    assert core.book("EX", "BTC-USDT").snapshot() == ([("50", "1")], [])
    # The old incarnation's messages are refused.
    assert core.on_sub(frames(delta("1"), 12), 0.0) == []
    assert core.counters["old_epoch"] == 1


def test_smaller_epoch_after_silence_is_a_restart_with_a_clock_stepped_back():
    core = joined_core()
    assert core.on_sub(frames(delta("1"), 1, epoch=EPOCH - 1), 0.0) == []   # live gateway: refused
    assert core.counters["old_epoch"] == 1
    assert kinds(core.tick(3.5)) == ["Status"]                              # the known epoch went silent
    out = core.on_sub(frames(L2Snapshot("EX", "BTC-USDT", [("7", "1")], [], receipt_timestamp=1), 1,
                             epoch=EPOCH - 1), 4.0)
    assert "Reset" in kinds(out) and core.gateways["gw"].epoch == EPOCH - 1
    assert core.book("EX", "BTC-USDT").snapshot() == ([("7", "1")], [])
    assert core.counters["old_epoch"] == 1


def test_negative_epoch_or_seq_is_junk():
    core = joined_core()
    for epoch, seq in ((-5, 12), (EPOCH, -1)):
        f = list(codec.encode(delta("1"), "gw", 0, 0, publish_ts=1))
        f[1] = msgpack.packb([codec.WIRE_VERSION, "gw", epoch, seq, None, 1, 1])
        assert core.on_sub(f, 0.0) == []
        try:
            codec.decode_header(f[1])
        except codec.WireError:
            pass
        else:
            raise AssertionError("negative header integer accepted")
    assert core.counters["junk"] == 2


def test_silence_reports_stale_then_connected():
    core = joined_core()
    assert core.tick(1.0) == []
    out = core.tick(3.5)
    assert kinds(out) == ["Status"] and out[0].event.state == "stale"
    assert isinstance(out[0].event, Status) and out[0].event.exchange == "gw"
    out = core.on_sub(frames(delta("99", "2"), 12), 4.0)
    assert kinds(out) == ["Status", "L2Delta"] and out[0].event.state == "connected"


def test_malformed_frames_are_counted_never_raised():
    core = joined_core()
    good = frames(delta("99", "2"), 12)
    bad = [[b"x"], [b"book.EX.BTC-USDT.", b"\xc1", b"\xc1"], [good[0], good[1], b"\x92\x01"],
           [b"trades.EX.BTC-USDT.", good[1], good[2]], [b"\xff.", good[1], good[2]], good + [b""],
           [good[0], msgpack.packb([9, "gw", 1, 1, None, 1, 1]), good[2]]]
    for f in bad:
        assert core.on_sub(f, 0.0) == []
    assert core.counters["junk"] == len(bad)
    assert kinds(core.on_sub(good, 0.0)) == ["L2Delta"]
    assert core.on_snapshot(0, [b"1", b"garbage"], 0.0) == []
    assert core.counters["snapshot_junk"] == 1


def test_snapshot_request_times_out_and_is_resent():
    core = Core([""], [0], request_timeout=2.0)
    core.start(0.0)
    first = core.outbox.pop()[1]
    core.tick(1.0)
    assert core.outbox == []
    core.tick(2.5)
    (_, again), = core.outbox
    assert again[0] == snapshot.HELLO and again[2] != first[2]
    assert core.counters["snapshot_timeouts"] == 1


def test_books_false_is_a_plain_sequenced_stream():
    core = Core([""], [0], books=False)
    core.start(0.0)
    assert core.outbox == []  # no snapshot service traffic at all
    out = core.on_sub(frames(delta("99"), 40), 0.0)
    assert kinds(out) == ["L2Delta"]  # delivered at once, no book, no buffering
    out = core.on_sub(frames(delta("98"), 42), 0.0)
    assert kinds(out) == ["Gap", "L2Delta"] and core.outbox == []
