"""Async iteration over the NBBO published by the nbbo consumer.

Run: python examples/async_nbbo.py --source ipc:///run/ff/nbbo.pub
"""

from __future__ import annotations

import argparse
import asyncio

from consumers.user import AsyncFeed


async def main(source: str) -> None:
    async with AsyncFeed(source, ["nbbo."]) as feed:
        async for n in feed.events():
            print(f"{n.symbol}: {n.bid_str} ({n.bid_exchange}) / {n.ask_str} ({n.ask_exchange})")


ap = argparse.ArgumentParser()
ap.add_argument("--source", required=True)
asyncio.run(main(ap.parse_args().source))
