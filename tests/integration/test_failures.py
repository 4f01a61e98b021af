"""
How failures meet Airflow, in real DAG runs against the sandbox: permanent statuses fail the task without
retries, retryable ones are retried, and a send that may have been delivered is never sent again.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.dags.itnio_failures import PERMANENT_ORDER
from tests.support.airflow_runs import run_dag, task_states, xcom_value


def test_every_permanent_status_fails_the_task_without_retry(airflow_sandbox: Any) -> None:
    for code in PERMANENT_ORDER:
        airflow_sandbox.fail_next(1, api_status=code, reason=f"vendor says {code}")
    dag_run = run_dag("itnio_permanent")
    states = task_states(dag_run)
    assert len(states) == len(PERMANENT_ORDER) >= 30
    for code in PERMANENT_ORDER:
        assert states[f"status_{code.lstrip('-')}"] == ("failed", 1), code
    # one request per task: no retry sent anything again
    assert [r["status"] for r in airflow_sandbox.requests()] == PERMANENT_ORDER
    assert airflow_sandbox.messages() == []


def test_a_retryable_status_is_retried_and_then_sent(airflow_sandbox: Any) -> None:
    airflow_sandbox.fail_next(1, api_status="-4242", reason="system busy")
    dag_run = run_dag("itnio_retryable")
    assert task_states(dag_run)["send"] == ("success", 2)
    [message] = airflow_sandbox.messages()
    assert xcom_value(dag_run, "send") == message["messageId"]
    assert len(airflow_sandbox.requests()) == 2


@pytest.mark.parametrize("fault", [{"drop": True}, {"http_status": 502}])
def test_unknown_delivery_fails_without_resending(airflow_sandbox: Any, fault: dict[str, Any]) -> None:
    airflow_sandbox.fail_next(1, **fault)
    dag_run = run_dag("itnio_unknown_delivery")
    assert task_states(dag_run)["send"] == ("failed", 1)
    assert len(airflow_sandbox.requests()) == 1


def test_unknown_delivery_opt_in_lets_airflow_retry(airflow_sandbox: Any) -> None:
    airflow_sandbox.fail_next(1, drop=True)
    dag_run = run_dag("itnio_unknown_delivery_opt_in")
    assert task_states(dag_run)["send"] == ("success", 2)
    assert len(airflow_sandbox.requests()) == 2
    assert len(airflow_sandbox.messages()) == 1


def test_a_rendered_value_that_breaks_a_rule_fails_before_any_request(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_rendered_invalid", conf={"body": "   ", "phone": "15550100200"})
    assert task_states(dag_run)["send"] == ("failed", 1)
    assert airflow_sandbox.requests() == []
    dag_run = run_dag("itnio_rendered_invalid", conf={"body": "ok", "phone": "+1 555"})
    assert task_states(dag_run)["send"] == ("failed", 1)
    assert airflow_sandbox.requests() == []
