"""
A nightly export that pages the on-call engineers over WhatsApp, with :class:`ItnioNotifier`:

- every task's ``on_failure_callback`` (through ``default_args``) sends the approved ``task_failed`` template
  ("{{1}}: task {{2}} failed: {{3}}") with the DAG id, the task id and the exception. A template, because
  on-call phones rarely wrote to the business in the last 24 hours, and a session text would not reach them;
- ``on_retry_callback`` sends a session text to the engineer on duty (who chats with the business number, so the
  24-hour window is open);
- the DAG's ``on_success_callback`` tells the data team lead the export is done;
- to be told when a run is late, add a Deadline Alert (Airflow 3.1+; on Airflow 2, ``sla_miss_callback=`` the
  same notifier). It is left out of this file because ``dag.test()`` / ``airflow dags test`` of Airflow 3.3.2
  fail at the end of a successful run of a DAG that has a deadline::

      from airflow.sdk.definitions.callback import AsyncCallback
      from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

      DAG(
          ...,
          deadline=DeadlineAlert(
              reference=DeadlineReference.DAGRUN_QUEUED_AT,
              interval=datetime.timedelta(hours=2),
              callback=AsyncCallback(
                  ItnioNotifier,  # built and awaited by the triggerer, with the run's context
                  kwargs={
                      "recipients": "+1 555 010 0300",
                      "template_name": "run_late",
                      "language": "en_US",
                      "body_parameters": ["{{ dag_run.dag_id }}", "{{ dag_run.run_id }}"],
                  },
              ),
          ),
      )

The on-call numbers come from the Airflow Variable ``itnio_on_call_phones`` (comma-separated), with a default.
Trigger a run with ``{"simulate_failure": true}`` to see the alert.

Unpausing the DAG starts no run: the schedule is a ``CronTriggerTimetable`` without a ``start_date`` (Airflow 3),
so the first run is the next 02:30, not the last one. With a ``start_date`` in the past (and ``catchup=False``),
unpausing would at once start a run for the last 02:30, next to the run the trigger dialog starts with its default
"Unpause on trigger": two exports, two messages to the lead. (Airflow 2.11 needs a ``start_date``, so there the
first unpause runs the last night's export. After a pause, unpausing runs the latest night missed, on any version:
that run is the export the schedule owes.)
"""

from __future__ import annotations

import datetime
from typing import Any

import airflow
import pendulum
from airflow.providers.common.compat.sdk import DAG, AirflowFailException, Param, task
from airflow.timetables.trigger import CronTriggerTimetable

from airflow_provider_itnio.notifications.itnio import ItnioNotifier, send_itnio_notification

ON_CALL = "{{ var.value.get('itnio_on_call_phones', '+1 555 010 0300, +1 555 010 0301') }}"
DUTY_ENGINEER = "+1 555 010 0300"
TEAM_LEAD = "+1 555 010 0400"

#: Page on-call when a task fails.
# [START howto_notifier_template]
on_call_alert = send_itnio_notification(
    recipients=ON_CALL,
    template_name="task_failed",
    language="en_US",
    body_parameters=["{{ dag.dag_id }}", "{{ ti.task_id }}", "{{ exception }}"],
)
# [END howto_notifier_template]


@task
def extract(**context: Any) -> int:
    """
    Count yesterday's orders (a stand-in for the real extract).

    :param context: The task's context; ``params.simulate_failure`` makes the task fail.
    """
    if context["params"]["simulate_failure"]:
        # AirflowFailException: fail now, no retry (the alert names this task and this text)
        raise AirflowFailException("the orders database refused the connection (simulated)")
    return 1284


@task
def load(rows: int) -> str:
    """
    Load the rows into the warehouse (a stand-in).

    :param rows: How many rows ``extract`` found.
    """
    return f"loaded {rows} rows"


# [START howto_notifier_callbacks]
with DAG(
    dag_id="itnio_nightly_export_alerts",
    description="Nightly export; failures page on-call over WhatsApp (template), success tells the lead",
    schedule=CronTriggerTimetable("30 2 * * *", timezone="UTC"),  # the first run: the next 02:30 after unpausing
    # no start date on Airflow 3 (a past one makes unpausing start a run at once); Airflow 2.11 requires one
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC") if airflow.__version__.startswith("2.") else None,
    catchup=False,
    params={"simulate_failure": Param(False, type="boolean", description="Fail the extract to see the alert")},
    default_args={
        "retries": 2,
        "retry_delay": datetime.timedelta(minutes=5),
        "on_failure_callback": on_call_alert,
        "on_retry_callback": ItnioNotifier(
            recipients=DUTY_ENGINEER,
            text="{{ dag.dag_id }}.{{ ti.task_id }} failed (try {{ ti.try_number }}), retrying: {{ exception }}",
        ),
    },
    on_success_callback=ItnioNotifier(
        recipients=TEAM_LEAD, text="Nightly export {{ run_id }} of {{ dag.dag_id }} finished: {{ reason }}."
    ),
    tags=["itnio", "example"],
) as dag:
    rows: Any = extract()  # an XComArg: the number reaches load() when the tasks run
    load(rows)
# [END howto_notifier_callbacks]
