"""Gateway logs: incidents carry exchange/symbol context (loguru ``extra``) and gap storms are rate-limited."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from cryptofeed_types import Symbol
from gateways.adapter import Fetch, LogLimit, Output, Resync, Send, Subscription
from gateways.books import Books, range_rule
from gateways.driver import Driver
from gateways.exchanges.binance import BinanceSpot


@pytest.fixture
def records(log_records: list[Any]) -> list[Any]:
    """feedfabric.testing's ``log_records``: every loguru record logged during the test."""
    return log_records


def _binance() -> BinanceSpot:
    syms = [Symbol.parse("AAA-USDT", exchange_symbol="AAAUSDT"), Symbol.parse("BBB-USDT", exchange_symbol="BBBUSDT")]
    return BinanceSpot(Subscription({"l2_book": [s.normalized for s in syms]}), symbols=syms)


def _delta(xs: str, first: int, last: int) -> bytes:
    d = {"e": "depthUpdate", "E": 1, "s": xs, "U": first, "u": last, "b": [["10", "1"]], "a": [["20", "1"]]}
    return orjson.dumps({"stream": f"{xs.lower()}@depth@100ms", "data": d})


def _snapshot(last: int) -> bytes:
    return orjson.dumps({"lastUpdateId": last, "bids": [["9", "1"]], "asks": [["21", "1"]]})


def _synced(adapter: BinanceSpot, xs: str, name: str) -> None:
    (fetch,) = adapter.on_message("c", _delta(xs, 100, 105), 1).actions
    assert isinstance(fetch, Fetch) and fetch.symbol == name
    adapter.on_rest(fetch, 200, _snapshot(102), 2)
    assert adapter.books.state(name) == "synced"


def test_sequence_gap_logs_a_warning_bound_with_exchange_and_symbol(records: list[Any]) -> None:
    adapter = _binance()
    for xs, name in (("AAAUSDT", "AAA-USDT"), ("BBBUSDT", "BBB-USDT")):
        _synced(adapter, xs, name)
    records.clear()
    assert adapter.on_message("c", _delta("BBBUSDT", 106, 107), 3).events   # a clean delta logs nothing
    assert records == []
    out = adapter.on_message("c", _delta("AAAUSDT", 115, 120), 4)        # hole at 106
    assert [a.symbol for a in out.actions if isinstance(a, Fetch)] == ["AAA-USDT"]
    (rec,) = records
    assert rec["level"].name == "WARNING"
    assert rec["extra"]["exchange"] == "BINANCE" and rec["extra"]["symbol"] == "AAA-USDT"
    msg = rec["message"]
    assert "sequence gap" in msg and "expected 106" in msg and "got 115" in msg, msg
    assert "REST snapshot" in msg, msg
    assert adapter.counters["book.gap.sequence"] == 1
    # The rebuild is logged too (INFO), with the same context.
    records.clear()
    adapter.on_rest(out.actions[0], 200, _snapshot(117), 5)
    (done,) = records
    assert done["level"].name == "INFO" and "resynced" in done["message"]
    assert (done["extra"]["exchange"], done["extra"]["symbol"]) == ("BINANCE", "AAA-USDT")


def test_a_gap_storm_on_one_symbol_logs_a_bounded_number_of_lines(records: list[Any]) -> None:
    now = [0.0]
    books = Books("EX", range_rule)
    books.log_limit = LogLimit(burst=5, interval=60.0, clock=lambda: now[0])
    books.add("A-B")
    books.add("C-D")
    seq = 0
    for i in range(1000):
        # 999 gaps within a second, the last one after the interval: it carries the summary.
        now[0] += 60.0 if i == 999 else 0.001
        out = Output()
        assert books.snapshot("A-B", [["9", "1"]], [["11", "1"]], seq, out)
        books.delta("A-B", [["10", "1"]], [], out, first=seq + 5, last=seq + 6)   # a hole every time
        assert [type(a) for a in out.actions] == [Resync]
        seq += 10
    assert books.counters["book.gap.sequence"] == 1000
    gaps = [r for r in records if r["level"].name == "WARNING"]
    assert 5 <= len(gaps) <= 7, [r["message"] for r in gaps]
    assert all(r["extra"]["symbol"] == "A-B" and r["extra"]["exchange"] == "EX" for r in gaps)
    assert "994 more like this not logged" in gaps[-1]["message"], gaps[-1]["message"]
    assert len(records) <= 20                              # resync completions are limited as well
    # Another symbol has its own budget: a storm on A-B does not hide C-D's first gap.
    records.clear()
    out = Output()
    books.snapshot("C-D", [["9", "1"]], [["11", "1"]], 0, out)
    books.delta("C-D", [["10", "1"]], [], out, first=5, last=6)
    assert [r["extra"]["symbol"] for r in records if r["level"].name == "WARNING"] == ["C-D"]


def test_log_limit_gives_the_burst_back_after_a_quiet_interval() -> None:
    now = [0.0]
    limit = LogLimit(burst=2, interval=10.0, clock=lambda: now[0])
    assert [limit.check("k") for _ in range(5)] == [0, 0, None, None, None]
    now[0] = 10.0
    assert limit.check("k") == 3           # the summary line: three left out
    assert limit.check("k") is None
    now[0] = 25.0
    assert limit.check("k") == 1
    now[0] = 40.0                          # quiet for a whole interval
    assert [limit.check("k") for _ in range(3)] == [0, 0, None]
    assert limit.check("other") == 0


def test_checksum_and_crossed_books_say_what_broke(records: list[Any]) -> None:
    books = Books("EX", range_rule, checksum=lambda book: 1)
    books.add("A-B")
    out = Output()
    assert books.snapshot("A-B", [["9", "1"]], [["11", "1"]], 1, out)
    books.delta("A-B", [["10", "1"]], [], out, first=2, last=2, checksum=2)
    assert books.snapshot("A-B", [["9", "1"]], [["11", "1"]], 3, out)
    books.delta("A-B", [["12", "1"]], [], out, first=4, last=4)            # bid above the ask
    msgs = [r["message"] for r in records if r["level"].name == "WARNING"]
    assert len(msgs) == 2 and "checksum mismatch" in msgs[0] and "crossed" in msgs[1], msgs
    assert all("resync requested" in m for m in msgs), msgs


def test_disconnect_is_one_line_not_one_per_symbol(records: list[Any]) -> None:
    books = Books("EX", range_rule)
    for i in range(50):
        books.add(f"S{i}-USD")
    books.invalidate_all("disconnected: dropped", Output())
    assert len(records) == 1 and "50 book(s)" in records[0]["message"]
    assert records[0]["extra"]["exchange"] == "EX"
    assert books.counters["book.gap.disconnected: dropped"] == 50


def test_unknown_subscribed_symbol_logs_with_symbol_context(records: list[Any]) -> None:
    sym = Symbol.parse("BTC-USDT", exchange_symbol="BTCUSDT")
    adapter = BinanceSpot(Subscription({"trades": ["BTC-USDT", "NOPE-USDT"]}), symbols=[sym])
    adapter.connections()
    (rec,) = [r for r in records if "unknown symbol" in r["message"]]
    assert rec["level"].name == "WARNING"
    assert rec["extra"]["exchange"] == "BINANCE" and rec["extra"]["symbol"] == "NOPE-USDT"
    assert adapter.counters["subscription.unknown_symbol"] == 1


def test_adapter_errors_bind_the_exchange_and_the_symbol_when_known(records: list[Any]) -> None:
    adapter = _binance()
    adapter.on_message("c", "not json", 1)
    adapter.on_rest(Fetch("http://x/depth", 1, "snapshot", "AAA-USDT"), 503, None, 2)
    parse, rest = records
    assert parse["extra"]["exchange"] == "BINANCE" and "symbol" not in parse["extra"]
    assert rest["extra"]["exchange"] == "BINANCE" and rest["extra"]["symbol"] == "AAA-USDT"
    for _ in range(100):
        adapter.on_message("c", "not json", 3)
    assert adapter.counters["errors"] == 102
    assert len(records) <= 2 + LogLimit().burst


class _Publisher:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.counts: dict[str, int] = {}

    def publish(self, ev: Any) -> None:
        self.events.append(ev)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


def test_driver_logs_a_resync_with_symbol_context(records: list[Any]) -> None:
    adapter = _binance()
    driver = Driver(adapter, _Publisher())
    spawned: list[Any] = []
    driver._spawn = lambda coro: spawned.append(coro.close())      # type: ignore[method-assign]

    out = Output()
    out.actions.append(Resync("AAA-USDT", "requested"))
    asyncio.run(driver.handle(out))
    assert spawned, "the snapshot fetch was started"
    mine = [r for r in records if "book resync" in r["message"]]
    (rec,) = mine
    assert (rec["extra"]["exchange"], rec["extra"]["symbol"]) == ("BINANCE", "AAA-USDT")
    assert "REST snapshot" in rec["message"] and "requested" in rec["message"]


def test_resubscribing_adapters_say_so() -> None:
    from gateways.adapter import describe_resync

    assert describe_resync([Send("c", "{}")]) == "resync by resubscribe"
    assert describe_resync([Fetch("u", 1, "snapshot", "A-B")]) == "resync by REST snapshot"
    assert "pending" in describe_resync([])
