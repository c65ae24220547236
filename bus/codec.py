"""The wire codec: an event <-> the three ZeroMQ frames ``[topic, header, body]``.

docs/wire.md is the normative description; this module is its reference
implementation. Decoding untrusted bytes raises only :class:`WireError`.

    topic   ASCII, '<channel>.<key>.<key>.' (always ends with '.')
    header  msgpack array [version, gateway, epoch, seq, exchange_ts, receipt_ts, publish_ts]
    body    msgpack map: {'kind': ..., field: value, ...} (decimals as exact strings)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import msgpack

from cryptofeed_types import events as _events
from cryptofeed_types.events import EVENT_CLASSES, Event
from cryptofeed_types.events import header_prefix as _header_prefix
from cryptofeed_types.events import pack_header as _pack_header

WIRE_VERSION = 1
# Frames larger than this are refused before msgpack sees them: a 1000-level book
# snapshot is ~60 KB, so 16 MiB leaves room for L3 books while bounding memory.
MAX_FRAME = 16 * 1024 * 1024
_MAX_TOPIC = 512


class WireError(ValueError):
    """Any frame that is not a valid feedfabric v1 message (the only error decode raises)."""


class Header(NamedTuple):
    """The decoded header frame (timestamps in integer nanoseconds)."""

    version: int
    gateway: str
    epoch: int
    seq: int
    timestamp: int | None
    receipt_timestamp: int
    publish_timestamp: int


def header_prefix(gateway: str, epoch: int) -> bytes:
    """The encoded start of every header of one publisher epoch (for :func:`encode_header`)."""
    return _header_prefix(WIRE_VERSION, gateway, epoch)


def encode(event: Event, gateway: str, epoch: int, seq: int, publish_ts: int | None = None,
           topic: str | None = None) -> tuple[bytes, bytes, bytes]:
    """Encode one event as ``(topic, header, body)`` frames.

    ``topic`` may be passed when the caller already computed ``event.topic()``.
    """
    if publish_ts is None:
        publish_ts = time.time_ns()
    if topic is None:
        topic = event.topic()
    header = _pack_header(header_prefix(gateway, epoch), seq, event.timestamp, event.receipt_timestamp, publish_ts)
    return topic.encode("ascii"), header, event.wire_pack()


def encode_header(gateway: str, epoch: int, seq: int, timestamp: int | None, receipt_timestamp: int,
                  publish_ts: int) -> bytes:
    """The header frame (msgpack of ``[version, gateway, epoch, seq, ts, receipt_ts, publish_ts]``)."""
    return _pack_header(header_prefix(gateway, epoch), seq, timestamp, receipt_timestamp, publish_ts)


def encode_body(event: Event) -> bytes:
    return event.wire_pack()


_FRAME_TYPES = (bytes, bytearray, memoryview)
_unpackb = msgpack.unpackb  # defaults: raw=False, strict_map_key=True, use_list=True
_new_header = tuple.__new__


def _unpack(frame: bytes, what: str) -> object:
    if type(frame) is not bytes and not isinstance(frame, _FRAME_TYPES):
        raise WireError(f"{what}: expected bytes, got {type(frame).__name__}")
    if len(frame) > MAX_FRAME:
        raise WireError(f"{what}: {len(frame)} bytes exceeds the {MAX_FRAME} byte limit")
    try:
        return _unpackb(frame)
    except Exception as exc:  # msgpack raises several unrelated types on junk
        raise WireError(f"{what}: not valid msgpack ({type(exc).__name__}: {exc})") from None


def decode_header(frame: bytes) -> Header:
    h = _unpack(frame, "header")
    if type(h) is not list or len(h) < 7:
        raise WireError("header: expected a msgpack array of 7 items")
    if len(h) > 7:
        del h[7:]  # items appended by a later additive revision
    version, gateway, epoch, seq, ts, rts, pts = h
    if type(version) is not int or version != WIRE_VERSION:
        raise WireError(f"header: unsupported wire version {version!r}")
    if type(gateway) is not str or type(epoch) is not int or type(seq) is not int:
        raise WireError("header: gateway must be str, epoch and seq int")
    if epoch < 0 or seq < 0:
        raise WireError("header: epoch and seq must be unsigned (uint64)")
    if (ts is not None and type(ts) is not int) or type(rts) is not int or type(pts) is not int:
        raise WireError("header: timestamps must be integer nanoseconds")
    return _new_header(Header, h)


def decode_topic(frame: bytes) -> str:
    if type(frame) is not bytes:
        if not isinstance(frame, _FRAME_TYPES):
            raise WireError(f"topic: expected bytes, got {type(frame).__name__}")
        frame = bytes(frame)
    if len(frame) > _MAX_TOPIC:
        raise WireError(f"topic: longer than {_MAX_TOPIC} bytes")
    try:
        topic = frame.decode("ascii")
    except UnicodeDecodeError:
        raise WireError("topic: not ASCII") from None
    if topic[-1:] != "." or topic.count(".") < 2:
        raise WireError(f"topic: {topic[:80]!r} does not end with the '.' terminator")
    return topic


def decode_body(frame: bytes, header: Header) -> Event:
    body = _unpack(frame, "body")
    if type(body) is not dict:
        raise WireError("body: expected a msgpack map")
    kind = body.get("kind")
    cls = EVENT_CLASSES.get(kind) if type(kind) is str else None
    if cls is None:
        raise WireError(f"body: unknown event kind {kind!r:.80}")
    try:
        return cls.from_wire(body, header[4], header[5])
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"body: invalid {kind}: {type(exc).__name__}: {exc}") from None


def decode_reference(frames: list[bytes] | tuple[bytes, ...]) -> tuple[str, Header, Event]:
    """Decode ``[topic, header, body]`` into (topic, Header, Event), checking they agree.

    The readable reference of :func:`decode`, which runs a compiled copy of these same
    checks (``cryptofeed_types.events._decode_frames``); tests hold the two equal.
    """
    if (type(frames) is not list and not isinstance(frames, list | tuple)) or len(frames) != 3:
        got = len(frames) if isinstance(frames, list | tuple) else type(frames).__name__
        raise WireError(f"expected 3 frames, got {got}")
    topic = decode_topic(frames[0])
    header = decode_header(frames[1])
    event = decode_body(frames[2], header)
    if event.topic() != topic:
        raise WireError(f"topic {topic[:80]!r} does not match the body ({event.topic()[:80]!r})")
    return topic, header, event


_events._configure_decoder(WireError, Header, msgpack.unpackb, MAX_FRAME, _MAX_TOPIC, WIRE_VERSION)


# decode(frames) -> (topic, Header, Event): the compiled copy of decode_reference (same
# checks, same messages, ~25% faster per message); raises WireError and nothing else.
decode: Callable[[list[bytes] | tuple[bytes, ...]], tuple[str, Header, Event]] = _events._decode_frames
