"""``feedfabric tap PREFIX``: print decoded events from the bus as they arrive.

Two output forms: a compact human line per event (time, topic, the event's main fields;
books as their top levels), or ``--json``: one JSON object per line (orjson) with the
topic, the header (gateway, epoch, seq, timestamps) and the event's ``to_dict`` with exact
decimal strings — suitable for ``jq``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from bus.endpoints import GatewayEndpoint
from bus.subscriber import Message, Subscriber

_SKIP = {"kind", "exchange", "symbol", "timestamp", "receipt_timestamp", "exchange_symbol"}


def _clock(ns: int | None) -> str:
    if not ns:
        return "-" * 15
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%H:%M:%S.%f")


def _levels(levels: Any, n: int = 3) -> str:
    return " ".join(f"{p}x{s}" for p, s in list(levels)[:n]) + (" …" if len(levels) > n else "")


def format_human(msg: Message) -> str:
    """One line: receipt time, topic, seq, then the event's fields (books: first levels)."""
    ev = msg.event
    d = ev.to_dict(numeric_type=str)
    parts = []
    for key, value in d.items():
        if key in _SKIP or value is None:
            continue
        if key in ("bids", "asks"):
            parts.append(f"{key}=[{_levels(value)}]" + (f"({len(value)})" if value else ""))
        elif isinstance(value, dict):
            parts.append(f"{key}={{{', '.join(f'{k}: {v}' for k, v in list(value.items())[:8])}"
                         f"{', …' if len(value) > 8 else ''}}}")
        else:
            parts.append(f"{key}={value}")
    ts = ev.receipt_timestamp or msg.header.receipt_timestamp
    return f"{_clock(ts)} {msg.topic:<34} #{msg.header.seq:<6} {' '.join(parts)}"


def format_json(msg: Message) -> bytes:
    """One JSON object: topic, header fields and the event (exact decimal strings)."""
    h = msg.header
    return orjson.dumps({
        "topic": msg.topic,
        "gateway": h.gateway, "epoch": h.epoch, "seq": h.seq,
        "publish_timestamp": h.publish_timestamp,
        "event": msg.event.to_dict(numeric_type=str),
    })


def tap(endpoints: Sequence[GatewayEndpoint | str], prefixes: Sequence[str], *, as_json: bool = False,
        count: int | None = None, duration: float | None = None, heartbeats: bool = False,
        write: Callable[[str], None] = print, books: bool = True) -> int:
    """Print messages until ``count`` messages, ``duration`` seconds, or Ctrl-C; returns how many."""
    n = 0
    end = None if duration is None else time.monotonic() + duration
    with Subscriber(list(endpoints), list(prefixes), books=books) as sub:
        try:
            while count is None or n < count:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    break
                msg = sub.recv(timeout=0.5 if left is None else min(left, 0.5))
                if msg is None:
                    continue
                if not heartbeats and msg.topic.startswith("heartbeat.") and not any(
                        p.startswith("heartbeat") for p in prefixes):
                    continue
                write(format_json(msg).decode() if as_json else format_human(msg))
                n += 1
        except KeyboardInterrupt:
            pass
    return n
