"""
The receiver's side of approvals: a tap on an approval button answers the Airflow HITL request it names.

:class:`~airflow_provider_itnio.notifications.hitl.ItnioHITLNotifier` sends a HITL task's options as reply buttons
(or list rows) whose ids are signed by :mod:`airflow_provider_itnio.hitl_buttons`; when the approver taps one, the
receiver (:mod:`airflow_provider_itnio.webhook.app`) records the inbound push and calls :func:`on_inbound`, which
records the answer in Airflow's ``hitl_detail`` row exactly as the UI's ``PATCH .../hitlDetails`` route does, and
returns the short WhatsApp reply to send once the HTTP answer is out. Any other new message from an approver who is
still owed buttons gets them (:mod:`airflow_provider_itnio.webhook.owed_buttons`).

A TI id names one try: a retried or cleared task gets a new one, so an old message's buttons answer nothing.

**Who answered.** ``responded_by`` is ``{"id": ..., "name": "+<number> (WhatsApp)"}``: the id is the Airflow user
id the notifier mapped the number to (its ``user_ids`` argument; carried, signed, in the button id), else
``whatsapp:+<number>``. When the task has ``assigned_users``, only a number mapped to one of their ids can answer
(the others get a reply telling them to use the Airflow UI), and the name becomes ``"<user name> (WhatsApp
+<number>)"``.

**A tap is never lost.** The receiver's writer records a tap's push together with a *pending* row in
``itnio_hitl_tap`` (one transaction). :func:`apply_tap` then claims that row, records the answer and marks the row
applied, in one transaction: when that fails, nothing of it is kept and the push is answered 503, so the vendor
pushes it again and the re-push applies it (a re-push of an applied tap does nothing, and is not answered twice).
A tap left pending by an API server killed in between is applied by the re-push, or by the sweep
(:mod:`airflow_provider_itnio.webhook.tap_sweeper`). A tap applied late is judged by when its push first arrived:
a tap given before the ``response_timeout`` still answers, as long as the task still waits.

**What is refused** (nothing is written, and the reply says why, with the link to the task's page in the UI when
``[api] base_url`` is set): a second tap or a tap after an answer given in the UI (the reply names who answered
and when), a tap once the task no longer waits (its ``response_timeout`` passed, it was cleared or it failed), a
button id that no key of the connection signed (forged, or signed with a key no longer in the ring: "This
request can no longer be answered here", with the link, only when the sender is one of the numbers the request
was sent to, per the task's :data:`~airflow_provider_itnio.hitl_buttons.REQUESTS_XCOM_KEY` XCom; anyone else gets
no reply), a tap from a number the button was not sent to (no link). Each reply is sent once per inbound message: a
re-push is not answered again. Phone numbers are logged as a short digest (``#1a2b3c4d``), never in clear, and so
are database errors: their type and message, without the statement's parameters.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio._text import cut
from airflow_provider_itnio.hitl_buttons import (
    REQUESTS_XCOM_KEY,
    ButtonId,
    ButtonKeys,
    parse_button,
    recipient_digest,
    verify_button,
)
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed
from airflow_provider_itnio.webhook.approvals_common import (
    PARKED_STATES,
    aware,
    begin_writing,
    connection_button_keys,
    masked_error,
    new_session,
    phone_digest,
    send_reply,
)
from airflow_provider_itnio.webhook.owed_buttons import pending_requests, send_pending

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("Human-in-the-loop answers on WhatsApp")

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from starlette.background import BackgroundTask

    from airflow_provider_itnio.events import InboundEvent

__all__ = ["TapNotRecorded", "TapOutcome", "apply_tap", "handle_tap", "on_inbound", "responder", "ui_link"]

log = logging.getLogger(__name__)

#: The task instance states in which an answer is still taken (RUNNING: between the request and the park,
#: as long as the task is not already resuming, i.e. has no ``next_method``).
_OPEN_STATES = ("running", "awaiting_input", "deferred")


class TapNotRecorded(Exception):
    """A tap's answer could not be recorded now (the database failed): the push must be answered 503."""


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


def ui_link(ti: Any, base_url: str | None = None) -> str | None:
    """
    Return the task instance's ``required_actions`` page in the UI, or ``None`` when no base URL is known.

    The same address as ``HITLOperator.generate_link_to_ui`` makes (which needs the operator, not at hand here).

    :param ti: The task instance (its ``dag_id``, ``run_id``, ``task_id`` and ``map_index``).
    :param base_url: The UI's address (``[api] base_url`` by default).
    """
    from urllib.parse import urlencode, urlparse, urlunparse

    from airflow.configuration import conf

    base = base_url or conf.get("api", "base_url", fallback=None)
    if not base:
        return None
    parsed = urlparse(base)
    path = f"/dags/{ti.dag_id}/runs/{ti.run_id}/tasks/{ti.task_id}/required_actions"
    return urlunparse((parsed.scheme, parsed.netloc, path, "", urlencode({"map_index": ti.map_index}), ""))


# -- a tap -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TapOutcome:
    """
    What a tap did.

    :param code: ``answered``, ``already_answered``, ``closed`` (the task no longer waits), ``other_number``,
        ``not_assigned``, ``forged`` (no key of the ring signed it), ``ui_only`` (the task needs the UI) or
        ``ignored`` (not one of the notifier's ids).
    :param reply: The WhatsApp text to send back to the sender, or ``None``.
    :param ti_id: The task instance the button named (``None`` when it names none).
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
    return cut(" ".join(str(text).split()), limit)


def _see(link: str | None) -> str:
    return f"\n\nIn Airflow: {link}" if link else ""


def _already(detail: Any, link: str | None) -> str:
    chosen = ", ".join(str(option) for option in (detail.chosen_options or [])) or "-"
    who = detail.responded_by_user
    by = f"by {who['name']}" if who else "by the timeout default"
    return (
        f"\u201c{_quote(detail.subject)}\u201d was already answered: {_quote(chosen, 40)}, {by}, at "
        f"{_when(detail.responded_at)}. Your tap changed nothing." + _see(link)
    )


def handle_tap(
    event: InboundEvent,
    conn_id: str,
    *,
    now: datetime.datetime | None = None,
    session: Session | None = None,
    keys: ButtonKeys | None = None,
) -> TapOutcome | None:
    """
    Record the answer a tap gives, as ``PATCH .../hitlDetails`` would; return what happened (``None``: not ours).

    The task instance row, then its ``hitl_detail`` row, are locked (the route's order), the answer is written only
    when none was given and the task still waits, and a parked task is resumed with ``handle_event_submit``
    (Airflow 3.3's ``awaiting_input``; on older Airflow, its ``HITLTrigger`` sees the answer).

    :param event: An inbound push with a ``reply``.
    :param conn_id: The connection whose address received it (its key ring verifies the button id).
    :param now: The time of the answer (UTC; default: now).
    :param session: The transaction to write in (the caller commits); by default one of its own.
    :param keys: The connection's key ring (read from the connection by default).
    """
    reply = event.reply or {}
    button = parse_button(reply.get("id"))
    if button is None:
        return None
    if keys is None:
        keys = connection_button_keys(conn_id) or ButtonKeys(None, ())
    if session is None:
        with new_session() as own:
            return _handle(own, event, conn_id, button, keys, now)
    return _handle(session, event, conn_id, button, keys, now)


def _handle(
    session: Session,
    event: InboundEvent,
    conn_id: str,
    button: ButtonId,
    keys: ButtonKeys,
    now: datetime.datetime | None,
) -> TapOutcome:
    from airflow.models.taskinstance import TaskInstance

    sender = phone_digest(event.from_phone)
    verdict = verify_button(keys.verifying, button, event.from_phone)
    if verdict == "forged":
        named = session.get(TaskInstance, uuid.UUID(button.ti_id))
        if named is None or not _was_sent_to(session, named, event.from_phone, keys):
            log.warning(
                "itnio HITL: refused a tap from %s on a button id no key of connection %s signed (forged, or signed "
                "with a key no longer in its ring), from a number the request was not sent to: not answered",
                sender,
                conn_id,
            )
            return TapOutcome("forged", None, button.ti_id if named is not None else None)
        log.warning(
            "itnio HITL: refused a tap from %s on a button id no key of connection %s signed (forged, or signed "
            "with a key no longer in its ring)",
            sender,
            conn_id,
        )
        link = ui_link(named)
        reply = f"This request can no longer be answered here: {link or 'answer in the Airflow UI.'}"
        return TapOutcome("forged", reply, button.ti_id)
    if verdict == "other_number":
        log.warning(
            "itnio HITL: refused a tap from %s on a button sent to another number (task instance %s)",
            sender,
            button.ti_id,
        )
        return TapOutcome(
            "other_number", "This request was not sent to you, so your tap changed nothing.", button.ti_id
        )
    return _record_answer(session, button, event.from_phone, sender, now)


def _was_sent_to(session: Session, ti: Any, phone: str, keys: ButtonKeys) -> bool:
    """
    Return whether the notifier sent task instance ``ti``'s request to ``phone`` (its :data:`REQUESTS_XCOM_KEY`
    XCom lists the keyed digest of each number it sent to; any key of the ring may have made it).
    """
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    xcom = session.scalar(
        select(XComModel).where(
            XComModel.dag_id == ti.dag_id,
            XComModel.run_id == ti.run_id,
            XComModel.task_id == ti.task_id,
            XComModel.map_index == ti.map_index,
            XComModel.key == REQUESTS_XCOM_KEY,
        )
    )
    value = XComModel.deserialize_value(xcom) if xcom is not None else None
    if not isinstance(value, dict):
        return False
    digests = {recipient_digest(key, phone) for key in keys.verifying}
    for entry in value.values():
        made = entry.get("recipient") if isinstance(entry, dict) else None
        if isinstance(made, list) and digests.intersection(str(digest) for digest in made):
            return True
    return False


def _record_answer(
    session: Session, button: ButtonId, phone: str, sender: str, now: datetime.datetime | None
) -> TapOutcome:
    from airflow.models.hitl import HITLDetail, HITLUser
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select, update

    ti_uuid = uuid.UUID(button.ti_id)
    ti = session.get(TaskInstance, ti_uuid, with_for_update={"of": TaskInstance})
    detail = session.scalar(select(HITLDetail).where(HITLDetail.ti_id == ti_uuid).with_for_update(of=HITLDetail))
    if ti is None or detail is None:
        log.info("itnio HITL: tap from %s on task instance %s, which no longer exists", sender, button.ti_id)
        return TapOutcome(
            "closed", "This request is no longer waiting for an answer. Your tap changed nothing.", button.ti_id
        )
    link = ui_link(ti)
    if detail.response_received:
        log.info("itnio HITL: refused a second answer from %s to %s", sender, button.ti_id)
        return TapOutcome("already_answered", _already(detail, link), button.ti_id)
    moment = now or datetime.datetime.now(datetime.UTC)
    state = str(getattr(ti.state, "value", ti.state))
    timeout = ti.trigger_timeout if state in PARKED_STATES else None
    if timeout is not None and timeout.tzinfo is None:
        timeout = timeout.replace(tzinfo=datetime.UTC)
    resuming = state == "running" and ti.next_method is not None  # e.g. running after the timeout sweep
    if state not in _OPEN_STATES or resuming or (timeout is not None and timeout <= moment):
        log.info("itnio HITL: refused a late answer from %s to %s (state %s)", sender, button.ti_id, state)
        late = f" (its time ran out at {_when(timeout)})" if timeout is not None and timeout <= moment else ""
        return TapOutcome(
            "closed",
            f"\u201c{_quote(detail.subject)}\u201d is no longer waiting for an answer{late}. "
            "Your tap changed nothing." + _see(link),
            button.ti_id,
        )
    options = list(detail.options or [])
    if button.index >= len(options) or detail.multiple or detail.params:
        log.warning("itnio HITL: the tap on %s does not fit its request; answer in the UI", button.ti_id)
        return TapOutcome("ui_only", "This request must be answered in the Airflow UI." + _see(link), button.ti_id)
    user = responder(phone, button.user_id, list(detail.assigned_users or []))
    if user is None:
        log.warning("itnio HITL: refused a tap from %s, not an assigned user of %s", sender, button.ti_id)
        return TapOutcome(
            "not_assigned",
            "You are not one of the assigned approvers: answer in the Airflow UI." + _see(link),
            button.ti_id,
        )
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
        return TapOutcome("already_answered", _already(detail, link), button.ti_id)
    if state in PARKED_STATES and hasattr(detail, "as_resume_event_payload"):
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent

        handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
    log.info("itnio HITL: %s answered %s with option %d", sender, button.ti_id, button.index)
    return TapOutcome(
        "answered",
        f"Recorded: {_quote(options[button.index], 40)} for \u201c{_quote(detail.subject)}\u201d. Thank you.",
        button.ti_id,
    )


def apply_tap(event: InboundEvent, conn_id: str, *, now: datetime.datetime | None = None) -> TapOutcome | None:
    """
    Apply a recorded tap once: claim its pending ``itnio_hitl_tap`` row, record the answer, mark the row applied.

    One transaction: when anything fails, nothing of it is kept and the row stays pending (for the re-push or the
    sweep). Return ``None`` when there is nothing to apply (applied before, or being applied by another request).
    The tap is judged as of when its push first arrived (a tap given before the ``response_timeout`` and applied
    after it, by a re-push or the sweep, still answers while the task waits), and that is its ``responded_at``.

    :param event: The tap's push, recorded by the receiver.
    :param conn_id: The connection whose address received it.
    :param now: When it is applied (UTC; default: now).
    :raises Exception: The database's error when the answer could not be recorded.
    """
    from airflow_provider_itnio.webhook.store import claim_tap, set_tap_outcome

    keys = connection_button_keys(conn_id) or ButtonKeys(None, ())
    moment = now or datetime.datetime.now(datetime.UTC)
    with new_session() as session:
        begin_writing(session)
        received = claim_tap(session, event.app_id, event.message_id, moment)
        if received is None:
            return None
        given = min(aware(received), moment)
        outcome = handle_tap(event, conn_id, now=given, session=session, keys=keys) or TapOutcome("ignored")
        set_tap_outcome(session, event.app_id, event.message_id, outcome.code)
    return outcome


def _after_tap(conn_id: str, event: InboundEvent, outcome: TapOutcome | None) -> None:
    """Send a tap's reply, if any, then log that its push was handled (after the HTTP answer)."""
    if outcome is not None and outcome.reply is not None:
        send_reply(conn_id, event, outcome.reply)
    log.info(
        "itnio HITL: handled the push of tap %s: %s",
        event.message_id,
        outcome.code if outcome is not None else "applied before, nothing to do",
    )


async def on_inbound(event: InboundEvent, conn_id: str, *, new: bool) -> BackgroundTask | None:
    """
    Handle a recorded inbound push for Human-in-the-loop requests.

    A tap on a HITL button is applied (:func:`apply_tap`), on its first push and on every re-push while it is
    still pending; any other new message claims the requests owed to its sender
    (:func:`~airflow_provider_itnio.webhook.owed_buttons.pending_requests`). Return the background task that sends
    the reply (and logs that the tap was handled) or the requests after the HTTP answer, or ``None``. Errors are
    logged without the database's statement parameters (they may hold the number).

    :param event: The inbound message.
    :param conn_id: The connection whose address received it.
    :param new: Whether the push was recorded for the first time (``False``: a re-push).
    :raises TapNotRecorded: The tap's answer could not be recorded: answer 503, so that the vendor pushes again.
    """
    from starlette.background import BackgroundTasks
    from starlette.concurrency import run_in_threadpool

    from airflow_provider_itnio.webhook.store import is_approval_tap

    tasks = BackgroundTasks()
    if is_approval_tap(event):
        try:
            outcome = await run_in_threadpool(apply_tap, event, conn_id)
        except Exception as err:
            reason = masked_error(err, event.from_phone)
            log.error(
                "itnio HITL: the tap %s from %s could not be recorded now (connection %s): %s; answering 503",
                event.message_id,
                phone_digest(event.from_phone),
                conn_id,
                reason,
            )
            raise TapNotRecorded(reason) from err
        tasks.add_task(_after_tap, conn_id, event, outcome)
    elif new:
        try:
            owed = await run_in_threadpool(pending_requests, event, conn_id)
        except Exception as err:
            log.error(
                "itnio HITL: cannot look for requests owed to a sender (connection %s): %s",
                conn_id,
                masked_error(err, event.from_phone),
            )
            owed = []
        if owed:
            tasks.add_task(send_pending, conn_id, event, owed)
    return tasks if tasks.tasks else None
