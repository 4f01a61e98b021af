"""
Scenario 1 of the production-like stack (``make test-stack``): one campaign across two Airflow Celery workers.

``params.rows`` recipients (20,000) are split into ``params.chunks`` lists (8), and one
``ItnioBatchSendOperator`` task is mapped over them. The account's rate (:data:`ACCOUNT_RATE` msg/s) holds for all
chunks together, whichever worker runs them: the mapped tasks run in the pool :data:`ACCOUNT_POOL` of
:data:`POOL_SLOTS` slots (so at most that many send at once) and each sends at most
``ACCOUNT_RATE / POOL_SLOTS`` messages per second. ``scripts/stack.py`` creates the pool. The DAG is built by
``itnio_stack_common.campaign_dag`` (shared with ``itnio_stack_faults``).
"""

from __future__ import annotations

from itnio_stack_common import ACCOUNT_POOL, ACCOUNT_RATE, CHUNKS, POOL_SLOTS, ROWS, campaign_dag, recipients

__all__ = ["ACCOUNT_POOL", "ACCOUNT_RATE", "CHUNKS", "POOL_SLOTS", "ROWS", "recipient"]

recipient = recipients("1555")

dag = campaign_dag(
    "itnio_stack_campaign",
    recipient,
    "Split the audience into chunks and send one batch per chunk, the whole account under its rate.",
)
