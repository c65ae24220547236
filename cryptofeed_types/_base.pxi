# Hand-written part of events.pyx (included by the generated module): value
# normalisers and the Event base class. The per-kind classes are generated from
# schema.py by _codegen.py.

from decimal import Decimal, InvalidOperation

_DecimalType = Decimal


cdef inline bint _plain_decimal(str s):
    """True for '-'? digits ('.' digits)?: the exchange text we keep verbatim."""
    cdef Py_ssize_t n = len(s), i = 0
    cdef Py_UCS4 c
    cdef bint dot = False, digit = False
    if n == 0:
        return False
    if s[0] == '-':
        i = 1
    while i < n:
        c = s[i]
        if c >= '0' and c <= '9':
            digit = True
        elif c == '.' and not dot:
            dot = True
        else:
            return False
        i += 1
    return digit


cpdef str dec_str(object v):
    """Normalise a price/size to plain decimal text, keeping the exchange's digits.

    Strings already in plain form ('0.35210000', '-1', '42') pass through untouched
    (the hot path). Exponent forms, Decimals, ints and floats are converted exactly
    (floats via their shortest repr, which is what a JSON parser read). NaN and
    infinities are refused.
    """
    cdef object d
    if type(v) is str:
        if _plain_decimal(<str>v):
            return <str>v
        try:
            d = Decimal(<str>v)
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {v!r}") from None
    elif isinstance(v, Decimal):
        d = v
    elif type(v) is int:
        return str(v)
    elif type(v) is float:
        d = Decimal(repr(v))
    else:
        raise TypeError(f"expected a decimal string or number, got {type(v).__name__}")
    if not d.is_finite():
        raise ValueError(f"not a finite decimal: {v!r}")
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
    if type(v) is not dict:
        raise TypeError(f"{name}: expected a map, got {type(v).__name__}")
    return <dict>v


cdef tuple _levels(object v, str name):
    """(price, size) pairs -> tuple of (str, str), each value normalised by dec_str."""
    cdef list out = []
    cdef object lvl
    if v is None:
        return ()
    for lvl in v:
        if len(lvl) != 2:
            raise ValueError(f"{name}: a level is [price, size], got {lvl!r}")
        out.append((dec_str(lvl[0]), dec_str(lvl[1])))
    return tuple(out)


cdef tuple _orders(object v, str name):
    """(order id, side, price, size) rows -> tuple of (str, str, str, str)."""
    cdef list out = []
    cdef object row
    if v is None:
        return ()
    for row in v:
        if len(row) != 4:
            raise ValueError(f"{name}: an order is [id, side, price, size], got {row!r}")
        side = row[1]
        if side != "bid" and side != "ask":
            raise ValueError(f"{name}: order side must be 'bid' or 'ask', got {side!r}")
        out.append((_req_str(row[0], name), side, dec_str(row[2]), dec_str(row[3])))
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
