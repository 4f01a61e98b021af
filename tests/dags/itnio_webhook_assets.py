"""
A DAG scheduled on the assets the webhook receiver records events on (see tests/integration/webhook/test_assets.py).

Parsing it into the metadata database (``airflow dags reserialize``) puts its assets there, which is what makes
the receiver record asset events for the ``itnio_webhook_test`` connection. On Airflow 2 the assets do not exist
(the receiver needs Airflow 3.1+), so the file defines no DAG there.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

#: The connection the receiver tests push to (``CONN_ID`` of tests/support/receiver.py).
CONN_ID = "itnio_webhook_test"

try:
    from airflow_provider_itnio.assets import inbound_messages, message_status
except ImportError:  # Airflow 2: no receiver, no assets
    pass
else:
    from airflow.providers.standard.operators.empty import EmptyOperator

    with DAG(
        "itnio_webhook_on_pushes",
        schedule=inbound_messages(CONN_ID) | message_status(CONN_ID, "failed"),
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        is_paused_upon_creation=True,
        tags=["test"],
    ):
        EmptyOperator(task_id="noop")
