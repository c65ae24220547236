"""Renders events.pyx from schema.py, so that one table defines every event kind.

Run ``python -m cryptofeed_types._codegen`` after editing schema.py; a test fails
while the committed events.pyx differs from what this prints.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).parent

# Loaded by path so that the generator runs before the package's extensions exist.
_spec = importlib.util.spec_from_file_location("_ff_schema", HERE / "schema.py")
_schema = importlib.util.module_from_spec(_spec)
sys.modules["_ff_schema"] = _schema
_spec.loader.exec_module(_schema)
KINDS, Kind = _schema.KINDS, _schema.Kind

_CDEF = {
    "dec": "str", "dec?": "object", "str": "str", "str?": "object", "int": "object", "int?": "object",
    "bool?": "object", "levels": "tuple", "orders": "tuple", "map": "dict",
}
_CHECK = {
    "dec": "dec_str({v})", "dec?": "_opt_dec({v})", "str": '_req_str({v}, "{n}")', "str?": '_opt_str({v}, "{n}")',
    "int": '_req_int({v}, "{n}")', "int?": '_opt_int({v}, "{n}")', "bool?": '_opt_bool({v}, "{n}")',
    "levels": '_levels({v}, "{n}")', "orders": '_orders({v}, "{n}")', "map": '_req_map({v}, "{n}")',
}
# Decoding checks types strictly and keeps decimal text only in its plain wire form.
_WIRE = dict(_CHECK, **{"dec": '_wire_dec({v}, "{n}")', "dec?": '_wire_opt_dec({v}, "{n}")',
                        "levels": '_wire_levels({v}, "{n}")', "orders": '_wire_orders({v}, "{n}")'})
# Decimal-carrying fields are stored as exact text in `<name>_str`; the plain name is
# a property that builds Decimals only when a Python user reads it.
_RAW = {"dec", "dec?", "levels", "orders"}


def _required(t: str) -> bool:
    return not t.endswith("?")


def _attr(name: str, t: str) -> str:
    if t == "map":
        return f"{name}_map"   # the event's own copy; the plain name is a read-only view of it
    return f"{name}_str" if t in _RAW else name


def _render_kind(k: Kind) -> str:
    req = [(n, t) for n, t in k.fields if _required(t)]
    opt = [(n, t) for n, t in k.fields if not _required(t)]
    sig = ", ".join(["self"] + [n for n, _ in req] + (["*"] + [f"{n}=None" for n, _ in opt] if opt else ["*"])
                    + ["timestamp=None", "receipt_timestamp=0"])
    out = [f"cdef class {k.cls}(Event):", f'    """{k.doc}"""', ""]
    out += [f"    KIND = {k.kind!r}", f"    CHANNEL = {k.channel!r}",
            f"    FIELDS = {tuple(n for n, _ in k.fields)!r}",
            f"    TYPES = {dict(k.fields)!r}", f"    TOPIC_KEYS = {k.topic_keys!r}",
            f"    SCALAR = {k.scalar!r}", ""]
    for n, t in k.fields:
        out.append(f"    cdef {'' if t == 'map' else 'readonly '}{_CDEF[t]} {_attr(n, t)}")
    out += ["", f"    def __init__({sig}):"]
    for n, t in k.fields:
        out.append(f"        self.{_attr(n, t)} = " + _CHECK[t].format(v=n, n=n))
    out.append("        self._set_ts(timestamp, receipt_timestamp)")
    for n, t in k.fields:
        if t in ("dec", "dec?"):
            conv = f"Decimal(self.{n}_str)" if t == "dec" else f"None if self.{n}_str is None else Decimal(self.{n}_str)"
            out += ["", "    @property", f"    def {n}(self):", f"        return {conv}"]
        elif t == "levels":
            out += ["", "    @property", f"    def {n}(self):",
                    f"        return tuple((Decimal(p), Decimal(s)) for p, s in self.{n}_str)"]
        elif t == "orders":
            out += ["", "    @property", f"    def {n}(self):",
                    f"        return tuple((o, side, Decimal(p), Decimal(s)) for o, side, p, s in self.{n}_str)"]
        elif t == "map":
            out += ["", "    @property", f"    def {n}(self):", f"        return MappingProxyType(self.{n}_map)"]
    out += ["", "    cpdef dict wire_body(self):", f"        return {{'kind': {k.kind!r},"]
    for n, t in k.fields:
        # A map is copied: what a caller does with the body must not change the event.
        value = f"dict(self.{_attr(n, t)})" if t == "map" else f"self.{_attr(n, t)}"
        out.append(f"                {n!r}: {value},")
    out[-1] = out[-1][:-1] + "}"
    out += _render_wire_pack(k)
    parts = " + '.' + ".join(f"_topic_part(self.{key})" for key in k.topic_keys)
    out += ["", "    cpdef str topic(self):", f"        return {k.channel + '.'!r} + {parts} + '.'"]
    out += ["", "    @classmethod", "    def from_wire(cls, dict body, timestamp=None, receipt_timestamp=0):",
            '        """Build from a decoded wire body, strictly: decimals must be plain decimal strings.',
            "",
            "        Unknown keys are ignored (forward compatibility); a missing required key raises",
            '        KeyError, a wrong type TypeError or ValueError."""',
            f"        cdef {k.cls} self = <{k.cls}>cls.__new__(cls)"]
    for n, t in k.fields:
        get = f"body[{n!r}]" if _required(t) else f"body.get({n!r})"
        out.append(f"        self.{_attr(n, t)} = " + _WIRE[t].format(v=get, n=n))
    out += ["        self._set_ts(timestamp, receipt_timestamp)", "        return self", "", ""]
    return "\n".join(out)


# How wire_pack writes each field type's value (see the ``_b_*`` writers in _base.pxi).
_PACK = {"dec": "_b_str", "dec?": "_b_opt_str", "str": "_b_str", "str?": "_b_opt_str", "int": "_b_int",
         "int?": "_b_int", "bool?": "_b_opt_bool", "levels": "_b_levels", "orders": "_b_orders",
         "map": "_b_generic"}


def _mp_str(text: str) -> bytes:
    """msgpack's encoding of a short key or kind (fixstr / str8), made once here."""
    raw = text.encode()
    return (bytes([0xA0 | len(raw)]) if len(raw) < 32 else bytes([0xD9, len(raw)])) + raw


def _c_bytes(data: bytes) -> str:
    """A Cython bytes literal of ``data`` and its length."""
    return "b\"" + "".join(f"\\x{c:02x}" for c in data) + f"\", {len(data)}"


def _render_wire_pack(k: Kind) -> list[str]:
    entries = 1 + len(k.fields)
    head = bytes([0x80 | entries]) if entries < 16 else bytes([0xDE]) + entries.to_bytes(2, "big")
    head += _mp_str("kind") + _mp_str(k.kind)
    out = ["", "    cpdef bytes wire_pack(self):",
           '        """``wire_body()`` msgpack-encoded, byte for byte, without building the dict."""',
           "        cdef _Buf b", "        _b_init(&b)", "        try:",
           f"            _b_raw(&b, {_c_bytes(head)})"]
    for n, t in k.fields:
        out.append(f"            _b_raw(&b, {_c_bytes(_mp_str(n))})")
        out.append(f"            {_PACK[t]}(&b, self.{_attr(n, t)})")
    out += ["            return _b_bytes(&b)", "        finally:", "            _b_free(&b)"]
    return out


def render() -> str:
    head = [
        "# cython: language_level=3",
        "# GENERATED by cryptofeed_types/_codegen.py from schema.py -- do not edit by hand.",
        '"""Every feedfabric event kind as an immutable Cython cdef class (generated from schema.py)."""',
        "",
        'include "_base.pxi"',
        "",
        "",
    ]
    body = [_render_kind(k) for k in KINDS]
    table = ["EVENT_CLASSES = {", *[f"    {k.kind!r}: {k.cls}," for k in KINDS], "}", ""]
    return "\n".join(head) + "\n".join(body) + "\n".join(table)


def main() -> None:
    target = HERE / "events.pyx"
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if target.read_text() == text else 1)
    target.write_text(text)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
