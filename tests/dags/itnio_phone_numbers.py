"""
DAGs sending to phone numbers as people write them, run by tests/integration/test_phone_numbers.py against the sandbox.

The numbers come from the run's conf (templates), so they are parsed when the task runs; a static number that
``strict_phone_numbers=True`` refuses would make this file an import error instead.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_itnio.operators import ItnioBatchSendOperator, ItnioSendTextOperator

_START = pendulum.datetime(2026, 1, 1, tz="UTC")
_NO_RETRY = {"retries": 0}
#: A business phone of the sandbox in an assigned range (its default, 15550001111, is a test number: strict
#: refuses it too).
ASSIGNED_BUSINESS_PHONE = "17376111187"

with DAG(
    "itnio_phone_numbers",
    schedule=None,
    start_date=_START,
    default_args=_NO_RETRY,
    params={"kept_trunk": "+82 010 1234 5678", "unassigned": "+1 555 0100 200"},
    tags=["test"],
):
    ItnioSendTextOperator(task_id="kept_trunk", recipient="{{ params.kept_trunk }}", body="Your order shipped.")
    ItnioSendTextOperator(task_id="unassigned", recipient="{{ params.unassigned }}", body="Your order shipped.")
    ItnioSendTextOperator(
        task_id="unassigned_strict",
        recipient="{{ params.unassigned }}",
        body="Your order shipped.",
        business_phone=ASSIGNED_BUSINESS_PHONE,
        strict_phone_numbers=True,
    )
    ItnioBatchSendOperator(
        task_id="batch_strict",
        rows=["{{ params.kept_trunk }}", "{{ params.unassigned }}"],
        message={"type": "text", "text": {"body": "Spring sale"}},
        business_phone=ASSIGNED_BUSINESS_PHONE,
        strict_phone_numbers=True,
        fail_on_errors=False,
    )
