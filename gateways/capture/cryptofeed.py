"""Readers for the cryptofeed capture formats in the shared sample data (read-only).

Legacy (cryptofeed 2.x, ``sample_data/EX.*``):

- ``EX.0``: ``URL -> TS: BODY`` REST responses (instrument metadata) and one
  ``configuration: {json}`` line (the recorded subscription);
- ``EX.ws.N.0``: one websocket connection: ``URL <-> TS`` (connect), ``URL <- TS: MSG``
  (sent), ``TS: MSG`` (received; a Python bytes literal ``b'...'`` for binary frames);
- ``EX.http.N.0``: ``URL -> TS: BODY`` REST responses fetched while streaming.

The files of one session are merged by timestamp into one record stream.

v3 (``EX.jsonl``): one JSON object per line with ``t`` in header/http/connect/send/recv.
"""

from __future__ import annotations

import ast
import heapq
import os
import re
from collections.abc import Iterator
from pathlib import Path

import orjson

from gateways.capture.record import CONNECT, HEADER, RECV, REST, SEND, Record, seconds_to_ns

_NUM = re.compile(r"^\d+(\.\d+)?$")
_MONTHS = "FGHJKMNQUVXZ"


def normalize_cryptofeed_symbol(symbol: str) -> str:
    """cryptofeed's dated-future form ``LINK-USD-21Z31`` → ours ``LINK-USD-20211231``;
    other forms pass through unchanged."""
    parts = symbol.split("-")
    if len(parts) >= 3 and len(parts[2]) == 5 and parts[2][:2].isdigit() and parts[2][2] in _MONTHS \
            and parts[2][3:].isdigit():
        code = parts[2]
        parts[2] = f"20{code[:2]}{_MONTHS.index(code[2]) + 1:02d}{code[3:]}"
    return "-".join(parts)


def _payload(text: str) -> str | bytes:
    if text.startswith(("b'", 'b"')):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return text


def _parse_rest_line(line: str, conn: str) -> Record | None:
    url, sep, rest = line.partition(" -> ")
    if not sep:
        return None
    ts, sep, body = rest.partition(": ")
    if not sep or not _NUM.match(ts):
        return None
    return Record(REST, conn, seconds_to_ns(ts), _payload(body), url)


def _rest_file(path: Path, conn: str) -> Iterator[Record]:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("configuration: "):
                continue
            rec = _parse_rest_line(line, conn)
            if rec is not None:
                yield rec


def _ws_file(path: Path, conn: str) -> Iterator[Record]:
    url = None
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("configuration: "):
                continue
            if " <-> " in line and not line[0].isdigit():
                url, _, ts = line.rpartition(" <-> ")
                yield Record(CONNECT, conn, seconds_to_ns(ts), None, url)
                continue
            if " <- " in line and not line[0].isdigit():
                addr, _, rest = line.partition(" <- ")
                ts, _, msg = rest.partition(": ")
                yield Record(SEND, conn, seconds_to_ns(ts), _payload(msg), addr)
                continue
            ts, sep, msg = line.partition(": ")
            if sep and _NUM.match(ts):
                yield Record(RECV, conn, seconds_to_ns(ts), _payload(msg), None)


def _file_no(path: Path) -> int:
    try:
        return int(path.name.split(".")[-2])
    except (ValueError, IndexError):
        return 0


def read_legacy(prefix: str | os.PathLike[str]) -> Iterator[Record]:
    """Records of a cryptofeed 2.x session; ``prefix`` is ``.../EX`` or ``.../EX.0``."""
    prefix = Path(prefix)
    if prefix.name.endswith(".0") and prefix.name.count(".") >= 1 and (prefix.parent / prefix.name).is_file() \
            and not any(t in prefix.name for t in (".ws.", ".http.")):
        prefix = prefix.with_name(prefix.name[:-2])
    exchange = prefix.name
    main = prefix.with_name(f"{exchange}.0")
    config: dict = {}
    if main.exists():
        with open(main, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                if line.startswith("configuration: "):
                    config = orjson.loads(line[len("configuration: "):])
    channels = {ch: [normalize_cryptofeed_symbol(s) for s in syms] for ch, syms in config.items()
                if isinstance(syms, list)}
    streams: list[Iterator[Record]] = []
    if main.exists():
        streams.append(_rest_file(main, "rest"))
    folder = prefix.parent
    for p in sorted(folder.glob(f"{exchange}.http.*.0"), key=_file_no):
        streams.append(_rest_file(p, f"http.{_file_no(p)}"))
    for p in sorted(folder.glob(f"{exchange}.ws.*.0"), key=_file_no):
        streams.append(_ws_file(p, f"ws.{_file_no(p)}"))
    first_ts = 0
    yield Record(HEADER, "", first_ts, {"format": "cryptofeed", "exchange": exchange, "channels": channels,
                                        "raw_config": config}, None)
    yield from heapq.merge(*streams, key=lambda r: r.ts)


def read_v3(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Records of a cryptofeed v3 ``.jsonl`` capture."""
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            d = orjson.loads(line)
            t = d.get("t")
            if t == "header":
                cfg = d.get("config") or {}
                meta = {k: v for k, v in d.items() if k not in ("t", "config")}
                meta.update(format="cryptofeed_v3", exchange=d.get("exchange"), raw_config=cfg,
                            channels={ch: [normalize_cryptofeed_symbol(s) for s in syms]
                                      for ch, syms in cfg.items() if isinstance(syms, list)})
                yield Record(HEADER, "", 0, meta, None)
            elif t == "recv":
                yield Record(RECV, d["conn"], seconds_to_ns(d["ts"]), d.get("data"), None)
            elif t == "send":
                yield Record(SEND, d["conn"], seconds_to_ns(d["ts"]), d.get("data"), d.get("addr"))
            elif t == "connect":
                yield Record(CONNECT, d["conn"], seconds_to_ns(d["ts"]), None, d.get("addr"))
            elif t == "http":
                yield Record(REST, d.get("conn", "rest"), seconds_to_ns(d["ts"]), d.get("data"), d.get("url"))
