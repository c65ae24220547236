"""docs/wire.md agrees with the code: generated body tables match schema.py, constants match the codec,
the rules wire.md states about the reference hold, and its "Write your own client" recipe covers every
kind and points at sections that exist."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import msgpack
import pytest

from bus import codec
from bus.snapshot import STATEFUL_CHANNELS
from cryptofeed_types.events import EVENT_CLASSES
from cryptofeed_types.schema import KINDS

ROOT = Path(__file__).resolve().parents[2]
WIRE_MD = ROOT / "docs" / "wire.md"
CLIENTS_MD = ROOT / "docs" / "clients.md"
VECTORS = ROOT / "tests" / "vectors" / "wire_v1.json"
RECIPE = "## Write your own client"
CONTROL_CHANNELS = {"heartbeat", "status", "gap", "reset"}


def _gen():  # noqa: ANN202 - a module loaded by path
    spec = importlib.util.spec_from_file_location("gen_wire_tables", ROOT / "docs" / "gen_wire_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_tables_match_schema() -> None:
    text = WIRE_MD.read_text()
    assert _gen().splice(text) == text, "docs/wire.md tables are stale: run python docs/gen_wire_tables.py"


def test_every_kind_and_field_is_documented() -> None:
    text = WIRE_MD.read_text()
    for k in KINDS:
        section = text.split(f"### `{k.kind}` ({k.cls})", 1)[1].split("\n### ", 1)[0]
        documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.M)
        assert documented == ["kind", *(n for n, _ in k.fields)]


def test_the_codec_decodes_exactly_the_documented_kinds_and_keys() -> None:
    """What bus.codec decodes (the compiled event classes) is what the doc's tables list."""
    assert set(EVENT_CLASSES) == {k.kind for k in KINDS}
    text = WIRE_MD.read_text()
    for kind, cls in EVENT_CLASSES.items():
        assert cls.KIND == kind
        section = text.split(f"### `{kind}` ({cls.__name__})", 1)[1].split("\n### ", 1)[0]
        documented = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, flags=re.M)
        assert [n for n, _ in documented[1:]] == list(cls.FIELDS), kind
        gen = _gen()
        assert [t.strip() for _, t in documented[1:]] == [gen.WIRE_TYPES[cls.TYPES[n]] for n in cls.FIELDS], kind


def test_constants_in_prose_match_the_codec() -> None:
    text = WIRE_MD.read_text()
    assert codec.WIRE_VERSION == 1 and "version 1" in text
    assert codec.MAX_FRAME == 16 * 1024 * 1024 and "16 MiB" in text and "16 777 216 bytes" in text
    assert codec._MAX_TOPIC == 512 and "512 bytes" in text
    assert codec.Header._fields == ("version", "gateway", "epoch", "seq", "timestamp", "receipt_timestamp",
                                    "publish_timestamp")
    rows = re.findall(r"^\| (\d) \| `(\w+)` \|", text, flags=re.M)
    assert [name for _, name in rows] == list(codec.Header._fields)
    assert [int(i) for i, _ in rows] == list(range(7))


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same level."""
    level = heading.split(" ", 1)[0]
    body = text.split("\n" + heading + "\n", 1)[1]
    return re.split(rf"^{level} ", body, maxsplit=1, flags=re.M)[0]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def test_write_your_own_client_is_the_last_section() -> None:
    text = WIRE_MD.read_text()
    headings = re.findall(r"^## .*$", text, flags=re.M)
    assert headings[-1] == RECIPE
    assert "## Snapshot service, heartbeats and recovery" in headings
    recipe = _section(text, RECIPE)
    steps = re.findall(r"^### Step (\d+): ", recipe, flags=re.M)
    assert [int(n) for n in steps] == list(range(1, len(steps) + 1)) and len(steps) >= 8
    # the recipe names the vector file, the reference and both shipped clients
    for name in ("tests/vectors/wire_v1.json", "bus/subscriber.py", "clients/node/lib/core.js",
                 "clients/c/ff_sub.c", "tests/clients/test_e2e.py"):
        assert name in recipe, name
        assert (ROOT / name).exists(), name
    for topic in ("sockets", "snapshot", "sequence", "gap", "epoch", "stale", "kind", "decimal"):
        assert topic in recipe.lower(), topic


def test_recipe_says_what_to_do_with_every_kind() -> None:
    recipe = _section(WIRE_MD.read_text(), RECIPE)
    rows = dict(re.findall(r"^\| `(\w+)` \| \*\*([a-z0-9 ]+)\*\* \|", recipe, flags=re.M))
    assert sorted(rows) == sorted(k.kind for k in KINDS)
    for k in KINDS:
        if k.channel in STATEFUL_CHANNELS:
            want = "book" if k.channel == "book" else "l3"
        elif k.scalar:
            want = "last value"
        elif k.channel in CONTROL_CHANNELS:
            want = "control"
        else:
            want = "stream"
        assert rows[k.kind] == want, k.kind


def test_links_between_sections_resolve() -> None:
    wire = WIRE_MD.read_text()
    anchors = _anchors(wire)
    for link in re.findall(r"\]\(#([^)]+)\)", wire):
        assert link in anchors, f"wire.md links to a missing section #{link}"
    clients = CLIENTS_MD.read_text()
    links = re.findall(r"\]\(wire\.md#([^)]+)\)", clients)
    assert "write-your-own-client" in links, "clients.md must point at the recipe"
    for link in links:
        assert link in anchors, f"clients.md links to a missing wire.md section #{link}"


def test_client_made_event_texts_are_the_reference_subscribers() -> None:
    """wire.md fixes the exact reasons of the gap/reset/status events a subscriber makes:
    they are the ones bus/subscriber.py writes."""
    text = WIRE_MD.read_text()
    src = (ROOT / "bus" / "subscriber.py").read_text()
    reasons = set(re.findall(r'_(?:gap|reset)_msg\(.*?"([^"]+)"\)', src))
    reasons |= set(re.findall(r'_status\(gw, "\w+", f?"([^"{]+)', src))
    assert {"sequence gap", "tail loss (seen in heartbeat)", "publisher restarted (new epoch)",
            "rebuilt from snapshot", "messages resumed", "no message for "} <= reasons
    for reason in reasons:
        assert f'"{reason}' in text, reason


def _vector(name: str) -> dict:
    return next(v for v in json.loads(VECTORS.read_text()) if v["name"] == name)


def _frames(vector: dict) -> list[bytes]:
    return [bytes.fromhex(f) for f in vector["frames_hex"]]


def test_integer_ranges_match_the_vector_and_the_reference() -> None:
    text = WIRE_MD.read_text()
    for limit in ("`2^64-1`", "`-2^63`", "`2^63-1`", "`trade/max-integers`"):
        assert limit in text, limit
    h = _vector("trade/max-integers")["header"]
    assert h["epoch"] == h["seq"] == 2**64 - 1
    assert h["timestamp"] == -2**63 and h["receipt_timestamp"] == 2**63 - 1
    topic, header, body = _frames(_vector("trade/minimal"))
    items = msgpack.unpackb(header)
    for index in (2, 3):  # a negative epoch or seq is refused
        bad = list(items)
        bad[index] = -1
        with pytest.raises(codec.WireError, match="unsigned"):
            codec.decode([topic, msgpack.packb(bad), body])
    bad = list(items)
    bad[5] = float(items[5])  # an int is never a float
    with pytest.raises(codec.WireError):
        codec.decode([topic, msgpack.packb(bad), body])


def test_strict_msgpack_rules_hold_in_the_reference() -> None:
    """The frames wire.md section 9 says a decoder must refuse are refused by bus.codec."""
    assert "Strict MessagePack" in WIRE_MD.read_text() and "Allocation bounds" in WIRE_MD.read_text()
    topic, header, body = _frames(_vector("status/unicode-reason"))
    codec.decode([topic, header, body])
    reason = msgpack.unpackb(body)["reason"].encode()
    bad_utf8 = body.replace(reason, b"\xff" * len(reason))
    hb_topic, hb_header, hb_body = _frames(_vector("heartbeat/minimal"))
    int_key = msgpack.packb({**msgpack.unpackb(hb_body), "counters": {1: 2}})
    for frames, error in (([topic, header + b"\x00", body], "extra data"),   # bytes after the header
                          ([topic, header, body + b"\xc0"], "extra data"),   # bytes after the body
                          ([topic, header, bad_utf8], "utf-8"),               # a str that is not UTF-8
                          ([hb_topic, hb_header, int_key], "map key"),        # a non-str map key, nested
                          ([topic, header, b"\xdd\xff\xff\xff\xff"], "exceeds")):  # "2^32 items" in 5 bytes
        with pytest.raises(codec.WireError, match=f"(?i){error}"):
            codec.decode(frames)
