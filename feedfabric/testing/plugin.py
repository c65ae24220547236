"""pytest plugin with feedfabric's reusable fixtures (auto-loaded via the pytest11 entry point).

Each area keeps its fixtures in its own module of feedfabric.testing; this file
only re-exports them so pytest sees them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from feedfabric.testing import shared_sample_data


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/sample_data``; tests that need it are skipped with a clear message when absent."""
    path = shared_sample_data()
    if path is None:
        pytest.skip("../shared/sample_data is absent (set FEEDFABRIC_SHARED_DATA to its path)")
    return path


# --- bus fixtures (feedfabric.testing.bus) ---
from feedfabric.testing.bus import bus_dir, bus_endpoint, publisher_factory, publisher_process, subscriber_factory  # noqa: E402,F401,I001
# --- gateway fixtures (feedfabric.testing.exchange) ---
from feedfabric.testing.exchange import loopback_exchange, loopback_gateway, recording_publisher  # noqa: E402,F401,I001
# --- log capture (feedfabric.testing.logs) ---
from feedfabric.testing.logs import log_records  # noqa: E402,F401,I001
# --- consumer fixtures (feedfabric.testing.consumers) ---
from feedfabric.testing.consumers import postgres_server, redis_server  # noqa: E402,F401,I001
