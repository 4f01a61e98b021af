"""
Human-in-the-loop answered on WhatsApp, end to end through a whole Airflow 3 (API server with the itnio plugin,
scheduler, dag-processor, triggerer: :mod:`tests.support.airflow_stack`) and the sandbox pushing to the receiver.

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
from typing import Any

import pytest

from tests.support.paths import ROOT
from tests.support.receiver import AIRFLOW_2, needs_airflow_3

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
    from tests.support.airflow_stack import receiver_stack

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
from airflow_provider_itnio.webhook.taps import handle_tap
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
    push = {**tap_push(stack, phone, button_id, title), "from": {"phone": phone, "name": "Late"}}
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
    link = f"{stack.base_url}/dags/{GATE}/runs/{stack.runs[GATE]}/tasks/choose_target/required_actions?map_index=-1"
    assert reply_to(stack, ON_CALL, 1) == f"This request can no longer be answered here: {link}"
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
    assert reply_to(stack, ON_CALL, 2) == "Recorded: Staging for \u201cDeploy v9?\u201d. Thank you."

    tap(stack, ON_CALL, type="button_reply", context=request["id"], reply_title="Production")
    second = reply_to(stack, ON_CALL, 3)
    assert second.startswith(f"\u201cDeploy v9?\u201d was already answered: Staging, by +{ON_CALL} (WhatsApp), at ")
    assert second.endswith(f"UTC. Your tap changed nothing.\n\nIn Airflow: {link}")
    assert hitl(stack, GATE, "choose_target") == answered

    # The refusals are in the API server's log, the numbers only as digests.
    from airflow_provider_itnio.webhook.approvals_common import phone_digest

    lines = [line for line in stack.component_log("api-server").read_text().splitlines() if "itnio HITL" in line]
    logged = "\n".join(lines)
    assert f"refused a tap from {phone_digest(STRANGER)} on a button sent to another number" in logged
    assert f"refused a tap from {phone_digest(ON_CALL)} on a button id no key of connection itnio_default" in logged
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
    from airflow_provider_itnio.hitl_buttons import PENDING_XCOM_KEY, button_keys, parse_button, verify_button

    (template,) = to(stack, AWAY)
    assert template["template"]["name"] == "approval_waiting"
    assert template["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Refund B-7?"}]
    tap(stack, AWAY, text="I'm back, what is it?")
    owed = stack.wait_until(lambda: [b for b in to(stack, AWAY) if b.get("type") == "interactive"], "the buttons", 30)
    assert owed[0]["interactive"]["body"]["text"] == request["interactive"]["body"]["text"]
    key = button_keys({}, stack.sandbox.api_secret).signing  # no button_key extra: the API secret's key
    assert key is not None
    for title, button_id in button_ids(owed[0]).items():
        parsed = parse_button(button_id)
        assert parsed is not None and verify_button(key, parsed, AWAY) == "ok", title
        assert parsed.ti_id == parse_button(ids[title]).ti_id  # type: ignore[union-attr]
    assert hitl(stack, REFUND, "approve_refund") == waiting
    # Sent once: nobody is owed the buttons any more (and the record holds no number).
    pending = stack.xcom(REFUND, stack.runs[REFUND], "approve_refund", key=PENDING_XCOM_KEY)
    assert pending["recipients"] == {} and pending["sending"] == {} and pending["conn_id"] == "itnio_default"
    assert pending["sent"] == {next(iter(pending["sent"])): owed[0]["id"]}, pending

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
    link = f"{stack.base_url}/dags/{TIMEOUT}/runs/{run_id}/tasks/approve/required_actions?map_index=-1"
    assert reply == (
        "\u201cApprove job late-1 quickly?\u201d is no longer waiting for an answer. Your tap changed nothing."
        f"\n\nIn Airflow: {link}"
    )
    assert hitl(stack, TIMEOUT, "approve") == before


#: Two approvers' taps on one request handled at once (threads, as the API server's thread pool runs them); both
#: have read "not answered" before either writes (a barrier in :func:`responder`, which runs between the read and
#: the write): the interleaving a real race produces now and then, made to happen every time.
_TAPS_AT_ONCE = """
import json, sys, threading
from airflow_provider_itnio.events import parse_push
from airflow_provider_itnio.webhook import taps
events = [parse_push(push) for push in json.loads(sys.argv[1])]
barrier = threading.Barrier(len(events))
responder = taps.responder
def both_have_read(*args):
    barrier.wait(timeout=60)
    return responder(*args)
taps.responder = both_have_read
outcomes = {}
def handle(event):
    outcomes[event.from_phone] = taps.handle_tap(event, "itnio_default").code
threads = [threading.Thread(target=handle, args=(event,)) for event in events]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(outcomes))
"""


def test_two_approvers_tapping_at_once_on_sqlite_record_only_the_first_answer(stack: Any) -> None:
    from airflow_provider_itnio.hitl_buttons import parse_button

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


# -- issue 15: taps never lost, owed buttons crossed off once sent, rotation, trying it locally ------------------

#: Approvers of the tests below (each test has its own, so that what one sends does not confuse another).
SAVED, KILLED, SWEPT, OWED, OWED_UNKNOWN, ROTATED, TRIED, STALE, LATE_APPLIED = (f"155501008{n}0" for n in range(1, 10))
#: A number no request was sent to, tapping a button id no key signed.
NOBODY = "15550100950"


def request_for(stack: Any, run_id: str, phone: str, order: str) -> dict[str, Any]:
    """
    Wait until the refund ``order``'s task (run ``run_id``) waits for an answer, its buttons reached ``phone`` and the
    scheduler took the report of the paused process (:func:`pause_reported`); return that message.
    """

    def ready() -> dict[str, Any] | None:
        if stack.task_instances(REFUND, run_id).get("approve_refund", {}).get("state") != "awaiting_input":
            return None
        if not pause_reported(stack, REFUND, "approve_refund", run_id):
            return None
        sent = [b for b in to(stack, phone) if b.get("type") == "interactive" and order in json.dumps(b)]
        return sent[0] if sent else None

    return dict(stack.wait_until(ready, f"the request of {order} to {phone}", 120))


def refund_run(stack: Any, phone: str, order: str, *, wrote: bool = True) -> str:
    """Trigger a refund approval asking ``phone`` (who wrote to the business today, unless ``wrote=False``)."""
    if wrote:
        stack.sandbox.simulate_inbound(phone, "hi")
        assert stack.sandbox.wait_for_pushes(30)
    return str(stack.trigger_dag(REFUND, conf={"order": order, "manager": f"+{phone}"}))


def hitl_of(stack: Any, run_id: str) -> dict[str, Any]:
    """Return Airflow's HITL record of the refund run's approval, as the UI reads it."""
    answer = stack.api("GET", f"/dags/{REFUND}/dagRuns/{run_id}/taskInstances/approve_refund/-1/hitlDetails")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def tap_push(stack: Any, phone: str, button_id: str, title: str) -> dict[str, Any]:
    """Return the push of a tap from ``phone`` on the button ``button_id``, as the vendor sends it."""
    return {
        "appId": stack.sandbox.app_id,
        "channelType": 0,
        "messageId": secrets.token_hex(16),
        "timestamp": 1,
        "eventType": "up-message-event",
        "businessPhone": stack.sandbox.business_phone,
        "from": {"phone": phone, "name": "Approver"},
        "message": {
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": button_id, "title": title}},
        },
    }


def texts_to(stack: Any, phone: str) -> list[str]:
    return [b["text"]["body"] for b in to(stack, phone) if b.get("type") == "text"]


def api_server_log(stack: Any) -> str:
    return str(stack.component_log("api-server").read_text(errors="replace"))


def logged_but_access(stack: Any) -> str:
    """
    Return the API server's log without the access log's lines of the read API (the window lookup's query string
    names the recipient) and the sending hook's warning about a number outside the assigned ranges (these test
    numbers): other matters than what the receiver's approvals log.
    """
    return "\n".join(
        line
        for line in api_server_log(stack).splitlines()
        if "/itnio/api/" not in line and "lies in no range that" not in line
    )


def handled(stack: Any, message_id: str, times: int) -> None:
    """
    Wait until the receiver has handled ``times`` pushes of the tap ``message_id`` to the end: it logs that after
    the reply, if any, was sent (the background work that follows its HTTP answer).
    """
    line = f"itnio HITL: handled the push of tap {message_id}:"
    stack.wait_until(lambda: api_server_log(stack).count(line) >= times, f"{times} pushes of {message_id} handled", 60)


#: Records a push in the stack's database exactly as the receiver's writer commits it, then exits without handling
#: it: an API server killed between the push's commit and the tap's handling. ``argv[2]``: minutes ago it arrived.
_RECORD_AND_DIE = """
import datetime, sys
from airflow_provider_itnio.events import parse_push
from airflow_provider_itnio.webhook.writer import _write_transaction
from airflow_provider_itnio.webhook.store import record_push
event = parse_push(sys.argv[1])
at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=float(sys.argv[2]))
with _write_transaction() as session:
    assert record_push(session, event, "itnio_default", now=at).new
"""


def record_and_die(stack: Any, push: dict[str, Any], minutes_ago: float) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _RECORD_AND_DIE, json.dumps(push), str(minutes_ago)],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_tap_whose_answer_cannot_be_saved_is_answered_503_and_the_re_push_applies_it(stack: Any) -> None:
    import requests

    run_id = refund_run(stack, SAVED, "E-1")
    request = request_for(stack, run_id, SAVED, "E-1")
    push = tap_push(stack, SAVED, button_ids(request)["Approve"], "Approve")
    waiting = hitl_of(stack, run_id)
    # The HITL record cannot be written for the duration of one tap (any database error while writing it).
    with stack.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER itnio_test_hitl_unavailable BEFORE UPDATE ON hitl_detail "
            "BEGIN SELECT RAISE(ABORT, 'hitl_detail is unavailable'); END"
        )
    try:
        first = requests.post(stack.webhook, json=push, timeout=60)
    finally:
        with stack.engine.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER itnio_test_hitl_unavailable")
    assert first.status_code == 503, first.text  # not 200: the vendor re-pushes
    assert hitl_of(stack, run_id) == waiting
    from airflow_provider_itnio.webhook.approvals_common import phone_digest

    logged = api_server_log(stack)
    assert f"the tap {push['messageId']} from {phone_digest(SAVED)} could not be recorded now" in logged
    assert "hitl_detail is unavailable" in logged  # the database's error, without the statement's parameters
    assert "[parameters:" not in logged and SAVED not in logged_but_access(stack)
    assert stack.task_instances(REFUND, run_id)["approve_refund"]["state"] == "awaiting_input"

    again = requests.post(stack.webhook, json=push, timeout=60)  # the vendor's re-push
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    assert stack.wait_for_run(REFUND, run_id, timeout=120) == "success"
    answered = hitl_of(stack, run_id)
    assert answered["chosen_options"] == ["Approve"]
    assert answered["responded_by_user"] == {"id": f"whatsapp:+{SAVED}", "name": f"+{SAVED} (WhatsApp)"}
    assert reply_to(stack, SAVED, 1) == "Recorded: Approve for \u201cRefund E-1?\u201d. Thank you."
    assert requests.post(stack.webhook, json=push, timeout=60).json()["duplicate"] is True  # a late re-push
    handled(stack, push["messageId"], 2)  # the re-push and the late one, their background work done
    assert texts_to(stack, SAVED) == ["Recorded: Approve for \u201cRefund E-1?\u201d. Thank you."]  # confirmed once
    assert hitl_of(stack, run_id) == answered
    assert SAVED not in logged_but_access(stack)
    (row,) = stack.rows("SELECT state, outcome FROM itnio_hitl_tap WHERE message_id = :m", m=push["messageId"])
    assert row == {"state": "applied", "outcome": "answered"}


def test_a_tap_recorded_by_a_process_killed_before_handling_it_is_applied_by_the_re_push_or_the_sweep(
    stack: Any,
) -> None:
    import requests

    # Killed between the commit and the handling; the vendor (answered nothing) re-pushes.
    run_id = refund_run(stack, KILLED, "E-2")
    push = tap_push(stack, KILLED, button_ids(request_for(stack, run_id, KILLED, "E-2"))["Reject"], "Reject")
    record_and_die(stack, push, minutes_ago=1)
    again = requests.post(stack.webhook, json=push, timeout=60)
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    assert stack.wait_for_run(REFUND, run_id, timeout=120) == "success"
    assert hitl_of(stack, run_id)["chosen_options"] == ["Reject"]
    assert stack.task_instances(REFUND, run_id)["pay_refund"]["state"] == "skipped"
    assert reply_to(stack, KILLED, 1) == "Recorded: Reject for \u201cRefund E-2?\u201d. Thank you."

    # Killed, and the vendor gave up re-pushing (down for longer than its 9 minutes): the receiver's sweep applies
    # the tap, with no other push reaching the receiver (the API server's sweeper runs every 10 s).
    run_id = refund_run(stack, SWEPT, "E-3")
    push = tap_push(stack, SWEPT, button_ids(request_for(stack, run_id, SWEPT, "E-3"))["Approve"], "Approve")
    record_and_die(stack, push, minutes_ago=10)
    stack.wait_until(lambda: hitl_of(stack, run_id)["response_received"], "the sweep to apply the tap", 120)
    assert stack.wait_for_run(REFUND, run_id, timeout=120) == "success"
    assert hitl_of(stack, run_id)["chosen_options"] == ["Approve"]
    assert reply_to(stack, SWEPT, 1) == "Recorded: Approve for \u201cRefund E-3?\u201d. Thank you."


def pending_of(stack: Any, run_id: str) -> dict[str, Any]:
    from airflow_provider_itnio.hitl_buttons import PENDING_XCOM_KEY

    return dict(stack.xcom(REFUND, run_id, "approve_refund", key=PENDING_XCOM_KEY))


def settled(stack: Any, run_id: str, kind: str | None = None) -> dict[str, Any] | None:
    """Return the pending record once no send is in flight (and ``kind``, when given, lists someone), else None."""
    pending = pending_of(stack, run_id)
    if pending.get("sending") or (kind is not None and not pending.get(kind)):
        return None
    return pending


def test_owed_buttons_are_crossed_off_only_once_sent_and_an_unknown_send_is_reported_not_repeated(
    stack: Any,
) -> None:
    # Never sent (the API refuses it): still owed, sent when the approver writes again.
    run_id = refund_run(stack, OWED, "E-4", wrote=False)
    stack.wait_until(lambda: to(stack, OWED), "the template to the approver", 120)
    stack.wait_until(lambda: pause_reported(stack, REFUND, "approve_refund", run_id), "the pause", 120)
    owed = pending_of(stack, run_id)
    assert len(owed["recipients"]) == 1, owed
    stack.sandbox.fail_next(1, api_status="-68")  # insufficient balance: nothing is sent
    tap(stack, OWED, text="What is it?")
    refused = stack.wait_until(
        lambda: [r for r in stack.sandbox.requests() if (r.get("body") or {}).get("recipient") == OWED][1:],
        "the buttons' send",
        60,
    )
    assert refused[0]["status"] == "-68" and "interactive" in refused[0]["body"], refused
    after = stack.wait_until(lambda: settled(stack, run_id), "the failed send to be settled", 60)
    assert after["recipients"] == owed["recipients"], after  # not crossed off
    assert [b for b in to(stack, OWED) if b.get("type") == "interactive"] == []

    tap(stack, OWED, text="Still there?")
    buttons = stack.wait_until(
        lambda: [b for b in to(stack, OWED) if b.get("type") == "interactive"], "the owed buttons", 60
    )
    assert list(button_ids(buttons[0])) == ["Approve", "Reject"]
    done = stack.wait_until(lambda: settled(stack, run_id, "sent"), "the send to be crossed off", 60)
    assert done["recipients"] == {} and list(done["sent"]) == list(owed["recipients"]), done
    assert done["sent"][next(iter(owed["recipients"]))] == buttons[0]["id"]

    # Delivery unknown (the API answers 500 after the request was sent; 429 and 503 mean "not processed" and are
    # retried by the hook): reported, never sent again.
    run_id = refund_run(stack, OWED_UNKNOWN, "E-5", wrote=False)
    stack.wait_until(lambda: to(stack, OWED_UNKNOWN), "the template to the approver", 120)
    stack.wait_until(lambda: pause_reported(stack, REFUND, "approve_refund", run_id), "the pause", 120)
    owed = pending_of(stack, run_id)
    stack.sandbox.fail_next(1, http_status=500)
    tap(stack, OWED_UNKNOWN, text="What is it?")
    unknown = stack.wait_until(lambda: settled(stack, run_id, "unknown"), "the unknown send to be reported", 60)
    assert unknown["recipients"] == {} and list(unknown["unknown"]) == list(owed["recipients"]), unknown
    assert "HTTP 500" in json.dumps(unknown["unknown"]) and OWED_UNKNOWN not in json.dumps(unknown)  # no number
    log = stack.component_log("api-server").read_text(errors="replace").splitlines()
    logged = "\n".join(line for line in log if "itnio HITL" in line)
    assert "may or may not have reached" in logged and OWED_UNKNOWN not in logged
    before = len(stack.sandbox.requests())
    tap(stack, OWED_UNKNOWN, text="Hello?")  # nothing is owed any more: the answer comes after the lookup
    assert [
        r for r in stack.sandbox.requests()[before:] if (r.get("body") or {}).get("recipient") == OWED_UNKNOWN
    ] == []
    assert pending_of(stack, run_id) == unknown


def test_the_sandbox_tap_command_answers_the_request_whose_message_id_is_in_xcom(stack: Any) -> None:
    from airflow_provider_itnio.notifications.hitl import REQUESTS_XCOM_KEY

    run_id = refund_run(stack, TRIED, "E-6")
    request = request_for(stack, run_id, TRIED, "E-6")
    from airflow_provider_itnio.hitl_buttons import button_keys, recipient_digest

    sent = stack.xcom(REFUND, run_id, "approve_refund", key=REQUESTS_XCOM_KEY)
    keys = button_keys({"webhook_token": stack.webhook.rsplit("/", 1)[1]}, stack.sandbox.api_secret).verifying
    masked = f"+{TRIED[:2]}{'*' * (len(TRIED) - 6)}{TRIED[-4:]}"  # the first two and last four digits
    assert sent == {
        masked: {
            "message_id": request["id"],
            "kind": "buttons",
            "recipient": [recipient_digest(key, TRIED) for key in keys],
        }
    }, sent
    assert TRIED not in json.dumps(sent)
    command = [sys.executable, "-m", "airflow_provider_itnio.sandbox", "tap", "--url", stack.sandbox.base_url]
    result = subprocess.run(
        [*command, request["id"], "Reject"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"+{TRIED} tapped \u201cReject\u201d" in result.stdout and "answered 200" in result.stdout, result.stdout
    assert stack.wait_for_run(REFUND, run_id, timeout=120) == "success"
    assert hitl_of(stack, run_id)["chosen_options"] == ["Reject"]
    assert stack.task_instances(REFUND, run_id)["pay_refund"]["state"] == "skipped"


#: Claims the buttons owed to an approver as the receiver does when they write (``sending``), ``argv[2]`` minutes
#: ago, then exits without sending them: an API server killed between the claim and the send.
_CLAIM_AND_DIE = """
import datetime, sys
from airflow_provider_itnio.events import parse_push
from airflow_provider_itnio.webhook.owed_buttons import pending_requests
event = parse_push(sys.argv[1])
at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=float(sys.argv[2]))
print(len(pending_requests(event, "itnio_default", now=at)))
"""


def test_owed_buttons_left_sending_by_a_killed_api_server_are_reported_as_unknown(stack: Any) -> None:
    run_id = refund_run(stack, STALE, "E-8", wrote=False)
    stack.wait_until(lambda: to(stack, STALE), "the template to the approver", 120)
    stack.wait_until(lambda: pause_reported(stack, REFUND, "approve_refund", run_id), "the pause", 120)
    owed = pending_of(stack, run_id)
    push = {
        "appId": stack.sandbox.app_id,
        "messageId": secrets.token_hex(16),
        "eventType": "up-message-event",
        "businessPhone": stack.sandbox.business_phone,
        "from": {"phone": STALE, "name": "Approver"},
        "message": {"type": "text", "text": {"body": "What is it?"}},
    }
    result = subprocess.run(
        [sys.executable, "-c", _CLAIM_AND_DIE, json.dumps(push), "10"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "1"
    # The API server's sweeper (every 10 s) finds the claim older than 5 minutes: reported, never sent.
    reported = stack.wait_until(lambda: settled(stack, run_id, "unknown"), "the stale send to be reported", 120)
    assert reported["recipients"] == {} and list(reported["unknown"]) == list(owed["recipients"]), reported
    assert "the API server stopped while sending it" in json.dumps(reported["unknown"])
    logged = "\n".join(line for line in api_server_log(stack).splitlines() if "itnio HITL" in line)
    assert f"was being sent to an approver ({next(iter(owed['recipients']))[:8]}, claimed at " in logged
    assert STALE not in logged
    assert [b for b in to(stack, STALE) if b.get("type") == "interactive"] == []


#: Records a tap's push now, then applies it ``argv[2]`` hours later (as the sweep or a re-push would after an
#: outage); prints what it did.
_APPLY_LATER = """
import datetime, json, sys
from airflow_provider_itnio.events import parse_push
from airflow_provider_itnio.webhook.writer import _write_transaction
from airflow_provider_itnio.webhook.taps import apply_tap
from airflow_provider_itnio.webhook.store import record_push
event = parse_push(sys.argv[1])
with _write_transaction() as session:
    assert record_push(session, event, "itnio_default").new
later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=float(sys.argv[2]))
outcome = apply_tap(event, "itnio_default", now=later)
print(json.dumps({"code": outcome.code, "reply": outcome.reply}))
"""


def test_a_tap_applied_after_the_response_timeout_is_judged_by_when_its_push_arrived(stack: Any) -> None:
    run_id = refund_run(stack, LATE_APPLIED, "E-9")
    push = tap_push(
        stack, LATE_APPLIED, button_ids(request_for(stack, run_id, LATE_APPLIED, "E-9"))["Approve"], "Approve"
    )
    result = subprocess.run(
        [sys.executable, "-c", _APPLY_LATER, json.dumps(push), "5"],  # the refund's response_timeout is 4 hours
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"code": "answered", "reply": "Recorded: Approve for \u201cRefund E-9?\u201d. Thank you."}
    assert stack.wait_for_run(REFUND, run_id, timeout=120) == "success"
    answered = hitl_of(stack, run_id)
    assert answered["chosen_options"] == ["Approve"]
    (row,) = stack.rows("SELECT received_at FROM itnio_hitl_tap WHERE message_id = :m", m=push["messageId"])
    assert answered["responded_at"][:19] == str(row["received_at"]).replace(" ", "T")[:19]  # when it arrived


def test_buttons_sent_before_the_webhook_token_is_rotated_still_answer_and_an_unusable_tap_is_told_so(
    stack: Any,
) -> None:
    """Runs last: it rotates the stack's webhook_token."""
    import requests

    from airflow_provider_itnio.hitl_buttons import parse_button, sign_button

    run_id = refund_run(stack, ROTATED, "E-7")
    request = request_for(stack, run_id, ROTATED, "E-7")
    ids = button_ids(request)
    old_webhook = stack.webhook
    token = secrets.token_urlsafe(32)
    rotate = (
        "import json, sys\n"
        "from airflow.models.connection import Connection\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as session:\n"
        "    conn = session.query(Connection).filter(Connection.conn_id == 'itnio_default').one()\n"
        "    conn.set_extra(json.dumps({**conn.extra_dejson, 'webhook_token': sys.argv[1]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", rotate, token], env=stack.env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stack.webhook = old_webhook.rsplit("/", 1)[0] + "/" + token
    stack.sandbox.configure_pushes(push_url=stack.webhook)
    stack.wait_until(
        lambda: requests.post(old_webhook, json={}, timeout=30).status_code == 404, "the old address to be refused"
    )

    # The button sent before the rotation still answers.
    tap(stack, ROTATED, type="button_reply", context=request["id"], reply_title="Approve")
    assert stack.wait_for_run(REFUND, run_id, timeout=120) == "success"
    answered = hitl_of(stack, run_id)
    assert answered["chosen_options"] == ["Approve"]
    assert reply_to(stack, ROTATED, 1) == "Recorded: Approve for \u201cRefund E-7?\u201d. Thank you."

    # A button id signed with a key the connection no longer has (e.g. a button_key rotated without keeping the
    # old one): the approver is told to answer in the UI, once (not again for the re-push), with the link.
    unusable = sign_button(b"k" * 32, parse_button(ids["Reject"]).ti_id, 1, ROTATED)  # type: ignore[union-attr]
    push = tap_push(stack, ROTATED, unusable, "Reject")
    for _ in range(2):  # and its re-push
        answer = requests.post(stack.webhook, json=push, timeout=60)
        assert answer.status_code == 200, answer.text
    link = f"{stack.base_url}/dags/{REFUND}/runs/{run_id}/tasks/approve_refund/required_actions?map_index=-1"
    assert reply_to(stack, ROTATED, 2) == f"This request can no longer be answered here: {link}"
    handled(stack, push["messageId"], 2)  # the re-push's background work is done too
    assert len(texts_to(stack, ROTATED)) == 2  # answered once
    assert hitl_of(stack, run_id) == answered
    (row,) = stack.rows("SELECT state, outcome FROM itnio_hitl_tap WHERE message_id = :m", m=push["messageId"])
    assert row == {"state": "applied", "outcome": "forged"}

    # The same from a number the request was not sent to: no reply at all (the task's link is not for strangers).
    stranger = tap_push(stack, NOBODY, sign_button(b"k" * 32, parse_button(ids["Reject"]).ti_id, 1, NOBODY), "Reject")  # type: ignore[union-attr]
    assert requests.post(stack.webhook, json=stranger, timeout=60).status_code == 200
    handled(stack, stranger["messageId"], 1)
    assert to(stack, NOBODY) == []
    assert hitl_of(stack, run_id) == answered
