"""Every adapter builds its subscriptions the same way: a symbol the loaded instruments don't
know is left out (logged once, counted as ``subscription.unknown_symbol``), never a KeyError
that would stop the gateway; the known symbols are still subscribed."""

from __future__ import annotations

import pytest

from cryptofeed_types import FUTURE, PERPETUAL, SPOT, Symbol
from feedfabric.testing.logs import captured_logs
from gateways import exchanges
from gateways.adapter import CHANNELS, Subscription

# exchange id → (one known symbol with its exchange id, an unknown normalized symbol of the same kind)
KNOWN: dict[str, tuple[Symbol, str]] = {
    "BINANCE": (Symbol("BTC", "USDT", SPOT, exchange_symbol="BTCUSDT"), "NOPE-USDT"),
    "BINANCE_FUTURES": (Symbol("BTC", "USDT", PERPETUAL, exchange_symbol="BTCUSDT"), "NOPE-USDT-PERP"),
    "BINANCE_DELIVERY": (Symbol("BTC", "USD", PERPETUAL, exchange_symbol="BTCUSD_PERP"), "NOPE-USD-PERP"),
    "BITMEX": (Symbol("BTC", "USD", PERPETUAL, exchange_symbol="XBTUSD", settle="BTC"), "NOPE-USD-PERP"),
    "BYBIT": (Symbol("BTC", "USDT", PERPETUAL, exchange_symbol="BTCUSDT", settle="USDT"), "NOPE-USDT-PERP"),
    "COINBASE": (Symbol("BTC", "USD", SPOT, exchange_symbol="BTC-USD"), "NOPE-USD"),
    "DERIBIT": (Symbol("BTC", "USD", PERPETUAL, exchange_symbol="BTC-PERPETUAL"), "NOPE-USD-PERP"),
    "KRAKEN": (Symbol("BTC", "USD", SPOT, exchange_symbol="BTC/USD", tick_size="0.1", lot_size="0.00000001"),
               "NOPE-USD"),
    "KRAKEN_FUTURES": (Symbol("BTC", "USD", PERPETUAL, exchange_symbol="PF_XBTUSD"), "NOPE-USD-PERP"),
    "OKX": (Symbol("BTC", "USDT", PERPETUAL, exchange_symbol="BTC-USDT-SWAP"), "NOPE-USDT-PERP"),
}


def test_every_registered_adapter_is_covered() -> None:
    assert sorted(KNOWN) == exchanges.names()


@pytest.mark.parametrize("exchange", sorted(KNOWN))
def test_unknown_symbols_are_skipped_counted_and_logged(exchange: str) -> None:
    known, unknown = KNOWN[exchange]
    channels = {ch: [unknown, known.normalized] for ch in CHANNELS}
    adapter = exchanges.get(exchange)(Subscription(channels), symbols=[known])
    assert adapter.check_subscription() == [unknown]
    with captured_logs("WARNING") as lines:
        specs = adapter.connections()
        again = adapter.connections()          # building again neither raises nor counts again
    assert [s.id for s in specs] == [s.id for s in again]
    streams = {sym for spec in specs for _, sym in spec.streams}
    assert known.normalized in streams
    assert unknown not in streams
    text = "".join(m for spec in specs for m in spec.subscribe if isinstance(m, str))
    assert "NOPE" not in text
    assert adapter.counters["subscription.unknown_symbol"] == 1
    assert sum("unknown symbol" in ln and unknown in ln for ln in lines) == 1, lines
    assert adapter.error_counts() == {}


@pytest.mark.parametrize("exchange", sorted(KNOWN))
def test_nothing_known_gives_no_connection_and_no_error(exchange: str) -> None:
    _, unknown = KNOWN[exchange]
    adapter = exchanges.get(exchange)(Subscription({"trades": [unknown], "l2_book": [unknown]}), symbols=[])
    specs = adapter.connections()
    assert all(not spec.streams for spec in specs)
    assert adapter.counters["subscription.unknown_symbol"] == 1


def test_future_symbol_kinds_still_work() -> None:
    # A dated future known to the instruments is subscribed (the helper keeps known symbols of any kind).
    fut = Symbol("BTC", "USD", FUTURE, expiry="20991231", exchange_symbol="BTC-31DEC99")
    adapter = exchanges.get("DERIBIT")(Subscription({"trades": [fut.normalized]}), symbols=[fut])
    (spec,) = adapter.connections()
    assert spec.streams == (("trades", fut.normalized),)
