"""
Human-in-the-loop answers given on WhatsApp: signed button ids, and a tap turned into the task's answer.

:class:`~airflow_provider_itnio.notifications.hitl.ItnioHITLNotifier` sends a HITL task's options as reply buttons
(or list rows) whose ids are made here by :func:`sign_button`; when the approver taps one, the receiver
(:mod:`airflow_provider_itnio.webhook.app`) records the inbound push and calls :func:`on_new_inbound`, which records
the answer in Airflow's ``hitl_detail`` row exactly as the UI's ``PATCH .../hitlDetails`` route does, and returns
the short WhatsApp reply to send once the HTTP answer is out.

**Button ids.** ``hitl1.<ti id, 32 hex>.<option index>.<user id, base64url, may be empty>.<tag>.<tag>``:

- the first tag is HMAC-SHA256 over the TI id, the option index and the user id; it proves the id was made by the
  notifier for that task instance and option (an id made for one task instance cannot answer another, and an id
  cannot be made up: a *forged* id);
- the second tag also covers the recipient's number: the id only answers when tapped by the number it was sent
  to. This is how "only the recipients the notifier sent to can answer" is enforced, without a table of who was
  sent what: the id itself is the record, and nobody can make one for another number.

The key is derived from the receiving connection's ``webhook_token`` extra (HMAC-SHA256 of a fixed label under
the token), so ids made for one connection do not verify on another, and the key never leaves the two places that
already hold the token. Tags are 96 bits, compared in constant time (``hmac.compare_digest``). Ids are at most
:data:`MAX_ID` characters (WhatsApp allows 256 for a button, 200 for a list row).

A TI id names one try: a retried or cleared task gets a new one, so an old message's buttons answer nothing.

**Who answered.** ``responded_by`` is ``{"id": ..., "name": "+<number> (WhatsApp)"}``: the id is the Airflow user
id the notifier mapped the number to (its ``user_ids`` argument; carried, signed, in the button id), else
``whatsapp:+<number>``. When the task has ``assigned_users``, only a number mapped to one of their ids can answer
(the others get a reply telling them to use the Airflow UI), and the name becomes ``"<user name> (WhatsApp
+<number>)"``.

**Buttons after a template.** When a recipient's 24-hour window was closed, the notifier sent a template and
recorded in the task's XCom :data:`PENDING_XCOM_KEY` who is still owed the buttons (as keyed digests of their
numbers, never the numbers). When one of them writes to the business while the task still waits, the receiver
sends them the buttons (:func:`pending_requests`), once.

**What is refused** (nothing is written, and the reply says why): a second tap or a tap after an answer given in
the UI (the reply names who answered and when), a tap once the task no longer waits (its ``response_timeout``
passed, it was cleared or it failed), a tap from a number the button was not sent to. A forged id is only logged.
Phone numbers are logged as a short digest (``#1a2b3c4d``), never in clear.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import logging
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio.webhook import require_airflow_3_1

require_airflow_3_1("Human-in-the-loop answers on WhatsApp")

if TYPE_CHECKING:
    from starlette.background import BackgroundTask

    from airflow_provider_itnio.events import InboundEvent

__all__ = [
    "ID_PREFIX",
    "MAX_ID",
    "PENDING_XCOM_KEY",
    "ButtonId",
    "TapOutcome",
    "button_key",
    "handle_tap",
    "on_new_inbound",
    "parse_button",
    "pending_requests",
    "phone_digest",
    "recipient_digest",
    "responder",
    "send_pending",
    "send_reply",
    "sign_button",
    "verify_button",
]

log = logging.getLogger(__name__)

#: What every button id the notifier makes starts with (other buttons are not this module's business).
ID_PREFIX = "hitl1"
#: The longest id :func:`sign_button` makes (a list row's id may have 200 characters, a button's 256).
MAX_ID = 200
#: The XCom key under which the notifier records who is owed the buttons (their window was closed).
PENDING_XCOM_KEY = "itnio_hitl_pending"
_KEY_LABEL = b"itnio-hitl-button-v1"
_TAG_BYTES = 12
_TAG_CHARS = 16  # base64url of 12 bytes, no padding
_ID = re.compile(r"^hitl1\.([0-9a-f]{32})\.([0-9]{1,2})\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{16})$")
#: The task instance states in which an answer is still taken (RUNNING: between the request and the park,
#: as long as the task is not already resuming, i.e. has no ``next_method``).
_OPEN_STATES = ("running", "awaiting_input", "deferred")
#: The states a parked task is resumed from (as the UI's route does).
_PARKED_STATES = ("awaiting_input", "deferred")


def button_key(webhook_token: str) -> bytes:
    """
    Return the key that signs button ids for a connection, derived from its ``webhook_token``.

    :param webhook_token: The connection's ``webhook_token`` extra.
    """
    return hmac.new(webhook_token.strip().encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, *parts: str) -> str:
    digest = hmac.new(key, "\x1f".join(parts).encode("utf-8"), hashlib.sha256).digest()
    return _b64(digest[:_TAG_BYTES])


@dataclass(frozen=True)
class ButtonId:
    """
    What a button id says (read by :func:`parse_button`; only to be trusted after :func:`verify_button`).

    :param ti_id: The task instance's id (32 hex digits).
    :param index: The option's index in the task's ``options``.
    :param user_id: The Airflow user id the recipient's number was mapped to, or ``None``.
    :param encoded_user: The user id as it is in the button id (base64url).
    :param task_tag: The tag over the TI id, the index and the user id.
    :param recipient_tag: The tag that also covers the recipient's number.
    """

    ti_id: str
    index: int
    user_id: str | None
    encoded_user: str
    task_tag: str
    recipient_tag: str


def sign_button(key: bytes, ti_id: uuid.UUID | str, index: int, recipient: str, user_id: str | None = None) -> str:
    """
    Return the button id of option ``index`` of task instance ``ti_id``, sent to ``recipient``.

    :param key: From :func:`button_key`.
    :param ti_id: The task instance's id.
    :param index: The option's index (0-99).
    :param recipient: The recipient's digits (as :func:`~airflow_provider_itnio.messages.normalize_phone` gives).
    :param user_id: The Airflow user the number stands for, or ``None``.
    :raises ValueError: When the id would be longer than :data:`MAX_ID` (a very long user id).
    """
    ti_hex = uuid.UUID(str(ti_id)).hex
    if not 0 <= index < 100:
        raise ValueError(f"option index must be 0-99; got {index}")
    user = _b64(user_id.encode("utf-8")) if user_id else ""
    task_tag = _tag(key, "task", ti_hex, str(index), user)
    recipient_tag = _tag(key, "recipient", ti_hex, str(index), user, recipient)
    value = f"{ID_PREFIX}.{ti_hex}.{index}.{user}.{task_tag}.{recipient_tag}"
    if len(value) > MAX_ID:
        raise ValueError(f"the user id {user_id!r} is too long for a button id (at most {MAX_ID} characters)")
    return value


def parse_button(value: object) -> ButtonId | None:
    """
    Return what a button id says, or ``None`` when it is not one of :func:`sign_button`'s (e.g. another feature's).

    :param value: The tapped button's or row's id.
    """
    if not isinstance(value, str) or not value.startswith(f"{ID_PREFIX}."):
        return None
    match = _ID.match(value)
    if match is None:
        return None
    ti_hex, index, user, task_tag, recipient_tag = match.groups()
    try:
        user_id = _unb64(user).decode("utf-8") if user else None
    except (ValueError, UnicodeDecodeError):
        return None
    return ButtonId(ti_hex, int(index), user_id, user, task_tag, recipient_tag)


def verify_button(key: bytes, button: ButtonId, sender: str) -> str:
    """
    Return ``"ok"``, ``"forged"`` (not made with this key for this TI and option) or ``"other_number"``.

    :param key: From :func:`button_key` (of the connection that received the tap).
    :param button: From :func:`parse_button`.
    :param sender: The digits of the number that tapped.
    """
    parts = (button.ti_id, str(button.index), button.encoded_user)
    if not hmac.compare_digest(_tag(key, "task", *parts), button.task_tag):
        return "forged"
    if not hmac.compare_digest(_tag(key, "recipient", *parts, sender), button.recipient_tag):
        return "other_number"
    return "ok"


def recipient_digest(key: bytes, phone: str) -> str:
    """
    Return a keyed digest of a recipient's number, to record who is owed the buttons without the number.

    :param key: From :func:`button_key`.
    :param phone: The digits.
    """
    return _tag(key, "pending", phone)


def phone_digest(phone: str) -> str:
    """
    Return a short digest of a phone number for logs (``#1a2b3c4d``): the same number always gives the same one.

    :param phone: The digits.
    """
    return "#" + hashlib.sha256(phone.encode("utf-8")).hexdigest()[:8]


def responder(phone: str, user_id: str | None, assigned: list[dict[str, Any]] | None) -> dict[str, str] | None:
    """
    Return the ``responded_by`` user recorded for a tap from ``phone``, or ``None`` when it may not answer.

    :param phone: The approver's digits.
    :param user_id: The Airflow user id the notifier mapped the number to, or ``None``.
    :param assigned: The task's ``assigned_users`` (``[{"id", "name"}]``), empty or ``None`` when anyone may.
    """
    number = f"+{phone}"
    if assigned:
        names = {str(user.get("id")): str(user.get("name") or user.get("id")) for user in assigned}
        if user_id is None or user_id not in names:
            return None
        return {"id": user_id, "name": f"{names[user_id]} (WhatsApp {number})"}
    return {"id": user_id or f"whatsapp:{number}", "name": f"{number} (WhatsApp)"}


# -- a tap -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TapOutcome:
    """
    What a tap did.

    :param code: ``answered``, ``already_answered``, ``closed`` (the task no longer waits), ``other_number``,
        ``not_assigned``, ``forged``, ``ui_only`` (the task needs the UI) or ``error``.
    :param reply: The WhatsApp text to send back to the sender, or ``None``.
    :param ti_id: The task instance the button named (``None`` for a forged id).
    """

    code: str
    reply: str | None = None
    ti_id: str | None = None


def _when(value: datetime.datetime | None) -> str:
    if value is None:
        return "an unknown time"
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _quote(text: object, limit: int = 60) -> str:
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "\u2026"


def _already(detail: Any) -> str:
    chosen = ", ".join(str(option) for option in (detail.chosen_options or [])) or "-"
    who = detail.responded_by_user
    by = f"by {who['name']}" if who else "by the timeout default"
    return (
        f"\u201c{_quote(detail.subject)}\u201d was already answered: {_quote(chosen, 40)}, {by}, at "
        f"{_when(detail.responded_at)}. Your tap changed nothing."
    )


def _webhook_key(conn_id: str) -> bytes | None:
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    token = (conn.extra_dejson or {}).get("webhook_token")
    return button_key(token) if isinstance(token, str) and token.strip() else None


def _session() -> Any:
    from airflow.utils.session import create_session

    try:
        return create_session(scoped=False)  # type: ignore[call-arg]
    except TypeError:  # Airflow 3.1's create_session() has no "scoped"
        return create_session()


def handle_tap(event: InboundEvent, conn_id: str, *, now: datetime.datetime | None = None) -> TapOutcome | None:
    """
    Record the answer a tap gives, as ``PATCH .../hitlDetails`` would; return what happened (``None``: not ours).

    Runs one transaction: the task instance row, then its ``hitl_detail`` row, are locked (the route's order), the
    answer is written only when none was given and the task still waits, and a parked task is resumed with
    ``handle_event_submit`` (Airflow 3.3's ``awaiting_input``; on older Airflow, its ``HITLTrigger`` sees the answer).

    :param event: A new inbound push with a ``reply``.
    :param conn_id: The connection whose address received it (its ``webhook_token`` keys the button ids).
    :param now: The time of the answer (UTC; default: now).
    """
    reply = event.reply or {}
    button = parse_button(reply.get("id"))
    if button is None:
        return None
    sender = phone_digest(event.from_phone)
    key = _webhook_key(conn_id)
    if key is None:
        log.warning("itnio HITL: a tap reached connection %s, which has no webhook_token; ignored", conn_id)
        return TapOutcome("forged")
    verdict = verify_button(key, button, event.from_phone)
    if verdict == "forged":
        log.warning("itnio HITL: refused a tap with a forged button id from %s (connection %s)", sender, conn_id)
        return TapOutcome("forged")
    if verdict == "other_number":
        log.warning(
            "itnio HITL: refused a tap from %s on a button sent to another number (task instance %s)",
            sender,
            button.ti_id,
        )
        return TapOutcome(
            "other_number", "This request was not sent to you, so your tap changed nothing.", button.ti_id
        )
    return _record_answer(button, event.from_phone, sender, now)


def _record_answer(button: ButtonId, phone: str, sender: str, now: datetime.datetime | None) -> TapOutcome:
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    ti_uuid = uuid.UUID(button.ti_id)
    with _session() as session:
        ti = session.get(TaskInstance, ti_uuid, with_for_update={"of": TaskInstance})
        detail = session.scalar(select(HITLDetail).where(HITLDetail.ti_id == ti_uuid).with_for_update(of=HITLDetail))
        if ti is None or detail is None:
            log.info("itnio HITL: tap from %s on task instance %s, which no longer exists", sender, button.ti_id)
            return TapOutcome(
                "closed", "This request is no longer waiting for an answer. Your tap changed nothing.", button.ti_id
            )
        if detail.response_received:
            log.info("itnio HITL: refused a second answer from %s to %s", sender, button.ti_id)
            return TapOutcome("already_answered", _already(detail), button.ti_id)
        moment = now or datetime.datetime.now(datetime.UTC)
        state = str(ti.state.value if hasattr(ti.state, "value") else ti.state)
        timeout = ti.trigger_timeout if state in _PARKED_STATES else None
        if timeout is not None and timeout.tzinfo is None:
            timeout = timeout.replace(tzinfo=datetime.UTC)
        resuming = state == "running" and ti.next_method is not None  # e.g. running after the timeout sweep
        if state not in _OPEN_STATES or resuming or (timeout is not None and timeout <= moment):
            log.info("itnio HITL: refused a late answer from %s to %s (state %s)", sender, button.ti_id, state)
            late = f" (its time ran out at {_when(timeout)})" if timeout is not None and timeout <= moment else ""
            return TapOutcome(
                "closed",
                f"\u201c{_quote(detail.subject)}\u201d is no longer waiting for an answer{late}. "
                "Your tap changed nothing.",
                button.ti_id,
            )
        options = list(detail.options or [])
        if button.index >= len(options) or detail.multiple or detail.params:
            log.warning("itnio HITL: the tap on %s does not fit its request; answer in the UI", button.ti_id)
            return TapOutcome("ui_only", "This request must be answered in the Airflow UI.", button.ti_id)
        user = responder(phone, button.user_id, list(detail.assigned_users or []))
        if user is None:
            log.warning("itnio HITL: refused a tap from %s, not an assigned user of %s", sender, button.ti_id)
            return TapOutcome(
                "not_assigned", "You are not one of the assigned approvers: answer in the Airflow UI.", button.ti_id
            )
        from airflow.models.hitl import HITLUser
        from sqlalchemy import update

        # Only while no answer is recorded, in the statement itself: SQLite ignores FOR UPDATE, so two taps (or a
        # tap and the UI) that both read "not answered" would otherwise both write, the last one winning.
        written: Any = session.execute(
            update(HITLDetail)
            .where(HITLDetail.ti_id == ti_uuid, HITLDetail.responded_at.is_(None))
            .values(
                responded_by=HITLUser(id=user["id"], name=user["name"]),
                responded_at=moment,
                chosen_options=[options[button.index]],
                params_input={},
            )
            .execution_options(synchronize_session=False)
        )
        session.refresh(detail)
        if written.rowcount != 1:
            log.info("itnio HITL: refused a second answer from %s to %s", sender, button.ti_id)
            return TapOutcome("already_answered", _already(detail), button.ti_id)
        if state in _PARKED_STATES and hasattr(detail, "as_resume_event_payload"):
            from airflow.models.trigger import handle_event_submit
            from airflow.triggers.base import TriggerEvent

            handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
        log.info("itnio HITL: %s answered %s with option %d", sender, button.ti_id, button.index)
        return TapOutcome(
            "answered",
            f"Recorded: {_quote(options[button.index], 40)} for \u201c{_quote(detail.subject)}\u201d. Thank you.",
            button.ti_id,
        )


def send_reply(conn_id: str, event: InboundEvent, text: str | Any) -> None:
    """
    Send ``text`` (or a message model) to the sender of ``event``, quoting it; log, never raise.

    Runs after the HTTP answer.

    :param conn_id: The connection that received the tap (the reply goes through its account).
    :param event: The tap.
    :param text: The reply's text, or a :class:`~airflow_provider_itnio.messages.Message`.
    """
    from airflow.models.connection import Connection

    from airflow_provider_itnio.hooks.itnio import ItnioHook
    from airflow_provider_itnio.messages import Text

    class _ServerHook(ItnioHook):
        """The hook, reading its connection as the API server does (no task SDK here)."""

        @classmethod
        def get_connection(cls, conn_id: str) -> Any:
            return Connection.get_connection_from_secrets(conn_id)

    hook = _ServerHook(itnio_conn_id=conn_id)
    try:
        message = Text(body=text) if isinstance(text, str) else text
        hook.send(event.from_phone, message, business_phone=event.business_phone, reply_to=event.message_id)
    except Exception as err:
        log.error("itnio HITL: the reply to %s was not sent: %s", phone_digest(event.from_phone), err)
    finally:
        hook.close()


def pending_requests(event: InboundEvent, conn_id: str) -> list[tuple[str, Any]]:
    """
    Return the HITL requests owed to the sender of ``event`` (``[(ti id, message)]``) and mark them as sent.

    A request is owed when the notifier sent the sender a template instead of the buttons (closed window) and the
    task still waits for an answer; each is returned once.

    :param event: A new inbound message (any type).
    :param conn_id: The connection whose address received it.
    """
    from types import SimpleNamespace

    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import and_, select

    from airflow_provider_itnio.notifications.hitl import ItnioHITLNotifier

    key = _webhook_key(conn_id)
    if key is None:
        return []
    digest = recipient_digest(key, event.from_phone)
    owed: list[tuple[str, Any]] = []
    with _session() as session:
        rows = session.execute(
            select(XComModel, TaskInstance)
            .join(
                TaskInstance,
                and_(
                    TaskInstance.dag_id == XComModel.dag_id,
                    TaskInstance.run_id == XComModel.run_id,
                    TaskInstance.task_id == XComModel.task_id,
                    TaskInstance.map_index == XComModel.map_index,
                ),
            )
            .where(XComModel.key == PENDING_XCOM_KEY, TaskInstance.state.in_(_PARKED_STATES))
        ).all()
        for xcom, ti in rows:
            value = XComModel.deserialize_value(xcom)
            pending = value.get("recipients") if isinstance(value, dict) else None
            if not isinstance(pending, dict) or value.get("conn_id") != conn_id or digest not in pending:
                continue
            detail = session.get(HITLDetail, ti.id)
            if detail is None or detail.response_received:
                continue
            user_id = pending.pop(digest)
            xcom.value = XComModel.serialize_value({**value, "recipients": pending})
            notifier = ItnioHITLNotifier(
                recipients=event.from_phone,
                itnio_conn_id=conn_id,
                user_ids={event.from_phone: user_id} if user_id else None,
                list_button=str(value.get("list_button") or "Choose"),
            )
            request = SimpleNamespace(
                options=list(detail.options or []),
                subject=detail.subject,
                body=detail.body,
                multiple=detail.multiple,
                params=detail.params,
                assigned_users=list(detail.assigned_users or []),
            )
            link = value.get("link") if isinstance(value.get("link"), str) else None
            message = notifier.build_message(request, SimpleNamespace(id=ti.id), event.from_phone, key, link)
            owed.append((str(ti.id), message))
    return owed


def send_pending(conn_id: str, event: InboundEvent, owed: list[tuple[str, Any]]) -> None:
    """
    Send the owed HITL requests to the sender of ``event``; log, never raise (runs after the HTTP answer).

    :param conn_id: The connection that received the message.
    :param event: The message.
    :param owed: From :func:`pending_requests`.
    """
    for ti_id, message in owed:
        log.info("itnio HITL: %s wrote back; sending the request of %s", phone_digest(event.from_phone), ti_id)
        send_reply(conn_id, event, message)


async def on_new_inbound(event: InboundEvent, conn_id: str) -> BackgroundTask | None:
    """
    Handle a newly recorded inbound message for Human-in-the-loop requests; never raise.

    A tap on a HITL button is recorded as the answer (:func:`handle_tap`); any other message sends its sender the
    requests owed to them (:func:`pending_requests`). Return the background task that sends the reply or the
    requests after the HTTP answer, or ``None`` when there is nothing to send.

    :param event: The inbound message, recorded for the first time.
    :param conn_id: The connection whose address received it.
    """
    from starlette.background import BackgroundTask
    from starlette.concurrency import run_in_threadpool

    if event.reply is None or parse_button(event.reply.get("id")) is None:
        try:
            owed = await run_in_threadpool(pending_requests, event, conn_id)
        except Exception:
            log.exception("itnio HITL: cannot look for requests owed to a sender (connection %s)", conn_id)
            return None
        return BackgroundTask(send_pending, conn_id, event, owed) if owed else None
    try:
        outcome = await run_in_threadpool(handle_tap, event, conn_id)
    except Exception:
        log.exception("itnio HITL: a tap could not be recorded (connection %s)", conn_id)
        outcome = TapOutcome("error", "Your answer could not be recorded now: please answer in the Airflow UI.")
    if outcome is None or outcome.reply is None:
        return None
    return BackgroundTask(send_reply, conn_id, event, outcome.reply)
