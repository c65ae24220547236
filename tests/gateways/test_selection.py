"""Symbol patterns (gateways.selection): matching, the instrument lists they are matched against,
and a live gateway that resolves them through the loopback exchange, records and replays."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from feedfabric.cli import main
from feedfabric.testing.exchange import RecordingPublisher, wait_until
from feedfabric.testing.logs import captured_logs
from gateways import exchanges
from gateways.adapter import Subscription
from gateways.capture import HEADER, later_parts, read_capture
from gateways.process import Gateway, GatewayConfig
from gateways.replay import Replayer, replay_parts
from gateways.selection import exact, expand, has_patterns, instrument_requests, is_pattern, rematch_floor

pytestmark = pytest.mark.timeout(60)

KNOWN = ["BTC-USDT", "BTC-USDT-PERP", "ETH-USDT", "ETH-USDT-PERP", "ETH-USD-20261225", "SOL-USDT"]


def test_patterns_are_fnmatch_over_normalized_symbols() -> None:
    assert [is_pattern(s) for s in ("BTC-USDT", "BTC-*", "ETH-USD-2026????", "[BE]TC-USDT", "*")] == [
        False, True, True, True, True]
    assert has_patterns({"trades": ["BTC-USDT"], "l2_book": ["*-PERP"]})
    assert not has_patterns({"trades": ["BTC-USDT"]})
    assert exact({"trades": ["BTC-USDT", "*-PERP"]}) == {"trades": ["BTC-USDT"]}


def test_expand_keeps_the_written_order_sorts_each_patterns_matches_and_names_the_unmatched() -> None:
    channels = {"trades": ["SOL-USDT", "*-PERP", "BTC-*", "DOGE-USDT", "XRP-*"],
                "l2_book": ["ETH-USD-2026????", "eth-*"],    # case-sensitive: 'eth-*' matches nothing
                "ticker": ["*"]}
    out, unmatched = expand(channels, KNOWN)
    assert out["trades"] == ["SOL-USDT", "BTC-USDT-PERP", "ETH-USDT-PERP", "BTC-USDT", "DOGE-USDT"]
    assert out["l2_book"] == ["ETH-USD-20261225"]
    assert out["ticker"] == sorted(KNOWN)
    # An exact name is kept even unknown (the adapter reports it); patterns matching nothing, once each.
    assert unmatched == ["XRP-*", "eth-*"]
    assert expand({"trades": ["XRP-*"], "ticker": ["XRP-*"]}, KNOWN)[1] == ["XRP-*"]


def test_instrument_lists_are_the_defaults_plus_what_exact_symbols_need() -> None:
    okx = exchanges.get("OKX")
    default = [f.url for f in instrument_requests(okx, {"trades": ["*-PERP"]})]
    assert default == [f.url for f in okx(Subscription({})).instrument_requests()]
    assert not any("OPTION" in u for u in default)
    # An exactly named option adds its family's list, once, to the default ones.
    urls = [f.url for f in instrument_requests(okx, {"trades": ["*-PERP", "BTC-USD-20261225-50000-C"],
                                                     "ticker": ["BTC-USD-20261225-60000-P"]})]
    assert urls[:len(default)] == default
    assert [u for u in urls if "OPTION" in u] == [u for u in urls[len(default):]] and len(urls) == len(default) + 1


async def test_live_gateway_resolves_patterns_then_records_the_explicit_list(
        shared_data: Path, loopback_exchange, tmp_path: Path) -> None:
    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE_FUTURES"))
    recorded = records[0].data["channels"]["l2_book"]   # SUSHI, AKRO, KEEP and CTK -USDT-PERP
    lb = await loopback_exchange(records)
    capture = tmp_path / "patterns.ffcap"
    cfg = GatewayConfig(name="bnf", exchange="BINANCE_FUTURES", channels=["trades", "l2_book"],
                        symbols=["SUSHI-*", "AKRO-*", "KEEP-USDT-PERP", "C?K-USDT-PERP", "NOPE-*"],
                        pub="inproc://unused", urls=lb.urls(), backoff_initial=0.05, record=capture)
    pub = RecordingPublisher("BINANCE_FUTURES")
    gw = Gateway(cfg, publisher=pub)
    with pytest.raises(RuntimeError, match="not resolved yet"):
        gw.adapter  # noqa: B018 - the property refuses until the patterns are matched
    with captured_logs() as logs:
        async with gw:
            await wait_until(gw.resolved.is_set, 10, "patterns resolved")
            channels = gw.adapter.subscription.channels
            assert {ch: sorted(syms) for ch, syms in channels.items()} == {
                "trades": sorted(recorded), "l2_book": sorted(recorded)}
            wanted = {s for s in lb.expected if s.endswith(("@aggTrade", "@depth@100ms"))}
            await wait_until(lambda: lb.subscribed_streams() == wanted, 10, "subscribed")
            assert len(wanted) == 8 and lb.errors == []    # the capture's streams of the four, none other
            lb.release(400)
            await lb.wait_sent()
            books = gw.adapter.books
            await wait_until(lambda: all(books.get(s) is not None and books.get(s).state == "synced"
                                         for s in recorded), 10, "books synced")
            assert pub.of_kind("trade") and {b.symbol for b in pub.of_kind("book_snapshot")} == set(recorded)
    # Loaded once to match the patterns, once by the gateway's own driver (which records it).
    assert sum("exchangeInfo" in r for r in lb.rest_requests) == 2
    assert pub.counters["subscription.unmatched_pattern"] == 1
    assert any("'NOPE-*' matches none" in str(line) for line in logs)
    # The capture's header holds the explicit list, so a replay of it needs no patterns.
    rec = list(read_capture(capture))
    assert rec[0].kind == HEADER and rec[0].data["channels"] == {ch: list(s) for ch, s in channels.items()}
    assert Replayer(collect=True).run(rec).adapter.subscription.channels == rec[0].data["channels"]


async def test_a_stop_during_resolution_ends_the_gateway(shared_data: Path, loopback_exchange) -> None:
    lb = await loopback_exchange(shared_data / "cryptofeed" / "BINANCE_FUTURES")
    lb.fail_rest(503)                              # the instruments never load
    cfg = GatewayConfig(name="x", exchange="BINANCE_FUTURES", channels=["trades"], symbols=["SUSHI-*"],
                        pub="inproc://unused", urls=lb.urls())
    gw = Gateway(cfg, publisher=RecordingPublisher("BINANCE"))
    async with gw:
        await wait_until(lambda: gw.resolver is not None and gw.resolver.counters["instrument_errors"] >= 1, 10,
                         "a failed instrument load")
    assert gw.resolved.is_set() is False and gw._task is not None and gw._task.done()


def _until_stop(records: list) -> list:
    """A recording without the closes of the gateway's stop, which (rightly) invalidate its books."""
    end = len(records)
    while records[end - 1].kind == "close":
        end -= 1
    return records[:end]


FOUR = ["SUSHI-*", "AKRO-*", "KEEP-*", "CTK-*"]   # the BINANCE_FUTURES capture's four symbols


def _hiding(symbol: str):
    """A loopback ``rest_filter``: Binance's exchangeInfo without ``symbol`` (not listed yet)."""
    def rest_filter(path: str, body: bytes) -> bytes:
        if not path.endswith("/exchangeInfo"):
            return body
        info = orjson.loads(body)
        info["symbols"] = [s for s in info["symbols"] if s["symbol"] != symbol]
        return orjson.dumps(info)
    return rest_filter


async def test_a_rematch_subscribes_what_was_listed_since_on_connections_of_its_own(
        shared_data: Path, loopback_exchange, tmp_path: Path) -> None:
    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE_FUTURES"))
    symbols = records[0].data["channels"]["l2_book"]   # SUSHI, AKRO, KEEP and CTK -USDT-PERP
    lb = await loopback_exchange(records)
    lb.rest_filter = _hiding("CTKUSDT")
    capture = tmp_path / "patterns.ffcap"
    cfg = GatewayConfig(name="bnf", exchange="BINANCE_FUTURES", channels=["trades", "l2_book"],
                        symbols=FOUR, rematch_interval=0.25, pub="inproc://unused", urls=lb.urls(),
                        backoff_initial=0.05, record=capture)
    pub = RecordingPublisher("BINANCE_FUTURES")
    wanted = {s for s in lb.expected if s.endswith(("@aggTrade", "@depth@100ms"))}
    ctk = {s for s in wanted if s.startswith("ctkusdt@")}
    with captured_logs() as logs:
        async with Gateway(cfg, publisher=pub) as gw:
            await wait_until(lambda: lb.subscribed_streams() == wanted - ctk, 10, "the three listed subscribed")
            lb.release(400)                    # the market moves on, CTK's book included
            await lb.wait_sent()
            infos = sum("exchangeInfo" in r for r in lb.rest_requests)
            await wait_until(lambda: sum("exchangeInfo" in r for r in lb.rest_requests) >= infos + 3, 10,
                             "re-matches")
            assert len(gw.parts) == 1 and pub.counters["subscription.listed"] == 0

            lb.rest_filter = None              # CTK is listed
            await wait_until(lambda: len(gw.parts) == 2 and lb.subscribed_streams() == wanted, 10,
                             "CTK subscribed")
            assert gw.parts[1].config.channels == {"trades": ["CTK-USDT-PERP"], "l2_book": ["CTK-USDT-PERP"]}
            assert gw.subscribed()["l2_book"] == [p.replace("*", "USDT-PERP") for p in FOUR]
            assert lb.connections == 2 and lb.errors == []   # part 0's connection untouched
            await asyncio.sleep(0.3)                          # more re-matches: nothing more to add
            assert len(gw.parts) == 2
            lb.release()
            await lb.wait_sent()

            def synced(sym: str) -> bool:
                part = next(p for p in gw.parts if sym in p.config.channels["l2_book"])
                sb = part.adapter.books.get(sym)
                return sb is not None and sb.state == "synced" and sb.book.snapshot() == lb.profile.truth_book(
                    sb.exchange_symbol)
            await wait_until(lambda: all(synced(s) for s in symbols), 10, "every book equal to the truth")
            published = pub.books()
            for sym in symbols:
                assert published[sym] is not None and published[sym].snapshot() == lb.profile.truth_book(
                    sym.split("-")[0] + "USDT"), sym
            assert any(t.symbol == "CTK-USDT-PERP" for t in pub.of_kind("trade"))
    assert pub.counters["subscription.listed"] == 1
    assert pub.feeds == {"BINANCE_FUTURES.0": "disconnected", "BINANCE_FUTURES.0+1": "disconnected"}
    assert any("newly listed" in str(line) and "CTK-USDT-PERP" in str(line) for line in logs)
    # Each part records a capture of its own that replays alone.
    first, second = list(read_capture(capture)), list(read_capture(tmp_path / "patterns.1.ffcap"))
    assert second[0].data["channels"] == {"trades": ["CTK-USDT-PERP"], "l2_book": ["CTK-USDT-PERP"]}
    assert (first[0].data["part"], second[0].data["part"]) == (0, 1)
    for rec, syms in ((first, set(symbols) - {"CTK-USDT-PERP"}), (second, {"CTK-USDT-PERP"})):
        res = Replayer(collect=True).run(rec)
        assert {e.symbol for e in res.events if e.KIND == "trade"} == syms and res.adapter.error_counts() == {}
    # Replayed together, the parts end with every book the live gateway ended with.
    assert later_parts(capture) == [tmp_path / "patterns.1.ffcap"]
    results = replay_parts([_until_stop(first), _until_stop(second)], collect=True)
    books = {s: r.adapter.books.get(s) for r in results for s in r.adapter.subscription.symbols("l2_book")}
    assert sorted(books) == sorted(symbols)
    for sym, sb in books.items():
        assert sb.state == "synced" and sb.book.snapshot() == lb.profile.truth_book(sb.exchange_symbol), sym
    # `feedfabric replay` of the first file replays both.
    out = CliRunner().invoke(main, ["replay", str(capture), "--no-progress"])
    assert out.exit_code == 0 and "replaying 2 parts of one recording: patterns.ffcap, patterns.1.ffcap" in out.output
    whole = replay_parts([first, second])   # the stop's closes included, as the command replays
    assert f"all parts: {sum(r.event_count for r in whole)} events" in out.output
    alone = CliRunner().invoke(main, ["replay", str(capture), "--no-progress", "--no-parts"])
    assert f"BINANCE_FUTURES: {len(first)} records, {whole[0].event_count} events" in alone.output
    # So does a topology's replaying gateway.
    run = Path(tempfile.mkdtemp(prefix="ffsel-"))   # short: ipc socket paths are limited to 107 bytes
    topo = tmp_path / "t.yaml"
    topo.write_text(f"run_dir: {run}\nlog_dir: {tmp_path / 'logs'}\ngateways:\n  bnf:\n    exchange: BINANCE_FUTURES\n"
                    f"    channels: [trades, l2_book]\n    symbols: all\n    replay: {{path: {capture}}}\n")
    proc = subprocess.run([sys.executable, "-m", "feedfabric.cli", "gateway", "bnf", "-t", str(topo), "--duration",
                           "2"], capture_output=True, text=True, timeout=60)
    shutil.rmtree(run, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "replaying 2 parts of one recording: patterns.ffcap, patterns.1.ffcap" in proc.stderr
    assert f"replay pass 1 of {capture}: {sum(r.event_count for r in whole)} events" in proc.stderr


async def test_at_rematch_max_parts_the_newest_part_is_rebuilt_with_the_new_listing(
        shared_data: Path, loopback_exchange, tmp_path: Path, bus_endpoint) -> None:
    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE_FUTURES"))
    symbols = records[0].data["channels"]["l2_book"]
    lb = await loopback_exchange(records)
    hidden = {"CTKUSDT", "KEEPUSDT"}

    def rest_filter(path: str, body: bytes) -> bytes:
        for symbol in sorted(hidden):
            body = _hiding(symbol)(path, body)
        return body
    lb.rest_filter = rest_filter
    capture = tmp_path / "bounded.ffcap"
    cfg = GatewayConfig(name="bnf", exchange="BINANCE_FUTURES", channels=["trades", "l2_book"], symbols=FOUR,
                        rematch_interval=0.25, rematch_max_parts=2, pub="inproc://unused", urls=lb.urls(),
                        backoff_initial=0.05, record=capture)
    pub = RecordingPublisher("BINANCE_FUTURES")

    def synced(gw: Gateway, sym: str) -> bool:
        part = next((p for p in gw.parts if sym in p.config.channels["l2_book"]), None)
        sb = part.adapter.books.get(sym) if part is not None else None
        return sb is not None and sb.state == "synced" and sb.book.snapshot() == lb.profile.truth_book(
            sb.exchange_symbol)

    with captured_logs() as logs:
        async with Gateway(cfg, publisher=pub) as gw:
            await wait_until(lambda: len(lb.subscribed_streams()) == 4, 10, "SUSHI and AKRO subscribed")
            hidden.discard("CTKUSDT")
            await wait_until(lambda: len(gw.parts) == 2 and len(lb.subscribed_streams()) == 6, 10, "CTK")
            lb.release(600)
            await lb.wait_sent()
            await wait_until(lambda: synced(gw, "CTK-USDT-PERP"), 10, "CTK synced")
            hidden.discard("KEEPUSDT")
            await wait_until(lambda: gw.parts[1].config.channels["l2_book"] == ["CTK-USDT-PERP", "KEEP-USDT-PERP"]
                             and len(lb.subscribed_streams()) == 8, 10, "part 1 rebuilt with KEEP")
            assert len(gw.parts) == 2 and lb.connections == 3 and lb.errors == []
            lb.release()
            await lb.wait_sent()
            await wait_until(lambda: all(synced(gw, s) for s in symbols), 10, "every book equal to the truth")
            published = pub.books()
            assert all(published[s] is not None and published[s].snapshot() == lb.profile.truth_book(
                s.split("-")[0] + "USDT") for s in symbols)
            # CTK's feeds reconnected with the rebuilt part: a Gap, then a fresh snapshot; part 0's never.
            gaps = {g.symbol for g in pub.of_kind("gap") if g.symbol is not None}
            assert gaps == {"CTK-USDT-PERP"}
    assert pub.counters["subscription.listed"] == 2
    assert any("rebuilt: rematch_max_parts reached" in str(line) for line in logs)
    # The rebuilt part appended a session to its capture: CTK alone, then CTK and KEEP.
    rec = list(read_capture(tmp_path / "bounded.1.ffcap"))
    assert [r.data["channels"]["l2_book"] for r in rec if r.kind == HEADER] == [
        ["CTK-USDT-PERP"], ["CTK-USDT-PERP", "KEEP-USDT-PERP"]]
    # Its second session replays with an adapter subscribed to both: KEEP's book too.
    res = Replayer(collect=True).run(_until_stop(rec))
    assert {e.symbol for e in res.events if e.KIND == "trade"} == {"CTK-USDT-PERP", "KEEP-USDT-PERP"}
    assert res.adapter.subscription.channels["l2_book"] == ["CTK-USDT-PERP", "KEEP-USDT-PERP"]
    for sym in ("CTK-USDT-PERP", "KEEP-USDT-PERP"):
        sb = res.adapter.books.get(sym)
        assert sb.state == "synced" and sb.book.snapshot() == lb.profile.truth_book(sb.exchange_symbol), sym
    assert res.adapter.counters["ignored.unsubscribed_book"] == 0 and res.adapter.counters["messages"] > 0
    # Both files replayed together through a publisher: a subscriber that joins afterwards gets all
    # four books from its snapshot service, KEEP's (an adapter of the rebuilt session) included.
    from bus.publisher import Publisher
    from feedfabric.testing.bus import PumpedSubscribers

    ep = bus_endpoint("replayed")
    publisher = Publisher("replayed", ep.pub, ep.snapshot, exchange="BINANCE_FUTURES")
    publisher.start()
    try:
        replay_parts([_until_stop(list(read_capture(capture))), _until_stop(rec)], publisher=publisher)
        async with PumpedSubscribers(ep, ["book."]) as subs:
            late = subs.join()
            await wait_until(lambda: all(
                (b := late.book("BINANCE_FUTURES", s)) is not None
                and b.snapshot() == lb.profile.truth_book(s.split("-")[0] + "USDT") for s in symbols), 20,
                "the late subscriber's books of every part")
    finally:
        publisher.close()


async def test_a_late_subscriber_gets_every_parts_books_from_the_snapshot_service(
        shared_data: Path, loopback_exchange, bus_endpoint) -> None:
    from feedfabric.testing.bus import PumpedSubscribers

    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE_FUTURES"))
    symbols = records[0].data["channels"]["l2_book"]
    lb = await loopback_exchange(records)
    lb.rest_filter = _hiding("CTKUSDT")
    ep = bus_endpoint("bnf")
    cfg = GatewayConfig(name="bnf", exchange="BINANCE_FUTURES", channels=["trades", "l2_book"], symbols=FOUR,
                        rematch_interval=0.25, pub=ep.pub, snapshot=ep.snapshot, urls=lb.urls(),
                        backoff_initial=0.05)
    async with PumpedSubscribers(ep, ["book."]) as subs, Gateway(cfg) as gw:
        await wait_until(lambda: len(lb.subscribed_streams()) == 6, 10, "the three listed subscribed")
        lb.rest_filter = None
        await wait_until(lambda: len(gw.parts) == 2 and len(lb.subscribed_streams()) == 8, 10, "CTK subscribed")
        lb.release()
        await lb.wait_sent()
        await wait_until(lambda: all(p.adapter.books.get(s) is not None and p.adapter.books.get(s).state == "synced"
                                     for p in gw.parts for s in p.config.channels["l2_book"]), 10, "synced")
        late = subs.join()   # after the capture played out: only the snapshot service has the books
        await wait_until(lambda: all(
            (b := late.book("BINANCE_FUTURES", s)) is not None
            and b.snapshot() == lb.profile.truth_book(s.split("-")[0] + "USDT") for s in symbols), 20,
            "the late subscriber's books, CTK's (part 1) included")


async def test_a_stop_during_a_rematch_ends_the_gateway(shared_data: Path, loopback_exchange) -> None:
    lb = await loopback_exchange(shared_data / "cryptofeed" / "BINANCE_FUTURES")
    cfg = GatewayConfig(name="bnf", exchange="BINANCE_FUTURES", channels=["trades"], symbols=FOUR,
                        rematch_interval=0.25, pub="inproc://unused", urls=lb.urls(), backoff_initial=0.05)
    gw = Gateway(cfg, publisher=RecordingPublisher("BINANCE_FUTURES"))
    async with gw:
        await wait_until(lambda: len(lb.subscribed_streams()) == 4, 10, "subscribed")
        lb.fail_rest(503)                    # the re-match's instrument load retries ...
        await wait_until(lambda: gw.resolver is not None and gw.resolver.counters["instrument_errors"] >= 1, 10,
                         "a re-match retrying")
    # ... and the stop ends it with the rest.
    assert gw.resolver is None and all(t is not None and t.done() for t in (gw._task, gw._rematch_task))


async def test_a_failed_rematch_is_logged_counted_and_tried_again(
        shared_data: Path, loopback_exchange, monkeypatch: pytest.MonkeyPatch) -> None:
    lb = await loopback_exchange(shared_data / "cryptofeed" / "BINANCE_FUTURES")
    lb.rest_filter = _hiding("CTKUSDT")
    cfg = GatewayConfig(name="bnf", exchange="BINANCE_FUTURES", channels=["trades"], symbols=FOUR,
                        rematch_interval=0.25, pub="inproc://unused", urls=lb.urls(), backoff_initial=0.05)
    pub = RecordingPublisher("BINANCE_FUTURES")
    gw = Gateway(cfg, publisher=pub)
    resolve = gw._resolve
    failures = []

    async def failing_once(*, again: bool = False) -> GatewayConfig | None:
        if again and not failures:
            failures.append(1)
            raise OSError("disk full")
        return await resolve(again=again)
    monkeypatch.setattr(gw, "_resolve", failing_once)
    with captured_logs() as logs:
        async with gw:
            await wait_until(lambda: len(lb.subscribed_streams()) == 3, 10, "subscribed")
            await wait_until(lambda: pub.counters["subscription.rematch_errors"] == 1, 10, "the failure")
            lb.rest_filter = None
            await wait_until(lambda: len(lb.subscribed_streams()) == 4, 10, "CTK after the failure")
    assert any("re-matching the symbol patterns failed (disk full)" in str(line) for line in logs)


async def test_a_rematch_that_no_longer_finds_a_symbol_keeps_its_feeds_and_says_so_once(
        shared_data: Path, loopback_exchange) -> None:
    records = list(read_capture(shared_data / "cryptofeed" / "BINANCE_FUTURES"))
    lb = await loopback_exchange(records)
    cfg = GatewayConfig(name="bnf", exchange="BINANCE_FUTURES", channels=["trades"], symbols=FOUR,
                        rematch_interval=0.25, pub="inproc://unused", urls=lb.urls(), backoff_initial=0.05)
    pub = RecordingPublisher("BINANCE_FUTURES")

    async def rematches(n: int) -> None:
        infos = sum("exchangeInfo" in r for r in lb.rest_requests)
        await wait_until(lambda: sum("exchangeInfo" in r for r in lb.rest_requests) >= infos + n, 10,
                         f"{n} re-matches")

    with captured_logs() as logs:
        async with Gateway(cfg, publisher=pub) as gw:
            await wait_until(lambda: len(lb.subscribed_streams()) == 4, 10, "subscribed")
            lb.rest_filter = _hiding("KEEPUSDT")
            await wait_until(lambda: "KEEP-USDT-PERP" in gw.unlisted, 10, "KEEP unlisted")
            await rematches(3)
            assert len(lb.subscribed_streams()) == 4 and len(gw.parts) == 1 and lb.connections == 1
            assert pub.counters["subscription.unlisted"] == 1
            lb.rest_filter = None                          # back (a pause, not a delisting)
            await wait_until(lambda: not gw.unlisted, 10, "KEEP listed again")
            lb.rest_filter = _hiding("KEEPUSDT")           # and gone again: said again
            await wait_until(lambda: "KEEP-USDT-PERP" in gw.unlisted, 10, "KEEP unlisted again")
            # An empty answer (maintenance) is not a delisting of everything.
            lb.rest_filter = lambda path, body: b'{"symbols": []}' if path.endswith("/exchangeInfo") else body
            await wait_until(lambda: pub.counters["subscription.rematch_empty"] >= 2, 10, "empty lists")
            assert gw.unlisted == {"KEEP-USDT-PERP"} and len(gw.parts) == 1
    assert pub.counters["subscription.unlisted"] == 2
    assert sum("KEEP-USDT-PERP is no longer listed" in str(line) for line in logs) == 2
    assert sum("KEEP-USDT-PERP is listed again" in str(line) for line in logs) == 1
    assert any("instrument lists came back empty" in str(line) for line in logs)


def test_rematch_interval_needs_patterns_and_leaves_most_of_the_rest_budget_to_resyncs() -> None:
    with pytest.raises(ValueError, match="rematch_interval needs symbol patterns"):
        GatewayConfig(name="x", exchange="BINANCE", channels=["trades"], symbols=["BTC-USDT"],
                      rematch_interval=60, pub="inproc://unused")
    # BitMEX: 30 weight a minute, 1 for its instrument list: at most one load every 20 s (10 %).
    assert rematch_floor(exchanges.get("BITMEX"), {"trades": ["*"]}) == 20
    # OKX: three lists (spot, swaps, futures) of weight 1 against 600 a minute.
    assert rematch_floor(exchanges.get("OKX"), {"trades": ["*"]}) == 3
    with pytest.raises(ValueError, match=r"rematch_interval\n.*5 s is too short for BITMEX.*at least 20 s"):
        GatewayConfig(name="x", exchange="BITMEX", channels=["trades"], symbols=["*"], rematch_interval=5,
                      pub="inproc://unused")
    assert GatewayConfig(name="x", exchange="BITMEX", channels=["trades"], symbols=["*"], rematch_interval=20,
                         pub="inproc://unused").rematch_interval == 20
    # The long tail: one load_markets may be several HTTP calls ccxt makes out of the budget's sight.
    with pytest.raises(ValueError, match=r"CCXT_KUCOIN: its adapter reloads instrument lists at most every 60 s"):
        GatewayConfig(name="x", exchange="CCXT_KUCOIN", channels=["trades"], symbols=["*"], rematch_interval=5,
                      pub="inproc://unused")


def test_replay_matches_patterns_against_the_captures_symbols(shared_data: Path) -> None:
    records = list(read_capture(shared_data / "cryptofeed" / "KRAKEN_FUTURES"))
    res = Replayer(collect=True, channels={"l2_book": ["XRP-*", "NOPE-*"], "trades": ["*-PERP"]}).run(records)
    assert res.adapter.subscription.channels == {
        "l2_book": ["XRP-USD-20210924", "XRP-USD-PERP"],
        "trades": ["ETH-USD-PERP", "LTC-USD-PERP", "XRP-USD-PERP"]}
    assert res.event_count > 0 and res.adapter.error_counts() == {}
