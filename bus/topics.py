"""Topic names: '<channel>.<key>.<key>.' with a terminating '.', built and matched here.

A ZeroMQ SUB matches by byte prefix; the terminator guarantees that a complete
name never matches a longer one (``book.COINBASE.BTC-USD.`` vs ``BTC-USDT``).
"""

from __future__ import annotations

_ESCAPE = str.maketrans({".": "_", " ": "_"})


def part(value: str | None) -> str:
    """One topic component: '.' and ' ' are escaped to '_', None becomes '_'."""
    return "_" if value is None else value.translate(_ESCAPE)


def topic(channel: str, *keys: str | None) -> str:
    """The full topic of an event, e.g. ``topic('trades', 'BINANCE', 'BTC-USDT')``."""
    return ".".join([channel, *(part(k) for k in keys)]) + "."


def prefix(channel: str | None = None, *keys: str | None) -> str:
    """A subscription prefix: '' (everything), 'trades.', 'trades.BINANCE.', ...

    Every component given is complete (terminated), so 'book.COINBASE.BTC-USD.'
    never matches 'book.COINBASE.BTC-USDT.'.
    """
    if channel is None:
        return ""
    return topic(channel, *keys)


def gap_scope(channel: str, exchange: str, symbol: str | None) -> str:
    """The prefix of the topics a ``gap`` event declares invalid: its book's topic, or with a nil
    symbol (feed-wide) every topic of that channel and exchange. A complete topic is a prefix of
    itself only (the terminator), so one ``startswith`` serves both."""
    return topic(channel, exchange) if symbol is None else topic(channel, exchange, symbol)


def split(name: str) -> list[str]:
    """Components of a topic or prefix (without the terminator)."""
    return name[:-1].split(".") if name.endswith(".") else name.split(".")
