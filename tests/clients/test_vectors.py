"""Both clients decode every shared wire vector exactly and refuse every invalid one."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import orjson

from bus.codec import WireError, decode
from tests.clients.conftest import C_DIR, NODE_DIR, ROOT, VECTORS

sys.path.insert(0, str(ROOT / "clients"))
sys.path.insert(0, str(C_DIR))

import gen_kinds  # noqa: E402
import vectors_tsv  # noqa: E402


def test_client_kind_tables_are_generated_from_the_schema() -> None:
    assert gen_kinds.NODE_OUT.read_text() == gen_kinds.render_node(), "run python clients/gen_kinds.py"
    assert gen_kinds.C_OUT.read_text() == gen_kinds.render_c(), "run python clients/gen_kinds.py"


def test_node_client_passes_the_vectors(node_client: Path) -> None:
    res = subprocess.run(["node", "--test", "test/"], cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "# fail 0" in res.stdout and "# skipped 0" in res.stdout, res.stdout[-1500:]
    # One passing test per vector: none may be missing.
    for v in json.loads(VECTORS.read_text()):
        verb = "refuses" if v.get("invalid") else "decodes"
        assert re.search(rf"^ok \d+ - {verb} {re.escape(v['name'])}$", res.stdout, re.M), v["name"]


def test_c_client_builds_without_warnings(c_build: subprocess.CompletedProcess) -> None:
    assert "warning" not in (c_build.stdout + c_build.stderr).lower(), c_build.stderr


def test_c_client_passes_the_vectors(c_client: Path, tmp_path: Path) -> None:
    lines = vectors_tsv.lines(VECTORS)
    tsv = tmp_path / "vectors.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    res = subprocess.run([str(c_client / "ff_vectors"), str(tsv)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert res.stdout.strip().endswith(f"{len(lines)} passed, 0 failed"), res.stdout[-1500:]


def test_c_vector_checker_detects_a_wrong_expectation(c_client: Path, tmp_path: Path) -> None:
    # The checker must be able to fail: a valid vector whose expected price is altered.
    lines = vectors_tsv.lines(VECTORS)
    bad = next(x for x in lines if x.startswith("trade/full\t"))
    tsv = tmp_path / "bad.tsv"
    tsv.write_text(bad.replace('"price":"', '"price":"1', 1) + "\n")
    res = subprocess.run([str(c_client / "ff_vectors"), str(tsv)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "FAIL trade/full" in res.stdout


def _mutations(n: int, seed: int) -> list[list[bytes]]:
    """Seeded random corruptions (byte flips, truncations, insertions) of the vector frames."""
    rng = random.Random(seed)
    vectors = json.loads(VECTORS.read_text())
    out = []
    for _ in range(n):
        frames = [bytearray.fromhex(h) for h in rng.choice(vectors)["frames_hex"]]
        if len(frames) == 3:
            b = frames[rng.randrange(3)]
            for _ in range(rng.randint(1, 4)):
                op = rng.random()
                if b and op < 0.4:
                    b[rng.randrange(len(b))] = rng.randrange(256)
                elif b and op < 0.6:
                    del b[rng.randrange(len(b)):]
                else:
                    b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        out.append([bytes(f) for f in frames])
    return out


def _reference(frames: list[bytes]) -> dict | None:
    try:
        topic, h, ev = decode(frames)
    except WireError:
        return None
    return {"topic": topic, "header": h._asdict(), "event": orjson.loads(orjson.dumps(ev.wire_body()))}


def _c_limits_ok(d: dict) -> bool:
    """The C client's documented integer ranges (docs/clients.md): uint64 epoch/seq, int64 timestamps."""
    h = d["header"]
    ts = [t for t in (h["timestamp"], h["receipt_timestamp"], h["publish_timestamp"]) if t is not None]
    return h["epoch"] >= 0 and h["seq"] >= 0 and all(-(2**63) <= t < 2**63 for t in ts)


def test_clients_agree_with_the_reference_decoder_on_corrupted_frames(node_client: Path, c_client: Path,
                                                                       tmp_path: Path) -> None:
    """Differential check: on thousands of corrupted messages both clients accept exactly what
    bus.codec.decode accepts, and decode it to the same values."""
    cases = _mutations(3000, seed=11)
    expected = [_reference(f) for f in cases]
    assert 50 < sum(e is not None for e in expected) < len(cases) - 1000  # both outcomes well represented
    tsv = tmp_path / "fuzz.tsv"
    rows = []
    for i, (frames, exp) in enumerate(zip(cases, expected, strict=True)):
        c_exp = "INVALID" if exp is None or not _c_limits_ok(exp) else json.dumps(
            exp, separators=(",", ":"), ensure_ascii=False)
        rows.append(f"m{i}\t{c_exp}\t{','.join(f.hex() for f in frames)}")
    tsv.write_text("\n".join(rows) + "\n")

    res = subprocess.run([str(c_client / "ff_vectors"), str(tsv)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]

    res = subprocess.run(["node", str(NODE_DIR / "tools" / "decode_tsv.js"), str(tsv)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    got = dict(line.split("\t", 1) for line in res.stdout.splitlines())
    for i, exp in enumerate(expected):
        g = got[f"m{i}"]
        if exp is None:
            assert g == "INVALID", (i, g[:300])
        else:
            assert g != "INVALID" and json.loads(g) == exp, (i, g[:300], exp)
