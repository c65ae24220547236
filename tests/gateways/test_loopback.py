"""End to end through the loopback exchange: the real driver (websockets + aiohttp) and adapter.

One gateway session runs through a drop, a silent connection, garbage frames and a sequence
gap; each ends with the gateway reconnected or resynced, Status/Gap/Reset published, and the
books (the adapter's and the ones rebuilt from the published events) equal to the truth.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from feedfabric.testing.exchange import HttpProxy, RecordingPublisher, wait_until
from gateways.capture import read_capture
from gateways.process import Gateway, GatewayConfig

pytestmark = pytest.mark.timeout(90)


async def test_faults_end_to_end(shared_data: Path, loopback_exchange) -> None:
    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE_FUTURES"))
    header = records[0].data
    lb = await loopback_exchange(records)
    cfg = GatewayConfig(name="bnf", exchange="BINANCE_FUTURES", channels=header["channels"], pub="inproc://unused",
                        urls=lb.urls(), backoff_initial=0.05, backoff_max=0.2, silence_timeout=1.5)
    pub = RecordingPublisher("BINANCE_FUTURES")
    gw = Gateway(cfg, publisher=pub)
    adapter = gw.adapter
    books = adapter.books
    symbols = header["channels"]["l2_book"]
    xs = {s: s.split("-")[0] + "USDT" for s in symbols}

    def all_synced() -> bool:
        return len(list(books)) == len(symbols) and all(sb.state == "synced" for sb in books)

    def matches_truth(sym: str) -> bool:
        sb = books.get(sym)
        return sb is not None and sb.state == "synced" and sb.book.snapshot() == lb.profile.truth_book(xs[sym])

    async with gw:
        await lb.wait_subscribed()
        assert lb.errors == []                     # the subscribe messages are the capture's streams
        lb.release(400)
        await lb.wait_sent()
        await wait_until(all_synced, 10, "initial sync")
        assert pub.feeds == {"BINANCE_FUTURES.0": "connected"}
        assert all(r.endswith("limit=1000") for r in lb.rest_requests if "/depth" in r)

        # Garbage: counted parse errors, nothing else changes.
        await lb.garbage()
        await wait_until(lambda: adapter.counters["errors"] >= 3, 5, "garbage counted")
        assert lb.connections == 1 and all_synced() and pub.of_kind("gap") == []

        # Sequence gap on one symbol: Gap + resync of that symbol only.
        sushi = "SUSHI-USDT-PERP"
        lb.break_sequence("SUSHIUSDT")
        lb.release(300)
        await lb.wait_sent()
        await wait_until(lambda: any(g.symbol == sushi for g in pub.of_kind("reset")) and all_synced(), 10,
                         "SUSHI resynced")
        assert [g.symbol for g in pub.of_kind("gap")] == [sushi]
        assert pub.of_kind("gap")[0].reason == "sequence"
        assert lb.connections == 1

        # Dropped connection: Status disconnected/connected, Gap for every book, all resynced.
        await lb.drop()
        await wait_until(lambda: lb.connections == 2 and any(c.subscribed.is_set() for c in lb._clients), 10,
                         "reconnected")
        lb.release(300)
        await lb.wait_sent()
        await wait_until(all_synced, 10, "resync after drop")
        states = [(e.feed, e.state) for e in pub.of_kind("status")]
        assert ("BINANCE_FUTURES.0", "disconnected") in states and states[-1] == ("BINANCE_FUTURES.0", "connected")
        gaps = pub.of_kind("gap")
        assert sorted(g.symbol for g in gaps[1:]) == sorted(symbols)

        # Silent connection: the watchdog reconnects.
        lb.silence()
        await wait_until(lambda: gw.driver.counters["silence_timeouts"] >= 1, 5, "silence detected")
        lb.resume()
        await wait_until(lambda: lb.connections == 3 and any(c.subscribed.is_set() for c in lb._clients), 10,
                         "reconnected after silence")

        # The rest of the capture; books end equal to the truth.
        lb.release(None)
        await lb.wait_sent()
        await wait_until(lambda: all(matches_truth(s) for s in symbols), 15, "books equal to the truth")
        published = pub.books()
        for sym in symbols:
            book = published[sym]
            assert book is not None, sym
            assert book.snapshot() == lb.profile.truth_book(xs[sym]), sym

    # Stopping the gateway closes its connection: the books are announced invalid.
    assert all(book is None for book in pub.books().values())

    assert lb.errors == []
    assert pub.of_kind("trade") and pub.of_kind("ticker") and pub.of_kind("candle")
    assert {r.symbol for r in pub.of_kind("reset")} == set(symbols)
    errors = adapter.error_counts()
    assert set(errors) <= {"errors.parse.JSONDecodeError", "errors.not_an_object"}, errors
    assert adapter.counters["ignored.subscribe_ack"] > 0


async def test_through_the_bus(shared_data: Path, loopback_exchange, bus_endpoint) -> None:
    """A real Publisher and a bus subscriber: Status, Gap and Reset arrive as messages and the
    subscriber's validated books equal the truth after a dropped connection."""
    from bus.subscriber import AsyncSubscriber

    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE"))
    channels = records[0].data["channels"]
    lb = await loopback_exchange(records)
    ep = bus_endpoint("binance")
    cfg = GatewayConfig(name="binance", exchange="BINANCE", channels=channels, pub=ep.pub, snapshot=ep.snapshot,
                        urls=lb.urls(), backoff_initial=0.05, backoff_max=0.2, silence_timeout=5)
    symbols = channels["l2_book"]
    seen: list = []
    async with AsyncSubscriber(ep, ["book.", "status.", "gap.", "reset.", "trades."],
                               heartbeat_timeout=10) as sub, Gateway(cfg) as gw:
        async def pump(condition, what: str, timeout: float = 10.0) -> None:
            async def loop() -> None:
                while not condition():
                    msg = await sub.recv(0.05)
                    if msg is not None:
                        seen.append(msg)
            try:
                async with asyncio.timeout(timeout):
                    await loop()
            except TimeoutError:
                raise TimeoutError(f"timed out waiting for {what}") from None

        def kinds() -> set[str]:
            return {m.event.KIND for m in seen}

        await lb.wait_subscribed()
        lb.release(150)
        await pump(lambda: all(sb.state == "synced" for sb in gw.adapter.books) and len(list(gw.adapter.books))
                   == len(symbols) and "book_snapshot" in kinds(), "initial books")
        await lb.drop()
        await pump(lambda: lb.connections == 2 and {"gap", "status"} <= kinds(), "gap after drop")
        lb.release(None)
        await lb.wait_sent()

        def books_ok() -> bool:
            for s in symbols:
                book = sub.book("BINANCE", s)
                if book is None or book.snapshot() != lb.profile.truth_book(s.replace("-", "")):
                    return False
            return True

        await pump(lambda: "reset" in kinds() and books_ok(), "subscriber books equal to the truth", 15)
    states = [(m.event.feed, m.event.state) for m in seen if m.event.KIND == "status"]
    assert ("BINANCE.0", "connected") in states and ("BINANCE.0", "disconnected") in states
    assert {m.topic for m in seen if m.event.KIND == "gap"} == {f"gap.BINANCE.{s}." for s in symbols}
    assert lb.errors == []


async def test_loopback_checks_subscriptions(shared_data: Path, loopback_exchange) -> None:
    """A gateway subscribing streams the capture never had is reported by the loopback."""
    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE"))
    channels = {ch: syms + ["ETH-BTC"] for ch, syms in records[0].data["channels"].items()}
    lb = await loopback_exchange(records)
    cfg = GatewayConfig(name="bn", exchange="BINANCE", channels=channels, pub="inproc://unused", urls=lb.urls())
    async with Gateway(cfg, publisher=RecordingPublisher("BINANCE")):
        await wait_until(lambda: lb.subscribe_messages, 10, "a subscribe message")
        await wait_until(lambda: lb.errors, 5, "the subscription check")
    assert any("unexpected streams" in e and "ethbtc@aggTrade" in e for e in lb.errors)


async def test_http_proxies(shared_data: Path, loopback_exchange) -> None:
    """Websocket (CONNECT) and REST (absolute-form) traffic both go through the configured proxy."""
    proxy = HttpProxy()
    await proxy.start()
    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE"))
    lb = await loopback_exchange(records)
    url = f"http://127.0.0.1:{proxy.port}"
    cfg = GatewayConfig(name="bn", exchange="BINANCE", channels=records[0].data["channels"], pub="inproc://unused",
                        urls=lb.urls(), ws_proxy=url, rest_proxy=url)
    gw = Gateway(cfg, publisher=RecordingPublisher("BINANCE"))
    async with gw:
        await lb.wait_subscribed()
        lb.release(None)
        await wait_until(lambda: sum(sb.state == "synced" for sb in gw.adapter.books) == 4, 10, "books via proxy")
    # Relayed connections (keep-alive reuses one for several requests): the websocket tunnel and
    # the REST requests (instruments + 4 snapshots).
    assert proxy.connects >= 1 and proxy.forwards >= 1
    assert len(lb.rest_requests) == 5
    assert proxy.server is not None
    proxy.server.close()


async def test_proxy_pool_moves_past_a_dead_proxy(shared_data: Path, loopback_exchange) -> None:
    """A pool is taken in turn: the first websocket attempt goes to a dead proxy, the reconnect
    to the next one, and the gateway syncs its books through it."""
    import socket

    live = HttpProxy()
    await live.start()
    with socket.socket() as s:                       # a port nobody listens on: a dead proxy
        s.bind(("127.0.0.1", 0))
        dead = f"http://user:secret@127.0.0.1:{s.getsockname()[1]}"
    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE"))
    lb = await loopback_exchange(records)
    good = f"http://127.0.0.1:{live.port}"
    cfg = GatewayConfig(name="bn", exchange="BINANCE", channels=records[0].data["channels"], pub="inproc://unused",
                        urls=lb.urls(), ws_proxy=[dead, good], rest_proxy=good, backoff_initial=0.05)
    gw = Gateway(cfg, publisher=RecordingPublisher("BINANCE"))
    async with gw:
        await lb.wait_subscribed()
        lb.release(None)
        await wait_until(lambda: sum(sb.state == "synced" for sb in gw.adapter.books) == 4, 10, "books via the pool")
        counters = dict(gw.driver.counters)
    assert counters["proxy_connect_failures"] == 1 and counters["connects"] == 1
    assert live.connects >= 1
    assert live.server is not None
    live.server.close()


def test_proxy_pool_round_robin_and_config_checks() -> None:
    from pydantic import ValidationError

    from gateways.driver import ProxyPool, redact

    pool = ProxyPool(["http://a:1", "http://b:2"])
    assert [pool.take() for _ in range(5)] == ["http://a:1", "http://b:2", "http://a:1", "http://b:2", "http://a:1"]
    assert ProxyPool(None).take() is None and ProxyPool("http://a:1").take() == "http://a:1"
    assert redact("socks5://user:pw@host:1080") == "socks5://host:1080"

    base = {"name": "bn", "exchange": "BINANCE", "channels": {"trades": ["BTC-USDT"]}, "pub": "inproc://x"}
    for bad, words in ((["ftp://h:1"], "scheme one of"), ("http://", "scheme://"), ([], "empty proxy pool")):
        with pytest.raises(ValidationError, match=words):
            GatewayConfig(**base, ws_proxy=bad)
    # Credentials never appear in the message (what `feedfabric check` and the runner print).
    with pytest.raises(ValidationError) as exc:
        GatewayConfig(**base, rest_proxy="gopher://me:hunter2@h:1")
    msg = exc.value.errors()[0]["msg"]
    assert "gopher://h:1" in msg and "hunter2" not in msg
