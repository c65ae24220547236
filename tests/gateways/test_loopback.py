"""End to end through the loopback exchange: the real driver (websockets + aiohttp) and adapter.

One gateway session runs through a drop, a silent connection, garbage frames and a sequence
gap; each ends with the gateway reconnected or resynced, Status/Gap/Reset published, and the
books (the adapter's and the ones rebuilt from the published events) equal to the truth.
Planned rotations (Binance's 24 h lifetime, OKX's service-upgrade notice) replace connections
make-before-break: no Gap, no disconnect, no trade twice; failures leave the old connection running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from feedfabric.testing.exchange import HttpProxy, LoopbackGateway, RecordingPublisher, wait_until
from gateways.capture import RECV, read_capture
from gateways.process import Gateway, GatewayConfig
from gateways.replay import Replayer

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
    # the REST requests (instruments + 4 snapshots; and the system status poll).
    assert proxy.connects >= 1 and proxy.forwards >= 1
    assert len([u for u in lb.rest_requests if not u.endswith("/system/status")]) == 5
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


async def announced_rotation(ses: LoopbackGateway, frame: str, rotations: int) -> Any:
    """Inside ``async with ses.gw`` with the books synced: the exchange announces a connection's end
    (``frame`` to every connection); the capture streams on through the overlap until ``rotations``
    replacements, then to its end. No Gap, Reset or disconnect; books at the truth. Returns the driver."""
    lb, driver = ses.lb, ses.gw.driver
    await lb.broadcast([frame])
    for _ in range(20):
        lb.release(5)
        await asyncio.sleep(0.03)
    await wait_until(lambda: driver.counters["rotations"] == rotations, 10, "replaced")
    lb.release(None)
    await lb.wait_sent()
    await wait_until(ses.at_truth, 10, "books equal to the truth")
    assert ses.pub.of_kind("gap") == [] and ses.pub.of_kind("reset") == []
    assert driver.counters["disconnects"] == 0
    return driver


def assert_trades_once(ses: LoopbackGateway) -> None:
    """The trades published are those a replay of the capture makes: each once."""
    replayed: list = []
    Replayer(sink=replayed.append).run(ses.records)
    assert sorted((t.symbol, t.id) for t in ses.pub.of_kind("trade")) == sorted(
        (t.symbol, t.id) for t in replayed if t.KIND == "trade")


async def _session(shared_data: Path, loopback_gateway, capture: str, exchange: str, **options: object) -> LoopbackGateway:
    """A gateway of ``exchange`` on the loopback serving ``capture`` (under cryptofeed/ unless it names
    its folder)."""
    return await loopback_gateway(shared_data / (capture if "/" in capture else f"cryptofeed/{capture}"), exchange,
                                  **options)


@pytest.mark.parametrize("exchange", ["BINANCE_FUTURES", "BINANCE_DELIVERY"])
async def test_planned_rotation_is_seamless(shared_data: Path, loopback_gateway, exchange: str,
                                            tmp_path: Path) -> None:
    """Binance ends connections after 24 h; the driver replaces each one ahead of time, make-before-
    break (here every 0.6 s, 0.3 s of overlap) while the capture streams: no disconnect, no Gap, no
    resync, every trade published once, books equal to the truth; what it recorded replays the same."""
    ses = await _session(shared_data, loopback_gateway, exchange, exchange, connection_lifetime=0.6,
                         rotate_overlap=0.3, record=tmp_path / "rotated.ffcap")
    records, lb, gw, pub, adapter, symbols = ses.records, ses.lb, ses.gw, ses.pub, ses.adapter, ses.symbols

    async with gw:
        driver = gw.driver
        await lb.wait_subscribed()
        assert {spec.max_lifetime for spec in adapter.connections()} == {24 * 3600.0}
        released = 0
        total = len(lb.messages)
        while released < total or driver.counters["rotations"] < 3:
            lb.release(40)                     # a steady stream across several rotations
            released += 40
            await asyncio.sleep(0.03)
        lb.release(None)
        await lb.wait_sent()
        await wait_until(ses.at_truth, 15, "books equal to the truth")
        await asyncio.sleep(0.7)               # and one more rotation with nothing to overlap
        assert driver.counters["disconnects"] == 0 and set(pub.feeds.values()) == {"connected"}
        assert pub.of_kind("gap") == [] and pub.of_kind("reset") == []

    counters = driver.counters
    assert counters["rotations"] >= 3 and counters["rotation_failures"] == 0
    assert counters["rotation_duplicates"] > 0          # the overlaps did carry messages twice
    assert counters["reconnects"] == 0
    # One connection per rotation plus the first, and maybe a new one the stop found overlapping.
    assert counters["rotations"] + 1 <= lb.connections <= counters["rotations"] + 2 and lb.errors == []
    assert adapter.counters["book.resyncs"] == 0
    # Every aggregate trade of the capture published exactly once.
    recorded = sorted((t["data"]["s"], str(t["data"]["a"])) for t in
                      (orjson.loads(r.data) for r in records if r.kind == RECV and '"aggTrade"' in str(r.data)))
    published = sorted((adapter.exchange_symbol(t.symbol), t.id) for t in pub.of_kind("trade"))
    assert published == recorded and len(set(published)) == len(published)
    # The capture holds what the adapter was given (the overlap's duplicates left out): its replay
    # publishes the same trades and, per symbol, the same book events.
    replayed: list = []
    Replayer(sink=replayed.append).run(read_capture(tmp_path / "rotated.ffcap"))
    assert sorted((adapter.exchange_symbol(t.symbol), t.id) for t in replayed if t.KIND == "trade") == recorded

    def book_events(events: list, sym: str) -> list:
        return [(e.KIND, e.bids, e.asks, e.sequence) for e in events
                if e.KIND in ("book_snapshot", "book_delta") and e.symbol == sym]
    for sym in symbols:
        live = book_events(pub.events, sym)
        assert live and book_events(replayed, sym) == live, sym


async def test_rotation_failures_leave_the_connection_running(shared_data: Path, loopback_gateway) -> None:
    """A new connection that cannot be opened is counted and tried again later, the old one runs on;
    a drop in the middle of an overlap is an ordinary reconnect (the new connection is closed too)."""
    ses = await _session(shared_data, loopback_gateway, "BINANCE_FUTURES", "BINANCE_FUTURES",
                         connection_lifetime=0.4, rotate_overlap=1.0)
    lb, gw, pub, symbols = ses.lb, ses.gw, ses.pub, ses.symbols
    async with gw:
        driver = gw.driver
        connect = driver._connect
        calls = 0

        async def refuse_the_second(spec):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 2:
                raise OSError("refused (test)")
            return await connect(spec)

        driver._connect = refuse_the_second   # type: ignore[method-assign]
        await lb.wait_subscribed()
        lb.release(300)
        await lb.wait_sent()
        await wait_until(lambda: driver.counters["rotation_failures"] == 1, 5, "a failed rotation")
        assert driver.counters["disconnects"] == 0 and lb.connections == 1
        # The next try (0.4 s later) opens a second connection; drop both during its overlap.
        await wait_until(lambda: lb.connections == 2, 5, "the next rotation's connection")
        await lb.drop()
        await wait_until(lambda: driver.counters["reconnects"] == 1 and len(lb.live_clients()) == 1, 5, "reconnected")
        assert driver.counters["rotations"] == 0
        assert sorted(g.symbol for g in pub.of_kind("gap")) == sorted(symbols)   # an ordinary disconnect
        lb.release(None)
        await lb.wait_sent()
        await wait_until(lambda: driver.counters["rotations"] >= 1, 5, "rotations resume")
        await wait_until(ses.at_truth, 10, "books equal to the truth")


async def test_okx_service_upgrade_notice_replaces_the_connection_seamlessly(shared_data: Path,
                                                                            loopback_gateway) -> None:
    """OKX's notice 64008 (the connection closes soon for a service upgrade): the adapter asks for a
    replacement at once, the new connection's snapshots of the synced books are dropped at the
    handover, and the stream goes on without Gap, Reset or a trade published twice."""
    ses = await _session(shared_data, loopback_gateway, "OKX", "OKX", rotate_overlap=0.3)
    lb, adapter, symbols = ses.lb, ses.adapter, ses.symbols
    notice = '{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade."}'
    async with ses.gw:
        await lb.wait_subscribed()
        lb.release_first_books(adapter.exchange_symbol(s) for s in symbols)
        lb.release(100)
        await lb.wait_sent()
        await wait_until(lambda: all(adapter.books.get(s) is not None and adapter.books.get(s).state == "synced"
                                     for s in symbols), 10, "initial sync")
        n_conns = lb.connections
        driver = await announced_rotation(ses, notice, n_conns)
    assert adapter.counters["notice.service_upgrade"] == n_conns
    assert adapter.counters["ignored.handoff_snapshot"] == len(symbols)
    assert driver.counters["rotation_duplicates"] > 0 and adapter.counters["book.resyncs"] == 0
    assert lb.connections == 2 * n_conns and lb.errors == []
    assert_trades_once(ses)


# The exchange's own words for a maintenance that starts and ends (its system status channel).
_OKX_STATUS = ('{{"arg":{{"channel":"status"}},"data":[{{"id":"m1","title":"Trading system upgrade","state":"{}",'
               '"serviceType":"5","system":"unified","begin":"1672823400000","end":"1672825980000","href":"",'
               '"preOpenBegin":"","scheDesc":"","maintType":"1","env":"1","ts":"1672823400000"}}]}}')
_DERIBIT_STATE = ('{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"platform_state.public_methods_state",'
                  '"data":{{"allow_unauthenticated_public_requests":{}}}}}}}')


def _coinbase_status(adapter: Any, status: str) -> str:
    """Every product of the gateway in ``status`` (the loopback renumbers sequence_num per connection)."""
    products = [{"product_type": "SPOT", "id": adapter.exchange_symbol(s), "status": status, "status_message": ""}
                for s in adapter.subscription.all_symbols()]
    return orjson.dumps({"channel": "status", "client_id": "", "timestamp": "2023-02-09T20:32:50Z", "sequence_num": 0,
                         "events": [{"type": "snapshot", "products": products}]}).decode()


# exchange → (capture, (maintenance frame, end frame) for the adapter, a word of the maintenance reason)
SYSTEM_STATUS: dict[str, tuple[str, Callable[[Any], tuple[str, str]], str]] = {
    "OKX": ("OKX", lambda a: (_OKX_STATUS.format("ongoing"), _OKX_STATUS.format("completed")), "upgrade"),
    "DERIBIT": ("DERIBIT", lambda a: (_DERIBIT_STATE.format("false"), _DERIBIT_STATE.format("true")),
                "unauthenticated"),
    "COINBASE": ("cryptofeed_v3/COINBASE.jsonl", lambda a: (_coinbase_status(a, "offline"), _coinbase_status(a, "online")),
                 "offline"),
}


@pytest.mark.parametrize("exchange", sorted(SYSTEM_STATUS))
async def test_exchange_system_status_is_published(shared_data: Path, loopback_gateway, exchange: str,
                                                  tmp_path: Path) -> None:
    """The gateway subscribes its exchange's system status channel (the loopback accepts it beside the
    capture's streams); a maintenance announced there is published as Status(feed='system'), its end
    as online, and the feeds go on untouched; what it recorded replays to the same states."""
    capture, frames, word = SYSTEM_STATUS[exchange]
    ses = await _session(shared_data, loopback_gateway, capture, exchange, record=tmp_path / "status.ffcap")
    lb, adapter, pub = ses.lb, ses.adapter, ses.pub

    def system() -> list[str]:
        return ses.states("system")

    async with ses.gw:
        await lb.wait_subscribed()
        subscribed = {s for _, op, streams in lb.client_messages if op == "subscribe" for s in streams}
        assert any(lb.profile.system_stream(stream) for stream in subscribed)
        start, end = frames(adapter)
        lb.release(20)
        await lb.wait_sent()
        await lb.broadcast([start])
        await wait_until(lambda: system() == ["maintenance"], 10, "maintenance published")
        await lb.broadcast([end])
        await wait_until(lambda: system() == ["maintenance", "online"], 10, "online again")
        lb.release(None)
        await lb.wait_sent()
        await wait_until(ses.at_truth, 10, "books equal to the truth")
        assert pub.of_kind("gap") == [] and ses.gw.driver.counters["disconnects"] == 0
    assert lb.errors == [] and adapter.counters["errors"] == 0
    maintenance = next(e for e in pub.of_kind("status") if e.feed == "system")
    assert maintenance.exchange == exchange and word in maintenance.reason
    replayed: list = []
    Replayer(sink=replayed.append).run(read_capture(tmp_path / "status.ffcap"))
    assert [e.state for e in replayed if e.KIND == "status" and e.feed == "system"] == system()


_BYBIT_MAINTENANCE = {"id": "m1", "title": "Full upgrade", "state": "ongoing", "serviceTypes": [1, 5],
                      "product": [1, 2], "begin": "1751596902000", "end": "1751597011000", "uidSuffix": [], "env": 1}


def _binance_says(profile: Any, maintenance: bool) -> None:
    profile.system_status = int(maintenance)


def _bybit_says(profile: Any, maintenance: bool) -> None:
    profile.system_rows = [{**_BYBIT_MAINTENANCE, "state": "ongoing" if maintenance else "completed"}]


REST_SYSTEM_STATUS = {"BINANCE": ("BINANCE", "/sapi/v1/system/status", _binance_says),
                      "BYBIT": ("cryptofeed_v3/BYBIT.jsonl", "/v5/system/status", _bybit_says)}


@pytest.mark.parametrize("exchange", sorted(REST_SYSTEM_STATUS))
async def test_system_status_polled_end_to_end(shared_data: Path, loopback_gateway, exchange: str,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Binance spot and Bybit tell their system status over REST: the gateway polls it (here every
    0.2 s instead of every minute) and publishes online, maintenance, online as the exchange says;
    what it recorded replays to the same states."""
    capture, path, says = REST_SYSTEM_STATUS[exchange]
    ses = await _session(shared_data, loopback_gateway, capture, exchange, record=tmp_path / "status.ffcap")
    lb, adapter = ses.lb, ses.adapter
    # Live and replayed alike (the replay makes an adapter of its own): a poll every 0.2 s, on a
    # timer ticking every 0.1 s (Bybit's ticks every 5 s).
    monkeypatch.setattr(type(adapter), "system_status_interval_ns", 200_000_000)
    monkeypatch.setattr(type(adapter), "timer_interval", 0.1)

    def system() -> list[str]:
        return ses.states("system")

    async with ses.gw:
        await wait_until(lambda: system() == ["online"], 10, "online")
        says(lb.profile, True)
        await wait_until(lambda: system() == ["online", "maintenance"], 10, "maintenance")
        says(lb.profile, False)
        await wait_until(lambda: system() == ["online", "maintenance", "online"], 10, "online again")
    assert sum(u.endswith(path) for u in lb.rest_requests) >= 3
    assert adapter.counters["errors"] == 0 and lb.errors == []
    replayed: list = []
    Replayer(sink=replayed.append).run(read_capture(tmp_path / "status.ffcap"))
    assert [e.state for e in replayed if e.KIND == "status" and e.feed == "system"] == system()


async def test_old_connection_lost_during_the_overlap_hands_over(shared_data: Path, loopback_gateway) -> None:
    """The exchange closes the old connection while the new one already runs subscribed (a rotation
    that came late): the new one takes over as planned, without a disconnect or a Gap."""
    ses = await _session(shared_data, loopback_gateway, "BINANCE_FUTURES", "BINANCE_FUTURES",
                         connection_lifetime=0.3, rotate_overlap=30.0)
    lb, gw, pub = ses.lb, ses.gw, ses.pub
    async with gw:
        driver = gw.driver
        await lb.wait_subscribed()
        lb.release(300)
        await lb.wait_sent()
        await wait_until(lambda: len(lb.live_clients()) == 2 and lb.fully_subscribed(), 5, "the new connection")
        await wait_until(lambda: all(c.subscribed.is_set() for c in lb.live_clients()), 5, "subscribed")
        lb.release(100)
        await lb.wait_sent()
        assert await lb.drop([1]) == 1
        await wait_until(lambda: driver.counters["rotations"] == 1, 5, "handed over")
        lb.release(None)
        await lb.wait_sent()
        await wait_until(ses.at_truth, 10, "books equal to the truth")
        assert driver.counters["disconnects"] == 0 and driver.counters["reconnects"] == 0
        assert pub.of_kind("gap") == [] and pub.of_kind("reset") == []


async def test_binance_server_shutdown_replaces_the_connection_seamlessly(shared_data: Path,
                                                                         loopback_gateway) -> None:
    """Binance's ``serverShutdown`` event: the connection is replaced at once, make-before-break."""
    ses = await _session(shared_data, loopback_gateway, "BINANCE", "BINANCE", rotate_overlap=0.3)
    async with ses.gw:
        await ses.lb.wait_subscribed()
        ses.lb.release(100)
        await ses.lb.wait_sent()
        await announced_rotation(ses, '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}', 1)
    assert ses.adapter.counters["server_shutdown"] == 1 and ses.lb.connections == 2
    assert_trades_once(ses)


async def test_rest_obeys_retry_after_and_the_used_weight_header(shared_data: Path, loopback_gateway) -> None:
    """A 429 with ``Retry-After: 2`` holds every REST request 2 s (the snapshot retry waits), and
    Binance's ``X-MBX-USED-WEIGHT-1M`` caps the budget left."""
    ses = await _session(shared_data, loopback_gateway, "BINANCE_FUTURES", "BINANCE_FUTURES")
    lb, gw, pub = ses.lb, ses.gw, ses.pub
    lb.rest_headers = {"X-MBX-USED-WEIGHT-1M": "2395"}
    async with gw:
        driver = gw.driver
        used: list[float] = []
        sync_used = driver.budget.sync_used
        driver.budget.sync_used = lambda u: (used.append(u), sync_used(u))[1]   # type: ignore[method-assign]
        await lb.wait_subscribed()
        lb.release(400)
        await lb.wait_sent()
        await wait_until(lambda: all(sb.state == "synced" for sb in ses.adapter.books)
                         and len(list(ses.adapter.books)) == len(ses.symbols), 10, "initial sync")
        assert used and set(used) == {2395.0}              # every answer said so
        lb.fail_rest(429, retry_after="2")
        lb.break_sequence("SUSHIUSDT")
        lb.release(300)
        await lb.wait_sent()
        await wait_until(lambda: driver.counters["rest_retry_after"] == 1, 10, "a 429 with Retry-After")
        lb.restore_rest()
        failed_at, n = lb.rest_times[-1], len(lb.rest_times)
        while not pub.of_kind("reset"):
            lb.release(20)                                 # diffs that ask for the snapshot again
            await asyncio.sleep(0.1)
            assert lb.released < len(lb.messages), "the capture ended before the resync"
        assert lb.rest_times[n] - failed_at >= 1.9         # nothing was sent before Retry-After
        assert driver.counters["rest_rate_limited"] == 1 and lb.rest_failures == 1


async def test_bitmex_remaining_requests_header_caps_the_budget(shared_data: Path, loopback_gateway) -> None:
    """BitMEX's ``x-ratelimit-remaining`` (requests this IP has left this minute) caps the budget."""
    ses = await _session(shared_data, loopback_gateway, "BITMEX", "BITMEX")
    ses.lb.rest_headers = {"x-ratelimit-remaining": "3"}
    async with ses.gw:
        await ses.lb.wait_subscribed()                     # the instruments were loaded over REST
        budget = ses.gw.driver.budget
        assert budget.tokens <= 3 + budget.rate * (budget.clock() - budget.updated) + 1e-9


async def test_refused_connection_waits_for_retry_after(shared_data: Path, loopback_gateway) -> None:
    """A handshake answered 429 with ``Retry-After: 1``: the next attempt waits 1 s, not the 50 ms
    backoff; counted ``ws_refused.429``; then the connection comes up and the books sync."""
    ses = await _session(shared_data, loopback_gateway, "BINANCE_FUTURES", "BINANCE_FUTURES")
    lb = ses.lb
    lb.refuse_ws(429, retry_after="1")
    async with ses.gw:
        driver = ses.gw.driver
        await wait_until(lambda: driver.counters["ws_refused.429"] == 1, 10, "refused")
        lb.accept_ws()
        await lb.wait_subscribed()
        assert len(lb.ws_attempts) == 2 and lb.ws_attempts[1] - lb.ws_attempts[0] >= 0.95
        lb.release(None)
        await lb.wait_sent()
        await wait_until(ses.at_truth, 10, "books equal to the truth")


async def test_heartbeats_describe_which_symbols_each_connection_quotes(shared_data: Path, loopback_gateway) -> None:
    """Bybit's spot and linear connections: the gateway tells (Publisher.describe, every heartbeat)
    which symbols' quotes each carries, so the NBBO takes out only those when one is down."""
    ses = await loopback_gateway(shared_data / "cryptofeed_v3/BYBIT.jsonl", "BYBIT")
    async with ses.gw:
        await ses.lb.wait_subscribed()
        ses.gw.copy_counters()
    quotes = ses.pub.described["feed_quotes"]
    book = set(ses.adapter.subscription.symbols("l2_book"))
    assert set(quotes) == {"spot", "linear"} and book <= set(quotes["spot"]) | set(quotes["linear"])
    assert all(ses.adapter.category(s) == "spot" for s in quotes["spot"])
    assert all(ses.adapter.category(s) == "linear" for s in quotes["linear"])
