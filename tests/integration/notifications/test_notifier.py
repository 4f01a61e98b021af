"""
ItnioNotifier in real Airflow, against the sandbox.

- Task callbacks (on_failure / on_success / on_retry, and one notifier shared through ``default_args``) and a
  DAG's own on_failure / on_success callbacks: run by ``dag.test()``, which calls them in-process (in production
  task callbacks run in the task's process and DAG callbacks in the DAG processor).
- Deadline Alert callbacks cannot fire in ``dag.test()`` (the scheduler decides a deadline is missed), so they run
  here through the very functions Airflow uses: ``execute_callback`` (executor, ``SyncCallback``) and
  ``CallbackTrigger`` (triggerer, ``AsyncCallback``), with the context shape the scheduler builds.
- A notifier that cannot send: the task's own outcome is untouched, the errors are logged, the secret is not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_itnio.errors import ItnioValidationError
from airflow_provider_itnio.notifications.itnio import ItnioNotifier, send_itnio_notification
from airflow_provider_itnio.sandbox.server import DEFAULT_API_SECRET
from tests.dags.itnio_notifier import ERROR_TEXT
from tests.support.airflow_runs import run_dag, task_states, xcom_value

ON_CALL = ["15550100300", "15550100301"]
NOTIFIER_PATH = f"{ItnioNotifier.__module__}.{ItnioNotifier.__qualname__}"


def _sent(sandbox: Any, path: str) -> list[dict[str, Any]]:
    return [m["body"] for m in sandbox.messages() if m["path"] == path]


def _parameters(body: dict[str, Any]) -> list[str]:
    [component] = body["template"]["components"]
    assert component["type"] == "body"
    return [p["text"] for p in component["parameters"]]


# -- task and DAG callbacks through dag.test() -------------------------------------------------------------


def test_on_failure_callback_sends_the_rendered_template_to_every_recipient(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_notify_task_failure")
    assert task_states(dag_run) == {"export": ("failed", 1)}
    alerts = _sent(airflow_sandbox, "/wa/template/sendMsg")
    assert [a["recipient"] for a in alerts] == ON_CALL
    for alert in alerts:
        assert alert["template"]["name"] == "task_failed"
        assert alert["template"]["language"] == {"code": "en_US"}
        # dag id, task id, the exception's text put on one line (WhatsApp refuses newlines in parameters)
        assert _parameters(alert) == ["itnio_notify_task_failure", "export", f"{ERROR_TEXT} (line two of the error)"]
    assert len(airflow_sandbox.messages()) == 2


def test_on_success_callback_sends_text_rendered_with_the_task_context(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_notify_task_success")
    assert task_states(dag_run) == {"thank_you": ("success", 1)}
    customer, sales = airflow_sandbox.messages()
    message_id = xcom_value(dag_run, "thank_you")
    assert customer["messageId"] == message_id
    assert sales["body"]["recipient"] == "15550100400"  # a templated recipient, from params
    assert sales["body"]["text"] == {"body": f"thank_you of itnio_notify_task_success sent {message_id}"}


def test_on_retry_callback_sends_for_the_retry_only(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_notify_task_retry")
    assert task_states(dag_run) == {"export": ("success", 2)}
    [alert] = airflow_sandbox.messages()
    assert alert["body"]["recipient"] == ON_CALL[0]
    assert alert["body"]["text"] == {"body": "Retrying export (try 1): the export was still running"}


@pytest.mark.parametrize(
    ("fail", "state", "recipients", "ending"),
    [(True, "failed", ON_CALL, "failed: task_failure"), (False, "success", ON_CALL[:1], "succeeded")],
)
def test_dag_level_callbacks(airflow_sandbox: Any, fail: bool, state: str, recipients: list[str], ending: str) -> None:
    dag_run = run_dag("itnio_notify_dag_callbacks", conf={"fail": fail})
    assert str(dag_run.state) == state
    texts = _sent(airflow_sandbox, "/wa/custom/sendMsg")
    assert [t["recipient"] for t in texts] == recipients
    assert {t["text"]["body"] for t in texts} == {f"Run {dag_run.run_id} of itnio_notify_dag_callbacks {ending}"}


def test_one_notifier_shared_by_tasks_renders_afresh_for_each(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_notify_shared")
    assert task_states(dag_run) == {"first": ("failed", 1), "second": ("failed", 1)}
    alerts = _sent(airflow_sandbox, "/wa/template/sendMsg")
    assert sorted((a["recipient"], _parameters(a)[1]) for a in alerts) == [
        (ON_CALL[0], "first"),
        (ON_CALL[0], "second"),
        (ON_CALL[1], "first"),
        (ON_CALL[1], "second"),
    ]


def test_a_notifier_that_cannot_send_leaves_the_outcome_and_logs_without_the_secret(
    airflow_sandbox: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    # the failure alert goes to three phones: the first meets -68, the second a dropped connection
    airflow_sandbox.fail_next(1, api_status="-68", reason="insufficient balance")
    airflow_sandbox.fail_next(1, drop=True)
    dag_run = run_dag("itnio_notify_send_fails")
    assert task_states(dag_run) == {"export": ("failed", 1), "report": ("success", 1)}
    assert xcom_value(dag_run, "report") == "exported 42 rows"
    requests = airflow_sandbox.requests()
    assert [r["body"]["recipient"] for r in requests] == [*ON_CALL, "15550100302"]  # each tried once
    assert requests[0]["status"] == "-68"
    # the third phone still got the alert; the report's notifier failed validation, so it sent nothing
    [delivered] = airflow_sandbox.messages()
    assert delivered["body"]["recipient"] == "15550100302"
    assert _parameters(delivered["body"])[:2] == ["itnio_notify_send_fails", "export"]
    captured = capfd.readouterr()
    logged = captured.out + captured.err
    assert f"itniotech notification to {ON_CALL[0]} not sent: itniotech API error -68" in logged
    assert f"itniotech notification to {ON_CALL[1]} not sent: The message to {ON_CALL[1]} may have been" in logged
    assert "itniotech notification not sent: recipient: a number that can exist" in logged
    assert DEFAULT_API_SECRET not in logged


# -- Deadline Alerts (Airflow 3): the executor's and the triggerer's way of running a callback -----------------


def _deadline_kwargs() -> dict[str, Any]:
    context = {  # what the scheduler puts in a missed deadline's callback kwargs
        "dag_run": {"dag_id": "nightly_export", "run_id": "scheduled__2026-01-01"},
        "deadline": {"id": "0001", "deadline_time": "2026-01-01T07:00:00+00:00"},
    }
    return {
        "recipients": ON_CALL,
        "template_name": "run_late",
        "language": "en",
        "body_parameters": ["{{ dag_run.dag_id }}", "{{ deadline.deadline_time }}"],
        "context": context,
    }


def _check_deadline_alerts(sandbox: Any) -> None:
    alerts = _sent(sandbox, "/wa/template/sendMsg")
    assert [a["recipient"] for a in alerts] == ON_CALL
    assert all(_parameters(a) == ["nightly_export", "2026-01-01T07:00:00+00:00"] for a in alerts)


def test_deadline_sync_callback_as_the_executor_runs_it(airflow_sandbox: Any) -> None:
    pytest.importorskip("airflow.sdk.definitions.deadline")
    import structlog  # Airflow 3 only, like the callback supervisor
    from airflow.sdk.definitions.callback import SyncCallback
    from airflow.sdk.execution_time.callback_supervisor import execute_callback

    callback = SyncCallback(ItnioNotifier, kwargs={k: v for k, v in _deadline_kwargs().items() if k != "context"})
    assert callback.path == NOTIFIER_PATH
    ok, error = execute_callback(
        NOTIFIER_PATH, _deadline_kwargs(), Path("x.py"), Path("/nonexistent"), structlog.get_logger("test")
    )
    assert (ok, error) == (True, None)
    _check_deadline_alerts(airflow_sandbox)


def test_deadline_async_callback_as_the_triggerer_runs_it(airflow_sandbox: Any) -> None:
    pytest.importorskip("airflow.sdk.definitions.deadline")
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.triggers.callback import CallbackTrigger

    AsyncCallback(ItnioNotifier, kwargs={"recipients": ON_CALL, "text": "late"})  # accepted as awaitable

    async def run() -> list[Any]:
        return [event async for event in CallbackTrigger(NOTIFIER_PATH, _deadline_kwargs()).run()]

    events = asyncio.run(run())
    assert str(events[-1].payload["state"]) == "success", events
    _check_deadline_alerts(airflow_sandbox)


def test_deadline_async_callback_whose_template_cannot_be_rendered_is_logged_not_raised(
    sandbox: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """Airflow's runner of the awaited path: a broken template is the notifier's error, logged; the trigger succeeds."""
    pytest.importorskip("airflow.sdk.definitions.deadline")
    from airflow.triggers.callback import CallbackTrigger

    kwargs = {**_deadline_kwargs(), "body_parameters": ["{{ dag_run.dag_id "]}  # unclosed: cannot be rendered

    async def run() -> list[Any]:
        return [event async for event in CallbackTrigger(NOTIFIER_PATH, kwargs).run()]

    events = asyncio.run(run())
    assert str(events[-1].payload["state"]) == "success", events
    assert sandbox.requests() == []
    captured = capfd.readouterr()
    assert "itniotech notification not sent: unexpected end of template" in captured.out + captured.err


def _await_in_an_event_loop(notifier: ItnioNotifier) -> None:
    async def main() -> None:
        await notifier

    asyncio.run(main())


@pytest.mark.parametrize(
    ("field", "broken"),
    [
        ("text", "{{ dag_run.dag_id "),  # a syntax error
        ("text", "{{ dag_run.dag_id.upper( }}"),
        ("recipients", "{{ dag_run.no_such_key.x }}"),  # undefined (StrictUndefined)
    ],
)
def test_an_awaited_notifier_whose_template_cannot_be_rendered_logs_and_does_not_raise(
    sandbox: Any, capfd: pytest.CaptureFixture[str], field: str, broken: str
) -> None:
    pytest.importorskip("airflow.sdk.definitions.deadline")  # Airflow 2's notifiers are not awaitable
    kwargs: dict[str, Any] = {"recipients": ON_CALL, "text": "Run {{ dag_run.dag_id }} is late", field: broken}
    notifier = ItnioNotifier(**kwargs, context=_deadline_kwargs()["context"])
    _await_in_an_event_loop(notifier)  # no exception
    assert sandbox.requests() == []
    captured = capfd.readouterr()
    assert "itniotech notification not sent: " in captured.out + captured.err


def test_an_awaited_notifier_whose_sends_fail_logs_and_does_not_raise(
    sandbox: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("airflow.sdk.definitions.deadline")
    sandbox.fail_next(1, api_status="-68", reason="insufficient balance")
    sandbox.fail_next(1, drop=True)
    notifier = ItnioNotifier(
        recipients=ON_CALL, text="Run {{ dag_run.dag_id }} is late", context=_deadline_kwargs()["context"]
    )
    _await_in_an_event_loop(notifier)  # no exception
    assert [r["body"]["recipient"] for r in sandbox.requests()] == ON_CALL
    assert sandbox.messages() == []
    assert notifier.sent == {} and set(notifier.failed) == set(ON_CALL)
    captured = capfd.readouterr()
    logged = captured.out + captured.err
    assert f"itniotech notification to {ON_CALL[0]} not sent: itniotech API error -68" in logged
    assert f"itniotech notification to {ON_CALL[1]} not sent: " in logged
    assert DEFAULT_API_SECRET not in logged
    # async_notify on its own (the method Airflow documents for the triggerer) does not raise either
    sandbox.fail_next(1, api_status="-68", reason="insufficient balance")
    asyncio.run(notifier.async_notify({}))
    assert list(notifier.failed) == [ON_CALL[0]] and list(notifier.sent) == [ON_CALL[1]]


def test_a_called_notifier_whose_template_cannot_be_rendered_logs_and_does_not_raise(
    sandbox: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    notifier = ItnioNotifier(recipients=ON_CALL, text="{{ dag_run.dag_id ")
    notifier({"dag": None, "dag_run": {"dag_id": "nightly_export"}})  # no exception (the sync path)
    assert sandbox.requests() == []
    captured = capfd.readouterr()
    assert "itniotech notification not sent: unexpected end of template" in captured.out + captured.err


def test_sla_miss_callback_on_airflow_2(airflow_sandbox: Any) -> None:
    """Airflow 2 calls ``sla_miss_callback(dag, task_list, blocking_task_list, slas, blocking_tis)``."""
    import airflow

    if not airflow.__version__.startswith("2."):
        pytest.skip("Airflow 3 has no SLA callbacks (Deadline Alerts replace them; tested above)")
    from airflow.models.dagbag import DagBag

    from tests.support.airflow_home import DAGS_FOLDER

    dag = DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False).get_dag("itnio_followup")
    notifier = ItnioNotifier(
        recipients=ON_CALL,
        template_name="sla_missed",
        language="en_US",
        body_parameters=["{{ dag.dag_id }}", "{{ task_list }}"],
    )
    notifier(dag, "thank_you\ninvoice", "", [], [])
    alerts = _sent(airflow_sandbox, "/wa/template/sendMsg")
    assert [a["recipient"] for a in alerts] == ON_CALL
    assert all(_parameters(a) == ["itnio_followup", "thank_you invoice"] for a in alerts)


# -- arguments -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, "exactly one of text"),
        ({"text": "x", "template_name": "t", "language": "en"}, "exactly one of text"),
        ({"template_name": "task_failed"}, "needs language"),
        ({"text": "x", "body_parameters": ["a"]}, "only goes with template_name"),
    ],
)
def test_wrong_arguments_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ItnioNotifier(recipients="15550100300", **kwargs)


def test_static_values_are_validated_when_the_dag_is_parsed() -> None:
    with pytest.raises(ItnioValidationError, match="recipient"):
        ItnioNotifier(recipients=["15550100300", "12"], text="x")
    with pytest.raises(ItnioValidationError, match=r"template\.name"):
        send_itnio_notification(recipients="15550100300", template_name="Task Failed", language="en")
    # templated values wait for the callback
    ItnioNotifier(recipients="{{ params.phone }}", text="{{ exception }}")


def test_recipients_and_parameters_are_normalised() -> None:
    notifier = ItnioNotifier(
        recipients=["+1 555 010 0300; 15550100301", 15550100300],
        template_name="task_failed",
        language="en_US",
        body_parameters=["", "a\n\tb", "x" * 300],
    )
    assert notifier._recipient_list() == ON_CALL
    parameters = notifier.build_message().to_payload()["template"]["components"][0]["parameters"]
    assert [p["text"] for p in parameters] == ["-", "a b", "x" * 197 + "..."]
