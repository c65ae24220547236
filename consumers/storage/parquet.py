"""The embedded default store: Parquet files (pyarrow) behind a write-ahead log.

Layout under ``root``::

    <channel>/<exchange>/<symbol>/<YYYY-MM-DD>/part-<gen>.parquet   committed, immutable files
    <same dir>/.part-<gen>.parquet.tmp                                being written (never read these)
    _wal/wal-<first lsn>.log                                          the write-ahead log
    _checkpoint.json                                                  the last committed generation

Durability (docs/storage.md): every message gets a log sequence number (lsn) and its row
waits in its partition's buffer; :meth:`ParquetStore.commit` turns each buffer into an Arrow
table, appends them all to the WAL as **one** record (Arrow IPC batches), **fsyncs** it and
returns the highest lsn now durable — that is what "acknowledged" means. The same tables are
later written, as row groups of about ``row_group_rows``, into hidden ``.tmp`` Parquet files
(so each row is converted once, as a bare pyarrow writer would). :meth:`ParquetStore.checkpoint` (every
``checkpoint_interval`` s, and at close) closes and fsyncs those files, then atomically
writes ``_checkpoint.json`` naming the covered lsn and the renames to do — the commit point
— then renames every ``.tmp`` to its final name and starts a fresh WAL segment. After a
crash (kill -9 at any moment), opening the store again finishes the renames of a committed
checkpoint, deletes uncommitted ``.tmp`` files and replays the WAL rows above the checkpoint's
lsn: every acknowledged row ends up in exactly one visible file, and a visible file is
always complete (it only appears by rename after fsync).

Book files are self-contained: the store keeps every L2/L3 book it stores, and a file of a
``book``/``l3`` partition that would start with a delta starts with a synthesized snapshot
(the book as it stood just before; its ``seq`` is the last applied delta's). The books
survive restarts through "state" records written at the head of each new WAL segment.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from loguru import logger

from bus.codec import WIRE_VERSION, Header
from consumers.storage import rows as R
from cryptofeed_types.book import OrderBook, is_zero
from cryptofeed_types.events import Event, L2Delta, L2Snapshot, L3Delta, L3Snapshot

_REC = struct.Struct("<II")   # payload length, crc32(payload)
ROW, STATE = 0, 1
BOOK_KINDS = (L2Snapshot, L2Delta, L3Snapshot, L3Delta)
_BOOK_TYPES = frozenset(BOOK_KINDS)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WAL:
    """Append-only segments of CRC-framed msgpack records, one per commit (group commit).

    ``[ROW, first_lsn, count, [[partition key, Arrow IPC record batch], ...]]`` holds the
    ``count`` messages with lsns ``first_lsn ..`` as Arrow batches of their partitions (the
    very tables the Parquet files are then written from: nothing is converted twice);
    ``[STATE, 0, 0, [[topic, row], ...]]`` holds the stored books at the head of a segment.
    A torn record (crash mid-write) was never acknowledged and is cut off on recovery.
    """

    def __init__(self, directory: Path, fsync: bool = True) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.fh: Any = None
        self._packer = msgpack.Packer()
        self.path: Path | None = None

    def segments(self) -> list[Path]:
        return sorted(self.dir.glob("wal-*.log"))

    def records(self) -> Iterator[list]:
        """Every intact record in lsn order; a torn tail (crash mid-write) is cut off."""
        for seg in self.segments():
            data = seg.read_bytes()
            pos, good = 0, 0
            while pos + _REC.size <= len(data):
                n, crc = _REC.unpack_from(data, pos)
                payload = data[pos + _REC.size: pos + _REC.size + n]
                if len(payload) < n or zlib.crc32(payload) != crc:
                    break
                pos += _REC.size + n
                good = pos
                yield msgpack.unpackb(payload)
            if good < len(data):
                logger.warning("WAL {}: cutting {} torn bytes at {}", seg.name, len(data) - good, good)
                with open(seg, "r+b") as fh:
                    fh.truncate(good)

    def open_segment(self, first_lsn: int) -> None:
        if self.fh is not None:
            self.fh.close()
        self.path = self.dir / f"wal-{first_lsn:020d}.log"
        self.fh = open(self.path, "ab")  # noqa: SIM115 - lives as long as the segment
        if self.fsync:
            _fsync_dir(self.dir)

    def write(self, record: list) -> None:
        """Append one record and fsync it."""
        payload = self._packer.pack(record)
        self.fh.write(_REC.pack(len(payload), zlib.crc32(payload)))
        self.fh.write(payload)
        self.fh.flush()
        if self.fsync:
            os.fsync(self.fh.fileno())

    def drop_before(self, keep: Path) -> None:
        for seg in self.segments():
            if seg < keep:
                seg.unlink()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class _Partition:
    __slots__ = ("key", "channel", "dir", "pending", "tables", "table_rows", "writer", "tmp", "final")

    def __init__(self, key: tuple[str, str, str, str], root: Path, gen: int) -> None:
        self.key = key
        self.channel = key[0]
        self.dir = root.joinpath(*key)
        self.pending: list[dict[str, Any]] = []     # rows not yet in the WAL
        self.tables: list[pa.Table] = []             # in the WAL, not yet in the Parquet file
        self.table_rows = 0
        self.writer: pq.ParquetWriter | None = None
        self.tmp = self.dir / f".part-{gen:08d}.parquet.tmp"
        self.final = self.dir / f"part-{gen:08d}.parquet"


class _L3Book:
    """Order-level book kept only to start l3 files with a snapshot."""

    __slots__ = ("orders", "seq")

    def __init__(self) -> None:
        self.orders: dict[str, tuple[str, str, str]] = {}
        self.seq: int | None = None

    def apply(self, orders: tuple, snapshot: bool, seq: int | None) -> None:
        if snapshot:
            self.orders.clear()
        for oid, side, price, size in orders:
            if is_zero(size):
                self.orders.pop(oid, None)
            else:
                self.orders[oid] = (side, price, size)
        self.seq = seq


class ParquetStore:
    """See the module docstring. ``write`` -> lsn; ``commit`` -> acknowledged lsn."""

    def __init__(self, root: str | Path, *, checkpoint_interval: float = 60.0, row_group_rows: int = 50_000,
                 compression: str = "zstd", fsync: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoint_interval = checkpoint_interval
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.fsync = fsync
        self.partitions: dict[tuple[str, str, str, str], _Partition] = {}
        self.books: dict[str, tuple[Header, Any]] = {}   # topic -> (header of last applied, book)
        self.counters = {"rows": 0, "acknowledged": 0, "files": 0, "checkpoints": 0, "recovered": 0,
                         "errors": 0}
        self.wal = WAL(self.root / "_wal", fsync)
        self.lsn = 0
        self.acked = 0
        self.gen = 1
        self._dirty: list[_Partition] = []      # partitions with rows not yet logged
        self._last_checkpoint = time.monotonic()
        self._recover()

    # -- recovery ------------------------------------------------------------------------------

    def _recover(self) -> None:
        ck_path = self.root / "_checkpoint.json"
        done = 0
        if ck_path.exists():
            ck = orjson.loads(ck_path.read_bytes())
            done, self.gen = ck["lsn"], ck["gen"] + 1
            for tmp, final in ck.get("renames", []):
                t, f = self.root / tmp, self.root / final
                if t.exists():
                    os.replace(t, f)
        for stray in self.root.rglob(".part-*.parquet.tmp"):
            stray.unlink()   # never committed: its rows are in the WAL above `done`
        self.lsn = self.acked = done
        replayed = 0
        for tag, first, count, entries in self.wal.records():
            if tag == STATE:
                for topic, row in entries:
                    self._set_book(topic, _header_of(row), R.from_row(row))
                continue
            last = first + count - 1
            self.lsn = max(self.lsn, last)
            replay = last > done   # records are whole commits: a checkpoint never splits one
            for key, data in entries:
                key = tuple(key)
                channel = key[0]
                books = channel in R.BOOK_CHANNELS
                if not (replay or books):
                    continue
                batch = pa.ipc.read_record_batch(pa.py_buffer(data), R.SCHEMAS[channel])
                if books:
                    # The store's books follow every stored row, replayed or already in files.
                    for row in batch.to_pylist():
                        self._track_book(row["topic"], _header_of(row), R.from_row(row))
                if replay:
                    part = self.partitions.get(key)
                    if part is None:
                        part = self.partitions[key] = _Partition(key, self.root, self.gen)
                    part.tables.append(pa.Table.from_batches([batch]))
                    part.table_rows += batch.num_rows
            if replay:
                replayed += count
        self.acked = self.lsn
        self.counters["recovered"] = replayed
        self.counters["acknowledged"] = self.acked
        self.wal.open_segment(self.lsn + 1)
        if replayed:
            logger.info("parquet store {}: replayed {} WAL rows above lsn {}", self.root, replayed, done)
            self.checkpoint()

    # -- books ---------------------------------------------------------------------------------

    def _set_book(self, topic: str, header: Header, ev: Event) -> None:
        if type(ev) is L2Snapshot:
            book = OrderBook()
            book.apply_snapshot(ev.bids_str, ev.asks_str, ev.sequence)
        else:
            book = _L3Book()
            book.apply(_orders(ev), True, ev.sequence)
        self.books[topic] = (header, book)

    def _track_book(self, topic: str, header: Header, ev: Event) -> None:
        t = type(ev)
        if t is L2Snapshot or t is L2Delta:
            entry = self.books.get(topic)
            if t is L2Snapshot or entry is None or not isinstance(entry[1], OrderBook):
                book = OrderBook()
                if t is L2Delta and entry is None:
                    return  # a delta of a book we never saw whole: nothing to keep
                book.apply_snapshot(ev.bids_str, ev.asks_str, ev.sequence)
            else:
                book = entry[1]
                book.apply_delta(ev.bids_str, ev.asks_str, ev.sequence)
            self.books[topic] = (header, book)
        else:
            entry = self.books.get(topic)
            if t is L3Delta and entry is None:
                return
            book = entry[1] if entry is not None and t is L3Delta else _L3Book()
            book.apply(_orders(ev), t is L3Snapshot, ev.sequence)
            self.books[topic] = (header, book)

    def _snapshot_row(self, topic: str, header: Header, like: Event) -> dict[str, Any] | None:
        entry = self.books.get(topic)
        if entry is None:
            return None
        h, book = entry
        rts = like.receipt_timestamp
        if isinstance(book, OrderBook):
            bids, asks = book.snapshot()
            ev: Event = L2Snapshot(like.exchange, like.symbol, bids, asks, sequence=book.sequence,
                                   exchange_symbol=like.exchange_symbol, timestamp=like.timestamp,
                                   receipt_timestamp=rts)
        else:
            ev = L3Snapshot(like.exchange, like.symbol, tuple((o, *v) for o, v in book.orders.items()),
                            sequence=book.seq, exchange_symbol=like.exchange_symbol, timestamp=like.timestamp,
                            receipt_timestamp=rts)
        return R.to_row(topic, h, ev)

    # -- writing -------------------------------------------------------------------------------

    def write(self, topic: str, header: Header, event: Event) -> int:
        """Buffer one message; returns its lsn (acknowledged after the next :meth:`commit`)."""
        self.lsn += 1
        key = R.partition_of(topic, event)
        part = self.partitions.get(key)
        if part is None:
            part = self.partitions[key] = _Partition(key, self.root, self.gen)
        if not part.pending:
            self._dirty.append(part)
            if part.table_rows == 0 and part.writer is None and (type(event) is L2Delta or type(event) is L3Delta):
                # The first row of a book file: start the file with the book as it stands.
                snap = self._snapshot_row(topic, header, event)
                if snap is not None:
                    part.pending.append(snap)
        if type(event) in _BOOK_TYPES:
            self._track_book(topic, header, event)
        part.pending.append(R.to_row(topic, header, event))
        return self.lsn

    def commit(self) -> int:
        """Log every buffered row (one WAL record, fsync); returns the highest acknowledged lsn."""
        if self.lsn == self.acked:
            return self.acked
        entries = []
        flush = []
        for part in self._dirty:
            table = R.to_table(part.channel, part.pending)
            part.pending = []
            key = list(part.key)
            for batch in table.to_batches():
                entries.append([key, batch.serialize().to_pybytes()])
            part.tables.append(table)
            part.table_rows += table.num_rows
            if part.table_rows >= self.row_group_rows:
                flush.append(part)
        self._dirty = []
        self.wal.write([ROW, self.acked + 1, self.lsn - self.acked, entries])
        self.acked = self.lsn
        self.counters["rows"] = self.counters["acknowledged"] = self.acked
        for part in flush:
            self._flush_partition(part)
        return self.acked

    def _flush_partition(self, part: _Partition) -> None:
        """Write the partition's logged tables into its (hidden) Parquet file as one row group."""
        if not part.tables:
            return
        table = part.tables[0] if len(part.tables) == 1 else pa.concat_tables(part.tables)
        part.tables = []
        part.table_rows = 0
        if part.writer is None:
            part.dir.mkdir(parents=True, exist_ok=True)
            part.writer = pq.ParquetWriter(part.tmp, table.schema, compression=self.compression)
        part.writer.write_table(table)

    def tick(self, now: float | None = None) -> None:
        """Commit the WAL, and checkpoint when ``checkpoint_interval`` has passed."""
        self.commit()
        now = time.monotonic() if now is None else now
        if now - self._last_checkpoint >= self.checkpoint_interval:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Make every buffered row visible in committed files (see the module docstring)."""
        self.commit()
        self._last_checkpoint = time.monotonic()
        renames: list[tuple[str, str]] = []
        dirs: set[Path] = set()
        for part in self.partitions.values():
            self._flush_partition(part)
            if part.writer is None:
                continue
            part.writer.close()
            if self.fsync:
                fd = os.open(part.tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            renames.append((str(part.tmp.relative_to(self.root)), str(part.final.relative_to(self.root))))
            dirs.add(part.dir)
        if renames or self.counters["checkpoints"] == 0 or self.acked:
            ck = orjson.dumps({"lsn": self.acked, "gen": self.gen, "renames": renames, "time": time.time_ns()})
            tmp = self.root / "_checkpoint.json.tmp"
            with open(tmp, "wb") as fh:
                fh.write(ck)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp, self.root / "_checkpoint.json")   # the commit point
            if self.fsync:
                _fsync_dir(self.root)
        for tmp_rel, final_rel in renames:
            os.replace(self.root / tmp_rel, self.root / final_rel)
        if self.fsync:
            for d in dirs:
                _fsync_dir(d)
        self.counters["files"] += len(renames)
        self.counters["checkpoints"] += 1
        self.partitions.clear()
        self.gen += 1
        # A fresh WAL segment that starts with the books' state, so the old ones can go.
        self.wal.open_segment(self.acked + 1)
        state = []
        for topic, (h, book) in self.books.items():
            ev = self._state_event(topic, book)
            if ev is not None:
                state.append([topic, R.to_row(topic, h, ev)])
        if state:
            self.wal.write([STATE, 0, 0, state])
        assert self.wal.path is not None   # open_segment just set it
        self.wal.drop_before(self.wal.path)

    @staticmethod
    def _state_event(topic: str, book: Any) -> Event | None:
        parts = topic[:-1].split(".")
        if len(parts) < 3:
            return None
        if isinstance(book, OrderBook):
            bids, asks = book.snapshot()
            return L2Snapshot(parts[1], parts[2], bids, asks, sequence=book.sequence, receipt_timestamp=0)
        return L3Snapshot(parts[1], parts[2], tuple((o, *v) for o, v in book.orders.items()), sequence=book.seq,
                          receipt_timestamp=0)

    def close(self) -> None:
        """Checkpoint everything and close the WAL."""
        self.checkpoint()
        self.wal.close()


def _header_of(row: dict[str, Any]) -> Header:
    # Rows do not store the publish time; these headers only give to_row gateway, epoch and seq.
    return Header(WIRE_VERSION, row["gateway_id"], row["epoch"], row["seq"], row["timestamp"],
                  row["receipt_timestamp"], 0)


def _orders(ev: Event) -> tuple:
    return ev.orders_str if hasattr(ev, "orders_str") else ev.orders


def read_events(path: str | Path) -> list[tuple[dict[str, Any], Event]]:
    """Read a store (or one file/dir of it) back: ``(row, event)`` pairs, events rebuilt exactly."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*.parquet") if "_wal" not in f.parts)
    out = []
    for f in files:
        for row in pq.read_table(f).to_pylist():
            out.append((row, R.from_row(row)))
    return out
