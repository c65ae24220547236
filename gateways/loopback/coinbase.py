"""Loopback profile of Coinbase Advanced Trade: per-connection ``sequence_num``, ``level2`` snapshots, REST candles."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from cryptofeed_types import OrderBook
from gateways.exchanges.coinbase import REST_CANDLES as CB_REST_CANDLES
from gateways.loopback.base import ClientRequest, FlatCandles, Profile, iso_now, sorted_levels

_SEQ_NUM = re.compile(r'"sequence_num":\d+')
_CB_CHANNEL = {"l2_data": "level2"}   # message channel → subscribe channel (others: the same name)
_CB_GRANULARITY = {granularity: length // 1_000_000_000 for granularity, length in CB_REST_CANDLES.values()}

class CoinbaseProfile(FlatCandles, Profile):
    """Coinbase Advanced Trade: ``{"type":"subscribe","product_ids":[...],"channel":C}``
    answered by a ``subscriptions`` message; every message carries the envelope's
    ``sequence_num``, counted per *connection*: the loopback renumbers every frame it sends
    per connection (a capture connection may be split over several of the gateway's), and a
    skipped update leaves a hole there. A resubscribe of ``level2`` is answered with a fresh
    ``l2_data`` snapshot of the truth; keepalive: ``heartbeats`` messages.

    The public REST candles (``/api/v3/brokerage/market/products/<id>/candles?start=&end=&granularity=``)
    answer with :class:`FlatCandles` bars from ``start`` to ``end`` or now, whichever is first (the
    last one forming), newest first, at most :attr:`candles_page`."""

    candles_page = 350
    _candles = re.compile(r"/api/v3/brokerage/market/products/([^/]+)/candles$")

    def system_stream(self, stream: str) -> bool:
        return stream.startswith("status:")   # the products' trading status, per product

    def parse_client(self, message: str | bytes) -> ClientRequest:
        msg = orjson.loads(message)
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe") \
                or not isinstance(msg.get("product_ids"), list) or not isinstance(msg.get("channel"), str):
            raise ValueError(f"not a Coinbase subscribe message: {message!r:.200}")
        channel = msg["channel"]
        reply = orjson.dumps({"channel": "subscriptions", "client_id": "", "timestamp": iso_now(), "sequence_num": 0,
                              "events": [{"subscriptions": {channel: msg["product_ids"]}}]}).decode()
        if channel == "heartbeats":   # a keepalive of the connection, not market data
            return ClientRequest("ping", replies=(reply,))
        return ClientRequest(msg["type"], frozenset(f"{channel}:{p}" for p in msg["product_ids"]), (reply,))

    def stream_of(self, message: str | bytes) -> str | None:
        if not isinstance(message, str) or not message.startswith('{"channel":"'):
            return None
        channel = message[12:message.index('"', 12)]
        if channel in ("subscriptions", "heartbeats"):
            return None
        product = self._product(orjson.loads(message))
        return f"{_CB_CHANNEL.get(channel, channel)}:{product}" if product else None

    @staticmethod
    def _product(msg: dict[str, Any]) -> str | None:
        for e in msg.get("events") or ():
            if "product_id" in e:
                return e["product_id"]
            for k in ("trades", "tickers", "candles"):
                for x in e.get(k) or ():
                    return x.get("product_id")
        return None

    def book_key(self, message: str | bytes, conn: str) -> str | None:
        if isinstance(message, str) and message.startswith('{"channel":"l2_data"'):
            return self._product(orjson.loads(message))
        return None

    def apply_truth(self, message: str | bytes, conn: str) -> str | bytes:
        if isinstance(message, str) and message.startswith('{"channel":"market_trades"'):
            for e in orjson.loads(message)["events"]:
                for tr in e.get("trades") or ():
                    self._last_price[tr["product_id"]] = tr["price"]
            return message
        if not (isinstance(message, str) and message.startswith('{"channel":"l2_data"')):
            return message
        for e in orjson.loads(message)["events"]:
            bids = [(u["price_level"], u["new_quantity"]) for u in e["updates"] if u["side"] == "bid"]
            asks = [(u["price_level"], u["new_quantity"]) for u in e["updates"] if u["side"] != "bid"]
            pid = e["product_id"]
            if e.get("type") == "snapshot":
                book = self.truth[pid] = OrderBook()
                book.apply_snapshot(bids, asks)
            elif pid in self.truth:
                self.truth[pid].apply_delta(bids, asks)
        return message

    def outgoing(self, frame: str | bytes, client: Any) -> str | bytes:
        if not isinstance(frame, str) or '"sequence_num":' not in frame[:120]:
            return frame
        seq = client.state.get("seq", 0)
        client.state["seq"] = seq + 1
        return _SEQ_NUM.sub(f'"sequence_num":{seq}', frame, count=1)

    def skipped(self, frame: str | bytes, client: Any) -> None:
        client.state["seq"] = client.state.get("seq", 0) + 1   # the hole the client must notice

    def snapshot_frames(self, stream: str, path: str) -> list[str | bytes]:
        channel, _, pid = stream.partition(":")
        book = self.truth.get(pid)
        if channel != "level2" or book is None:
            return []
        now = iso_now()
        bids, asks = sorted_levels(book)
        updates = ([{"side": "bid", "event_time": now, "price_level": p, "new_quantity": q} for p, q in bids]
                   + [{"side": "offer", "event_time": now, "price_level": p, "new_quantity": q} for p, q in asks])
        return [orjson.dumps({"channel": "l2_data", "client_id": "", "timestamp": now, "sequence_num": 0,
                              "events": [{"type": "snapshot", "product_id": pid, "updates": updates}]}).decode()]

    def keepalive(self) -> str | bytes | None:
        return orjson.dumps({"channel": "heartbeats", "client_id": "", "timestamp": iso_now(), "sequence_num": 0,
                             "events": [{"current_time": iso_now(), "heartbeat_counter": 1}]}).decode()

    def rest(self, path: str, query: dict[str, str]) -> bytes | None:
        m = self._candles.search(path)
        step = _CB_GRANULARITY.get(query.get("granularity", ""))
        if m is None or step is None or not query.get("start", "").isdigit() or not query.get("end", "").isdigit():
            return None   # 404, as for any unknown path
        price, starts = self.flat_bars(m.group(1), int(query["start"]), min(int(query["end"]), int(time.time())),
                                       step)
        bars = [{"start": str(t), "low": price, "high": price, "open": price, "close": price, "volume": "0"}
                for t in reversed(starts[:self.candles_page])]
        return orjson.dumps({"candles": bars})
