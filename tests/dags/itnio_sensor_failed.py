"""
Send a text the sandbox then reports ``failed``; the waiting sensor fails with the vendor's reason, without retry.

Used by tests/integration/sensors/test_status_sensor.py through a whole Airflow
(tests/support/airflow_stack.py). The sensor has retries: a failed
message must not use them. On Airflow 2 the file defines no DAG (the sensor needs Airflow 3.1+).
"""

from __future__ import annotations

import datetime

import pendulum
from airflow.providers.common.compat.sdk import DAG

try:
    from airflow_provider_itnio.sensors.itnio import ItnioMessageStatusSensor
except ImportError:  # Airflow 2: no receiver, no sensor
    pass
else:
    from airflow_provider_itnio.operators.itnio import ItnioSendTextOperator

    with DAG(
        "itnio_sensor_failed",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"recipient": "15550100400"},
        tags=["test"],
    ):
        send = ItnioSendTextOperator(task_id="send", recipient="{{ params.recipient }}", body="Your order shipped.")
        ItnioMessageStatusSensor(
            task_id="wait_read",
            message_id=send.output,
            target_status="read",
            poke_interval=1,
            timeout=300,
            retries=2,
            retry_delay=datetime.timedelta(seconds=1),
        )
