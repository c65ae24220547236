"""Captures: feedfabric's own recording format plus readers for the shared sample formats.

:func:`read_capture` returns one iterator of :class:`Record` for any supported capture:

- feedfabric ``.ffcap`` files (:mod:`gateways.capture.ffcap`, docs/capture-format.md);
- cryptofeed 2.x sessions (``.../EX``, ``EX.0``, ``EX.ws.N.0``, ``EX.http.N.0``);
- cryptofeed v3 ``.jsonl`` (first line ``{"t":"header",...}``);
- tardis ``tardis_messages/<id>.jsonl`` lines.

The first record is always a ``header`` whose ``data`` holds at least ``format``,
``exchange`` and ``channels`` (channel → normalized symbols, possibly empty).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from gateways.capture.cryptofeed import normalize_cryptofeed_symbol, read_legacy, read_v3
from gateways.capture.ffcap import CaptureWriter, FfcapReader, is_ffcap
from gateways.capture.record import CLOSE, CONNECT, HEADER, KINDS, RECV, REST, SEND, Record, seconds_to_ns
from gateways.capture.tardis import TARDIS_EXCHANGES, read_tardis

__all__ = ["CLOSE", "CONNECT", "HEADER", "KINDS", "RECV", "REST", "SEND", "CaptureWriter", "FfcapReader", "Record",
           "TARDIS_EXCHANGES", "capture_format", "later_parts", "normalize_cryptofeed_symbol",
           "part_capture", "read_capture", "seconds_to_ns"]


def part_capture(path: str | os.PathLike[str], n: int) -> Path:
    """The capture file part ``n`` of a live gateway records into (gateways.process: symbols
    listed after its start get a part of their own): ``path`` itself for the first,
    ``<stem>.<n><suffix>`` beside it for later ones (each replays on its own)."""
    p = Path(path)
    return p if n == 0 else p.with_name(f"{p.stem}.{n}{p.suffix}")


def later_parts(path: str | os.PathLike[str]) -> list[Path]:
    """The files of parts 1, 2, ... recorded beside ``path`` (:func:`part_capture`), which a replay
    of ``path`` replays with it (gateways.replay.replay_parts). Only feedfabric captures have parts."""
    out: list[Path] = []
    if not (Path(path).is_file() and is_ffcap(path)):
        return out
    while (p := part_capture(path, len(out) + 1)).is_file() and is_ffcap(p):
        out.append(p)
    return out


def capture_format(path: str | os.PathLike[str]) -> str:
    """'ffcap', 'cryptofeed', 'cryptofeed_v3' or 'tardis' (ValueError when unrecognised)."""
    p = Path(path)
    if p.is_file() and is_ffcap(p):
        return "ffcap"
    if p.suffix == ".jsonl" and p.is_file():
        with open(p, "rb") as f:
            head = f.read(64)
        if head.startswith(b'{"t":"header"') or b'"t":"header"' in head:
            return "cryptofeed_v3"
        return "tardis"
    name = p.name
    if p.with_name(f"{name}.0").is_file() or (name.endswith(".0") and p.is_file()):
        return "cryptofeed"
    if any(p.parent.glob(f"{name}.ws.*.0")):
        return "cryptofeed"
    raise ValueError(f"{path}: not a capture this version can read (ffcap, cryptofeed EX prefix, v3 or tardis jsonl)")


def read_capture(path: str | os.PathLike[str]) -> Iterator[Record]:
    """One record iterator for any supported capture (see the module docstring)."""
    fmt = capture_format(path)
    if fmt == "ffcap":
        return iter(FfcapReader(path))
    if fmt == "cryptofeed_v3":
        return read_v3(path)
    if fmt == "tardis":
        return read_tardis(path)
    return read_legacy(path)
