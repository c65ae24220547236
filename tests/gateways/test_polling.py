"""CandlePoller, the exchange-independent part of REST candle polling, through a minimal adapter."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cryptofeed_types import Candle, Symbol
from feedfabric.testing.logs import captured_logs
from gateways.adapter import Adapter, Fetch, Output, Subscription
from gateways.polling import Bar, CandlePoller, PolledCandles, json_rows

_S = 10**9
_T0 = 1_700_000_030 * _S                      # 30 s into the minute starting at 1_699_999_980 s
_M = 1_699_999_980                            # that minute's start (s)


class Bars(PolledCandles, Adapter):
    """An exchange whose REST bars are ``{"bars": [[start_s, o, h, l, c, v], ...], "more": bool}``."""

    exchange = "TEST"
    urls = {"rest": "https://x"}
    timer_interval = 1.0

    def __init__(self, subscription: Subscription, **kwargs: Any) -> None:
        super().__init__(subscription, **kwargs)
        self.poller = CandlePoller(self, {"10s": 10 * _S, "1m": 60 * _S, "1h": 3600 * _S}, self._request,
                                   self._parse)

    def _request(self, symbol: str, start: int) -> Fetch:
        return Fetch(f"https://x/bars/{self.exchange_symbol(symbol)}/{self.candle_interval}?from={start // _S}", 1,
                     "candles", symbol)

    @staticmethod
    def _parse(body: str | bytes) -> tuple[list[Bar], bool]:
        data, rows = json_rows(body, "bars")
        return [(int(b[0]) * _S, b[1], b[2], b[3], b[4], b[5]) for b in rows], data.get("more") is True

    def handle_rest(self, fetch: Fetch, body: str | bytes, ts: int, out: Output) -> None:
        self.poller.on_response(fetch, body, ts, out)

    def handle_timer(self, ts: int, out: Output) -> None:
        self.poller.poll(ts, out)


def _adapter(interval: str = "1m", n: int = 1, **sub: object) -> Bars:
    names = ["BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD"][:n]
    return Bars(Subscription({"candles": names, **sub}, candle_interval=interval),
                symbols=[Symbol.parse(s, exchange_symbol=s.replace("-", "")) for s in names])


def _bar(start_s: int, close: str = "1", volume: str = "1") -> list[Any]:
    return [start_s, "1", "2", "0.5", close, volume]


def _body(*bars: list[Any], more: bool = False) -> bytes:
    return orjson.dumps({"bars": list(bars), "more": more})


def _first_fetch(ad: Bars, ts: int = _T0) -> Fetch:
    (fetch,) = ad.on_timer(ts).actions
    return fetch


# ---------------------------------------------------------------- schedule

def test_first_polls_are_spread_over_one_period_then_retried() -> None:
    ad = _adapter(n=4)
    # 1m bars: a 15 s period; four symbols due at 0, 3.75, 7.5 and 11.25 s.
    due = {}
    for t in range(0, 15 * 4):                      # quarter seconds, up to the end of the period
        for f in ad.on_timer(_T0 + t * _S // 4).actions:
            due.setdefault(f.symbol, t / 4)
    assert due == {"BTC-USD": 0.0, "ETH-USD": 3.75, "SOL-USD": 7.5, "XRP-USD": 11.25}
    # Never answered: each is asked again one period after its last poll.
    assert [f.symbol for f in ad.on_timer(_T0 + 15 * _S).actions] == ["BTC-USD"]
    assert [f.symbol for f in ad.on_timer(_T0 + 18_750_000_000).actions] == ["ETH-USD"]


def test_poll_period_is_a_quarter_bar_within_the_bounds() -> None:
    ad = _adapter()
    assert [ad.poller.period(n * _S) for n in (10, 60, 200, 3600)] == [5 * _S, 15 * _S, 50 * _S, 60 * _S]
    # The timing is read from the adapter at every call: an instance override counts at once.
    ad.candle_poll_min_ns = ad.candle_poll_max_ns = _S // 5   # type: ignore[misc]
    assert ad.poller.period(3600 * _S) == _S // 5
    hourly = _adapter("1h", 2)
    assert [f.symbol for f in hourly.on_timer(_T0).actions] == ["BTC-USD"]
    assert hourly.on_timer(_T0 + 29 * _S).actions == []
    assert [f.symbol for f in hourly.on_timer(_T0 + 30 * _S).actions] == ["ETH-USD"]   # 60 s / 2
    assert [f.symbol for f in hourly.on_timer(_T0 + 60 * _S).actions] == ["BTC-USD"]


def test_first_request_is_two_bars_back_on_the_grid_later_ones_from_the_first_unpublished() -> None:
    ad = _adapter()
    fetch = _first_fetch(ad)
    assert fetch == Fetch(f"https://x/bars/BTCUSD/1m?from={_M - 120}", 1, "candles", "BTC-USD")
    assert ad.poller.fetch("BTC-USD", _T0 + 9 * _S) == fetch           # within the same minute: the same URL
    ad.on_rest(fetch, 200, _body(_bar(_M - 60), _bar(_M)), _T0 + _S)
    assert ad.poller.last_published("BTC-USD") == (_M - 60) * _S
    assert ad.poller.fetch("BTC-USD", _T0 + 600 * _S).url == f"https://x/bars/BTCUSD/1m?from={_M}"


def test_next_poll_follows_the_forming_bars_end_plus_settle_and_stagger() -> None:
    ad = _adapter(n=2)
    (btc,) = ad.on_timer(_T0).actions
    (eth,) = ad.on_timer(_T0 + 8 * _S).actions                            # staggered by 7.5 s
    ad.on_rest(btc, 200, _body(_bar(_M - 60), _bar(_M)), _T0 + _S)
    ad.on_rest(eth, 200, _body(_bar(_M - 60), _bar(_M)), _T0 + 9 * _S)
    end = (_M + 60) * _S                                                    # the forming bar's end
    assert ad.on_timer(end + 2 * _S - 1).actions == []
    assert [f.symbol for f in ad.on_timer(end + 2 * _S).actions] == ["BTC-USD"]     # + settle
    assert ad.on_timer(end + 9 * _S).actions == []
    assert [f.symbol for f in ad.on_timer(end + 9_500_000_000).actions] == ["ETH-USD"]   # + stagger
    # A response that arrives after that instant is asked again no sooner than the minimum period.
    late = _adapter()
    fetch = _first_fetch(late)
    late.on_rest(fetch, 200, _body(_bar(_M - 60), _bar(_M)), end + 10 * _S)
    assert late.on_timer(end + 14 * _S).actions == []
    assert len(late.on_timer(end + 15 * _S).actions) == 1


# ---------------------------------------------------------------- closing, dedupe, history

def test_closed_when_a_later_bar_exists_or_after_the_grace() -> None:
    ad = _adapter()
    fetch = _first_fetch(ad)
    out = ad.on_rest(fetch, 200, _body(_bar(_M - 60, "7", "3")), _M * _S + 30 * _S - 1)
    assert out.events == [] and ad.counters["ignored.candle_forming"] == 1     # 1 ns short of the grace
    (c,) = ad.on_rest(fetch, 200, _body(_bar(_M - 60, "7", "3")), _M * _S + 30 * _S).events
    assert isinstance(c, Candle)
    assert (c.exchange, c.symbol, c.exchange_symbol, c.interval) == ("TEST", "BTC-USD", "BTCUSD", "1m")
    assert (c.start, c.stop) == ((_M - 60) * _S, _M * _S - 10**6)              # stop = the last millisecond
    assert (c.open_str, c.high_str, c.low_str, c.close_str, c.volume_str) == ("1", "2", "0.5", "7", "3")
    assert c.closed is True and c.timestamp is None and c.trades is None
    assert c.receipt_timestamp == _M * _S + 30 * _S
    # A later bar closes the one before it at once; the last stays forming.
    (c2,) = ad.on_rest(fetch, 200, _body(_bar(_M), _bar(_M + 60)), (_M + 61) * _S).events
    assert c2.start == _M * _S and ad.counters["ignored.candle_forming"] == 2


def test_more_closes_the_last_bar_and_asks_again_soon() -> None:
    ad = _adapter()
    fetch = _first_fetch(ad)
    (c,) = ad.on_rest(fetch, 200, _body(_bar(_M - 120), _bar(_M - 60), more=True), _T0 + _S).events
    assert c.start == (_M - 60) * _S and ad.counters["ignored.candle_history"] == 1
    assert ad.counters["ignored.candle_forming"] == 0
    assert ad.on_timer(_T0 + 5 * _S).actions == []
    (nxt,) = ad.on_timer(_T0 + 6 * _S).actions                                # receipt + the minimum
    assert nxt.url == f"https://x/bars/BTCUSD/1m?from={_M}"


def test_a_fixed_range_that_ended_before_its_answer_is_caught_up_range_after_range() -> None:
    ad = _adapter()
    ad.poller = CandlePoller(ad, {"1m": 60 * _S}, ad._request, ad._parse, window=3)   # 3 bars per request
    fetch = _first_fetch(ad)
    ad.on_rest(fetch, 200, _body(_bar(_M - 60), _bar(_M)), _T0 + _S)         # the range reaches now
    assert ad.poller.last_published("BTC-USD") == (_M - 60) * _S and ad.counters["ignored.candle_forming"] == 1
    # An outage of ten minutes: the next range (3 bars from _M) ended long before its answer.
    back = (_M + 600) * _S
    (f,) = ad.on_timer(back).actions
    assert f.url == f"https://x/bars/BTCUSD/1m?from={_M}"
    bars = [(e.start // _S - _M) // 60 for e in ad.on_rest(f, 200, _body(_bar(_M), _bar(_M + 60), _bar(_M + 120)),
                                                             back + _S).events]
    assert bars == [0, 1, 2] and ad.counters["ignored.candle_forming"] == 1   # the last one is closed too
    # Asked again after the minimum period (5 s), not a quarter bar later, from the range's end.
    assert ad.on_timer(back + 5 * _S).actions == []
    (f2,) = ad.on_timer(back + 6 * _S).actions
    assert f2.url == f"https://x/bars/BTCUSD/1m?from={_M + 180}"
    # A range that reaches its answer's time (its bar after the end too) is not "more": its newest
    # bar is forming until the grace rule closes it.
    ad.on_rest(f2, 200, _body(_bar(_M + 180), _bar(_M + 240), _bar(_M + 300)), (_M + 359) * _S)
    assert ad.counters["ignored.candle_forming"] == 2
    assert ad.poller.last_published("BTC-USD") == (_M + 240) * _S
    # A late answer to an older request proves nothing about the range: no catch-up inferred.
    late = _adapter()
    late.poller = CandlePoller(late, {"1m": 60 * _S}, late._request, late._parse, window=3)
    old = _first_fetch(late)
    late.on_rest(old, 200, _body(_bar(_M - 60), _bar(_M)), _T0 + _S)
    late.poller.fetch("BTC-USD", back)                                      # a newer request is out
    late.on_rest(old, 200, _body(_bar(_M - 60), _bar(_M), _bar(_M + 60)), (_M + 130) * _S)
    assert late.counters["ignored.candle_forming"] == 2


def test_first_response_publishes_only_its_latest_closed_bar() -> None:
    ad = _adapter()
    fetch = _first_fetch(ad)
    # Unordered, with a start given twice (the later row wins): sorted by start, one bar per start.
    body = _body(_bar(_M), _bar(_M - 120), _bar(_M - 60, "5"), _bar(_M - 60, "6"), _bar(_M - 180))
    (c,) = ad.on_rest(fetch, 200, body, _T0 + _S).events
    assert (c.start, c.close_str) == ((_M - 60) * _S, "6")
    assert ad.counters["ignored.candle_history"] == 2 and ad.counters["ignored.candle_forming"] == 1
    # Later responses publish every new closed bar, in order.
    body = _body(_bar(_M + 120), _bar(_M, "8"), _bar(_M + 60, "9"))
    assert [(e.start, e.close_str) for e in ad.on_rest(fetch, 200, body, (_M + 125) * _S).events] == [
        (_M * _S, "8"), ((_M + 60) * _S, "9")]
    assert ad.counters["ignored.candle_history"] == 2


def test_a_bar_is_never_published_twice() -> None:
    ad = _adapter()
    fetch = _first_fetch(ad)
    body = _body(_bar(_M - 60), _bar(_M))
    assert len(ad.on_rest(fetch, 200, body, _T0 + _S).events) == 1
    assert ad.on_rest(fetch, 200, body, _T0 + 2 * _S).events == []         # the same answer again
    assert ad.counters["ignored.candle_repeated"] == 1
    # An old response arriving late: its bars (older than the last published) are repeats too.
    assert ad.on_rest(fetch, 200, _body(_bar(_M - 180), _bar(_M - 120), _bar(_M - 60)), _T0 + 3 * _S).events == []
    assert ad.counters["ignored.candle_repeated"] == 4 and ad.counters["ignored.candle_history"] == 0
    assert ad.poller.last_published("BTC-USD") == (_M - 60) * _S


# ---------------------------------------------------------------- failures and refusals

def test_malformed_bodies_are_counted_by_the_adapter_and_publish_nothing() -> None:
    ad = _adapter()
    fetch = _first_fetch(ad)
    bad = [b"<html>", b"[]", b'{"bars": null}',
           _body(_bar(_M - 120), [_M - 60, "1", "2"]),                           # a short row
           _body(_bar(_M - 120), [_M - 60, "1", "2", "0.5", "x", "1"], _bar(_M))]  # text that is no number
    for raw in bad:
        out = ad.on_rest(fetch, 200, raw, _T0 + _S)
        assert out.events == [] and out.actions == []
    assert ad.on_rest(fetch, 500, b"oops", _T0 + _S).events == []
    errors = ad.error_counts()
    assert ad.counters["errors"] == len(bad) + 1
    assert errors["errors.bad_candles"] == 2 and errors["errors.rest_parse.JSONDecodeError"] == 1
    assert errors["errors.rest_parse.IndexError"] == 1 and errors["errors.rest_parse.ValueError"] == 1
    assert errors["errors.rest_status.candles"] == 1
    # Nothing published nor counted as seen: the same request, and a good answer still gives the bar.
    assert ad.poller.last_published("BTC-USD") is None
    assert [k for k in ad.counters if k.startswith("ignored.")] == []
    assert ad.poller.fetch("BTC-USD", _T0) == fetch
    assert [c.start for c in ad.on_rest(fetch, 200, _body(_bar(_M - 60), _bar(_M)), _T0 + _S).events] == [
        (_M - 60) * _S]
    # A response to another request is not the poller's.
    assert ad.on_rest(Fetch("https://x/other", 1, "other"), 200, _body(_bar(_M)), _T0 + _S).events == []
    assert ad.on_rest(Fetch("https://x/bars", 1, "candles"), 200, _body(_bar(_M)), _T0 + _S).events == []
    assert ad.counters["errors.rest_unexpected"] == 2


def test_an_interval_the_rest_api_lacks_is_refused_once() -> None:
    with captured_logs("ERROR") as lines:
        ad = _adapter("4h", 2, trades=["BTC-USD"])
        outs = [ad.on_timer(_T0 + i * _S) for i in range(5)]
        assert ad.poller.symbols() == []
    assert all(o.actions == [] for o in outs)
    assert ad.counters["subscription.unsupported_candle_interval"] == 1 and ad.error_counts() == {}
    assert [ln.rstrip() for ln in lines] == ["TEST: candles not polled: candle_interval '4h' is not one of its REST candle "
                     "intervals (10s, 1m, 1h)"]
    # No candles subscribed: nothing to refuse.
    quiet = Bars(Subscription({"trades": ["BTC-USD"]}, candle_interval="4h"))
    assert quiet.on_timer(_T0).actions == [] and quiet.counters["subscription.unsupported_candle_interval"] == 0


def test_the_owner_must_carry_the_poll_timing() -> None:
    class NoTiming(Adapter):
        exchange = "TEST"

    with pytest.raises(TypeError, match="PolledCandles"):
        CandlePoller(NoTiming(Subscription({})), {"1m": 60 * _S}, lambda s, t: Fetch("u"), lambda b: ([], False))
