from __future__ import annotations
import json
from tests.conftest import run_dag, task_states, xcom_value

def _show(sb):
    for r in sb.requests():
        b = r["body"]
        print(r["path"], r["status"], b.get("recipient"), json.dumps(b.get("text") or b.get("template")))

def test_exp(airflow_db, sandbox):
    for dag_id, conf in [("itnio_notify_task_failure", None), ("itnio_notify_task_success", None), ("itnio_notify_task_retry", None),
                   ("itnio_notify_dag_callbacks", {"fail": True}), ("itnio_notify_dag_callbacks", {"fail": False}), ("itnio_notify_shared", None)]:
        sandbox.clear()
        dr = run_dag(dag_id, conf)
        print("==", dag_id, conf, dr.state, task_states(dr))
        _show(sandbox)
