"""
What a DAG file defines on an Airflow too old for what it needs (the example DAGs of the receiver and of
Human-in-the-loop need Airflow 3.1+), so that the DAG still shows in the UI, with its docs, and says why it cannot run.

.. code-block:: python

    try:
        from airflow_provider_itnio.sensors.itnio import ItnioMessageStatusSensor
    except ImportError as err:  # Airflow 2: no receiver, no sensor
        from airflow_provider_itnio.stub_dags import needs_airflow_3_1_dag

        dag = needs_airflow_3_1_dag("itnio_invoice_read_or_remind", err, params=PARAMS)
    else:
        ...  # the real DAG
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_itnio.webhook import MIN_AIRFLOW

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import DAG

__all__ = ["STUB_TASK_ID", "needs_airflow_3_1_dag"]

#: The stub DAG's only task.
STUB_TASK_ID = "needs_airflow_3_1"


def needs_airflow_3_1_dag(dag_id: str, error: ImportError, **dag_kwargs: Any) -> DAG:
    """
    Return a DAG ``dag_id`` of one task, ``needs_airflow_3_1``, that fails saying the DAG needs Airflow 3.1+ and
    why (``error``): what a DAG file defines when importing what it needs fails, instead of an import error.

    :param dag_id: The real DAG's id.
    :param error: What importing the DAG's needs raised (its message says what is missing).
    :param dag_kwargs: More arguments of the DAG, e.g. the real DAG's ``params`` (so that a trigger with its
        ``conf`` is accepted) and ``tags``. By default it runs only when triggered (``schedule=None``).
    """
    from airflow.providers.common.compat.sdk import DAG

    try:
        from airflow.providers.standard.operators.python import PythonOperator
    except ImportError:  # Airflow 2 without the standard provider
        from airflow.operators.python import PythonOperator  # type: ignore[no-redef,unused-ignore]

    message = f"{dag_id} needs Airflow {MIN_AIRFLOW[0]}.{MIN_AIRFLOW[1]}+: {error}"

    def unavailable() -> None:
        raise RuntimeError(message)

    import pendulum

    arguments: dict[str, Any] = {
        "schedule": None,
        "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
        "catchup": False,
        **dag_kwargs,
    }
    with DAG(dag_id=dag_id, **arguments) as dag:
        PythonOperator(task_id=STUB_TASK_ID, python_callable=unavailable)
    return dag
