"""Compact, comparable digests of an event stream: cryptofeed's reference replay vs feedfabric's events.

A digest is a small JSON document of counts and hashes, never a copy of the data.
It is built either from a cf_reference.py JSONL file (``digest_reference``; see
../shared/tools/cf_reference.md) or from feedfabric events (``digest_events``), and
the two are compared with ``compare(reference, ours) -> list[str]`` (empty: equal).
Gateway tests call::

    from tools.cf_digest import compare, digest_events, load_reference
    diffs = compare(load_reference("BINANCE"), digest_events(events))

Per channel and symbol the digest holds the event count and, for every field, the
number of non-empty values, a sha256 over the ordered list of canonical values and
one short hash per block of ``CHUNK`` rows (so a difference is located); per channel,
``filled`` says which fields are set in all, some or none of the events. Trades:
side, amount, price, id, type, timestamp. Ticker: bid, ask, timestamp. Candles:
start, stop, interval, trades, open, high, low, close, volume, closed, timestamp.
Funding: rate, mark_price, next_funding_time, predicted_rate, timestamp. Open
interest: open_interest, timestamp. Liquidations: side, quantity, price, id, status,
timestamp. Index: price, timestamp. For ``l2_book`` only the FINAL book per symbol
counts: its depth per side, best bid/ask (price, size), a sha256 over all levels and
hashes of the top 10/25/100/1000 levels; the number of book events (and of
snapshots) is recorded but compared only on request, since publishing fewer or more
book messages than cryptofeed's callbacks is a legitimate choice. For ticker, funding, open
interest and index the digest also holds a ``changes`` section: the same per-field hashes over
only the rows where the channel's key fields (``CHANGE_KEYS``) differ from the symbol's previous
row; ``compare(..., changes=[...])`` uses it to meet a feed that publishes on every message
(cryptofeed's Bybit v5 tickers) with one that publishes on change.

Normalisation (both sides go through the same functions):

* Numbers: ``Decimal(text).normalize()`` printed without exponent, so
  '0.35210000' == '0.3521', '4714.0' == '4714', '1E+2' == '100'; zero is '0'.
* Times: integer microseconds. cryptofeed hands float seconds (1633998523.963);
  feedfabric integer ns. Float seconds carry about 16 significant digits, so
  microseconds are the finest unit both sides agree on. Feeds that hand over milliseconds
  instead (cryptofeed 2.5.0's Bybit v5 ticker/funding/open interest/index/candle times) are
  named at build time (``ms_fields``, CLI ``--ms-field``) and recorded under
  ``reference_units``. A cryptofeed timestamp that
  is a *string equal to the message's receipt time* (Binance bookTicker ``ticker``) is
  not an exchange time: it is digested as empty and so not compared.
* Symbols are keyed by feedfabric's normalized text. cryptofeed's forms map as:
  'BTC-USDT' and 'BTC-USDT-PERP' unchanged; dated futures 'BTC-USD-21Z31' ->
  'BTC-USD-20211231' (two-digit year, month letter F G H J K M N Q U V X Z,
  day without zero padding); options 'BTC-8000-21U24-put' -> 'BTC-20210924-8000-P'.
  cryptofeed drops the quote of an option (and of any symbol whose base equals its
  quote), so option keys leave the quote out on both sides: feedfabric's
  'BTC-USD-20210924-8000-P' and 'BTC-BTC-20210924-8000-P' both key as
  'BTC-20210924-8000-P'. A non-option cryptofeed symbol with base == quote
  ('BTC-21Z31') keys as 'BTC-BTC-20211231'.
* Fields cryptofeed never fills for a symbol (Kraken trade ids, Kraken and Kraken
  Futures ticker timestamps, BitMEX book timestamps) are skipped by ``compare``;
  fields it fills in some events are compared exactly, empty slots included.
* cryptofeed_v3/ captures: tools/cf_reference_v3.py writes the same JSONL as cf_reference.py;
  ``build --sample-dir`` then reads the subscription from the capture's header record.
* feedfabric's BBO can stand in for cryptofeed's ticker (``aliases={'bbo': 'ticker'}``).
  Gap, Reset, Status, Heartbeat and other kinds are counted under ``other`` only.

See docs/reference-comparison.md for what the committed reference digests contain.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from cryptofeed_types.book import OrderBook

FORMAT = "feedfabric-cf-digest/1"
CHUNK = 64
BOOK = "l2_book"
BOOK_DEPTHS = (10, 25, 100, 1000)
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "tests" / "gateways" / "reference"

ROW_FIELDS: dict[str, tuple[str, ...]] = {
    "trades": ("side", "amount", "price", "id", "type", "timestamp"),
    "ticker": ("bid", "ask", "timestamp"),
    "candles": ("start", "stop", "interval", "trades", "open", "high", "low", "close", "volume", "closed",
                "timestamp"),
    "funding": ("rate", "mark_price", "next_funding_time", "predicted_rate", "timestamp"),
    "open_interest": ("open_interest", "timestamp"),
    "liquidations": ("side", "quantity", "price", "id", "status", "timestamp"),
    "index": ("price", "timestamp"),
}
# What compare() checks by default. Trade.type is recorded but not checked: cryptofeed's
# values ('limit'/'market' on Kraken) are not a normalized vocabulary.
DEFAULT_COMPARED: dict[str, tuple[str, ...]] = {
    "trades": ("id", "price", "amount", "side", "timestamp"),
    "ticker": ("bid", "ask", "timestamp"),
    "candles": ROW_FIELDS["candles"],
    "funding": ROW_FIELDS["funding"],
    "open_interest": ROW_FIELDS["open_interest"],
    "liquidations": ROW_FIELDS["liquidations"],
    "index": ROW_FIELDS["index"],
}
# The fields whose change makes a new state, per scalar channel: the digest's ``changes`` section
# keeps, per symbol, only the rows where one of them differs from the previous row (the first row
# always), for comparing a feed that publishes on every message with one that publishes on change.
CHANGE_KEYS: dict[str, tuple[str, ...]] = {
    "ticker": ("bid", "ask"),
    "funding": ("rate", "next_funding_time", "predicted_rate"),
    "open_interest": ("open_interest",),
    "index": ("price",),
}
NUMERIC_FIELDS = frozenset({"amount", "price", "bid", "ask", "open", "high", "low", "close", "volume", "rate",
                            "mark_price", "predicted_rate", "open_interest", "quantity"})
TIME_FIELDS = frozenset({"timestamp", "start", "stop", "next_funding_time"})
# feedfabric event kind -> reference channel.
KIND_CHANNEL: dict[str, str] = {
    "trade": "trades", "ticker": "ticker", "candle": "candles", "funding": "funding",
    "open_interest": "open_interest", "liquidation": "liquidations", "index": "index",
    "book_snapshot": BOOK, "book_delta": BOOK,
}
# cf_reference.py writes Trade.type as 'trade_type'.
_REF_NAME = {("trades", "type"): "trade_type"}

_MONTHS = "FGHJKMNQUVXZ"
_EXPIRY_RE = re.compile(r"^(\d{2})([FGHJKMNQUVXZ])(\d{1,2})$")
_US = Decimal(1)


# ---------------------------------------------------------------------------- canonical values
def canon_number(value: Any) -> str | None:
    """A market value as plain normalized decimal text; '!text' marks a value that is not a number."""
    if value is None:
        return None
    if isinstance(value, bool):
        return f"!{value}"
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return f"!{value}"
    if not d.is_finite():
        return f"!{value}"
    if d.is_zero():
        return "0"
    return format(d.normalize(), "f")


def _micros(d: Decimal) -> str:
    return str(int(d.quantize(_US, rounding=ROUND_HALF_EVEN)))


def canon_seconds(value: Any) -> str | None:
    """Seconds (float, int, Decimal or numeric text, as cryptofeed hands them) -> integer microseconds."""
    if value is None:
        return None
    try:
        return _micros(Decimal(str(value)).scaleb(6))
    except (InvalidOperation, ValueError):
        return f"!{value}"


def canon_ns(value: Any) -> str | None:
    """Integer nanoseconds (feedfabric) -> integer microseconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"!{value}"
    return _micros(Decimal(value).scaleb(-3))


def _canon_other(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if field == "closed":
        return "true" if value else "false"
    if field == "trades" and isinstance(value, int | float):
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------------------- symbols
def _expiry(code: str) -> str | None:
    m = _EXPIRY_RE.match(code)
    if m is None:
        return None
    yy, letter, dd = m.groups()
    try:
        return date(2000 + int(yy), _MONTHS.index(letter) + 1, int(dd)).strftime("%Y%m%d")
    except ValueError:
        return None


def cf_symbol_key(symbol: str) -> str:
    """cryptofeed's normalized symbol -> the comparison key (feedfabric's text form; options without quote)."""
    parts = symbol.split("-")
    if len(parts) >= 4 and parts[-1] in ("call", "put"):
        expiry = _expiry(parts[-2])
        if expiry is not None:
            return f"{parts[0]}-{expiry}-{canon_number(parts[-3])}-{'C' if parts[-1] == 'call' else 'P'}"
    if len(parts) in (2, 3):
        expiry = _expiry(parts[-1])
        if expiry is not None:
            quote = parts[1] if len(parts) == 3 else parts[0]
            return f"{parts[0]}-{quote}-{expiry}"
    return symbol


def our_symbol_key(symbol: str) -> str:
    """feedfabric's normalized symbol -> the comparison key (options lose their quote, as in cryptofeed)."""
    parts = symbol.split("-")
    if len(parts) == 5 and parts[4] in ("C", "P"):
        return f"{parts[0]}-{parts[2]}-{canon_number(parts[3])}-{parts[4]}"
    return symbol


# ---------------------------------------------------------------------------- hashing
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _field_digest(values: list[str | None]) -> dict[str, Any]:
    chunks = [_sha(orjson.dumps(values[i:i + CHUNK]))[:16] for i in range(0, len(values), CHUNK)]
    return {"nonnull": sum(v is not None for v in values), "sha256": _sha(orjson.dumps(values)),
            "chunks": chunks}


def _levels_text(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> bytes:
    return (",".join(f"{p}:{s}" for p, s in bids) + "|" + ",".join(f"{p}:{s}" for p, s in asks)).encode()


def book_digest(bids: Iterable[Iterable[Any]], asks: Iterable[Iterable[Any]], *, events: int = 0,
                snapshots: int = 0, bid_levels: int | None = None, ask_levels: int | None = None) -> dict[str, Any]:
    """Digest of one final book given best-first (price, size) levels.

    ``bid_levels``/``ask_levels`` give the true depth when the levels passed are only the top
    of a deeper book; the full-book hash is then None and only the depths covered get hashes.
    """
    cb = [(canon_number(p), canon_number(s)) for p, s in bids]
    ca = [(canon_number(p), canon_number(s)) for p, s in asks]
    nb = len(cb) if bid_levels is None else bid_levels
    na = len(ca) if ask_levels is None else ask_levels
    complete = nb == len(cb) and na == len(ca)
    depth = {str(n): _sha(_levels_text(cb[:n], ca[:n])) for n in BOOK_DEPTHS
             if len(cb) >= min(n, nb) and len(ca) >= min(n, na)}
    return {"events": events, "snapshots": snapshots, "bid_levels": nb, "ask_levels": na,
            "best_bid": list(cb[0]) if cb else None, "best_ask": list(ca[0]) if ca else None,
            "sha256": _sha(_levels_text(cb, ca)) if complete else None, "depth_sha256": depth}


def _filled(nonnull: int, events: int) -> str:
    # A human-readable summary only; compare() works per symbol from the counts.
    return "none" if nonnull == 0 else "all" if nonnull == events else "some"


class _Builder:
    """Collects canonical rows per (channel, key) and final books, then renders the digest."""

    def __init__(self, producer: str) -> None:
        self.producer = producer
        self.exchange: str | None = None
        self.rows: dict[str, dict[str, dict[str, Any]]] = {}
        self.books: dict[str, dict[str, Any]] = {}
        self.timestamps: dict[str, Counter[str]] = {}
        self.other: Counter[str] = Counter()

    def add_row(self, channel: str, key: str, symbol: str, row: Mapping[str, str | None]) -> None:
        per = self.rows.setdefault(channel, {})
        ent = per.get(key)
        if ent is None:
            ent = per[key] = {"symbol": symbol, "cols": {f: [] for f in ROW_FIELDS[channel]}}
        for f, col in ent["cols"].items():
            col.append(row.get(f))

    def note_timestamp(self, channel: str, source: str) -> None:
        self.timestamps.setdefault(channel, Counter())[source] += 1

    def _changes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for ch, keys in CHANGE_KEYS.items():
            if ch not in self.rows:
                continue
            syms: dict[str, Any] = {}
            for k, e in sorted(self.rows[ch].items()):
                cols = e["cols"]
                n = len(cols[keys[0]])
                keep = [i for i in range(n) if i == 0 or any(cols[f][i] != cols[f][i - 1] for f in keys)]
                syms[k] = {"symbol": e["symbol"], "count": len(keep),
                           "fields": {f: _field_digest([v[i] for i in keep]) for f, v in cols.items()}}
            out[ch] = {"events": sum(x["count"] for x in syms.values()), "keys": list(keys), "symbols": syms}
        return out

    def render(self, channels: Iterable[str] = ()) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for ch in sorted(set(channels) | set(self.rows) | ({BOOK} if self.books else set())):
            if ch == BOOK:
                syms = {k: {"symbol": b["symbol"], "count": b["book"]["events"], "book": b["book"]}
                        for k, b in sorted(self.books.items())}
            else:
                syms = {k: {"symbol": e["symbol"], "count": len(next(iter(e["cols"].values()))),
                            "fields": {f: _field_digest(v) for f, v in e["cols"].items()}}
                        for k, e in sorted(self.rows.get(ch, {}).items())}
            entry: dict[str, Any] = {"events": sum(s["count"] for s in syms.values()), "symbols": syms}
            if ch != BOOK:
                entry["filled"] = {f: _filled(sum(s["fields"][f]["nonnull"] for s in syms.values()), entry["events"])
                                   for f in ROW_FIELDS[ch]}
            if ch in self.timestamps:
                entry["timestamp_sources"] = dict(sorted(self.timestamps[ch].items()))
            out[ch] = entry
        return {"format": FORMAT, "producer": self.producer, "exchange": self.exchange,
                "channels": out, "changes": self._changes(), "other": dict(sorted(self.other.items()))}


# ---------------------------------------------------------------------------- reference side
def canon_millis(value: Any) -> str | None:
    """Milliseconds (int, float or numeric text) -> integer microseconds."""
    if value is None:
        return None
    try:
        return _micros(Decimal(str(value)).scaleb(3))
    except (InvalidOperation, ValueError):
        return f"!{value}"


def _ref_row(channel: str, rec: Mapping[str, Any], b: _Builder,
             ms_fields: frozenset[str] = frozenset()) -> dict[str, str | None]:
    row: dict[str, str | None] = {}
    for f in ROW_FIELDS[channel]:
        v = rec.get(_REF_NAME.get((channel, f), f))
        if f == "timestamp":
            if v is None:
                b.note_timestamp(channel, "none")
            elif isinstance(v, str) and v == rec.get("receipt_timestamp"):
                # Not an exchange time (Binance bookTicker): nothing to compare against.
                b.note_timestamp(channel, "receipt")
                v = None
            else:
                b.note_timestamp(channel, "exchange")
        if f in NUMERIC_FIELDS:
            row[f] = canon_number(v)
        elif f in TIME_FIELDS:
            row[f] = canon_millis(v) if f in ms_fields else canon_seconds(v)
        else:
            row[f] = _canon_other(f, v)
    return row


def _ref_book(rec: Mapping[str, Any], events: int, snapshots: int) -> dict[str, Any]:
    bids, asks = rec["bids_top"], rec["asks_top"]
    full = len(bids) == rec["bid_levels"] and len(asks) == rec["ask_levels"]
    if full and rec.get("book_sha256") is not None:
        # With --top covering the book, cryptofeed's own whole-book hash must match the listed levels.
        text = ",".join(f"{p}:{s}" for p, s in bids) + "|" + ",".join(f"{p}:{s}" for p, s in asks)
        if _sha(text.encode()) != rec["book_sha256"]:
            raise ValueError(f"l2_book {rec['symbol']}: listed levels do not hash to book_sha256 (seq {rec['seq']})")
    return book_digest(bids, asks, events=events, snapshots=snapshots,
                       bid_levels=rec["bid_levels"], ask_levels=rec["ask_levels"])


def digest_reference(lines: Iterable[str | bytes | Mapping[str, Any]], *,
                     summary: Mapping[str, Any] | None = None,
                     subscription: Mapping[str, list[str]] | None = None,
                     captures: Mapping[str, Any] | None = None,
                     ms_fields: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
    """Digest of cf_reference.py output (JSON lines or already-parsed records).

    ``summary`` is cf_reference's summary object (versions, files, subscribed channels);
    ``subscription`` the capture's recorded configuration; ``captures`` file sizes/hashes.
    For a full-book hash, run cf_reference.py with a ``--top`` larger than any book.
    ``ms_fields`` names time fields (per channel) that this cryptofeed feed hands over in
    milliseconds instead of seconds (Bybit v5 in 2.5.0); they are read as such and the digest
    records the choice under ``reference_units``.
    """
    b = _Builder("cryptofeed")
    ms = {ch: frozenset(fs) for ch, fs in (ms_fields or {}).items()}
    for ch, fs in ms.items():
        bad = fs - TIME_FIELDS
        if ch not in ROW_FIELDS or bad:
            raise ValueError(f"ms_fields: {ch}.{sorted(bad)} is not a time field of a row channel")
    last_book: dict[str, tuple[Mapping[str, Any], int, int]] = {}
    for line in lines:
        rec = line if isinstance(line, Mapping) else orjson.loads(line)
        kind = rec["type"]
        b.exchange = b.exchange or rec.get("exchange")
        symbol = rec.get("symbol")
        if kind == BOOK:
            key = cf_symbol_key(symbol)
            _, n, snaps = last_book.get(key, (None, 0, 0))
            last_book[key] = (rec, n + 1, snaps + (not rec["is_delta"]))
        elif kind in ROW_FIELDS and symbol is not None:
            b.add_row(kind, cf_symbol_key(symbol), symbol, _ref_row(kind, rec, b, ms.get(kind, frozenset())))
        else:
            b.other[kind] += 1
    for key, (rec, n, snaps) in last_book.items():
        b.books[key] = {"symbol": rec["symbol"], "book": _ref_book(rec, n, snaps)}
    channels = list((summary or {}).get("subscription_channels") or (subscription or {}).keys())
    digest = b.render(c for c in channels if c in ROW_FIELDS or c == BOOK)
    if summary is not None:
        digest["exchange"] = digest["exchange"] or summary.get("exchange")
        digest["source"] = {k: summary.get(k) for k in (
            "cryptofeed_version", "python", "pythonhashseed", "symbol_mode", "symbol_url_fallbacks",
            "files", "messages_processed", "events_by_type")}
        # tools/cf_reference_v3.py (cryptofeed_v3 captures) also reports these.
        digest["source"].update({k: summary[k] for k in ("replayer", "unsupported_channels", "handler_errors")
                                 if k in summary})
    if subscription is not None:
        digest["subscription"] = {ch: sorted(cf_symbol_key(s) for s in syms) for ch, syms in sorted(subscription.items())}
    if captures is not None:
        digest["captures"] = dict(captures)
    if ms:
        digest["reference_units"] = {ch: {f: "ms" for f in sorted(fs)} for ch, fs in sorted(ms.items())}
    return digest


# ---------------------------------------------------------------------------- feedfabric side
def _as_dict(ev: Any) -> Mapping[str, Any]:
    if isinstance(ev, Mapping):
        return ev
    return ev.to_dict(numeric_type=str)


def digest_events(events: Iterable[Any], *, exchange: str | None = None,
                  aliases: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Digest of feedfabric events (event objects or ``ev.to_dict(numeric_type=str)`` dicts), in publish order.

    ``aliases`` maps further event kinds to reference channels, e.g. ``{'bbo': 'ticker'}`` for a
    gateway that publishes an exchange's book-ticker stream as BBO. Books are rebuilt with
    ``OrderBook`` from L2Snapshot/L2Delta; the final state per symbol is digested.
    """
    kind_channel = dict(KIND_CHANNEL)
    kind_channel.update(aliases or {})
    b = _Builder("feedfabric")
    b.exchange = exchange
    books: dict[str, tuple[str, OrderBook, list[int]]] = {}
    for ev in events:
        d = _as_dict(ev)
        kind = d.get("kind")
        channel = kind_channel.get(kind)
        symbol = d.get("symbol")
        if channel is None or symbol is None:
            b.other[str(kind)] += 1
            continue
        b.exchange = b.exchange or d.get("exchange")
        key = our_symbol_key(symbol)
        if channel == BOOK:
            ent = books.get(key)
            if ent is None:
                ent = books[key] = (symbol, OrderBook(), [0, 0])
            book, n = ent[1], ent[2]
            bids = [(str(p), str(s)) for p, s in d.get("bids") or ()]
            asks = [(str(p), str(s)) for p, s in d.get("asks") or ()]
            if kind == "book_snapshot":
                book.apply_snapshot(bids, asks)
                n[1] += 1
            else:
                book.apply_delta(bids, asks)
            n[0] += 1
            continue
        row: dict[str, str | None] = {}
        for f in ROW_FIELDS[channel]:
            v = d.get(f)
            if f in NUMERIC_FIELDS:
                row[f] = canon_number(v)
            elif f in TIME_FIELDS:
                row[f] = canon_ns(v)
            else:
                row[f] = _canon_other(f, v)
        b.note_timestamp(channel, "none" if d.get("timestamp") is None else "exchange")
        b.add_row(channel, key, symbol, row)
    for key, (symbol, book, n) in books.items():
        bids, asks = book.snapshot()
        b.books[key] = {"symbol": symbol, "book": book_digest(bids, asks, events=n[0], snapshots=n[1])}
    return b.render()


# ---------------------------------------------------------------------------- comparison
def _first_chunk(a: list[str], b: list[str]) -> int:
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b) or a[i] != b[i]:
            return i
    return 0


def _compare_rows(ch: str, key: str, ref: Mapping[str, Any], our: Mapping[str, Any], fields: Iterable[str],
                  counts: bool, diffs: list[str]) -> None:
    rc, oc = ref["count"], our["count"]
    if counts and rc != oc:
        diffs.append(f"{ch} {key}: {oc} events in ours, {rc} in the reference")
    for f in fields:
        rf, of = ref["fields"].get(f), our["fields"].get(f)
        if rf is None or rf["nonnull"] == 0:
            continue  # cryptofeed does not fill it: nothing to compare against
        if of is None or of["nonnull"] == 0:
            diffs.append(f"{ch} {key}: {f} is empty in ours, filled in {rf['nonnull']} of {rc} reference events")
            continue
        if rf["sha256"] == of["sha256"]:
            continue
        i = _first_chunk(rf["chunks"], of["chunks"])
        diffs.append(f"{ch} {key}: {f} differs, first within rows {i * CHUNK}-{min((i + 1) * CHUNK, max(rc, oc)) - 1}"
                     f" (ours {oc} events, reference {rc})")


def _compare_book(key: str, ref: Mapping[str, Any], our: Mapping[str, Any], depth: int | None,
                  book_events: bool, diffs: list[str]) -> None:
    rb, ob = ref["book"], our["book"]
    if book_events and (rb["events"], rb["snapshots"]) != (ob["events"], ob["snapshots"]):
        diffs.append(f"{BOOK} {key}: {ob['events']} book events ({ob['snapshots']} snapshots) in ours, "
                     f"{rb['events']} ({rb['snapshots']}) in the reference")
    for side in ("best_bid", "best_ask"):
        if rb[side] != ob[side]:
            diffs.append(f"{BOOK} {key}: final {side} {ob[side]} in ours, {rb[side]} in the reference")
    if depth is None:
        if (rb["bid_levels"], rb["ask_levels"]) != (ob["bid_levels"], ob["ask_levels"]):
            diffs.append(f"{BOOK} {key}: final depth {ob['bid_levels']} bids/{ob['ask_levels']} asks in ours, "
                         f"{rb['bid_levels']}/{rb['ask_levels']} in the reference")
        if rb["sha256"] is not None and rb["sha256"] != ob["sha256"]:
            where = next((n for n in BOOK_DEPTHS if rb["depth_sha256"].get(str(n)) != ob["depth_sha256"].get(str(n))),
                         None)
            at = f"within the top {where} levels" if where is not None else f"below level {BOOK_DEPTHS[-1]}"
            diffs.append(f"{BOOK} {key}: final book levels differ, first {at}")
        elif rb["sha256"] is None:
            diffs.append(f"{BOOK} {key}: the reference holds only the top of this book; compare with book_depth=")
    else:
        r, o = rb["depth_sha256"].get(str(depth)), ob["depth_sha256"].get(str(depth))
        if r is None:
            diffs.append(f"{BOOK} {key}: the reference has no top-{depth} hash (available: {sorted(rb['depth_sha256'])})")
        elif r != o:
            diffs.append(f"{BOOK} {key}: the top {depth} levels of the final book differ")


def compare(reference: Mapping[str, Any], ours: Mapping[str, Any], *,
            fields: Mapping[str, Iterable[str]] | None = None, book_depth: int | None = None,
            counts: bool = True, book_events: bool = False,
            channels: Iterable[str] | None = None, changes: Iterable[str] = ()) -> list[str]:
    """Differences between a reference digest and ours, one readable line each (empty list: equal).

    Only the reference's channels are checked (those cryptofeed subscribed), or ``channels``.
    ``fields`` overrides DEFAULT_COMPARED per channel; ``book_depth`` (one of BOOK_DEPTHS)
    compares only the top N levels of final books instead of whole books; ``counts`` checks
    per-symbol event counts of row channels; ``book_events`` also checks book event counts.
    ``changes`` names scalar channels (CHANGE_KEYS) compared through both digests' ``changes``
    section instead: per symbol only the rows where a key field changed, so a gateway that
    publishes on change meets cryptofeed's one event per message; reported as 'ticker (changes)'.
    """
    if book_depth is not None and book_depth not in BOOK_DEPTHS:
        raise ValueError(f"book_depth must be one of {BOOK_DEPTHS}, got {book_depth!r}")
    for d, who in ((reference, "reference"), (ours, "ours")):
        if d.get("format") != FORMAT:
            raise ValueError(f"{who}: not a {FORMAT} digest (format={d.get('format')!r})")
    diffs: list[str] = []
    wanted = set(channels) if channels is not None else None
    by_change = set(changes)
    for ch in by_change:
        if ch not in CHANGE_KEYS:
            raise ValueError(f"changes: {ch!r} is not one of {sorted(CHANGE_KEYS)}")
    for ch, rch in reference["channels"].items():
        if wanted is not None and ch not in wanted:
            continue
        label = ch
        if ch in by_change:
            label = f"{ch} (changes)"
            if ch not in reference.get("changes", {}):
                diffs.append(f"{label}: the reference has no changes digest for this channel")
                continue
            rch = reference["changes"][ch]
            och = ours.get("changes", {}).get(ch, {"symbols": {}})
        else:
            och = ours["channels"].get(ch, {"symbols": {}})
        rs, os_ = rch["symbols"], och["symbols"]
        for key in sorted(rs.keys() - os_.keys()):
            diffs.append(f"{label} {key}: {rs[key]['count']} events in the reference ({rs[key]['symbol']}), "
                         "none in ours")
        for key in sorted(os_.keys() - rs.keys()):
            diffs.append(f"{label} {key}: {os_[key]['count']} events in ours, none in the reference")
        for key in sorted(rs.keys() & os_.keys()):
            if ch == BOOK:
                _compare_book(key, rs[key], os_[key], book_depth, book_events, diffs)
            else:
                check = (fields or {}).get(ch, DEFAULT_COMPARED.get(ch, ROW_FIELDS[ch]))
                _compare_rows(label, key, rs[key], os_[key], check, counts, diffs)
    return diffs


def load_reference(exchange: str, directory: Path | str | None = None) -> dict[str, Any]:
    """The committed reference digest tests/gateways/reference/<EXCHANGE>.json."""
    path = Path(directory or REFERENCE_DIR) / f"{exchange}.json"
    if not path.exists():
        raise FileNotFoundError(f"no reference digest for {exchange}: {path} (see tests/gateways/reference/README.md)")
    return orjson.loads(path.read_bytes())


def dumps(digest: Mapping[str, Any]) -> bytes:
    """Stable JSON text of a digest (sorted keys, indented, trailing newline)."""
    return orjson.dumps(digest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


# ---------------------------------------------------------------------------- command line
def _capture_info(sample_dir: Path, files: Iterable[str]) -> tuple[dict[str, Any], dict[str, list[str]] | None]:
    info: dict[str, Any] = {}
    subscription = None
    for name in files:
        data = (sample_dir / name).read_bytes()
        info[name] = {"bytes": len(data), "sha256": _sha(data)}
        if name.endswith(".jsonl"):   # cryptofeed v3 capture: the subscription is in the header record
            first = orjson.loads(data.split(b"\n", 1)[0])
            if first.get("t") == "header":
                subscription = first.get("config") or {}
        elif "." in name and name.rsplit(".", 1)[1].isdigit() and ".ws." not in name and ".http." not in name:
            for line in data.decode("utf-8", "replace").splitlines():
                if line.startswith("configuration:"):
                    subscription = orjson.loads(line.split(": ", 1)[1])
    return info, subscription


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build or compare cryptofeed/feedfabric digests.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    bld = sub.add_parser("build", help="digest a cf_reference.py JSONL file")
    bld.add_argument("jsonl", type=Path)
    bld.add_argument("-o", "--out", type=Path, required=True)
    bld.add_argument("--summary", type=Path, help="cf_reference.py --summary file of the same run")
    bld.add_argument("--sample-dir", type=Path, help="the capture folder (records file sizes/sha256 and the subscription)")
    bld.add_argument("--ms-field", action="append", default=[], metavar="CHANNEL.FIELD",
                     help="a time field the feed hands over in milliseconds (repeatable), e.g. ticker.timestamp")
    cmp_ = sub.add_parser("compare", help="compare two digest files (reference first)")
    cmp_.add_argument("reference", type=Path)
    cmp_.add_argument("ours", type=Path)
    cmp_.add_argument("--book-depth", type=int)
    args = ap.parse_args(argv)
    if args.cmd == "compare":
        diffs = compare(orjson.loads(args.reference.read_bytes()), orjson.loads(args.ours.read_bytes()),
                        book_depth=args.book_depth)
        for line in diffs:
            print(line)
        return 1 if diffs else 0
    summary = orjson.loads(args.summary.read_bytes().splitlines()[-1]) if args.summary else None
    captures = subscription = None
    if args.sample_dir and summary:
        captures, subscription = _capture_info(args.sample_dir, summary.get("files") or [])
    ms_fields: dict[str, list[str]] = {}
    for item in args.ms_field:
        ch, _, f = item.partition(".")
        ms_fields.setdefault(ch, []).append(f)
    with args.jsonl.open("rb") as fp:
        digest = digest_reference(fp, summary=summary, subscription=subscription, captures=captures,
                                  ms_fields=ms_fields)
    args.out.write_bytes(dumps(digest))
    for ch, ent in digest["channels"].items():
        print(f"{digest['exchange']} {ch}: {ent['events']} events, {len(ent['symbols'])} symbols", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
