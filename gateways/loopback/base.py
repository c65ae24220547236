"""What every loopback exchange profile shares: the :class:`Profile` base class (the exchange
knowledge the server asks for), client requests, and helpers of several profiles."""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import orjson

from cryptofeed_types import OrderBook
from gateways.capture import SEND, Record


class ClientRequest(NamedTuple):
    """What a client message asks for: ``op`` is subscribe / unsubscribe / ping / other."""

    op: str
    streams: frozenset[str] = frozenset()
    replies: tuple[str | bytes, ...] = ()


def sorted_levels(book: OrderBook) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
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
        return sorted_levels(self.truth[key])

    def truth_key(self, adapter: Any, symbol: str) -> str:
        """The truth key of ``adapter``'s book of ``symbol`` (a normalized symbol): the exchange's
        symbol, unless the exchange needs more to tell two books apart."""
        return adapter.exchange_symbol(symbol)

def text_ping_or_op_args(message: str | bytes, exchange: str) -> dict[str, Any] | None:
    """None for a text ``ping``; else the ``{"op": "subscribe"|"unsubscribe", "args": [...]}``
    request (the OKX and BitMEX shape), ValueError for anything else."""
    if message in ("ping", b"ping"):
        return None
    msg = orjson.loads(message)
    if not isinstance(msg, dict) or msg.get("op") not in ("subscribe", "unsubscribe") \
            or not isinstance(msg.get("args"), list):
        raise ValueError(f"not {exchange} subscribe message: {message!r:.200}")
    return msg

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

def iso_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"
