"""Topic names: escaping, the terminator, prefixes, and agreement with Event.topic()."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import topics
from cryptofeed_types import EVENT_CLASSES
from feedfabric.testing.types import sample_event

PART = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12) | st.none()


def test_topic_and_prefix() -> None:
    assert topics.topic("trades", "BINANCE", "BTC-USDT") == "trades.BINANCE.BTC-USDT."
    assert topics.prefix() == ""
    assert topics.prefix("trades") == "trades."
    assert topics.prefix("trades", "BINANCE") == "trades.BINANCE."
    assert topics.prefix("book", "COINBASE", "BTC-USD") == "book.COINBASE.BTC-USD."


def test_escaping() -> None:
    assert topics.part("BTC.USD") == "BTC_USD"
    assert topics.part("a b") == "a_b"
    assert topics.part(None) == "_"
    assert topics.topic("gap", "KRAKEN", None) == "gap.KRAKEN._."


def test_terminator_prevents_longer_name_matches() -> None:
    sub = topics.prefix("book", "COINBASE", "BTC-USD")
    assert topics.topic("book", "COINBASE", "BTC-USD").startswith(sub)
    assert not topics.topic("book", "COINBASE", "BTC-USDT").startswith(sub)
    assert not topics.topic("trades", "BINANCEUS", "BTC-USDT").startswith(topics.prefix("trades", "BINANCE"))


def test_split() -> None:
    assert topics.split("trades.BINANCE.BTC-USDT.") == ["trades", "BINANCE", "BTC-USDT"]
    assert topics.split("trades.BINANCE") == ["trades", "BINANCE"]


@pytest.mark.parametrize("kind", list(EVENT_CLASSES))
def test_event_topic_agrees_with_topics_module(kind: str) -> None:
    for full in (True, False):
        ev = sample_event(kind, full=full)
        keys = [getattr(ev, k) for k in type(ev).TOPIC_KEYS]
        assert ev.topic() == topics.topic(type(ev).CHANNEL, *keys)


@settings(max_examples=150, derandomize=True, database=None)
@given(st.sampled_from(["trades", "book", "bbo"]), st.lists(PART, min_size=1, max_size=3))
def test_topic_grammar(channel: str, keys: list[str | None]) -> None:
    name = topics.topic(channel, *keys)
    assert name.endswith(".") and name.isascii()
    parts = topics.split(name)
    assert parts[0] == channel and len(parts) == len(keys) + 1
    assert all("." not in p and " " not in p for p in parts)
    # Every complete prefix of a topic matches it.
    for i in range(len(keys) + 1):
        assert name.startswith(topics.prefix(channel, *keys[:i]))
