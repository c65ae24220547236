"""Transport security for the bus: CURVE (via zmq.auth) and private ipc run directories.

- :class:`CurveServer` — a publisher's key pair plus the allow-list of client public
  keys; :func:`apply_server` enables CURVE on a server socket (PUB or snapshot ROUTER)
  and registers its allow-list with the context's single ZAP authenticator
  (``zmq.auth.thread.ThreadAuthenticator``). A client whose key is not listed fails
  the handshake and receives nothing.
- :class:`CurveClient` — a subscriber's key pair plus the server public key.
- :func:`generate_keypair`, :func:`write_keypair`, :func:`load_keypair` — z85 keys,
  files in zmq.auth's certificate format.
- :func:`ensure_private_dir` — the ipc run directory, created mode 0700 and refused if
  another user can reach it.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from bus.endpoints import ipc_path

Z85_KEY_LEN = 40


def _key(value: bytes | str, what: str) -> bytes:
    key = value.encode("ascii") if isinstance(value, str) else bytes(value)
    if len(key) != Z85_KEY_LEN:
        raise ValueError(f"{what}: expected a 40-character z85 CURVE key, got {len(key)} bytes")
    return key


@dataclass(frozen=True)
class CurveServer:
    """Server side: own key pair (z85) and the z85 public keys of the clients allowed in."""

    public_key: bytes
    secret_key: bytes
    allowed_clients: frozenset[bytes] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_key", _key(self.public_key, "public_key"))
        object.__setattr__(self, "secret_key", _key(self.secret_key, "secret_key"))
        object.__setattr__(self, "allowed_clients",
                           frozenset(_key(k, "allowed client key") for k in self.allowed_clients))


@dataclass(frozen=True)
class CurveClient:
    """Client side: own key pair (z85) and the server's public key."""

    public_key: bytes
    secret_key: bytes
    server_key: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_key", _key(self.public_key, "public_key"))
        object.__setattr__(self, "secret_key", _key(self.secret_key, "secret_key"))
        object.__setattr__(self, "server_key", _key(self.server_key, "server_key"))


def generate_keypair() -> tuple[bytes, bytes]:
    """A new CURVE key pair ``(public, secret)``, z85-encoded."""
    return zmq.curve_keypair()


def write_keypair(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Create ``<name>.key`` (public) and ``<name>.key_secret`` in ``directory`` (mode 0700)."""
    d = ensure_private_dir(directory)
    public_file, secret_file = zmq.auth.create_certificates(str(d), name)
    os.chmod(secret_file, 0o600)
    return Path(public_file), Path(secret_file)


def load_keypair(path: str | Path) -> tuple[bytes, bytes | None]:
    """``(public, secret)`` from a zmq.auth certificate file (secret is None for a public file)."""
    return zmq.auth.load_certificate(str(path))


def load_public_keys(directory: str | Path) -> frozenset[bytes]:
    """Every public key in a directory of ``*.key`` certificate files (an allow-list)."""
    return frozenset(zmq.auth.load_certificates(str(directory)).keys())


class _AllowList:
    """ZAP credentials provider: one allow-list per ZAP domain (one domain per server socket)."""

    def __init__(self) -> None:
        self.domains: dict[str, frozenset[bytes]] = {}

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.domains.get(domain, frozenset())


# libzmq allows a single ZAP handler per context, so servers sharing a context share it.
_auth_lock = threading.Lock()
_authenticators: dict[int, tuple[ThreadAuthenticator, _AllowList]] = {}
_domain_counter = 0


def apply_server(sock: zmq.Socket, curve: CurveServer) -> str:
    """Make ``sock`` a CURVE server accepting only ``curve.allowed_clients``; returns its ZAP domain."""
    global _domain_counter
    ctx = sock.context
    with _auth_lock:
        entry = _authenticators.get(id(ctx))
        if entry is None:
            auth = ThreadAuthenticator(ctx)
            auth.start()
            allow = _AllowList()
            entry = (auth, allow)
            _authenticators[id(ctx)] = entry
        auth, allow = entry
        _domain_counter += 1
        domain = f"feedfabric-{os.getpid()}-{_domain_counter}"
        allow.domains[domain] = curve.allowed_clients
        auth.configure_curve_callback(domain, allow)
    sock.zap_domain = domain.encode()
    sock.curve_secretkey = curve.secret_key
    sock.curve_publickey = curve.public_key
    sock.curve_server = True
    return domain


def release_server(sock_domain: str, ctx: zmq.Context) -> None:
    """Forget a closed server socket's allow-list (the authenticator stays for the context)."""
    with _auth_lock:
        entry = _authenticators.get(id(ctx))
        if entry is not None:
            entry[1].domains.pop(sock_domain, None)


def apply_client(sock: zmq.Socket, curve: CurveClient) -> None:
    """Make ``sock`` a CURVE client of the server whose public key is ``curve.server_key``."""
    sock.curve_secretkey = curve.secret_key
    sock.curve_publickey = curve.public_key
    sock.curve_serverkey = curve.server_key


def ensure_private_dir(directory: str | Path) -> Path:
    """Create ``directory`` (and parents) with mode 0700; refuse one that others can reach.

    An existing directory owned by us is tightened to 0700; one owned by another
    user is refused, since its owner could replace our sockets.
    """
    d = Path(directory)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = d.stat()
    if st.st_uid != os.getuid():
        raise PermissionError(f"run directory {d} is owned by uid {st.st_uid}, not by us ({os.getuid()})")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(d, 0o700)
    return d


def prepare_ipc(endpoint: str) -> None:
    """For an ``ipc://`` endpoint, make its directory private (no-op for other transports)."""
    path = ipc_path(endpoint)
    if path is not None:
        ensure_private_dir(path.parent)


def allowed(keys: Iterable[bytes | str]) -> frozenset[bytes]:
    """Normalise an iterable of z85 public keys into an allow-list."""
    return frozenset(_key(k, "allowed client key") for k in keys)
