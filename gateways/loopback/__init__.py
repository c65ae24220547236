"""A loopback exchange: websocket + REST server on 127.0.0.1 (random port) serving a capture.

Gateways are tested end to end through it with their real network code (the adapter's
``urls`` point here). It

- accepts websocket connections on every path (:meth:`Loopback.urls` gives each endpoint
  name the adapter uses, its path kept), checks the subscribe messages it receives against
  what the capture subscribed (:attr:`Loopback.errors` lists every mismatch), answers them
  as the exchange does, and streams the capture's received messages, by stream, to the
  connection that subscribed to each;
- keeps a *truth* book per symbol (the recorded snapshot plus every update of the capture
  it has passed, sent or not): REST book snapshots and the snapshot a resubscribe or a
  reconnection gets are made from it; other REST URLs are answered from the capture's
  recorded responses (instruments);
- on command: :meth:`drop` (abort every connection), :meth:`silence` / :meth:`resume`,
  :meth:`garbage` (send malformed frames), :meth:`broadcast` (any frames, e.g. a notice),
  :meth:`break_sequence` (skip one book update of a symbol, which the truth still includes, so
  the client's own check fails: sequence numbers, checksum, or an unknown order id, depending on
  the exchange), :meth:`fail_rest` /
  :meth:`restore_rest` (the REST API answers an error status, or drops the request unanswered),
  :meth:`refuse_ws` / :meth:`accept_ws` (websocket handshakes answered with an HTTP status).

Streaming is gated: :meth:`release` lets the next n messages go (``None``: all), so a
test can act at a known point of the capture. Exchange specifics (stream names, book
formats, translating a capture to the protocol the gateway speaks: Kraken's websocket v1
recording is served as v2) live in a :class:`Profile`; :data:`PROFILES` maps exchange ids
to them.

Layout, as gateways/exchanges/: ``server.py`` (the server), ``base.py`` (the :class:`Profile`
base class and what several profiles share) and one module per exchange with its profile
(``binance.py``, ``okx.py``, ...), added to :data:`PROFILES` in ``server.py``.
"""

from __future__ import annotations

from gateways.loopback.base import ClientRequest, FlatCandles, Profile
from gateways.loopback.binance import BinanceProfile
from gateways.loopback.bitmex import BitMEXProfile
from gateways.loopback.bybit import BybitProfile
from gateways.loopback.coinbase import CoinbaseProfile
from gateways.loopback.deribit import DeribitProfile
from gateways.loopback.kraken import KrakenProfile, kraken_v2_symbol
from gateways.loopback.kraken_futures import KrakenFuturesProfile
from gateways.loopback.okx import OKXProfile
from gateways.loopback.server import PROFILES, Loopback

__all__ = [
    "BinanceProfile",
    "BitMEXProfile",
    "BybitProfile",
    "ClientRequest",
    "CoinbaseProfile",
    "DeribitProfile",
    "FlatCandles",
    "KrakenFuturesProfile",
    "KrakenProfile",
    "Loopback",
    "OKXProfile",
    "PROFILES",
    "Profile",
    "kraken_v2_symbol",
]
