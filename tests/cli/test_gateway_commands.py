"""`feedfabric replay` shows progress; `feedfabric symbols` without network fails in one clear line."""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedfabric.cli import main
from gateways.commands import Progress

pytestmark = pytest.mark.timeout(60)

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "binance.ffcap"


def test_replay_shows_progress_with_counts() -> None:
    res = CliRunner().invoke(main, ["replay", str(SAMPLE), "--progress", "0"])
    assert res.exit_code == 0, res.output
    lines = re.findall(r"replaying binance\.ffcap: ([\d,]+) messages, ([\d,]+) events, [\d,]+ msg/s", res.output)
    assert lines, res.output
    counts = [int(m.replace(",", "")) for m, _ in lines]
    assert counts == sorted(counts) and counts[0] == 256          # a line per check, counts growing
    assert re.search(r"BINANCE: \d+ records, \d+ events", res.output)  # the summary still follows


def test_replay_no_progress() -> None:
    res = CliRunner().invoke(main, ["replay", str(SAMPLE), "--no-progress"])
    assert res.exit_code == 0 and "replaying" not in res.output, res.output


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    p = Progress("replaying x", stream=out)
    assert p.interval == 1.0                                    # a line every second on a terminal
    p.show(10, 20)
    p.show(30, 40)
    p.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and "30 messages, 40 events" in text
    assert Progress("x", stream=io.StringIO()).interval == 5.0  # a periodic line otherwise


def test_symbols_without_network_is_one_clear_line() -> None:
    with socket.socket() as s:                                  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = CliRunner().invoke(main, ["symbols", "BINANCE", "--url", f"rest=http://127.0.0.1:{port}"])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert f"cannot fetch BINANCE instruments: GET http://127.0.0.1:{port}/api/v3/exchangeInfo failed" in lines[0]
    assert "--capture FILE" in lines[0]
