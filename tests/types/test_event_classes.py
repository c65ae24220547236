"""Event classes: construction, immutability, equality/hash/repr, to_dict, pickle and exact decimals."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from cryptofeed_types import EVENT_CLASSES, Heartbeat, L2Delta, L3Delta, Trade, dec_str
from cryptofeed_types.schema import KINDS
from feedfabric.testing.types import EXCHANGE_TS, RECEIPT_TS, sample_event

ALL_KINDS = [k.kind for k in KINDS]


def test_every_schema_kind_has_a_class() -> None:
    assert list(EVENT_CLASSES) == ALL_KINDS
    for k in KINDS:
        cls = EVENT_CLASSES[k.kind]
        assert cls.__name__ == k.cls
        assert cls.KIND == k.kind and cls.CHANNEL == k.channel
        assert cls.FIELDS == tuple(n for n, _ in k.fields)
        assert cls.TYPES == dict(k.fields)
        assert cls.SCALAR is k.scalar


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("full", [True, False])
def test_construct_and_read_back(kind: str, full: bool) -> None:
    ev = sample_event(kind, full=full)
    cls = type(ev)
    assert ev.timestamp == (EXCHANGE_TS if full else None)
    assert ev.receipt_timestamp == RECEIPT_TS
    body = ev.wire_body()
    assert body["kind"] == kind
    assert set(body) == {"kind", *cls.FIELDS}
    for name, type_ in cls.TYPES.items():
        value = getattr(ev, name)
        if body[name] is None:
            assert value is None
        elif type_ in ("dec", "dec?"):
            assert value == Decimal(body[name]) and isinstance(value, Decimal)
            assert getattr(ev, name + "_str") == body[name]
        elif type_ == "levels":
            assert value == tuple((Decimal(p), Decimal(s)) for p, s in body[name])
        elif type_ == "orders":
            assert value == tuple((o, side, Decimal(p), Decimal(s)) for o, side, p, s in body[name])
        else:
            assert value == body[name]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_immutable(kind: str) -> None:
    ev = sample_event(kind)
    for name in (*type(ev).FIELDS, "timestamp", "receipt_timestamp"):
        attr = name + "_str" if type(ev).TYPES.get(name) in ("dec", "dec?", "levels", "orders") else name
        with pytest.raises(AttributeError):
            setattr(ev, attr, getattr(ev, attr))
    with pytest.raises(AttributeError):
        ev.extra = 1  # type: ignore[attr-defined]


def test_map_fields_are_read_only_copies() -> None:
    # A heartbeat's counters and feeds: neither the caller's dict nor what wire_body/to_dict return
    # can change the event afterwards.
    counters, feeds = {"messages": 1, "book_seqs": {"book.EX.A-B.": 3}}, {"EX.0": "connected"}
    hb = Heartbeat("gw", counters, feeds, receipt_timestamp=1)
    counters["messages"] = 2
    feeds["EX.0"] = "disconnected"
    with pytest.raises(TypeError):
        hb.counters["messages"] = 3            # type: ignore[index]
    hb.wire_body()["counters"]["messages"] = 4
    hb.to_dict()["feeds"]["EX.0"] = "stale"
    assert hb.counters == {"messages": 1, "book_seqs": {"book.EX.A-B.": 3}} and hb.feeds == {"EX.0": "connected"}
    assert dict(hb.counters)["messages"] == 1 and hb.counters.get("book_seqs") == {"book.EX.A-B.": 3}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_equality_hash_repr_pickle(kind: str) -> None:
    a, b = sample_event(kind), sample_event(kind)
    assert a == b and hash(a) == hash(b)
    assert a != sample_event(kind, full=False)
    assert len({a, b}) == 1
    r = repr(a)
    assert r.startswith(type(a).__name__ + "(") and f"receipt_timestamp={RECEIPT_TS}" in r
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        c = pickle.loads(pickle.dumps(a, protocol=proto))
        assert type(c) is type(a) and c == a and c.wire_body() == a.wire_body()


def test_events_of_different_kinds_are_never_equal() -> None:
    snap, delta = sample_event("book_snapshot"), sample_event("book_delta")
    assert snap != L2Delta(**{n: getattr(snap, n) for n in ("exchange", "symbol")}, bids=snap.bids_str,
                           asks=snap.asks_str, sequence=snap.sequence, checksum=snap.checksum,
                           exchange_symbol=snap.exchange_symbol, timestamp=snap.timestamp,
                           receipt_timestamp=snap.receipt_timestamp)
    assert snap != delta
    assert snap.__eq__("book") is NotImplemented


def test_receipt_timestamp_differs_means_not_equal() -> None:
    t1 = Trade("X", "BTC-USDT", "buy", "1", "2", receipt_timestamp=1)
    t2 = Trade("X", "BTC-USDT", "buy", "1", "2", receipt_timestamp=2)
    assert t1 != t2


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_to_dict(kind: str) -> None:
    ev = sample_event(kind)
    body = ev.wire_body()
    as_dec = ev.to_dict()
    as_str = ev.to_dict(numeric_type=str)
    assert as_dec["timestamp"] == EXCHANGE_TS and as_dec["receipt_timestamp"] == RECEIPT_TS
    for name, type_ in type(ev).TYPES.items():
        v = body[name]
        if type_ in ("dec", "dec?"):
            assert as_dec[name] == Decimal(v) and type(as_dec[name]) is Decimal
            assert as_str[name] == v  # the exchange's exact digits, trailing zeros included
        elif type_ == "levels":
            assert as_str[name] == [[p, s] for p, s in v]
            assert as_dec[name] == [[Decimal(p), Decimal(s)] for p, s in v]
        elif type_ == "orders":
            assert as_str[name] == [[o, sd, p, s] for o, sd, p, s in v]
        else:
            assert as_dec[name] == v
    # to_dict returns a fresh dict each time: mutating it cannot reach the event.
    as_str["kind"] = "mutated"
    assert ev.wire_body()["kind"] == kind


def test_decimal_strings_kept_exactly() -> None:
    t = Trade("BINANCE", "BTC-USDT", "buy", "0.35210000", "30238.80", receipt_timestamp=1)
    assert t.amount_str == "0.35210000" and t.price_str == "30238.80"
    assert t.amount == Decimal("0.35210000") and str(t.amount) == "0.35210000"


def test_decimal_inputs_of_other_types_converted_exactly() -> None:
    t = Trade("X", "Y", "sell", 1e-05, Decimal("1E+3"), receipt_timestamp=0)
    assert t.amount_str == "0.00001" and t.price_str == "1000"
    t = Trade("X", "Y", "sell", 0.1, 42, receipt_timestamp=0)
    # 0.1 as a float is what a JSON parser read from '0.1': its shortest repr, not 0.1000000000000000055...
    assert t.amount_str == "0.1" and t.price_str == "42"
    d = L2Delta("X", "Y", bids=[(1.5, "2e-3")], asks=[[Decimal("3.10"), 0]], receipt_timestamp=0)
    assert d.bids_str == (("1.5", "0.002"),) and d.asks_str == (("3.10", "0"),)


@pytest.mark.parametrize("text,expected", [
    ("0.35210000", "0.35210000"), ("-1", "-1"), ("42", "42"), ("007.10", "007.10"), ("-0", "-0"),
    ("1e-05", "0.00001"), ("1E+3", "1000"), ("+2.5", "2.5"), (".5", "0.5"), ("5.", "5"),
    ("-1.50e2", "-150"), ("0e-3", "0.000"),
])
def test_dec_str_strings(text: str, expected: str) -> None:
    assert dec_str(text) == expected
    assert Decimal(dec_str(text)) == Decimal(text)


@pytest.mark.parametrize("value,expected", [
    (1e-05, "0.00001"), (0.1, "0.1"), (30238.8, "30238.8"), (-2.5, "-2.5"), (1e16, "10000000000000000"),
    (Decimal("0.35210000"), "0.35210000"), (Decimal("1E-7"), "0.0000001"), (7, "7"), (-(10**30), "-" + "1" + "0" * 30),
])
def test_dec_str_numbers(value: object, expected: str) -> None:
    assert dec_str(value) == expected


@pytest.mark.parametrize("junk", [
    "", "-", ".", "abc", "1.2.3", "1,5", " 1", "1 ", "1_000", "\u0661\u0662", "0x10", "NaN", "nan", "-inf",
    "Infinity", "sNaN", "1e", "e5", "--1", "1e999999999", "1e-999999999",
])
def test_dec_str_refuses_junk(junk: str) -> None:
    with pytest.raises(ValueError):
        dec_str(junk)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), Decimal("NaN"), Decimal("Infinity"),
                                   Decimal("1E+1000")])
def test_dec_str_refuses_non_finite_and_huge(value: object) -> None:
    with pytest.raises(ValueError):
        dec_str(value)


@pytest.mark.parametrize("value", [None, True, b"1", [1], object()])
def test_dec_str_refuses_other_types(value: object) -> None:
    with pytest.raises(TypeError):
        dec_str(value)


def test_constructor_type_checks() -> None:
    with pytest.raises(TypeError):
        Trade(1, "Y", "buy", "1", "1", receipt_timestamp=0)  # exchange must be str
    with pytest.raises(ValueError):
        Trade("X", "Y", "buy", "NaN", "1", receipt_timestamp=0)
    with pytest.raises(TypeError):
        Trade("X", "Y", "buy", "1", "1", receipt_timestamp=1.5)  # ns are integers
    with pytest.raises(TypeError):
        Trade("X", "Y", "buy", "1", "1", timestamp="now", receipt_timestamp=0)
    with pytest.raises(ValueError):
        L2Delta("X", "Y", bids=[("1", "2", "3")], asks=[], receipt_timestamp=0)
    with pytest.raises(ValueError):
        L3Delta("X", "Y", orders=[("id", "buy", "1", "2")], receipt_timestamp=0)  # side is bid/ask


def test_book_sizes_are_never_negative_prices_may_be() -> None:
    with pytest.raises(ValueError, match="negative"):
        L2Delta("X", "Y", bids=[("1", "-2")], asks=[], receipt_timestamp=0)
    with pytest.raises(ValueError, match="negative"):
        L3Delta("X", "Y", orders=[("id", "bid", "1", "-0.5")], receipt_timestamp=0)
    assert L2Delta("X", "Y", bids=[("-1.5", "2"), ("1", "0"), ("2", "-0.0")], asks=[],
                   receipt_timestamp=0).bids_str == (("-1.5", "2"), ("1", "0"), ("2", "-0.0"))


def test_topic_escapes_dots_and_spaces() -> None:
    t = Trade("EX.CHANGE", "A B", "buy", "1", "1", receipt_timestamp=0)
    assert t.topic() == "trades.EX_CHANGE.A_B."
    assert t.wire_body()["exchange"] == "EX.CHANGE"  # the exact value travels in the body
