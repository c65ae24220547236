"""Fixtures for the Node and C client tests: find/build the clients, or skip saying what is missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "clients" / "node"
C_DIR = ROOT / "clients" / "c"
VECTORS = ROOT / "tests" / "vectors" / "wire_v1.json"


@pytest.fixture(scope="session")
def node_client() -> Path:
    """clients/node with its dependencies installed (``npm ci`` when node_modules is absent)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Node.js client cannot be tested")
    if not (NODE_DIR / "node_modules" / "zeromq").is_dir():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed and clients/node/node_modules is absent (run npm ci there)")
        res = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, f"npm ci failed in clients/node:\n{res.stdout}\n{res.stderr}"
    return NODE_DIR


@pytest.fixture(scope="session")
def c_build() -> subprocess.CompletedProcess:
    """A fresh build of clients/c (``make -B``); its output is kept to check for warnings."""
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("make or cc is not installed: the C client cannot be built")
    for header in ("zmq.h", "msgpack.h"):
        probe = subprocess.run(["cc", "-E", "-x", "c", "-"], input=f"#include <{header}>\n", capture_output=True,
                               text=True)
        if probe.returncode != 0:
            pytest.skip(f"<{header}> not found: apt-get install -y libzmq3-dev libmsgpack-dev")
    res = subprocess.run(["make", "-B", "ff_subscribe", "ff_vectors"], cwd=C_DIR, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, f"make failed in clients/c:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="session")
def c_client(c_build: subprocess.CompletedProcess) -> Path:
    """Directory holding ``ff_subscribe`` and ``ff_vectors`` built with AddressSanitizer and
    UndefinedBehaviorSanitizer (``make san``): every test of the C client is also a check that
    it never reads out of bounds, leaks or hits undefined behaviour, on good frames and corrupt
    ones. A sanitizer report makes the program exit non-zero (clients/c/san_options.c), which the
    tests check."""
    res = subprocess.run(["make", "-B", "san"], cwd=C_DIR, capture_output=True, text=True, timeout=300)
    if res.returncode != 0 and "asan" in (res.stdout + res.stderr).lower():
        pytest.skip(f"this compiler cannot build with -fsanitize=address (libasan missing?):\n{res.stderr[-1000:]}")
    assert res.returncode == 0, f"make san failed in clients/c:\n{res.stdout}\n{res.stderr}"
    return C_DIR / "san"
