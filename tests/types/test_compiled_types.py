"""The types are compiled extension modules, and events.pyx is what _codegen.py renders from schema.py."""

from __future__ import annotations

import importlib.machinery
import subprocess
import sys
from pathlib import Path

import pytest

import cryptofeed_types
from cryptofeed_types import book, events, symbols

PKG = Path(cryptofeed_types.__file__).parent


@pytest.mark.parametrize("module", [book, events, symbols], ids=lambda m: m.__name__)
def test_modules_are_compiled_extensions(module: object) -> None:
    path = Path(module.__file__)
    assert path.suffix in (".so", ".pyd"), f"{module.__name__} was imported from {path}, not an extension"
    assert any(str(path).endswith(sfx) for sfx in importlib.machinery.EXTENSION_SUFFIXES)
    assert isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader)


def test_event_classes_are_cdef_types() -> None:
    # A cdef class has no instance __dict__; a pure-Python fallback would.
    assert not hasattr(events.Trade("X", "Y", "buy", "1", "1", receipt_timestamp=0), "__dict__")
    assert not hasattr(book.OrderBook(), "__dict__")
    assert not hasattr(symbols.Symbol("BTC", "USD"), "__dict__")


def test_events_pyx_is_up_to_date_with_schema() -> None:
    proc = subprocess.run([sys.executable, str(PKG / "_codegen.py"), "--check"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, "events.pyx differs from schema.py: run python cryptofeed_types/_codegen.py"
