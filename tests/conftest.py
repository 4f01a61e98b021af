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
    """A migrated SQLite metadata database in the session's Airflow home."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def session_sandbox() -> Iterator[Any]:
    """A sandbox for the whole session; ``itnio_default`` points at it."""
    from airflow_provider_itnio.sandbox import Sandbox

    with Sandbox(business_phones=SANDBOX_PHONES) as sandbox:
        os.environ["AIRFLOW_CONN_ITNIO_DEFAULT"] = sandbox.conn_json()
        yield sandbox
    os.environ.pop("AIRFLOW_CONN_ITNIO_DEFAULT", None)


@pytest.fixture
def sandbox(session_sandbox: Any) -> Iterator[Any]:
    """The session's sandbox, emptied and reset (no faults, no latency, unlimited balance) for one test."""
    session_sandbox.reset()
    session_sandbox.clear()
    yield session_sandbox
    session_sandbox.reset()
    session_sandbox.clear()


def run_dag(dag_id: str, conf: dict[str, Any] | None = None, *, logical_date: Any = None) -> Any:
    """
    Run a DAG from the DAGs folder through real Airflow (``dag.test()``) and return its DagRun.

    Works on Airflow 2.11 and 3.x (their DagBag and ``dag.test()`` differ).

    :param dag_id: The DAG to run.
    :param conf: The run's ``dag_run.conf``.
    :param logical_date: Run for this logical date; running the same date again clears and re-runs that run.
    """
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    # Airflow 2's DagBag would also load Airflow's example DAGs unless told not to; Airflow 3's has no such option
    options: dict[str, Any] = {"include_examples": False} if _airflow2() else {}
    bag = DagBag(dag_folder=str(DAGS_FOLDER), **options)
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"no DAG {dag_id!r} in {DAGS_FOLDER}"
    kwargs: dict[str, Any] = {}
    if conf is not None:
        kwargs["run_conf"] = conf
    if logical_date is not None:
        if _airflow2():
            # re-running a date deletes the old DagRun, whose note refers to FAB's ab_user table: load that model
            import airflow.providers.fab.auth_manager.models  # noqa: F401

            kwargs["execution_date"] = logical_date
        else:
            kwargs.update(run_after=logical_date, logical_date=logical_date)
    return dag.test(**kwargs)


def _airflow2() -> bool:
    import airflow

    return airflow.__version__.startswith("2.")


def task_states(dag_run: Any) -> dict[str, tuple[str, int]]:
    """``{task_id: (state, try_number)}`` of a finished DagRun."""
    return {ti.task_id: (str(ti.state), ti.try_number) for ti in dag_run.get_task_instances()}


def xcom_value(dag_run: Any, task_id: str) -> Any:
    """The ``return_value`` XCom a task of ``dag_run`` pushed."""
    return dag_run.get_task_instance(task_id).xcom_pull(task_ids=task_id)
