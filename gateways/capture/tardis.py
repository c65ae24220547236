"""Reader for ``tardis_messages/<exchange-id>.jsonl``: one raw exchange message per line.

The lines carry no receipt time; records get ``ts`` = line index in ms (so order and
pacing are stable) on one connection ``"tardis"``. The header names our exchange id
(:data:`TARDIS_EXCHANGES`) when known.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gateways.capture.record import HEADER, RECV, Record

# tardis exchange id → feedfabric exchange id (extend when adding an exchange).
TARDIS_EXCHANGES: dict[str, str] = {
    "binance": "BINANCE",
    "binance-futures": "BINANCE_FUTURES",
    "binance-delivery": "BINANCE_DELIVERY",
    "coinbase": "COINBASE",
    "kraken": "KRAKEN",
    "cryptofacilities": "KRAKEN_FUTURES",
    "okex": "OKX",
    "okex-swap": "OKX",
    "okex-futures": "OKX",
    "bybit": "BYBIT",
    "bybit-spot": "BYBIT",
    "bitmex": "BITMEX",
    "deribit": "DERIBIT",
}


def read_tardis(path: str | Path) -> Iterator[Record]:
    path = Path(path)
    tid = path.stem
    yield Record(HEADER, "", 0, {"format": "tardis", "tardis_exchange": tid,
                                 "exchange": TARDIS_EXCHANGES.get(tid, tid.upper()), "channels": {}}, None)
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for i, line in enumerate(f):
            line = line.rstrip("\n")
            if line:
                yield Record(RECV, "tardis", (i + 1) * 1_000_000, line, None)
