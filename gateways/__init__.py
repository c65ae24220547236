"""Gateways: one process per exchange keeping its feeds alive and publishing normalized events.

- ``adapter``: the sans-I/O adapter shape (raw message in → events + actions out);
  ``books``: shared order-book keeping (sync states, sequence rules, Gap/Reset/resync);
  ``polling``: candles polled from REST where the websocket has none (the shared rules);
  ``exchanges``: the registry and one module per exchange.
- ``driver``: the asyncio network driver (websockets, aiohttp, reconnects, REST budget);
  ``process``: adapter + driver + bus publisher as a process; ``commands``: CLI tools.
- ``capture``: feedfabric's capture format and readers of the shared formats;
  ``replay``: captures through the same adapter and publisher; ``loopback``: a local
  exchange serving a capture for end-to-end tests.

See docs/gateways.md and docs/adding-an-exchange.md.
"""
