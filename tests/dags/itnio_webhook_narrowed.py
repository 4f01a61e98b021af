"""
DAGs scheduled on narrowed inbound-message assets of the receiver tests' connection
(tests/integration/webhook/test_assets.py).

Parsing them into the metadata database (``airflow dags reserialize``) puts the narrowed assets there, so the
receiver records events on them for the messages each one takes. On Airflow 2 the assets do not exist (the
receiver needs Airflow 3.1+), so the file defines no DAG there.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

#: The connection the receiver tests push to (``CONN_ID`` of tests/support/receiver.py).
CONN_ID = "itnio_webhook_test"
#: Each DAG and what it narrows the inbound messages to (the keyword arguments of ``inbound_messages``).
NARROWED: dict[str, dict[str, object]] = {
    "itnio_webhook_on_reschedule_taps": {"reply_ids": "reschedule:*"},
    "itnio_webhook_on_any_tap": {"reply_ids": "*"},
    "itnio_webhook_on_stop_words": {"keywords": ["stop", "opt out"]},
    "itnio_webhook_on_stickers": {"message_type": "sticker"},
    "itnio_webhook_on_keep_taps": {"message_type": "INTERACTIVE", "reply_ids": ["keep:*"]},
}

try:
    from airflow_provider_itnio.assets import inbound_messages
except ImportError:  # Airflow 2: no receiver, no assets
    pass
else:
    from airflow.providers.standard.operators.empty import EmptyOperator

    for dag_id, narrowed in NARROWED.items():
        with DAG(
            dag_id,
            schedule=inbound_messages(CONN_ID, **narrowed),  # type: ignore[arg-type]
            start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
            catchup=False,
            is_paused_upon_creation=True,
            tags=["test"],
        ):
            EmptyOperator(task_id="noop")
