"""Rows: how an event and its header become a storage row, per channel, and back.

One row per message. Columns: ``gateway_id`` (the publisher), ``epoch``, ``seq`` (the per-topic sequence
number), ``topic``, ``kind``, ``timestamp``, ``receipt_timestamp`` (int ns), then the
kind's fields from ``cryptofeed_types/schema.py``. A channel holding several kinds (``book``:
snapshot + delta, ``l3``) has the union of their fields; ``kind`` tells them apart.

Decimals are stored as their exact wire strings (see docs/storage.md for why not decimal128),
levels as lists of ``{price, size}`` (strings), orders as lists of ``{id, side, price, size}``,
maps as JSON text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pyarrow as pa

from bus.codec import Header
from cryptofeed_types.events import EVENT_CLASSES, Event
from cryptofeed_types.schema import KINDS

META = (("gateway_id", pa.string()), ("epoch", pa.int64()), ("seq", pa.int64()), ("topic", pa.string()),
        ("kind", pa.string()), ("timestamp", pa.int64()), ("receipt_timestamp", pa.int64()))
LEVEL = pa.list_(pa.struct([("price", pa.string()), ("size", pa.string())]))
ORDER = pa.list_(pa.struct([("id", pa.string()), ("side", pa.string()), ("price", pa.string()),
                            ("size", pa.string())]))
ARROW_TYPES = {"dec": pa.string(), "dec?": pa.string(), "str": pa.string(), "str?": pa.string(),
               "int": pa.int64(), "int?": pa.int64(), "bool?": pa.bool_(), "levels": LEVEL, "orders": ORDER,
               "map": pa.string()}


def _channel_fields() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for k in KINDS:
        fields = out.setdefault(k.channel, {})
        for name, typ in k.fields:
            fields.setdefault(name, typ)
    return out


CHANNEL_FIELDS: dict[str, dict[str, str]] = _channel_fields()
BOOK_CHANNELS = frozenset({"book", "l3"})
SCHEMAS: dict[str, pa.Schema] = {
    ch: pa.schema(list(META) + [(n, ARROW_TYPES[t]) for n, t in fields.items()])
    for ch, fields in CHANNEL_FIELDS.items()}


_SPECIAL: dict[type, tuple[tuple[str, str], ...]] = {}


def to_row(topic: str, header: Header, event: Event) -> dict[str, Any]:
    """One storage row (plain Python values, exact strings) for ``event``."""
    row = event.wire_body()
    cls = type(event)
    special = _SPECIAL.get(cls)
    if special is None:
        special = _SPECIAL[cls] = tuple((n, t) for n, t in cls.TYPES.items() if t in ("levels", "orders", "map"))
    for name, typ in special:
        v = row.get(name)
        if v is None:
            continue
        if typ == "levels":
            row[name] = [{"price": p, "size": s} for p, s in v]
        elif typ == "orders":
            row[name] = [{"id": i, "side": sd, "price": p, "size": s} for i, sd, p, s in v]
        else:
            row[name] = orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS).decode()
    row["gateway_id"] = header.gateway
    row["epoch"] = header.epoch
    row["seq"] = header.seq
    row["topic"] = topic
    row["timestamp"] = event.timestamp
    row["receipt_timestamp"] = event.receipt_timestamp
    return row


def from_row(row: dict[str, Any]) -> Event:
    """The event a row was made from (exactly: decimals are the stored strings)."""
    cls = EVENT_CLASSES[row["kind"]]
    body: dict[str, Any] = {}
    for name, typ in cls.TYPES.items():
        v = row.get(name)
        if v is not None:
            if typ == "levels":
                v = [[lv["price"], lv["size"]] for lv in v]
            elif typ == "orders":
                v = [[o["id"], o["side"], o["price"], o["size"]] for o in v]
            elif typ == "map":
                v = orjson.loads(v)
        body[name] = v
    return cls.from_wire(body, row["timestamp"], row["receipt_timestamp"])


def to_table(channel: str, rows: Iterable[dict[str, Any]]) -> pa.Table:
    """An Arrow table of ``rows`` with the channel's schema."""
    return pa.Table.from_pylist(list(rows), schema=SCHEMAS[channel])


_DAY_NS = 86_400_000_000_000
_partition_cache: dict[tuple[str, int], tuple[str, str, str, str]] = {}


def partition_of(topic: str, event: Event) -> tuple[str, str, str, str]:
    """(channel, exchange, symbol, day) from the topic keys and the receipt time (UTC day)."""
    day_n = event.receipt_timestamp // _DAY_NS
    key = _partition_cache.get((topic, day_n))
    if key is not None:
        return key
    import time as _t

    parts = topic[:-1].split(".")
    channel = parts[0]
    key1 = parts[1] if len(parts) > 1 and parts[1] else "_"
    key2 = parts[2] if len(parts) > 2 and parts[2] else "_"
    if event.TOPIC_KEYS == ("symbol",):   # nbbo: no exchange of its own
        key1, key2 = "_", key1
    # Topic parts are ASCII without '.', but never let one name a path outside the partition.
    key1, key2 = (k.replace("/", "_").replace("\\", "_") for k in (key1, key2))
    day = _t.strftime("%Y-%m-%d", _t.gmtime(day_n * 86_400))
    if len(_partition_cache) > 100_000:
        _partition_cache.clear()
    key = _partition_cache[(topic, day_n)] = (channel, key1, key2, day)
    return key
