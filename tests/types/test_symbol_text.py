"""Symbol: the normalized text form parses back to an equal Symbol; bad forms raise ValueError."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest

from cryptofeed_types import FUTURE, OPTION, PERPETUAL, SPOT, Symbol


@pytest.mark.parametrize("sym,text", [
    (Symbol("BTC", "USDT"), "BTC-USDT"),
    (Symbol("BTC", "USDT", PERPETUAL, settle="USDT"), "BTC-USDT-PERP"),
    (Symbol("BTC", "USD", FUTURE, expiry="20261225"), "BTC-USD-20261225"),
    (Symbol("BTC", "USD", OPTION, expiry="20261225", strike="100000", option_type="C"), "BTC-USD-20261225-100000-C"),
    (Symbol("ETH", "USD", OPTION, expiry="20260327", strike=Decimal("2500.50"), option_type="P"),
     "ETH-USD-20260327-2500.5-P"),
    (Symbol("1000SHIB", "USDT", PERPETUAL), "1000SHIB-USDT-PERP"),
])
def test_text_form_round_trip(sym: Symbol, text: str) -> None:
    assert sym.normalized == text == str(sym)
    back = Symbol.parse(text)
    assert back == sym and hash(back) == hash(sym)
    assert (back.base, back.quote, back.kind, back.expiry, back.option_type) == (
        sym.base, sym.quote, sym.kind, sym.expiry, sym.option_type)
    assert back.strike == sym.strike
    assert Symbol.parse(back.normalized).normalized == text


def test_kinds() -> None:
    assert Symbol.parse("BTC-USDT").kind == SPOT
    assert Symbol.parse("BTC-USDT-PERP").kind == PERPETUAL
    assert Symbol.parse("BTC-USD-20261225").kind == FUTURE
    opt = Symbol.parse("BTC-USD-20261225-100000-C")
    assert opt.kind == OPTION and opt.strike == Decimal(100000) and opt.option_type == "C"


def test_metadata_is_not_identity() -> None:
    a = Symbol.parse("BTC-USDT-PERP", exchange_symbol="BTCUSDT", settle="USDT", tick_size="0.1", lot_size="0.001")
    b = Symbol("BTC", "USDT", PERPETUAL)
    assert a == b and hash(a) == hash(b)
    assert a.exchange_symbol == "BTCUSDT" and a.tick_size == Decimal("0.1") and a.settle == "USDT"
    assert "BTCUSDT" in repr(a)
    c = b.with_metadata(exchange_symbol="XBTUSDTM", contract_size="0.001")
    assert c == b and c.exchange_symbol == "XBTUSDTM" and c.contract_size == Decimal("0.001")


def test_immutable_and_pickle() -> None:
    s = Symbol.parse("BTC-USD-20261225-100000-C", exchange_symbol="BTC-26DEC26-100000-C", tick_size="0.0005")
    with pytest.raises(AttributeError):
        s.base = "ETH"  # type: ignore[misc]
    t = pickle.loads(pickle.dumps(s))
    assert t == s and t.exchange_symbol == s.exchange_symbol and t.tick_size == s.tick_size
    assert s.to_dict()["symbol"] == "BTC-USD-20261225-100000-C"


def test_lowercase_codes_normalize_to_upper() -> None:
    assert Symbol.parse("btc-usdt") == Symbol.parse("BTC-USDT")


@pytest.mark.parametrize("text", [
    "", "BTC", "BTCUSDT", "BTC-", "-USDT", "BTC--USDT", "BTC-USDT-SWAP", "BTC-USD-2026122", "BTC-USD-202612250",
    "BTC-USD-20261325", "BTC-USD-20260231", "BTC-USD-2026122X", "BTC-USD-20261225-100000", "BTC-USD-20261225-100000-X",
    "BTC-USD-20261225-0-C", "BTC-USD-20261225--5-C", "BTC-USD-20261225-abc-C", "BTC-USD-20261225-100000-C-X",
    "BT C-USD", "BTC.X-USD", "BTC-USD-\uff12\uff10\uff12\uff16\uff11\uff12\uff12\uff15", "\u20bf-USD",
    "BTC-USDT-PERP-X",
])
def test_bad_forms_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        Symbol.parse(text)


@pytest.mark.parametrize("kwargs", [
    dict(base="BTC", quote="USD", kind="swap"),
    dict(base="BTC", quote="USD", kind=SPOT, expiry="20261225"),
    dict(base="BTC", quote="USD", kind=FUTURE),
    dict(base="BTC", quote="USD", kind=PERPETUAL, strike="1"),
    dict(base="BTC", quote="USD", kind=OPTION, expiry="20261225", strike="1"),
    dict(base="BTC", quote="USD", kind=OPTION, expiry="20261225", strike="-1", option_type="C"),
    dict(base="BTC", quote="USD", kind=OPTION, expiry="20261225", strike="NaN", option_type="C"),
    dict(base="", quote="USD"),
    dict(base="BTC", quote="USD", settle="U-SD"),
    dict(base="BTC", quote="USD", exchange_symbol=5),
    dict(base="BTC", quote="USD", tick_size="abc"),
])
def test_bad_constructor_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Symbol(**kwargs)
