"""
An Airflow plugin that makes the Airflow 3 UI's connection requests for ``itnio`` connections work as intended.

Registered through the ``airflow.plugins`` entry point, so every Airflow that has the provider installed loads it;
it adds one ASGI middleware to Airflow 3's API server (Airflow 2 ignores ``fastapi_root_middlewares``). The
middleware only reads JSON request bodies whose ``conn_type`` is ``itnio``, and only on these routes:

- ``POST /api/v2/connections/test`` (the *Test* button of the connection list): Airflow 3.3's UI posts the stored
  connection with ``port`` set to ``Number(connection.port)``, which is ``0`` for the NULL port of every
  connection whose form hides the port field (the connection list's Test button in Airflow 3.3's UI). The route
  (``airflow/api_fastapi/core_api/routes/public/connections.py``, ``test_connection``) then finds that the
  "port to test" (0) differs from the stored one (NULL) (``_same_endpoint`` only treats ``None`` and ``""`` as
  unset) and, since the UI sends the masked ``"***"`` rather than the secret, answers 400 "The host or port to
  test differs from the stored connection" (the UI shows "Test Connection Failed / Bad Request"). The middleware
  drops ``"port": 0`` from such a body, so the route tests the stored port (the hook ignores port 0 anyway), and
  the route's own checks (host changed, credentials, authorisation) still apply unchanged.
- ``POST /api/v2/connections`` and ``PATCH /api/v2/connections/{id}`` (the Add and Edit dialogs' *Save*): the UI
  writes every extra field into ``extra``, with ``null`` for an empty one; the middleware removes the ``null``
  keys, so ``extra`` holds only what was filled in (the hook takes its defaults for absent keys). The same
  ``null`` keys are dropped from a ``/connections/test`` body.
- ``GET /api/v2/connections`` and ``GET /api/v2/connections/{id}`` (the connection list, whose rows the *Edit
  Connection* dialog is filled from): Airflow 3.3's Edit dialog shows an extra field **only when its key is in the
  stored** ``extra`` (the UI's param store, whose ``setConf`` is given the stored ``extra``, keeps a declared field
  only ``if (Object.hasOwn(conf, key))``, and shows any other key as an unlabelled text field; seen in the 3.3.2 UI
  bundle, ``airflow/ui/dist``).
  So a connection made by ``airflow connections add``, an environment variable or the Add dialog (whose empty
  fields are not stored) was edited without its Timeout, Verify TLS, Proxy... fields, and a proxy could not be
  added later. The middleware adds every declared extra
  (:data:`~airflow_provider_itnio.connection_fields.EXTRA_FIELDS`) missing from an ``itnio`` connection's ``extra``
  as ``null`` in these answers, so the Edit dialog shows every field with its label and help; *Save* then drops the
  ``null`` keys again (above), so what is stored does not change. REST clients see the same ``null`` keys, which
  mean "not set", as an absent key does.
  (The request's ``Accept-Encoding`` is dropped on these two routes so the answer can be read; they are small.)

At start, the API server's secrets masker is told that the secret extras
(:data:`~airflow_provider_itnio.connection_fields.SECRET_EXTRAS`) are sensitive, as Airflow already knows for keys
such as ``token`` and ``proxy``: their values are returned as ``***`` and a ``***`` saved back keeps the stored
value (Airflow's ``merge`` of redacted extras).

Nothing else is changed or logged; any body that is not such JSON passes through untouched.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.providers.common.compat.sdk import AirflowPlugin

from airflow_provider_itnio.connection_fields import CONN_TYPE, EXTRA_FIELDS, SECRET_EXTRAS

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The routes whose bodies are rewritten, by method (paths may sit under a base URL prefix).
_TEST_ROUTE = re.compile(r"/api/v2/connections/test/?$")
_SAVE_ROUTES = {"POST": re.compile(r"/api/v2/connections/?$"), "PATCH": re.compile(r"/api/v2/connections/[^/]+/?$")}
#: The read routes whose answers get every declared extra (the list, and one connection).
_READ_ROUTE = re.compile(r"/api/v2/connections(/[^/]+)?/?$")
#: Bodies larger than this are passed through unread (a connection is a few hundred bytes).
MAX_BODY = 256 * 1024
#: Answers larger than this are passed on unchanged (a page of the connection list is a few tens of kB).
MAX_ANSWER = 4 * 1024 * 1024


def rewrite_connection_body(body: bytes, *, is_test: bool) -> bytes:
    """
    Return the request body with the Airflow 3 UI's artefacts removed, or ``body`` itself if nothing changes.

    :param body: The raw JSON body of a connection request.
    :param is_test: Whether it is a ``/connections/test`` request (``"port": 0`` is dropped only there).
    """
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict) or data.get("conn_type") != CONN_TYPE:
        return body
    changed = False
    port = data.get("port")
    if is_test and port == 0 and not isinstance(port, bool):
        del data["port"]
        changed = True
    extra = data.get("extra")
    if isinstance(extra, str):
        try:
            extra_dict = json.loads(extra)
        except ValueError:
            extra_dict = None
        if isinstance(extra_dict, dict) and any(value is None for value in extra_dict.values()):
            data["extra"] = json.dumps({key: value for key, value in extra_dict.items() if value is not None})
            changed = True
    return json.dumps(data).encode() if changed else body


def _with_every_extra(connection: Any) -> bool:
    """
    Add every declared extra missing from an ``itnio`` connection's ``extra`` as ``null``; return whether it did.

    :param connection: One connection as the REST API answers it (``extra`` is a JSON string or ``null``).
    """
    if not isinstance(connection, dict) or connection.get("conn_type") != CONN_TYPE:
        return False
    raw = connection.get("extra")
    try:
        extra = json.loads(raw) if isinstance(raw, str) and raw.strip() else {} if raw in (None, "") else None
    except ValueError:
        return False
    if not isinstance(extra, dict):
        return False
    missing = [field.name for field in EXTRA_FIELDS if field.name not in extra]
    if not missing:
        return False
    connection["extra"] = json.dumps({**extra, **dict.fromkeys(missing)})
    return True


def complete_connection_extras(body: bytes) -> bytes:
    """
    Return a connection (or connection list) answer with every declared extra of ``itnio`` connections present.

    Returns ``body`` itself when nothing changes (another type, every key present, not such JSON).

    :param body: The JSON answer of ``GET /api/v2/connections`` or ``GET /api/v2/connections/{id}``.
    """
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and isinstance(data.get("connections"), list):
        changed = [_with_every_extra(connection) for connection in data["connections"]]
        return json.dumps(data).encode() if any(changed) else body
    return json.dumps(data).encode() if _with_every_extra(data) else body


def mark_secret_extras_sensitive() -> None:
    """
    Make the API server's secrets maskers treat :data:`SECRET_EXTRAS` as sensitive keys.

    Airflow redacts an extra in its answers, and restores a ``***`` sent back on save, only for keys whose name
    contains a sensitive word (``token``, ``secret``, ``proxy``...; ``[core] sensitive_var_conn_names`` adds
    more). ``button_key`` contains none, so without this the approval-button key would be shown in clear.
    """
    modules = ("airflow._shared.secrets_masker", "airflow.sdk._shared.secrets_masker")
    for module_name in modules:
        try:
            module = __import__(module_name, fromlist=["_secrets_masker"])
            masker = module._secrets_masker()
            fields = masker.sensitive_variables_fields
        except (ImportError, AttributeError):  # another Airflow: its own defaults apply
            log.debug("itnio: no secrets masker at %s", module_name)
            continue
        for name in SECRET_EXTRAS:
            if not masker.should_hide_value_for_key(name) and name not in fields:
                fields.append(name)


def _route(scope: Scope) -> bool | None:
    """Return ``True`` for the test route, ``False`` for a save route, ``None`` for anything else."""
    if scope.get("type") != "http":
        return None
    method, path = scope.get("method", ""), scope.get("path", "")
    if method == "POST" and _TEST_ROUTE.search(path):
        return True
    save_route = _SAVE_ROUTES.get(method)
    if save_route is not None and save_route.search(path) and not _TEST_ROUTE.search(path):
        return False
    return None


def _is_read_route(scope: Scope) -> bool:
    """Return whether the request reads the connection list or one connection."""
    match = _READ_ROUTE.search(scope.get("path", "")) if scope.get("type") == "http" else None
    return scope.get("method") == "GET" and match is not None and match.group(1) not in ("/test", "/hook_meta")


class ItnioConnectionRequestMiddleware:
    """
    Rewrite the Airflow 3 UI's ``itnio`` connection requests (pure ASGI, no framework import).

    :param app: The ASGI application it wraps (Airflow's API server).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        mark_secret_extras_sensitive()  # built once, in the API server, after Airflow configured its masker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """
        Pass the request on, with its body rewritten by :func:`rewrite_connection_body` on the routes above.

        :param scope: The ASGI connection scope.
        :param receive: The ASGI receive channel.
        :param send: The ASGI send channel.
        """
        if _is_read_route(scope):
            await self._complete_answer(scope, receive, send)
            return
        is_test = _route(scope)
        if is_test is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message.get("type") != "http.request":
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False) or size > MAX_BODY:
                break
        complete = messages[-1].get("type") == "http.request" and not messages[-1].get("more_body", False)
        if complete and size <= MAX_BODY:
            body = b"".join(m.get("body", b"") for m in messages)
            new_body = rewrite_connection_body(body, is_test=is_test)
            if new_body is not body:
                messages = [{"type": "http.request", "body": new_body, "more_body": False}]
                headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
                scope = {**scope, "headers": [*headers, (b"content-length", str(len(new_body)).encode())]}

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)

    async def _complete_answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """
        Pass a read request on and rewrite its JSON answer with :func:`complete_connection_extras`.

        :param scope: The ASGI connection scope.
        :param receive: The ASGI receive channel.
        :param send: The ASGI send channel.
        """
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]
        scope = {**scope, "headers": headers}  # an uncompressed answer (Airflow's GZip sits inside this)
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        passing = False  # not JSON, not 200, or too large: what is held back is sent and the rest passes

        async def flush_held() -> None:
            nonlocal start
            if start is not None:
                await send(start)
                start = None
            for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            chunks.clear()

        async def capture(message: Message) -> None:
            nonlocal start, size, passing
            if passing:
                await send(message)
                return
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if message.get("status") != 200 or not content_type.startswith(b"application/json"):
                    passing = True
                    await send(message)
                    return
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if message.get("more_body", False):
                if size > MAX_ANSWER:
                    passing = True
                    await flush_held()
                return
            body = b"".join(chunks)
            new_body = complete_connection_extras(body)
            response_headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            response_headers.append((b"content-length", str(len(new_body)).encode()))
            await send({**start, "headers": response_headers})
            await send({"type": "http.response.body", "body": new_body, "more_body": False})
            start = None
            chunks.clear()

        await self.app(scope, receive, capture)


class ItnioUIPlugin(AirflowPlugin):
    """Add :class:`ItnioConnectionRequestMiddleware` to Airflow 3's API server."""

    name = "itnio_ui"
    fastapi_root_middlewares = [
        {
            "middleware": ItnioConnectionRequestMiddleware,
            "args": [],
            "kwargs": {},
            "name": "itnio connection form fixes (Test button port, null extras, every extra in the Edit dialog)",
        }
    ]
