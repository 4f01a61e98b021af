"""Pytest support: a ready ``sandbox`` fixture.

In a ``conftest.py``::

    from airflow_provider_itnio.sandbox.testing import sandbox  # noqa: F401

(A test module can import ``sandbox_fixture`` instead: it registers under the name ``sandbox`` too, without
shadowing the test functions' ``sandbox`` parameter.)

Each test gets the same started :class:`~airflow_provider_itnio.sandbox.server.Sandbox` (one per process, default
credentials, started on first use), reset to its start settings before and after the test: nothing recorded,
no pending fault, unlimited balance, no latency, every phone CONNECTED.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

import pytest

from airflow_provider_itnio.sandbox.server import Sandbox

if TYPE_CHECKING:
    from collections.abc import Iterator

_shared: Sandbox | None = None
_shared_lock = threading.Lock()


def shared_sandbox() -> Sandbox:
    """Return the process-wide sandbox used by the fixture (started on first call, stopped at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = Sandbox().start()
            atexit.register(_shared.stop)
        return _shared


@pytest.fixture(name="sandbox")
def sandbox_fixture() -> Iterator[Sandbox]:
    """Yield a started sandbox with default credentials, reset before and after the test."""
    sb = shared_sandbox()
    sb.reset()
    yield sb
    sb.reset()


#: The same fixture under its own name, so that ``from ...testing import sandbox`` works in a conftest.
sandbox = sandbox_fixture
