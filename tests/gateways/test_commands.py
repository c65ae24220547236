"""The gateway click commands (record/replay/exchanges/symbols), offline."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gateways.commands import exchanges, replay, symbols


def test_exchanges() -> None:
    res = CliRunner().invoke(exchanges, [])
    assert res.exit_code == 0
    names = [line.split()[0] for line in res.output.splitlines()]
    assert {"BINANCE", "BINANCE_FUTURES", "BINANCE_DELIVERY"} <= set(names)


def test_symbols_from_capture(shared_data: Path) -> None:
    res = CliRunner().invoke(symbols, ["BINANCE_FUTURES", "--capture", str(shared_data / "cryptofeed" / "BINANCE_FUTURES"),
                                       "--grep", "SUSHI"])
    assert res.exit_code == 0, res.output
    assert "SUSHI-USDT-PERP" in res.output and "SUSHIUSDT" in res.output and "tick=" in res.output
    res = CliRunner().invoke(symbols, ["NOPE"])
    assert res.exit_code != 0 and "unknown exchange" in res.output


def test_symbols_grep_matches_the_exchange_name_too(shared_data: Path) -> None:
    res = CliRunner().invoke(symbols, ["KRAKEN_FUTURES", "--capture", str(shared_data / "cryptofeed" / "KRAKEN_FUTURES"),
                                       "--grep", "xbtusd"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines and all("XBTUSD" in ln for ln in lines) and any(ln.startswith("BTC-USD-PERP ") for ln in lines)


def test_symbols_match_shows_what_a_pattern_subscribes(shared_data: Path) -> None:
    capture = str(shared_data / "cryptofeed" / "BINANCE_FUTURES")
    res = CliRunner().invoke(symbols, ["BINANCE_FUTURES", "--capture", capture, "--match", "SUSHI-*",
                                       "--match", "*-BUSD-PERP", "--match", "NOPE-*"])
    assert res.exit_code == 0, res.output
    assert [ln.split()[0] for ln in res.stdout.splitlines()] == ["BTC-BUSD-PERP", "ETH-BUSD-PERP", "SUSHI-USDT-PERP"]
    assert res.stderr.strip() == "pattern 'NOPE-*' matches no symbol"


def test_replay_command(shared_data: Path) -> None:
    res = CliRunner().invoke(replay, [str(shared_data / "cryptofeed" / "BINANCE_DELIVERY")])
    assert res.exit_code == 0, res.output
    assert "book_snapshot" in res.output and "trade" in res.output
    res = CliRunner().invoke(replay, ["/nonexistent/capture"])
    assert res.exit_code == 2 and "not a capture" in res.output
