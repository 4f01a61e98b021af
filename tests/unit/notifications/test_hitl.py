"""
Human-in-the-loop on WhatsApp, without a whole Airflow: signed button ids and what the notifier sends.

- :mod:`airflow_provider_itnio.hitl_buttons`' button ids: made for one task instance, option, number (and user),
  they verify only for those; anything else is ``forged`` or ``other_number``.
- :class:`~airflow_provider_itnio.notifications.hitl.ItnioHITLNotifier` called as a HITL operator calls it (with
  the real operator in the context), sending through the sandbox over HTTP: buttons for 1-3 options, a list for
  4-10, a text saying to answer in the UI otherwise; texts cut to WhatsApp's limits; the UI link; the fallback
  template when the window cannot be read.

The whole flow (a tap resuming a task in a real Airflow) is in ``tests/e2e/test_hitl.py``. On Airflow 2 the
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
from tests.support.receiver import AIRFLOW_2, needs_airflow_3

APPROVER = "15550100200"
OTHER = "15550100999"
BASE_URL = "http://airflow.example.com:8080"


@pytest.fixture
def webhook_token(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Give ``itnio_default`` (the sandbox) a ``webhook_token`` and an unreachable receiver; return the token."""
    from tests.support.airflow_stack import free_port

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
    from airflow_provider_itnio.hitl_buttons import (
        MAX_ID,
        button_keys,
        parse_button,
        sign_button,
        verify_button,
    )

    key, other_key = button_keys({}, "secret-a").signing, button_keys({}, "secret-b").signing
    assert key is not None and other_key is not None
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
    from airflow_provider_itnio.webhook.approvals_common import phone_digest
    from airflow_provider_itnio.webhook.taps import responder

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

    from airflow_provider_itnio.hitl_buttons import button_keys, parse_button, verify_button
    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    task = ApprovalOperator(task_id="approve", subject="Refund A-1?", body="Customer Ada asks for EUR 5.")
    instance = ti()
    notifier = ItnioHITLNotifier(recipients="{{ params.manager }}, +1 555 010 0999")
    call(notifier, task, instance, manager="+1 555 010 0200")

    assert notifier.failed == {} and notifier.kinds == {APPROVER: "buttons", OTHER: "buttons"}
    key = button_keys({}, sandbox.api_secret).signing  # the API secret's key: no button_key extra
    assert key is not None
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


# -- keys: rotating the webhook_token, the button_key ring ----------------------------------------------------


@needs_airflow_3
def test_a_button_sent_before_the_webhook_token_is_rotated_still_verifies_and_the_button_key_ring_rotates(
    sandbox: Any, webhook_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notifier signs with a key the URL's token does not change; the ring verifies the keys it lists."""
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from airflow_provider_itnio.hitl_buttons import (
        button_keys,
        legacy_button_key,
        parse_button,
        sign_button,
        verify_button,
    )
    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier
    from airflow_provider_itnio.webhook.approvals_common import connection_button_keys

    notifier = ItnioHITLNotifier(recipients=APPROVER)
    call(notifier, ApprovalOperator(task_id="approve", subject="Go?"), ti())
    (body,) = sent_bodies(sandbox)
    button = parse_button(body["interactive"]["action"]["buttons"][0]["reply"]["id"])
    assert button is not None
    before = connection_button_keys("itnio_default")
    assert before is not None and verify_button(before.verifying, button, APPROVER) == "ok"

    connection = json.loads(sandbox.conn_json())  # the URL leaked: the token is rotated
    connection["extra"]["webhook_token"] = secrets.token_urlsafe(32)
    monkeypatch.setenv("AIRFLOW_CONN_ITNIO_DEFAULT", json.dumps(connection))
    after = connection_button_keys("itnio_default")
    assert after is not None and after.signing == before.signing
    assert verify_button(after.verifying, button, APPROVER) == "ok"

    # Ids of the first scheme (keyed by the token) verify until the token is rotated, and are never made again.
    old = parse_button(sign_button(legacy_button_key(webhook_token), button.ti_id, 0, APPROVER))
    assert old is not None and verify_button(before.verifying, old, APPROVER) == "ok"
    assert verify_button(after.verifying, old, APPROVER) == "forged"

    # button_key: the first key signs; the previous one, kept after it, still verifies; dropped, it does not.
    ring = button_keys({"button_key": "new-key, old-key", "webhook_token": "t"}, "secret")
    assert ring.signing == button_keys({"button_key": "new-key"}, None).signing != button_keys({}, "secret").signing
    signed_old = parse_button(
        sign_button(button_keys({"button_key": "old-key"}, None).signing or b"", uuid.uuid4(), 1, OTHER)
    )
    assert signed_old is not None and verify_button(ring.verifying, signed_old, OTHER) == "ok"
    assert verify_button(button_keys({"button_key": "new-key"}, None).verifying, signed_old, OTHER) == "forged"


@needs_airflow_3
def test_the_url_command_gives_a_new_connection_a_button_key_with_its_token(airflow_db: Any) -> None:
    """``webhook url`` creates the token and a ``button_key``: new buttons are then signed by neither the token
    nor the API secret, and buttons signed before (with the API secret's key) still verify."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from airflow_provider_itnio.connection_fields import BUTTON_KEY_EXTRA
    from airflow_provider_itnio.hitl_buttons import button_keys
    from airflow_provider_itnio.webhook.__main__ import ensure_token
    from airflow_provider_itnio.webhook.approvals_common import connection_button_keys

    conn_id = "itnio_hitl_button_key"
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(Connection(conn_id=conn_id, conn_type="itnio", password="s3cret", extra='{"app_id": "a"}'))
    token, created = ensure_token(conn_id)
    assert created
    conn = Connection.get_connection_from_secrets(conn_id)
    key = conn.extra_dejson[BUTTON_KEY_EXTRA]
    assert len(key) >= 43 and key != token
    ring = connection_button_keys(conn_id)
    assert ring is not None and ring.signing == button_keys({BUTTON_KEY_EXTRA: key}, None).signing
    assert button_keys({}, "s3cret").signing in ring.verifying
    assert ensure_token(conn_id) == (token, False)


@needs_airflow_3
def test_the_url_command_gives_an_existing_connection_a_button_key_and_button_key_takes_a_list(
    airflow_db: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A connection that has its token already (or a null / empty ``button_key``) gets one too; a list is a ring."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from airflow_provider_itnio.connection_fields import BUTTON_KEY_EXTRA, WEBHOOK_TOKEN_EXTRA
    from airflow_provider_itnio.hitl_buttons import button_key_secrets, button_keys
    from airflow_provider_itnio.webhook.__main__ import ensure_token

    conn_id = "itnio_hitl_existing_token"
    for stored in ({}, {BUTTON_KEY_EXTRA: None}, {BUTTON_KEY_EXTRA: ""}, {BUTTON_KEY_EXTRA: "  "}):
        extra = {"app_id": "a", WEBHOOK_TOKEN_EXTRA: "tok", **stored}
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
            session.add(Connection(conn_id=conn_id, conn_type="itnio", password="s3cret", extra=json.dumps(extra)))
        assert ensure_token(conn_id) == ("tok", False), stored
        key = Connection.get_connection_from_secrets(conn_id).extra_dejson[BUTTON_KEY_EXTRA]
        assert isinstance(key, str) and len(key) >= 43, stored
        assert f"Added a {BUTTON_KEY_EXTRA!r} extra to connection {conn_id!r}." in capsys.readouterr().err
        assert ensure_token(conn_id) == ("tok", False)  # kept from then on
        assert Connection.get_connection_from_secrets(conn_id).extra_dejson[BUTTON_KEY_EXTRA] == key

    assert button_key_secrets(["new", "old-1, old-2"]) == ["new", "old-1", "old-2"]
    ring = button_keys({BUTTON_KEY_EXTRA: ["new", "old"]}, None)
    assert ring == button_keys({BUTTON_KEY_EXTRA: "new old"}, None) and len(ring.verifying) == 2
    assert button_keys({BUTTON_KEY_EXTRA: None}, "s").signing == button_keys({}, "s").signing
    for wrong in (42, {"k": "v"}, ["ok", 3]):
        with pytest.raises(ValueError, match=r"the 'button_key' extra must be a string .* or a list of such strings"):
            button_keys({BUTTON_KEY_EXTRA: wrong}, "s")


@needs_airflow_3
def test_a_tap_the_sweep_cannot_apply_backs_off_gives_up_with_an_error_and_never_logs_the_number(
    airflow_db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A tap that fails every time is tried again later (doubling waits), others are reached, and after
    ``MAX_TAP_ATTEMPTS`` it is given up with an error; the database's error is logged without the number."""
    import datetime
    import logging

    from airflow.settings import engine
    from airflow.utils.session import create_session
    from sqlalchemy import select, text

    from airflow_provider_itnio.events import parse_push
    from airflow_provider_itnio.hitl_buttons import sign_button
    from airflow_provider_itnio.webhook import tap_sweeper as sweeper
    from airflow_provider_itnio.webhook.approvals_common import phone_digest
    from airflow_provider_itnio.webhook.models import hitl_tap_table
    from airflow_provider_itnio.webhook.store import record_push

    caplog.set_level(logging.INFO, logger="airflow_provider_itnio.webhook")  # the approval modules' loggers
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    failing = [f"fail-{uuid.uuid4().hex}" for _ in range(sweeper.SWEEP_BATCH + 1)]  # more than one sweep takes
    good = f"good-{uuid.uuid4().hex}"

    def push(message_id: str) -> dict[str, Any]:
        button = sign_button_id()
        return {
            "appId": "sweep-app",
            "messageId": message_id,
            "eventType": "up-message-event",
            "businessPhone": "15550001111",
            "from": {"phone": APPROVER, "name": "Approver"},
            "message": {
                "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": {"id": button, "title": "Approve"}},
            },
        }

    def sign_button_id() -> str:
        return sign_button(b"k" * 32, uuid.uuid4(), 0, APPROVER)

    with create_session() as session:
        for n, message_id in enumerate([*failing, good]):
            at = start + datetime.timedelta(seconds=n)
            record_push(session, parse_push(push(message_id)), "itnio_hitl_sweep_nothing", now=at)
    assert engine is not None
    with engine.begin() as connection:  # the claim of the failing taps fails, every time (a real database error)
        connection.exec_driver_sql(
            "CREATE TRIGGER itnio_test_tap_fails BEFORE UPDATE OF state ON itnio_hitl_tap "
            "WHEN NEW.state = 'applied' AND OLD.message_id LIKE 'fail-%' "
            "BEGIN SELECT RAISE(ABORT, 'the tap cannot be applied'); END"
        )
    try:

        def rows() -> dict[str, tuple[str, int, datetime.datetime]]:
            columns = hitl_tap_table.c
            with create_session() as session:
                found = session.execute(
                    select(columns.message_id, columns.state, columns.attempts, columns.next_attempt_at).where(
                        columns.message_id.in_([*failing, good])
                    )
                ).all()
            return {message_id: (state, attempts, due) for message_id, state, attempts, due in found}

        now = datetime.datetime.now(datetime.UTC)
        assert sweeper.sweep_taps(now) == 0  # the oldest SWEEP_BATCH taps fail ...
        assert sweeper.sweep_taps(now) == 1  # ... and move back: the next sweep reaches the newer one
        assert rows()[good][:2] == ("applied", 1)
        waits = []
        for attempt in range(2, sweeper.MAX_TAP_ATTEMPTS + 1):
            due = rows()[failing[0]][2]
            assert rows()[failing[0]][:2] == ("pending", attempt - 1)
            waits.append(due - now)
            now = due
            for _ in range(2):  # a batch of SWEEP_BATCH, then the tap left over (all are due at once)
                assert sweeper.sweep_taps(now) == 0
        assert waits == [sweeper.SWEEP_AFTER * 2**n if n < 6 else sweeper.MAX_TAP_BACKOFF for n in range(len(waits))]
        assert all(rows()[message_id][:2] == ("failed", sweeper.MAX_TAP_ATTEMPTS) for message_id in failing)
        assert sweeper.sweep_taps(now + datetime.timedelta(days=1)) == 0  # given up: never tried again
        assert rows()[failing[0]][1] == sweeper.MAX_TAP_ATTEMPTS
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER itnio_test_tap_fails")
            connection.execute(text("DELETE FROM itnio_hitl_tap WHERE conn_id = 'itnio_hitl_sweep_nothing'"))
    logged = caplog.text
    assert f"attempt 1 of {sweeper.MAX_TAP_ATTEMPTS} at the tap {failing[0]} from {phone_digest(APPROVER)}" in logged
    assert "the tap cannot be applied" in logged
    assert f"gave up on the tap {failing[0]} from {phone_digest(APPROVER)}" in logged
    assert f"after {sweeper.MAX_TAP_ATTEMPTS} attempts" in logged
    assert APPROVER not in logged and "[parameters:" not in logged


# -- the sandbox's tap command -------------------------------------------------------------------------------


def test_the_sandbox_tap_finds_the_message_by_the_recipients_digits_however_written() -> None:
    from airflow_provider_itnio.sandbox.taps import tap_request

    buttons = {"type": "button", "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}}
    sent = [{"messageId": "m1", "body": {"recipient": APPROVER, "type": "interactive", "interactive": buttons}}]
    for written in (APPROVER, f"+{APPROVER}", "+1 555-010 0200", "(1) 555 010 0200"):
        assert tap_request(sent, "Yes", to=written)["context"] == "m1", written
    with pytest.raises(ValueError, match=f"the sandbox sent no message with buttons or a list to {OTHER}"):
        tap_request(sent, "Yes", to=OTHER)


@needs_airflow_3
def test_the_sandbox_tap_command_pushes_the_recipients_tap_quoting_the_message(
    sandbox: Any, webhook_token: str
) -> None:
    """``itnio-sandbox tap`` makes the sandbox push what WhatsApp would: the recipient's button_reply."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator

    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier

    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            """Keep quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        sandbox.configure_pushes(inbound_push_url=f"http://127.0.0.1:{server.server_address[1]}/itnio/webhook/x/t")
        notifier = ItnioHITLNotifier(recipients=APPROVER)
        call(notifier, ApprovalOperator(task_id="approve", subject="Go?"), ti())
        (request,) = sandbox.messages()
        command = [sys.executable, "-m", "airflow_provider_itnio.sandbox", "tap", "--url", sandbox.base_url]
        result = subprocess.run([*command, request["messageId"], "Reject"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"+{APPROVER} tapped \u201cReject\u201d on message {request['messageId']}: ")
        assert result.stdout.rstrip().endswith("answered 200")
        (push,) = received
        reject = request["body"]["interactive"]["action"]["buttons"][1]["reply"]
        assert push["from"]["phone"] == APPROVER and push["eventType"] == "up-message-event"
        assert push["message"]["interactive"] == {"type": "button_reply", "button_reply": reject}
        assert push["message"]["context"]["id"] == request["messageId"]

        # --to: the newest message with options sent to that number (here a list).
        task = HITLOperator(task_id="choose", subject="Pick", options=["a", "b", "c", "d"])
        call(ItnioHITLNotifier(recipients=APPROVER), task, ti("choose"))
        result = subprocess.run([*command, "--to", APPROVER, "c"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert received[-1]["message"]["interactive"]["type"] == "list_reply"
        assert received[-1]["message"]["interactive"]["list_reply"]["title"] == "c"

        # What cannot be tapped is said, and nothing is pushed.
        for arguments, error in [
            ([request["messageId"], "Maybe"], "has no option 'Maybe'; its options: 'Approve', 'Reject'"),
            (["0" * 32, "Approve"], "the sandbox accepted no message 00000000000000000000000000000000"),
            (["--to", OTHER, "Approve"], f"the sandbox sent no message with buttons or a list to {OTHER}"),
        ]:
            result = subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=60)
            assert result.returncode == 2 and error in result.stderr, (arguments, result.stderr)
        assert len(received) == 2
    finally:
        server.shutdown()
        server.server_close()


# -- Airflow 2 -----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not AIRFLOW_2, reason="checks the Airflow 2 refusal")
def test_on_airflow_2_the_notifier_refuses_to_import_saying_airflow_3_1_is_needed() -> None:
    for module in (
        "airflow_provider_itnio.notifications.hitl",
        "airflow_provider_itnio.webhook.hitl",
        "airflow_provider_itnio.webhook.taps",
        "airflow_provider_itnio.webhook.owed_buttons",
        "airflow_provider_itnio.webhook.tap_sweeper",
        "airflow_provider_itnio.webhook.approvals_common",
    ):
        result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        assert result.returncode != 0
        assert "ImportError" in result.stderr and "needs Airflow 3.1 or later" in result.stderr, result.stderr
