"""The examples/ scripts run (against their synthetic --demo gateway)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=EXAMPLES)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_print_trades_demo() -> None:
    lines = _run("print_trades.py", "--demo", "--count", "3").splitlines()
    assert len(lines) == 3 and all(line.startswith("TESTEX ") and " @ " in line for line in lines)


def test_book_callbacks_demo() -> None:
    lines = _run("book_callbacks.py", "--demo", "--seconds", "1").splitlines()
    assert lines and all(" / " in line for line in lines if not line.startswith("GAP"))
