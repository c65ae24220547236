"""The record type shared by every capture reader and the capture writer."""

from __future__ import annotations

from typing import Any, NamedTuple

HEADER = "header"    # data: dict (exchange, channels, format, ...); first record of a capture
CONNECT = "connect"  # a websocket connection opened; url = its address
SEND = "send"        # a message we sent on conn
RECV = "recv"        # a message received on conn
REST = "rest"        # a REST response: url = the request, data = the body
CLOSE = "close"      # conn closed; data = reason (str) or None

KINDS = (HEADER, CONNECT, SEND, RECV, REST, CLOSE)


class Record(NamedTuple):
    """One captured event. ``ts`` is the receipt time in integer ns; ``data`` is the raw
    payload exactly as received (``str`` for text frames, ``bytes`` for binary frames).
    ``status`` is the HTTP status of a ``rest`` record (0: the request failed without a
    response), None where the capture does not say (older captures, other formats: a 200)."""

    kind: str
    conn: str
    ts: int
    data: Any = None
    url: str | None = None
    status: int | None = None


def seconds_to_ns(text: str | float) -> int:
    """Decimal seconds (``'1633998512.0633569'``) → integer ns without float rounding."""
    if not isinstance(text, str):
        text = repr(float(text))
    sec, _, frac = text.strip().partition(".")
    if "e" in frac or "E" in frac:
        return int(round(float(text) * 1e9))
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
