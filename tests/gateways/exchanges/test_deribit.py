"""Deribit adapter tests: recorded bytes only (the shared capture and tardis messages), no sockets."""

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
from gateways.exchanges.deribit import (
    BATCH,
    WS,
    Deribit,
    cryptofeed_option_key,
    is_combo,
    symbol_from_name,
)
from gateways.replay import replay_capture

# The capture's subscription, as our symbols (cryptofeed spells them 'BTC-8000-21U24-put').
SYMBOLS = ["BTC-USD-20210924-8000-P", "BTC-USD-20210730-24000-P", "ETH-USD-20210730-2800-C",
           "BTC-USD-20211231-34000-P", "BTC-USD-20210924-34000-P", "BTC-USD-20220624-15000-C",
           "BTC-USD-20211231-300000-C", "ETH-USD-20210827-4000-P", "BTC-USD-20220325-30000-C",
           "ETH-USD-20210723-2300-C"]
CAPTURE_SUB = {"l2_book": SYMBOLS, "ticker": SYMBOLS, "trades": SYMBOLS}


@pytest.fixture(scope="module")
def capture(shared_data: Path) -> CaptureParts:
    return capture_parts(shared_data / "cryptofeed" / "DERIBIT")


def _adapter(capture, channels=None) -> Deribit:
    a = Deribit(Subscription(channels if channels is not None else CAPTURE_SUB))
    a.load_instruments(capture[0])
    return a


def _sub(channel: str, data) -> str:
    return orjson.dumps({"jsonrpc": "2.0", "method": "subscription",
                         "params": {"channel": channel, "data": data}}).decode()


def _json_num(text: str) -> int | float:
    return float(text) if "." in text else int(text)


# ------------------------------------------------------------------ instruments / symbols

def test_registered():
    assert get("DERIBIT") is Deribit


def test_instruments_from_rest(capture):
    a = _adapter(capture)
    assert a.check_subscription() == []
    perp = a.symbols["BTC-USD-PERP"]
    assert (perp.exchange_symbol, perp.tick_size, perp.lot_size, perp.contract_size, perp.settle) == \
        ("BTC-PERPETUAL", Decimal("0.5"), Decimal("10"), Decimal("10"), "BTC")
    opt = a.symbols["BTC-USD-20210924-8000-P"]
    assert (opt.exchange_symbol, opt.kind, opt.strike, opt.option_type, opt.tick_size) == \
        ("BTC-24SEP21-8000-P", "option", Decimal("8000"), "P", Decimal("0.0005"))
    assert a.symbols["UNI-USDC-PERP"].settle == "USDC"
    assert a.symbols["ETH-USD-20210723"].exchange_symbol == "ETH-23JUL21"
    assert a.symbols["SOL-USD-20220610-28-P"].exchange_symbol == "SOL-10JUN22-28-P"


def test_cryptofeed_spelling_resolved(capture):
    a = _adapter(capture, {"l2_book": ["BTC-8000-21U24-put", "BTC-8000-20210924-put"], "trades": ["BTC-USD-PERP"]})
    assert a.subscription.symbols("l2_book") == ["BTC-USD-20210924-8000-P"] * 2
    assert a.check_subscription() == []
    assert cryptofeed_option_key("ETH-2300-21N23-call") == ("ETH", "20210723", "2300", "C")


@pytest.mark.parametrize("name, normalized", [
    ("BTC-PERPETUAL", "BTC-USD-PERP"), ("SOL_USDC-PERPETUAL", "SOL-USDC-PERP"), ("BTC-24SEP21", "BTC-USD-20210924"),
    ("BTC-1OCT21-50000-C", "BTC-USD-20211001-50000-C"), ("XRP_USDC-30JUL21-0d5-C", "XRP-USDC-20210730-0.5-C"),
    ("BTC_USDC", "BTC-USDC"),
])
def test_symbol_from_name(name, normalized):
    assert symbol_from_name(name).normalized == normalized


def test_combos_recognised():
    assert is_combo("BTC-FS-30SEP22_PERP") and is_combo("BTC-STRD-30SEP22-20000")
    assert not is_combo("BTC-24SEP21-8000-P") and not is_combo("BTC-PERPETUAL")


# ------------------------------------------------------------------ connection

def test_connections_and_heartbeat(capture):
    many = [s for s in _adapter(capture).symbols if s.startswith(("BTC-USD-2021", "ETH-USD-2021"))][:120]
    a = _adapter(capture, {"trades": many, "l2_book": many[:5], "ticker": ["BTC-USD-PERP"],
                           "funding": ["BTC-USD-PERP", "BTC-USD-20210924"], "bbo": ["ETH-USD-PERP"],
                           "candles": ["BTC-USD-PERP"]})
    (spec,) = a.connections()
    reqs = [json.loads(m) for m in spec.subscribe]
    assert all(r["method"] == "public/subscribe" for r in reqs)
    chans = [c for r in reqs for c in r["params"]["channels"]]
    assert [len(r["params"]["channels"]) for r in reqs] == [BATCH, len(chans) - BATCH]
    # ticker and funding of BTC-PERPETUAL share its ticker channel.
    assert len(chans) == len(set(chans)) == 120 + 5 + 1 + 1 + 1 + 2   # + the two platform_state channels
    assert chans[-2:] == ["platform_state", "platform_state.public_methods_state"]
    assert {"book.BTC-PERPETUAL.100ms"} - set(chans) and "ticker.BTC-PERPETUAL.100ms" in chans
    assert "quote.ETH-PERPETUAL" in chans and "chart.trades.BTC-PERPETUAL.1" in chans
    assert a.counters["subscription.unsupported.funding"] == 1   # a dated future has no funding
    assert len({r["id"] for r in reqs}) == len(reqs)
    out = a.on_open(WS, 1)
    assert [json.loads(s.payload)["method"] for s in out.actions] == ["public/set_heartbeat"]
    out = a.on_message(WS, '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}', 2)
    assert [json.loads(s.payload)["method"] for s in out.actions] == ["public/test"]
    assert a.counters["ignored.heartbeat"] == 1


# ------------------------------------------------------------------ capture replay

def test_replay_capture(capture):
    a = _adapter(capture)
    events, actions = feed(a, capture[1], WS)
    assert a.error_counts() == {} and actions == []
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["Ticker"] == 89 and kinds["L2Snapshot"] == 10 and kinds["L2Delta"] == 36
    assert not any(isinstance(e, (Gap, Reset)) for e in events)
    for sb in a.books:
        assert sb.state == SYNCED and not sb.book.is_crossed()
    # Every change continued its predecessor: the chain was checked on each of them.
    assert a.books.book("BTC-USD-20210924-8000-P").sequence == max(
        e.sequence for e in events if isinstance(e, L2Delta) and e.symbol == "BTC-USD-20210924-8000-P")
    t = next(e for e in events if e.KIND == "ticker" and e.exchange_symbol == "ETH-30JUL21-2800-C")
    assert (t.symbol, t.bid_str, t.ask_str, t.last_str, t.volume_str, t.timestamp) == \
        ("ETH-USD-20210730-2800-C", "0.0015", "0.0025", "0.002", "869.0", 1626993723632 * 1_000_000)


def test_every_message_accounted(capture):
    a = _adapter(capture)
    for ts, raw in capture[1]:
        before = accounted(a.counters)
        out = a.on_message(WS, raw, ts)
        assert out.events or accounted(a.counters) > before, raw[:200]


def test_matches_cryptofeed_reference(shared_data):
    """The shared replay path vs cryptofeed 2.5.0's digest of the same capture (tickers and final
    books; tests/gateways/reference/DERIBIT.json)."""
    cf_digest = pytest.importorskip("tools.cf_digest")
    result = replay_capture(shared_data / "cryptofeed" / "DERIBIT", collect=True)
    assert result.adapter.error_counts() == {}
    ours = cf_digest.digest_events(result.events)
    assert cf_digest.compare(cf_digest.load_reference("DERIBIT"), ours) == []


# ------------------------------------------------------------------ integrity failures

def test_broken_change_chain_resyncs_one_symbol(capture):
    clean, broken = _adapter(capture), _adapter(capture)
    msgs = capture[1]
    sym, name = "BTC-USD-20210924-8000-P", "BTC-24SEP21-8000-P"
    idx = [i for i, (_, raw) in enumerate(msgs) if f'"book.{name}.raw"' in raw and '"change"' in raw]
    cut = idx[len(idx) // 2]
    feed(clean, msgs[:cut], WS)
    feed(broken, msgs[:cut], WS)
    ts, raw = msgs[cut]
    doc = json.loads(raw)
    doc["params"]["data"]["prev_change_id"] -= 7  # a change was lost
    out = broken.on_message(WS, json.dumps(doc), ts)
    clean.on_message(WS, raw, ts)
    assert [(e.symbol, e.reason) for e in out.events if isinstance(e, Gap)] == [(sym, "sequence")]
    assert out.actions == [Resync(sym, "sequence")]
    resync = broken.resync(sym, ts)
    sent = [json.loads(s.payload) for s in resync.actions if isinstance(s, Send)]
    assert [(m["method"], m["params"]["channels"]) for m in sent] == [
        ("public/unsubscribe", [f"book.{name}.100ms"]), ("public/subscribe", [f"book.{name}.100ms"])]
    # Until a new snapshot: that book publishes nothing, the others keep flowing.
    rest = msgs[cut + 1:]
    ev, _ = feed(broken, rest, WS)
    feed(clean, rest, WS)
    assert not [e for e in ev if isinstance(e, (L2Delta, L2Snapshot)) and e.symbol == sym]
    assert {e.symbol for e in ev if isinstance(e, L2Delta)} - {sym}
    assert broken.counters["book.buffered"] > 0 and broken.error_counts() == {}
    for other in SYMBOLS:
        if other != sym:
            assert broken.books.book(other) == clean.books.book(other)
    # The resubscription's snapshot (the clean book) rebuilds it: Reset + L2Snapshot.
    book = clean.books.book(sym)
    bids, asks = book.snapshot()
    snap = {"type": "snapshot", "timestamp": 1626993800000, "instrument_name": name, "change_id": book.sequence,
            "bids": [["new", _json_num(p), _json_num(q)] for p, q in bids],
            "asks": [["new", _json_num(p), _json_num(q)] for p, q in asks]}
    out = broken.on_message(WS, _sub(f"book.{name}.100ms", snap), ts + 1)
    assert [type(e).__name__ for e in out.events][:2] == ["Reset", "L2Snapshot"]
    assert broken.books.book(sym).snapshot() == clean.books.book(sym).snapshot()


def test_change_actions_and_crossed_book():
    a = Deribit(Subscription({"l2_book": ["BTC-USD-PERP", "ETH-USD-PERP"]}))
    a.set_symbols([symbol_from_name("BTC-PERPETUAL"), symbol_from_name("ETH-PERPETUAL")])
    ch = "book.BTC-PERPETUAL.100ms"
    a.on_message(WS, _sub(ch, {"type": "snapshot", "timestamp": 1, "instrument_name": "BTC-PERPETUAL",
                               "change_id": 10, "bids": [["new", 100.5, 20]], "asks": [["new", 101, 30]]}), 1)
    a.on_message(WS, _sub("book.ETH-PERPETUAL.100ms", {
        "type": "snapshot", "timestamp": 1, "instrument_name": "ETH-PERPETUAL", "change_id": 5,
        "bids": [["new", 3000, 1]], "asks": []}), 1)
    out = a.on_message(WS, _sub(ch, {"type": "change", "timestamp": 2, "instrument_name": "BTC-PERPETUAL",
                                     "prev_change_id": 10, "change_id": 11,
                                     "bids": [["delete", 100.5, 0], ["new", 100, 5]],
                                     "asks": [["change", 101, 25]]}), 2)
    d = out.events[0]
    assert (d.bids_str, d.asks_str, d.sequence, d.timestamp) == \
        ((("100.5", "0"), ("100", "5")), (("101", "25"),), 11, 2_000_000)
    out = a.on_message(WS, _sub(ch, {"type": "change", "timestamp": 3, "instrument_name": "BTC-PERPETUAL",
                                     "prev_change_id": 11, "change_id": 12, "bids": [["new", 102, 1]],
                                     "asks": []}), 3)
    assert [(type(e).__name__, e.reason) for e in out.events] == [("Gap", "crossed")]
    assert a.books.state("ETH-USD-PERP") == SYNCED and a.books.state("BTC-USD-PERP") != SYNCED


# ------------------------------------------------------------------ other channels

def test_tardis_messages(shared_data):
    a = Deribit(Subscription({}))
    kinds: Counter[str] = Counter()
    events = []
    for line in (shared_data / "tardis_messages" / "deribit.jsonl").read_text().splitlines():
        if not line:
            continue
        before = accounted(a.counters)
        out = a.on_message(WS, line, 1)
        kinds.update(e.KIND for e in out.events)
        events.extend(out.events)
        assert out.events or accounted(a.counters) > before, line[:200]
    assert a.error_counts() == {}
    assert {"trade", "ticker", "bbo", "book_snapshot", "funding", "open_interest", "index", "mark",
            "liquidation"} <= set(kinds)
    assert a.counters["ignored.combo_instrument"] == 3
    # Sampled lines: the second ETH-PERPETUAL change does not continue the first snapshot.
    assert a.counters["book.gap.sequence"] == 1
    f = next(e for e in events if e.KIND == "funding")
    assert (f.symbol, f.rate_str, f.mark_price_str, f.timestamp) == \
        ("BTC-USD-PERP", "0.00016281", "10094.1", 1564617604229 * 1_000_000)
    oi = next(e for e in events if e.KIND == "open_interest")
    assert oi.open_interest_str == "66128281"
    liqs = [(e.side, e.quantity_str, e.price_str, e.id) for e in events if e.KIND == "liquidation"]
    assert liqs == [("sell", "1120", "4469.5", "66460463"), ("sell", "2500", "4458.5", "66460626")]
    bbo = next(e for e in events if e.KIND == "bbo" and e.exchange_symbol == "BTC-PERPETUAL")
    assert (bbo.bid_str, bbo.bid_size_str, bbo.ask_str, bbo.ask_size_str) == ("9600.5", "162800", "9601", "49710")


def test_quote_empty_side_and_candles():
    a = Deribit(Subscription({"bbo": ["BTC-USD-PERP"], "candles": ["BTC-USD-PERP"]}, candle_interval="1h"))
    a.set_symbols([symbol_from_name("BTC-PERPETUAL")])
    (bbo,) = a.on_message(WS, _sub("quote.BTC-PERPETUAL", {
        "timestamp": 5, "instrument_name": "BTC-PERPETUAL", "best_bid_price": 0.0, "best_bid_amount": 0.0,
        "best_ask_price": 90000.5, "best_ask_amount": 120}), 1).events
    assert (bbo.bid, bbo.bid_size, bbo.ask_str, bbo.ask_size_str) == (None, None, "90000.5", "120")
    assert json.loads(a.connections()[0].subscribe[0])["params"]["channels"] == [
        "quote.BTC-PERPETUAL", "chart.trades.BTC-PERPETUAL.60", "platform_state", "platform_state.public_methods_state"]
    (c,) = a.on_message(WS, _sub("chart.trades.BTC-PERPETUAL.60", {
        "volume": 12.5, "tick": 1700000000000, "open": 36000, "low": 35900.5, "high": 36100, "cost": 450000,
        "close": 36050}), 2).events
    start = 1700000000000 * 1_000_000
    assert (c.symbol, c.start, c.stop, c.interval, c.open_str, c.high_str, c.low_str, c.close_str, c.volume_str,
            c.closed) == ("BTC-USD-PERP", start, start + 3600 * 10**9 - 10**6, "1h", "36000", "36100", "35900.5",
                          "36050", "12.5", None)


def test_errors_counted_not_raised():
    a = Deribit(Subscription({}))
    a.on_message(WS, '{"jsonrpc":"2.0","id":3,"error":{"code":11050,"message":"bad_request"}}', 1)
    a.on_message(WS, "garbage", 2)
    a.on_message(WS, _sub("trades.NOTATHING.100ms", [{"instrument_name": "NOTATHING"}]), 3)
    a.on_message(WS, _sub("book.BTC-PERPETUAL.100ms", {"type": "weird", "instrument_name": "BTC-PERPETUAL",
                                                       "change_id": 1, "bids": [], "asks": []}), 4)
    assert a.counters["errors.exchange_error"] == 1 and a.counters["errors.parse.JSONDecodeError"] == 1
    assert a.counters["errors.unknown_symbol"] == 1 and a.counters["errors.book_type"] == 1
    a.on_message(WS, _sub("perpetual.BTC-PERPETUAL.100ms", {"timestamp": 1, "interest": 0.0001,
                                                            "index_price": 1}), 5)
    assert a.counters["ignored.channel.perpetual"] == 1


def test_close_then_reconnect_snapshot(capture):
    a = _adapter(capture)
    feed(a, capture[1], WS)
    out = a.on_close(WS, 5, "test")
    assert sorted(e.symbol for e in out.events if isinstance(e, Gap)) == sorted(SYMBOLS)
    first_snap = next(raw for _, raw in capture[1] if '"type":"snapshot"' in raw)
    out = a.on_message(WS, first_snap, 6)
    assert [type(e).__name__ for e in out.events][:2] == ["Reset", "L2Snapshot"]


def test_platform_state_becomes_system_status(capture):
    """Locks of price indices: partial while some of the gateway's instruments trade on a locked
    index, maintenance when all do; a lock elsewhere changes nothing; refused public requests stop all."""
    a = _adapter(capture)          # BTC and ETH options: indices btc_usd and eth_usd
    (st,) = a.on_message(WS, _sub("platform_state", {"price_index": "sol_usdc", "locked": True}), 1).events
    assert (st.KIND, st.exchange, st.feed, st.state) == ("status", "DERIBIT", "system", "online")
    (st,) = a.on_message(WS, _sub("platform_state", {"price_index": "eth_usd", "locked": True}), 2).events
    assert st.state == "partial" and "eth_usd (3 of this gateway's 10 instruments)" in st.reason
    (st,) = a.on_message(WS, _sub("platform_state", {"price_index": "btc_usd", "locked": True}), 3).events
    assert st.state == "maintenance" and "btc_usd, eth_usd (10 of" in st.reason
    (st,) = a.on_message(WS, _sub("platform_state", {"price_index": "btc_usd", "locked": False}), 4).events
    assert st.state == "partial"
    (st,) = a.on_message(WS, _sub("platform_state", {"price_index": "eth_usd", "locked": False}), 5).events
    assert st.state == "online"
    (st,) = a.on_message(WS, _sub("platform_state.public_methods_state",
                                  {"allow_unauthenticated_public_requests": False}), 6).events
    assert st.state == "maintenance" and "refuses unauthenticated" in st.reason
    (st,) = a.on_message(WS, _sub("platform_state.public_methods_state",
                                  {"allow_unauthenticated_public_requests": True}), 7).events
    assert st.state == "online"
    assert a.counters["system.partial"] == 2 and a.counters["system.maintenance"] == 2
    a.on_message(WS, _sub("platform_state", {"price_index": "btc_usd"}), 8)
    assert a.error_counts() == {"errors.bad_system_status": 1}
