"""Benchmark of a streamed long-tail book: what one ccxt.pro ``watch_order_book`` result costs the adapter.

ccxt.pro hands over its whole synced book on every update, so the adapter converts and diffs every
level each time (gateways/exchanges/longtail.py ``_book``) to publish the few that changed. In the
same run and process, on the very same messages:

- ``adapter``: ``CcxtAdapter.on_message`` of each ``{"call", "result"}`` message (parse, per-level
  exact text, diff against our book, the L2Delta + BBO);
- ``bare``: ``orjson.loads`` of the same messages, nothing else (the baseline).

Messages: a book of ``--levels`` levels per side (floats, as ccxt.pro gives them), each update
resizing one of the top 50 bids: the common case of a busy book.

    python bench/longtail_stream.py               # 1000 levels per side, 300 updates
    python bench/longtail_stream.py --levels 100
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

from gateways import exchanges  # noqa: E402
from gateways.adapter import Subscription  # noqa: E402
from gateways.exchanges.longtail import call_url  # noqa: E402

MARKETS = {"BTC/USDT": {"id": "BTCUSDT", "type": "spot", "base": "BTC", "quote": "USDT", "settle": None,
                        "precision": {"price": 0.01, "amount": 1e-05}}}


def messages(levels: int, updates: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    call = call_url("watch_order_book", symbol="BTC/USDT")
    bids = [[round(50000 - i * 0.01, 2), round(rng.random(), 5)] for i in range(levels)]
    asks = [[round(50000.01 + i * 0.01, 2), round(rng.random(), 5)] for i in range(levels)]
    out = []
    for _ in range(updates + 1):
        bids[rng.randrange(min(50, levels))][1] = round(rng.random(), 5)
        out.append(orjson.dumps({"call": call, "result": {"bids": bids, "asks": asks, "timestamp": 1}}))
    return out


def best_of(runs: int, fn) -> float:  # noqa: ANN001
    return min(fn() for _ in range(runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=1000)
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    msgs = messages(args.levels, args.updates)

    def adapter_run() -> float:
        ad = exchanges.get("CCXT_BINANCE")(Subscription({"l2_book": ["BTC-USDT"]}, ccxt_stream=True))
        ad.load_instruments({call_url("load_markets"): orjson.dumps(MARKETS)})
        ad.on_message("BINANCE.pro", msgs[0], 1)   # the snapshot, outside the clock
        t = time.perf_counter()
        for m in msgs[1:]:
            ad.on_message("BINANCE.pro", m, 2)
        assert ad.error_counts() == {}
        return (time.perf_counter() - t) / (len(msgs) - 1)

    def bare_run() -> float:
        t = time.perf_counter()
        for m in msgs[1:]:
            orjson.loads(m)
        return (time.perf_counter() - t) / (len(msgs) - 1)

    ours, bare = best_of(args.runs, adapter_run), best_of(args.runs, bare_run)
    print(f"python {platform.python_version()}, {args.levels} levels per side, {args.updates} updates, "
          f"best of {args.runs}")
    print(f"adapter {ours * 1e6:8.0f} us per update   bare orjson.loads {bare * 1e6:6.0f} us   "
          f"bare/adapter {bare / ours:.2f}")


if __name__ == "__main__":
    main()
