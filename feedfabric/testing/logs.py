"""Capturing feedfabric's loguru output in tests: the lines, or the records with their bound context.

    with captured_logs("ERROR") as lines:         # formatted messages
        adapter.connections()
    assert any("candle_interval" in ln for ln in lines)

    def test_gap_is_logged(log_records):          # the pytest fixture: loguru record dicts
        ...
        assert log_records[-1]["extra"]["symbol"] == "BTC-USDT"
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from loguru import logger


@contextmanager
def captured_logs(level: str = "DEBUG", *, records: bool = False) -> Iterator[list[Any]]:
    """Everything logged at ``level`` and above inside the block: the messages (``records=True``:
    loguru's record dicts, whose ``extra`` holds the bound ``exchange``/``symbol``)."""
    got: list[Any] = []
    sink = logger.add((lambda m: got.append(m.record)) if records else got.append, level=level, format="{message}")
    try:
        yield got
    finally:
        logger.remove(sink)


@pytest.fixture
def log_records() -> Iterator[list[Any]]:
    """Every loguru record logged during the test (DEBUG and up), as record dicts."""
    with captured_logs(records=True) as got:
        yield got
