"""DAGs for ItnioBatchSendOperator, run against the sandbox by tests/integration/batch/test_operator.py."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, BaseHook, task

from airflow_provider_itnio.messages import Template, Text
from airflow_provider_itnio.operators import ItnioBatchSendOperator

_START = pendulum.datetime(2026, 1, 1, tz="UTC")
_NO_RETRY = {"retries": 0}
_RETRY_ONCE = {"retries": 1, "retry_delay": datetime.timedelta(seconds=0)}
#: Retries that a permanent failure must not spend.
_RETRIES = {"retries": 2, "retry_delay": datetime.timedelta(seconds=0)}


def phones(n: int, start: int = 0) -> list[str]:
    """``n`` distinct valid recipients."""
    return [f"1555020{i:04d}" for i in range(start, start + n)]


#: Rows of the partial-failure DAGs: five good ones and one whose number is too short (-71 client side).
PARTIAL_ROWS: list[Any] = [{"recipient": p, "name": f"N{i}"} for i, p in enumerate(phones(5))]
PARTIAL_ROWS.insert(2, {"recipient": "123", "name": "short"})

#: Rows of the balance DAGs.
BALANCE_ROWS = phones(30, start=100)

#: Rows of the rendering DAG (one name tries to inject a template: it must be sent literally).
RENDER_ROWS = [
    {"recipient": "+1 555 030 0001", "name": "Ada"},
    {"recipient": "15550300002", "name": "{{ 7 * 7 }}"},
]


def _unlimited_balance(context: Any) -> None:
    """on_retry_callback: top up the sandbox (found through the connection) before the retry."""
    import requests

    host = BaseHook.get_connection("itnio_default").host
    requests.post(f"{host}/sandbox/config", json={"balance": None}, timeout=5).raise_for_status()


with DAG("itnio_batch_partial", schedule=None, start_date=_START, default_args=_RETRIES, tags=["test"]):
    ItnioBatchSendOperator(task_id="send", rows=PARTIAL_ROWS, message=Text(body="Hello {{ row.name }}"), concurrency=3)

with DAG("itnio_batch_partial_lenient", schedule=None, start_date=_START, default_args=_RETRIES, tags=["test"]):
    ItnioBatchSendOperator(
        task_id="send",
        rows=PARTIAL_ROWS,
        message=Text(body="Hello {{ row.name }}"),
        concurrency=3,
        fail_on_errors=False,
    )

with DAG("itnio_batch_abort", schedule=None, start_date=_START, default_args=_NO_RETRY, tags=["test"]):
    ItnioBatchSendOperator(task_id="send", rows=BALANCE_ROWS, message=Text(body="Sale!"), concurrency=4)

with DAG("itnio_batch_retry", schedule=None, start_date=_START, default_args=_RETRY_ONCE, tags=["test"]):
    ItnioBatchSendOperator(
        task_id="send",
        rows=BALANCE_ROWS,
        message=Text(body="Sale!"),
        concurrency=4,
        on_retry_callback=_unlimited_balance,
    )

with DAG(
    "itnio_batch_render",
    schedule=None,
    start_date=_START,
    default_args=_NO_RETRY,
    params={"code": "SPRING"},
    tags=["test"],
):

    @task
    def customers() -> list[dict[str, str]]:
        """Stands in for an upstream SQL task: the rows arrive through XCom (and are never Jinja-rendered)."""
        return RENDER_ROWS

    rows = customers()
    ItnioBatchSendOperator(
        task_id="text",
        rows=rows,
        message=Text(body="Hi {{ row.name }}, use {{ params.code }} ({{ recipient }})"),
    )
    ItnioBatchSendOperator(
        task_id="template",
        rows=rows,
        message=Template.with_body_parameters("order_update", "en_US", ["{{ row.name | upper }}", "{{ ds }}"]),
    )

with DAG("itnio_batch_escape", schedule=None, start_date=_START, default_args=_RETRIES, tags=["test"]):
    ItnioBatchSendOperator(
        task_id="send",
        rows=RENDER_ROWS,
        message={"type": "text", "text": {"body": "{{ row.__class__.__mro__[-1].__subclasses__() }}"}},
    )

with DAG("itnio_batch_duplicates", schedule=None, start_date=_START, default_args=_NO_RETRY, tags=["test"]):
    ItnioBatchSendOperator(
        task_id="send",
        rows=["+1 555-040-0001", "15550400001", "1 (555) 040 0002", "15550400002", "15550400003"],
        message=Text(body="Once each"),
    )

#: Rows of the DAGs whose try fails after ``execute()`` returned.
AFTER_EXECUTE_ROWS = phones(20, start=500)


class _FailsAfterExecuteOnTry1(ItnioBatchSendOperator):
    """Stands in for whatever fails a try after execute() returned (post_execute, the XCom push, a kill)."""

    def post_execute(self, context: Any, result: Any = None) -> None:
        if context["ti"].try_number == 1:
            raise RuntimeError("try 1 fails after execute() returned")


with DAG("itnio_batch_after_execute", schedule=None, start_date=_START, default_args=_RETRY_ONCE, tags=["test"]):
    _FailsAfterExecuteOnTry1(task_id="send", rows=AFTER_EXECUTE_ROWS, message=Text(body="Once"), concurrency=4)

#: Rows of the DAG whose try fails after ``execute()`` returned a result with errors: every other row is invalid.
AFTER_EXECUTE_ERROR_ROWS: list[Any] = [row for p in phones(6, start=550) for row in (p, f"12{p[-2:]}")]

with DAG("itnio_batch_after_execute_errors", schedule=None, start_date=_START, default_args=_RETRY_ONCE, tags=["test"]):
    _FailsAfterExecuteOnTry1(
        task_id="send", rows=AFTER_EXECUTE_ERROR_ROWS, message=Text(body="Once"), concurrency=2, fail_on_errors=False
    )

with DAG("itnio_batch_ledgers", schedule=None, start_date=_START, default_args=_NO_RETRY, tags=["test"]):
    ItnioBatchSendOperator(task_id="send", rows=phones(3, start=600), message=Text(body="Daily"))

#: Variable holding the rows of ``itnio_batch_changed_rows`` (the test changes it between two runs of one date).
CHANGED_ROWS_VARIABLE = "itnio_test_changed_rows"

with DAG("itnio_batch_changed_rows", schedule=None, start_date=_START, default_args=_NO_RETRY, tags=["test"]):

    @task
    def audience() -> list[str]:
        """Stands in for an upstream query whose answer changes when the run is cleared and re-run."""
        from airflow.providers.common.compat.sdk import Variable

        return list(json.loads(Variable.get(CHANGED_ROWS_VARIABLE)))

    ItnioBatchSendOperator(task_id="send", rows=audience(), message=Text(body="Hello"))

#: Rows of the DAG whose task is told to stop (on_kill) while it sends.
KILLED_ROWS = phones(60, start=700)


class _KilledWhileSending(ItnioBatchSendOperator):
    """Calls on_kill from another thread once the first message has reached the API, as Airflow does on SIGTERM."""

    def execute(self, context: Any) -> Any:
        import threading
        import time

        import requests

        host = BaseHook.get_connection("itnio_default").host

        def kill_after_first_message() -> None:
            while not requests.get(f"{host}/sandbox/messages", timeout=5).json():
                time.sleep(0.01)
            self.on_kill()

        threading.Thread(target=kill_after_first_message, daemon=True).start()
        return super().execute(context)


with DAG("itnio_batch_killed", schedule=None, start_date=_START, default_args=_NO_RETRY, tags=["test"]):
    _KilledWhileSending(task_id="send", rows=KILLED_ROWS, message=Text(body="Once"), concurrency=2)
