"""Reader for ``tardis_messages/<exchange-id>.jsonl``: one raw exchange message per line.

The lines carry no receipt time; records get ``ts`` = line index in ms (so order and
pacing are stable). The header names our exchange id (:data:`TARDIS_EXCHANGES`) when
known. Each line is a ``recv`` on connection ``"tardis"``, except for exchanges whose
adapter needs to know which of its connections a message came from: Bybit v5 has one
websocket per category, so ``bybit-spot`` lines are on ``spot``, ``bybit-options`` on
``option`` and ``bybit`` (derivatives) on ``inverse`` or ``linear``, told apart by the
topic's symbol (:func:`bybit_connection`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
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
    "okex-options": "OKX",
    "okex-spreads": "OKX",   # spread (sprd-*) channels: no normalized form, counted as ignored
    "bybit": "BYBIT",
    "bybit-spot": "BYBIT",
    "bybit-options": "BYBIT",
    "bitmex": "BITMEX",
    "deribit": "DERIBIT",
}

_TOPIC = re.compile(r'"topic"\s*:\s*"([^"]*)"')
# Inverse contracts: BTCUSD (perpetual), BTCUSDH23 (quarterly: month code + year).
_INVERSE = re.compile(r"USD([FGHJKMNQUVXZ]\d\d)?$")


def bybit_connection(line: str) -> str:
    """The Bybit v5 connection (category) a line of tardis' ``bybit`` file arrived on."""
    m = _TOPIC.search(line)
    symbol = m.group(1).rsplit(".", 1)[-1] if m else ""
    return "inverse" if _INVERSE.search(symbol) else "linear"


# tardis exchange id → the connection id of a line (default: "tardis").
TARDIS_CONNECTIONS: dict[str, Callable[[str], str]] = {
    "bybit": bybit_connection,
    "bybit-spot": lambda line: "spot",
    "bybit-options": lambda line: "option",
}


def read_tardis(path: str | os.PathLike[str]) -> Iterator[Record]:
    path = Path(path)
    tid = path.stem
    yield Record(HEADER, "", 0, {"format": "tardis", "tardis_exchange": tid,
                                 "exchange": TARDIS_EXCHANGES.get(tid, tid.upper()), "channels": {}}, None)
    conn_of = TARDIS_CONNECTIONS.get(tid)
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for i, line in enumerate(f):
            line = line.rstrip("\n")
            if line:
                conn = conn_of(line) if conn_of is not None else "tardis"
                yield Record(RECV, conn, (i + 1) * 1_000_000, line, None)
