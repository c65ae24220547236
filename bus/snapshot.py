"""The snapshot service (the Clone pattern's state request) and its client protocol.

A publisher keeps, per topic, the state a late joiner needs: the full L2 book
(``book.`` topics), the L3 order book (``l3.`` topics) and the last value of scalar
topics (ticker, bbo, funding, open interest, index, mark), each with the per-topic
sequence number it includes (a gateway may instead let it serve its own L2 books:
:meth:`StateStore.share_books`, then no copy is kept). A subscriber asks a ROUTER socket for a topic prefix and
gets one message per matching topic, then an end marker; a book the stream declared invalid
(a ``Gap``, until the ``L2Snapshot`` that rebuilds it) is left out, and so is its ``bbo``
(:meth:`StateStore.invalid` lists those books for the heartbeats). docs/wire.md ("Snapshot
service, heartbeats and recovery") is the normative description:

    request  (DEALER -> ROUTER)  [b"SNAPSHOT", prefix, request_id]   or [b"HELLO", b"", request_id]
    item     (ROUTER -> DEALER)  [request_id, topic, header, body]    (exactly a PUB message's frames)
    end      (ROUTER -> DEALER)  [request_id, b"END", msgpack [version, gateway, epoch, item_count]]
    error    (ROUTER -> DEALER)  [request_id, b"ERROR", msgpack reason]

This module holds the pieces both sides share: :class:`StateStore` (the publisher's
state, fed by :meth:`StateStore.apply`), :func:`serve` (answer one request) and the
client helpers :func:`encode_request` / :func:`decode_reply`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import msgpack

from bus import codec
from bus.codec import Header, WireError
from bus.topics import gap_scope
from cryptofeed_types.book import OrderBook, is_zero
from cryptofeed_types.events import Event, Gap, L2Delta, L2Snapshot, L3Delta, L3Snapshot

SNAPSHOT = b"SNAPSHOT"
HELLO = b"HELLO"
END = b"END"
ERROR = b"ERROR"
MAX_PREFIX = 512
MAX_REQUEST_ID = 64

# Channels whose messages are changes to a state (need a snapshot to join).
STATEFUL_CHANNELS = frozenset({"book", "l3"})


# A book provider: normalized symbol -> the gateway's own OrderBook of it, or None while
# there is no book to serve (never built yet).
BookProvider = Callable[[str], "OrderBook | None"]


class _Book:
    # ``last``: the last event applied, for its names and timestamps (one reference is
    # cheaper on the publishing path than copying five fields). ``provider``: set when the
    # gateway shares its own books (see StateStore.share_books); ``book`` is then unused.
    # ``valid``: False from a Gap on this book until its next L2Snapshot (not served meanwhile).
    __slots__ = ("book", "seq", "last", "provider", "valid")

    def __init__(self, provider: BookProvider | None = None) -> None:
        self.book: OrderBook | None = OrderBook() if provider is None else None
        self.seq = 0
        self.last: Event | None = None
        self.provider = provider
        self.valid = True


class _L3:
    __slots__ = ("orders", "sequence", "seq", "exchange", "symbol", "exchange_symbol", "timestamp",
                 "receipt_timestamp", "valid")

    def __init__(self) -> None:
        self.orders: dict[str, tuple[str, str, str, str]] = {}
        self.sequence: int | None = None
        self.seq = 0
        self.valid = True
        # The last event's names and times (set by StateStore.apply with the first event).
        self.exchange = ""
        self.symbol = ""
        self.exchange_symbol: str | None = None
        self.timestamp: int | None = None
        self.receipt_timestamp = 0


class StateStore:
    """Books and last values per topic, with the sequence number each includes.

    Not locked itself: the publisher calls :meth:`apply` and :meth:`collect` under its lock.
    """

    def __init__(self) -> None:
        self.books: dict[str, _Book] = {}
        self.l3: dict[str, _L3] = {}
        self.last: dict[str, tuple[Event, int]] = {}
        self.providers: dict[str, BookProvider] = {}

    def share_books(self, exchange: str, provider: BookProvider) -> None:
        """Serve the L2 books of ``exchange`` from ``provider`` instead of a mirrored copy.

        Why this is correct although the gateway's book may run ahead of what was
        published: the gateway applies an update to its book *before* publishing it, so a
        snapshot taken between the two contains delta N+1 (or a few more) while being
        labelled with the last published sequence N. L2 deltas carry absolute sizes per
        level, so they are idempotent: the subscriber re-applies N+1.. on top of that
        snapshot and ends with exactly the gateway's book (levels cut off by a depth limit
        are published as deletes, so those re-apply the same way). Reads are consistent
        because OrderBook's methods are compiled Cython running under the GIL: no Python
        bytecode runs inside ``snapshot()`` or ``apply_delta()``, so the gateway thread can
        not interleave a partial update with a read (and even a torn read, between the bid
        and ask sides, would only mix whole absolute-size levels, which the re-applied
        deltas overwrite). Saves the second copy of every book (CPU per update and memory).
        Call before publishing the exchange's first book event. Called again (a replay whose
        next capture session has an adapter of its own), the books served by the previous
        provider are served by the new one.
        """
        old = self.providers.get(exchange)
        self.providers[exchange] = provider
        if old is not None:
            for st in self.books.values():
                if st.provider is old:
                    st.provider = provider

    def apply(self, event: Event, topic: str, seq: int) -> None:
        """Record a published event (only stateful and scalar kinds change anything)."""
        cls = type(event)
        if cls is L2Delta or cls is L2Snapshot:
            st = self.books.get(topic)
            if st is None:
                st = self.books[topic] = _Book(self.providers.get(event.exchange))
            book = st.book   # None when the gateway's own books are served (a provider)
            if book is not None:
                if cls is L2Delta:
                    book.apply_delta(event.bids_str, event.asks_str, event.sequence)
                else:
                    book.apply_snapshot(event.bids_str, event.asks_str, event.sequence)
            if cls is L2Snapshot:
                st.valid = True
            st.seq = seq
            st.last = event
        elif cls is L3Delta or cls is L3Snapshot:
            st3 = self.l3.get(topic)
            if st3 is None:
                st3 = self.l3[topic] = _L3()
            orders = st3.orders
            if cls is L3Snapshot:
                orders.clear()
                st3.valid = True
            for row in event.orders_str:
                if is_zero(row[3]):
                    orders.pop(row[0], None)
                else:
                    orders[row[0]] = row
            if event.sequence is not None:
                st3.sequence = event.sequence
            st3.seq = seq
            st3.exchange = event.exchange
            st3.symbol = event.symbol
            st3.exchange_symbol = event.exchange_symbol
            st3.timestamp = event.timestamp
            st3.receipt_timestamp = event.receipt_timestamp
        elif cls.SCALAR:
            self.last[topic] = (event, seq)
        elif cls is Gap:
            self._gap(event)

    def _gap(self, gap: Gap) -> None:
        """A book the stream declared invalid is not served until its next snapshot, nor its
        ``bbo`` until the next one: a late joiner, who never saw the Gap, would otherwise start
        from a book (or a quote) no longer true and hold it as valid until the Reset."""
        channel = gap.channel
        if channel not in ("book", "l3", "bbo"):
            return
        head = gap_scope(channel, gap.exchange, gap.symbol)
        states: dict = self.l3 if channel == "l3" else self.books
        for name, st in states.items():
            if name.startswith(head):
                st.valid = False
        if channel != "l3":
            bbo = gap_scope("bbo", gap.exchange, gap.symbol)
            for name in [t for t in self.last if t.startswith(bbo)]:
                del self.last[name]

    def invalid(self) -> dict[str, int]:
        """Every book (and l3) topic declared invalid by a Gap and not rebuilt yet → its seq."""
        out = {t: st.seq for t, st in self.books.items() if not st.valid}
        out.update((t, st.seq) for t, st in self.l3.items() if not st.valid)
        return out

    def topics(self, prefix: str) -> list[str]:
        """Every topic with state under ``prefix``."""
        return [t for d in (self.books, self.l3, self.last) for t in d if t.startswith(prefix)]

    def item(self, topic: str) -> tuple[str, int, int | None, int, dict] | None:
        """``(topic, seq, timestamp, receipt_timestamp, body)`` of one topic's state, or None."""
        st = self.books.get(topic)
        if st is not None:
            ev = st.last
            if ev is None:   # not yet: apply() sets it with the topic's first event
                return None
            book = st.book if st.provider is None else st.provider(ev.symbol)
            if book is None or not st.valid:
                return None
            sequence = book.sequence
            bids, asks = book.snapshot()
            return (topic, st.seq, ev.timestamp, ev.receipt_timestamp, {
                "kind": "book_snapshot", "exchange": ev.exchange, "symbol": ev.symbol,
                "bids": bids, "asks": asks, "sequence": sequence, "checksum": None,
                "exchange_symbol": ev.exchange_symbol})
        st3 = self.l3.get(topic)
        if st3 is not None:
            if not st3.valid:
                return None
            return (topic, st3.seq, st3.timestamp, st3.receipt_timestamp, {
                "kind": "l3_snapshot", "exchange": st3.exchange, "symbol": st3.symbol,
                "orders": list(st3.orders.values()), "sequence": st3.sequence,
                "exchange_symbol": st3.exchange_symbol})
        last = self.last.get(topic)
        if last is not None:
            event, seq = last
            return (topic, seq, event.timestamp, event.receipt_timestamp, event.wire_body())
        return None

    def collect(self, prefix: str) -> list[tuple[str, int, int | None, int, dict]]:
        """:meth:`item` for every topic under ``prefix``."""
        return [x for x in map(self.item, self.topics(prefix)) if x is not None]


class Request(NamedTuple):
    kind: bytes        # SNAPSHOT or HELLO
    prefix: str
    request_id: bytes


def encode_request(kind: bytes, prefix: str, request_id: bytes) -> list[bytes]:
    """Frames a DEALER sends to ask for a snapshot (``SNAPSHOT``) or just the end marker (``HELLO``)."""
    return [kind, prefix.encode("ascii"), request_id]


def parse_request(frames: list[bytes]) -> Request:
    """Validate request frames (identity already removed); raises WireError."""
    if len(frames) != 3:
        raise WireError(f"snapshot request: expected 3 frames, got {len(frames)}")
    kind, prefix, rid = frames
    if kind not in (SNAPSHOT, HELLO):
        raise WireError(f"snapshot request: unknown request {bytes(kind[:16])!r}")
    if len(prefix) > MAX_PREFIX or len(rid) > MAX_REQUEST_ID:
        raise WireError("snapshot request: prefix or request id too long")
    try:
        text = bytes(prefix).decode("ascii")
    except UnicodeDecodeError:
        raise WireError("snapshot request: prefix is not ASCII") from None
    return Request(bytes(kind), text, bytes(rid))


_pack = msgpack.Packer(use_bin_type=True).pack
_pack_lock = threading.Lock()


def serve(request: Request, store: StateStore, lock: threading.Lock, gateway: str,
          epoch: int) -> list[list[bytes]]:
    """The reply messages (frames without the ROUTER identity) to one request.

    Only the copy of each topic's state happens under ``lock`` (one topic at a time);
    encoding happens outside it, so publishing is held up as briefly as possible.
    """
    rid = request.request_id
    items = []
    if request.kind != HELLO:
        with lock:
            topics = store.topics(request.prefix)
        # One topic per lock hold: a reply of many large books never stalls publishing for
        # long, and each item is still one consistent (state, seq) pair.
        for topic in topics:
            with lock:
                item = store.item(topic)
            if item is not None:
                items.append(item)
    now = time.time_ns()
    replies: list[list[bytes]] = []
    with _pack_lock:
        for topic, seq, ts, rts, body in items:
            header = codec.encode_header(gateway, epoch, seq, ts, rts, now)
            replies.append([rid, topic.encode("ascii"), header, _pack(body)])
        replies.append([rid, END, _pack([codec.WIRE_VERSION, gateway, epoch, len(items)])])
    return replies


class End(NamedTuple):
    """The end marker of a snapshot reply."""

    request_id: bytes
    gateway: str
    epoch: int
    item_count: int   # as wire.md names it (``count`` would hide tuple.count)


class Item(NamedTuple):
    """One topic's state in a snapshot reply."""

    request_id: bytes
    topic: str
    header: Header
    event: Event


def decode_reply(frames: list[bytes]) -> Item | End:
    """Decode one reply message from the snapshot service; raises WireError (ERROR replies too)."""
    if len(frames) == 4:
        topic, header, event = codec.decode(frames[1:])
        return Item(bytes(frames[0]), topic, header, event)
    if len(frames) == 3 and frames[1] == END:
        try:
            v = msgpack.unpackb(frames[2], raw=False)
        except Exception:
            raise WireError("snapshot end marker: not valid msgpack") from None
        if (type(v) is not list or len(v) < 4 or v[0] != codec.WIRE_VERSION or type(v[1]) is not str
                or type(v[2]) is not int or type(v[3]) is not int):
            raise WireError("snapshot end marker: expected [version, gateway, epoch, count]")
        return End(bytes(frames[0]), v[1], v[2], v[3])
    if len(frames) == 3 and frames[1] == ERROR:
        raise WireError(f"snapshot service error: {bytes(frames[2][:200])!r}")
    raise WireError(f"snapshot reply: unexpected shape ({len(frames)} frames)")


def error_reply(request_id: bytes, reason: str) -> list[bytes]:
    return [request_id, ERROR, _pack(reason)]
