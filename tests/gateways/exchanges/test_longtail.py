"""The ccxt long tail (CCXT_<ID>): the sans-I/O adapter on ccxt's unified structures, and a gateway
that polls the loopback exchange through ccxt, records, and replays to the same events."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from cryptofeed_types import BBO, Candle, Funding, L2Delta, L2Snapshot, OpenInterest, Ticker, Trade
from feedfabric.testing.exchange import HttpProxy, RecordingPublisher, wait_until
from gateways import exchanges
from gateways.adapter import Fetch, Subscription
from gateways.capture import read_capture
from gateways.exchanges.longtail import CcxtAdapter, call_url, dec, market_symbol, parse_call
from gateways.process import Gateway, GatewayConfig
from gateways.replay import Replayer

_S = 10**9
_T0 = 1_700_000_030 * _S
_MS_T0 = _T0 // 10**6

MARKETS = {
    "BTC/USDT": {"id": "BTCUSDT", "type": "spot", "base": "BTC", "quote": "USDT", "settle": None,
                 "precision": {"price": 0.01, "amount": 1e-05}},
    "BTC/USDT:USDT": {"id": "BTCUSDT_PERP", "type": "swap", "base": "BTC", "quote": "USDT", "settle": "USDT",
                      "contractSize": 1.0, "precision": {"price": 0.1, "amount": 0.001}},
    "BTC/USD:BTC-261225": {"id": "BTCUSD_261225", "type": "future", "base": "BTC", "quote": "USD", "settle": "BTC",
                           "expiry": 1798156800000, "contractSize": 100, "precision": {"price": 0.5, "amount": 1}},
    "BTC/USD:BTC-261225-100000-C": {"id": "BTC-25DEC26-100000-C", "type": "option", "base": "BTC", "quote": "USD",
                                    "settle": "BTC", "expiry": 1798156800000, "strike": 100000.0,
                                    "optionType": "call", "contractSize": 1, "precision": {"price": 0.0005}},
    "BTC.D/USDT": {"id": "BTCDUSDT", "type": "spot", "base": "BTC.D", "quote": "USDT", "precision": {}},
}


def _adapter(channels: dict[str, list[str]] | None = None, **options: Any) -> CcxtAdapter:
    cls = exchanges.get("CCXT_BINANCE")
    ad = cls(Subscription(channels or {"trades": ["BTC-USDT"]}, **options))
    ad.load_instruments({call_url("load_markets"): orjson.dumps(MARKETS)})
    return ad


def _answer(ad: CcxtAdapter, fetch: Fetch, result: Any, ts: int) -> list[Any]:
    out = ad.on_rest(fetch, 200, orjson.dumps(result), ts)
    assert out.actions == []
    return out.events


def _trade(i: int, t_ms: int, price: str = "100.5", side: str = "buy") -> dict[str, Any]:
    return {"id": str(i), "timestamp": t_ms, "price": price, "amount": "0.25", "side": side, "symbol": "BTC/USDT"}


# ---------------------------------------------------------------- pieces

def test_a_call_is_a_url_and_back() -> None:
    url = call_url("fetch_order_book", symbol="BTC/USDT:USDT", limit=100, since=None)
    assert url == "ccxt:fetch_order_book?limit=100&symbol=BTC%2FUSDT%3AUSDT"
    assert parse_call(url) == ("fetch_order_book", {"limit": 100, "symbol": "BTC/USDT:USDT"})
    assert parse_call(call_url("load_markets")) == ("load_markets", {})
    with pytest.raises(ValueError):
        parse_call("https://api.binance.com/api/v3/depth")


def test_numbers_become_exact_plain_text() -> None:
    assert [dec(v) for v in ("100.50", 0.1, 1e-08, 5, 123456789.12345678, None)] == [
        "100.50", "0.1", "0.00000001", "5", "123456789.12345678", None]
    for bad in (True, float("nan"), float("inf"), [1]):
        with pytest.raises(Exception, match="bad_number"):
            dec(bad)


def test_markets_become_symbols_with_their_sizes() -> None:
    ad = _adapter()
    assert sorted(ad.symbols) == ["BTC-USD-20261225", "BTC-USD-20261225-100000-C", "BTC-USDT", "BTC-USDT-PERP"]
    assert ad.counters["instruments.skipped"] == 1                     # 'BTC.D' can't be a currency code
    perp = ad.symbols["BTC-USDT-PERP"]
    assert (perp.exchange_symbol, perp.settle, perp.tick_size, perp.lot_size, perp.contract_size) == (
        "BTCUSDT_PERP", "USDT", Decimal("0.1"), Decimal("0.001"), Decimal("1.0"))
    assert ad.symbols["BTC-USDT"].lot_size == Decimal("0.00001") and ad.symbols["BTC-USDT"].contract_size is None
    assert ad.ccxt_symbols["BTC-USD-20261225-100000-C"] == "BTC/USD:BTC-261225-100000-C"
    # Exchanges whose precision is a number of decimals.
    sym = market_symbol({"type": "spot", "base": "ETH", "quote": "EUR", "id": "ETHEUR",
                         "precision": {"price": 2, "amount": 4}}, tick_is_size=False)
    assert (sym.tick_size, sym.lot_size) == (Decimal("0.01"), Decimal("0.0001"))


def test_ccxt_names_are_registered_on_first_use_and_unknown_ones_are_clear() -> None:
    cls = exchanges.get("CCXT_KUCOIN")
    assert issubclass(cls, CcxtAdapter) and cls.exchange == "KUCOIN" and cls.ccxt_id == "kucoin"
    assert exchanges.get("CCXT_KUCOIN") is cls and cls.rest_weight_per_minute > 0
    with pytest.raises(KeyError, match="ccxt has no exchange 'nope'"):
        exchanges.get("CCXT_NOPE")
    with pytest.raises(ValidationError, match="ccxt has no exchange"):
        GatewayConfig(name="x", exchange="CCXT_NOPE", channels=["trades"], symbols=["BTC-USDT"], pub="inproc://x")


# ---------------------------------------------------------------- polls

def test_polls_are_spread_over_the_interval_and_never_asked_twice_before_their_answer() -> None:
    ad = _adapter({"trades": ["BTC-USDT", "BTC-USDT-PERP"], "l2_book": ["BTC-USDT"]}, poll_interval=1.0)
    first = ad.on_timer(_T0).actions
    assert [(f.tag, f.symbol) for f in first] == [("trades", "BTC-USDT"), ("l2_book", "BTC-USDT")]
    assert first[0].url == "ccxt:fetch_trades?symbol=BTC%2FUSDT"
    assert [(f.tag, f.symbol) for f in ad.on_timer(_T0 + _S // 2).actions] == [("trades", "BTC-USDT-PERP")]
    # A second later both BTC-USDT polls are due, but their answers have not come: not asked again.
    assert ad.on_timer(_T0 + _S).actions == []
    _answer(ad, first[0], [], _T0 + _S + 2)
    assert [(f.tag, f.symbol) for f in ad.on_timer(_T0 + _S + 3).actions] == [("trades", "BTC-USDT")]
    # A failed poll frees its slot too: asked again when next due.
    perp = Fetch(call_url("fetch_trades", symbol="BTC/USDT:USDT"), 1, "trades", "BTC-USDT-PERP")
    assert ad.on_timer(_T0 + 3 * _S // 2).actions == []
    assert ad.on_rest(perp, 500, None, _T0 + 3 * _S // 2 + 1).events == []
    assert ad.counters["errors.rest_status.trades"] == 1
    assert [(f.tag, f.symbol) for f in ad.on_timer(_T0 + 3 * _S // 2 + 2).actions] == [("trades", "BTC-USDT-PERP")]


def test_book_depth_is_the_subscriptions() -> None:
    ad = _adapter({"l2_book": ["BTC-USDT"]}, depth=50)
    (f,) = ad.on_timer(_T0).actions
    assert parse_call(f.url) == ("fetch_order_book", {"limit": 50, "symbol": "BTC/USDT"})


def test_a_channel_the_exchange_lacks_in_ccxt_is_refused_once() -> None:
    cls = type("NoOI", (exchanges.get("CCXT_BINANCE"),), {"has": {"fetchTrades": True}})
    ad = cls(Subscription({"trades": ["BTC-USDT"], "open_interest": ["BTC-USDT-PERP"]}))
    ad.load_instruments({call_url("load_markets"): orjson.dumps(MARKETS)})
    for i in range(3):
        tags = {f.tag for f in ad.on_timer(_T0 + i * 2 * _S).actions}
        assert "open_interest" not in tags
    assert ad.counters["subscription.unsupported_channel"] == 1


# ---------------------------------------------------------------- answers → events

def test_trades_after_the_first_poll_each_once() -> None:
    ad = _adapter()
    (f,) = ad.on_timer(_T0).actions
    # The first answer only sets the mark: those trades happened before the gateway looked.
    assert _answer(ad, f, [_trade(1, _MS_T0 - 2000), _trade(2, _MS_T0 - 1000)], _T0) == []
    assert ad.counters["ignored.trade_history"] == 2
    # Then each new trade once: the page repeats the old ones, a trade shares the mark's instant.
    page = [_trade(1, _MS_T0 - 2000), _trade(2, _MS_T0 - 1000), _trade(3, _MS_T0 - 1000, "100.6", "sell"),
            _trade(4, _MS_T0 + 500, "100.7")]
    events = _answer(ad, f, list(reversed(page)), _T0 + _S)
    assert [(t.id, t.side, t.price_str, t.amount_str, t.timestamp) for t in events] == [
        ("3", "sell", "100.6", "0.25", (_MS_T0 - 1000) * 10**6), ("4", "buy", "100.7", "0.25", (_MS_T0 + 500) * 10**6)]
    assert all(isinstance(t, Trade) and t.exchange == "BINANCE" and t.exchange_symbol == "BTCUSDT" for t in events)
    assert _answer(ad, f, page, _T0 + 2 * _S) == []
    # A page that starts after the mark may have missed trades between: counted.
    assert len(_answer(ad, f, [_trade(9, _MS_T0 + 9000)], _T0 + 3 * _S)) == 1
    assert ad.counters["trades.page_full"] == 1
    # No trade at all before the first poll: every later one is new.
    ad2 = _adapter()
    (f2,) = ad2.on_timer(_T0).actions
    assert _answer(ad2, f2, [], _T0) == [] and len(_answer(ad2, f2, [_trade(1, _MS_T0)], _T0 + _S)) == 1
    assert ad2.counters["trades.page_full"] == 0


def test_a_book_is_a_snapshot_then_the_deltas_between_polls() -> None:
    ad = _adapter({"l2_book": ["BTC-USDT"]})
    (f,) = ad.on_timer(_T0).actions
    snap = {"bids": [[100.5, 1.0], [100.0, 2.0]], "asks": [[101.0, 1.5], [101.5, 3.0]], "timestamp": _MS_T0}
    events = _answer(ad, f, snap, _T0)
    assert [type(e) for e in events] == [L2Snapshot, BBO]
    assert events[0].bids_str == (("100.5", "1.0"), ("100.0", "2.0"))   # a float's shortest text
    assert _answer(ad, f, snap, _T0 + _S) == [] and ad.counters["ignored.book_unchanged"] == 1
    # 100.0 resized, 99.5 new, 101.5 gone (published as size 0), 100.5 and 101.0 unchanged.
    nxt = {"bids": [[100.5, 1.0], [100.0, 2.5], [99.5, 4.0]], "asks": [[101.0, 1.5]], "timestamp": _MS_T0 + 1000}
    (delta,) = _answer(ad, f, nxt, _T0 + 2 * _S)
    assert isinstance(delta, L2Delta)
    assert sorted(delta.bids_str) == [("100.0", "2.5"), ("99.5", "4.0")] and delta.asks_str == (("101.5", "0"),)
    bids, asks = ad.books.get("BTC-USDT").book.snapshot()
    assert [(Decimal(p), Decimal(s)) for p, s in bids] == [(Decimal("100.5"), 1), (Decimal("100"), Decimal("2.5")),
                                                             (Decimal("99.5"), 4)]
    assert [(Decimal(p), Decimal(s)) for p, s in asks] == [(Decimal("101"), Decimal("1.5"))]


def test_a_crossed_book_is_resynced_by_its_next_poll() -> None:
    from cryptofeed_types import Gap, Reset
    from gateways.adapter import Resync

    ad = _adapter({"l2_book": ["BTC-USDT"]})
    (f,) = ad.on_timer(_T0).actions
    _answer(ad, f, {"bids": [[100.0, 1.0]], "asks": [[101.0, 1.0]]}, _T0)
    out = ad.on_rest(f, 200, orjson.dumps({"bids": [[102.0, 1.0]], "asks": [[101.0, 1.0]]}), _T0 + _S)
    assert [type(e) for e in out.events] == [Gap] and out.events[0].reason == "crossed"
    (resync,) = out.actions
    assert isinstance(resync, Resync) and resync.symbol == "BTC-USDT"
    (again,) = ad.resync("BTC-USDT", _T0 + _S).actions               # the driver's part: asked at once
    assert again == f and ad.resync("BTC-USDT", _T0 + _S).actions == []   # ... once
    events = _answer(ad, f, {"bids": [[100.5, 2.0]], "asks": [[101.0, 1.0]]}, _T0 + 2 * _S)
    assert [type(e) for e in events] == [Reset, L2Snapshot, BBO]
    assert events[1].bids_str == (("100.5", "2.0"),)


def test_tickers_funding_and_open_interest_when_they_change() -> None:
    ad = _adapter({"ticker": ["BTC-USDT"], "funding": ["BTC-USDT-PERP"], "open_interest": ["BTC-USDT-PERP"]})
    fetches = {f.tag: f for i in range(61) for f in ad.on_timer(_T0 + i * _S).actions}
    assert set(fetches) == {"ticker", "funding", "open_interest"}
    tick = {"bid": "100.5", "ask": "101.0", "last": "100.7", "baseVolume": "12.5", "timestamp": _MS_T0}
    (t,) = _answer(ad, fetches["ticker"], tick, _T0)
    assert isinstance(t, Ticker) and (t.bid_str, t.ask_str, t.last_str, t.volume_str) == ("100.5", "101.0", "100.7",
                                                                                          "12.5")
    assert _answer(ad, fetches["ticker"], tick, _T0 + _S) == [] and ad.counters["ignored.ticker_unchanged"] == 1
    fund = {"fundingRate": 0.0001, "markPrice": "100.6", "nextFundingTimestamp": _MS_T0 + 3_600_000}
    (fu,) = _answer(ad, fetches["funding"], fund, _T0)
    assert isinstance(fu, Funding) and (fu.rate_str, fu.mark_price_str, fu.next_funding_time) == (
        "0.0001", "100.6", (_MS_T0 + 3_600_000) * 10**6)
    (oi,) = _answer(ad, fetches["open_interest"], {"openInterestAmount": "1234.5", "timestamp": _MS_T0}, _T0)
    assert isinstance(oi, OpenInterest) and oi.open_interest_str == "1234.5" and oi.symbol == "BTC-USDT-PERP"


def test_bbo_from_the_ticker_where_no_book_gives_it() -> None:
    ad = _adapter({"bbo": ["BTC-USDT", "BTC-USDT-PERP", "BTC-USD-20261225"], "ticker": ["BTC-USDT"],
                   "l2_book": ["BTC-USD-20261225"]})
    fetches = [f for i in range(3) for f in ad.on_timer(_T0 + i * _S // 3).actions]
    # BTC-USDT: its ticker poll answers the bbo too; BTC-USD-20261225: its book gives the bbo.
    assert sorted((f.tag, f.symbol) for f in fetches) == [("bbo", "BTC-USDT-PERP"), ("l2_book", "BTC-USD-20261225"),
                                                           ("ticker", "BTC-USDT")]
    tick = {"bid": "100.5", "bidVolume": "2", "ask": "101", "askVolume": "3", "last": "100.7"}
    ticker = next(f for f in fetches if f.tag == "ticker")
    assert [type(e) for e in _answer(ad, ticker, tick, _T0)] == [BBO, Ticker]
    assert _answer(ad, ticker, {**tick, "last": "100.8"}, _T0 + _S) != [] and ad.counters["ignored.bbo_unchanged"] == 1
    bbo = next(f for f in fetches if f.tag == "bbo")
    (b,) = _answer(ad, bbo, tick, _T0)
    assert (b.symbol, b.bid_str, b.bid_size_str, b.ask_str, b.ask_size_str) == ("BTC-USDT-PERP", "100.5", "2", "101", "3")
    assert _answer(ad, bbo, {"last": "1"}, _T0 + _S) == [] and ad.counters["ignored.bbo_missing"] == 1


def test_mark_and_index_prices_from_one_call() -> None:
    from cryptofeed_types import IndexPrice, MarkPrice

    ad = _adapter({"mark": ["BTC-USDT-PERP"], "index": ["BTC-USDT-PERP", "BTC-USD-20261225"]})
    fetches = [f for f in ad.on_timer(_T0).actions] + [f for f in ad.on_timer(_T0 + _S // 2).actions]
    # Binance has fetch_mark_price; the perp's mark poll answers its index too: no second call.
    assert sorted((f.tag, f.symbol) for f in fetches) == [("index", "BTC-USD-20261225"), ("mark", "BTC-USDT-PERP")]
    assert all(parse_call(f.url)[0] == "fetch_mark_price" for f in fetches)
    mark = next(f for f in fetches if f.tag == "mark")
    events = _answer(ad, mark, {"markPrice": "100.25", "indexPrice": 100.2, "timestamp": _MS_T0}, _T0)
    assert [(type(e), e.price_str) for e in events] == [(MarkPrice, "100.25"), (IndexPrice, "100.2")]
    assert _answer(ad, mark, {"markPrice": "100.25", "indexPrice": 100.3}, _T0 + _S)[0].price_str == "100.3"
    index = next(f for f in fetches if f.tag == "index")
    assert _answer(ad, index, {"markPrice": "1"}, _T0) == [] and ad.counters["ignored.index_missing"] == 1
    # Where ccxt has no fetch_mark_price, the ticker answers (its unified structure carries both).
    cls = type("NoMark", (exchanges.get("CCXT_BINANCE"),), {"has": {"fetchTicker": True}})
    ad2 = cls(Subscription({"mark": ["BTC-USDT-PERP"]}))
    ad2.load_instruments({call_url("load_markets"): orjson.dumps(MARKETS)})
    (f,) = ad2.on_timer(_T0).actions
    assert parse_call(f.url) == ("fetch_ticker", {"symbol": "BTC/USDT:USDT"})


def test_candles_are_polled_bars_closed_once() -> None:
    ad = _adapter({"candles": ["BTC-USDT"]}, candle_interval="1m")
    (f,) = ad.on_timer(_T0).actions
    method, params = parse_call(f.url)
    assert (method, params["timeframe"], params["limit"]) == ("fetch_ohlcv", "1m", 300)
    start = params["since"]
    rows = [[start, 100.0, 101.0, 99.5, 100.5, 3.0], [start + 60_000, 100.5, 100.9, 100.1, 100.2, 1.25],
            [start + 120_000, 100.2, 100.2, 100.2, 100.2, 0.5]]
    (c,) = _answer(ad, f, rows, _T0 + _S)                      # the first answer: its latest closed bar
    assert isinstance(c, Candle) and (c.start, c.close_str, c.volume_str, c.closed) == (
        (start + 60_000) * 10**6, "100.2", "1.25", True)


def test_malformed_answers_are_counted_and_publish_nothing() -> None:
    ad = _adapter({"trades": ["BTC-USDT"], "l2_book": ["BTC-USDT"], "funding": ["BTC-USDT-PERP"]})
    fetches = {f.tag: f for f in ad.on_timer(_T0).actions}
    fetches |= {f.tag: f for i in range(1, 61) for f in ad.on_timer(_T0 + i * _S).actions}
    bad = [(fetches["trades"], {"not": "a list"}), (fetches["l2_book"], {"bids": "x"}),
           (fetches["l2_book"], [1, 2]), (fetches["funding"], {"markPrice": "1"}),
           # a level without a number is refused before the book, as in a synced book's diff
           (fetches["l2_book"], {"bids": [[100.0, None]], "asks": [[101.0, 1.0]]})]
    for fetch, body in bad:
        assert ad.on_rest(fetch, 200, orjson.dumps(body), _T0).events == []
    assert ad.on_rest(fetches["trades"], 200, b"<html>502</html>", _T0).events == []
    ad.on_rest(fetches["trades"], 200, orjson.dumps([]), _T0)
    assert ad.on_rest(fetches["trades"], 200, orjson.dumps([{**_trade(1, _MS_T0), "side": None}]), _T0).events == []
    assert ad.counters["errors"] == 7
    assert {"errors.bad_trades", "errors.bad_funding", "errors.bad_trade_side", "errors.bad_level"} <= set(
        ad.error_counts())


# ---------------------------------------------------------------- streaming through ccxt.pro (ccxt_stream)

def _streamed(ad: CcxtAdapter, call: str, result: Any, ts: int) -> list[Any]:
    out = ad.on_message(f"{ad.exchange}.pro", orjson.dumps({"call": call, "result": result}), ts)
    assert out.actions == []
    return out.events


def test_streamed_channels_are_one_connection_of_watch_calls_and_are_not_polled() -> None:
    ad = _adapter({"trades": ["BTC-USDT"], "l2_book": ["BTC-USDT-PERP"], "ticker": ["BTC-USDT"],
                   "bbo": ["BTC-USDT", "BTC-USD-20261225"], "funding": ["BTC-USDT-PERP"]}, ccxt_stream=True, depth=50)
    assert ad.streamed == {"trades", "l2_book", "ticker", "bbo"}
    (spec,) = ad.connections()
    assert (spec.id, spec.url) == ("BINANCE.pro", "ccxtpro:binance")
    # BTC-USDT's bbo rides on its ticker's watch; BTC-USD-20261225's has a watch of its own.
    assert list(spec.subscribe) == [call_url("watch_trades", symbol="BTC/USDT"),
                                    call_url("watch_order_book", symbol="BTC/USDT:USDT", limit=50),
                                    call_url("watch_ticker", symbol="BTC/USDT"),
                                    call_url("watch_ticker", symbol="BTC/USD:BTC-261225")]
    # Only what ccxt.pro cannot watch is polled.
    assert {f.tag for i in range(61) for f in ad.on_timer(_T0 + i * _S).actions} == {"funding"}
    # Without ccxt_stream (or where ccxt.pro has no watch for a channel): polled, no connection.
    assert _adapter({"trades": ["BTC-USDT"]}).connections() == []
    lacking = type("NoWatch", (exchanges.get("CCXT_BINANCE"),), {"pro_has": {"watchTrades": True}})
    ad2 = lacking(Subscription({"trades": ["BTC-USDT"], "l2_book": ["BTC-USDT"]}, ccxt_stream=True))
    ad2.load_instruments({call_url("load_markets"): orjson.dumps(MARKETS)})
    assert ad2.streamed == {"trades"} and {f.tag for f in ad2.on_timer(_T0).actions} == {"l2_book"}


def test_ccxt_stream_is_refused_where_it_cannot_stream() -> None:
    with pytest.raises(ValidationError, match="for CCXT_<ID> exchanges only: BINANCE streams through its own"):
        GatewayConfig(name="x", exchange="BINANCE", channels=["trades"], symbols=["BTC-USDT"], ccxt_stream=True,
                      pub="inproc://unused")
    with pytest.raises(ValidationError, match="ccxt.pro has no CCXT_BIGONE: leave ccxt_stream out"):
        GatewayConfig(name="x", exchange="CCXT_BIGONE", channels=["trades"], symbols=["BTC-USDT"], ccxt_stream=True,
                      pub="inproc://unused")


def test_streamed_trades_are_each_published_once_from_the_first() -> None:
    ad = _adapter({"trades": ["BTC-USDT"]}, ccxt_stream=True)
    call = call_url("watch_trades", symbol="BTC/USDT")
    first = _streamed(ad, call, [_trade(1, _MS_T0), _trade(2, _MS_T0)], _T0)
    assert [t.id for t in first] == ["1", "2"]   # not history: they came after the watch began
    # A result that repeats some (a cache returned whole) publishes only the new ones.
    again = _streamed(ad, call, [_trade(2, _MS_T0), _trade(3, _MS_T0 + 5), _trade(4, _MS_T0 + 9)], _T0 + _S)
    assert [t.id for t in again] == ["3", "4"] and ad.counters["trades.page_full"] == 0


def test_a_streamed_book_is_a_snapshot_then_deltas_and_its_connection_ending_invalidates_it() -> None:
    from cryptofeed_types import Gap, Reset

    ad = _adapter({"l2_book": ["BTC-USDT"]}, ccxt_stream=True)
    call = call_url("watch_order_book", symbol="BTC/USDT")
    snap = {"bids": [[100.5, 1.0]], "asks": [[101.0, 1.5]], "timestamp": _MS_T0, "nonce": 7}
    assert [type(e) for e in _streamed(ad, call, snap, _T0)] == [L2Snapshot, BBO]
    delta, bbo = _streamed(ad, call, {**snap, "bids": [[100.5, 2.0]]}, _T0 + 1)
    assert isinstance(delta, L2Delta) and delta.bids_str == (("100.5", "2.0"),) and isinstance(bbo, BBO)
    out = ad.on_close("BINANCE.pro", _T0 + 2, "NetworkError: gone")
    assert [type(e) for e in out.events] == [Gap] and out.actions == []   # the reconnection rebuilds it
    assert [type(e) for e in _streamed(ad, call, snap, _T0 + 3)] == [Reset, L2Snapshot, BBO]


def test_a_streamed_ticker_gives_the_ticker_and_the_bbo_of_a_symbol_without_a_book() -> None:
    ad = _adapter({"ticker": ["BTC-USDT"], "bbo": ["BTC-USDT", "BTC-USDT-PERP"]}, ccxt_stream=True)
    tick = {"bid": "100.5", "bidVolume": "2", "ask": "101", "askVolume": "3", "last": "100.7", "baseVolume": "9"}
    assert [type(e) for e in _streamed(ad, call_url("watch_ticker", symbol="BTC/USDT"), tick, _T0)] == [BBO, Ticker]
    (b,) = _streamed(ad, call_url("watch_ticker", symbol="BTC/USDT:USDT"), tick, _T0)
    assert isinstance(b, BBO) and b.symbol == "BTC-USDT-PERP"


def test_malformed_stream_messages_are_counted_and_publish_nothing() -> None:
    ad = _adapter({"trades": ["BTC-USDT"], "l2_book": ["BTC-USDT"]}, ccxt_stream=True)
    for raw in (b"not json", orjson.dumps([1]), orjson.dumps({"result": []}),
                orjson.dumps({"call": call_url("watch_trades", symbol="NOPE/USDT"), "result": []}),
                orjson.dumps({"call": call_url("watch_trades", symbol="BTC/USDT"), "result": {}}),
                orjson.dumps({"call": call_url("watch_order_book", symbol="BTC/USDT"), "result": []}),
                orjson.dumps({"call": call_url("watch_nothing", symbol="BTC/USDT"), "result": {}})):
        assert ad.on_message("BINANCE.pro", raw, _T0).events == []
    assert ad.counters["errors"] == 7
    assert {"errors.bad_stream_message", "errors.stream_unknown_symbol", "errors.bad_trades",
            "errors.bad_stream_result", "errors.stream_unexpected"} <= set(ad.error_counts())


# ---------------------------------------------------------------- a gateway through the loopback exchange

def _assert_every_aggtrade_once(records: list[Any], exchange_symbols: Any, pub: RecordingPublisher) -> None:
    """Every aggregate trade of these Binance symbols in the capture was published once, as the
    exchange gave it (78 for SUSHIUSDT and CTKUSDT in the BINANCE_FUTURES capture)."""
    want = []
    for r in records:
        d = orjson.loads(r.data).get("data", {}) if r.kind == "recv" else {}
        if d.get("e") == "aggTrade" and d["s"] in exchange_symbols:
            want.append((d["s"], str(d["a"]), d["p"], d["q"], "sell" if d["m"] else "buy"))
    got = [(t.exchange_symbol, t.id, t.price_str, t.amount_str, t.side) for t in pub.of_kind("trade")]
    assert sorted(got) == sorted(want) and len(want) == 78



async def test_ccxt_gateway_polls_the_loopback_records_and_replays(shared_data: Path, loopback_exchange,
                                                                   tmp_path: Path) -> None:
    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE_FUTURES"))
    lb = await loopback_exchange(records, rest_only=True)
    symbols = {"SUSHI-USDT-PERP": "SUSHIUSDT", "CTK-USDT-PERP": "CTKUSDT"}
    capture = tmp_path / "ccxt.ffcap"
    cfg = GatewayConfig(name="ccxt", exchange="CCXT_BINANCE", channels=["trades", "l2_book", "ticker"],
                        symbols=list(symbols), pub="inproc://unused", urls={"rest": lb.urls()["rest"]}, depth=1000,
                        poll_interval=0.2, record=capture,
                        ccxt={"enableRateLimit": False, "options": {"fetchMarkets": ["linear"]}})
    pub = RecordingPublisher("BINANCE")
    gw = Gateway(cfg, publisher=pub)
    books = gw.adapter.books

    def matches_truth() -> bool:
        def norm(levels: Any) -> list[tuple[Decimal, Decimal]]:
            return [(Decimal(p), Decimal(q)) for p, q in levels]
        return all(books.get(s) is not None and [norm(x) for x in books.get(s).book.snapshot()]
                   == [norm(x) for x in lb.profile.truth_book(xs)] for s, xs in symbols.items())

    async with gw:
        await wait_until(lambda: len(pub.of_kind("book_snapshot")) == 2, 10, "first book polls")
        for _ in range(4):
            lb.release(300)
            await lb.wait_sent()
            await asyncio.sleep(0.3)
        # The REST API fails for a while: counted, polled again after, nothing lost but time.
        lb.fail_rest(503)
        await wait_until(lambda: lb.rest_failures >= 3, 10, "failed polls")
        lb.restore_rest()
        lb.release(None)
        await lb.wait_sent()
        await wait_until(matches_truth, 10, "books equal to the capture's truth")
        await wait_until(lambda: len(pub.of_kind("trade")) == 78, 10, "every trade")
        live_trades = [t.wire_body() for t in pub.of_kind("trade")]
        live_books = {s: books.get(s).book.snapshot() for s in symbols}
    _assert_every_aggtrade_once(records, symbols.values(), pub)
    assert pub.counters["kind.ticker"] > 0 and pub.counters["kind.book_delta"] > 0
    assert gw.adapter.counters["errors.rest_status.trades"] + gw.adapter.counters["errors.rest_status.l2_book"] > 0
    assert all("/fapi/v1/" in u for u in lb.rest_requests)
    # The recording replays through the same adapter to the same trades and books.
    res = Replayer(collect=True).run(read_capture(capture))
    assert type(res.adapter).__name__ == "Ccxt_binance"
    assert [e.wire_body() for e in res.events if e.KIND == "trade"] == live_trades
    assert {s: res.adapter.books.get(s).book.snapshot() for s in symbols} == live_books
    # The command-line tools read it too.
    from click.testing import CliRunner

    from gateways.commands import replay as replay_command
    from gateways.commands import symbols as symbols_command

    out = CliRunner().invoke(symbols_command, ["CCXT_BINANCE", "--capture", str(capture), "--match", "SUSHI-*"])
    assert out.exit_code == 0 and out.output.split()[:2] == ["SUSHI-USDT-PERP", "SUSHIUSDT"], out.output
    out = CliRunner().invoke(replay_command, [str(capture)])
    # (exit status 1: the outage's failed polls were recorded, and replay as the same errors)
    assert out.exit_code == 1 and "trade           78" in out.output and "rest_status" in out.output, out.output


async def test_ccxt_gateway_streams_through_ccxt_pro_rides_out_a_drop_and_replays(
        shared_data: Path, loopback_exchange, tmp_path: Path) -> None:
    """ccxt.pro's own Binance code against the loopback exchange: it subscribes exactly the
    capture's streams, syncs its books from REST snapshots and the depth stream, and its results
    become our events."""
    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE_FUTURES"))
    lb = await loopback_exchange(records)
    symbols = {"SUSHI-USDT-PERP": "SUSHIUSDT", "CTK-USDT-PERP": "CTKUSDT"}
    capture = tmp_path / "pro.ffcap"
    cfg = GatewayConfig(name="ccxt", exchange="CCXT_BINANCE", channels=["trades", "l2_book"], symbols=list(symbols),
                        pub="inproc://unused", urls={"rest": lb.rest_url, "ws": lb.ws_url}, ccxt_stream=True,
                        record=capture, backoff_initial=0.05,
                        ccxt={"enableRateLimit": False, "options": {"fetchMarkets": ["linear"],
                                                                   "watchTrades": {"name": "aggTrade"}}})
    pub = RecordingPublisher("BINANCE")
    gw = Gateway(cfg, publisher=pub)
    books = gw.adapter.books
    wanted = {f"{xs.lower()}@{s}" for xs in symbols.values() for s in ("aggTrade", "depth@100ms")}

    def top(levels: Any, n: int = 100) -> list[tuple[Decimal, Decimal]]:
        return [(Decimal(p), Decimal(q)) for p, q in levels[:n]]

    def matches_truth() -> bool:
        # ccxt.pro keeps a 1000-level book: its top equals the truth's.
        return all(books.get(s) is not None and books.get(s).state == "synced"
                   and [top(x) for x in books.get(s).book.snapshot()] == [top(x) for x in lb.profile.truth_book(xs)]
                   for s, xs in symbols.items())

    async with gw:
        await wait_until(lambda: lb.subscribed_streams() == wanted, 20, "the watches subscribed")
        assert lb.errors == [] and gw.adapter.streamed == {"trades", "l2_book"}
        # The markets are loaded once, by the driver; ccxt.pro reuses them (each reconnection too).
        assert sum("exchangeInfo" in u for u in lb.rest_requests) == 1
        lb.release(600)
        await lb.wait_sent()
        await wait_until(matches_truth, 10, "books synced")
        # A drop: every watch ends, the books are invalid (Gap), the reconnection watches again.
        connects = gw.driver.counters["connects"]
        await lb.drop()
        await wait_until(lambda: gw.driver.counters["connects"] > connects and lb.subscribed_streams() == wanted, 20,
                         "reconnected")
        assert {g.symbol for g in pub.of_kind("gap")} == set(symbols)
        assert sum("exchangeInfo" in u for u in lb.rest_requests) == 1
        lb.release(None)
        await lb.wait_sent()
        await wait_until(matches_truth, 10, "books equal to the truth")
        await wait_until(lambda: len(pub.of_kind("trade")) == 78, 10, "every trade")
        assert pub.feeds == {"BINANCE.pro": "connected"} and gw.adapter.error_counts() == {}
        live_trades = [t.wire_body() for t in pub.of_kind("trade")]
        live_books = {s: books.get(s).book.snapshot() for s in symbols}
    _assert_every_aggtrade_once(records, symbols.values(), pub)
    # The recording (the watch calls, each result, the connection's ends) replays to the same events.
    recorded = list(read_capture(capture))
    assert recorded[0].data["ccxt_stream"] is True
    while recorded[-1].kind == "close":
        recorded.pop()   # the stop's close, which (rightly) invalidates the books
    res = Replayer(collect=True).run(recorded)
    assert [e.wire_body() for e in res.events if e.KIND == "trade"] == live_trades
    assert {s: res.adapter.books.get(s).book.snapshot() for s in symbols} == live_books


async def test_ccxt_calls_go_through_the_rest_proxy(shared_data: Path, loopback_exchange) -> None:
    proxy = HttpProxy()
    await proxy.start()
    lb = await loopback_exchange(shared_data / "cryptofeed" / "BINANCE_FUTURES", rest_only=True)
    cfg = GatewayConfig(name="ccxt", exchange="CCXT_BINANCE", channels=["l2_book"], symbols=["SUSHI-USDT-PERP"],
                        pub="inproc://unused", urls={"rest": lb.urls()["rest"]}, poll_interval=0.2,
                        rest_proxy=f"http://127.0.0.1:{proxy.port}",
                        ccxt={"enableRateLimit": False, "options": {"fetchMarkets": ["linear"]}})
    pub = RecordingPublisher("BINANCE")
    async with Gateway(cfg, publisher=pub):
        await wait_until(lambda: pub.of_kind("book_snapshot"), 10, "a book through the proxy")
    proxy.close()
    assert proxy.forwards + proxy.connects >= 1 and len(lb.rest_requests) >= 2   # markets, then the book


async def test_ccxt_pro_streams_go_through_the_websocket_proxy(shared_data: Path, loopback_exchange) -> None:
    proxy = HttpProxy()
    await proxy.start()
    lb = await loopback_exchange(shared_data / "cryptofeed" / "BINANCE_FUTURES")
    cfg = GatewayConfig(name="ccxt", exchange="CCXT_BINANCE", channels=["l2_book"], symbols=["SUSHI-USDT-PERP"],
                        pub="inproc://unused", urls={"rest": lb.rest_url, "ws": lb.ws_url}, ccxt_stream=True,
                        ws_proxy=f"http://127.0.0.1:{proxy.port}",
                        ccxt={"enableRateLimit": False, "options": {"fetchMarkets": ["linear"]}})
    async with Gateway(cfg, publisher=RecordingPublisher("BINANCE")):
        await wait_until(lambda: lb.subscribed_streams() == {"sushiusdt@depth@100ms"}, 20, "subscribed via the proxy")
    proxy.close()
    # No rest_proxy: only the websocket went through it (a plain ws:// upgrade is relayed in absolute form).
    assert proxy.connects + proxy.forwards >= 1, (proxy.connects, proxy.forwards)


async def test_ccxt_errors_become_statuses_and_a_poll_is_never_lost() -> None:
    import ccxt

    from gateways.longtail_driver import CcxtDriver, _rebase

    class Fake:
        def __init__(self, exc: BaseException | None) -> None:
            self.exc = exc
            self.aiohttp_proxy = None

        async def fetch_ticker(self, symbol: str) -> dict[str, Any]:
            if self.exc is not None:
                raise self.exc
            return {"symbol": symbol, "bid": Decimal("1.5"), 7: "int key"}

    ad = _adapter({"ticker": ["BTC-USDT"]})
    pub = RecordingPublisher("BINANCE")
    driver = CcxtDriver(ad, pub)
    fetch = Fetch(call_url("fetch_ticker", symbol="BTC/USDT"), 1, "ticker", "BTC-USDT")
    for exc, status in ((ccxt.RateLimitExceeded("slow down"), 429), (ccxt.DDoSProtection("cf"), 429),
                        (ccxt.RequestTimeout("t"), 0), (ccxt.NetworkError("n"), 0), (ccxt.BadSymbol("b"), 400),
                        (ccxt.ExchangeError("e"), 500), (KeyError("a bug inside ccxt"), 500)):
        driver.exchange = Fake(exc)
        assert await driver._request(fetch) == (status, None), exc
    assert driver.counters["rest_errors"] == 7
    driver.exchange = Fake(None)
    status, body = await driver._request(fetch)
    assert status == 200 and orjson.loads(body) == {"symbol": "BTC/USDT", "bid": "1.5", "7": "int key"}
    # Every endpoint ccxt knows moves to the configured host, paths kept.
    api = {"public": "https://api.binance.com/api/v3", "fapi": {"public": "https://fapi.binance.com/fapi/v1"}, "n": 1}
    assert _rebase(api, "http://127.0.0.1:9/") == {"public": "http://127.0.0.1:9/api/v3",
                                                   "fapi": {"public": "http://127.0.0.1:9/fapi/v1"}, "n": 1}
    # ccxt.pro's websocket endpoints move to the ws base, its REST ones stay without a rest base.
    pro = {"ws": {"linear": "wss://fstream.binance.com/ws"}, "rest": "https://fapi.binance.com/fapi/v1"}
    assert _rebase(pro, None, "ws://127.0.0.1:9") == {"ws": {"linear": "ws://127.0.0.1:9/ws"},
                                                      "rest": "https://fapi.binance.com/fapi/v1"}


async def test_a_failed_watch_is_retried_alone_and_a_network_error_ends_the_stream() -> None:
    import ccxt

    from gateways.longtail_driver import CcxtDriver

    class FakePro:
        def __init__(self) -> None:
            self.answers: list[Any] = [ccxt.BadSymbol("not now"), [_trade(1, _MS_T0)], ccxt.NetworkError("gone")]
            self.closed = False

        async def watch_trades(self, symbol: str) -> list[Any]:
            answer = self.answers.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        async def close(self) -> None:
            self.closed = True

    ad = _adapter({"trades": ["BTC-USDT"]}, ccxt_stream=True, poll_interval=0.01)
    pub = RecordingPublisher("BINANCE")
    driver = CcxtDriver(ad, pub)
    fake = FakePro()
    driver._exchange = lambda module: fake   # type: ignore[method-assign]
    (spec,) = ad.connections()
    reason = await asyncio.wait_for(driver._session_once(spec), 10)
    assert reason == "NetworkError: gone" and fake.closed
    assert driver.counters["stream_errors"] == 1 and [t.id for t in pub.of_kind("trade")] == ["1"]
    assert [(s.feed, s.state) for s in pub.of_kind("status")] == [("BINANCE.pro", "connected"),
                                                                  ("BINANCE.pro", "disconnected")]


@pytest.mark.parametrize("capture,markets", [("BINANCE_DELIVERY", "inverse"), ("BINANCE_FUTURES", "linear")])
async def test_ccxt_names_the_instruments_as_the_native_adapter_does(shared_data: Path, loopback_exchange,
                                                                     capture: str, markets: str) -> None:
    """The same exchangeInfo through ccxt's Binance code and through our native adapter: the same
    normalized symbols with the same tick and lot sizes (contract sizes: ccxt's 1 for USDⓈ-M
    perpetuals, which the native adapter leaves unset)."""
    from feedfabric.testing.adapters import capture_parts
    from gateways.driver import DriverConfig
    from gateways.longtail_driver import CcxtDriver

    path = shared_data / "cryptofeed" / capture
    lb = await loopback_exchange(path, rest_only=True)
    ad = exchanges.get("CCXT_BINANCE")(Subscription({}), urls={"rest": lb.urls()["rest"]})
    driver = CcxtDriver(ad, None, config=DriverConfig(ccxt={"enableRateLimit": False,
                                                            "options": {"fetchMarkets": [markets]}}))
    async with driver.rest_session():
        assert await driver.load_instruments(ad.instrument_requests()) is not None
    native = exchanges.get(capture)(Subscription({}))
    native.load_instruments({u: b for u, b in capture_parts(path).rest.items() if "exchangeInfo" in u})
    common = set(ad.symbols) & set(native.symbols)
    assert len(common) == len(native.symbols) >= 36 and len(ad.symbols) - len(common) <= 1
    for s in common:
        mine, theirs = ad.symbols[s], native.symbols[s]
        assert (mine.tick_size, mine.lot_size, mine.exchange_symbol) == (
            theirs.tick_size, theirs.lot_size, theirs.exchange_symbol), s
        assert mine.contract_size == theirs.contract_size or (theirs.contract_size is None
                                                              and mine.contract_size == 1), s


async def test_a_late_subscriber_gets_the_ccxt_gateways_books_from_the_snapshot_service(
        shared_data: Path, loopback_exchange, bus_endpoint) -> None:
    """The long tail on the real bus: a subscriber there from the start and one joining after the
    capture has played out (its books can only come from the snapshot service) both hold the
    gateway's books."""
    from feedfabric.testing.bus import PumpedSubscribers

    lb = await loopback_exchange(shared_data / "cryptofeed" / "BINANCE_FUTURES", rest_only=True)
    ep = bus_endpoint("ccxt")
    symbols = ["SUSHI-USDT-PERP", "CTK-USDT-PERP"]
    cfg = GatewayConfig(name="ccxt", exchange="CCXT_BINANCE", channels=["l2_book"], symbols=symbols,
                        pub=ep.pub, snapshot=ep.snapshot, urls={"rest": lb.urls()["rest"]}, depth=1000,
                        poll_interval=0.2, ccxt={"enableRateLimit": False, "options": {"fetchMarkets": ["linear"]}})
    gw = Gateway(cfg)
    async with PumpedSubscribers(ep, ["book."]) as subs, gw:
        subs.join()
        await wait_until(lambda: all(gw.adapter.books.get(s) is not None for s in symbols), 10, "first polls")
        lb.release(None)
        await lb.wait_sent()
        truth = {s: lb.profile.truth_book(s.split("-")[0] + "USDT") for s in symbols}

        def equal(book: Any, s: str) -> bool:
            def norm(sides: Any) -> list[list[tuple[Decimal, Decimal]]]:
                return [[(Decimal(p), Decimal(q)) for p, q in side] for side in sides]
            return book is not None and norm(book.snapshot()) == norm(truth[s])
        await wait_until(lambda: all(equal(gw.adapter.books.get(s).book, s) for s in symbols), 10, "gateway")
        subs.join()
        await wait_until(lambda: all(equal(sub.book("BINANCE", s), s) for sub in subs for s in symbols), 10,
                         "both subscribers' books")
