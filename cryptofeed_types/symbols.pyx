# cython: language_level=3
"""Normalized instruments: one text form per instrument, parsed back to the same Symbol.

Text forms::

    BTC-USDT                      spot
    BTC-USDT-PERP                 perpetual swap
    BTC-USD-20261225              dated future (expiry YYYYMMDD, UTC)
    BTC-USD-20261225-100000-C     option (strike as plain decimal, C or P)

Settlement currency, tick/lot/contract sizes and the exchange's own id are
metadata: they travel with a Symbol but are not part of its identity.
"""

from datetime import date
from decimal import Decimal

SPOT = "spot"
PERPETUAL = "perpetual"
FUTURE = "future"
OPTION = "option"
KINDS = (SPOT, PERPETUAL, FUTURE, OPTION)


cdef str _check_code(object v, str name):
    # ASCII without '-', '.' or spaces: the code becomes part of a topic and of the text form.
    if (type(v) is not str or not v or "-" in v or "." in v or " " in v or not v.isascii()
            or not v.isprintable()):
        raise ValueError(f"{name}: an ASCII currency code without '-', '.' or ' ', got {v!r}")
    return (<str>v).upper()


cdef str _check_expiry(object v):
    if type(v) is not str or len(v) != 8 or not v.isascii() or not v.isdigit():
        raise ValueError(f"expiry: YYYYMMDD, got {v!r}")
    try:
        date(int(v[:4]), int(v[4:6]), int(v[6:8]))
    except ValueError:
        raise ValueError(f"expiry: not a date, got {v!r}") from None
    return v


cdef object _opt_decimal(object v, str name):
    if v is None:
        return None
    try:
        d = Decimal(str(v)) if not isinstance(v, Decimal) else v
    except Exception:
        raise ValueError(f"{name}: not a decimal, got {v!r}") from None
    if not d.is_finite():
        raise ValueError(f"{name}: not finite, got {v!r}")
    return d


cdef class Symbol:
    """An instrument. Immutable; equal and hashed by its normalized identity."""

    cdef readonly str base
    cdef readonly str quote
    cdef readonly str kind
    cdef readonly object expiry
    cdef readonly object strike
    cdef readonly object option_type
    cdef readonly object settle
    cdef readonly object exchange_symbol
    cdef readonly object tick_size
    cdef readonly object lot_size
    cdef readonly object contract_size
    cdef readonly str normalized

    def __init__(self, base, quote, kind=SPOT, *, expiry=None, strike=None, option_type=None, settle=None,
                 exchange_symbol=None, tick_size=None, lot_size=None, contract_size=None):
        self.base = _check_code(base, "base")
        self.quote = _check_code(quote, "quote")
        if kind not in KINDS:
            raise ValueError(f"kind: one of {KINDS}, got {kind!r}")
        self.kind = kind
        if kind in (FUTURE, OPTION):
            self.expiry = _check_expiry(expiry)
        elif expiry is not None:
            raise ValueError(f"expiry: only futures and options expire ({kind})")
        if kind == OPTION:
            self.strike = _opt_decimal(strike, "strike")
            if self.strike is None or self.strike <= 0:
                raise ValueError(f"strike: a positive decimal, got {strike!r}")
            if option_type not in ("C", "P"):
                raise ValueError(f"option_type: 'C' or 'P', got {option_type!r}")
            self.option_type = option_type
        elif strike is not None or option_type is not None:
            raise ValueError("strike/option_type: only options have them")
        self.settle = None if settle is None else _check_code(settle, "settle")
        if exchange_symbol is not None and type(exchange_symbol) is not str:
            raise ValueError(f"exchange_symbol: str, got {exchange_symbol!r}")
        self.exchange_symbol = exchange_symbol
        self.tick_size = _opt_decimal(tick_size, "tick_size")
        self.lot_size = _opt_decimal(lot_size, "lot_size")
        self.contract_size = _opt_decimal(contract_size, "contract_size")
        self.normalized = self._render()

    cdef str _render(self):
        if self.kind == SPOT:
            return f"{self.base}-{self.quote}"
        if self.kind == PERPETUAL:
            return f"{self.base}-{self.quote}-PERP"
        if self.kind == FUTURE:
            return f"{self.base}-{self.quote}-{self.expiry}"
        return f"{self.base}-{self.quote}-{self.expiry}-{format(self.strike.normalize(), 'f')}-{self.option_type}"

    @staticmethod
    def parse(str text, **metadata):
        """Parse a normalized text form; keyword metadata (settle, exchange_symbol, ...) is attached."""
        parts = text.split("-")
        try:
            if len(parts) == 2:
                return Symbol(parts[0], parts[1], SPOT, **metadata)
            if len(parts) == 3 and parts[2] == "PERP":
                return Symbol(parts[0], parts[1], PERPETUAL, **metadata)
            if len(parts) == 3:
                return Symbol(parts[0], parts[1], FUTURE, expiry=parts[2], **metadata)
            if len(parts) == 5:
                return Symbol(parts[0], parts[1], OPTION, expiry=parts[2], strike=parts[3], option_type=parts[4],
                              **metadata)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a normalized symbol: {text!r} ({exc})") from None
        raise ValueError(f"not a normalized symbol: {text!r}")

    def with_metadata(self, **metadata):
        """A copy with metadata (settle, exchange_symbol, tick_size, ...) replaced."""
        args = dict(settle=self.settle, exchange_symbol=self.exchange_symbol, tick_size=self.tick_size,
                    lot_size=self.lot_size, contract_size=self.contract_size)
        args.update(metadata)
        return Symbol(self.base, self.quote, self.kind, expiry=self.expiry, strike=self.strike,
                      option_type=self.option_type, **args)

    def to_dict(self):
        return {"symbol": self.normalized, "base": self.base, "quote": self.quote, "kind": self.kind,
                "expiry": self.expiry, "strike": None if self.strike is None else str(self.strike),
                "option_type": self.option_type, "settle": self.settle, "exchange_symbol": self.exchange_symbol,
                "tick_size": None if self.tick_size is None else str(self.tick_size),
                "lot_size": None if self.lot_size is None else str(self.lot_size),
                "contract_size": None if self.contract_size is None else str(self.contract_size)}

    def __str__(self):
        return self.normalized

    def __repr__(self):
        extra = f", exchange_symbol={self.exchange_symbol!r}" if self.exchange_symbol else ""
        return f"Symbol({self.normalized!r}{extra})"

    def __eq__(self, other):
        if isinstance(other, Symbol):
            return self.normalized == (<Symbol>other).normalized
        return NotImplemented

    def __hash__(self):
        return hash(self.normalized)

    def __reduce__(self):
        return (_rebuild_symbol, (self.normalized, self.to_dict()))


def _rebuild_symbol(text, d):
    return Symbol.parse(text, settle=d["settle"], exchange_symbol=d["exchange_symbol"], tick_size=d["tick_size"],
                        lot_size=d["lot_size"], contract_size=d["contract_size"])
