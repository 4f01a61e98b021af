"""
Scenario 1 of the production-like stack (``make test-stack``): one campaign across two Celery workers.

``params.rows`` recipients (20,000) are split into ``params.chunks`` lists (8), and one
``ItnioBatchSendOperator`` task is mapped over them. The account's rate (:data:`ACCOUNT_RATE` msg/s) holds for all
chunks together, whichever worker runs them: the mapped tasks run in the pool :data:`ACCOUNT_POOL` of
:data:`POOL_SLOTS` slots (so at most that many send at once) and each sends at most
``ACCOUNT_RATE / POOL_SLOTS`` messages per second. ``scripts/stack.py`` creates the pool.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from airflow_provider_itnio.messages import Text
from airflow_provider_itnio.operators import ItnioBatchSendOperator

#: Messages per second the business number may send, across every task and worker.
ACCOUNT_RATE = 400
#: The pool the batch tasks run in, and its size (``scripts/stack.py`` creates it with this many slots).
ACCOUNT_POOL = "itnio_account"
POOL_SLOTS = 4
#: Campaign size.
ROWS = 20_000
CHUNKS = 8


def recipient(index: int) -> str:
    """
    Return the ``index``-th recipient of the campaign (12 digits, all distinct).

    :param index: 0 .. rows - 1.
    """
    return f"1555{index:08d}"


@dag(
    dag_id="itnio_stack_campaign",
    schedule=None,
    catchup=False,
    params={"rows": ROWS, "chunks": CHUNKS},
    tags=["itnio", "stack"],
)
def itnio_stack_campaign() -> None:
    """Split the audience into chunks and send one batch per chunk, the whole account under its rate."""

    @task
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
    ).expand(rows=split())


itnio_stack_campaign()
