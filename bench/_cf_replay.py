"""Timing harness for cryptofeed's own message handling (run with cryptofeed's interpreter).

bench/gateway.py runs this file as a subprocess under the venv that has cryptofeed
installed (see its --cf-python); it must therefore import nothing from feedfabric and
only the standard library plus cryptofeed. It replays one capture through cryptofeed's
feed handler with no-op callbacks and prints one JSON object:
``{"messages": N, "seconds": S, "callbacks": {...}, "cryptofeed_version": ..., ...}``.

What is timed: only the loop that hands each recorded websocket message (already in
memory, bytes literals already decoded) to the feed's connection handler, the same call
cryptofeed's ``playback()`` makes. Symbol tables, feed construction, subscription and
file reading happen before the clock starts. REST book snapshots the feed fetches while
streaming are answered from the capture inside the timed loop (as in a live run they
would be awaited there too); they are a few per capture.

Captures: a cryptofeed 2.x prefix (``.../sample_data/cryptofeed/EXCHANGE``) or a
cryptofeed v3 ``.jsonl`` file (header/http/connect/send/recv records). Messages of each
recorded connection go to the handler of the cryptofeed connection with the same
address (the longest shared prefix wins); with a single handler, everything goes there.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from urllib.parse import urlsplit

_WS_RE = re.compile(r"^(?P<ex>.+?)\.ws\.(?P<conn>\d+)\.(?P<part>\d+)$")
_HTTP_RE = re.compile(r"^(?P<ex>.+?)\.http\.(?P<conn>\d+)\.(?P<part>\d+)$")

_CONFIG = """\
log:
    filename: {log}
    level: WARNING
uvloop: False
deribit:
    key_id: TestID
    key_secret: ClientSecret
coinbase:
    key_id: test
    key_secret: test
kucoin:
    key_id: test
    key_secret: test
    key_passphrase: test
"""


class Capture:
    """What a replay needs: subscription, REST bodies, (address, [(ts, msg)]) per connection."""

    def __init__(self) -> None:
        self.exchange = ""
        self.config: dict = {}
        self.symbol_rest: list[tuple[str, str]] = []          # (url, body), file order
        self.stream_rest: dict[str, list[str]] = defaultdict(list)   # url -> bodies
        self.conns: dict[str, str] = {}                         # conn id -> address
        self.messages: list[tuple[str, str, str | bytes]] = []  # (conn id, ts string, message)


def _legacy_message(text: str) -> str | bytes:
    # Compressed frames (OKX raw deflate, HUOBI gzip) are stored as Python bytes literals.
    if text.startswith(("b'", 'b"')):
        return ast.literal_eval(text)
    return text


def _file_key(name: str) -> tuple[int, int]:
    m = _WS_RE.match(name) or _HTTP_RE.match(name)
    return (int(m.group("conn")), int(m.group("part"))) if m else (0, 0)


def read_legacy(prefix: str) -> Capture:
    cap = Capture()
    folder, ex = os.path.split(os.path.abspath(prefix))
    cap.exchange = ex
    with open(os.path.join(folder, f"{ex}.0"), encoding="utf-8") as fp:
        for line in fp:
            if line == "\n":
                continue
            if line.startswith("configuration:"):
                cap.config = json.loads(line.split(": ", 1)[1])
            elif " -> " in line:
                url, rest = line.split(" -> ", 1)
                cap.symbol_rest.append((url.strip(), rest.split(": ", 1)[1].strip()))
    names = sorted(os.listdir(folder), key=_file_key)
    for name in names:
        m = _HTTP_RE.match(name)
        if m and m.group("ex") == ex:
            with open(os.path.join(folder, name), encoding="utf-8") as fp:
                for line in fp:
                    if line.startswith("http") and " -> " in line:
                        url, rest = line.split(" -> ", 1)
                        cap.stream_rest[url].append(rest.split(": ", 1)[1])
    for name in names:
        m = _WS_RE.match(name)
        if not (m and m.group("ex") == ex):
            continue
        conn = m.group("conn")
        cap.conns.setdefault(conn, "")
        with open(os.path.join(folder, name), encoding="utf-8") as fp:
            for line in fp:
                if line == "\n":
                    continue
                if line.startswith("wss") or line.startswith("ws:"):
                    if " <-> " in line:
                        cap.conns[conn] = line.split(" <-> ", 1)[0]
                    continue
                if line.startswith("htt"):
                    continue
                ts, msg = line.split(": ", 1)
                cap.messages.append((conn, ts, _legacy_message(msg.rstrip("\n"))))
    return cap


def read_v3(path: str) -> Capture:
    cap = Capture()
    with open(path, encoding="utf-8") as fp:
        for line in fp:
            rec = json.loads(line)
            t = rec.get("t")
            if t == "header":
                cap.exchange = rec["exchange"]
                cap.config = rec.get("config") or {}
            elif t == "http":
                data = rec.get("data")
                body = data if isinstance(data, str) else json.dumps(data)
                cap.symbol_rest.append((rec["url"], body))
                cap.stream_rest[rec["url"]].append(body)
            elif t == "connect":
                cap.conns[rec["conn"]] = rec.get("addr") or ""
            elif t == "recv":
                data = rec["data"]
                cap.messages.append((rec["conn"], str(rec["ts"]), data if isinstance(data, str) else json.dumps(data)))
    return cap


def _path_of(url: str) -> str:
    return urlsplit(url).path.rstrip("/")


def install_rest(cap: Capture, stats: dict) -> None:
    """Answer cryptofeed's REST calls from the capture: exact URL first, then by order / path."""
    from cryptofeed.connection import HTTPAsyncConn, HTTPSync

    symbol_rest = list(cap.symbol_rest)
    try:
        # cryptofeed decodes REST JSON with yapic.json, which turns ISO dates into datetimes
        # (BitMEX expiries rely on that); use the same decoder.
        from yapic import json as cf_json
    except ImportError:  # pragma: no cover - older cryptofeed
        cf_json = json

    def sync_read(self, address, params=None, headers=None, json_=False, text=True, uuid=None, **kw):
        for i, (url, body) in enumerate(symbol_rest):
            if url == address:
                del symbol_rest[i]
                return cf_json.loads(body)
        if not symbol_rest:
            raise RuntimeError(f"no recorded REST response for {address}")
        stats.setdefault("symbol_url_fallbacks", []).append(address)
        return cf_json.loads(symbol_rest.pop(0)[1])

    async def async_read(self, address, *a, **kw):
        bodies = cap.stream_rest.get(address)
        if not bodies:
            for url, b in cap.stream_rest.items():
                if b and _path_of(url) == _path_of(address):
                    bodies = b
                    break
        if not bodies:
            raise RuntimeError(f"no recorded REST response for {address}")
        data = bodies.pop(0)
        if " header: " in data:
            body, header = data.split(" header: ", 1)
            return body, json.loads(header)
        return data

    HTTPSync.read = sync_read
    HTTPAsyncConn.read = async_read

    real_sleep = asyncio.sleep

    async def no_sleep(delay, result=None):
        # Feeds that pause in subscribe() would only add idle time to a replay.
        return await real_sleep(0, result)

    asyncio.sleep = no_sleep


class _FakeConn:
    """Stands in for cryptofeed's websocket connection object during subscribe/handle."""

    conn_type = "wss"
    uuid = "replay"

    def __init__(self, subscription: dict, address: str) -> None:
        self.subscription = subscription
        self.address = address
        self.sent = 0

    async def write(self, *args, **kwargs) -> None:
        self.sent += 1

    async def read(self, *args, **kwargs):  # pragma: no cover - never read from in a replay
        raise RuntimeError("replay connection is not readable")


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class ReplayFeed:
    """A cryptofeed feed of ``cap``'s exchange, subscribed as the capture was, with one fake
    connection per cryptofeed connection and each recorded connection routed to the handler
    whose address shares the longest prefix with it (the one stand-in for playback()'s set-up,
    shared by this benchmark and tools/cf_reference_v3.py).

    Each fake connection holds *that* connection's own subscription, as a live cryptofeed
    connection does (Bybit's handler decides per connection which channels a tickers
    message feeds); older feeds whose connections carry none get the whole subscription.
    """

    def __init__(self, feed, stage: str, handlers: list[tuple], route: dict[str, tuple]) -> None:
        self.feed = feed
        self.stage = stage
        self.handlers = handlers          # (address, handler, fake connection)
        self.route = route                # capture connection id -> one of handlers

    @classmethod
    async def open(cls, cap: Capture, make_cb, stats: dict) -> ReplayFeed:
        from cryptofeed.exchanges import EXCHANGE_MAP

        stage = tempfile.mkdtemp(prefix="cfreplay_")
        config_file = os.path.join(stage, "config.yaml")
        with open(config_file, "w") as fp:
            fp.write(_CONFIG.format(log=os.path.join(stage, "feedhandler.log")))
        feed_cls = EXCHANGE_MAP[cap.exchange]
        # Channels this cryptofeed has no websocket support for are left out of the subscription
        # (their messages are still fed, as the exchange sent them); reported as data.
        supported = getattr(feed_cls, "websocket_channels", None) or {}
        config = {ch: syms for ch, syms in cap.config.items() if not supported or ch in supported}
        stats["unsupported_channels"] = sorted(set(cap.config) - set(config))
        feed = feed_cls(candle_closed_only=False, config=config_file, subscription=config,
                        callbacks={ch: make_cb(ch) for ch in config})
        whole = {feed.std_channel_to_exchange(ch): [feed.std_symbol_to_exchange_symbol(s) for s in syms]
                 for ch, syms in config.items()}
        handlers = []
        for conn, sub, handler, _auth in feed.connect():
            address = getattr(conn, "address", "") or ""
            ws = _FakeConn(getattr(conn, "subscription", None) or whole, address if isinstance(address, str) else "")
            await sub(ws)
            handlers.append((ws.address, handler, ws))
        if not handlers:
            raise RuntimeError("cryptofeed built no connection for this subscription")
        route = {cid: max(handlers, key=lambda h, a=addr: _common_prefix(h[0], a)) for cid, addr in cap.conns.items()}
        return cls(feed, stage, handlers, route)

    async def close(self) -> None:
        self.feed.stop()
        try:
            await self.feed.shutdown()
        except Exception:  # noqa: BLE001 - nothing to shut down in a replay
            pass
        shutil.rmtree(self.stage, ignore_errors=True)


async def replay(cap: Capture, repeat: int) -> dict:
    import cryptofeed

    stats: dict = {"exchange": cap.exchange, "python": sys.version.split()[0]}
    try:
        from importlib.metadata import version
        stats["cryptofeed_version"] = version("cryptofeed")
    except Exception:  # noqa: BLE001 - version is informative only
        stats["cryptofeed_version"] = getattr(cryptofeed, "__version__", None)
    install_rest(cap, stats)
    callbacks_seen: dict[str, int] = defaultdict(int)

    def make_cb(kind: str):
        async def cb(obj, receipt_timestamp):
            callbacks_seen[kind] += 1
        return cb

    replay_feed = await ReplayFeed.open(cap, make_cb, stats)
    route, last = replay_feed.route, replay_feed.handlers[-1]
    work = [(*route.get(cid, last)[1:], msg, ts) for cid, ts, msg in cap.messages]

    # Messages of channels this cryptofeed does not handle are logged one by one as warnings;
    # formatting those would be charged to cryptofeed, so logging is off while timing.
    logging.disable(logging.WARNING)
    errors: dict[str, int] = defaultdict(int)
    t0 = time.perf_counter()
    for _ in range(repeat):
        for handler, ws, msg, ts in work:
            try:
                await handler(msg, ws, ts)
            except Exception as exc:  # noqa: BLE001 - playback() would stop here; we count and go on
                errors[f"{type(exc).__name__}: {exc}"[:80]] += 1
    seconds = time.perf_counter() - t0
    await replay_feed.close()
    stats.update(messages=len(work) * repeat, seconds=seconds, repeat=repeat,
                 callbacks=dict(callbacks_seen), connections=len(replay_feed.handlers),
                 handler_errors=dict(errors))
    return stats


def time_playback(prefix: str) -> dict:
    """Wall time of cryptofeed's own playback() on a 2.x capture, setup and file reading included."""
    from cryptofeed.raw_data_collection import playback

    folder, ex = os.path.split(os.path.abspath(prefix))
    own = re.compile(rf"^{re.escape(ex)}\.(?:\d+|(?:ws|http)\.\d+\.\d+)$")
    names = sorted((n for n in os.listdir(folder) if own.match(n)),
                   key=lambda n: (2 if ".ws." in n else 1 if ".http." in n else 0, _file_key(n)))
    # playback() classifies files by substrings of the whole path: replay from a folder of
    # symlinks through './NAME' paths so the sample folder's own path cannot confuse it.
    stage = tempfile.mkdtemp(prefix="cfpb_")
    for n in names:
        os.symlink(os.path.join(folder, n), os.path.join(stage, n))
    config = os.path.join(stage, "config.yaml")
    with open(config, "w") as fp:
        fp.write(_CONFIG.format(log=os.path.join(stage, "feedhandler.log")))
    cwd = os.getcwd()
    os.chdir(stage)
    logging.disable(logging.WARNING)

    async def noop(*args, **kwargs) -> None:
        return None

    try:
        cfg = None
        with open(f"{ex}.0", encoding="utf-8") as fp:
            for line in fp:
                if line.startswith("configuration:"):
                    cfg = json.loads(line.split(": ", 1)[1])
        t0 = time.perf_counter()
        res = playback(ex, ["./" + n for n in names], callbacks={ch: noop for ch in cfg or {}}, config=config)
        seconds = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
        shutil.rmtree(stage, ignore_errors=True)
    return {"exchange": ex, "messages": res["messages_processed"], "seconds": seconds, "mode": "playback",
            "callbacks": res.get("callbacks")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", help="cryptofeed 2.x prefix (.../EXCHANGE) or v3 .jsonl file")
    ap.add_argument("--repeat", type=int, default=1, help="replay the message list this many times")
    ap.add_argument("--playback", action="store_true",
                    help="instead: wall time of cryptofeed's playback() (2.x captures; includes setup and file reading)")
    args = ap.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":
        # cryptofeed keeps subscriptions in sets; a fixed seed keeps REST snapshot order stable.
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
                  dict(os.environ, PYTHONHASHSEED="0"))
    if args.playback:
        try:
            stats = time_playback(args.capture)
        except Exception as exc:  # noqa: BLE001 - reported to the caller as data
            stats = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(stats))
        return
    cap = read_v3(args.capture) if args.capture.endswith(".jsonl") else read_legacy(args.capture)
    try:
        stats = asyncio.run(replay(cap, args.repeat))
    except Exception as exc:  # noqa: BLE001 - reported to the caller as data
        stats = {"exchange": cap.exchange, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
