"""Test configuration: the fixtures themselves ship in feedfabric.testing.plugin.

On CI (``CI=true``) every server, toolchain and data set a test needs is installed by
``.ci/run``, so a skipped test there means a missing install step: it is turned into a
failure instead of silently not running.
"""

from __future__ import annotations

import os

import pytest

_STRICT = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _STRICT and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped on CI, where everything must be installed: {reason}"
