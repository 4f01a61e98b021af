"""
Wait (deferred) until a message is read, for ``dag.test()``: the message id and the connection are params.

Used by tests/integration/sensors/test_status_sensor.py
: a status is pushed to a real API server's receiver, then ``dag.test()`` runs this DAG,
whose trigger ``dag.test()`` runs in line (not in a triggerer). On Airflow 2 the sensor does not exist (it needs the
Airflow 3.1+ receiver), so the file defines no DAG there.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

try:
    from airflow_provider_itnio.sensors.itnio import ItnioMessageStatusSensor
except ImportError:  # Airflow 2: no receiver, no sensor
    pass
else:
    with DAG(
        "itnio_sensor_dag_test",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"message_id": "wamid.none", "conn_id": "itnio_default"},
        tags=["test"],
    ):
        ItnioMessageStatusSensor(
            task_id="wait_read",
            message_id="{{ params.message_id }}",
            itnio_conn_id="{{ params.conn_id }}",
            target_status="read",
            poke_interval=0.2,
            timeout=120,
        )
