"""
Refund approval on WhatsApp: the shop manager approves or rejects a refund with a tap (Airflow 3.1+).

``ApprovalOperator`` (Airflow's Human-in-the-loop) waits for an answer; ``ItnioHITLNotifier`` sends the manager
the request with two reply buttons, *Approve* and *Reject*, and a link to the task's page in the Airflow UI. The
manager taps a button: the webhook receiver on the API server records the answer as the UI would, the task
resumes, and the refund is paid (Approve) or skipped (Reject). Nobody answering within 4 hours fails the task.
A manager whose 24-hour window is closed first gets the approved template ``approval_waiting`` (create it in the
vendor's console, with one body parameter: the subject); the buttons follow as soon as they write back.

The connection ``itnio_default`` needs the ``webhook_token`` extra (it signs the buttons) and the vendor must
push to the receiver (``python -m airflow_provider_itnio.webhook url itnio_default`` prints the address).
Trigger one run per refund: ``airflow dags trigger itnio_refund_approval --conf '{"order": "A-1042",
"customer": "Ada", "amount": "EUR 49.90", "manager": "+1 555 010 0200"}'``.

On Airflow 2 (no Human-in-the-loop there) the file defines a one-task DAG that fails saying so.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import DAG, Param

PARAMS = {
    "order": Param("A-1042", type="string"),
    "customer": Param("Ada", type="string"),
    "amount": Param("EUR 49.90", type="string"),
    "manager": Param("+1 555 010 0200", type="string", description="The manager's WhatsApp number"),
}

try:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier
except ImportError as err:  # Airflow 2: Human-in-the-loop needs Airflow 3.1+
    from airflow_provider_itnio.stub_dags import needs_airflow_3_1_dag

    dag = needs_airflow_3_1_dag("itnio_refund_approval", err, params=PARAMS, tags=["itnio", "example"])
else:
    from airflow.sdk import task

    with DAG(
        dag_id="itnio_refund_approval",
        description="A manager approves a refund with a tap on WhatsApp",
        schedule=None,  # one run per refund request
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params=PARAMS,
        tags=["itnio", "example"],
    ):
        # [START howto_hitl_approval]
        approve = ApprovalOperator(
            task_id="approve_refund",
            subject="Refund {{ params.order }}?",
            body="Customer {{ params.customer }} asks for {{ params.amount }}.",
            # A manager who has not written to the business in 24 hours gets the approved template
            # "approval_waiting" (the subject is its parameter); the buttons follow when they write back.
            notifiers=[ItnioHITLNotifier(recipients="{{ params.manager }}", fallback_template="approval_waiting")],
            response_timeout=timedelta(hours=4),
        )
        # [END howto_hitl_approval]

        @task
        def pay_refund(order: str) -> str:
            """Pay the refund (here: only say so); skipped when the manager rejects it."""
            return f"refund for {order} paid"

        approve >> pay_refund("{{ params.order }}")
