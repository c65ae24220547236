"""CURVE is decided per process from every endpoint it binds, not from the PUB alone.

A gateway with an ipc PUB and a **tcp** snapshot service under ``security.curve`` must not
serve its snapshots to a client whose key is not allowed (nor to one without CURVE).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from bus.security import CurveClient, apply_client, generate_keypair
from bus.snapshot import HELLO, encode_request
from bus.topology import parse_topology
from feedfabric.runner import RunError, build_consumer, curve_server, secured

pytestmark = pytest.mark.timeout(60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _topology(run: Path, logs: Path, caps: Path, port: int, server: tuple[bytes, bytes], allowed: bytes) -> str:
    return f"""
run_dir: {run}
log_dir: {logs}
security:
  curve:
    server_public_key: "{server[0].decode()}"
    server_secret_key: "{server[1].decode()}"
    allowed_clients: ["{allowed.decode()}"]
gateways:
  binance:
    exchange: BINANCE
    channels: [trades, l2_book]
    symbols: [BTC-USDT]
    heartbeat_interval: 0.5
    snapshot: tcp://127.0.0.1:{port}
    replay: {{path: {caps}/binance.ffcap}}
"""


def _dealer(ctx: zmq.Context, endpoint: str, client: CurveClient | None) -> tuple[zmq.Socket, zmq.Socket]:
    d = ctx.socket(zmq.DEALER)
    d.linger = 0
    if client is not None:
        apply_client(d, client)
    mon = d.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                               | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    d.connect(endpoint)
    d.send_multipart(encode_request(HELLO, "", b"r1"))
    return d, mon


def _handshake(mon: zmq.Socket, timeout_ms: int = 15000) -> int:
    """The first handshake event of the monitored socket (success or failure)."""
    assert mon.poll(timeout_ms), "no handshake event"
    return recv_monitor_message(mon)["event"]


def test_tcp_snapshot_next_to_ipc_pub_requires_curve(tmp_path: Path, short_run_dir: Path, sim_captures: Path,
                                                     run_cli) -> None:
    server, allowed, stranger = generate_keypair(), generate_keypair(), generate_keypair()
    port = _free_port()
    text = _topology(short_run_dir, tmp_path / "logs", sim_captures, port, server, allowed[0])
    topo = parse_topology(text, env={})
    assert topo.gateway_endpoint("binance").pub.startswith("ipc://")
    assert secured(topo, "binance") and curve_server(topo, "binance") is not None
    (tmp_path / "t.yaml").write_text(text)
    gw = run_cli(["gateway", "binance", "-t", str(tmp_path / "t.yaml"), "--duration", "40"])
    gw.wait_for(rf"publisher binance epoch \d+ on .* \(snapshot tcp://127.0.0.1:{port}\)", 30)
    endpoint = f"tcp://127.0.0.1:{port}"
    ctx = zmq.Context()
    socks = []
    try:
        # The allowed client is answered (so the request itself is right) ...
        ok, ok_mon = _dealer(ctx, endpoint, CurveClient(allowed[0], allowed[1], server[0]))
        socks += [ok, ok_mon]
        assert _handshake(ok_mon) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        assert ok.poll(15000), "the allowed client got no snapshot reply"
        # ... an unlisted key fails the handshake and gets nothing ...
        bad, bad_mon = _dealer(ctx, endpoint, CurveClient(stranger[0], stranger[1], server[0]))
        socks += [bad, bad_mon]
        assert _handshake(bad_mon) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        assert not bad.poll(0)
        # ... and so does a client without CURVE.
        plain, plain_mon = _dealer(ctx, endpoint, None)
        socks += [plain, plain_mon]
        assert _handshake(plain_mon) in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        assert not plain.poll(0)
    finally:
        for s in socks:
            s.close(linger=0)
        ctx.term()


def test_consumer_tcp_pub_gets_curve(tmp_path: Path, short_run_dir: Path) -> None:
    server, client = generate_keypair(), generate_keypair()
    port = _free_port()
    text = f"""
run_dir: {short_run_dir}
security:
  curve:
    server_public_key: "{server[0].decode()}"
    server_secret_key: "{server[1].decode()}"
    allowed_clients: ["{client[0].decode()}"]
gateways:
  x: {{exchange: BINANCE, channels: [trades], symbols: [BTC-USDT]}}
consumers:
  bars: {{kind: ohlcv, sources: [x], pub: "tcp://127.0.0.1:{port}"}}
"""
    topo = parse_topology(text, env={})
    bars = build_consumer(topo, "bars")     # was refused: "CURVE on a consumer's own tcp PUB is not supported"
    try:
        assert bars.publisher is not None and bars.publisher.curve is not None
        assert bars.publisher.curve.allowed_clients == frozenset({client[0]})
    finally:
        bars.close()
    # Without the server secret key on this host the consumer is refused with the field to fix.
    no_secret = parse_topology(text.replace(f'    server_secret_key: "{server[1].decode()}"\n', ""), env={})
    with pytest.raises(RunError, match="security.curve.server_secret_key: needed by consumers.bars"):
        build_consumer(no_secret, "bars")
