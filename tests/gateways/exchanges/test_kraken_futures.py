"""Kraken Futures adapter with recorded bytes and no sockets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from cryptofeed_types import BBO, Candle, Gap, L2Delta, L2Snapshot, Reset, Symbol
from feedfabric.testing.adapters import accounted, silent_messages
from feedfabric.testing.logs import captured_logs
from gateways.adapter import Fetch, Send, Subscription
from gateways.capture import RECV, REST, read_capture
from gateways.exchanges import get
from gateways.exchanges.kraken_futures import KrakenFutures
from gateways.replay import Replayer, replay_capture


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
    result, silent = silent_messages(read_capture(_capture(shared_data)))
    adapter = result.adapter
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
        acc = accounted(adapter.counters)
        buffered = sum(len(sb.buffer) for sb in adapter.books)
        out = adapter.on_message("tardis", line, i)
        kinds.update(e.KIND for e in out.events)
        if not out.events and accounted(adapter.counters) == acc and \
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


# ---------------------------------------------------------------- candles (REST charts API polled)

_S = 10**9
_T0 = 1_700_000_030 * _S                      # 30 s into the minute starting at 1_699_999_980 s
_CHARTS = "https://futures.kraken.com/api/charts/v1/trade"


def _candle_adapter(interval: str = "1m", n: int = 3, **sub: object) -> KrakenFutures:
    names = ["BTC-USD-PERP", "ETH-USD-PERP", "SOL-USD-PERP"][:n]
    syms = [Symbol.parse(s, exchange_symbol=f"PF_{s.split('-')[0].replace('BTC', 'XBT')}USD") for s in names]
    return KrakenFutures(Subscription({"candles": names, **sub}, candle_interval=interval), symbols=syms)


def _bar(start_s: int, o: object, h: object, low: object, c: object, v: object) -> dict:
    return {"time": start_s * 1000, "open": o, "high": h, "low": low, "close": c, "volume": v}


def _body(*bars: dict, more: bool = False) -> bytes:
    return orjson.dumps({"candles": list(bars), "more_candles": more})


def test_candle_polls_spread_then_retried() -> None:
    kf = _candle_adapter()
    # 1m bars: polled every 15 s (a quarter of the bar) until a response schedules them; the
    # three products' first polls are spread over those 15 s.
    (first,) = kf.on_timer(_T0).actions
    assert first == Fetch(f"{_CHARTS}/PF_XBTUSD/1m?from=1699999860", 1, "candles", "BTC-USD-PERP")
    assert kf.on_timer(_T0 + 4 * _S).actions == []
    assert [f.url for f in kf.on_timer(_T0 + 5 * _S).actions] == [f"{_CHARTS}/PF_ETHUSD/1m?from=1699999860"]
    assert kf.on_timer(_T0 + 9 * _S).actions == []
    assert [f.symbol for f in kf.on_timer(_T0 + 10 * _S).actions] == ["SOL-USD-PERP"]
    assert kf.on_timer(_T0 + 14 * _S).actions == []
    # No response came: asked again one period later. A minute began at 1_700_000_040 s meanwhile,
    # so from two bars before it.
    assert [f.url for f in kf.on_timer(_T0 + 15 * _S).actions] == [f"{_CHARTS}/PF_XBTUSD/1m?from=1699999920"]
    assert kf.counters["subscription.unsupported_candle_interval"] == 0


def test_candle_poll_period_bounds_and_url_override() -> None:
    # 1d bars: a quarter is 6 h, polled no later than every 60 s; the second product 30 s after the first.
    base = _candle_adapter("1d", 2, trades=["BTC-USD-PERP"])
    kf = KrakenFutures(base.subscription, symbols=base.symbols.values(), urls={"rest": "http://127.0.0.1:9"})
    (f,) = kf.on_timer(_T0).actions
    assert f.url == "http://127.0.0.1:9/api/charts/v1/trade/PF_XBTUSD/1d?from=1699747200"   # two days before today 00:00 UTC
    assert kf.on_timer(_T0 + 29 * _S).actions == []
    assert [a.symbol for a in kf.on_timer(_T0 + 30 * _S).actions] == ["ETH-USD-PERP"]
    assert [a.symbol for a in kf.on_timer(_T0 + 60 * _S).actions] == ["BTC-USD-PERP"]
    # The websocket subscription is unchanged by candles (no candle feed exists there).
    assert [orjson.loads(m)["feed"] for m in kf.connections()[0].subscribe] == ["trade", "heartbeat"]


def test_candle_body_gives_the_latest_closed_bar_first() -> None:
    kf = _candle_adapter(n=1)
    (fetch,) = kf.on_timer(_T0).actions
    body = _body(_bar(1_699_999_860, "36990.5", "37001", "36980.0", "36999.5", "12.5"),
                 _bar(1_699_999_920, 36999.5, 37010.0, 36995, "37005.5", 0.000001),     # numbers → exact text
                 _bar(1_699_999_980, "37005.5", "37006", "37004", "37006", "1"))          # still forming at _T0
    out = kf.on_rest(fetch, 200, body, _T0 + _S)
    (c,) = out.events
    assert isinstance(c, Candle) and out.actions == []
    assert (c.exchange, c.symbol, c.exchange_symbol, c.interval) == ("KRAKEN_FUTURES", "BTC-USD-PERP", "PF_XBTUSD", "1m")
    assert (c.start, c.stop) == (1_699_999_920 * _S, 1_699_999_979_999 * 10**6)        # stop = last millisecond
    assert (c.open_str, c.high_str, c.low_str, c.close_str, c.volume_str) == ("36999.5", "37010.0", "36995",
                                                                            "37005.5", "0.000001")
    assert c.closed is True and c.trades is None and c.timestamp is None and c.receipt_timestamp == _T0 + _S
    # The older bar is history (not published on the first poll), the forming one waits for its end.
    assert kf.counters["ignored.candle_history"] == 1 and kf.counters["ignored.candle_forming"] == 1
    assert kf.error_counts() == {}
    # Next poll: 2 s after the forming bar's end, from that bar.
    assert kf.on_timer(1_700_000_041 * _S).actions == []
    (nxt,) = kf.on_timer(1_700_000_042 * _S).actions
    assert nxt.url == f"{_CHARTS}/PF_XBTUSD/1m?from=1699999980"


def test_candles_never_published_twice() -> None:
    kf = _candle_adapter(n=1)
    (fetch,) = kf.on_timer(_T0).actions
    closed = _bar(1_699_999_920, "1", "2", "0.5", "1.5", "10")
    forming = _bar(1_699_999_980, "1.5", "1.6", "1.4", "1.5", "2")
    assert [c.start for c in kf.on_rest(fetch, 200, _body(closed, forming), _T0 + _S).events] == [1_699_999_920 * _S]
    # The same response again (a retry, or two polls in flight): nothing new.
    assert kf.on_rest(fetch, 200, _body(closed, forming), _T0 + 2 * _S).events == []
    assert kf.counters["ignored.candle_repeated"] == 1
    # The next minute: the published bar again (overlap), the formerly forming bar now closed, a new one.
    later = _bar(1_700_000_040, "1.5", "1.5", "1.5", "1.5", "0")
    (nxt,) = kf.on_timer(1_700_000_042 * _S).actions
    out = kf.on_rest(nxt, 200, _body(closed, _bar(1_699_999_980, "1.5", "1.9", "1.4", "1.8", "5"), later),
                     1_700_000_043 * _S)
    (c,) = out.events
    assert (c.start, c.high_str, c.close_str, c.volume_str) == (1_699_999_980 * _S, "1.9", "1.8", "5")
    # An old response arriving late publishes nothing either.
    assert kf.on_rest(fetch, 200, _body(closed, forming), 1_700_000_044 * _S).events == []
    assert kf.error_counts() == {}


def test_candle_without_a_later_bar_closes_after_the_grace() -> None:
    kf = _candle_adapter(n=1)
    (fetch,) = kf.on_timer(_T0).actions
    quiet = _bar(1_699_999_920, "5", "5", "5", "5", "1")      # ends at 1_699_999_980 s; no trade since
    assert kf.on_rest(fetch, 200, _body(quiet), 1_700_000_009 * _S).events == []    # 29 s after its end
    (c,) = kf.on_rest(fetch, 200, _body(quiet), 1_700_000_010 * _S).events          # 30 s: closed
    assert c.start == 1_699_999_920 * _S and c.closed is True
    # more_candles: the page ends before the range does, so its last bar is closed too; asked again soon.
    (nxt,) = kf.on_timer(_T0 + 15 * _S).actions
    assert nxt.url == f"{_CHARTS}/PF_XBTUSD/1m?from=1699999980"
    out = kf.on_rest(nxt, 200, _body(_bar(1_699_999_980, "5", "6", "5", "6", "2"), more=True), _T0 + 16 * _S)
    assert [c.start for c in out.events] == [1_699_999_980 * _S]
    assert kf.on_timer(_T0 + 20 * _S).actions == []
    assert [f.url for f in kf.on_timer(_T0 + 21 * _S).actions] == [f"{_CHARTS}/PF_XBTUSD/1m?from=1700000040"]


def test_malformed_candle_bodies_are_counted_not_raised() -> None:
    kf = _candle_adapter(n=1)
    (fetch,) = kf.on_timer(_T0).actions
    good = _bar(1_699_999_920, "1", "2", "0.5", "1.5", "10")
    bad = [b"<html>502</html>", b"[]", b'{"result":"error","error":"unknown"}', b'{"candles":null}',
           _body(good, {"time": 1_699_999_980_000, "open": "1"}),                    # a bar without fields
           _body(good, _bar(1_699_999_980, None, "1", "1", "1", "1")),               # null price
           _body({**good, "time": "1699999920000"})]                                 # time as text
    for raw in bad:
        out = kf.on_rest(fetch, 200, raw, _T0 + _S)
        assert out.events == [] and out.actions == []                               # nothing half-published
    assert kf.on_rest(fetch, 503, b"busy", _T0 + _S).events == []
    assert kf.on_rest(fetch, 0, None, _T0 + _S).events == []
    errors = kf.error_counts()
    assert kf.counters["errors"] == len(bad) + 2
    assert errors["errors.bad_candles"] == 3 and errors["errors.rest_status.candles"] == 2
    assert errors["errors.bad_number"] == 1 and errors["errors.bad_candle_time"] == 1
    assert errors["errors.rest_parse.JSONDecodeError"] == 1 and errors["errors.rest_parse.KeyError"] == 1
    # Nothing was published: the same request again, and a good answer still gives the bar.
    assert kf.candle_poller.fetch("BTC-USD-PERP", _T0) == fetch
    forming = _bar(1_699_999_980, "1", "1", "1", "1", "1")
    assert [c.start for c in kf.on_rest(fetch, 200, _body(good, forming), _T0 + _S).events] == [1_699_999_920 * _S]
    assert kf.on_rest(Fetch("https://x/other", 1, "other"), 200, b"{}", 1).events == []
    assert kf.counters["errors.rest_unexpected"] == 1


def test_unsupported_candle_interval_is_refused_once() -> None:
    with captured_logs("ERROR") as lines:
        kf = _candle_adapter("3m", 1, trades=["BTC-USD-PERP"])
        outs = [kf.on_timer(_T0 + i * 5 * _S) for i in range(4)]
    assert all(o.actions == [] for o in outs)
    assert kf.counters["subscription.unsupported_candle_interval"] == 1 and kf.error_counts() == {}
    assert sum("'3m'" in ln and "1w" in ln for ln in lines) == 1, lines
    assert [orjson.loads(m)["feed"] for m in kf.connections()[0].subscribe] == ["trade", "heartbeat"]


def _polled_capture(shared: Path, path: Path, *, with_poll: bool) -> str:
    """A capture of a candles-only subscription: instruments, a minute of heartbeats and (with_poll)
    the charts response the live gateway got 6 s in. Returns the product id polled."""
    from gateways.capture.ffcap import CaptureWriter

    (url, body), = _instruments(shared).items()
    probe = KrakenFutures(Subscription({"candles": ["BTC-USD-PERP"]}))
    probe.load_instruments({url: body})
    pid = probe.exchange_symbol("BTC-USD-PERP")
    t0 = 1_700_000_030 * _S
    with CaptureWriter(path, exchange="KRAKEN_FUTURES", channels={"candles": ["BTC-USD-PERP"]}) as w:
        w.rest(t0, url, body, status=200)
        w.connect("ws", t0, "wss://futures.kraken.com/ws/v1")
        for i in range(61):
            w.recv("ws", t0 + i * _S, orjson.dumps({"feed": "heartbeat", "time": (t0 + i * _S) // 10**6}))
            if with_poll and i == 6:
                w.rest(t0 + i * _S, f"{_CHARTS}/{pid}/1m?from=1699999860",
                       _body(_bar(1_699_999_920, "37000", "37010", "36990", "37005", "3")), status=200)
    return pid


def test_replay_runs_the_timer_and_answers_polls_from_the_capture(shared_data: Path, tmp_path: Path) -> None:
    cap = tmp_path / "kf_candles.ffcap"
    _polled_capture(shared_data, cap, with_poll=True)
    res = Replayer(collect=True).run(read_capture(cap))
    # The timer ran on the capture's clock (as live: once when the instruments loaded, then every 5 s
    # over 60 s) and its first poll found the recorded response: the candle is published as it was live.
    assert res.timers == 13
    candles = [e for e in res.events if isinstance(e, Candle)]
    assert [(c.symbol, c.start, c.close_str, c.closed) for c in candles] == [
        ("BTC-USD-PERP", 1_699_999_920 * _S, "37005", True)]
    assert res.unused_rest == 0 and res.unanswered == []
    assert res.adapter.error_counts() == {}


def test_replay_counts_polls_the_capture_never_answered(shared_data: Path, tmp_path: Path) -> None:
    cap = tmp_path / "kf_no_poll.ffcap"
    _polled_capture(shared_data, cap, with_poll=False)
    res = Replayer(collect=True).run(read_capture(cap))
    assert not [e for e in res.events if isinstance(e, Candle)]
    # Polls without a recorded answer are counted, not left as unanswered requests (those mean a
    # snapshot the capture lacks); a repeated poll replaces the one before it.
    assert res.unanswered == [] and res.unanswered_polls >= 3
