"""The storage process: subscribe, hand every message to a store, commit, report.

A store has ``write(topic, header, event)``, ``tick(now)`` (time-based commit/flush),
``close()`` and ``counters`` (with ``acknowledged``: rows durably written so far). The
consumer commits on every tick (``tick_interval``, default 50 ms) so "acknowledged" trails
reception by at most that, and mirrors the store's counters into its heartbeat.

Run alone::

    python -m consumers.storage.consumer --name store --backend parquet --root /data/ff \\
        --source ipc:///run/ff/binance.pub,ipc:///run/ff/binance.snap --prefix trades. --publish ipc:///run/ff/store.pub
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from bus.endpoints import GatewayEndpoint
from bus.subscriber import Message
from consumers.base import Consumer


class StorageConsumer(Consumer):
    """Everything subscribed goes to ``store``; books are kept correct by the subscriber."""

    books = True

    def __init__(self, name: str, sources: Any, store: Any, prefixes: Sequence[str] | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("tick_interval", 0.05)
        super().__init__(name, sources, prefixes, **kwargs)
        self.store = store

    def handle(self, msg: Message) -> None:
        if msg.header.seq == 0 and msg.topic.startswith("status."):
            return  # subscriber-made staleness notes are not market data
        self.store.write(msg.topic, msg.header, msg.event)

    def tick(self, now: float) -> None:
        self.store.tick(now)
        self.counters.update(self.store.counters)

    def finish(self) -> None:
        self.store.close()
        self.counters.update(self.store.counters)


def make_store(backend: str, **options: Any) -> Any:
    """A store by name: parquet (root=...), redis (url=...), postgres (dsn=...)."""
    if backend == "parquet":
        from consumers.storage.parquet import ParquetStore
        return ParquetStore(options.pop("root"), **options)
    if backend == "redis":
        from consumers.storage.redis_streams import RedisStreamsStore
        return RedisStreamsStore(options.pop("url"), **options)
    if backend == "postgres":
        from consumers.storage.postgres import PostgresStore
        return PostgresStore(options.pop("dsn"), **options)
    raise ValueError(f"unknown storage backend {backend!r} (parquet, redis, postgres)")


def _endpoint(text: str) -> GatewayEndpoint:
    pub, _, snap = text.partition(",")
    return GatewayEndpoint(pub, snap or None)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="storage")
    ap.add_argument("--backend", default="parquet", choices=["parquet", "redis", "postgres"])
    ap.add_argument("--root", help="parquet: directory")
    ap.add_argument("--url", help="redis: redis://host:port/db")
    ap.add_argument("--dsn", help="postgres: libpq connection string")
    ap.add_argument("--source", action="append", required=True, help="PUB[,SNAPSHOT] endpoint (repeatable)")
    ap.add_argument("--prefix", action="append", help="topic prefix (repeatable; default all)")
    ap.add_argument("--publish", help="own PUB endpoint for heartbeat/status")
    ap.add_argument("--heartbeat-interval", type=float, default=1.0)
    ap.add_argument("--checkpoint-interval", type=float, default=60.0)
    a = ap.parse_args(argv)
    opts: dict[str, Any] = {"parquet": {"root": a.root, "checkpoint_interval": a.checkpoint_interval},
                            "redis": {"url": a.url}, "postgres": {"dsn": a.dsn}}[a.backend]
    store = make_store(a.backend, **opts)
    c = StorageConsumer(a.name, [_endpoint(s) for s in a.source], store, a.prefix or None,
                        publish=a.publish, heartbeat_interval=a.heartbeat_interval)
    c.run(install_signals=True)


if __name__ == "__main__":
    main()
