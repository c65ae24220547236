"""Demo source for the examples: an in-process publisher of a synthetic book walk (no gateway needed)."""

from __future__ import annotations

import tempfile
import threading
import time

from bus.endpoints import GatewayEndpoint
from bus.publisher import Publisher
from feedfabric.testing.bus import BookEventGenerator


def start_demo(rate: float = 2000.0) -> tuple[str, threading.Event]:
    """Start a publisher 'demo' (exchange TESTEX) in a thread; returns ("pub,snap", stop event)."""
    ep = GatewayEndpoint.ipc(tempfile.mkdtemp(prefix="ffdemo-"), "demo")
    pub = Publisher("demo", ep.pub, ep.snapshot, heartbeat_interval=0.2)
    pub.start()
    gen = BookEventGenerator(seed=1)
    for ev in gen.initial():
        pub.publish(ev)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            for ev in gen.events(int(rate / 100)):
                pub.publish(ev)
            time.sleep(0.01)  # pacing a demo feed, not synchronisation
        pub.close()

    threading.Thread(target=loop, daemon=True).start()
    return f"{ep.pub},{ep.snapshot}", stop
