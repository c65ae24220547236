"""cryptofeed's reference events for a cryptofeed v3 ``.jsonl`` capture (run with cryptofeed's interpreter).

``../shared/tools/cf_reference.py`` replays only the cryptofeed 2.x capture format
(``EXCHANGE.0`` / ``EXCHANGE.ws.N.0``) through ``cryptofeed.raw_data_collection.playback()``.
The ``cryptofeed_v3/`` captures (Bybit v5, Coinbase Advanced Trade) are JSON lines of
header/http/connect/send/recv records, which playback() cannot read. This tool feeds
them to cryptofeed's own connection handlers the way bench/_cf_replay.py does (same
capture reader and REST answers; each recorded connection's messages go to the handler of
the cryptofeed connection with the same address) and writes one JSON line per callback
in **cf_reference.py's format**: the records are made by cf_reference's own
``make_record`` (imported from that file, not copied), so cf_digest reads both alike.

Like cf_reference it only imports the standard library and cryptofeed, runs with
PYTHONHASHSEED=0 (re-executing itself), answers every REST call from the capture, and
writes a summary object (stdout and ``--summary``) with the same keys cf_digest uses::

    /work/.venv-cf/bin/python tools/cf_reference_v3.py ../shared/sample_data/cryptofeed_v3/BYBIT.jsonl \\
        --out /tmp/cfref/BYBIT_V3.jsonl --top 1000000 --summary /tmp/cfref/BYBIT_V3.summary.json

Differences from playback(): a handler exception is counted (``handler_errors``) and the
replay goes on, where playback() would stop; feeds are built exactly as playback() builds
them (``candle_closed_only=False``, the capture's subscription, one callback per channel).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CF_REFERENCE = ROOT.parent / "shared" / "tools" / "cf_reference.py"
CF_REPLAY = ROOT / "bench" / "_cf_replay.py"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _json_default(value):
    # cryptofeed 2.5.0's Coinbase hands its book updates the envelope's ISO time as a datetime
    # (yapic.json parses ISO text), where other feeds give float seconds: write it as those.
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


async def run(capture: Path, out_path: Path, top: int, full_hash: bool, cf_reference: Path) -> dict:
    from importlib.metadata import version

    from cryptofeed.exchanges import EXCHANGE_MAP
    from cryptofeed.symbols import Symbols

    cfr = _load("cf_reference", cf_reference)
    rep = _load("_cf_replay", CF_REPLAY)
    cap = rep.read_v3(str(capture))
    stats: dict = {"exchange": cap.exchange, "cryptofeed_version": version("cryptofeed"),
                   "python": sys.version.split()[0], "pythonhashseed": os.environ.get("PYTHONHASHSEED"),
                   "files": [capture.name], "subscription_channels": sorted(cap.config),
                   "symbol_mode": "url", "replayer": "tools/cf_reference_v3.py"}
    if cap.exchange not in EXCHANGE_MAP:
        stats["error"] = f"{cap.exchange} is not in this cryptofeed's EXCHANGE_MAP"
        return stats
    Symbols.clear()
    rest_stats: dict = {}
    rep.install_rest(cap, rest_stats)   # exact-URL REST answers, file order as fallback; no sleeps
    stats["symbol_url_fallbacks"] = rest_stats.get("symbol_url_fallbacks", [])

    counts: dict[str, int] = defaultdict(int)
    written = [0]
    out = out_path.open("w", buffering=1 << 20)

    def make_cb(kind: str):
        async def cb(obj, receipt_timestamp):
            rec = cfr.make_record(kind, obj, receipt_timestamp, top, full_hash)
            rec["seq"] = written[0]
            out.write(json.dumps(rec, separators=(",", ":"), default=_json_default))
            out.write("\n")
            written[0] += 1
            counts[kind] += 1
        return cb

    try:
        replay_feed = await rep.ReplayFeed.open(cap, make_cb, stats)   # as playback() builds its feed
    except RuntimeError as exc:
        stats["error"] = str(exc)
        return stats
    route, handlers = replay_feed.route, replay_feed.handlers
    stats["connections"] = {cid: route[cid][0] for cid in sorted(route)}
    errors: dict[str, int] = defaultdict(int)
    logging.disable(logging.WARNING)
    for cid, ts, msg in cap.messages:
        _, handler, ws = route.get(cid, handlers[-1])
        try:
            await handler(msg, ws, ts)
        except Exception as exc:  # noqa: BLE001 - counted and reported, the replay goes on
            errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
    out.close()
    await replay_feed.close()
    Symbols.clear()
    stats.update(messages_processed=len(cap.messages), events_written=written[0],
                 events_by_type=dict(sorted(counts.items())), handler_errors=dict(errors), error=None)
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", type=Path, help="a cryptofeed v3 .jsonl capture")
    ap.add_argument("--out", type=Path, required=True, help="output JSONL (cf_reference.py's format)")
    ap.add_argument("--top", type=int, default=10, help="book levels per side listed in each book event")
    ap.add_argument("--no-full-hash", action="store_true", help="skip the sha256 of the whole book per book event")
    ap.add_argument("--summary", type=Path, help="also write the summary JSON to this file")
    ap.add_argument("--cf-reference", type=Path, default=DEFAULT_CF_REFERENCE,
                    help="cf_reference.py, whose make_record() writes the records (default: %(default)s)")
    args = ap.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":
        # cryptofeed keeps subscriptions in sets; a fixed seed makes the output reproducible.
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
                  dict(os.environ, PYTHONHASHSEED="0"))
    try:
        stats = asyncio.run(run(args.capture.resolve(), args.out, args.top, not args.no_full_hash,
                                args.cf_reference))
    except Exception as exc:  # noqa: BLE001 - reported as data
        stats = {"capture": str(args.capture), "error": f"{type(exc).__name__}: {exc}"}
    line = json.dumps(stats)
    print(line)
    if args.summary:
        args.summary.write_text(line + "\n")
    if stats.get("error"):
        sys.exit(2)


if __name__ == "__main__":
    main()
