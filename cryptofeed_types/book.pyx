# cython: language_level=3
"""The L2 order-book engine: exact price strings, keyed by scaled integers.

Each side maps an integer key (the price scaled by 10**18, parsed in C from the
exchange's text) to the exchange's own (price, size) strings, and keeps the keys
sorted in a plain list (``bisect`` is C code; books of a few thousand levels
move a few KB per insert, cheaper than any tree in Python). No Decimal is ever
built here: checksums and wire frames use the exact strings.

Also: top-N, depth, crossed-book detection and the CRC32 checksums of Kraken
and OKX (the same format serves Bitget), computed from the exact strings.
"""

import re
from bisect import bisect_left
from decimal import Decimal
from zlib import crc32

from cpython.bytes cimport PyBytes_FromStringAndSize

cdef enum:
    SCALE = 18

cdef list _POW10 = [10 ** i for i in range(SCALE + 1)]
_PRICE_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


cpdef object price_key(str s):
    """The price as an integer number of 1e-18 units (exact for up to 18 decimals)."""
    cdef Py_ssize_t n = len(s), i = 0
    cdef unsigned long long mant = 0
    cdef int digits = 0, frac = -1
    cdef bint neg = False
    cdef Py_UCS4 c
    if n == 0:
        raise ValueError("empty price")
    if s[0] == '-':
        neg = True
        i = 1
    while i < n:
        c = s[i]
        if c >= '0' and c <= '9':
            if frac >= 0:
                frac += 1
            if mant != 0 or c != '0':
                digits += 1
            mant = mant * 10 + (<unsigned long long>c - 48)
            if digits > 18 or frac > SCALE:
                return _slow_key(s)
        elif c == '.' and frac < 0:
            frac = 0
        else:
            return _slow_key(s)
        i += 1
    if mant == 0 and digits == 0 and not _has_digit(s):
        raise ValueError(f"not a price: {s!r}")
    if frac < 0:
        frac = 0
    key = <object>mant * _POW10[SCALE - frac]
    return -key if neg else key


cdef bint _has_digit(str s):
    cdef Py_UCS4 c
    for c in s:
        if c >= '0' and c <= '9':
            return True
    return False


cdef object _slow_key(str s):
    # More than 18 significant digits or decimals, or an exponent: exact integer
    # arithmetic on the digits (Decimal.scaleb would round to the context's 28 digits).
    if _PRICE_RE.fullmatch(s) is None:
        raise ValueError(f"not a price: {s!r}")
    sign, digits, exp = Decimal(s).as_tuple()
    if not -100 <= exp <= 100:
        raise ValueError(f"price exponent out of range: {s!r}")
    mant = int("".join(map(str, digits)))
    exp += SCALE
    if exp >= 0:
        key = mant * 10 ** exp
    else:
        key, rest = divmod(mant, 10 ** -exp)
        if rest:
            raise ValueError(f"price has more than {SCALE} significant decimals: {s!r}")
    return -key if sign else key


cpdef bint is_zero(str s):
    """True when a size string means zero ('0', '0.000', '-0', '0e-8')."""
    cdef Py_UCS4 c
    cdef bint digit = False
    for c in s:
        if c == '0':
            digit = True
        elif c != '.' and c != '-':
            if c == 'e' or c == 'E':
                try:
                    return Decimal(s) == 0
                except Exception:
                    return False
            return False
    return digit


cdef class BookSide:
    """One side of a book. ``descending`` sides (bids) list their best (highest) level first."""

    cdef dict _levels
    cdef list _keys
    cdef readonly bint descending

    def __init__(self, bint descending):
        self._levels = {}
        self._keys = []
        self.descending = descending

    cpdef void clear(self):
        self._levels.clear()
        self._keys.clear()

    cpdef void set(self, str price, str size):
        """Set a level; a zero size deletes it (deleting a missing level is a no-op)."""
        key = price_key(price)
        if is_zero(size):
            if self._levels.pop(key, None) is not None:
                del self._keys[bisect_left(self._keys, key)]
            return
        if key not in self._levels:
            self._keys.insert(bisect_left(self._keys, key), key)
        self._levels[key] = (price, size)

    cpdef void load(self, object levels):
        """Replace the side with these levels (the same result as clear() then set() each,
        in O(n log n): one sort instead of an insertion per level)."""
        cdef dict d = {}
        for lvl in levels:
            price = lvl[0]
            size = lvl[1]
            key = price_key(price)
            if is_zero(size):
                d.pop(key, None)
            else:
                d[key] = (price, size)
        self._levels = d
        self._keys = sorted(d)

    cpdef object best(self):
        """(price, size) of the best level, or None when empty."""
        if not self._keys:
            return None
        return self._levels[self._keys[-1] if self.descending else self._keys[0]]

    cpdef object best_key(self):
        if not self._keys:
            return None
        return self._keys[-1] if self.descending else self._keys[0]

    cpdef list top(self, Py_ssize_t n=-1):
        """The first n levels (all when n < 0), best first, as (price, size) strings."""
        cdef Py_ssize_t total = len(self._keys)
        cdef list keys
        if n < 0 or n > total:
            n = total
        if self.descending:
            keys = self._keys[total - n:]
            keys.reverse()
        else:
            keys = self._keys[:n]
        levels = self._levels
        return [levels[k] for k in keys]

    cpdef void truncate(self, Py_ssize_t depth):
        """Keep only the best ``depth`` levels."""
        self.cut(depth)

    cpdef list cut(self, Py_ssize_t depth):
        """Keep only the best ``depth`` levels; returns the prices removed (None when none)."""
        cdef Py_ssize_t total = len(self._keys)
        if depth < 0 or total <= depth:
            return None
        if self.descending:
            drop = self._keys[:total - depth]
            del self._keys[:total - depth]
        else:
            drop = self._keys[depth:]
            del self._keys[depth:]
        levels = self._levels
        return [levels.pop(k)[0] for k in drop]

    def get(self, str price):
        """The size string at a price, or None."""
        lvl = self._levels.get(price_key(price))
        return None if lvl is None else lvl[1]

    def __len__(self):
        return len(self._keys)

    def __iter__(self):
        return iter(self.top())


cdef class OrderBook:
    """An L2 book of one symbol. ``max_depth`` (0 = unlimited) keeps only the best levels."""

    cdef readonly BookSide bids
    cdef readonly BookSide asks
    cdef readonly Py_ssize_t max_depth
    cdef readonly object sequence

    def __init__(self, Py_ssize_t max_depth=0):
        self.bids = BookSide(True)
        self.asks = BookSide(False)
        self.max_depth = max_depth
        self.sequence = None

    cpdef void apply_snapshot(self, object bids, object asks, object sequence=None):
        """Replace the whole book with these (price, size) levels."""
        self.bids.load(bids)
        self.asks.load(asks)
        if self.max_depth > 0:
            self.bids.truncate(self.max_depth)
            self.asks.truncate(self.max_depth)
        if sequence is not None:
            self.sequence = sequence

    cpdef void apply_delta(self, object bids, object asks, object sequence=None):
        """Apply level changes (size 0 = delete)."""
        self.apply_delta_cut(bids, asks, sequence)

    cpdef tuple apply_delta_cut(self, object bids, object asks, object sequence=None):
        """``apply_delta``, returning the prices ``max_depth`` cut off: (bid prices, ask prices),
        each None when nothing was cut (so a published delta can carry them as deletes)."""
        cdef BookSide side = self.bids
        for lvl in bids:
            side.set(lvl[0], lvl[1])
        side = self.asks
        for lvl in asks:
            side.set(lvl[0], lvl[1])
        if sequence is not None:
            self.sequence = sequence
        if self.max_depth > 0:
            return self.bids.cut(self.max_depth), self.asks.cut(self.max_depth)
        return None, None

    cpdef void clear(self):
        self.bids.clear()
        self.asks.clear()
        self.sequence = None

    cpdef object best_bid(self):
        return self.bids.best()

    cpdef object best_ask(self):
        return self.asks.best()

    cpdef bint is_crossed(self):
        """True when the best bid is at or above the best ask (an invalid book)."""
        b = self.bids.best_key()
        a = self.asks.best_key()
        return b is not None and a is not None and b >= a

    def snapshot(self, Py_ssize_t depth=-1):
        """(bids, asks), best first, as lists of (price, size) strings."""
        return self.bids.top(depth), self.asks.top(depth)

    def __eq__(self, other):
        if not isinstance(other, OrderBook):
            return NotImplemented
        return self.snapshot() == other.snapshot()

    def __repr__(self):
        return (f"OrderBook(bids={len(self.bids)}, asks={len(self.asks)}, best_bid={self.best_bid()}, "
                f"best_ask={self.best_ask()})")

    def checksum_kraken(self, Py_ssize_t depth=10):
        # Straight from the sides, no level lists (Kraken v1 verifies every update), into a C
        # buffer: appending to a bytearray char by char cost ~3.5 us per checksum.
        cdef _CkText text
        text.n = 0
        text.spill = False
        _kraken_side(self.asks, depth, &text)
        _kraken_side(self.bids, depth, &text)
        if not text.spill:
            return crc32(PyBytes_FromStringAndSize(text.data, text.n))
        return _kraken_checksum_slow(self.bids.top(depth), self.asks.top(depth))

    def checksum_okx(self, Py_ssize_t depth=25):
        return okx_checksum(self.bids.top(depth), self.asks.top(depth))


cdef enum:
    _CK_CAP = 4096   # 20 levels of price + size text; longer (or non-ASCII) text takes the slow path


cdef struct _CkText:
    char data[_CK_CAP]
    Py_ssize_t n
    bint spill


cdef inline void _kraken_put(str s, _CkText* text):
    """Append ``s`` without '.' and leading zeros, as Kraken's checksum text wants it; sets
    ``spill`` instead when it doesn't fit (the caller then takes the slow path)."""
    cdef bint lead = True
    cdef Py_UCS4 c
    for c in s:
        if c == '.' or (lead and c == '0'):
            continue
        lead = False
        if c >= 128 or text.n >= _CK_CAP:
            text.spill = True
            return
        text.data[text.n] = <char>c
        text.n += 1


cdef void _kraken_side(BookSide side, Py_ssize_t depth, _CkText* text):
    cdef list keys = side._keys
    cdef dict levels = side._levels
    cdef Py_ssize_t total = len(keys), n = min(total, depth), i
    cdef tuple lvl
    for i in range(n):
        lvl = <tuple>levels[keys[total - 1 - i] if side.descending else keys[i]]
        _kraken_put(<str>lvl[0], text)
        _kraken_put(<str>lvl[1], text)


def kraken_checksum(bids, asks):
    """Kraken's CRC32 (websocket v1 and v2): top 10 asks then top 10 bids, each price and
    size without '.' and leading zeros, concatenated; unsigned 32-bit.

    For v2 the strings must be formatted with the pair's price/qty precision first.
    """
    cdef _CkText text
    text.n = 0
    text.spill = False
    for p, s in asks[:10]:
        _kraken_put(p, &text)
        _kraken_put(s, &text)
    for p, s in bids[:10]:
        _kraken_put(p, &text)
        _kraken_put(s, &text)
    if not text.spill:
        return crc32(PyBytes_FromStringAndSize(text.data, text.n))
    return _kraken_checksum_slow(bids[:10], asks[:10])


cdef object _kraken_checksum_slow(bids, asks):
    """The same checksum in Python, for text the C buffer can't hold (longer, or not ASCII)."""
    text = "".join(x.replace(".", "").lstrip("0") for level in (*asks, *bids) for x in level)
    return crc32(text.encode())


def okx_checksum(bids, asks):
    """OKX's (and Bitget's) CRC32: up to 25 levels interleaved bid:size:ask:size joined with
    ':', as a signed 32-bit integer."""
    parts = []
    cdef Py_ssize_t i, nb = min(len(bids), 25), na = min(len(asks), 25)
    for i in range(max(nb, na)):
        if i < nb:
            parts.append(bids[i][0])
            parts.append(bids[i][1])
        if i < na:
            parts.append(asks[i][0])
            parts.append(asks[i][1])
    c = crc32(":".join(parts).encode())
    return c - (1 << 32) if c >= (1 << 31) else c
