"""
The campaign DAG of the production-like stack's scenarios, built once for the DAG files that run it
(``itnio_stack_campaign.py``: scenario 1; ``itnio_stack_faults.py``: the same campaign with retries, scenario 2).

Not a DAG file (``.airflowignore`` keeps the dag-processor from parsing it): the DAG files import it from their
bundle folder, which Airflow puts on ``sys.path`` when it parses them or runs their tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, dag, task

from airflow_provider_itnio.messages import Text
from airflow_provider_itnio.operators import ItnioBatchSendOperator

#: Messages per second the business number may send, across every task and worker.
ACCOUNT_RATE = 400
#: The pool the batch tasks run in, and its size (``scripts/stack.py`` creates it with this many slots).
ACCOUNT_POOL = "itnio_account"
POOL_SLOTS = 4
#: Campaign size (a run's ``conf`` may change ``rows`` and ``chunks``).
ROWS = 20_000
CHUNKS = 8


def recipients(prefix: str) -> Callable[[int], str]:
    """
    Return the function that names a campaign's ``index``-th recipient: ``prefix`` and 7 digits (all distinct).

    ``"1555"`` gives ``+1 555 …`` numbers: a North American number's length, so libphonenumber finds them possible
    (and, being 555 numbers, outside the assigned ranges: sent with a warning).

    :param prefix: The first digits, one prefix per DAG so that two campaigns never share a recipient.
    """

    def recipient(index: int) -> str:
        """
        Return the ``index``-th recipient of the campaign (11 digits, all distinct).

        :param index: 0 .. rows - 1.
        """
        return f"{prefix}{index:07d}"

    return recipient


def campaign_dag(
    dag_id: str,
    recipient: Callable[[int], str],
    doc: str,
    *,
    retries: int = 0,
    retry_delay: timedelta | None = None,
    **send_options: Any,
) -> DAG:
    """
    Return the campaign DAG: ``params.rows`` recipients split into ``params.chunks`` lists, one
    ``ItnioBatchSendOperator`` task mapped over them, in the pool :data:`ACCOUNT_POOL`, each at most
    ``ACCOUNT_RATE / POOL_SLOTS`` messages per second (so the account stays under :data:`ACCOUNT_RATE`).

    :param dag_id: The DAG's id.
    :param recipient: Names the ``index``-th recipient (:func:`recipients`).
    :param doc: The DAG's documentation.
    :param retries: Retries of each send task (the split task is never retried).
    :param retry_delay: Their delay.
    :param send_options: More arguments of the send tasks (e.g. ``fail_on_errors=False``).
    """
    default_args = {"retries": retries, "retry_delay": retry_delay} if retries else {}

    @dag(
        dag_id=dag_id,
        schedule=None,
        catchup=False,
        params={"rows": ROWS, "chunks": CHUNKS},
        default_args=default_args,
        tags=["itnio", "stack"],
        doc_md=doc,
    )
    def campaign() -> None:
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
            **send_options,
        ).expand(rows=split())

    return campaign()
