"""feedfabric's own capture format (documented in docs/capture-format.md): writer and reader.

A file is a zstd *skippable frame* holding the magic ``b"FFCAP\\x01"``, then a sequence of
independent zstd frames, one per flushed block. A block is a concatenation of msgpack
arrays ``[kind, conn, ts_ns, data, url]`` (``rest`` records add the HTTP ``status`` as a
sixth element; the first record of the file is the header, whose ``data`` is a map).
Because every block is a complete frame, a reader recovers everything up to the last
complete block after a crash: a truncated last frame is detected (no frame end) and
dropped, and counted in :attr:`FfcapReader.truncated`. A writer reopening such a file
first cuts the torn tail off (:func:`complete_length`), so the new session stays readable.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import msgpack
import zstandard
from loguru import logger

from gateways.capture.record import CLOSE, CONNECT, HEADER, RECV, REST, SEND, Record

MAGIC = b"FFCAP\x01"
SUFFIX = ".ffcap"
# 2: rest records carry the HTTP status (a sixth element); blocks carry a content checksum.
# Version 1 files read the same (their rest records have no status).
VERSION = 2
_SKIPPABLE = 0x184D2A50  # first zstd skippable-frame magic number
_ZSTD_MAGIC = 0xFD2FB528
PREAMBLE = struct.pack("<II", _SKIPPABLE, len(MAGIC)) + MAGIC


def is_ffcap(path: str | os.PathLike[str]) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(PREAMBLE)) == PREAMBLE
    except (OSError, IsADirectoryError):
        return False


def _frame_end(f: IO[bytes], pos: int, size: int) -> int | None:
    """The offset just past the zstd frame starting at ``pos``, or None when the bytes there
    are not one complete frame (cut short, or not a frame at all). Reads headers only."""
    f.seek(pos)
    head = f.read(4)
    if len(head) < 4:
        return None
    (magic,) = struct.unpack("<I", head)
    if magic & 0xFFFFFFF0 == _SKIPPABLE:
        raw = f.read(4)
        if len(raw) < 4:
            return None
        end = pos + 8 + struct.unpack("<I", raw)[0]
        return end if end <= size else None
    if magic != _ZSTD_MAGIC:
        return None
    fhd = f.read(1)
    if not fhd:
        return None
    d = fhd[0]
    if d & 0x08:  # reserved bit
        return None
    single = bool(d & 0x20)
    fcs = (1 if single else 0, 2, 4, 8)[d >> 6]
    dict_id = (0, 1, 2, 4)[d & 0x03]
    p = pos + 5 + (0 if single else 1) + dict_id + fcs
    while True:
        f.seek(p)
        raw = f.read(3)
        if len(raw) < 3:
            return None
        bh = raw[0] | raw[1] << 8 | raw[2] << 16
        last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
        if btype == 3:
            return None
        p += 3 + (1 if btype == 1 else bsize)
        if p > size:
            return None
        if last:
            break
    if d & 0x04:  # content checksum
        p += 4
    return p if p <= size else None


def _decodes(f: IO[bytes], start: int, end: int) -> bool:
    f.seek(start)
    try:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        dobj.decompress(f.read(end - start))
        return dobj.eof
    except zstandard.ZstdError:
        return False


def complete_length(path: str | os.PathLike[str]) -> int:
    """Bytes of ``path`` up to the end of its last complete block (0: not even a whole preamble).

    Frames are walked by their headers (no decompression, fast on big files); the last one is
    also decoded, since a torn write can leave a frame whose header says more than was written.
    ValueError when the file is not a feedfabric capture.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(len(PREAMBLE))
        if len(head) < len(PREAMBLE) and PREAMBLE.startswith(head):
            return 0
        if head != PREAMBLE:
            raise ValueError(f"{path}: not a feedfabric capture (bad magic); refusing to append to it")
        ends = [len(PREAMBLE)]
        while ends[-1] < size:
            end = _frame_end(f, ends[-1], size)
            if end is None:
                break
            ends.append(end)
        while len(ends) > 1 and not _decodes(f, ends[-2], ends[-1]):
            ends.pop()
        return ends[-1]


class CaptureWriter:
    """Append-only writer. ``flush_bytes`` / ``flush_interval`` bound what a crash can lose;
    ``fsync=True`` also forces each block to disk. Thread-safe.

    Reopening an existing capture appends a new session (a new ``header`` record) after its
    last complete block: a torn tail left by a crash is cut off first (logged; the number of
    bytes dropped is :attr:`recovered_bytes`), so that every block written now stays readable.
    """

    def __init__(self, path: str | os.PathLike[str], *, exchange: str, channels: Mapping[str, Any] | None = None,
                 meta: Mapping[str, Any] | None = None, level: int = 3, flush_bytes: int = 256 * 1024,
                 flush_interval: float = 1.0, fsync: bool = False) -> None:
        self.path = Path(path)
        self.flush_bytes = flush_bytes
        self.flush_interval = flush_interval
        self.fsync = fsync
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._packer = msgpack.Packer(use_bin_type=True)
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self.records = 0
        self.blocks = 0
        self.recovered_bytes = 0
        keep = complete_length(self.path) if self.path.exists() else 0
        self._f: IO[bytes] | None = open(self.path, "r+b" if self.path.exists() else "wb")
        size = self._f.seek(0, os.SEEK_END)
        if keep < size:
            self.recovered_bytes = size - keep
            logger.warning("{}: dropping a torn tail of {} bytes after the last complete block (an earlier "
                           "writer crashed) before appending", self.path, size - keep)
            self._f.truncate(keep)
        self._f.seek(keep)
        if keep == 0:
            self._f.write(PREAMBLE)
        header = {"format": "feedfabric-capture", "version": VERSION, "exchange": exchange,
                  "channels": dict(channels or {}), "started": time.time_ns(), **dict(meta or {})}
        self._append(HEADER, "", time.time_ns(), header, None)
        self.flush()

    def _append(self, kind: str, conn: str, ts: int, data: Any, url: str | None, status: int | None = None) -> None:
        with self._lock:
            if self._f is None:
                raise ValueError("capture writer is closed")
            item = (kind, conn, ts, data, url) if status is None else (kind, conn, ts, data, url, status)
            self._buf += self._packer.pack(item)
            self.records += 1
            due = len(self._buf) >= self.flush_bytes or time.monotonic() - self._last_flush >= self.flush_interval
        if due:
            self.flush()

    def connect(self, conn: str, ts: int, url: str) -> None:
        self._append(CONNECT, conn, ts, None, url)

    def send(self, conn: str, ts: int, data: str | bytes) -> None:
        self._append(SEND, conn, ts, data, None)

    def recv(self, conn: str, ts: int, data: str | bytes) -> None:
        self._append(RECV, conn, ts, data, None)

    def rest(self, ts: int, url: str, body: str | bytes | None, conn: str = "rest", status: int | None = None) -> None:
        """A REST response (``status``: its HTTP status; 0 with ``body`` None: no response at all)."""
        self._append(REST, conn, ts, body, url, status)

    def close_conn(self, conn: str, ts: int, reason: str | None = None) -> None:
        self._append(CLOSE, conn, ts, reason, None)

    def write(self, record: Record) -> None:
        self._append(record.kind, record.conn, record.ts, record.data, record.url, record.status)

    def flush(self) -> None:
        """Write the buffered records as one complete zstd frame."""
        with self._lock:
            self._last_flush = time.monotonic()
            if not self._buf or self._f is None:
                return
            self._f.write(self._cctx.compress(bytes(self._buf)))
            self._buf.clear()
            self._f.flush()
            if self.fsync:
                os.fsync(self._f.fileno())
            self.blocks += 1

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FfcapReader:
    """Iterates the records of a .ffcap file, streaming (bounded memory)."""

    def __init__(self, path: str | os.PathLike[str], chunk: int = 1 << 20) -> None:
        self.path = Path(path)
        self.chunk = chunk
        self.truncated = False  # the last block was incomplete (crash while writing) and was dropped
        self.blocks = 0
        self.bad_records = 0    # items of a block that are not records (skipped)

    def __iter__(self) -> Iterator[Record]:
        with open(self.path, "rb") as f:
            if f.read(len(PREAMBLE)) != PREAMBLE:
                raise ValueError(f"{self.path}: not a feedfabric capture (bad magic)")
            dctx = zstandard.ZstdDecompressor()
            pending = b""
            while True:
                data = pending + f.read(self.chunk)
                pending = b""
                if not data:
                    return
                while data:
                    dobj = dctx.decompressobj()
                    try:
                        block = dobj.decompress(data)
                    except zstandard.ZstdError:
                        self.truncated = True  # a torn write: garbage after the last complete frame
                        return
                    if not dobj.eof:
                        more = f.read(self.chunk)
                        if not more:
                            self.truncated = True
                            return
                        data += more
                        continue
                    data = dobj.unused_data
                    self.blocks += 1
                    for item in _unpack(block):
                        if type(item) is not list or not 5 <= len(item) <= 6:
                            self.bad_records += 1
                            continue
                        yield Record(*item)  # 5 elements, or 6 for a rest record with its status
                    if not data:
                        break
                pending = data


def _unpack(block: bytes) -> Iterator[list[Any]]:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(block), 1 << 20))
    unpacker.feed(block)
    yield from unpacker
