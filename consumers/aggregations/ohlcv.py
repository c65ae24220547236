"""OHLCV bars from trades at any interval, as a pure class and as a consumer.

Bars are aligned on multiples of the interval since the Unix epoch, by the trade's exchange
timestamp (its receipt timestamp when the exchange gives none). A bar is emitted as a closed
:class:`Candle` (``interval`` like ``'1m'`` or ``'250ms'``, ``closed=True``) when the first
trade of a later bar arrives, or when :meth:`OHLCV.flush` sees wall time past its end plus a
grace delay (for quiet markets). A trade older than the open bar, or belonging to a bar
already emitted (also one that :meth:`OHLCV.flush` closed by wall clock), is counted as
``late`` and ignored: a bar once emitted is never changed, nor emitted twice. Prices and volumes stay exact (Decimal).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from bus.subscriber import Message
from consumers.base import Consumer
from cryptofeed_types.events import Candle, Trade

_UNITS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
          "d": 86_400_000_000_000}


def parse_interval(text: str) -> int:
    """'1m' -> 60_000_000_000 ns. Units: ms, s, m, h, d."""
    for unit in ("ms", "s", "m", "h", "d"):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            n = int(text[: -len(unit)]) * _UNITS[unit]
            if n > 0:
                return n
    raise ValueError(f"bad interval {text!r}: expected e.g. 250ms, 1s, 5m, 1h, 1d")


class _Bar:
    __slots__ = ("start", "open", "high", "low", "close", "volume", "trades", "last_ts")

    def __init__(self, start: int, price: Decimal, amount: Decimal, ts: int) -> None:
        self.start = start
        self.open = self.high = self.low = self.close = price
        self.volume = amount
        self.trades = 1
        self.last_ts = ts


class OHLCV:
    """Per (exchange, symbol) bars of ``interval`` from trades; see the module docstring."""

    def __init__(self, interval: str = "1m", grace: float = 2.0) -> None:
        self.interval = interval
        self.ns = parse_interval(interval)
        self.grace_ns = int(grace * 1e9)
        self.bars: dict[tuple[str, str], _Bar] = {}
        # Start of the last bar emitted per key: a trade at or before it is late.
        self.emitted: dict[tuple[str, str], int] = {}
        self.counters = {"trades": 0, "bars": 0, "late": 0}

    def _candle(self, key: tuple[str, str], bar: _Bar) -> Candle:
        self.counters["bars"] += 1
        self.emitted[key] = bar.start
        return Candle(key[0], key[1], bar.start, bar.start + self.ns, self.interval, str(bar.open), str(bar.close),
                      str(bar.high), str(bar.low), str(bar.volume), trades=bar.trades, closed=True,
                      timestamp=bar.start + self.ns, receipt_timestamp=bar.last_ts)

    def on_trade(self, t: Trade) -> list[Candle]:
        """Add a trade; returns the bar it closed, if any."""
        self.counters["trades"] += 1
        ts = t.timestamp if t.timestamp is not None else t.receipt_timestamp
        start = ts - ts % self.ns
        key = (t.exchange, t.symbol)
        price, amount = t.price, t.amount
        bar = self.bars.get(key)
        if bar is None and start <= self.emitted.get(key, -1):
            self.counters["late"] += 1
            return []
        if bar is None or start > bar.start:
            self.bars[key] = _Bar(start, price, amount, t.receipt_timestamp)
            return [self._candle(key, bar)] if bar is not None else []
        if start < bar.start:
            self.counters["late"] += 1
            return []
        if price > bar.high:
            bar.high = price
        if price < bar.low:
            bar.low = price
        bar.close = price
        bar.volume += amount
        bar.trades += 1
        bar.last_ts = t.receipt_timestamp
        return []

    def flush(self, now_ns: int) -> list[Candle]:
        """Close every bar whose end (plus grace) is before ``now_ns`` (wall clock, ns)."""
        out = []
        for key, bar in list(self.bars.items()):
            if bar.start + self.ns + self.grace_ns <= now_ns:
                out.append(self._candle(key, bar))
                del self.bars[key]
        return out


class OHLCVConsumer(Consumer):
    """Trades in, closed ``candles.<EXCHANGE>.<SYMBOL>.`` out (Candle.interval tells the bar size)."""

    default_prefixes = ("trades.",)

    def __init__(self, name: str, sources: Any, prefixes: Sequence[str] | None = None, *,
                 interval: str = "1m", grace: float = 2.0, **kwargs: Any) -> None:
        super().__init__(name, sources, prefixes, **kwargs)
        self.agg = OHLCV(interval, grace)

    def handle(self, msg: Message) -> None:
        if type(msg.event) is Trade:
            for c in self.agg.on_trade(msg.event):
                self.emit(c)

    def tick(self, now: float) -> None:
        import time

        for c in self.agg.flush(time.time_ns()):
            self.emit(c)
        self.counters.update(self.agg.counters)
