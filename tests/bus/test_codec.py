"""The wire codec: every event kind round-trips exactly; junk of any shape raises only WireError.

Property-based (hypothesis) with a fixed, database-less, derandomized profile so that CI
runs the same examples every time.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus.codec import MAX_FRAME, WIRE_VERSION, Header, WireError, decode, decode_reference, encode
from cryptofeed_types import EVENT_CLASSES, Event, Trade
from feedfabric.testing.types import sample_event, sample_events

CI = settings(max_examples=150, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
PER_KIND = settings(CI, max_examples=100)  # x 21 kinds

INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
WIRE_INT = st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry

# Decimal text as exchanges send it: plain, leading/trailing zeros kept, up to 30 digits each side.
_DIGITS = st.text("0123456789", min_size=1, max_size=30)
DEC = st.builds(lambda neg, i, f: ("-" if neg else "") + i + ("." + f if f else ""),
                st.booleans(), _DIGITS, st.none() | _DIGITS)
SIZE = st.builds(lambda i, f: i + ("." + f if f else ""), _DIGITS, st.none() | _DIGITS)   # never negative
# Any unicode except lone surrogates (which no UTF-8 encoder accepts).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
# Topic components must be ASCII (topics are ASCII); '.' and ' ' are included to exercise escaping.
TOPIC_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=16)
MAP_LEAF = st.none() | st.booleans() | WIRE_INT | st.floats(allow_nan=False) | TEXT
MAP = st.recursive(st.dictionaries(TEXT, MAP_LEAF, max_size=4),
                   lambda inner: st.dictionaries(TEXT, MAP_LEAF | inner, max_size=4), max_leaves=12)


def _value(type_: str, topic_key: bool) -> st.SearchStrategy:
    text = TOPIC_TEXT if topic_key else TEXT
    base = {
        "dec": DEC, "str": text, "int": WIRE_INT, "bool": st.booleans(),
        "levels": st.lists(st.tuples(DEC, SIZE), max_size=6),
        "orders": st.lists(st.tuples(TEXT, st.sampled_from(["bid", "ask"]), DEC, SIZE), max_size=6),
        "map": MAP,
    }[type_.rstrip("?")]
    return st.none() | base if type_.endswith("?") else base


@st.composite
def events(draw: st.DrawFn, kind: str | None = None) -> Event:
    cls = EVENT_CLASSES[kind] if kind is not None else draw(st.sampled_from(list(EVENT_CLASSES.values())))
    kwargs = {name: draw(_value(t, name in cls.TOPIC_KEYS)) for name, t in cls.TYPES.items()}
    return cls(**kwargs, timestamp=draw(st.none() | INT64), receipt_timestamp=draw(INT64))


HEADERS = st.tuples(TOPIC_TEXT, UINT64, UINT64, INT64)  # gateway, epoch, seq, publish_ts


def _roundtrip(ev: Event, gateway: str, epoch: int, seq: int, pts: int) -> None:
    frames = encode(ev, gateway, epoch, seq, publish_ts=pts)
    topic, header, back = decode(list(frames))
    assert decode_reference(list(frames)) == (topic, header, back)
    assert topic == ev.topic() == frames[0].decode("ascii")
    assert header == Header(WIRE_VERSION, gateway, epoch, seq, ev.timestamp, ev.receipt_timestamp, pts)
    assert type(back) is type(ev) and back == ev
    assert back.wire_body() == ev.wire_body()  # decimals: the very same strings
    assert encode(back, gateway, epoch, seq, publish_ts=pts) == frames


@pytest.mark.parametrize("kind", list(EVENT_CLASSES))
@PER_KIND
@given(data=st.data())
def test_every_kind_round_trips(kind: str, data: st.DataObject) -> None:
    ev = data.draw(events(kind))
    _roundtrip(ev, *data.draw(HEADERS))


@pytest.mark.parametrize("full", [True, False])
def test_samples_round_trip(full: bool) -> None:
    for ev in sample_events(full=full):
        _roundtrip(ev, "gw-1", 1_700_000_000_000_000_000, 42, 1_700_000_000_200_000_000)


def test_encode_defaults_publish_ts_and_accepts_precomputed_topic() -> None:
    ev = sample_event("trade")
    t, h, b = encode(ev, "gw", 1, 2, topic=ev.topic())
    _, header, back = decode([t, h, b])
    assert header.publish_timestamp > 1_600_000_000 * 10**9 and back == ev


def test_decoded_decimals_keep_exchange_digits() -> None:
    ev = Trade("BINANCE", "BTC-USDT", "buy", "0.35210000", "30238.80", receipt_timestamp=1)
    body = msgpack.unpackb(encode(ev, "g", 1, 1, 1)[2])
    assert body["amount"] == "0.35210000" and body["price"] == "30238.80"


def test_unknown_body_keys_and_extra_header_items_are_ignored() -> None:
    # Forward compatibility (docs/wire.md, versioning): additive changes keep version 1.
    ev = sample_event("trade")
    t, h, b = encode(ev, "gw", 1, 2, 3)
    body = msgpack.unpackb(b)
    body["added_in_a_later_release"] = {"x": 1}
    header = msgpack.unpackb(h) + ["future header item"]
    _, hdr, back = decode([t, msgpack.packb(header), msgpack.packb(body)])
    assert back == ev and hdr.seq == 2


# --- junk: only WireError, ever ---

def _outcome(fn: object, frames: object) -> object:
    try:
        return fn(frames)  # type: ignore[operator]
    except WireError as exc:
        return ("WireError", str(exc))


def _only_wire_error(frames: object) -> None:
    """Decoding either succeeds or raises WireError, and the compiled decoder agrees with the
    Python reference exactly (same result or same error message)."""
    assert _outcome(decode, frames) == _outcome(decode_reference, frames)


@CI
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=5))
def test_random_frames_raise_only_wire_error(frames: list[bytes]) -> None:
    _only_wire_error(frames)


@CI
@given(events(), st.integers(0, 2), st.data())
def test_truncated_frames_raise_wire_error(ev: Event, which: int, data: st.DataObject) -> None:
    frames = list(encode(ev, "gw", 1, 2, 3))
    cut = data.draw(st.integers(0, len(frames[which]) - 1))
    frames[which] = frames[which][:cut]
    with pytest.raises(WireError):
        decode(frames)
    _only_wire_error(frames)


@CI
@given(events(), st.integers(0, 2), st.data())
def test_corrupted_frames_raise_only_wire_error(ev: Event, which: int, data: st.DataObject) -> None:
    frames = list(encode(ev, "gw", 1, 2, 3))
    buf = bytearray(frames[which])
    for _ in range(data.draw(st.integers(1, 4))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    frames[which] = bytes(buf)
    _only_wire_error(frames)


ANY_MSGPACK = st.recursive(
    st.none() | st.booleans() | WIRE_INT | st.floats() | TEXT | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=10)


@CI
@given(events(), st.data())
def test_wrong_type_fields_raise_only_wire_error(ev: Event, data: st.DataObject) -> None:
    t, h, b = encode(ev, "gw", 1, 2, 3)
    body = msgpack.unpackb(b)
    key = data.draw(st.sampled_from(sorted(body)))
    body[key] = data.draw(ANY_MSGPACK)
    if data.draw(st.booleans()):
        del body[data.draw(st.sampled_from(sorted(body)))]
    _only_wire_error([t, h, msgpack.packb(body)])


@CI
@given(events(), st.integers(0, 6), ANY_MSGPACK)
def test_wrong_type_header_items_raise_only_wire_error(ev: Event, index: int, value: object) -> None:
    t, h, b = encode(ev, "gw", 1, 2, 3)
    header = msgpack.unpackb(h)
    header[index] = value
    _only_wire_error([t, msgpack.packb(header), b])


@CI
@given(ANY_MSGPACK, ANY_MSGPACK)
def test_any_msgpack_as_header_and_body_raises_only_wire_error(header: object, body: object) -> None:
    _only_wire_error([b"trades.X.Y.", msgpack.packb(header), msgpack.packb(body)])


@CI
@given(events(), events())
def test_topic_body_mismatch_is_refused(a: Event, b: Event) -> None:
    fa, fb = encode(a, "gw", 1, 1, 1), encode(b, "gw", 1, 1, 1)
    if fa[0] == fb[0]:
        decode([fb[0], fa[1], fa[2]])  # same topic: a legitimate message
    else:
        with pytest.raises(WireError, match="does not match"):
            decode([fb[0], fa[1], fa[2]])


@pytest.mark.parametrize("frames,error", [
    ([], "expected 3 frames"),
    ([b"trades.X.Y."], "expected 3 frames"),
    ([b"a.", b"b", b"c", b"d"], "expected 3 frames"),
    (None, "expected 3 frames"),
    (b"trades.X.Y.", "expected 3 frames"),
    (["trades.X.Y.", b"", b""], "topic"),
    ([b"trades.X.Y", b"", b""], "terminator"),
    ([b"trades", b"", b""], "terminator"),
    ([b"trades.\xff.", b"", b""], "ASCII"),
    ([b"t." * 300, b"", b""], "topic"),
    ([b"trades.X.Y.", b"", b""], "header"),
    ([b"trades.X.Y.", 5, b""], "header: expected bytes"),
    ([b"trades.X.Y.", msgpack.packb([2, "gw", 1, 1, None, 1, 1]), b""], "version"),
    ([b"trades.X.Y.", msgpack.packb([1, "gw", 1, 1, None, 1]), b""], "7 items"),
    ([b"trades.X.Y.", msgpack.packb({"version": 1}), b""], "7 items"),
    ([b"trades.X.Y.", msgpack.packb([1, "gw", 1, 1, 1.5, 1, 1]), b""], "integer nanoseconds"),
    ([b"trades.X.Y.", msgpack.packb([1, b"gw", 1, 1, None, 1, 1]), b""], "gateway"),
    ([b"trades.X.Y.", msgpack.packb([True, "gw", 1, 1, None, 1, 1]), b""], "version"),
    ([b"trades.X.Y.", msgpack.packb([1, "gw", 1, 1, None, 1, 1]), msgpack.packb([1])], "map"),
    ([b"trades.X.Y.", msgpack.packb([1, "gw", 1, 1, None, 1, 1]), msgpack.packb({"kind": "nope"})], "unknown event kind"),
    ([b"trades.X.Y.", msgpack.packb([1, "gw", 1, 1, None, 1, 1]), msgpack.packb({"kind": "trade"})], "invalid trade"),
    ([b"trades.X.Y.", msgpack.packb([1, "gw", 1, 1, None, 1, 1]), b"\xc1"], "not valid msgpack"),
    ([b"trades.X.Y.", msgpack.packb([1, "gw", 1, 1, None, 1, 1]), msgpack.packb({1: 2})], "not valid msgpack"),
    ([b"trades.X.Y.", msgpack.packb([1, "gw", 1, 1, None, 1, 1]), b"\xdd\xff\xff\xff\xff"], "not valid msgpack"),
])
def test_malformed_examples(frames: object, error: str) -> None:
    with pytest.raises(WireError, match=error):
        decode(frames)  # type: ignore[arg-type]
    with pytest.raises(WireError, match=error):
        decode_reference(frames)  # type: ignore[arg-type]


def test_decimals_on_the_wire_must_be_plain_strings() -> None:
    # The Python API accepts 1e-05, floats, ... and normalises them; the wire carries only
    # '-'? digits ('.' digits)? so that every client parses the same text.
    t, h, b = encode(sample_event("trade"), "gw", 1, 2, 3)
    for junk in ("NaN", "1e999999999", "1e-5", ".5", "5.", "+1", " 1", "0x1", "1_0", "", 1.5, 2, None, b"1"):
        body = msgpack.unpackb(b)
        body["price"] = junk
        with pytest.raises(WireError, match="invalid trade"):
            decode([t, h, msgpack.packb(body)])


def test_oversized_frames_refused_before_parsing() -> None:
    ev = sample_event("trade")
    t, h, b = encode(ev, "gw", 1, 2, 3)
    big = b + b"\x00" * (MAX_FRAME + 1 - len(b))
    with pytest.raises(WireError, match="exceeds"):
        decode([t, h, big])
    with pytest.raises(WireError, match="exceeds"):
        decode([t, big, b])


def test_frames_may_be_bytearray_or_memoryview() -> None:
    ev = sample_event("book_delta")
    t, h, b = encode(ev, "gw", 1, 2, 3)
    assert decode([bytearray(t), memoryview(h), bytearray(b)])[2] == ev


def test_wire_error_is_a_value_error() -> None:
    # Callers that already catch ValueError for bad input keep working.
    assert issubclass(WireError, ValueError)


def test_decode_runs_the_compiled_copy() -> None:
    from cryptofeed_types import events

    assert decode is events._decode_frames
    assert type(decode).__name__ in ("cython_function_or_method", "builtin_function_or_method")


@pytest.mark.parametrize("kind", list(EVENT_CLASSES))
def test_absent_optional_keys_mean_nil(kind: str) -> None:
    ev = sample_event(kind, full=False)
    t, h, b = encode(ev, "gw", 1, 2, 3)
    body = {k: v for k, v in msgpack.unpackb(b).items() if v is not None}
    assert decode([t, h, msgpack.packb(body)])[2] == ev
