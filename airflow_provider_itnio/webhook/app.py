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

Nothing is recorded for an answer other than 200. The token is compared in constant time (``hmac.compare_digest``
of SHA-256 digests, so not even its length leaks).

The token never reaches a log line: the app's first middleware moves it out of the request's ``path`` (and
``raw_path``) into a private scope key and leaves ``***`` in its place, before routing. Airflow 3's API server logs
each request once, from its ``HttpAccessLogMiddleware`` (uvicorn's and gunicorn's own access logs are turned off by
``airflow api-server``), reading the path from the same ASGI scope after the request, so it logs
``/itnio/webhook/<conn_id>/***``. A reverse proxy in front of the API server logs the URL it forwards: configure
it not to log ``/itnio/webhook/`` paths (or their last segment).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow_provider_itnio.webhook import require_airflow_3_1

require_airflow_3_1("The itnio webhook receiver")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.types import ASGIApp, Receive, Scope, Send  # noqa: E402

from airflow_provider_itnio.connection_fields import CONN_TYPE  # noqa: E402
from airflow_provider_itnio.events import (  # noqa: E402
    MAX_PUSH_BYTES,
    InboundEvent,
    PushError,
    StatusEvent,
    parse_push,
)
from airflow_provider_itnio.webhook.store import Recorded, record_push  # noqa: E402

__all__ = ["TOKEN_EXTRA", "app", "create_app"]

log = logging.getLogger(__name__)

#: The connection extra holding the token of the connection's webhook address.
TOKEN_EXTRA = "webhook_token"
#: What replaces the token in the request's path (and so in the access log).
MASK = "***"
_SCOPE_TOKEN = "itnio.webhook_token"
_WEBHOOK_PATH = re.compile(r"^/webhook/([^/]+)/([^/]+)/?$")
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
                scope[_SCOPE_TOKEN] = match.group(2)
                masked = path[: len(path) - len(route_path)] + route_path[: match.start(2)] + MASK
                masked += route_path[match.end(2) :]
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


def _record(event: StatusEvent | InboundEvent, conn_id: str) -> Recorded:
    """Record the push in its own transaction (committed on return)."""
    from airflow.utils.session import create_session

    try:
        session_scope = create_session(scoped=False)  # type: ignore[call-arg]
    except TypeError:  # Airflow 3.1's create_session() has no "scoped"
        session_scope = create_session()
    with session_scope as session:
        return record_push(session, event, conn_id)


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
        recorded = await run_in_threadpool(_record, event, conn_id)
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
    return JSONResponse(status_code=200, content=answer)


def create_app() -> FastAPI:
    """Return the receiver's FastAPI app (mounted by the plugin under ``/itnio``)."""
    receiver = FastAPI(
        title="itniotech WhatsApp webhook receiver",
        description="Receives the itniotech API's pushes (message statuses, customers' messages).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    receiver.add_api_route(
        "/webhook/{conn_id}/{token}",
        receive_push,
        methods=["POST"],
        summary="Record a push from the itniotech API",
        response_class=JSONResponse,
    )
    receiver.add_middleware(MaskTokenMiddleware)
    return receiver


#: The app the plugin serves.
app = create_app()
