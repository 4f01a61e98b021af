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
  keys, so ``extra`` holds only what was filled in (the hook takes its defaults for absent keys).

Nothing else is changed or logged; any body that is not such JSON passes through untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.providers.common.compat.sdk import AirflowPlugin

from airflow_provider_itnio.connection_fields import CONN_TYPE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The routes whose bodies are rewritten, by method (paths may sit under a base URL prefix).
_TEST_ROUTE = re.compile(r"/api/v2/connections/test/?$")
_SAVE_ROUTES = {"POST": re.compile(r"/api/v2/connections/?$"), "PATCH": re.compile(r"/api/v2/connections/[^/]+/?$")}
#: Bodies larger than this are passed through unread (a connection is a few hundred bytes).
MAX_BODY = 256 * 1024


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


class ItnioConnectionRequestMiddleware:
    """
    Rewrite the Airflow 3 UI's ``itnio`` connection requests (pure ASGI, no framework import).

    :param app: The ASGI application it wraps (Airflow's API server).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """
        Pass the request on, with its body rewritten by :func:`rewrite_connection_body` on the routes above.

        :param scope: The ASGI connection scope.
        :param receive: The ASGI receive channel.
        :param send: The ASGI send channel.
        """
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


class ItnioUIPlugin(AirflowPlugin):
    """Add :class:`ItnioConnectionRequestMiddleware` to Airflow 3's API server."""

    name = "itnio_ui"
    fastapi_root_middlewares = [
        {
            "middleware": ItnioConnectionRequestMiddleware,
            "args": [],
            "kwargs": {},
            "name": "itnio connection form fixes (Test button port, null extras)",
        }
    ]
