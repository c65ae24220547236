"""BitMEX adapter tests: recorded bytes only (the shared capture and tardis messages), no sockets."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from cryptofeed_types import Gap, L2Delta, L2Snapshot, Reset
from feedfabric.testing.adapters import CaptureParts, accounted, capture_parts, feed
from gateways.adapter import Resync, Send, Subscription
from gateways.books import SYNCED
from gateways.exchanges import get
from gateways.exchanges.bitmex import BATCH, WS, BitMEX, guess_symbol, iso_ns
from gateways.replay import replay_capture

# The capture's subscription (cryptofeed's XRP-BTC-21U24 is our XRP-BTC-20210924).
SYMBOLS = ["XRP-BTC-20210924", "UNI-USDT-PERP", "BTC-USD-PERP", "ADA-USDT-PERP", "SOL-USDT-PERP",
           "TRX-BTC-20210924", "EOS-USDT-PERP", "TRX-USDT-PERP", "BCH-USD-PERP", "MATIC-USDT-PERP"]
CAPTURE_SUB = {"l2_book": SYMBOLS, "ticker": SYMBOLS, "trades": SYMBOLS}


@pytest.fixture(scope="module")
def capture(shared_data: Path) -> CaptureParts:
    return capture_parts(shared_data / "cryptofeed" / "BITMEX")


def _adapter(capture, channels=None) -> BitMEX:
    a = BitMEX(Subscription(channels if channels is not None else CAPTURE_SUB))
    a.load_instruments(capture[0])
    return a


def _json_num(text: str) -> int | float:
    """A price as BitMEX's JSON carries it (integral prices have no fraction)."""
    return float(text) if "." in text else int(text)


def _msg(table: str, action: str, rows: list[dict], **extra) -> str:
    return orjson.dumps({"table": table, "action": action, "data": rows, **extra}).decode()


# ------------------------------------------------------------------ instruments / symbols

def test_registered():
    assert get("BITMEX") is BitMEX


def test_instruments_from_rest(capture):
    a = _adapter(capture)
    assert a.check_subscription() == []
    perp = a.symbols["BTC-USD-PERP"]
    assert (perp.exchange_symbol, str(perp.tick_size), str(perp.lot_size), str(perp.contract_size), perp.settle) \
        == ("XBTUSD", "0.5", "100", "1", "BTC")
    fut = a.symbols["XRP-BTC-20210924"]
    assert (fut.exchange_symbol, fut.kind, fut.tick_size, str(fut.contract_size)) == \
        ("XRPU21", "future", Decimal("0.00000001"), "1")
    quanto = a.symbols["UNI-USDT-PERP"]
    assert quanto.exchange_symbol == "UNIUSDT" and quanto.contract_size is None


@pytest.mark.parametrize("xs, normalized", [
    ("XBTUSD", "BTC-USD-PERP"), ("SOLUSDT", "SOL-USDT-PERP"), ("XBTZ21", "BTC-USD-20211231"),
    ("EOSM19", "EOS-BTC-20190628"), ("ETHUSDU21", "ETH-USD-20210924"),
])
def test_guess_symbol(xs, normalized):
    assert guess_symbol(xs).normalized == normalized


def test_iso_ns():
    assert iso_ns("2021-07-22T22:36:10.014Z") == 1626993370014 * 1_000_000
    assert iso_ns("2021-07-22T22:36:10Z") == 1626993370 * 1_000_000_000
    assert iso_ns(None) is None


# ------------------------------------------------------------------ subscriptions

def test_connections_batched(capture):
    a = _adapter(capture, {"trades": SYMBOLS * 1, "l2_book": SYMBOLS, "ticker": SYMBOLS, "funding": SYMBOLS,
                           "open_interest": ["BTC-USD-PERP"], "liquidations": ["BTC-USD-PERP"],
                           "candles": ["BTC-USD-PERP"]})
    (spec,) = a.connections()
    args = [json.loads(m)["args"] for m in spec.subscribe]
    flat = [x for batch in args for x in batch]
    assert len(flat) == len(set(flat)) == 40 and [len(b) for b in args] == [BATCH, 40 - BATCH]
    assert {"trade:XBTUSD", "orderBookL2:XRPU21", "quote:UNIUSDT", "instrument:XBTUSD", "liquidation:XBTUSD",
            "tradeBin1m:XBTUSD"} <= set(flat)
    # funding only exists for perpetuals: XRPU21 and TRXU21 are dated futures.
    assert "instrument:XRPU21" not in flat and a.counters["subscription.unsupported.funding"] == 2
    assert spec.ping == "ping" and spec.ping_interval < spec.silence_timeout


def test_subscribe_batches():
    ids = [f"C{i}USDT" for i in range(120)]
    a = BitMEX(Subscription({"trades": [guess_symbol(x).normalized for x in ids]}))
    a.set_symbols([guess_symbol(x) for x in ids])
    args = [json.loads(m)["args"] for m in a.connections()[0].subscribe]
    assert [len(b) for b in args] == [BATCH] * (120 // BATCH) + ([120 % BATCH] if 120 % BATCH else [])
    assert [x for b in args for x in b] == [f"trade:{x}" for x in ids]


# ------------------------------------------------------------------ capture replay

def test_replay_capture(capture):
    a = _adapter(capture)
    events, actions = feed(a, capture[1], WS)
    assert a.error_counts() == {} and actions == []
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["Trade"] == 27 and kinds["Ticker"] == 436
    assert kinds["L2Snapshot"] == 10 and kinds["L2Delta"] == 1969
    assert not any(isinstance(e, (Gap, Reset)) for e in events)
    for sb in a.books:
        assert sb.state == SYNCED and not sb.book.is_crossed() and len(sb.book.bids) > 0
    t = next(e for e in events if e.KIND == "trade" and e.id == "39744121-c20e-44ba-8cc8-a6b8cdf72885")
    assert (t.symbol, t.side, t.amount_str, t.price_str, t.id) == \
        ("UNI-USDT-PERP", "buy", "52", "17.297", "39744121-c20e-44ba-8cc8-a6b8cdf72885")
    assert t.timestamp == iso_ns("2021-07-22T22:36:10.014Z")


def test_every_message_accounted(capture):
    a = _adapter(capture)
    for ts, raw in capture[1]:
        before = accounted(a.counters)
        out = a.on_message(WS, raw, ts)
        assert out.events or accounted(a.counters) > before, raw[:200]


def test_matches_cryptofeed_reference(shared_data):
    """The shared replay path vs cryptofeed 2.5.0's digest of the same capture (trades, tickers,
    final full-depth books; tests/gateways/reference/BITMEX.json)."""
    cf_digest = pytest.importorskip("tools.cf_digest")
    result = replay_capture(shared_data / "cryptofeed" / "BITMEX", collect=True)
    assert result.adapter.error_counts() == {}
    ours = cf_digest.digest_events(result.events)
    assert cf_digest.compare(cf_digest.load_reference("BITMEX"), ours) == []


# ------------------------------------------------------------------ integrity failures

def test_unknown_id_resyncs_one_symbol(capture):
    clean, broken = _adapter(capture), _adapter(capture)
    msgs = capture[1]
    idx = [i for i, (_, raw) in enumerate(msgs) if '"orderBookL2","action":"update"' in raw
           and '"symbol":"XBTUSD"' in raw]
    cut = idx[len(idx) // 2]
    feed(clean, msgs[:cut], WS)
    feed(broken, msgs[:cut], WS)
    ts, raw = msgs[cut]
    doc = json.loads(raw)
    doc["data"][0]["id"] = 1  # an id the book never held: an update was lost
    out = broken.on_message(WS, json.dumps(doc), ts)
    clean.on_message(WS, raw, ts)
    assert [(e.symbol, e.reason) for e in out.events if isinstance(e, Gap)] == [("BTC-USD-PERP", "unknown_id")]
    assert out.actions == [Resync("BTC-USD-PERP", "unknown_id")]
    resync = broken.resync("BTC-USD-PERP", ts)
    assert [json.loads(s.payload) for s in resync.actions if isinstance(s, Send)] == [
        {"op": "unsubscribe", "args": ["orderBookL2:XBTUSD"]},
        {"op": "subscribe", "args": ["orderBookL2:XBTUSD"]},
    ]
    # Until a new partial: XBTUSD publishes no book, the other symbols keep flowing.
    rest = msgs[cut + 1:]
    ev, _ = feed(broken, rest, WS)
    feed(clean, rest, WS)
    assert not [e for e in ev if isinstance(e, (L2Delta, L2Snapshot)) and e.symbol == "BTC-USD-PERP"]
    assert {e.symbol for e in ev if isinstance(e, L2Delta)} - {"BTC-USD-PERP"}
    assert broken.counters["ignored.book_before_partial"] > 0 and broken.error_counts() == {}
    for sym in SYMBOLS:
        if sym != "BTC-USD-PERP":
            assert broken.books.book(sym) == clean.books.book(sym)
    # The resubscription's partial (the clean book, in today's row format) rebuilds it: Reset + L2Snapshot.
    bids, asks = clean.books.book("BTC-USD-PERP").snapshot()
    rows = [{"symbol": "XBTUSD", "id": 10_000 + i, "side": "Buy", "size": int(s), "price": _json_num(p)}
            for i, (p, s) in enumerate(bids)]
    rows += [{"symbol": "XBTUSD", "id": 90_000 + i, "side": "Sell", "size": int(s), "price": _json_num(p)}
             for i, (p, s) in enumerate(asks)]
    out = broken.on_message(WS, _msg("orderBookL2", "partial", rows, filter={"symbol": "XBTUSD"}), ts + 1)
    assert [type(e).__name__ for e in out.events][:2] == ["Reset", "L2Snapshot"]
    assert broken.books.book("BTC-USD-PERP") == clean.books.book("BTC-USD-PERP")


def test_todays_rows_with_price_and_moved_level():
    a = BitMEX(Subscription({"l2_book": ["BTC-USD-PERP", "ETH-USD-PERP"]}))
    a.set_symbols([guess_symbol("XBTUSD"), guess_symbol("ETHUSD")])
    row = {"symbol": "XBTUSD", "timestamp": "2026-11-23T10:00:00.000Z"}
    part = [{**row, "id": 1, "side": "Buy", "size": 10, "price": 100.5},
            {**row, "id": 2, "side": "Sell", "size": 20, "price": 101}]
    out = a.on_message(WS, _msg("orderBookL2", "partial", part, filter={"symbol": "XBTUSD"}), 1)
    assert out.events[0].bids_str == (("100.5", "10"),) and out.events[0].timestamp == iso_ns(row["timestamp"])
    # An update naming a new price for the same id moves the level.
    out = a.on_message(WS, _msg("orderBookL2", "update", [{**row, "id": 1, "side": "Buy", "size": 7,
                                                           "price": 100}]), 2)
    assert out.events[0].bids_str == (("100.5", "0"), ("100", "7"))
    assert a.books.book("BTC-USD-PERP").snapshot() == ([("100", "7")], [("101", "20")])
    # An insert crossing the book is caught: Gap + Resync for that symbol only.
    a.on_message(WS, _msg("orderBookL2", "partial", [{"symbol": "ETHUSD", "id": 5, "side": "Buy", "size": 1,
                                                      "price": 3000}], filter={"symbol": "ETHUSD"}), 3)
    out = a.on_message(WS, _msg("orderBookL2", "insert", [{**row, "id": 3, "side": "Buy", "size": 1,
                                                           "price": 102}]), 4)
    assert [(type(e).__name__, e.reason) for e in out.events] == [("Gap", "crossed")]
    assert out.actions == [Resync("BTC-USD-PERP", "crossed")]
    assert a.books.state("ETH-USD-PERP") == SYNCED and a.books.state("BTC-USD-PERP") != SYNCED
    # Duplicate insert of a held (id, side) is a broken stream too.
    out = a.on_message(WS, _msg("orderBookL2", "insert", [{"symbol": "ETHUSD", "id": 5, "side": "Buy",
                                                           "size": 2, "price": 3000}]), 5)
    assert [(type(e).__name__, e.reason) for e in out.events] == [("Gap", "duplicate_id")]


def test_malformed_book_rows_invalidate_books_not_leave_them_silently_behind():
    """BitMEX has no sequence numbers: a row it cannot read loses an update nothing would reveal
    later. A junk size (its symbol known) takes that book out; a row without its symbol, every
    synced book (Gap ``malformed``, resubscribed); the errors are counted."""
    a = BitMEX(Subscription({"l2_book": ["BTC-USD-PERP", "ETH-USD-PERP"]}))
    a.set_symbols([guess_symbol("XBTUSD"), guess_symbol("ETHUSD")])
    for xs, price in (("XBTUSD", 100), ("ETHUSD", 3000)):
        a.on_message(WS, _msg("orderBookL2", "partial", [{"symbol": xs, "id": 1, "side": "Buy", "size": 1,
                                                          "price": price}], filter={"symbol": xs}), 1)
    out = a.on_message(WS, _msg("orderBookL2", "update", [{"symbol": "XBTUSD", "id": 1, "side": "Buy",
                                                           "size": "junk"}]), 2)
    assert [(e.KIND, e.symbol, e.reason) for e in out.events] == [("gap", "BTC-USD-PERP", "malformed")]
    assert a.books.state("ETH-USD-PERP") == SYNCED and a.counters["errors"] == 1
    out = a.on_message(WS, _msg("orderBookL2", "update", [{"id": 1, "side": "Buy", "size": 2}]), 3)
    assert [(e.KIND, e.symbol, e.reason) for e in out.events] == [("gap", "ETH-USD-PERP", "malformed")]
    assert a.books.state("ETH-USD-PERP") != SYNCED and a.counters["errors"] == 2
    assert out.actions    # the resubscribe (BitMEX answers with a fresh partial)



def test_rows_with_an_empty_timestamp_carry_none():
    """``iso_ns('')`` is "no timestamp": such rows still make the book (a partial with one used to
    fail on ``max(int, None)`` and be lost), the update's time taken from the rows that have one."""
    a = BitMEX(Subscription({"l2_book": ["BTC-USD-PERP"]}))
    a.set_symbols([guess_symbol("XBTUSD")])
    part = [{"symbol": "XBTUSD", "timestamp": "2026-11-23T10:00:00.000Z", "id": 1, "side": "Buy", "size": 10,
             "price": 100},
            {"symbol": "XBTUSD", "timestamp": "", "id": 2, "side": "Sell", "size": 20, "price": 101}]
    out = a.on_message(WS, _msg("orderBookL2", "partial", part, filter={"symbol": "XBTUSD"}), 1)
    assert [e.KIND for e in out.events][:1] == ["book_snapshot"] and a.error_counts() == {}
    assert out.events[0].timestamp == iso_ns("2026-11-23T10:00:00.000Z")
    out = a.on_message(WS, _msg("orderBookL2", "update", [{"symbol": "XBTUSD", "timestamp": "", "id": 1,
                                                           "side": "Buy", "size": 7}]), 2)
    assert out.events[0].KIND == "book_delta" and out.events[0].timestamp is None
    assert a.books.book("BTC-USD-PERP").snapshot() == ([("100", "7")], [("101", "20")])

# ------------------------------------------------------------------ other tables

def test_instrument_funding_liquidation_candles():
    a = BitMEX(Subscription({"funding": ["BTC-USD-PERP"], "open_interest": ["BTC-USD-PERP"],
                             "mark": ["BTC-USD-PERP"], "index": ["BTC-USD-PERP"],
                             "liquidations": ["BTC-USD-PERP"], "candles": ["BTC-USD-PERP"]}))
    a.set_symbols([guess_symbol("XBTUSD")])
    t = "2026-11-23T10:00:00.000Z"
    part = {"symbol": "XBTUSD", "fundingRate": 0.0001, "indicativeFundingRate": -0.00005,
            "fundingTimestamp": "2026-11-23T12:00:00.000Z", "openInterest": 500, "markPrice": 90000.12,
            "indicativeSettlePrice": 90001.5, "timestamp": t}
    evs = a.on_message(WS, _msg("instrument", "partial", [part]), 1).events
    got = {e.KIND: e for e in evs}
    assert set(got) == {"funding", "open_interest", "mark", "index"}
    f = got["funding"]
    assert (f.rate_str, f.predicted_rate_str, f.next_funding_time) == \
        ("0.0001", "-0.00005", iso_ns("2026-11-23T12:00:00.000Z"))
    assert (got["mark"].price_str, got["index"].price_str, got["open_interest"].open_interest_str) == \
        ("90000.12", "90001.5", "500")
    # A partial update repeats the kept funding fields with the changed one.
    (f2,) = a.on_message(WS, _msg("instrument", "update", [{"symbol": "XBTUSD", "indicativeFundingRate": 0.0002,
                                                            "timestamp": t}]), 2).events
    assert (f2.rate_str, f2.predicted_rate_str) == ("0.0001", "0.0002")
    assert a.on_message(WS, _msg("instrument", "update", [{"symbol": "XBTUSD", "lastTickDirection": "PlusTick",
                                                           "timestamp": t}]), 3).events == []
    assert a.counters["ignored.instrument_other_fields"] == 1
    (fr,) = a.on_message(WS, _msg("funding", "insert", [{"symbol": "XBTUSD", "fundingRate": 0.0003,
                                                         "timestamp": "2026-11-23T12:00:00.000Z"}]), 4).events
    assert fr.rate_str == "0.0003"
    (liq,) = a.on_message(WS, _msg("liquidation", "insert", [{"orderID": "o1", "symbol": "XBTUSD", "side": "Sell",
                                                               "price": 89000.5, "leavesQty": 300}]), 5).events
    assert (liq.side, liq.quantity_str, liq.price_str, liq.id, liq.status) == ("sell", "300", "89000.5", "o1", "open")
    (liq2,) = a.on_message(WS, _msg("liquidation", "update", [{"orderID": "o1", "symbol": "XBTUSD",
                                                                "leavesQty": 100}]), 6).events
    assert (liq2.side, liq2.quantity_str, liq2.price_str, liq2.status) == ("sell", "100", "89000.5", "partial")
    (c,) = a.on_message(WS, _msg("tradeBin1m", "insert", [{
        "timestamp": "2026-11-23T10:01:00.000Z", "symbol": "XBTUSD", "open": 90000, "high": 90010.5, "low": 89990,
        "close": 90005, "trades": 12, "volume": 5000, "homeNotional": 0.0555, "foreignNotional": 5000}]), 7).events
    start = iso_ns("2026-11-23T10:00:00.000Z")
    assert (c.start, c.stop, c.interval, c.open_str, c.high_str, c.low_str, c.close_str, c.volume_str, c.trades,
            c.closed) == (start, start + 60 * 10**9 - 10**6, "1m", "90000", "90010.5", "89990", "90005", "0.0555", 12, True)


def test_control_messages_counted():
    a = BitMEX(Subscription({}))
    assert a.on_message(WS, "pong", 1).events == [] and a.counters["ignored.pong"] == 1
    a.on_message(WS, '{"status":400,"error":"Unknown table: foo","meta":{},"request":{"op":"subscribe"}}', 2)
    a.on_message(WS, "not json", 3)
    a.on_message(WS, '{"table":"trade","action":"insert","data":[{"symbol":"???"}]}', 4)
    assert a.counters["errors.exchange_error"] == 1 and a.counters["errors.parse.JSONDecodeError"] == 1
    assert a.counters["errors.unknown_symbol"] == 1


# ------------------------------------------------------------------ tardis messages

def test_tardis_messages(shared_data):
    a = BitMEX(Subscription({}))
    kinds: Counter[str] = Counter()
    for line in (shared_data / "tardis_messages" / "bitmex.jsonl").read_text().splitlines():
        if not line:
            continue
        before = accounted(a.counters)
        out = a.on_message(WS, line, 1)
        kinds.update(e.KIND for e in out.events)
        assert out.events or accounted(a.counters) > before, line[:200]
    assert a.error_counts() == {}
    assert {"trade", "ticker", "book_snapshot", "book_delta", "open_interest", "mark", "index",
            "liquidation"} <= set(kinds)
    # The lines are samples from several days: the last XBTUSD insert lands on a stale 2022 book
    # whose sell side holds the same price, which the crossed-book check catches.
    assert a.counters["book.gap.crossed"] == 1


def test_close_then_reconnect_partial(capture):
    a = _adapter(capture)
    feed(a, capture[1], WS)
    out = a.on_close(WS, 5, "test")
    assert sorted(e.symbol for e in out.events if isinstance(e, Gap)) == sorted(SYMBOLS)
    first_partial = next(raw for _, raw in capture[1] if '"orderBookL2","action":"partial"' in raw)
    out = a.on_message(WS, first_partial, 6)
    assert [type(e).__name__ for e in out.events][:2] == ["Reset", "L2Snapshot"]
