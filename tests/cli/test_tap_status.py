"""`feedfabric tap` (human and JSON lines) and `feedfabric status` against a live in-process publisher."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from bus.endpoints import GatewayEndpoint
from bus.publisher import Publisher
from cryptofeed_types.events import L2Snapshot, Trade
from feedfabric.cli import main
from feedfabric.status import StatusBoard, status

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def live_gateway(live_publisher: Callable[..., GatewayEndpoint]) -> GatewayEndpoint:
    """A publisher 'gw1' sending a book, then a trade every 10 ms until the test ends."""
    def tick(pub: Publisher, i: int) -> None:
        if i == 0:
            pub.publish(L2Snapshot("TESTEX", "BTC-USDT", [("100.5", "1.250")], [("101.0", "2")], receipt_timestamp=1))
            return
        pub.publish(Trade("TESTEX", "BTC-USDT", "buy", "0.0100", "100.75", id=str(i),
                          timestamp=1_700_000_000_000_000_000, receipt_timestamp=1_700_000_000_000_000_001))
    return live_publisher("gw1", tick)


def test_tap_human_and_json(live_gateway: GatewayEndpoint) -> None:
    endpoint = f"{live_gateway.pub},{live_gateway.snapshot}"
    runner = CliRunner()
    res = runner.invoke(main, ["tap", "trades.", "-e", endpoint, "-n", "3", "--duration", "20"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.match(r"\d\d:\d\d:\d\d\.\d{6} trades\.TESTEX\.BTC-USDT\.\s+#\d+\s+side=buy amount=0\.0100 "
                        r"price=100\.75 id=\d+", line), line

    res = runner.invoke(main, ["tap", "book.", "-e", endpoint, "-n", "1", "--json", "--duration", "20"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output.strip().splitlines()[0])
    assert row["topic"] == "book.TESTEX.BTC-USDT." and row["gateway"] == "gw1"
    ev = row["event"]
    assert ev["kind"] == "book_snapshot"
    assert ev["bids"] == [["100.5", "1.250"]] and ev["asks"] == [["101.0", "2"]]   # exact strings


def test_status_once(live_gateway: GatewayEndpoint, short_run_dir: Path) -> None:
    ghost = GatewayEndpoint.ipc(short_run_dir, "ghost")
    out: list[str] = []
    code = status({"gw1": live_gateway, "ghost": ghost}, {"gw1": "gateway", "ghost": "consumer/nbbo"},
                  once=True, wait=3.0, write=out.append)
    table = "".join(out)
    assert code == 1, table                      # ghost never answered
    header, *rows = table.strip().splitlines()
    assert header.split()[:4] == ["NAME", "ROLE", "STATE", "HB"]
    gw = next(r.split() for r in rows if r.startswith("gw1"))
    assert gw[1:3] == ["gateway", "up"] and float(gw[3].rstrip("s")) < 1.0
    assert float(gw[4]) > 10                     # ~100 trades/s
    gh = next(r.split() for r in rows if r.startswith("ghost"))
    assert gh[1:4] == ["consumer/nbbo", "down", "-"]


def test_status_board_counters_and_staleness() -> None:
    from bus.codec import Header
    from bus.subscriber import Message
    from cryptofeed_types.events import Heartbeat

    board = StatusBoard({"g": "gateway"}, stale_after=3.0)

    def hb(ts: int, messages: int, epoch: int = 1, **extra: object) -> Message:
        counters = {"messages": messages, "errors": 1, "adapter.book.gaps": 2, "adapter.book.resyncs": 1,
                    "reconnects": 4, **extra}
        return Message("heartbeat.g.", Header(1, "g", epoch, 1, None, ts, ts),
                       Heartbeat("g", counters, {"BINANCE.0": "connected"}, receipt_timestamp=ts))

    board.update(hb(1_000_000_000, 100), now=10.0)
    assert board.table(now=10.5)[0][8] == "-"                # a heartbeat without book_invalid (older process)
    board.update(hb(2_000_000_000, 350, book_invalid={"book.EX.A-B.": 7, "book.EX.C-D.": 9}), now=11.0)
    name, role, state, age, rate, _lag, gaps, resyncs, invalid, reconn, errors, dropped = board.table(now=11.5)[0]
    assert (name, role, state, age, rate) == ("g", "gateway", "up", "0.5s", "250")
    assert (gaps, resyncs, invalid, reconn, errors, dropped) == ("2", "1", "2", "4", "1", "0")
    assert board.table(now=20.0)[0][2] == "stale"
    board.update(hb(3_000_000_000, 5, epoch=2), now=21.0)   # restarted: counters start again
    assert board.rows["g"].restarts_seen == 1 and board.table(now=21.0)[0][2] == "up"


def test_status_board_shows_an_exchange_system_status() -> None:
    from bus.codec import Header
    from bus.subscriber import Message
    from cryptofeed_types.events import Heartbeat, Status

    board = StatusBoard({"k": "gateway"})

    def hb(system: str) -> Message:
        return Message("heartbeat.k.", Header(1, "k", 1, 1, None, 1, 1),
                       Heartbeat("k", {"messages": 1}, {"KRAKEN.0": "connected", "system": system}, receipt_timestamp=1))

    board.update(hb("online"), now=1.0)
    assert board.table(now=1.5)[0][2] == "up"
    board.update(hb("maintenance"), now=2.0)
    assert board.table(now=2.5)[0][2] == "maintenance"
    assert "k: " not in board.render(now=2.5)          # the state, from a heartbeat: no reason known
    # The Status itself, when the board sees it: the reason is printed under the table.
    board.update(Message("status.KRAKEN.system.", Header(1, "k", 1, 2, None, 2, 2),
                         Status("KRAKEN", "system", "maintenance", reason="Kraken system status: maintenance",
                                receipt_timestamp=2)), now=2.6)
    assert board.render(now=2.7).splitlines()[-1] == "  k: system maintenance: Kraken system status: maintenance"
    board.update(hb("online"), now=3.0)
    assert board.table(now=3.1)[0][2] == "up" and "k: " not in board.render(now=3.1)
