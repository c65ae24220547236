"""The ccxt driver: the gateway driver whose REST requests are ccxt calls (the long-tail adapter).

:class:`CcxtDriver` is :class:`gateways.driver.Driver` with one thing changed: a Fetch whose URL
names a ccxt call (``ccxt:fetch_trades?symbol=BTC%2FUSDT``, see gateways/exchanges/longtail.py) is
performed through a ``ccxt.async_support`` exchange instead of an HTTP GET, and answered with the
call's result as JSON. Everything else (the REST budget, the recorder, instrument loading and its
retries, the timer, counters, logs) is the driver's own, so a ccxt gateway records and replays like
any other.

ccxt does its own HTTP (aiohttp) and spaces its calls by the exchange's ``rateLimit``; the
gateway's ``ccxt`` setting is passed to the exchange's constructor (e.g. ``{"options":
{"fetchMarkets": ["spot"]}}`` to load Binance's spot markets only). A ``rest``
URL in the config (e.g. the loopback exchange) replaces the scheme and host of every endpoint ccxt
knows for the exchange; a REST proxy (the pool's next one per call) goes to ccxt's
``aiohttp_proxy``. ccxt's errors become statuses: rate limited or DDoS protection 429, a symbol or
call the exchange lacks 400, any other exchange error (or an exception inside ccxt) 500, a network
failure 0 (no response); the adapter sees a failed poll and asks it again when next due.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateways.adapter import Fetch
from gateways.driver import Driver
from gateways.exchanges.longtail import CcxtAdapter, parse_call


def _rebase(value: Any, base: str) -> Any:
    """``value`` (ccxt's ``urls['api']``: a URL, or nested dicts of them) with every URL's scheme
    and host replaced by ``base``'s, paths kept."""
    if isinstance(value, dict):
        return {k: _rebase(v, base) for k, v in value.items()}
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        return base.rstrip("/") + value[len(f"{parts.scheme}://{parts.netloc}"):]
    return value


def _json_default(value: Any) -> Any:
    return str(value)   # Decimals and the like in a result: their text


class CcxtDriver(Driver):
    """A :class:`~gateways.driver.Driver` for a :class:`~gateways.exchanges.longtail.CcxtAdapter`."""

    adapter: CcxtAdapter

    def __init__(self, adapter: CcxtAdapter, publisher: Any, **kwargs: Any) -> None:
        super().__init__(adapter, publisher, **kwargs)
        self.exchange: Any = None   # the ccxt.async_support exchange, inside rest_session()

    @contextlib.asynccontextmanager
    async def rest_session(self) -> AsyncIterator[None]:
        import ccxt.async_support as ccxt_async

        async with super().rest_session():
            adapter = self.adapter
            settings = {"enableRateLimit": True, "timeout": int(self.config.rest_timeout * 1000),
                        **(self.config.ccxt or {})}
            exchange = getattr(ccxt_async, adapter.ccxt_id)(settings)
            exchange.number = str   # trades, tickers... keep the exchange's own text (exact)
            base = adapter.url.get("rest")
            if base:
                exchange.urls["api"] = _rebase(exchange.urls["api"], base)
            self.exchange = exchange
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
