"""tools.cf_digest: canonical values, symbol keys, reference vs feedfabric digests and compare()'s reports."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from cryptofeed_types import (
    BBO,
    Candle,
    Funding,
    Gap,
    IndexPrice,
    L2Delta,
    L2Snapshot,
    Liquidation,
    Ticker,
    Trade,
)
from tools.cf_digest import (
    BOOK,
    FORMAT,
    REFERENCE_DIR,
    canon_millis,
    canon_ns,
    canon_number,
    canon_seconds,
    cf_symbol_key,
    compare,
    digest_events,
    digest_reference,
    load_reference,
    main,
    our_symbol_key,
)

EX = "BINANCE"
S = "BTC-USDT"


def _book_sha(bids: list[list[str]], asks: list[list[str]]) -> str:
    text = ",".join(f"{p}:{s}" for p, s in bids) + "|" + ",".join(f"{p}:{s}" for p, s in asks)
    return hashlib.sha256(text.encode()).hexdigest()


def ref_trade(price: str, amount: str, tid: str | None, side: str = "buy", ts: float = 1633998523.963,
              symbol: str = S) -> dict:
    return {"type": "trades", "exchange": EX, "symbol": symbol, "side": side, "amount": amount, "price": price,
            "id": tid, "trade_type": None, "timestamp": ts, "receipt_timestamp": "1633998523.957215"}


def ref_book(bids: list[list[str]], asks: list[list[str]], *, delta: bool, seq: int, top: int | None = None,
             symbol: str = S) -> dict:
    listed_b, listed_a = (bids, asks) if top is None else (bids[:top], asks[:top])
    return {"type": BOOK, "exchange": EX, "symbol": symbol, "is_delta": delta, "seq": seq,
            "bid_levels": len(bids), "ask_levels": len(asks), "bids_top": listed_b, "asks_top": listed_a,
            "book_sha256": _book_sha(bids, asks), "timestamp": None, "receipt_timestamp": "1.0"}


BIDS = [["100.10", "1.50"], ["100.00", "2"], ["99.5", "0.25"]]
ASKS = [["100.20", "3.0"], ["100.30", "1"]]
FINAL_BIDS = [["100.10", "1.50"], ["99.5", "0.25"]]          # 100.00 deleted by the delta
FINAL_ASKS = [["100.15", "0.7"], ["100.20", "3.0"], ["100.30", "1"]]


def reference_records() -> list[dict]:
    return [
        ref_book(BIDS, ASKS, delta=False, seq=0),
        ref_trade("100.10000000", "0.50000000", "7", ts=1633998523.963),
        {"type": "ticker", "exchange": EX, "symbol": S, "bid": "100.10", "ask": "100.20",
         "timestamp": "1633998524.1", "receipt_timestamp": "1633998524.1"},   # receipt time, Binance bookTicker
        ref_book(FINAL_BIDS, FINAL_ASKS, delta=True, seq=3),
        ref_trade("100.2", "1", "8", side="sell", ts=1633998524.5),
        {"type": "candles", "exchange": EX, "symbol": S, "start": 1633998480.0, "stop": 1633998539.999,
         "interval": "1m", "trades": 2, "open": "100.10", "close": "100.20", "high": "100.2", "low": "100.1",
         "volume": "1.5", "closed": False, "timestamp": 1633998524.5, "receipt_timestamp": "1633998524.6"},
    ]


def our_events(*, price2: str = "100.20", drop_trade: bool = False, final_bid: str = "0.25") -> list:
    evs = [
        L2Snapshot(EX, S, bids=BIDS, asks=ASKS, receipt_timestamp=1),
        Trade(EX, S, "buy", "0.5", "100.1", id="7", timestamp=1633998523963000000, receipt_timestamp=2),
        Ticker(EX, S, bid="100.1", ask="100.2", timestamp=1633998524100000000, receipt_timestamp=3),
        L2Delta(EX, S, bids=[("100.00", "0"), ("99.5", final_bid)], asks=[("100.15", "0.70")], receipt_timestamp=4),
        Gap(EX, "book", "test", symbol=S, expected=1, received=3),   # not a compared kind
    ]
    if not drop_trade:
        evs.append(Trade(EX, S, "sell", "1.0", price2, id="8", timestamp=1633998524500000000, receipt_timestamp=5))
    evs.append(Candle(EX, S, start=1633998480_000000000, stop=1633998539_999000000, interval="1m", trades=2,
                      open="100.1", close="100.2", high="100.20", low="100.10", volume="1.50", closed=False,
                      timestamp=1633998524500000000, receipt_timestamp=6))
    return evs


def ref_digest(records: list[dict] | None = None) -> dict:
    summary = {"exchange": EX, "subscription_channels": ["trades", "ticker", "candles", BOOK]}
    return digest_reference(records or reference_records(), summary=summary)


# ---------------------------------------------------------------------------- canonical values
def test_canon_number() -> None:
    assert canon_number("0.35210000") == canon_number("0.3521") == "0.3521"
    assert canon_number("4714.0") == canon_number(4714) == "4714"
    assert canon_number("1E+2") == "100"
    assert canon_number("1e-05") == "0.00001"
    assert canon_number("0E-8") == canon_number("-0") == "0"
    assert canon_number(None) is None
    assert canon_number("abc") == "!abc"
    assert canon_number("NaN") == "!NaN"


def test_times_meet_in_microseconds() -> None:
    assert canon_seconds(1633998523.963) == canon_ns(1633998523963000000) == "1633998523963000"
    assert canon_seconds(1618678142.557535) == canon_ns(1618678142557535000)
    assert canon_seconds("1633998480") == canon_ns(1633998480 * 10**9)
    assert canon_ns(1618678142557535499) == "1618678142557535"
    assert canon_seconds(None) is None and canon_ns(None) is None
    assert canon_ns(1.5) == "!1.5"


def test_symbol_keys() -> None:
    assert cf_symbol_key("BTC-USDT") == "BTC-USDT"
    assert cf_symbol_key("BTC-USDT-PERP") == "BTC-USDT-PERP"
    assert cf_symbol_key("BTC-USD-21Z31") == "BTC-USD-20211231"
    assert cf_symbol_key("XRP-BTC-21U24") == "XRP-BTC-20210924"
    assert cf_symbol_key("BTC-USD-22K5") == "BTC-USD-20220505"
    assert cf_symbol_key("BTC-21Z31") == "BTC-BTC-20211231"
    assert cf_symbol_key("BTC-8000-21U24-put") == "BTC-20210924-8000-P"
    assert cf_symbol_key("ETH-USD-2800-21N30-call") == "ETH-20210730-2800-C"
    assert our_symbol_key("BTC-USD-20210924-8000-P") == our_symbol_key("BTC-BTC-20210924-8000-P") \
        == "BTC-20210924-8000-P"
    assert our_symbol_key("BTC-USD-20211231") == "BTC-USD-20211231"


# ---------------------------------------------------------------------------- digests and compare
def test_equal_streams_compare_clean() -> None:
    ref = ref_digest()
    ours = digest_events(our_events())
    assert ref["format"] == ours["format"] == FORMAT
    assert compare(ref, ours, book_events=True) == []
    book = ref["channels"][BOOK]["symbols"][S]["book"]
    assert book["best_bid"] == ["100.1", "1.5"] and book["best_ask"] == ["100.15", "0.7"]
    assert (book["bid_levels"], book["ask_levels"], book["events"], book["snapshots"]) == (2, 3, 2, 1)
    assert ours["other"] == {"gap": 1}
    # The receipt-time ticker timestamp is not an exchange time: recorded as such, never compared.
    assert ref["channels"]["ticker"]["timestamp_sources"] == {"receipt": 1}
    assert ref["channels"]["ticker"]["symbols"][S]["fields"]["timestamp"]["nonnull"] == 0


def test_dicts_digest_like_objects() -> None:
    assert digest_events([e.to_dict(numeric_type=str) for e in our_events()]) == digest_events(our_events())


def test_changed_price_reported() -> None:
    diffs = compare(ref_digest(), digest_events(our_events(price2="100.21")))
    assert diffs == ["trades BTC-USDT: price differs, first within rows 0-1 (ours 2 events, reference 2)"]


def test_missing_trade_reported() -> None:
    diffs = compare(ref_digest(), digest_events(our_events(drop_trade=True)))
    assert "trades BTC-USDT: 1 events in ours, 2 in the reference" in diffs
    assert any("price differs" in d for d in diffs)


def test_different_final_book_reported() -> None:
    diffs = compare(ref_digest(), digest_events(our_events(final_bid="0.26")))
    assert diffs == [f"{BOOK} BTC-USDT: final book levels differ, first within the top 10 levels"]
    # A changed top level also names the best price.
    evs = our_events() + [L2Delta(EX, S, bids=[("100.10", "9")], asks=[], receipt_timestamp=9)]
    diffs = compare(ref_digest(), digest_events(evs))
    assert f"{BOOK} BTC-USDT: final best_bid ['100.1', '9'] in ours, ['100.1', '1.5'] in the reference" in diffs
    assert compare(ref_digest(), digest_events(evs), book_events=True)[0].startswith(f"{BOOK} BTC-USDT: 3 book events")


def test_deep_book_difference_located_and_depth_option() -> None:
    bids = [[str(1000 - i), "1"] for i in range(30)]
    asks = [[str(2000 + i), "1"] for i in range(30)]
    ref = digest_reference([ref_book(bids, asks, delta=False, seq=0)])
    ours_bids = [b[:] for b in bids]
    ours_bids[20][1] = "2"
    ours = digest_events([L2Snapshot(EX, S, bids=ours_bids, asks=asks, receipt_timestamp=1)])
    assert compare(ref, ours) == [f"{BOOK} BTC-USDT: final book levels differ, first within the top 25 levels"]
    assert compare(ref, ours, book_depth=10) == []
    assert compare(ref, ours, book_depth=25) == [f"{BOOK} BTC-USDT: the top 25 levels of the final book differ"]
    with pytest.raises(ValueError):
        compare(ref, ours, book_depth=7)


def test_reference_with_top_only_book() -> None:
    bids = [[str(1000 - i), "1"] for i in range(30)]
    asks = [[str(2000 + i), "1"] for i in range(30)]
    ref = digest_reference([ref_book(bids, asks, delta=False, seq=0, top=10)])
    book = ref["channels"][BOOK]["symbols"][S]["book"]
    assert book["sha256"] is None and sorted(book["depth_sha256"]) == ["10"]
    ours = digest_events([L2Snapshot(EX, S, bids=bids, asks=asks, receipt_timestamp=1)])
    assert compare(ref, ours, book_depth=10) == []
    assert compare(ref, ours) == [f"{BOOK} BTC-USDT: the reference holds only the top of this book; "
                                  "compare with book_depth="]


def test_inconsistent_reference_book_rejected() -> None:
    rec = ref_book(BIDS, ASKS, delta=False, seq=0)
    rec["bids_top"] = [["100.10", "1.50"], ["100.00", "2"], ["99.5", "0.3"]]
    with pytest.raises(ValueError, match="book_sha256"):
        digest_reference([rec])


def test_unfilled_fields_skipped_filled_fields_required() -> None:
    recs = [ref_trade("1", "1", None), ref_trade("2", "1", None, ts=1633998524.0)]
    ref = digest_reference(recs)
    ours = [Trade(EX, S, "buy", "1", "1", id="x1", timestamp=1633998523963000000),
            Trade(EX, S, "buy", "1", "2", id="x2", timestamp=1633998524000000000)]
    assert compare(ref, digest_events(ours)) == []   # cryptofeed has no trade ids here (as on Kraken)
    no_ts = [Trade(EX, S, "buy", "1", "1"), Trade(EX, S, "buy", "1", "2")]
    assert compare(ref, digest_events(no_ts)) == [
        "trades BTC-USDT: timestamp is empty in ours, filled in 2 of 2 reference events"]
    assert compare(ref, digest_events(no_ts), fields={"trades": ("price", "amount", "side")}) == []


def test_missing_and_extra_symbols_and_aliases() -> None:
    ref = ref_digest()
    ours = our_events() + [Trade(EX, "ETH-USDT", "buy", "1", "2", id="1", timestamp=1)]
    diffs = compare(ref, digest_events([e for e in ours if not isinstance(e, Ticker)]))
    assert "ticker BTC-USDT: 1 events in the reference (BTC-USDT), none in ours" in diffs
    assert "trades ETH-USDT: 1 events in ours, none in the reference" in diffs
    as_bbo = [BBO(EX, S, bid="100.1", ask="100.2", timestamp=5) if isinstance(e, Ticker) else e
              for e in our_events()]
    assert compare(ref, digest_events(as_bbo, aliases={"bbo": "ticker"})) == []


def test_option_symbols_meet() -> None:
    rec = ref_trade("0.0005", "1", "t1", symbol="BTC-8000-21U24-put")
    ref = digest_reference([rec])
    ours = digest_events([Trade("DERIBIT", "BTC-USD-20210924-8000-P", "buy", "1", "0.0005", id="t1",
                                timestamp=1633998523963000000)])
    assert compare(ref, ours) == []


# ---------------------------------------------------------------------------- CLI and committed digests
def test_cli_build_and_compare(tmp_path: Path) -> None:
    jsonl = tmp_path / "X.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in reference_records()))
    out = tmp_path / "X.json"
    assert main(["build", str(jsonl), "-o", str(out)]) == 0
    assert orjson.loads(out.read_bytes()) == digest_reference(reference_records())
    ours = tmp_path / "ours.json"
    ours.write_bytes(orjson.dumps(digest_events(our_events(price2="1"))))
    assert main(["compare", str(out), str(out)]) == 0
    assert main(["compare", str(out), str(ours)]) == 1


COMMITTED = sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))


@pytest.mark.parametrize("exchange", COMMITTED)
def test_committed_reference_digests_are_whole(exchange: str) -> None:
    d = load_reference(exchange)
    # <EXCHANGE>_V3.json: the same exchange's cryptofeed_v3/ capture (tools/cf_reference_v3.py).
    assert d["format"] == FORMAT and d["producer"] == "cryptofeed" and d["exchange"] == exchange.removesuffix("_V3")
    # Every callback cryptofeed made is accounted for, per channel.
    by_type = {ch: ent["events"] for ch, ent in d["channels"].items() if ent["events"]}
    assert by_type == d["source"]["events_by_type"]
    for ch, ent in d["channels"].items():
        for key, sym in ent["symbols"].items():
            assert key == cf_symbol_key(sym["symbol"])
            if ch == BOOK:
                assert sym["book"]["sha256"] is not None, f"{exchange} {key}: digest built from a top-only book"


def test_load_reference_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="NOPE"):
        load_reference("NOPE", tmp_path)


# ---------------------------------------------------------------------------- v3 additions
def test_millisecond_reference_fields() -> None:
    assert canon_millis(1786310817583) == canon_ns(1786310817583000000) == "1786310817583000"
    assert canon_millis(1786310760000.0) == canon_seconds(1786310760)
    rec = {"type": "ticker", "exchange": EX, "symbol": S, "bid": "1", "ask": "2", "timestamp": 1786310817583,
           "receipt_timestamp": "1786310819.5"}
    ref = digest_reference([rec], ms_fields={"ticker": ["timestamp"]})
    assert ref["reference_units"] == {"ticker": {"timestamp": "ms"}}
    ours = digest_events([Ticker(EX, S, bid="1", ask="2", timestamp=1786310817583000000)])
    assert compare(ref, ours) == []
    assert compare(digest_reference([rec]), ours) == [
        "ticker BTC-USDT: timestamp differs, first within rows 0-0 (ours 1 events, reference 1)"]
    with pytest.raises(ValueError):
        digest_reference([rec], ms_fields={"ticker": ["bid"]})


def test_changes_compare_repeats_away() -> None:
    def ref_fund(rate: str, mark: str, ts: float) -> dict:
        return {"type": "funding", "exchange": EX, "symbol": "BTC-USDT-PERP", "mark_price": mark, "rate": rate,
                "next_funding_time": 1786320000.0, "predicted_rate": None, "timestamp": ts,
                "receipt_timestamp": "1.0"}
    # cryptofeed: one event per message; ours: only when the rate changes (mark price of that message).
    ref = digest_reference([ref_fund("0.0001", "10", 1.0), ref_fund("0.0001", "11", 2.0),
                            ref_fund("0.0002", "12", 3.0), ref_fund("0.0002", "13", 4.0)])
    assert ref["changes"]["funding"]["symbols"]["BTC-USDT-PERP"]["count"] == 2

    def fund(rate: str, mark: str, ts: int) -> Funding:
        return Funding(EX, "BTC-USDT-PERP", rate=rate, mark_price=mark, next_funding_time=1786320000 * 10**9,
                       timestamp=ts * 10**9)
    ours = digest_events([fund("0.0001", "10", 1), fund("0.0002", "12", 3)])
    assert compare(ref, ours) != []
    assert compare(ref, ours, changes=["funding"]) == []
    late = digest_events([fund("0.0001", "10", 1), fund("0.0002", "13", 4)])
    assert compare(ref, late, changes=["funding"]) == [
        "funding (changes) BTC-USDT-PERP: mark_price differs, first within rows 0-1 (ours 2 events, reference 2)",
        "funding (changes) BTC-USDT-PERP: timestamp differs, first within rows 0-1 (ours 2 events, reference 2)"]
    assert compare(load_reference("BINANCE"), digest_events([]), channels=["ticker"], changes=["ticker"]) == [
        "ticker (changes): the reference has no changes digest for this channel"]
    with pytest.raises(ValueError):
        compare(ref, ours, changes=["trades"])


def test_liquidation_and_index_channels() -> None:
    recs = [{"type": "liquidations", "exchange": EX, "symbol": S, "side": "sell", "quantity": "0.003",
             "price": "43511.70", "id": None, "status": None, "timestamp": 1703485237.953, "receipt_timestamp": "1"},
            {"type": "index", "exchange": EX, "symbol": S, "price": "65137.760", "timestamp": 1786310817.583,
             "receipt_timestamp": "1"}]
    ref = digest_reference(recs)
    ours = digest_events([Liquidation(EX, S, "sell", "0.0030", "43511.7", status="filled",
                                      timestamp=1703485237953000000),
                          IndexPrice(EX, S, price="65137.76", timestamp=1786310817583000000)])
    assert compare(ref, ours) == []   # cryptofeed gives no status here: not compared


def test_cli_build_v3_capture_info(tmp_path: Path) -> None:
    sample = tmp_path / "cryptofeed_v3"
    sample.mkdir()
    header = {"t": "header", "exchange": EX, "config": {"trades": [S]}}
    (sample / "X.jsonl").write_bytes(orjson.dumps(header) + b"\n" + b'{"t":"recv"}\n')
    jsonl = tmp_path / "X.out.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in reference_records()))
    summary = tmp_path / "X.summary.json"
    summary.write_bytes(orjson.dumps({"exchange": EX, "files": ["X.jsonl"], "subscription_channels": ["trades"],
                                      "replayer": "tools/cf_reference_v3.py", "handler_errors": {},
                                      "events_by_type": {}}))
    out = tmp_path / "X.json"
    assert main(["build", str(jsonl), "--summary", str(summary), "--sample-dir", str(sample),
                 "--ms-field", "candles.start", "-o", str(out)]) == 0
    d = orjson.loads(out.read_bytes())
    assert d["subscription"] == {"trades": [S]} and d["captures"]["X.jsonl"]["bytes"] > 0
    assert d["source"]["replayer"] == "tools/cf_reference_v3.py" and d["source"]["handler_errors"] == {}
    assert d["reference_units"] == {"candles": {"start": "ms"}}
