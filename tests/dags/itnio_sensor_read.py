"""
Send a text through the sandbox, then wait (deferred, in the triggerer) until the customer has read it.

Used by tests/integration/sensors/test_status_sensor.py through a whole Airflow
(tests/support/airflow_stack.py): the sandbox pushes ``sent``,
``delivered`` and ``read`` to the API server's webhook; the sensor resumes when the receiver has recorded ``read``.
On Airflow 2 the sensor does not exist (it needs the Airflow 3.1+ receiver), so the file defines no DAG there.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

try:
    from airflow_provider_itnio.sensors.itnio import ItnioMessageStatusSensor
except ImportError:  # Airflow 2: no receiver, no sensor
    pass
else:
    from airflow_provider_itnio.operators.itnio import ItnioSendTextOperator

    with DAG(
        "itnio_sensor_read",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"recipient": "15550100300"},
        tags=["test"],
    ):
        send = ItnioSendTextOperator(
            task_id="send", recipient="{{ params.recipient }}", body="Your invoice INV-1 is ready."
        )
        ItnioMessageStatusSensor(
            task_id="wait_read", message_id=send.output, target_status="read", poke_interval=1, timeout=300
        )
