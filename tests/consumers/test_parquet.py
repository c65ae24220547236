"""Parquet store: exact round trip of every kind, self-contained book files, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from bus.codec import WIRE_VERSION, Header
from consumers.storage.parquet import WAL, ParquetStore, read_events
from cryptofeed_types.book import OrderBook
from cryptofeed_types.events import L2Delta, L2Snapshot, Trade
from feedfabric.testing.types import sample_events

ODD_DECIMALS = ["0.000000000000000001", "123456789012345678901234567890.123456789", "1E-7", "100.10"]


def _hdr(seq: int, gw: str = "gw") -> Header:
    return Header(WIRE_VERSION, gw, 42, seq, None, 0, 0)


def test_round_trip_every_kind_exact(tmp_path: Path) -> None:
    events = sample_events(full=True) + sample_events(full=False)
    events += [Trade("EX", "A-B", "buy", d, d, timestamp=None, receipt_timestamp=1) for d in ODD_DECIMALS]
    store = ParquetStore(tmp_path, fsync=False)
    for i, ev in enumerate(events):
        store.write(ev.topic(), _hdr(i + 1), ev)
    store.close()
    back = read_events(tmp_path)
    assert len(back) == len(events)
    got = sorted((row["seq"], ev.wire_body(), ev.timestamp, ev.receipt_timestamp, ev.topic())
                 for row, ev in back)
    want = [(i + 1, ev.wire_body(), ev.timestamp, ev.receipt_timestamp, ev.topic()) for i, ev in enumerate(events)]
    assert got == want
    assert {r["price"] for r, _ in back if r["kind"] == "trade"} >= {e.price_str for e in events[-4:]}
    # Partitioned channel/exchange/symbol/day, committed files only.
    assert (tmp_path / "trades" / "BINANCE" / "BTC-USDT" / "2023-11-14").is_dir()
    assert (tmp_path / "nbbo" / "_" / "BTC-USDT").is_dir()
    assert not list(tmp_path.rglob("*.tmp"))


def test_book_files_start_with_a_snapshot(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path, fsync=False)
    topic = "book.EX.A-B."
    ref = OrderBook()
    snap = L2Snapshot("EX", "A-B", (("10", "1"), ("9", "2")), (("11", "1"),), sequence=100, receipt_timestamp=1)
    store.write(topic, _hdr(1), snap)
    ref.apply_snapshot(snap.bids_str, snap.asks_str, 100)
    seq = 1
    for gen in range(3):
        for i in range(5):
            seq += 1
            d = L2Delta("EX", "A-B", ((f"{9 - i}.5", str(gen + 1)),), (("11", "0" if i == 4 else "3"),),
                        sequence=100 + seq, receipt_timestamp=1)
            store.write(topic, _hdr(seq), d)
            ref.apply_delta(d.bids_str, d.asks_str, d.sequence)
        store.checkpoint()
    store.close()
    files = sorted((tmp_path / "book" / "EX" / "A-B").rglob("*.parquet"))
    assert len(files) == 3
    for f in files:
        rows = pq.read_table(f).to_pylist()
        assert rows[0]["kind"] == "book_snapshot" and all(r["kind"] == "book_delta" for r in rows[1:])
        # Each file alone rebuilds the book as it stood at its last row.
        book = OrderBook()
        book.apply_snapshot([(x["price"], x["size"]) for x in rows[0]["bids"]],
                            [(x["price"], x["size"]) for x in rows[0]["asks"]])
        assert [r["seq"] for r in rows[1:]] == list(range(rows[0]["seq"] + 1, rows[0]["seq"] + 1 + len(rows) - 1))
        for r in rows[1:]:
            book.apply_delta([(x["price"], x["size"]) for x in r["bids"]], [(x["price"], x["size"]) for x in r["asks"]])
    assert book.snapshot() == ref.snapshot()


def test_torn_wal_tail_and_uncommitted_files_recover(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    for i in range(10):
        store.write("trades.EX.A-B.", _hdr(i + 1), Trade("EX", "A-B", "buy", "1", str(i), receipt_timestamp=1))
    assert store.commit() == 10
    store._flush_partition(next(iter(store.partitions.values())))   # a .tmp file exists, uncommitted
    store.wal.fh.write(b"\x05\x00\x00\x00garbage")                     # a torn record
    store.wal.fh.flush()
    del store                                                          # "crash": no close
    again = ParquetStore(tmp_path)
    again.close()
    rows = [r for r, _ in read_events(tmp_path)]
    assert sorted(r["seq"] for r in rows) == list(range(1, 11))
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.timeout(90)
def test_kill_9_mid_stream_loses_nothing_acknowledged(tmp_path: Path, bus_endpoint, publisher_factory) -> None:
    from bus.subscriber import Subscriber

    root = tmp_path / "store"
    src, own = bus_endpoint("src"), bus_endpoint("store")
    pub = publisher_factory("src", src, heartbeat_interval=0.1)
    cmd = [sys.executable, "-m", "consumers.storage.consumer", "--name", "store", "--root", str(root),
           "--source", f"{src.pub},{src.snapshot}", "--prefix", "trades.", "--publish", own.pub,
           "--heartbeat-interval", "0.1", "--checkpoint-interval", "60"]

    def run_until_acked(target: int, kill: bool) -> int:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        acked = 0
        with Subscriber(own, ["heartbeat."], books=False) as hb:
            deadline = time.monotonic() + 40
            n = 0
            while acked < target:
                assert time.monotonic() < deadline, f"storage never acknowledged {target}: {acked}"
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                for _ in range(200):
                    n += 1
                    pub.publish(Trade("EX", "A-B", "buy", "0.001", f"{n}.5", receipt_timestamp=time.time_ns()))
                msg = hb.recv(0.02)
                while msg is not None:
                    acked = max(acked, msg.event.counters.get("acknowledged", 0))
                    msg = hb.recv(0)
        if kill:
            # Keep the stream flowing so the kill lands in the middle of writes.
            for _ in range(300):
                pub.publish(Trade("EX", "A-B", "buy", "0.001", "1", receipt_timestamp=time.time_ns()))
            os.kill(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) in (0, -signal.SIGKILL)
        return acked

    acked_first = run_until_acked(3000, kill=True)
    # No checkpoint ran yet (interval 60 s): every acknowledged row must come back from the WAL.
    assert not (root / "_checkpoint.json").exists() or \
        orjson.loads((root / "_checkpoint.json").read_bytes())["lsn"] == 0
    assert sum(rec[2] for rec in WAL(root / "_wal", fsync=False).records() if rec[0] == 0) >= acked_first
    # Acknowledged rows are WAL lsns 1..acked_first, the same order as their seqs in this epoch.
    run_until_acked(1, kill=False)   # restart: recovery, then a clean stop
    rows = [r for r, _ in read_events(root)]
    keys = [(r["gateway_id"], r["epoch"], r["topic"], r["seq"]) for r in rows]
    assert len(keys) == len(set(keys)), "a row is present twice"
    seqs = {r["seq"] for r in rows}
    first = min(seqs)
    assert set(range(first, first + acked_first)) <= seqs, "an acknowledged row is missing"
    assert not list(root.rglob("*.tmp"))


def test_readers_of_docs_storage_md(tmp_path: Path) -> None:
    """The read-back recipes of docs/storage.md (pyarrow, pandas, DuckDB) work and stay exact."""
    import duckdb
    import pyarrow.dataset as ds

    store = ParquetStore(tmp_path, fsync=False)
    for i, p in enumerate(["30238.80", "30238.81", "0.000000000000000001"], 1):
        store.write("trades.BINANCE.BTC-USDT.", _hdr(i), Trade("BINANCE", "BTC-USDT", "buy", "0.5", p,
                                                                receipt_timestamp=1_700_000_000_000_000_000 + i))
    store.close()
    root = str(tmp_path)
    table = ds.dataset(f"{root}/trades", format="parquet").to_table()
    assert table.column("price").to_pylist() == ["30238.80", "30238.81", "0.000000000000000001"]
    df = table.to_pandas()
    from decimal import Decimal
    assert df["price"].map(Decimal).sum() == Decimal("60477.610000000000000001")
    rows = duckdb.sql(f"""
        SELECT symbol, CAST(price AS DECIMAL(38, 18)) AS price, receipt_timestamp
        FROM read_parquet('{root}/trades/*/*/*/*.parquet') ORDER BY seq""").fetchall()
    assert rows[2][1] == Decimal("0.000000000000000001") and rows[0][0] == "BTC-USDT"


def test_crash_between_checkpoint_commit_and_renames(tmp_path: Path, monkeypatch) -> None:
    import consumers.storage.parquet as P

    store = ParquetStore(tmp_path)
    for i in range(20):
        sym = "A-B" if i % 2 else "C-D"
        store.write(f"trades.EX.{sym}.", _hdr(i + 1), Trade("EX", sym, "buy", "1", str(i), receipt_timestamp=1))
    real_replace = os.replace

    def crash_on_data_rename(src, dst) -> None:
        if str(src).endswith(".parquet.tmp"):
            raise KeyboardInterrupt("simulated crash after the commit point")
        real_replace(src, dst)

    monkeypatch.setattr(P.os, "replace", crash_on_data_rename)
    with pytest.raises(KeyboardInterrupt):
        store.checkpoint()
    monkeypatch.setattr(P.os, "replace", real_replace)
    assert list(tmp_path.rglob("*.parquet.tmp")) and not list(tmp_path.rglob("*.parquet"))
    ParquetStore(tmp_path).close()   # recovery finishes the committed renames, replays nothing twice
    seqs = sorted(r["seq"] for r, _ in read_events(tmp_path))
    assert seqs == list(range(1, 21))
    assert not list(tmp_path.rglob("*.tmp"))
