"""PostgreSQL store: one table per channel, rows batched with ``COPY`` (psycopg 3).

Table ``<table_prefix><channel>`` (default ``ff_trades``, ``ff_book`` ...), created on first
use: ``gateway_id text, epoch bigint, seq bigint, topic text, kind text, "timestamp" bigint,
receipt_timestamp bigint`` then the kind's fields — decimals as ``numeric`` (exact), strings
``text``, integers ``bigint``, booleans ``boolean``, levels/orders/maps ``jsonb`` — and an
index on ``(topic, epoch, seq)``. Each batch is one transaction (one COPY per channel). After
a failed batch (e.g. the connection died during COMMIT, outcome unknown) the retry first asks
which of its (topic, epoch, seq) are already there and copies only the others.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from psycopg import sql

from bus.codec import Header
from consumers.storage import rows as R
from consumers.storage.buffered import BufferedWriter
from cryptofeed_types.events import Event

PG_TYPES = {"dec": "numeric", "dec?": "numeric", "str": "text", "str?": "text", "int": "bigint", "int?": "bigint",
            "bool?": "boolean", "levels": "jsonb", "orders": "jsonb", "map": "jsonb"}
META_COLS = (("gateway_id", "text"), ("epoch", "bigint"), ("seq", "bigint"), ("topic", "text"), ("kind", "text"),
             ("timestamp", "bigint"), ("receipt_timestamp", "bigint"))


def columns(channel: str) -> list[tuple[str, str]]:
    """(column, SQL type) of a channel's table."""
    return list(META_COLS) + [(n, PG_TYPES[t]) for n, t in R.CHANNEL_FIELDS[channel].items()]


_PLANS: dict[type, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {}


def _plan(cls: type[Event]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(channel field names in column order, fields needing conversion) of an event class."""
    plan = _PLANS.get(cls)
    if plan is None:
        fields = R.CHANNEL_FIELDS[cls.CHANNEL]
        special = tuple((n, t) for n, t in cls.TYPES.items() if t in ("levels", "orders", "map"))
        plan = _PLANS[cls] = (tuple(fields), special)
    return plan


def to_record(topic: str, header: Header, event: Event) -> tuple[str, tuple]:
    """(channel, values in column order) for one message."""
    body = event.wire_body()
    names, special = _plan(type(event))
    for name, typ in special:
        v = body.get(name)
        if v is None:
            continue
        if typ == "levels":
            body[name] = orjson.dumps([{"price": p, "size": q} for p, q in v]).decode()
        elif typ == "orders":
            body[name] = orjson.dumps([{"id": i, "side": sd, "price": p, "size": q} for i, sd, p, q in v]).decode()
        else:
            body[name] = orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS).decode()
    get = body.get
    return event.CHANNEL, (header.gateway, header.epoch, header.seq, topic, body["kind"], event.timestamp,
                           event.receipt_timestamp, *[get(n) for n in names])


class PostgresBackend:
    """psycopg 3 COPY; used through :class:`BufferedWriter`."""

    def __init__(self, dsn: str, *, table_prefix: str = "ff_", connect_timeout: int = 5) -> None:
        self.dsn = dsn
        self.table_prefix = table_prefix
        self.connect_timeout = connect_timeout
        self.conn: psycopg.Connection | None = None
        self.ready: set[str] = set()

    def table(self, channel: str) -> sql.Identifier:
        return sql.Identifier(self.table_prefix + channel)

    def connect(self) -> None:
        self.conn = psycopg.connect(self.dsn, connect_timeout=self.connect_timeout)
        self.ready = set()

    def _connected(self) -> psycopg.Connection:
        # BufferedWriter writes only after connect() succeeded.
        assert self.conn is not None
        return self.conn

    def _ensure(self, channel: str) -> None:
        if channel in self.ready:
            return
        conn = self._connected()
        cols = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in columns(channel))
        with conn.transaction():
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(self.table(channel), cols))
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (topic, epoch, seq)").format(
                sql.Identifier(f"{self.table_prefix}{channel}_tes"), self.table(channel)))
        self.ready.add(channel)

    def _copy(self, by_channel: dict[str, list[tuple]]) -> None:
        for channel in by_channel:
            self._ensure(channel)
        conn = self._connected()
        with conn.transaction():
            cur = conn.cursor()
            for channel, records in by_channel.items():
                names = sql.SQL(", ").join(sql.Identifier(n) for n, _ in columns(channel))
                with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(self.table(channel), names)) as cp:
                    for rec in records:
                        cp.write_row(rec)

    @staticmethod
    def _group(batch: list[tuple[str, tuple]]) -> dict[str, list[tuple]]:
        out: dict[str, list[tuple]] = {}
        for channel, rec in batch:
            out.setdefault(channel, []).append(rec)
        return out

    def write(self, batch: list[tuple[str, tuple]]) -> None:
        self._copy(self._group(batch))

    def write_retry(self, batch: list[tuple[str, tuple]]) -> None:
        conn = self._connected()
        groups = self._group(batch)
        for channel, records in groups.items():
            self._ensure(channel)
            keys = [(r[3], r[1], r[2]) for r in records if r[2]]
            if not keys:
                continue
            q = sql.SQL("SELECT topic, epoch, seq FROM {} WHERE (topic, epoch, seq) IN "
                        "(SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[]))").format(self.table(channel))
            have = {tuple(r) for r in conn.execute(q, ([k[0] for k in keys], [k[1] for k in keys],
                                                           [k[2] for k in keys])).fetchall()}
            conn.commit()
            groups[channel] = [r for r in records if not (r[2] and (r[3], r[1], r[2]) in have)]
        self._copy({c: rs for c, rs in groups.items() if rs})

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None


class PostgresStore:
    """Store interface (write/tick/close/counters) over a :class:`BufferedWriter`."""

    def __init__(self, dsn: str, *, table_prefix: str = "ff_", **writer: Any) -> None:
        self.writer = BufferedWriter(PostgresBackend(dsn, table_prefix=table_prefix), name="postgres", **writer)
        self.counters = self.writer.counters

    def write(self, topic: str, header: Header, event: Event) -> None:
        self.writer.put(to_record(topic, header, event))

    def tick(self, now: float | None = None) -> None:
        """Nothing to do: the writer thread flushes by size and time."""

    def close(self) -> None:
        self.writer.close()
