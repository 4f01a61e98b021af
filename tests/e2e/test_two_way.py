"""
Two-way WhatsApp end to end, through a whole Airflow 3 (API server with the itnio plugin, scheduler,
dag-processor, triggerer: :mod:`tests.support.airflow_stack`) and the sandbox pushing to the receiver.

DAGs: the examples ``itnio_reschedule_on_reply.py`` (``itnio_appointment_confirm`` and the reply DAG scheduled on
``inbound_messages("itnio_default", reply_ids="reschedule:*")``), ``itnio_record_failed_statuses`` (scheduled on
``message_status("itnio_default", "failed")``) and ``itnio_invoice_read_or_remind``. Every customer message and
status comes as a real push from the sandbox to the API server's webhook; duplicates are the sandbox's injected
duplicates and the vendor's re-push of the same body.

One module fixture starts the stack; the tests run in order on it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
import requests

from tests.support.paths import ROOT
from tests.support.receiver import AIRFLOW_2, needs_airflow_3

EXAMPLES = ROOT / "dags_examples"
CONFIRM, REPLY = "itnio_appointment_confirm", "itnio_reschedule_on_reply"
FAILED, INVOICE = "itnio_record_failed_statuses", "itnio_invoice_read_or_remind"
PATIENT, UNREACHABLE, PAYER, UNPAID = "15550100200", "15550100800", "15550100300", "15550100400"
#: The reply DAG's asset: the inbound messages narrowed to taps on a ``reschedule:...`` button.
RESCHEDULE_URI = "itnio://itnio_default/inbound?reply_id=reschedule%3A%2A"
FAILED_URI = "itnio://itnio_default/status/failed"
UNDELIVERABLE = "131026 Message undeliverable"

pytestmark = [pytest.mark.api_server, pytest.mark.slow, needs_airflow_3]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start a whole Airflow with the example DAGs and a sandbox pushing to its receiver; wait for the assets."""
    if AIRFLOW_2:
        pytest.skip("The webhook receiver and its assets need Airflow 3.1+")
    from tests.support.airflow_stack import receiver_stack

    home = tmp_path_factory.mktemp("itnio-two-way-stack")
    with receiver_stack(home, [EXAMPLES / f"{name}.py" for name in (REPLY, FAILED, INVOICE)]) as stack:
        for dag_id in (CONFIRM, REPLY, FAILED, INVOICE):
            stack.wait_for_dag(dag_id)
        assert stack.import_errors() == []
        # The receiver records asset events only on assets a parsed DAG uses (active).
        stack.wait_until(
            lambda: (
                stack.rows(
                    "SELECT COUNT(*) AS n FROM asset_active WHERE uri IN (:inbound, :failed)",
                    inbound=RESCHEDULE_URI,
                    failed=FAILED_URI,
                )[0]["n"]
                == 2
            ),
            "the Reschedule taps' and failed-status assets to be active",
        )
        yield stack


# -- helpers -------------------------------------------------------------------------------------------------


def runs(stack: Any, dag_id: str) -> list[dict[str, Any]]:
    """Return the DAG's runs, oldest first (REST API)."""
    answer = stack.api("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "id"})
    answer.raise_for_status()
    return list(answer.json()["dag_runs"])


def finished_runs(stack: Any, dag_id: str, count: int) -> list[dict[str, Any]]:
    """Wait until the DAG has ``count`` runs, all finished; return them, oldest first."""

    def done() -> list[dict[str, Any]] | None:
        found = runs(stack, dag_id)
        return found if len(found) >= count and all(r["state"] in ("success", "failed") for r in found) else None

    found = stack.wait_until(done, f"{count} finished run(s) of {dag_id}", 120, 1.0)
    assert len(found) == count, found
    return list(found)


def upstream_message_ids(stack: Any, dag_id: str, run_id: str) -> list[str]:
    """Return the ``message_id`` of each asset event that started the run (REST API, as the UI shows them)."""
    answer = stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents")
    answer.raise_for_status()
    return [event["extra"]["message_id"] for event in answer.json()["asset_events"]]


def recorded_events(stack: Any, uri: str, message_id: str) -> int:
    """Return how many asset events on ``uri`` name ``message_id``."""
    rows = stack.rows("SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = :uri", uri=uri)
    return sum(1 for row in rows if json.loads(row["extra"]).get("message_id") == message_id)


def written_events(stack: Any, uri: str, message_id: str) -> int:
    """
    Wait until the receiver's writer turned the push of ``message_id`` into an asset event on ``uri``; return how
    many there are (a 200 means the push is committed with its outbox row: the asset event is written just after).
    """
    return int(
        stack.wait_until(lambda: recorded_events(stack, uri, message_id), f"the asset event of {message_id} on {uri}")
    )


def queued(stack: Any, dag_id: str) -> int:
    """Return how many asset events wait to start a run of ``dag_id``."""
    return int(stack.rows("SELECT COUNT(*) AS n FROM asset_dag_run_queue WHERE target_dag_id = :d", d=dag_id)[0]["n"])


def to(stack: Any, phone: str) -> list[dict[str, Any]]:
    """Return the bodies of the messages the sandbox accepted for ``phone``, in order, with their ids."""
    return [{**m["body"], "id": m["messageId"]} for m in stack.sandbox.messages() if m["body"]["recipient"] == phone]


def repush(stack: Any, body: dict[str, Any]) -> None:
    """Push ``body`` again, as the vendor does when it missed the answer: the receiver says it is a duplicate."""
    answer = requests.post(stack.webhook, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["duplicate"] is True


def send_confirmation(stack: Any, phone: str, appointment_id: str) -> str:
    """Run ``itnio_appointment_confirm`` for ``phone``; return the buttons message's id once its pushes are done."""
    run_id = stack.trigger_dag(CONFIRM, conf={"phone": phone, "appointment_id": appointment_id})
    assert stack.wait_for_run(CONFIRM, run_id) == "success"
    assert stack.sandbox.wait_for_pushes(30)
    return str(stack.xcom(CONFIRM, run_id, "ask_keep_or_reschedule"))


# -- the tests -----------------------------------------------------------------------------------------------


def test_a_reschedule_tap_starts_the_reply_dag_once_and_it_answers_in_context_with_the_slots(stack: Any) -> None:
    sandbox = stack.sandbox
    sandbox.open_window(PATIENT)  # the buttons are a session message
    confirmation = send_confirmation(stack, PATIENT, "APT-7")
    (buttons,) = to(stack, PATIENT)
    assert buttons["id"] == confirmation
    assert [b["reply"] for b in buttons["interactive"]["action"]["buttons"]] == [
        {"id": "keep:APT-7", "title": "Keep"},
        {"id": "reschedule:APT-7", "title": "Reschedule"},
    ]

    # The tap, pushed twice by the sandbox (an injected duplicate), then re-pushed as the vendor would.
    sandbox.configure_pushes(duplicate_next=1)
    tap = sandbox.simulate_inbound(PATIENT, type="button_reply", context=confirmation, reply_title="Reschedule")
    assert sandbox.wait_for_pushes(30)
    attempts = [p for p in sandbox.pushes() if p["kind"] == "inbound" and p["messageId"] == tap["messageId"]]
    assert [(p["duplicate"], p["outcome"], p["http_status"]) for p in attempts] == [
        (False, "ok", 200),
        (True, "ok", 200),
    ]
    repush(stack, tap)
    assert written_events(stack, RESCHEDULE_URI, tap["messageId"]) == 1

    (run,) = finished_runs(stack, REPLY, 1)
    assert run["state"] == "success"
    assert upstream_message_ids(stack, REPLY, run["dag_run_id"]) == [tap["messageId"]]
    # The task saw the tap's reply id (the appointment travels in it) and the message to answer in context.
    (request,) = stack.xcom(REPLY, run["dag_run_id"], "reschedule_taps")
    assert request["recipient"] == PATIENT and request["reply_to"] == tap["messageId"]
    assert tap["message"]["interactive"]["button_reply"]["id"] == "reschedule:APT-7"

    # The list arrived at the sandbox, quoting the tap, with the slots of APT-7.
    stack.wait_until(lambda: len(to(stack, PATIENT)) == 2, "the list of slots at the sandbox", 30)
    slots = to(stack, PATIENT)[1]
    assert slots["context"] == {"refMessageId": tap["messageId"]}
    assert slots["interactive"]["type"] == "list"
    rows = [row["id"] for section in slots["interactive"]["action"]["sections"] for row in section["rows"]]
    assert rows == ["APT-7-0900", "APT-7-1100", "APT-7-1400", "APT-7-1630"]
    path = f"/dags/{REPLY}/dagRuns/{run['dag_run_id']}/taskInstances/offer_slots/xcomEntries/return_value"
    sent = stack.api("GET", path, params={"map_index": 0, "deserialize": True})
    assert sent.status_code == 200, sent.text
    assert sent.json()["value"] == slots["id"]  # the mapped send's messageId

    # Later messages the reply DAG does not handle (a Keep tap, a text) start no run: its asset is narrowed to
    # Reschedule taps. They are recorded; the next Reschedule tap starts the next run, with that tap only.
    keep = sandbox.simulate_inbound(PATIENT, type="button_reply", context=confirmation, reply_title="Keep")
    text = sandbox.simulate_inbound(PATIENT, text="Thanks!")
    assert sandbox.wait_for_pushes(30)
    for message in (keep, text):
        stored = "SELECT COUNT(*) AS n FROM itnio_inbound_message WHERE message_id = :m"
        assert stack.rows(stored, m=message["messageId"])[0]["n"] == 1
        assert recorded_events(stack, RESCHEDULE_URI, message["messageId"]) == 0
    again = sandbox.simulate_inbound(PATIENT, type="button_reply", context=confirmation, reply_title="Reschedule")
    assert sandbox.wait_for_pushes(30)
    first, second = finished_runs(stack, REPLY, 2)
    assert first["dag_run_id"] == run["dag_run_id"]
    assert upstream_message_ids(stack, REPLY, second["dag_run_id"]) == [again["messageId"]]
    assert second["state"] == "success"
    assert queued(stack, REPLY) == 0
    stack.wait_until(lambda: len(to(stack, PATIENT)) == 3, "the second list of slots at the sandbox", 30)
    assert to(stack, PATIENT)[2]["context"] == {"refMessageId": again["messageId"]}


def test_a_failed_status_starts_the_failed_status_dag_once_with_the_failure(stack: Any) -> None:
    sandbox = stack.sandbox
    sandbox.set_push_failure(UNREACHABLE, UNDELIVERABLE)
    sandbox.open_window(UNREACHABLE)
    sandbox.configure_pushes(duplicate_next=2)  # "sent" and "failed" each pushed twice
    message_id = send_confirmation(stack, UNREACHABLE, "APT-9")
    failed = [
        p
        for p in sandbox.pushes()
        if p["kind"] == "status" and p["messageId"] == message_id and p["status"] == "failed"
    ]
    assert [(p["duplicate"], p["http_status"]) for p in failed] == [(False, 200), (True, 200)]
    repush(stack, failed[0]["body"])
    assert written_events(stack, FAILED_URI, message_id) == 1

    (run,) = finished_runs(stack, FAILED, 1)
    assert run["state"] == "success"
    assert upstream_message_ids(stack, FAILED, run["dag_run_id"]) == [message_id]
    answer = stack.api("GET", f"/dags/{FAILED}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
    (event,) = answer.json()["asset_events"]
    assert (event["extra"]["recipient"], event["extra"]["failure"]) == (UNREACHABLE, UNDELIVERABLE)
    (written,) = stack.xcom(FAILED, run["dag_run_id"], "record")
    assert {k: written[k] for k in ("message_id", "recipient", "failure")} == {
        "message_id": message_id,
        "recipient": UNREACHABLE,
        "failure": UNDELIVERABLE,
    }
    with closing(sqlite3.connect(stack.home / "itnio_failed_messages.db")) as db:
        table = db.execute("SELECT message_id, recipient, failure FROM failed_messages").fetchall()
    assert table == [(message_id, UNREACHABLE, UNDELIVERABLE)]
    assert queued(stack, FAILED) == 0
    log = stack.task_log(FAILED, run["dag_run_id"], "record")
    assert f"Message {message_id} to {UNREACHABLE} failed: {UNDELIVERABLE}" in log


def test_an_invoice_read_skips_the_reminder_and_one_never_delivered_gets_the_template(stack: Any) -> None:
    sandbox = stack.sandbox
    for phone in (PAYER, UNPAID):
        sandbox.open_window(phone)
    sandbox.set_push_failure(UNPAID, UNDELIVERABLE)  # the sensor sees "failed": soft_fail skips it
    run_ids = {
        phone: stack.trigger_dag(INVOICE, conf={"phone": phone, "invoice": f"INV-{phone[-3:]}", "amount": "EUR 9.00"})
        for phone in (PAYER, UNPAID)
    }  # both at once: the two waits overlap
    for run_id in run_ids.values():
        assert stack.wait_for_run(INVOICE, run_id, timeout=150) == "success"

    read = run_ids[PAYER]
    states = {task: ti["state"] for task, ti in stack.task_instances(INVOICE, read).items()}
    assert states == {"send_invoice": "success", "invoice_read": "success", "remind": "skipped"}
    (invoice,) = to(stack, PAYER)  # the document only: no reminder
    assert invoice["type"] == "document" and invoice["id"] == stack.xcom(INVOICE, read, "send_invoice")
    assert stack.xcom(INVOICE, read, "invoice_read")["status"] == "read"

    unread = run_ids[UNPAID]
    states = {task: ti["state"] for task, ti in stack.task_instances(INVOICE, unread).items()}
    assert states == {"send_invoice": "success", "invoice_read": "skipped", "remind": "success"}
    invoice, reminder = to(stack, UNPAID)
    assert invoice["type"] == "document"
    assert reminder["template"]["name"] == "invoice_reminder"
    assert [p["text"] for p in reminder["template"]["components"][0]["parameters"]] == ["INV-400", "EUR 9.00"]
    assert reminder["id"] == stack.xcom(INVOICE, unread, "remind")
