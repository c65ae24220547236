"""Coinbase Advanced Trade adapter with recorded bytes and no sockets (plus the legacy Pro recordings)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from cryptofeed_types import BBO, Candle, Gap, L2Delta, L2Snapshot, Reset, Symbol, iso_ns
from feedfabric.testing.adapters import accounted, silent_messages
from feedfabric.testing.logs import captured_logs
from gateways.adapter import Fetch, Send, Subscription
from gateways.capture import RECV, REST, read_capture
from gateways.exchanges import get
from gateways.exchanges.coinbase import Coinbase
from gateways.replay import replay_capture

V3 = ("cryptofeed_v3", "COINBASE.jsonl")


def _v3(shared: Path) -> Path:
    return shared.joinpath(*V3)


def _recv(shared: Path) -> list[dict]:
    return [orjson.loads(r.data) for r in read_capture(_v3(shared)) if r.kind == RECV]


def _products(shared: Path) -> dict[str, str]:
    for rec in read_capture(_v3(shared)):
        if rec.kind == REST:
            return {rec.url: rec.data}
    raise AssertionError("no products response in the capture")


def test_registry_and_timestamps() -> None:
    assert get("COINBASE") is Coinbase
    assert iso_ns("2026-08-09T21:05:48.228568804Z") == 1786309548228568804
    assert iso_ns("2026-08-09T21:05:42.5Z") == 1786309542500000000
    assert iso_ns("2026-08-09T21:05:42Z") == 1786309542000000000


def test_instruments(shared_data: Path) -> None:
    cb = Coinbase(Subscription({}))
    syms = cb.load_instruments(_products(shared_data))
    assert len(syms) > 900
    btc = cb.symbols["BTC-USD"]
    assert btc.exchange_symbol == "BTC-USD" and str(btc.tick_size) == "0.01" and format(btc.lot_size, "f") == "0.00000001"
    assert cb.from_exchange["ETH-USDC"].normalized == "ETH-USDC"
    # The retired Pro /products list (cryptofeed 2021 recordings) parses too.
    legacy = Coinbase(Subscription({}))
    legacy.load_instruments({"u": b'[{"id":"SKL-EUR","base_currency":"SKL","quote_currency":"EUR",'
                                  b'"quote_increment":"0.0001","base_increment":"0.1"}]'})
    assert str(legacy.symbols["SKL-EUR"].tick_size) == "0.0001"


def test_subscriptions_are_batched() -> None:
    books = [f"C{i}-USD" for i in range(120)]
    syms = [Symbol.parse(s, exchange_symbol=s) for s in books]
    cb = Coinbase(Subscription({"l2_book": books, "trades": books, "ticker": books[:10]}), symbols=syms,
                  urls={"ws": "ws://127.0.0.1:1"})
    specs = cb.connections()
    # Books in groups of 50 per connection (a connection's sequence gap resyncs only those), then the rest.
    assert [len(s.streams) for s in specs] == [50, 50, 20, 130]
    for spec in specs:
        msgs = [orjson.loads(m) for m in spec.subscribe]
        assert all(len(m["product_ids"]) <= 100 for m in msgs)
        order = [m["channel"] for m in msgs]   # the products' status, the data channels, one heartbeats
        assert order[0] == "status" and order[-1] == "heartbeats" and order.count("heartbeats") == 1
        assert spec.url == "ws://127.0.0.1:1" and spec.subscribe_interval >= 0.2
        channels = {m["channel"] for m in msgs}
        assert channels <= {"level2", "market_trades", "ticker", "heartbeats", "status"}
    assert sum(len(orjson.loads(m)["product_ids"]) for s in specs[:3] for m in s.subscribe
               if orjson.loads(m)["channel"] == "level2") == 120


def _naive_books(msgs: list[dict]) -> dict[str, tuple[list, list]]:
    """The capture's truth, computed independently of the adapter and OrderBook."""
    books: dict[str, tuple[dict, dict]] = {}
    for m in msgs:
        if m.get("channel") != "l2_data":
            continue
        for ev in m["events"]:
            if ev["type"] == "snapshot":
                books[ev["product_id"]] = ({}, {})
            bids, asks = books[ev["product_id"]]
            for u in ev["updates"]:
                side = bids if u["side"] == "bid" else asks
                if float(u["new_quantity"]) == 0:
                    side.pop(float(u["price_level"]), None)
                else:
                    side[float(u["price_level"])] = (u["price_level"], u["new_quantity"])
    return {pid: ([b[k] for k in sorted(b, reverse=True)], [a[k] for k in sorted(a)])
            for pid, (b, a) in books.items()}


def test_v3_capture_replay_every_message_accounted(shared_data: Path) -> None:
    records = list(read_capture(_v3(shared_data)))
    result, silent = silent_messages(records)
    adapter = result.adapter
    assert silent == []
    assert adapter.error_counts() == {}
    assert adapter.counters["messages"] == sum(1 for r in records if r.kind == RECV)
    assert adapter.counters["sequence.gaps"] == 0 and adapter.counters["ignored.heartbeat"] > 0
    kinds = result.events_by_kind
    for kind in ("trade", "ticker", "candle", "book_snapshot", "book_delta", "bbo"):
        assert kinds[kind] > 0, kind
    assert kinds["gap"] == 0 and kinds["reset"] == 0
    truth = _naive_books(_recv(shared_data))
    assert sorted(sb.symbol for sb in adapter.books) == ["BTC-USD", "ETH-USD"]
    for sb in adapter.books:
        assert sb.state == "synced" and not sb.book.is_crossed()
        assert sb.book.snapshot() == truth[sb.exchange_symbol], sb.symbol


def test_v3_trade_and_candle_fields(shared_data: Path) -> None:
    result = replay_capture(_v3(shared_data), collect=True)
    trades = [e for e in result.events if e.KIND == "trade"]
    raw = [t for m in _recv(shared_data) if m["channel"] == "market_trades"
           for ev in m["events"] if ev["type"] == "update" for t in ev["trades"]]
    assert len(trades) == len(raw) > 0
    for t, d in zip(trades, raw, strict=True):
        # Advanced Trade's side is the maker's: a SELL prints at the ask, so the taker bought.
        assert t.side == ("buy" if d["side"] == "SELL" else "sell")
        assert (t.id, t.price_str, t.amount_str, t.exchange_symbol) == (d["trade_id"], d["price"], d["size"],
                                                                         d["product_id"])
        assert t.timestamp == iso_ns(d["time"])
    candles = [e for e in result.events if e.KIND == "candle"]
    assert candles and all(c.interval == "5m" and c.stop - c.start == 300 * 10**9 - 10**6 for c in candles)
    tickers = [e for e in result.events if e.KIND == "ticker"]
    assert all(t.bid is not None and t.ask is not None and t.bid <= t.ask for t in tickers)


def test_legacy_pro_capture_matches_cryptofeed_reference(shared_data: Path) -> None:
    """The 2021 Coinbase Pro recording (cryptofeed 2.5.0 digests in tests/gateways/reference)."""
    from tools.cf_digest import compare, digest_events, load_reference
    result = replay_capture(shared_data / "cryptofeed" / "COINBASE", collect=True)
    assert result.adapter.error_counts() == {}
    assert compare(load_reference("COINBASE"), digest_events(result.events, exchange="COINBASE")) == []


def test_tardis_messages(shared_data: Path) -> None:
    lines = [ln for ln in (shared_data / "tardis_messages" / "coinbase.jsonl").read_text().splitlines() if ln]
    adapter = Coinbase(Subscription({}))
    kinds: Counter[str] = Counter()
    silent = []
    for i, line in enumerate(lines):
        acc = accounted(adapter.counters)
        out = adapter.on_message("tardis", line, i)
        kinds.update(e.KIND for e in out.events)
        if not out.events and accounted(adapter.counters) == acc:
            silent.append(line)
    assert silent == []
    # The only error: tardis' deliberately invalid size "0.-10000" in a snapshot.
    assert adapter.error_counts() == {"errors.bad_level": 1}
    assert kinds["trade"] == 1 and kinds["ticker"] == 3 and kinds["book_snapshot"] == 1


# ---------------------------------------------------------------- integrity
def _two_connections(shared: Path) -> list[tuple[str, dict]]:
    """The capture split as if BTC-USD and ETH-USD books lived on two connections, each with its
    own sequence_num; the rest (trades, tickers...) rides on connection B."""
    seq = {"A": 0, "B": 0}
    out: list[tuple[str, dict]] = []
    for m in _recv(shared):
        if m["channel"] == "l2_data":
            conn = "A" if m["events"][0]["product_id"] == "BTC-USD" else "B"
        else:
            conn = "B"
        m = dict(m, sequence_num=seq[conn])
        seq[conn] += 1
        out.append((conn, m))
    return out


def _feed(adapter: Coinbase, msgs: list[tuple[str, dict]]) -> list:
    events = []
    for conn, m in msgs:
        out = adapter.on_message(conn, orjson.dumps(m), 1)
        events += out.events
        assert out.actions == []
    return events


def test_sequence_gap_resubscribes_the_books_of_that_connection_only(shared_data: Path) -> None:
    msgs = _two_connections(shared_data)
    adapter = Coinbase(Subscription({"l2_book": ["BTC-USD", "ETH-USD"], "trades": ["BTC-USD", "ETH-USD"]}))
    a_idx = [i for i, (c, _) in enumerate(msgs) if c == "A"]
    cut = a_idx[len(a_idx) // 2]
    _feed(adapter, msgs[:cut])
    assert adapter.books.state("BTC-USD") == adapter.books.state("ETH-USD") == "synced"
    # Lose one message on connection A.
    rest = msgs[cut + 1:]
    conn, m = rest[0] if rest[0][0] == "A" else next(x for x in rest if x[0] == "A")
    first_a = rest.index((conn, m))
    _feed(adapter, rest[:first_a])
    out = adapter.on_message("A", orjson.dumps(m), 2)
    gaps = [e for e in out.events if isinstance(e, Gap)]
    assert [(g.symbol, g.reason) for g in gaps] == [("BTC-USD", "sequence")]
    assert gaps[0].expected == m["sequence_num"] - 1 and gaps[0].received == m["sequence_num"]
    sent = [orjson.loads(a.payload) for a in out.actions if isinstance(a, Send)]
    assert all(a.conn == "A" for a in out.actions)
    assert [(s["type"], s["channel"], s["product_ids"]) for s in sent] == [
        ("unsubscribe", "level2", ["BTC-USD"]), ("subscribe", "level2", ["BTC-USD"])]
    assert adapter.books.state("BTC-USD") == "resyncing" and adapter.books.state("ETH-USD") == "synced"
    # ETH-USD (connection B) keeps flowing; BTC-USD updates of the old subscription are dropped.
    events = _feed(adapter, rest[first_a + 1:])
    assert any(isinstance(e, L2Delta) and e.symbol == "ETH-USD" for e in events)
    assert not any(e.symbol == "BTC-USD" for e in events if isinstance(e, (L2Delta, L2Snapshot)))
    assert adapter.counters["ignored.book_waiting_snapshot"] > 0
    assert adapter.on_timer(2 + 31 * 10**9).actions[0] == Send("A", orjson.dumps(
        {"type": "unsubscribe", "product_ids": ["BTC-USD"], "channel": "level2"}).decode())
    # The resubscription's snapshot rebuilds BTC-USD: Reset, then the book.
    snap = next(m for c, m in msgs if c == "A" and m["events"][0]["type"] == "snapshot")
    nxt = adapter._next_seq["A"]
    out = adapter.on_message("A", orjson.dumps(dict(snap, sequence_num=nxt)), 3)
    assert [type(e) for e in out.events][:3] == [Reset, L2Snapshot, BBO]
    assert adapter.books.state("BTC-USD") == "synced"
    assert adapter.on_timer(100 * 10**9).actions == []
    assert adapter.error_counts() == {}


def test_crossed_book_resyncs_that_product_only(shared_data: Path) -> None:
    msgs = _two_connections(shared_data)
    adapter = Coinbase(Subscription({"l2_book": ["BTC-USD", "ETH-USD"]}))
    _feed(adapter, msgs[:200])
    best_ask = adapter.books.book("BTC-USD").best_ask()[0]
    seq = adapter._next_seq["A"]
    crossing = {"channel": "l2_data", "timestamp": "2026-08-09T21:06:00Z", "sequence_num": seq,
                "events": [{"type": "update", "product_id": "BTC-USD", "updates": [
                    {"side": "bid", "event_time": "2026-08-09T21:06:00Z", "price_level": best_ask,
                     "new_quantity": "1"}]}]}
    out = adapter.on_message("A", orjson.dumps(crossing), 5)
    assert [(type(e), e.symbol, e.reason) for e in out.events] == [(Gap, "BTC-USD", "crossed")]
    assert [orjson.loads(a.payload)["product_ids"] for a in out.actions] == [["BTC-USD"], ["BTC-USD"]]
    events = _feed(adapter, msgs[200:400])
    assert any(isinstance(e, L2Delta) and e.symbol == "ETH-USD" for e in events)
    assert adapter.books.state("ETH-USD") == "synced"


def test_disconnect_invalidates_the_books_of_that_connection(shared_data: Path) -> None:
    msgs = _two_connections(shared_data)
    adapter = Coinbase(Subscription({"l2_book": ["BTC-USD", "ETH-USD"]}))
    _feed(adapter, msgs[:300])
    out = adapter.on_close("A", 9, "dropped")
    assert [(type(e), e.symbol) for e in out.events] == [(Gap, "BTC-USD")]
    assert adapter.books.state("ETH-USD") == "synced"
    adapter.on_open("A", 10)
    assert "A" not in adapter._next_seq   # a new connection starts its own sequence


def test_malformed_messages_are_counted_not_raised() -> None:
    adapter = Coinbase(Subscription({}))
    bad = [b"\x00\xff", "nope", "[1]", '{"channel":"l2_data","sequence_num":0,"events":[{"type":"update"}]}',
           '{"channel":"whatever","sequence_num":1,"events":[]}',
           '{"channel":"market_trades","sequence_num":2,"events":[{"type":"update","trades":[{"product_id":'
           '"BTC-USD","trade_id":"1","price":"1","size":"1","side":"SIDEWAYS","time":"2026-01-01T00:00:00Z"}]}]}',
           '{"type":"error","message":"failure"}']
    for raw in bad:
        assert adapter.on_message("c", raw, 1).events == []
    assert adapter.counters["errors"] == len(bad)
    errs = adapter.error_counts()
    assert errs["errors.unknown_channel"] == 1 and errs["errors.bad_side"] == 1 and errs["errors.exchange_error"] == 1


# ------------------------------------------------------------------ bbo from the ticker channel, candle interval

def _ticker_msg(seq: int, pid: str, bid: str, bid_qty: str | None, ask: str, ask_qty: str | None) -> str:
    """An Advanced Trade ``ticker`` message (the documented fields)."""
    tk = {"type": "ticker", "product_id": pid, "price": "21932.98", "volume_24_h": "16038.28770938",
          "low_24_h": "21835.29", "high_24_h": "23011.18", "low_52_w": "15460", "high_52_w": "48240",
          "price_percent_chg_24_h": "-4.15775596190603", "best_bid": bid, "best_ask": ask}
    if bid_qty is not None:
        tk |= {"best_bid_quantity": bid_qty, "best_ask_quantity": ask_qty}
    return orjson.dumps({"channel": "ticker", "client_id": "", "timestamp": "2023-02-09T20:30:37.167359596Z",
                         "sequence_num": seq, "events": [{"type": "update", "tickers": [tk]}]}).decode()


def _syms(*pids: str) -> list[Symbol]:
    return [Symbol.parse(p, exchange_symbol=p) for p in pids]


def test_bbo_without_l2_book_comes_from_the_ticker_channel() -> None:
    cb = Coinbase(Subscription({"bbo": ["BTC-USD", "ETH-USD"], "ticker": ["ETH-USD"], "l2_book": ["ETH-USD"]}),
                  symbols=_syms("BTC-USD", "ETH-USD"))
    specs = cb.connections()
    subs = [orjson.loads(m) for s in specs for m in s.subscribe]
    # BTC-USD's bbo is the ticker channel's; ETH-USD's comes from its book, its ticker stays a Ticker.
    assert {(m["channel"], tuple(m["product_ids"])) for m in subs if m["channel"] not in ("heartbeats", "status")} == {
        ("level2", ("ETH-USD",)), ("ticker", ("ETH-USD", "BTC-USD"))}
    assert ("bbo", "BTC-USD") in {st for s in specs for st in s.streams}

    out = cb.on_message("c", _ticker_msg(0, "BTC-USD", "21931.98", "8000.21", "21933.98", "8038.07770938"), 5)
    (bbo,) = out.events
    assert isinstance(bbo, BBO) and bbo.symbol == "BTC-USD"
    assert (bbo.bid_str, bbo.bid_size_str, bbo.ask_str, bbo.ask_size_str) == (
        "21931.98", "8000.21", "21933.98", "8038.07770938")            # the exchange's strings, exactly
    assert bbo.timestamp == iso_ns("2023-02-09T20:30:37.167359596Z") and bbo.receipt_timestamp == 5
    # A match that leaves the top as it was gives no new BBO (counted); a change does.
    assert cb.on_message("c", _ticker_msg(1, "BTC-USD", "21931.98", "8000.21", "21933.98", "8038.07770938"),
                         6).events == []
    assert cb.counters["ignored.bbo_unchanged"] == 1
    (bbo2,) = cb.on_message("c", _ticker_msg(2, "BTC-USD", "21931.98", "7000", "21933.98", "8038.07770938"),
                            7).events
    assert bbo2.bid_size_str == "7000"
    # Without sizes in the message (older ticker shape), the BBO has none.
    (bbo3,) = cb.on_message("c", _ticker_msg(3, "BTC-USD", "21930", None, "21931", None), 8).events
    assert bbo3.bid_size_str is None and bbo3.ask_size_str is None and bbo3.bid_str == "21930"
    # ETH-USD: the ticker is a Ticker only (its BBO comes from the book).
    (tick,) = cb.on_message("c", _ticker_msg(4, "ETH-USD", "1500.1", "2", "1500.2", "3"), 9).events
    assert tick.KIND == "ticker" and tick.symbol == "ETH-USD"
    assert cb.error_counts() == {}


def test_bbo_with_l2_book_stays_derived_from_the_book() -> None:
    cb = Coinbase(Subscription({"bbo": ["BTC-USD"], "l2_book": ["BTC-USD"]}), symbols=_syms("BTC-USD"))
    channels = {orjson.loads(m)["channel"] for s in cb.connections() for m in s.subscribe}
    assert channels == {"level2", "heartbeats", "status"}
    snap = orjson.dumps({"channel": "l2_data", "timestamp": "2023-02-09T20:32:50.714964855Z", "sequence_num": 0,
                         "events": [{"type": "snapshot", "product_id": "BTC-USD", "updates": [
                             {"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.73",
                              "new_quantity": "0.06317902"},
                             {"side": "offer", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.74",
                              "new_quantity": "0.5"}]}]})
    bbos = [e for e in cb.on_message("c", snap, 1).events if isinstance(e, BBO)]
    assert [(b.bid_str, b.ask_str) for b in bbos] == [("21921.73", "21921.74")]


def test_candle_interval_without_a_granularity_is_refused_at_subscription_time() -> None:
    with captured_logs("ERROR") as lines:
        cb = Coinbase(Subscription({"candles": ["BTC-USD"], "trades": ["BTC-USD"]}, candle_interval="4h"),
                      symbols=_syms("BTC-USD"))
        specs = cb.connections()
        cb.set_symbols(_syms("BTC-USD"))
        cb.connections()                                   # rebuilt: refused (and counted) once
        timers = [cb.on_timer(_T0 + i * 5 * _S) for i in range(4)]
    channels = {orjson.loads(m)["channel"] for s in specs for m in s.subscribe}
    assert channels == {"market_trades", "heartbeats", "status"}     # the other channels go on
    assert ("candles", "BTC-USD") not in {st for s in specs for st in s.streams}
    assert all(t.actions == [] for t in timers)            # nor polled
    assert cb.counters["subscription.unsupported_candle_interval"] == 1 and cb.error_counts() == {}
    assert sum("'4h'" in ln and "6h" in ln and "1d" in ln for ln in lines) == 1, lines

    ok = Coinbase(Subscription({"candles": ["BTC-USD"]}, candle_interval="5m"), symbols=_syms("BTC-USD"))
    assert "candles" in {orjson.loads(m)["channel"] for s in ok.connections() for m in s.subscribe}
    assert ok.counters["subscription.unsupported_candle_interval"] == 0


def test_candles_default_to_the_only_interval_offered() -> None:
    # No candle_interval named: Coinbase's own default (5m), not the fabric-wide 1m.
    cb = Coinbase(Subscription({"candles": ["BTC-USD"]}), symbols=_syms("BTC-USD"))
    assert cb.candle_interval == "5m"
    assert "candles" in {orjson.loads(m)["channel"] for s in cb.connections() for m in s.subscribe}
    assert cb.counters["subscription.unsupported_candle_interval"] == 0
    # 5m comes from the websocket only: the timer polls no REST candles.
    assert [cb.on_timer(_T0 + i * 5 * _S).actions for i in range(13)] == [[]] * 13


def test_v3_capture_replays_its_candles(shared_data: Path) -> None:
    from cryptofeed_types import Candle
    from gateways.replay import replay_capture

    res = replay_capture(shared_data / "cryptofeed_v3" / "COINBASE.jsonl", collect=True)
    candles = [e for e in res.events if isinstance(e, Candle)]
    assert candles and {c.interval for c in candles} == {"5m"}
    assert res.adapter.counters["subscription.unsupported_candle_interval"] == 0


# ------------------------------------------------------------------ candles polled from REST (not 5m)

_S = 10**9
_T0 = 1_700_000_030 * _S                      # 30 s into the minute starting at 1_699_999_980 s
_CANDLES = "https://api.coinbase.com/api/v3/brokerage/market/products"


def _rest_candles(interval: str = "1m", n: int = 2, **sub: object) -> Coinbase:
    names = ["BTC-USD", "ETH-USD"][:n]
    return Coinbase(Subscription({"candles": names, **sub}, candle_interval=interval), symbols=_syms(*names))


def _cb_bar(start_s: int, low: str, high: str, o: str, c: str, v: str) -> dict:
    """A bar as the public candles endpoint gives it (every value a string, the start in unix seconds)."""
    return {"start": str(start_s), "low": low, "high": high, "open": o, "close": c, "volume": v}


def _cb_body(*bars: dict) -> bytes:
    return orjson.dumps({"candles": list(bars)})


def test_rest_candles_url_names_the_granularity_and_a_window_on_bar_boundaries() -> None:
    cb = _rest_candles("1m", trades=["BTC-USD"])
    # The websocket subscribes no candles channel for 1m bars.
    assert {orjson.loads(m)["channel"] for s in cb.connections() for m in s.subscribe} == {"market_trades",
                                                                                           "heartbeats", "status"}
    (first,) = cb.on_timer(_T0).actions
    assert first == Fetch(f"{_CANDLES}/BTC-USD/candles?start=1699999860&end=1700017860&granularity=ONE_MINUTE",
                          1, "candles", "BTC-USD")                  # 300 bars from two minutes back
    assert cb.on_timer(_T0 + 5 * _S).actions == []
    # Spread over the 15 s period; a minute began meanwhile, so from two bars before that one.
    (second,) = cb.on_timer(_T0 + 10 * _S).actions
    assert second.url == f"{_CANDLES}/ETH-USD/candles?start=1699999920&end=1700017920&granularity=ONE_MINUTE"
    # Other intervals: their granularity, the window 300 of their bars.
    for interval, granularity, start, end in (("15m", "FIFTEEN_MINUTE", 1699997400, 1700267400),
                                              ("2h", "TWO_HOUR", 1699984800, 1702144800),
                                              ("6h", "SIX_HOUR", 1699941600, 1706421600),
                                              ("1d", "ONE_DAY", 1699747200, 1725667200)):   # 2 days before today
        (f,) = _rest_candles(interval, 1).on_timer(_T0).actions
        assert f.url == f"{_CANDLES}/BTC-USD/candles?start={start}&end={end}&granularity={granularity}", interval
    over = Coinbase(Subscription({"candles": ["BTC-USD"]}, candle_interval="30m"), symbols=_syms("BTC-USD"),
                    urls={"rest": "http://127.0.0.1:9"})
    (f,) = over.on_timer(_T0).actions
    assert f.url == "http://127.0.0.1:9/api/v3/brokerage/market/products/BTC-USD/candles?start=1699995600" \
                    "&end=1700535600&granularity=THIRTY_MINUTE"


def test_rest_candles_newest_first_become_ascending_closed_candles() -> None:
    cb = _rest_candles("1m", 1)
    (fetch,) = cb.on_timer(_T0).actions
    body = _cb_body(_cb_bar(1_699_999_980, "37004", "37006", "37005.5", "37006", "1"),              # forming
                    _cb_bar(1_699_999_920, "36995.00", "37010.10", "36999.5", "37005.50", "0.00000100"),
                    _cb_bar(1_699_999_860, "36980", "37001", "36990.5", "36999.5", "12.5"))
    out = cb.on_rest(fetch, 200, body, _T0 + _S)
    (c,) = out.events                                          # the first poll: the latest closed bar only
    assert isinstance(c, Candle) and out.actions == []
    assert (c.exchange, c.symbol, c.exchange_symbol, c.interval) == ("COINBASE", "BTC-USD", "BTC-USD", "1m")
    assert (c.start, c.stop) == (1_699_999_920 * _S, 1_699_999_979_999 * 10**6)
    assert (c.open_str, c.high_str, c.low_str, c.close_str, c.volume_str) == (
        "36999.5", "37010.10", "36995.00", "37005.50", "0.00000100")              # the exchange's strings
    assert c.closed is True and c.timestamp is None and c.trades is None and c.receipt_timestamp == _T0 + _S
    assert cb.counters["ignored.candle_history"] == 1 and cb.counters["ignored.candle_forming"] == 1
    # Next poll 2 s after the forming bar's end, from that bar; its answer (newest first again, the
    # published bar repeated) gives the two bars closed since, in ascending order.
    assert cb.on_timer(1_700_000_041 * _S).actions == []
    (nxt,) = cb.on_timer(1_700_000_042 * _S).actions
    assert nxt.url == f"{_CANDLES}/BTC-USD/candles?start=1699999980&end=1700017980&granularity=ONE_MINUTE"
    later = _cb_body(_cb_bar(1_700_000_160, "5", "5", "5", "5", "1"),
                     _cb_bar(1_700_000_040, "37000", "37002", "37001", "37000", "3"),
                     _cb_bar(1_699_999_980, "37004", "37009", "37005.5", "37008", "4"),
                     _cb_bar(1_699_999_920, "36995.00", "37010.10", "36999.5", "37005.50", "0.00000100"))
    events = cb.on_rest(nxt, 200, later, 1_700_000_165 * _S).events
    assert [(e.start, e.close_str, e.volume_str) for e in events] == [
        (1_699_999_980 * _S, "37008", "4"), (1_700_000_040 * _S, "37000", "3")]
    assert cb.counters["ignored.candle_repeated"] == 1 and cb.error_counts() == {}


def test_rest_candles_catch_up_a_day_long_outage_within_seconds() -> None:
    cb = _rest_candles("1m", 1)
    (fetch,) = cb.on_timer(_T0).actions
    cb.on_rest(fetch, 200, _cb_body(_cb_bar(1_699_999_920, "1", "1", "1", "1", "1")), _T0 + _S)
    # The REST API answers again a day later: 1440 bars in ranges of 300, each asked 5 s after the
    # previous answer (the minimum period), all published, in order, none twice.
    ts, published, requests = _T0 + 86_400 * _S, [], 0
    while requests < 10:
        actions = cb.on_timer(ts).actions
        if actions:
            (f,) = actions
            requests += 1
            start, end = (int(p.split("=")[1]) for p in f.url.split("?")[1].split("&")[:2])
            bars = [_cb_bar(t, "1", "2", "1", "2", "3") for t in range(end, start - 1, -60) if t * _S < ts]
            published += [e.start // _S for e in cb.on_rest(f, 200, _cb_body(*bars), ts).events]
            if published[-1] >= ts // _S - 120:
                break
        ts += _S
    assert requests == 5 and ts - (_T0 + 86_400 * _S) < 30 * _S
    assert published == list(range(1_699_999_980, published[-1] + 60, 60))
    assert published[-1] >= (ts // _S) - 120 and cb.error_counts() == {}


def test_malformed_rest_candle_bodies_are_counted_not_raised() -> None:
    cb = _rest_candles("1m", 1)
    (fetch,) = cb.on_timer(_T0).actions
    good = _cb_bar(1_699_999_920, "1", "2", "0.5", "1.5", "10")
    bad = [b"<html>502</html>", b'{"error":"NOT_FOUND"}', b'{"candles":{}}',
           _cb_body(good, {"start": "1699999980", "open": "1"}),                   # a bar without fields
           _cb_body({**good, "close": 1.5}),                                       # a number, not text
           _cb_body({**good, "start": 1699999920}),                                # start not text
           _cb_body({**good, "low": "n/a"})]                                       # text that is no number
    for raw in bad:
        out = cb.on_rest(fetch, 200, raw, _T0 + _S)
        assert out.events == [] and out.actions == []
    errors = cb.error_counts()
    assert cb.counters["errors"] == len(bad)
    assert errors["errors.bad_candles"] == 2 and errors["errors.bad_number"] == 1
    assert errors["errors.bad_candle_time"] == 1 and errors["errors.rest_parse.KeyError"] == 1
    assert errors["errors.rest_parse.JSONDecodeError"] == 1 and errors["errors.rest_parse.ValueError"] == 1
    # Nothing was published: a good answer still gives the bar.
    forming = _cb_bar(1_699_999_980, "1", "1", "1", "1", "1")
    assert [c.start for c in cb.on_rest(fetch, 200, _cb_body(forming, good), _T0 + _S).events] == [
        1_699_999_920 * _S]
    assert cb.on_rest(Fetch("https://x/other", 1, "other"), 200, b"{}", 1).events == []
    assert cb.counters["errors.rest_unexpected"] == 1


def _status_msg(seq: int, **statuses: str) -> bytes:
    products = [{"product_type": "SPOT", "id": pid.replace("_", "-"), "base_currency": pid[:3], "quote_currency": "USD",
                 "base_increment": "0.00000001", "quote_increment": "0.01", "display_name": pid, "status": st,
                 "status_message": "", "min_market_funds": "1"} for pid, st in statuses.items()]
    return orjson.dumps({"channel": "status", "client_id": "", "timestamp": "2023-02-09T20:32:50.714964855Z",
                         "sequence_num": seq, "events": [{"type": "snapshot", "products": products}]})


def test_product_status_becomes_system_status() -> None:
    """The status channel (every connection, its products): all of the gateway's products online is
    online, some not partial, none maintenance; products the gateway does not serve do not count."""
    cb = Coinbase(Subscription({"trades": ["BTC-USD", "ETH-USD"]}), symbols=_syms("BTC-USD", "ETH-USD"))
    subs = [orjson.loads(m) for s in cb.connections() for m in s.subscribe]
    assert {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "status"} in subs
    (st,) = cb.on_message("c", _status_msg(0, BTC_USD="online", ETH_USD="online", SOL_USD="offline"), 1).events
    assert (st.KIND, st.exchange, st.feed, st.state) == ("status", "COINBASE", "system", "online")
    assert cb.on_message("c", _status_msg(1, BTC_USD="online", ETH_USD="online"), 2).events == []
    (st,) = cb.on_message("c", _status_msg(2, ETH_USD="delisted"), 3).events
    assert st.state == "partial" and st.reason == "Coinbase: 1 of this gateway's 2 products not online (ETH-USD delisted)"
    (st,) = cb.on_message("c", _status_msg(3, BTC_USD="offline"), 4).events
    assert st.state == "maintenance"
    (st,) = cb.on_message("c", _status_msg(4, BTC_USD="online", ETH_USD="online"), 5).events
    assert st.state == "online"
    cb.on_message("c", orjson.dumps({"channel": "status", "sequence_num": 5, "events": [{"products": [{"id": "X"}]}]}), 6)
    assert cb.error_counts() == {"errors.bad_system_status": 1}
