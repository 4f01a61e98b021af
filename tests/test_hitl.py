"""
Human-in-the-loop on WhatsApp, without a whole Airflow: signed button ids and what the notifier sends.

- :mod:`airflow_provider_itnio.webhook.hitl`'s button ids: made for one task instance, option, number (and user),
  they verify only for those; anything else is ``forged`` or ``other_number``.
- :class:`~airflow_provider_itnio.notifications.hitl.ItnioHITLNotifier` called as a HITL operator calls it (with
  the real operator in the context), sending through the sandbox over HTTP: buttons for 1-3 options, a list for
  4-10, a text saying to answer in the UI otherwise; texts cut to WhatsApp's limits; the UI link; the fallback
  template when the window cannot be read.

The whole flow (a tap resuming a task in a real Airflow) is in ``tests/test_hitl_e2e.py``. On Airflow 2 the
modules refuse to import, saying Airflow 3.1+ is needed.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_itnio import messages as m
from tests.test_webhook_receiver import AIRFLOW_2, needs_airflow_3

APPROVER = "15550100200"
OTHER = "15550100999"
BASE_URL = "http://airflow.example.com:8080"


@pytest.fixture
def webhook_token(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Give ``itnio_default`` (the sandbox) a ``webhook_token`` and an unreachable receiver; return the token."""
    from tests.airflow_stack import free_port

    token = secrets.token_urlsafe(32)
    connection = json.loads(sandbox.conn_json())
    connection["extra"].update(webhook_token=token, receiver_url=f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AIRFLOW_CONN_ITNIO_DEFAULT", json.dumps(connection))
    return token


def ti(task_id: str = "approve") -> SimpleNamespace:
    """Return a task instance as the operator's context has it (what the notifier reads of it)."""
    return SimpleNamespace(id=uuid.uuid4(), dag_id="refunds", run_id="manual__1", task_id=task_id, map_index=-1)


def call(notifier: Any, task: Any, instance: Any, **params: Any) -> None:
    """Call the notifier as ``HITLOperator.execute`` does: ``notifier(context)``."""
    notifier({"task": task, "task_instance": instance, "ti": instance, "params": params, "run_id": "manual__1"})


def sent_bodies(sandbox: Any) -> list[dict[str, Any]]:
    return [message["body"] for message in sandbox.messages()]


# -- button ids ----------------------------------------------------------------------------------------------


@needs_airflow_3
def test_a_button_id_verifies_only_for_its_task_instance_option_number_and_key() -> None:
    from airflow_provider_itnio.webhook.hitl import (
        MAX_ID,
        button_key,
        parse_button,
        sign_button,
        verify_button,
    )

    key, other_key = button_key("token-a"), button_key("token-b")
    ti_id, other_ti = uuid.uuid4(), uuid.uuid4()
    value = sign_button(key, ti_id, 1, APPROVER)
    assert len(value) <= MAX_ID < m.MAX_BUTTON_ID and len(value) <= m.MAX_ROW_ID
    button = parse_button(value)
    assert button is not None and (button.ti_id, button.index, button.user_id) == (ti_id.hex, 1, None)
    assert verify_button(key, button, APPROVER) == "ok"
    assert verify_button(key, button, OTHER) == "other_number"
    assert verify_button(other_key, button, APPROVER) == "forged"  # another connection's id
    # The id made for one task instance (or option) cannot be edited to answer another one.
    for forged in (value.replace(ti_id.hex, other_ti.hex), value.replace(f".{ti_id.hex}.1.", f".{ti_id.hex}.0.")):
        edited = parse_button(forged)
        assert edited is not None and verify_button(key, edited, APPROVER) == "forged"
    tag = value.rsplit(".", 1)[1]
    tampered = parse_button(value[: -len(tag)] + ("A" if tag[0] != "A" else "B") + tag[1:])
    assert tampered is not None and verify_button(key, tampered, APPROVER) == "other_number"
    for not_ours in ("rating-A-1042-good", "hitl1.nothex", "", None, 3):
        assert parse_button(not_ours) is None

    with_user = parse_button(sign_button(key, ti_id, 0, APPROVER, "alice@example.com"))
    assert with_user is not None and with_user.user_id == "alice@example.com"
    assert verify_button(key, with_user, APPROVER) == "ok"
    with pytest.raises(ValueError, match="too long for a button id"):
        sign_button(key, ti_id, 0, APPROVER, "u" * 200)


@needs_airflow_3
def test_the_responder_is_the_number_or_its_mapped_user_and_assigned_users_are_enforced() -> None:
    from airflow_provider_itnio.webhook.hitl import phone_digest, responder

    assert responder(APPROVER, None, None) == {"id": f"whatsapp:+{APPROVER}", "name": f"+{APPROVER} (WhatsApp)"}
    assert responder(APPROVER, "alice", []) == {"id": "alice", "name": f"+{APPROVER} (WhatsApp)"}
    assigned = [{"id": "alice", "name": "Alice"}, {"id": "bob", "name": "Bob"}]
    assert responder(APPROVER, "alice", assigned) == {"id": "alice", "name": f"Alice (WhatsApp +{APPROVER})"}
    assert responder(APPROVER, "carol", assigned) is None
    assert responder(APPROVER, None, assigned) is None
    digest = phone_digest(APPROVER)
    assert digest == phone_digest(APPROVER) != phone_digest(OTHER) and APPROVER not in digest


# -- what the notifier sends ---------------------------------------------------------------------------------


@needs_airflow_3
def test_two_options_go_as_reply_buttons_signed_for_each_recipient_with_the_ui_link(
    sandbox: Any, webhook_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier
    from airflow_provider_itnio.webhook.hitl import button_key, parse_button, verify_button

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    task = ApprovalOperator(task_id="approve", subject="Refund A-1?", body="Customer Ada asks for EUR 5.")
    instance = ti()
    notifier = ItnioHITLNotifier(recipients="{{ params.manager }}, +1 555 010 0999")
    call(notifier, task, instance, manager="+1 555 010 0200")

    assert notifier.failed == {} and notifier.kinds == {APPROVER: "buttons", OTHER: "buttons"}
    key = button_key(webhook_token)
    link = f"{BASE_URL}/dags/refunds/runs/manual__1/tasks/approve/required_actions?map_index=-1"
    for body, recipient in zip(sent_bodies(sandbox), (APPROVER, OTHER), strict=True):
        assert body["recipient"] == recipient
        interactive = body["interactive"]
        assert interactive["type"] == "button"
        assert (
            interactive["body"]["text"]
            == f"*Refund A-1?*\n\nCustomer Ada asks for EUR 5.\n\nOr answer in Airflow: {link}"
        )
        buttons = [b["reply"] for b in interactive["action"]["buttons"]]
        assert [b["title"] for b in buttons] == ["Approve", "Reject"]
        for index, button in enumerate(buttons):
            parsed = parse_button(button["id"])
            assert parsed is not None and (parsed.ti_id, parsed.index) == (instance.id.hex, index)
            assert verify_button(key, parsed, recipient) == "ok"
    assert webhook_token not in json.dumps(sandbox.messages())


@needs_airflow_3
def test_four_to_ten_options_go_as_a_list_and_more_multiple_or_params_need_the_ui(
    sandbox: Any, webhook_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.standard.operators.hitl import HITLOperator

    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier

    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    long_option = "Ship with the express courier tomorrow"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"options": ["a", "b", "c", long_option]}, "list"),
        ({"options": [str(i) for i in range(10)]}, "list"),
        ({"options": [str(i) for i in range(11)]}, "ui_only"),
        ({"options": ["a", "b"], "multiple": True}, "ui_only"),
        ({"options": ["a", "b"], "params": {"reason": "why?"}}, "ui_only"),
    ]
    for arguments, kind in cases:
        sandbox.clear()
        task = HITLOperator(task_id="choose", subject="Pick one", body="Body", **arguments)
        notifier = ItnioHITLNotifier(recipients=APPROVER)
        call(notifier, task, ti("choose"))
        assert notifier.kinds == {APPROVER: kind}, arguments
        (body,) = sent_bodies(sandbox)
        if kind == "list":
            rows = body["interactive"]["action"]["sections"][0]["rows"]
            options = arguments["options"]
            assert [r["title"] for r in rows] == [o if len(o) <= 24 else o[:23].rstrip() + "\u2026" for o in options]
            assert rows[-1].get("description") == (long_option if long_option in options else None)
            assert body["interactive"]["action"]["button"] == "Choose"
        else:
            # no [api] base_url: no link, but the text says where to answer
            assert body["type"] == "text"
            assert body["text"]["body"].endswith("cannot be answered here).\n\nAnswer in the Airflow UI.")


@needs_airflow_3
def test_texts_are_cut_to_whatsapp_limits_with_an_ellipsis(sandbox: Any, webhook_token: str) -> None:
    from airflow.providers.standard.operators.hitl import HITLOperator

    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier

    task = HITLOperator(
        task_id="choose",
        subject="S" * 300,
        body="word " * 400,
        options=["An option longer than twenty characters", "Short"],
    )
    notifier = ItnioHITLNotifier(recipients=APPROVER, base_url=BASE_URL)
    call(notifier, task, ti("choose"))
    (body,) = sent_bodies(sandbox)
    text = body["interactive"]["body"]["text"]
    assert len(text) <= m.MAX_INTERACTIVE_BODY
    assert text.startswith("*" + "S" * 199 + "\u2026*\n\n")
    assert "\u2026\n\nOr answer in Airflow: http://airflow.example.com:8080/dags/" in text
    titles = [b["reply"]["title"] for b in body["interactive"]["action"]["buttons"]]
    assert titles == ["An option longer th\u2026", "Short"] and all(len(t) <= m.MAX_BUTTON_TITLE for t in titles)


@needs_airflow_3
def test_without_a_webhook_token_or_an_assigned_user_mapping_the_answer_goes_to_the_ui(
    sandbox: Any, webhook_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier

    assigned = ApprovalOperator(task_id="approve", subject="Go?", assigned_users=[{"id": "alice", "name": "Alice"}])
    notifier = ItnioHITLNotifier(recipients=[APPROVER, OTHER], user_ids={"+1 555 010 0200": "alice"})
    call(notifier, assigned, ti())
    assert notifier.kinds == {APPROVER: "buttons", OTHER: "ui_only"}  # only Alice's number can tap

    sandbox.clear()
    monkeypatch.setenv("AIRFLOW_CONN_ITNIO_DEFAULT", sandbox.conn_json())  # no webhook_token: taps cannot arrive
    notifier = ItnioHITLNotifier(recipients=APPROVER)
    call(notifier, ApprovalOperator(task_id="approve", subject="Go?"), ti())
    assert notifier.kinds == {APPROVER: "ui_only"}
    assert sent_bodies(sandbox)[0]["type"] == "text"


@needs_airflow_3
def test_the_fallback_template_goes_when_the_window_cannot_be_read_and_errors_never_raise(
    sandbox: Any, webhook_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier

    task = ApprovalOperator(task_id="approve", subject="Refund\nA-1?")
    notifier = ItnioHITLNotifier(recipients=APPROVER, fallback_template="approval_waiting", fallback_language="en")
    call(notifier, task, ti())  # the receiver_url extra points at a closed port
    assert notifier.kinds == {APPROVER: "template"}
    (body,) = sent_bodies(sandbox)
    assert body["template"]["name"] == "approval_waiting"
    assert body["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Refund A-1?"}]

    sandbox.clear()
    sandbox.fail_next(http_status=500)  # the API fails the first send: logged, not raised, the next one goes
    notifier = ItnioHITLNotifier(recipients=[APPROVER, OTHER])
    call(notifier, task, ti())
    assert list(notifier.failed) == [APPROVER] and list(notifier.sent) == [OTHER]
    broken = ItnioHITLNotifier(recipients=["not a number"])
    call(broken, task, ti())
    assert broken.sent == {} and "digits only" in broken.failed["['not a number']"]
    assert webhook_token not in capsys.readouterr().out


# -- Airflow 2 -----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not AIRFLOW_2, reason="checks the Airflow 2 refusal")
def test_on_airflow_2_the_notifier_refuses_to_import_saying_airflow_3_1_is_needed() -> None:
    for module in ("airflow_provider_itnio.notifications.hitl", "airflow_provider_itnio.webhook.hitl"):
        result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        assert result.returncode != 0
        assert "ImportError" in result.stderr and "needs Airflow 3.1 or later" in result.stderr, result.stderr
