"""
Sending inside or outside the 24-hour window: ``fallback_template``, through a real API server with the receiver.

One module-wide setup: a sandbox that pushes (statuses and simulated customers' messages) to a real
``airflow api-server`` serving the receiver, on the session's Airflow database. The connection ``itnio_window``
points at that sandbox for sending and carries the ``webhook_token`` and the ``receiver_url`` (the API server) that
workers use to read windows; ``itnio_window_unreachable`` is the same with a ``receiver_url`` nothing listens on.
DAGs (``tests/dags/itnio_window_dags.py``) run through real Airflow (``dag.test()``): the tasks reach the API server
over HTTP, as a worker does.

What decides the expectations: the spec's rule that session messages are allowed only within 24 hours of the
customer's last message to that business number (the sandbox enforces it with a ``failed`` 131047 push), and the
issue's contract (``sent_kind`` XCom, the batch result's ``sent_by_kind`` / ``template_recipients``).

On Airflow 2 the receiver does not exist: the server tests skip; the last test checks that ``fallback_template`` is
refused at parse time with an error saying Airflow 3.1+ is needed.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.support.airflow_home import SANDBOX_PHONES
from tests.support.airflow_runs import run_dag, task_states, xcom_value
from tests.support.window import AIRFLOW_2, CONN_ID, UNREACHABLE_CONN_ID, WAIT, Env, needs_airflow_3

TEMPLATE_PATH = "/wa/template/sendMsg"
CUSTOM_PATH = "/wa/custom/sendMsg"


def template_of(message: dict[str, Any]) -> tuple[str, list[str]]:
    """Return a sent template's name and its body parameters' texts."""
    template = message["body"]["template"]
    texts = [
        parameter["text"]
        for component in template.get("components", [])
        if component["type"] == "body"
        for parameter in component["parameters"]
    ]
    return template["name"], texts


def xcom(dag_run: Any, task_id: str, key: str) -> Any:
    return dag_run.get_task_instance(task_id).xcom_pull(task_ids=task_id, key=key)


# -- single operators ---------------------------------------------------------------------------------------


@pytest.mark.api_server
@needs_airflow_3
def test_an_open_window_sends_the_session_message(env: Env, capfd: pytest.CaptureFixture[str]) -> None:
    customer = "15550400001"
    env.customer_writes(customer)
    dag_run = run_dag("itnio_window_single", conf={"recipient": customer, "name": "Ada"})
    assert task_states(dag_run) == {
        "text": ("success", 1),
        "buttons": ("success", 1),
        "generic_template": ("success", 1),
    }
    sent = {m["messageId"]: m for m in env.sent_to(customer)}
    text, buttons, template = (sent[xcom_value(dag_run, task)] for task in ("text", "buttons", "generic_template"))
    assert (text["path"], text["body"]["type"], text["body"]["text"]["body"]) == (
        CUSTOM_PATH,
        "text",
        "Your order shipped, Ada.",
    )
    assert (buttons["path"], buttons["body"]["type"]) == (CUSTOM_PATH, "interactive")
    assert template["path"] == TEMPLATE_PATH
    assert [xcom(dag_run, task, "sent_kind") for task in ("text", "buttons", "generic_template")] == [
        "session",
        "session",
        "template",  # the message is a template: the window is not asked about
    ]
    logged = "".join(capfd.readouterr())
    assert f"{customer} wrote to {env.sandbox.business_phone} in the last 24 hours: sending the session" in logged
    assert env.token not in logged


@pytest.mark.api_server
@needs_airflow_3
def test_a_closed_window_sends_the_fallback_template(env: Env, capfd: pytest.CaptureFixture[str]) -> None:
    customer = "15550400002"  # never wrote
    before = env.window_requests()
    dag_run = run_dag("itnio_window_single", conf={"recipient": customer, "name": "Bea"})
    assert task_states(dag_run) == {
        "text": ("success", 1),
        "buttons": ("success", 1),
        "generic_template": ("success", 1),
    }
    sent = {m["messageId"]: m for m in env.sent_to(customer)}
    assert len(sent) == 3 and {m["path"] for m in sent.values()} == {TEMPLATE_PATH}  # no session message at all
    assert template_of(sent[xcom_value(dag_run, "text")]) == ("order_update", ["Bea"])  # rendered: {{ params.name }}
    assert template_of(sent[xcom_value(dag_run, "buttons")]) == ("delivery_check", [])
    assert [xcom(dag_run, task, "sent_kind") for task in ("text", "buttons")] == ["template", "template"]
    logged = "".join(capfd.readouterr())
    assert (
        f"No message from {customer} to {env.sandbox.business_phone} in the last 24 hours (the window is closed): "
        "sending the fallback template 'order_update' instead of the Text message"
    ) in logged
    assert "sending the fallback template 'delivery_check' instead of the ReplyButtons message" in logged
    # two session operators asked once each (the template operator did not ask)
    deadline = time.monotonic() + WAIT
    while env.window_requests()[0] - before[0] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert env.window_requests()[0] - before[0] == 2


@pytest.mark.api_server
@needs_airflow_3
def test_a_window_older_than_24_hours_is_closed(env: Env) -> None:
    from airflow_provider_itnio.webhook.models import inbound_message_table

    customer = "15550400003"
    env.customer_writes(customer)
    with env.engine.begin() as connection:
        connection.execute(
            sa.update(inbound_message_table)
            .where(inbound_message_table.c.from_phone == customer)
            .values(
                received_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=24, minutes=1),
                written_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=24, minutes=1),
            )
        )
    dag_run = run_dag("itnio_window_single", conf={"recipient": customer, "name": "Cy"})
    assert xcom(dag_run, "text", "sent_kind") == "template"
    assert {m["path"] for m in env.sent_to(customer)} == {TEMPLATE_PATH}


@pytest.mark.api_server
@needs_airflow_3
def test_an_unreachable_receiver_fails_before_sending_unless_told_to_send_the_template(
    env: Env, capfd: pytest.CaptureFixture[str]
) -> None:
    customer = "15550400009"
    dag_run = run_dag("itnio_window_unreachable", conf={"recipient": customer, "name": "Bo"})
    assert task_states(dag_run) == {"fail": ("failed", 1), "template_anyway": ("success", 1)}
    [sent] = env.sent_to(customer)  # only the task told to send the template anyway sent anything
    assert sent["messageId"] == xcom_value(dag_run, "template_anyway")
    assert template_of(sent) == ("order_update", ["Bo"])
    assert xcom(dag_run, "template_anyway", "sent_kind") == "template"
    assert xcom(dag_run, "fail", "sent_kind") is None
    logged = "".join(capfd.readouterr())
    assert (
        f"Not sent: the 24-hour window could not be read from the itnio receiver of connection '{UNREACHABLE_CONN_ID}'"
    ) in logged
    assert "window_unknown='template'" in logged
    assert env.token not in logged


def push_inbound(env: Env, customer: str, timestamp: int) -> float:
    """
    Push a customer's message whose ``timestamp`` (when they wrote, as the vendor says) is given, as a vendor
    re-push or a backlog delivers it; return the Unix time just before the push was sent.
    """
    app_id = json.loads(env.sandbox.conn_json())["extra"]["app_id"]
    body = {
        "appId": app_id,
        "channelType": 0,
        "messageId": secrets.token_hex(16),
        "timestamp": timestamp,
        "eventType": "up-message-event",
        "businessPhone": env.sandbox.business_phone,
        "from": {"phone": customer, "name": "Re"},
        "message": {"type": "text", "text": {"body": "Where is my order?"}},
    }
    before = time.time()
    answer = requests.post(f"{env.base_url}/itnio/webhook/{CONN_ID}/{env.token}", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return before


def at(iso: str | None) -> float:
    """Return an ISO 8601 time of the read API as Unix seconds."""
    assert iso is not None
    return datetime.datetime.fromisoformat(iso).timestamp()


@pytest.mark.api_server
@needs_airflow_3
def test_the_window_counts_from_when_the_customer_wrote_not_from_when_the_push_arrived(env: Env) -> None:
    """
    A message pushed late (the vendor re-pushes after 1, 3 and 5 minutes; a backlog holds pushes longer) opens the
    window from the push's ``timestamp``: a customer who wrote 24 h 4 min ago, pushed now, has a closed window
    (counted from the arrival, it stayed open for 24 more hours, and the session message failed with 131047). A
    ``timestamp`` that cannot be the customer's time (later than the arrival, or older than any delivery delay)
    gives way to the arrival time.
    """
    from airflow_provider_itnio.webhook.client import ItnioReceiverClient
    from airflow_provider_itnio.webhook.store import MAX_PUSH_DELAY

    now = int(time.time())
    backlog, repushed, future, nonsense = "15550400301", "15550400302", "15550400303", "15550400304"
    wrote_backlog = now - 24 * 3600 - 4 * 60
    wrote_repushed = now - 9 * 60  # the third re-push of a message written 9 minutes ago
    push_inbound(env, backlog, wrote_backlog)
    push_inbound(env, repushed, wrote_repushed)
    future_pushed = push_inbound(env, future, now + 2 * 3600)  # the vendor's clock is wrong: not believable
    nonsense_pushed = push_inbound(env, nonsense, now - int(MAX_PUSH_DELAY.total_seconds()) - 3600)
    after = time.time()

    client = ItnioReceiverClient(CONN_ID)
    business = env.sandbox.business_phone
    windows = client.windows(business, [backlog, repushed, future, nonsense])
    assert windows == {
        phone: {k: v for k, v in client.window(business, phone).items() if k in windows[phone]} for phone in windows
    }  # the bulk read answers as the single one
    assert (windows[backlog]["open"], at(windows[backlog]["last_inbound_at"])) == (False, wrote_backlog)
    assert windows[repushed]["open"] is True
    assert at(windows[repushed]["last_inbound_at"]) == wrote_repushed
    assert at(windows[repushed]["closes_at"]) == wrote_repushed + 24 * 3600
    for phone, pushed in ((future, future_pushed), (nonsense, nonsense_pushed)):
        assert windows[phone]["open"] is True
        assert pushed - 1 <= at(windows[phone]["last_inbound_at"]) <= after + 1  # the arrival

    # What a DAG sends: the template to the customer whose message was delivered from the backlog.
    dag_run = run_dag("itnio_window_single", conf={"recipient": backlog, "name": "Lu"})
    assert xcom(dag_run, "text", "sent_kind") == "template"
    assert {m["path"] for m in env.sent_to(backlog)} == {TEMPLATE_PATH}


@pytest.mark.api_server
@needs_airflow_3
def test_a_misconfigured_receiver_url_is_a_permanent_window_error_naming_the_url(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The window lookup against a real API server at a path no plugin serves (``POST .../windows`` gives 405) or
    behind a login redirect used to be a retryable error: it is permanent (the operators fail without retry) and
    names the URL; a busy receiver (503) stays retryable.
    """
    from airflow_provider_itnio.window import ItnioWindowUnknownError, WindowChooser
    from tests.support.misconfigured import FixedAnswerServer

    def chooser(receiver_url: str) -> WindowChooser:
        extra = {"webhook_token": env.token, "receiver_url": receiver_url}
        monkeypatch.setenv("AIRFLOW_CONN_ITNIO_WINDOW_ELSEWHERE", json.dumps({"conn_type": "itnio", "extra": extra}))
        return WindowChooser("itnio_window_elsewhere")

    wrong_path = f"{env.base_url}/not-here"
    with pytest.raises(ItnioWindowUnknownError) as caught:
        chooser(wrong_path).kind(env.sandbox.business_phone, "15550400311")
    assert caught.value.permanent
    assert f"POST {wrong_path}/itnio/api/itnio_window_elsewhere/windows" in str(caught.value)
    assert "405 Method Not Allowed" in str(caught.value)
    with FixedAnswerServer(302, headers={"Location": "https://sso.example.com/login"}) as login:
        with pytest.raises(
            ItnioWindowUnknownError, match=re.escape("302 Found to https://sso.example.com/login")
        ) as caught:
            chooser(login.base_url).kind(env.sandbox.business_phone, "15550400311")
        assert caught.value.permanent
    with FixedAnswerServer(503, b"busy") as busy:
        with pytest.raises(ItnioWindowUnknownError, match="503 Service Unavailable") as caught:
            chooser(busy.base_url).kind(env.sandbox.business_phone, "15550400311")
        assert not caught.value.permanent  # transient: the task's retries apply
    assert env.token not in str(caught.value)


# -- the batch ------------------------------------------------------------------------------------------------


@pytest.mark.api_server
@needs_airflow_3
def test_a_batch_sends_each_row_what_its_window_allows_with_bulk_reads(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow_provider_itnio.window as window

    monkeypatch.setattr(window, "WINDOW_CHUNK", 2)  # 5 distinct recipients: 3 bulk reads
    wrote, other_business, never, stale = "15550400101", "15550400102", "15550400103", "15550400104"
    wrote_too = "15550400105"
    env.customer_writes(wrote)
    env.customer_writes(wrote_too)
    env.customer_writes(other_business, business_phone=SANDBOX_PHONES[1])  # wrote, but to another number
    rows = [
        {"recipient": wrote, "name": "Ann"},
        {"recipient": other_business, "name": "Ben"},
        {"recipient": never, "name": "Cid"},
        {"recipient": "+1 555 040 0101", "name": "Ann again"},  # a duplicate of the first row
        {"recipient": stale, "name": "Dee"},
        {"recipient": wrote_too, "name": "Eve"},
    ]
    before = env.window_requests()
    dag_run = run_dag("itnio_window_batch", conf={"rows": rows})
    assert task_states(dag_run) == {"campaign": ("success", 1)}
    result = xcom_value(dag_run, "campaign")
    assert (result["sent"], result["duplicates"], result["failed"]) == (5, 1, 0)
    assert result["sent_by_kind"] == {"session": 2, "template": 3}
    assert sorted(result["template_recipients"]) == sorted([other_business, never, stale])

    sent = {
        m["body"]["recipient"]: m for m in env.sandbox.messages() if m["messageId"] in result["message_ids"].values()
    }
    assert sent[wrote]["body"]["text"]["body"] == "Hi Ann, your order shipped."
    assert sent[wrote_too]["path"] == CUSTOM_PATH
    for who, name in ((other_business, "Ben"), (never, "Cid"), (stale, "Dee")):
        assert template_of(sent[who]) == ("order_update", [name])  # {{ row.name }} rendered per row

    deadline = time.monotonic() + WAIT
    while env.window_requests()[0] - before[0] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(0.5)
    assert (env.window_requests()[0] - before[0], env.window_requests()[1] - before[1]) == (3, 0)


# -- the bulk endpoint ---------------------------------------------------------------------------------------


@pytest.mark.api_server
@needs_airflow_3
def test_the_bulk_window_endpoint_answers_each_recipient_and_bounds_the_list(env: Env) -> None:
    from airflow_provider_itnio.webhook.client import MAX_WINDOW_RECIPIENTS, ItnioReceiverClient

    customer = "15550400201"
    env.customer_writes(customer)
    url = f"{env.base_url}/itnio/api/{CONN_ID}/windows"
    headers = {"Authorization": f"Bearer {env.token}"}
    business = env.sandbox.business_phone
    answer = requests.post(
        url, json={"business_phone": business, "recipients": ["+1 555 040 0201", "15550400202"]}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    windows = answer.json()["windows"]
    assert set(windows) == {customer, "15550400202"}
    assert windows[customer]["open"] is True and windows[customer]["closes_at"] is not None
    assert windows["15550400202"] == {"last_inbound_at": None, "open": False, "closes_at": None}
    single = requests.get(
        f"{env.base_url}/itnio/api/{CONN_ID}/window",
        params={"business_phone": business, "recipient": customer},
        headers=headers,
    ).json()
    assert single["last_inbound_at"] == windows[customer]["last_inbound_at"]  # the same answer as the single read

    too_many = [f"1555050{i:04d}" for i in range(MAX_WINDOW_RECIPIENTS + 1)]
    refused = requests.post(url, json={"business_phone": business, "recipients": too_many}, headers=headers)
    assert (refused.status_code, refused.json()["field"]) == (400, "recipients")
    bad = requests.post(url, json={"business_phone": business, "recipients": [customer, "12"]}, headers=headers)
    assert (bad.status_code, bad.json()["field"]) == (400, "recipients[1]")
    wrong = requests.post(url, json={"business_phone": business, "recipients": [customer]}, headers={})
    assert wrong.status_code == 404

    # the client chunks a longer list into requests of at most MAX_WINDOW_RECIPIENTS
    before = env.window_requests()[0]
    answered = ItnioReceiverClient(CONN_ID).windows(business, [customer, *too_many])
    assert len(answered) == MAX_WINDOW_RECIPIENTS + 2 and answered[customer]["open"] is True
    deadline = time.monotonic() + WAIT
    while env.window_requests()[0] - before < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)


# -- parse time ----------------------------------------------------------------------------------------------


def _import_errors(tmp_path: Path, source: str) -> dict[str, str]:
    """Parse a DAG file in its own folder (a subprocess: a fresh DagBag) and return its import errors."""
    dag_file = tmp_path / "itnio_window_broken.py"
    dag_file.write_text(textwrap.dedent(source))
    script = textwrap.dedent(
        f"""
        import json
        try:
            from airflow.dag_processing.dagbag import DagBag
            options = {{}}
        except ImportError:  # Airflow 2
            from airflow.models.dagbag import DagBag
            options = {{"include_examples": False}}
        bag = DagBag(dag_folder={str(tmp_path)!r}, **options)
        print(json.dumps({{k.rsplit("/", 1)[-1]: v for k, v in bag.import_errors.items()}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy(), timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    errors: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return errors


_BROKEN_DAG = """
    import pendulum
    from airflow.providers.common.compat.sdk import DAG
    from airflow_provider_itnio.operators import ItnioSendTextOperator

    with DAG("itnio_window_broken", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        ItnioSendTextOperator(
            task_id="text",
            recipient="15550400001",
            body="Hi",
            fallback_template=FALLBACK,
        )
"""


@needs_airflow_3
@pytest.mark.parametrize(
    ("fallback", "field"),
    [
        ('{"template": {"name": "Order Update", "language": {"code": "en_US"}}}', "fallback_template.template.name"),
        ('{"type": "text", "text": {"body": "not a template"}}', "fallback_template"),
    ],
)
def test_a_static_invalid_fallback_is_a_dag_import_error_naming_the_field(
    airflow_db: Path, tmp_path: Path, fallback: str, field: str
) -> None:
    errors = _import_errors(tmp_path, _BROKEN_DAG.replace("FALLBACK", fallback))
    [error] = errors.values()
    assert field in error, error


@pytest.mark.skipif(not AIRFLOW_2, reason="Airflow 3.1+ has the receiver")
def test_on_airflow_2_a_fallback_template_is_refused_at_parse_time(airflow_db: Path, tmp_path: Path) -> None:
    errors = _import_errors(
        tmp_path, _BROKEN_DAG.replace("FALLBACK", '{"template": {"name": "ok", "language": {"code": "en"}}}')
    )
    [error] = errors.values()
    assert "fallback_template needs the itnio webhook receiver" in error
    assert "Airflow 3.1 or later" in error
