"""Coinbase Advanced Trade adapter (COINBASE): public market data, sans-I/O.

============  ==================================  ==========================================
channel       websocket channel (subscribe name)  events
============  ==================================  ==========================================
trades        ``market_trades``                   Trade (id = ``trade_id``, taker side)
l2_book       ``level2`` (messages: ``l2_data``)  L2Snapshot, L2Delta, BBO (top changes)
ticker        ``ticker``                          Ticker (best bid/ask, last, 24h volume)
bbo           ``ticker`` (products without        BBO (best_bid/best_ask with their
              l2_book; else from the book)        ``best_*_quantity`` sizes, on change)
candles       ``candles`` (5 minute bars only,    Candle (interval ``5m``, ``closed`` None)
              the default here)
              another ``candle_interval``: the    Candle (closed bars only, ``closed`` True)
              REST public candles, polled
              (``/api/v3/brokerage/market/
              products/<id>/candles``); one
              with no granularity there is
              refused: logged, counted
(keepalive)   ``heartbeats``                      counted, keeps the connection open
(system)      ``status`` (every connection, its   Status(feed='system'): online while every
              products)                           product of the gateway is ``online``;
                                                  partial while some are not (offline,
                                                  delisted, ...), maintenance when none is
============  ==================================  ==========================================

Integrity. ``l2_data`` updates carry no per-product sequence: the only sequence is the
envelope's ``sequence_num``, counted per *connection* across every channel. A hole in it
means some message of that connection was lost, so every book that arrived on that
connection is invalidated (Gap) and resubscribed (unsubscribe + subscribe ``level2`` for
those products): the exchange answers with a fresh ``snapshot`` (Reset + L2Snapshot).
Crossed books are checked after every update and resync that product alone. Updates
arriving for a book waiting for its resubscription snapshot are dropped (counted
``ignored.book_waiting_snapshot``): they belong to the old subscription.

Trade side: Advanced Trade's ``side`` is the *maker's* side (a ``SELL`` trade prints at
the ask), so the taker side published is the opposite, as the schema asks.

Candles of another ``candle_interval`` than 5m (1m, 15m, 30m, 1h, 2h, 6h, 1d: :data:`REST_CANDLES`)
are polled from the public REST candles by a :class:`gateways.polling.CandlePoller` (tag
``candles``, weight 1 of ``rest_weight_per_minute``, no auth), which publishes each bar once when
closed, the first response's latest closed bar only, and asks from the first unpublished bar: the
window ``start``..``end`` is :data:`REST_CANDLE_WINDOW` bars from a bar boundary, so the URL depends
on the bar, not on the instant. The response is newest first and may lack bars without trades
(the poller's grace closes a quiet product's last bar); prices and volume are its strings,
``timestamp`` null (the bar's time is its start).

Legacy Coinbase Pro messages (``match``/``last_match``, ``snapshot``, ``l2update``,
``ticker``; the tardis and 2021 cryptofeed recordings) are parsed too, for replay only.
Prices and sizes are the exchange's own strings; timestamps (RFC 3339, up to ns) become
integer ns.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from cryptofeed_types import BBO, FUTURE, PERPETUAL, SPOT, Candle, Symbol, Ticker, Trade, iso_ns
from gateways.adapter import (
    BBO_CHANNEL,
    CANDLES,
    L2_BOOK,
    TICKER,
    TRADES,
    Adapter,
    AdapterError,
    ConnectionSpec,
    Fetch,
    Output,
    Send,
    Subscription,
)
from gateways.books import SYNCED, Books, no_rule
from gateways.polling import TAG, Bar, CandlePoller, PolledCandles, json_rows
from gateways.resync import Resubscriber
from gateways.system_status import ONLINE

_S = 1_000_000_000
_MS = 1_000_000  # candle stop = the bar's last millisecond, as the other adapters
_CANDLE_SECONDS = 300  # the candles channel only offers 5-minute bars
CANDLE_INTERVAL = "5m"  # the only candle_interval of the websocket; the others are polled from REST
# candle_interval → (granularity of the public REST candles, bar length in ns). The REST API offers
# 5m too, but the websocket streams it.
REST_CANDLES: dict[str, tuple[str, int]] = {
    "1m": ("ONE_MINUTE", 60 * _S), "5m": ("FIVE_MINUTE", 300 * _S), "15m": ("FIFTEEN_MINUTE", 900 * _S),
    "30m": ("THIRTY_MINUTE", 1800 * _S), "1h": ("ONE_HOUR", 3600 * _S), "2h": ("TWO_HOUR", 7200 * _S),
    "6h": ("SIX_HOUR", 6 * 3600 * _S), "1d": ("ONE_DAY", 86400 * _S),
}
# Bars one REST candles request spans (start..end): under the 350 a response may hold, with a margin
# for an inclusive end; a longer outage is caught up one such range after another, seconds apart.
REST_CANDLE_WINDOW = 300

# Our channel → Advanced Trade websocket channel (bbo without l2_book: the ticker's best bid/ask).
_WS_CHANNEL = {TRADES: "market_trades", L2_BOOK: "level2", TICKER: "ticker", BBO_CHANNEL: "ticker",
               CANDLES: "candles"}


def _expiry(text: str) -> str:
    return text[:10].replace("-", "")


class Coinbase(PolledCandles, Adapter):
    """Coinbase Advanced Trade spot (and the legacy Pro formats in recordings)."""

    exchange = "COINBASE"
    urls = {"ws": "wss://advanced-trade-ws.coinbase.com", "rest": "https://api.coinbase.com"}
    # Public endpoints: 10 requests/s per IP.
    rest_weight_per_minute = 600
    # Products per subscribe message and per connection (level2 is heavy: fewer per connection
    # keeps one connection's sequence gap from resyncing too many books).
    products_per_message: ClassVar[int] = 100
    books_per_connection: ClassVar[int] = 50
    products_per_connection: ClassVar[int] = 200
    messages_per_second: ClassVar[float] = 5.0
    timer_interval = 5.0
    default_candle_interval = CANDLE_INTERVAL   # the candles channel has no other
    # A resubscribed book whose snapshot hasn't come after this long is resubscribed again.
    resubscribe_timeout_ns: ClassVar[int] = 30 * _S
    # One product is resubscribed at most this often (no published subscribe-rate limit; a bad
    # snapshot must not trigger another resubscribe at once).
    resubscribe_min_interval_ns: ClassVar[int] = 5 * _S

    def __init__(self, subscription: Subscription, **kwargs: Any) -> None:
        super().__init__(subscription, **kwargs)
        self.books = Books(self.exchange, no_rule, on_resync=self._resubscribe_one, counters=self.counters)
        self._wanted = frozenset(ch for ch, syms in subscription.channels.items() if syms)
        self._ticker_symbols = frozenset(subscription.symbols(TICKER))
        # BBO from the ticker channel only where no book gives it (a book publishes BBO on top changes).
        self._bbo_from_ticker = frozenset(subscription.symbols(BBO_CHANNEL)) - frozenset(subscription.symbols(L2_BOOK))
        self._last_bbo: dict[str, tuple[Any, ...]] = {}
        self.candle_poller = CandlePoller(self, {k: length for k, (_, length) in REST_CANDLES.items()},
                                          self._candles_request, self._candle_bars, REST_CANDLE_WINDOW)
        self._next_seq: dict[str, int] = {}          # conn → next expected sequence_num
        self._conn_books: dict[str, set[str]] = {}   # conn → normalized symbols whose l2 arrived there
        self._book_conn: dict[str, str] = {}         # normalized symbol → conn of its level2 subscription
        self.resubscribes = Resubscriber(self.counters, min_interval_ns=self.resubscribe_min_interval_ns,
                                         retry_ns=self.resubscribe_timeout_ns)
        self._now = 0
        self._product_status: dict[str, str] = {}     # product id → its status (status channel)

    # ------------------------------------------------------------ instruments
    def instrument_requests(self) -> list[Fetch]:
        return [Fetch(f"{self.url['rest']}/api/v3/brokerage/market/products", 1, "instruments")]

    def parse_instruments(self, url: str, body: str | bytes) -> list[Symbol]:
        data = orjson.loads(body)
        if type(data) is list:  # the retired Coinbase Pro /products list (recordings)
            data = {"products": [{"product_id": p["id"], "base_currency_id": p["base_currency"],
                                  "quote_currency_id": p["quote_currency"], "price_increment": p.get("quote_increment"),
                                  "base_increment": p.get("base_increment")} for p in data]}
        out: list[Symbol] = []
        for info in data["products"]:
            try:
                sym = self._instrument(info)
            except (ValueError, KeyError, TypeError):
                sym = None
            if sym is None:
                self.count("instruments.skipped")
                continue
            out.append(sym)
        return out

    def _instrument(self, info: dict[str, Any]) -> Symbol | None:
        pid = info["product_id"]
        tick = info.get("price_increment") or info.get("quote_increment") or None
        lot = info.get("base_increment") or None
        ptype = info.get("product_type", "SPOT")
        if ptype == "SPOT":
            return Symbol(info["base_currency_id"], info["quote_currency_id"], SPOT, exchange_symbol=pid,
                          tick_size=tick, lot_size=lot)
        details = info.get("future_product_details") or {}
        base = details.get("contract_root_unit") or info.get("base_currency_id")
        quote = info.get("quote_currency_id") or "USD"
        csize = details.get("contract_size") or None
        if details.get("contract_expiry_type") == "PERPETUAL":
            return Symbol(base, quote, PERPETUAL, exchange_symbol=pid, tick_size=tick, lot_size=lot,
                          contract_size=csize, settle=quote)
        expiry = details.get("contract_expiry")
        if ptype == "FUTURE" and expiry:
            return Symbol(base, quote, FUTURE, expiry=_expiry(expiry), exchange_symbol=pid, tick_size=tick,
                          lot_size=lot, contract_size=csize, settle=quote)
        return None

    def _symbol(self, pid: str) -> Symbol:
        sym = self.from_exchange.get(pid)
        if sym is None:
            # Spot ids are BASE-QUOTE already: accept products never loaded (recordings, new listings).
            base, sep, quote = pid.partition("-")
            if not sep or "-" in quote:
                raise AdapterError("unknown_symbol", pid)
            try:
                sym = Symbol(base, quote, SPOT, exchange_symbol=pid)
            except ValueError:
                raise AdapterError("unknown_symbol", pid) from None
            self.count("symbols.guessed")
            self.set_symbols([sym])
        return sym

    # ------------------------------------------------------------ connections
    def _sub_messages(self, kind: str, channel: str, pids: list[str]) -> list[str]:
        per = self.products_per_message
        return [orjson.dumps({"type": kind, "product_ids": pids[i:i + per], "channel": channel}).decode()
                for i in range(0, len(pids), per)]

    def build_connections(self) -> list[ConnectionSpec]:
        specs: list[ConnectionSpec] = []
        interval = 1.0 / self.messages_per_second
        self._book_conn.clear()

        def spec(n: int, groups: list[tuple[str, list[str]]]) -> ConnectionSpec:
            messages: list[str] = []
            streams: list[tuple[str, str]] = []
            all_pids: dict[str, None] = {}
            by_ws: dict[str, dict[str, None]] = {}  # ticker and bbo share one subscription per product
            for ch, syms in groups:
                pids = [self.exchange_symbol(s) for s in syms]
                by_ws.setdefault(_WS_CHANNEL[ch], {}).update(dict.fromkeys(pids))
                streams += [(ch, s) for s in syms]
                all_pids.update(dict.fromkeys(pids))
            # First whether the products trade at all (the status channel), then their data.
            messages += self._sub_messages("subscribe", "status", list(all_pids))
            for ws_channel, pids_set in by_ws.items():
                messages += self._sub_messages("subscribe", ws_channel, list(pids_set))
            # Without a subscribed heartbeats channel, quiet products let the server close the socket.
            messages += self._sub_messages("subscribe", "heartbeats", list(all_pids)[:1])
            return ConnectionSpec(id=f"{self.exchange}.{n}", url=self.url["ws"], subscribe=tuple(messages),
                                  subscribe_interval=interval, ping=None, ping_interval=20.0,
                                  silence_timeout=10.0, streams=tuple(streams))

        n = 0
        books = self.subscribed(L2_BOOK)
        for i in range(0, len(books), self.books_per_connection):
            chunk = books[i:i + self.books_per_connection]
            specs.append(spec(n, [(L2_BOOK, chunk)]))
            for s in chunk:
                self._book_conn[s] = specs[-1].id
            n += 1
        bbo = [s for s in self.subscribed(BBO_CHANNEL) if s in self._bbo_from_ticker]
        others = [(ch, syms) for ch, syms in ((TRADES, self.subscribed(TRADES)), (TICKER, self.subscribed(TICKER)),
                                               (BBO_CHANNEL, bbo), (CANDLES, self._candle_symbols())) if syms]
        # Split the non-book channels by products so one connection stays within limits.
        all_other = list(dict.fromkeys(s for _, syms in others for s in syms))
        for i in range(0, len(all_other), self.products_per_connection):
            keep = set(all_other[i:i + self.products_per_connection])
            specs.append(spec(n, [(ch, [s for s in syms if s in keep]) for ch, syms in others
                                  if any(s in keep for s in syms)]))
            n += 1
        return specs

    def _candle_symbols(self) -> list[str]:
        """The websocket candle subscriptions: none unless ``candle_interval`` is the channel's 5 minutes.

        Another interval is polled from REST instead; asking the poller here refuses (logged and
        counted once) an interval REST lacks too at subscription time, not at the first timer call.
        """
        if self.candle_interval == CANDLE_INTERVAL:
            return self.subscribed(CANDLES)
        self.candle_poller.symbols()
        return []

    def _candles_request(self, symbol: str, start: int) -> Fetch:
        granularity, length = REST_CANDLES[self.candle_interval]
        first = start // _S
        return Fetch(f"{self.url['rest']}/api/v3/brokerage/market/products/{self.exchange_symbol(symbol)}/candles"
                     f"?start={first}&end={first + REST_CANDLE_WINDOW * (length // _S)}&granularity={granularity}",
                     1, TAG, symbol)

    @staticmethod
    def _candle_bars(body: str | bytes) -> tuple[list[Bar], bool]:
        _, rows = json_rows(body)
        bars: list[Bar] = []
        for r in rows:
            start = r["start"]
            if type(start) is not str or not start.isdigit():
                raise AdapterError("bad_candle_time", repr(start))
            o, h, low, c, v = r["open"], r["high"], r["low"], r["close"], r["volume"]
            # Text kept as it is (exact); the Candle refuses text that is not a number.
            if type(o) is not str or type(h) is not str or type(low) is not str or type(c) is not str \
                    or type(v) is not str:
                raise AdapterError("bad_number", repr(r)[:200])
            bars.append((int(start) * _S, o, h, low, c, v))
        # The body never says there is more: the poller knows the range asked (REST_CANDLE_WINDOW) and
        # asks the next one soon when it ended before the answer (catching up after an outage).
        return bars, False

    def handle_rest(self, fetch: Fetch, body: str | bytes, ts: int, out: Output) -> None:
        self.candle_poller.on_response(fetch, body, ts, out)

    # ------------------------------------------------------------ websocket messages
    def handle_open(self, conn: str, ts: int, out: Output) -> None:
        # sequence_num restarts with every connection.
        self._next_seq.pop(conn, None)

    def handle_close(self, conn: str, ts: int, reason: str, out: Output) -> None:
        self._next_seq.pop(conn, None)
        symbols = [s for s in self._conn_books.pop(conn, set()) if s in self.books]
        symbols += [s for s, c in self._book_conn.items() if c == conn and s in self.books and s not in symbols]
        self.books.invalidate_all(f"disconnected: {reason}" if reason else "disconnected", out, symbols=symbols,
                                  receipt_timestamp=ts, resync=False)
        self.resubscribes.forget(symbols)  # the reconnection subscribes them afresh

    def handle_message(self, conn: str, raw: str | bytes, ts: int, out: Output) -> None:
        self._now = ts
        msg = orjson.loads(raw)
        if type(msg) is not dict:
            raise AdapterError("not_an_object")
        channel = msg.get("channel")
        if channel is None:
            self._legacy(msg, ts, out)
            return
        seq = msg.get("sequence_num")
        if seq is not None:
            self._check_sequence(conn, seq, ts, out)
        handler = self._handlers.get(channel)
        if handler is None:
            raise AdapterError("unknown_channel", str(channel))
        handler(self, conn, msg, ts, out)

    def _check_sequence(self, conn: str, seq: int, ts: int, out: Output) -> None:
        expected = self._next_seq.get(conn)
        self._next_seq[conn] = seq + 1
        if expected is None or seq == expected:
            return
        if seq < expected:
            self.count("sequence.backwards")
            return
        self.count("sequence.gaps")
        # Every book of the connection: synced ones are now unproven, waiting ones may have lost
        # the very snapshot they wait for.
        names = set(self._conn_books.get(conn, ())) | {s for s, c in self._book_conn.items() if c == conn}
        symbols = sorted(s for s in names if s in self.books)
        for sym in symbols:
            self.books.invalidate(sym, "sequence", out, expected=expected, received=seq, receipt_timestamp=ts,
                                  resync=False)
        if symbols:
            self._resubscribe(conn, symbols, out)

    def _resubscribe(self, conn: str, symbols: list[str], out: Output) -> None:
        # Products resubscribed too recently are deferred to the timer (Resubscriber).
        self._send_resubscribe(conn, [s for s in symbols if self.resubscribes.request(s, self._now, conn)], out)

    def _send_resubscribe(self, conn: str, symbols: list[str], out: Output) -> None:
        if not symbols:
            return
        pids = [self.to_exchange.get(s) or s for s in symbols]
        for payload in self._sub_messages("unsubscribe", "level2", pids) + self._sub_messages("subscribe", "level2",
                                                                                               pids):
            out.actions.append(Send(conn, payload))
        self.count("book.resubscribes", len(symbols))

    def handle_timer(self, ts: int, out: Output) -> None:
        self._now = max(self._now, ts)
        late: dict[str, list[str]] = {}
        for sym in self.resubscribes.due(ts, self.books.settled):
            late.setdefault(self.resubscribes.conn.get(sym) or self._book_conn.get(sym, ""), []).append(sym)
        for conn, syms in late.items():
            self._send_resubscribe(conn, syms, out)
        if self.candle_interval != CANDLE_INTERVAL:
            self.candle_poller.poll(ts, out)

    def _resubscribe_one(self, symbol: str, reason: str, out: Output) -> None:
        conn = self._book_conn.get(symbol)
        if conn is None:
            for c, syms in self._conn_books.items():
                if symbol in syms:
                    conn = c
                    break
        if conn is None:
            conn = self.connections()[0].id if self.connections() else f"{self.exchange}.0"
        self._resubscribe(conn, [symbol], out)

    def handle_resync(self, symbol: str, ts: int, out: Output) -> None:
        self._now = max(self._now, ts)
        self.books.invalidate(symbol, "requested", out, receipt_timestamp=ts, resync=False)
        self._resubscribe_one(symbol, "requested", out)

    # ---- channel handlers (conn, msg, ts, out)
    def _l2(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        t = msg.get("timestamp")
        t = iso_ns(t) if t else None
        for ev in msg["events"]:
            sym = self._symbol(ev["product_id"])
            name = sym.normalized
            books = self.books
            if name not in books:
                if self._wanted and L2_BOOK not in self._wanted:
                    self.ignore("unsubscribed_book")
                    continue
                books.add(name, sym.exchange_symbol)
            self._conn_books.setdefault(conn, set()).add(name)
            try:
                bids: list[tuple[str, str]] = []
                asks: list[tuple[str, str]] = []
                for u in ev["updates"]:
                    side = u["side"]
                    level = (u["price_level"], u["new_quantity"])
                    if side == "bid":
                        bids.append(level)
                    elif side == "offer" or side == "ask":
                        asks.append(level)
                    else:
                        raise AdapterError("bad_side", str(side))
                kind = ev.get("type")
                if kind == "snapshot":
                    books.snapshot(name, bids, asks, None, out, timestamp=t, receipt_timestamp=ts)
                elif kind == "update":
                    if books.state(name) != SYNCED:
                        self.ignore("book_waiting_snapshot")
                        continue
                    books.delta(name, bids, asks, out, timestamp=t, receipt_timestamp=ts)
                else:
                    raise AdapterError("unknown_l2_type", str(kind))
            except Exception:
                books.malformed(name, out, ts)   # lost: the book is invalid from here, not silently behind
                raise

    def _trades(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        for ev in msg["events"]:
            if ev.get("type") == "snapshot":
                # Recent history sent on subscribe: already-published trades, not new ones.
                self.ignore("trade_snapshot")
                continue
            for tr in ev["trades"]:
                sym = self._symbol(tr["product_id"])
                side = tr["side"]
                taker = "sell" if side == "BUY" else "buy" if side == "SELL" else None
                if taker is None:
                    raise AdapterError("bad_side", str(side))
                t = tr.get("time")
                out.events.append(Trade(self.exchange, sym.normalized, taker, tr["size"], tr["price"],
                                        id=str(tr["trade_id"]), exchange_symbol=sym.exchange_symbol,
                                        timestamp=iso_ns(t) if t else None, receipt_timestamp=ts))

    def _ticker(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        t = msg.get("timestamp")
        t = iso_ns(t) if t else None
        wanted = self._wanted
        for ev in msg["events"]:
            for tk in ev["tickers"]:
                sym = self._symbol(tk["product_id"])
                name = sym.normalized
                bid, ask = tk.get("best_bid") or None, tk.get("best_ask") or None
                if not wanted or name in self._ticker_symbols:
                    out.events.append(Ticker(self.exchange, name, bid=bid, ask=ask, last=tk.get("price") or None,
                                             volume=tk.get("volume_24_h") or None,
                                             exchange_symbol=sym.exchange_symbol, timestamp=t, receipt_timestamp=ts))
                elif name not in self._bbo_from_ticker:
                    self.ignore("unsubscribed_ticker")
                if name in self._bbo_from_ticker:
                    self._ticker_bbo(sym, tk, bid, ask, t, ts, out)

    def _ticker_bbo(self, sym: Symbol, tk: dict[str, Any], bid: Any, ask: Any, t: int | None, ts: int,
                    out: Output) -> None:
        # ticker_batch and older ticker messages carry no sizes: the BBO then has none.
        top = (bid, tk.get("best_bid_quantity") or None, ask, tk.get("best_ask_quantity") or None)
        if self._last_bbo.get(sym.normalized) == top:
            self.ignore("bbo_unchanged")  # a match that left the top of book as it was
            return
        self._last_bbo[sym.normalized] = top
        out.events.append(BBO(self.exchange, sym.normalized, bid=top[0], bid_size=top[1], ask=top[2], ask_size=top[3],
                              exchange_symbol=sym.exchange_symbol, timestamp=t, receipt_timestamp=ts))

    def _candles(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        t = msg.get("timestamp")
        t = iso_ns(t) if t else None
        for ev in msg["events"]:
            if ev.get("type") == "snapshot":
                # History on subscribe; the live bar follows as updates.
                self.ignore("candle_snapshot")
                continue
            for c in ev["candles"]:
                sym = self._symbol(c["product_id"])
                start = int(c["start"]) * _S
                out.events.append(Candle(self.exchange, sym.normalized, start, start + _CANDLE_SECONDS * _S - _MS,
                                         "5m", c["open"], c["close"], c["high"], c["low"], c["volume"],
                                         exchange_symbol=sym.exchange_symbol, timestamp=t, receipt_timestamp=ts))

    def _heartbeats(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        self.ignore("heartbeat")

    def _subscriptions(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        self.ignore("subscriptions")

    def _status(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        """Products and their status (sent on subscribe, then on a preset interval): the gateway's
        products not ``online`` make the exchange ``partial``, all of them ``maintenance``."""
        for event in msg.get("events") or ():
            for p in event.get("products") or ():
                pid, status = p.get("id"), p.get("status")
                if not isinstance(pid, str) or not isinstance(status, str) or not status:
                    raise AdapterError("bad_system_status", str(p)[:200])
                self._product_status[pid] = status if not p.get("status_message") else \
                    f"{status}: {p['status_message']}"
        ours = {self.to_exchange[s] for s in self.subscription.all_symbols() if s in self.to_exchange}
        down = {pid: st for pid, st in self._product_status.items() if pid in ours and st != ONLINE}
        named = ", ".join(f"{pid} {st}" for pid, st in sorted(down.items()))
        self.system.set_share("products", len(down), len(ours),
                              f"Coinbase: {len(down)} of this gateway's {len(ours)} products not online ({named})"
                              if down else "Coinbase: every product of this gateway online")
        self.system.publish(ts, out)

    def _error_msg(self, conn: str, msg: dict[str, Any], ts: int, out: Output) -> None:
        raise AdapterError("exchange_error", str(msg.get("message") or msg)[:200])

    _handlers: ClassVar[dict[str, Any]] = {
        "l2_data": _l2, "market_trades": _trades, "ticker": _ticker, "ticker_batch": _ticker,
        "candles": _candles, "heartbeats": _heartbeats, "subscriptions": _subscriptions, "status": _status,
        "error": _error_msg,
    }

    # ------------------------------------------------------------ legacy Coinbase Pro (replay only)
    def _legacy(self, msg: dict[str, Any], ts: int, out: Output) -> None:
        kind = msg.get("type")
        if kind in ("match", "last_match"):
            sym = self._symbol(msg["product_id"])
            # Pro's side is the maker order's side.
            taker = "sell" if msg["side"] == "buy" else "buy"
            t = msg.get("time")
            out.events.append(Trade(self.exchange, sym.normalized, taker, msg["size"], msg["price"],
                                    id=str(msg["trade_id"]), exchange_symbol=sym.exchange_symbol,
                                    timestamp=iso_ns(t) if t else None, receipt_timestamp=ts))
        elif kind == "snapshot":
            sym = self._symbol(msg["product_id"])
            self.books.add(sym.normalized, sym.exchange_symbol)
            bids = [self._level(lv) for lv in msg["bids"]]
            asks = [self._level(lv) for lv in msg["asks"]]
            self.books.snapshot(sym.normalized, bids, asks, None, out, receipt_timestamp=ts)
        elif kind == "l2update":
            sym = self._symbol(msg["product_id"])
            name = sym.normalized
            if name not in self.books or self.books.state(name) != SYNCED:
                self.ignore("book_waiting_snapshot")
                return
            try:
                bids, asks = [], []
                for side, price, size in msg["changes"]:
                    (bids if side == "buy" else asks).append(self._level((price, size)))
                t = msg.get("time")
                # Pro sometimes sends the zero time 0001-01-01: no usable exchange time.
                t = iso_ns(t) if t and not t.startswith("0001") else None
                self.books.delta(name, bids, asks, out, timestamp=t, receipt_timestamp=ts)
            except Exception:
                self.books.malformed(name, out, ts)   # lost: the book is invalid from here, not silently behind
                raise
        elif kind == "ticker":
            sym = self._symbol(msg["product_id"])
            t = msg.get("time")
            out.events.append(Ticker(self.exchange, sym.normalized, bid=msg.get("best_bid") or None,
                                     ask=msg.get("best_ask") or None, last=msg.get("price") or None,
                                     volume=msg.get("volume_24h") or None, exchange_symbol=sym.exchange_symbol,
                                     timestamp=iso_ns(t) if t else None, receipt_timestamp=ts))
        elif kind in ("subscriptions", "heartbeat"):
            self.ignore(f"legacy_{kind}")
        elif kind == "error":
            raise AdapterError("exchange_error", str(msg.get("message"))[:200])
        else:
            raise AdapterError("unknown_message", str(kind))

    @staticmethod
    def _level(lv: Any) -> tuple[str, str]:
        price, size = lv[0], lv[1]
        if type(price) is not str or type(size) is not str:
            raise AdapterError("bad_level", repr(lv))
        try:
            if float(size) < 0 or float(price) <= 0:
                raise AdapterError("bad_level", repr(lv))
        except ValueError:
            raise AdapterError("bad_level", repr(lv)) from None
        return price, size
