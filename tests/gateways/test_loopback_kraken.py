"""The Kraken loopback profile serves the v1 capture as websocket v2, checked against the
adapter's v2 path with no sockets: each translated frame goes straight into
:meth:`Kraken.on_message`."""

from __future__ import annotations

import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from cryptofeed_types import BBO, Candle, Ticker, Trade
from gateways.adapter import Subscription
from gateways.capture import RECV, REST, Record, read_capture
from gateways.exchanges.kraken import Kraken
from gateways.loopback import KrakenProfile, kraken_v2_symbol

CONN = "KRAKEN.0"


def _records(shared: Path) -> list[Record]:
    return list(read_capture(shared / "cryptofeed" / "KRAKEN"))


def _setup(shared: Path, channels: dict[str, list[str]] | None = None) -> tuple[list[Record], KrakenProfile, Kraken]:
    records = _records(shared)
    profile = KrakenProfile()
    rest = {}
    for r in records:
        if r.kind == REST:
            profile.load_snapshot(r.url or "", r.data)
            rest[r.url] = r.data
    adapter = Kraken(Subscription(channels or records[0].data["channels"]))
    adapter.load_instruments(rest)
    return records, profile, adapter


def _checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """Kraken's documented v2 CRC32, written independently of cryptofeed_types."""
    def fmt(s: str) -> str:
        return s.replace(".", "").lstrip("0")
    text = "".join(fmt(p) + fmt(q) for p, q in asks[:10]) + "".join(fmt(p) + fmt(q) for p, q in bids[:10])
    return zlib.crc32(text.encode())


def test_symbols_and_streams(shared_data: Path) -> None:
    assert kraken_v2_symbol("XBT/CHF") == "BTC/CHF" and kraken_v2_symbol("XDG/USD") == "DOGE/USD"
    assert kraken_v2_symbol("ETH/CHF") == "ETH/CHF"
    records, profile, adapter = _setup(shared_data)
    expected = profile.expected_streams(records)
    assert "book-1000:BTC/CHF" in expected and "trade:XMR/USD" in expected
    # The adapter's v2 subscribe messages ask for exactly the capture's (v1) streams.
    asked: set[str] = set()
    for spec in adapter.connections():
        for message in spec.subscribe:
            asked |= profile.parse_client(message).streams
    assert asked == expected
    req = profile.parse_client('{"method":"subscribe","params":{"channel":"ticker","event_trigger":"bbo",'
                               '"symbol":["BTC/USD"]},"req_id":1}')
    assert req.streams == {"spread:BTC/USD"} and orjson.loads(req.replies[0])["success"] is True
    req = profile.parse_client('{"event":"subscribe","pair":["XBT/USD"],"subscription":{"name":"ohlc","interval":5}}')
    assert req.streams == {"ohlc-5:BTC/USD"}


def test_capture_translated_to_v2_and_accepted(shared_data: Path) -> None:
    records, profile, adapter = _setup(shared_data)
    events: Counter[str] = Counter()
    trades: list[Trade] = []
    for r in records:
        if r.kind != RECV:
            continue
        frame = profile.apply_truth(r.data, r.conn)
        assert isinstance(frame, str) and frame.startswith('{"channel":"'), frame[:80]
        out = adapter.on_message(CONN, frame, 1).events
        events.update(e.KIND for e in out)
        trades += [e for e in out if isinstance(e, Trade)]
    assert adapter.error_counts() == {}
    assert not [k for k in adapter.counters if k.startswith("ignored.v1_")]
    n_books = sum(1 for r in records if r.kind == RECV and profile.book_key(r.data, r.conn))
    # Every book message, snapshots included, carried a v2 checksum the adapter verified.
    assert adapter.counters["book.checksum_verified"] == n_books and events["book_snapshot"] == 10
    assert events["gap"] == 0 and events["trade"] == len(trades) > 0 and events["ticker"] > 0
    assert all(t.id is not None for t in trades)   # v2 trades have ids (synthesized: v1 has none)
    for sb in adapter.books:
        assert sb.book.snapshot() == profile.truth_book(sb.exchange_symbol), sb.symbol


def _first_book(records: list[Record], symbol: str) -> tuple[int, list[Any]]:
    for i, r in enumerate(records):
        if r.kind == RECV and str(r.data).endswith(f'"book-1000","{symbol}"]'):
            return i, orjson.loads(r.data)
    raise AssertionError(symbol)


def test_book_update_is_v2_with_the_truth_checksum(shared_data: Path) -> None:
    records, profile, adapter = _setup(shared_data, {"l2_book": ["XMR-USD"]})
    start, _ = _first_book(records, "XMR/USD")
    v1 = [r for r in records[start:] if r.kind == RECV and profile.book_key(r.data, r.conn) == "XMR/USD"]
    frames = [profile.apply_truth(r.data, r.conn) for r in v1]
    snapshot, update = orjson.loads(frames[0]), orjson.loads(frames[1])
    assert snapshot["type"] == "snapshot" and update["type"] == "update"
    assert update["data"][0]["symbol"] == "XMR/USD" and update["data"][0]["timestamp"].endswith("Z")
    v1_part = orjson.loads(v1[1].data)[1]
    v1_level = (v1_part.get("b") or v1_part.get("a"))[0]
    level = (update["data"][0]["bids"] or update["data"][0]["asks"])[0]
    # JSON numbers, not strings, of the recorded values, without v1's trailing zeros
    # ("354.15000000" goes out as 354.15): the adapter must restore the pair's precision.
    assert (level["price"], level["qty"]) == (float(v1_level[0]), float(v1_level[1]))
    assert not any(re.search(r"\.[0-9]*0[,}]", f) for f in frames)
    # The truth is at the pair's precision (pair_decimals 2, lot_decimals 8).
    for frame in frames:
        assert adapter.on_message(CONN, frame, 1).events
    bids, asks = profile.truth_book("XMR/USD")
    assert all(len(p.split(".")[1]) == 2 and len(q.split(".")[1]) == 8 for p, q in bids + asks)
    assert orjson.loads(frames[-1])["data"][0]["checksum"] == _checksum(bids, asks)
    assert adapter.counters["book.checksum_verified"] == len(frames) and adapter.error_counts() == {}
    assert adapter.books.get("XMR-USD").book.snapshot() == (bids, asks)


def test_skipped_update_fails_the_next_checksum_and_snapshot_rebuilds(shared_data: Path) -> None:
    records, profile, adapter = _setup(shared_data, {"l2_book": ["XMR-USD"]})
    start, _ = _first_book(records, "XMR/USD")
    book_msgs = [r for r in records[start:] if r.kind == RECV and profile.book_key(r.data, r.conn) == "XMR/USD"]
    adapter.on_message(CONN, profile.apply_truth(book_msgs[0].data, CONN), 1)
    skipped = None
    kinds: list[str] = []
    for r in book_msgs[1:]:
        if skipped is None and profile.detectable(r.data, r.conn):
            skipped = profile.apply_truth(r.data, r.conn)   # the truth applies it, the client never sees it
            continue
        out = adapter.on_message(CONN, profile.apply_truth(r.data, r.conn), 2)
        kinds += [e.KIND for e in out.events]
        if skipped is not None:
            break
    assert skipped is not None and orjson.loads(skipped)["type"] == "update"
    assert kinds[-1] == "gap" and adapter.counters["book.gap.checksum"] == 1
    assert adapter.books.get("XMR-USD").state != "synced"
    # The resubscribe is answered with a v2 snapshot of the truth, which rebuilds the book.
    frames = profile.snapshot_frames("book-1000:XMR/USD", "/v2")
    assert len(frames) == 1 and orjson.loads(frames[0])["type"] == "snapshot"
    assert [e.KIND for e in adapter.on_message(CONN, frames[0], 3).events][:2] == ["reset", "book_snapshot"]
    assert adapter.books.get("XMR-USD").book.snapshot() == profile.truth_book("XMR/USD")
    assert profile.snapshot_frames("ticker:XMR/USD", "/v2") == [] and profile.snapshot_frames("book-10:X/Y", "/") == []


def test_snapshot_frame_truncated_to_the_subscribed_depth(shared_data: Path) -> None:
    records, profile, _ = _setup(shared_data)
    _, msg = _first_book(records, "XMR/USD")
    profile.apply_truth(orjson.dumps(msg).decode(), "ws.50")
    data = orjson.loads(profile.snapshot_frames("book-10:XMR/USD", "/v2")[0])["data"][0]
    assert len(data["bids"]) == len(data["asks"]) == 10
    bids, asks = profile.truth_book("XMR/USD")
    assert data["checksum"] == _checksum(bids, asks)
    adapter = Kraken(Subscription({"l2_book": ["XMR-USD"]}, depth=10))
    adapter.load_instruments({r.url: r.data for r in records if r.kind == REST})
    adapter.on_message(CONN, profile.snapshot_frames("book-10:XMR/USD", "/v2")[0], 1)
    assert adapter.books.get("XMR-USD").book.snapshot() == (bids[:10], asks[:10])
    assert adapter.counters["book.checksum_verified"] == 1


def test_control_messages_and_other_channels(shared_data: Path) -> None:
    _, profile, adapter = _setup(shared_data, {"ticker": ["BTC-CHF"], "bbo": ["XMR-USD"], "candles": ["BTC-CHF"]})
    assert profile.apply_truth('{"event":"heartbeat"}', "c") == '{"channel":"heartbeat"}'
    status = orjson.loads(profile.apply_truth('{"connectionID":17843232920108168701,"event":"systemStatus",'
                                              '"status":"online","version":"1.8.3"}', "c"))
    assert status["channel"] == "status" and status["data"][0]["system"] == "online"
    assert profile.stream_of(orjson.dumps(status).decode()) is None
    spread = profile.apply_truth('[5,["0.5000","0.5100","1618678133.365913","10.00000000","2.50000000"],'
                                 '"spread","XMR/USD"]', "c")
    ticker = profile.apply_truth('[6,{"a":["31000.00000",1,"1.000"],"b":["30990.10000",2,"2.000"],'
                                 '"c":["30995.00000","0.10000000"],"v":["1.0","12.50000000"],"p":["1","30000.5"],'
                                 '"t":[1,2],"l":["1","29000.0"],"h":["1","31500.0"],"o":["1","30000.0"]},'
                                 '"ticker","XBT/CHF"]', "c")
    ohlc = profile.apply_truth('[7,["1618678133.365913","1618678140.000000","30990.1","31000.0","30980.0",'
                               '"30995.0","30991.23456","1.50000000",12],"ohlc-1","XBT/CHF"]', "c")
    assert [profile.stream_of(f) for f in (spread, ticker, ohlc)] == ["spread:XMR/USD", "ticker:BTC/CHF",
                                                                      "ohlc-1:BTC/CHF"]
    events = [e for f in (spread, ticker, ohlc) for e in adapter.on_message(CONN, f, 1).events]
    bbo, tick, candle = events
    assert isinstance(bbo, BBO) and (bbo.bid_str, bbo.ask_str, bbo.bid_size_str) == ("0.5", "0.51", "10")
    assert isinstance(tick, Ticker) and (tick.bid_str, tick.ask_str, tick.last_str, tick.volume_str) == (
        "30990.1", "31000", "30995", "12.5")
    assert isinstance(candle, Candle) and candle.interval == "1m" and candle.trades == 12
    assert candle.start == 1618678080 * 10**9 and (candle.open_str, candle.close_str) == ("30990.1", "30995")
    assert adapter.error_counts() == {}
    with pytest.raises(ValueError):
        profile.apply_truth('[8,{},"nope","XBT/CHF"]', "c")
    with pytest.raises(ValueError):   # finer than the pair's precision: v2 could not send it
        profile.apply_truth('[1,{"as":[["354.151","1.0","1618678133.1"]],"bs":[]},"book-10","XMR/USD"]', "c")
