"""
An approval nobody answers in time: used by tests/e2e/test_hitl.py for a late tap (Airflow 3.1+).

``response_timeout`` is a few seconds and there is no default, so the scheduler's timeout sweep fails the task;
a tap on its buttons afterwards must change nothing. A recipient whose 24-hour window is closed gets the
``approval_waiting`` template instead of the buttons. On Airflow 2 (no Human-in-the-loop) the file defines no DAG.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG

try:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier
except ImportError:  # Airflow 2: no Human-in-the-loop
    pass
else:
    with DAG(
        "itnio_hitl_timeout",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"approver": "15550100500", "job": "J-1"},
        tags=["test"],
    ):
        ApprovalOperator(
            task_id="approve",
            subject="Approve job {{ params.job }} quickly?",
            body="Nobody will answer this in time.",
            notifiers=[ItnioHITLNotifier(recipients="{{ params.approver }}", fallback_template="approval_waiting")],
            response_timeout=timedelta(seconds=4),
        )
