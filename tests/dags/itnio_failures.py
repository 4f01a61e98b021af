"""DAGs that meet faults the tests inject at the sandbox (see tests/integration/test_failures.py)."""

from __future__ import annotations

import datetime

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_itnio.errors import PERMANENT_STATUSES
from airflow_provider_itnio.operators import ItnioSendTextOperator

#: The permanent codes in the order the chained tasks of ``itnio_permanent`` send.
PERMANENT_ORDER = sorted(PERMANENT_STATUSES, key=int, reverse=True)
RECIPIENT = "15550100200"
_ARGS = {"retries": 2, "retry_delay": datetime.timedelta(seconds=0)}
_START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG("itnio_permanent", schedule=None, start_date=_START, default_args=_ARGS, tags=["test"]):
    previous = None
    for code in PERMANENT_ORDER:
        task = ItnioSendTextOperator(
            task_id=f"status_{code.lstrip('-')}",
            recipient=RECIPIENT,
            body=f"meets {code}",
            trigger_rule="all_done",
        )
        if previous is not None:
            previous >> task
        previous = task

with DAG("itnio_retryable", schedule=None, start_date=_START, default_args=_ARGS, tags=["test"]):
    ItnioSendTextOperator(task_id="send", recipient=RECIPIENT, body="retry me")

with DAG("itnio_unknown_delivery", schedule=None, start_date=_START, default_args=_ARGS, tags=["test"]):
    ItnioSendTextOperator(task_id="send", recipient=RECIPIENT, body="at most once")

with DAG("itnio_unknown_delivery_opt_in", schedule=None, start_date=_START, default_args=_ARGS, tags=["test"]):
    ItnioSendTextOperator(task_id="send", recipient=RECIPIENT, body="at least once", retry_on_unknown_delivery=True)

with DAG(
    "itnio_rendered_invalid",
    schedule=None,
    start_date=_START,
    default_args=_ARGS,
    params={"body": "fine", "phone": RECIPIENT},
    tags=["test"],
):
    ItnioSendTextOperator(task_id="send", recipient="{{ params.phone }}", body="{{ params.body }}")
