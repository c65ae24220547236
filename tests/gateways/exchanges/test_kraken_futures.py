"""Kraken Futures adapter with recorded bytes and no sockets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from cryptofeed_types import BBO, Gap, L2Delta, L2Snapshot, Reset, Symbol
from gateways.adapter import Send, Subscription
from gateways.capture import RECV, REST, read_capture
from gateways.exchanges import get
from gateways.exchanges.kraken_futures import KrakenFutures
from gateways.replay import Replayer, replay_capture


def _accounted(counters: Counter[str]) -> int:
    return sum(v for k, v in counters.items()
               if k.startswith(("ignored.", "errors.", "book.")) and k not in ("book.snapshots", "book.resets"))


def _capture(shared: Path) -> Path:
    return shared / "cryptofeed" / "KRAKEN_FUTURES"


def _instruments(shared: Path) -> dict[str, str]:
    for rec in read_capture(_capture(shared)):
        if rec.kind == REST and "instruments" in (rec.url or ""):
            return {rec.url: rec.data}
    raise AssertionError("no instruments response in the capture")


def _recv(shared: Path) -> list[dict]:
    out = []
    for rec in read_capture(_capture(shared)):
        if rec.kind == RECV:
            out.append(orjson.loads(rec.data))
    return out


def test_registry_and_instruments(shared_data: Path) -> None:
    assert get("KRAKEN_FUTURES") is KrakenFutures
    kf = KrakenFutures(Subscription({}))
    syms = kf.load_instruments(_instruments(shared_data))
    assert len(syms) == 17                              # indices (in_/rr_) are not instruments
    perp = kf.symbols["BTC-USD-PERP"]
    assert perp.exchange_symbol == "PI_XBTUSD" and perp.settle == "BTC" and str(perp.tick_size) == "0.5"
    assert str(perp.contract_size) == "1" and perp.kind == "perpetual"
    dated = kf.symbols["ETH-USD-20211231"]
    assert dated.exchange_symbol == "FI_ETHUSD_211231" and dated.kind == "future" and str(dated.tick_size) == "0.05"
    assert kf.from_exchange["PI_XRPUSD"].normalized == "XRP-USD-PERP"


def test_linear_and_inverse_perpetuals_do_not_collide() -> None:
    body = orjson.dumps({"result": "success", "instruments": [
        {"symbol": "PI_XBTUSD", "type": "futures_inverse", "tickSize": 0.5, "contractSize": 1},
        {"symbol": "PF_XBTUSD", "type": "flexible_futures", "tickSize": 1, "contractSize": 1,
         "contractValueTradePrecision": 4},
        {"symbol": "PF_SOLUSD", "type": "flexible_futures", "tickSize": 0.001, "contractSize": 1,
         "contractValueTradePrecision": -1},
    ]})
    kf = KrakenFutures(Subscription({}))
    kf.load_instruments({"u": body})
    assert kf.to_exchange["BTC-USD-PERP"] == "PF_XBTUSD" and kf.symbols["BTC-USD-PERP"].settle == "USD"
    assert kf.to_exchange["BTC-USDINV-PERP"] == "PI_XBTUSD"
    assert format(kf.symbols["BTC-USD-PERP"].lot_size, "f") == "0.0001"
    assert str(kf.symbols["SOL-USD-PERP"].lot_size) == "10"


def test_subscriptions_are_batched() -> None:
    names = [f"C{i}-USD-PERP" for i in range(250)]
    syms = [Symbol.parse(n, exchange_symbol=f"PF_C{i}USD") for i, n in enumerate(names)]
    kf = KrakenFutures(Subscription({"l2_book": names, "funding": names[:5], "open_interest": names[:5]}),
                       symbols=syms)
    specs = kf.connections()
    assert [len({s for _, s in spec.streams}) for spec in specs] == [200, 50]
    for spec in specs:
        msgs = [orjson.loads(m) for m in spec.subscribe]
        assert all(len(m.get("product_ids", ())) <= 100 for m in msgs)
        assert msgs[-1] == {"event": "subscribe", "feed": "heartbeat"}
    feeds = [orjson.loads(m)["feed"] for m in specs[0].subscribe]
    assert feeds == ["book", "book", "ticker", "heartbeat"]   # funding + OI share one ticker subscription


def test_capture_replay_every_message_accounted(shared_data: Path) -> None:
    replayer = Replayer()
    records = list(read_capture(_capture(shared_data)))
    result = replayer.run(records[:1])
    adapter = result.adapter
    silent = []
    for rec in records[1:]:
        before = (result.event_count, _accounted(adapter.counters))
        buffered = sum(len(sb.buffer) for sb in adapter.books)
        replayer.run([rec])
        if rec.kind == RECV and (result.event_count, _accounted(adapter.counters)) == before and \
                sum(len(sb.buffer) for sb in adapter.books) <= buffered:
            silent.append(rec.data[:200])
    assert silent == []
    assert adapter.error_counts() == {}
    kinds = result.events_by_kind
    for kind in ("trade", "ticker", "book_snapshot", "book_delta", "bbo"):
        assert kinds[kind] > 0, kind
    assert kinds["gap"] == 0 and kinds["reset"] == 0
    # Every recorded book update passed the per-product seq check (+1 each) and was applied.
    n_updates = sum(1 for m in _recv(shared_data) if m.get("feed") == "book" and "seq" in m)
    assert kinds["book_delta"] == n_updates > 7000
    books = list(adapter.books)
    assert len(books) == 10
    for sb in books:
        assert sb.state == "synced" and not sb.book.is_crossed()
        assert sb.book.sequence == max(m["seq"] for m in _recv(shared_data)
                                       if m.get("feed", "").startswith("book") and m.get("product_id") ==
                                       sb.exchange_symbol)


def test_capture_matches_cryptofeed_reference(shared_data: Path) -> None:
    from tools.cf_digest import compare, digest_events, load_reference
    result = replay_capture(_capture(shared_data), collect=True)
    assert compare(load_reference("KRAKEN_FUTURES"), digest_events(result.events, exchange="KRAKEN_FUTURES")) == []


def test_tardis_messages(shared_data: Path) -> None:
    lines = [ln for ln in (shared_data / "tardis_messages" / "cryptofacilities.jsonl").read_text().splitlines() if ln]
    adapter = KrakenFutures(Subscription({}))
    kinds: Counter[str] = Counter()
    silent = []
    for i, line in enumerate(lines):
        acc = _accounted(adapter.counters)
        buffered = sum(len(sb.buffer) for sb in adapter.books)
        out = adapter.on_message("tardis", line, i)
        kinds.update(e.KIND for e in out.events)
        if not out.events and _accounted(adapter.counters) == acc and \
                sum(len(sb.buffer) for sb in adapter.books) <= buffered:
            silent.append(line)
    assert silent == [] and adapter.error_counts() == {}
    for kind in ("trade", "ticker", "funding", "open_interest", "index", "mark", "liquidation", "book_snapshot"):
        assert kinds[kind] > 0, kind
    # The sample jumps from seq 360370 to 361428: a real hole, reported.
    assert kinds["gap"] == 1
    funding = next(e for e in replay_capture(shared_data / "tardis_messages" / "cryptofacilities.jsonl",
                                             collect=True).events if e.KIND == "funding")
    assert funding.symbol == "LTC-USD-PERP" and funding.rate_str == "0.000104908704166667"
    assert funding.next_funding_time == 1554091200000 * 10**6 and funding.mark_price_str == "60.38"


# ---------------------------------------------------------------- integrity
def _book_msgs(shared: Path) -> list[dict]:
    return [m for m in _recv(shared) if m.get("feed") in ("book", "book_snapshot") and "product_id" in m]


def _naive(msgs: list[dict], pid: str) -> tuple[dict, dict, int]:
    bids: dict = {}
    asks: dict = {}
    seq = 0
    for m in msgs:
        if m["product_id"] != pid:
            continue
        if m["feed"] == "book_snapshot":
            bids = {lv["price"]: lv["qty"] for lv in m["bids"]}
            asks = {lv["price"]: lv["qty"] for lv in m["asks"]}
        else:
            side = bids if m["side"] == "buy" else asks
            if m["qty"] == 0:
                side.pop(m["price"], None)
            else:
                side[m["price"]] = m["qty"]
        seq = m["seq"]
    return bids, asks, seq


def test_sequence_gap_resyncs_that_product_only(shared_data: Path) -> None:
    msgs = _book_msgs(shared_data)
    adapter = KrakenFutures(Subscription({"l2_book": ["ETH-USD-PERP", "LTC-USD-PERP"]}))
    adapter.load_instruments(_instruments(shared_data))
    eth = [i for i, m in enumerate(msgs) if m["product_id"] == "PI_ETHUSD" and m["feed"] == "book"]
    cut = eth[len(eth) // 2]
    for m in msgs[:cut]:
        adapter.on_message("KRAKEN_FUTURES.0", orjson.dumps(m), 1)
    # msgs[cut] (an ETH update) is lost; the next ETH update reveals the hole.
    nxt = next(i for i in eth if i > cut)
    for m in msgs[cut + 1:nxt]:
        adapter.on_message("KRAKEN_FUTURES.0", orjson.dumps(m), 2)
    out = adapter.on_message("KRAKEN_FUTURES.0", orjson.dumps(msgs[nxt]), 3)
    assert [(type(e), e.symbol, e.reason) for e in out.events] == [(Gap, "ETH-USD-PERP", "sequence")]
    assert out.events[0].expected == msgs[cut]["seq"] and out.events[0].received == msgs[nxt]["seq"]
    assert [(a.conn, orjson.loads(a.payload)) for a in out.actions if isinstance(a, Send)] == [
        ("KRAKEN_FUTURES.0", {"event": "unsubscribe", "feed": "book", "product_ids": ["PI_ETHUSD"]}),
        ("KRAKEN_FUTURES.0", {"event": "subscribe", "feed": "book", "product_ids": ["PI_ETHUSD"]})]
    # No snapshot within 30 s: the timer resubscribes again (a lost request must not leave it waiting forever).
    assert adapter.on_timer(3 + 10 * 10**9).actions == []
    retry = adapter.on_timer(3 + 31 * 10**9).actions
    assert [orjson.loads(a.payload)["event"] for a in retry] == ["unsubscribe", "subscribe"]
    # LTC keeps publishing while ETH waits for its new snapshot.
    later = msgs[nxt + 1:]
    events = []
    stop = len(later) // 2
    for m in later[:stop]:
        events += adapter.on_message("KRAKEN_FUTURES.0", orjson.dumps(m), 4).events
    assert any(isinstance(e, L2Delta) and e.symbol == "LTC-USD-PERP" for e in events)
    assert not any(isinstance(e, L2Delta) and e.symbol == "ETH-USD-PERP" for e in events)
    # The resubscription's snapshot (the book as of now, seq included) rebuilds ETH: Reset + L2Snapshot.
    bids, asks, seq = _naive(msgs[:nxt + 1 + stop], "PI_ETHUSD")
    snap = {"feed": "book_snapshot", "product_id": "PI_ETHUSD", "timestamp": 1626994999000, "seq": seq,
            "bids": [{"price": p, "qty": q} for p, q in bids.items()],
            "asks": [{"price": p, "qty": q} for p, q in asks.items()]}
    out = adapter.on_message("KRAKEN_FUTURES.0", orjson.dumps(snap), 5)
    assert [type(e) for e in out.events][:2] == [Reset, L2Snapshot]
    assert all(isinstance(e, BBO) for e in out.events[2:])
    for m in later[stop:]:
        adapter.on_message("KRAKEN_FUTURES.0", orjson.dumps(m), 6)
    assert adapter.on_timer(100 * 10**9).actions == []     # synced again: nothing pending
    # Both books end equal to the capture's truth.
    for name, pid in (("ETH-USD-PERP", "PI_ETHUSD"), ("LTC-USD-PERP", "PI_LTCUSD")):
        b, a, seq = _naive(msgs, pid)
        book = adapter.books.book(name)
        assert adapter.books.state(name) == "synced" and book.sequence == seq
        assert {float(p): float(q) for p, q in book.snapshot()[0]} == {float(p): float(q) for p, q in b.items()}
        assert {float(p): float(q) for p, q in book.snapshot()[1]} == {float(p): float(q) for p, q in a.items()}
    assert adapter.error_counts() == {}


def test_malformed_messages_are_counted_not_raised() -> None:
    adapter = KrakenFutures(Subscription({}))
    bad = ["{", "[]", '{"feed":"book","product_id":"PI_XBTUSD","side":"up","seq":1,"price":1,"qty":1}',
           '{"feed":"newfeed"}', '{"event":"error","message":"Invalid product id"}',
           '{"feed":"trade","product_id":"ZZ","side":"buy","price":1,"qty":1}',
           '{"feed":"ticker","product_id":"PI_XBTUSD","bid":true}']
    for raw in bad:
        assert adapter.on_message("c", raw, 1).events == []
    assert adapter.counters["errors"] == len(bad)
    assert adapter.error_counts()["errors.unknown_symbol"] == 1


@pytest.mark.parametrize("reason", ["dropped", ""])
def test_disconnect_invalidates_books(shared_data: Path, reason: str) -> None:
    result = replay_capture(_capture(shared_data))
    adapter = result.adapter
    out = adapter.on_close("KRAKEN_FUTURES.0", 10, reason)
    assert sorted(e.symbol for e in out.events if isinstance(e, Gap)) == sorted(adapter.subscription.symbols("l2_book"))
