"""
Buttons owed after a template: sent when the approver writes to the business while the task still waits.

When a recipient's 24-hour window was closed, :class:`~airflow_provider_itnio.notifications.hitl.ItnioHITLNotifier`
sent a template and recorded in the task's XCom :data:`~airflow_provider_itnio.hitl_buttons.PENDING_XCOM_KEY` who is
still owed the buttons (``recipients``: keyed digests of their numbers, never the numbers). When one of them writes
to the business while the task still waits, the receiver moves them to ``sending`` (:func:`pending_requests`, one
locked transaction, so two messages at once send once) and sends the buttons after its answer
(:func:`send_pending`): accepted, they move to ``sent`` (with the messageId); refused with nothing sent, back to
``recipients`` (sent when they write again); an unknown outcome (the request may have reached the API) moves them to
``unknown``, logged as an error and never sent again. Each digest in ``sending`` carries when it was claimed; one
still there after :data:`SENDING_STALE_AFTER` means the API server stopped during the send: the sweep
(:func:`sweep_sending`, run by :mod:`~airflow_provider_itnio.webhook.tap_sweeper`) moves it to ``unknown`` and logs
an error.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio.hitl_buttons import PENDING_XCOM_KEY, recipient_digest, request_message
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed
from airflow_provider_itnio.webhook.approvals_common import (
    PARKED_STATES,
    aware,
    begin_writing,
    connection_button_keys,
    masked_error,
    new_session,
    phone_digest,
    send_message,
)

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("Human-in-the-loop answers on WhatsApp")

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_provider_itnio.events import InboundEvent

__all__ = ["SENDING_STALE_AFTER", "Owed", "pending_requests", "send_pending", "sweep_sending"]

log = logging.getLogger(__name__)

#: How long a claimed send of owed buttons may stay in ``sending`` before the sweep reports it as unknown.
SENDING_STALE_AFTER = datetime.timedelta(minutes=5)


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
        .where(XComModel.key == PENDING_XCOM_KEY, TaskInstance.state.in_(PARKED_STATES))
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
    with new_session() as session:
        if not _owed_to(session, conn_id, digests, lock=False):
            return []
    claimed_at = (now or datetime.datetime.now(datetime.UTC)).isoformat()
    owed: list[Owed] = []
    with new_session() as session:
        begin_writing(session)
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

    with new_session() as session:
        begin_writing(session)
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
            result = send_message(conn_id, event, item.message)
        except ItnioError as err:
            if isinstance(err, ItnioDeliveryUnknownError):
                where, detail = "unknown", masked_error(err, event.from_phone)
            else:
                where, detail = "recipients", None
                log.error(
                    "itnio HITL: the request of %s was not sent to %s (%s); it is sent when they write again",
                    item.ti_id,
                    sender,
                    masked_error(err, event.from_phone),
                )
        except Exception as err:  # a failure the hook does not classify: it may have been sent
            where, detail = "unknown", masked_error(err, event.from_phone)
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
                masked_error(err, event.from_phone),
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
                at = aware(datetime.datetime.fromisoformat(str(claimed))) if claimed else None
            except ValueError:
                at = None
            if at is None or at <= cut:  # no claim time: recorded by a release before this one
                found[digest] = claimed
        return found

    with new_session() as session:
        if not any(stale(XComModel.deserialize_value(x)) for x, _ in _waiting_pending_xcoms(session, lock=False)):
            return 0
    reported = 0
    with new_session() as session:
        begin_writing(session)
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
