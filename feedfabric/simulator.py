"""A small, seeded market simulator that writes captures in exchange-native message formats.

``feedfabric demo`` and the tests need market data without a network, and the real
recordings in ../shared may not be shipped. This module makes its own: one shared price
process per asset, and per exchange an order book, trades and tickers that follow it, written
as the **exact messages each exchange sends** (the same bytes the adapters parse live) into
feedfabric captures (``.ffcap``, via the gateway engineer's :class:`CaptureWriter`).

The model (all randomness from ``random.Random(seed)``, timestamps from a fixed start, so the
same seed gives the same messages):

- each asset (BTC, ETH) has a mid price doing a random walk in ticks; every exchange quotes
  around it (bid below, ask above) with its own random half-spread and tick, so the NBBO
  changes hands but is never crossed;
- each exchange book keeps ``depth`` levels a side, a few ticks apart; every step (50-150 ms)
  the book is re-targeted around the new mid and a few sizes change; the difference
  old → new is the exchange's delta message (size 0 = removed level);
- now and then a trade prints at the best bid or ask; every second a ticker.

Formats written (today's public APIs):

- **Binance spot** (``BINANCE``): REST ``/api/v3/exchangeInfo``; combined stream
  ``/stream`` with ``<sym>@aggTrade``, ``<sym>@depth@100ms`` (``U``/``u`` update ids) and
  ``<sym>@bookTicker``; the REST depth snapshot ``/api/v3/depth`` (``lastUpdateId``)
  recorded after the first updates, as the sync procedure requires.
- **Coinbase Advanced Trade** (``COINBASE``): REST ``/api/v3/brokerage/market/products``;
  one websocket with ``level2`` (``l2_data`` snapshot then updates), ``market_trades``
  and ``ticker`` channels, one ``sequence_num`` per connection.
- **Kraken spot websocket v2** (``KRAKEN``): REST ``/0/public/AssetPairs``; the ``instrument``
  snapshot; ``book`` (snapshot/update with the CRC32 ``checksum`` of the top 10 levels
  formatted at the pair's precision), ``trade`` and ``ticker`` channels; numbers are JSON
  numbers as Kraken v2 sends them.

Usage: ``python -m feedfabric.simulator --out sample_data --seed 7 --seconds 30``.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from cryptofeed_types.book import kraken_checksum

START_NS = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z: fixed, so captures are reproducible
QTY_SCALE = 10 ** 8                   # sizes are integers of 1e-8


@dataclass
class Asset:
    base: str
    mid: int          # in cents
    vol: int          # random-walk step in cents


ASSETS = (Asset("BTC", 4_300_000, 300), Asset("ETH", 230_000, 25))


def _cents(c: int, dp: int) -> str:
    """Cents as a decimal string with ``dp`` (>= 2) places."""
    s = f"{c // 100}.{c % 100:02d}"
    return s + "0" * (dp - 2)


def _qty(q: int, dp: int = 8) -> str:
    s = f"{q // QTY_SCALE}.{q % QTY_SCALE:08d}"
    return s[: len(s) - (8 - dp)] if dp < 8 else s


def _iso(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ns % 1_000_000_000 // 1000:06d}Z"


@dataclass
class Book:
    """One exchange's book of one asset, in integer cents and 1e-8 units."""

    tick: int                                   # cents between price levels
    depth: int
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)

    def best(self) -> tuple[int, int, int, int]:
        b = max(self.bids)
        a = min(self.asks)
        return b, self.bids[b], a, self.asks[a]

    def retarget(self, mid: int, rng: random.Random, min_half: int = 0) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Move the book around ``mid``; returns the changed (price, qty) levels, qty 0 = removed."""
        # Every venue quotes strictly around the shared mid (bid below, ask above), so the
        # cross-venue NBBO is never crossed; who holds the best price still changes,
        # because each venue's half-spread and tick rounding differ from step to step.
        # The half-spread is at least one step of the mid's random walk, so venues that lag
        # each other by a step (they are not in lockstep) still do not cross.
        half = max(self.tick * rng.randint(1, 2), min_half + self.tick * rng.randint(0, 2))
        top_bid = (mid - half) // self.tick * self.tick
        top_ask = -((-(mid + half)) // self.tick) * self.tick
        want_b = {top_bid - i * self.tick for i in range(self.depth)}
        want_a = {top_ask + i * self.tick for i in range(self.depth)}
        changes = []
        for side, want in ((self.bids, want_b), (self.asks, want_a)):
            out: list[tuple[int, int]] = []
            for p in sorted(set(side) - want):
                del side[p]
                out.append((p, 0))
            for p in sorted(want - set(side)):
                side[p] = rng.randint(1, 40_000) * 1000
                out.append((p, side[p]))
            for p in rng.sample(sorted(want), k=min(2, len(want))):
                q = rng.randint(1, 40_000) * 1000
                if q != side[p]:
                    side[p] = q
                    out.append((p, q))
            changes.append(out)
        return changes[0], changes[1]


class Exchange:
    """Base of the per-exchange writers: turns simulator steps into native messages."""

    name = ""
    tick = 1
    quote: str   # set by every writer: the quote currency of its symbols

    def __init__(self, writer, assets: tuple[Asset, ...], depth: int) -> None:
        self.w = writer
        self.books = {a.base: Book(self.tick, depth) for a in assets}
        self.trade_id = 1000

    def begin(self, ts: int) -> None: ...
    def book(self, base: str, ts: int, bids: list, asks: list, first: bool) -> None: ...
    def trade(self, base: str, ts: int, side: str, price: int, qty: int) -> None: ...
    def ticker(self, base: str, ts: int, last: int) -> None: ...

    @staticmethod
    def j(obj: object) -> str:
        return orjson.dumps(obj).decode()


class BinanceWriter(Exchange):
    name = "BINANCE"
    tick = 1
    quote = "USDT"

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.update_id = {b: 1_000_000 * (i + 1) for i, b in enumerate(self.books)}
        self.updates_seen = {b: 0 for b in self.books}
        self.snapshot_done: set[str] = set()

    def sym(self, base: str) -> str:
        return f"{base}{self.quote}"

    def begin(self, ts: int) -> None:
        info = {"timezone": "UTC", "serverTime": ts // 1_000_000, "symbols": [
            {"symbol": self.sym(b), "status": "TRADING", "baseAsset": b, "quoteAsset": self.quote,
             "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
                          "tickSize": "0.01000000"},
                         {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
                          "stepSize": "0.00001000"}]} for b in self.books]}
        self.w.rest(ts, "https://api.binance.com/api/v3/exchangeInfo", self.j(info))
        self.w.connect("ws0", ts + 1000, "wss://stream.binance.com:9443/stream")
        streams = [f"{self.sym(b).lower()}@{s}" for b in self.books for s in ("aggTrade", "depth@100ms", "bookTicker")]
        self.w.send("ws0", ts + 2000, self.j({"method": "SUBSCRIBE", "params": streams, "id": 1}))
        self.w.recv("ws0", ts + 3000, self.j({"result": None, "id": 1}))

    def book(self, base: str, ts: int, bids: list, asks: list, first: bool) -> None:
        bk = self.books[base]
        u0 = self.update_id[base] + 1
        u1 = u0 + max(len(bids) + len(asks), 1) - 1
        self.update_id[base] = u1
        s = self.sym(base)
        data = {"e": "depthUpdate", "E": ts // 1_000_000, "s": s, "U": u0, "u": u1,
                "b": [[_cents(p, 8), _qty(q)] for p, q in bids], "a": [[_cents(p, 8), _qty(q)] for p, q in asks]}
        self.w.recv("ws0", ts, self.j({"stream": f"{s.lower()}@depth@100ms", "data": data}))
        self.updates_seen[base] += 1
        # The REST snapshot is taken after a couple of buffered updates, like a live gateway.
        if base not in self.snapshot_done and self.updates_seen[base] == 2:
            self.snapshot_done.add(base)
            snap = {"lastUpdateId": u1,
                    "bids": [[_cents(p, 8), _qty(bk.bids[p])] for p in sorted(bk.bids, reverse=True)],
                    "asks": [[_cents(p, 8), _qty(bk.asks[p])] for p in sorted(bk.asks)]}
            self.w.rest(ts + 500_000, f"https://api.binance.com/api/v3/depth?symbol={s}&limit=1000", self.j(snap))
        b, bq, a, aq = bk.best()
        self.w.recv("ws0", ts + 1000, self.j({"stream": f"{s.lower()}@bookTicker", "data": {
            "u": u1, "s": s, "b": _cents(b, 8), "B": _qty(bq), "a": _cents(a, 8), "A": _qty(aq)}}))

    def trade(self, base: str, ts: int, side: str, price: int, qty: int) -> None:
        self.trade_id += 1
        s = self.sym(base)
        ms = ts // 1_000_000
        self.w.recv("ws0", ts, self.j({"stream": f"{s.lower()}@aggTrade", "data": {
            "e": "aggTrade", "E": ms, "s": s, "a": self.trade_id, "p": _cents(price, 8), "q": _qty(qty),
            "f": self.trade_id * 3, "l": self.trade_id * 3, "T": ms, "m": side == "sell", "M": True}}))


class CoinbaseWriter(Exchange):
    name = "COINBASE"
    tick = 1
    quote = "USD"

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.seq = 0

    def pid(self, base: str) -> str:
        return f"{base}-{self.quote}"

    def msg(self, ts: int, channel: str, events: list) -> None:
        self.w.recv("ws0", ts, self.j({"channel": channel, "client_id": "", "timestamp": _iso(ts),
                                       "sequence_num": self.seq, "events": events}))
        self.seq += 1

    def begin(self, ts: int) -> None:
        products = {"products": [
            {"product_id": self.pid(b), "price": "0", "base_increment": "0.00000001", "quote_increment": "0.01",
             "price_increment": "0.01", "base_currency_id": b, "quote_currency_id": self.quote,
             "product_type": "SPOT", "status": "online", "trading_disabled": False} for b in self.books],
            "num_products": len(self.books)}
        self.w.rest(ts, "https://api.coinbase.com/api/v3/brokerage/market/products", self.j(products))
        self.w.connect("ws0", ts + 1000, "wss://advanced-trade-ws.coinbase.com")
        pids = [self.pid(b) for b in self.books]
        for i, ch in enumerate(("level2", "market_trades", "ticker", "heartbeats")):
            self.w.send("ws0", ts + 2000 + i, self.j({"type": "subscribe", "product_ids": pids, "channel": ch}))
        self.msg(ts + 3000, "subscriptions", [{"subscriptions": {"level2": pids, "market_trades": pids,
                                                                  "ticker": pids, "heartbeats": pids[:1]}}])

    def book(self, base: str, ts: int, bids: list, asks: list, first: bool) -> None:
        bk = self.books[base]
        t = _iso(ts)
        if first:
            bids = [(p, bk.bids[p]) for p in sorted(bk.bids, reverse=True)]
            asks = [(p, bk.asks[p]) for p in sorted(bk.asks)]
        updates = [{"side": "bid", "event_time": t, "price_level": _cents(p, 2), "new_quantity": _qty(q)}
                   for p, q in bids]
        updates += [{"side": "offer", "event_time": t, "price_level": _cents(p, 2), "new_quantity": _qty(q)}
                    for p, q in asks]
        self.msg(ts, "l2_data", [{"type": "snapshot" if first else "update", "product_id": self.pid(base),
                                  "updates": updates}])

    def trade(self, base: str, ts: int, side: str, price: int, qty: int) -> None:
        self.trade_id += 1
        # Advanced Trade reports the maker's side: a taker buy is a SELL print.
        self.msg(ts, "market_trades", [{"type": "update", "trades": [{
            "trade_id": str(self.trade_id), "product_id": self.pid(base), "price": _cents(price, 2),
            "size": _qty(qty), "side": "SELL" if side == "buy" else "BUY", "time": _iso(ts)}]}])

    def ticker(self, base: str, ts: int, last: int) -> None:
        b, bq, a, aq = self.books[base].best()
        self.msg(ts, "ticker", [{"type": "update", "tickers": [{
            "type": "ticker", "product_id": self.pid(base), "price": _cents(last, 2), "volume_24_h": "1234.5678",
            "low_24_h": _cents(last - 5000, 2), "high_24_h": _cents(last + 5000, 2), "best_bid": _cents(b, 2),
            "best_bid_quantity": _qty(bq), "best_ask": _cents(a, 2), "best_ask_quantity": _qty(aq)}]}])


class KrakenWriter(Exchange):
    name = "KRAKEN"
    tick = 10          # 0.1 USD
    quote = "USD"
    price_precision = 1
    qty_precision = 8

    def sym(self, base: str) -> str:
        return f"{base}/{self.quote}"

    def p(self, cents: int) -> float:
        return float(_cents(cents, 2))

    def q(self, qty: int) -> float:
        return float(_qty(qty))

    def begin(self, ts: int) -> None:
        result = {}
        for b in self.books:
            kb = "XBT" if b == "BTC" else b
            result[f"X{kb}ZUSD"] = {"altname": f"{kb}USD", "wsname": f"{kb}/USD", "base": f"X{kb}", "quote": "ZUSD",
                                    "pair_decimals": self.price_precision, "lot_decimals": self.qty_precision,
                                    "cost_decimals": 5, "tick_size": "0.1", "ordermin": "0.0001", "status": "online"}
        self.w.rest(ts, "https://api.kraken.com/0/public/AssetPairs", self.j({"error": [], "result": result}))
        self.w.connect("ws0", ts + 1000, "wss://ws.kraken.com/v2")
        self.w.recv("ws0", ts + 1500, self.j({"channel": "status", "type": "update", "data": [
            {"version": "2.0.0", "system": "online", "api_version": "v2", "connection_id": 1}]}))
        syms = [self.sym(b) for b in self.books]
        self.w.send("ws0", ts + 2000, self.j({"method": "subscribe", "params": {"channel": "instrument"}}))
        self.w.recv("ws0", ts + 2500, self.j({"channel": "instrument", "type": "snapshot", "data": {
            "assets": [], "pairs": [{"symbol": self.sym(b), "base": b, "quote": self.quote, "status": "online",
                                     "qty_precision": self.qty_precision, "qty_increment": 1e-8,
                                     "price_precision": self.price_precision, "price_increment": 0.1,
                                     "cost_precision": 5, "qty_min": 0.0001} for b in self.books]}}))
        for i, ch in enumerate(("book", "trade", "ticker")):
            params = {"channel": ch, "symbol": syms, **({"depth": 10} if ch == "book" else {})}
            self.w.send("ws0", ts + 3000 + i, self.j({"method": "subscribe", "params": params, "req_id": i + 1}))
            for s in syms:
                self.w.recv("ws0", ts + 3500 + i, self.j({"method": "subscribe", "result": {
                    "channel": ch, "symbol": s, "snapshot": True}, "success": True, "req_id": i + 1}))

    def checksum(self, bk: Book) -> int:
        bids = [(_cents(p, 2)[:-1], _qty(bk.bids[p])) for p in sorted(bk.bids, reverse=True)[:10]]
        asks = [(_cents(p, 2)[:-1], _qty(bk.asks[p])) for p in sorted(bk.asks)[:10]]
        return kraken_checksum(bids, asks)

    def book(self, base: str, ts: int, bids: list, asks: list, first: bool) -> None:
        bk = self.books[base]
        if first:
            bids = [(p, bk.bids[p]) for p in sorted(bk.bids, reverse=True)]
            asks = [(p, bk.asks[p]) for p in sorted(bk.asks)]
        entry = {"symbol": self.sym(base),
                 "bids": [{"price": self.p(p), "qty": self.q(q)} for p, q in bids],
                 "asks": [{"price": self.p(p), "qty": self.q(q)} for p, q in asks],
                 "checksum": self.checksum(bk)}
        if not first:
            entry["timestamp"] = _iso(ts)
        self.w.recv("ws0", ts, self.j({"channel": "book", "type": "snapshot" if first else "update",
                                       "data": [entry]}))

    def trade(self, base: str, ts: int, side: str, price: int, qty: int) -> None:
        self.trade_id += 1
        self.w.recv("ws0", ts, self.j({"channel": "trade", "type": "update", "data": [{
            "symbol": self.sym(base), "side": side, "price": self.p(price), "qty": self.q(qty),
            "ord_type": "market", "trade_id": self.trade_id, "timestamp": _iso(ts)}]}))

    def ticker(self, base: str, ts: int, last: int) -> None:
        b, bq, a, aq = self.books[base].best()
        self.w.recv("ws0", ts, self.j({"channel": "ticker", "type": "update", "data": [{
            "symbol": self.sym(base), "bid": self.p(b), "bid_qty": self.q(bq), "ask": self.p(a),
            "ask_qty": self.q(aq), "last": self.p(last), "volume": 1234.5678, "vwap": self.p(last),
            "low": self.p(last - 5000), "high": self.p(last + 5000), "change": 0.0, "change_pct": 0.0}]}))


WRITERS: dict[str, type[Exchange]] = {"BINANCE": BinanceWriter, "COINBASE": CoinbaseWriter, "KRAKEN": KrakenWriter}


def symbols_of(exchange: str) -> list[str]:
    """The normalized symbols the simulator writes for ``exchange``."""
    quote = WRITERS[exchange].quote
    return [f"{a.base}-{quote}" for a in ASSETS]


@dataclass
class Simulator:
    """Generates captures; see the module docstring. Same ``seed`` → same messages."""

    seed: int = 7
    seconds: float = 30.0
    depth: int = 15
    exchanges: tuple[str, ...] = ("BINANCE", "COINBASE", "KRAKEN")

    def steps(self, rng: random.Random) -> Iterator[tuple[int, str, int]]:
        """(ts, asset, mid) for every step of every asset, in time order."""
        mids = {a.base: a.mid for a in ASSETS}
        t = START_NS
        end = START_NS + int(self.seconds * 1e9)
        while t < end:
            t += rng.randint(50, 150) * 1_000_000
            for a in ASSETS:
                mids[a.base] += rng.choice((-1, 0, 0, 1)) * a.vol
                yield t, a.base, mids[a.base]

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write one ``<exchange>.ffcap`` per exchange into ``out_dir``; returns exchange → path."""
        from gateways.capture import CaptureWriter

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for n, name in enumerate(self.exchanges):
            cls = WRITERS[name]
            # Each exchange gets its own stream of randomness (adding one never changes another).
            rng = random.Random(f"{self.seed}/{name}")
            steps_rng = random.Random(self.seed)   # the shared price process
            path = out / f"{name.lower()}.ffcap"
            path.unlink(missing_ok=True)
            syms = symbols_of(name)
            channels = {"trades": syms, "l2_book": syms, "ticker": syms}
            with CaptureWriter(path, exchange=name, channels=channels,
                               meta={"started": START_NS, "generator": "feedfabric.simulator",
                                     "seed": self.seed, "seconds": self.seconds}) as w:
                ex = cls(w, ASSETS, self.depth)
                ex.begin(START_NS)
                started: set[str] = set()
                next_ticker = START_NS + 1_000_000_000
                last = {a.base: a.mid for a in ASSETS}
                vols = {a.base: a.vol for a in ASSETS}
                for ts, base, mid in self.steps(steps_rng):
                    ts += n * 7_000_000 + rng.randint(0, 3_000_000)  # exchanges are not in lockstep
                    bids, asks = ex.books[base].retarget(mid, rng, min_half=vols[base])
                    first = base not in started
                    started.add(base)
                    ex.book(base, ts, bids, asks, first)
                    if rng.random() < 0.3:
                        b, _, a, _ = ex.books[base].best()
                        side = rng.choice(("buy", "sell"))
                        price = a if side == "buy" else b
                        last[base] = price
                        ex.trade(base, ts + 100_000, side, price, rng.randint(1, 20_000) * 1000)
                    if ts >= next_ticker:
                        for asset in ASSETS:
                            if asset.base in started:
                                ex.ticker(asset.base, ts + 200_000, last[asset.base])
                        next_ticker += 1_000_000_000
            paths[name] = path
        return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write simulated exchange captures (feedfabric .ffcap).")
    parser.add_argument("--out", default="sample_data", help="output directory")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=30.0, help="simulated duration")
    parser.add_argument("--exchange", action="append", choices=sorted(WRITERS), help="only these (repeatable)")
    args = parser.parse_args(argv)
    sim = Simulator(seed=args.seed, seconds=args.seconds,
                    exchanges=tuple(args.exchange) if args.exchange else Simulator.exchanges)
    for name, path in sim.write(args.out).items():
        print(f"{name}: {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
