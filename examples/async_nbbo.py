"""Async iteration over the NBBO published by the nbbo consumer.

Run: python examples/async_nbbo.py --source ipc:///run/ff/nbbo.pub[,ipc:///run/ff/nbbo.snap] [--count N]

The source is the nbbo consumer's PUB (and snapshot) endpoint, e.g. from a running
``feedfabric up`` or ``feedfabric demo`` (``feedfabric status`` lists the endpoints).
"""

from __future__ import annotations

import argparse
import asyncio

from consumers.user import AsyncFeed


async def main(source: str, count: int) -> None:
    seen = 0
    async with AsyncFeed(source, ["nbbo."]) as feed:
        async for n in feed.events():
            bid = f"{n.bid_str} ({n.bid_exchange})" if n.bid_str is not None else "-"
            ask = f"{n.ask_str} ({n.ask_exchange})" if n.ask_str is not None else "-"
            print(f"{n.symbol}: {bid} / {ask}", flush=True)
            seen += 1
            if count and seen >= count:
                return


ap = argparse.ArgumentParser()
ap.add_argument("--source", required=True)
ap.add_argument("--count", type=int, default=0, help="stop after N NBBO updates (0: until Ctrl-C)")
args = ap.parse_args()
asyncio.run(main(args.source, args.count))
