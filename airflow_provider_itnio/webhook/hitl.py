"""
Human-in-the-loop answers given on WhatsApp: signed button ids, and a tap turned into the task's answer.

:class:`~airflow_provider_itnio.notifications.hitl.ItnioHITLNotifier` sends a HITL task's options as reply buttons
(or list rows) whose ids are made here by :func:`sign_button`; when the approver taps one, the receiver
(:mod:`airflow_provider_itnio.webhook.app`) records the inbound push and calls :func:`on_inbound`, which records
the answer in Airflow's ``hitl_detail`` row exactly as the UI's ``PATCH .../hitlDetails`` route does, and returns
the short WhatsApp reply to send once the HTTP answer is out.

**Button ids and keys** are :mod:`airflow_provider_itnio.hitl_buttons`' (signed ids, the connection's key ring, the
message that carries the buttons), shared with the notifier; their names stay importable from here.

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
(:func:`sweep_taps`), which a thread of each API server process (:data:`sweeper`, started with the receiver and
by its first request) runs every :data:`SWEEP_INTERVAL` seconds, for taps pending longer than :data:`SWEEP_AFTER`.
A tap the sweep cannot apply is tried again later (waiting twice as long each time) and given up, with an error
logged, after :data:`MAX_TAP_ATTEMPTS` attempts. A tap applied late is judged by when its push first arrived:
a tap given before the ``response_timeout`` still answers, as long as the task still waits.

**Buttons after a template.** When a recipient's 24-hour window was closed, the notifier sent a template and
recorded in the task's XCom :data:`PENDING_XCOM_KEY` who is still owed the buttons (``recipients``: keyed digests
of their numbers, never the numbers). When one of them writes to the business while the task still waits, the
receiver moves them to ``sending`` (:func:`pending_requests`, one locked transaction, so two messages at once send
once) and sends the buttons after its answer (:func:`send_pending`): accepted, they move to ``sent`` (with the
messageId); refused with nothing sent, back to ``recipients`` (sent when they write again); an unknown outcome
(the request may have reached the API) moves them to ``unknown``, logged as an error and never sent again. Each
digest in ``sending`` carries when it was claimed; one still there after :data:`SENDING_STALE_AFTER` means the API
server stopped during the send: the sweep moves it to ``unknown`` and logs an error.

**What is refused** (nothing is written, and the reply says why, with the link to the task's page in the UI when
``[api] base_url`` is set): a second tap or a tap after an answer given in the UI (the reply names who answered
and when), a tap once the task no longer waits (its ``response_timeout`` passed, it was cleared or it failed), a
button id that no key of the connection signed (forged, or signed with a key no longer in the ring: "This
request can no longer be answered here", with the link, only when the sender is one of the numbers the request
was sent to, per the task's :data:`REQUESTS_XCOM_KEY` XCom; anyone else gets no reply), a tap from a number the
button was not sent to (no link). Each reply is sent once per inbound message: a re-push is not answered again.
Phone numbers are logged as a short digest (``#1a2b3c4d``), never in clear, and so are database errors: their
type and message, without the statement's parameters.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio._text import cut
from airflow_provider_itnio.hitl_buttons import (
    ID_PREFIX,
    MAX_ID,
    PENDING_XCOM_KEY,
    REQUESTS_XCOM_KEY,
    ButtonId,
    ButtonKeys,
    button_key_secrets,
    button_keys,
    legacy_button_key,
    mask_phone,
    parse_button,
    recipient_digest,
    request_message,
    sign_button,
    verify_button,
)
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed
from airflow_provider_itnio.webhook.store import TAP_SWEEP_AFTER

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("Human-in-the-loop answers on WhatsApp")

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from starlette.background import BackgroundTask

    from airflow_provider_itnio.events import InboundEvent

__all__ = [
    "ID_PREFIX",
    "MAX_ID",
    "MAX_TAP_ATTEMPTS",
    "PENDING_XCOM_KEY",
    "REQUESTS_XCOM_KEY",
    "SENDING_STALE_AFTER",
    "SWEEP_AFTER",
    "SWEEP_INTERVAL",
    "ButtonId",
    "ButtonKeys",
    "Owed",
    "TapNotRecorded",
    "TapOutcome",
    "apply_tap",
    "button_key_secrets",
    "button_keys",
    "connection_button_keys",
    "handle_tap",
    "legacy_button_key",
    "mask_phone",
    "on_inbound",
    "parse_button",
    "pending_requests",
    "phone_digest",
    "recipient_digest",
    "responder",
    "send_pending",
    "send_reply",
    "sign_button",
    "sweep",
    "sweep_sending",
    "sweep_taps",
    "sweeper",
    "ui_link",
    "verify_button",
]

log = logging.getLogger(__name__)

#: Seconds between two sweeps (:func:`sweep`) in one API server process.
SWEEP_INTERVAL = 10.0
#: How long a tap must have been pending before the sweep takes it (the push's own request handles it before), and
#: the first wait after a failed attempt (then doubling, up to :data:`MAX_TAP_BACKOFF`).
SWEEP_AFTER = TAP_SWEEP_AFTER
#: The longest wait between two attempts at a tap.
MAX_TAP_BACKOFF = datetime.timedelta(minutes=30)
#: The sweep's attempts at a tap before it gives up (about 2 hours with the backoff), logging an error.
MAX_TAP_ATTEMPTS = 10
#: The most pending taps one sweep tries.
SWEEP_BATCH = 20
#: How long a claimed send of owed buttons may stay in ``sending`` before the sweep reports it as unknown.
SENDING_STALE_AFTER = datetime.timedelta(minutes=5)
#: Seconds a PostgreSQL transaction of this module waits for a row lock (``lock_timeout``) before it fails.
LOCK_TIMEOUT = 10.0
#: The task instance states in which an answer is still taken (RUNNING: between the request and the park,
#: as long as the task is not already resuming, i.e. has no ``next_method``).
_OPEN_STATES = ("running", "awaiting_input", "deferred")
#: The states a parked task is resumed from (as the UI's route does).
_PARKED_STATES = ("awaiting_input", "deferred")


class TapNotRecorded(Exception):
    """A tap's answer could not be recorded now (the database failed): the push must be answered 503."""


# -- keys ----------------------------------------------------------------------------------------------------


def connection_button_keys(conn_id: str) -> ButtonKeys | None:
    """
    Return the key ring of connection ``conn_id`` as the API server reads it, or ``None`` when it does not exist.

    :param conn_id: The ``itnio`` connection.
    """
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    return button_keys(conn.extra_dejson, conn.password)


def _masked(error: BaseException, phone: str | None = None) -> str:
    """
    Return ``"<type>: <error>"`` for a log line, with ``phone`` replaced by its digest (a hook's error may name it).

    A database error (SQLAlchemy's ``StatementError``) gives only its driver's error: its text would end with the
    statement and its parameters (``[parameters: ...]``), where a tap's ``responded_by`` holds the number.
    """
    from sqlalchemy.exc import StatementError

    if isinstance(error, StatementError):
        orig = error.orig
        text = f"{type(error).__name__}: " + (f"{type(orig).__name__}: {orig}" if orig is not None else "(no detail)")
    else:
        text = f"{type(error).__name__}: {error}"
    text = " ".join(text.split())[:500]
    return text.replace(phone, phone_digest(phone)) if phone else text


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


def _session() -> Any:
    from airflow.utils.session import create_session

    try:
        return create_session(scoped=False)  # type: ignore[call-arg]
    except TypeError:  # Airflow 3.1's create_session() has no "scoped"
        return create_session()


def _begin_writing(session: Session) -> None:
    """
    Start the session's transaction as a writer: ``BEGIN IMMEDIATE`` on SQLite, a ``lock_timeout`` on PostgreSQL.

    On SQLite two read-modify-writes of one row (two messages from one approver at once) then take turns; elsewhere
    the queries lock their rows (``FOR UPDATE``). On PostgreSQL a row lock is waited for at most
    :data:`LOCK_TIMEOUT` seconds (as the receiver's writer does): a task instance row held by a stuck transaction
    fails the tap (503, the vendor re-pushes) instead of holding the request, and a thread, for ever.
    """
    from sqlalchemy import text

    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))
    elif dialect == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = '{int(LOCK_TIMEOUT * 1000)}ms'"))


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
        with _session() as own:
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
    with _session() as session:
        _begin_writing(session)
        received = claim_tap(session, event.app_id, event.message_id, moment)
        if received is None:
            return None
        given = min(_aware(received), moment)
        outcome = handle_tap(event, conn_id, now=given, session=session, keys=keys) or TapOutcome("ignored")
        set_tap_outcome(session, event.app_id, event.message_id, outcome.code)
    return outcome


def _aware(value: datetime.datetime) -> datetime.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)


def _backoff(attempt: int) -> datetime.timedelta:
    """Return the wait after the ``attempt``-th failed attempt at a tap: :data:`SWEEP_AFTER`, doubling, capped."""
    return min(SWEEP_AFTER * 2 ** min(attempt - 1, 20), MAX_TAP_BACKOFF)


def sweep_taps(now: datetime.datetime | None = None, stop: threading.Event | None = None) -> int:
    """
    Apply the taps left pending whose attempt is due and send their replies; log, never raise.

    A tap stays pending when the API server stopped between recording its push and applying it, and the vendor
    did not push it again (or not yet), or when its answer could not be recorded. Each attempt is counted first (in
    its own transaction); a failed one is tried again after :func:`_backoff`, and after :data:`MAX_TAP_ATTEMPTS`
    the tap is marked ``failed`` and an error is logged. Return how many were applied.

    :param now: The time of the sweep (UTC; default: now).
    :param stop: Set when the process exits: the sweep stops between two taps.
    """
    from airflow_provider_itnio.events import InboundEvent, parse_push
    from airflow_provider_itnio.webhook.store import give_up_tap, note_tap_attempt, pending_taps

    moment = now or datetime.datetime.now(datetime.UTC)
    try:
        with _session() as session:
            found = pending_taps(session, moment, SWEEP_BATCH)
    except Exception as err:
        log.error("itnio HITL: cannot look for pending taps: %s", _masked(err))
        return 0
    applied = 0
    for tap in found:
        if stop is not None and stop.is_set():
            break
        attempt = tap.attempts + 1
        try:
            with _session() as session:
                if not note_tap_attempt(session, tap.id, tap.attempts, moment + _backoff(attempt)):
                    continue  # another process's sweep took it
        except Exception as err:
            log.error("itnio HITL: cannot count an attempt at a pending tap: %s", _masked(err))
            continue
        phone: str | None = None
        try:
            if tap.raw is None:
                raise LookupError("its push is no longer recorded")
            event = parse_push(tap.raw)
            if not isinstance(event, InboundEvent):
                raise TypeError("its push is not a customer's message")
            phone = event.from_phone
            outcome = apply_tap(event, tap.conn_id, now=moment)
        except Exception as err:
            who = phone_digest(phone) if phone else "an unknown number"
            if attempt < MAX_TAP_ATTEMPTS:
                log.error(
                    "itnio HITL: attempt %d of %d at the tap %s from %s (connection %s) failed: %s; next in %s",
                    attempt,
                    MAX_TAP_ATTEMPTS,
                    tap.message_id,
                    who,
                    tap.conn_id,
                    _masked(err, phone),
                    _backoff(attempt),
                )
                continue
            try:
                with _session() as session:
                    give_up_tap(session, tap.id)
            except Exception as failed:
                log.error("itnio HITL: cannot mark the tap %s failed: %s", tap.message_id, _masked(failed))
            log.error(
                "itnio HITL: gave up on the tap %s from %s (connection %s) after %d attempts: %s; it is not "
                "applied: the approver answers in the Airflow UI",
                tap.message_id,
                who,
                tap.conn_id,
                attempt,
                _masked(err, phone),
            )
            continue
        if outcome is not None:
            applied += 1
            log.info("itnio HITL: applied a tap left pending (%s, connection %s)", outcome.code, tap.conn_id)
            if outcome.reply is not None:
                send_reply(tap.conn_id, event, outcome.reply)
    return applied


def sweep(now: datetime.datetime | None = None, stop: threading.Event | None = None) -> None:
    """
    Apply the taps left pending (:func:`sweep_taps`) and report the sends left in ``sending``
    (:func:`sweep_sending`); log, never raise.

    :param now: The time of the sweep (UTC; default: now).
    :param stop: Set when the process exits.
    """
    try:
        sweep_taps(now, stop)
        if stop is None or not stop.is_set():
            sweep_sending(now)
    except Exception as err:  # never let the sweeper die
        log.error("itnio HITL: the sweep failed: %s", _masked(err))


class Sweeper:
    """
    Run :func:`sweep` every :data:`SWEEP_INTERVAL` seconds in a thread of the API server process.

    Started with the receiver (its app's lifespan) and by each request it gets (:meth:`ensure`, once per process:
    a forked worker starts its own), so that a tap left pending is applied without waiting for another push.
    Stopped when the interpreter starts to exit, before Airflow disposes of its database engine.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure(self) -> None:
        """Start the sweeper thread of this process unless it runs."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            from airflow_provider_itnio.webhook.app import _at_exit

            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="itnio-hitl-sweeper", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()
            _at_exit(self.stop)

    def stop(self, timeout: float = 10.0) -> None:
        """
        Stop the sweeper thread, letting it finish the transaction it is in (waits at most ``timeout`` seconds).

        :param timeout: Seconds to wait.
        """
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return
        self._stop.set()
        thread.join(timeout)
        self._pid = None

    @staticmethod
    def _run(stop: threading.Event) -> None:
        wait = 1.0  # the first sweep soon after the start: taps left pending by the process before
        while not stop.wait(wait):
            sweep(stop=stop)
            wait = SWEEP_INTERVAL


#: The process's sweeper.
sweeper = Sweeper()


# -- sending -----------------------------------------------------------------------------------------------


def _send(conn_id: str, event: InboundEvent, message: Any) -> Any:
    """Send ``message`` to the sender of ``event``, quoting it; return the hook's result, raise its error."""
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
        body = Text(body=message) if isinstance(message, str) else message
        return hook.send(event.from_phone, body, business_phone=event.business_phone, reply_to=event.message_id)
    finally:
        hook.close()


def send_reply(conn_id: str, event: InboundEvent, text: str | Any) -> None:
    """
    Send ``text`` (or a message model) to the sender of ``event``, quoting it; log, never raise.

    Runs after the HTTP answer.

    :param conn_id: The connection that received the tap (the reply goes through its account).
    :param event: The tap.
    :param text: The reply's text, or a :class:`~airflow_provider_itnio.messages.Message`.
    """
    try:
        _send(conn_id, event, text)
    except Exception as err:
        log.error(
            "itnio HITL: the reply to %s was not sent: %s",
            phone_digest(event.from_phone),
            _masked(err, event.from_phone),
        )


@dataclass(frozen=True)
class Owed:
    """
    A HITL request owed to an approver, claimed by :func:`pending_requests` (its digest is in ``sending``).

    :param ti_id: The task instance.
    :param xcom: ``(dag_id, run_id, task_id, map_index)`` of the task's :data:`PENDING_XCOM_KEY` XCom.
    :param digest: The approver's digest in that XCom.
    :param message: The buttons (or list) to send.
    """

    ti_id: str
    xcom: tuple[str, str, str, int]
    digest: str
    message: Any


def _pending_xcom(session: Session, xcom: tuple[str, str, str, int]) -> Any:
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    dag_id, run_id, task_id, map_index = xcom
    return session.scalar(
        select(XComModel)
        .where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.task_id == task_id,
            XComModel.map_index == map_index,
            XComModel.key == PENDING_XCOM_KEY,
        )
        .with_for_update()
    )


def _waiting_pending_xcoms(session: Session, *, lock: bool) -> list[tuple[Any, Any]]:
    """Return ``[(xcom, task instance)]`` of the :data:`PENDING_XCOM_KEY` XComs of the tasks still parked."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import and_, select

    query = (
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
    )
    return [(xcom, ti) for xcom, ti in session.execute(query.with_for_update(of=XComModel) if lock else query).all()]


def _owed_to(session: Session, conn_id: str, digests: set[str], *, lock: bool) -> list[tuple[Any, Any, Any, str]]:
    """Return ``[(xcom, task instance, its HITL detail, digest)]`` of the requests owed to one of ``digests``."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.xcom import XComModel

    found: list[tuple[Any, Any, Any, str]] = []
    for xcom, ti in _waiting_pending_xcoms(session, lock=lock):
        value = XComModel.deserialize_value(xcom)
        pending = value.get("recipients") if isinstance(value, dict) else None
        if not isinstance(pending, dict) or value.get("conn_id") != conn_id:
            continue
        digest = next((d for d in pending if d in digests), None)
        if digest is None:
            continue
        detail = session.get(HITLDetail, ti.id)
        if detail is not None and not detail.response_received:
            found.append((xcom, ti, detail, digest))
    return found


def pending_requests(event: InboundEvent, conn_id: str, *, now: datetime.datetime | None = None) -> list[Owed]:
    """
    Claim the HITL requests owed to the sender of ``event``: move them to ``sending`` and return them.

    A request is owed when the notifier sent the sender a template instead of the buttons (closed window) and the
    task still waits for an answer. A look without locks first (almost always, nothing is owed); then one locked
    transaction, so that two messages from one approver at once claim a request once. Each claimed digest is kept in
    ``sending`` as ``{"user_id": ..., "claimed_at": <ISO time>}`` until :func:`send_pending` settles it (or
    :func:`sweep_sending` reports it).

    :param event: A new inbound message (any type but a tap).
    :param conn_id: The connection whose address received it.
    :param now: The time of the claim (UTC; default: now).
    """
    from airflow.models.xcom import XComModel

    keys = connection_button_keys(conn_id)
    if keys is None or keys.signing is None:
        return []
    digests = {recipient_digest(key, event.from_phone) for key in keys.verifying}
    with _session() as session:
        if not _owed_to(session, conn_id, digests, lock=False):
            return []
    claimed_at = (now or datetime.datetime.now(datetime.UTC)).isoformat()
    owed: list[Owed] = []
    with _session() as session:
        _begin_writing(session)
        for xcom, ti, detail, digest in _owed_to(session, conn_id, digests, lock=True):
            value = XComModel.deserialize_value(xcom)
            pending = dict(value["recipients"])
            user_id = pending.pop(digest)
            sending = {**(value.get("sending") or {}), digest: {"user_id": user_id, "claimed_at": claimed_at}}
            xcom.value = XComModel.serialize_value({**value, "recipients": pending, "sending": sending})
            link = value.get("link") if isinstance(value.get("link"), str) else None
            message = request_message(
                detail,
                ti.id,
                event.from_phone,
                keys.signing,
                link,
                user_id=user_id or None,
                list_button=str(value.get("list_button") or "Choose"),
            )
            where = (str(ti.dag_id), str(ti.run_id), str(ti.task_id), int(ti.map_index))
            owed.append(Owed(str(ti.id), where, digest, message))
    return owed


def _settle(item: Owed, where: str, detail: str | None) -> None:
    """Move the claimed digest out of ``sending``: to ``sent``, back to ``recipients``, or to ``unknown``."""
    from airflow.models.xcom import XComModel

    with _session() as session:
        _begin_writing(session)
        xcom = _pending_xcom(session, item.xcom)
        if xcom is None:
            return
        value = dict(XComModel.deserialize_value(xcom) or {})
        sending = dict(value.get("sending") or {})
        claim = sending.pop(item.digest, None)
        user_id = claim.get("user_id") if isinstance(claim, dict) else claim
        value["sending"] = sending
        if where == "recipients":
            value["recipients"] = {**(value.get("recipients") or {}), item.digest: user_id}
        else:
            value[where] = {**(value.get(where) or {}), item.digest: detail}
        xcom.value = XComModel.serialize_value(value)


def send_pending(conn_id: str, event: InboundEvent, owed: list[Owed]) -> None:
    """
    Send the claimed HITL requests to the sender of ``event`` and record each outcome; log, never raise.

    Runs after the HTTP answer. Accepted: crossed off (``sent``: the messageId). Refused with nothing sent: owed
    again (``recipients``), sent when they write next. Outcome unknown: ``unknown``, logged as an error, never sent
    again (the approver may have the buttons; else they answer in the UI).

    :param conn_id: The connection that received the message.
    :param event: The message.
    :param owed: From :func:`pending_requests`.
    """
    from airflow_provider_itnio.errors import ItnioDeliveryUnknownError, ItnioError

    sender = phone_digest(event.from_phone)
    for item in owed:
        log.info("itnio HITL: %s wrote back; sending the request of %s", sender, item.ti_id)
        where: str
        detail: str | None
        try:
            result = _send(conn_id, event, item.message)
        except ItnioError as err:
            if isinstance(err, ItnioDeliveryUnknownError):
                where, detail = "unknown", _masked(err, event.from_phone)
            else:
                where, detail = "recipients", None
                log.error(
                    "itnio HITL: the request of %s was not sent to %s (%s); it is sent when they write again",
                    item.ti_id,
                    sender,
                    _masked(err, event.from_phone),
                )
        except Exception as err:  # a failure the hook does not classify: it may have been sent
            where, detail = "unknown", _masked(err, event.from_phone)
        else:
            where, detail = "sent", str(result.message_id)
        if where == "unknown":
            log.error(
                "itnio HITL: the request of %s may or may not have reached %s (%s); it is not sent again: the "
                "approver answers in the Airflow UI if it did not arrive (XCom %s, 'unknown')",
                item.ti_id,
                sender,
                detail,
                PENDING_XCOM_KEY,
            )
        try:
            _settle(item, where, detail)
        except Exception as err:
            log.error(
                "itnio HITL: cannot record the outcome of the request of %s to %s (%s): %s",
                item.ti_id,
                sender,
                where,
                _masked(err, event.from_phone),
            )


def sweep_sending(now: datetime.datetime | None = None) -> int:
    """
    Report the owed buttons left in ``sending`` for longer than :data:`SENDING_STALE_AFTER`: move them to
    ``unknown`` and log an error; return how many. Raise the database's error.

    A digest stays in ``sending`` when the API server stopped between claiming the send (:func:`pending_requests`)
    and recording its outcome (:func:`send_pending`): the buttons may or may not have gone out. Only the requests of
    tasks still waiting are looked at.

    :param now: The time of the sweep (UTC; default: now).
    """
    from airflow.models.xcom import XComModel

    moment = now or datetime.datetime.now(datetime.UTC)
    cut = moment - SENDING_STALE_AFTER

    def stale(value: Any) -> dict[str, Any]:
        sending = value.get("sending") if isinstance(value, dict) else None
        if not isinstance(sending, dict):
            return {}
        found = {}
        for digest, claim in sending.items():
            claimed = claim.get("claimed_at") if isinstance(claim, dict) else None
            try:
                at = _aware(datetime.datetime.fromisoformat(str(claimed))) if claimed else None
            except ValueError:
                at = None
            if at is None or at <= cut:  # no claim time: recorded by a release before this one
                found[digest] = claimed
        return found

    with _session() as session:
        if not any(stale(XComModel.deserialize_value(x)) for x, _ in _waiting_pending_xcoms(session, lock=False)):
            return 0
    reported = 0
    with _session() as session:
        _begin_writing(session)
        for xcom, ti in _waiting_pending_xcoms(session, lock=True):
            value = XComModel.deserialize_value(xcom)
            found = stale(value)
            if not found:
                continue
            sending = {d: claim for d, claim in value["sending"].items() if d not in found}
            unknown = dict(value.get("unknown") or {})
            for digest, claimed in found.items():
                unknown[digest] = f"the API server stopped while sending it (claimed at {claimed or 'an unknown time'})"
                log.error(
                    "itnio HITL: the request of %s was being sent to an approver (%s, claimed at %s) when the API "
                    "server stopped: it may or may not have reached them and is not sent again; they answer in the "
                    "Airflow UI if it did not arrive (XCom %s, 'unknown')",
                    ti.id,
                    digest[:8],
                    claimed or "an unknown time",
                    PENDING_XCOM_KEY,
                )
                reported += 1
            xcom.value = XComModel.serialize_value({**value, "sending": sending, "unknown": unknown})
    return reported


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
    still pending; any other new message claims the requests owed to its sender (:func:`pending_requests`). Return
    the background task that sends the reply (and logs that the tap was handled) or the requests after the HTTP
    answer, or ``None``. Errors are logged without the database's statement parameters (they may hold the number).

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
            reason = _masked(err, event.from_phone)
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
                _masked(err, event.from_phone),
            )
            owed = []
        if owed:
            tasks.add_task(send_pending, conn_id, event, owed)
    return tasks if tasks.tasks else None
