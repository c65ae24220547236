"""Candles polled from an exchange's REST API, sans-I/O: the part that is the same on every exchange.

An exchange whose websocket has no candles (Kraken Futures), or none of the length asked (Coinbase
beyond 5 minutes), polls bars instead. The adapter owns a :class:`CandlePoller` and supplies what is
its own: the bar lengths its REST API offers (``candle_interval`` name → ns), the request for one
symbol's bars from a bar start (a :class:`~gateways.adapter.Fetch`, tag ``candles``) and the parser
of a response body into bars ``(start_ns, open, high, low, close, volume)`` (any order) plus a
"more" flag (the response stopped short of the range asked). The poller owns the rest, so every
polling adapter behaves alike:

- schedule: each subscribed symbol is polled on the adapter's timer; the first polls are spread
  over one period (a quarter of the bar, within ``candle_poll_min_ns``/``candle_poll_max_ns``),
  later ones follow the forming bar's end (+ ``candle_settle_ns`` + the symbol's stagger); a poll
  that brings no forming bar is retried a period later, a "more" one soon;
- closing: a bar is published once closed: a later bar is in the response, or the response says
  "more", or its end is ``candle_close_grace_ns`` behind the receipt time (a quiet symbol may have no
  later bar); the forming bar is counted ``ignored.candle_forming``;
- once each: bars at or before the last one published are counted ``ignored.candle_repeated``;
  the first response of a symbol gives only its latest closed bar (as a candle websocket's snapshot
  would), older ones are counted ``ignored.candle_history``;
- the request asks from the first unpublished bar (the first one: two bars back on the epoch grid),
  so missed polls are caught up and the URL depends on the bar, not on the instant (replay finds the
  recorded response);
- catching up: where a request spans a fixed number of bars (``window``, an API that answers a range
  and never says "more"), a response whose whole range ended before its receipt is a "more" one:
  its bars are all closed and the next range is asked soon, not a bar later (after an outage of a
  day, 1 m bars in ranges of 300 are back within seconds, not minutes);
- an interval the REST API lacks is refused once: logged, ``subscription.unsupported_candle_interval``.

Events are :class:`~cryptofeed_types.Candle` with ``closed`` True, ``stop`` the bar's last
millisecond, ``timestamp`` None (the bar's time is its start) and ``trades`` None. The poller never
reads a clock or touches a socket: times come in as arguments, requests go out as actions. A
malformed body raises out of :meth:`CandlePoller.on_response` before anything is published, into
the adapter's ``on_rest``, which counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import orjson
from loguru import logger

from cryptofeed_types import Candle
from gateways.adapter import CANDLES, Adapter, AdapterError, Fetch, Output

_MS = 1_000_000
_S = 1_000_000_000

# (start ns, open, high, low, close, volume): prices and volume as exact decimal text.
Bar = tuple[int, str, str, str, str, str]
CandleRequest = Callable[[str, int], Fetch]                                   # (symbol, first bar start ns)
CandleParser = Callable[[str | bytes], tuple[Iterable[Bar], bool]]            # body → (bars, more)
TAG = "candles"   # the tag of a poll's Fetch


def json_rows(body: str | bytes, key: str = "candles") -> tuple[dict[str, Any], list[Any]]:
    """A JSON object body and its list of bar rows under ``key``, for a parser to read (anything else:
    ``AdapterError('bad_candles')``, an error page or an error object instead of bars)."""
    data = orjson.loads(body)
    rows = data.get(key) if type(data) is dict else None
    if type(rows) is not list:
        raise AdapterError("bad_candles", str(data)[:200])
    return data, rows


class PolledCandles:
    """The timing of REST candle polls: class attributes of an adapter that owns a :class:`CandlePoller`
    (mixed in before :class:`~gateways.adapter.Adapter`). The poller reads them at every call, so an
    adapter (or a test) may override them on its class or on the instance."""

    # Polls of one symbol are retried after a quarter of the bar, within these bounds.
    candle_poll_min_ns: ClassVar[int] = 5 * _S
    candle_poll_max_ns: ClassVar[int] = 60 * _S
    # Asked this long after a bar's end: a candles service follows the trades, not the clock.
    candle_settle_ns: ClassVar[int] = 2 * _S
    # A bar with no later bar in the response is closed once its end is this far behind the receipt time.
    candle_close_grace_ns: ClassVar[int] = 30 * _S


class CandlePoller:
    """One adapter's REST candle polls (see the module docstring).

    ``intervals``: the ``candle_interval`` names the REST API offers → bar length in ns;
    ``request(symbol, start_ns)``: the Fetch of ``symbol``'s bars from ``start_ns`` on (tag
    :data:`TAG`, ``symbol`` set, so the adapter's ``handle_rest`` hands it back to :meth:`on_response`);
    ``parse(body)``: the bars of a response and whether it says there are more (raise on a malformed
    body: :class:`~gateways.adapter.AdapterError` names the counter); ``window``: the bars one request
    spans when the API answers a fixed range (None: the response's own "more" says it all).
    """

    def __init__(self, adapter: Adapter, intervals: Mapping[str, int], request: CandleRequest,
                 parse: CandleParser, window: int | None = None) -> None:
        if not isinstance(adapter, PolledCandles):
            raise TypeError(f"{type(adapter).__name__} must mix in PolledCandles to own a CandlePoller")
        self.adapter: Any = adapter   # an Adapter that is a PolledCandles (checked above)
        self.intervals = dict(intervals)
        self._request = request
        self._parse = parse
        self.window = window
        self._next: dict[str, int] = {}     # symbol → ts of its next poll
        self._offset: dict[str, int] = {}   # symbol → its stagger after a bar's end
        self._last: dict[str, int] = {}     # symbol → start of the last bar published
        self._asked: dict[str, tuple[str, int]] = {}   # symbol → (url, first bar start) of its last request
        self._refused = False

    def last_published(self, symbol: str) -> int | None:
        """The start (ns) of ``symbol``'s last bar published, None before the first."""
        return self._last.get(symbol)

    def symbols(self) -> list[str]:
        """The symbols to poll; none when ``candle_interval`` is not offered by the REST API.

        Refused clearly instead of polling bars of another length than asked: logged once as an
        error, counted once as ``subscription.unsupported_candle_interval``; the other channels run.
        """
        ad = self.adapter
        syms = ad.subscribed(CANDLES)
        interval = ad.candle_interval
        if not syms or interval in self.intervals:
            return syms
        if not self._refused:
            self._refused = True
            ad.count("subscription.unsupported_candle_interval")
            logger.bind(exchange=ad.exchange).error(
                "{}: candles not polled: candle_interval {!r} is not one of its REST candle intervals ({})",
                ad.exchange, interval, ", ".join(self.intervals))
        return []

    def period(self, length: int) -> int:
        """The retry period of polls of bars ``length`` ns long."""
        ad = self.adapter
        return min(max(length // 4, ad.candle_poll_min_ns), ad.candle_poll_max_ns)

    def fetch(self, symbol: str, ts: int) -> Fetch:
        """The request for ``symbol``'s bars from its first unpublished one."""
        length = self.intervals[self.adapter.candle_interval]
        last = self._last.get(symbol)
        # Nothing published yet: from two bars back on the epoch grid, which holds the last closed bar
        # even where the exchange's grid is offset (weeks); a boundary, so the URL depends on the bar,
        # not on the instant of the poll.
        start = last + length if last is not None else (ts // length - 2) * length
        fetch = self._request(symbol, start)
        self._asked[symbol] = (fetch.url, start)
        return fetch

    def poll(self, ts: int, out: Output) -> None:
        """The timer's part: the requests due at ``ts``."""
        syms = self.symbols()
        if not syms:
            return
        period = self.period(self.intervals[self.adapter.candle_interval])
        for i, sym in enumerate(syms):
            due = self._next.get(sym)
            if due is None:
                # Spread the first polls over one period so they don't burst the REST budget; the
                # same offset staggers the polls after each bar's end.
                offset = self._offset[sym] = (period * i) // len(syms)
                due = self._next[sym] = ts + offset
            if ts >= due:
                # Retried then, unless the response schedules the poll after the forming bar's end.
                self._next[sym] = ts + period
                out.actions.append(self.fetch(sym, ts))

    def on_response(self, fetch: Fetch, body: str | bytes, ts: int, out: Output) -> None:
        """The body of a poll received at ``ts``: its new closed bars (another Fetch: ``rest_unexpected``)."""
        symbol = fetch.symbol
        if fetch.tag != TAG or symbol is None:
            raise AdapterError("rest_unexpected", fetch.url)
        ad = t = self.adapter
        interval = ad.candle_interval
        length = self.intervals[interval]
        parsed, more = self._parse(body)
        if self.window is not None and not more:
            # The range asked ended (its bar after the end too: an end may be inclusive) before this
            # answer: every bar in it is closed, and there are more to catch up.
            url, start = self._asked.get(symbol, ("", 0))
            more = url == fetch.url and start + (self.window + 1) * length <= ts
        bars = sorted({b[0]: b for b in parsed}.values())   # by start, one bar per start
        grace = t.candle_close_grace_ns
        closed = [b for i, b in enumerate(bars)
                  if i + 1 < len(bars) or more or ts >= b[0] + length + grace]
        forming = bars[-1] if len(closed) < len(bars) else None
        last = self._last.get(symbol)
        new = [b for b in closed if last is None or b[0] > last]
        xs = ad.to_exchange.get(symbol)
        # Built before anything is published or counted: a bad number raises with nothing half-done.
        candles = [Candle(ad.exchange, symbol, start, start + length - _MS, interval, o, c, h, low, v,
                          closed=True, exchange_symbol=xs, timestamp=None, receipt_timestamp=ts)
                   for start, o, h, low, c, v in new]
        if len(closed) > len(new):
            ad.count("ignored.candle_repeated", len(closed) - len(new))
        if last is None and len(new) > 1:
            ad.count("ignored.candle_history", len(new) - 1)
            new, candles = new[-1:], candles[-1:]
        if forming is not None:
            ad.ignore("candle_forming")
        out.events.extend(candles)
        if new:
            self._last[symbol] = new[-1][0]
        if more:
            self._next[symbol] = ts + t.candle_poll_min_ns
        elif forming is not None:
            self._next[symbol] = max(forming[0] + length + t.candle_settle_ns + self._offset.get(symbol, 0),
                                     ts + t.candle_poll_min_ns)
