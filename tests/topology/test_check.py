"""`feedfabric check` and bus.topology: every broken topology gets its field path and reason."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bus.topology import Issue, TopologyError, interpolate, load_topology, parse_topology
from feedfabric.cli import main

GOOD = """
run_dir: /tmp/ff-topology-test
gateways:
  binance:
    exchange: BINANCE
    channels: [trades, l2_book]
    symbols: [BTC-USDT]
  coinbase:
    exchange: COINBASE
    channels: [trades]
    symbols: [BTC-USD]
consumers:
  nbbo:
    kind: nbbo
  store:
    kind: parquet
    sources: [binance, nbbo]
    prefixes: [trades., nbbo.]
    path: ./data
"""


def issues_of(text: str, env: dict[str, str] | None = None) -> list[Issue]:
    with pytest.raises(TopologyError) as info:
        parse_topology(textwrap.dedent(text), source="t.yaml", env=env or {})
    return info.value.issues


def test_good_topology_and_derived_endpoints() -> None:
    topo = parse_topology(GOOD, env={})
    assert topo.gateways["coinbase"].symbols == ["BTC-USD"]
    replaying = parse_topology(GOOD.replace("symbols: [BTC-USD]", "symbols: all\n    replay: {path: x.ffcap}"), env={})
    assert replaying.gateways["coinbase"].symbols is None     # 'all'
    assert topo.source_names("nbbo") == ["binance", "coinbase"]
    ep = topo.gateway_endpoint("binance")
    assert ep.pub == "ipc:///tmp/ff-topology-test/binance.pub"
    assert ep.snapshot == "ipc:///tmp/ff-topology-test/binance.snap"
    assert topo.gateway_endpoint("store").snapshot is None    # storage publishes heartbeats only
    assert len(topo.ipc_paths()) == 2 + 2 + 2 + 1


BROKEN = [
    # (what is wrong, replacement applied to GOOD, expected path, expected reason fragment, expected line)
    ("unknown key", ("    symbols: [BTC-USDT]\n", "    symbols: [BTC-USDT]\n    sybmols: [ETH-USDT]\n"),
     "gateways.binance.sybmols", "unknown key", 8),
    ("bad channel", ("channels: [trades, l2_book]", "channels: [trades, l2_bok]"),
     "gateways.binance.channels[1]", "unknown channel 'l2_bok'", 6),
    ("symbol not normalized", ("symbols: [BTC-USDT]", "symbols: [BTC-USDT, eth-usdt]"),
     "gateways.binance.symbols[1]", "write 'ETH-USDT'", 7),
    ("symbol pattern with a space", ("symbols: [BTC-USDT]", "symbols: [BTC-USDT, 'ETH *']"),
     "gateways.binance.symbols[1]", "write a symbol pattern without white space", 7),
    ("missing field", ("    exchange: COINBASE\n", ""), "gateways.coinbase.exchange", "required field is missing", 8),
    ("unknown consumer kind", ("kind: nbbo", "kind: nbb0"), "consumers.nbbo.kind", "unknown consumer kind 'nbb0'", 14),
    ("prefix without terminator", ("prefixes: [trades., nbbo.]", "prefixes: [trades, nbbo.]"),
     "consumers.store.prefixes[0]", "must end with '.'", 18),
    ("unknown source", ("sources: [binance, nbbo]", "sources: [binance, okx]"),
     "consumers.store.sources[1]", "no gateway or publishing consumer named 'okx'", 17),
    ("consumer is its own source", ("sources: [binance, nbbo]", "sources: [binance, store]"),
     "consumers.store.sources[1]", "cannot subscribe to itself", 17),
    ("source publishes nothing", ("kind: nbbo", "kind: nbbo\n    sources: [store]"),
     "consumers.nbbo.sources[0]", "'store' is a parquet consumer, which publishes nothing", 15),
    ("bad endpoint", ("    symbols: [BTC-USDT]\n", "    symbols: [BTC-USDT]\n    pub: udp://1.2.3.4:5\n"),
     "gateways.binance.pub", "must start with ipc:// or tcp://", 8),
    ("duplicate endpoint", ("    symbols: [BTC-USD]\n", "    symbols: [BTC-USD]\n    pub: ipc:///tmp/ff-topology-test/binance.pub\n"),
     "gateways.coinbase.pub", "also used by gateways.binance.pub", 12),
    ("wrong type", ("run_dir: /tmp/ff-topology-test", "run_dir: /tmp/ff-topology-test\nlog_level: LOUD"),
     "log_level", "Input should be", 3),
    ("negative pace", ("    symbols: [BTC-USD]\n", "    symbols: [BTC-USD]\n    replay: {path: x.ffcap, pace: -1}\n"),
     "gateways.coinbase.replay.pace", "greater than or equal to 0", 12),
    ("unknown exchange", ("exchange: COINBASE", "exchange: NOSUCHEX"),
     "gateways.coinbase.exchange", "unknown exchange 'NOSUCHEX'", 9),
    ("ipc path too long", ("run_dir: /tmp/ff-topology-test", "run_dir: /tmp/" + "x" * 120),
     "run_dir", "unix sockets allow", None),
]


@pytest.mark.parametrize("what,edit,path,reason,line", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_topology_reports_path_and_reason(what: str, edit: tuple[str, str], path: str, reason: str,
                                                 line: int | None) -> None:
    old, new = edit
    assert old in GOOD, what
    issues = issues_of(GOOD.replace(old, new, 1))
    match = [i for i in issues if i.path == path]
    assert match, f"{what}: no issue at {path}: {issues}"
    assert reason in match[0].message, match[0]
    if line is not None:
        assert match[0].line == line, match[0]


def test_all_errors_reported_at_once() -> None:
    text = GOOD.replace("channels: [trades, l2_book]", "channels: [tradez]").replace("kind: nbbo", "kind: x")
    paths = {i.path for i in issues_of(text)}
    assert {"gateways.binance.channels[0]", "consumers.nbbo.kind"} <= paths


def test_env_interpolation() -> None:
    text = GOOD.replace("path: ./data", "path: ${DATA_DIR:-/srv/data}")
    topo = parse_topology(text.replace("run_dir: /tmp/ff-topology-test", "run_dir: ${RUN}"),
                          env={"RUN": "/tmp/ffenv"})
    assert str(topo.run_dir) == "/tmp/ffenv"
    assert str(topo.consumers["store"].path) == "/srv/data"
    issues = issues_of(GOOD.replace("path: ./data", "path: ${NOT_SET_ANYWHERE}"))
    assert issues[0].path == "consumers.store.path"
    assert "NOT_SET_ANYWHERE is not set" in issues[0].message
    data, errors = interpolate({"a": ["x$${y}", "${A}-${B:-b}"]}, {"A": "1"})
    assert data == {"a": ["x${y}", "1-b"]} and errors == []


def test_secrets_are_not_echoed() -> None:
    secret = "S" * 39
    issues = issues_of(GOOD + f"security:\n  curve:\n    server_secret_key: {secret}\n"
                       f"    server_public_key: {'P' * 40}\n")
    assert issues[0].path == "security.curve.server_secret_key"
    assert secret not in str(issues)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateways:\n  binance: {exchange: BINANCE\n")
    with pytest.raises(TopologyError) as info:
        load_topology(bad)
    assert "YAML syntax error" in info.value.issues[0].message and info.value.issues[0].line


def test_cli_check(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("channels: [trades, l2_book]", "channels: [trades, l2_bok]")
                   .replace("kind: nbbo", "kind: nbb0"))
    runner = CliRunner()
    ok = runner.invoke(main, ["check", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "OK — 2 gateway(s), 2 consumer(s)" in ok.output
    res = runner.invoke(main, ["check", str(bad)])
    assert res.exit_code == 1
    assert f"{bad}:6: gateways.binance.channels[1]: unknown channel 'l2_bok'" in res.output
    assert f"{bad}:14: consumers.nbbo.kind: unknown consumer kind 'nbb0'" in res.output
    assert "2 errors" in res.output


def test_shipped_topologies_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[2]
    from feedfabric.runner import start_checks

    load_topology(root / "topology.yaml", env={}, checks=start_checks())   # what `feedfabric up` runs first
    env = {"FEEDFABRIC_DEMO_RUN": "/tmp/x", "FEEDFABRIC_DEMO_DIR": "/tmp/y", "FEEDFABRIC_DEMO_CAPTURES": "/tmp/z"}
    topo = load_topology(root / "feedfabric" / "data" / "demo.yaml", env=env)
    assert set(topo.gateways) == {"binance", "coinbase", "kraken"}


def test_docs_two_host_example_validates_on_both_hosts() -> None:
    import re

    from feedfabric.runner import curve_client, curve_server

    doc = (Path(__file__).resolve().parents[2] / "docs" / "topology.md").read_text()
    example = re.findall(r"```yaml\n(.*?)```", doc, re.S)[-1]
    pub, client = "P" * 40, "C" * 40
    host_a = parse_topology(example, env={"FF_SERVER_PUBLIC": pub, "FF_SERVER_SECRET": "S" * 40,
                                          "FF_CLIENT_PUBLIC": client})
    server = curve_server(host_a, host_a.gateway_endpoint("binance").pub)
    assert server is not None and server.allowed_clients == frozenset({client.encode()})
    host_b = parse_topology(example, env={"FF_SERVER_PUBLIC": pub, "FF_CLIENT_PUBLIC": client,
                                          "FF_CLIENT_SECRET": "T" * 40})
    assert curve_client(host_b, "storage").server_key == pub.encode()


def test_environment_settings_override_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bus.topology import Settings

    f = tmp_path / "t.yaml"
    f.write_text(GOOD)
    monkeypatch.setenv("FEEDFABRIC_RUN_DIR", "/tmp/ff-settings")
    monkeypatch.setenv("FEEDFABRIC_TOPOLOGY", str(f))
    settings = Settings()
    assert settings.topology == f
    topo = load_topology(settings.topology, settings=settings)
    assert str(topo.run_dir) == "/tmp/ff-settings"
    assert CliRunner().invoke(main, ["check"]).exit_code == 0      # finds the file through the environment


# ---- `check` runs the checks each process applies at start (feedfabric.runner.start_problems)

START_BROKEN = [
    # (what is wrong, replacement applied to GOOD, expected path, expected reason fragment, expected line)
    ("gateway option typo", ("    symbols: [BTC-USDT]\n", "    symbols: [BTC-USDT]\n    options: {backof_max: 5}\n"),
     "gateways.binance.options.backof_max", "unknown gateway option; accepted: backoff_initial, backoff_max", 8),
    ("gateway option bad value", ("    symbols: [BTC-USDT]\n",
                                  "    symbols: [BTC-USDT]\n    options: {silence_timeout: -1}\n"),
     "gateways.binance.options.silence_timeout", "Input should be greater than 0", 8),
    ("gateway option shadows a topology key", ("    symbols: [BTC-USDT]\n",
                                               "    symbols: [BTC-USDT]\n    options: {depth: 5}\n"),
     "gateways.binance.options.depth", "not an option: write it as gateways.binance.book_depth", 8),
    ("unknown url name", ("    symbols: [BTC-USDT]\n", "    symbols: [BTC-USDT]\n    urls: {websocket: ws://x}\n"),
     "gateways.binance.urls.websocket", "unknown url name for BINANCE; known: rest, ws", 8),
    ("consumer option typo", ("    path: ./data\n", "    path: ./data\n    options: {checkpoint_intervl: 3}\n"),
     "consumers.store.options.checkpoint_intervl", "unknown option of the parquet store; accepted: "
     "checkpoint_interval", 20),
    ("nbbo option typo", ("    kind: nbbo\n", "    kind: nbbo\n    options: {quote_equivalance: {USDT: USD}}\n"),
     "consumers.nbbo.options.quote_equivalance",
     "unknown option of the nbbo consumer kind; accepted: quote_equivalence", 15),
    ("unknown ccxt exchange", ("exchange: COINBASE", "exchange: CCXT_NOPE"),
     "gateways.coinbase.exchange", "unknown exchange 'CCXT_NOPE': ccxt has no exchange 'nope'", 9),
    ("replayed capture missing", ("symbols: [BTC-USD]", "symbols: all\n    replay: {path: /nonexistent/x.ffcap}"),
     "gateways.coinbase.replay.path", "capture /nonexistent/x.ffcap does not exist", 12),
    ("proxy pool with a bad scheme", ("    symbols: [BTC-USDT]\n",
                                      "    symbols: [BTC-USDT]\n    proxy: [http://p1:3128, 'ftp://me:pw@p2:21']\n"),
     "gateways.binance.proxy", "'ftp://p2:21': a proxy is scheme://", 8),
]


def test_any_ccxt_exchange_is_a_gateway_with_its_options() -> None:
    from feedfabric.runner import live_config, start_checks

    text = GOOD.replace("exchange: COINBASE", "exchange: CCXT_KUCOIN").replace(
        "symbols: [BTC-USD]", "symbols: [BTC-USDT]\n    options: {poll_interval: 2, ccxt: {options: {x: 1}}}")
    topo = parse_topology(text, env={}, checks=start_checks())
    cfg = live_config(topo, "coinbase")
    assert (cfg.exchange, cfg.poll_interval, cfg.ccxt) == ("CCXT_KUCOIN", 2.0, {"options": {"x": 1}})


def test_live_gateway_symbols_may_be_all_or_patterns() -> None:
    from feedfabric.runner import live_config, start_checks

    for given, expected in (("all", ["*"]),
                            ("[BTC-*, '*-USD-PERP', ETH-USD, 'SOL-USD-2026????']",
                             ["BTC-*", "*-USD-PERP", "ETH-USD", "SOL-USD-2026????"])):
        topo = parse_topology(GOOD.replace("symbols: [BTC-USD]", f"symbols: {given}"), env={},
                              checks=start_checks())
        assert live_config(topo, "coinbase").symbols == expected, given


@pytest.mark.parametrize("what,edit,path,reason,line", START_BROKEN, ids=[b[0] for b in START_BROKEN])
def test_check_refuses_what_fails_at_start(tmp_path: Path, what: str, edit: tuple[str, str], path: str,
                                           reason: str, line: int) -> None:
    from feedfabric.runner import RunError, run_consumer, run_gateway, start_checks

    old, new = edit
    assert old in GOOD, what
    text = GOOD.replace(old, new, 1)
    parse_topology(text, env={})                   # the model alone accepts it ...
    with pytest.raises(TopologyError) as info:     # ... the start-time checks do not
        parse_topology(text, env={}, checks=start_checks())
    match = [i for i in info.value.issues if i.path == path]
    assert match, f"{what}: no issue at {path}: {info.value.issues}"
    assert reason in match[0].message and match[0].line == line, match[0]
    # `feedfabric check` reports it with file, line, path and reason, and exits 1.
    f = tmp_path / "t.yaml"
    f.write_text(text)
    res = CliRunner().invoke(main, ["check", str(f)])
    assert res.exit_code == 1 and f"{f}:{line}: {path}: {reason}" in res.output, res.output
    # The process itself refuses the same thing, with the same words, before binding anything.
    name = path.split(".")[1]
    run = run_gateway if path.startswith("gateways.") else run_consumer
    with pytest.raises(RunError, match=re.escape(f"{path}: {reason}")):
        run(parse_topology(text, env={}), name)


@pytest.mark.parametrize("policy", ["warn", "off", "skip"])
def test_checksum_policies_other_than_resync_are_refused(policy: str) -> None:
    issues = issues_of(GOOD.replace("    symbols: [BTC-USDT]\n", f"    symbols: [BTC-USDT]\n    checksum: {policy}\n"))
    assert issues[0].path == "gateways.binance.checksum" and issues[0].line == 8
    assert ("is not implemented" if policy != "skip" else "unknown checksum policy") in issues[0].message
    assert "'resync'" in issues[0].message


def test_up_refuses_before_starting_anything(tmp_path: Path) -> None:
    run = tmp_path / "run"
    f = tmp_path / "t.yaml"
    f.write_text(GOOD.replace("/tmp/ff-topology-test", str(run))
                 .replace("    kind: nbbo\n", "    kind: nbbo\n    options: {no_such: 1}\n"))
    res = CliRunner().invoke(main, ["up", str(f)])
    assert res.exit_code == 2 and "consumers.nbbo.options.no_such: unknown option" in res.output, res.output
    assert not run.exists()                         # nothing started, not even the run directory


def test_check_only_limits_host_specific_keys(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "topology.md").read_text()
    example = re.findall(r"```yaml\n(.*?)```", doc, re.S)[-1]
    f = tmp_path / "two-hosts.yaml"
    f.write_text(example)
    host_a = {"FF_SERVER_PUBLIC": "P" * 40, "FF_SERVER_SECRET": "S" * 40, "FF_CLIENT_PUBLIC": "C" * 40}
    runner = CliRunner()
    res = runner.invoke(main, ["check", str(f)], env=host_a)
    assert res.exit_code == 1 and "security.curve.client_secret_key: needed by consumers.storage" in res.output
    res = runner.invoke(main, ["check", str(f), "--only", "binance"], env=host_a)
    assert res.exit_code == 0, res.output
