"""Benchmark of the wire codec: encode and decode rate per event kind, beside plain msgpack.

For every kind, in the same run and process:

- ``encode``: ``bus.codec.encode(event, ...)`` -> the 3 frames (topic, header, body), against
  the baseline ``msgpack`` packing an equivalent, already built header list and body dict;
- ``decode``: ``bus.codec.decode(frames)`` -> (topic, Header, Event) with every check of
  docs/wire.md, against the baseline ``msgpack.unpackb`` of the same header and body frames
  (plain dicts and lists, no validation, no event object).

The ratio column is baseline time / codec time per message (1.00 = as fast as bare msgpack,
0.50 = half as fast). Events are the deterministic samples of feedfabric.testing.types (full
form: every optional field set), i.e. realistic sizes (a 5-level book delta, ...).

    python bench/codec.py                    # all kinds, ~0.2 s per measurement
    python bench/codec.py --kinds trade,book_delta --seconds 0.5
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

# The repository first: run as a script, this folder would come first and its bus.py would
# shadow the bus package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgpack  # noqa: E402

from bus.codec import decode, encode  # noqa: E402
from feedfabric.testing.types import sample_events  # noqa: E402

GATEWAY, EPOCH, SEQ, PTS = "binance-1", 1_700_000_000_000_000_000, 123_456, 1_700_000_000_125_000_000


def rate(fn: Callable[[], object], seconds: float, repeats: int = 3) -> float:
    """Calls per second of ``fn``: the best of ``repeats`` timed batches of about ``seconds``."""
    n = 1
    while True:  # calibrate a batch size that lasts ~seconds/10
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > seconds / 10:
            break
        n *= 4
    n = max(1, int(n * seconds / dt))
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", help="comma-separated kinds (default: all)")
    ap.add_argument("--seconds", type=float, default=0.2, help="duration of one timed batch")
    args = ap.parse_args()
    wanted = set(args.kinds.split(",")) if args.kinds else None

    packer = msgpack.Packer(use_bin_type=True)
    print(f"python {platform.python_version()}, msgpack {msgpack.version}, {platform.machine()}")
    print(f"{'kind':<15}{'body B':>7} | {'encode/s':>10}{'msgpack/s':>11}{'ratio':>7} | "
          f"{'decode/s':>10}{'msgpack/s':>11}{'ratio':>7}")
    totals = [0.0, 0.0, 0.0, 0.0]
    count = 0
    for ev in sample_events():
        if wanted and ev.KIND not in wanted:
            continue
        frames = encode(ev, GATEWAY, EPOCH, SEQ, publish_ts=PTS)
        topic, header, body = frames
        header_list = msgpack.unpackb(header)
        body_dict = msgpack.unpackb(body)
        frame_list = list(frames)

        def enc() -> object:
            return encode(ev, GATEWAY, EPOCH, SEQ, PTS)  # noqa: B023 - bound per iteration on purpose

        def enc_base() -> object:
            return topic, packer.pack(header_list), packer.pack(body_dict)  # noqa: B023

        def dec() -> object:
            return decode(frame_list)  # noqa: B023

        def dec_base() -> object:
            return topic.decode(), msgpack.unpackb(header), msgpack.unpackb(body)  # noqa: B023

        r = [rate(f, args.seconds) for f in (enc, enc_base, dec, dec_base)]
        for i in range(4):
            totals[i] += 1 / r[i]
        count += 1
        print(f"{ev.KIND:<15}{len(body):>7} | {r[0]:>10,.0f}{r[1]:>11,.0f}{r[0] / r[1]:>7.2f} | "
              f"{r[2]:>10,.0f}{r[3]:>11,.0f}{r[2] / r[3]:>7.2f}")
    if count:
        # Mean over kinds of the time per message, as a rate (each kind weighs the same).
        e, eb, d, db = (count / t for t in totals)
        print(f"{'all (mean)':<15}{'':>7} | {e:>10,.0f}{eb:>11,.0f}{e / eb:>7.2f} | {d:>10,.0f}{db:>11,.0f}{d / db:>7.2f}")


if __name__ == "__main__":
    main()
