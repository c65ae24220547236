"""Event.wire_pack(): byte for byte what msgpack makes of wire_body(), for every kind and value shape."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptofeed_types.events import EVENT_CLASSES
from feedfabric.testing.types import sample_event

_pack = msgpack.Packer(use_bin_type=True).pack

# Decimal text (kept verbatim by the events) of every length class msgpack distinguishes.
_dec = st.one_of(st.from_regex(r"-?[0-9]{1,40}(\.[0-9]{1,40})?", fullmatch=True),
                 st.builds(lambda n: "1" * n, st.sampled_from([31, 32, 255, 256, 65535, 65536])))
_text = st.one_of(st.text(max_size=40), st.builds(lambda n: "é" * n, st.sampled_from([15, 16, 127, 128, 40000])))
# Around every boundary of msgpack's integer encodings, and beyond 64 bits signed.
_edges = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
          -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63]
_int = st.one_of(st.sampled_from(_edges), st.integers(-2**63, 2**64 - 1))
_size = _dec.map(lambda d: d.lstrip("-"))   # a book's sizes are never negative (its prices may be)
_levels = st.lists(st.tuples(_dec, _size), max_size=20).map(tuple)
_orders = st.lists(st.tuples(st.text(max_size=10), st.sampled_from(["bid", "ask"]), _dec, _size), max_size=18).map(tuple)
_map = st.dictionaries(st.text(max_size=8), st.one_of(st.integers(-10**6, 10**6), st.text(max_size=8)), max_size=5)
_BY_TYPE = {"dec": _dec, "str": _text, "int": _int, "bool": st.booleans(), "levels": _levels, "orders": _orders,
            "map": _map}


def _value(type_: str) -> st.SearchStrategy:
    base = _BY_TYPE[type_.rstrip("?")]
    return st.one_of(st.none(), base) if type_.endswith("?") else base


@st.composite
def _events(draw: st.DrawFn):
    cls = EVENT_CLASSES[draw(st.sampled_from(sorted(EVENT_CLASSES)))]
    kwargs = {name: draw(_value(t)) for name, t in cls.TYPES.items()}
    return cls(**kwargs, timestamp=draw(st.one_of(st.none(), _int.filter(lambda v: v >= 0))), receipt_timestamp=0)


@given(_events())
@settings(max_examples=400, deadline=None)
def test_wire_pack_equals_msgpack_of_wire_body(event) -> None:
    assert event.wire_pack() == _pack(event.wire_body())


@pytest.mark.parametrize("kind", sorted(EVENT_CLASSES))
@pytest.mark.parametrize("full", [True, False])
def test_every_kind_sample(kind: str, full: bool) -> None:
    event = sample_event(kind, full=full)
    assert event.wire_pack() == _pack(event.wire_body())


def test_a_book_larger_than_the_stack_buffer() -> None:
    from cryptofeed_types import L2Snapshot

    bids = tuple((f"{100000 - i}.{i:04d}", f"{i}.5") for i in range(5000))    # ~100 KB: the heap path
    event = L2Snapshot("BINANCE", "BTC-USDT", bids, ())
    assert event.wire_pack() == _pack(event.wire_body())


_ts = st.one_of(st.none(), _int)


@given(st.sampled_from([1, 2, 127, 128]), st.text(max_size=300), _int, _int, _ts, _int, _int)
@settings(max_examples=300, deadline=None)
def test_pack_header_equals_msgpack_of_the_list(version, gateway, epoch, seq, ts, rts, pts) -> None:
    from cryptofeed_types.events import header_prefix, pack_header

    assert pack_header(header_prefix(version, gateway, epoch), seq, ts, rts, pts) == \
        _pack([version, gateway, epoch, seq, ts, rts, pts])
