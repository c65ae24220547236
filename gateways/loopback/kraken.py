"""Loopback profile of Kraken spot: the websocket v1 recording served as websocket v2 (CRC32 book checksums)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

import orjson

from cryptofeed_types import OrderBook
from gateways.loopback.base import ClientRequest, Profile, iso_now

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
        now = iso_now()
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
        snapshot = False
        bids: list[tuple[str, str]] = []
        asks: list[tuple[str, str]] = []
        stamps: list[str] = []
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
        if msg is None:
            return False
        book = self.truth.get(kraken_v2_symbol(msg[-1]))
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
        stamp = _kraken_rfc3339(max(stamps, key=float)) if stamps else iso_now()
        return _kraken_book_frame("snapshot" if snapshot else "update", symbol, bids, asks,
                                  book.checksum_kraken(), stamp)

    def snapshot_frames(self, stream: str, path: str) -> list[str | bytes]:
        name, _, symbol = stream.partition(":")
        book = self.truth.get(symbol)
        if not name.startswith("book-") or book is None:
            return []
        bids, asks = book.snapshot(int(name[5:]))
        # The checksum covers the top 10 levels only, the same in the full truth and in this cut.
        return [_kraken_book_frame("snapshot", symbol, bids, asks, book.checksum_kraken(), iso_now())]

    def keepalive(self) -> str | bytes | None:
        return '{"channel":"heartbeat"}'
