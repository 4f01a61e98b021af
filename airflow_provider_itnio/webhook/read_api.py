"""
The receiver's read API (Airflow 3.1+): what the triggerer and workers ask instead of the metadata database.

``GET /itnio/api/{conn_id}/messages/{message_id}/status`` and its bulk form ``POST /itnio/api/{conn_id}/statuses``
(a long poll), ``GET /itnio/api/{conn_id}/window`` and its bulk form ``POST /itnio/api/{conn_id}/windows`` (up to
:data:`~airflow_provider_itnio.receiver_protocol.MAX_WINDOW_RECIPIENTS` customers per request) answer what was
recorded to workers and triggers (which Airflow 3 keeps off the metadata database), authenticated by
``Authorization: Bearer <webhook_token>`` (:data:`~airflow_provider_itnio.webhook.guards.BearerReceiver`: 404
``Not Found`` for every reason the token is not the connection's); a ``POST`` body is read only once the request is
admitted (:data:`~airflow_provider_itnio.webhook.guards.JSONObject`). Their client is
:mod:`airflow_provider_itnio.hooks.receiver`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import Any

from airflow_provider_itnio.events import is_final
from airflow_provider_itnio.receiver_protocol import MAX_STATUS_IDS, MAX_STATUS_WAIT, MAX_WINDOW_RECIPIENTS
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed
from airflow_provider_itnio.webhook.store import (
    get_message_status,
    get_status_history,
    last_inbound_at,
    last_inbounds_at,
    new_session,
)

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("The itnio webhook receiver")

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from airflow_provider_itnio.webhook.guards import BearerReceiver, JSONObject, bad_request

__all__ = ["WINDOW", "get_status", "get_statuses", "get_window", "get_windows", "router"]

log = logging.getLogger(__name__)

#: The read API's routes (the app includes them).
router = APIRouter()

#: How long after a customer's last message a business may send session messages (WhatsApp's customer window).
WINDOW = datetime.timedelta(hours=24)
#: Ids per ``IN (...)`` list of the bulk status queries (well under every database's parameter limit).
_IN_CHUNK = 500
#: Seconds between two looks at the status history while a ``POST .../statuses`` request waits for a change.
_STATUS_WAIT_CHECK = 0.25


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.astimezone(datetime.UTC).isoformat()


def _unix_iso(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


def _read_status(message_id: str, app_id: str) -> dict[str, Any] | None:
    """Return the message's status record as the API answers it, or ``None`` when no status was recorded."""
    with new_session() as session:
        record = get_message_status(session, message_id, app_id)
        if record is None:
            return None
        history = get_status_history(session, message_id, app_id)
    return _status_answer(record, history)


def _status_answer(record: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a message's status record and history (from the store) as the read endpoints answer them."""
    return {
        "message_id": record.message_id,
        "status": record.status.value,
        "final": is_final(record.status),
        "failure": record.failure,
        "recipient": record.recipient,
        "business_phone": record.business_phone,
        "conversation_id": record.conversation_id,
        "timestamp": _unix_iso(record.status_timestamp) or _iso(record.updated_at),
        "updated_at": _iso(record.updated_at),
        "history": [
            {
                "status": item["status"],
                "failure": item["failure"],
                "timestamp": _unix_iso(item["status_timestamp"]),
                "received_at": _iso(item["received_at"]),
            }
            for item in history
        ],
    }


_AUTHENTICATED = "(Authorization: Bearer <webhook_token>)"


@router.get(
    "/api/{conn_id}/messages/{message_id:path}/status",
    summary=f"Read a message's status {_AUTHENTICATED}",
    response_class=JSONResponse,
)
async def get_status(conn_id: str, message_id: str, receiver: BearerReceiver) -> JSONResponse:
    """
    Answer a message's furthest status and its history (``Authorization: Bearer <webhook_token>``).

    :param conn_id: The ``itnio`` connection; only its application's messages are answered.
    :param message_id: The id the send call returned.
    :param receiver: The connection's receiver (the request is admitted).
    """
    try:
        answer = await run_in_threadpool(_read_status, message_id, receiver.app_id)
    except SQLAlchemyError:
        log.exception("itnio webhook %s: cannot read a message status", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The status cannot be read now; retry later."})
    if answer is None:
        return JSONResponse(status_code=404, content={"detail": "unknown message"})
    return JSONResponse(status_code=200, content=answer)


def _read_statuses(message_ids: list[str], app_id: str) -> dict[str, dict[str, Any] | None]:
    """Return ``{message_id: its status record, or None}`` for every id, reading ``_IN_CHUNK`` ids per query."""
    from airflow_provider_itnio.webhook.store import get_message_statuses

    found: dict[str, dict[str, Any] | None] = dict.fromkeys(message_ids)
    with new_session() as session:
        for start in range(0, len(message_ids), _IN_CHUNK):
            for message_id, (record, history) in get_message_statuses(
                session, message_ids[start : start + _IN_CHUNK], app_id
            ).items():
                found[message_id] = _status_answer(record, history)
    return found


def _status_mark() -> int:
    """Return the newest status history row's id (0 when none): what changed since a cursor is above it."""
    from airflow_provider_itnio.webhook.models import status_history_table

    with new_session() as session:
        return int(session.execute(select(func.max(status_history_table.c.id))).scalar() or 0)


def _changed_since(message_ids: list[str], app_id: str, since: int) -> bool:
    """Return whether a status push for one of the messages was recorded after the history row ``since``."""
    from airflow_provider_itnio.webhook.models import status_history_table

    columns = status_history_table.c
    with new_session() as session:
        for start in range(0, len(message_ids), _IN_CHUNK):
            query = select(columns.id).where(
                columns.app_id == app_id,
                columns.id > since,
                columns.message_id.in_(message_ids[start : start + _IN_CHUNK]),
            )
            if session.execute(query.limit(1)).first() is not None:
                return True
    return False


@router.post(
    "/api/{conn_id}/statuses",
    summary=f"Read many messages' statuses {_AUTHENTICATED}",
    response_class=JSONResponse,
)
async def get_statuses(conn_id: str, receiver: BearerReceiver, data: JSONObject) -> JSONResponse:
    """
    Answer the furthest status and history of many messages at once (``Authorization: Bearer <webhook_token>``).

    The body: ``{"message_ids": ["...", ...], "since": cursor, "wait": seconds}``: 1 to
    :data:`~airflow_provider_itnio.receiver_protocol.MAX_STATUS_IDS` non-empty strings; ``since`` (optional) the
    ``cursor`` of an earlier answer; ``wait`` (optional, 0 to
    :data:`~airflow_provider_itnio.receiver_protocol.MAX_STATUS_WAIT` seconds, default 0) how long to hold the request
    until a status push for one of the messages is recorded after ``since`` (a long poll: the answer comes at
    once when one was, or when ``since`` is absent). The answer: ``{"statuses": {message_id: record or null},
    "cursor": int, "changed": bool}``, one entry per distinct id, each record as
    ``GET .../messages/{message_id}/status`` answers it, ``null`` when no status was recorded (yet); ``changed``
    tells whether one of them changed after ``since``. 400 names the first bad field (``message_ids[3]``); 413 for
    a body over 1 MiB. What the shared poller of :mod:`airflow_provider_itnio.triggers.itnio` asks, once per
    interval, for all the waits of a triggerer.

    :param conn_id: The ``itnio`` connection; only its application's messages are answered.
    :param receiver: The connection's receiver (the request is admitted).
    :param data: The request's body.
    """
    message_ids = data.get("message_ids")
    if not isinstance(message_ids, list) or not message_ids:
        return bad_request("message_ids: must be a non-empty list of message ids", "message_ids")
    if len(message_ids) > MAX_STATUS_IDS:
        return bad_request(f"message_ids: at most {MAX_STATUS_IDS} per request; got {len(message_ids)}", "message_ids")
    for index, value in enumerate(message_ids):
        if not isinstance(value, str) or not value.strip():
            field = f"message_ids[{index}]"
            return bad_request(f"{field}: must be a non-empty string; got {value!r}"[:300], field)
    since, wait = data.get("since"), data.get("wait", 0)
    if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
        return bad_request(f"since: must be the cursor of an earlier answer; got {since!r}"[:300], "since")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= MAX_STATUS_WAIT:
        return bad_request(f"wait: must be 0 to {MAX_STATUS_WAIT} seconds; got {wait!r}"[:300], "wait")
    distinct = list(dict.fromkeys(value.strip() for value in message_ids))
    try:
        cursor = await run_in_threadpool(_status_mark)
        changed = since is None or (
            cursor > since and await run_in_threadpool(_changed_since, distinct, receiver.app_id, since)
        )
        deadline = time.monotonic() + wait
        while not changed and time.monotonic() < deadline:
            await asyncio.sleep(min(_STATUS_WAIT_CHECK, max(deadline - time.monotonic(), 0)))
            mark = await run_in_threadpool(_status_mark)
            if mark > cursor:
                changed = await run_in_threadpool(_changed_since, distinct, receiver.app_id, cursor)
                cursor = mark
        statuses = await run_in_threadpool(_read_statuses, distinct, receiver.app_id)
    except SQLAlchemyError:
        log.exception("itnio webhook %s: cannot read message statuses", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The statuses cannot be read now; retry later."})
    return JSONResponse(status_code=200, content={"statuses": statuses, "cursor": cursor, "changed": changed})


def _read_last_inbound(business_phone: str, recipient: str, app_id: str) -> datetime.datetime | None:
    with new_session() as session:
        return last_inbound_at(session, business_phone, recipient, app_id=app_id)


@router.get(
    "/api/{conn_id}/window",
    summary=f"Read a customer's 24-hour window {_AUTHENTICATED}",
    response_class=JSONResponse,
)
async def get_window(conn_id: str, receiver: BearerReceiver, request: Request) -> JSONResponse:
    """
    Answer whether a customer's 24-hour window with a business number is open (``Authorization: Bearer ...``).

    Query parameters ``business_phone`` and ``recipient`` (any way people write numbers). The answer:
    ``last_inbound_at`` (when the customer last wrote to that number, or ``null``: the push's ``timestamp`` when
    believable, else its arrival, see :func:`~airflow_provider_itnio.webhook.store.customer_wrote_at`), ``open``
    (less than 24 hours ago) and ``closes_at`` (when the window closes, ``null`` when it is closed).

    :param conn_id: The ``itnio`` connection; only messages received for its application count.
    :param receiver: The connection's receiver (the request is admitted).
    :param request: The request.
    """
    from airflow_provider_itnio.errors import ItnioValidationError
    from airflow_provider_itnio.messages import normalize_phone

    phones: dict[str, str] = {}
    for name, field in (("business_phone", "businessPhone"), ("recipient", "recipient")):
        value = request.query_params.get(name)
        if value is None or not value.strip():
            return bad_request(f"{name}: it is missing", name)
        try:
            phones[name] = normalize_phone(value, field)
        except ItnioValidationError as err:
            return bad_request(f"{name}: {err.rule}; {err.problem}", name)
    try:
        last = await run_in_threadpool(
            _read_last_inbound, phones["business_phone"], phones["recipient"], receiver.app_id
        )
    except SQLAlchemyError:
        log.exception("itnio webhook %s: cannot read a window", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The window cannot be read now; retry later."})
    content = {"business_phone": phones["business_phone"], "recipient": phones["recipient"]}
    content.update(_window(last, datetime.datetime.now(datetime.UTC)))
    return JSONResponse(status_code=200, content=content)


def _window(last: datetime.datetime | None, now: datetime.datetime) -> dict[str, Any]:
    """Return ``{"last_inbound_at", "open", "closes_at"}`` for a customer who last wrote at ``last``."""
    is_open = last is not None and now < last + WINDOW
    return {
        "last_inbound_at": _iso(last),
        "open": is_open,
        "closes_at": _iso(last + WINDOW) if is_open and last is not None else None,
    }


def _read_last_inbounds(business_phone: str, recipients: list[str], app_id: str) -> dict[str, datetime.datetime]:
    """Return ``{recipient: when they last wrote to business_phone}`` for those who ever wrote."""
    with new_session() as session:
        return last_inbounds_at(session, business_phone, recipients, app_id=app_id)


@router.post(
    "/api/{conn_id}/windows",
    summary=f"Read many customers' 24-hour windows {_AUTHENTICATED}",
    response_class=JSONResponse,
)
async def get_windows(conn_id: str, receiver: BearerReceiver, data: JSONObject) -> JSONResponse:
    """
    Answer the 24-hour windows of many customers with one business number (``Authorization: Bearer ...``).

    The body: ``{"business_phone": "...", "recipients": ["...", ...]}``, 1 to
    :data:`~airflow_provider_itnio.receiver_protocol.MAX_WINDOW_RECIPIENTS` numbers (any way people write them).
    The answer: ``{"business_phone", "windows": {digits: {"last_inbound_at", "open", "closes_at"}}}``, one entry
    per distinct recipient. 400 names the first bad field (``recipients[3]``); 413 for a body over 1 MiB.

    :param conn_id: The ``itnio`` connection; only messages received for its application count.
    :param receiver: The connection's receiver (the request is admitted).
    :param data: The request's body.
    """
    from airflow_provider_itnio.errors import ItnioValidationError
    from airflow_provider_itnio.messages import normalize_phone

    business = data.get("business_phone")
    recipients = data.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        return bad_request("recipients: must be a non-empty list of phone numbers", "recipients")
    if len(recipients) > MAX_WINDOW_RECIPIENTS:
        return bad_request(
            f"recipients: at most {MAX_WINDOW_RECIPIENTS} per request; got {len(recipients)}", "recipients"
        )
    try:
        field = "business_phone"
        sender = normalize_phone(business if isinstance(business, str | int) else "", "businessPhone")
        phones: list[str] = []
        for index, value in enumerate(recipients):
            field = f"recipients[{index}]"
            if isinstance(value, bool) or not isinstance(value, str | int):
                return bad_request(f"{field}: must be a phone number; got {type(value).__name__}", field)
            phones.append(normalize_phone(value, "recipient"))
    except ItnioValidationError as err:
        return bad_request(f"{field}: {err.rule}; {err.problem}", field)
    distinct = list(dict.fromkeys(phones))
    try:
        last = await run_in_threadpool(_read_last_inbounds, sender, distinct, receiver.app_id)
    except SQLAlchemyError:
        log.exception("itnio webhook %s: cannot read windows", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The windows cannot be read now; retry later."})
    now = datetime.datetime.now(datetime.UTC)
    return JSONResponse(
        status_code=200,
        content={"business_phone": sender, "windows": {phone: _window(last.get(phone), now) for phone in distinct}},
    )
