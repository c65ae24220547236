"""Gateway tools as click commands (registered on the ``feedfabric`` CLI by feedfabric/cli.py):

- ``record EXCHANGE -c CHANNELS -s SYMBOLS -o FILE.ffcap``: connect live and record every
  frame and REST response (optionally also publish on the bus with ``--pub``);
- ``replay CAPTURE``: replay any capture through its adapter (and a Publisher with ``--pub``),
  at full speed or at the recorded pace; prints what came out;
- both show progress on stderr while they run (messages, events, rate: a line rewritten every
  second on a terminal, a plain line every 5 s otherwise; ``--progress SECONDS``, ``--no-progress``);
- ``exchanges``: the registered exchange adapters;
- ``symbols EXCHANGE``: the exchange's instruments (live REST, or ``--capture`` offline).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from gateways import exchanges as registry
from gateways.adapter import Adapter, InstrumentPages


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _urls(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: expected NAME=URL (e.g. ws=ws://127.0.0.1:9000)")
        out[name] = url
    return out


def _settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE (e.g. poll_interval=0.5)", param_hint="--option")
        try:
            out[key] = orjson.loads(text)
        except orjson.JSONDecodeError:
            out[key] = text   # a plain word: its text
    return out


class _NullPublisher:
    """Counts instead of publishing (``record`` without ``--pub``)."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def publish(self, event: Any) -> int:
        self.counters[event.KIND] = self.counters.get(event.KIND, 0) + 1
        return 0

    def set_feed_state(self, feed: str, state: str, reason: str | None = None) -> None:
        click.echo(f"{feed}: {state}{f' ({reason})' if reason else ''}", err=True)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


class Progress:
    """Progress of a long operation on stderr.

    On a terminal: one status line rewritten every ``interval`` seconds (default 1 s). Otherwise
    (a pipe, a log file, systemd): a plain line every ``interval`` seconds (default 5 s). Each
    line gives the messages (capture records) so far, the events they produced, the rate and
    the elapsed time. ``interval=0`` writes a line at every :meth:`update` (tests).
    """

    def __init__(self, what: str, interval: float | None = None, *, stream: Any = None,
                 enabled: bool = True) -> None:
        import time

        self._clock = time.monotonic
        self.what = what
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (1.0 if self.tty else 5.0)
        self.enabled = enabled
        self.t0 = self._clock()
        self._next = self.t0 + self.interval
        self._drawn = False
        self.lines = 0

    def due(self) -> bool:
        return self.enabled and self._clock() >= self._next

    def update(self, messages: int, events: int) -> None:
        """Show the counts if a line is due (cheap otherwise)."""
        if self.due():
            self.show(messages, events)

    def show(self, messages: int, events: int) -> None:
        now = self._clock()
        self._next = now + self.interval
        elapsed = now - self.t0
        rate = messages / elapsed if elapsed > 0 else 0.0
        text = (f"{self.what}: {messages:,} messages, {events:,} events, {rate:,.0f} msg/s, "
                f"{elapsed:.1f} s")
        self.lines += 1
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the rewritten terminal line (so the summary starts on its own line)."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


progress_option = click.option(
    "--progress", "progress_interval", type=float, default=None, metavar="SECONDS",
    help="progress line period on stderr (default: 1 s on a terminal, 5 s otherwise; 0 = every check)")
no_progress_option = click.option("--no-progress", is_flag=True, help="no progress lines")


@click.command("record")
@click.argument("exchange")
@click.option("-c", "--channels", required=True, help="comma-separated channels, e.g. trades,l2_book")
@click.option("-s", "--symbols", required=True,
              help="comma-separated normalized symbols or patterns, e.g. BTC-USDT or 'BTC-*'")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="capture file to append to (.ffcap)")
@click.option("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
@click.option("--pub", default=None, help="also publish on this PUB endpoint")
@click.option("--url", "urls", multiple=True, help="override an exchange endpoint: NAME=URL (repeatable)")
@click.option("--depth", type=int, default=0, help="REST snapshot depth")
@click.option("--option", "options", multiple=True,
              help="a gateway setting KEY=VALUE, VALUE read as JSON when it parses: poll_interval=0.5, "
                   "silence_timeout=30, ccxt='{\"options\": {\"fetchMarkets\": [\"spot\"]}}' (repeatable)")
@progress_option
@no_progress_option
def record(exchange: str, channels: str, symbols: str, out: Path, duration: float | None, pub: str | None,
           urls: tuple[str, ...], depth: int, options: tuple[str, ...], progress_interval: float | None,
           no_progress: bool) -> None:
    """Record EXCHANGE live into a feedfabric capture file."""
    from pydantic import ValidationError

    from gateways.process import Gateway, GatewayConfig

    settings = _settings(options)
    try:
        cfg = GatewayConfig(name=f"record-{exchange.lower()}", exchange=exchange, channels=_split(channels),
                            symbols=_split(symbols), pub=pub or "inproc://unused", record=out, urls=_urls(urls),
                            depth=depth, **settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or exchange}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise click.UsageError(problems) from None
    publisher = None if pub else _NullPublisher()

    progress = Progress(f"recording {exchange} to {out}", progress_interval, enabled=not no_progress)

    def counts(gw: Any) -> tuple[int, int]:
        records = sum(part.recorder.records for part in gw.parts if part.recorder is not None)
        pub_counters = getattr(gw.publisher, "counters", {}) or {}
        if isinstance(gw.publisher, _NullPublisher):
            events = sum(v for k, v in pub_counters.items() if not k.startswith(("errors", "ignored")))
        else:
            events = int(pub_counters.get("messages", 0))
        return records, events

    async def report(gw: Any) -> None:
        while True:
            await asyncio.sleep(progress.interval if progress.interval > 0 else 0.2)
            progress.show(*counts(gw))

    async def amain() -> None:
        gw = Gateway(cfg, publisher=publisher)
        async with gw:
            reporter = asyncio.create_task(report(gw)) if progress.enabled else None
            try:
                await asyncio.wait_for(gw.wait(), duration)
            except TimeoutError:
                pass
            finally:
                if reporter is not None:
                    reporter.cancel()
        progress.close()
        if not gw.parts:   # stopped before its symbol patterns were matched
            click.echo(f"{out}: nothing recorded (stopped before the instruments loaded)", err=True)
        for part in gw.parts:   # more than one: rematch_interval found instruments listed since
            rec = part.recorder
            click.echo(f"{rec.path}: {rec.records} records in {rec.blocks} blocks", err=True)

    try:
        asyncio.run(amain())
    except KeyboardInterrupt:
        pass


@click.command("replay")
@click.argument("capture", type=click.Path(path_type=Path))
@click.option("--exchange", default=None, help="adapter to use (default: the capture's exchange)")
@click.option("--pub", default=None, help="publish on this PUB endpoint (default: only count)")
@click.option("--snapshot", default=None, help="snapshot service endpoint (with --pub)")
@click.option("--gateway", "gateway_name", default=None, help="gateway id on the bus (default: exchange, lowercase)")
@click.option("--pace/--full-speed", default=False, help="reproduce the recorded timing")
@click.option("--speed", type=float, default=1.0, help="with --pace: replay this many times faster")
@click.option("--linger", type=float, default=0.0, help="with --pub: keep publishing heartbeats/snapshots this long")
@click.option("--parts/--no-parts", default=True,
              help="also replay the later parts recorded beside CAPTURE (CAPTURE.1.ffcap, ...): default on")
@progress_option
@no_progress_option
def replay(capture: Path, exchange: str | None, pub: str | None, snapshot: str | None, gateway_name: str | None,
           pace: bool, speed: float, linger: float, progress_interval: float | None, no_progress: bool,
           parts: bool) -> None:
    """Replay CAPTURE (feedfabric, cryptofeed or tardis format) through its adapter.

    A recording whose gateway subscribed instruments listed after its start on parts of their own
    (CAPTURE.1.ffcap, ... beside it) is replayed whole: every part, in recorded order."""
    import time

    from gateways.capture import capture_format, later_parts, read_capture
    from gateways.replay import PartsReplayer

    try:
        capture_format(capture)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="CAPTURE") from None
    files = [capture, *later_parts(capture)] if parts else [capture]
    if len(files) > 1:
        click.echo(f"replaying {len(files)} parts of one recording: {', '.join(f.name for f in files)}", err=True)
    publisher = None
    if pub:
        from bus.publisher import Publisher
        name = gateway_name or (exchange or capture.name.split(".")[0]).lower().replace(".", "_")
        publisher = Publisher(name, pub, snapshot, exchange=exchange)
        publisher.start()
    progress = Progress(f"replaying {capture.name}", progress_interval, enabled=not no_progress)
    replayer = PartsReplayer(len(files), exchange=exchange, publisher=publisher, pace=pace, speed=speed)
    seen = 0

    def records(path: Path) -> Any:
        nonlocal seen
        for rec in read_capture(path):
            seen += 1
            # Every 256 records: is a progress line due? (The clock is not read per record.)
            if not seen & 0xFF and progress.due():
                progress.show(seen, replayer.event_count)
            yield rec

    t0 = time.perf_counter()
    try:
        try:
            results = replayer.run([records(f) for f in files])
        finally:
            progress.close()
        elapsed = time.perf_counter() - t0
        if publisher is not None and linger > 0:
            time.sleep(linger)  # let late subscribers fetch snapshots before the publisher goes away
    finally:
        if publisher is not None:
            publisher.close()
    errors = 0
    for path, result in zip(files, results, strict=True):
        adapter = result.adapter
        head = adapter.exchange if len(files) == 1 else f"{adapter.exchange} ({path.name})"
        click.echo(f"{head}: {sum(result.records.values())} records, {result.event_count} events"
                   + (f" in {elapsed:.3f} s" if len(files) == 1 else ""))
        for kind, n in sorted(result.events_by_kind.items()):
            click.echo(f"  {kind:15} {n}")
        notable = {k: v for k, v in sorted(adapter.counters.items())
                   if k.startswith(("errors", "ignored", "book.gap"))}
        for name, n in notable.items():
            click.echo(f"  {name:30} {n}")
        if result.unanswered:
            click.echo(f"  {len(result.unanswered)} REST request(s) had no recorded response", err=True)
        errors += adapter.counters.get("errors", 0)
    if len(files) > 1:
        click.echo(f"all parts: {sum(r.event_count for r in results)} events in {elapsed:.3f} s")
    sys.exit(1 if errors else 0)


@click.command("exchanges")
def exchanges() -> None:
    """List the exchange adapters."""
    for name in registry.names():
        try:
            cls = registry.get(name)
        except Exception as exc:  # noqa: BLE001 - one broken adapter must not hide the others
            click.echo(f"{name:20} (unavailable: {exc})")
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        click.echo(f"{name:20} {doc}")
    try:
        import ccxt

        known = ", ".join(ccxt.exchanges[:6])
        click.echo(f"{'CCXT_<ID>':20} any of ccxt's {len(ccxt.exchanges)} exchanges, polled over REST through ccxt "
                   f"or streamed through ccxt.pro (ccxt_stream) (<ID>: a ccxt id, e.g. CCXT_KUCOIN; {known}, ...)")
    except ImportError:
        pass


@click.command("symbols")
@click.argument("exchange")
@click.option("--capture", type=click.Path(path_type=Path), default=None,
              help="read the instruments from a capture instead of the exchange")
@click.option("--url", "urls", multiple=True, help="override an exchange endpoint: NAME=URL")
@click.option("--grep", "pattern", default=None, help="only symbols whose normalized or exchange name contains this text")
@click.option("--match", "globs", multiple=True,
              help="only the symbols a gateway's symbol pattern selects, e.g. 'BTC-*' or '*-USDT-PERP' (repeatable)")
def symbols(exchange: str, capture: Path | None, urls: tuple[str, ...], pattern: str | None,
            globs: tuple[str, ...]) -> None:
    """List EXCHANGE's instruments: normalized symbol, exchange id, tick, lot, contract size.

    With --match, what the same patterns in a topology's `symbols` would subscribe (a live gateway
    matches them against the instruments it loads at start).
    """
    from gateways.adapter import Subscription
    from gateways.selection import expand

    try:
        cls = registry.get(exchange)
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from None
    if capture is not None:
        adapter, bodies = _recorded(exchange, capture, _urls(urls))   # the registry name: CCXT_<ID> too
    else:
        adapter = cls(Subscription({}), urls=_urls(urls) or None)
        bodies = asyncio.run(_fetch_all(adapter))   # the default lists: what patterns are matched against
    syms = adapter.load_instruments(bodies)
    selected, unmatched = expand({"": list(globs)}, (s.normalized for s in syms))
    for glob in unmatched:
        click.echo(f"pattern {glob!r} matches no symbol", err=True)
    for sym in sorted(syms, key=lambda s: s.normalized):
        if pattern and pattern.upper() not in f"{sym.normalized} {sym.exchange_symbol or ''}".upper():
            continue
        if globs and sym.normalized not in selected[""]:
            continue
        click.echo(f"{sym.normalized:28} {sym.exchange_symbol or '':24} tick={sym.tick_size} lot={sym.lot_size}"
                   + (f" contract={sym.contract_size}" if sym.contract_size is not None else ""))


def _recorded(exchange: str, capture: Path, urls: dict[str, str]) -> tuple[Adapter, dict[str, Any]]:
    """The adapter the capture was recorded with (it holds the instrument lists that subscription
    asked for) and every page of them, as the replay reads them."""
    from gateways.capture import HEADER, REST, capture_format, read_capture
    from gateways.replay import RestPool, capture_adapter, recorded_instruments

    try:
        capture_format(capture)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--capture") from None
    pool = RestPool()
    header: dict[str, Any] = {}
    for rec in read_capture(capture):
        if rec.kind == HEADER and not header and isinstance(rec.data, dict):
            header = rec.data
        elif rec.kind == REST:
            pool.add(rec)
    adapter = capture_adapter(header, exchange=exchange, urls=urls)
    found = recorded_instruments(adapter, pool)
    if not found.bodies:
        missing = found.missing[0].url if found.missing else "the instruments"
        raise click.ClickException(f"{capture}: no recorded response for {missing}")
    for fetch in found.missing:
        click.echo(f"{capture}: no recorded response for {fetch.url}; listing the others", err=True)
    if found.unfinished:
        click.echo(f"{capture}: instrument pages do not end; listing those read", err=True)
    return adapter, found.bodies


async def _fetch_all(adapter: Adapter) -> dict[str, str]:
    """GET every page of every instruments list; any failure is one clear line (click error, exit 1)."""
    import aiohttp

    exchange = adapter.exchange
    out: dict[str, str] = {}
    hint = "check the network (or --url rest=...), or read them offline from a recording with --capture FILE"
    from gateways.driver import Driver
    from gateways.process import driver_class

    driver_cls = driver_class(adapter)
    if driver_cls is not Driver:   # requests that are not HTTP GETs (ccxt calls): the adapter's driver asks
        driver = driver_cls(adapter, None)
        async with driver.rest_session():
            for fetch in adapter.instrument_requests():
                status, body = await driver._request(fetch)
                if status != 200 or body is None:
                    raise click.ClickException(f"cannot fetch {exchange} instruments through ccxt "
                                               f"({fetch.url}: {status or 'no response'}); {hint}")
                out[fetch.url] = body
        return out
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        for first in adapter.instrument_requests():
            pages = InstrumentPages(adapter, first)
            while (page := pages.next) is not None:
                url = page.url
                try:
                    async with session.get(url) as resp:
                        if resp.status != 200:
                            raise click.ClickException(
                                f"{exchange} instruments: GET {url}: HTTP {resp.status}; {hint}")
                        out[url] = await resp.text()
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    reason = str(exc) or type(exc).__name__
                    if isinstance(exc, TimeoutError):
                        reason = "timed out after 20 s"
                    raise click.ClickException(f"cannot fetch {exchange} instruments: GET {url} failed "
                                               f"({reason}); {hint}") from None
                pages.got(out[url])
            if pages.unfinished:
                click.echo(f"{first.url}: instrument pages do not end after {pages.pages}; listing those",
                           err=True)
    return out


COMMANDS = [record, replay, exchanges, symbols]
