"""A malformed book message never leaves a book silently wrong, on every exchange's capture.

Each of the ten exchanges' shared captures is replayed with one value of a book message turned
into junk (feedfabric.testing.adapters.malformed_book_problems), for several messages in turn:
the error is counted and, where the message touched a book, that book is invalid (Gap
``malformed`` or the exchange's sequence/checksum Gap) until rebuilt — never different from the
book its published events build, nor quietly missing the update.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from feedfabric.testing.adapters import malformed_book_problems
from gateways.capture import read_capture

CAPTURES = ["cryptofeed/BINANCE", "cryptofeed/BINANCE_FUTURES", "cryptofeed/BINANCE_DELIVERY", "cryptofeed/KRAKEN",
            "cryptofeed/KRAKEN_FUTURES", "cryptofeed/OKX", "cryptofeed/BITMEX", "cryptofeed/DERIBIT",
            "cryptofeed_v3/BYBIT.jsonl", "cryptofeed_v3/COINBASE.jsonl"]


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: Path(c).stem)
def test_junk_in_a_book_message_ends_in_a_gap_not_a_wrong_book(shared_data: Path, capture: str) -> None:
    records = list(read_capture(shared_data / capture))
    assert malformed_book_problems(records, picks=14) == []
