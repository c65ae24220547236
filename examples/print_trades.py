"""Print live trades (iteration API). Run: python examples/print_trades.py --source PUB[,SNAP] | --demo"""

from __future__ import annotations

import argparse

from consumers.user import Feed

ap = argparse.ArgumentParser()
ap.add_argument("--source", help="gateway endpoint 'PUB[,SNAPSHOT]'")
ap.add_argument("--demo", action="store_true", help="start a synthetic in-process gateway")
ap.add_argument("--count", type=int, default=0, help="stop after N trades (0: forever)")
args = ap.parse_args()
source = args.source
if args.demo:
    from _demo import start_demo
    source, _ = start_demo()

with Feed(source, ["trades."]) as feed:
    for n, trade in enumerate(feed.events(), 1):
        print(trade.exchange, trade.symbol, trade.side, trade.amount_str, "@", trade.price_str)
        if n == args.count:
            break
