"""Callbacks with correct books: print the spread of every book update and count gaps.

Run: python examples/book_callbacks.py --source PUB,SNAP | --demo [--seconds 5]
"""

from __future__ import annotations

import argparse

from consumers.user import Feed
from cryptofeed_types.events import Gap, L2Delta, L2Snapshot

ap = argparse.ArgumentParser()
ap.add_argument("--source")
ap.add_argument("--demo", action="store_true")
ap.add_argument("--seconds", type=float, default=0, help="stop after N seconds (0: until Ctrl-C)")
args = ap.parse_args()
source = args.source
if args.demo:
    from _demo import start_demo
    source, _ = start_demo()

feed = Feed(source, ["book.", "gap."])


def on_book(ev: L2Delta | L2Snapshot) -> None:
    book = feed.book(ev.exchange, ev.symbol)   # validated: never a book with a hole in it
    if book is None:                           # only from this feed's own books (books=True)
        return
    bid, ask = book.best_bid(), book.best_ask()
    if bid and ask:
        print(f"{ev.exchange} {ev.symbol} {bid[0]} / {ask[0]}")


feed.on(L2Delta, on_book)
feed.on(L2Snapshot, on_book)
feed.on(Gap, lambda ev: print("GAP", ev.exchange, ev.symbol, ev.reason))
if args.seconds:
    import threading
    threading.Timer(args.seconds, feed.stop).start()
feed.run()
feed.close()
