"""
DAGs whose callbacks send notifications through ItnioNotifier (see
tests/integration/notifications/test_notifier.py).
"""

from __future__ import annotations

import datetime
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG
from airflow.providers.common.compat.standard.operators import PythonOperator  # Airflow 2.11 and 3

from airflow_provider_itnio.notifications.itnio import ItnioNotifier, send_itnio_notification
from airflow_provider_itnio.operators import ItnioSendTextOperator

ON_CALL = ["+1 555 010 0300", "15550100301"]
CUSTOMER = "15550100200"
ERROR_TEXT = "warehouse export is empty"
_START = pendulum.datetime(2026, 1, 1, tz="UTC")
_NO_RETRY = {"retries": 0}

#: The on-call alert used by several DAGs: a template, so it reaches people outside the 24-hour window.
TASK_FAILED: dict[str, Any] = {
    "recipients": ON_CALL,
    "template_name": "task_failed",
    "language": "en_US",
    "body_parameters": ["{{ dag.dag_id }}", "{{ ti.task_id }}", "{{ exception }}"],
}


def _fail() -> None:
    raise ValueError(f"{ERROR_TEXT}\n(line two of the error)")


def _fail_first_try(**context: Any) -> str:
    if context["ti"].try_number == 1:
        raise RuntimeError("the export was still running")
    return "done"


with DAG("itnio_notify_task_failure", schedule=None, start_date=_START, default_args=_NO_RETRY, tags=["test"]):
    PythonOperator(task_id="export", python_callable=_fail, on_failure_callback=send_itnio_notification(**TASK_FAILED))

with DAG("itnio_notify_task_success", schedule=None, start_date=_START, default_args=_NO_RETRY, tags=["test"]):
    ItnioSendTextOperator(
        task_id="thank_you",
        recipient=CUSTOMER,
        body="Thanks!",
        on_success_callback=ItnioNotifier(
            recipients="{{ params.sales_phone }}",
            text="{{ ti.task_id }} of {{ dag.dag_id }} sent {{ ti.xcom_pull(task_ids=ti.task_id) }}",
        ),
        params={"sales_phone": "+1 555 010 0400"},
    )

with DAG(
    "itnio_notify_task_retry",
    schedule=None,
    start_date=_START,
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=0)},
    tags=["test"],
):
    PythonOperator(
        task_id="export",
        python_callable=_fail_first_try,
        on_retry_callback=ItnioNotifier(
            recipients=ON_CALL[0],
            text="Retrying {{ ti.task_id }} (try {{ ti.try_number }}): {{ exception }}",
        ),
    )

with DAG(
    "itnio_notify_dag_callbacks",
    schedule=None,
    start_date=_START,
    default_args=_NO_RETRY,
    params={"fail": True},
    on_failure_callback=ItnioNotifier(
        recipients=ON_CALL, text="Run {{ run_id }} of {{ dag.dag_id }} failed: {{ reason }}"
    ),
    on_success_callback=ItnioNotifier(recipients=ON_CALL[0], text="Run {{ run_id }} of {{ dag.dag_id }} succeeded"),
    tags=["test"],
):

    def _maybe_fail(**context: Any) -> None:
        if context["params"]["fail"]:
            raise ValueError(ERROR_TEXT)

    PythonOperator(task_id="export", python_callable=_maybe_fail)

with DAG(
    "itnio_notify_shared",
    schedule=None,
    start_date=_START,
    default_args={"retries": 0, "on_failure_callback": ItnioNotifier(**TASK_FAILED)},
    tags=["test"],
):
    # one notifier instance shared by two tasks through default_args: each alert names its own task
    PythonOperator(task_id="first", python_callable=_fail)
    PythonOperator(task_id="second", python_callable=_fail)


def _succeed() -> str:
    return "exported 42 rows"


with DAG(
    "itnio_notify_send_fails",
    schedule=None,
    start_date=_START,
    default_args=_NO_RETRY,
    params={"report_phone": "12"},
    tags=["test"],
):
    # the tests make the sandbox fail some of the notifiers' requests: the tasks' own outcomes must not change
    export = PythonOperator(
        task_id="export",
        python_callable=_fail,
        on_failure_callback=ItnioNotifier(**{**TASK_FAILED, "recipients": [*ON_CALL, "15550100302"]}),
    )
    report = PythonOperator(
        task_id="report",
        python_callable=_succeed,
        trigger_rule="all_done",
        # "12" is not a phone number: this notifier fails its validation once rendered, before any request
        on_success_callback=ItnioNotifier(recipients="{{ params.report_phone }}", text="{{ ti.task_id }} done"),
    )
    export >> report
