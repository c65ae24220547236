"""feedfabric's own capture format (documented in docs/capture-format.md): writer and reader.

A file is a zstd *skippable frame* holding the magic ``b"FFCAP\\x01"``, then a sequence of
independent zstd frames, one per flushed block. A block is a concatenation of msgpack
arrays ``[kind, conn, ts_ns, data, url]`` (the first record of the file is the header,
whose ``data`` is a map). Because every block is a complete frame, a reader recovers
everything up to the last complete block after a crash: a truncated last frame is
detected (no frame end) and dropped, and counted in :attr:`FfcapReader.truncated`.
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

from gateways.capture.record import CLOSE, CONNECT, HEADER, RECV, REST, SEND, Record

MAGIC = b"FFCAP\x01"
SUFFIX = ".ffcap"
VERSION = 1
_SKIPPABLE = 0x184D2A50  # first zstd skippable-frame magic number
PREAMBLE = struct.pack("<II", _SKIPPABLE, len(MAGIC)) + MAGIC


def is_ffcap(path: str | os.PathLike[str]) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(PREAMBLE)) == PREAMBLE
    except (OSError, IsADirectoryError):
        return False


class CaptureWriter:
    """Append-only writer. ``flush_bytes`` / ``flush_interval`` bound what a crash can lose;
    ``fsync=True`` also forces each block to disk. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str], *, exchange: str, channels: Mapping[str, Any] | None = None,
                 meta: Mapping[str, Any] | None = None, level: int = 3, flush_bytes: int = 256 * 1024,
                 flush_interval: float = 1.0, fsync: bool = False) -> None:
        self.path = Path(path)
        self.flush_bytes = flush_bytes
        self.flush_interval = flush_interval
        self.fsync = fsync
        self._cctx = zstandard.ZstdCompressor(level=level)
        self._packer = msgpack.Packer(use_bin_type=True)
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self.records = 0
        self.blocks = 0
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._f: IO[bytes] | None = open(self.path, "ab")
        if new:
            self._f.write(PREAMBLE)
        header = {"format": "feedfabric-capture", "version": VERSION, "exchange": exchange,
                  "channels": dict(channels or {}), "started": time.time_ns(), **dict(meta or {})}
        self._append(HEADER, "", time.time_ns(), header, None)
        self.flush()

    def _append(self, kind: str, conn: str, ts: int, data: Any, url: str | None) -> None:
        with self._lock:
            if self._f is None:
                raise ValueError("capture writer is closed")
            self._buf += self._packer.pack((kind, conn, ts, data, url))
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

    def rest(self, ts: int, url: str, body: str | bytes | None, conn: str = "rest") -> None:
        self._append(REST, conn, ts, body, url)

    def close_conn(self, conn: str, ts: int, reason: str | None = None) -> None:
        self._append(CLOSE, conn, ts, reason, None)

    def write(self, record: Record) -> None:
        self._append(record.kind, record.conn, record.ts, record.data, record.url)

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
                        kind, conn, ts, payload, url = item
                        yield Record(kind, conn, ts, payload, url)
                    if not data:
                        break
                pending = data


def _unpack(block: bytes) -> Iterator[list[Any]]:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(block), 1 << 20))
    unpacker.feed(block)
    yield from unpacker
