"""Loopback profile of Deribit: JSON-RPC subscriptions, ``book`` with ``change_id``/``prev_change_id``."""

from __future__ import annotations

import time
from typing import Any

import orjson

from cryptofeed_types import OrderBook, dec_str
from gateways.loopback.base import ClientRequest, Profile, sorted_levels


class DeribitProfile(Profile):
    """Deribit JSON-RPC: ``public/subscribe`` / ``public/unsubscribe`` with ``channels``,
    answered with the result list; other RPCs (``public/set_heartbeat``, ``public/test``)
    get an empty result. ``book.<instrument>.<interval>`` pushes carry ``change_id`` and
    ``prev_change_id``: a skipped change breaks that chain. A resubscribe gets a snapshot of
    the truth carrying the last change_id; keepalive: ``heartbeat`` notifications."""

    def system_stream(self, stream: str) -> bool:
        return stream.startswith("platform_state")   # index locks, public methods allowed

    def __init__(self) -> None:
        super().__init__()
        self._change: dict[str, int] = {}
        self._asked: dict[str, str] = {}   # book.BTC-PERPETUAL → book.BTC-PERPETUAL.100ms, as subscribed

    def parse_client(self, message: str | bytes) -> ClientRequest:
        msg = orjson.loads(message)
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" or not isinstance(msg.get("method"), str):
            raise ValueError(f"not a Deribit JSON-RPC request: {message!r:.200}")
        method = msg["method"]
        params = msg.get("params") or {}
        if method in ("public/subscribe", "public/unsubscribe"):
            channels = params.get("channels")
            if not isinstance(channels, list):
                raise ValueError(f"Deribit {method} without channels: {message!r:.200}")
            reply = orjson.dumps({"jsonrpc": "2.0", "id": msg.get("id"), "result": channels}).decode()
            if method == "public/subscribe":
                self._asked.update((self._norm(c), c) for c in channels if isinstance(c, str))
            return ClientRequest(method.partition("/")[2], frozenset(map(self._norm, channels)), (reply,))
        return ClientRequest("ping", replies=(orjson.dumps({"jsonrpc": "2.0", "id": msg.get("id"),
                                                            "result": "ok"}).decode(),))

    @staticmethod
    def _norm(channel: str) -> str:
        """``book.BTC-PERPETUAL.raw`` / ``.100ms`` → ``book.BTC-PERPETUAL``: the capture's raw
        changes serve either interval (an aggregated 100ms feed has the same change-id chain),
        pushed under the name the client subscribed (:meth:`outgoing`)."""
        kind, _, rest = channel.partition(".")
        if kind in ("book", "ticker", "trades", "quote") and rest.count(".") >= 1:
            return f"{kind}.{rest.rsplit('.', 1)[0]}"
        return channel

    def stream_of(self, message: str | bytes) -> str | None:
        if not isinstance(message, str) or '"method":"subscription"' not in message[:60]:
            return None
        return self._norm(orjson.loads(message)["params"]["channel"])

    def outgoing(self, frame: str | bytes, client: Any) -> str | bytes:
        # Pushed under the channel name the client subscribed (book.X.100ms), as Deribit does,
        # whatever interval the capture recorded (book.X.raw).
        if not isinstance(frame, str) or '"method":"subscription"' not in frame[:60]:
            return frame
        start = frame.find('"channel":"')
        if start < 0:
            return frame
        start += 11
        channel = frame[start:frame.index('"', start)]
        asked = self._asked.get(self._norm(channel))
        return frame if asked is None or asked == channel else f"{frame[:start]}{asked}{frame[start + len(channel):]}"

    def book_key(self, message: str | bytes, conn: str) -> str | None:
        stream = self.stream_of(message)
        return stream.split(".")[1] if stream and stream.startswith("book.") else None

    def apply_truth(self, message: str | bytes, conn: str) -> str | bytes:
        key = self.book_key(message, conn)
        if key is None:
            return message
        d = orjson.loads(message)["params"]["data"]
        bids = [(dec_str(p), "0" if a == "delete" else dec_str(q)) for a, p, q in d["bids"]]
        asks = [(dec_str(p), "0" if a == "delete" else dec_str(q)) for a, p, q in d["asks"]]
        if d.get("type") == "snapshot" or (d.get("type") is None and "prev_change_id" not in d):
            book = self.truth[key] = OrderBook()
            book.apply_snapshot([lv for lv in bids if lv[1] != "0"], [lv for lv in asks if lv[1] != "0"])
        elif key in self.truth:
            self.truth[key].apply_delta(bids, asks)
        self._change[key] = d["change_id"]
        return message

    def snapshot_frames(self, stream: str, path: str) -> list[str | bytes]:
        key = stream.split(".")[1] if stream.startswith("book.") else ""
        book = self.truth.get(key)
        if book is None:
            return []
        bids, asks = sorted_levels(book)
        data = {"type": "snapshot", "timestamp": int(time.time() * 1000), "instrument_name": key,
                "change_id": self._change[key], "bids": [["new", float(p), float(q)] for p, q in bids],
                "asks": [["new", float(p), float(q)] for p, q in asks]}
        return [orjson.dumps({"jsonrpc": "2.0", "method": "subscription",
                              "params": {"channel": f"{stream}.raw", "data": data}}).decode()]

    def rest_fallback(self, path: str, query: dict[str, str]) -> bytes | None:
        if path.endswith("/public/get_instruments"):   # a currency the capture didn't list: none
            return b'{"jsonrpc":"2.0","result":[]}'
        return None

    def keepalive(self) -> str | bytes | None:
        return '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}'
