"""Redis Streams and PostgreSQL stores against real servers on loopback, including restarts."""

from __future__ import annotations

import time
from decimal import Decimal

import psycopg
import redis

from bus.codec import WIRE_VERSION, Header
from consumers.storage.postgres import PostgresStore
from consumers.storage.redis_streams import RedisStreamsStore
from cryptofeed_types.events import Trade
from feedfabric.testing.types import sample_events


def _hdr(seq: int, epoch: int = 7) -> Header:
    return Header(WIRE_VERSION, "gw", epoch, seq, None, 0, 0)


def _wait_for(pred, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _feed_while_restarting(store, server, n: int) -> None:
    """Write n trades: a third with the server up, a third while it is down, a third after restart."""
    def put(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            store.write("trades.EX.R-S.", _hdr(i), Trade("EX", "R-S", "buy", "0.1", f"{i}.25", receipt_timestamp=i))

    third = n // 3
    put(1, third + 1)
    assert store.writer.wait_idle(30)
    server.stop()
    put(third + 1, 2 * third + 1)
    _wait_for(lambda: store.counters["write_errors"] >= 1)   # it noticed, and keeps the rows
    assert store.counters["buffered"] + store.writer.batch_size >= third - store.writer.batch_size
    server.start()
    put(2 * third + 1, n + 1)
    assert store.writer.wait_idle(60), store.counters


def test_redis_round_trip_every_kind(redis_server) -> None:
    store = RedisStreamsStore(redis_server.url, key_prefix="rt:")
    events = sample_events(full=True) + sample_events(full=False)
    for i, ev in enumerate(events):
        store.write(ev.topic(), _hdr(i + 1), ev)
    store.close()
    assert store.counters["acknowledged"] == len(events) and store.counters["dropped"] == 0
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    for i, ev in enumerate(events):
        entries = r.xrange("rt:" + ev.topic())
        match = [f for _, f in entries if f["seq"] == str(i + 1)]
        assert len(match) == 1, ev
        f = match[0]
        assert f["kind"] == ev.KIND
        for name, typ in ev.TYPES.items():
            v = ev.wire_body()[name]
            if v is None:
                assert name not in f
            elif typ.startswith("dec") or typ.startswith("str"):
                assert f[name] == v
    # MAXLEN ~ trims
    small = RedisStreamsStore(redis_server.url, key_prefix="trim:", maxlen=100, batch_size=50)
    for i in range(2000):
        small.write("trades.EX.T-T.", _hdr(i + 1), Trade("EX", "T-T", "buy", "1", "1", receipt_timestamp=1))
    small.close()
    assert 100 <= r.xlen("trim:trades.EX.T-T.") < 2000


def test_redis_restart_mid_stream(redis_server) -> None:
    store = RedisStreamsStore(redis_server.url, key_prefix="rs:", batch_size=100, flush_interval=0.01)
    n = 3000
    _feed_while_restarting(store, redis_server, n)
    store.close()
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    seqs = [int(f["seq"]) for _, f in r.xrange("rs:trades.EX.R-S.")]
    assert seqs == list(range(1, n + 1)), "every row exactly once across the restart"
    assert store.counters["dropped"] == 0
    assert store.counters["write_errors"] >= 1 and store.counters["acknowledged"] == n


def test_redis_dead_server_bounded_buffer_counts_drops(redis_server) -> None:
    store = RedisStreamsStore("redis://127.0.0.1:1/0", max_buffer=100, backoff_max=0.1)
    for i in range(500):
        store.write("trades.EX.D-D.", _hdr(i + 1), Trade("EX", "D-D", "buy", "1", "1", receipt_timestamp=1))
    # At most the buffer (100) plus the one batch the writer thread holds while it retries
    # (at most the 100 rows it could take) are kept; every other row is counted as dropped.
    c = store.counters
    assert c["queued"] + c["dropped"] == 500 and c["queued"] <= 200 and c["dropped"] >= 300
    store.writer.close(timeout=0.5)
    assert store.counters["acknowledged"] == 0 and store.counters["lost_at_close"] > 0


def test_postgres_round_trip_every_kind(postgres_server) -> None:
    store = PostgresStore(postgres_server.dsn, table_prefix="rt_")
    events = sample_events(full=True) + sample_events(full=False)
    events.append(Trade("EX", "A-B", "buy", "0.000000000000000001", "123456789012345678901234567890.123456789",
                        receipt_timestamp=1))
    for i, ev in enumerate(events):
        store.write(ev.topic(), _hdr(i + 1), ev)
    store.close()
    assert store.counters["acknowledged"] == len(events)
    with psycopg.connect(postgres_server.dsn) as c:
        for i, ev in enumerate(events):
            cur = c.execute(f'SELECT * FROM "rt_{ev.CHANNEL}" WHERE seq = %s', (i + 1,))
            names = [d.name for d in cur.description]
            rows = cur.fetchall()
            assert len(rows) == 1, ev
            row = dict(zip(names, rows[0], strict=True))
            assert row["kind"] == ev.KIND and row["receipt_timestamp"] == ev.receipt_timestamp
            for name, typ in ev.TYPES.items():
                want = getattr(ev, name)
                if typ.startswith("dec"):
                    assert row[name] == want and (want is None or format(row[name], "f") == getattr(ev, name + "_str"))
                elif typ == "levels":
                    assert [(Decimal(x["price"]), Decimal(x["size"])) for x in row[name]] == list(want)
                elif typ in ("str", "str?", "int", "int?", "bool?"):
                    assert row[name] == want


def test_postgres_restart_mid_stream(postgres_server) -> None:
    store = PostgresStore(postgres_server.dsn, table_prefix="rs_", batch_size=200, flush_interval=0.01)
    n = 3000
    _feed_while_restarting(store, postgres_server, n)
    store.close()
    with psycopg.connect(postgres_server.dsn) as c:
        seqs = [r[0] for r in c.execute("SELECT seq FROM rs_trades ORDER BY seq").fetchall()]
    assert seqs == list(range(1, n + 1)), "every row exactly once across the restart"
    assert store.counters["write_errors"] >= 1 and store.counters["dropped"] == 0


def test_retry_after_uncertain_commit_writes_nothing_twice(redis_server, postgres_server) -> None:
    """A batch that reached the server before the connection broke is retried without duplicates."""
    from consumers.storage.postgres import PostgresBackend, to_record
    from consumers.storage.redis_streams import RedisBackend, to_fields

    trades = [("trades.EX.U-V.", _hdr(i), Trade("EX", "U-V", "buy", "1", str(i), receipt_timestamp=i))
              for i in range(1, 11)]
    rb = RedisBackend(redis_server.url)
    rb.connect()
    batch = [("uc:" + t, to_fields(t, h, e)) for t, h, e in trades]
    rb.write(batch[:6])
    rb.write_retry(batch)
    assert [int(f[b"seq"]) for _, f in rb.client.xrange("uc:trades.EX.U-V.")] == list(range(1, 11))
    rb.close()
    pb = PostgresBackend(postgres_server.dsn, table_prefix="uc_")
    pb.connect()
    recs = [to_record(t, h, e) for t, h, e in trades]
    pb.write(recs[:6])
    pb.write_retry(recs)
    assert [r[0] for r in pb.conn.execute("SELECT seq FROM uc_trades ORDER BY seq").fetchall()] == list(range(1, 11))
    pb.close()
