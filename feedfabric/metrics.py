"""Optional Prometheus endpoint per process (prometheus-client).

A gateway or consumer with ``metrics_port`` in the topology serves ``/metrics`` on that
port. Its counters (the same numbers it puts in its heartbeats) are exported through a
custom collector read at scrape time, so the hot path pays nothing:

- ``feedfabric_counter_total{process, name}`` — every numeric counter (messages, bytes,
  dropped, errors, channel.trades, gaps ...);
- ``feedfabric_up{process}`` — 1 while the process runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class CountersCollector(Collector):
    """Exports ``read()`` (a flat mapping of counters) at every scrape."""

    def __init__(self, process: str, read: Callable[[], Mapping[str, Any]]) -> None:
        self.process = process
        self.read = read

    def collect(self) -> Iterator:
        up = GaugeMetricFamily("feedfabric_up", "1 while the process runs", labels=["process"])
        up.add_metric([self.process], 1)
        yield up
        fam = CounterMetricFamily("feedfabric_counter", "feedfabric process counters (as in heartbeats)",
                                  labels=["process", "name"])
        try:
            counters = dict(self.read())
        except Exception:  # noqa: BLE001 - a scrape must never break the process
            counters = {}
        for name, value in sorted(counters.items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                fam.add_metric([self.process, str(name)], value)
        yield fam


def serve_metrics(port: int, process: str, read: Callable[[], Mapping[str, Any]],
                  addr: str | None = None) -> Callable[[], None]:
    """Serve ``/metrics`` on ``addr:port``; returns a function that stops the server.

    ``addr`` defaults to ``$FEEDFABRIC_METRICS_ADDR`` or 127.0.0.1 (``0.0.0.0`` in containers).
    """
    addr = addr or os.environ.get("FEEDFABRIC_METRICS_ADDR") or "127.0.0.1"
    registry = CollectorRegistry()
    registry.register(CountersCollector(process, read))
    server, thread = start_http_server(port, addr=addr, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)
    return stop
