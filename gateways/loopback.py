"""A loopback exchange: websocket + REST server on 127.0.0.1 (random port) serving a capture.

Gateways are tested end to end through it with their real network code (the adapter's
``urls`` point here). It

- accepts websocket connections on every path (:meth:`Loopback.urls` gives each endpoint
  name the adapter uses, its path kept), checks the subscribe messages it receives against
  what the capture subscribed (:attr:`Loopback.errors` lists every mismatch), answers them
  as the exchange does, and streams the capture's received messages, by stream, to the
  connection that subscribed to each;
- keeps a *truth* book per symbol (the recorded snapshot plus every update of the capture
  it has passed, sent or not): REST book snapshots and the snapshot a resubscribe or a
  reconnection gets are made from it; other REST URLs are answered from the capture's
  recorded responses (instruments);
- on command: :meth:`drop` (abort every connection), :meth:`silence` / :meth:`resume`,
  :meth:`garbage` (send malformed frames), :meth:`broadcast` (any frames, e.g. a notice),
  :meth:`break_sequence` (skip one book update of a symbol, which the truth still includes, so
  the client's own check fails: sequence numbers, checksum, or an unknown order id, depending on
  the exchange), :meth:`fail_rest` /
  :meth:`restore_rest` (the REST API answers an error status, or drops the request unanswered),
  :meth:`refuse_ws` / :meth:`accept_ws` (websocket handshakes answered with an HTTP status).

Streaming is gated: :meth:`release` lets the next n messages go (``None``: all), so a
test can act at a known point of the capture. Exchange specifics (stream names, book
formats, translating a capture to the protocol the gateway speaks: Kraken's websocket v1
recording is served as v2) live in a :class:`Profile`; :data:`PROFILES` maps exchange ids
to them.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import orjson
from aiohttp import WSMsgType, web
from loguru import logger

from cryptofeed_types import OrderBook, dec_str
from gateways.adapter import Fetch
from gateways.capture import CONNECT, HEADER, RECV, REST, SEND, Record
from gateways.exchanges.coinbase import REST_CANDLES as CB_REST_CANDLES
from gateways.exchanges.kraken_futures import CANDLE_INTERVALS as KF_CANDLE_INTERVALS
from gateways.replay import RestPool


def _refusal(status: int, retry_after: str | None, text: str) -> web.Response:
    """An exchange's error answer (a REST failure, a refused websocket handshake), with its
    ``Retry-After`` when it gives one."""
    return web.Response(status=status, text=text, headers=None if retry_after is None else {"Retry-After": retry_after})


class ClientRequest(NamedTuple):
    """What a client message asks for: ``op`` is subscribe / unsubscribe / ping / other."""

    op: str
    streams: frozenset[str] = frozenset()
    replies: tuple[str | bytes, ...] = ()


def _sorted_levels(book: OrderBook) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    bids, asks = book.snapshot()
    return [tuple(x) for x in bids], [tuple(x) for x in asks]  # type: ignore[misc]


class Profile:
    """Exchange-specific knowledge of the loopback (subclass per exchange).

    The :class:`Loopback` calls, for each capture message in order, :meth:`apply_truth`
    (which keeps the truth books and may rewrite the message, e.g. to stamp sequence
    numbers), :meth:`stream_of` to route it and :meth:`book_key` to skip it on
    :meth:`Loopback.break_sequence`; for each client message :meth:`parse_client`, and on a
    subscribe of a book whose truth exists (a resubscribe or a reconnect),
    :meth:`snapshot_frames` (the exchange's fresh snapshot = the truth at that point).
    """

    def __init__(self) -> None:
        self.truth: dict[str, Any] = {}       # book key → the exchange's book as a client must hold it
        self.conn_path: dict[str, str] = {}   # capture conn → websocket path (set by the Loopback)

    def expected_streams(self, records: list[Record]) -> set[str]:
        """The streams the capture subscribed (what a correct client must ask for)."""
        streams: set[str] = set()
        for rec in records:
            if rec.kind == SEND:
                try:
                    req = self.parse_client(rec.data)
                except (ValueError, orjson.JSONDecodeError):
                    continue
                if req.op == "subscribe":
                    streams |= req.streams
        return streams

    def parse_client(self, message: str | bytes) -> ClientRequest:
        """Understand a client message (ValueError: not a message this exchange accepts)."""
        return ClientRequest("other")

    def system_stream(self, stream: str) -> bool:
        """Whether ``stream`` is the exchange's system status channel, which a client subscribes whatever
        the capture did (so subscribing it is not a mismatch)."""
        return False

    def subscribed(self, message: str | bytes) -> tuple[set[str], str | bytes | None]:
        """Streams a client message subscribes and the first reply (compatibility helper)."""
        req = self.parse_client(message)
        return set(req.streams), (req.replies[0] if req.replies else None)

    def stream_of(self, message: str | bytes) -> str | None:
        """The stream a capture message belongs to (None: send to every connection of its path)."""
        return None

    def book_key(self, message: str | bytes, conn: str) -> str | None:
        """The truth key when the message is a book update, else None (what break_sequence skips)."""
        return None

    def apply_truth(self, message: str | bytes, conn: str) -> str | bytes:
        """Update the truth from a capture message (sent or not); returns the frame to send."""
        return message

    def outgoing(self, frame: str | bytes, client: Any) -> str | bytes:
        """Last per-connection rewrite of a frame (e.g. a connection's own sequence numbers)."""
        return frame

    def detectable(self, message: str | bytes, conn: str) -> bool:
        """Whether skipping this book update is something a client can notice (checked against
        the truth before the update; :meth:`Loopback.break_sequence` skips the next one that is)."""
        return True

    def reveals(self, key: str, skipped: str | bytes, message: str | bytes, conn: str) -> bool:
        """Whether a client that missed ``skipped`` (a book update of ``key``) notices it on
        receiving ``message`` (default: the next book message of that book)."""
        return self.book_key(message, conn) == key

    def skipped(self, frame: str | bytes, client: Any) -> None:
        """``frame`` was skipped (break_sequence) instead of being sent to ``client``."""

    def snapshot_frames(self, stream: str, path: str) -> list[str | bytes]:
        """A fresh snapshot of the book ``stream`` from the truth ([]: none, the capture's comes)."""
        return []

    def load_snapshot(self, url: str, body: str | bytes) -> None:
        """A recorded REST snapshot: the truth book starts here."""

    def rest(self, path: str, query: dict[str, str]) -> bytes | None:
        """Answer a REST request from the truth (None: use the recorded responses)."""
        return None

    def rest_fallback(self, path: str, query: dict[str, str]) -> bytes | None:
        """Answer a REST request the capture holds no response for (None: 404)."""
        return None

    def keepalive(self) -> str | bytes | None:
        """A harmless message sent while the capture is held back (None: stay quiet), so a
        client's silence watchdog only fires on :meth:`Loopback.silence`."""
        return None

    def truth_book(self, key: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The truth of book ``key`` as (bids, asks) best first, in the exchange's strings."""
        return _sorted_levels(self.truth[key])

    def truth_key(self, adapter: Any, symbol: str) -> str:
        """The truth key of ``adapter``'s book of ``symbol`` (a normalized symbol): the exchange's
        symbol, unless the exchange needs more to tell two books apart."""
        return adapter.exchange_symbol(symbol)


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
            trades = self.trades.get(xs) or [{}]
            return orjson.dumps({"symbol": xs, "bidPrice": bids[0][0] if bids else None,
                                 "bidQty": bids[0][1] if bids else None, "askPrice": asks[0][0] if asks else None,
                                 "askQty": asks[0][1] if asks else None, "lastPrice": trades[-1].get("p"),
                                 "volume": str(self.volume.get(xs, 0)), "closeTime": trades[-1].get("T")})
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


def _text_ping_or_op_args(message: str | bytes, exchange: str) -> dict[str, Any] | None:
    """None for a text ``ping``; else the ``{"op": "subscribe"|"unsubscribe", "args": [...]}``
    request (the OKX and BitMEX shape), ValueError for anything else."""
    if message in ("ping", b"ping"):
        return None
    msg = orjson.loads(message)
    if not isinstance(msg, dict) or msg.get("op") not in ("subscribe", "unsubscribe") \
            or not isinstance(msg.get("args"), list):
        raise ValueError(f"not {exchange} subscribe message: {message!r:.200}")
    return msg


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
        msg = _text_ping_or_op_args(message, "an OKX")
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
        bids, asks = _sorted_levels(book)
        d: dict[str, Any] = {"asks": [[p, q, "0", "1"] for p, q in asks], "bids": [[p, q, "0", "1"] for p, q in bids],
                             "ts": str(int(time.time() * 1000)), "checksum": book.checksum_okx()}
        if self.stamp_seq or inst in self._seq:
            d["prevSeqId"], d["seqId"] = -1, self._seq.get(inst, 0)
        return [orjson.dumps({"arg": {"channel": channel, "instId": inst}, "action": "snapshot",
                              "data": [d]}).decode()]

    def keepalive(self) -> str | bytes | None:
        return "pong"


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
        bids, asks = _sorted_levels(book)
        ms = int(time.time() * 1000)
        return [orjson.dumps({"topic": stream, "type": "snapshot", "ts": ms,
                              "data": {"s": symbol, "b": bids, "a": asks, "u": self._u[key], "seq": self._u[key]},
                              "cts": ms}).decode()]

    def keepalive(self) -> str | bytes | None:
        return '{"success":true,"ret_msg":"pong","conn_id":"loopback","op":"ping"}'


_SEQ_NUM = re.compile(r'"sequence_num":\d+')
_CB_CHANNEL = {"l2_data": "level2"}   # message channel → subscribe channel (others: the same name)
_CB_GRANULARITY = {granularity: length // 1_000_000_000 for granularity, length in CB_REST_CANDLES.values()}


class FlatCandles:
    """REST candles of a profile whose capture has none to serve: a capture's times are not now, so
    the bars are the wall clock's, flat at the product's last trade price the capture passed so far
    (its truth book's best bid before any trade; no bars before either), volume 0."""

    truth: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        self._last_price: dict[str, str] = {}   # product → its last trade price the capture passed

    def flat_bars(self, product: str, start: int, stop: int, step: int) -> tuple[str | None, list[int]]:
        """(price, bar starts in unix s on the ``step`` grid from ``start`` to ``stop``, both included)."""
        price = self._last_price.get(product)
        if price is None and product in self.truth and self.truth[product].snapshot()[0]:
            price = str(self.truth[product].snapshot()[0][0][0])
        first = -(-start // step) * step             # bars starting at or after ``start``
        return price, (list(range(first, stop + 1, step)) if price is not None else [])


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
        reply = orjson.dumps({"channel": "subscriptions", "client_id": "", "timestamp": _iso_now(), "sequence_num": 0,
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
        now = _iso_now()
        bids, asks = _sorted_levels(book)
        updates = ([{"side": "bid", "event_time": now, "price_level": p, "new_quantity": q} for p, q in bids]
                   + [{"side": "offer", "event_time": now, "price_level": p, "new_quantity": q} for p, q in asks])
        return [orjson.dumps({"channel": "l2_data", "client_id": "", "timestamp": now, "sequence_num": 0,
                              "events": [{"type": "snapshot", "product_id": pid, "updates": updates}]}).decode()]

    def keepalive(self) -> str | bytes | None:
        return orjson.dumps({"channel": "heartbeats", "client_id": "", "timestamp": _iso_now(), "sequence_num": 0,
                             "events": [{"current_time": _iso_now(), "heartbeat_counter": 1}]}).decode()

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


def _iso_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


_KRAKEN_V2_ASSET = {"XBT": "BTC", "XDG": "DOGE"}
# A plain decimal as Kraken's v1 writes it (no sign, exponent or leading zeros).
_KRAKEN_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


def kraken_v2_symbol(pair: str) -> str:
    """A Kraken websocket v1 pair (``XBT/CHF``) as v2 names it (``BTC/CHF``)."""
    return "/".join(_KRAKEN_V2_ASSET.get(a, a) for a in pair.split("/"))


def _kraken_at(text: str, decimals: int | None) -> str:
    """v1 decimal text at the pair's precision (``354.15000000`` at 2 → ``354.15``): the text a
    v2 client formats its JSON numbers to, so the one the truth keeps and checksums."""
    if not _KRAKEN_DECIMAL.fullmatch(text):
        raise ValueError(f"not a Kraken decimal: {text!r}")
    if decimals is None:   # no AssetPairs in the capture: nothing better than v1's text
        return text
    whole, _, frac = text.partition(".")
    if frac[decimals:].strip("0"):
        # v2 could not send this value at the pair's precision: the capture and its AssetPairs disagree.
        raise ValueError(f"{text!r} has more than {decimals} decimals")
    return f"{whole}.{frac[:decimals].ljust(decimals, '0')}" if decimals else whole


def _kraken_number(text: str) -> str:
    """A v1 decimal text as the JSON number literal v2 sends (``354.15000000`` → ``354.15``).

    Written by hand rather than through a float: the value on the wire is exactly the
    recorded decimal, whatever its digit count (the capture has 16 significant digits,
    past what a float's repr is sure to keep), and turning it back into the pair's text
    is left to the adapter, the code under test. Trailing zeros are dropped as Kraken's
    own serializer does, so the adapter has to restore them from the pair's precision."""
    if not _KRAKEN_DECIMAL.fullmatch(text):
        raise ValueError(f"not a Kraken decimal: {text!r}")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _kraken_rfc3339(epoch: str) -> str:
    """v1 time ``"1618678133.365913"`` → v2's ``"2021-04-17T16:48:53.365913Z"``."""
    sec, _, frac = epoch.partition(".")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(sec))) + f".{frac[:6].ljust(6, '0')}Z"


def _kraken_levels(levels: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{{"price":{_kraken_number(p)},"qty":{_kraken_number(q)}}}' for p, q in levels)


def _kraken_book_frame(kind: str, symbol: str, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]],
                       checksum: int, timestamp: str) -> str:
    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":{orjson.dumps(symbol).decode()},'
            f'"bids":[{_kraken_levels(bids)}],"asks":[{_kraken_levels(asks)}],'
            f'"checksum":{checksum},"timestamp":"{timestamp}"}}]}}')


def _kraken_frame(channel: str, data: list[dict[str, Any]], numbers: Iterable[str]) -> str:
    """A v2 data message; the ``numbers`` fields of each item, v1 decimal texts, go out as
    JSON numbers (see :func:`_kraken_number`)."""
    fields = set(numbers)
    items = []
    for d in data:
        items.append("{" + ",".join(f"{orjson.dumps(k).decode()}:"
                                    + (_kraken_number(v) if k in fields else orjson.dumps(v).decode())
                                    for k, v in d.items()) + "}")
    return f'{{"channel":"{channel}","type":"update","data":[{",".join(items)}]}}'


class KrakenProfile(Profile):
    """Kraken spot, served in websocket **v2** from a v1 capture (arrays).

    The gateway subscribes in v2 (``{"method":"subscribe","params":{"channel":"book",
    "depth":N,"symbol":[...]}}``), answered v2-style per symbol; the capture's own v1
    subscribes name the same streams (``book-<depth>:BTC/CHF``, ``trade:…``, ``ticker:…``,
    ``spread:…`` for a v2 ticker with ``event_trigger`` bbo, ``ohlc-<minutes>:…``), v1 pairs
    renamed to v2 symbols. Each v1 message is translated: book snapshot/update → v2 ``book``
    with the v2 ``checksum`` of the truth after it; trade → ``trade`` (v1 carries no trade id:
    one is counted per symbol); ticker → ``ticker``; spread → ``ticker`` with bid/ask only;
    ``ohlc-N`` → ``ohlc``; heartbeat → v2 heartbeat, systemStatus → ``status``, and the v1
    ``subscriptionStatus`` (this server already answered the v2 subscribe) → a heartbeat.

    Prices and sizes go out as JSON numbers; the truth keeps them at the pair's precision
    (the capture's AssetPairs ``pair_decimals``/``lot_decimals``), as a v2 client formats
    them and as Kraken's v2 checksum is defined. Books carry no sequence: the integrity check
    is that CRC32 of the top 10 levels, so :meth:`Loopback.break_sequence` skips the next
    update that changes those top levels (one beyond them would go unnoticed, as on Kraken).
    A (re)subscribe of a book with a truth is answered with a v2 snapshot of it truncated
    to the subscribed depth. Truth keys are v2 symbols (``BTC/CHF``)."""

    def __init__(self) -> None:
        super().__init__()
        self.precision: dict[str, tuple[int, int]] = {}   # v2 symbol → (price, qty) decimals
        self.depth: dict[str, int] = {}                   # v2 symbol → depth of the capture's book
        self._trade_ids: dict[str, int] = {}

    @staticmethod
    def _streams(channel: Any, depth: Any, interval: Any, symbols: Iterable[str]) -> frozenset[str]:
        name = {"book": f"book-{depth or 10}", "ohlc": f"ohlc-{interval or 1}"}.get(channel, channel)
        return frozenset(f"{name}:{kraken_v2_symbol(s)}" for s in symbols)

    def parse_client(self, message: str | bytes) -> ClientRequest:
        msg = orjson.loads(message)
        if not isinstance(msg, dict):
            raise ValueError(f"not a Kraken request: {message!r:.200}")
        now = _iso_now()
        if msg.get("method") == "ping":
            return ClientRequest("ping", replies=(orjson.dumps({"method": "pong", "req_id": msg.get("req_id"),
                                                                "time_in": now, "time_out": now}).decode(),))
        if msg.get("event") in ("subscribe", "unsubscribe"):   # v1 (the capture's own requests)
            sub = msg.get("subscription") or {}
            return ClientRequest(msg["event"], self._streams(sub.get("name"), sub.get("depth"), sub.get("interval"),
                                                             msg.get("pair") or ()))
        params = msg.get("params")
        if msg.get("method") not in ("subscribe", "unsubscribe") or not isinstance(params, dict) \
                or not isinstance(params.get("symbol"), list):
            raise ValueError(f"not a Kraken subscribe message: {message!r:.200}")
        channel = params.get("channel")
        replies = tuple(orjson.dumps({"method": msg["method"], "result": {"channel": channel, "symbol": s},
                                      "success": True, "time_in": now, "time_out": now,
                                      "req_id": msg.get("req_id")}).decode() for s in params["symbol"])
        # v1 had a spread channel; v2 gives the same through the ticker's bbo trigger.
        name = "spread" if channel == "ticker" and params.get("event_trigger") == "bbo" else channel
        return ClientRequest(msg["method"], self._streams(name, params.get("depth"), params.get("interval"),
                                                          params["symbol"]), replies)

    @staticmethod
    def _v1(message: str | bytes) -> list[Any] | None:
        if not isinstance(message, str) or not message.startswith("["):
            return None
        msg = orjson.loads(message)
        return msg if isinstance(msg, list) and len(msg) >= 4 else None

    def stream_of(self, message: str | bytes) -> str | None:
        """The stream of a frame :meth:`apply_truth` made (v2); None for v2 control messages."""
        if not isinstance(message, str) or not message.startswith('{"channel":'):
            return None
        msg = orjson.loads(message)
        data = msg.get("data")
        symbol = data[0].get("symbol") if isinstance(data, list) and data and isinstance(data[0], dict) else None
        if symbol is None:
            return None
        channel = msg["channel"]
        if channel == "book":
            return f"book-{self.depth.get(symbol, 10)}:{symbol}"
        if channel == "ohlc":
            return f"ohlc-{data[0]['interval']}:{symbol}"
        if channel == "ticker" and "last" not in data[0]:   # made from a v1 spread, which has no last
            return f"spread:{symbol}"
        return f"{channel}:{symbol}"

    def book_key(self, message: str | bytes, conn: str) -> str | None:
        """The v2 symbol of a capture (v1) book message."""
        msg = self._v1(message)
        if msg is None or not str(msg[-2]).startswith("book-"):
            return None
        return kraken_v2_symbol(msg[-1])

    @staticmethod
    def _parts(msg: list[Any]) -> tuple[bool, list[tuple[str, str]], list[tuple[str, str]], list[str]]:
        snapshot, bids, asks, stamps = False, [], [], []
        for part in msg[1:-2]:
            if not isinstance(part, dict):
                continue
            snapshot = snapshot or "as" in part or "bs" in part
            for key, side in (("bs", bids), ("b", bids), ("as", asks), ("a", asks)):
                for lv in part.get(key, ()):
                    side.append((lv[0], lv[1]))
                    stamps.append(lv[2])
        return snapshot, bids, asks, stamps

    def detectable(self, message: str | bytes, conn: str) -> bool:
        msg = self._v1(message)
        book = self.truth.get(kraken_v2_symbol(msg[-1])) if msg is not None else None
        if book is None:
            return False
        snapshot, bids, asks, _ = self._parts(msg)
        top_bids, top_asks = book.bids.top(10), book.asks.top(10)
        low = float(top_bids[-1][0]) if len(top_bids) == 10 else float("-inf")
        high = float(top_asks[-1][0]) if len(top_asks) == 10 else float("inf")
        return not snapshot and (any(float(p) >= low for p, _ in bids) or any(float(p) <= high for p, _ in asks))

    def load_snapshot(self, url: str, body: str | bytes) -> None:
        if "/AssetPairs" not in url:
            return
        for info in (orjson.loads(body).get("result") or {}).values():
            if info.get("wsname"):
                self.precision[kraken_v2_symbol(info["wsname"])] = (int(info["pair_decimals"]),
                                                                    int(info["lot_decimals"]))

    def apply_truth(self, message: str | bytes, conn: str) -> str | bytes:
        """Keep the truth books and return the v2 translation of the v1 ``message`` (ValueError:
        none, the loopback then sends it unchanged)."""
        msg = orjson.loads(message)
        if isinstance(msg, dict):
            return self._v2_control(msg)
        if not isinstance(msg, list) or len(msg) < 4:
            raise ValueError(f"not a Kraken v1 message: {message!r:.80}")
        channel, symbol = str(msg[-2]), kraken_v2_symbol(str(msg[-1]))
        if channel.startswith("book-"):
            return self._book(symbol, int(channel[5:]), msg)
        payload = msg[1]
        if channel == "trade":
            return _kraken_frame("trade", [self._trade(symbol, t) for t in payload], ("price", "qty"))
        if channel == "ticker":
            return _kraken_frame("ticker", [{
                "symbol": symbol, "bid": payload["b"][0], "bid_qty": payload["b"][2], "ask": payload["a"][0],
                "ask_qty": payload["a"][2], "last": payload["c"][0], "volume": payload["v"][1],
                "vwap": payload["p"][1], "low": payload["l"][1], "high": payload["h"][1]}],
                ("bid", "bid_qty", "ask", "ask_qty", "last", "volume", "vwap", "low", "high"))
        if channel == "spread":
            bid, ask, t, bid_qty, ask_qty = payload[:5]
            return _kraken_frame("ticker", [{"symbol": symbol, "bid": bid, "bid_qty": bid_qty, "ask": ask,
                                             "ask_qty": ask_qty, "timestamp": _kraken_rfc3339(t)}],
                                 ("bid", "bid_qty", "ask", "ask_qty"))
        if channel.startswith("ohlc-"):
            minutes = int(channel[5:])
            t, end, o, h, lo, c, vwap, volume, count = payload[:9]
            begin = str(int(end.partition(".")[0]) - minutes * 60)
            return _kraken_frame("ohlc", [{
                "symbol": symbol, "open": o, "high": h, "low": lo, "close": c, "trades": int(count),
                "volume": volume, "vwap": vwap, "interval_begin": _kraken_rfc3339(begin), "interval": minutes,
                "timestamp": _kraken_rfc3339(t)}], ("open", "high", "low", "close", "volume", "vwap"))
        raise ValueError(f"no v2 equivalent of Kraken v1 channel {channel!r}")

    @staticmethod
    def _v2_control(msg: dict[str, Any]) -> str:
        event = msg.get("event")
        if event in ("heartbeat", "subscriptionStatus"):
            return '{"channel":"heartbeat"}'
        if event == "systemStatus":
            return orjson.dumps({"channel": "status", "type": "update", "data": [{
                "api_version": "v2", "connection_id": msg.get("connectionID"), "system": msg.get("status"),
                "version": "2.0.0"}]}).decode()
        raise ValueError(f"no v2 equivalent of Kraken v1 event {event!r}")

    def _trade(self, symbol: str, t: list[Any]) -> dict[str, Any]:
        price, qty, stamp, side, order_type = t[:5]
        tid = self._trade_ids[symbol] = self._trade_ids.get(symbol, 0) + 1
        return {"symbol": symbol, "side": "buy" if side == "b" else "sell", "price": price, "qty": qty,
                "ord_type": "limit" if order_type == "l" else "market", "trade_id": tid,
                "timestamp": _kraken_rfc3339(stamp)}

    def _book(self, symbol: str, depth: int, msg: list[Any]) -> str:
        snapshot, bids, asks, stamps = self._parts(msg)
        pdec, qdec = self.precision.get(symbol, (None, None))
        bids = [(_kraken_at(p, pdec), _kraken_at(q, qdec)) for p, q in bids]
        asks = [(_kraken_at(p, pdec), _kraken_at(q, qdec)) for p, q in asks]
        if snapshot:
            book = self.truth[symbol] = OrderBook(depth)
            book.apply_snapshot(bids, asks)
            self.depth[symbol] = depth
        else:
            book = self.truth.get(symbol)
            if book is None:
                raise ValueError(f"Kraken book update of {symbol} before its snapshot")
            book.apply_delta(bids, asks)   # truncated to the depth, as Kraken's clients must
        stamp = _kraken_rfc3339(max(stamps, key=float)) if stamps else _iso_now()
        return _kraken_book_frame("snapshot" if snapshot else "update", symbol, bids, asks,
                                  book.checksum_kraken(), stamp)

    def snapshot_frames(self, stream: str, path: str) -> list[str | bytes]:
        name, _, symbol = stream.partition(":")
        book = self.truth.get(symbol)
        if not name.startswith("book-") or book is None:
            return []
        bids, asks = book.snapshot(int(name[5:]))
        # The checksum covers the top 10 levels only, the same in the full truth and in this cut.
        return [_kraken_book_frame("snapshot", symbol, bids, asks, book.checksum_kraken(), _iso_now())]

    def keepalive(self) -> str | bytes | None:
        return '{"channel":"heartbeat"}'


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
        bids, asks = _sorted_levels(book)
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


class BitMEXProfile(Profile):
    """BitMEX realtime: ``{"op":"subscribe","args":["orderBookL2:XBTUSD",...]}`` answered per
    argument with ``{"success":true,"subscribe":...}``; ``orderBookL2`` rows by id
    (``partial`` then ``insert``/``update``/``delete``). There is no sequence number: the
    client's only check is that every updated or deleted id exists, so
    :meth:`Loopback.break_sequence` skips the next ``insert`` of the symbol, which the next
    update or delete of one of its ids reveals. A resubscribe gets a ``partial`` of the
    truth's rows. ``ping`` → ``pong``. Truth keys are BitMEX symbols."""

    def parse_client(self, message: str | bytes) -> ClientRequest:
        msg = _text_ping_or_op_args(message, "a BitMEX")
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
            for xs in {r["symbol"] for r in msg["data"]} | {(msg.get("filter") or {}).get("symbol")} - {None}:
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
        return _sorted_levels(book)

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
        bids, asks = _sorted_levels(book)
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


PROFILES: dict[str, type[Profile]] = {
    "BINANCE": BinanceProfile,
    "BINANCE_FUTURES": BinanceProfile,
    "BINANCE_DELIVERY": BinanceProfile,
    "BITMEX": BitMEXProfile,
    "BYBIT": BybitProfile,
    "COINBASE": CoinbaseProfile,
    "DERIBIT": DeribitProfile,
    "KRAKEN": KrakenProfile,
    "KRAKEN_FUTURES": KrakenFuturesProfile,
    "OKX": OKXProfile,
}


class _Client:
    __slots__ = ("ws", "request", "streams", "subscribed", "number", "path", "conns", "state")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, number: int, conns: set[str]) -> None:
        self.ws = ws
        self.request = request
        self.streams: set[str] = set()
        self.subscribed = asyncio.Event()
        self.number = number
        self.path = request.path
        self.conns = conns            # the capture connections whose messages this client may get
        self.state: dict[str, Any] = {}   # per-connection state of the profile (e.g. sequence counters)


def _path(url: str | None) -> str:
    return (urlsplit(url).path or "/") if url else "/"


class Loopback:
    """The server (see the module docstring). ``async with Loopback(records) as lb: lb.ws_url ...``"""

    def __init__(self, records: Iterable[Record], *, exchange: str | None = None, profile: Profile | None = None,
                 subscribe_timeout: float = 5.0, keepalive_interval: float | None = 0.1,
                 rest_only: bool = False) -> None:
        # rest_only: the capture plays out (the truth moves on as released) with no websocket client
        # subscribed, for a client that only polls REST (the ccxt long tail).
        self.rest_only = rest_only
        self.records = list(records)
        header = next((r.data for r in self.records if r.kind == HEADER), {}) or {}
        self.exchange = exchange or header.get("exchange") or ""
        self.profile = profile or PROFILES.get(self.exchange, Profile)()
        self.conn_path = {r.conn: _path(r.url) for r in self.records if r.kind == CONNECT}
        self.profile.conn_path = self.conn_path
        self.expected = self.profile.expected_streams(self.records)
        self.messages: list[tuple[str, str | bytes]] = [(r.conn, r.data) for r in self.records if r.kind == RECV]
        self.pool = RestPool()
        self._rest_records: list[Record] = []
        for r in self.records:
            if r.kind == REST:
                self.pool.add(r)
                self._rest_records.append(r)
                self.profile.load_snapshot(r.url or "", r.data)
        self.subscribe_timeout = subscribe_timeout
        self.errors: list[str] = []
        self.subscribe_messages: list[str | bytes] = []
        self.client_messages: list[tuple[int, str, frozenset[str]]] = []   # (conn number, op, streams)
        self.snapshots_sent: list[tuple[int, str]] = []                     # (conn number, stream)
        self.rest_requests: list[str] = []
        self.rest_times: list[float] = []           # time.monotonic() of each REST request
        self.ws_attempts: list[float] = []          # time.monotonic() of each websocket handshake
        self._ws_refusal: tuple[int, str | None] | None = None   # (status, Retry-After) handshakes get
        self.rest_headers: dict[str, str] = {}      # added to every REST answer (e.g. a used-weight header)
        self.connections = 0
        self.cursor = 0
        self.sent = 0
        self.skipped: list[tuple[int, str]] = []                            # (cursor, book key)
        self.done = asyncio.Event()
        self._limit: int | None = 0
        self._wake = asyncio.Event()
        self._silent = False
        # (status, Retry-After) REST requests get instead (status 0: dropped unanswered)
        self._rest_failure: tuple[int, str | None] | None = None
        self.rest_failures = 0
        # (path, body) -> the body answered instead, e.g. an instrument list without the instrument
        # a test "lists" later by setting this back to None.
        self.rest_filter: Callable[[str, bytes], bytes] | None = None
        self._skip: set[str] = set()
        self._clients: list[_Client] = []
        self._lock = asyncio.Lock()   # a truth snapshot and the capture's messages never interleave
        self._runner: web.AppRunner | None = None
        self._sender: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self.keepalive_interval = keepalive_interval
        self.port = 0

    # ---- lifecycle
    async def start(self) -> Loopback:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handler)   # websockets on every path, REST otherwise
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._sender = asyncio.create_task(self._send_loop())
        if self.keepalive_interval and self.profile.keepalive() is not None:
            self._keepalive = asyncio.create_task(self._keepalive_loop())
        return self

    async def stop(self) -> None:
        for task in (self._sender, self._keepalive):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for c in list(self._clients):
            transport = c.request.transport
            if transport is not None:
                transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Loopback:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def urls(self, exchange: str | None = None) -> dict[str, str]:
        """Adapter URL overrides pointing here: every endpoint the adapter of ``exchange``
        (default: the capture's) declares, with its path kept (``ws://…/ws/v5/public``,
        ``ws://…/v5/public/linear``) and ``wss``/``https`` replaced by ``ws``/``http``."""
        from gateways import exchanges

        name = exchange or self.exchange
        try:
            declared = dict(exchanges.get(name).urls)
        except KeyError:
            declared = {}
        if not declared:
            return {"ws": self.ws_url, "rest": self.rest_url}
        out = {}
        for key, url in declared.items():
            parts = urlsplit(url)
            base = self.ws_url if parts.scheme in ("ws", "wss") else self.rest_url
            out[key] = base + parts.path.rstrip("/") + (f"?{parts.query}" if parts.query else "")
        return out

    # ---- commands
    @property
    def released(self) -> int:
        """Where the next release starts: the index of the first capture message not released
        yet (the cursor, once the rest of the capture is released)."""
        return self.cursor if self._limit is None else max(self._limit, self.cursor)

    def release(self, n: int | None = None) -> None:
        """Let the next ``n`` capture messages go (``None``: all the rest)."""
        self._limit = None if n is None else self.released + n
        self._wake.set()

    def release_book_updates(self, key: str, n: int = 1) -> int:
        """Release the capture up to and including the ``n``-th next book message of book ``key``
        (so a test can act right after a given update); returns how many messages that releases."""
        start = self.released
        seen = 0
        for i in range(start, len(self.messages)):
            conn, msg = self.messages[i]
            try:
                hit = self.profile.book_key(msg, conn) == key
            except Exception:  # noqa: BLE001 - odd capture messages are no book updates
                hit = False
            if hit:
                seen += 1
                if seen == n:
                    self.release(i + 1 - start)
                    return i + 1 - start
        raise ValueError(f"the capture has fewer than {n} more book messages of {key!r}")

    def release_first_books(self, keys: Iterable[str]) -> int:
        """Release the capture far enough that the first book message (the recorded snapshot)
        of every one of ``keys`` goes out; returns how many more messages that releases."""
        wanted = set(keys)
        start = self.released
        last = -1
        for i in range(self.cursor, len(self.messages)):
            if not wanted:
                break
            conn, msg = self.messages[i]
            try:
                key = self.profile.book_key(msg, conn)
            except Exception:  # noqa: BLE001
                key = None
            if key in wanted:
                wanted.discard(key)
                last = i
        if wanted:
            raise ValueError(f"the capture has no more book messages of {sorted(wanted)}")
        n = max(0, last + 1 - start)
        if n:
            self.release(n)
        return n

    def release_past_gap(self, n: int = 1) -> int:
        """After the last :meth:`break_sequence` skip: release the capture through the ``n``-th
        later message that reveals the gap to a client (:meth:`Profile.reveals`)."""
        if not self.skipped:
            raise ValueError("nothing was skipped yet")
        _, key, skipped_msg = self.skipped[-1]
        start = self.released
        seen = 0
        for i in range(start, len(self.messages)):
            conn, msg = self.messages[i]
            try:
                hit = self.profile.reveals(key, skipped_msg, msg, conn)
            except Exception:  # noqa: BLE001
                hit = False
            if hit:
                seen += 1
                if seen == n:
                    self.release(i + 1 - start)
                    return i + 1 - start
        raise ValueError(f"no {n} later messages of the capture reveal the gap in {key!r}")

    def silence(self) -> None:
        """Stop sending (connections stay open) until :meth:`resume`."""
        self._silent = True

    def resume(self) -> None:
        self._silent = False
        self._wake.set()

    async def drop(self, numbers: Iterable[int] | None = None) -> int:
        """Abort every websocket connection, or those numbered ``numbers`` (1 = the first one
        accepted; no close handshake); returns how many."""
        wanted = None if numbers is None else set(numbers)
        n = 0
        for c in list(self._clients):
            if wanted is not None and c.number not in wanted:
                continue
            transport = c.request.transport
            if transport is not None:
                transport.abort()
                n += 1
        return n

    async def garbage(self, frames: Iterable[str | bytes] = ("{not json", b"\x00\xff\xfe garbage", "[]")) -> None:
        """Send malformed frames to every connection."""
        await self.broadcast(frames)

    async def broadcast(self, frames: Iterable[str | bytes]) -> None:
        """Send these frames to every connection now (e.g. an exchange's notice), between capture
        messages, as the exchange would on each (its per-connection rewrite: Coinbase's sequence_num)."""
        frames = list(frames)
        async with self._lock:
            for c in self.live_clients():
                for frame in frames:
                    await self._send(c, frame)

    def fail_rest(self, status: int = 503, retry_after: str | None = None) -> None:
        """Fail every REST request until :meth:`restore_rest`: answered with ``status`` (an
        overloaded or broken API; ``retry_after``: its ``Retry-After`` header, e.g. for 429), or,
        with 0, dropped without an answer (a dead server)."""
        self._rest_failure = (status, retry_after)

    def restore_rest(self) -> None:
        self._rest_failure = None

    def refuse_ws(self, status: int = 429, retry_after: str | None = None) -> None:
        """Answer every websocket handshake with ``status`` (and ``Retry-After``) instead of the
        upgrade, until :meth:`accept_ws` (an exchange refusing connections: too many, or banned)."""
        self._ws_refusal = (status, retry_after)

    def accept_ws(self) -> None:
        self._ws_refusal = None

    def break_sequence(self, key: str) -> None:
        """Skip the next book update of book ``key`` (the profile's truth key: the exchange
        symbol; ``category/SYMBOL`` for Bybit); the truth still applies it, so the client
        sees the exchange's own kind of sequence gap."""
        self._skip.add(key)

    def live_clients(self) -> list[_Client]:
        return [c for c in self._clients if c.subscribed.is_set() and not c.ws.closed]

    def subscribed_streams(self) -> set[str]:
        """Streams some live connection is subscribed to now."""
        return set().union(*(c.streams for c in self.live_clients()))

    def fully_subscribed(self) -> bool:
        """Every stream the capture subscribed is subscribed by a live connection."""
        return bool(self.live_clients()) and self.expected <= self.subscribed_streams()

    async def wait_subscribed(self, timeout: float = 10.0, *, connections: int | None = None) -> None:
        """Until every stream of the capture is subscribed by a live connection (for a capture
        without recorded subscriptions: until one connection subscribed) and, when given,
        ``connections`` connections were accepted in all."""
        async with asyncio.timeout(timeout):
            while not (self.fully_subscribed() and (connections is None or self.connections >= connections)):
                await asyncio.sleep(0.01)

    async def wait_sent(self, timeout: float = 30.0) -> None:
        """Until every released message has been passed (sent or skipped)."""
        async with asyncio.timeout(timeout):
            while self._limit is None or self.cursor < min(self._limit, len(self.messages)):
                if self._limit is None and self.cursor >= len(self.messages):
                    return
                await asyncio.sleep(0.01)

    # ---- websocket side
    async def _handler(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            self.ws_attempts.append(time.monotonic())
            if self._ws_refusal is not None:
                return _refusal(*self._ws_refusal, '{"code":-1003,"msg":"Too many requests."}')
            return await self._ws_handler(request)
        return await self._rest_handler(request)

    async def _send(self, c: _Client, frame: str | bytes) -> bool:
        frame = self.profile.outgoing(frame, c)
        try:
            if isinstance(frame, bytes):
                await c.ws.send_bytes(frame)
            else:
                await c.ws.send_str(frame)
            return True
        except (ConnectionResetError, RuntimeError):
            return False

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, compress=False)
        await ws.prepare(request)
        self.connections += 1
        conns = {conn for conn, path in self.conn_path.items() if path.rstrip("/") == request.path.rstrip("/")}
        client = _Client(ws, request, self.connections, conns or set(self.conn_path) or {""})
        self._clients.append(client)
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    req = self.profile.parse_client(msg.data)
                except (ValueError, orjson.JSONDecodeError) as exc:
                    self.subscribe_messages.append(msg.data)
                    self.errors.append(f"conn {client.number}: {exc}")
                    continue
                if req.op != "ping":
                    self.subscribe_messages.append(msg.data)
                    self.client_messages.append((client.number, req.op, req.streams))
                async with self._lock:
                    await self._on_request(client, req)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.remove(client)
        return ws

    async def _on_request(self, client: _Client, req: ClientRequest) -> None:
        for reply in req.replies:
            await self._send(client, reply)
        if req.op == "unsubscribe":
            client.streams -= req.streams
        elif req.op == "subscribe":
            unexpected = {s for s in req.streams - self.expected if not self.profile.system_stream(s)} \
                if self.expected else set()
            if unexpected:
                self.errors.append(f"conn {client.number}: unexpected streams {sorted(unexpected)}")
            client.streams |= req.streams
            # A book the capture's snapshot was already passed for (a resubscribe, a reconnect):
            # the exchange answers with a fresh snapshot, the truth at this point.
            for stream in sorted(req.streams):
                for frame in self.profile.snapshot_frames(stream, client.path):
                    if await self._send(client, frame):
                        self.snapshots_sent.append((client.number, stream))
            client.subscribed.set()
            self._wake.set()

    def _targets(self, conn: str, message: str | bytes) -> list[_Client]:
        stream = self.profile.stream_of(message)
        return [c for c in self.live_clients()
                if conn in c.conns and (stream is None or stream in c.streams)]

    async def _send_loop(self) -> None:
        profile = self.profile
        messages = self.messages
        while True:
            can_send = (not self._silent and self.cursor < len(messages)
                        and (self._limit is None or self.cursor < self._limit)
                        and (self.rest_only or any(c.subscribed.is_set() for c in self._clients)))
            if not can_send:
                if self.cursor >= len(messages):
                    self.done.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            async with self._lock:
                conn, msg = messages[self.cursor]
                self.cursor += 1
                skip = False
                try:
                    key = profile.book_key(msg, conn)
                    skip = key is not None and key in self._skip and profile.detectable(msg, conn)
                    msg = profile.apply_truth(msg, conn)
                except Exception as exc:  # noqa: BLE001 - the capture itself may hold odd messages
                    logger.debug("loopback: truth not updated from {!r:.80}: {}", msg, exc)
                if skip:
                    assert key is not None
                    self._skip.discard(key)
                    self.skipped.append((self.cursor - 1, key, messages[self.cursor - 1][1]))
                    for c in self._targets(conn, msg):
                        profile.skipped(msg, c)
                    continue
                for c in self._targets(conn, msg):
                    if await self._send(c, msg):
                        self.sent += 1
            if self.cursor % 50 == 0:
                await asyncio.sleep(0)  # let clients and commands run

    async def _keepalive_loop(self) -> None:
        msg = self.profile.keepalive()
        assert msg is not None and self.keepalive_interval
        while True:
            await asyncio.sleep(self.keepalive_interval)
            if self._silent:
                continue
            async with self._lock:
                for c in self.live_clients():
                    await self._send(c, msg)

    # ---- REST side
    def _recorded(self, url: str) -> Record | None:
        rec = self.pool.take(Fetch(url), loose=False)
        if rec is not None:
            self.pool.add(rec)  # recorded responses can be asked for again (reconnects)
            return rec
        # The same path, one query a subset of the other (a capture asking ``&status=Trading`` more).
        parts = urlsplit(url)
        query = set(parse_qsl(parts.query))
        for r in self._rest_records:
            rp = urlsplit(r.url or "")
            rq = set(parse_qsl(rp.query))
            if rp.path == parts.path and (query <= rq or rq <= query):
                return r
        return None

    async def _rest_handler(self, request: web.Request) -> web.Response:
        url = str(request.url)
        self.rest_requests.append(url)
        self.rest_times.append(time.monotonic())
        if self._rest_failure is not None:
            self.rest_failures += 1
            status, retry_after = self._rest_failure
            if status == 0 and request.transport is not None:
                request.transport.abort()
            return _refusal(status or 503, retry_after, '{"code":-1,"msg":"Service unavailable"}')
        query = dict(request.query)
        body = self.profile.rest(request.path, query)
        if body is None:
            rec = self._recorded(url)
            if rec is not None:
                body = rec.data if isinstance(rec.data, bytes) else str(rec.data).encode()
        if body is None:
            body = self.profile.rest_fallback(request.path, query)
        if body is None:
            return web.Response(status=404, text='{"code":-1121,"msg":"Invalid symbol."}')
        if self.rest_filter is not None:
            body = self.rest_filter(request.path, body)
        return web.Response(body=body, content_type="application/json", headers=self.rest_headers or None)
