"""docs/wire.md agrees with the code: generated body tables match schema.py, constants match the codec."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from bus import codec
from cryptofeed_types.schema import KINDS

ROOT = Path(__file__).resolve().parents[2]
WIRE_MD = ROOT / "docs" / "wire.md"


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


def test_bus_engineer_section_is_last() -> None:
    text = WIRE_MD.read_text()
    headings = re.findall(r"^## .*$", text, flags=re.M)
    assert headings[-1] == "## Snapshot service, heartbeats and recovery"
