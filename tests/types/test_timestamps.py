"""cryptofeed_types.timestamps: exchange timestamp text → exact integer ns, checked against datetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cryptofeed_types import iso_ns, seconds_ns

_S = 10**9


def _reference(dt: datetime, fraction: str) -> int:
    """datetime's whole seconds plus the fraction's digits (at most 9 kept), no float."""
    whole = int(dt.replace(microsecond=0).timestamp())
    return whole * _S + (int(fraction[:9].ljust(9, "0")) if fraction else 0)


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 12, 31)),
       st.text("0123456789", min_size=0, max_size=12),
       st.sampled_from(["Z", "", "+00:00", "+0000", "+05:30", "-0800", "-03:00"]),
       st.sampled_from(["T", " "]))
def test_iso_ns_matches_datetime(dt: datetime, fraction: str, suffix: str, sep: str) -> None:
    text = dt.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{fraction}" if fraction else "") + suffix
    offset = timedelta(0)
    if suffix not in ("Z", ""):
        sign = 1 if suffix[0] == "+" else -1
        digits = suffix[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    aware = dt.replace(microsecond=0, tzinfo=timezone(offset))
    assert iso_ns(text) == _reference(aware.astimezone(UTC), fraction)


def test_iso_ns_examples_of_the_exchanges() -> None:
    assert iso_ns("2021-07-22T22:36:10.014Z") == 1_626_993_370_014_000_000                  # BitMEX, OKX v3
    assert iso_ns("2026-08-09T21:05:48.228568804Z") == 1_786_309_548_228_568_804            # Coinbase, 9 digits
    assert iso_ns("2026-08-09T21:05:48.2285688049Z") == 1_786_309_548_228_568_804           # 10th digit cut
    assert iso_ns("1970-01-01T00:00:00Z") == 0
    assert iso_ns("2024-02-29T12:00:00+00:00") == 1_709_208_000 * _S                       # leap day
    assert iso_ns("9999-12-31T23:59:59.999999999Z") == 253_402_300_799_999_999_999          # past int64 ns


@pytest.mark.parametrize("text", [
    "", "2021-07-22", "2021-07-22T22:36:10.Z", "2021-13-01T00:00:00Z", "2023-02-29T00:00:00Z",
    "2021-07-22T24:00:00Z", "2021-07-22T22:36:10.014ZZ", "2021-07-22T22:36:10+1", "2021-07-2xT22:36:10Z",
    "2021/07/22T22:36:10Z", "2021-07-22T22:36:10.014 UTC",
])
def test_iso_ns_refuses_what_it_cannot_read_exactly(text: str) -> None:
    with pytest.raises(ValueError):
        iso_ns(text)


@given(st.integers(0, 10**10), st.text("0123456789", min_size=0, max_size=12), st.booleans())
def test_seconds_ns_is_exact(secs: int, fraction: str, dot: bool) -> None:
    text = f"{secs}" + (f".{fraction}" if fraction or dot else "")
    assert seconds_ns(text) == secs * _S + (int(fraction[:9].ljust(9, "0")) if fraction else 0)


@pytest.mark.parametrize("text", ["", ".5", "1618678133.36a", "-1.5", "1e9", "1618678133.365.1", " 1"])
def test_seconds_ns_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        seconds_ns(text)
