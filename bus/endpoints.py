"""Where a publisher lives: its PUB endpoint and (optionally) its snapshot service endpoint.

A :class:`GatewayEndpoint` is what a subscriber connects to; ``topology.yaml``
gateways map onto it. Helpers here build conventional ipc endpoints under a run
directory and check ipc path limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# sockaddr_un.sun_path is 108 bytes on Linux including the NUL; libzmq refuses longer paths
# with a bare ENAMETOOLONG, so we check first and say which endpoint is at fault.
IPC_PATH_MAX = 107


@dataclass(frozen=True)
class GatewayEndpoint:
    """One publisher: ``pub`` (PUB socket) and its snapshot service ``snapshot`` (ROUTER), if any."""

    pub: str
    snapshot: str | None = None

    @classmethod
    def ipc(cls, run_dir: str | Path, name: str, snapshot: bool = True) -> GatewayEndpoint:
        """``ipc://<run_dir>/<name>.pub`` and ``ipc://<run_dir>/<name>.snap``."""
        base = Path(run_dir)
        return cls(ipc_endpoint(base / f"{name}.pub"), ipc_endpoint(base / f"{name}.snap") if snapshot else None)


def ipc_endpoint(path: str | Path) -> str:
    """``ipc://`` endpoint for a filesystem path (checked against the unix socket path limit)."""
    text = str(Path(path).absolute())
    if len(text.encode()) > IPC_PATH_MAX:
        raise ValueError(f"ipc path {text!r} is {len(text.encode())} bytes; unix sockets allow {IPC_PATH_MAX}")
    return "ipc://" + text


def ipc_path(endpoint: str) -> Path | None:
    """The filesystem path of an ``ipc://`` endpoint, None for other transports."""
    if not endpoint.startswith("ipc://"):
        return None
    return Path(endpoint[len("ipc://"):])


def is_tcp(endpoint: str) -> bool:
    return endpoint.startswith("tcp://")


def as_endpoint(value: str | GatewayEndpoint) -> GatewayEndpoint:
    """Accept a bare PUB endpoint string (no snapshot service) or a GatewayEndpoint."""
    if isinstance(value, GatewayEndpoint):
        return value
    if isinstance(value, str):
        return GatewayEndpoint(value)
    raise TypeError(f"expected an endpoint string or GatewayEndpoint, got {type(value).__name__}")
