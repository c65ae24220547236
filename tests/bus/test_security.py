"""CURVE key helpers (zmq.auth certificate files) and their validation."""

from __future__ import annotations

import os
import stat

import pytest

from bus.security import (
    CurveClient,
    CurveServer,
    generate_keypair,
    load_keypair,
    load_public_keys,
    write_keypair,
)


def test_keypair_files_round_trip_and_secret_is_private(tmp_path):
    pub_file, sec_file = write_keypair(tmp_path / "keys", "server")
    public, secret = load_keypair(sec_file)
    assert len(public) == 40 and len(secret) == 40
    assert load_keypair(pub_file) == (public, None)
    assert stat.S_IMODE(os.stat(sec_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    # An allow-list directory holds public files only.
    allow = tmp_path / "allow"
    allow.mkdir()
    (allow / "server.key").write_bytes(pub_file.read_bytes())
    assert load_public_keys(allow) == frozenset({public})


def test_curve_configs_validate_keys():
    public, secret = generate_keypair()
    server = CurveServer(public.decode(), secret, [public])  # str and any iterable accepted
    assert server.public_key == public and server.allowed_clients == frozenset({public})
    with pytest.raises(ValueError, match="40-character"):
        CurveClient(public, secret, b"short")
