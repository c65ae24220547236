"""Kraken spot adapter with recorded bytes and no sockets: websocket v1 (the recordings) and v2 (live).

The v2 book test converts the recorded v1 session into v2 messages (JSON numbers, checksums
on snapshots too), so the adapter's live path is checked against real book traffic: the
v1 checksums stay valid because the pairs' precisions are set to the recorded decimals.
"""

from __future__ import annotations

import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from cryptofeed_types import BBO, Gap, L2Delta, L2Snapshot, Reset, Symbol
from cryptofeed_types import seconds_ns as epoch_str_ns
from feedfabric.testing.adapters import accounted, silent_messages
from gateways.adapter import Send, Subscription
from gateways.capture import RECV, REST, read_capture
from gateways.exchanges import get
from gateways.exchanges.kraken import Kraken
from gateways.replay import replay_capture

CONN = "KRAKEN.0"


def _capture(shared: Path) -> Path:
    return shared / "cryptofeed" / "KRAKEN"


def _asset_pairs(shared: Path) -> dict[str, str]:
    for rec in read_capture(_capture(shared)):
        if rec.kind == REST and "AssetPairs" in (rec.url or ""):
            return {rec.url: rec.data}
    raise AssertionError("no AssetPairs response in the capture")


def _recv(shared: Path) -> list[str]:
    return [r.data for r in read_capture(_capture(shared)) if r.kind == RECV]


def _book_msgs(shared: Path) -> list[list]:
    out = []
    for raw in _recv(shared):
        m = orjson.loads(raw)
        if type(m) is list and str(m[-2]).startswith("book-"):
            out.append(m)
    return out


def _expected_checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """Kraken's documented CRC32, written independently of cryptofeed_types."""
    def fmt(s: str) -> str:
        return s.replace(".", "").lstrip("0")
    text = "".join(fmt(p) + fmt(q) for p, q in asks[:10]) + "".join(fmt(p) + fmt(q) for p, q in bids[:10])
    return zlib.crc32(text.encode())


class _Naive:
    """Books rebuilt from v1 messages with plain dicts (no OrderBook, no adapter)."""

    def __init__(self) -> None:
        self.books: dict[str, tuple[dict, dict]] = {}

    def apply(self, m: list) -> None:
        pair = m[-1]
        for part in m[1:-2]:
            if "as" in part or "bs" in part:
                self.books[pair] = ({}, {})
                bids, asks = self.books[pair]
                for side, key in ((bids, "bs"), (asks, "as")):
                    for p, q, _t in part.get(key, ()):
                        side[float(p)] = (p, q)
                continue
            bids, asks = self.books[pair]
            for side, key in ((bids, "b"), (asks, "a")):
                for lv in part.get(key, ()):
                    if float(lv[1]) == 0:
                        side.pop(float(lv[0]), None)
                    else:
                        side[float(lv[0])] = (lv[0], lv[1])

    def sides(self, pair: str) -> tuple[list, list]:
        bids, asks = self.books[pair]
        return [bids[k] for k in sorted(bids, reverse=True)], [asks[k] for k in sorted(asks)]


# ---------------------------------------------------------------- instruments and subscriptions
def test_registry_instruments_and_times(shared_data: Path) -> None:
    assert get("KRAKEN") is Kraken
    assert epoch_str_ns("1618678133.365913") == 1618678133365913000
    kr = Kraken(Subscription({}))
    syms = kr.load_instruments(_asset_pairs(shared_data))
    assert len(syms) > 250
    btc = kr.symbols["BTC-USD"]
    assert btc.exchange_symbol == "BTC/USD" and str(btc.tick_size) == "0.1" and format(btc.lot_size, "f") == "0.00000001"
    assert kr._symbol("XBT/USD") is btc and kr._symbol("BTC/USD") is btc       # v1 and v2 names
    assert kr.symbols["ADA-BTC"].exchange_symbol == "ADA/BTC"


def test_v2_subscriptions() -> None:
    names = [f"C{i}-USD" for i in range(250)]
    syms = [Symbol.parse(n, exchange_symbol=n.replace("-", "/")) for n in names]
    kr = Kraken(Subscription({"l2_book": names, "trades": names[:3], "bbo": names[:3] + ["X-USD"],
                              "candles": names[:2]}, depth=100, candle_interval="5m"),
                symbols=syms + [Symbol.parse("X-USD", exchange_symbol="X/USD")])
    specs = kr.connections()
    assert len(specs) == 2 and specs[0].url == "wss://ws.kraken.com/v2"
    assert orjson.loads(specs[0].ping) == {"method": "ping"}
    msgs = [orjson.loads(m) for spec in specs for m in spec.subscribe]
    assert all(len(m["params"]["symbol"]) <= 100 for m in msgs)
    assert [len({s for _, s in spec.streams}) for spec in specs] == [200, 51]
    by_channel = {(m["params"]["channel"], m["params"].get("event_trigger")): m["params"] for m in msgs}
    assert by_channel[("book", None)]["depth"] == 100 and by_channel[("book", None)]["snapshot"] is True
    assert by_channel[("trade", None)]["symbol"] == ["C0/USD", "C1/USD", "C2/USD"]
    assert by_channel[("ticker", "bbo")]["symbol"] == ["X/USD"]   # bbo only where no book gives it
    assert by_channel[("ohlc", None)]["interval"] == 5
    with pytest.raises(ValueError, match="depth"):
        Kraken(Subscription({}, depth=50))


# ---------------------------------------------------------------- v1 recordings
def test_v1_capture_replay_every_message_accounted_and_checksummed(shared_data: Path) -> None:
    result, silent = silent_messages(read_capture(_capture(shared_data)))
    adapter = result.adapter
    assert silent == []
    assert adapter.error_counts() == {}
    kinds = result.events_by_kind
    for kind in ("trade", "ticker", "book_snapshot", "book_delta", "bbo"):
        assert kinds[kind] > 0, kind
    assert kinds["gap"] == 0 and kinds["reset"] == 0
    # Every update carries Kraken's CRC32 and every one was verified.
    with_checksum = sum(1 for m in _book_msgs(shared_data) if any("c" in p for p in m[1:-2]))
    assert adapter.counters["book.checksum_verified"] == with_checksum > 4000
    naive = _Naive()
    for m in _book_msgs(shared_data):
        naive.apply(m)
    assert len(list(adapter.books)) == 10
    for sb in adapter.books:
        assert sb.state == "synced" and not sb.book.is_crossed()
        v1 = next(k for k, v in adapter._v1.items() if v.normalized == sb.symbol and "/" in k)
        assert sb.book.snapshot() == naive.sides(v1), sb.symbol


def test_v1_capture_matches_cryptofeed_reference(shared_data: Path) -> None:
    from tools.cf_digest import compare, digest_events, load_reference
    result = replay_capture(_capture(shared_data), collect=True)
    assert compare(load_reference("KRAKEN"), digest_events(result.events, exchange="KRAKEN")) == []


def test_v1_trade_fields(shared_data: Path) -> None:
    result = replay_capture(_capture(shared_data), collect=True)
    trades = [e for e in result.events if e.KIND == "trade"]
    raw = [(m[-1], t) for m in map(orjson.loads, _recv(shared_data)) if type(m) is list and m[-2] == "trade"
           for t in m[1]]
    assert len(trades) == len(raw) > 0
    for ev, (pair, (p, v, t, side, _ot, _misc)) in zip(trades, raw, strict=True):
        assert ev.symbol == Symbol.parse(pair.replace("XBT", "BTC").replace("/", "-")).normalized
        assert (ev.price_str, ev.amount_str, ev.side) == (p, v, "buy" if side == "b" else "sell")
        assert ev.timestamp == epoch_str_ns(t) and ev.id is None


def test_v1_bad_checksum_resyncs_that_pair_only(shared_data: Path) -> None:
    msgs = _book_msgs(shared_data)
    adapter = Kraken(Subscription({"l2_book": ["XMR-USD", "ADA-BTC", "SC-EUR"]}))
    adapter.load_instruments(_asset_pairs(shared_data))
    naive = _Naive()
    xmr = [i for i, m in enumerate(msgs) if m[-1] == "XMR/USD" and "c" in m[-3]]
    cut = xmr[len(xmr) // 2]
    for m in msgs[:cut]:
        adapter.on_message(CONN, orjson.dumps(m), 1)
        naive.apply(m)
    bad = orjson.loads(orjson.dumps(msgs[cut]))
    bad[-3]["c"] = str((int(bad[-3]["c"]) + 1) % 2**32)
    out = adapter.on_message(CONN, orjson.dumps(bad), 2)
    naive.apply(msgs[cut])
    assert [(type(e), e.symbol, e.reason) for e in out.events] == [(Gap, "XMR-USD", "checksum")]
    sent = [(a.conn, orjson.loads(a.payload)) for a in out.actions if isinstance(a, Send)]
    assert [(c, m["method"], m["params"]["channel"], m["params"]["symbol"]) for c, m in sent] == [
        (CONN, "unsubscribe", "book", ["XMR/USD"]), (CONN, "subscribe", "book", ["XMR/USD"])]
    # The other pairs keep flowing; XMR updates are dropped until the new snapshot.
    stop = cut + 1 + (len(msgs) - cut) // 2
    events = []
    for m in msgs[cut + 1:stop]:
        events += adapter.on_message(CONN, orjson.dumps(m), 3).events
        naive.apply(m)
    assert any(isinstance(e, L2Delta) and e.symbol == "ADA-BTC" for e in events)
    assert not any(isinstance(e, (L2Delta, L2Snapshot)) and e.symbol == "XMR-USD" for e in events)
    # The resubscription's snapshot (the exchange's book now) rebuilds XMR: Reset + L2Snapshot.
    bids, asks = naive.sides("XMR/USD")
    snap = [992, {"as": [[p, q, "1618678200.0"] for p, q in asks], "bs": [[p, q, "1618678200.0"] for p, q in bids]},
            "book-1000", "XMR/USD"]
    out = adapter.on_message(CONN, orjson.dumps(snap), 4)
    assert [type(e) for e in out.events][:2] == [Reset, L2Snapshot]
    verified = adapter.counters["book.checksum_verified"]
    for m in msgs[stop:]:
        adapter.on_message(CONN, orjson.dumps(m), 5)
        naive.apply(m)
    # Later XMR updates verify against the rebuilt book: no further gap.
    assert adapter.counters["book.gap.checksum"] == 1
    assert adapter.counters["book.checksum_verified"] > verified
    for name, pair in (("XMR-USD", "XMR/USD"), ("ADA-BTC", "ADA/XBT"), ("SC-EUR", "SC/EUR")):
        assert adapter.books.state(name) == "synced"
        assert adapter.books.book(name).snapshot() == naive.sides(pair)
    assert adapter.error_counts() == {}


# ---------------------------------------------------------------- v2 (live format)
def _decimals(s: str) -> int:
    return len(s.partition(".")[2])


def _iso(sec: str) -> str:
    ns = epoch_str_ns(sec)
    return datetime.fromtimestamp(ns // 10**9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9 // 1000:06d}Z"


def _v2_session(shared: Path) -> tuple[dict, list[bytes], _Naive]:
    """AssetPairs with the recorded precisions and the recorded book session as v2 messages."""
    msgs = _book_msgs(shared)
    prec: dict[str, tuple[int, int]] = {}
    for m in msgs:
        for part in m[1:-2]:
            for key in ("as", "bs", "a", "b"):
                for lv in part.get(key, ()):
                    prec.setdefault(m[-1], (_decimals(lv[0]), _decimals(lv[1])))
    pairs = {pair.replace("/", ""): {"wsname": pair, "pair_decimals": p, "lot_decimals": q}
             for pair, (p, q) in prec.items()}
    naive = _Naive()
    out = []
    for m in msgs:
        naive.apply(m)
        pair = m[-1]
        v2name = pair.replace("XBT", "BTC")
        parts = m[1:-2]
        snapshot = any("as" in p or "bs" in p for p in parts)
        bids = [lv for p in parts for lv in p.get("bs" if snapshot else "b", ())]
        asks = [lv for p in parts for lv in p.get("as" if snapshot else "a", ())]
        stamps = [lv[2] for lv in bids + asks]
        if snapshot:
            checksum = _expected_checksum(*naive.sides(pair))
        else:
            checksum = int(next(p["c"] for p in parts if "c" in p))
        data = {"symbol": v2name, "bids": [{"price": float(p), "qty": float(q)} for p, q, *_ in bids],
                "asks": [{"price": float(p), "qty": float(q)} for p, q, *_ in asks], "checksum": checksum,
                "timestamp": _iso(max(stamps))}
        out.append(orjson.dumps({"channel": "book", "type": "snapshot" if snapshot else "update", "data": [data]}))
    return {"error": [], "result": pairs}, out, naive


def test_v2_book_session_checksums(shared_data: Path) -> None:
    pairs, msgs, naive = _v2_session(shared_data)
    names = [Symbol.parse(p["wsname"].replace("XBT", "BTC").replace("/", "-")).normalized
             for p in pairs["result"].values()]
    adapter = Kraken(Subscription({"l2_book": names}))
    adapter.load_instruments({"u": orjson.dumps(pairs)})
    kinds: Counter[str] = Counter()
    for raw in msgs:
        kinds.update(e.KIND for e in adapter.on_message(CONN, raw, 1).events)
    assert adapter.error_counts() == {}
    assert kinds["gap"] == 0 and kinds["book_snapshot"] == 10
    # Snapshots and updates all carry a checksum in v2, all verified on the precision-formatted text.
    assert adapter.counters["book.checksum_verified"] == len(msgs)
    for sb in adapter.books:
        v1 = sb.exchange_symbol.replace("BTC", "XBT")
        assert sb.book.snapshot() == naive.sides(v1), sb.symbol


def test_v2_bad_checksum_on_snapshot_resubscribes(shared_data: Path) -> None:
    pairs, msgs, _ = _v2_session(shared_data)
    adapter = Kraken(Subscription({"l2_book": ["XMR-USD"]}))
    adapter.load_instruments({"u": orjson.dumps(pairs)})
    snap = next(orjson.loads(m) for m in msgs if b'"XMR/USD"' in m and b'"snapshot"' in m)
    snap["data"][0]["checksum"] += 1
    out = adapter.on_message(CONN, orjson.dumps(snap), 1)
    assert out.events == [] and adapter.counters["book.snapshot_checksum"] == 1
    assert [orjson.loads(a.payload)["method"] for a in out.actions] == ["unsubscribe", "subscribe"]


def test_v2_book_update_without_its_symbol_invalidates_the_connections_books(shared_data: Path) -> None:
    """A book update whose symbol cannot be read lost an update of some book of this connection, and
    the top-10 checksum may never reveal a deep level: every synced book of it resyncs (Gap
    ``malformed``, resubscribe), the error is counted."""
    pairs, msgs, _ = _v2_session(shared_data)
    names = [Symbol.parse(p["wsname"].replace("XBT", "BTC").replace("/", "-")).normalized
             for p in pairs["result"].values()]
    adapter = Kraken(Subscription({"l2_book": names}))
    adapter.load_instruments({"u": orjson.dumps(pairs)})
    for raw in msgs[:40]:
        adapter.on_message(CONN, raw, 1)
    synced = sorted(sb.symbol for sb in adapter.books if sb.state == "synced")
    assert synced
    junk = {"channel": "book", "type": "update", "data": [{"bids": [{"price": 1.0, "qty": 1.0}], "asks": []}]}
    out = adapter.on_message(CONN, orjson.dumps(junk), 2)
    assert sorted(g.symbol for g in out.events if g.KIND == "gap") == synced
    assert {g.reason for g in out.events} == {"malformed"} and adapter.counters["errors"] == 1
    assert all(adapter.books.state(s) != "synced" for s in synced)
    assert "subscribe" in [orjson.loads(a.payload)["method"] for a in out.actions]


def test_v2_other_channels() -> None:
    # Installed without AssetPairs: the precision comes from tick and lot size.
    sym = Symbol.parse("BTC-USD", exchange_symbol="BTC/USD", tick_size="0.1", lot_size="0.00000001")
    adapter = Kraken(Subscription({"trades": ["BTC-USD"], "ticker": ["BTC-USD"], "candles": ["BTC-USD"],
                                   "bbo": ["BTC-USD"]}), symbols=[sym])
    assert adapter._precision["BTC-USD"] == (1, 8)
    msgs = [
        {"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD", "side": "sell", "price": 45285.2,
                                                         "qty": 0.001, "ord_type": "market", "trade_id": 4665906,
                                                         "timestamp": "2026-07-10T00:00:00.123456Z"}]},
        {"channel": "ticker", "type": "update", "data": [{"symbol": "BTC/USD", "bid": 45285.1, "bid_qty": 0.5,
                                                          "ask": 45285.2, "ask_qty": 1.25, "last": 45285.2,
                                                          "volume": 1234.56789, "timestamp":
                                                          "2026-07-10T00:00:01.000000Z"}]},
        {"channel": "ohlc", "type": "update", "data": [{"symbol": "BTC/USD", "open": 45000.1, "high": 45300,
                                                       "low": 44900.5, "close": 45285.2, "trades": 42,
                                                       "volume": 12.5, "vwap": 45100.0, "interval": 5,
                                                       "interval_begin": "2026-07-10T00:00:00.000000Z",
                                                       "timestamp": "2026-07-10T00:04:00.000000Z"}]},
        {"channel": "heartbeat"}, {"method": "pong", "req_id": 1},
        {"method": "subscribe", "success": True, "result": {"channel": "book"}},
    ]
    events = []
    for m in msgs:
        events += adapter.on_message(CONN, orjson.dumps(m), 7).events
    trade, ticker, bbo, candle = events
    assert (trade.side, trade.price_str, trade.amount_str, trade.id) == ("sell", "45285.2", "0.00100000", "4665906")
    assert trade.timestamp == 1783641600123456000
    assert (ticker.bid_str, ticker.ask_str, ticker.last_str, ticker.volume_str) == ("45285.1", "45285.2", "45285.2",
                                                                                    "1234.56789")
    assert isinstance(bbo, BBO) and (bbo.bid_size_str, bbo.ask_size_str) == ("0.5", "1.25")
    assert candle.interval == "5m" and candle.stop - candle.start == 300 * 10**9 - 10**6 and candle.trades == 42
    assert (candle.open_str, candle.high_str, candle.close_str) == ("45000.1", "45300", "45285.2")
    assert adapter.error_counts() == {}
    out = adapter.on_message(CONN, b'{"method":"subscribe","success":false,"error":"Currency pair not supported"}', 8)
    assert out.events == [] and adapter.error_counts() == {"errors.exchange_error": 1}


def test_tardis_messages(shared_data: Path) -> None:
    lines = [ln for ln in (shared_data / "tardis_messages" / "kraken.jsonl").read_text().splitlines() if ln]
    adapter = Kraken(Subscription({}))
    kinds: Counter[str] = Counter()
    silent = []
    for i, line in enumerate(lines):
        acc = accounted(adapter.counters)
        out = adapter.on_message("tardis", line, i)
        kinds.update(e.KIND for e in out.events)
        if not out.events and accounted(adapter.counters) == acc:
            silent.append(line)
    assert silent == [] and adapter.error_counts() == {}
    assert kinds["trade"] == 4 and kinds["ticker"] == 2 and kinds["book_snapshot"] == 2 and kinds["bbo"] >= 2
    # Book updates that arrive before any snapshot are counted, not applied.
    assert adapter.counters["ignored.book_waiting_snapshot"] == 4


def test_malformed_messages_are_counted_not_raised() -> None:
    adapter = Kraken(Subscription({}))
    bad = ["x", "1", "[1,2]", '[1,{"a":[]},"nochannel"]', '[5,[["1","1","1.0","q","l",""]],"trade","XBT/USD"]',
           '{"channel":"nope","data":[]}', '{"event":"error","errorMessage":"bad"}',
           '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":true,"qty":1}]}]}']
    for raw in bad:
        assert adapter.on_message("c", raw, 1).events == []
    assert adapter.counters["errors"] == len(bad)


def test_v2_bbo_only_symbol_publishes_no_ticker() -> None:
    # ticker for BTC-USD, bbo only for ETH-USD: both arrive on the v2 ticker channel.
    syms = [Symbol.parse(n, exchange_symbol=n.replace("-", "/"), tick_size="0.1", lot_size="0.00000001")
            for n in ("BTC-USD", "ETH-USD")]
    adapter = Kraken(Subscription({"ticker": ["BTC-USD"], "bbo": ["ETH-USD"]}), symbols=syms)
    kinds: list[tuple[str, str]] = []
    for xs in ("BTC/USD", "ETH/USD"):
        msg = {"channel": "ticker", "type": "update", "data": [{"symbol": xs, "bid": 10.1, "bid_qty": 1, "ask": 10.2,
                                                                "ask_qty": 2, "last": 10.2, "volume": 5}]}
        kinds += [(e.KIND, e.symbol) for e in adapter.on_message(CONN, orjson.dumps(msg), 1).events]
    assert kinds == [("ticker", "BTC-USD"), ("bbo", "ETH-USD")]


def test_published_stream_rebuilds_the_depth_limited_books(shared_data: Path) -> None:
    """Kraken sends no delete for a level pushed out of the subscribed depth; the gateway
    publishes those cuts as deletes, so a subscriber's book with no depth limit, built from the
    published L2Snapshot/L2Delta events alone, ends equal to the gateway's on every pair.
    The recording (depth 1000, whose books never fill it) is replayed at depth 100, so levels
    are pushed out; its checksums cover the top 10 and still verify."""
    from cryptofeed_types import OrderBook
    result = replay_capture(_capture(shared_data), collect=True, subscription_options={"depth": 100})
    mirrors: dict[str, OrderBook] = {}
    cuts = 0
    for ev in result.events:
        if type(ev) is L2Snapshot:
            mirrors[ev.symbol] = OrderBook()
            mirrors[ev.symbol].apply_snapshot(ev.bids_str, ev.asks_str, ev.sequence)
        elif type(ev) is L2Delta:
            mirrors[ev.symbol].apply_delta(ev.bids_str, ev.asks_str, ev.sequence)
            cuts += sum(1 for _, size in ev.bids_str + ev.asks_str if size == "0")  # Kraken's own: "0.00000000"
    depth = result.adapter.books.max_depth
    assert depth == 100 and cuts > 0 and len(mirrors) == 10
    assert result.adapter.counters["book.checksum_verified"] > 4000
    for sb in result.adapter.books:
        assert sb.state == "synced"
        assert len(sb.book.bids) <= depth and len(sb.book.asks) <= depth
        assert mirrors[sb.symbol].snapshot() == sb.book.snapshot(), sb.symbol


def test_system_status_is_published_when_it_changes() -> None:
    """v1 ``systemStatus`` and the v2 ``status`` channel: Status(feed='system') on each change only."""
    a = Kraken(Subscription({"trades": ["BTC-USD"]}))
    (online,) = a.on_message("c0", '{"connectionID":1,"event":"systemStatus","status":"online","version":"1.8.3"}',
                             5).events
    assert (online.KIND, online.exchange, online.feed, online.state) == ("status", "KRAKEN", "system", "online")
    assert a.on_message("c1", '{"connectionID":2,"event":"systemStatus","status":"online"}', 6).events == []
    v2 = ('{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":3,'
          '"system":"maintenance","version":"2.0.0"}]}')
    (maint,) = a.on_message("c0", v2, 7).events
    assert (maint.state, maint.receipt_timestamp) == ("maintenance", 7) and "maintenance" in maint.reason
    assert a.counters["system.online"] == 1 and a.counters["system.maintenance"] == 1
    assert a.counters["ignored.system_status_unchanged"] == 1
    a.on_message("c0", '{"channel":"status","type":"update","data":[{"system":7}]}', 8)
    assert a.error_counts() == {"errors.bad_system_status": 1}
