"""Normalized market-data types for feedfabric, compiled with Cython.

- ``events``: every event kind (Trade, L2Delta, Heartbeat, ...) as immutable cdef classes,
  generated from ``schema.py``.
- ``symbols``: the Symbol type and its normalized text form.
- ``book``: the L2 order-book engine and exchange checksum helpers.
- ``timestamps``: exchange timestamp text (ISO 8601, decimal seconds) to integer ns, in C.
"""

from cryptofeed_types.book import BookSide, OrderBook, kraken_checksum, okx_checksum, price_key
from cryptofeed_types.events import (
    BBO,
    EVENT_CLASSES,
    NBBO,
    Balance,
    Candle,
    Event,
    Fill,
    Funding,
    Gap,
    Heartbeat,
    IndexPrice,
    L2Delta,
    L2Snapshot,
    L3Delta,
    L3Snapshot,
    Liquidation,
    MarkPrice,
    OpenInterest,
    OrderInfo,
    Position,
    Reset,
    Status,
    Ticker,
    Trade,
    dec_str,
)
from cryptofeed_types.symbols import FUTURE, OPTION, PERPETUAL, SPOT, Symbol
from cryptofeed_types.timestamps import iso_ns, seconds_ns

__all__ = [
    "BBO", "EVENT_CLASSES", "Balance", "BookSide", "Candle", "Event", "Fill", "Funding", "Gap", "Heartbeat",
    "IndexPrice", "L2Delta", "L2Snapshot", "L3Delta", "L3Snapshot", "Liquidation", "MarkPrice", "NBBO", "OpenInterest",
    "OrderBook", "OrderInfo", "Position", "Reset", "Status", "Symbol", "Ticker", "Trade", "dec_str",
    "kraken_checksum", "okx_checksum", "price_key", "SPOT", "PERPETUAL", "FUTURE", "OPTION", "iso_ns", "seconds_ns",
]
