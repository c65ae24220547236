"""Both clients decode every shared wire vector exactly and refuse every invalid one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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
