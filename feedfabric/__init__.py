"""feedfabric: a multi-process market-data fabric for cryptocurrency exchanges.

This package holds the command line and process supervision; the fabric itself
lives in the top-level packages ``gateways``, ``bus``, ``consumers`` and
``cryptofeed_types``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("feedfabric")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
