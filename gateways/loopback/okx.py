"""Loopback profile of OKX v5: op/args subscriptions, ``books`` with a CRC32 checksum."""

from __future__ import annotations

import time
from typing import Any

import orjson

from cryptofeed_types import OrderBook
from gateways.loopback.base import ClientRequest, Profile, sorted_levels, text_ping_or_op_args


class OKXProfile(Profile):
    """OKX v5: ``{"op":"subscribe","args":[{channel, instId}]}``, answered per argument with
    ``{"event":"subscribe","arg":...}``; ``books`` pushes with a CRC32 checksum of 25 levels.

    Every book push is stamped with ``seqId``/``prevSeqId`` as today's OKX sends them (older
    captures lack them; with ``stamp_seq=False`` they pass unchanged and only the checksum
    breaks on a skipped update). A resubscribe is answered with a fresh ``snapshot`` push
    of the truth (checksum and seqId included). ``ping`` → ``pong``.
    """

    def system_stream(self, stream: str) -> bool:
        return stream == "status"   # maintenance events, no instrument

    def __init__(self, stamp_seq: bool = True) -> None:
        super().__init__()
        self.stamp_seq = stamp_seq
        self._seq: dict[str, int] = {}

    @staticmethod
    def _stream(arg: dict[str, Any]) -> str:
        key = arg.get('instId') or arg.get('instType') or arg.get('instFamily')
        return f"{arg.get('channel')}:{key}" if key else str(arg.get("channel"))

    def parse_client(self, message: str | bytes) -> ClientRequest:
        msg = text_ping_or_op_args(message, "an OKX")
        if msg is None:
            return ClientRequest("ping", replies=("pong",))
        op = msg["op"]
        replies = tuple(orjson.dumps({"event": op, "arg": a, "connId": "loopback"}).decode() for a in msg["args"])
        return ClientRequest(op, frozenset(self._stream(a) for a in msg["args"]), replies)

    def stream_of(self, message: str | bytes) -> str | None:
        if not isinstance(message, str) or not message.startswith('{"arg"'):
            return None
        return self._stream(orjson.loads(message)["arg"])

    def book_key(self, message: str | bytes, conn: str) -> str | None:
        if isinstance(message, str) and message.startswith('{"arg":{"channel":"books'):
            return orjson.loads(message)["arg"]["instId"]
        return None

    def apply_truth(self, message: str | bytes, conn: str) -> str | bytes:
        key = self.book_key(message, conn)
        if key is None:
            return message
        msg = orjson.loads(message)
        action = msg.get("action")
        for d in msg["data"]:
            bids = [lvl[:2] for lvl in d["bids"]]
            asks = [lvl[:2] for lvl in d["asks"]]
            if action == "snapshot":
                book = self.truth[key] = OrderBook()
                book.apply_snapshot(bids, asks)
            elif key in self.truth:
                self.truth[key].apply_delta(bids, asks)
            if self.stamp_seq and "seqId" not in d:
                prev = -1 if action == "snapshot" else self._seq.get(key, 0)
                seq = self._seq[key] = self._seq.get(key, 0) + 1 + (len(bids) + len(asks)) % 3
                d["prevSeqId"], d["seqId"] = prev, seq
            elif "seqId" in d:
                self._seq[key] = d["seqId"]
        return orjson.dumps(msg).decode() if self.stamp_seq else message

    def snapshot_frames(self, stream: str, path: str) -> list[str | bytes]:
        channel, _, inst = stream.partition(":")
        book = self.truth.get(inst)
        if not channel.startswith("books") or book is None:
            return []
        bids, asks = sorted_levels(book)
        d: dict[str, Any] = {"asks": [[p, q, "0", "1"] for p, q in asks], "bids": [[p, q, "0", "1"] for p, q in bids],
                             "ts": str(int(time.time() * 1000)), "checksum": book.checksum_okx()}
        if self.stamp_seq or inst in self._seq:
            d["prevSeqId"], d["seqId"] = -1, self._seq.get(inst, 0)
        return [orjson.dumps({"arg": {"channel": channel, "instId": inst}, "action": "snapshot",
                              "data": [d]}).decode()]

    def keepalive(self) -> str | bytes | None:
        return "pong"
