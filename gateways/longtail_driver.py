"""The ccxt driver: the gateway driver whose REST requests are ccxt calls (the long-tail adapter).

:class:`CcxtDriver` is :class:`gateways.driver.Driver` with two things changed: a Fetch whose URL
names a ccxt call (``ccxt:fetch_trades?symbol=BTC%2FUSDT``, see gateways/exchanges/longtail.py) is
performed through a ``ccxt.async_support`` exchange instead of an HTTP GET, and answered with the
call's result as JSON; and the adapter's streaming connection (``ccxtpro:<id>``, its subscribe
messages watch calls) is a ``ccxt.pro`` exchange with one watch loop per call instead of a
websocket, each result handed to the adapter as a message. Everything else (the REST budget, the
recorder, instrument loading and its retries, reconnecting with backoff, Status, the timer,
counters, logs) is the driver's own, so a ccxt gateway records and replays like any other.

A streaming connection ends when a watch fails on the network (ccxt.pro's ``NetworkError``): all its
watches stop, the ccxt.pro exchange is closed, the adapter invalidates the streamed books, and the
driver reconnects after its backoff (a new exchange, every watch again). Another error of one watch
(a symbol the exchange refuses) is logged and counted (``stream_errors``) and that watch alone is
tried again ``poll_interval`` later. ccxt.pro keeps its sockets alive itself (pings); there is no
silence watchdog on this connection, since a quiet symbol's watch legitimately waits.

ccxt does its own HTTP (aiohttp) and spaces its calls by the exchange's ``rateLimit``; the
gateway's ``ccxt`` setting is passed to the exchange's constructor (e.g. ``{"options":
{"fetchMarkets": ["spot"]}}`` to load Binance's spot markets only). A ``rest``
URL in the config (e.g. the loopback exchange) replaces the scheme and host of every http(s)
endpoint ccxt knows for the exchange, a ``ws`` URL those of its websocket endpoints; a REST proxy (the pool's next one per call) goes to ccxt's
``aiohttp_proxy``. ccxt's errors become statuses: rate limited or DDoS protection 429, a symbol or
call the exchange lacks 400, any other exchange error (or an exception inside ccxt) 500, a network
failure 0 (no response); the adapter sees a failed poll and asks it again when next due.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateways.adapter import ConnectionSpec, Fetch
from gateways.driver import Driver
from gateways.exchanges.longtail import STREAM_SCHEME, CcxtAdapter, parse_call


def _rebase(value: Any, base: str | None, ws_base: str | None = None) -> Any:
    """``value`` (ccxt's ``urls['api']``: a URL, or nested dicts of them) with the scheme and host of
    every http(s) URL replaced by ``base``'s and of every ws(s) URL by ``ws_base``'s (None: kept),
    paths kept."""
    if isinstance(value, dict):
        return {k: _rebase(v, base, ws_base) for k, v in value.items()}
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        new = ws_base if parts.scheme in ("ws", "wss") else base
        if new:
            return new.rstrip("/") + value[len(f"{parts.scheme}://{parts.netloc}"):]
    return value


def _json_default(value: Any) -> Any:
    return str(value)   # Decimals and the like in a result: their text


class CcxtDriver(Driver):
    """A :class:`~gateways.driver.Driver` for a :class:`~gateways.exchanges.longtail.CcxtAdapter`."""

    adapter: CcxtAdapter

    def __init__(self, adapter: CcxtAdapter, publisher: Any, **kwargs: Any) -> None:
        super().__init__(adapter, publisher, **kwargs)
        self.exchange: Any = None   # the ccxt.async_support exchange, inside rest_session()

    def _exchange(self, module: Any) -> Any:
        """A ccxt exchange of ``module`` (``ccxt.async_support`` or ``ccxt.pro``) set up as configured."""
        adapter = self.adapter
        settings = {"enableRateLimit": True, "timeout": int(self.config.rest_timeout * 1000),
                    **(self.config.ccxt or {})}
        exchange = getattr(module, adapter.ccxt_id)(settings)
        exchange.number = str   # trades, tickers... keep the exchange's own text (exact)
        rest, ws = adapter.url.get("rest"), adapter.url.get("ws")
        if rest or ws:
            exchange.urls["api"] = _rebase(exchange.urls["api"], rest, ws)
        return exchange

    @contextlib.asynccontextmanager
    async def rest_session(self) -> AsyncIterator[None]:
        import ccxt.async_support as ccxt_async

        async with super().rest_session():
            exchange = self.exchange = self._exchange(ccxt_async)
            try:
                yield
            finally:
                self.exchange = None
                await exchange.close()

    async def _request(self, fetch: Fetch) -> tuple[int, str | None]:
        import ccxt

        exchange = self.exchange
        assert exchange is not None, "CcxtDriver._request outside rest_session()"
        exchange.aiohttp_proxy = self._rest_proxies.take()
        try:
            method, params = parse_call(fetch.url)
            if method == "load_markets":
                result: Any = await exchange.load_markets(reload=True)
            else:
                result = await getattr(exchange, method)(**params)
            return 200, orjson.dumps(result, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
            return self._failed(fetch, 429, exc), None
        except ccxt.NetworkError as exc:
            return self._failed(fetch, 0, exc), None
        except (ccxt.BadSymbol, ccxt.NotSupported, ccxt.BadRequest, ValueError, AttributeError, TypeError) as exc:
            return self._failed(fetch, 400, exc), None
        except ccxt.BaseError as exc:
            return self._failed(fetch, 500, exc), None
        except Exception as exc:  # noqa: BLE001 - a bug in ccxt's parsing of one answer: that poll fails
            return self._failed(fetch, 500, exc), None

    def _failed(self, fetch: Fetch, status: int, exc: BaseException) -> int:
        self._count("rest_errors")
        self._log_symbol("WARNING", fetch.tag or "rest", fetch.symbol, "{} {} failed ({}): {!r}",
                         fetch.tag or "ccxt", fetch.url, status or "no response", exc)
        return status

    # ------------------------------------------------------------ streaming (ccxt.pro)
    async def _session_once(self, spec: ConnectionSpec) -> str:
        if not spec.url.startswith(STREAM_SCHEME):
            return await super()._session_once(spec)
        import ccxt
        import ccxt.pro as ccxt_pro

        adapter = self.adapter
        conn = spec.id
        exchange = self._exchange(ccxt_pro)
        if self.exchange is not None and self.exchange.markets:
            # Loaded already by this driver: not again by ccxt.pro on every (re)connection.
            exchange.set_markets(self.exchange.markets, self.exchange.currencies)
        exchange.aiohttp_proxy = self._rest_proxies.take()   # its REST calls (snapshots) too
        proxy = self._ws_proxies.take()
        if proxy is not None:
            if proxy.startswith("socks"):
                exchange.ws_socks_proxy = proxy
            else:
                exchange.ws_proxy = proxy
        watches: list[asyncio.Task[None]] = []
        reason = "closed"
        try:
            await self._opened(spec)
            ts = time.time_ns()
            for call in spec.subscribe:
                assert isinstance(call, str)
                if self.recorder is not None:
                    self.recorder.send(conn, ts, call)
                watches.append(asyncio.create_task(self._watch(exchange, conn, call), name=f"watch:{call}"))
            if not watches:
                await self._stop.wait()
                return "stopped"
            done, _ = await asyncio.wait(watches, return_when=asyncio.FIRST_EXCEPTION)
            exc = next((t.exception() for t in done if not t.cancelled() and t.exception() is not None), None)
            if exc is not None:
                reason = f"{type(exc).__name__}: {exc}"[:200]
                if not isinstance(exc, ccxt.NetworkError):
                    self.log.opt(exception=exc).error("{} {}: unexpected error in a watch", adapter.exchange, conn)
        finally:
            for t in watches:
                t.cancel()
            await asyncio.gather(*watches, return_exceptions=True)
            with contextlib.suppress(Exception):
                await exchange.close()
            await self._closed(conn, reason)
        return reason

    async def _watch(self, exchange: Any, conn: str, call: str) -> None:
        """Watch one call forever: each result to the adapter as ``{"call", "result"}`` (recorded).
        Ends on a network error (the connection goes with it); other errors retry this call alone."""
        import ccxt

        method, params = parse_call(call)
        watch = getattr(exchange, method)
        symbol = params.pop("symbol")
        adapter = self.adapter
        while True:
            try:
                result = await watch(symbol, **params)
            except ccxt.NetworkError:
                raise
            except Exception as exc:  # noqa: BLE001 - one symbol's watch must not end the others
                self._count("stream_errors")
                self._log_symbol("WARNING", "watch", adapter.from_ccxt.get(symbol), "{} failed: {!r}", call, exc)
                await self._sleep_or_stop(adapter.subscription.poll_interval)
                continue
            ts = time.time_ns()
            msg = orjson.dumps({"call": call, "result": result}, default=_json_default,
                               option=orjson.OPT_NON_STR_KEYS).decode()
            if self.recorder is not None:
                self.recorder.recv(conn, ts, msg)
            await self.handle(adapter.on_message(conn, msg, ts))
