"""
The receiver's gate (Airflow 3.1+): who may in, and how much they may send, as FastAPI dependencies.

Every route of the receiver is guarded by the same check of a connection's ``webhook_token`` (:func:`_gate`): the
webhook address takes it from its path (:data:`PushReceiver`), the read API from ``Authorization: Bearer <token>``
(:data:`BearerReceiver`). A dependency that refuses raises :class:`Refused` with its answer, which the app answers as
it is (:func:`answer_refused`), so an endpoint runs only for a request that passed:

=====  ===============================================================================================
404    unknown connection, a connection of another type or without a ``webhook_token`` extra (or without an
       ``app_id``), no or another token: the same answer for all of them (``{"detail": "Not Found"}``, as for any
       unknown path)
413    a body over :data:`~airflow_provider_itnio.events.MAX_PUSH_BYTES` (1 MiB): the webhook address refuses a
       larger ``Content-Length`` before the token is even checked, and every read stops at the limit
       (:func:`read_body`)
400    a read API body that is not a JSON object (:data:`JSONObject`; field ``body``)
503    the connection cannot be read now (the database is down)
=====  ===============================================================================================

The token is compared in constant time (``hmac.compare_digest`` of SHA-256 digests, so not even its length leaks),
and an unknown connection id gets the same work as a wrong token (:func:`_gate`): the connection is looked up through
the same cache (:func:`_resolve_cached`, :data:`RESOLVE_TTL` seconds) whether it exists or not, so its answer time
does not tell whether the connection exists.

The token never reaches a log line: the app's first middleware (:class:`MaskTokenMiddleware`) moves it out of the
request's ``path`` (and ``raw_path``) into a private scope key and leaves ``***`` in its place, before routing; it
does so for any path under a webhook address too (``.../{token}/anything`` gets 404 with the token masked), and the
address with a trailing slash is served as it is (not redirected). Airflow 3's API server logs each request once,
from its ``HttpAccessLogMiddleware`` (uvicorn's and gunicorn's own access logs are turned off by
``airflow api-server``), reading the path from the same ASGI scope after the request, so it logs
``/itnio/webhook/<conn_id>/***``. A reverse proxy in front of the API server logs the URL it forwards: configure
it not to log ``/itnio/webhook/`` paths (or their last segment).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from airflow_provider_itnio.connection_fields import APP_ID_EXTRA, CONN_TYPE, WEBHOOK_TOKEN_EXTRA
from airflow_provider_itnio.events import MAX_PUSH_BYTES
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("The itnio webhook receiver")

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "MASK",
    "RESOLVE_CACHE_SIZE",
    "RESOLVE_TTL",
    "BearerReceiver",
    "JSONObject",
    "MaskTokenMiddleware",
    "PushReceiver",
    "Receiver",
    "Refused",
    "answer_refused",
    "bad_request",
    "bearer_receiver",
    "json_object",
    "push_receiver",
    "read_body",
    "too_large",
]

log = logging.getLogger(__name__)

#: What replaces the token in the request's path (and so in the access log).
MASK = "***"
_SCOPE_TOKEN = "itnio.webhook_token"
#: A webhook address, and anything under it: the token is the segment after the connection id, whatever follows
#: (a pasted address with a trailing slash or an extra segment must not put the token in the access log).
_WEBHOOK_PATH = re.compile(r"^/+webhook/+[^/]+/+([^/]+)", re.IGNORECASE)
_NOT_FOUND = {"detail": "Not Found"}
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)
#: Seconds a connection's webhook address (its application and token digest), or its having none, is reused before
#: the connection is read again.
RESOLVE_TTL = 5.0
#: The most connection ids whose webhook address (or its absence) is kept; the oldest goes first.
RESOLVE_CACHE_SIZE = 1000


@dataclass(frozen=True)
class Receiver:
    """What a connection's webhook address needs: its application and the digest of its token."""

    app_id: str
    token_digest: bytes


def _digest(token: str) -> bytes:
    """Return the SHA-256 digest of a token (what is kept and compared, never the token)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


#: What a presented token is compared with when the connection has no webhook address (unknown, another type, no
#: token): a digest no token has, so that an unknown connection costs the same work as a wrong token.
_NO_RECEIVER_DIGEST = _digest(secrets.token_urlsafe(32))


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


def _resolve(conn_id: str) -> Receiver | None:
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
    token = extra.get(WEBHOOK_TOKEN_EXTRA)
    app_id = str(extra.get(APP_ID_EXTRA) or "").strip()
    if not isinstance(token, str) or not token.strip():
        return None
    if not app_id:
        log.warning("itnio connection %s has a webhook token but no app_id extra: its pushes are refused", conn_id)
        return None
    return Receiver(app_id=app_id, token_digest=_digest(token.strip()))


_resolved: OrderedDict[str, tuple[float, Receiver | None]] = OrderedDict()


async def _resolve_cached(conn_id: str) -> Receiver | None:
    """
    Return :func:`_resolve`'s answer, reusing it for :data:`RESOLVE_TTL` seconds, whether a receiver or ``None``.

    Pushes come in bursts to one address: reading (and decrypting) the connection once per burst instead of once per
    request saves a database read per request. An address that is not found is kept too, so that an unknown
    connection id is answered with the same work as a known one with a wrong token (its answer time does not tell
    whether it exists). A new, rotated or removed token takes effect within the TTL.
    """
    cached = _resolved.get(conn_id)
    if cached is not None and time.monotonic() - cached[0] < RESOLVE_TTL:
        return cached[1]
    receiver = await run_in_threadpool(_resolve, conn_id)
    _resolved[conn_id] = (time.monotonic(), receiver)
    _resolved.move_to_end(conn_id)
    while len(_resolved) > RESOLVE_CACHE_SIZE:  # never grow without bound (ids in URLs are anyone's to choose)
        _resolved.popitem(last=False)
    return receiver


async def _gate(conn_id: str, presented: str) -> Receiver | None:
    """
    Return the connection's receiver when ``presented`` is its ``webhook_token``, else ``None``.

    The one check of the webhook address and of the read API. The same work whatever the reason for ``None`` (an
    unknown connection, one of another type or without a token, a wrong token): the connection is looked up through
    the same cache (:func:`_resolve_cached`), the presented token is digested and compared in constant time with the
    receiver's digest, or with one no token has.

    :param conn_id: The connection id in the URL.
    :param presented: The token presented (``""`` when none was).
    :raises SQLAlchemyError: The connection cannot be read now.
    """
    receiver = await _resolve_cached(conn_id)
    expected = receiver.token_digest if receiver is not None else _NO_RECEIVER_DIGEST
    matches = hmac.compare_digest(_digest(presented), expected)
    return receiver if matches and presented else None


# -- the dependencies the routes declare ------------------------------------------------------------------------


class Refused(HTTPException):
    """
    A request a guard refused, with its answer (raised from a dependency; :func:`answer_refused` answers it).

    The answer is a JSON body of its own (``{"detail": ..., "field": ...}``); an app that did not register
    :func:`answer_refused` still answers the status and the detail.

    :param response: The answer.
    """

    def __init__(self, response: JSONResponse) -> None:
        detail = json.loads(bytes(response.body)).get("detail")
        super().__init__(status_code=response.status_code, detail=detail)
        self.response = response


async def answer_refused(_request: Request, refused: Exception) -> Response:
    """
    Answer a :class:`Refused` request with the answer it carries (the app's handler of :class:`Refused`).

    :param _request: The request.
    :param refused: The :class:`Refused` raised.
    """
    if not isinstance(refused, Refused):  # only registered for Refused
        raise refused
    return refused.response


def too_large(size: str) -> JSONResponse:
    """
    Return the answer refusing a body over :data:`~airflow_provider_itnio.events.MAX_PUSH_BYTES` (413).

    :param size: The size it has, e.g. ``2000000 bytes``.
    """
    return JSONResponse(
        status_code=413,
        content={"detail": f"body: at most {MAX_PUSH_BYTES} bytes; got {size}", "field": "body"},
    )


def bad_request(detail: str, field: str) -> JSONResponse:
    """
    Return the answer refusing a request for one field (400, ``{"detail": detail, "field": field}``).

    :param detail: What is wrong, starting with the field's name.
    :param field: The field, e.g. ``recipients[3]``.
    """
    return JSONResponse(status_code=400, content={"detail": detail, "field": field})


async def _admit(conn_id: str, presented: str, unreadable: str) -> Receiver:
    """
    Return the connection's receiver when ``presented`` is its token (:func:`_gate`); else refuse the request.

    :param conn_id: The connection id in the URL.
    :param presented: The token presented (``""`` when none was).
    :param unreadable: The answer's detail when the connection cannot be read (503).
    :raises Refused: 404 ``Not Found`` (the same for every reason), or 503.
    """
    try:
        receiver = await _gate(conn_id, presented)
    except SQLAlchemyError:
        log.exception("itnio webhook: cannot read connection %s", conn_id)
        raise Refused(JSONResponse(status_code=503, content={"detail": unreadable})) from None
    if receiver is None:
        raise Refused(JSONResponse(status_code=404, content=_NOT_FOUND))
    return receiver


async def push_receiver(conn_id: str, token: str, request: Request) -> Receiver:
    """
    Admit a request to a webhook address: return the connection's receiver, before anything is read.

    First the declared size (413 for a ``Content-Length`` over the limit, before any lookup), then the token of the
    address (taken from the scope, where :class:`MaskTokenMiddleware` put it): 404 for every reason it is not the
    connection's, 503 when the connection cannot be read.

    :param conn_id: The ``itnio`` connection whose address this is.
    :param token: The token in the address (``***`` once masked: the real one is taken from the scope).
    :param request: The request.
    :raises Refused: The request is refused.
    """
    presented: str = request.scope.get(_SCOPE_TOKEN, token)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PUSH_BYTES:
        raise Refused(too_large(f"{int(declared)} bytes"))
    return await _admit(conn_id, presented, "The push cannot be checked now; retry later.")


async def bearer_receiver(conn_id: str, request: Request) -> Receiver:
    """
    Admit a read API request: return the connection's receiver when it carries ``Authorization: Bearer <token>``.

    Otherwise refuse it: 404 ``Not Found`` (the same for an unknown connection, a connection without a token, no or
    another header, and a wrong token), or 503 when the connection cannot be read.

    :param conn_id: The ``itnio`` connection in the URL.
    :param request: The request.
    :raises Refused: The request is refused.
    """
    match = _BEARER.match(request.headers.get("authorization", ""))
    presented = match.group(1) if match else ""
    return await _admit(conn_id, presented, "The connection cannot be read now; retry later.")


#: A webhook address's receiver, admitted by :func:`push_receiver`.
PushReceiver = Annotated[Receiver, Depends(push_receiver)]
#: A read API request's receiver, admitted by :func:`bearer_receiver`.
BearerReceiver = Annotated[Receiver, Depends(bearer_receiver)]


async def read_body(request: Request) -> bytes:
    """
    Return the request body, reading it at most up to :data:`~airflow_provider_itnio.events.MAX_PUSH_BYTES`.

    :param request: The request.
    :raises Refused: 413 as soon as the body exceeds the limit.
    """
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_PUSH_BYTES:
            raise Refused(too_large(f"more than {MAX_PUSH_BYTES} bytes"))
    return bytes(body)


async def json_object(_receiver: BearerReceiver, request: Request) -> dict[str, Any]:
    """
    Return a read API request's JSON object body, read only once the request is admitted (:func:`bearer_receiver`).

    :param _receiver: The admitted receiver (this dependency comes after it: a stranger's body is never read).
    :param request: The request.
    :raises Refused: 413 for a body over 1 MiB, 400 (field ``body``) for a body that is not a JSON object.
    """
    body = await read_body(request)
    try:
        data = json.loads(body)
    except ValueError:
        raise Refused(bad_request("body: must be JSON", "body")) from None
    if not isinstance(data, dict):
        raise Refused(bad_request("body: must be a JSON object", "body"))
    return data


#: A read API request's body, a JSON object, read once the request is admitted (:func:`json_object`).
JSONObject = Annotated[dict[str, Any], Depends(json_object)]
