"""Binance replays vs cryptofeed 2.5.0's reference digests (trades, tickers, candles, final books)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateways.replay import replay_capture

cf_digest = pytest.importorskip("tools.cf_digest")


@pytest.mark.parametrize("exchange", ["BINANCE", "BINANCE_FUTURES", "BINANCE_DELIVERY"])
def test_matches_cryptofeed(shared_data: Path, exchange: str) -> None:
    reference = cf_digest.load_reference(exchange)
    result = replay_capture(shared_data / "cryptofeed" / exchange, collect=True)
    ours = cf_digest.digest_events(result.events, exchange=exchange)
    assert cf_digest.compare(reference, ours) == []
    # The comparison is not vacuous: every channel cryptofeed saw has events on both sides.
    for channel, entry in reference["channels"].items():
        assert entry["symbols"], channel
        assert ours["channels"][channel]["symbols"].keys() == entry["symbols"].keys(), channel
