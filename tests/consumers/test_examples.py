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


def test_async_nbbo_against_a_publisher_of_nbbo_events(bus_endpoint, publisher_factory) -> None:
    from cryptofeed_types.events import NBBO

    ep = bus_endpoint("nbbo")
    pub = publisher_factory("nbbo", ep, heartbeat_interval=0.05)
    # The last value is served by the snapshot service, so the script sees it however late it joins.
    pub.publish(NBBO("BTC-USDT", bid="100.5", bid_size="2", bid_exchange="KRAKEN", ask="100.75", ask_size="1",
                     ask_exchange="BINANCE", receipt_timestamp=1))
    pub.publish(NBBO("ETH-USDT", bid="3000", bid_size="1", bid_exchange="OKX", receipt_timestamp=1))
    lines = _run("async_nbbo.py", "--source", f"{ep.pub},{ep.snapshot}", "--count", "2").splitlines()
    assert sorted(lines) == ["BTC-USDT: 100.5 (KRAKEN) / 100.75 (BINANCE)", "ETH-USDT: 3000 (OKX) / -"]
