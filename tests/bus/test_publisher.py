"""Publisher and snapshot service over real sockets (in-process): sequencing, heartbeats, the frames
of docs/wire.md's snapshot protocol, bad requests."""

from __future__ import annotations

import os
import stat
import time

import msgpack
import pytest
import zmq

from bus import codec, snapshot
from bus.security import ensure_private_dir
from cryptofeed_types.events import BBO, Gap, L2Delta, L2Snapshot, L3Delta, L3Snapshot, Status, Ticker, Trade


def _recv(sock: zmq.Socket, timeout: float = 5.0) -> list[bytes]:
    assert sock.poll(int(timeout * 1000)), "nothing received"
    return sock.recv_multipart()


def _request(dealer: zmq.Socket, kind: bytes, prefix: str, rid: bytes) -> list[list[bytes]]:
    dealer.send_multipart(snapshot.encode_request(kind, prefix, rid))
    replies = []
    while True:
        frames = _recv(dealer)
        replies.append(frames)
        if frames[1] in (snapshot.END, snapshot.ERROR):
            return replies


@pytest.fixture
def dealer():
    socks = []

    def make(endpoint: str) -> zmq.Socket:
        d = zmq.Context.instance().socket(zmq.DEALER)
        d.linger = 0
        d.connect(endpoint)
        socks.append(d)
        return d

    yield make
    for s in socks:
        s.close()


def test_seq_per_topic_and_heartbeat_counters(bus_endpoint, publisher_factory):
    ep = bus_endpoint("p1")
    pub = publisher_factory("p1", ep, heartbeat_interval=0.05)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.linger = 0
    sub.subscribe(b"")
    sub.connect(ep.pub)
    try:
        # The first heartbeat we receive proves our subscription is active.
        while codec.decode(_recv(sub))[0] != "heartbeat.p1.":
            pass
        t1 = Trade("EX", "BTC-USDT", "buy", "1", "100", receipt_timestamp=1)
        t2 = Trade("EX", "ETH-USDT", "buy", "1", "100", receipt_timestamp=1)
        assert [pub.publish(t) for t in (t1, t1, t2, t1)] == [1, 2, 1, 3]
        pub.count("parse_errors", 2)
        seen = {}
        hb = None
        while hb is None or hb[2].counters.get("channel.trades") != 4:
            topic, header, ev = codec.decode(_recv(sub))
            assert header.gateway == "p1" and header.epoch == pub.epoch
            if topic == "heartbeat.p1.":
                hb = (topic, header, ev)
            else:
                seen.setdefault(topic, []).append(header.seq)
        assert seen == {"trades.EX.BTC-USDT.": [1, 2, 3], "trades.EX.ETH-USDT.": [1]}
        counters = hb[2].counters
        assert counters["parse_errors"] == 2 and counters["dropped"] == 0 and counters["messages"] >= 4
        # Feed states: the driver's (set_feed_state) and any Status published (an exchange's system status).
        pub.set_feed_state("EX.0", "connected")
        pub.publish(Status("EX", "system", "maintenance", receipt_timestamp=2))
        assert pub.feed_states() == {"EX.0": "connected", "system": "maintenance"}   # for a metrics endpoint
        while hb[0] != "heartbeat.p1." or dict(hb[2].feeds) != {"EX.0": "connected", "system": "maintenance"}:
            hb = codec.decode(_recv(sub))
        # What a gateway describes (Publisher.describe) rides along in every heartbeat from then on.
        pub.describe("feed_quotes", {"EX.0": ["BTC-USDT"], "EX.1": []})
        while hb[0] != "heartbeat.p1." or "feed_quotes" not in hb[2].counters:
            hb = codec.decode(_recv(sub))
        assert hb[2].counters["feed_quotes"] == {"EX.0": ["BTC-USDT"], "EX.1": []}
        assert hb[2].counters["book_invalid"] == {}
    finally:
        sub.close()


def test_snapshot_service_frames(bus_endpoint, publisher_factory, dealer):
    ep = bus_endpoint("p2")
    pub = publisher_factory("p2", ep)
    pub.publish(L2Snapshot("EX", "BTC-USDT", [("100.10", "1.50"), ("99", "2")], [("101", "3")], sequence=7,
                           receipt_timestamp=5))
    pub.publish(L2Delta("EX", "BTC-USDT", [("99", "0"), ("98.5", "4")], [], sequence=8, receipt_timestamp=6))
    pub.publish(Ticker("EX", "BTC-USDT", bid="1", ask="2", receipt_timestamp=7))
    pub.publish(Ticker("EX", "BTC-USDT", bid="3", ask="4", receipt_timestamp=8))
    pub.publish(Trade("EX", "BTC-USDT", "buy", "1", "100", receipt_timestamp=1))  # not served: no state
    pub.publish(L3Snapshot("EX", "BTC-USDT", [("a", "bid", "1", "2"), ("b", "ask", "3", "4")], receipt_timestamp=1))
    pub.publish(L3Delta("EX", "BTC-USDT", [("a", "bid", "1", "0"), ("c", "bid", "1", "9")], receipt_timestamp=1))
    d = dealer(ep.snapshot)

    replies = _request(d, snapshot.SNAPSHOT, "book.EX.", b"r1")
    assert len(replies) == 2
    rid, topic, header, body = replies[0]
    assert rid == b"r1" and topic == b"book.EX.BTC-USDT."
    t, h, ev = codec.decode([topic, header, body])
    assert (h.gateway, h.epoch, h.seq, h.receipt_timestamp) == ("p2", pub.epoch, 2, 6)
    assert isinstance(ev, L2Snapshot) and ev.sequence == 8
    assert ev.bids_str == (("100.10", "1.50"), ("98.5", "4")) and ev.asks_str == (("101", "3"),)
    assert replies[1] == [b"r1", snapshot.END, msgpack.packb([1, "p2", pub.epoch, 1])]

    replies = _request(d, snapshot.SNAPSHOT, "", b"r2")
    items = {snapshot.decode_reply(r).topic: snapshot.decode_reply(r) for r in replies[:-1]}
    assert set(items) == {"book.EX.BTC-USDT.", "l3.EX.BTC-USDT.", "ticker.EX.BTC-USDT."}
    assert items["ticker.EX.BTC-USDT."].header.seq == 2 and items["ticker.EX.BTC-USDT."].event.bid_str == "3"
    assert items["l3.EX.BTC-USDT."].event.orders_str == (("b", "ask", "3", "4"), ("c", "bid", "1", "9"))
    assert snapshot.decode_reply(replies[-1]) == snapshot.End(b"r2", "p2", pub.epoch, 3)

    assert _request(d, snapshot.HELLO, "", b"h") == [[b"h", snapshot.END, msgpack.packb([1, "p2", pub.epoch, 0])]]


def test_a_book_declared_invalid_is_not_served_until_rebuilt(bus_endpoint, publisher_factory, dealer):
    # A late joiner never saw the Gap: served the old book (or its bbo) it would hold them as valid
    # until the Reset. Nothing is served for them from the Gap to the rebuild; other books are.
    ep = bus_endpoint("pg")
    pub = publisher_factory("pg", ep)
    for sym in ("A-B", "C-D"):
        pub.publish(L2Snapshot("EX", sym, [("10", "1")], [("11", "1")], sequence=1, receipt_timestamp=1))
        pub.publish(BBO("EX", sym, bid="10", bid_size="1", ask="11", ask_size="1", receipt_timestamp=1))
    pub.publish(L3Snapshot("EX", "A-B", [("a", "bid", "1", "2")], receipt_timestamp=1))
    d = dealer(ep.snapshot)

    def served(rid: bytes) -> set[str]:
        return {snapshot.decode_reply(r).topic for r in _request(d, snapshot.SNAPSHOT, "", rid)[:-1]}

    everything = {"book.EX.A-B.", "book.EX.C-D.", "bbo.EX.A-B.", "bbo.EX.C-D.", "l3.EX.A-B."}
    assert served(b"r1") == everything
    pub.publish(Gap("EX", "book", "sequence", symbol="A-B", receipt_timestamp=2))
    assert served(b"r2") == everything - {"book.EX.A-B.", "bbo.EX.A-B."}
    pub.publish(L2Snapshot("EX", "A-B", [("10", "2")], [("12", "1")], sequence=9, receipt_timestamp=3))
    assert served(b"r3") == everything - {"bbo.EX.A-B."}            # the bbo comes back with the next one
    pub.publish(BBO("EX", "A-B", bid="10", bid_size="2", ask="12", ask_size="1", receipt_timestamp=3))
    assert served(b"r4") == everything
    pub.publish(Gap("EX", "book", "disconnected", receipt_timestamp=4))   # feed-wide: every book of EX
    pub.publish(Gap("EX", "l3", "sequence", symbol="A-B", receipt_timestamp=4))
    assert served(b"r5") == set()
    # Heartbeats list the invalid books with their seq (for operators: feedfabric status, metrics).
    assert pub.books_invalid() == 3
    pub.heartbeat()
    assert pub.store.invalid() == {"book.EX.A-B.": 2, "book.EX.C-D.": 1, "l3.EX.A-B.": 1}
    pub.publish(Gap("OTHER", "book", "sequence", receipt_timestamp=4))    # another exchange's: nothing here
    pub.publish(L3Snapshot("EX", "A-B", [("b", "ask", "3", "4")], receipt_timestamp=5))
    assert served(b"r6") == {"l3.EX.A-B."} and pub.books_invalid() == 2


def test_bad_snapshot_requests_get_error_and_service_continues(bus_endpoint, publisher_factory, dealer):
    ep = bus_endpoint("p3")
    pub = publisher_factory("p3", ep)
    d = dealer(ep.snapshot)
    d.send_multipart([b"GIMME", b"", b"x1"])
    frames = _recv(d)
    assert frames[:2] == [b"x1", snapshot.ERROR]
    d.send_multipart([b"only one frame"])  # no request id to answer to: ignored
    assert _request(d, snapshot.HELLO, "", b"ok")[-1][1] == snapshot.END
    assert pub.counters["snapshot_errors"] == 2


def test_ipc_run_dir_is_private(tmp_path):
    d = tmp_path / "a" / "run"
    ensure_private_dir(d)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    os.chmod(d, 0o755)
    ensure_private_dir(d)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


def test_publisher_binds_ipc_in_private_dir(tmp_path, publisher_factory):
    from bus.endpoints import GatewayEndpoint

    ep = GatewayEndpoint.ipc(tmp_path / "fresh", "gw")
    publisher_factory("gw", ep)
    assert stat.S_IMODE(os.stat(tmp_path / "fresh").st_mode) == 0o700
    assert (tmp_path / "fresh" / "gw.pub").exists()


def test_publish_never_blocks_without_subscribers(bus_endpoint, publisher_factory):
    pub = publisher_factory("p4", bus_endpoint("p4"), sndhwm=10)
    t0 = time.monotonic()
    for _ in range(5000):
        pub.publish(Trade("EX", "BTC-USDT", "buy", "1", "100", receipt_timestamp=1))
    assert pub.seq("trades.EX.BTC-USDT.") == 5000
    assert time.monotonic() - t0 < 10  # generous: only guards against blocking, not speed


def test_bind_failure_is_a_clear_error(bus_endpoint, publisher_factory):
    from bus.publisher import Publisher

    first = publisher_factory("p5", "tcp://127.0.0.1:*")
    second = Publisher("p5b", first.bound_endpoint)
    with pytest.raises(zmq.ZMQError, match="in use"):
        second.start()
    second.close()


def test_publish_from_several_threads_keeps_per_topic_seq_exact(bus_endpoint, publisher_factory, dealer):
    import threading

    ep = bus_endpoint("p6")
    pub = publisher_factory("p6", ep, heartbeat_interval=0.01)  # the service thread is busy too
    d = dealer(ep.snapshot)
    got: list[list[int]] = [[], []]

    def run(i: int) -> None:
        for k in range(2000):
            got[i].append(pub.publish(L2Delta("EX", "BTC-USDT", [(str(100 + k % 7), str(i + 1))], [],
                                              receipt_timestamp=1)))

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    replies = [_request(d, snapshot.SNAPSHOT, "book.", b"%d" % n) for n in range(5)]  # served meanwhile
    for t in threads:
        t.join()
    assert sorted(got[0] + got[1]) == list(range(1, 4001))
    for r in replies:
        assert snapshot.decode_reply(r[-1]).item_count in (0, 1)
    assert pub.seq("book.EX.BTC-USDT.") == 4000 and pub.state("book.")[0][1] == 4000
