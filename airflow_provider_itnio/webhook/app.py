"""
The FastAPI app that receives the vendor's pushes on Airflow 3.1+'s API server (served under ``/itnio``).

``POST /itnio/webhook/{conn_id}/{token}`` takes both pushes (status reports and customers' messages, told apart by
``eventType``) for the ``itnio`` connection ``conn_id``, records each once in the provider's tables and answers
at once (no outbound call inside the request). The answers:

=====  ===============================================================================================
200    recorded, or a re-push of something already recorded (``"duplicate": true``): nothing written twice
400    not JSON, not an object, a required field missing or unreadable, an unknown ``eventType``, or an
       ``appId`` that is not the connection's ``app_id`` (the body names the field, never a token)
404    unknown connection, a connection of another type or without a ``webhook_token`` extra, or a wrong
       token: the same answer for all of them (``{"detail": "Not Found"}``, as for any unknown path)
413    a body over :data:`~airflow_provider_itnio.events.MAX_PUSH_BYTES` (1 MiB): a larger ``Content-Length``
       is refused before reading, and the read stops at the limit
503    the database could not record it (the tables are missing, or the database is down); the vendor re-pushes
=====  ===============================================================================================

Nothing is recorded for an answer other than 200. A push recorded for the first time is also an Airflow asset
event (:mod:`airflow_provider_itnio.assets`), written in the same transaction, when a DAG uses the asset.

``GET /itnio/api/{conn_id}/messages/{message_id}/status``, ``GET /itnio/api/{conn_id}/window`` and its bulk form
``POST /itnio/api/{conn_id}/windows`` (up to :data:`~airflow_provider_itnio.webhook.client.MAX_WINDOW_RECIPIENTS`
customers per request) answer what was recorded to workers and triggers (which Airflow 3 keeps off the metadata
database), authenticated by ``Authorization: Bearer <webhook_token>``; see :mod:`airflow_provider_itnio.webhook.client`.

The token is compared in constant time (``hmac.compare_digest`` of SHA-256 digests, so not even its length leaks).

The token never reaches a log line: the app's first middleware moves it out of the request's ``path`` (and
``raw_path``) into a private scope key and leaves ``***`` in its place, before routing; it does so for any path
under a webhook address too (``.../{token}/anything`` gets 404 with the token masked), and the address with a
trailing slash is served as it is (not redirected). Airflow 3's API server logs
each request once, from its ``HttpAccessLogMiddleware`` (uvicorn's and gunicorn's own access logs are turned off by
``airflow api-server``), reading the path from the same ASGI scope after the request, so it logs
``/itnio/webhook/<conn_id>/***``. A reverse proxy in front of the API server logs the URL it forwards: configure
it not to log ``/itnio/webhook/`` paths (or their last segment).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import inspect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow_provider_itnio.webhook import require_airflow_3_1

require_airflow_3_1("The itnio webhook receiver")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.types import ASGIApp, Receive, Scope, Send  # noqa: E402

from airflow_provider_itnio.connection_fields import CONN_TYPE  # noqa: E402
from airflow_provider_itnio.events import (  # noqa: E402
    MAX_PUSH_BYTES,
    InboundEvent,
    PushError,
    StatusEvent,
    asset_extra,
    is_final,
    parse_push,
)
from airflow_provider_itnio.webhook.client import MAX_WINDOW_RECIPIENTS  # noqa: E402
from airflow_provider_itnio.webhook.models import inbound_message_table  # noqa: E402
from airflow_provider_itnio.webhook.store import (  # noqa: E402
    Recorded,
    get_message_status,
    get_status_history,
    last_inbound_at,
    record_push,
)

__all__ = ["TOKEN_EXTRA", "app", "create_app"]

log = logging.getLogger(__name__)

#: The connection extra holding the token of the connection's webhook address.
TOKEN_EXTRA = "webhook_token"
#: What replaces the token in the request's path (and so in the access log).
MASK = "***"
_SCOPE_TOKEN = "itnio.webhook_token"
#: A webhook address, and anything under it: the token is the segment after the connection id, whatever follows
#: (a pasted address with a trailing slash or an extra segment must not put the token in the access log).
_WEBHOOK_PATH = re.compile(r"^/+webhook/+[^/]+/+([^/]+)", re.IGNORECASE)
_NOT_FOUND = {"detail": "Not Found"}


@dataclass(frozen=True)
class _Receiver:
    """What a connection's webhook address needs: its application and the digest of its token."""

    app_id: str
    token_digest: bytes


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class MaskTokenMiddleware:
    """
    Move the token out of a webhook request's path into the scope, leaving ``***`` in the path.

    :param app: The ASGI app to call.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Mask the token (HTTP requests to the webhook route only) and call the app."""
        if scope["type"] == "http":
            path: str = scope["path"]
            root_path: str = scope.get("root_path", "")
            route_path = path[len(root_path) :] if root_path and path.startswith(root_path) else path
            match = _WEBHOOK_PATH.match(route_path)
            if match:
                scope[_SCOPE_TOKEN] = match.group(1)
                masked = path[: len(path) - len(route_path)] + route_path[: match.start(1)] + MASK
                masked += route_path[match.end(1) :]
                scope["path"] = masked
                scope["raw_path"] = quote(masked, safe="/*").encode("ascii")
        await self.app(scope, receive, send)


def _resolve(conn_id: str) -> _Receiver | None:
    """Return what ``conn_id``'s webhook address needs, or ``None`` when it has none (unknown, other type, ...)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    if conn.conn_type != CONN_TYPE:
        return None
    extra = conn.extra_dejson or {}
    token = extra.get(TOKEN_EXTRA)
    app_id = str(extra.get("app_id") or "").strip()
    if not isinstance(token, str) or not token.strip():
        return None
    if not app_id:
        log.warning("itnio connection %s has a webhook token but no app_id extra: its pushes are refused", conn_id)
        return None
    return _Receiver(app_id=app_id, token_digest=_digest(token.strip()))


@functools.cache
def _asset_change_arguments() -> frozenset[str]:
    """Return the keyword arguments this Airflow's ``AssetManager.register_asset_change`` names."""
    from airflow.assets.manager import AssetManager

    return frozenset(inspect.signature(AssetManager.register_asset_change).parameters)


def _asset_uri(event: StatusEvent | InboundEvent, conn_id: str) -> str | None:
    """Return the URI of the asset the push is an event of, or ``None`` when the connection id cannot be in one."""
    from airflow_provider_itnio.assets import inbound_messages_uri, message_status_uri

    try:
        if isinstance(event, StatusEvent):
            return message_status_uri(conn_id, event.status.value)
        return inbound_messages_uri(conn_id)
    except ValueError:
        return None


def _record_asset_event(
    session: Session, event: StatusEvent | InboundEvent, conn_id: str, notifications: list[Callable[[], None]]
) -> int | None:
    """
    Record the push's asset event in ``session`` (the store's transaction); return its id, or ``None``.

    Nothing is recorded when no DAG uses the asset (it is not in the database, or no longer active): a push
    nobody schedules on is only stored in the provider's tables. Asset listeners are collected into
    ``notifications`` (Airflow 3.3+) to be told once the transaction is committed.

    :param session: The session the store wrote in.
    :param event: The push, recorded for the first time.
    :param conn_id: The connection whose address received it.
    :param notifications: Where ``register_asset_change`` puts the listener notifications it defers.
    """
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel

    uri = _asset_uri(event, conn_id)
    if uri is None:
        log.warning("itnio webhook %s: the connection id cannot be in an asset URI; no asset event", conn_id)
        return None
    model = session.scalar(
        select(AssetModel).where(AssetModel.name == uri, AssetModel.uri == uri, AssetModel.active.has())
    )
    if model is None:
        log.debug("itnio webhook %s: no DAG uses the asset %s; no asset event", conn_id, uri)
        return None
    arguments: dict[str, Any] = {}
    if "callback_sink" in _asset_change_arguments():
        arguments["callback_sink"] = notifications
    asset_event = asset_manager.register_asset_change(
        asset=model, extra=asset_extra(event), session=session, **arguments
    )
    return None if asset_event is None else int(asset_event.id)


def _create_session() -> Any:
    """Return a session context manager that commits on exit (not the thread's scoped session)."""
    from airflow.utils.session import create_session

    try:
        return create_session(scoped=False)  # type: ignore[call-arg]
    except TypeError:  # Airflow 3.1's create_session() has no "scoped"
        return create_session()


def _record(event: StatusEvent | InboundEvent, conn_id: str) -> tuple[Recorded, int | None]:
    """
    Record the push and, when it is new, its asset event, in one transaction (committed on return).

    A re-push (``Recorded.new`` false) records no asset event, so it starts nothing twice; a failure anywhere
    rolls both back, and the vendor re-pushes.
    """
    notifications: list[Callable[[], None]] = []
    with _create_session() as session:
        recorded = record_push(session, event, conn_id)
        asset_event_id = _record_asset_event(session, event, conn_id, notifications) if recorded.new else None
    for notify in notifications:  # only for committed events
        try:
            notify()
        except Exception:
            log.exception("itnio webhook %s: an asset listener failed", conn_id)
    return recorded, asset_event_id


async def _read_body(request: Request) -> bytes | None:
    """Return the request body, or ``None`` as soon as it exceeds :data:`MAX_PUSH_BYTES`."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_PUSH_BYTES:
            return None
    return bytes(body)


def _too_large(size: str) -> JSONResponse:
    return JSONResponse(
        status_code=413,
        content={"detail": f"body: at most {MAX_PUSH_BYTES} bytes; got {size}", "field": "body"},
    )


async def receive_push(conn_id: str, token: str, request: Request) -> JSONResponse:
    """
    Record one push from the vendor for connection ``conn_id``.

    :param conn_id: The ``itnio`` connection whose address this is.
    :param token: The token in the address (``***`` once masked: the real one is taken from the scope).
    :param request: The request.
    """
    presented: str = request.scope.get(_SCOPE_TOKEN, token)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PUSH_BYTES:
        return _too_large(f"{int(declared)} bytes")

    try:
        receiver = await run_in_threadpool(_resolve, conn_id)
    except SQLAlchemyError:
        log.exception("itnio webhook: cannot read connection %s", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The push cannot be checked now; retry later."})
    # Both sides are digested so that the comparison takes the same time whatever the presented token.
    if receiver is None or not hmac.compare_digest(_digest(presented), receiver.token_digest):
        return JSONResponse(status_code=404, content=_NOT_FOUND)

    body = await _read_body(request)
    if body is None:
        return _too_large(f"more than {MAX_PUSH_BYTES} bytes")
    try:
        event = parse_push(body)
    except PushError as err:
        log.info("itnio webhook %s: refused a push (%s): %s", conn_id, err.http_status, err)
        return JSONResponse(status_code=err.http_status, content={"detail": str(err), "field": err.field})
    if event.app_id != receiver.app_id:
        detail = "appId: must be the connection's app_id; got another application's"
        log.info("itnio webhook %s: refused a push (400): %s", conn_id, detail)
        return JSONResponse(status_code=400, content={"detail": detail, "field": "appId"})

    try:
        recorded, _asset_event_id = await run_in_threadpool(_record, event, conn_id)
    except SQLAlchemyError:
        log.exception(
            "itnio webhook %s: cannot record a push (are the provider's tables created? run `airflow db migrate`)",
            conn_id,
        )
        return JSONResponse(status_code=503, content={"detail": "The push cannot be recorded now; retry later."})
    answer: dict[str, Any] = {
        "event_type": event.event_type,
        "message_id": event.message_id,
        "duplicate": not recorded.new,
    }
    if isinstance(event, StatusEvent):
        answer["status"] = recorded.status.value if recorded.status is not None else None
    if event.warnings:
        answer["warnings"] = list(event.warnings)
    background = None
    if recorded.new and isinstance(event, InboundEvent):  # a HITL answer, or an approver writing back
        from airflow_provider_itnio.webhook.hitl import on_new_inbound

        background = await on_new_inbound(event, conn_id)  # never raises; what it sends goes after this answer
    return JSONResponse(status_code=200, content=answer, background=background)


# -- the read API: what the triggerer and workers ask instead of the metadata database ------------------------

#: How long after a customer's last message a business may send session messages (WhatsApp's customer window).
WINDOW = datetime.timedelta(hours=24)
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.astimezone(datetime.UTC).isoformat()


def _unix_iso(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


async def _authorize(conn_id: str, request: Request) -> _Receiver | JSONResponse:
    """
    Return the connection's receiver when the request carries ``Authorization: Bearer <its webhook_token>``.

    Otherwise return the answer: 404 ``Not Found`` (the same for an unknown connection, a connection without a
    token, no or another header, and a wrong token), or 503 when the connection cannot be read.
    """
    match = _BEARER.match(request.headers.get("authorization", ""))
    presented = match.group(1) if match else ""
    try:
        receiver = await run_in_threadpool(_resolve, conn_id)
    except SQLAlchemyError:
        log.exception("itnio webhook: cannot read connection %s", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The connection cannot be read now; retry later."})
    if receiver is None or not hmac.compare_digest(_digest(presented), receiver.token_digest) or not match:
        return JSONResponse(status_code=404, content=_NOT_FOUND)
    return receiver


def _read_status(message_id: str, app_id: str) -> dict[str, Any] | None:
    """Return the message's status record as the API answers it, or ``None`` when no status was recorded."""
    with _create_session() as session:
        record = get_message_status(session, message_id, app_id)
        if record is None:
            return None
        history = get_status_history(session, message_id, app_id)
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


async def get_status(conn_id: str, message_id: str, request: Request) -> JSONResponse:
    """
    Answer a message's furthest status and its history (``Authorization: Bearer <webhook_token>``).

    :param conn_id: The ``itnio`` connection; only its application's messages are answered.
    :param message_id: The id the send call returned.
    :param request: The request.
    """
    receiver = await _authorize(conn_id, request)
    if isinstance(receiver, JSONResponse):
        return receiver
    try:
        answer = await run_in_threadpool(_read_status, message_id, receiver.app_id)
    except SQLAlchemyError:
        log.exception("itnio webhook %s: cannot read a message status", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The status cannot be read now; retry later."})
    if answer is None:
        return JSONResponse(status_code=404, content={"detail": "unknown message"})
    return JSONResponse(status_code=200, content=answer)


def _read_last_inbound(business_phone: str, recipient: str, app_id: str) -> datetime.datetime | None:
    with _create_session() as session:
        return last_inbound_at(session, business_phone, recipient, app_id=app_id)


async def get_window(conn_id: str, request: Request) -> JSONResponse:
    """
    Answer whether a customer's 24-hour window with a business number is open (``Authorization: Bearer ...``).

    Query parameters ``business_phone`` and ``recipient`` (any way people write numbers). The answer:
    ``last_inbound_at`` (when the customer's last message to that number arrived, or ``null``), ``open`` (it
    arrived less than 24 hours ago) and ``closes_at`` (when the window closes, ``null`` when it is closed).

    :param conn_id: The ``itnio`` connection; only messages received for its application count.
    :param request: The request.
    """
    from airflow_provider_itnio.errors import ItnioValidationError
    from airflow_provider_itnio.messages import normalize_phone

    receiver = await _authorize(conn_id, request)
    if isinstance(receiver, JSONResponse):
        return receiver
    phones: dict[str, str] = {}
    for name, field in (("business_phone", "businessPhone"), ("recipient", "recipient")):
        value = request.query_params.get(name)
        if value is None or not value.strip():
            return JSONResponse(status_code=400, content={"detail": f"{name}: it is missing", "field": name})
        try:
            phones[name] = normalize_phone(value, field)
        except ItnioValidationError as err:
            return JSONResponse(
                status_code=400, content={"detail": f"{name}: {err.rule}; {err.problem}", "field": name}
            )
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
    """Return ``{"last_inbound_at", "open", "closes_at"}`` for a customer whose last message arrived at ``last``."""
    is_open = last is not None and now < last + WINDOW
    return {
        "last_inbound_at": _iso(last),
        "open": is_open,
        "closes_at": _iso(last + WINDOW) if is_open and last is not None else None,
    }


#: Customers per ``IN (...)`` list of the bulk window query (well under every database's parameter limit).
_IN_CHUNK = 500


def _read_last_inbounds(business_phone: str, recipients: list[str], app_id: str) -> dict[str, datetime.datetime]:
    """Return ``{recipient: when their last message to business_phone arrived}`` for those who ever wrote."""
    columns = inbound_message_table.c
    found: dict[str, datetime.datetime] = {}
    with _create_session() as session:
        for start in range(0, len(recipients), _IN_CHUNK):
            query = (
                select(columns.from_phone, func.max(columns.received_at))
                .where(
                    columns.app_id == app_id,
                    columns.business_phone == business_phone,
                    columns.from_phone.in_(recipients[start : start + _IN_CHUNK]),
                )
                .group_by(columns.from_phone)
            )
            for phone, last in session.execute(query):
                if last is not None:
                    found[phone] = last if last.tzinfo is not None else last.replace(tzinfo=datetime.UTC)
    return found


def _bad_request(detail: str, field: str) -> JSONResponse:
    return JSONResponse(status_code=400, content={"detail": detail, "field": field})


async def get_windows(conn_id: str, request: Request) -> JSONResponse:
    """
    Answer the 24-hour windows of many customers with one business number (``Authorization: Bearer ...``).

    The body: ``{"business_phone": "...", "recipients": ["...", ...]}``, 1 to
    :data:`~airflow_provider_itnio.webhook.client.MAX_WINDOW_RECIPIENTS` numbers (any way people write them).
    The answer: ``{"business_phone", "windows": {digits: {"last_inbound_at", "open", "closes_at"}}}``, one entry
    per distinct recipient. 400 names the first bad field (``recipients[3]``); 413 for a body over 1 MiB.

    :param conn_id: The ``itnio`` connection; only messages received for its application count.
    :param request: The request.
    """
    import json

    from airflow_provider_itnio.errors import ItnioValidationError
    from airflow_provider_itnio.messages import normalize_phone

    receiver = await _authorize(conn_id, request)
    if isinstance(receiver, JSONResponse):
        return receiver
    body = await _read_body(request)
    if body is None:
        return _too_large(f"more than {MAX_PUSH_BYTES} bytes")
    try:
        data = json.loads(body)
    except ValueError:
        return _bad_request("body: must be JSON", "body")
    if not isinstance(data, dict):
        return _bad_request("body: must be a JSON object", "body")
    business = data.get("business_phone")
    recipients = data.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        return _bad_request("recipients: must be a non-empty list of phone numbers", "recipients")
    if len(recipients) > MAX_WINDOW_RECIPIENTS:
        return _bad_request(
            f"recipients: at most {MAX_WINDOW_RECIPIENTS} per request; got {len(recipients)}", "recipients"
        )
    try:
        field = "business_phone"
        sender = normalize_phone(business if isinstance(business, str | int) else "", "businessPhone")
        phones: list[str] = []
        for index, value in enumerate(recipients):
            field = f"recipients[{index}]"
            if isinstance(value, bool) or not isinstance(value, str | int):
                return _bad_request(f"{field}: must be a phone number; got {type(value).__name__}", field)
            phones.append(normalize_phone(value, "recipient"))
    except ItnioValidationError as err:
        return _bad_request(f"{field}: {err.rule}; {err.problem}", field)
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


def create_app() -> FastAPI:
    """Return the receiver's FastAPI app (mounted by the plugin under ``/itnio``)."""
    receiver = FastAPI(
        title="itniotech WhatsApp webhook receiver",
        description="Receives the itniotech API's pushes (message statuses, customers' messages).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    for path in ("/webhook/{conn_id}/{token}", "/webhook/{conn_id}/{token}/"):  # a pasted trailing slash too
        receiver.add_api_route(
            path,
            receive_push,
            methods=["POST"],
            summary="Record a push from the itniotech API",
            response_class=JSONResponse,
            include_in_schema=not path.endswith("/"),
        )
    receiver.add_api_route(
        "/api/{conn_id}/messages/{message_id:path}/status",
        get_status,
        methods=["GET"],
        summary="Read a message's status (Authorization: Bearer <webhook_token>)",
        response_class=JSONResponse,
    )
    receiver.add_api_route(
        "/api/{conn_id}/window",
        get_window,
        methods=["GET"],
        summary="Read a customer's 24-hour window (Authorization: Bearer <webhook_token>)",
        response_class=JSONResponse,
    )
    receiver.add_api_route(
        "/api/{conn_id}/windows",
        get_windows,
        methods=["POST"],
        summary="Read many customers' 24-hour windows (Authorization: Bearer <webhook_token>)",
        response_class=JSONResponse,
    )
    receiver.add_middleware(MaskTokenMiddleware)
    return receiver


#: The app the plugin serves.
app = create_app()
