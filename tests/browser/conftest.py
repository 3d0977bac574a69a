"""Browser tests run in the SQLite pass only.

What they add to the HTTP tests is the browser's side — scripts under the CSP, layout at a
phone's width, the accessibility check, screenshots — none of which depends on the
database. The PostgreSQL pass runs the same pages over HTTP (tests/test_pages*.py,
tests/test_console*.py), which is where the two databases differ; running Chromium twice
would only double the slowest part of CI.
"""

from __future__ import annotations

import os

import pytest

ON_POSTGRES = (os.environ.get("TEST_DATABASE_URL") or "").startswith("postgresql")
HERE = os.path.dirname(__file__)


def pytest_collection_modifyitems(config, items):
    if not ON_POSTGRES:
        return
    skip = pytest.mark.skip(reason="browser tests: SQLite pass only (the PostgreSQL pass runs the pages over HTTP)")
    for item in items:
        if str(item.fspath).startswith(HERE):
            item.add_marker(skip)
