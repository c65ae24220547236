"""Optional Prometheus endpoint per process (prometheus-client).

A gateway or consumer with ``metrics_port`` in the topology serves ``/metrics`` on that
port. Its counters (the same numbers it puts in its heartbeats) are exported through a
custom collector read at scrape time, so the hot path pays nothing:

- ``feedfabric_counter_total{process, name}`` — every numeric counter (messages, bytes,
  dropped, errors, channel.trades, gaps ...);
- ``feedfabric_up{process}`` — 1 while the process runs;
- for a gateway, per feed (its connections, the exchange's system status, as in the heartbeat's
  ``feeds``): ``feedfabric_feed_state{process, feed, state}`` — 1 for the current state (alert on
  ``state="maintenance"``, ``"disconnected"``...), and ``feedfabric_feed_up{process, feed}`` — 1 when
  that state counts as up (``feedfabric status``'s rule), else 0; and
  ``feedfabric_books_invalid{process}`` — the books announced invalid (a ``gap``) and not rebuilt
  yet (alert when it stays above 0: resyncs are not getting through).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from feedfabric.status import UP_STATES


class CountersCollector(Collector):
    """Exports ``read()`` (a flat mapping of counters) and ``feeds()`` (feed → state) at every scrape."""

    def __init__(self, process: str, read: Callable[[], Mapping[str, Any]],
                 feeds: Callable[[], Mapping[str, str]] | None = None,
                 books_invalid: Callable[[], int] | None = None) -> None:
        self.process = process
        self.read = read
        self.feeds = feeds
        self.books_invalid = books_invalid

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
        if self.books_invalid is not None:
            invalid = GaugeMetricFamily("feedfabric_books_invalid", "books announced invalid and not rebuilt yet",
                                        labels=["process"])
            try:
                invalid.add_metric([self.process], self.books_invalid())
            except Exception:  # noqa: BLE001 - a scrape must never break the process
                pass
            yield invalid
        if self.feeds is None:
            return
        try:
            feeds = dict(self.feeds())
        except Exception:  # noqa: BLE001 - a scrape must never break the process
            feeds = {}
        state = GaugeMetricFamily("feedfabric_feed_state", "1 for the current state of each feed",
                                  labels=["process", "feed", "state"])
        feed_up = GaugeMetricFamily("feedfabric_feed_up", "1 while the feed's state counts as up",
                                    labels=["process", "feed"])
        for feed, value in sorted(feeds.items()):
            state.add_metric([self.process, str(feed), str(value)], 1)
            feed_up.add_metric([self.process, str(feed)], 1 if value in UP_STATES else 0)
        yield state
        yield feed_up


def serve_metrics(port: int, process: str, read: Callable[[], Mapping[str, Any]],
                  addr: str | None = None, feeds: Callable[[], Mapping[str, str]] | None = None,
                  books_invalid: Callable[[], int] | None = None) -> Callable[[], None]:
    """Serve ``/metrics`` on ``addr:port``; returns a function that stops the server. ``feeds``: a
    gateway's feed states (``Publisher.feed_states``); ``books_invalid``: its count of books
    announced invalid (``Publisher.books_invalid``).

    ``addr`` defaults to ``$FEEDFABRIC_METRICS_ADDR`` or 127.0.0.1 (``0.0.0.0`` in containers).
    """
    addr = addr or os.environ.get("FEEDFABRIC_METRICS_ADDR") or "127.0.0.1"
    registry = CollectorRegistry()
    registry.register(CountersCollector(process, read, feeds, books_invalid))
    server, thread = start_http_server(port, addr=addr, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)
    return stop
