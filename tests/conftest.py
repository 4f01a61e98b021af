"""
Fixtures of every suite: a throw-away Airflow home (SQLite), a DAGs folder holding the example DAGs and the test
DAGs, and a running sandbox that the ``itnio_default`` connection points at.

Airflow reads its configuration when it is first imported, so the environment is set at import time, by
:mod:`tests.support.airflow_home` (imported first here), before any test module imports Airflow. Fixtures that
several modules of one folder share are in that folder's ``conftest.py``; see ``tests/README.md``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_home import AIRFLOW_HOME, SANDBOX_PHONES


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate a SQLite metadata database in the session's Airflow home and return that home."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def session_sandbox() -> Iterator[Any]:
    """Yield a sandbox for the whole session; ``itnio_default`` points at it."""
    from airflow_provider_itnio.sandbox import Sandbox

    with Sandbox(business_phones=SANDBOX_PHONES) as sandbox:
        os.environ["AIRFLOW_CONN_ITNIO_DEFAULT"] = sandbox.conn_json()
        yield sandbox
    os.environ.pop("AIRFLOW_CONN_ITNIO_DEFAULT", None)


@pytest.fixture
def sandbox(session_sandbox: Any) -> Iterator[Any]:
    """Yield the session's sandbox, emptied and reset (no faults, no latency, unlimited balance) for one test."""
    session_sandbox.reset()
    session_sandbox.clear()
    yield session_sandbox
    session_sandbox.reset()
    session_sandbox.clear()


@pytest.fixture
def airflow_sandbox(airflow_db: Path, sandbox: Any) -> Any:
    """Return a reset sandbox that ``itnio_default`` points at, with a migrated Airflow database (for DAG runs)."""
    return sandbox


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Any:
    """
    Return a function giving what was logged so far, per place it went (a list of texts).

    Airflow's loggers may or may not propagate to caplog, and may or may not also write to stderr (Airflow 2 does
    both): a line logged once shows at most once in each place.
    """
    caplog.set_level(logging.INFO)

    def texts() -> list[str]:
        captured = capfd.readouterr()
        return [caplog.text, captured.out, captured.err]

    return texts
