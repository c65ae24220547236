"""OrderBook engine: snapshot/delta/delete, top/depth, crossed books, max_depth, price keys, checksums."""

from __future__ import annotations

import random
import zlib
from decimal import Context, Decimal

import pytest

from cryptofeed_types import OrderBook, kraken_checksum, okx_checksum, price_key
from cryptofeed_types.book import is_zero


def _book() -> OrderBook:
    book = OrderBook()
    book.apply_snapshot([("100.5", "1"), ("101", "2"), ("99.25", "3")],
                        [("102", "1.5"), ("101.5", "0.5"), ("103.00", "7")], sequence=10)
    return book


def test_snapshot_orders_best_first() -> None:
    book = _book()
    assert book.snapshot() == ([("101", "2"), ("100.5", "1"), ("99.25", "3")],
                               [("101.5", "0.5"), ("102", "1.5"), ("103.00", "7")])
    assert book.best_bid() == ("101", "2") and book.best_ask() == ("101.5", "0.5")
    assert book.sequence == 10
    assert len(book.bids) == 3 and len(book.asks) == 3


def test_snapshot_replaces_everything() -> None:
    book = _book()
    book.apply_snapshot([("1", "1")], [], sequence=11)
    assert book.snapshot() == ([("1", "1")], []) and book.sequence == 11
    assert book.best_ask() is None


def test_delta_update_insert_delete() -> None:
    book = _book()
    book.apply_delta([("101", "5"), ("100.75", "1"), ("99.25", "0")], [("101.5", "0.000"), ("104", "1")], sequence=11)
    assert book.snapshot() == ([("101", "5"), ("100.75", "1"), ("100.5", "1")],
                               [("102", "1.5"), ("103.00", "7"), ("104", "1")])
    assert book.sequence == 11
    # Deleting a missing level is a no-op; a sequence of None keeps the last one.
    book.apply_delta([("1", "0")], [])
    assert len(book.bids) == 3 and book.sequence == 11


def test_same_price_different_text_is_one_level_and_keeps_the_latest_text() -> None:
    book = OrderBook()
    book.apply_delta([("100.10", "1")], [])
    book.apply_delta([("100.1", "2")], [])
    assert book.snapshot()[0] == [("100.1", "2")]
    assert book.bids.get("100.100") == "2" and book.bids.get("5") is None


def test_top_and_depth() -> None:
    book = _book()
    assert book.snapshot(2) == ([("101", "2"), ("100.5", "1")], [("101.5", "0.5"), ("102", "1.5")])
    assert book.snapshot(0) == ([], [])
    assert book.snapshot(50) == book.snapshot()
    assert book.bids.top(1) == [("101", "2")]
    assert list(book.asks) == book.asks.top()


def test_crossed() -> None:
    book = _book()
    assert not book.is_crossed()
    book.apply_delta([("101.5", "1")], [])  # bid == ask: crossed (locked books are invalid too)
    assert book.is_crossed()
    book.apply_delta([("101.5", "0")], [])
    assert not book.is_crossed()
    assert not OrderBook().is_crossed()


def test_max_depth_truncates_worst_levels() -> None:
    book = OrderBook(max_depth=2)
    book.apply_snapshot([(str(p), "1") for p in range(90, 100)], [(str(p), "1") for p in range(100, 110)])
    assert book.snapshot() == ([("99", "1"), ("98", "1")], [("100", "1"), ("101", "1")])
    book.apply_delta([("98.5", "1")], [("99.5", "1")])
    assert book.snapshot() == ([("99", "1"), ("98.5", "1")], [("99.5", "1"), ("100", "1")])
    # A deleted level is not replaced: levels beyond max_depth were dropped for good.
    book.apply_delta([("99", "0")], [])
    assert book.snapshot()[0] == [("98.5", "1")]


def test_clear_and_equality() -> None:
    a, b = _book(), _book()
    assert a == b
    b.apply_delta([("1", "1")], [])
    assert a != b
    b.clear()
    assert b.snapshot() == ([], []) and b.sequence is None
    assert "best_bid=('101', '2')" in repr(a)


def test_random_operations_match_a_reference_dict() -> None:
    rng = random.Random(7)
    book, ref_b, ref_a = OrderBook(), {}, {}
    for _ in range(3000):
        side, ref = (book.bids, ref_b) if rng.random() < 0.5 else (book.asks, ref_a)
        price = f"{rng.randint(1, 400) / 8:.3f}"
        size = "0" if rng.random() < 0.3 else str(rng.randint(1, 9))
        if side is book.bids:
            book.apply_delta([(price, size)], [])
        else:
            book.apply_delta([], [(price, size)])
        if size == "0":
            ref.pop(Decimal(price), None)
        else:
            ref[Decimal(price)] = (price, size)
    bids, asks = book.snapshot()
    assert bids == [ref_b[k] for k in sorted(ref_b, reverse=True)]
    assert asks == [ref_a[k] for k in sorted(ref_a)]


_WIDE = Context(prec=200)  # wide enough that scaleb is exact for every test value


@pytest.mark.parametrize("text", [
    "0", "1", "-1", "0.5", "100.10", "00012.5000", "0.000000000000000001", "999999999999999999",
    "123456789012345678.9", "1e3", "2.5E-3", "123456789012345678901234567890.5",
    "0.123456789012345678", "98765432109876543210.000000000000000001",
])
def test_price_key_is_exact(text: str) -> None:
    assert price_key(text) == int(Decimal(text).scaleb(18, context=_WIDE))


def test_price_key_ordering_including_the_slow_path() -> None:
    # 18 significant digits take the C fast path; more fall back to exact integer arithmetic.
    texts = ["0.1", "0.10000000000000001", "0.100000000000000011", "1", "1.000000000000000001",
             "999999999999999999", "1000000000000000000", "1000000000000000000.5", "12345678901234567890123",
             "12345678901234567890123.000000000000000001", "12345678901234567890123.000000000000000002",
             "-5", "-0.000000000000000001", "0"]
    rng = random.Random(3)
    texts += [f"{rng.randint(0, 10**25)}.{rng.randint(0, 10**18 - 1):018d}" for _ in range(200)]
    by_key = sorted(texts, key=price_key)
    assert by_key == sorted(texts, key=Decimal)
    keys = [price_key(t) for t in texts]
    assert len(set(keys)) == len({Decimal(t) for t in texts})  # distinct prices never collide


@pytest.mark.parametrize("junk", ["", "-", ".", "abc", "1.2.3", " 1", "1_0", "0x1", "nan", "inf",
                                  "1.0000000000000000001", "1e999999999"])
def test_price_key_refuses_junk_and_inexact(junk: str) -> None:
    with pytest.raises(ValueError):
        price_key(junk)


def test_book_refuses_bad_price() -> None:
    with pytest.raises(ValueError):
        OrderBook().apply_delta([("abc", "1")], [])


@pytest.mark.parametrize("text,zero", [
    ("0", True), ("0.000", True), ("-0", True), ("0e-8", True), ("0E+2", True), ("1", False), ("0.001", False),
    ("", False), (".", False), ("-", False), ("abc", False), ("1e-8", False),
])
def test_is_zero(text: str, zero: bool) -> None:
    assert is_zero(text) is zero


# --- checksums on hand-made books: strings built here by hand, per the exchanges' docs ---

def test_kraken_checksum_documented_format() -> None:
    bids = [("0.05005", "0.00000500"), ("0.04940", "0.00000500")]
    asks = [("0.05120", "0.00000500"), ("0.05275", "0.00000500")]
    # asks low->high then bids high->low; '.' removed, leading zeros stripped.
    expected = zlib.crc32(b"5120500" b"5275500" b"5005500" b"4940500")
    assert kraken_checksum(bids, asks) == expected
    book = OrderBook()
    book.apply_snapshot(bids, asks)
    assert book.checksum_kraken() == expected


def test_kraken_checksum_uses_top_ten_only() -> None:
    bids = [(f"{100 - i}.0", "1.0") for i in range(15)]
    asks = [(f"{101 + i}.0", "2.0") for i in range(15)]
    text = "".join(f"{101 + i}0" + "20" for i in range(10)) + "".join(f"{100 - i}0" + "10" for i in range(10))
    assert kraken_checksum(bids, asks) == zlib.crc32(text.encode())
    assert 0 <= kraken_checksum(bids, asks) < 2**32


def test_kraken_checksum_text_longer_than_the_c_buffer() -> None:
    # 40 strings of ~150 digits overflow the 4 KiB C buffer: the bytearray path gives the same CRC.
    digits = "1" * 140
    bids = [(f"{digits}{90 - i}.5", f"{digits}.25") for i in range(10)]
    asks = [(f"{digits}{91 + i}.5", f"{digits}.75") for i in range(10)]
    text = "".join(f"{digits}{91 + i}5" + f"{digits}75" for i in range(10)) \
        + "".join(f"{digits}{90 - i}5" + f"{digits}25" for i in range(10))
    assert len(text) > 4096
    assert kraken_checksum(bids, asks) == zlib.crc32(text.encode())
    book = OrderBook()
    book.apply_snapshot(bids, asks)
    assert book.checksum_kraken() == zlib.crc32(text.encode())


def test_okx_checksum_documented_format() -> None:
    bids = [("3366.1", "7"), ("3366", "6")]
    asks = [("3366.8", "9"), ("3368", "8"), ("3372", "8")]
    # bid1:ask1:bid2:ask2:ask3 (the shorter side simply ends), signed 32-bit.
    crc = zlib.crc32(b"3366.1:7:3366.8:9:3366:6:3368:8:3372:8")
    expected = crc - 2**32 if crc >= 2**31 else crc
    assert okx_checksum(bids, asks) == expected
    book = OrderBook()
    book.apply_snapshot(bids, asks)
    assert book.checksum_okx() == expected


def test_okx_checksum_is_signed_and_uses_25_levels() -> None:
    bids = [(f"{1000 - i}", f"{i + 1}") for i in range(30)]
    asks = [(f"{1001 + i}", f"{i + 2}") for i in range(30)]
    parts = []
    for i in range(25):
        parts += [bids[i][0], bids[i][1], asks[i][0], asks[i][1]]
    crc = zlib.crc32(":".join(parts).encode())
    assert okx_checksum(bids, asks) == (crc - 2**32 if crc >= 2**31 else crc)
    # Some book must give a negative value: OKX sends a signed int.
    assert any(okx_checksum([(str(p), "1")], []) < 0 for p in range(1, 50))
