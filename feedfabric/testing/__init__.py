"""Test helpers that ship with feedfabric (like ``trio.testing``): use them in your own tests.

- ``feedfabric.testing.plugin``: pytest fixtures, registered automatically when
  feedfabric is installed (entry point ``pytest11``).
- Shared data: :func:`shared_sample_data` finds the recorded exchange traffic.
"""

from __future__ import annotations

import os
from pathlib import Path

_DEFAULT = Path(__file__).resolve().parents[2] / ".." / "shared" / "sample_data"


def shared_sample_data() -> Path | None:
    """The folder of recorded exchange traffic (``../shared/sample_data`` beside the
    project, or ``$FEEDFABRIC_SHARED_DATA``), or None when it is absent."""
    env = os.environ.get("FEEDFABRIC_SHARED_DATA")
    path = Path(env) if env else _DEFAULT.resolve()
    return path if path.is_dir() else None
