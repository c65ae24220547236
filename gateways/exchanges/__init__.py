"""Registry of exchange adapters: exchange id (as used in events and configs) → adapter class.

Entries are ``"module:Class"`` strings imported on first use, so one exchange's module
failing to import never breaks the others. To add an exchange, add one line to
``_REGISTRY`` (see docs/adding-an-exchange.md). ``CCXT_<ID>`` names any exchange of ccxt's
through its REST API (gateways/exchanges/longtail.py), made on first use.
"""

from __future__ import annotations

import importlib

from gateways.adapter import Adapter

CCXT_PREFIX = "CCXT_"   # CCXT_<ID>: ccxt's exchange <id> through the long-tail adapter

_REGISTRY: dict[str, str] = {
    "BINANCE": "gateways.exchanges.binance:BinanceSpot",
    "BINANCE_FUTURES": "gateways.exchanges.binance:BinanceFutures",
    "BINANCE_DELIVERY": "gateways.exchanges.binance:BinanceDelivery",
    # --- other exchanges: one line each, keep sorted by name below this comment
    "BITMEX": "gateways.exchanges.bitmex:BitMEX",
    "BYBIT": "gateways.exchanges.bybit:BybitAdapter",
    "COINBASE": "gateways.exchanges.coinbase:Coinbase",
    "DERIBIT": "gateways.exchanges.deribit:Deribit",
    "KRAKEN": "gateways.exchanges.kraken:Kraken",
    "KRAKEN_FUTURES": "gateways.exchanges.kraken_futures:KrakenFutures",
    "OKX": "gateways.exchanges.okx:OKXAdapter",
}


def register(name: str, target: str | type[Adapter]) -> None:
    """Register an adapter at run time (e.g. a user's own exchange): a class or ``"module:Class"``."""
    if isinstance(target, str):
        _REGISTRY[name] = target
    else:
        _REGISTRY[name] = f"{target.__module__}:{target.__qualname__}"
        _loaded[name] = target


_loaded: dict[str, type[Adapter]] = {}


def names() -> list[str]:
    """Every registered exchange id, sorted."""
    return sorted(_REGISTRY)


def unknown(name: str) -> str | None:
    """Why ``name`` can name no adapter, judged without importing one (None: it may; :func:`get`
    imports it and checks the rest, e.g. that ccxt has the exchange of a ``CCXT_<ID>``)."""
    if name in _REGISTRY or (name.startswith(CCXT_PREFIX) and len(name) > len(CCXT_PREFIX)):
        return None
    return f"unknown exchange {name!r}; known: {', '.join(names())}, or CCXT_<id> for any of ccxt's exchanges"


def get(name: str) -> type[Adapter]:
    """The adapter class of an exchange id (KeyError saying why when there is none)."""
    cls = _loaded.get(name)
    if cls is not None:
        return cls
    problem = unknown(name)
    if problem is not None:
        raise KeyError(problem)
    if name not in _REGISTRY:
        from gateways.exchanges.longtail import adapter_class

        cls = _loaded[name] = adapter_class(name[len(CCXT_PREFIX):].lower())
        return cls
    module, _, attr = _REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"{_REGISTRY[name]} is not an Adapter subclass")
    _loaded[name] = cls
    return cls
