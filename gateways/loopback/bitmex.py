"""Loopback profile of BitMEX: ``orderBookL2`` by level id (partial, insert, update, delete)."""

from __future__ import annotations

import orjson

from cryptofeed_types import OrderBook, dec_str
from gateways.loopback.base import ClientRequest, Profile, sorted_levels, text_ping_or_op_args


class BitMEXProfile(Profile):
    """BitMEX realtime: ``{"op":"subscribe","args":["orderBookL2:XBTUSD",...]}`` answered per
    argument with ``{"success":true,"subscribe":...}``; ``orderBookL2`` rows by id
    (``partial`` then ``insert``/``update``/``delete``). There is no sequence number: the
    client's only check is that every updated or deleted id exists, so
    :meth:`Loopback.break_sequence` skips the next ``insert`` of the symbol, which the next
    update or delete of one of its ids reveals. A resubscribe gets a ``partial`` of the
    truth's rows. ``ping`` → ``pong``. Truth keys are BitMEX symbols."""

    def parse_client(self, message: str | bytes) -> ClientRequest:
        msg = text_ping_or_op_args(message, "a BitMEX")
        if msg is None:
            return ClientRequest("ping", replies=("pong",))
        op = msg["op"]
        replies = tuple(orjson.dumps({"success": True, op: a, "request": msg}).decode() for a in msg["args"])
        return ClientRequest(op, frozenset(msg["args"]), replies)

    @staticmethod
    def _table(message: str | bytes) -> str | None:
        if not isinstance(message, str) or not message.startswith('{"table":"'):
            return None
        return message[10:message.index('"', 10)]

    def stream_of(self, message: str | bytes) -> str | None:
        table = self._table(message)
        if table is None:
            return None
        msg = orjson.loads(message)
        data = msg.get("data") or ()
        symbol = data[0].get("symbol") if data else (msg.get("filter") or {}).get("symbol")
        return f"{table}:{symbol}" if symbol else None

    def book_key(self, message: str | bytes, conn: str) -> str | None:
        if self._table(message) != "orderBookL2":
            return None
        stream = self.stream_of(message)
        return stream.partition(":")[2] if stream else None

    def detectable(self, message: str | bytes, conn: str) -> bool:
        return '"action":"insert"' in message[:60] if isinstance(message, str) else False

    def reveals(self, key: str, skipped: str | bytes, message: str | bytes, conn: str) -> bool:
        if self.book_key(message, conn) != key or not isinstance(message, str) \
                or '"action":"insert"' in message[:60]:
            return False
        ids = {(r["id"], r["side"]) for r in orjson.loads(skipped)["data"]}
        return any((r["id"], r["side"]) in ids for r in orjson.loads(message)["data"])

    def apply_truth(self, message: str | bytes, conn: str) -> str | bytes:
        if self._table(message) != "orderBookL2":
            return message
        msg = orjson.loads(message)
        action = msg.get("action")
        if action == "partial":
            symbols = {r["symbol"] for r in msg["data"]}
            if (filtered := (msg.get("filter") or {}).get("symbol")) is not None:
                symbols.add(filtered)   # a partial of an empty book names its symbol in the filter only
            for xs in symbols:
                self.truth[xs] = {}
        for r in msg["data"]:
            rows = self.truth.get(r["symbol"])
            if rows is None:
                continue
            k = (r["id"], r["side"])
            if action in ("partial", "insert"):
                rows[k] = dict(r)
            elif action == "update" and k in rows:
                rows[k].update(r)
            elif action == "delete":
                rows.pop(k, None)
        return message

    def truth_book(self, key: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        book = OrderBook()
        rows = self.truth[key].values()
        book.apply_snapshot([(dec_str(r["price"]), str(r["size"])) for r in rows if r["side"] == "Buy"],
                            [(dec_str(r["price"]), str(r["size"])) for r in rows if r["side"] != "Buy"])
        return sorted_levels(book)

    def snapshot_frames(self, stream: str, path: str) -> list[str | bytes]:
        table, _, xs = stream.partition(":")
        rows = self.truth.get(xs)
        if table != "orderBookL2" or rows is None:
            return []
        return [orjson.dumps({"table": "orderBookL2", "action": "partial", "keys": ["symbol", "id", "side"],
                              "types": {}, "filter": {"symbol": xs},
                              "data": sorted(rows.values(), key=lambda r: r["price"], reverse=True)}).decode()]

    def keepalive(self) -> str | bytes | None:
        return "pong"
