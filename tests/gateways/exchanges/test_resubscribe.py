"""Resubscription of broken books, sans-I/O with a fake clock: OKX, Bybit, Deribit, BitMEX,
Kraken, Kraken Futures and Coinbase resync a book by unsubscribe + subscribe. A symbol is resubscribed at most once per minimum
interval (a bad snapshot must not trigger another resubscribe at once), deferred requests are
sent by the timer once allowed, and a resubscription whose snapshot never comes is retried."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cryptofeed_types import PERPETUAL, SPOT, Symbol
from gateways import exchanges
from gateways.adapter import Output, Resync, Send, Subscription
from gateways.books import SYNCED
from gateways.resync import Resubscriber

S = 1_000_000_000

# exchange → (symbol, connection, snapshot message, minimum interval (s))
CASES = {
    "OKX": (Symbol("BTC", "USDT", SPOT, exchange_symbol="BTC-USDT"), "public",
            {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "snapshot",
             "data": [{"bids": [["100", "1", "0", "1"]], "asks": [["101", "1", "0", "1"]], "ts": "1",
                       "seqId": 5, "prevSeqId": -1}]}, 15),
    "BYBIT": (Symbol("BTC", "USDT", PERPETUAL, exchange_symbol="BTCUSDT", settle="USDT"), "linear",
              {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1,
               "data": {"s": "BTCUSDT", "b": [["100", "1"]], "a": [["101", "1"]], "u": 5, "seq": 1}}, 5),
    "DERIBIT": (Symbol("BTC", "USD", PERPETUAL, exchange_symbol="BTC-PERPETUAL"), "ws",
                {"jsonrpc": "2.0", "method": "subscription",
                 "params": {"channel": "book.BTC-PERPETUAL.100ms",
                            "data": {"type": "snapshot", "timestamp": 1, "instrument_name": "BTC-PERPETUAL",
                                     "change_id": 5, "bids": [["new", 100.0, 1.0]],
                                     "asks": [["new", 101.0, 1.0]]}}}, 5),
    "BITMEX": (Symbol("BTC", "USD", PERPETUAL, exchange_symbol="XBTUSD", settle="BTC"), "ws",
               {"table": "orderBookL2", "action": "partial",
                "data": [{"symbol": "XBTUSD", "id": 1, "side": "Buy", "size": 1, "price": 100.0},
                         {"symbol": "XBTUSD", "id": 2, "side": "Sell", "size": 1, "price": 101.0}]}, 10),
    "KRAKEN": (Symbol("BTC", "USD", SPOT, exchange_symbol="BTC/USD", tick_size="0.1", lot_size="0.00000001"),
               "KRAKEN.0",
               {"channel": "book", "type": "snapshot",
                "data": [{"symbol": "BTC/USD", "bids": [{"price": 100.0, "qty": 1.0}],
                          "asks": [{"price": 101.0, "qty": 1.0}]}]}, 5),
    "KRAKEN_FUTURES": (Symbol("BTC", "USD", PERPETUAL, exchange_symbol="PF_XBTUSD"), "KRAKEN_FUTURES.0",
                       {"feed": "book_snapshot", "product_id": "PF_XBTUSD", "seq": 1, "timestamp": 1,
                        "bids": [{"price": 100, "qty": 1}], "asks": [{"price": 101, "qty": 1}]}, 5),
    "COINBASE": (Symbol("BTC", "USD", SPOT, exchange_symbol="BTC-USD"), "COINBASE.0",
                 {"channel": "l2_data", "timestamp": "2023-02-09T20:32:50.714964855Z", "sequence_num": 0,
                  "events": [{"type": "snapshot", "product_id": "BTC-USD", "updates": [
                      {"side": "bid", "event_time": "2023-02-09T20:32:50Z", "price_level": "100",
                       "new_quantity": "1"},
                      {"side": "offer", "event_time": "2023-02-09T20:32:50Z", "price_level": "101",
                       "new_quantity": "1"}]}]}, 5),
}


def _sends(out: Output) -> list[str]:
    return [a.payload for a in out.actions if isinstance(a, Send)]  # type: ignore[misc]


def _setup(exchange: str):
    sym, conn, snapshot, min_interval = CASES[exchange]
    adapter = exchanges.get(exchange)(Subscription({"l2_book": [sym.normalized]}), symbols=[sym])
    spec_ids = [s.id for s in adapter.connections()]
    conn = next(c for c in spec_ids if c.lower().endswith(conn) or c == conn)
    raw = json.dumps(snapshot)
    assert adapter.on_message(conn, raw, 1).events, "the snapshot builds the book"
    assert adapter.books.state(sym.normalized) == SYNCED
    return adapter, sym.normalized, conn, raw, min_interval * S


def _break(adapter, symbol: str, t: int) -> Output:
    """A broken book (sequence gap, bad checksum...), then its resync at time ``t``."""
    adapter.books.invalidate(symbol, "sequence", Output(), resync=False)
    return adapter.resync(symbol, t)


def _resubscribes(adapter) -> int:
    return adapter.counters["book.resubscribe"] + adapter.counters["book.resubscribes"]


@pytest.mark.parametrize("exchange", sorted(CASES))
def test_resubscribes_are_throttled_and_retried(exchange: str) -> None:
    adapter, symbol, conn, snapshot, min_interval = _setup(exchange)
    assert adapter.timer_interval and adapter.timer_interval <= 5.0
    t0 = 1_000 * S
    first = _break(adapter, symbol, t0)
    assert len(_sends(first)) == 2 and "unsubscribe" in _sends(first)[0]
    assert all(a.conn == conn for a in first.actions if isinstance(a, Send))
    assert _resubscribes(adapter) == 1

    # The new snapshot is bad at once: the next resync is deferred, not sent.
    assert _sends(_break(adapter, symbol, t0 + S)) == []
    assert adapter.counters["book.resubscribe_deferred"] == 1
    assert _sends(adapter.on_timer(t0 + min_interval - 1)) == []
    # The timer sends it once the minimum interval has passed.
    deferred = adapter.on_timer(t0 + min_interval)
    assert len(_sends(deferred)) == 2 and _resubscribes(adapter) == 2
    assert _sends(adapter.on_timer(t0 + min_interval + 5 * S)) == []

    # Its snapshot never comes: retried 30 s later, and again 30 s after that.
    t1 = t0 + min_interval
    assert _sends(adapter.on_timer(t1 + 29 * S)) == []
    assert len(_sends(adapter.on_timer(t1 + 30 * S))) == 2
    assert adapter.counters["book.resubscribe_retries"] == 1
    assert len(_sends(adapter.on_timer(t1 + 60 * S))) == 2
    assert adapter.counters["book.resubscribe_retries"] == 2

    # The snapshot arrives: nothing more to do.
    adapter.on_message(conn, snapshot, t1 + 61 * S)
    assert adapter.books.state(symbol) == SYNCED
    assert _sends(adapter.on_timer(t1 + 200 * S)) == []
    assert adapter.error_counts() == {}


@pytest.mark.parametrize("exchange", ["OKX", "BYBIT", "DERIBIT", "BITMEX"])
def test_bad_snapshot_right_after_a_resubscribe_waits(exchange: str) -> None:
    """The Books' own resync request (a Resync action the driver turns into adapter.resync)."""
    adapter, symbol, conn, _, min_interval = _setup(exchange)
    t0 = 1_000 * S
    out = Output()
    adapter.books.invalidate(symbol, "checksum", out)
    assert out.actions == [Resync(symbol, "checksum")]
    assert len(_sends(adapter.resync(symbol, t0))) == 2
    out = Output()
    adapter.books.invalidate(symbol, "checksum", out)
    assert _sends(adapter.resync(symbol, t0 + 1)) == []
    assert len(_sends(adapter.on_timer(t0 + min_interval))) == 2


def test_callback_adapters_throttle_their_own_resubscribes() -> None:
    """Kraken resubscribes from the Books' callback (a bad checksum): the clock is the message's."""
    adapter, symbol, conn, snapshot, _ = _setup("KRAKEN")
    t0 = 1_000 * S
    adapter.on_message(conn, '{"channel":"heartbeat"}', t0)
    out = Output()
    adapter.books.invalidate(symbol, "checksum", out)
    assert len(_sends(out)) == 2
    adapter.on_message(conn, '{"channel":"heartbeat"}', t0 + S)
    out = Output()
    adapter.books.invalidate(symbol, "checksum", out)
    assert _sends(out) == [] and adapter.counters["book.resubscribe_deferred"] == 1
    assert len(_sends(adapter.on_timer(t0 + 5 * S))) == 2


@pytest.mark.parametrize("exchange", sorted(CASES))
def test_disconnect_drops_pending_resubscribes(exchange: str) -> None:
    adapter, symbol, conn, _, min_interval = _setup(exchange)
    t0 = 1_000 * S
    _break(adapter, symbol, t0)
    _break(adapter, symbol, t0 + S)                # deferred
    adapter.on_close(conn, t0 + 2 * S, "test")     # the reconnection subscribes afresh
    assert _sends(adapter.on_timer(t0 + 10 * min_interval)) == []


def test_okx_connection_budget() -> None:
    # 200 resubscribes an hour per connection (480 subscribe requests / hour, 2 per resubscribe),
    # a burst of 20: the 21st symbol in the same instant waits for the bucket to refill.
    counters: Counter[str] = Counter()
    r = Resubscriber(counters, min_interval_ns=15 * S, per_hour=200, burst=20)
    t = 10 * S
    sent = [r.request(f"S{i}", t, "public") for i in range(21)]
    assert sent == [True] * 20 + [False]
    assert r.request("OTHER", t, "business")    # another connection has its own budget
    assert r.due(t + 10 * S, lambda s: False) == []
    assert r.due(t + 18 * S, lambda s: False) == ["S20"]   # 3600 s / 200 = 18 s per token
    assert counters["book.resubscribe_deferred"] == 1
