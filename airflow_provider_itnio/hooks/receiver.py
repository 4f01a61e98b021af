"""
The receiver's read API as a hook: what the webhook receiver recorded, over HTTP, for a worker or the triggerer.

Airflow 3.1+ (the receiver runs on its API server). Formerly ``airflow_provider_itnio.webhook.client``, which still
re-exports it (deprecated).

Airflow 3 keeps task and trigger code away from the metadata database: workers and the triggerer reach it only
through the API server. The receiver's tables are in that database, so the receiver's app on the API server also
answers two authenticated read endpoints, and :class:`ItnioReceiverClient` asks them:

- ``GET /itnio/api/{conn_id}/messages/{message_id}/status``: a message's furthest status and its history;
- ``POST /itnio/api/{conn_id}/statuses`` ``{"message_ids": [...]}``: the same for up to :data:`MAX_STATUS_IDS`
  messages in one request (:meth:`ItnioReceiverClient.astatuses` chunks longer lists; the triggerer's shared
  poller asks it once per interval for all the waits on a connection);
- ``GET /itnio/api/{conn_id}/window?business_phone=...&recipient=...``: the customer's 24-hour window;
- ``POST /itnio/api/{conn_id}/windows`` ``{"business_phone", "recipients": [...]}``: the windows of up to
  :data:`MAX_WINDOW_RECIPIENTS` customers in one request (:meth:`ItnioReceiverClient.windows` chunks longer lists).

All take ``Authorization: Bearer <the connection's webhook_token>`` (the same secret as the webhook address, so
nothing new to configure; never in a URL here, never logged) and answer ``404 {"detail": "Not Found"}`` for an
unknown connection and a wrong token alike.

What the client makes of an answer: only a connection error (refused, DNS, timeout), a 5xx and a 429 are
transient (:class:`ItnioReceiverUnreachableError`: ask again later). Everything else that is not the receiver's JSON
answer says the address is wrong or something in between stops the request: a 3xx (a redirect to a login page), 401
and 403 (an auth proxy), 405 and a 200 that is not a JSON object (a web server without the plugin: an Airflow API
server answers a path no plugin serves with its UI's HTML page for ``GET`` and 405 for ``POST``), any other 4xx, and
the receiver's own 404. Asking again cannot fix those: :class:`ItnioReceiverConfigError` (permanent) names the URL
asked (the token is in a header, never in it) and what came back.

The client finds the API server at the connection's ``receiver_url`` extra when it has one (the API server's base
URL, as in ``python -m airflow_provider_itnio.webhook url --base-url``; ``/itnio/api/...`` is appended), else at
Airflow's ``[api] base_url``, else at ``[core] execution_api_server_url`` without its ``/execution/`` path, else
at ``http://localhost:8080``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from airflow_provider_itnio.connection_fields import RECEIVER_URL_EXTRA, WEBHOOK_TOKEN_EXTRA
from airflow_provider_itnio.errors import ItnioConfigError, ItnioError
from airflow_provider_itnio.receiver_protocol import MAX_STATUS_IDS, MAX_STATUS_WAIT, MAX_WINDOW_RECIPIENTS, URL_PREFIX
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("The itnio receiver client")

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_STATUS_IDS",
    "MAX_STATUS_WAIT",
    "MAX_WINDOW_RECIPIENTS",
    "RECEIVER_URL_EXTRA",
    "ItnioReceiverClient",
    "ItnioReceiverConfigError",
    "ItnioReceiverError",
    "ItnioReceiverNotFoundError",
    "ItnioReceiverUnreachableError",
    "ItnioUnknownMessageError",
    "StatusesAnswer",
    "receiver_base_url",
]

log = logging.getLogger(__name__)

#: Where the API server is when neither the connection nor Airflow's configuration says.
DEFAULT_BASE_URL = "http://localhost:8080"
#: :data:`~airflow_provider_itnio.connection_fields.WEBHOOK_TOKEN_EXTRA`, kept for code that imported it from here.
TOKEN_EXTRA = WEBHOOK_TOKEN_EXTRA
_DEFAULT_TIMEOUT = 10.0
#: HTTP statuses that say "busy, ask again later" (besides connection errors): server errors, 408 and 429.
TRANSIENT_STATUSES: frozenset[int] = frozenset({408, 429}) | frozenset(range(500, 600))
#: How much of an unexpected answer's body an error quotes (characters).
_QUOTED_BODY = 120


class ItnioReceiverError(ItnioError):
    """Base class of the errors :class:`ItnioReceiverClient` raises."""


class ItnioReceiverUnreachableError(ItnioReceiverError):
    """
    The API server could not be reached, timed out, or answered that it is busy (5xx, 408, 429): ask again later.
    """


class ItnioReceiverConfigError(ItnioReceiverError):
    """
    What answers at the receiver's URL is not the receiver, or refuses the request: asking again cannot help.

    A 3xx (a redirect, e.g. to a login page), 401 / 403 (an auth proxy in front of the API server), 405 or a 200
    that is not a JSON object (a web server, or an Airflow API server at a path no plugin serves), or another 4xx.
    The message names the URL asked (without the token, which only travels in a header) and what came back.
    """

    permanent = True


class ItnioReceiverNotFoundError(ItnioReceiverConfigError):
    """
    The API server answered ``404 Not Found``: the receiver does not know the connection or its token.

    The connection is unknown to the API server, has no ``webhook_token`` there, or another one; or the API
    server does not serve the itnio plugin (Airflow older than 3.1, or the provider not installed there).
    """


class ItnioUnknownMessageError(ItnioReceiverError):
    """
    No status push has been recorded for the message (yet).

    :param message_id: The message asked about.
    """

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        super().__init__(f"No status has been recorded for message {message_id!r} (yet)")


@dataclass(frozen=True)
class StatusesAnswer:
    """
    What ``POST .../statuses`` answered for many messages.

    :param statuses: Each message's status record (as :meth:`ItnioReceiverClient.message_status` answers it), or
        ``None`` when no status was recorded yet.
    :param cursor: Pass it as ``since`` next time to wait for what changes after this answer.
    :param changed: Whether one of the messages changed after ``since`` (always, without ``since``).
    """

    statuses: dict[str, dict[str, Any] | None]
    cursor: int | None
    changed: bool


def _strip_execution_path(url: str) -> str:
    """Return ``http://host:8080`` for ``http://host:8080/execution/`` (the path's ``/execution`` dropped)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith("/execution"):
        path = path[: -len("/execution")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def receiver_base_url(extra: dict[str, Any] | None = None) -> str:
    """
    Return the base URL of the API server serving the receiver, without a trailing slash.

    :param extra: The connection's extra: its ``receiver_url``, when set, wins over Airflow's configuration.
    """
    configured = (extra or {}).get(RECEIVER_URL_EXTRA)
    if isinstance(configured, str) and configured.strip():
        return configured.strip().rstrip("/")
    from airflow.configuration import conf

    base_url = conf.get("api", "base_url", fallback=None)
    if base_url and base_url.strip():
        return base_url.strip().rstrip("/")
    execution_url = conf.get("core", "execution_api_server_url", fallback=None)
    if execution_url and execution_url.strip():
        return _strip_execution_path(execution_url.strip()).rstrip("/")
    return DEFAULT_BASE_URL


class ItnioReceiverClient:
    """
    Ask the webhook receiver on the API server what it recorded for an ``itnio`` connection.

    A hook in all but its base class: it reads an ``itnio`` connection and talks HTTP, but it is not a
    ``BaseHook``, whose class methods ``get_connection(conn_id)`` and ``aget_connection(conn_id)`` its own
    :meth:`get_connection` and :meth:`aget_connection` (read this client's connection once) would override with
    other signatures; and the ``itnio`` connection type is :class:`~airflow_provider_itnio.hooks.itnio.ItnioHook`'s.

    Sync methods for workers (operators, sensors in ``poke`` mode), ``a``-prefixed twins for triggers. The
    connection is read once, on first use (:meth:`aget_connection` reads it without blocking the event loop).

    :param itnio_conn_id: The ``itnio`` connection: its ``webhook_token`` extra authenticates, its
        ``receiver_url`` extra (optional) says where the API server is.
    :param timeout: Seconds to wait for the API server (connect and read).
    """

    #: Seconds before a request answered 404 (the API server does not accept the token) is asked once more, with the
    #: connection read again: the API server reuses what it read of a connection for up to 5 s
    #: (``webhook.guards.RESOLVE_TTL``), so a token rotated a moment ago may not be accepted yet.
    not_found_retry_after: ClassVar[float] = 6.0
    #: The argument naming the connection, and its default (as Airflow's hooks say).
    conn_name_attr: ClassVar[str] = "itnio_conn_id"
    default_conn_name: ClassVar[str] = "itnio_default"

    def __init__(self, itnio_conn_id: str = default_conn_name, *, timeout: float = _DEFAULT_TIMEOUT) -> None:
        self.itnio_conn_id = itnio_conn_id
        self.timeout = timeout
        self._base_url: str | None = None
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"ItnioReceiverClient(itnio_conn_id={self.itnio_conn_id!r})"

    # -- the connection ----------------------------------------------------------------------------------

    def _configure(self, extra: dict[str, Any]) -> None:
        token = extra.get(WEBHOOK_TOKEN_EXTRA)
        if not isinstance(token, str) or not token.strip():
            raise ItnioConfigError(
                f"Connection {self.itnio_conn_id!r} has no {WEBHOOK_TOKEN_EXTRA!r} extra, which the receiver's read "
                f"endpoints need: run `python -m airflow_provider_itnio.webhook url {self.itnio_conn_id}` to "
                "create one (and give the printed address to the vendor)"
            )
        self._token = token.strip()
        self._base_url = receiver_base_url(extra)

    def get_connection(self) -> None:
        """Read the connection's token and the API server's address (once)."""
        if self._token is None:
            from airflow.sdk import BaseHook

            self._configure(BaseHook.get_connection(self.itnio_conn_id).extra_dejson or {})

    async def aget_connection(self) -> None:
        """Read the connection's token and the API server's address (once) without blocking the event loop."""
        if self._token is None:
            from airflow.sdk import BaseHook

            getter = getattr(BaseHook, "aget_connection", None)
            if getter is not None:
                conn = await getter(self.itnio_conn_id)
            else:  # an Airflow without the async getter
                from asgiref.sync import sync_to_async

                conn = await sync_to_async(BaseHook.get_connection)(self.itnio_conn_id)
            self._configure(conn.extra_dejson or {})

    @property
    def base_url(self) -> str:
        """The API server's base URL (after the connection was read)."""
        if self._base_url is None:
            self.get_connection()
        assert self._base_url is not None
        return self._base_url

    # -- requests ----------------------------------------------------------------------------------------

    def _status_path(self, message_id: str) -> str:
        if not isinstance(message_id, str) or not message_id.strip():
            raise ValueError(f"message_id: must be a non-empty string; got {message_id!r}")
        return f"messages/{quote(message_id.strip(), safe='')}/status"

    def _request(
        self,
        path: str,
        params: dict[str, str] | None,
        message_id: str | None = None,
        *,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            return self._request_once(path, params, message_id, json=json)
        except ItnioReceiverNotFoundError:
            log.info("%s", self._not_found_retry_message())
            time.sleep(self.not_found_retry_after)
            self._token = None
            self.get_connection()
            return self._request_once(path, params, message_id, json=json)

    async def _arequest(
        self,
        path: str,
        params: dict[str, str] | None,
        message_id: str | None = None,
        *,
        json: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        try:
            return await self._arequest_once(path, params, message_id, json=json, timeout=timeout)
        except ItnioReceiverNotFoundError:
            log.info("%s", self._not_found_retry_message())
            await asyncio.sleep(self.not_found_retry_after)
            self._token = None
            await self.aget_connection()
            return await self._arequest_once(path, params, message_id, json=json, timeout=timeout)

    def _not_found_retry_message(self) -> str:
        return (
            f"The API server does not accept connection {self.itnio_conn_id!r}'s webhook_token (yet?): reading the "
            f"connection again and asking once more in {self.not_found_retry_after:g} s (a token just rotated takes "
            "the API server up to 5 s to accept)"
        )

    def _request_once(
        self,
        path: str,
        params: dict[str, str] | None,
        message_id: str | None = None,
        *,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        kwargs = self._request_kwargs(path, params)
        try:
            with httpx.Client(timeout=self.timeout) as client:
                response = client.get(**kwargs) if json is None else client.post(**kwargs, json=json)
        except httpx.HTTPError as err:
            raise self._unreachable(err) from None
        return self._answer(response, message_id)

    async def _arequest_once(
        self,
        path: str,
        params: dict[str, str] | None,
        message_id: str | None = None,
        *,
        json: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        kwargs = self._request_kwargs(path, params)
        try:
            async with httpx.AsyncClient(timeout=self.timeout if timeout is None else timeout) as client:
                response = await (client.get(**kwargs) if json is None else client.post(**kwargs, json=json))
        except httpx.HTTPError as err:
            raise self._unreachable(err) from None
        return self._answer(response, message_id)

    def _request_kwargs(self, path: str, params: dict[str, str] | None) -> dict[str, Any]:
        assert self._base_url is not None and self._token is not None
        return {
            "url": f"{self._base_url}{URL_PREFIX}/api/{quote(self.itnio_conn_id, safe='')}/{path}",
            "params": params,
            "headers": {"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
        }

    def _unreachable(self, err: httpx.HTTPError) -> ItnioReceiverUnreachableError:
        # The message names the error's type and text: httpx puts neither headers nor the token in them.
        try:
            asked = f"{err.request.method} {err.request.url.copy_with(query=None, fragment=None)}"
        except RuntimeError:  # an error raised before httpx had the request
            asked = ""
        return ItnioReceiverUnreachableError(
            f"The itnio receiver at {self._base_url}{URL_PREFIX} could not be reached for connection "
            f"{self.itnio_conn_id!r}{' (' + asked + ')' if asked else ''}: {type(err).__name__}: {err}. Set the "
            f"connection's {RECEIVER_URL_EXTRA!r} extra or Airflow's [api] base_url to the API server's address."
        )

    def _answer(self, response: httpx.Response, message_id: str | None) -> dict[str, Any]:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        detail = body.get("detail") if isinstance(body, dict) else None
        status = response.status_code
        if status == 200 and isinstance(body, dict):
            return body
        if status == 404 and detail == "unknown message" and message_id is not None:
            raise ItnioUnknownMessageError(message_id)
        if status == 400 and detail is not None:
            raise ValueError(f"The itnio receiver refused the request: {detail}")
        asked = self._asked(response)
        if status in TRANSIENT_STATUSES:
            raise ItnioReceiverUnreachableError(
                f"The itnio receiver at {asked} answered {self._came_back(response)} for connection "
                f"{self.itnio_conn_id!r} (asked again later)"
            )
        if status == 404 and body == {"detail": "Not Found"}:
            raise ItnioReceiverNotFoundError(
                f"The API server at {asked} answered 404 for connection {self.itnio_conn_id!r}: it does "
                "not know the connection, its webhook_token differs from this one, or it does not serve the "
                "itnio plugin (Airflow 3.1+ with the provider installed)"
            )
        raise ItnioReceiverConfigError(
            f"No itnio receiver answered at {asked} for connection {self.itnio_conn_id!r}: it answered "
            f"{self._came_back(response)}. {self._hint(status)} Set the connection's {RECEIVER_URL_EXTRA!r} extra "
            "(or Airflow's [api] base_url) to the base URL of the API server that runs the itnio plugin."
        )

    @staticmethod
    def _asked(response: httpx.Response) -> str:
        """Return the method and URL of the request ``response`` answers, without its query (numbers stay out)."""
        url = response.request.url
        return f"{response.request.method} {url.copy_with(query=None, fragment=None)}"

    def _came_back(self, response: httpx.Response) -> str:
        """Return what came back, briefly: status, reason, redirect target, content type and the body's start."""
        parts = [f"{response.status_code} {response.reason_phrase}".strip()]
        location = response.headers.get("location")
        if location and response.is_redirect:
            parts.append(f"to {location}")
        content_type = response.headers.get("content-type", "no content type").split(";")[0].strip()
        text = re.sub(r"\s+", " ", response.text[:_QUOTED_BODY]).strip()
        if self._token:
            text = text.replace(self._token, "***")  # an auth proxy echoing the header must not leak the token
        parts.append(f"({content_type}{': ' + text if text else ', empty body'})")
        return " ".join(parts)

    @staticmethod
    def _hint(status: int) -> str:
        """Return what an unexpected status usually means."""
        if 300 <= status < 400:
            return "A redirect: the URL is not the API server's (or a login page stands in front of it)."
        if status in (401, 403):
            return "Something in front of the API server (an auth proxy) refuses the request."
        if status == 405 or status == 200:
            return "A web server without the itnio plugin's read API at that path (a wrong base URL or path)."
        return "Asking again cannot change that answer."

    # -- the API -----------------------------------------------------------------------------------------

    def message_status(self, message_id: str) -> dict[str, Any]:
        """
        Return a message's furthest status and its history, as the receiver recorded them.

        The answer has ``message_id``, ``status``, ``final`` (``failed`` or ``deleted``), ``failure``,
        ``recipient``, ``business_phone``, ``conversation_id``, ``timestamp`` (ISO 8601: the vendor's time of
        ``status``), ``updated_at`` and ``history`` (each distinct status push: ``status``, ``failure``,
        ``timestamp``, ``received_at``).

        :param message_id: The id the send call returned.
        :raises ItnioUnknownMessageError: No status push for the message has arrived (yet).
        :raises ItnioReceiverNotFoundError: The API server does not know the connection or its token.
        :raises ItnioReceiverConfigError: Something else than the receiver answers at its URL (see the module).
        :raises ItnioReceiverUnreachableError: The API server cannot be reached, or answered 5xx / 408 / 429.
        """
        path = self._status_path(message_id)
        self.get_connection()
        return self._request(path, None, message_id)

    async def amessage_status(self, message_id: str) -> dict[str, Any]:
        """
        Return a message's furthest status and its history (see :meth:`message_status`), without blocking.

        :param message_id: The id the send call returned.
        """
        path = self._status_path(message_id)
        await self.aget_connection()
        return await self._arequest(path, None, message_id)

    async def astatuses(
        self, message_ids: list[str] | tuple[str, ...], *, since: int | None = None, wait: float = 0.0
    ) -> StatusesAnswer:
        """
        Return the status records of many messages, keyed by id: ``None`` for a message with no status yet.

        One ``POST .../statuses`` request per :data:`MAX_STATUS_IDS` distinct ids; each record as
        :meth:`message_status` answers it. With ``since`` (an earlier answer's ``cursor``) and ``wait``, the API
        server holds a single request until one of the messages changes or ``wait`` seconds pass (a long poll);
        more ids than one request takes are asked without waiting.

        :param message_ids: The ids the send calls returned.
        :param since: The cursor of an earlier answer, or ``None``.
        :param wait: Seconds the API server may wait for a change (at most :data:`MAX_STATUS_WAIT`).
        :raises ItnioReceiverNotFoundError: The API server does not know the connection or its token.
        :raises ItnioReceiverConfigError: Something else than the receiver answers at its URL (see the module).
        :raises ItnioReceiverUnreachableError: The API server cannot be reached, or answered 5xx / 408 / 429.
        :raises ValueError: The receiver refused an id.
        """
        await self.aget_connection()
        distinct = list(dict.fromkeys(message_ids))
        wait = min(max(float(wait), 0.0), MAX_STATUS_WAIT) if len(distinct) <= MAX_STATUS_IDS else 0.0
        statuses: dict[str, dict[str, Any] | None] = {}
        cursors: list[int] = []
        changed = False
        for start in range(0, len(distinct), MAX_STATUS_IDS):
            body: dict[str, Any] = {"message_ids": distinct[start : start + MAX_STATUS_IDS], "wait": wait}
            if since is not None:
                body["since"] = since
            answer = await self._arequest("statuses", None, json=body, timeout=self.timeout + wait)
            chunk, cursor = answer.get("statuses"), answer.get("cursor")
            if not isinstance(chunk, dict) or not isinstance(cursor, int):
                raise ItnioReceiverConfigError(
                    f"The itnio receiver at {self._base_url}{URL_PREFIX} answered statuses without 'statuses' and "
                    "'cursor': is the provider on the API server the same version as in the triggerer?"
                )
            statuses.update(chunk)
            cursors.append(cursor)
            changed = changed or bool(answer.get("changed"))
        return StatusesAnswer(statuses, min(cursors) if cursors else since, changed)

    def window(self, business_phone: str, recipient: str) -> dict[str, Any]:
        """
        Return the customer's 24-hour window with a business number, as the receiver recorded it.

        The answer has ``business_phone`` and ``recipient`` (digits), ``last_inbound_at`` (ISO 8601, or ``None``
        when the customer never wrote), ``open`` (the last message arrived less than 24 hours ago) and
        ``closes_at`` (ISO 8601, ``None`` when closed).

        :param business_phone: The business number (any way people write numbers).
        :param recipient: The customer's number.
        :raises ItnioReceiverNotFoundError: The API server does not know the connection or its token.
        :raises ItnioReceiverConfigError: Something else than the receiver answers at its URL (see the module).
        :raises ItnioReceiverUnreachableError: The API server cannot be reached, or answered 5xx / 408 / 429.
        """
        self.get_connection()
        return self._request("window", {"business_phone": str(business_phone), "recipient": str(recipient)})

    async def awindow(self, business_phone: str, recipient: str) -> dict[str, Any]:
        """
        Return the customer's 24-hour window with a business number (see :meth:`window`), without blocking.

        :param business_phone: The business number.
        :param recipient: The customer's number.
        """
        await self.aget_connection()
        return await self._arequest("window", {"business_phone": str(business_phone), "recipient": str(recipient)})

    def windows(self, business_phone: str, recipients: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """
        Return the 24-hour windows of many customers with a business number, keyed by their digits.

        One ``POST .../windows`` request per :data:`MAX_WINDOW_RECIPIENTS` recipients. Each value has
        ``last_inbound_at``, ``open`` and ``closes_at``, as :meth:`window` answers them.

        :param business_phone: The business number.
        :param recipients: The customers' numbers (any way people write numbers; the keys are their digits).
        :raises ItnioReceiverNotFoundError: The API server does not know the connection or its token.
        :raises ItnioReceiverConfigError: Something else than the receiver answers at its URL (see the module).
        :raises ItnioReceiverUnreachableError: The API server cannot be reached, or answered 5xx / 408 / 429.
        :raises ValueError: The receiver refused a number.
        """
        self.get_connection()
        answer: dict[str, dict[str, Any]] = {}
        numbers = [str(recipient) for recipient in recipients]
        for start in range(0, len(numbers), MAX_WINDOW_RECIPIENTS):
            body = {"business_phone": str(business_phone), "recipients": numbers[start : start + MAX_WINDOW_RECIPIENTS]}
            windows = self._request("windows", None, json=body).get("windows")
            if not isinstance(windows, dict):
                raise ItnioReceiverConfigError(
                    f"The itnio receiver at {self._base_url}{URL_PREFIX} answered windows without a 'windows' "
                    "object: is the provider on the API server the same version as on the workers?"
                )
            answer.update(windows)
        return answer
