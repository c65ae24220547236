"""Binance adapters (spot, USDⓈ-M, COIN-M) with recorded bytes and no sockets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from cryptofeed_types import Gap, L2Delta, L2Snapshot, Reset
from feedfabric.testing.adapters import accounted, silent_messages
from gateways.adapter import Fetch, Output, Subscription
from gateways.capture import RECV, REST, read_capture
from gateways.exchanges import get, names
from gateways.exchanges.binance import BinanceDelivery, BinanceFutures, BinanceSpot
from gateways.replay import replay_capture

EXCHANGES = ("BINANCE", "BINANCE_FUTURES", "BINANCE_DELIVERY")
TARDIS = {"binance": "BINANCE", "binance-futures": "BINANCE_FUTURES", "binance-delivery": "BINANCE_DELIVERY"}


def _instruments(shared: Path, exchange: str) -> dict[str, str]:
    for rec in read_capture(shared / "cryptofeed" / exchange):
        if rec.kind == REST and "exchangeInfo" in (rec.url or ""):
            return {rec.url: rec.data}
    raise AssertionError("no exchangeInfo in capture")


def test_registry() -> None:
    assert set(EXCHANGES) <= set(names())
    assert get("BINANCE") is BinanceSpot and get("BINANCE_DELIVERY") is BinanceDelivery
    with pytest.raises(KeyError, match="unknown exchange"):
        get("NOPE")


def test_instruments(shared_data: Path) -> None:
    spot = BinanceSpot(Subscription({}))
    spot.load_instruments(_instruments(shared_data, "BINANCE"))
    nkn = spot.symbols["NKN-USDT"]
    assert nkn.exchange_symbol == "NKNUSDT" and str(nkn.tick_size) == "0.00010000" and str(nkn.lot_size) == "1.00000000"
    assert spot.from_exchange["NKNUSDT"] is nkn

    fut = BinanceFutures(Subscription({}))
    fut.load_instruments(_instruments(shared_data, "BINANCE_FUTURES"))
    assert fut.to_exchange["SUSHI-USDT-PERP"] == "SUSHIUSDT"
    assert fut.symbols["SUSHI-USDT-PERP"].settle == "USDT"

    dlv = BinanceDelivery(Subscription({}))
    dlv.load_instruments(_instruments(shared_data, "BINANCE_DELIVERY"))
    perp = dlv.symbols["BTC-USD-PERP"]
    assert perp.exchange_symbol == "BTCUSD_PERP" and str(perp.contract_size) == "100"
    dated = dlv.symbols["LINK-USD-20211231"]
    assert dated.exchange_symbol == "LINKUSD_211231" and dated.kind == "future"


def test_subscriptions_are_batched() -> None:
    syms = [f"C{i}-USDT-PERP" for i in range(150)]
    from cryptofeed_types import Symbol
    fut = BinanceFutures(Subscription({"l2_book": syms, "trades": syms}),
                         symbols=[Symbol.parse(s, exchange_symbol=s.split("-")[0] + "USDT") for s in syms],
                         urls={"ws": "ws://127.0.0.1:1"})
    specs = fut.connections()
    assert [len(s.streams) for s in specs] == [200, 100]   # at most 200 streams per connection
    for spec in specs:
        assert spec.url == "ws://127.0.0.1:1/stream"
        params = [p for m in spec.subscribe for p in orjson.loads(m)["params"]]
        assert all(len(orjson.loads(m)["params"]) <= 100 for m in spec.subscribe)
        assert len(params) == len(spec.streams)
        assert spec.subscribe_interval >= 0.1               # 10 messages/s
    ids = [orjson.loads(m)["id"] for s in specs for m in s.subscribe]
    assert len(set(ids)) == len(ids)
    with pytest.raises(ValueError, match="unknown url names"):
        BinanceFutures(Subscription({}), urls={"wss": "x"})


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_capture_replay_every_message_accounted(shared_data: Path, exchange: str) -> None:
    """Every recorded message yields events or a named counter; books end synced."""
    # The header makes the adapter, with the capture's subscription.
    result, silent = silent_messages(read_capture(shared_data / "cryptofeed" / exchange))
    adapter = result.adapter
    assert silent == []
    assert adapter.error_counts() == {}
    assert result.unanswered == []
    kinds = result.events_by_kind
    for kind in ("trade", "ticker", "candle", "book_snapshot", "book_delta", "bbo"):
        assert kinds[kind] > 0, kind
    assert kinds["gap"] == 0 and kinds["reset"] == 0
    books = list(adapter.books)
    assert len(books) == len(adapter.subscription.symbols("l2_book"))
    for sb in books:
        assert sb.state == "synced", sb.symbol
        assert not sb.book.is_crossed()


def test_trade_fields(shared_data: Path) -> None:
    result = replay_capture(shared_data / "cryptofeed" / "BINANCE_FUTURES", collect=True)
    trades = [e for e in result.events if e.KIND == "trade"]
    raw = [orjson.loads(r.data)["data"] for r in read_capture(shared_data / "cryptofeed" / "BINANCE_FUTURES")
           if r.kind == RECV and b"aggTrade" in r.data.encode()]
    assert len(trades) == len(raw)
    for t, d in zip(trades, raw, strict=True):
        assert t.id == str(d["a"]) and t.price_str == d["p"] and t.amount_str == d["q"]
        assert t.side == ("sell" if d["m"] else "buy") and t.timestamp == d["T"] * 1_000_000
        assert t.symbol.endswith("-USDT-PERP") and t.exchange_symbol == d["s"]


def _naive_book(shared: Path, exchange: str, xs: str) -> tuple[list, list]:
    """The capture's truth, computed independently: the recorded snapshot plus every later
    diff (by u) in full, without the adapter's sequencing or book code."""
    bids: dict = {}
    asks: dict = {}
    last = None
    for rec in read_capture(shared / "cryptofeed" / exchange):
        if rec.kind == REST and f"symbol={xs}&" in (rec.url or ""):
            snap = orjson.loads(rec.data)
            bids = {float(p): (p, q) for p, q in snap["bids"]}
            asks = {float(p): (p, q) for p, q in snap["asks"]}
            last = snap["lastUpdateId"]
        elif rec.kind == RECV and last is not None:
            d = orjson.loads(rec.data)["data"]
            if d.get("e") != "depthUpdate" or d["s"] != xs or d["u"] <= last:
                continue
            for side, levels in ((bids, d["b"]), (asks, d["a"])):
                for p, q in levels:
                    if float(q) == 0:
                        side.pop(float(p), None)
                    else:
                        side[float(p)] = (p, q)
    return ([bids[k] for k in sorted(bids, reverse=True)], [asks[k] for k in sorted(asks)])


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_final_books_equal_capture_truth(shared_data: Path, exchange: str) -> None:
    result = replay_capture(shared_data / "cryptofeed" / exchange)
    for sb in result.adapter.books:
        bids, asks = sb.book.snapshot()
        assert (bids, asks) == _naive_book(shared_data, exchange, sb.exchange_symbol), sb.symbol


@pytest.mark.parametrize("tardis_id", sorted(TARDIS))
def test_tardis_messages(shared_data: Path, tardis_id: str) -> None:
    path = shared_data / "tardis_messages" / f"{tardis_id}.jsonl"
    lines = [line for line in path.read_text().splitlines() if line]
    adapter = get(TARDIS[tardis_id])(Subscription({}))
    silent = []
    for i, line in enumerate(lines):
        acc = accounted(adapter.counters)
        buffered = sum(len(sb.buffer) for sb in adapter.books)
        out = adapter.on_message("tardis", line, i)
        if not out.events and accounted(adapter.counters) == acc and \
                sum(len(sb.buffer) for sb in adapter.books) <= buffered:
            silent.append(line)
    assert silent == []
    assert adapter.error_counts() == {}
    kinds = Counter(e.KIND for e in replay_capture(path, collect=True).events)
    assert kinds["trade"] > 0
    if tardis_id != "binance":
        for kind in ("mark", "index", "liquidation", "open_interest"):
            assert kinds[kind] > 0, kind
    assert (kinds["funding"] > 0) == (tardis_id == "binance-futures")   # COIN-M sample has no rate


def _delta(xs: str, first: int, last: int, prev: int | None = None, bid: str = "10") -> bytes:
    d = {"e": "depthUpdate", "E": 1, "s": xs, "U": first, "u": last, "b": [[bid, "1"]], "a": [["20", "1"]]}
    if prev is not None:
        d["pu"] = prev
    return orjson.dumps({"stream": f"{xs.lower()}@depth@100ms", "data": d})


def _snapshot_body(last: int) -> bytes:
    return orjson.dumps({"lastUpdateId": last, "bids": [["9", "1"]], "asks": [["21", "1"]]})


@pytest.mark.parametrize("cls, prev", [(BinanceSpot, False), (BinanceFutures, True)])
def test_sequence_break_resyncs_one_symbol(cls: type, prev: bool) -> None:
    from cryptofeed_types import Symbol
    kind = "-PERP" if prev else ""
    syms = [Symbol.parse(f"AAA-USDT{kind}", exchange_symbol="AAAUSDT"),
            Symbol.parse(f"BBB-USDT{kind}", exchange_symbol="BBBUSDT")]
    adapter = cls(Subscription({"l2_book": [s.normalized for s in syms]}), symbols=syms)
    fetches: dict[str, Fetch] = {}
    for s in syms:
        out = adapter.on_message("c", _delta(s.exchange_symbol, 100, 105, 99 if prev else None), 1)
        (fetch,) = out.actions
        assert isinstance(fetch, Fetch) and fetch.tag == "snapshot" and fetch.symbol == s.normalized
        assert "limit=1000" in fetch.url and fetch.weight == (20 if prev else 50)
        fetches[s.normalized] = fetch
        out = adapter.on_rest(fetch, 200, _snapshot_body(102), 2)
        assert [type(e) for e in out.events][:1] == [L2Snapshot]
        assert out.events[0].sequence == 105
    a, b = (s.normalized for s in syms)
    # Contiguous updates apply on both.
    out = adapter.on_message("c", _delta("AAAUSDT", 106, 110, 105 if prev else None), 3)
    assert isinstance(out.events[0], L2Delta) and out.events[0].sequence == 110
    # A hole on AAA: Gap + a snapshot fetch for AAA only.
    out = adapter.on_message("c", _delta("AAAUSDT", 115, 120, 114 if prev else None), 4)
    assert [type(e) for e in out.events] == [Gap]
    assert out.events[0].symbol == a and out.events[0].expected == 111
    assert [f.symbol for f in out.actions] == [a]
    refetch = out.actions[0]
    # BBB keeps publishing meanwhile; AAA buffers.
    out = adapter.on_message("c", _delta("BBBUSDT", 106, 107, 105 if prev else None), 5)
    assert isinstance(out.events[0], L2Delta) and out.events[0].symbol == b
    out = adapter.on_message("c", _delta("AAAUSDT", 121, 125, 120 if prev else None, bid="11"), 6)
    assert out.events == [] and out.actions == []
    # The new snapshot bridges the buffered update: Reset, then the rebuilt book.
    out = adapter.on_rest(refetch, 200, _snapshot_body(122), 7)
    assert [type(e) for e in out.events][:2] == [Reset, L2Snapshot]
    assert out.events[1].sequence == 125 and out.events[1].bids_str[0] == ("11", "1")
    assert adapter.books.state(a) == "synced" and adapter.books.state(b) == "synced"
    assert adapter.error_counts() == {}


@pytest.mark.parametrize("handoff", [True, False])
def test_handoff_lets_a_differently_batched_diff_straddle(handoff: bool) -> None:
    """After a rotation's handover the new connection may cut its diffs elsewhere: its first diff
    of a book may straddle the book's last id (pu is then not that id). Applied after on_handoff;
    without it, the same diff is a sequence gap."""
    from cryptofeed_types import Symbol
    sym = Symbol.parse("AAA-USDT-PERP", exchange_symbol="AAAUSDT")
    adapter = BinanceFutures(Subscription({"l2_book": [sym.normalized]}), symbols=[sym])
    (spec,) = adapter.connections()
    (fetch,) = adapter.on_message(spec.id, _delta("AAAUSDT", 100, 105, 99), 1).actions
    adapter.on_rest(fetch, 200, _snapshot_body(102), 2)
    adapter.on_message(spec.id, _delta("AAAUSDT", 106, 110, 105), 3)
    if handoff:
        assert adapter.on_handoff(spec.id, 4).events == []
    out = adapter.on_message(spec.id, _delta("AAAUSDT", 108, 114, 107, bid="12"), 5)
    if not handoff:
        assert [type(e) for e in out.events] == [Gap]
        return
    assert [type(e) for e in out.events][:1] == [L2Delta] and out.events[0].sequence == 114
    out = adapter.on_message(spec.id, _delta("AAAUSDT", 115, 118, 114), 6)   # and the chain goes on
    assert [type(e) for e in out.events][:1] == [L2Delta] and adapter.error_counts() == {}
    assert adapter.books.state(sym.normalized) == "synced"


def test_a_trade_id_not_above_the_last_is_not_published_again() -> None:
    """Aggregate (and raw) trade ids grow per symbol: a repeat, even in another text (a rotation's
    overlap, a resend), is counted ``ignored.duplicate_trade``, not published twice."""
    from cryptofeed_types import Symbol
    a = BinanceFutures(Subscription({"trades": ["AAA-USDT-PERP"]}),
                       symbols=[Symbol.parse("AAA-USDT-PERP", exchange_symbol="AAAUSDT")])
    (spec,) = a.connections()

    def agg(i: int, extra: str = "") -> str:
        return ('{"stream":"aaausdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"AAAUSDT","a":' + str(i)
                + ',"p":"10","q":"1","f":1,"l":1,"T":1,"m":false' + extra + '}}')
    assert len(a.on_message("c", agg(5), 1).events) == 1
    assert a.on_message("c", agg(5, ',"x":1'), 2).events == []        # same id, other text
    assert a.on_message("c", agg(4), 3).events == []
    assert len(a.on_message("c", agg(6), 4).events) == 1
    raw = '{"stream":"aaausdt@trade","data":{"e":"trade","E":1,"s":"AAAUSDT","t":5,"p":"10","q":"1","T":1,"m":true}}'
    assert len(a.on_message("c", raw, 5).events) == 1                  # raw trade ids are their own sequence
    assert a.counters["ignored.duplicate_trade"] == 2 and a.error_counts() == {}
    # The guard lives as long as the connection: after it closes (a restart, in a capture's next
    # session) the same ids are new again.
    a.on_close(spec.id, 6, "closed")
    assert len(a.on_message(spec.id, agg(5), 7).events) == 1


def test_failed_snapshot_is_retried_without_further_updates() -> None:
    """A failed snapshot is retried by the next diff, or by the timer when no diff comes (a quiet
    symbol, or the REST API back only after the last diff): never left unsynced for good."""
    from cryptofeed_types import Symbol
    sym = Symbol.parse("AAA-USDT", exchange_symbol="AAAUSDT")
    adapter = BinanceSpot(Subscription({"l2_book": [sym.normalized]}), symbols=[sym])
    (fetch,) = adapter.on_message("c", _delta("AAAUSDT", 100, 105, None), 1).actions
    assert adapter.on_rest(fetch, 503, "unavailable", 2).events == []      # counted, not raised
    assert adapter.error_counts() == {"errors.rest_status.snapshot": 1}
    def retries(ts: int) -> list:
        return [a for a in adapter.on_timer(ts).actions if a.tag == "snapshot"]   # not the system status poll
    assert retries(2 + 999_999_999) == []                                    # not before 1 s
    (again,) = retries(2 + 1_000_000_000)
    assert again.url == fetch.url and adapter.counters["book.snapshot_retries"] == 1
    assert retries(2 + 3_000_000_000) == []                                  # one fetch out at a time
    out = adapter.on_rest(again, 200, _snapshot_body(102), 3_000_000_001)
    assert [type(e) for e in out.events][:1] == [L2Snapshot] and adapter.books.state(sym.normalized) == "synced"
    assert retries(10_000_000_000) == []                                     # synced: nothing more to retry


def test_a_malformed_snapshot_body_is_retried_like_a_failed_one() -> None:
    """A snapshot whose levels are junk is refused by the book half read (a counted error): the
    next one is asked after the retry interval, once, not at once (a server answering junk would
    be asked again as fast as it answers)."""
    from cryptofeed_types import Symbol
    sym = Symbol.parse("AAA-USDT", exchange_symbol="AAAUSDT")
    adapter = BinanceSpot(Subscription({"l2_book": [sym.normalized]}), symbols=[sym])
    (fetch,) = adapter.on_message("c", _delta("AAAUSDT", 100, 105, None), 1).actions
    out = adapter.on_rest(fetch, 200, '{"lastUpdateId":102,"bids":[["9","abc"]],"asks":[]}', 2)
    assert out.events == [] and out.actions == []
    assert adapter.error_counts() == {"errors.rest_parse.ValueError": 1}
    assert adapter.books.state(sym.normalized) == "waiting" and adapter.counters["book.malformed"] == 1

    def retries(ts: int) -> list:
        return [a for a in adapter.on_timer(ts).actions if a.tag == "snapshot"]
    assert retries(2 + 999_999_999) == []
    (again,) = retries(2 + 1_000_000_000)
    assert again.url == fetch.url and retries(2 + 3_000_000_000) == []
    adapter.on_rest(again, 200, _snapshot_body(102), 3_000_000_001)
    assert adapter.books.state(sym.normalized) == "synced"


def test_replay_answers_a_retry_the_timer_asked_after_the_last_message() -> None:
    """Live, the 1 s timer retried the failed snapshot after the symbol's last diff; replay runs
    the timer up to each recorded response too, so it asks again and gets the recorded answer."""
    from cryptofeed_types import Symbol
    from gateways.capture import CONNECT, Record
    from gateways.replay import Replayer
    sym = Symbol.parse("AAA-USDT", exchange_symbol="AAAUSDT")
    adapter = BinanceSpot(Subscription({"l2_book": [sym.normalized]}), symbols=[sym])
    url = adapter.snapshot_fetch(sym.normalized).url
    s = 1_000_000_000
    records = [Record(CONNECT, "BINANCE.0", 1 * s, url="wss://stream.binance.com:9443/stream"),
               Record(RECV, "BINANCE.0", 1 * s, _delta("AAAUSDT", 100, 105).decode()),
               Record(REST, "rest", 1 * s + 10, "unavailable", url=url, status=503),
               Record(REST, "rest", 3 * s, _snapshot_body(102).decode(), url=url, status=200)]
    result = Replayer(adapter).run(records)
    assert result.unused_rest == 0 and adapter.counters["book.snapshot_retries"] == 1
    assert adapter.books.state(sym.normalized) == "synced"


def test_malformed_messages_are_counted_not_raised() -> None:
    adapter = BinanceSpot(Subscription({}))
    bad = [b"\x00\xffgarbage", "not json", "[1,2]", '{"stream":"x@aggTrade","data":{"e":"aggTrade"}}',
           '{"stream":"x","data":{"e":"somethingNew"}}', '{"error":{"code":2,"msg":"Invalid request"},"id":1}',
           '{"result":null,"id":1}']
    for raw in bad:
        out = adapter.on_message("c", raw, 1)
        assert out.events == []
    assert adapter.counters["errors"] == 6 and adapter.counters["ignored.subscribe_ack"] == 1
    errs = adapter.error_counts()
    assert errs["errors.unknown_event"] == 1 and errs["errors.exchange_error"] == 1
    out = adapter.on_rest(Fetch("u", 1, "snapshot", "X-Y"), 503, None, 1)
    assert adapter.counters["errors.rest_status.snapshot"] == 1 and out.events == []
    assert isinstance(Output(), Output)


def test_disconnect_publishes_gap_and_resyncs_on_reconnect(shared_data: Path) -> None:
    result = replay_capture(shared_data / "cryptofeed" / "BINANCE")
    adapter = result.adapter
    conn = adapter.connections()[0].id
    out = adapter.on_close(conn, 10, "dropped")
    gaps = [e for e in out.events if isinstance(e, Gap)]
    assert sorted(g.symbol for g in gaps) == sorted(adapter.subscription.symbols("l2_book"))
    assert all(adapter.books.state(s) == "resyncing" for s in adapter.subscription.symbols("l2_book"))


def test_open_interest_polling() -> None:
    from cryptofeed_types import Symbol
    sym = Symbol.parse("BTC-USDT-PERP", exchange_symbol="BTCUSDT")
    adapter = BinanceFutures(Subscription({"open_interest": ["BTC-USDT-PERP"]}, open_interest_interval=10),
                             symbols=[sym])
    out = adapter.on_timer(1_000_000_000)
    (fetch,) = out.actions
    assert fetch.tag == "open_interest" and fetch.url.endswith("/fapi/v1/openInterest?symbol=BTCUSDT")
    assert adapter.on_timer(5_000_000_000).actions == []           # not due yet
    assert len(adapter.on_timer(11_000_000_000).actions) == 1
    out = adapter.on_rest(fetch, 200, b'{"openInterest":"10659.509","symbol":"BTCUSDT","time":1589437530011}', 2)
    (oi,) = out.events
    assert oi.open_interest_str == "10659.509" and oi.symbol == "BTC-USDT-PERP" and oi.timestamp == 1589437530011000000


def test_book_ticker_and_24h_ticker() -> None:
    from cryptofeed_types import Symbol
    sym = Symbol.parse("BTC-USDT", exchange_symbol="BTCUSDT")
    raw = ('{"stream":"btcusdt@bookTicker","data":{"u":1127645101,"s":"BTCUSDT","b":"8010.00000000",'
           '"B":"0.14245900","a":"8012.15000000","A":"0.03120100"}}')
    # bbo subscribed without l2_book: the exchange's book ticker is the BBO.
    only_bbo = BinanceSpot(Subscription({"bbo": ["BTC-USDT"]}), symbols=[sym])
    (bbo,) = only_bbo.on_message("c", raw, 5).events
    assert bbo.KIND == "bbo" and bbo.bid_str == "8010.00000000" and bbo.ask_size_str == "0.03120100"
    assert bbo.sequence == 1127645101 and bbo.receipt_timestamp == 5
    # With l2_book the BBO comes from the validated book; the ticker channel gets Ticker.
    both = BinanceSpot(Subscription({"ticker": ["BTC-USDT"], "l2_book": ["BTC-USDT"]}), symbols=[sym])
    (ticker,) = both.on_message("c", raw, 5).events
    assert ticker.KIND == "ticker" and ticker.bid_str == "8010.00000000" and ticker.ask_str == "8012.15000000"
    raw24 = ('{"stream":"btcusdt@ticker","data":{"e":"24hrTicker","E":1569805259092,"s":"BTCUSDT","c":"8011",'
             '"b":"8010","a":"8012","v":"20014582.5"}}')
    (t24,) = both.on_message("c", raw24, 6).events
    assert (t24.last_str, t24.volume_str, t24.timestamp) == ("8011", "20014582.5", 1569805259092000000)


def test_server_shutdown_asks_for_a_replacement() -> None:
    """``serverShutdown`` (combined or raw stream): a Rotate of that connection, counted, no event."""
    a = BinanceSpot(Subscription({"trades": ["BTC-USDT"]}))
    for raw in ('{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}',
                '{"e":"serverShutdown","E":1770123456789}'):
        out = a.on_message("BINANCE.1", raw, 5)
        assert out.events == [] and [(r.conn, type(r).__name__) for r in out.actions] == [("BINANCE.1", "Rotate")]
    assert a.counters["server_shutdown"] == 2 and a.error_counts() == {}


def test_unknown_subscribed_symbol_is_left_out() -> None:
    from cryptofeed_types import Symbol
    sym = Symbol.parse("BTC-USDT", exchange_symbol="BTCUSDT")
    adapter = BinanceSpot(Subscription({"trades": ["BTC-USDT", "NOPE-USDT"]}), symbols=[sym])
    assert adapter.check_subscription() == ["NOPE-USDT"]
    (spec,) = adapter.connections()
    assert spec.streams == (("trades", "BTC-USDT"),)
    assert adapter.counters["subscription.unknown_symbol"] == 1


def test_spot_system_status_is_polled_and_published() -> None:
    """Spot asks /sapi/v1/system/status once a minute (the futures APIs have no such endpoint): normal
    is online, 1 maintenance, each change published once as Status(feed='system')."""
    spot = BinanceSpot(Subscription({"trades": ["BTC-USDT"]}))
    s = 1_000_000_000

    def polls(adapter, ts: int) -> list:
        return [a for a in adapter.on_timer(ts).actions if a.tag == "system_status"]
    (poll,) = polls(spot, 1 * s)
    assert poll.url == "https://api.binance.com/sapi/v1/system/status" and poll.weight == 1
    assert polls(spot, 60 * s) == [] and len(polls(spot, 61 * s)) == 1

    (online,) = spot.on_rest(poll, 200, '{"status":0,"msg":"normal"}', 2 * s).events
    assert (online.KIND, online.exchange, online.feed, online.state) == ("status", "BINANCE", "system", "online")
    assert spot.on_rest(poll, 200, '{"status":0,"msg":"normal"}', 3 * s).events == []
    (maint,) = spot.on_rest(poll, 200, '{"status":1,"msg":"system_maintenance"}', 4 * s).events
    assert maint.state == "maintenance" and maint.reason == "Binance system status: system_maintenance"
    assert spot.on_rest(poll, 200, '{"code":-1000}', 5 * s).events == []
    assert spot.error_counts() == {"errors.bad_system_status": 1}
    for futures in (BinanceFutures(Subscription({"trades": ["BTC-USDT-PERP"]})),
                    BinanceDelivery(Subscription({"trades": ["BTC-USD-PERP"]}))):
        assert polls(futures, 1 * s) == []
