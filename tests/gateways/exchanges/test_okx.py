"""OKX adapter tests: recorded bytes only (the shared captures and tardis messages), no sockets."""

from __future__ import annotations

import ast
import json
import zlib
from collections import Counter
from pathlib import Path

import orjson
import pytest

from cryptofeed_types import Gap, L2Delta, L2Snapshot, Reset, okx_checksum
from feedfabric.testing.adapters import accounted, feed
from gateways.adapter import Resync, Rotate, Send, Subscription
from gateways.books import SYNCED
from gateways.exchanges import get
from gateways.exchanges.okx import (
    BATCH,
    BUSINESS,
    PUBLIC,
    OKXAdapter,
    symbol_from_inst_id,
)
from gateways.replay import replay_capture

# The capture's subscription (cryptofeed's BTC-USD-22K27 is our BTC-USD-20220527).
SYMBOLS = ["BTC-USD-20220527", "UNI-USD-PERP", "BTC-USDT"]
CAPTURE_SUB = {"l2_book": SYMBOLS, "ticker": SYMBOLS, "trades": SYMBOLS}


def _cryptofeed_ws(path: Path) -> list[tuple[int, str | bytes]]:
    """Received messages of a cryptofeed ``EX.ws.N.0`` capture: (receipt ns, raw)."""
    out = []
    for line in path.read_text().splitlines():
        if " <-> " in line or " <- " in line or not line:
            continue
        ts, _, msg = line.partition(": ")
        raw: str | bytes = ast.literal_eval(msg) if msg.startswith(("b'", 'b"')) else msg
        out.append((int(float(ts) * 1e9), raw))
    return out


def _cryptofeed_rest(path: Path) -> dict[str, str]:
    bodies = {}
    for line in path.read_text().splitlines():
        if line.startswith("configuration") or " -> " not in line:
            continue
        url, _, rest = line.partition(" -> ")
        bodies[url] = rest.partition(": ")[2]
    return bodies


@pytest.fixture(scope="module")
def capture(shared_data: Path) -> tuple[dict[str, str], list[tuple[int, str | bytes]]]:
    base = shared_data / "cryptofeed"
    return _cryptofeed_rest(base / "OKX.0"), _cryptofeed_ws(base / "OKX.ws.1.0")


def _adapter(capture, channels=None) -> OKXAdapter:
    a = OKXAdapter(Subscription(channels or CAPTURE_SUB))
    a.load_instruments(capture[0])
    return a


# ------------------------------------------------------------------ instruments / symbols

def test_registered():
    assert get("OKX") is OKXAdapter


def test_instruments_from_rest(capture):
    a = _adapter(capture)
    assert a.check_subscription() == []
    fut = a.symbols["BTC-USD-20220527"]
    assert (fut.exchange_symbol, str(fut.tick_size), str(fut.contract_size), fut.settle) == \
        ("BTC-USD-220527", "0.1", "100", "BTC")
    swap = a.symbols["UNI-USD-PERP"]
    assert swap.exchange_symbol == "UNI-USD-SWAP" and swap.kind == "perpetual"
    spot = a.symbols["BTC-USDT"]
    assert spot.exchange_symbol == "BTC-USDT" and spot.contract_size is None and spot.lot_size is not None
    opt = a.symbols["BTC-USD-20220514-22000-C"]
    assert opt.exchange_symbol == "BTC-USD-220514-22000-C" and str(opt.contract_size) == "0.1"
    assert a.symbols["ETH-USD-20220514-1300-C"].option_type == "C"


@pytest.mark.parametrize("inst_id, normalized", [
    ("BTC-USDT", "BTC-USDT"),
    ("BTC-USDT-SWAP", "BTC-USDT-PERP"),
    ("ETH-USD-261225", "ETH-USD-20261225"),
    ("BTC-USD-261225-100000-P", "BTC-USD-20261225-100000-P"),
])
def test_symbol_from_inst_id(inst_id, normalized):
    assert symbol_from_inst_id(inst_id).normalized == normalized


def test_bad_inst_id_is_counted_not_raised():
    a = OKXAdapter(Subscription({}))
    raw = '{"arg":{"channel":"trades","instId":"NOT-A-REAL-ID-X-Y"},"data":[{"instId":"NOT-A-REAL-ID-X-Y",' \
          '"tradeId":"1","px":"1","sz":"1","side":"buy","ts":"1"}]}'
    assert a.on_message(PUBLIC, raw, 1).events == []
    assert a.counters["errors.unknown_symbol"] == 1


# ------------------------------------------------------------------ subscriptions

def test_connections_batched():
    syms = [f"C{i}-USDT" for i in range(130)]
    a = OKXAdapter(Subscription({"trades": syms, "l2_book": syms[:5], "candles": syms[:3]}))
    a.set_symbols([symbol_from_inst_id(s) for s in syms])
    specs = {s.id: s for s in a.connections()}
    pub = specs[PUBLIC]
    args = [json.loads(m)["args"] for m in pub.subscribe]
    assert all(len(x) <= BATCH for x in args) and sum(len(x) for x in args) == 136   # + the status channel
    assert args[-1][-1] == {"channel": "status"}
    assert pub.ping == "ping" and pub.ping_interval < 30
    cand = [json.loads(m) for m in specs[BUSINESS].subscribe]
    assert cand[0]["args"][0] == {"channel": "candle1m", "instId": "C0-USDT"}


def test_liquidations_and_index_subscriptions(capture):
    a = _adapter(capture, {"liquidations": ["UNI-USD-PERP", "BTC-USD-20220527"], "index": ["UNI-USD-PERP"],
                           "funding": ["UNI-USD-PERP"]})
    args = [arg for m in a.connections()[0].subscribe for arg in json.loads(m)["args"]]
    assert {"channel": "liquidation-orders", "instType": "SWAP"} in args
    assert {"channel": "liquidation-orders", "instType": "FUTURES"} in args
    assert {"channel": "index-tickers", "instId": "UNI-USD"} in args
    assert {"channel": "funding-rate", "instId": "UNI-USD-SWAP"} in args


# ------------------------------------------------------------------ capture replay

def test_replay_capture(capture):
    a = _adapter(capture)
    events, actions = feed(a, capture[1], PUBLIC)
    assert a.error_counts() == {}
    assert actions == []
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["Trade"] == 74 and kinds["Ticker"] == 28
    assert kinds["L2Snapshot"] == 3 and kinds["L2Delta"] == 287
    # Every book push (3 snapshots + 287 updates) had its CRC32 verified.
    assert a.counters["book.checksum_verified"] == 290
    assert not any(isinstance(e, (Gap, Reset)) for e in events)
    for sb in a.books:
        assert sb.state == SYNCED and not sb.book.is_crossed() and len(sb.book.bids) > 0
    t = next(e for e in events if e.KIND == "trade")
    assert (t.symbol, t.exchange_symbol, t.id, t.price_str, t.amount_str, t.side) == \
        ("BTC-USD-20220527", "BTC-USD-220527", "7849", "30218.8", "1", "buy")
    assert t.timestamp == 1652459199958 * 1_000_000


def test_every_message_accounted(capture):
    a = _adapter(capture)
    for ts, raw in capture[1]:
        before = accounted(a.counters)
        out = a.on_message(PUBLIC, raw, ts)
        assert out.events or accounted(a.counters) > before, raw[:200]


def test_deflate_frames(capture):
    a, b = _adapter(capture), _adapter(capture)
    for ts, raw in capture[1][:60]:
        comp = zlib.compressobj(wbits=-15)
        deflated = comp.compress(raw.encode()) + comp.flush()
        ea = a.on_message(PUBLIC, raw, ts).events
        eb = b.on_message(PUBLIC, deflated, ts).events
        assert [e.wire_body() for e in ea] == [e.wire_body() for e in eb]
    assert b.error_counts() == {}
    assert b.on_message(PUBLIC, b"pong", 1).events == [] and b.counters["ignored.pong"] == 1
    b.on_message(PUBLIC, b"\x00garbage", 1)
    assert b.counters["errors.bad_deflate"] == 1


# ------------------------------------------------------------------ integrity failures

def _book_msg(inst: str, action: str, bids, asks, checksum: int, seq=None, prev=None, ts="1700000000000") -> str:
    d = {"asks": [[p, s, "0", "1"] for p, s in asks], "bids": [[p, s, "0", "1"] for p, s in bids], "ts": ts,
         "checksum": checksum}
    if seq is not None:
        d["seqId"], d["prevSeqId"] = seq, prev
    return orjson.dumps({"arg": {"channel": "books", "instId": inst}, "action": action, "data": [d]}).decode()


def test_bad_checksum_resyncs_one_symbol(capture):
    clean, broken = _adapter(capture), _adapter(capture)
    msgs = capture[1]
    book_idx = [i for i, (_, raw) in enumerate(msgs) if '"books"' in raw and '"update"' in raw
                and '"BTC-USDT"' in raw]
    cut = book_idx[len(book_idx) // 2]
    feed(clean, msgs[:cut], PUBLIC)
    feed(broken, msgs[:cut], PUBLIC)
    ts, raw = msgs[cut]
    doc = json.loads(raw)
    doc["data"][0]["checksum"] ^= 0x5A5A
    out = broken.on_message(PUBLIC, json.dumps(doc), ts)
    clean.on_message(PUBLIC, raw, ts)
    gaps = [e for e in out.events if isinstance(e, Gap)]
    assert [(g.symbol, g.reason) for g in gaps] == [("BTC-USDT", "checksum")]
    assert out.actions == [Resync("BTC-USDT", "checksum")]
    resync = broken.resync("BTC-USDT", ts)
    assert [json.loads(s.payload) for s in resync.actions if isinstance(s, Send)] == [
        {"op": "unsubscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]},
        {"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]},
    ]
    # Until a new snapshot: BTC-USDT publishes nothing, the other books keep flowing.
    rest = msgs[cut + 1:]
    nxt = next(i for i, (_, r) in enumerate(rest) if '"books"' in r and '"BTC-USDT"' in r)
    ev, _ = feed(broken, rest[:nxt + 1], PUBLIC)
    feed(clean, rest[:nxt + 1], PUBLIC)
    assert not [e for e in ev if isinstance(e, (L2Delta, L2Snapshot)) and e.symbol == "BTC-USDT"]
    assert {e.symbol for e in ev if isinstance(e, L2Delta)} - {"BTC-USDT"}
    # The resubscription's snapshot (the clean book as OKX would send it) rebuilds it: Reset + L2Snapshot.
    bids, asks = clean.books.book("BTC-USDT").snapshot()
    snap = _book_msg("BTC-USDT", "snapshot", bids, asks, okx_checksum(bids, asks))
    out = broken.on_message(PUBLIC, snap, ts)
    assert [type(e).__name__ for e in out.events][:2] == ["Reset", "L2Snapshot"]
    ev, _ = feed(broken, rest[nxt + 1:], PUBLIC)
    feed(clean, rest[nxt + 1:], PUBLIC)
    assert broken.error_counts() == {}
    assert not any(isinstance(e, Gap) for e in ev)
    for sym in SYMBOLS:
        assert broken.books.book(sym) == clean.books.book(sym)


def test_seq_ids():
    a = OKXAdapter(Subscription({"l2_book": ["BTC-USDT", "ETH-USDT"]}))
    bids, asks = [["100", "1"], ["99", "2"]], [["101", "1"], ["102", "3"]]

    def feed(inst, action, b, s, seq, prev, book=None):
        nb = {p: q for p, q in (book or ([], []))[0]}
        na = {p: q for p, q in (book or ([], []))[1]}
        for p, q in b:
            nb[p] = q
        for p, q in s:
            na[p] = q
        fb = sorted(((p, q) for p, q in nb.items() if q != "0"), key=lambda x: -float(x[0]))
        fa = sorted(((p, q) for p, q in na.items() if q != "0"), key=lambda x: float(x[0]))
        return a.on_message(PUBLIC, _book_msg(inst, action, b, s, okx_checksum(fb, fa), seq, prev), 5), (fb, fa)

    out, eth = feed("ETH-USDT", "snapshot", bids, asks, 7, -1)
    out, btc = feed("BTC-USDT", "snapshot", bids, asks, 10, -1)
    assert isinstance(out.events[0], L2Snapshot) and out.events[0].sequence == 10
    out, btc = feed("BTC-USDT", "update", [["100", "5"]], [], 15, 10, btc)
    assert isinstance(out.events[0], L2Delta) and out.events[0].sequence == 15
    # A sequence confirmation (no levels, prevSeqId == seqId) publishes nothing and is counted.
    a.on_message(PUBLIC, _book_msg("BTC-USDT", "update", [], [], okx_checksum(*btc), 15, 15), 6)
    assert a.counters["ignored.book_empty_update"] == 1
    out, btc = feed("BTC-USDT", "update", [["99", "0"]], [], 30, 29, btc)   # 29 != 15: a gap
    assert [(type(e).__name__, e.symbol) for e in out.events] == [("Gap", "BTC-USDT")]
    assert out.events[0].reason == "sequence"
    assert out.actions == [Resync("BTC-USDT", "sequence")]
    out, eth = feed("ETH-USDT", "update", [["98", "1"]], [], 8, 7, eth)
    assert [type(e).__name__ for e in out.events] == ["L2Delta"]
    assert a.books.state("BTC-USDT") != SYNCED and a.books.state("ETH-USDT") == SYNCED


def test_service_upgrade_notice_and_handoff():
    """Notice 64008 asks the driver to replace the connection (Rotate); after the handover the new
    subscription's snapshot of a synced book is dropped unless newer; other notices are counted."""
    a = OKXAdapter(Subscription({"l2_book": ["BTC-USDT"]}))
    bids, asks = [["100", "1"]], [["101", "1"]]
    a.on_message(PUBLIC, _book_msg("BTC-USDT", "snapshot", bids, asks, okx_checksum(bids, asks), 10, -1), 1)
    out = a.on_message(PUBLIC, '{"event":"notice","code":"64008","msg":"closing soon"}', 2)
    assert out.actions == [Rotate(PUBLIC, "OKX notice 64008: closing soon")] and out.events == []
    assert a.on_message(PUBLIC, '{"event":"notice","code":"64009","msg":"?"}', 3).actions == []
    assert a.counters["ignored.event.notice"] == 1 and a.counters["notice.service_upgrade"] == 1

    assert a.on_handoff(PUBLIC, 4).events == []
    same = a.on_message(PUBLIC, _book_msg("BTC-USDT", "snapshot", bids, asks, okx_checksum(bids, asks), 10, -1), 5)
    assert same.events == [] and a.counters["ignored.handoff_snapshot"] == 1
    # Only the first snapshot after a handover: a later one (a resubscribe) is applied as always.
    newer = [["100", "2"]]
    out = a.on_message(PUBLIC, _book_msg("BTC-USDT", "snapshot", newer, asks, okx_checksum(newer, asks), 12, -1), 6)
    assert [type(e).__name__ for e in out.events] == ["Reset", "L2Snapshot", "BBO"]
    a.on_handoff(PUBLIC, 7)
    out = a.on_message(PUBLIC, _book_msg("BTC-USDT", "snapshot", bids, asks, okx_checksum(bids, asks), 20, -1), 8)
    assert [type(e).__name__ for e in out.events] == ["Reset", "L2Snapshot", "BBO"]   # newer than the book: applied
    assert out.events[1].sequence == 20
    assert a.error_counts() == {}


def test_a_trade_id_not_above_the_last_is_not_published_again():
    a = OKXAdapter(Subscription({"trades": ["BTC-USDT"]}))

    def trade(tid: str, extra: str = "") -> str:
        return ('{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"' + tid
                + '","px":"100","sz":"1","side":"buy","ts":"1700000000000"' + extra + '}]}')
    assert len(a.on_message(PUBLIC, trade("41"), 1).events) == 1
    assert a.on_message(PUBLIC, trade("41", ',"count":"1"'), 2).events == []   # same id, other text
    assert a.on_message(PUBLIC, trade("40"), 3).events == []
    assert len(a.on_message(PUBLIC, trade("42"), 4).events) == 1
    assert a.counters["ignored.duplicate_trade"] == 2 and a.error_counts() == {}
    a.on_close(PUBLIC, 5, "closed")                        # the guard lives as long as the connection
    assert len(a.on_message(PUBLIC, trade("42"), 6).events) == 1


# ------------------------------------------------------------------ tardis messages (today's v5 lines)

@pytest.mark.parametrize("name", ["okex", "okex-futures", "okex-swap", "okex-options", "okex-spreads"])
def test_tardis_messages(shared_data, name):
    a = OKXAdapter(Subscription({}))
    lines = [ln for ln in (shared_data / "tardis_messages" / f"{name}.jsonl").read_text().splitlines() if ln]
    kinds: Counter[str] = Counter()
    for line in lines:
        before = accounted(a.counters)
        out = a.on_message(PUBLIC, line, 1)
        kinds.update(e.KIND for e in out.events)
        # Each line gives events or moves a named counter (ignored.*, book.*); never an error.
        assert out.events or accounted(a.counters) > before, line[:200]
    assert a.error_counts() == {}
    # Retired v3 lines ("table") parse too; only option greeks have no event kind.
    v3_ignored = sum(v for k, v in a.counters.items() if k.startswith("ignored.legacy_v3"))
    assert v3_ignored == sum('"table":"option/summary"' in ln for ln in lines)
    if name == "okex-futures":
        assert {"trade", "mark", "open_interest", "ticker", "liquidation", "index", "funding"} <= set(kinds)
    if name == "okex-swap":
        assert {"funding", "trade", "ticker", "index", "mark", "open_interest", "bbo"} <= set(kinds)
        assert a.counters["ignored.funding_without_rate"] == 1


def test_tardis_values(shared_data):
    a = OKXAdapter(Subscription({}))
    evs = []
    for line in (shared_data / "tardis_messages" / "okex-futures.jsonl").read_text().splitlines():
        evs.extend(a.on_message(PUBLIC, line, 1).events)
    liq = next(e for e in evs if e.KIND == "liquidation" and e.exchange_symbol == "XRP-USD-230929")
    assert (liq.symbol, liq.side, liq.quantity_str, liq.price_str) == ("XRP-USD-20230929", "buy", "39", "0.55205")
    fund = next(e for e in evs if e.KIND == "funding" and e.exchange_symbol == "BTC-USD_UM_XPERP-310404")
    assert fund.rate_str == "-0.0004270396398519" and fund.next_funding_time == 1785888000000 * 1_000_000
    oi = next(e for e in evs if e.KIND == "open_interest")
    assert (oi.symbol, oi.open_interest_str) == ("FIL-USDT-20220325", "236870")


def test_close_then_reconnect_snapshot(capture):
    a = _adapter(capture)
    feed(a, capture[1], PUBLIC)
    out = a.on_close(PUBLIC, 5, "test")
    assert sorted(e.symbol for e in out.events if isinstance(e, Gap)) == sorted(SYMBOLS)
    first_snap = next(raw for _, raw in capture[1] if '"snapshot"' in raw)
    out = a.on_message(PUBLIC, first_snap, 6)
    assert [type(e).__name__ for e in out.events][:2] == ["Reset", "L2Snapshot"]


def test_candles_funding_unsupported_spot():
    a = OKXAdapter(Subscription({"candles": ["BTC-USDT-PERP"], "funding": ["BTC-USDT", "BTC-USDT-PERP"]},
                                candle_interval="1h"))
    a.set_symbols([symbol_from_inst_id("BTC-USDT"), symbol_from_inst_id("BTC-USDT-SWAP")])
    specs = {s.id: s for s in a.connections()}
    assert json.loads(specs[BUSINESS].subscribe[0])["args"] == [{"channel": "candle1H", "instId": "BTC-USDT-SWAP"}]
    assert json.loads(specs[PUBLIC].subscribe[0])["args"] == [{"channel": "funding-rate", "instId": "BTC-USDT-SWAP"},
                                                              {"channel": "status"}]
    assert a.counters["subscription.unsupported.funding"] == 1
    raw = ('{"arg":{"channel":"candle1H","instId":"BTC-USDT-SWAP"},"data":[["1700000000000","36000.1","36100",'
           '"35900.5","36050","1200","12","432600000","0"]]}')
    (c,) = a.on_message(BUSINESS, raw, 7).events
    assert (c.symbol, c.interval, c.start, c.stop, c.open_str, c.high_str, c.low_str, c.close_str, c.volume_str,
            c.closed) == ("BTC-USDT-PERP", "1h", 1700000000000 * 10**6, (1700000000000 + 3_600_000 - 1) * 10**6,
                          "36000.1", "36100", "35900.5", "36050", "12", False)


# ------------------------------------------------------------------ cryptofeed reference

def test_matches_cryptofeed_reference(shared_data):
    """The shared replay path (gateways.replay) vs cryptofeed 2.5.0's digest of the same capture:
    trades, tickers and final books equal (tests/gateways/reference/OKX.json)."""
    cf_digest = pytest.importorskip("tools.cf_digest")
    result = replay_capture(shared_data / "cryptofeed" / "OKX", collect=True)
    assert result.adapter.error_counts() == {}
    assert result.adapter.counters["book.checksum_verified"] == 290
    ours = cf_digest.digest_events(result.events)
    assert cf_digest.compare(cf_digest.load_reference("OKX"), ours) == []


def test_updates_buffered_before_resubscribe_snapshot_are_dropped():
    a = OKXAdapter(Subscription({"l2_book": ["BTC-USDT"]}))
    bids, asks = [("100", "1")], [("101", "1")]
    a.on_message(PUBLIC, _book_msg("BTC-USDT", "snapshot", bids, asks, okx_checksum(bids, asks)), 1)
    out = a.on_message(PUBLIC, _book_msg("BTC-USDT", "update", [("99", "1")], [], 12345), 2)  # bad checksum
    assert [type(e).__name__ for e in out.events] == ["Gap"]
    # An update of the old subscription arrives before the new snapshot (no seqId, as in 2022 captures).
    stale_book = ([("100", "1"), ("98", "7")], asks)
    a.on_message(PUBLIC, _book_msg("BTC-USDT", "update", [("98", "7")], [], okx_checksum(*stale_book)), 3)
    assert a.counters["book.buffered"] == 1
    bids2, asks2 = [("100", "2")], [("101", "3")]
    out = a.on_message(PUBLIC, _book_msg("BTC-USDT", "snapshot", bids2, asks2, okx_checksum(bids2, asks2)), 4)
    assert [type(e).__name__ for e in out.events][:2] == ["Reset", "L2Snapshot"] and out.actions == []
    assert a.books.book("BTC-USDT").snapshot() == (bids2, asks2)


def test_index_published_for_each_symbol_using_it():
    a = OKXAdapter(Subscription({"index": ["BTC-USD-PERP", "BTC-USD-20260327"]}))
    a.set_symbols([symbol_from_inst_id("BTC-USD-SWAP"), symbol_from_inst_id("BTC-USD-260327")])
    args = [x for m in a.connections()[0].subscribe for x in json.loads(m)["args"]]
    assert args == [{"channel": "index-tickers", "instId": "BTC-USD"}, {"channel": "status"}]
    raw = '{"arg":{"channel":"index-tickers","instId":"BTC-USD"},"data":[{"instId":"BTC-USD","idxPx":"64280",' \
          '"open24h":"63848.2","high24h":"64360.7","low24h":"63265.5","sodUtc0":"1","sodUtc8":"1","ts":"1785870839964"}]}'
    evs = a.on_message(PUBLIC, raw, 1).events
    assert [(e.symbol, e.price_str, e.exchange_symbol) for e in evs] == [
        ("BTC-USD-PERP", "64280", "BTC-USD"), ("BTC-USD-20260327", "64280", "BTC-USD")]


def test_tardis_v3_values(shared_data):
    a = OKXAdapter(Subscription({}))
    evs = []
    for line in (shared_data / "tardis_messages" / "okex-futures.jsonl").read_text().splitlines()[:17]:
        evs.extend(a.on_message(PUBLIC, line, 1).events)
    assert a.error_counts() == {}
    t = evs[0]
    assert (t.KIND, t.symbol, t.side, t.price_str, t.amount_str, t.id) == \
        ("trade", "BTC-USD-20190628", "sell", "4061.94", "4", "2578238628528131")
    assert t.timestamp == 1554076799388 * 1_000_000
    f = next(e for e in evs if e.KIND == "funding")
    assert (f.symbol, f.rate_str, f.predicted_rate_str) == ("BCH-USD-PERP", "0.00023534", "0.00037")
    liq = [e for e in evs if e.KIND == "liquidation"]
    assert [(e.side, e.quantity_str, e.price_str) for e in liq] == [("sell", "475", "655.308"), ("buy", "8", "24515.8")]
    snap = next(e for e in evs if e.KIND == "book_snapshot")
    assert snap.bids_str[0] == ("4084.56", "4") and snap.asks_str[0] == ("4084.57", "38")


def _status_push(*rows: dict) -> str:
    base = {"begin": "1672823400000", "end": "1672825980000", "href": "", "preOpenBegin": "", "scheDesc": "",
            "maintType": "1", "env": "1", "system": "unified", "ts": "1672826038470"}
    return json.dumps({"arg": {"channel": "status"}, "data": [{**base, **r} for r in rows]})


def test_status_channel_maintenance_becomes_system_status():
    """The status channel: ongoing/pre-open maintenance of the WebSocket or trading service is the
    exchange's (maintenance / post_only), of a batch of products 'partial'; completed ends it."""
    a = OKXAdapter(Subscription({"trades": ["BTC-USDT"]}))
    wide = {"id": "m1", "serviceType": "5", "title": "Trading system upgrade"}
    (now,) = a.on_message(PUBLIC, _status_push({**wide, "state": "scheduled"}), 1).events   # the first push
    assert now.state == "online" and a.counters["system.scheduled"] == 1   # scheduled: nothing in force yet

    (maint,) = a.on_message(PUBLIC, _status_push({**wide, "state": "ongoing"}), 2).events
    assert (maint.KIND, maint.exchange, maint.feed, maint.state) == ("status", "OKX", "system", "maintenance")
    assert "Trading system upgrade" in maint.reason and "2023-01-04 09:53 UTC" in maint.reason
    assert (maint.timestamp, maint.receipt_timestamp) == (1672826038470 * 1_000_000, 2)

    batch = {"id": "m2", "serviceType": "9", "title": "Options upgrade"}
    (both,) = a.on_message(PUBLIC, _status_push({**batch, "state": "ongoing"}), 3).events
    assert both.state == "maintenance" and "Options upgrade" in both.reason   # the worse one wins, both named
    (pre,) = a.on_message(PUBLIC, _status_push({**wide, "state": "pre_open"}), 4).events
    assert pre.state == "post_only"
    (part,) = a.on_message(PUBLIC, _status_push({**wide, "state": "completed"}), 5).events
    assert part.state == "partial" and "Options upgrade" in part.reason
    (online,) = a.on_message(PUBLIC, _status_push({**batch, "state": "completed"}), 6).events
    assert online.state == "online" and "completed" in online.reason
    assert a.on_message(PUBLIC, _status_push({**batch, "state": "completed"}), 7).events == []
    assert a.counters["ignored.system_status_unchanged"] == 1

    # Services of no public market data, an empty push, a phase OKX never documented.
    assert a.on_message(PUBLIC, _status_push({"serviceType": "7", "state": "ongoing", "title": "bots"}), 8).events == []
    assert a.counters["ignored.system_service_7"] == 1 and a.counters["ignored.system_status_unchanged"] == 2
    assert a.on_message(PUBLIC, '{"arg":{"channel":"status"},"data":[]}', 9).events == []
    assert a.counters["ignored.system_status_empty"] == 1
    a.on_message(PUBLIC, _status_push({**wide, "state": "paused"}), 10)
    assert a.error_counts() == {"errors.bad_system_status": 1}
