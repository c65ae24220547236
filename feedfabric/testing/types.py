"""Deterministic sample events of every kind, derived from ``cryptofeed_types.schema``.

Used by the wire test vectors (tests/vectors/make_vectors.py), the codec benchmark
(bench/codec.py) and tests that need "one realistic event of each kind". The values
come from the schema's field types, so a kind added to schema.py is covered at once.
"""

from __future__ import annotations

from typing import Any

from cryptofeed_types.events import EVENT_CLASSES, Event

# Fixed instants (ns) so that everything built from these samples is reproducible.
EXCHANGE_TS = 1_700_000_000_123_456_789
RECEIPT_TS = 1_700_000_000_124_000_000

# Realistic values by field name; anything not named here gets a value by type.
_BY_NAME: dict[str, object] = {
    "exchange": "BINANCE", "symbol": "BTC-USDT", "exchange_symbol": "BTCUSDT", "gateway": "binance-1",
    "currency": "USDT", "side": "buy", "id": "7391823", "order_id": "8812-ab", "client_order_id": "my-42",
    "type": "limit", "status": "open", "state": "connected", "feed": "book", "channel": "book",
    "reason": "sequence gap", "interval": "1m", "liquidity": "maker", "fee_currency": "BNB", "account": "main",
    "price": "30238.80", "amount": "0.00120000", "quantity": "1.5", "size": "0.250", "bid": "30238.7",
    "ask": "30238.8", "bid_size": "1.06400000", "ask_size": "0.00300000", "last": "30238.80",
    "volume": "1234.56789000", "rate": "0.00010000", "mark_price": "30240.15", "predicted_rate": "-0.00002500",
    "open_interest": "81234.567", "open": "30200.00", "close": "30238.80", "high": "30250.10", "low": "30199.99",
    "fee": "0.00000120", "remaining": "0.00070000", "balance": "1000.00000000", "reserved": "12.5",
    "entry_price": "29876.5", "unrealised_pnl": "-3.14159", "start": 1_700_000_000_000_000_000,
    "stop": 1_700_000_059_999_999_999, "trades": 412, "sequence": 1234567890123, "checksum": -1218264915,
    "next_funding_time": 1_700_006_400_000_000_000, "expected": 1001, "received": 1003, "closed": True,
    "bids": (("30238.70", "1.06400000"), ("30238.50", "0.20000000"), ("30237.00", "0")),
    "asks": (("30238.80", "0.00300000"), ("30239.10", "2.10000000")),
    "orders": (("a1b2", "bid", "30238.70", "0.5"), ("c3d4", "ask", "30238.80", "0")),
    "counters": {"messages": 1234, "bytes": 567890, "errors": 0, "dropped": 0, "per_channel": {"trades": 1000}},
    "feeds": {"book": "connected", "trades": "connected"},
}
_BY_TYPE: dict[str, object] = {
    "dec": "1.5", "dec?": "1.5", "str": "x", "str?": "x", "int": 1, "int?": 1, "bool?": False,
    "levels": (("1", "2"),), "orders": (("o1", "bid", "1", "2"),), "map": {},
}


def sample_value(name: str, type_: str) -> object:
    """A realistic value for one field of the schema."""
    return _BY_NAME.get(name, _BY_TYPE[type_])


def sample_event(kind: str, *, full: bool = True) -> Event:
    """One event of ``kind`` (e.g. 'trade'); ``full=False`` leaves every optional field None
    and the exchange timestamp unknown."""
    cls = EVENT_CLASSES[kind]
    kwargs: dict[str, Any] = {}
    for name, type_ in cls.TYPES.items():
        if type_.endswith("?") and not full:
            kwargs[name] = None
        else:
            kwargs[name] = sample_value(name, type_)
        if kind.endswith("snapshot") and type_ in ("levels", "orders"):
            # A snapshot lists resting levels/orders only: size 0 means "delete" in deltas.
            kwargs[name] = tuple(row for row in kwargs[name] if row[-1] != "0")
    return cls(**kwargs, timestamp=EXCHANGE_TS if full else None, receipt_timestamp=RECEIPT_TS)


def sample_events(*, full: bool = True) -> list[Event]:
    """One event of every kind, in schema order."""
    return [sample_event(kind, full=full) for kind in EVENT_CLASSES]
