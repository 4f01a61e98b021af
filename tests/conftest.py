"""
Shared fixtures: a throw-away Airflow home (SQLite), a DAGs folder holding the example DAGs and the test
DAGs, and a running sandbox that the ``itnio_default`` connection points at.

Airflow reads its configuration when it is first imported, so the environment is set here, at import time,
before any test module imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The request bodies the provider must produce for the vendor's examples (a copy of shared/spec/golden).
GOLDEN_DIR = ROOT / "tests" / "golden"
SHARED_GOLDEN_DIR = ROOT.parent / "shared" / "spec" / "golden"

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="itnio-airflow-"))
DAGS_FOLDER = AIRFLOW_HOME / "dags"
DAGS_FOLDER.mkdir()
for source in [
    *sorted((ROOT / "dags_examples").glob("*.py")),
    *sorted((ROOT / "tests" / "dags").glob("*.py")),
]:
    shutil.copy(source, DAGS_FOLDER / source.name)

os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)

#: Business phones the sandbox knows: the demo's and those of the vendor's examples.
SANDBOX_PHONES = (
    "15550001111",
    "91856321321",
    "17376111187",
    "6282299953162",
    "62822922299527",
    "91856321412",
)
#: The appIds of the vendor's examples; each gets a sandbox and a connection ``itnio_golden_<appid>``.
GOLDEN_APP_IDS = ("DGziZf5u", "7WY0BQ7W", "zRTc00Vs", "xJdRmKR3")


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
