"""Capture formats: our .ffcap writer/reader (incl. crash recovery) and the shared-format readers."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import msgpack
import pytest
import zstandard

from gateways.capture import (
    CONNECT,
    HEADER,
    RECV,
    REST,
    SEND,
    CaptureWriter,
    FfcapReader,
    capture_format,
    normalize_cryptofeed_symbol,
    read_capture,
    seconds_to_ns,
)
from gateways.capture.ffcap import PREAMBLE


def _write(path: Path, blocks: int, per_block: int = 50) -> list[tuple]:
    written = []
    with CaptureWriter(path, exchange="BINANCE", channels={"trades": ["BTC-USDT"]}, flush_bytes=1 << 30,
                       flush_interval=1e9) as w:
        w.connect("c0", 1, "wss://x/stream")
        w.send("c0", 2, '{"method":"SUBSCRIBE"}')
        written += [("connect", "c0", 1, None, "wss://x/stream", None),
                    ("send", "c0", 2, '{"method":"SUBSCRIBE"}', None, None)]
        n = 3
        for _ in range(blocks):
            for _ in range(per_block):
                payload = f'{{"n":{n}}}' if n % 2 else gzip.compress(b"binary %d" % n)
                w.recv("c0", n, payload)
                written.append(("recv", "c0", n, payload, None, None))
                n += 1
            w.rest(n, "https://x/depth?symbol=A", '{"lastUpdateId":1}', status=200)
            written.append(("rest", "rest", n, '{"lastUpdateId":1}', "https://x/depth?symbol=A", 200))
            n += 1
            w.flush()
    return written


def test_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "a.ffcap"
    written = _write(path, blocks=3)
    assert capture_format(path) == "ffcap"
    recs = list(read_capture(path))
    assert recs[0].kind == HEADER and recs[0].data["exchange"] == "BINANCE"
    assert recs[0].data["channels"] == {"trades": ["BTC-USDT"]}
    assert [tuple(r) for r in recs[1:]] == written
    assert isinstance(recs[3].data, str) and isinstance(recs[4].data, bytes)


def test_truncated_file_recovers_complete_blocks(tmp_path: Path) -> None:
    path = tmp_path / "a.ffcap"
    written = _write(path, blocks=4)
    full = path.read_bytes()
    # Sizes of the complete file minus a torn last block: cut inside the last frame.
    reader = FfcapReader(path)
    assert len(list(reader)) == len(written) + 1 and not reader.truncated
    blocks = reader.blocks
    cut = path.with_name("cut.ffcap")
    for keep in (len(full) - 1, len(full) - 40):
        cut.write_bytes(full[:keep])
        reader = FfcapReader(cut)
        recs = list(reader)
        assert reader.truncated and reader.blocks == blocks - 1
        assert [tuple(r) for r in recs[1:]] == written[: len(recs) - 1]
        assert len(recs) - 1 == len(written) - 51   # exactly the last block (50 recv + 1 rest) is lost
    # Garbage after the last complete block (a torn write of the next one) is dropped too.
    cut.write_bytes(full + b"\x28\xb5\x2f\xfd garbage")
    reader = FfcapReader(cut)
    assert len(list(reader)) == len(written) + 1 and reader.truncated


def test_reopen_appends(tmp_path: Path) -> None:
    path = tmp_path / "a.ffcap"
    _write(path, blocks=1)
    with CaptureWriter(path, exchange="BINANCE") as w:
        w.recv("c1", 99, "later")
    recs = list(read_capture(path))
    assert [r.kind for r in recs].count(HEADER) == 2 and recs[-1].data == "later"


@pytest.mark.parametrize("tear", ["cut_block", "bad_checksum", "cut_header", "garbage", "magic_only"])
def test_reopen_after_a_crash_cuts_the_torn_tail(tmp_path: Path, tear: str) -> None:
    """A writer crashed in the middle of a block; the next one appends after the last complete
    block, so both sessions read back whole (only the torn block is lost)."""
    path = tmp_path / "a.ffcap"
    written = _write(path, blocks=3)
    good = path.read_bytes()
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(b"".join(
        msgpack.packb(("recv", "c0", i, os.urandom(64), None)) for i in range(100)))
    torn = {"cut_block": frame[:-7],                               # a real block, written in part
            "bad_checksum": frame[:-1] + bytes([frame[-1] ^ 1]),   # whole-looking, but corrupt
            "cut_header": b"\x28\xb5\x2f\xfd\x64",                # a frame header cut short
            "garbage": b"\x28\xb5\x2f\xfd garbage that is no zstd block",
            "magic_only": b"\x28"}[tear]
    path.write_bytes(good + torn)
    reader = FfcapReader(path)
    list(reader)
    assert reader.truncated
    with CaptureWriter(path, exchange="BINANCE", flush_bytes=1 << 30, flush_interval=1e9) as w:
        assert w.recovered_bytes == len(torn)
        w.recv("c1", 1000, "after the crash")
        w.flush()
        w.rest(1001, "https://x/depth?symbol=B", '{"code":-1003}', status=429)
    reader = FfcapReader(path)
    recs = list(reader)
    assert not reader.truncated
    assert [tuple(r) for r in recs[1:len(written) + 1]] == written
    second = recs[len(written) + 1:]
    assert second[0].kind == HEADER and second[0].data["version"] == 2
    assert [tuple(r) for r in second[1:]] == [("recv", "c1", 1000, "after the crash", None, None),
                                              ("rest", "rest", 1001, '{"code":-1003}', "https://x/depth?symbol=B",
                                               429)]


def test_reopen_a_file_torn_inside_its_preamble(tmp_path: Path) -> None:
    path = tmp_path / "a.ffcap"
    path.write_bytes(PREAMBLE[:5])
    with CaptureWriter(path, exchange="BINANCE") as w:
        w.recv("c", 1, "x")
    recs = list(read_capture(path))
    assert [r.kind for r in recs] == [HEADER, RECV]


def test_refuses_to_append_to_another_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"my notes")
    with pytest.raises(ValueError, match="not a feedfabric capture"):
        CaptureWriter(path, exchange="BINANCE")
    assert path.read_bytes() == b"my notes"


def test_version_1_rest_records_without_status(tmp_path: Path) -> None:
    """Captures written before the status existed: five-element records, read with status None."""
    path = tmp_path / "old.ffcap"
    body = b"".join(msgpack.packb(r, use_bin_type=True) for r in (
        ("header", "", 1, {"format": "feedfabric-capture", "version": 1, "exchange": "BINANCE", "channels": {}},
         None),
        ("rest", "rest", 2, "{}", "https://x/depth?symbol=A")))
    path.write_bytes(PREAMBLE + zstandard.ZstdCompressor().compress(body))
    recs = list(read_capture(path))
    assert recs[1].kind == REST and recs[1].status is None and recs[1].url == "https://x/depth?symbol=A"


def test_not_a_capture(tmp_path: Path) -> None:
    bad = tmp_path / "x.ffcap"
    bad.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a capture"):
        read_capture(bad)
    with pytest.raises(ValueError, match="bad magic"):
        list(FfcapReader(bad))


def test_helpers() -> None:
    assert seconds_to_ns("1633998512.0633569") == 1633998512063356900
    assert seconds_to_ns("12") == 12_000_000_000
    assert normalize_cryptofeed_symbol("LINK-USD-21Z31") == "LINK-USD-20211231"
    assert normalize_cryptofeed_symbol("BTC-USDT-PERP") == "BTC-USDT-PERP"
    assert normalize_cryptofeed_symbol("BTC-USD-21U24") == "BTC-USD-20210924"


def test_cryptofeed_legacy(shared_data: Path) -> None:
    recs = list(read_capture(shared_data / "cryptofeed" / "BINANCE_DELIVERY"))
    header = recs[0]
    assert header.kind == HEADER and header.data["format"] == "cryptofeed"
    assert "LINK-USD-20211231" in header.data["channels"]["l2_book"]
    kinds = [r.kind for r in recs]
    assert kinds.count(CONNECT) == 1 and kinds.count(REST) == 11
    assert all(recs[i].ts <= recs[i + 1].ts for i in range(1, len(recs) - 1))
    # Binary frames (gzip for HUOBI) come back as the original bytes.
    huobi = [r for r in read_capture(shared_data / "cryptofeed" / "HUOBI") if r.kind == RECV]
    assert huobi and all(isinstance(r.data, bytes) for r in huobi)
    assert gzip.decompress(huobi[0].data).startswith(b"{")
    sends = [r for r in read_capture(shared_data / "cryptofeed" / "HUOBI") if r.kind == SEND]
    assert sends and sends[0].url.startswith("wss://")


def test_cryptofeed_v3_and_tardis(shared_data: Path) -> None:
    recs = list(read_capture(shared_data / "cryptofeed_v3" / "COINBASE.jsonl"))
    assert recs[0].data["format"] == "cryptofeed_v3" and recs[0].data["exchange"] == "COINBASE"
    assert {r.kind for r in recs} == {HEADER, REST, CONNECT, SEND, RECV}
    tardis = list(read_capture(shared_data / "tardis_messages" / "binance-futures.jsonl"))
    assert tardis[0].data["exchange"] == "BINANCE_FUTURES"
    lines = (shared_data / "tardis_messages" / "binance-futures.jsonl").read_text().splitlines()
    assert [r.data for r in tardis[1:]] == [x for x in lines if x]


def test_ffcap_of_a_shared_capture_replays_identically(shared_data: Path, tmp_path: Path) -> None:
    from gateways.replay import replay_capture
    src = shared_data / "cryptofeed" / "BINANCE"
    path = tmp_path / "b.ffcap"
    recs = list(read_capture(src))
    with CaptureWriter(path, exchange="BINANCE", channels=recs[0].data["channels"], flush_bytes=4096) as w:
        for r in recs[1:]:
            w.write(r)
    a = replay_capture(src, collect=True)
    b = replay_capture(path, collect=True)
    assert [e.wire_body() for e in a.events] == [e.wire_body() for e in b.events]
    assert a.event_count > 100


def test_items_that_are_not_records_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "odd.ffcap"
    body = b"".join(msgpack.packb(r, use_bin_type=True) for r in (
        ("header", "", 1, {"format": "feedfabric-capture", "version": 2, "exchange": "BINANCE", "channels": {}},
         None),
        42, ("recv", "c"), ("recv", "c", 2, "kept", None)))
    path.write_bytes(PREAMBLE + zstandard.ZstdCompressor().compress(body))
    reader = FfcapReader(path)
    assert [r.data for r in reader][1:] == ["kept"] and reader.bad_records == 2
