"""Loopback profile of Bybit v5 (spot, linear, inverse): op/args subscriptions, ``orderbook`` with ``u``/``seq``."""

from __future__ import annotations

import time
from typing import Any

import orjson

from cryptofeed_types import OrderBook
from gateways.loopback.base import ClientRequest, Profile, sorted_levels


class BybitProfile(Profile):
    """Bybit v5: one path per category (``/v5/public/spot``, ``/linear``...), ``{"op":"subscribe",
    "args":[topics]}`` answered by ``{"success":true,"op":"subscribe"}``; ``orderbook.N.SYM``
    snapshot + deltas whose ``u`` counts up by one. Truth keys are ``category/SYMBOL``; a
    resubscribe is answered with a snapshot of the truth carrying the last ``u``."""

    def __init__(self) -> None:
        super().__init__()
        self._u: dict[str, int] = {}
        self.system_rows: list[dict[str, Any]] = []   # the maintenance events /v5/system/status lists

    def rest(self, path: str, query: dict[str, str]) -> bytes | None:
        if path.endswith("/v5/system/status"):
            return orjson.dumps({"retCode": 0, "retMsg": "OK", "result": {"list": self.system_rows}})
        return None

    def parse_client(self, message: str | bytes) -> ClientRequest:
        msg = orjson.loads(message)
        if not isinstance(msg, dict):
            raise ValueError(f"not a Bybit request: {message!r:.200}")
        op = msg.get("op")
        if op == "ping":
            return ClientRequest("ping", replies=(orjson.dumps({"success": True, "ret_msg": "pong",
                                                                "conn_id": "loopback", "op": "ping"}).decode(),))
        if op not in ("subscribe", "unsubscribe") or not isinstance(msg.get("args"), list):
            raise ValueError(f"not a Bybit subscribe message: {message!r:.200}")
        reply = orjson.dumps({"success": True, "ret_msg": "", "conn_id": "loopback", "req_id": msg.get("req_id", ""),
                              "op": op}).decode()
        return ClientRequest(op, frozenset(msg["args"]), (reply,))

    def stream_of(self, message: str | bytes) -> str | None:
        if not isinstance(message, str) or not message.startswith('{"topic":"'):
            return None
        return message[10:message.index('"', 10)]

    def _key(self, conn_or_path: str, symbol: str) -> str:
        path = self.conn_path.get(conn_or_path, conn_or_path)
        return f"{path.rstrip('/').rsplit('/', 1)[-1]}/{symbol}"

    def truth_key(self, adapter: Any, symbol: str) -> str:
        # A symbol may be listed in two categories (BTCUSDT spot and linear): category/SYMBOL.
        return f"{adapter.category(symbol)}/{adapter.exchange_symbol(symbol)}"

    def book_key(self, message: str | bytes, conn: str) -> str | None:
        stream = self.stream_of(message)
        if stream and stream.startswith("orderbook."):
            return self._key(conn, stream.rsplit(".", 1)[-1])
        return None

    def apply_truth(self, message: str | bytes, conn: str) -> str | bytes:
        key = self.book_key(message, conn)
        if key is None:
            return message
        msg = orjson.loads(message)
        d = msg["data"]
        if msg.get("type") == "snapshot" or d.get("u") == 1:
            book = self.truth[key] = OrderBook()
            book.apply_snapshot(d["b"], d["a"])
        elif key in self.truth:
            self.truth[key].apply_delta(d["b"], d["a"])
        self._u[key] = d["u"]
        return message

    def snapshot_frames(self, stream: str, path: str) -> list[str | bytes]:
        if not stream.startswith("orderbook."):
            return []
        symbol = stream.rsplit(".", 1)[-1]
        key = self._key(path, symbol)
        book = self.truth.get(key)
        if book is None:
            return []
        bids, asks = sorted_levels(book)
        ms = int(time.time() * 1000)
        return [orjson.dumps({"topic": stream, "type": "snapshot", "ts": ms,
                              "data": {"s": symbol, "b": bids, "a": asks, "u": self._u[key], "seq": self._u[key]},
                              "cts": ms}).decode()]

    def keepalive(self) -> str | bytes | None:
        return '{"success":true,"ret_msg":"pong","conn_id":"loopback","op":"ping"}'
