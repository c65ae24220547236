"""Order book + CRC32 checksums against real recorded exchange traffic (Kraken v1, OKX v5).

Each book is rebuilt from the capture with ``OrderBook``; after every update the
exchange's own checksum must equal both ``OrderBook.checksum_*()`` and a checksum
this test derives independently from the exchanges' documented algorithms:

- Kraken (docs.kraken.com, "Book checksum (WebSocket v1)"): top 10 asks (low to high)
  then top 10 bids (high to low); for each, price and size with '.' removed and
  leading zeros stripped, concatenated; CRC32 as an unsigned 32-bit integer.
- OKX (v5 "Checksum" section of the order book channel): up to 25 levels, bid and ask
  interleaved as 'bidPx:bidSz:askPx:askSz:...' (a missing side is skipped); CRC32 as a
  signed 32-bit integer.
"""

from __future__ import annotations

import ast
import json
import zlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from cryptofeed_types import OrderBook

pytestmark = pytest.mark.shared_data


def _frames(path: Path) -> Iterator[str]:
    """Received messages of a cryptofeed-format websocket capture, decompressed."""
    with path.open() as fh:
        for line in fh:
            head, sep, msg = line.partition(": ")
            if not sep or " <-" in head or "<->" in line[:120]:
                continue
            msg = msg.rstrip("\n")
            if msg.startswith(("b'", 'b"')):
                msg = zlib.decompress(ast.literal_eval(msg), -15).decode()
            yield msg


def _kraken_expected(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    def fmt(s: str) -> str:
        return s.replace(".", "").lstrip("0")

    text = "".join(fmt(p) + fmt(q) for p, q in asks[:10]) + "".join(fmt(p) + fmt(q) for p, q in bids[:10])
    return zlib.crc32(text.encode("ascii"))


def _okx_expected(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    fields: list[str] = []
    for i in range(25):
        if i < len(bids):
            fields += [bids[i][0], bids[i][1]]
        if i < len(asks):
            fields += [asks[i][0], asks[i][1]]
    crc = zlib.crc32(":".join(fields).encode("ascii"))
    return crc - 2**32 if crc >= 2**31 else crc


def _check_sorted(book: OrderBook) -> None:
    bids, asks = book.snapshot()
    assert [Decimal(p) for p, _ in bids] == sorted((Decimal(p) for p, _ in bids), reverse=True)
    assert [Decimal(p) for p, _ in asks] == sorted(Decimal(p) for p, _ in asks)


def test_kraken_v1_capture_checksums(shared_data: Path) -> None:
    path = shared_data / "cryptofeed" / "KRAKEN.ws.50.0"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    depth = 1000  # the capture subscribed with {"name": "book", "depth": 1000}
    books: dict[str, OrderBook] = {}
    checked = 0
    for msg in _frames(path):
        if not msg.startswith("["):
            continue
        data = json.loads(msg)
        pair, parts = data[-1], [p for p in data[1:-2] if isinstance(p, dict)]
        if not str(data[-2]).startswith("book"):
            continue
        if "as" in parts[0] or "bs" in parts[0]:
            book = books[pair] = OrderBook(max_depth=depth)
            book.apply_snapshot([lv[:2] for lv in parts[0].get("bs", [])], [lv[:2] for lv in parts[0].get("as", [])])
            continue
        book = books[pair]
        checksum = None
        for part in parts:
            # Levels in the order sent: the last entry for a price is the newest.
            book.apply_delta([lv[:2] for lv in part.get("b", [])], [lv[:2] for lv in part.get("a", [])])
            checksum = part.get("c", checksum)
        if checksum is None:
            continue
        bids, asks = book.snapshot(10)
        assert _kraken_expected(bids, asks) == int(checksum), (pair, msg[:200])
        assert book.checksum_kraken() == int(checksum)
        assert not book.is_crossed()
        checked += 1
    for book in books.values():
        _check_sorted(book)
        assert len(book.bids) <= depth and len(book.asks) <= depth
    assert checked > 4000  # ~4,269 updates carry "c" in this capture


def test_okx_v5_capture_checksums(shared_data: Path) -> None:
    path = shared_data / "cryptofeed" / "OKX.ws.1.0"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    books: dict[str, OrderBook] = {}
    checked = 0
    for msg in _frames(path):
        data = json.loads(msg)
        if data.get("arg", {}).get("channel") != "books" or "data" not in data:
            continue
        inst = data["arg"]["instId"]
        for entry in data["data"]:
            # OKX levels are [price, size, deprecated, order count]; size "0" deletes.
            bids = [lv[:2] for lv in entry["bids"]]
            asks = [lv[:2] for lv in entry["asks"]]
            if data["action"] == "snapshot":
                books[inst] = OrderBook()
                books[inst].apply_snapshot(bids, asks)
            else:
                books[inst].apply_delta(bids, asks)
            book = books[inst]
            b, a = book.snapshot(25)
            assert _okx_expected(b, a) == entry["checksum"], (inst, entry.get("ts"))
            assert book.checksum_okx() == entry["checksum"]
            assert not book.is_crossed()
            checked += 1
    assert len(books) == 3
    for book in books.values():
        _check_sorted(book)
    assert checked > 250
