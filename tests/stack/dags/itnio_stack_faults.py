"""
Scenario 2 of the production-like stack (``make test-stack``): the campaign of ``itnio_stack_campaign`` with retries,
for killing a worker, a task process or the scheduler while it runs (``tests/stack/test_faults.py``).

The same recipients, chunks, pool and account rate as scenario 1 (``params.rows`` is set per run), plus what a
production campaign that must survive a lost worker has: ``retries`` (a killed try's lease on its ledger is held
until it expires, at most :data:`~airflow_provider_itnio.batch.LEASE_TTL` seconds after its last renewal: a retry
that comes earlier fails retryably and the next one proceeds) and ``fail_on_errors=False`` (every chunk's result,
with its "maybe sent" rows in ``errors``, lands in XCom for the test to read).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from airflow_provider_itnio.messages import Text
from airflow_provider_itnio.operators import ItnioBatchSendOperator

#: Messages per second the business number may send, across every task and worker (as in scenario 1).
ACCOUNT_RATE = 400
#: The pool the batch tasks run in, and its size (``scripts/stack.py`` creates it).
ACCOUNT_POOL = "itnio_account"
POOL_SLOTS = 4
#: Default campaign size (a run's ``conf`` may change ``rows``).
ROWS = 20_000
#: The smaller campaign of the task-process and scheduler variants (to keep ``make test-stack`` short).
SMALL_ROWS = 8_000
CHUNKS = 8
#: Tries of a chunk: the killed one, retries that find the dead try's lease still held, the one that completes.
RETRIES = 10
RETRY_DELAY = timedelta(seconds=10)


def recipient(index: int) -> str:
    """
    Return the ``index``-th recipient of the campaign (12 digits, all distinct).

    :param index: 0 .. rows - 1.
    """
    return f"1556{index:08d}"


@dag(
    dag_id="itnio_stack_faults",
    schedule=None,
    catchup=False,
    params={"rows": ROWS, "chunks": CHUNKS},
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    tags=["itnio", "stack"],
)
def itnio_stack_faults() -> None:
    """Split the audience into chunks and send one batch per chunk; a lost try is retried."""

    @task(retries=0)
    def split(params: dict[str, Any] | None = None) -> list[list[dict[str, str]]]:
        """Return ``params.chunks`` lists of rows, ``params.rows`` rows in all."""
        rows, chunks = int((params or {})["rows"]), int((params or {})["chunks"])
        audience = [{"recipient": recipient(i), "name": f"Customer {i}"} for i in range(rows)]
        return [audience[i::chunks] for i in range(chunks)]

    ItnioBatchSendOperator.partial(
        task_id="send",
        message=Text(body="Hi {{ row.name }}, our spring sale starts today."),
        concurrency=8,
        max_per_second=ACCOUNT_RATE / POOL_SLOTS,
        pool=ACCOUNT_POOL,
        pool_slots=1,
        fail_on_errors=False,
    ).expand(rows=split())


itnio_stack_faults()
