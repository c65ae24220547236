# Hand-written part of events.pyx (included by the generated module): value
# normalisers and the Event base class. The per-kind classes are generated from
# schema.py by _codegen.py.

import re
from decimal import Decimal
from types import MappingProxyType

_DecimalType = Decimal


cdef inline bint _plain_decimal(str s):
    """True for '-'? digits ('.' digits)?: the exchange text we keep verbatim."""
    cdef Py_ssize_t n = len(s), i = 0, start
    if n > 0 and s[0] == '-':
        i = 1
    start = i
    while i < n and s[i] >= '0' and s[i] <= '9':
        i += 1
    if i == start:
        return False
    if i == n:
        return True
    if s[i] != '.':
        return False
    i += 1
    start = i
    while i < n and s[i] >= '0' and s[i] <= '9':
        i += 1
    return i == n and i > start


# Anything else a decimal may legitimately look like (exponent, '+', '.5', '5.');
# Decimal() alone would also take whitespace, '_' and non-ASCII digits.
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Bounds the plain text an exponent can expand to ('1e999999999' would be a GB string).
_MAX_EXPONENT = 100


cpdef str dec_str(object v):
    """Normalise a price/size to plain decimal text, keeping the exchange's digits.

    Strings already in plain form ('0.35210000', '-1', '42') pass through untouched
    (the hot path). Exponent forms, Decimals, ints and floats are converted exactly
    (floats via their shortest repr, which is what a JSON parser read). NaN,
    infinities, junk text and exponents beyond +-100 are refused with ValueError.
    """
    cdef object d
    if type(v) is str:
        if _plain_decimal(<str>v):
            return <str>v
        if _NUMBER_RE.fullmatch(<str>v) is None:
            raise ValueError(f"not a decimal number: {v!r}")
        d = Decimal(<str>v)
    elif isinstance(v, Decimal):
        d = v
    elif type(v) is int:
        return str(v)
    elif type(v) is float:
        r = repr(v)
        # The shortest repr is already the exact plain text unless it has an exponent
        # (or is nan/inf): Decimal + format would give these same characters back.
        if _plain_decimal(r):
            return r
        d = Decimal(r)
    else:
        raise TypeError(f"expected a decimal string or number, got {type(v).__name__}")
    if not d.is_finite():
        raise ValueError(f"not a finite decimal: {v!r}")
    if not -_MAX_EXPONENT <= d.as_tuple().exponent <= _MAX_EXPONENT:
        raise ValueError(f"decimal exponent out of range: {v!r}")
    return format(d, "f")


cdef inline object _opt_dec(object v):
    return None if v is None else dec_str(v)


cdef inline str _req_str(object v, str name):
    if type(v) is not str:
        raise TypeError(f"{name}: expected str, got {type(v).__name__}")
    return <str>v


cdef inline object _opt_str(object v, str name):
    if v is None:
        return None
    return _req_str(v, name)


cdef inline object _req_int(object v, str name):
    if type(v) is not int:
        raise TypeError(f"{name}: expected int, got {type(v).__name__}")
    return v


cdef inline object _opt_int(object v, str name):
    if v is None:
        return None
    return _req_int(v, name)


cdef inline object _opt_bool(object v, str name):
    if v is None or v is True or v is False:
        return v
    raise TypeError(f"{name}: expected bool or None, got {type(v).__name__}")


cdef inline dict _req_map(object v, str name):
    # A copy: the caller's dict may change after the event is made (events are immutable; the
    # field is read through a MappingProxyType). Maps are small and rare (heartbeats).
    if type(v) is not dict:
        raise TypeError(f"{name}: expected a map, got {type(v).__name__}")
    return dict(<dict>v)


cdef tuple _levels(object v, str name):
    """(price, size) pairs -> tuple of (str, str), each value normalised by dec_str."""
    cdef list out = []
    cdef object lvl
    if v is None:
        return ()
    cdef str size
    for lvl in v:
        if len(lvl) != 2:
            raise ValueError(f"{name}: a level is [price, size], got {lvl!r}")
        size = dec_str(lvl[1])
        # A price may be negative (spreads, combos); a size never: an exchange's garbage is
        # refused here rather than published (0 deletes the level).
        if size[0] == "-" and size.strip("-0.") != "":   # "-0" is a zero: a delete
            raise ValueError(f"{name}: a level's size is negative: {lvl!r}")
        out.append((dec_str(lvl[0]), size))
    return tuple(out)


cdef tuple _orders(object v, str name):
    """(order id, side, price, size) rows -> tuple of (str, str, str, str)."""
    cdef list out = []
    cdef object row
    cdef str size
    if v is None:
        return ()
    for row in v:
        if len(row) != 4:
            raise ValueError(f"{name}: an order is [id, side, price, size], got {row!r}")
        side = row[1]
        if side != "bid" and side != "ask":
            raise ValueError(f"{name}: order side must be 'bid' or 'ask', got {side!r}")
        size = dec_str(row[3])
        if size[0] == "-" and size.strip("-0.") != "":
            raise ValueError(f"{name}: an order's size is negative: {row!r}")
        out.append((_req_str(row[0], name), side, dec_str(row[2]), size))
    return tuple(out)


# --- strict wire decoding (from_wire): plain decimal strings only, lists as msgpack gives them ---

cdef inline str _wire_dec(object v, str name):
    if type(v) is not str or not _plain_decimal(<str>v):
        raise ValueError(f"{name}: expected a plain decimal string, got {v!r:.40}")
    return <str>v


cdef inline object _wire_opt_dec(object v, str name):
    if v is None:
        return None
    return _wire_dec(v, name)


cdef tuple _wire_levels(object v, str name):
    cdef list out = []
    cdef object lvl
    # Lists from msgpack; tuples when a Python wire_body() is fed back (pickle).
    if type(v) is not list and type(v) is not tuple:
        raise TypeError(f"{name}: expected an array of [price, size], got {type(v).__name__}")
    for lvl in v:
        if (type(lvl) is not list and type(lvl) is not tuple) or len(lvl) != 2:
            raise ValueError(f"{name}: a level is [price, size], got {lvl!r:.40}")
        out.append((_wire_dec(lvl[0], name), _wire_dec(lvl[1], name)))
    return tuple(out)


cdef tuple _wire_orders(object v, str name):
    cdef list out = []
    cdef object row
    if type(v) is not list and type(v) is not tuple:
        raise TypeError(f"{name}: expected an array of [id, side, price, size], got {type(v).__name__}")
    for row in v:
        if (type(row) is not list and type(row) is not tuple) or len(row) != 4:
            raise ValueError(f"{name}: an order is [id, side, price, size], got {row!r:.40}")
        side = row[1]
        if side != "bid" and side != "ask":
            raise ValueError(f"{name}: order side must be 'bid' or 'ask', got {side!r:.20}")
        out.append((_req_str(row[0], name), side, _wire_dec(row[2], name), _wire_dec(row[3], name)))
    return tuple(out)


cdef class Event:
    """Base of every event: exchange and receipt timestamps in integer nanoseconds.

    Subclasses are immutable; ``wire_body()`` gives the exact wire form (decimals as
    the exchange's strings) and ``to_dict()`` a user-facing dict.
    """

    cdef readonly object timestamp
    cdef readonly object receipt_timestamp

    KIND = None
    CHANNEL = None
    FIELDS = ()
    TYPES = {}
    TOPIC_KEYS = ()

    cdef _set_ts(self, object timestamp, object receipt_timestamp):
        self.timestamp = _opt_int(timestamp, "timestamp")
        self.receipt_timestamp = _req_int(receipt_timestamp, "receipt_timestamp")

    cpdef dict wire_body(self):
        raise NotImplementedError

    cpdef bytes wire_pack(self):
        raise NotImplementedError

    cpdef str topic(self):
        raise NotImplementedError

    def to_dict(self, numeric_type=Decimal):
        """Fields as a dict; decimals converted with ``numeric_type`` (Decimal, str, float)."""
        cdef dict d = self.wire_body()
        types = type(self).TYPES
        for name, t in types.items():
            v = d[name]
            if v is None:
                continue
            if t == "dec" or t == "dec?":
                d[name] = numeric_type(v)
            elif t == "levels":
                d[name] = [[numeric_type(p), numeric_type(s)] for p, s in v]
            elif t == "orders":
                d[name] = [[o, side, numeric_type(p), numeric_type(s)] for o, side, p, s in v]
        d["timestamp"] = self.timestamp
        d["receipt_timestamp"] = self.receipt_timestamp
        return d

    def __eq__(self, other):
        if type(self) is not type(other):
            return NotImplemented
        return (self.timestamp == (<Event>other).timestamp
                and self.receipt_timestamp == (<Event>other).receipt_timestamp
                and self.wire_body() == (<Event>other).wire_body())

    def __hash__(self):
        return hash((type(self).__name__, self.timestamp, self.receipt_timestamp, self.topic()))

    def __repr__(self):
        body = self.wire_body()
        del body["kind"]
        parts = [f"{k}={v!r}" for k, v in body.items() if v is not None]
        parts.append(f"timestamp={self.timestamp!r}")
        parts.append(f"receipt_timestamp={self.receipt_timestamp!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __reduce__(self):
        return (_rebuild, (type(self), self.wire_body(), self.timestamp, self.receipt_timestamp))


def _rebuild(cls, body, timestamp, receipt_timestamp):
    return cls.from_wire(body, timestamp, receipt_timestamp)


_SAFE_TOPIC = str.maketrans({".": "_", " ": "_"})


cdef inline str _topic_part(object v):
    # A '.' inside a component would break prefix matching (the terminator), so it
    # is escaped; the exact value is always in the body.
    if v is None:
        return "_"
    if "." in <str>v or " " in <str>v:
        return (<str>v).translate(_SAFE_TOPIC)
    return <str>v


# --- the wire decoder's hot path ---
# bus/codec.py is the reference (docs/wire.md); it installs its error type, Header class
# and limits here and uses this compiled copy of its decode(): the same checks, in the
# same order, with the same messages, minus the Python call overhead per frame.

cdef object _wire_error = ValueError
cdef object _header_cls = tuple
cdef object _unpackb = None
cdef Py_ssize_t _max_frame = 0
cdef Py_ssize_t _max_topic = 0
cdef object _wire_version = 1
_FRAME_TYPES = (bytes, bytearray, memoryview)


def _configure_decoder(wire_error, header_cls, unpackb, Py_ssize_t max_frame, Py_ssize_t max_topic, version):
    """Called once by bus.codec at import."""
    global _wire_error, _header_cls, _unpackb, _max_frame, _max_topic, _wire_version
    _wire_error, _header_cls, _unpackb = wire_error, header_cls, unpackb
    _max_frame, _max_topic, _wire_version = max_frame, max_topic, version


cdef object _unpack_frame(object frame, str what):
    if type(frame) is not bytes and not isinstance(frame, _FRAME_TYPES):
        raise _wire_error(f"{what}: expected bytes, got {type(frame).__name__}")
    if len(frame) > _max_frame:
        raise _wire_error(f"{what}: {len(frame)} bytes exceeds the {_max_frame} byte limit")
    try:
        return _unpackb(frame)
    except Exception as exc:  # msgpack raises several unrelated types on junk
        raise _wire_error(f"{what}: not valid msgpack ({type(exc).__name__}: {exc})") from None


def _decode_frames(frames):
    """Compiled ``bus.codec.decode``: [topic, header, body] -> (topic, Header, Event)."""
    cdef object f, h, body, kind, cls, version, gateway, epoch, seq, ts, rts, pts
    cdef str topic
    cdef list hl
    cdef Event event
    if (type(frames) is not list and not isinstance(frames, (list, tuple))) or len(frames) != 3:
        got = len(frames) if isinstance(frames, (list, tuple)) else type(frames).__name__
        raise _wire_error(f"expected 3 frames, got {got}")
    # topic
    f = frames[0]
    if type(f) is not bytes:
        if not isinstance(f, _FRAME_TYPES):
            raise _wire_error(f"topic: expected bytes, got {type(f).__name__}")
        f = bytes(f)
    if len(<bytes>f) > _max_topic:
        raise _wire_error(f"topic: longer than {_max_topic} bytes")
    try:
        topic = (<bytes>f).decode("ascii")
    except UnicodeDecodeError:
        raise _wire_error("topic: not ASCII") from None
    if len(topic) == 0 or topic[len(topic) - 1] != "." or topic.count(".") < 2:
        raise _wire_error(f"topic: {topic[:80]!r} does not end with the '.' terminator")
    # header
    h = _unpack_frame(frames[1], "header")
    if type(h) is not list or len(<list>h) < 7:
        raise _wire_error("header: expected a msgpack array of 7 items")
    hl = <list>h
    if len(hl) > 7:
        del hl[7:]  # items appended by a later additive revision
    version, gateway, epoch, seq, ts, rts, pts = hl
    if type(version) is not int or version != _wire_version:
        raise _wire_error(f"header: unsupported wire version {version!r}")
    if type(gateway) is not str or type(epoch) is not int or type(seq) is not int:
        raise _wire_error("header: gateway must be str, epoch and seq int")
    if epoch < 0 or seq < 0:
        raise _wire_error("header: epoch and seq must be unsigned (uint64)")
    if (ts is not None and type(ts) is not int) or type(rts) is not int or type(pts) is not int:
        raise _wire_error("header: timestamps must be integer nanoseconds")
    header = tuple.__new__(_header_cls, hl)
    # body
    body = _unpack_frame(frames[2], "body")
    if type(body) is not dict:
        raise _wire_error("body: expected a msgpack map")
    kind = (<dict>body).get("kind")
    cls = EVENT_CLASSES.get(kind) if type(kind) is str else None
    if cls is None:
        raise _wire_error(f"body: unknown event kind {kind!r:.80}")
    try:
        event = cls.from_wire(body, ts, rts)
    except (KeyError, TypeError, ValueError) as exc:
        raise _wire_error(f"body: invalid {kind}: {type(exc).__name__}: {exc}") from None
    if event.topic() != topic:
        raise _wire_error(f"topic {topic[:80]!r} does not match the body ({event.topic()[:80]!r})")
    return topic, header, event


# ---- the wire body straight to msgpack (``wire_pack``) -------------------------------------
#
# Byte for byte what ``msgpack.Packer(use_bin_type=True).pack(self.wire_body())`` gives, but
# written from the fields without building the dict: the publisher's largest cost per event
# after the adapter. Keys and the kind are msgpack text made once by the generator; values
# follow msgpack's own choice of the smallest encoding (tests/types compare with msgpack).

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

cdef enum:
    _STACK = 1024


cdef struct _Buf:
    char* data
    Py_ssize_t n
    Py_ssize_t cap
    bint heap
    char stack[_STACK]


cdef inline void _b_init(_Buf* b):
    b.data = b.stack
    b.n = 0
    b.cap = _STACK
    b.heap = False


cdef inline void _b_free(_Buf* b):
    if b.heap:
        PyMem_Free(b.data)
        b.heap = False


cdef int _b_grow(_Buf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap = b.cap
    while cap < b.n + extra:
        cap *= 2
    cdef char* data
    if b.heap:
        data = <char*>PyMem_Realloc(b.data, cap)
    else:
        data = <char*>PyMem_Malloc(cap)
        if data != NULL:
            memcpy(data, b.data, b.n)
    if data == NULL:
        raise MemoryError()
    b.data = data
    b.cap = cap
    b.heap = True
    return 0


cdef inline int _b_raw(_Buf* b, const char* s, Py_ssize_t n) except -1:
    if b.n + n > b.cap:
        _b_grow(b, n)
    memcpy(b.data + b.n, s, n)
    b.n += n
    return 0


cdef inline int _b_byte_be(_Buf* b, unsigned char tag, uint64_t v, int size) except -1:
    """``tag`` then ``v`` as ``size`` big-endian bytes."""
    if b.n + 1 + size > b.cap:
        _b_grow(b, 1 + size)
    b.data[b.n] = <char>tag
    cdef int i
    for i in range(size):
        b.data[b.n + size - i] = <char>((v >> (8 * i)) & 0xff)
    b.n += 1 + size
    return 0


cdef inline int _b_tag(_Buf* b, unsigned char tag) except -1:
    if b.n + 1 > b.cap:
        _b_grow(b, 1)
    b.data[b.n] = <char>tag
    b.n += 1
    return 0


cdef int _b_str(_Buf* b, object s) except -1:
    cdef Py_ssize_t n
    cdef const char* u = PyUnicode_AsUTF8AndSize(s, &n)
    if n < 32:
        _b_tag(b, 0xa0 | <unsigned char>n)
    elif n < 256:
        _b_byte_be(b, 0xd9, n, 1)
    elif n < 65536:
        _b_byte_be(b, 0xda, n, 2)
    else:
        _b_byte_be(b, 0xdb, n, 4)
    return _b_raw(b, u, n)


cdef inline int _b_opt_str(_Buf* b, object s) except -1:
    if s is None:
        return _b_tag(b, 0xc0)
    return _b_str(b, s)


cdef int _b_int(_Buf* b, object v) except -1:
    if v is None:
        return _b_tag(b, 0xc0)
    cdef long long x
    try:
        x = v
    except OverflowError:
        return _b_generic(b, v)     # beyond int64: msgpack's own uint64 (or its error)
    if x < -(1 << 5):
        if x < -(1 << 15):
            if x < -(1LL << 31):
                return _b_byte_be(b, 0xd3, <uint64_t>x, 8)
            return _b_byte_be(b, 0xd2, <uint64_t>x & 0xffffffffULL, 4)
        if x < -(1 << 7):
            return _b_byte_be(b, 0xd1, <uint64_t>x & 0xffffULL, 2)
        return _b_byte_be(b, 0xd0, <uint64_t>x & 0xffULL, 1)
    if x < (1 << 7):
        return _b_tag(b, <unsigned char>(x & 0xff))     # positive and negative fixint
    if x < (1 << 16):
        if x < (1 << 8):
            return _b_byte_be(b, 0xcc, x, 1)
        return _b_byte_be(b, 0xcd, x, 2)
    if x < (1LL << 32):
        return _b_byte_be(b, 0xce, x, 4)
    return _b_byte_be(b, 0xcf, x, 8)


cdef inline int _b_opt_bool(_Buf* b, object v) except -1:
    if v is None:
        return _b_tag(b, 0xc0)
    return _b_tag(b, 0xc3 if v else 0xc2)


cdef int _b_array(_Buf* b, Py_ssize_t n) except -1:
    if n < 16:
        return _b_tag(b, 0x90 | <unsigned char>n)
    if n < 65536:
        return _b_byte_be(b, 0xdc, n, 2)
    return _b_byte_be(b, 0xdd, n, 4)


cdef int _b_levels(_Buf* b, tuple levels) except -1:
    _b_array(b, len(levels))
    cdef tuple lvl
    for lvl in levels:
        _b_tag(b, 0x92)
        _b_str(b, lvl[0])
        _b_str(b, lvl[1])
    return 0


cdef int _b_orders(_Buf* b, tuple orders) except -1:
    _b_array(b, len(orders))
    cdef tuple row
    for row in orders:
        _b_tag(b, 0x94)
        _b_str(b, row[0])
        _b_str(b, row[1])
        _b_str(b, row[2])
        _b_str(b, row[3])
    return 0


_generic_pack = None


cdef int _b_generic(_Buf* b, object v) except -1:
    """Values with no fast path (a map field, an int beyond 64 bits): msgpack itself."""
    global _generic_pack
    if _generic_pack is None:
        import msgpack
        _generic_pack = msgpack.Packer(use_bin_type=True).pack
    cdef bytes packed = _generic_pack(v)
    return _b_raw(b, packed, len(packed))


cdef inline bytes _b_bytes(_Buf* b):
    return PyBytes_FromStringAndSize(b.data, b.n)


def header_prefix(object version, str gateway, object epoch):
    """The first three items of a header frame, msgpack-encoded once per (gateway, epoch):
    the array head, version, gateway and epoch (see :func:`pack_header`)."""
    cdef _Buf b
    _b_init(&b)
    try:
        _b_tag(&b, 0x97)
        _b_int(&b, version)
        _b_str(&b, gateway)
        _b_int(&b, epoch)
        return _b_bytes(&b)
    finally:
        _b_free(&b)


cpdef bytes pack_header(bytes prefix, object seq, object timestamp, object receipt_timestamp, object publish_ts):
    """A header frame, ``[version, gateway, epoch, seq, exchange_ts, receipt_ts, publish_ts]``
    msgpack-encoded, from the :func:`header_prefix` of its first three items: byte for byte
    what msgpack makes of the list, without building it (once per published message)."""
    cdef _Buf b
    _b_init(&b)
    try:
        _b_raw(&b, prefix, len(prefix))
        _b_int(&b, seq)
        _b_int(&b, timestamp)
        _b_int(&b, receipt_timestamp)
        _b_int(&b, publish_ts)
        return _b_bytes(&b)
    finally:
        _b_free(&b)
