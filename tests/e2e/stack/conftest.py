"""
Fixtures of the production-like stack's scenarios (``make test-stack``): PostgreSQL, Redis, Airflow 3.3 with
CeleryExecutor and two workers, and the sandbox, all started by ``scripts/stack.py``.

The suite runs only when ``ITNIO_STACK_TESTS=1`` (``make test-stack`` sets it, in ``.venv-stack``, which has the
Celery provider and the PostgreSQL drivers); ``make test`` and ``make test-compat`` skip it. The ``stack`` fixture
runs ``stack.py up`` (nothing changes when the stack already runs) and leaves it running: ``make test-stack``
stops it afterwards when it started it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.stack import Stack, load_module

ENABLED = os.environ.get("ITNIO_STACK_TESTS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the stack scenarios unless ``ITNIO_STACK_TESTS=1`` (``make test-stack``)."""
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="stack scenarios: run them with `make test-stack` (ITNIO_STACK_TESTS=1)")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def stack() -> Stack:
    """Return the running stack (started by ``scripts/stack.py up`` when it is not running)."""
    module = load_module("itnio_stack", ROOT / "scripts" / "stack.py")
    state = module.up()
    return Stack(module, state)
