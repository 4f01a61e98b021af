"""ItnioHook: signs and posts requests to the itniotech WhatsApp API and maps its answers to exceptions."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import os
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pendulum
import tenacity
import urllib3
from airflow.providers.common.compat.sdk import BaseHook
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError
from urllib3.util import parse_url

from airflow_provider_itnio import connection_fields
from airflow_provider_itnio.errors import (
    ItnioApiError,
    ItnioConfigError,
    ItnioDeliveryUnknownError,
    ItnioError,
    ItnioTransportError,
    ItnioValidationError,
)
from airflow_provider_itnio.messages import Text, build_request_body, normalize_phone
from airflow_provider_itnio.phones import outside_ranges_warning, parse_phone

if TYPE_CHECKING:
    from airflow_provider_itnio.messages import Message

#: Reports connection-test results on the console of ``airflow connections test`` (the hook's own logger is
#: a task logger there, which the CLI does not print).
_test_log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.itniotech.com"
QUERY_PHONE_INFO_PATH = "/wa/queryBusinessPhoneInfo"
#: HTTP answers that say the request was not processed: safe to send again.
NOT_PROCESSED_HTTP = frozenset({429, 503})

PHONE_STATUS_NAMES = {
    0: "PENDING",
    1: "DELETED",
    2: "MIGRATED",
    3: "BANNED",
    4: "RESTRICTED",
    5: "RATE_LIMITED",
    6: "FLAGGED",
    7: "CONNECTED",
    8: "DISCONNECTED",
    9: "UNKNOWN",
    10: "UNVERIFIED",
}


def sign(api_key: str, api_secret: str, timestamp: str) -> str:
    """
    Return the ``Sign`` header: lowercase hex ``md5(api_key + api_secret + timestamp)``.

    :param api_key: The account's API key.
    :param api_secret: The account's API secret (never sent itself).
    :param timestamp: Unix time in seconds, as the decimal string sent in the ``Timestamp`` header.
    """
    return hashlib.md5((api_key + api_secret + timestamp).encode("utf-8"), usedforsecurity=False).hexdigest()


#: How many numbers in no assigned range one hook warns about one by one (a campaign may hold thousands).
MAX_PHONE_WARNINGS = 20


@dataclass(frozen=True)
class SendResult:
    """
    What the API answered for an accepted message.

    :param message_id: The vendor's ``messageId`` (32 hex digits).
    :param timestamp: When the API accepted it, Unix seconds.
    :param channel_type: ``0`` for WhatsApp.
    """

    message_id: str
    timestamp: int | None
    channel_type: int = 0


@dataclass(frozen=True)
class _ConnConfig:
    api_key: str
    api_secret: str
    base_url: str
    app_id: str
    business_phone: str | None
    timeout: float
    verify: bool | str
    proxy: str | None
    strict_phone_numbers: bool = False

    def __repr__(self) -> str:  # never show the secret
        return f"_ConnConfig(api_key={self.api_key!r}, base_url={self.base_url!r}, app_id={self.app_id!r})"


def _whole(number: float) -> int:
    """
    Return ``number`` as an ``int`` when it is a whole number; raise ``ValueError`` otherwise.

    :param number: The number.
    """
    if not number.is_integer():
        raise ValueError(number)
    return int(number)


def _stop_after_attempts(state: tenacity.RetryCallState) -> bool:
    """
    Return whether a call has been tried as often as its ``attempts`` keyword argument allows.

    :param state: tenacity's state of the call.
    """
    return bool(state.attempt_number >= state.kwargs["attempts"])


class _NotSent(Exception):
    """Internal: the request certainly did not reach the API, so it may be sent again."""

    def __init__(self, error: ItnioError) -> None:
        super().__init__(str(error))
        self.error = error


def _normalise_base_url(host: str | None, port: int | None, scheme: str | None) -> str:
    """
    Return the API's base URL from a connection's host, port and ``scheme`` extra.

    The host may be a bare name or address (``api.itniotech.com``, ``127.0.0.1``, ``::1``, ``[::1]``) or a
    URL, with or without a path; a trailing ``/`` and ``/wa`` are dropped. ``port`` is used when the host
    names none, and goes after the host (never after the path).

    :param host: The connection's host field.
    :param port: The connection's port field (``None`` or ``0`` for none).
    :param scheme: The ``scheme`` extra, for a host without one (default ``https``).
    """
    text = (host or "").strip() or DEFAULT_BASE_URL
    if "://" not in text:
        address, slash, path = text.partition("/")
        if _is_ipv6(address):  # a bare IPv6 address gets the brackets a URL needs
            text = f"[{address}]{slash}{path}"
        text = f"{scheme or 'https'}://{text}"
    parts = urllib.parse.urlsplit(text)
    try:
        has_port = parts.port is not None
    except ValueError:
        raise ItnioConfigError(f"The connection's host {host!r} has an invalid port.") from None
    netloc = parts.netloc if has_port or not port else f"{parts.netloc}:{int(port)}"
    path = parts.path.rstrip("/")
    if path.endswith("/wa"):
        path = path[: -len("/wa")]
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, path, "", ""))


def _is_ipv6(text: str) -> bool:
    """
    Return whether ``text`` is an IPv6 address without brackets (``::1``, ``fe80::1%eth0``).

    :param text: A host.
    """
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _as_bool(value: Any) -> bool | None:
    """
    Return a boolean extra's value (missing or empty: False), or None when it is no boolean.

    :param value: The extra as stored: a JSON boolean, or a string such as ``"true"`` from a URI or a form.
    """
    if value is None or value == "" or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower() if isinstance(value, str) else None
    return {"true": True, "false": False}.get(text) if text is not None else None


def _as_verify(value: Any) -> bool | str:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    return text  # a CA bundle path


#: How far the request now being made by this thread got in writing itself to the API's socket (``phase``:
#: one of the three values below). The hook resets it before each request; the connections below advance it.
#: Thread-local because the batch sends from many threads over one hook (each request runs entirely in its
#: caller's thread).
_request_state = threading.local()
#: No byte of the request was handed to the socket.
_NOTHING_WRITTEN = 0
#: Every write of the request so far succeeded: the API may have it all.
_WRITTEN = 1
#: A write of the request failed, so its last bytes never left: the API cannot have the whole request (its
#: ``Content-Length`` says how much to wait for), hence cannot have acted on it.
_WRITE_FAILED = 2


class _WriteTracking(HTTPConnection):
    """
    Record in :data:`_request_state` that a request's bytes went out to the socket.

    Only bytes of the request itself count: a proxy's ``CONNECT`` (``http.client`` sends it with
    :meth:`send` too) and the TLS handshake happen inside :meth:`connect`, and are not request bytes. A
    failure before any request byte was written is one where the API cannot have seen the request (refused,
    DNS, connect or handshake timeout, TLS or proxy failure). So is one where a write of the request failed
    (a reused connection the server had closed, a reset while the body was going out, a write timeout):
    urllib3 swallows such a write error to read a possible early answer, and the failure that follows is a
    read error, but the request's last bytes never left. Only when every write succeeded may the API have
    received it.
    """

    _connecting = False

    def connect(self) -> None:
        """Open the socket (through the proxy's tunnel, with the TLS handshake), marked as not request bytes."""
        outer, self._connecting = self._connecting, True
        try:
            super().connect()
        finally:
            self._connecting = outer

    def send(self, data: Any) -> None:
        """
        Connect first if needed, then note that request bytes are being written, write them, and note a failure.

        :param data: What ``http.client`` writes (bytes, a file or an iterable of bytes).
        """
        if self._connecting:
            super().send(data)
            return
        if self.sock is None:
            self.connect()
        state = _request_state
        if getattr(state, "phase", _NOTHING_WRITTEN) == _NOTHING_WRITTEN:  # also a get_conn() user's request
            state.phase = _WRITTEN
        try:
            super().send(data)
        except BaseException:
            state.phase = _WRITE_FAILED  # sticky: the request is incomplete whatever is written after
            raise


class _TrackedHTTPConnection(_WriteTracking, HTTPConnection):
    """An ``http`` connection that records whether a request's bytes were written."""


class _TrackedHTTPSConnection(_WriteTracking, HTTPSConnection):
    """An ``https`` connection that records whether a request's bytes were written."""


class _TrackedHTTPPool(HTTPConnectionPool):
    """A pool of :class:`_TrackedHTTPConnection`."""

    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    """A pool of :class:`_TrackedHTTPSConnection`."""

    ConnectionCls = _TrackedHTTPSConnection


_TRACKED_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


def _split_proxy(proxy: str) -> tuple[str, dict[str, str]]:
    """
    Return the proxy URL without its ``user:password@`` part, and the ``Proxy-Authorization`` header it implies.

    urllib3's ``ProxyManager`` ignores credentials in the URL (requests sends them); they are sent here as
    HTTP Basic (percent-decoded, UTF-8), and kept out of the URL so that no error message shows them.

    A URL that cannot be read so (e.g. a password with an unencoded ``#``, ``/`` or ``?``, which would end the
    host part inside the password) raises :class:`~airflow_provider_itnio.errors.ItnioConfigError`, whose
    message never shows the URL: part of the password would be in it.

    :param proxy: The proxy URL, e.g. ``http://user:p%40ss@proxy:3128``.
    """
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    try:
        parts = urllib.parse.urlsplit(proxy)
        netloc = parts.netloc.rpartition("@")[2]
        url = urllib.parse.urlunsplit((parts.scheme, netloc, "", "", ""))
        if parts.path.strip("/") or parts.query or parts.fragment or not parse_url(url).host:
            raise ValueError("more than scheme://[login@]host[:port]")
        parts.port  # noqa: B018 -- raises ValueError for a port that is no number
    except ValueError:
        raise ItnioConfigError(
            "The proxy URL (the connection's 'proxy' extra, else HTTPS_PROXY) cannot be read: write it as "
            "scheme://user:password@host:port, with '@', ':', '/', '?' and '#' in the user or password "
            "percent-encoded. (The URL is not shown: it may hold the password.)"
        ) from None
    if parts.username is None and parts.password is None:
        return url, {}
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    raw = f"{user}:{password}".encode()  # UTF-8, as RFC 7617 proposes and curl and browsers send
    header = {"Proxy-Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
    return url, header


def _ca_bundle(verify: bool | str) -> str | None:
    """Return the CA bundle for ``verify``: its path, else the environment's (as for requests), else certifi's."""
    if isinstance(verify, str):
        return verify
    env = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if env:
        return env
    try:
        import certifi
    except ImportError:  # the system's default trust store then
        return None
    return str(certifi.where())


def _env_proxy(url: str) -> str | None:
    """Return the proxy the environment (``HTTPS_PROXY``, ``NO_PROXY``...) sets for ``url``, as requests would use."""
    proxies = urllib.request.getproxies()
    if not proxies:
        return None
    host = urllib.parse.urlsplit(url).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    return proxies.get(urllib.parse.urlsplit(url).scheme) or proxies.get("all")


class ItnioHook(BaseHook):
    """
    Talks to the itniotech WhatsApp API: signs every request, posts JSON, and maps answers to exceptions.

    The connection (type ``itnio``) holds: login = API key, password = API secret, host = base URL
    (default ``https://api.itniotech.com``), and extras ``app_id`` (required), ``business_phone`` (the
    default sender), ``timeout`` (seconds, default 30), ``verify`` (true/false or a CA-bundle path) and
    ``proxy``.

    Failures before any byte of the request was written to the API's connection (connection refused, DNS,
    connect timeout, proxy, a TLS handshake that failed or timed out), failures of a write of the request (its
    last bytes never left) and HTTP 429/503 are retried here with bounded exponential backoff. A failure after
    the request was wholly written (read timeout, connection or TLS
    dropped while waiting for the answer, other 5xx) raises
    :class:`~airflow_provider_itnio.errors.ItnioDeliveryUnknownError` and is never sent again. A ``user:password@``
    in the proxy URL is sent as ``Proxy-Authorization``.

    :param itnio_conn_id: The Airflow connection id.
    :param connect_retries: How many times a request that never reached the API is tried in all.
    :param retry_wait_max: The longest wait between those tries, seconds.
    :param pool_maxsize: How many keep-alive connections the pool keeps (one per concurrent sender).
    """

    conn_name_attr = "itnio_conn_id"
    default_conn_name = "itnio_default"
    conn_type = connection_fields.CONN_TYPE
    hook_name = connection_fields.HOOK_NAME

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """
        Return the extra fields of the connection form, as WTForms fields (Airflow 2.x's web UI asks for them).

        Airflow 3.1+ reads the same fields from ``get_provider_info()``'s ``conn-fields`` instead; both come
        from :mod:`airflow_provider_itnio.connection_fields`.
        """
        return connection_fields.connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the hidden, relabelled and placeholder-filled standard fields of the connection form (Airflow 2.x)."""
        return connection_fields.ui_field_behaviour()

    def __init__(
        self,
        itnio_conn_id: str = default_conn_name,
        *,
        connect_retries: int = 3,
        pool_maxsize: int = 64,
        retry_wait_max: float = 10.0,
    ) -> None:
        super().__init__()
        self.itnio_conn_id = itnio_conn_id
        self.connect_retries = max(1, connect_retries)
        self.retry_wait_max = retry_wait_max
        self.pool_maxsize = pool_maxsize
        #: ``(field, digits)`` of the numbers in no assigned range already warned about (the batch sends many):
        #: at most :data:`MAX_PHONE_WARNINGS`, then one line says the rest are not logged one by one.
        self._warned_phones: set[tuple[str, str]] = set()

    # -- connection -------------------------------------------------------------------------------------

    @cached_property
    def config(self) -> _ConnConfig:
        """Return the connection's settings, read once and checked (raises ItnioConfigError naming what is missing)."""
        conn = self.get_connection(self.itnio_conn_id)
        extra = conn.extra_dejson or {}
        where = f"Airflow connection {self.itnio_conn_id!r}"
        if not conn.login:
            raise ItnioConfigError(f"{where}: the API Key (login) is missing; set it in Admin > Connections.")
        if not conn.password:
            raise ItnioConfigError(f"{where}: the API Secret (password) is missing; set it in Admin > Connections.")
        app_id = str(extra.get(connection_fields.APP_ID_EXTRA) or "").strip()
        if not app_id:
            raise ItnioConfigError(f"{where}: the extra field 'app_id' is missing; it is required by every call.")
        timeout_raw = extra.get(connection_fields.TIMEOUT_EXTRA)
        try:
            timeout = float(timeout_raw) if timeout_raw not in (None, "") else 30.0
        except (TypeError, ValueError):
            raise ItnioConfigError(f"{where}: 'timeout' must be a number of seconds, got {timeout_raw!r}.") from None
        if timeout <= 0:
            raise ItnioConfigError(f"{where}: 'timeout' must be positive, got {timeout_raw!r}.")
        business_phone = str(extra.get(connection_fields.BUSINESS_PHONE_EXTRA) or "").strip() or None
        strict = _as_bool(extra.get(connection_fields.STRICT_PHONE_NUMBERS_EXTRA))
        if strict is None:
            raise ItnioConfigError(
                f"{where}: {connection_fields.STRICT_PHONE_NUMBERS_EXTRA!r} must be true or false, got "
                f"{extra.get(connection_fields.STRICT_PHONE_NUMBERS_EXTRA)!r}."
            )
        return _ConnConfig(
            api_key=conn.login,
            api_secret=conn.password,
            base_url=_normalise_base_url(conn.host, conn.port, extra.get(connection_fields.SCHEME_EXTRA)),
            app_id=app_id,
            business_phone=business_phone,
            timeout=timeout,
            verify=_as_verify(extra.get(connection_fields.VERIFY_EXTRA)),
            proxy=str(extra.get(connection_fields.PROXY_EXTRA) or "").strip() or None,
            strict_phone_numbers=strict,
        )

    @cached_property
    def http(self) -> urllib3.PoolManager:
        """
        Return one thread-safe pool of keep-alive connections per hook instance (urllib3, the transport under
        requests, used directly: a send costs a fraction of ``requests.Session.post``'s overhead).

        TLS is verified against the connection's ``verify`` CA bundle, else ``REQUESTS_CA_BUNDLE`` /
        ``CURL_CA_BUNDLE``, else certifi's, unless ``verify`` is false. The proxy is the connection's
        ``proxy`` extra, else the environment's (``HTTPS_PROXY``, ``NO_PROXY``), as with requests; a
        ``user:password@`` in its URL is sent as ``Proxy-Authorization`` (HTTP Basic).
        """
        cfg = self.config
        options: dict[str, Any] = {"num_pools": 4, "maxsize": self.pool_maxsize, "retries": False}
        if cfg.verify is False:
            options["cert_reqs"] = "CERT_NONE"
        else:
            options["cert_reqs"] = "CERT_REQUIRED"
            options["ca_certs"] = _ca_bundle(cfg.verify)
        proxy = cfg.proxy or _env_proxy(cfg.base_url)
        manager: urllib3.PoolManager
        if proxy:
            proxy_url, proxy_headers = _split_proxy(proxy)
            try:
                manager = urllib3.ProxyManager(proxy_url, proxy_headers=proxy_headers, **options)
            except ValueError as err:  # e.g. a scheme other than http/https; no login in proxy_url
                raise ItnioConfigError(f"The proxy URL {proxy_url!r} cannot be used: {err}") from None
        else:
            manager = urllib3.PoolManager(**options)
        manager.pool_classes_by_scheme = _TRACKED_POOLS  # see _WriteTracking: what was sent decides a retry
        return manager

    def get_conn(self) -> urllib3.PoolManager:
        """Return the hook's keep-alive connection pool (:class:`urllib3.PoolManager`)."""
        return self.http

    def close(self) -> None:
        """Close the pooled connections."""
        if "http" in self.__dict__:
            self.http.clear()
            del self.__dict__["http"]

    # -- transport --------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        cfg = self.config
        timestamp = str(pendulum.now("UTC").int_timestamp)
        return {
            "Content-Type": "application/json;charset=UTF-8",
            "Api-Key": cfg.api_key,
            "Timestamp": timestamp,
            "Sign": sign(cfg.api_key, cfg.api_secret, timestamp),
        }

    def _post_once(self, path: str, data: bytes, recipient: str | None, *, attempts: int) -> dict[str, Any]:
        """
        POST once; raise :class:`_NotSent` for a failure that certainly did not reach the API.

        :param path: The endpoint path.
        :param data: The JSON body, encoded.
        :param recipient: Only used to word errors.
        :param attempts: How many tries in all (read by :func:`_stop_after_attempts`, unused here).
        """
        cfg = self.config
        url = cfg.base_url + path
        _request_state.phase = _NOTHING_WRITTEN
        try:
            response = self.http.request(
                "POST", url, body=data, headers=self._headers(), timeout=cfg.timeout, retries=False
            )
        except HTTPError as err:
            if isinstance(err, (NewConnectionError, ConnectTimeoutError)):  # name lookup, refused, unreachable
                message = f"The request never reached the API: {_cannot_connect(url, err)}."
                raise _NotSent(ItnioTransportError(message)) from err
            detail = f"{type(err).__name__} calling {url}: {err}"
            if _request_state.phase != _WRITTEN:  # no request byte went out, or its last bytes never did
                raise _NotSent(ItnioTransportError(f"The request never reached the API ({detail}).")) from err
            raise ItnioDeliveryUnknownError(detail, recipient=recipient) from err
        status_code = response.status
        text = response.data.decode("utf-8", errors="replace")
        if status_code in NOT_PROCESSED_HTTP:
            raise _NotSent(ItnioApiError(f"HTTP {status_code}", response.reason or "not processed", status_code))
        if status_code >= 500:
            raise ItnioDeliveryUnknownError(f"HTTP {status_code} from {url}", recipient=recipient)
        if status_code >= 400:
            raise ItnioApiError(f"HTTP {status_code}", (text or response.reason or "")[:200], status_code)
        try:
            answer = json.loads(text)
            status = str(answer["status"])
        except (ValueError, KeyError, TypeError):
            raise ItnioDeliveryUnknownError(
                f"unreadable answer from {url} (HTTP {status_code}): {text[:200]!r}",
                recipient=recipient,
            ) from None
        if status != "0":
            raise ItnioApiError(status, str(answer.get("reason", "")), status_code)
        return answer

    def post(
        self, path: str, body: dict[str, Any], *, recipient: str | None = None, attempts: int | None = None
    ) -> dict[str, Any]:
        """
        Sign and POST ``body`` as UTF-8 JSON to ``path``; return the parsed answer when its status is ``"0"``.

        :param path: The endpoint path, e.g. ``/wa/custom/sendMsg``.
        :param body: The JSON body.
        :param recipient: Only used to word errors.
        :param attempts: How many times a request that never reached the API is tried in all; defaults to
            the hook's ``connect_retries``.
        """
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        tries = self.connect_retries if attempts is None else max(1, attempts)
        try:
            return self._retrying(self._post_once, path, data, recipient, attempts=tries)
        except _NotSent as not_sent:
            raise not_sent.error from not_sent.__cause__

    @cached_property
    def _retrying(self) -> tenacity.Retrying:
        """
        Return the retry policy: retry a request only while it never reached the API.

        Built once; its per-call state is thread-local, and the number of tries is read from each call's
        ``attempts`` argument, so that a one-try call (:meth:`test_connection`) changes no other call.
        """
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_NotSent),
            stop=_stop_after_attempts,
            wait=tenacity.wait_exponential(multiplier=0.5, max=self.retry_wait_max),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.log.warning(
            "Attempt %d of %d did not reach the itniotech API (%s); trying again.",
            state.attempt_number,
            state.kwargs["attempts"],
            error,
        )

    # -- public API -------------------------------------------------------------------------------------

    def send(
        self,
        recipient: str | int,
        message: Message,
        *,
        business_phone: str | int | None = None,
        reply_to: str | None = None,
        strict_phone_numbers: bool | None = None,
    ) -> SendResult:
        """
        Send one message and return what the API answered.

        :param recipient: The recipient's phone number, as people write it (``+86 138-0013-8000``); sent as its
            E.164 digits (see :func:`airflow_provider_itnio.phones.parse_phone`).
        :param message: A model from :mod:`airflow_provider_itnio.messages`.
        :param business_phone: The sender number; defaults to the connection's ``business_phone`` extra.
        :param reply_to: A ``messageId`` to quote (sent as ``context.refMessageId``).
        :param strict_phone_numbers: Refuse a number in no range its country has assigned, instead of sending it
            with a warning; None (default): the connection's ``strict_phone_numbers`` extra decides.
        """
        strict = self.strict_phone_numbers_for(strict_phone_numbers)
        body = build_request_body(
            app_id=self.config.app_id,
            business_phone=self.phone_digits(self.business_phone_for(business_phone), "businessPhone", strict),
            recipient=self.phone_digits(recipient, "recipient", strict),
            message=message,
            reply_to=reply_to,
        )
        answer = self.post(message.endpoint, body, recipient=body["recipient"])
        return self._send_result(answer, body["recipient"], type(message).__name__)

    def _send_result(self, answer: dict[str, Any], recipient: str, kind: str) -> SendResult:
        """
        Return the :class:`SendResult` of an accepted send (status ``"0"``).

        With a ``messageId`` the message was sent: a malformed optional field (``timestamp``,
        ``channelType``) is logged and replaced, never raised. Without a readable ``messageId`` it may have
        been sent, and that is an :class:`~airflow_provider_itnio.errors.ItnioDeliveryUnknownError`.

        :param answer: The parsed answer.
        :param recipient: The recipient's digits, for messages.
        :param kind: The message model's name, for the log.
        """
        data = answer.get("data")
        message_id = data.get("messageId") if isinstance(data, dict) else None
        if isinstance(message_id, bool) or not isinstance(message_id, str | int) or message_id == "":
            raise ItnioDeliveryUnknownError(
                f"the API answered success without a readable messageId: {answer!r}", recipient=recipient
            )
        message_id = str(message_id)
        self.log.debug("itniotech accepted %s for %s: %s", kind, recipient, message_id)
        assert isinstance(data, dict)  # for mypy: a messageId came from it
        timestamp = data.get("timestamp")
        if type(timestamp) is not int and timestamp is not None:
            timestamp = self._optional_int(timestamp, "timestamp", message_id, None)
        channel_type = data.get("channelType", 0)
        if type(channel_type) is not int:
            channel_type = self._optional_int(channel_type, "channelType", message_id, 0)
        return SendResult(message_id=message_id, timestamp=timestamp, channel_type=channel_type)

    def _optional_int(self, value: Any, name: str, message_id: str, default: int | None) -> int | None:
        """
        Return an optional integer field of an accepted send's answer that is not an integer, and log it.

        A whole number in another form (``"1693813991"``, ``"1693813991.0"``, ``7.0``) is read as that
        number; anything else gives ``default``. Either way a warning names the field: the send succeeded.

        :param value: The field's value as answered (not an ``int``, not ``None``).
        :param name: The field's name, for the log.
        :param message_id: The accepted message, for the log.
        :param default: What to return for a value that is no whole number.
        """
        number: int | None = default
        if not isinstance(value, bool):
            try:
                number = int(value) if isinstance(value, str) and value.strip().isdigit() else _whole(float(value))
            except (TypeError, ValueError, OverflowError):
                number = default
        self.log.warning(
            "itniotech accepted message %s, but its %s is malformed: %r (read as %r).", message_id, name, value, number
        )
        return number

    def strict_phone_numbers_for(self, strict_phone_numbers: bool | None = None) -> bool:
        """
        Return whether numbers in no assigned range are refused: the argument if given, else the connection's extra.

        :param strict_phone_numbers: An explicit setting (an operator's ``strict_phone_numbers`` argument).
        """
        if strict_phone_numbers is not None:
            return bool(strict_phone_numbers)
        return self.config.strict_phone_numbers

    def phone_digits(self, value: object, field: str, strict: bool) -> str:
        """
        Return the digits a send puts in ``field``; warn, once per number and hook, when it is in no assigned range.

        :param value: The number as written.
        :param field: ``recipient`` or ``businessPhone``.
        :param strict: Refuse a number in no range its country has assigned instead of warning.
        """
        phone = parse_phone(value, field, strict=strict)
        if phone.valid or (field, phone.digits) in self._warned_phones:
            return phone.digits
        if len(self._warned_phones) < MAX_PHONE_WARNINGS:
            self._warned_phones.add((field, phone.digits))
            self.log.warning("%s", outside_ranges_warning(phone, field))
            if len(self._warned_phones) == MAX_PHONE_WARNINGS:
                self.log.warning(
                    "%d numbers in no assigned range were logged; further ones are sent without a warning each "
                    "(strict_phone_numbers refuses them)",
                    MAX_PHONE_WARNINGS,
                )
        return phone.digits

    def business_phone_for(self, business_phone: str | int | None = None) -> str | int:
        """
        Return the sender number to use: ``business_phone`` if given, else the connection's ``business_phone`` extra.

        :param business_phone: An explicit sender number (an operator's ``business_phone`` argument).
        """
        sender = business_phone if business_phone not in (None, "") else self.config.business_phone
        if sender is None or sender == "":
            raise ItnioConfigError(
                f"No business phone: pass business_phone= or set the 'business_phone' extra of the "
                f"Airflow connection {self.itnio_conn_id!r}."
            )
        return sender

    def send_text(self, recipient: str | int, body: str, **kwargs: Any) -> SendResult:
        """
        Send a text message (a shortcut for TaskFlow users).

        :param recipient: The recipient's phone number.
        :param body: The text, at most 4096 characters.
        :param kwargs: ``business_phone`` and ``reply_to``, as for :meth:`send`.
        """
        return self.send(recipient, Text(body=body), **kwargs)

    def query_business_phone_info(self, phone_numbers: list[str] | None = None) -> list[dict[str, Any]]:
        """
        Return the business phones of the connection's app, with their state (the read-only account check).

        :param phone_numbers: Restrict to these numbers; defaults to the connection's business phone, if any.
        """
        return self._query_business_phone_info(phone_numbers, attempts=self.connect_retries)

    def _query_business_phone_info(self, phone_numbers: list[str] | None, *, attempts: int) -> list[dict[str, Any]]:
        cfg = self.config
        if phone_numbers is None:
            phone_numbers = [self._business_phone_digits()] if cfg.business_phone else []
        body = {"current": 1, "size": 10, "params": {"appIds": [cfg.app_id], "phoneNumbers": phone_numbers}}
        answer = self.post(QUERY_PHONE_INFO_PATH, body, attempts=attempts)
        data = answer.get("data")
        records = (data.get("records") if isinstance(data, dict) else None) or []
        return [item for record in records if isinstance(record, dict) for item in (record.get("dataList") or [])]

    def _business_phone_digits(self) -> str:
        """Return the connection's ``business_phone`` extra as sends put it in a request (digits only)."""
        return normalize_phone(self.config.business_phone, "businessPhone")

    def test_connection(self) -> tuple[bool, str]:
        """
        Check the key, secret, app id and business phone with a call that sends nothing and costs nothing.

        Airflow calls it for the connection form's *Test* button and ``airflow connections test`` (both need
        ``[core] test_connection = Enabled``). One try only: a test must answer quickly, not retry. The
        hook's own settings are left as they were, so the same hook retries its sends as before.

        :return: ``(True, "Connected ... business phone ... CONNECTED, messaging tier ..., quality rating ...")``
            when the API accepted the credentials and knows the app and the business phone (a phone whose
            status is not CONNECTED is reported, with a warning that it cannot send); ``(False, reason)``
            otherwise, with the vendor's status code and reason when the API answered. Never the secret.
        """
        try:
            ok, message = self._test_connection()
        finally:
            self.close()
        secret = self.__dict__["config"].api_secret if "config" in self.__dict__ else ""
        if secret:
            message = message.replace(secret, "***")
        _test_log.info("itniotech connection test: %s", message)
        return ok, message

    def _test_connection(self) -> tuple[bool, str]:
        try:
            cfg = self.config
            business_phone = self._business_phone_digits() if cfg.business_phone else None
            phones = self._query_business_phone_info(None, attempts=1)
        except ItnioApiError as err:
            hint = _TEST_HINTS.get(err.status, "")
            return False, f"The itniotech API refused the check: {str(err).rstrip('.')}.{hint}"
        except ItnioValidationError as err:
            return False, f"The 'business_phone' extra is not a phone number the API accepts: {err}"
        except ItnioError as err:
            return False, str(err)
        except Exception as err:
            return False, f"{type(err).__name__}: {err}"
        where = f"{cfg.base_url}, app {cfg.app_id}"
        if business_phone:
            phones = [p for p in phones if str(p.get("phoneNumber")) == business_phone]
            if not phones:
                return False, (
                    f"Signed in to {where}, but the app has no business phone {business_phone} "
                    "(the API would answer -96 to a send); check the 'business_phone' extra."
                )
        elif not phones:
            return False, f"Signed in to {where}, but the app has no business phone."
        summaries = []
        blocked = []
        for phone in phones:
            name = _phone_status_name(phone.get("status"))
            number = phone.get("phoneNumber")
            display = phone.get("displayPhoneNumber")
            label = f"{number} ({display})" if display and display != number else str(number)
            summaries.append(
                f"business phone {label} is {name}, messaging tier {phone.get('messagingLimitTier')}, "
                f"quality rating {phone.get('qualityRating')}"
            )
            if name != "CONNECTED":
                blocked.append(str(number))
        message = f"Connected to {where}: " + "; ".join(summaries) + "."
        if blocked:
            message += (
                f" Warning: {', '.join(blocked)} cannot send until its status is CONNECTED (sends are answered -97)."
            )
        return True, message


def _cannot_connect(url: str, err: HTTPError) -> str:
    """
    Return ``cannot connect to <host:port>: <reason>`` for a connection that could not be made.

    :param url: The URL asked (its credentials, if any, are left out).
    :param err: urllib3's error (its text names urllib3's connection class; the reason is its cause's).
    """
    parts = parse_url(url)  # an IPv6 host keeps its brackets
    port = parts.port or (443 if parts.scheme == "https" else 80)
    cause = err.__cause__ or err.__context__
    if isinstance(cause, OSError) and cause.strerror:
        reason = cause.strerror
    elif isinstance(err, ConnectTimeoutError) or isinstance(cause, TimeoutError):
        reason = "connect timeout"
    else:  # "...: Failed to establish a new connection: [Errno 111] Connection refused" -> the last part
        text = str(cause or err)
        reason = text.rsplit("] ", 1)[-1] if "[Errno" in text else text.rsplit(": ", 1)[-1]
    return f"cannot connect to {parts.host}:{port}: {reason}"


#: What to check after a failed connection test, by the vendor's status code.
_TEST_HINTS = {
    "-1": " Check the API Key (login) and API Secret (password).",
    "-2": " Check the 'app_id' extra: the API does not know this app for this key.",
    "-16": " The Timestamp header was refused: check this machine's clock.",
}


def _phone_status_name(status: Any) -> str:
    """Return the name of a ``queryBusinessPhoneInfo`` phone status (``7`` -> ``CONNECTED``); unknown codes as sent."""
    try:
        return PHONE_STATUS_NAMES[int(status)]
    except (TypeError, ValueError, KeyError):
        return f"status {status}"
