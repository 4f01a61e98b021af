"""
Human-in-the-loop answered on WhatsApp, end to end through a whole Airflow 3 (API server with the itnio plugin,
scheduler, dag-processor, triggerer: :mod:`tests.airflow_stack`) and the sandbox pushing to the receiver.

DAGs: the examples ``itnio_deploy_gate`` (``HITLBranchOperator``, 3 branches) and ``itnio_refund_approval``
(``ApprovalOperator``), and ``tests/dags/itnio_hitl_timeout.py`` (an approval that times out). The sandbox's
simulated taps quote the message the notifier sent, as WhatsApp's would. Airflow's own HITL record is read through
the REST API the UI uses (``GET .../hitlDetails``), and the UI's answer is its ``PATCH``.

One module fixture starts the stack and triggers the three runs; each test looks at one of them.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_webhook_receiver import AIRFLOW_2, needs_airflow_3

ROOT = Path(__file__).resolve().parents[1]
GATE, REFUND, TIMEOUT = "itnio_deploy_gate", "itnio_refund_approval", "itnio_hitl_timeout"
ON_CALL, MANAGER, LATE, NEVER_WROTE = "15550100200", "15550100300", "15550100500", "15550100600"
#: A second manager whose window is closed: gets the template, then the buttons once they write back.
AWAY = "15550100700"
STRANGER = "15550100999"

pytestmark = [pytest.mark.api_server, pytest.mark.slow, needs_airflow_3]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start a whole Airflow with the HITL DAGs and a sandbox pushing to its receiver; trigger the three runs."""
    if AIRFLOW_2:
        pytest.skip("Human-in-the-loop needs Airflow 3.1+")
    from tests.airflow_stack import receiver_stack

    dags = [ROOT / "dags_examples" / f"{GATE}.py", ROOT / "dags_examples" / f"{REFUND}.py"]
    dags.append(ROOT / "tests" / "dags" / f"{TIMEOUT}.py")
    home = tmp_path_factory.mktemp("itnio-hitl-stack")
    with receiver_stack(home, dags, env={"AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "1"}) as stack:
        sandbox = stack.sandbox
        # The late approver wrote today (the receiver records it): buttons; the other one never did: template.
        for phone in (LATE, MANAGER):
            sandbox.simulate_inbound(phone, "hi")
        for phone in (ON_CALL, STRANGER):  # they wrote today too (only the sandbox knows: no window check)
            sandbox.open_window(phone)
        assert sandbox.wait_for_pushes(30)
        stack.runs = {
            GATE: stack.trigger_dag(GATE, conf={"version": "v9", "on_call": f"+{ON_CALL}"}),
            REFUND: stack.trigger_dag(REFUND, conf={"order": "B-7", "manager": f"+{MANAGER}, +{AWAY}"}),
            TIMEOUT: stack.trigger_dag(TIMEOUT, conf={"approver": f"{LATE}, {NEVER_WROTE}", "job": "late-1"}),
        }
        yield stack


# -- helpers -------------------------------------------------------------------------------------------------


def hitl(stack: Any, dag_id: str, task_id: str) -> dict[str, Any]:
    """Return Airflow's HITL record of the run's task, as the UI reads it."""
    path = f"/dags/{dag_id}/dagRuns/{stack.runs[dag_id]}/taskInstances/{task_id}/-1/hitlDetails"
    answer = stack.api("GET", path)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def to(stack: Any, phone: str) -> list[dict[str, Any]]:
    """Return the bodies of the messages the sandbox accepted for ``phone``, in order, with their ids."""
    return [{**m["body"], "id": m["messageId"]} for m in stack.sandbox.messages() if m["body"]["recipient"] == phone]


def pause_reported(stack: Any, dag_id: str, task_id: str, run_id: str) -> bool:
    """
    Return whether the scheduler has taken the executor's report of the process that paused the task for input.

    An answer recorded before that makes Airflow 3.3's scheduler find the task queued again and fail it ("task
    state changed externally"): Airflow's race, not the provider's. A person never answers within that fraction of
    a second; the receiver records a tap in a few milliseconds, so the tests wait as a person would.
    """
    event = "Received executor event with state success for task instance TaskInstanceKey("
    event += f"dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}'"
    return event in (stack.logs_folder / "scheduler.log").read_text(errors="replace")


def request_to(stack: Any, phone: str, dag_id: str, task_id: str) -> dict[str, Any]:
    """
    Wait until the task waits for an answer, its request reached ``phone`` and the scheduler has taken the report
    of the task's paused process (:func:`pause_reported`); return that message.
    """

    def ready() -> dict[str, Any] | None:
        state = stack.task_instances(dag_id, stack.runs[dag_id]).get(task_id, {}).get("state")
        sent = [body for body in to(stack, phone) if body.get("type") == "interactive"]
        if state != "awaiting_input" or not sent:
            return None
        return sent[0] if pause_reported(stack, dag_id, task_id, stack.runs[dag_id]) else None

    return dict(stack.wait_until(ready, f"{dag_id}.{task_id} awaiting input with its request sent", 120))


def tap(stack: Any, phone: str, **fields: Any) -> None:
    """Push a tap from ``phone`` to the receiver and wait until it answered (the answer follows the recording)."""
    pushed = stack.sandbox.simulate_inbound(phone, **fields)
    assert stack.sandbox.wait_for_pushes(30)
    (push,) = [p for p in stack.sandbox.pushes() if p["kind"] == "inbound" and p["messageId"] == pushed["messageId"]]
    assert (push["outcome"], push["http_status"]) == ("ok", 200), push


def reply_to(stack: Any, phone: str, count: int) -> str:
    """Wait for the ``count``-th text sent to ``phone`` (the receiver's replies go after its HTTP answer)."""
    texts = stack.wait_until(
        lambda: [b["text"]["body"] for b in to(stack, phone) if b.get("type") == "text"][count - 1 :],
        f"reply {count} to {phone}",
        30,
    )
    return str(texts[0])


def button_ids(message: dict[str, Any]) -> dict[str, str]:
    return {b["reply"]["title"]: b["reply"]["id"] for b in message["interactive"]["action"]["buttons"]}


#: Run by :func:`tap_later` in a process configured as the stack's components are (its database, its connection).
_TAP_LATER = """
import datetime, json, sys
from airflow_provider_itnio.events import parse_push
from airflow_provider_itnio.webhook.hitl import handle_tap
event = parse_push(sys.argv[1])
later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=float(sys.argv[2]))
outcome = handle_tap(event, "itnio_default", now=later)
print(json.dumps({"code": outcome.code, "reply": outcome.reply}))
"""


def tap_later(stack: Any, phone: str, button_id: str, title: str, hours: float) -> dict[str, Any]:
    """
    Return what the receiver's tap handling does with a tap arriving ``hours`` from now, run on the stack's database.

    (The scheduler resolves a timed-out task within a second, so a tap between the deadline and that sweep cannot
    be produced by waiting; the handling takes the time of the tap as an argument instead.)
    """
    push = {
        "appId": stack.sandbox.app_id,
        "channelType": 0,
        "messageId": secrets.token_hex(16),
        "timestamp": 1,
        "eventType": "up-message-event",
        "businessPhone": stack.sandbox.business_phone,
        "from": {"phone": phone, "name": "Late"},
        "message": {
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": button_id, "title": title}},
        },
    }
    result = subprocess.run(
        [sys.executable, "-c", _TAP_LATER, json.dumps(push), str(hours)],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


# -- the tests -----------------------------------------------------------------------------------------------


def test_a_tap_resumes_the_gate_and_runs_its_branch_while_strangers_forgeries_and_second_taps_change_nothing(
    stack: Any,
) -> None:
    request = request_to(stack, ON_CALL, GATE, "choose_target")
    assert request["interactive"]["type"] == "button"
    assert request["interactive"]["body"]["text"].startswith(
        "*Deploy v9?*\n\nRelease v9 passed its checks. Where should it go?\n\nOr answer in Airflow: "
        f"{stack.base_url}/dags/{GATE}/runs/"
    )
    ids = button_ids(request)
    assert list(ids) == ["Production", "Staging", "Cancel"]
    waiting = hitl(stack, GATE, "choose_target")
    assert waiting["response_received"] is False

    # The message relayed to another number: its tap is refused (and told so).
    tap(stack, STRANGER, type="button_reply", context=request["id"], reply_title="Production")
    assert "was not sent to you" in reply_to(stack, STRANGER, 1)
    # A made-up id: the Staging button's id edited to say option 0 (Production).
    forged = ids["Staging"].replace(".1.", ".0.", 1)
    tap(stack, ON_CALL, type="button_reply", reply_id=forged, reply_title="Production")
    assert hitl(stack, GATE, "choose_target") == waiting
    assert stack.task_instances(GATE, stack.runs[GATE])["choose_target"]["state"] == "awaiting_input"

    tap(stack, ON_CALL, type="button_reply", context=request["id"], reply_title="Staging")
    assert stack.wait_for_run(GATE, stack.runs[GATE], timeout=120) == "success"
    states = {k: v["state"] for k, v in stack.task_instances(GATE, stack.runs[GATE]).items()}
    assert states == {
        "choose_target": "success",
        "deploy_staging": "success",
        "deploy_production": "skipped",
        "cancel_release": "skipped",
    }
    assert stack.xcom(GATE, stack.runs[GATE], "deploy_staging") == "v9 deployed to staging"
    answered = hitl(stack, GATE, "choose_target")
    assert answered["chosen_options"] == ["Staging"] and answered["params_input"] == {}
    assert answered["responded_by_user"] == {"id": f"whatsapp:+{ON_CALL}", "name": f"+{ON_CALL} (WhatsApp)"}
    assert answered["response_received"] is True and answered["responded_at"]
    assert reply_to(stack, ON_CALL, 1) == "Recorded: Staging for \u201cDeploy v9?\u201d. Thank you."

    tap(stack, ON_CALL, type="button_reply", context=request["id"], reply_title="Production")
    second = reply_to(stack, ON_CALL, 2)
    assert second.startswith(f"\u201cDeploy v9?\u201d was already answered: Staging, by +{ON_CALL} (WhatsApp), at ")
    assert second.endswith("UTC. Your tap changed nothing.")
    assert hitl(stack, GATE, "choose_target") == answered

    # The refusals are in the API server's log, the numbers only as digests.
    from airflow_provider_itnio.webhook.hitl import phone_digest

    lines = [line for line in stack.component_log("api-server").read_text().splitlines() if "itnio HITL" in line]
    logged = "\n".join(lines)
    assert f"refused a tap from {phone_digest(STRANGER)} on a button sent to another number" in logged
    assert f"refused a tap with a forged button id from {phone_digest(ON_CALL)}" in logged
    assert f"refused a second answer from {phone_digest(ON_CALL)}" in logged
    assert STRANGER not in logged and ON_CALL not in logged


def test_an_answer_in_the_ui_still_works_and_a_later_tap_is_refused(stack: Any) -> None:
    request = request_to(stack, MANAGER, REFUND, "approve_refund")
    ids = button_ids(request)
    assert list(ids) == ["Approve", "Reject"]
    waiting = hitl(stack, REFUND, "approve_refund")

    # A tap after the 4-hour response_timeout, before the scheduler's sweep resolved the task: refused.
    late = tap_later(stack, MANAGER, ids["Approve"], "Approve", hours=5)
    assert late["code"] == "closed"
    assert late["reply"].startswith("\u201cRefund B-7?\u201d is no longer waiting for an answer (its time ran out at ")
    assert hitl(stack, REFUND, "approve_refund") == waiting

    # The second manager's window was closed: the template; once they write back, the buttons (signed for them).
    from airflow_provider_itnio.webhook.hitl import PENDING_XCOM_KEY, button_key, parse_button, verify_button

    (template,) = to(stack, AWAY)
    assert template["template"]["name"] == "approval_waiting"
    assert template["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Refund B-7?"}]
    tap(stack, AWAY, text="I'm back, what is it?")
    owed = stack.wait_until(lambda: [b for b in to(stack, AWAY) if b.get("type") == "interactive"], "the buttons", 30)
    assert owed[0]["interactive"]["body"]["text"] == request["interactive"]["body"]["text"]
    key = button_key(stack.webhook_token)
    for title, button_id in button_ids(owed[0]).items():
        parsed = parse_button(button_id)
        assert parsed is not None and verify_button(key, parsed, AWAY) == "ok", title
        assert parsed.ti_id == parse_button(ids[title]).ti_id  # type: ignore[union-attr]
    assert hitl(stack, REFUND, "approve_refund") == waiting
    # Sent once: nobody is owed the buttons any more (and the record holds no number).
    pending = stack.xcom(REFUND, stack.runs[REFUND], "approve_refund", key=PENDING_XCOM_KEY)
    assert pending["recipients"] == {} and pending["conn_id"] == "itnio_default", pending

    path = f"/dags/{REFUND}/dagRuns/{stack.runs[REFUND]}/taskInstances/approve_refund/-1/hitlDetails"
    answer = stack.api("PATCH", path, json={"chosen_options": ["Reject"], "params_input": {}})
    assert answer.status_code == 200, answer.text
    assert stack.wait_for_run(REFUND, stack.runs[REFUND], timeout=120) == "success"
    states = {k: v["state"] for k, v in stack.task_instances(REFUND, stack.runs[REFUND]).items()}
    assert states == {"approve_refund": "success", "pay_refund": "skipped"}
    answered = hitl(stack, REFUND, "approve_refund")
    assert answered["responded_by_user"]["name"] == "admin"

    tap(stack, MANAGER, type="button_reply", context=request["id"], reply_title="Approve")
    reply = reply_to(stack, MANAGER, 1)
    assert reply.startswith("\u201cRefund B-7?\u201d was already answered: Reject, by admin, at "), reply
    assert hitl(stack, REFUND, "approve_refund") == answered


def test_a_tap_after_the_response_timeout_is_refused_and_a_closed_window_gets_the_template(stack: Any) -> None:
    run_id = stack.runs[TIMEOUT]
    assert stack.wait_for_run(TIMEOUT, run_id, timeout=120) == "failed"  # nobody answered: HITLTimeoutError
    assert stack.task_instances(TIMEOUT, run_id)["approve"]["state"] == "failed"
    (request,) = [body for body in to(stack, LATE) if body.get("type") == "interactive"]
    (template,) = to(stack, NEVER_WROTE)
    assert template["template"]["name"] == "approval_waiting"
    assert template["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "Approve job late-1 quickly?"}
    ]
    before = hitl(stack, TIMEOUT, "approve")
    assert before["response_received"] is False

    tap(stack, LATE, type="button_reply", context=request["id"], reply_title="Approve")
    reply = reply_to(stack, LATE, 1)
    assert (
        reply == "\u201cApprove job late-1 quickly?\u201d is no longer waiting for an answer. Your tap changed nothing."
    )
    assert hitl(stack, TIMEOUT, "approve") == before


#: Two approvers' taps on one request handled at once (threads, as the API server's thread pool runs them); both
#: have read "not answered" before either writes (a barrier in :func:`responder`, which runs between the read and
#: the write): the interleaving a real race produces now and then, made to happen every time.
_TAPS_AT_ONCE = """
import json, sys, threading
from airflow_provider_itnio.events import parse_push
from airflow_provider_itnio.webhook import hitl
events = [parse_push(push) for push in json.loads(sys.argv[1])]
barrier = threading.Barrier(len(events))
responder = hitl.responder
def both_have_read(*args):
    barrier.wait(timeout=60)
    return responder(*args)
hitl.responder = both_have_read
outcomes = {}
def handle(event):
    outcomes[event.from_phone] = hitl.handle_tap(event, "itnio_default").code
threads = [threading.Thread(target=handle, args=(event,)) for event in events]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(outcomes))
"""


def test_two_approvers_tapping_at_once_on_sqlite_record_only_the_first_answer(stack: Any) -> None:
    from airflow_provider_itnio.webhook.hitl import parse_button

    run_id = stack.trigger_dag(REFUND, conf={"order": "C-3", "manager": f"+{MANAGER}, +{LATE}"})
    path = f"/dags/{REFUND}/dagRuns/{run_id}/taskInstances/approve_refund/-1/hitlDetails"

    def buttons(phone: str) -> dict[str, str] | None:
        if stack.task_instances(REFUND, run_id).get("approve_refund", {}).get("state") != "awaiting_input":
            return None
        if not pause_reported(stack, REFUND, "approve_refund", run_id):
            return None
        sent = [body for body in to(stack, phone) if "C-3" in json.dumps(body) and body.get("type") == "interactive"]
        return button_ids(sent[0]) if sent else None

    ids = {
        phone: stack.wait_until(lambda p=phone: buttons(p), f"the request to {phone}", 120) for phone in (MANAGER, LATE)
    }
    ti_id = parse_button(ids[MANAGER]["Approve"]).ti_id  # type: ignore[union-attr]
    taps = [(MANAGER, "Approve"), (LATE, "Reject")]
    pushes = [
        {
            "appId": stack.sandbox.app_id,
            "messageId": secrets.token_hex(16),
            "eventType": "up-message-event",
            "businessPhone": stack.sandbox.business_phone,
            "from": {"phone": phone, "name": "Approver"},
            "message": {
                "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": {"id": ids[phone][title], "title": title}},
            },
        }
        for phone, title in taps
    ]
    result = subprocess.run(
        [sys.executable, "-c", _TAPS_AT_ONCE, json.dumps(pushes)],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(outcomes.values()) == ["already_answered", "answered"], outcomes
    (winner,) = [phone for phone, code in outcomes.items() if code == "answered"]
    answer = stack.api("GET", path).json()
    assert answer["chosen_options"] == [dict(taps)[winner]]
    assert answer["responded_by_user"] == {"id": f"whatsapp:+{winner}", "name": f"+{winner} (WhatsApp)"}
    assert stack.wait_for_run(REFUND, run_id, timeout=120) == "success"
    paid = stack.task_instances(REFUND, run_id)["pay_refund"]["state"]
    assert paid == ("success" if dict(taps)[winner] == "Approve" else "skipped")
    assert parse_button(ids[LATE]["Reject"]).ti_id == ti_id  # type: ignore[union-attr]  # both named one request
