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


def test_record_a_session_from_the_loopback_exchange_then_replay_it(shared_data: Path, tmp_path: Path) -> None:
    """`feedfabric record` end to end: the loopback exchange (on its own thread) serves the capture,
    the command records it for a while, and the recording replays."""
    from feedfabric.testing.exchange import ThreadedLoopback
    from gateways.capture import read_capture
    from gateways.commands import record

    out = tmp_path / "rec.ffcap"
    with ThreadedLoopback(shared_data / "cryptofeed" / "BINANCE_FUTURES") as lb:
        lb.call(lb.exchange.release, None)
        urls = [f"--url={name}={url}" for name, url in lb.urls().items()]
        res = CliRunner().invoke(record, ["BINANCE_FUTURES", "-c", "trades,l2_book", "-s", "SUSHI-*,CTK-USDT-PERP",
                                          "-o", str(out), "--duration", "3", "--no-progress", *urls,
                                          "--option", "silence_timeout=30", "--option", "backoff_max=1"])
    assert res.exit_code == 0, res.output
    recs = list(read_capture(out))
    assert recs[0].data["channels"] == {"trades": ["SUSHI-USDT-PERP", "CTK-USDT-PERP"],
                                        "l2_book": ["SUSHI-USDT-PERP", "CTK-USDT-PERP"]}
    assert {r.kind for r in recs} >= {"header", "rest", "connect", "send", "recv"}
    res = CliRunner().invoke(replay, [str(out)])
    assert res.exit_code == 0 and "book_snapshot" in res.output and "trade" in res.output, res.output
    # A setting the gateway does not have is one clear line, as is a malformed one.
    res = CliRunner().invoke(record, ["BINANCE", "-c", "trades", "-s", "BTC-USDT", "-o", str(out),
                                      "--option", "silense_timeout=3"])
    assert res.exit_code == 2 and "silense_timeout: Extra inputs are not permitted" in res.output, res.output
    res = CliRunner().invoke(record, ["BINANCE", "-c", "trades", "-s", "BTC-USDT", "-o", str(out), "--option", "x"])
    assert res.exit_code == 2 and "expected KEY=VALUE" in res.output


def test_record_a_ccxt_exchange_with_its_settings(shared_data: Path, tmp_path: Path) -> None:
    from feedfabric.testing.exchange import ThreadedLoopback
    from gateways.capture import read_capture
    from gateways.commands import record

    out = tmp_path / "ccxt.ffcap"
    with ThreadedLoopback(shared_data / "cryptofeed" / "BINANCE_FUTURES", rest_only=True) as lb:
        lb.call(lb.exchange.release, None)
        res = CliRunner().invoke(record, [
            "CCXT_BINANCE", "-c", "trades,l2_book", "-s", "SUSHI-USDT-PERP", "-o", str(out), "--duration", "2",
            "--no-progress", f"--url=rest={lb.urls()['rest']}", "--option", "poll_interval=0.2",
            "--option", 'ccxt={"enableRateLimit": false, "options": {"fetchMarkets": ["linear"]}}'])
    assert res.exit_code == 0, res.output
    recs = list(read_capture(out))
    assert recs[0].data["exchange"] == "CCXT_BINANCE" and recs[0].data["poll_interval"] == 0.2
    calls = [r.url.split("?")[0] for r in recs if r.kind == "rest"]
    assert calls[0] == "ccxt:load_markets" and {"ccxt:fetch_trades", "ccxt:fetch_order_book"} <= set(calls)
    assert calls.count("ccxt:fetch_order_book") >= 5          # every 0.2 s for 2 s
