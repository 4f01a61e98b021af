"""
Scenario 2 of the production-like stack (``make test-stack``): the campaign of ``itnio_stack_campaign`` with retries,
for killing a worker, a task process or the scheduler while it runs (``tests/e2e/stack/test_faults.py``).

The same DAG (``itnio_stack_common.campaign_dag``: chunks, pool and account rate as scenario 1; other recipients;
``params.rows`` is set per run), plus what a production campaign that must survive a lost worker has: ``retries``
(a killed try's lease on its ledger is held until it expires, at most
:data:`~airflow_provider_itnio.batch.LEASE_TTL` seconds after its last renewal: a retry that comes earlier fails
retryably and the next one proceeds) and ``fail_on_errors=False`` (every chunk's result, with its "maybe sent" rows
in ``errors``, lands in XCom for the test to read).
"""

from __future__ import annotations

from datetime import timedelta

from itnio_stack_common import ACCOUNT_POOL, ACCOUNT_RATE, CHUNKS, POOL_SLOTS, ROWS, campaign_dag, recipients

__all__ = ["ACCOUNT_POOL", "ACCOUNT_RATE", "CHUNKS", "POOL_SLOTS", "RETRIES", "ROWS", "SMALL_ROWS", "recipient"]

#: The smaller campaign of the task-process and scheduler variants (to keep ``make test-stack`` short).
SMALL_ROWS = 8_000
#: Tries of a chunk: the killed one, retries that find the dead try's lease still held, the one that completes.
RETRIES = 10
RETRY_DELAY = timedelta(seconds=10)

recipient = recipients("1556")

dag = campaign_dag(
    "itnio_stack_faults",
    recipient,
    "Split the audience into chunks and send one batch per chunk; a lost try is retried.",
    retries=RETRIES,
    retry_delay=RETRY_DELAY,
    fail_on_errors=False,
)
