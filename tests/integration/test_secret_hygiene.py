"""The API secret never appears in a log line, an exception, an XCom or a rendered template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_home import AIRFLOW_HOME
from tests.support.airflow_runs import run_dag, task_states


def _rendered_fields(dag_run: Any) -> str:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return json.dumps([row.rendered_fields for row in rows], default=str)


def _xcoms(dag_run: Any) -> str:
    return json.dumps(
        [ti.xcom_pull(task_ids=ti.task_id) for ti in dag_run.get_task_instances()],
        default=str,
    )


def _log_files() -> str:
    return "".join(p.read_text(errors="replace") for p in (AIRFLOW_HOME / "logs").rglob("*") if p.is_file())


@pytest.mark.parametrize("fault", [None, {"api_status": "-68", "reason": "insufficient balance"}, {"drop": True}])
def test_secret_stays_out_of_logs_xcom_and_rendered_fields(
    airflow_db: Path, sandbox: Any, capfd: pytest.CaptureFixture[str], fault: dict[str, Any] | None
) -> None:
    secret = sandbox.api_secret
    assert secret and len(secret) >= 8
    if fault:
        sandbox.fail_next(1, **fault)
    dag_run = run_dag("itnio_followup", conf={"phone": "+1 555 010 0200", "name": "Ada", "order_id": "A-7"})
    out, err = capfd.readouterr()
    states = task_states(dag_run)
    if fault is None:
        assert str(dag_run.state) == "success"
        message_ids = [m["messageId"] for m in sandbox.messages()]
        assert len(message_ids) == 3
        assert message_ids[0] in out + err  # the capture does see the task logs
    else:
        assert states["thank_you"][0] == "failed"
        assert ("insufficient balance" if "api_status" in fault else "may have been delivered") in out + err
    for where, text in {
        "task output": out + err,
        "log files": _log_files(),
        "xcom": _xcoms(dag_run),
        "rendered fields": _rendered_fields(dag_run),
    }.items():
        assert secret not in text, f"the API secret leaked into the {where}"
