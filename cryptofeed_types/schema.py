"""The single source of truth for every event kind: its fields and their wire types.

`_codegen.py` renders `events.pyx` (the compiled cdef classes) from this table,
`bus/codec.py` uses it to route kinds, and docs/wire.md documents it. A client in
another language needs only this table (as printed in docs/wire.md).

Field types:

========  ==========================================  =========================
type      Python API                                  wire (msgpack)
========  ==========================================  =========================
dec       decimal.Decimal (exact)                     str, plain decimal text
dec?      Decimal or None                             str or nil
str       str                                         str
str?      str or None                                 str or nil
int       int                                         int
int?      int or None                                 int or nil
bool?     bool or None                                bool or nil
levels    tuple of (Decimal price, Decimal size)      array of [str, str]
orders    tuple of (id, side, Decimal, Decimal)       array of [str, str, str, str]
map       dict (str -> int/str/float/map)             map
========  ==========================================  =========================

Every event also has ``timestamp`` (exchange time, int ns or None) and
``receipt_timestamp`` (int ns); they travel in the frame header, not the body.
"""

from __future__ import annotations

from dataclasses import dataclass

FIELD_TYPES = ("dec", "dec?", "str", "str?", "int", "int?", "bool?", "levels", "orders", "map")


@dataclass(frozen=True)
class Kind:
    """One event kind: class name, wire kind tag, topic channel and fields (name, type)."""

    cls: str
    kind: str
    channel: str
    fields: tuple[tuple[str, str], ...]
    doc: str
    # Which fields name the topic after the channel (joined with '.').
    topic_keys: tuple[str, ...] = ("exchange", "symbol")
    # Scalar kinds are served last-value by the snapshot service.
    scalar: bool = False


_MD = (("exchange", "str"), ("symbol", "str"))
_XS = (("exchange_symbol", "str?"),)

KINDS: tuple[Kind, ...] = (
    Kind("Trade", "trade", "trades",
         _MD + (("side", "str"), ("amount", "dec"), ("price", "dec"), ("id", "str?"), ("type", "str?")) + _XS,
         "A public trade. side is the taker side: 'buy' or 'sell'."),
    Kind("Ticker", "ticker", "ticker",
         _MD + (("bid", "dec?"), ("ask", "dec?"), ("last", "dec?"), ("volume", "dec?")) + _XS,
         "Ticker: best bid/ask as the exchange's ticker channel reports them, last price, 24h base volume.",
         scalar=True),
    Kind("BBO", "bbo", "bbo",
         _MD + (("bid", "dec?"), ("bid_size", "dec?"), ("ask", "dec?"), ("ask_size", "dec?"), ("sequence", "int?")) + _XS,
         "Top of book (L1). Published by a gateway whenever the top of its L2 book changes, "
         "or from the exchange's own BBO channel.", scalar=True),
    Kind("NBBO", "nbbo", "nbbo",
         (("symbol", "str"), ("bid", "dec?"), ("bid_size", "dec?"), ("bid_exchange", "str?"),
          ("ask", "dec?"), ("ask_size", "dec?"), ("ask_exchange", "str?")),
         "National best bid/offer across exchanges for one normalized symbol, published by the nbbo consumer "
         "when it changes; a side is nil when no valid exchange quotes it.",
         topic_keys=("symbol",), scalar=True),
    Kind("L2Snapshot", "book_snapshot", "book",
         _MD + (("bids", "levels"), ("asks", "levels"), ("sequence", "int?"), ("checksum", "int?")) + _XS,
         "A full L2 book: bids best (highest) first, asks best (lowest) first."),
    Kind("L2Delta", "book_delta", "book",
         _MD + (("bids", "levels"), ("asks", "levels"), ("sequence", "int?"), ("checksum", "int?")) + _XS,
         "An atomic group of L2 level changes; size 0 deletes the level."),
    Kind("L3Snapshot", "l3_snapshot", "l3",
         _MD + (("orders", "orders"), ("sequence", "int?")) + _XS,
         "A full order-level book: (order id, side, price, size) per resting order."),
    Kind("L3Delta", "l3_delta", "l3",
         _MD + (("orders", "orders"), ("sequence", "int?")) + _XS,
         "An atomic group of order changes: a new size for an order id; size 0 removes the order."),
    Kind("Candle", "candle", "candles",
         _MD + (("start", "int"), ("stop", "int"), ("interval", "str"), ("trades", "int?"),
                ("open", "dec"), ("close", "dec"), ("high", "dec"), ("low", "dec"), ("volume", "dec"),
                ("closed", "bool?")) + _XS,
         "OHLCV candle; start/stop in ns; closed is None when the exchange does not say."),
    Kind("Funding", "funding", "funding",
         _MD + (("rate", "dec"), ("mark_price", "dec?"), ("next_funding_time", "int?"),
                ("predicted_rate", "dec?")) + _XS,
         "Funding rate of a perpetual swap.", scalar=True),
    Kind("OpenInterest", "open_interest", "open_interest",
         _MD + (("open_interest", "dec"),) + _XS,
         "Open interest in the exchange's unit (contracts or base currency).", scalar=True),
    Kind("Liquidation", "liquidation", "liquidations",
         _MD + (("side", "str"), ("quantity", "dec"), ("price", "dec"), ("id", "str?"), ("status", "str?")) + _XS,
         "A liquidation order; side is the side of the liquidation order."),
    Kind("IndexPrice", "index", "index",
         _MD + (("price", "dec"),) + _XS,
         "Index price of an underlying.", scalar=True),
    Kind("MarkPrice", "mark", "mark",
         _MD + (("price", "dec"),) + _XS,
         "Mark price of a derivative.", scalar=True),
    Kind("OrderInfo", "order", "orders",
         _MD + (("id", "str"), ("client_order_id", "str?"), ("side", "str"), ("status", "str"), ("type", "str"),
                ("price", "dec?"), ("amount", "dec"), ("remaining", "dec?"), ("account", "str?")) + _XS,
         "Authenticated: an order's state."),
    Kind("Fill", "fill", "fills",
         _MD + (("id", "str?"), ("order_id", "str?"), ("side", "str"), ("amount", "dec"), ("price", "dec"),
                ("fee", "dec?"), ("fee_currency", "str?"), ("liquidity", "str?"), ("type", "str?"),
                ("account", "str?")) + _XS,
         "Authenticated: one of our fills. liquidity is 'maker' or 'taker'."),
    Kind("Balance", "balance", "balances",
         (("exchange", "str"), ("currency", "str"), ("balance", "dec"), ("reserved", "dec?"), ("account", "str?")),
         "Authenticated: balance of one currency.", topic_keys=("exchange", "currency")),
    Kind("Position", "position", "positions",
         _MD + (("side", "str"), ("size", "dec"), ("entry_price", "dec?"), ("unrealised_pnl", "dec?"),
                ("account", "str?")) + _XS,
         "Authenticated: an open position."),
    Kind("Heartbeat", "heartbeat", "heartbeat",
         (("gateway", "str"), ("counters", "map"), ("feeds", "map")),
         "Sent by every publisher about once a second: counters (messages, bytes, errors, drops, per-channel counts) "
         "and the state of each feed.", topic_keys=("gateway",)),
    Kind("Status", "status", "status",
         (("exchange", "str"), ("feed", "str"), ("state", "str"), ("reason", "str?")),
         "A feed changed state: connected, disconnected, resyncing or stale; the feed 'system' carries the "
         "exchange's own system status (online, maintenance, cancel_only, post_only, partial).",
         topic_keys=("exchange", "feed")),
    Kind("Gap", "gap", "gap",
         (("exchange", "str"), ("symbol", "str?"), ("channel", "str"), ("expected", "int?"), ("received", "int?"),
          ("reason", "str")),
         "A sequence break: the named book (or the whole feed when symbol is nil) is invalid until a Reset.",
         topic_keys=("exchange", "symbol")),
    Kind("Reset", "reset", "reset",
         (("exchange", "str"), ("symbol", "str?"), ("channel", "str"), ("reason", "str")),
         "A book was rebuilt: the L2Snapshot that follows on the book topic replaces it.",
         topic_keys=("exchange", "symbol")),
)

BY_KIND: dict[str, Kind] = {k.kind: k for k in KINDS}
BY_CLASS: dict[str, Kind] = {k.cls: k for k in KINDS}
