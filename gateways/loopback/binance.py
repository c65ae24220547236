"""Loopback profile of Binance (spot, USDⓈ-M and COIN-M futures): combined streams, REST depth snapshots."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from gateways.capture import CONNECT, Record
from gateways.loopback.base import ClientRequest, Profile


class BinanceProfile(Profile):
    """Binance spot/futures: combined streams, SUBSCRIBE messages, depth snapshots with lastUpdateId;
    over REST also the recent aggregate trades and a 24 h ticker, from what was released."""

    def __init__(self) -> None:
        super().__init__()
        self.trades: dict[str, collections.deque[dict[str, Any]]] = {}   # exchange symbol → released aggTrades
        self.volume: dict[str, Decimal] = {}                             # exchange symbol → their quantity
        self.system_status = 0   # what /sapi/v1/system/status says: 0 normal, 1 system maintenance

    def expected_streams(self, records: list[Record]) -> set[str]:
        streams: set[str] = set()
        for rec in records:
            if rec.kind == CONNECT and rec.url and "streams=" in rec.url:
                streams.update(rec.url.split("streams=", 1)[1].split("/"))
        return streams | super().expected_streams(records)

    def parse_client(self, message: str | bytes) -> ClientRequest:
        msg = orjson.loads(message)
        if not isinstance(msg, dict) or not isinstance(msg.get("params"), list) \
                or msg.get("method") not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            raise ValueError(f"not a SUBSCRIBE message: {message!r:.200}")
        op = "subscribe" if msg["method"] == "SUBSCRIBE" else "unsubscribe"
        return ClientRequest(op, frozenset(msg["params"]), (orjson.dumps({"result": None, "id": msg.get("id")}).decode(),))

    def stream_of(self, message: str | bytes) -> str | None:
        head = message[:120] if isinstance(message, str) else message[:120].decode("latin-1")
        start = head.find('"stream":"')
        if start < 0:
            return None
        start += 10
        return head[start:head.index('"', start)]

    def book_key(self, message: str | bytes, conn: str) -> str | None:
        stream = self.stream_of(message)
        if stream and "@depth" in stream:
            return stream.split("@", 1)[0].upper()
        return None

    def book_symbol(self, message: str | bytes) -> str | None:
        return self.book_key(message, "")

    def load_snapshot(self, url: str, body: str | bytes) -> None:
        query = dict(parse_qsl(urlsplit(url).query))
        xs = query.get("symbol")
        if not xs or xs in self.truth:
            return
        snap = orjson.loads(body)
        self.truth[xs] = {"bids": {p: q for p, q in snap["bids"]}, "asks": {p: q for p, q in snap["asks"]},
                          "seq": snap["lastUpdateId"], "extra": {k: v for k, v in snap.items()
                                                                 if k not in ("bids", "asks", "lastUpdateId")}}

    def apply_truth(self, message: str | bytes, conn: str = "") -> str | bytes:
        d = orjson.loads(message).get("data") or {}
        if d.get("e") == "aggTrade":
            trades = self.trades.setdefault(d["s"], collections.deque(maxlen=1000))
            trades.append({k: d[k] for k in ("a", "p", "q", "f", "l", "T", "m", "M") if k in d})
            self.volume[d["s"]] = self.volume.get(d["s"], Decimal(0)) + Decimal(d["q"])
        if d.get("e") != "depthUpdate":
            return message
        book = self.truth.get(d["s"])
        if book is None or d["u"] <= book["seq"]:
            return message
        for side, levels in (("bids", d["b"]), ("asks", d["a"])):
            lv = book[side]
            for p, q in levels:
                if float(q) == 0:
                    lv.pop(p, None)
                else:
                    lv[p] = q
        book["seq"] = d["u"]
        return message

    def rest(self, path: str, query: dict[str, str]) -> bytes | None:
        if path.endswith("/sapi/v1/system/status"):
            return orjson.dumps({"status": self.system_status,
                                 "msg": "system_maintenance" if self.system_status else "normal"})
        if path.endswith("/aggTrades"):
            # The REST page of recent aggregate trades: the released ones (the stream's fields, the
            # REST shape), oldest first, at most `limit`.
            trades = list(self.trades.get(query.get("symbol", ""), ()))
            return orjson.dumps(trades[-int(query.get("limit") or 500):])
        if path.endswith("/ticker/24hr") and query.get("symbol") in self.truth:
            xs = query["symbol"]
            bids, asks = self.truth_book(xs)
            recent: Sequence[dict[str, Any]] = self.trades.get(xs) or [{}]
            return orjson.dumps({"symbol": xs, "bidPrice": bids[0][0] if bids else None,
                                 "bidQty": bids[0][1] if bids else None, "askPrice": asks[0][0] if asks else None,
                                 "askQty": asks[0][1] if asks else None, "lastPrice": recent[-1].get("p"),
                                 "volume": str(self.volume.get(xs, 0)), "closeTime": recent[-1].get("T")})
        if not path.endswith("/depth"):
            return None
        book = self.truth.get(query.get("symbol", ""))
        if book is None:
            return None
        bids, asks = self.truth_book(query["symbol"])
        return orjson.dumps({"lastUpdateId": book["seq"], **book["extra"], "bids": bids, "asks": asks})

    def keepalive(self) -> str | bytes | None:
        return '{"result":null,"id":0}'

    def truth_book(self, key: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        book = self.truth[key]
        bids = sorted(book["bids"].items(), key=lambda kv: float(kv[0]), reverse=True)
        asks = sorted(book["asks"].items(), key=lambda kv: float(kv[0]))
        return bids, asks
