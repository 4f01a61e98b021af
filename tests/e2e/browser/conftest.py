"""
The browser suite's fixtures: a real Airflow 3.3 (``airflow standalone``, as ``make airflow`` starts it) with the
sandbox and ``dags_examples/``, and a headless Chromium (the system's, through Playwright) logged in to its UI.

The suite runs only when ``ITNIO_BROWSER_TESTS=1`` (``make test-browser`` sets it); ``make test`` and
``make test-compat`` skip it. Screenshots are written to ``$ITNIO_BROWSER_ARTIFACTS`` (``artifacts/browser``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.browser import browser, local_airflow, page

__all__ = ["browser", "local_airflow", "page"]  # the suite's fixtures

ENABLED = os.environ.get("ITNIO_BROWSER_TESTS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the browser tests unless ``ITNIO_BROWSER_TESTS=1`` (``make test-browser``)."""
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="browser suite: run it with `make test-browser` (ITNIO_BROWSER_TESTS=1)")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)
