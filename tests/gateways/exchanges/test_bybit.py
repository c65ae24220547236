"""Bybit v5 adapter tests: recorded bytes only (cryptofeed v3 capture, tardis messages), no sockets."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import orjson
import pytest

from cryptofeed_types import Gap, L2Delta, L2Snapshot, Reset
from feedfabric.testing.adapters import accounted
from gateways.adapter import Resync, Send, Subscription
from gateways.books import SYNCED
from gateways.exchanges import get
from gateways.exchanges.bybit import BATCH, BybitAdapter, category_of, symbol_from_text
from gateways.replay import replay_capture


def _load(path: Path) -> tuple[dict, dict[str, str], list[tuple[str, int, str]]]:
    """(header config, REST bodies by url, received messages as (connection id, receipt ns, raw))."""
    recs = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    config = next(r["config"] for r in recs if r["t"] == "header")
    bodies = {r["url"]: r["data"] for r in recs if r["t"] == "http"}
    conns = {r["conn"]: r["addr"] for r in recs if r["t"] == "connect"}
    msgs = [(conns[r["conn"]], int(r["ts"] * 1e9), r["data"]) for r in recs if r["t"] == "recv"]
    return config, bodies, msgs


@pytest.fixture(scope="module")
def capture(shared_data: Path):
    return _load(shared_data / "cryptofeed_v3" / "BYBIT.jsonl")


def _adapter(capture) -> BybitAdapter:
    config, bodies, _ = capture
    a = BybitAdapter(Subscription({k: v for k, v in config.items() if isinstance(v, list)}))
    a.load_instruments(bodies)
    return a


def _feed(a: BybitAdapter, msgs) -> tuple[list, list]:
    events, actions = [], []
    for addr, ts, raw in msgs:
        out = a.on_message(a.match_connection(addr), raw, ts)
        events.extend(out.events)
        actions.extend(out.actions)
    return events, actions


# ------------------------------------------------------------------ instruments / symbols

def test_registered():
    assert get("BYBIT") is BybitAdapter


def test_instruments_from_rest(capture):
    a = _adapter(capture)
    assert a.check_subscription() == []
    perp = a.symbols["BTC-USDT-PERP"]
    assert (perp.exchange_symbol, str(perp.tick_size), str(perp.lot_size), perp.settle) == \
        ("BTCUSDT", "0.10", "0.001", "USDT")
    spot = a.symbols["BTC-USDT"]
    assert spot.exchange_symbol == "BTCUSDT" and spot.kind == "spot" and spot.lot_size is not None
    # The same exchange symbol resolves per category (connection).
    assert a._symbol("spot", "BTCUSDT").normalized == "BTC-USDT"
    assert a._symbol("linear", "BTCUSDT").normalized == "BTC-USDT-PERP"
    assert a.counters["symbols.guessed"] == 0


@pytest.mark.parametrize("category, text, normalized", [
    ("spot", "ETHUSDC", "ETH-USDC"),
    ("linear", "SOLUSDT", "SOL-USDT-PERP"),
    ("linear", "BTCPERP", "BTC-USDC-PERP"),
    ("linear", "BTC-27DEC24", "BTC-USDC-20241227"),
    ("linear", "BTCUSDT-26DEC25", "BTC-USDT-20251226"),
    ("inverse", "BTCUSD", "BTC-USD-PERP"),
    ("inverse", "BTCUSDH24", "BTC-USD-20240329"),
    ("inverse", "ETHUSDU21", "ETH-USD-20210924"),
    ("option", "BTC-28APR23-29500-C", "BTC-USD-20230428-29500-C"),
    ("option", "SOL-3MAY24-150-P-USDT", "SOL-USDT-20240503-150-P"),
])
def test_symbol_from_text(category, text, normalized):
    sym = symbol_from_text(category, text)
    assert sym.normalized == normalized
    assert category_of(sym) == category


# ------------------------------------------------------------------ subscriptions

def test_connections(capture):
    a = _adapter(capture)
    specs = {s.id: s for s in a.connections()}
    assert set(specs) == {"spot", "linear"}
    assert specs["linear"].url.endswith("/v5/public/linear")
    topics = {c: [t for m in s.subscribe for t in json.loads(m)["args"]] for c, s in specs.items()}
    assert all(len(json.loads(m)["args"]) <= BATCH for s in specs.values() for m in s.subscribe)
    assert "orderbook.200.BTCUSDT" in topics["spot"] and "orderbook.200.BTCUSDT" in topics["linear"]
    assert "allLiquidation.BTCUSDT" in topics["linear"] and "allLiquidation.BTCUSDT" not in topics["spot"]
    assert "kline.1.ETHUSDT" in topics["spot"]
    assert json.loads(specs["spot"].ping) == {"op": "ping"}
    assert a.match_connection("wss://stream.bybit.com/v5/public/spot") == "spot"


# ------------------------------------------------------------------ capture replay

def test_replay_capture(capture):
    a = _adapter(capture)
    msgs = capture[2]
    events, actions = [], []
    for addr, ts, raw in msgs:
        before = accounted(a.counters)
        out = a.on_message(a.match_connection(addr), raw, ts)
        # Every message gives events or a named counter.
        assert out.events or accounted(a.counters) > before, raw[:200]
        events.extend(out.events)
        actions.extend(out.actions)
    assert a.error_counts() == {}
    assert actions == []
    kinds = Counter(e.KIND for e in events)
    assert kinds["book_snapshot"] == 6 and kinds["book_delta"] == 2142
    assert kinds["trade"] > 0 and kinds["candle"] == 96 + 4  # 96 pushes; 4 linear ones carry two bars (closing + new minute)
    assert kinds["ticker"] > 0 and kinds["funding"] > 0 and kinds["open_interest"] > 0 and kinds["index"] > 0
    assert not any(isinstance(e, (Gap, Reset)) for e in events)
    for sb in a.books:
        assert sb.state == SYNCED and not sb.book.is_crossed()
        assert len(sb.book.bids) == len(sb.book.asks) == 200
    t = next(e for e in events if e.KIND == "trade" and e.exchange_symbol == "BTCUSDT")
    assert (t.symbol, t.side, t.price_str, t.amount_str) == ("BTC-USDT-PERP", "sell", "65114.20", "0.004")
    assert t.timestamp == 1786310819680 * 1_000_000
    f = next(e for e in events if e.KIND == "funding")
    assert f.symbol.endswith("-PERP") and f.next_funding_time is not None


def test_ticker_deltas_merge(capture):
    a = _adapter(capture)
    events, _ = _feed(a, capture[2])
    tick = [e for e in events if e.KIND == "ticker" and e.symbol == "BTC-USDT-PERP"]
    # Deltas carry only bid/ask: last and volume come from the merged snapshot state.
    assert len(tick) > 10 and all(e.last_str is not None and e.volume_str is not None for e in tick)
    spot = [e for e in events if e.KIND == "ticker" and e.symbol == "BTC-USDT"]
    assert spot and spot[0].last_str == "65140.5"


def test_candles(capture):
    a = _adapter(capture)
    events, _ = _feed(a, capture[2])
    c = next(e for e in events if e.KIND == "candle" and e.symbol == "BTC-USDT-PERP")
    assert (c.interval, c.start, c.stop, c.open_str, c.volume_str, c.closed) == \
        ("1m", 1786310760000 * 10**6, 1786310819999 * 10**6, "65119.9", "1.576", False)


# ------------------------------------------------------------------ integrity failures

def test_sequence_gap_resyncs_one_symbol(capture):
    clean, broken = _adapter(capture), _adapter(capture)
    msgs = capture[2]
    idx = [i for i, (addr, _, raw) in enumerate(msgs)
           if addr.endswith("linear") and '"orderbook.200.ETHUSDT"' in raw and '"delta"' in raw]
    cut = idx[len(idx) // 2]
    _feed(clean, msgs[:cut + 1])
    _feed(broken, msgs[:cut])          # the delta at `cut` is lost
    events, actions = _feed(broken, msgs[cut + 1:])
    gaps = [e for e in events if isinstance(e, Gap)]
    assert [(g.symbol, g.reason) for g in gaps] == [("ETH-USDT-PERP", "sequence")]
    assert actions == [Resync("ETH-USDT-PERP", "sequence")]
    after = events[events.index(gaps[0]) + 1:]
    assert not [e for e in after if isinstance(e, L2Delta) and e.symbol == "ETH-USDT-PERP"]
    assert {e.symbol for e in after if isinstance(e, L2Delta)} >= {"BTC-USDT-PERP", "BTC-USDT", "ETH-USDT"}
    assert broken.counters["book.buffered"] > 0
    resync = broken.resync("ETH-USDT-PERP", 1)
    assert [(s.conn, json.loads(s.payload)) for s in resync.actions if isinstance(s, Send)] == [
        ("linear", {"op": "unsubscribe", "args": ["orderbook.200.ETHUSDT"]}),
        ("linear", {"op": "subscribe", "args": ["orderbook.200.ETHUSDT"]}),
    ]
    # The resubscription's snapshot rebuilds the book: Reset + L2Snapshot, equal to the clean replay.
    _feed(clean, msgs[cut + 1:])
    bids, asks = clean.books.book("ETH-USDT-PERP").snapshot()
    u = clean.books.book("ETH-USDT-PERP").sequence
    snap = orjson.dumps({"topic": "orderbook.200.ETHUSDT", "type": "snapshot", "ts": 1786310900000,
                         "data": {"s": "ETHUSDT", "b": bids, "a": asks, "u": u, "seq": 1}}).decode()
    out = broken.on_message("linear", snap, 2)
    assert [type(e) for e in out.events][:2] == [Reset, L2Snapshot]
    for sb in clean.books:
        assert broken.books.book(sb.symbol) == sb.book
    assert broken.error_counts() == {}


def test_restart_snapshot_and_repeats(capture):
    a = _adapter(capture)
    _feed(a, capture[2])
    u = a.books.book("BTC-USDT").sequence
    repeat = {"topic": "orderbook.200.BTCUSDT", "type": "snapshot", "ts": 1,
              "data": {"s": "BTCUSDT", "b": [["65000", "1"]], "a": [["65001", "1"]], "u": u, "seq": 1}}
    assert a.on_message("spot", orjson.dumps(repeat), 1).events == []
    assert a.counters["ignored.book_snapshot_repeat"] == 1
    # u = 1: the service restarted; the message is the whole new book (even as a delta).
    restart = {"topic": "orderbook.200.BTCUSDT", "type": "delta", "ts": 2,
               "data": {"s": "BTCUSDT", "b": [["64000", "2"]], "a": [["64001", "3"]], "u": 1, "seq": 2}}
    out = a.on_message("spot", orjson.dumps(restart), 2)
    assert [type(e) for e in out.events][:2] == [Reset, L2Snapshot]
    assert a.books.book("BTC-USDT").snapshot() == ([("64000", "2")], [("64001", "3")])
    nxt = {"topic": "orderbook.200.BTCUSDT", "type": "delta", "ts": 3,
           "data": {"s": "BTCUSDT", "b": [["64000", "0"], ["63999", "1"]], "a": [], "u": 2, "seq": 3}}
    out = a.on_message("spot", orjson.dumps(nxt), 3)
    assert isinstance(out.events[0], L2Delta) and out.events[0].sequence == 2
    # The linear BTCUSDT book was never touched.
    assert a.books.book("BTC-USDT-PERP").best_bid() != ("63999", "1")


def test_crossed_book_resyncs(capture):
    a = _adapter(capture)
    _feed(a, capture[2])
    u = a.books.book("ETH-USDT").sequence
    bad = {"topic": "orderbook.200.ETHUSDT", "type": "delta", "ts": 1,
           "data": {"s": "ETHUSDT", "b": [["99999", "1"]], "a": [], "u": u + 1, "seq": 1}}
    out = a.on_message("spot", orjson.dumps(bad), 1)
    assert [(type(e), e.symbol, e.reason) for e in out.events] == [(Gap, "ETH-USDT", "crossed")]
    assert out.actions == [Resync("ETH-USDT", "crossed")]


def test_malformed_messages_are_counted():
    a = BybitAdapter(Subscription({}))
    for raw in ("not json", "[1,2]", '{"topic":"orderbook.50.BTCUSDT","type":"delta","data":{}}',
                '{"success":false,"ret_msg":"error:handler not found","op":"subscribe"}'):
        assert a.on_message("linear", raw, 1).events == []
    assert a.counters["errors"] == 4
    assert a.counters["errors.exchange_error"] == 1
    assert a.on_message("linear", '{"success":true,"ret_msg":"pong","op":"ping"}', 1).events == []
    assert a.counters["ignored.pong"] == 1


def test_liquidations():
    a = BybitAdapter(Subscription({}))
    raw = '{"topic":"allLiquidation.BTCUSDT","type":"snapshot","ts":1739502303204,"data":[{"T":1739502302929,' \
          '"s":"BTCUSDT","S":"Sell","v":"0.004","p":"95000.10"}]}'
    (liq,) = a.on_message("linear", raw, 1).events
    assert (liq.symbol, liq.side, liq.quantity_str, liq.price_str, liq.timestamp) == \
        ("BTC-USDT-PERP", "buy", "0.004", "95000.10", 1739502302929 * 10**6)


# ------------------------------------------------------------------ tardis messages

def _tardis_conn(name: str, line: str) -> str:
    if name == "bybit-spot":
        return "spot"
    if name == "bybit-options":
        return "option"
    topic = json.loads(line).get("topic", "")
    return "inverse" if re.search(r"USD([FGHJKMNQUVXZ]\d\d)?$", topic.rsplit(".", 1)[-1]) else "linear"


@pytest.mark.parametrize("name", ["bybit", "bybit-spot", "bybit-options"])
def test_tardis_messages(shared_data, name):
    a = BybitAdapter(Subscription({}))
    kinds: Counter[str] = Counter()
    lines = [ln for ln in (shared_data / "tardis_messages" / f"{name}.jsonl").read_text().splitlines() if ln]
    for line in lines:
        before = accounted(a.counters)
        out = a.on_message(_tardis_conn(name, line), line, 1)
        kinds.update(e.KIND for e in out.events)
        assert out.events or accounted(a.counters) > before, line[:200]
    assert a.error_counts() == {}
    if name == "bybit":
        assert {"trade", "book_snapshot", "book_delta", "ticker", "funding", "open_interest", "index", "mark",
                "liquidation"} <= set(kinds)
        inv = [e for e in a.symbols.values() if e.exchange_symbol == "BTCUSDU23"]
        assert inv and inv[0].normalized == "BTC-USD-20230929"
    elif name == "bybit-options":
        assert {"trade", "book_snapshot", "book_delta", "ticker", "mark"} <= set(kinds)
    else:
        assert {"trade", "book_snapshot", "book_delta"} <= set(kinds)


def test_bbo_only_subscription(shared_data):
    a = BybitAdapter(Subscription({"bbo": ["BTC-USDT-PERP"]}))
    a.set_symbols([symbol_from_text("linear", "BTCUSDT")])
    assert [json.loads(m)["args"] for m in a.connections()[0].subscribe] == [["orderbook.1.BTCUSDT"]]
    lines = [ln for ln in (shared_data / "tardis_messages" / "bybit.jsonl").read_text().splitlines()
             if '"orderbook.1.BTCUSDT"' in ln]
    outs = [a.on_message("linear", ln, 1) for ln in lines]
    assert [type(e).__name__ for e in outs[0].events] == ["BBO"]
    assert (outs[1].events[0].bid_str, outs[1].events[0].bid_size_str) == ("28552.00", "0.012")
    assert all(e.KIND == "bbo" for o in outs for e in o.events)
    assert a.counters["ignored.bbo_unchanged_or_resyncing"] == 1  # the last line is an older, stale update


def test_close_invalidates_that_connection_only(capture):
    a = _adapter(capture)
    _feed(a, capture[2])
    out = a.on_close("spot", 5, "test")
    assert sorted((e.symbol, e.reason) for e in out.events) == [("BTC-USDT", "disconnected"),
                                                                ("ETH-USDT", "disconnected")]
    assert out.actions == []  # the reconnect's subscription brings the snapshots
    assert a.books.state("BTC-USDT-PERP") == SYNCED and a.books.state("BTC-USDT") != SYNCED


# ------------------------------------------------------------------ shared replay path, cryptofeed reference

def test_replay_v3_capture_through_replayer(shared_data):
    result = replay_capture(shared_data / "cryptofeed_v3" / "BYBIT.jsonl")
    assert result.adapter.error_counts() == {}
    assert result.adapter.check_subscription() == []
    assert result.events_by_kind["book_delta"] == 2142 and result.events_by_kind["trade"] > 0


def test_v2_capture_matches_cryptofeed_reference(shared_data):
    """The 2021 capture (Bybit API v2, retired; cryptofeed 2.4.0's reference digest) replays through
    the v2 compatibility path with trades and final books equal to cryptofeed's."""
    cf_digest = pytest.importorskip("tools.cf_digest")
    result = replay_capture(shared_data / "cryptofeed" / "BYBIT", collect=True)
    assert result.adapter.error_counts() == {}
    assert result.events_by_kind["trade"] == 251 and result.events_by_kind["book_snapshot"] == 10
    ours = cf_digest.digest_events(result.events)
    assert cf_digest.compare(cf_digest.load_reference("BYBIT"), ours) == []


def test_instrument_requests_per_category_and_option_coin():
    a = BybitAdapter(Subscription({"trades": ["BTC-USDT", "ETH-USD-PERP"],
                                   "ticker": ["ETH-USD-20260925-3000-C", "SOL-USDT-20260925-150-P"]}))
    urls = [f.url for f in a.instrument_requests()]
    assert urls == [
        "https://api.bybit.com/v5/market/instruments-info?category=spot&limit=1000",
        "https://api.bybit.com/v5/market/instruments-info?category=inverse&limit=1000",
        "https://api.bybit.com/v5/market/instruments-info?category=option&baseCoin=ETH&limit=1000",
        "https://api.bybit.com/v5/market/instruments-info?category=option&baseCoin=SOL&limit=1000",
    ]
    assert all(f.tag == "instruments" for f in a.instrument_requests())


def test_parse_instruments_inverse_and_options():
    a = BybitAdapter(Subscription({}))
    inverse = orjson.dumps({"retCode": 0, "retMsg": "OK", "result": {"category": "inverse", "list": [
        {"symbol": "BTCUSDH26", "contractType": "InverseFutures", "baseCoin": "BTC", "quoteCoin": "USD",
         "settleCoin": "BTC", "deliveryTime": "1774598400000", "priceFilter": {"tickSize": "0.5"},
         "lotSizeFilter": {"qtyStep": "1"}},
        {"symbol": "BTCUSD", "contractType": "InversePerpetual", "baseCoin": "BTC", "quoteCoin": "USD",
         "settleCoin": "BTC", "deliveryTime": "0", "priceFilter": {"tickSize": "0.50"},
         "lotSizeFilter": {"qtyStep": "1"}},
        {"symbol": "BROKEN", "contractType": "Something", "baseCoin": "X", "quoteCoin": "Y"}]}})
    option = orjson.dumps({"retCode": 0, "retMsg": "OK", "result": {"category": "option", "list": [
        {"symbol": "ETH-25SEP26-3000-C", "optionsType": "Call", "baseCoin": "ETH", "quoteCoin": "USD",
         "settleCoin": "USDC", "deliveryTime": "1790323200000", "priceFilter": {"tickSize": "0.1"},
         "lotSizeFilter": {"qtyStep": "0.1"}}]}})
    syms = a.load_instruments({"https://api.bybit.com/v5/market/instruments-info?category=inverse": inverse,
                               "https://api.bybit.com/v5/market/instruments-info?category=option": option})
    by = {s.normalized: s for s in syms}
    assert set(by) == {"BTC-USD-20260327", "BTC-USD-PERP", "ETH-USD-20260925-3000-C"}
    assert str(by["BTC-USD-20260327"].tick_size) == "0.5" and by["BTC-USD-PERP"].settle == "BTC"
    assert a.counters["instruments.skipped"] == 1
    assert a._symbol("option", "ETH-25SEP26-3000-C").settle == "USDC"
    assert a._symbol("inverse", "BTCUSDH26").normalized == "BTC-USD-20260327"


def _option_page(symbols: list[str], cursor: str) -> bytes:
    return orjson.dumps({"retCode": 0, "retMsg": "OK", "result": {"category": "option", "nextPageCursor": cursor,
                                                                  "list": [
        {"symbol": s, "optionsType": "Call", "baseCoin": "BTC", "quoteCoin": "USD", "settleCoin": "USDC",
         "deliveryTime": "1790323200000", "priceFilter": {"tickSize": "5"}, "lotSizeFilter": {"qtyStep": "0.01"}}
        for s in symbols]}})


_OPT_URL = "https://api.bybit.com/v5/market/instruments-info?category=option&baseCoin=BTC&limit=1000"
_PAGE1 = _option_page(["BTC-25SEP26-100000-C"], "0%2C1000")
_PAGE2 = _option_page(["BTC-25SEP26-110000-C"], "")


def test_instrument_pages_follow_next_page_cursor():
    a = BybitAdapter(Subscription({"ticker": ["BTC-USD-20260925-100000-C"]}))
    (first,) = a.instrument_requests()
    assert first.url == _OPT_URL
    second = a.next_instrument_request(first, _PAGE1)
    # The cursor is passed back verbatim (Bybit sends it percent-encoded already).
    assert second is not None and second.url == _OPT_URL + "&cursor=0%2C1000" and second.tag == "instruments"
    assert a.next_instrument_request(second, _PAGE2) is None              # empty cursor: last page
    assert a.next_instrument_request(second, _PAGE1) is None              # the same cursor again: stop
    spot = orjson.dumps({"retCode": 0, "result": {"category": "spot", "list": [{"symbol": "BTCUSDT"}]}})
    assert a.next_instrument_request(first, spot) is None                 # spot has no cursor
    syms = a.load_instruments({first.url: _PAGE1, second.url: _PAGE2})
    assert {s.normalized for s in syms} == {"BTC-USD-20260925-100000-C", "BTC-USD-20260925-110000-C"}


async def test_driver_loads_every_instrument_page():
    from feedfabric.testing.exchange import RecordingPublisher
    from gateways.driver import Driver

    a = BybitAdapter(Subscription({"ticker": ["BTC-USD-20260925-110000-C"]}))
    driver = Driver(a, RecordingPublisher("BYBIT"))
    pages = {_OPT_URL: _PAGE1, _OPT_URL + "&cursor=0%2C1000": _PAGE2}
    asked: list[str] = []

    async def fake_get(fetch):
        asked.append(fetch.url)
        return 200, pages[fetch.url].decode(), 0

    driver._get = fake_get  # type: ignore[method-assign]
    await driver._load_instruments()
    assert asked == list(pages)
    assert "BTC-USD-20260925-110000-C" in a.to_exchange and a.check_subscription() == []

    # A cursor that never changes is followed once, then the pages already loaded are used.
    loop = BybitAdapter(Subscription({"ticker": ["BTC-USD-20260925-100000-C"]}))
    driver = Driver(loop, RecordingPublisher("BYBIT"))
    asked.clear()
    pages = {_OPT_URL: _PAGE1, _OPT_URL + "&cursor=0%2C1000": _PAGE1}
    driver._get = fake_get  # type: ignore[method-assign]
    await driver._load_instruments()
    assert len(asked) == 2 and "BTC-USD-20260925-100000-C" in loop.to_exchange


def _paged_capture(path) -> None:
    from gateways.capture.ffcap import CaptureWriter

    with CaptureWriter(path, exchange="BYBIT", channels={"ticker": ["BTC-USD-20260925-110000-C"]}) as w:
        w.rest(1, _OPT_URL, _PAGE1, status=200)
        w.rest(2, _OPT_URL + "&cursor=0%2C1000", _PAGE2, status=200)


def test_replay_and_symbols_read_every_recorded_instrument_page(tmp_path):
    from click.testing import CliRunner

    from feedfabric.cli import main
    from gateways.replay import Replayer, read_capture

    cap = tmp_path / "paged.ffcap"
    _paged_capture(cap)
    rp = Replayer(collect=True)
    rp.run(read_capture(cap))
    # The subscribed option is on the second page only: without paging it would be unknown.
    assert "BTC-USD-20260925-110000-C" in rp.adapter.to_exchange
    assert rp.adapter.check_subscription() == []

    res = CliRunner().invoke(main, ["symbols", "BYBIT", "--capture", str(cap)])
    assert res.exit_code == 0, res.output
    assert "BTC-USD-20260925-100000-C" in res.output and "BTC-USD-20260925-110000-C" in res.output


def _status_body(*rows: dict) -> str:
    base = {"begin": "1751596902000", "end": "1751597011000", "href": "", "uidSuffix": [], "maintainType": 1,
            "env": 1}
    return json.dumps({"retCode": 0, "retMsg": "", "result": {"list": [{**base, **r} for r in rows]}})


def test_system_status_polled_and_published():
    """/v5/system/status every minute: an ongoing maintenance of trading or market data on every
    product the gateway serves is maintenance, on some of them (or some accounts) partial; others,
    scheduled ones (logged once) and ended ones change nothing."""
    a = BybitAdapter(Subscription({"trades": ["BTC-USDT", "BTC-USDT-PERP"]}))   # spot (2) and linear (1)
    s = 1_000_000_000
    (poll,) = [x for x in a.on_timer(1 * s).actions if x.tag == "system_status"]
    assert poll.url == "https://api.bybit.com/v5/system/status" and poll.weight == 1
    assert [x for x in a.on_timer(31 * s).actions if x.tag == "system_status"] == []
    assert [x.tag for x in a.on_timer(61 * s).actions] == ["system_status"]

    old = {"id": "old", "title": "t05", "state": "completed", "serviceTypes": [1, 5], "product": [1, 2]}
    (online,) = a.on_rest(poll, 200, _status_body(old), 2 * s).events
    assert (online.KIND, online.exchange, online.feed, online.state) == ("status", "BYBIT", "system", "online")
    soon = {"id": "m1", "title": "Spot upgrade", "state": "scheduled", "serviceTypes": [1], "product": [2]}
    http_only = {"id": "h", "title": "order entry", "state": "ongoing", "serviceTypes": [2, 4], "product": [1, 2]}
    options = {"id": "o", "title": "options", "state": "ongoing", "serviceTypes": [1], "product": [3]}
    for ts in (3, 4):
        assert a.on_rest(poll, 200, _status_body(old, soon, http_only, options), ts * s).events == []
    assert a.counters["system.scheduled"] == 1          # logged once, however often it is listed

    (part,) = a.on_rest(poll, 200, _status_body(old, {**soon, "state": "ongoing"}), 5 * s).events
    assert part.state == "partial" and "Spot upgrade" in part.reason and "2025-07-04 02:43 UTC" in part.reason
    everything = {"id": "m2", "title": "Full upgrade", "state": "ongoing", "serviceTypes": [5], "product": [1, 2]}
    (maint,) = a.on_rest(poll, 200, _status_body({**soon, "state": "ongoing"}, everything), 6 * s).events
    assert maint.state == "maintenance" and "Full upgrade" in maint.reason
    some_accounts = {**everything, "uidSuffix": [3, 7]}
    assert a.on_rest(poll, 200, _status_body(some_accounts), 7 * s).events[0].state == "partial"
    (back,) = a.on_rest(poll, 200, _status_body({**everything, "state": "completed"}), 8 * s).events
    assert back.state == "online"
    a.on_rest(poll, 200, '{"retCode":10006,"retMsg":"Too many visits"}', 9 * s)
    assert a.error_counts() == {"errors.bad_system_status": 1}
