"""Loopback profile of Kraken Futures: ``book``/``book_snapshot`` with ``seq``, REST candles."""

from __future__ import annotations

import re
import time

import orjson

from cryptofeed_types import OrderBook, dec_str
from gateways.exchanges.kraken_futures import CANDLE_INTERVALS as KF_CANDLE_INTERVALS
from gateways.loopback.base import ClientRequest, FlatCandles, Profile, sorted_levels

_KF_FEED = {"book_snapshot": "book", "ticker_lite": "ticker", "trade_snapshot": "trade"}


class KrakenFuturesProfile(FlatCandles, Profile):
    """Kraken Futures: ``{"event":"subscribe","feed":F,"product_ids":[...]}`` answered by one
    ``subscribed`` event per product; ``book_snapshot`` + ``book`` messages whose ``seq``
    counts up by one per product. ``ticker_lite`` (the capture's) and ``ticker`` count as one
    stream; the ``heartbeat`` feed is the keepalive. A resubscribe gets a ``book_snapshot``
    of the truth carrying the last ``seq``.

    The REST charts API (``/api/charts/v1/trade/<product>/<resolution>?from=<s>``) answers with
    :class:`FlatCandles` bars from ``from`` to now, the last one forming, at most
    :attr:`charts_page` a page (``more_candles``)."""

    charts_page = 2000
    _charts = re.compile(r"/api/charts/v1/trade/([^/]+)/([0-9a-z]+)$")

    def __init__(self) -> None:
        super().__init__()
        self._seq: dict[str, int] = {}

    def parse_client(self, message: str | bytes) -> ClientRequest:
        msg = orjson.loads(message)
        if not isinstance(msg, dict) or msg.get("event") not in ("subscribe", "unsubscribe"):
            raise ValueError(f"not a Kraken Futures subscribe message: {message!r:.200}")
        feed = msg.get("feed")
        done = "subscribed" if msg["event"] == "subscribe" else "unsubscribed"
        if feed == "heartbeat":
            return ClientRequest("ping", replies=(orjson.dumps({"event": done, "feed": feed}).decode(),))
        pids = msg.get("product_ids")
        if not isinstance(feed, str) or not isinstance(pids, list):
            raise ValueError(f"not a Kraken Futures subscribe message: {message!r:.200}")
        feed = _KF_FEED.get(feed, feed)
        replies = tuple(orjson.dumps({"event": done, "feed": msg["feed"], "product_ids": [p.upper()]}).decode()
                        for p in pids)
        return ClientRequest(msg["event"], frozenset(f"{feed}:{p.upper()}" for p in pids), replies)

    def stream_of(self, message: str | bytes) -> str | None:
        if not isinstance(message, str) or not message.startswith('{"feed":"'):
            return None
        feed = message[9:message.index('"', 9)]
        if feed == "heartbeat":
            return None
        msg = orjson.loads(message)
        return f"{_KF_FEED.get(feed, feed)}:{msg.get('product_id', '')}"

    def book_key(self, message: str | bytes, conn: str) -> str | None:
        if isinstance(message, str) and message.startswith(('{"feed":"book"', '{"feed":"book_snapshot"')):
            return orjson.loads(message)["product_id"]
        return None

    def apply_truth(self, message: str | bytes, conn: str) -> str | bytes:
        key = self.book_key(message, conn)
        if key is None:
            if isinstance(message, str) and message.startswith('{"feed":"trade",'):
                msg = orjson.loads(message)
                self._last_price[str(msg["product_id"]).upper()] = dec_str(msg["price"])
            return message
        msg = orjson.loads(message)
        if msg["feed"] == "book_snapshot":
            book = self.truth[key] = OrderBook()
            book.apply_snapshot([(dec_str(lv["price"]), dec_str(lv["qty"])) for lv in msg["bids"]],
                                [(dec_str(lv["price"]), dec_str(lv["qty"])) for lv in msg["asks"]])
        elif key in self.truth:
            level = [(dec_str(msg["price"]), dec_str(msg["qty"]))]
            self.truth[key].apply_delta(level if msg["side"] == "buy" else [], level if msg["side"] != "buy" else [])
        self._seq[key] = msg["seq"]
        return message

    def snapshot_frames(self, stream: str, path: str) -> list[str | bytes]:
        feed, _, pid = stream.partition(":")
        book = self.truth.get(pid)
        if feed != "book" or book is None:
            return []
        bids, asks = sorted_levels(book)
        return [orjson.dumps({"feed": "book_snapshot", "product_id": pid, "timestamp": int(time.time() * 1000),
                              "seq": self._seq[pid], "tickSize": None,
                              "bids": [{"price": float(p), "qty": float(q)} for p, q in bids],
                              "asks": [{"price": float(p), "qty": float(q)} for p, q in asks]}).decode()]

    def keepalive(self) -> str | bytes | None:
        return '{"feed":"heartbeat","time":0}'

    def rest(self, path: str, query: dict[str, str]) -> bytes | None:
        m = self._charts.search(path)
        if m is None:
            return None
        pid, resolution = m.group(1).upper(), m.group(2)
        length = KF_CANDLE_INTERVALS.get(resolution)
        if length is None:
            return None   # 404, as for any unknown path
        step = length // 1_000_000_000
        now = int(time.time())
        price, starts = self.flat_bars(pid, int(query.get("from", now - 10 * step)), now, step)
        bars = [{"time": t * 1000, "open": price, "high": price, "low": price, "close": price, "volume": "0"}
                for t in starts[:self.charts_page]]
        return orjson.dumps({"candles": bars, "more_candles": len(starts) > self.charts_page})
