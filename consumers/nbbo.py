"""NBBO: the best bid and ask across exchanges per normalized symbol.

:class:`NBBOCalculator` is pure (events in, changed :class:`NBBO` events out, no I/O);
:class:`NBBOConsumer` wires it to the bus: it subscribes to ``bbo.`` plus the control topics
(``status.``, ``gap.``, ``reset.``, and ``heartbeat.`` for the feed states it joined too late to
see announced) of many gateways and publishes ``nbbo.<SYMBOL>.`` on its own PUB, only when the
NBBO changed.

Rules (documented in docs/consumers.md):

- the best bid is the highest bid price over eligible exchanges (ties: larger size, then
  exchange name), the best ask the lowest ask; the size is that exchange's size at that price;
- an exchange is **not eligible** while its gateway is stale (``Status(feed='gateway',
  state='stale')`` from the subscriber), while one of its feeds is disconnected or resyncing
  (``Status`` from the gateway; only for the symbols that feed quotes when the gateway's
  heartbeats say which, ``feed_quotes``: a candles-only connection or another category's does
  not take the others out), while the exchange says it is in maintenance or cancel-only
  (``Status(feed='system')``: Kraken, OKX, Deribit, Coinbase, Binance spot, Bybit), while the
  book of that symbol is invalid (a ``Gap`` on its ``book``/``l3`` channel, or a feed-wide ``Gap``,
  until the ``Reset``), and while its own quote is crossed (bid >= ask). Its last quote is kept
  and counts again as soon as it recovers;
- quote equivalence (e.g. ``{"USDT": "USD"}``) maps quote currencies onto one NBBO symbol;
  it is off by default because USD and USDT do not trade at par.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bus.subscriber import Message
from consumers.base import Consumer
from cryptofeed_types.book import price_key
from cryptofeed_types.events import BBO, NBBO, Event, Gap, Heartbeat, Reset, Status

# A feed in one of these states takes its exchange out; "maintenance" and "cancel_only" are an
# exchange's own system status (Status feed "system", e.g. Kraken's): its quotes are not actionable.
DOWN_STATES = frozenset({"disconnected", "stale", "resyncing", "error", "maintenance", "cancel_only"})
BOOK_CHANNELS = frozenset({"book", "l3"})


class _Quote:
    __slots__ = ("exchange", "gateway", "bid", "bid_size", "ask", "ask_size", "bid_key", "ask_key", "bid_skey",
                 "ask_skey")

    def __init__(self, exchange: str, gateway: str, ev: BBO) -> None:
        self.exchange = exchange
        self.gateway = gateway
        self.bid = ev.bid_str
        self.bid_size = ev.bid_size_str
        self.ask = ev.ask_str
        self.ask_size = ev.ask_size_str
        self.bid_key = price_key(self.bid) if self.bid is not None else None
        self.ask_key = price_key(self.ask) if self.ask is not None else None
        self.bid_skey = price_key(self.bid_size) if self.bid_size is not None else 0
        self.ask_skey = price_key(self.ask_size) if self.ask_size is not None else 0


class NBBOCalculator:
    """Pure NBBO state machine: feed it events with :meth:`on_event`, get the changed NBBOs."""

    def __init__(self, quote_equivalence: Mapping[str, str] | None = None) -> None:
        self.quote_equivalence = dict(quote_equivalence or {})
        self.quotes: dict[str, dict[str, tuple[_Quote, str]]] = {}  # nbbo symbol -> exchange -> (quote, symbol)
        self.last: dict[str, tuple] = {}                         # nbbo symbol -> last published values
        self.stale_gateways: set[str] = set()
        self.feed_states: dict[tuple[str, str], str] = {}        # (exchange, feed) -> state
        self.down_exchanges: set[str] = set()
        self.invalid_books: set[tuple[str, str]] = set()          # (exchange, symbol)
        self.invalid_feeds: set[str] = set()                      # exchange with a feed-wide gap
        self.gateway_feeds: dict[str, dict[str, str]] = {}        # gateway -> its feeds' states (heartbeats)
        self.feed_quotes: dict[str, dict[str, frozenset[str]]] = {}  # gateway -> feed -> symbols it quotes
        self.down_symbols: dict[str, frozenset[str]] = {}         # exchange -> symbols whose feed is down
        self._quoting: set[tuple[str, str]] = set()               # (gateway, exchange) pairs seen quoting
        self.counters = {"bbo": 0, "nbbo": 0, "crossed_quotes": 0, "bad_quotes": 0}

    def nbbo_symbol(self, symbol: str) -> str:
        """The NBBO symbol of a normalized symbol (after quote equivalence)."""
        if not self.quote_equivalence:
            return symbol
        parts = symbol.split("-")
        if len(parts) >= 2 and parts[1] in self.quote_equivalence:
            parts[1] = self.quote_equivalence[parts[1]]
            return "-".join(parts)
        return symbol

    # -- eligibility ---------------------------------------------------------------------------

    def eligible(self, q: _Quote, symbol: str) -> bool:
        """Whether quote ``q`` (of normalized ``symbol``) may take part in the NBBO now."""
        ex = q.exchange
        if q.gateway in self.stale_gateways or ex in self.down_exchanges or ex in self.invalid_feeds:
            return False
        if (ex, symbol) in self.invalid_books or symbol in self.down_symbols.get(ex, ()):
            return False
        return not (q.bid_key is not None and q.ask_key is not None and q.bid_key >= q.ask_key)

    def compute(self, nsym: str) -> tuple:
        """(bid, bid_size, bid_exchange, ask, ask_size, ask_exchange) over eligible quotes."""
        best_b: _Quote | None = None
        best_a: _Quote | None = None
        for sym_q in self.quotes.get(nsym, {}).values():
            q, symbol = sym_q
            if not self.eligible(q, symbol):
                continue
            if q.bid_key is not None and (
                    best_b is None or q.bid_key > best_b.bid_key
                    or (q.bid_key == best_b.bid_key and (q.bid_skey > best_b.bid_skey or (
                        q.bid_skey == best_b.bid_skey and q.exchange < best_b.exchange)))):
                best_b = q
            if q.ask_key is not None and (
                    best_a is None or q.ask_key < best_a.ask_key
                    or (q.ask_key == best_a.ask_key and (q.ask_skey > best_a.ask_skey or (
                        q.ask_skey == best_a.ask_skey and q.exchange < best_a.exchange)))):
                best_a = q
        return ((best_b.bid, best_b.bid_size, best_b.exchange) if best_b else (None, None, None)) + \
            ((best_a.ask, best_a.ask_size, best_a.exchange) if best_a else (None, None, None))

    def _refresh(self, nsyms: Sequence[str] | set[str], ts: int | None, rts: int) -> list[NBBO]:
        out: list[NBBO] = []
        for nsym in sorted(nsyms):
            values = self.compute(nsym)
            if self.last.get(nsym) != values:
                if nsym not in self.last and values == (None,) * 6:
                    continue
                self.last[nsym] = values
                b, bs, bx, a, as_, ax = values
                out.append(NBBO(nsym, bid=b, bid_size=bs, bid_exchange=bx, ask=a, ask_size=as_, ask_exchange=ax,
                                timestamp=ts, receipt_timestamp=rts))
        self.counters["nbbo"] += len(out)
        return out

    def _symbols_of(self, exchange: str | None = None, gateway: str | None = None) -> set[str]:
        return {nsym for nsym, per in self.quotes.items()
                for q, _ in per.values() if (exchange is None or q.exchange == exchange)
                and (gateway is None or q.gateway == gateway)}

    # -- input ---------------------------------------------------------------------------------

    def on_bbo(self, ev: BBO, gateway: str = "") -> list[NBBO]:
        """A top-of-book update from one exchange."""
        self.counters["bbo"] += 1
        try:
            q = _Quote(ev.exchange, gateway, ev)
        except (ValueError, TypeError):
            self.counters["bad_quotes"] += 1
            return []
        if q.bid_key is not None and q.ask_key is not None and q.bid_key >= q.ask_key:
            self.counters["crossed_quotes"] += 1
        nsym = self.nbbo_symbol(ev.symbol)
        self.quotes.setdefault(nsym, {})[ev.exchange] = (q, ev.symbol)
        if (gateway, ev.exchange) not in self._quoting:
            # The first quote of this exchange from this gateway: the feed states its heartbeats
            # told before (a consumer that joined after a maintenance was announced) hold for it.
            self._quoting.add((gateway, ev.exchange))
            self._set_feeds(ev.exchange, self.gateway_feeds.get(gateway, {}))
        return self._refresh((nsym,), ev.timestamp, ev.receipt_timestamp)

    def on_status(self, ev: Status, gateway: str = "") -> list[NBBO]:
        """A feed or gateway changed state: stale/disconnected exchanges leave the NBBO."""
        if ev.feed == "gateway":
            # Synthesized by the subscriber: Status.exchange is the gateway id here.
            gw = gateway or ev.exchange
            if ev.state in DOWN_STATES:
                self.stale_gateways.add(gw)
            else:
                self.stale_gateways.discard(gw)
            affected = self._symbols_of(gateway=gw)
        else:
            self._set_feeds(ev.exchange, {ev.feed: ev.state})
            affected = self._symbols_of(exchange=ev.exchange)
        return self._refresh(affected, ev.timestamp, ev.receipt_timestamp)

    def on_heartbeat(self, ev: Heartbeat, gateway: str = "") -> list[NBBO]:
        """Every heartbeat carries the state of each of its gateway's feeds (connections, the
        exchange's system status): a consumer that joined after a Status learns it from the next
        heartbeat (about a second) instead of from the next change, which may be hours away."""
        gw = gateway or ev.gateway
        feeds = {str(k): str(v) for k, v in dict(ev.feeds).items()}
        self.gateway_feeds[gw] = feeds
        described = ev.counters.get("feed_quotes")
        quotes_changed = False
        if isinstance(described, dict):
            quotes = {str(f): frozenset(map(str, syms)) for f, syms in described.items() if isinstance(syms, list)}
            quotes_changed = quotes != self.feed_quotes.get(gw)
            self.feed_quotes[gw] = quotes
        out: list[NBBO] = []
        for exchange in sorted({ex for g, ex in self._quoting if g == gw}):
            changed = self._set_feeds(exchange, feeds)
            if quotes_changed and not changed:
                self._update_down(exchange)
            if changed or quotes_changed:
                out += self._refresh(self._symbols_of(exchange=exchange), ev.timestamp, ev.receipt_timestamp)
        return out

    def _set_feeds(self, exchange: str, feeds: Mapping[str, str]) -> bool:
        """Record feed states of ``exchange``; True when any changed (its eligibility is then updated)."""
        changed = False
        for feed, state in feeds.items():
            if self.feed_states.get((exchange, feed)) != state:
                self.feed_states[(exchange, feed)] = state
                changed = True
        if changed:
            self._update_down(exchange)
        return changed

    def _update_down(self, exchange: str) -> None:
        """Which of ``exchange``'s quotes its feeds' states take out: all of them when a feed that
        is down is the exchange's system status or one its gateway did not describe, else only the
        symbols the down feeds quote (``feed_quotes`` from the heartbeats)."""
        down = [feed for (ex, feed), st in self.feed_states.items() if ex == exchange and st in DOWN_STATES]
        quotes: dict[str, frozenset[str]] = {}
        for gw, ex in self._quoting:
            if ex == exchange:
                quotes.update(self.feed_quotes.get(gw, {}))
        if any(feed not in quotes for feed in down):
            self.down_exchanges.add(exchange)
            self.down_symbols.pop(exchange, None)
            return
        self.down_exchanges.discard(exchange)
        symbols = frozenset().union(*(quotes[feed] for feed in down))
        if symbols:
            self.down_symbols[exchange] = symbols
        else:
            self.down_symbols.pop(exchange, None)

    def on_gap(self, ev: Gap) -> list[NBBO]:
        """A book became invalid: its exchange leaves that symbol's NBBO until the Reset."""
        if ev.channel not in BOOK_CHANNELS and ev.symbol is not None:
            return []  # a missed bbo/ticker value: the next one is current again
        if ev.symbol is None:
            self.invalid_feeds.add(ev.exchange)
            affected = self._symbols_of(exchange=ev.exchange)
        else:
            self.invalid_books.add((ev.exchange, ev.symbol))
            affected = {self.nbbo_symbol(ev.symbol)}
        return self._refresh(affected, ev.timestamp, ev.receipt_timestamp)

    def on_reset(self, ev: Reset) -> list[NBBO]:
        """A book was rebuilt: its exchange counts again."""
        if ev.symbol is None:
            self.invalid_feeds.discard(ev.exchange)
            self.invalid_books = {k for k in self.invalid_books if k[0] != ev.exchange}
            affected = self._symbols_of(exchange=ev.exchange)
        else:
            self.invalid_books.discard((ev.exchange, ev.symbol))
            affected = {self.nbbo_symbol(ev.symbol)}
        return self._refresh(affected, ev.timestamp, ev.receipt_timestamp)

    def on_event(self, ev: Event, gateway: str = "") -> list[NBBO]:
        """Dispatch any event; kinds that do not concern the NBBO return []."""
        t = type(ev)
        if t is BBO:
            return self.on_bbo(ev, gateway)
        if t is Status:
            return self.on_status(ev, gateway)
        if t is Gap:
            return self.on_gap(ev)
        if t is Reset:
            return self.on_reset(ev)
        if t is Heartbeat:
            return self.on_heartbeat(ev, gateway)
        return []


class NBBOConsumer(Consumer):
    """The nbbo process: bbo + control topics of many gateways in, ``nbbo.<SYMBOL>.`` out."""

    # Heartbeats for the feed states a (re)started NBBO process missed (see on_heartbeat).
    default_prefixes = ("bbo.", "status.", "gap.", "reset.", "heartbeat.")
    # Not for books (none subscribed): the snapshot service also serves each gateway's last
    # bbo values, so a (re)started NBBO process is complete at once instead of waiting for
    # every symbol's top of book to move.
    books = True

    def __init__(self, name: str, sources: Any, prefixes: Sequence[str] | None = None, *,
                 quote_equivalence: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(name, sources, prefixes, **kwargs)
        self.calc = NBBOCalculator(quote_equivalence)
        self.counters.update(self.calc.counters)

    def handle(self, msg: Message) -> None:
        for nbbo in self.calc.on_event(msg.event, msg.header.gateway):
            self.emit(nbbo)

    def tick(self, now: float) -> None:
        self.counters.update(self.calc.counters)
