"""Renko bricks from trades: a new brick each time the price moves a full brick size.

The first trade anchors the grid at ``floor(price / size) * size``. An up brick closes when a
price reaches ``anchor + size``; a down brick when it reaches ``anchor - size``; a big move
emits several bricks at once (one per size step). A brick is published as a :class:`Candle`
with ``interval='renko:<size>'``, ``open``/``close`` its boundaries, ``high``/``low`` the
extremes traded while it formed, ``volume`` the amount traded while it formed (credited to
the first brick of a multi-brick move), ``start``/``stop`` the first and last trade times.
Exact decimals throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from bus.subscriber import Message
from consumers.base import Consumer
from cryptofeed_types.events import Candle, Trade


class _State:
    __slots__ = ("anchor", "high", "low", "volume", "trades", "start")

    def __init__(self, anchor: Decimal, start: int) -> None:
        self.anchor = anchor
        self.high: Decimal | None = None   # None until the first trade
        self.low: Decimal | None = None
        self.volume = Decimal(0)
        self.trades = 0
        self.start = start


class Renko:
    """Pure renko per (exchange, symbol); ``on_trade`` returns the completed bricks."""

    def __init__(self, size: str | Decimal) -> None:
        self.size = Decimal(size)
        if self.size <= 0:
            raise ValueError("brick size must be > 0")
        self.interval = f"renko:{self.size}"
        self.state: dict[tuple[str, str], _State] = {}
        self.counters = {"trades": 0, "bricks": 0}

    def on_trade(self, t: Trade) -> list[Candle]:
        self.counters["trades"] += 1
        ts = t.timestamp if t.timestamp is not None else t.receipt_timestamp
        key = (t.exchange, t.symbol)
        price, size = t.price, self.size
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = _State((price // size) * size, ts)
        st.high = price if st.high is None or price > st.high else st.high
        st.low = price if st.low is None or price < st.low else st.low
        st.volume += t.amount
        st.trades += 1
        out: list[Candle] = []
        while price >= st.anchor + size or price <= st.anchor - size:
            up = price >= st.anchor + size
            close = st.anchor + size if up else st.anchor - size
            out.append(Candle(key[0], key[1], st.start, ts, self.interval, str(st.anchor), str(close),
                              str(max(st.high, st.anchor, close)), str(min(st.low, st.anchor, close)),
                              str(st.volume), trades=st.trades, closed=True, timestamp=ts,
                              receipt_timestamp=t.receipt_timestamp))
            st.anchor = close
            st.high = st.low = price
            st.volume = Decimal(0)
            st.trades = 0
            st.start = ts
        self.counters["bricks"] += len(out)
        return out


class RenkoConsumer(Consumer):
    """Trades in, ``candles.<EXCHANGE>.<SYMBOL>.`` renko bricks out (interval 'renko:<size>')."""

    default_prefixes = ("trades.",)

    def __init__(self, name: str, sources: Any, prefixes: Sequence[str] | None = None, *,
                 size: str = "10", **kwargs: Any) -> None:
        super().__init__(name, sources, prefixes, **kwargs)
        self.renko = Renko(size)

    def handle(self, msg: Message) -> None:
        if type(msg.event) is Trade:
            for c in self.renko.on_trade(msg.event):
                self.emit(c)

    def tick(self, now: float) -> None:
        self.counters.update(self.renko.counters)
