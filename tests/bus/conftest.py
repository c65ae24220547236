"""Bus tests: the bus fixtures live in feedfabric.testing.bus (exported by the pytest11 plugin).

They are imported here as well so these tests also run where the plugin's entry point is not
(yet) installed; a conftest fixture simply shadows the identical plugin one.
"""

from feedfabric.testing.bus import (  # noqa: F401
    bus_dir,
    bus_endpoint,
    publisher_factory,
    publisher_process,
    subscriber_factory,
)
