"""Generates tests/vectors/wire_v1.json, the wire protocol v1 test vectors (docs/wire.md).

Deterministic: fixed timestamps, sequence numbers and values, so running it again
gives the same file byte for byte (tests/vectors/test_wire_vectors.py checks that too).

    python tests/vectors/make_vectors.py            # rewrite wire_v1.json
    python tests/vectors/make_vectors.py --check    # exit 1 if wire_v1.json is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgpack
import orjson

from bus.codec import encode
from cryptofeed_types import EVENT_CLASSES, Event, Gap, Heartbeat, L2Delta, Status, Trade
from feedfabric.testing.types import RECEIPT_TS, sample_event, sample_events

OUT = Path(__file__).with_name("wire_v1.json")
GATEWAY = "binance-1"
EPOCH = 1_700_000_000_000_000_000
PUBLISH_TS = 1_700_000_000_125_000_000


def event_json(ev: Event) -> dict:
    """The decoded meaning of a body: kind + every field, decimals as their exact strings."""
    body = ev.wire_body()
    for name, type_ in type(ev).TYPES.items():
        if type_ in ("levels", "orders") and body[name] is not None:
            body[name] = [list(row) for row in body[name]]
    return body


def valid(name: str, ev: Event, seq: int, *, gateway: str = GATEWAY, epoch: int = EPOCH) -> dict:
    topic, header, body = encode(ev, gateway, epoch, seq, publish_ts=PUBLISH_TS)
    return {
        "name": name,
        "frames_hex": [topic.hex(), header.hex(), body.hex()],
        "topic": topic.decode("ascii"),
        "header": {"version": 1, "gateway": gateway, "epoch": epoch, "seq": seq, "timestamp": ev.timestamp,
                   "receipt_timestamp": ev.receipt_timestamp, "publish_timestamp": PUBLISH_TS},
        "event": event_json(ev),
    }


def invalid(name: str, frames: list[bytes], error: str) -> dict:
    return {"name": name, "frames_hex": [f.hex() for f in frames], "invalid": True, "error": error}


def _header(*items: object) -> bytes:
    return msgpack.packb(list(items))


def vectors() -> list[dict]:
    out: list[dict] = []
    seq = 1
    for full in (True, False):
        for ev in sample_events(full=full):
            out.append(valid(f"{ev.KIND}/{'full' if full else 'minimal'}", ev, seq))
            seq += 1
    ts = 1_700_000_000_123_456_789
    edge = [
        ("trade/escaped-topic", Trade("EX.CHANGE", "BTC-USD-20261225-0.5-C", "sell", "-0", "0.5",
                                      id="id with spaces", timestamp=ts, receipt_timestamp=RECEIPT_TS)),
        ("trade/exact-decimals", Trade("BINANCE", "SHIB-USDT", "buy", "123456789012345678901234567890.000000000",
                                       "0.000000000000000000000001230", timestamp=None, receipt_timestamp=RECEIPT_TS)),
        ("book_delta/empty", L2Delta("KRAKEN", "BTC-USD", bids=[], asks=[], sequence=0, receipt_timestamp=RECEIPT_TS)),
        ("book_delta/deletes", L2Delta("KRAKEN", "BTC-USD", bids=[("30000.1", "0"), ("29999.9", "0.00000000")],
                                       asks=[("30000.2", "1.25")], checksum=2583817756,
                                       timestamp=ts, receipt_timestamp=RECEIPT_TS)),
        ("gap/whole-feed", Gap("OKX", "book", "reconnected", symbol=None, receipt_timestamp=RECEIPT_TS)),
        ("status/unicode-reason", Status("BITSTAMP", "trades", "disconnected", reason="d\u00e9connect\u00e9 \u2713",
                                         receipt_timestamp=RECEIPT_TS)),
        ("heartbeat/nested-counters", Heartbeat("gw.with.dots", {"messages": 2**64 - 1, "lag_ms": 0.5, "neg": -3,
                                                                  "per_feed": {"book": {"msgs": 7}}},
                                                {}, receipt_timestamp=RECEIPT_TS)),
    ]
    for name, ev in edge:
        out.append(valid(name, ev, seq))
        seq += 1
    out.append(valid("trade/max-integers", Trade("X", "Y", "buy", "1", "1", timestamp=-(2**63),
                                                  receipt_timestamp=2**63 - 1),
                     2**64 - 1, epoch=2**64 - 1))

    good = encode(sample_events()[0], GATEWAY, EPOCH, 1, publish_ts=PUBLISH_TS)
    t, h, b = good
    body = msgpack.unpackb(b)
    hdr = [1, GATEWAY, EPOCH, 1, None, RECEIPT_TS, PUBLISH_TS]

    def body_with(**changes: object) -> bytes:
        return msgpack.packb({**body, **changes})

    def body_without(key: str) -> bytes:
        return msgpack.packb({k: v for k, v in body.items() if k != key})

    out += [
        invalid("frames/two", [t, h], "expected 3 frames"),
        invalid("frames/four", [t, h, b, b""], "expected 3 frames"),
        invalid("topic/no-terminator", [t[:-1], h, b], "terminator"),
        invalid("topic/not-ascii", [b"trades.BINANCE.\xc3\xa9.", h, b], "ASCII"),
        invalid("topic/body-mismatch", [b"trades.BINANCE.ETH-USDT.", h, b], "does not match"),
        invalid("topic/channel-mismatch", [b"book.BINANCE.BTC-USDT.", h, b], "does not match"),
        invalid("header/not-msgpack", [t, b"\xc1", b], "not valid msgpack"),
        invalid("header/truncated", [t, h[:-3], b], "not valid msgpack"),
        invalid("header/not-an-array", [t, msgpack.packb({"version": 1}), b], "array of 7"),
        invalid("header/six-items", [t, _header(*hdr[:6]), b], "array of 7"),
        invalid("header/version-2", [t, _header(2, *hdr[1:]), b], "unsupported wire version"),
        invalid("header/gateway-not-str", [t, _header(1, 5, *hdr[2:]), b], "gateway"),
        invalid("header/float-timestamp", [t, _header(*hdr[:4], 1.5, *hdr[5:]), b], "integer nanoseconds"),
        invalid("header/nil-receipt-timestamp", [t, _header(*hdr[:5], None, PUBLISH_TS), b], "integer nanoseconds"),
        invalid("body/truncated", [t, h, b[:-1]], "not valid msgpack"),
        invalid("body/not-a-map", [t, h, msgpack.packb([1, 2])], "expected a msgpack map"),
        invalid("body/unknown-kind", [b"quotes.BINANCE.BTC-USDT.", h, body_with(kind="quote")], "unknown event kind"),
        invalid("body/missing-kind", [t, h, body_without("kind")], "unknown event kind"),
        invalid("body/missing-required-field", [t, h, body_without("price")], "invalid trade"),
        invalid("body/decimal-as-float", [t, h, body_with(price=30238.8)], "invalid trade"),
        invalid("body/decimal-with-exponent", [t, h, body_with(amount="1.2e-3")], "invalid trade"),
        invalid("body/decimal-nan", [t, h, body_with(amount="NaN")], "invalid trade"),
        invalid("body/decimal-leading-dot", [t, h, body_with(amount=".5")], "invalid trade"),
        invalid("body/str-field-as-bin", [t, h, body_with(side=b"buy")], "invalid trade"),
        invalid("body/int-field-as-str", [b"book.BINANCE.BTC-USDT.", h,
                                          msgpack.packb(event_json(sample_event("book_delta")) | {"sequence": "12"})],
                "invalid book_delta"),
        invalid("body/level-of-three", [b"book.BINANCE.BTC-USDT.", h,
                                        msgpack.packb(event_json(sample_event("book_delta")) | {"bids": [["1", "2", "3"]]})],
                "invalid book_delta"),
    ]
    kinds = {v["event"]["kind"] for v in out if not v.get("invalid")}
    assert kinds == set(EVENT_CLASSES), "every kind must have a vector"
    return out


def render() -> bytes:
    return orjson.dumps(vectors(), option=orjson.OPT_INDENT_2) + b"\n"


def main() -> None:
    data = render()
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_bytes() == data else 1)
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(orjson.loads(data))} vectors)")


if __name__ == "__main__":
    main()
