"""NBBO: the calculator against an independent brute-force computation, and the process on the bus."""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal

from bus.subscriber import Subscriber
from consumers.nbbo import NBBOCalculator, NBBOConsumer
from cryptofeed_types.events import BBO, NBBO, Gap, Heartbeat, Reset, Status

EXCHANGES = ("AAA", "BBB", "CCC")
SYMBOLS = ("BTC-USDT", "ETH-USDT")


def _bbo(rng: random.Random, ex: str, sym: str, t: int) -> BBO:
    mid = 100 + rng.randint(-5, 5)
    bid = Decimal(mid) - Decimal(rng.randint(0, 20)) / 10
    ask = Decimal(mid) + Decimal(rng.randint(-2, 20)) / 10  # sometimes crossed on purpose
    none_side = rng.random() < 0.05
    return BBO(ex, sym, bid=None if none_side else str(bid), bid_size=None if none_side else str(rng.randint(1, 3)),
               ask=str(ask), ask_size=str(rng.randint(1, 3)), timestamp=t, receipt_timestamp=t)


def _stream(seed: int, n: int) -> list[tuple[str, object]]:
    """(gateway, event) pairs: quotes, a gateway going stale and back, feed states, gaps/resets."""
    rng = random.Random(seed)
    out: list[tuple[str, object]] = []
    for i in range(n):
        r = rng.random()
        ex = rng.choice(EXCHANGES)
        gw = ex.lower()
        sym = rng.choice(SYMBOLS)
        if r < 0.85:
            out.append((gw, _bbo(rng, ex, sym, i)))
        elif r < 0.90:
            out.append((gw, Status(gw, "gateway", rng.choice(["stale", "connected"]), receipt_timestamp=i)))
        elif r < 0.94:
            out.append((gw, Status(ex, "ws", rng.choice(["disconnected", "connected", "resyncing"]),
                                   receipt_timestamp=i)))
        elif r < 0.97:
            out.append((gw, Gap(ex, rng.choice(["book", "bbo"]), "test", symbol=sym, receipt_timestamp=i)))
        else:
            out.append((gw, Reset(ex, "book", "test", symbol=sym, receipt_timestamp=i)))
    return out


class Reference:
    """Brute-force NBBO with Decimal, written independently of consumers.nbbo."""

    def __init__(self) -> None:
        self.quotes: dict[tuple[str, str], BBO] = {}
        self.gateway_of: dict[str, str] = {}
        self.stale: set[str] = set()
        self.feeds: dict[tuple[str, str], str] = {}
        self.invalid: set[tuple[str, str]] = set()

    def apply(self, gw: str, ev: object) -> None:
        if isinstance(ev, BBO):
            self.quotes[(ev.exchange, ev.symbol)] = ev
            self.gateway_of[ev.exchange] = gw
        elif isinstance(ev, Status) and ev.feed == "gateway":
            (self.stale.add if ev.state == "stale" else self.stale.discard)(gw)
        elif isinstance(ev, Status):
            self.feeds[(ev.exchange, ev.feed)] = ev.state
        elif isinstance(ev, Gap) and ev.channel in ("book", "l3"):
            self.invalid.add((ev.exchange, ev.symbol))
        elif isinstance(ev, Reset):
            self.invalid.discard((ev.exchange, ev.symbol))

    def nbbo(self, sym: str) -> tuple:
        bids, asks = [], []
        for (ex, s), q in self.quotes.items():
            if s != sym or self.gateway_of[ex] in self.stale or (ex, s) in self.invalid:
                continue
            if any(st in ("disconnected", "resyncing", "stale", "error")
                   for (fx, _), st in self.feeds.items() if fx == ex):
                continue
            if q.bid is not None and q.ask is not None and q.bid >= q.ask:
                continue
            if q.bid is not None:
                bids.append((q.bid, q.bid_size, ex))
            if q.ask is not None:
                asks.append((q.ask, q.ask_size, ex))
        b = max(bids, key=lambda x: (x[0], x[1], [-ord(c) for c in x[2]]), default=None)
        a = min(asks, key=lambda x: (x[0], -x[1], x[2]), default=None)
        return (b[0] if b else None, b[1] if b else None, b[2] if b else None,
                a[0] if a else None, a[1] if a else None, a[2] if a else None)


def _check_stream(events: list[tuple[str, object]]) -> tuple[NBBOCalculator, list[NBBO]]:
    """Feed both; after every event the published NBBO of every symbol equals the reference."""
    calc, ref = NBBOCalculator(), Reference()
    published: dict[str, tuple] = {}
    history: list[NBBO] = []
    symbols: set[str] = set()
    for i, (gw, ev) in enumerate(events):
        for n in calc.on_event(ev, gw):
            assert published.get(n.symbol) != _view(n), "published although nothing changed"
            published[n.symbol] = _view(n)
            history.append(n)
        ref.apply(gw, ev)
        if isinstance(ev, BBO):
            symbols.add(ev.symbol)
        for sym in symbols:
            expected = ref.nbbo(sym)
            if sym in published or expected != (None,) * 6:
                assert published.get(sym) == expected, (i, sym)
    return calc, history


def _view(n: NBBO) -> tuple:
    return (n.bid, n.bid_size, n.bid_exchange, n.ask, n.ask_size, n.ask_exchange)


def test_nbbo_matches_brute_force_at_every_step() -> None:
    events = _stream(7, 3000)
    calc, _ = _check_stream(events)
    assert sum(isinstance(ev, Status) and ev.state == "stale" for _, ev in events) > 5
    assert calc.counters["crossed_quotes"] > 0 and calc.counters["nbbo"] > 100


def test_nbbo_over_replayed_captures_with_a_stale_exchange(shared_data) -> None:
    """Real bbo streams of several exchanges (each capture rebased to start at 0 and merged),
    with one gateway going stale for the middle third."""
    from gateways.replay import replay_capture

    streams = []
    for ex in ("BYBIT", "BINANCE_DELIVERY", "KRAKEN_FUTURES", "COINBASE", "KRAKEN"):
        evs = [e for e in replay_capture(shared_data / "cryptofeed" / ex, collect=True).events
               if isinstance(e, (BBO, Status, Gap, Reset))]
        if not evs:
            continue
        t0 = evs[0].receipt_timestamp
        streams += [(e.receipt_timestamp - t0, i, ex.lower(), e) for i, e in enumerate(evs)]
    streams.sort(key=lambda x: (x[0], x[1]))
    merged = [(gw, ev) for _, _, gw, ev in streams]
    assert sum(isinstance(e, BBO) for _, e in merged) > 1000
    third = len(merged) // 3
    merged.insert(2 * third, ("binance_delivery", Status("binance_delivery", "gateway", "connected",
                                                         receipt_timestamp=0)))
    merged.insert(third, ("binance_delivery", Status("binance_delivery", "gateway", "stale", receipt_timestamp=0)))
    _, history = _check_stream(merged)
    # Two exchanges quote the same perpetuals: their NBBO really moved between exchanges.
    shared = [n for n in history if n.symbol in ("EOS-USD-PERP", "XRP-USD-PERP")]
    assert len({n.bid_exchange for n in shared} | {n.ask_exchange for n in shared}) >= 2


def test_stale_exchange_leaves_and_recovers() -> None:
    calc = NBBOCalculator()
    calc.on_bbo(BBO("AAA", "BTC-USDT", bid="101", bid_size="1", ask="102", ask_size="1", receipt_timestamp=1), "a")
    calc.on_bbo(BBO("BBB", "BTC-USDT", bid="100", bid_size="2", ask="103", ask_size="2", receipt_timestamp=2), "b")
    assert _view(calc.on_status(Status("a", "gateway", "stale", receipt_timestamp=3), "a")[0]) == (
        Decimal(100), Decimal(2), "BBB", Decimal(103), Decimal(2), "BBB")
    assert calc.on_bbo(BBO("AAA", "BTC-USDT", bid="101.5", bid_size="1", ask="102", ask_size="1",
                           receipt_timestamp=4), "a") == []
    back = calc.on_status(Status("a", "gateway", "connected", receipt_timestamp=5), "a")
    assert _view(back[0])[:3] == (Decimal("101.5"), Decimal(1), "AAA")
    assert calc.on_bbo(BBO("BBB", "BTC-USDT", bid="100", bid_size="2", ask="103", ask_size="2",
                           receipt_timestamp=6), "b") == [], "unchanged NBBO must not be republished"


def test_exchange_in_maintenance_or_cancel_only_leaves() -> None:
    """An exchange's own system status (Status feed 'system', e.g. Kraken's): maintenance and
    cancel-only take it out of the NBBO, online brings it back; post-only and partial (part of the
    exchange down, the reason says which) quotes still count."""
    calc = NBBOCalculator()
    calc.on_bbo(BBO("KRAKEN", "BTC-USD", bid="101", bid_size="1", ask="102", ask_size="1", receipt_timestamp=1), "k")
    calc.on_bbo(BBO("BBB", "BTC-USD", bid="100", bid_size="2", ask="103", ask_size="2", receipt_timestamp=2), "b")
    for state in ("maintenance", "cancel_only"):
        (out,) = calc.on_status(Status("KRAKEN", "system", state, receipt_timestamp=3), "k")
        assert _view(out)[2] == "BBB" and _view(out)[5] == "BBB", state
        (back,) = calc.on_status(Status("KRAKEN", "system", "online", receipt_timestamp=4), "k")
        assert _view(back)[2] == "KRAKEN"
    assert calc.on_status(Status("KRAKEN", "system", "post_only", receipt_timestamp=5), "k") == []
    assert calc.on_status(Status("KRAKEN", "system", "partial", receipt_timestamp=6), "k") == []


def test_a_late_joiner_learns_feed_states_from_heartbeats() -> None:
    """An NBBO process started after Kraken announced maintenance never saw that Status: the
    heartbeats of Kraken's gateway carry it (feeds), before or after its first quote arrives."""
    for heartbeat_first in (True, False):
        calc = NBBOCalculator()
        hb = Heartbeat("k", {"messages": 1}, {"KRAKEN.0": "connected", "system": "maintenance"}, receipt_timestamp=1)
        if heartbeat_first:
            assert calc.on_event(hb, "k") == []                        # no quote of this gateway yet
        calc.on_event(BBO("BBB", "BTC-USD", bid="100", bid_size="2", ask="103", ask_size="2", receipt_timestamp=2), "b")
        out = calc.on_event(BBO("KRAKEN", "BTC-USD", bid="101", bid_size="1", ask="102", ask_size="1",
                                receipt_timestamp=3), "k")
        if heartbeat_first:
            assert out == []                                           # Kraken's better quote does not count
        else:
            assert _view(out[0])[2] == "KRAKEN"                        # nothing known against it yet
            (left,) = calc.on_event(hb, "k")
            assert _view(left)[2] == "BBB"
        assert calc.last["BTC-USD"][2] == "BBB" and calc.last["BTC-USD"][5] == "BBB", heartbeat_first
        assert calc.on_event(hb, "k") == []                            # the same states: nothing changes
        (back,) = calc.on_event(Heartbeat("k", {}, {"KRAKEN.0": "connected", "system": "online"},
                                          receipt_timestamp=4), "k")
        assert _view(back)[2] == "KRAKEN"


def test_a_feed_that_is_down_takes_out_only_the_symbols_it_quotes() -> None:
    """A gateway's heartbeats say which symbols each connection quotes (feed_quotes): Bybit's linear
    connection down takes out its perpetual, not its spot quotes; a candles-only connection down
    takes out nothing; a feed it did not describe, or the system status, the whole exchange."""
    calc = NBBOCalculator()
    for sym in ("BTC-USDT", "BTC-USDT-PERP"):
        calc.on_event(BBO("BYBIT", sym, bid="101", bid_size="1", ask="102", ask_size="1", receipt_timestamp=1), "y")
        calc.on_event(BBO("BBB", sym, bid="100", bid_size="2", ask="103", ask_size="2", receipt_timestamp=1), "b")
    feeds = {"spot": "connected", "linear": "connected", "business": "connected"}
    quotes = {"spot": ["BTC-USDT"], "linear": ["BTC-USDT-PERP"], "business": []}
    assert calc.on_event(Heartbeat("y", {"feed_quotes": quotes}, feeds, receipt_timestamp=2), "y") == []

    def best(out: list) -> list[tuple[str, str]]:
        return [(o.symbol, _view(o)[2]) for o in out]

    assert calc.on_status(Status("BYBIT", "business", "disconnected", receipt_timestamp=3), "y") == []
    assert best(calc.on_status(Status("BYBIT", "linear", "disconnected", receipt_timestamp=4), "y")) == [
        ("BTC-USDT-PERP", "BBB")]
    assert best(calc.on_status(Status("BYBIT", "system", "maintenance", receipt_timestamp=5), "y")) == [
        ("BTC-USDT", "BBB")]
    assert best(calc.on_status(Status("BYBIT", "system", "online", receipt_timestamp=6), "y")) == [
        ("BTC-USDT", "BYBIT")]
    assert best(calc.on_status(Status("BYBIT", "extra", "disconnected", receipt_timestamp=7), "y")) == [
        ("BTC-USDT", "BBB")]                                       # not described: the whole exchange
    calc.on_status(Status("BYBIT", "extra", "connected", receipt_timestamp=8), "y")
    assert best(calc.on_status(Status("BYBIT", "linear", "connected", receipt_timestamp=9), "y")) == [
        ("BTC-USDT-PERP", "BYBIT")]
    # Without feed_quotes (a gateway that does not describe its feeds): the whole exchange, as always.
    calc = NBBOCalculator()
    calc.on_event(BBO("BYBIT", "BTC-USDT", bid="101", bid_size="1", ask="102", ask_size="1", receipt_timestamp=1), "y")
    calc.on_event(BBO("BBB", "BTC-USDT", bid="100", bid_size="2", ask="103", ask_size="2", receipt_timestamp=1), "b")
    assert best(calc.on_status(Status("BYBIT", "business", "disconnected", receipt_timestamp=3), "y")) == [
        ("BTC-USDT", "BBB")]


def test_quote_equivalence_is_opt_in() -> None:
    off, on = NBBOCalculator(), NBBOCalculator({"USDT": "USD"})
    for calc in (off, on):
        calc.on_bbo(BBO("AAA", "BTC-USD", bid="10", bid_size="1", ask="12", ask_size="1", receipt_timestamp=1))
        calc.on_bbo(BBO("BBB", "BTC-USDT", bid="11", bid_size="1", ask="13", ask_size="1", receipt_timestamp=1))
    assert set(off.last) == {"BTC-USD", "BTC-USDT"}
    assert set(on.last) == {"BTC-USD"} and on.last["BTC-USD"][:3] == ("11", "1", "BBB")


def _pump_until(pred, out: Subscriber, latest: dict[str, NBBO], quotes, consumer, timeout: float = 10.0) -> None:
    """Publish ``quotes()`` (each (publisher, BBO) pair) and collect the NBBOs ``out`` receives into
    ``latest`` until ``pred()``; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        for pub, bbo in quotes():
            pub.publish(bbo)
        msg = out.recv(0.05)
        while msg is not None:
            latest[msg.event.symbol] = msg.event
            msg = out.recv(0)
    raise AssertionError(f"timed out; latest={latest} out={dict(out.counters)} consumer={dict(consumer.counters)}")


def test_nbbo_process_over_the_bus(bus_endpoint, publisher_factory) -> None:
    """Two gateways publish bbo; one stops (goes stale): the NBBO moves to the other one."""
    ep_a, ep_b, ep_n = bus_endpoint("ga"), bus_endpoint("gb"), bus_endpoint("nbbo")
    pa = publisher_factory("ga", ep_a, heartbeat_interval=0.1)
    pb = publisher_factory("gb", ep_b, heartbeat_interval=0.1)
    consumer = NBBOConsumer("nbbo", [ep_a, ep_b], publish=ep_n, heartbeat_timeout=0.6, tick_interval=0.05)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    # books=True (the default) also fetches last values on join: the first NBBO may be
    # published before this subscription is active, and an unchanged NBBO is not repeated.
    out = Subscriber(ep_n, ["nbbo."])
    try:
        latest: dict[str, NBBO] = {}

        def quotes() -> list:
            now = time.time_ns()
            bb = [(pb, BBO("BBB", "BTC-USDT", bid="100", bid_size="2", ask="101.5", ask_size="3", receipt_timestamp=now))]
            return bb if stopped else [(pa, BBO("AAA", "BTC-USDT", bid="101", bid_size="1", ask="102", ask_size="1",
                                                receipt_timestamp=now))] + bb

        def wait_for(pred) -> None:
            _pump_until(pred, out, latest, quotes, consumer)

        stopped = False
        wait_for(lambda: "BTC-USDT" in latest and _view(latest["BTC-USDT"]) == (
            Decimal(101), Decimal(1), "AAA", Decimal("101.5"), Decimal(3), "BBB"))
        stopped = True
        pa.close()
        wait_for(lambda: latest["BTC-USDT"].bid_exchange == "BBB")
        assert _view(latest["BTC-USDT"])[:3] == (Decimal(100), Decimal(2), "BBB")
        # A late joiner gets the current NBBO from the consumer's snapshot service at once.
        with Subscriber(ep_n, ["nbbo."]) as late:
            msg = late.recv(10)
            assert msg is not None and _view(msg.event) == _view(latest["BTC-USDT"])
    finally:
        consumer.stop()
        thread.join(10)
        out.close()
    assert not thread.is_alive() and consumer.counters["errors"] == 0


def test_nbbo_process_started_during_a_maintenance_leaves_that_exchange_out(bus_endpoint, publisher_factory) -> None:
    """AAA's gateway announced its exchange's maintenance before the NBBO process started: the
    process learns it from the gateway's heartbeats and leaves AAA's better quote out until the
    exchange is online again."""
    ep_a, ep_b, ep_n = bus_endpoint("ga"), bus_endpoint("gb"), bus_endpoint("nbbo")
    pa = publisher_factory("ga", ep_a, heartbeat_interval=0.1)
    pb = publisher_factory("gb", ep_b, heartbeat_interval=0.1)
    pa.publish(Status("AAA", "system", "maintenance", reason="AAA system status: maintenance",
                      receipt_timestamp=time.time_ns()))
    time.sleep(0.3)                                    # long past: nobody was subscribed to see it
    consumer = NBBOConsumer("nbbo", [ep_a, ep_b], publish=ep_n, heartbeat_timeout=2.0, tick_interval=0.05)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    out = Subscriber(ep_n, ["nbbo."])
    latest: dict[str, NBBO] = {}

    def quotes() -> list:
        now = time.time_ns()
        return [(pa, BBO("AAA", "BTC-USDT", bid="101", bid_size="1", ask="102", ask_size="1", receipt_timestamp=now)),
                (pb, BBO("BBB", "BTC-USDT", bid="100", bid_size="2", ask="103", ask_size="3", receipt_timestamp=now))]

    def wait_for(pred) -> None:
        _pump_until(pred, out, latest, quotes, consumer)

    try:
        wait_for(lambda: "BTC-USDT" in latest and latest["BTC-USDT"].bid_exchange == "BBB"
                 and consumer.calc.gateway_feeds.get("ga", {}).get("system") == "maintenance")
        time.sleep(0.3)                                # AAA's quotes keep coming: still left out
        wait_for(lambda: True)
        assert latest["BTC-USDT"].bid_exchange == "BBB" and latest["BTC-USDT"].ask_exchange == "BBB"
        pa.publish(Status("AAA", "system", "online", receipt_timestamp=time.time_ns()))
        wait_for(lambda: latest["BTC-USDT"].bid_exchange == "AAA")
    finally:
        consumer.stop()
        thread.join(10)
        out.close()
    assert not thread.is_alive() and consumer.counters["errors"] == 0
