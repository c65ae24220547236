"""Prometheus endpoint of a process, and the per-process commands' argument errors."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedfabric.cli import main
from feedfabric.metrics import serve_metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scraped_twice(serve: Callable[[int], Callable[[], None]], between: Callable[[], None]) -> tuple[str, str]:
    """``/metrics`` of ``serve(port)`` (which returns its stop function), then again after ``between()``."""
    port = _free_port()
    stop = serve(port)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        between()
        return text, urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        stop()


def test_metrics_endpoint_exports_counters() -> None:
    counters = {"messages": 5, "channel.trades": 3, "feeds": {"x": 1}}
    text, again = _scraped_twice(lambda port: serve_metrics(port, "binance", lambda: counters),
                                 lambda: counters.update(messages=9))
    assert 'feedfabric_up{process="binance"} 1.0' in text
    assert 'feedfabric_counter_total{name="messages",process="binance"} 5.0' in text
    assert 'feedfabric_counter_total{name="channel.trades",process="binance"} 3.0' in text
    assert "feeds" not in text                                     # non-numeric values are skipped
    assert 'feedfabric_counter_total{name="messages",process="binance"} 9.0' in again


def test_metrics_endpoint_exports_feed_states() -> None:
    """A gateway's feeds (its connections, the exchange's system status): the current state of each,
    and whether it counts as up, for alerts on a maintenance or a lost connection."""
    feeds = {"KRAKEN.0": "connected", "system": "maintenance"}
    text, again = _scraped_twice(lambda port: serve_metrics(port, "kraken", lambda: {"messages": 1}, feeds=lambda: feeds),
                                 lambda: feeds.update(system="online"))
    assert 'feedfabric_feed_state{feed="system",process="kraken",state="maintenance"} 1.0' in text
    assert 'feedfabric_feed_up{feed="system",process="kraken"} 0.0' in text
    assert 'feedfabric_feed_up{feed="KRAKEN.0",process="kraken"} 1.0' in text
    assert 'state="online"' in again and 'state="maintenance"' not in again
    assert 'feedfabric_feed_up{feed="system",process="kraken"} 1.0' in again


def test_metrics_endpoint_exports_books_invalid(bus_endpoint, publisher_factory) -> None:
    """A gateway's books announced invalid and not rebuilt (from its publisher), for an alert when
    resyncs are not getting through."""
    from cryptofeed_types.events import Gap, L2Snapshot

    pub = publisher_factory("gwm", bus_endpoint("gwm"))
    pub.publish(L2Snapshot("EX", "A-B", [("1", "1")], [("2", "1")], receipt_timestamp=1))
    pub.publish(Gap("EX", "book", "checksum", symbol="A-B", receipt_timestamp=2))
    text, again = _scraped_twice(lambda port: serve_metrics(port, "gwm", pub.all_counters, books_invalid=pub.books_invalid),
                                 lambda: pub.publish(L2Snapshot("EX", "A-B", [("1", "2")], [("2", "1")], receipt_timestamp=3)))
    assert 'feedfabric_books_invalid{process="gwm"} 1.0' in text
    assert 'feedfabric_books_invalid{process="gwm"} 0.0' in again
    assert "feedfabric_books_invalid" not in _scraped_twice(lambda port: serve_metrics(port, "c", lambda: {}),
                                                            lambda: None)[0]   # a consumer has none


def test_process_commands_reject_unknown_names(tmp_path: Path) -> None:
    topo = tmp_path / "t.yaml"
    topo.write_text("run_dir: /tmp/ffx\ngateways:\n  a:\n    exchange: BINANCE\n    channels: [trades]\n"
                    "    symbols: [BTC-USDT]\n")
    runner = CliRunner()
    res = runner.invoke(main, ["gateway", "b", "-t", str(topo)])
    assert res.exit_code == 2 and "no gateway 'b' in the topology (gateways: a)" in res.output
    res = runner.invoke(main, ["consumer", "a", "-t", str(topo)])
    assert res.exit_code == 2 and "no consumer 'a'" in res.output
    res = runner.invoke(main, ["up", str(topo), "--only", "zzz"])
    assert res.exit_code == 2 and "no process named zzz" in res.output
    topo.write_text("gateways: {a: {exchange: BINANCE}}\n")
    res = runner.invoke(main, ["gateway", "a", "-t", str(topo)])
    assert res.exit_code == 2 and "gateways.a.channels: required field is missing" in res.output


def test_consumers_built_from_topology(tmp_path: Path, short_run_dir: Path) -> None:
    from bus.topology import parse_topology
    from consumers.aggregations.ohlcv import OHLCVConsumer
    from feedfabric.runner import RunError, build_consumer

    text = f"""
run_dir: {short_run_dir}
gateways: {{x: {{exchange: BINANCE, channels: [trades], symbols: [BTC-USDT]}}}}
consumers:
  bars: {{kind: ohlcv, options: {{interval: 5s}}}}
  bad: {{kind: ohlcv, options: {{no_such_option: 1}}}}
  store: {{kind: parquet, path: {tmp_path}/data, options: {{checkpoint_interval: 3}}}}
"""
    topo = parse_topology(text, env={})
    bars = build_consumer(topo, "bars")
    try:
        assert isinstance(bars, OHLCVConsumer) and bars.agg.interval == "5s"
        assert bars.prefixes == ("trades.",)          # the kind's default prefixes
        assert bars.publisher is not None and bars.publisher.endpoint == f"ipc://{short_run_dir}/bars.pub"
    finally:
        bars.close()
    store = build_consumer(topo, "store")
    try:
        assert store.store.checkpoint_interval == 3 and str(store.store.root) == f"{tmp_path}/data"
    finally:
        store.close()
    with pytest.raises(RunError, match=r"consumers.bad.options.no_such_option: unknown option of the ohlcv consumer kind; accepted: grace, interval"):
        build_consumer(topo, "bad")


def test_a_gateways_metrics_hold_the_counters_of_its_adapter_and_replay_too(
        tmp_path: Path, short_run_dir: Path, sim_captures: Path, run_cli) -> None:
    # Counters added through Publisher.count (replay passes, adapter and driver counters) are in
    # the heartbeats and must be in /metrics as well, not only the publisher's own.
    port = _free_port()
    topo = tmp_path / "t.yaml"
    topo.write_text(f"run_dir: {short_run_dir}\ngateways:\n  binance:\n    exchange: BINANCE\n"
                    "    channels: [trades, l2_book]\n    symbols: [BTC-USDT]\n"
                    f"    metrics_port: {port}\n    replay: {{path: {sim_captures}/binance.ffcap}}\n")
    gw = run_cli(["gateway", "binance", "-t", str(topo), "--duration", "30"])
    gw.wait_for(r"replay pass 1 of", 30)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'feedfabric_counter_total{name="replay_passes",process="binance"}' in text
    assert 'feedfabric_counter_total{name="messages",process="binance"}' in text
