"""
Scenario 3 of the production-like stack (``make test-stack``): single sends and batches mixed, under faults.

Each run sends to its own recipients (``params.run`` picks them): ``params.singles`` mapped
``ItnioSendTextOperator`` tasks (one message each) and ``params.batches`` mapped ``ItnioBatchSendOperator`` tasks
of ``params.batch_rows`` rows each, through the connection :data:`CONN_ID` (the sandbox, with a short read
timeout so that the sandbox's ``slow`` fault is a read timeout). ``tests/e2e/stack/test_faults.py`` triggers runs for
a few minutes while it injects the sandbox's faults and classifies every send.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from airflow_provider_itnio.messages import Text
from airflow_provider_itnio.operators import ItnioBatchSendOperator, ItnioSendTextOperator

#: The connection the soak sends through (the test creates it: the sandbox, ``timeout`` :data:`READ_TIMEOUT`).
CONN_ID = "itnio_soak"
READ_TIMEOUT = 3.0
ACCOUNT_POOL = "itnio_account"
#: Per batch task: slow enough that a run's batches send through most of the time between two runs, so that the
#: test's faults (queued for the next requests) hit batch and single sends in proportion.
MAX_PER_SECOND = 20


def recipient(run: int, kind: str, index: int) -> str:
    """
    Return a recipient of a soak run (11 digits, ``+1 58…``: a possible North American number; distinct across runs
    and kinds).

    :param run: The run's number (``params.run``, < 1000).
    :param kind: ``"single"`` or ``"batch"``.
    :param index: The recipient's index in its kind (< 10,000).
    """
    return f"158{run:03d}{int(kind == 'batch')}{index:04d}"


@dag(
    dag_id="itnio_stack_soak",
    schedule=None,
    catchup=False,
    max_active_runs=3,
    params={"run": 0, "singles": 10, "batches": 2, "batch_rows": 200},
    default_args={"retries": 3, "retry_delay": timedelta(seconds=5)},
    tags=["itnio", "stack"],
)
def itnio_stack_soak() -> None:
    """Send single messages and batches to a run's own recipients."""

    @task(retries=0)
    def singles(params: dict[str, Any] | None = None) -> list[str]:
        """Return the recipients of the single sends."""
        p = params or {}
        return [recipient(int(p["run"]), "single", i) for i in range(int(p["singles"]))]

    @task(retries=0)
    def batches(params: dict[str, Any] | None = None) -> list[list[str]]:
        """Return the batches' rows (recipient strings)."""
        p = params or {}
        rows = [recipient(int(p["run"]), "batch", i) for i in range(int(p["batches"]) * int(p["batch_rows"]))]
        return [rows[i :: int(p["batches"])] for i in range(int(p["batches"]))]

    ItnioSendTextOperator.partial(task_id="single", itnio_conn_id=CONN_ID, body="Your order has shipped.").expand(
        recipient=singles()
    )
    ItnioBatchSendOperator.partial(
        task_id="batch",
        itnio_conn_id=CONN_ID,
        message=Text(body="Our spring sale starts today."),
        concurrency=8,
        max_per_second=MAX_PER_SECOND,
        pool=ACCOUNT_POOL,
        fail_on_errors=False,
    ).expand(rows=batches())


itnio_stack_soak()
