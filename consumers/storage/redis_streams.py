"""Redis Streams store: one stream per topic, trimmed by length (``MAXLEN ~``).

Stream key: ``<key_prefix><topic>`` (default ``ff:trades.BINANCE.BTC-USDT.``). Entry ids are
Redis' own (``*``, so ``XRANGE`` by time works). Entry fields: ``gateway_id``, ``epoch``,
``seq``, ``kind``, ``timestamp``, ``receipt_timestamp`` and the event's fields as exact
strings; levels/orders/maps as JSON text (see consumers/storage/rows.py); nil fields are
left out. Batches go in one pipeline (no MULTI). After a failed batch the retry first reads
the newest entry of each stream concerned and skips rows at or below its (epoch, seq), so a
batch that reached the server before the connection broke is not written twice.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis

from bus.codec import Header
from consumers.storage import rows as R
from consumers.storage.buffered import BufferedWriter
from cryptofeed_types.events import Event


def to_fields(topic: str, header: Header, event: Event) -> dict[str, str | int]:
    """The stream entry of one message (exact strings; nil fields omitted)."""
    row = R.to_row(topic, header, event)
    out: dict[str, str | int] = {}
    for k, v in row.items():
        if v is None or k == "topic":
            continue
        if type(v) is list:
            v = orjson.dumps(v).decode()
        elif type(v) is bool:
            v = int(v)
        out[k] = v
    return out


class RedisBackend:
    """redis-py pipelines; used through :class:`BufferedWriter`."""

    def __init__(self, url: str, *, maxlen: int | None = 1_000_000, socket_timeout: float = 5.0) -> None:
        self.url = url
        self.maxlen = maxlen
        self.socket_timeout = socket_timeout
        self.client: redis.Redis | None = None

    def connect(self) -> None:
        self.client = redis.Redis.from_url(self.url, socket_timeout=self.socket_timeout,
                                           socket_connect_timeout=self.socket_timeout)
        self.client.ping()

    def _connected(self) -> redis.Redis:
        # BufferedWriter writes only after connect() succeeded.
        assert self.client is not None
        return self.client

    def write(self, batch: list[tuple[str, dict]]) -> None:
        pipe = self._connected().pipeline(transaction=False)
        maxlen = self.maxlen
        for key, fields in batch:
            pipe.xadd(key, fields, maxlen=maxlen, approximate=True)
        pipe.execute()

    def write_retry(self, batch: list[tuple[str, dict]]) -> None:
        client = self._connected()
        last: dict[str, tuple[int, int]] = {}
        for key in {k for k, _ in batch}:
            newest = client.xrevrange(key, count=1)
            if newest:
                f = newest[0][1]
                # Nil fields come only from XCLAIM/XREADGROUP of deleted entries, never from XREVRANGE.
                assert f is not None
                last[key] = (int(f.get(b"epoch", 0)), int(f.get(b"seq", 0)))
        todo = [(k, f) for k, f in batch
                if not (f["seq"] and k in last and (f["epoch"], f["seq"]) <= last[k])]
        if todo:
            self.write(todo)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class RedisStreamsStore:
    """Store interface (write/tick/close/counters) over a :class:`BufferedWriter`."""

    def __init__(self, url: str, *, key_prefix: str = "ff:", maxlen: int | None = 1_000_000, **writer: Any) -> None:
        self.key_prefix = key_prefix
        self.writer = BufferedWriter(RedisBackend(url, maxlen=maxlen), name="redis", **writer)
        self.counters = self.writer.counters

    def write(self, topic: str, header: Header, event: Event) -> None:
        self.writer.put((self.key_prefix + topic, to_fields(topic, header, event)))

    def tick(self, now: float | None = None) -> None:
        """Nothing to do: the writer thread flushes by size and time."""

    def close(self) -> None:
        self.writer.close()
