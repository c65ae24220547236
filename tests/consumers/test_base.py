"""The consumer framework: errors are counted not fatal, counters reach the heartbeat, clean stop."""

from __future__ import annotations

import threading
import time

from bus.subscriber import Subscriber
from consumers.base import Consumer
from cryptofeed_types.events import Trade


class Picky(Consumer):
    default_prefixes = ("trades.",)

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.seen: list[str] = []
        self.finished = False

    def handle(self, msg) -> None:
        if msg.event.price_str == "13":
            raise ValueError("unlucky")
        self.seen.append(msg.event.price_str)

    def finish(self) -> None:
        self.finished = True


def test_consumer_counts_errors_reports_counters_and_stops(bus_endpoint, publisher_factory) -> None:
    src, own = bus_endpoint("src"), bus_endpoint("picky")
    pub = publisher_factory("src", src, heartbeat_interval=0.1)
    c = Picky("picky", src, publish=own, heartbeat_interval=0.1, tick_interval=0.02)
    t = threading.Thread(target=c.run, daemon=True)
    t.start()
    hb = Subscriber(own, ["heartbeat."], books=False)
    try:
        counters: dict = {}
        deadline = time.monotonic() + 15
        n = 0
        while not (counters.get("errors", 0) >= 1 and counters.get("received", 0) >= 20):
            assert time.monotonic() < deadline, counters
            n += 1
            pub.publish(Trade("EX", "A-B", "buy", "1", "13" if n % 10 == 0 else str(n), receipt_timestamp=n))
            msg = hb.recv(0.01)
            if msg is not None:
                counters = msg.event.counters
        assert t.is_alive(), "an exception in handle must not end the consumer"
    finally:
        c.stop()
        t.join(10)
        hb.close()
    assert not t.is_alive() and c.finished
    assert c.counters["errors"] >= 1 and "13" not in c.seen and len(c.seen) >= 10
