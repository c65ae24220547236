"""The wire v1 test vectors (wire_v1.json) decode to their declared meaning and re-encode to the same bytes.

Clients in other languages check the same file (docs/wire.md, "Test vectors").
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import msgpack
import orjson
import pytest

from bus.codec import Header, WireError, decode, decode_reference, encode

HERE = Path(__file__).parent
VECTORS = orjson.loads((HERE / "wire_v1.json").read_bytes())
VALID = [v for v in VECTORS if not v.get("invalid")]
INVALID = [v for v in VECTORS if v.get("invalid")]


@functools.cache
def _generator():  # noqa: ANN202 - a module loaded by path
    spec = importlib.util.spec_from_file_location("make_vectors", HERE / "make_vectors.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_file_is_what_the_generator_writes() -> None:
    assert (HERE / "wire_v1.json").read_bytes() == _generator().render(), \
        "wire_v1.json is stale: run python tests/vectors/make_vectors.py"


def test_shape() -> None:
    names = [v["name"] for v in VECTORS]
    assert len(names) == len(set(names))
    for v in VALID:
        assert set(v) == {"name", "frames_hex", "topic", "header", "event"}
        assert list(v["header"]) == list(Header._fields)
    for v in INVALID:
        assert set(v) == {"name", "frames_hex", "invalid", "error"} and v["invalid"] is True
    assert len(INVALID) >= 20


@pytest.mark.parametrize("vec", VALID, ids=[v["name"] for v in VALID])
def test_valid_vector(vec: dict) -> None:
    frames = [bytes.fromhex(f) for f in vec["frames_hex"]]
    topic, header, event = decode(frames)
    assert decode_reference(frames) == (topic, header, event)
    assert topic == vec["topic"]
    assert header._asdict() == vec["header"]
    assert _generator().event_json(event) == vec["event"]
    # What any msgpack library sees: a map equal to the declared event (arrays as lists).
    assert msgpack.unpackb(frames[2]) == vec["event"]
    assert msgpack.unpackb(frames[1]) == list(vec["header"].values())
    again = encode(event, header.gateway, header.epoch, header.seq, publish_ts=header.publish_timestamp)
    assert list(again) == frames


@pytest.mark.parametrize("vec", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_vector(vec: dict) -> None:
    frames = [bytes.fromhex(f) for f in vec["frames_hex"]]
    for fn in (decode, decode_reference):
        with pytest.raises(WireError) as info:
            fn(frames)
        assert vec["error"] in str(info.value)
