"""Registry of exchange adapters: exchange id (as used in events and configs) → adapter class.

Entries are ``"module:Class"`` strings imported on first use, so one exchange's module
failing to import never breaks the others. To add an exchange, add one line to
``_REGISTRY`` (see docs/adding-an-exchange.md). ``CCXT_<ID>`` names any exchange of ccxt's
through its REST API (gateways/exchanges/longtail.py), made on first use.
"""

from __future__ import annotations

import importlib

from gateways.adapter import Adapter

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


def get(name: str) -> type[Adapter]:
    """The adapter class of an exchange id (KeyError listing the known ids when unknown)."""
    cls = _loaded.get(name)
    if cls is not None:
        return cls
    if name not in _REGISTRY and name.startswith("CCXT_"):
        from gateways.exchanges.longtail import adapter_class

        cls = _loaded[name] = adapter_class(name)
        return cls
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown exchange {name!r}; known: {', '.join(names())}, "
                       "or CCXT_<id> for any of ccxt's exchanges") from None
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"{target} is not an Adapter subclass")
    _loaded[name] = cls
    return cls
