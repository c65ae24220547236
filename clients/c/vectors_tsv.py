"""Convert tests/vectors/wire_v1.json into the line format ff_vectors reads (no JSON parser in C).

Usage: python vectors_tsv.py [wire_v1.json] > vectors.tsv. Each line is
``name<TAB>expected<TAB>hex,hex,hex`` where expected is ``INVALID`` or the canonical JSON
(compact, keys in wire order, UTF-8) of ``{"topic", "header", "event"}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "tests" / "vectors" / "wire_v1.json"


def lines(path: Path) -> list[str]:
    out = []
    for v in json.loads(path.read_text()):
        expected = "INVALID" if v.get("invalid") else json.dumps(
            {"topic": v["topic"], "header": v["header"], "event": v["event"]}, separators=(",", ":"),
            ensure_ascii=False)
        out.append(f"{v['name']}\t{expected}\t{','.join(v['frames_hex'])}")
    return out


if __name__ == "__main__":
    sys.stdout.write("\n".join(lines(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)) + "\n")
