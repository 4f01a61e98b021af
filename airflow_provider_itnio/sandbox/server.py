"""The sandbox HTTP server: a local, threaded, keep-alive emulator of the itniotech WhatsApp API."""

from __future__ import annotations

import contextlib
import json
import math
import re
import shlex
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from airflow_provider_itnio.errors import STATUS_CODES
from airflow_provider_itnio.sandbox import api
from airflow_provider_itnio.sandbox.auth import sign
from airflow_provider_itnio.sandbox.control import handle_control
from airflow_provider_itnio.sandbox.pushes import (
    DEFAULT_MAX_PENDING,
    DEFAULT_PUSH_TIMEOUT,
    DEFAULT_PUSH_WORKERS,
    DEFAULT_RETRY_DELAYS,
    DEFAULT_STATUS_DELAYS,
    RE_ENGAGEMENT_FAILURE,
    PushCallback,
    PushConfig,
    PushEngine,
)
from airflow_provider_itnio.sandbox.state import Fault, SandboxState

DEFAULT_API_KEY = "sandbox-key"
DEFAULT_API_SECRET = "sandbox-secret"
DEFAULT_APP_ID = "sandbox-app"
DEFAULT_BUSINESS_PHONES = ("15550001111",)

#: Largest request body read (bytes); bigger ones get HTTP 413 before any of it is read.
MAX_BODY = 8 * 1024 * 1024
#: Seconds a connection may stay silent (between requests, or in the middle of one) before it is closed.
DEFAULT_IDLE_TIMEOUT = 60.0
#: Longest chunk-size or trailer line of a chunked body (the same bound as the standard library's header lines).
MAX_LINE = 65536
#: Most trailer lines after a chunked body (the same bound as the standard library's header count).
MAX_TRAILERS = 100

_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")

RequestCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SandboxConfig:
    """
    The settings a sandbox starts with (and returns to on :meth:`Sandbox.reset`).

    :param host: Interface to bind.
    :param port: Port to bind, 0 = any free port.
    :param api_key: The account's API key.
    :param api_secret: The account's API secret.
    :param app_id: The account's application id.
    :param business_phones: The account's business phones (digits), all CONNECTED at start.
    :param balance: Messages that can be sent (each accepted message costs 1); None = unlimited.
    :param latency: Seconds added to every ``/wa/`` response.
    :param idle_timeout: Seconds a connection may stay silent before it is closed.
    :param pushes: How the sandbox pushes status reports and customers' messages (no address: no push).
    """

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str = DEFAULT_API_KEY
    api_secret: str = field(default=DEFAULT_API_SECRET, repr=False)
    app_id: str = DEFAULT_APP_ID
    business_phones: tuple[str, ...] = DEFAULT_BUSINESS_PHONES
    balance: int | None = None
    latency: float = 0.0
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    pushes: PushConfig = field(default_factory=PushConfig)


class _HttpError(Exception):
    """A request the server answers with an HTTP error status (and then closes the connection)."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its sandbox and can close its open keep-alive connections."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    sandbox: Sandbox

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._closing = False
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a (possibly slow) reverse DNS lookup: skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            if self._closing:
                self.shutdown_request(request)
                return
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Refuse new connections and cut the open ones (handler threads blocked on them wake up)."""
        with self._connections_lock:
            self._closing = True
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """
    One keep-alive connection; dispatches ``/wa/`` to the API emulation and ``/sandbox/`` to control.

    Every request gets an HTTP answer: malformed framing gets 400/408/413/501 (then the connection is closed),
    an unexpected error 500. A connection silent for ``idle_timeout`` seconds is closed (with 408 when it stops
    in the middle of a body), and no body larger than :data:`MAX_BODY` is read.
    """

    protocol_version = "HTTP/1.1"
    #: A request line without a version is answered as HTTP/1.0 (with a status line), never as HTTP/0.9.
    default_request_version = "HTTP/1.0"
    server_version = "itnio-sandbox/1"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        """Apply the sandbox's idle timeout to the connection's socket."""
        super().setup()
        self.connection.settimeout(self.server.sandbox.config.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr log (the sandbox logs through its callback)."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """
        Answer an error found by the standard library's request parsing with JSON, and close the connection.

        :param code: The HTTP status.
        :param message: A short description (the status phrase when None).
        :param explain: A longer description (unused).
        """
        self._send_json(code, {"error": message or _http_phrase(code)}, close=True)

    def do_GET(self) -> None:
        """Handle GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Handle POST."""
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        """Handle DELETE."""
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        """Handle PUT."""
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        """Handle PATCH."""
        self._dispatch("PATCH")

    # ---------------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        """
        Read the whole request body, never more than :data:`MAX_BODY` bytes.

        :raises _HttpError: 400 for malformed framing, 413 for a body over the limit, 501 for an unsupported
            transfer coding.
        :raises TimeoutError: When the client stops sending for ``idle_timeout`` seconds.
        """
        codings = [
            c.strip().lower() for value in self.headers.get_all("Transfer-Encoding", []) for c in value.split(",")
        ]
        codings = [c for c in codings if c]
        lengths = [v.strip() for v in self.headers.get_all("Content-Length", [])]
        if codings:
            if lengths:  # RFC 9112 6.1: a request smuggling vector; reject it
                raise _HttpError(HTTPStatus.BAD_REQUEST, "both Transfer-Encoding and Content-Length")
            if codings[-1] != "chunked":  # RFC 9112 6.3: the length cannot be determined
                raise _HttpError(HTTPStatus.BAD_REQUEST, "the last transfer coding must be chunked")
            if codings != ["chunked"]:
                raise _HttpError(HTTPStatus.NOT_IMPLEMENTED, f"unsupported transfer coding: {', '.join(codings)}")
            return self._read_chunked()
        if not lengths:
            return b""
        if len(set(lengths)) != 1 or not _DIGITS.fullmatch(lengths[0]):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        digits = lengths[0].lstrip("0")
        length = int(digits or "0") if len(digits) <= len(str(MAX_BODY)) else MAX_BODY + 1  # int() caps digits
        if length > MAX_BODY:
            raise _HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
        return self._read_exactly(length)

    def _read_exactly(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) < size:  # the client closed (its sending side) early
            raise _HttpError(HTTPStatus.BAD_REQUEST, "request body shorter than announced")
        return data

    def _read_line(self, what: str) -> bytes:
        line = self.rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise _HttpError(HTTPStatus.BAD_REQUEST, f"{what} too long")
        if not line.endswith(b"\n"):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "request body shorter than announced")
        return line

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_text = self._read_line("chunk size line").split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_text):  # no sign, no 0x, no underscores: int(..., 16) allows those
                raise _HttpError(HTTPStatus.BAD_REQUEST, "bad chunked encoding: chunk size is not hexadecimal")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                raise _HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            chunks.append(self._read_exactly(size))
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _HttpError(HTTPStatus.BAD_REQUEST, "bad chunked encoding: chunk data not followed by CRLF")
        for _ in range(MAX_TRAILERS + 1):
            if not self._read_line("trailer line").strip():
                return b"".join(chunks)
        raise _HttpError(HTTPStatus.BAD_REQUEST, "too many trailer lines")

    def _send_json(self, code: int, value: Any, *, close: bool = False) -> None:
        try:
            data = json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\\ud800") from a request body: keep it escaped
            data = json.dumps(value).encode("ascii")
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if getattr(self, "command", None) != "HEAD":
                self.wfile.write(data)
        except OSError:  # the client went away (e.g. it gave up on a slow answer)
            self.close_connection = True

    def _dispatch(self, method: str) -> None:
        try:
            self._answer(method)
        except _HttpError as exc:
            self._send_json(exc.status, {"error": exc.message}, close=True)
        except TimeoutError:  # the client went silent in the middle of its body
            self._send_json(HTTPStatus.REQUEST_TIMEOUT, {"error": "request body not received in time"}, close=True)
        except Exception as exc:  # a bug must not cost the client its answer, nor the server its thread
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": exc.__class__.__name__}, close=True)

    def _answer(self, method: str) -> None:
        try:
            path = urlsplit(self.path).path
        except ValueError:  # e.g. an absolute-form target with a broken IPv6 literal
            raise _HttpError(HTTPStatus.BAD_REQUEST, "malformed request target") from None
        raw = self._read_body()
        if path.startswith("/wa/"):
            self._handle_api(method, path, raw)
        elif path.startswith("/sandbox/") or path == "/sandbox":
            code, value = handle_control(self.server.sandbox, method, path, raw)
            self._send_json(code, value)
        else:
            self._send_json(404, {"error": f"no such endpoint: {path}"})

    def _handle_api(self, method: str, path: str, raw: bytes) -> None:
        sandbox = self.server.sandbox
        state = sandbox._state
        fault = state.take_fault()
        now = sandbox._clock()
        result: api.ApiResult | None = None
        if fault is not None and fault.drop:
            status = "dropped"
        elif fault is not None and fault.http_status is not None:
            phrase = _http_phrase(fault.http_status)
            result = api.ApiResult(fault.http_status, {"error": fault.reason or phrase})
            status = result.status
        elif fault is not None and fault.api_status is not None:
            reason = fault.reason or STATUS_CODES.get(fault.api_status, "error")
            result = api.ApiResult(200, {"status": fault.api_status, "reason": reason})
            status = result.status
        else:
            headers = {name: self.headers.get(name) for name in ("Api-Key", "Timestamp", "Sign", "Content-Type")}
            result = api.process(method, path, headers, raw, account=sandbox._account, state=state, now=now)
            status = result.status
        entry = {
            "path": path,
            "method": method,
            "status": status,
            "reason": result.payload.get("reason") if result is not None else None,
            "http_status": result.http_status if result is not None else None,
            "messageId": result.message_id if result is not None else None,
            "fault": fault.describe() if fault is not None else None,
            "timestamp": int(now),
            "body": api.loggable_body(raw),
        }
        state.log_request(entry)
        sandbox._notify(entry)
        if result is not None and result.record is not None:
            sandbox._pushes.message_accepted(result.record, session=path == api.CUSTOM_PATH)
        delay = state.get_latency() + ((fault.slow or 0.0) if fault is not None else 0.0)
        if delay > 0:
            time.sleep(delay)  # no lock is held here
        if result is None:  # drop: the request was read in full; close without answering
            self.close_connection = True
            return
        self._send_json(result.http_status, result.payload)


def _http_phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return f"HTTP {code}"


class Sandbox:
    """
    A local emulator of the itniotech WhatsApp API, with fault injection, for tests and demos.

    Usage::

        with Sandbox() as sb:
            conn = sb.conn_uri()   # point an Airflow connection at it
            ...
            assert sb.messages()[0]["body"]["type"] == "text"

    :param host: Interface to bind (``127.0.0.1`` by default).
    :param port: Port to bind; 0 picks a free one (see :attr:`port` after :meth:`start`).
    :param api_key: The account's API key.
    :param api_secret: The account's API secret.
    :param app_id: The account's application id.
    :param business_phones: The account's business phones (digits), all CONNECTED (status 7) at start.
    :param balance: Messages that can be sent (each accepted message costs 1); None = unlimited.
    :param latency: Seconds added to every ``/wa/`` response.
    :param idle_timeout: Seconds a connection may stay silent (idle between requests, or stalled in the middle of
        one) before the sandbox closes it; a stalled body is answered 408 first.
    :param waba_id: The WhatsApp Business Account id reported by ``queryBusinessPhoneInfo``.
    :param clock: Returns the server's Unix time (default ``time.time``); tests can freeze it.
    :param on_request: Called (in the handler thread) with each request-log entry; the CLI prints them.
    :param status_push_url: Where the sandbox pushes status reports (``message-status-event``) of accepted
        messages; None = no status pushes. The address may hold a secret token: it is never shown whole.
    :param inbound_push_url: Where it pushes customers' messages simulated with :meth:`simulate_inbound`
        (``up-message-event``); None = not pushed (the 24-hour window still opens).
    :param push_url: One address for both kinds (``status_push_url`` / ``inbound_push_url`` win when given).
    :param enforce_window: A session message to a customer who has not written in the last 24 hours ends with
        a ``failed`` push (131047) instead of ``delivered`` / ``read``; the send itself is accepted either way.
        Only visible in pushes, so without a status push address nothing changes.
    :param status_delays: Seconds after acceptance of the ``sent``, ``delivered`` and ``read`` pushes.
    :param push_time_scale: Multiplies every push wait (status delays and re-push delays); e.g. 0.001.
    :param push_retry_delays: Seconds before each re-push of a push not answered 2xx (the vendor's 1, 3, 5 min).
    :param push_timeout: Seconds one push attempt may take.
    :param duplicate_probability: Chance that a push is delivered twice.
    :param reorder_probability: Chance that a message's statuses are pushed in reverse order.
    :param push_seed: Seed of those random choices.
    :param push_workers: Threads delivering pushes.
    :param max_pending_pushes: Most pushes waiting; more are dropped (and logged as dropped).
    :param on_push: Called (in a push thread) with each push-log entry; the CLI prints them.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        app_id: str = DEFAULT_APP_ID,
        business_phones: Iterable[str] = DEFAULT_BUSINESS_PHONES,
        balance: int | None = None,
        latency: float = 0.0,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        waba_id: str = "sandbox-waba",
        clock: Callable[[], float] | None = None,
        on_request: RequestCallback | None = None,
        status_push_url: str | None = None,
        inbound_push_url: str | None = None,
        push_url: str | None = None,
        enforce_window: bool = True,
        status_delays: Iterable[float] = DEFAULT_STATUS_DELAYS,
        push_time_scale: float = 1.0,
        push_retry_delays: Iterable[float] = DEFAULT_RETRY_DELAYS,
        push_timeout: float = DEFAULT_PUSH_TIMEOUT,
        duplicate_probability: float = 0.0,
        reorder_probability: float = 0.0,
        push_seed: int | None = None,
        push_workers: int = DEFAULT_PUSH_WORKERS,
        max_pending_pushes: int = DEFAULT_MAX_PENDING,
        on_push: PushCallback | None = None,
    ) -> None:
        phones = tuple(str(p) for p in business_phones)
        if not phones:
            raise ValueError("business_phones must name at least one phone")
        for phone in phones:
            if not phone.isascii() or not phone.isdigit():
                raise ValueError(f"a business phone must be digits only, got {phone!r}")
        _check_balance(balance)
        _check_latency(latency)
        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, int | float) or not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be a number of seconds > 0, got {idle_timeout!r}")
        if not math.isfinite(idle_timeout):
            raise ValueError(f"idle_timeout must be finite, got {idle_timeout!r}")
        push_config = PushConfig(
            status_url=status_push_url if status_push_url is not None else push_url,
            inbound_url=inbound_push_url if inbound_push_url is not None else push_url,
            enforce_window=enforce_window,
            status_delays=tuple(status_delays),
            time_scale=push_time_scale,
            retry_delays=tuple(push_retry_delays),
            timeout=push_timeout,
            duplicate_probability=duplicate_probability,
            reorder_probability=reorder_probability,
            seed=push_seed,
            workers=push_workers,
            max_pending=max_pending_pushes,
        ).checked()
        self.config = SandboxConfig(
            host=host,
            port=port,
            api_key=api_key,
            api_secret=api_secret,
            app_id=app_id,
            business_phones=phones,
            balance=balance,
            latency=float(latency),
            idle_timeout=float(idle_timeout),
            pushes=push_config,
        )
        self._account = api.Account(api_key=api_key, api_secret=api_secret, app_id=app_id, waba_id=waba_id)
        self._state = SandboxState.create(phones, balance, float(latency))
        self._clock: Callable[[], float] = clock or time.time
        self.on_request = on_request
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._pushes = PushEngine(
            push_config,
            app_id=app_id,
            business_phones=lambda: list(self._state.phone_statuses()),
            clock=lambda: self._clock(),
            find_message=self._state.find_message,
            on_push=on_push,
        )

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread, and return ``self``. Do nothing when already started."""
        if self._server is not None:
            return self
        server_class = _Server6 if ":" in self.config.host else _Server
        server = server_class((self.config.host, self.config.port), self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"itnio-sandbox-{server.server_port}",
            daemon=True,
        )
        self._server, self._thread, self._port = server, thread, server.server_port
        self._pushes.start(name=f"itnio-sandbox-{server.server_port}-push")
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (clients then get connection refused)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._pushes.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`; still the last one after :meth:`stop`)."""
        if self._port is None:
            raise RuntimeError("the sandbox was never started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (a wildcard bind address is given as the loopback address)."""
        host = self.config.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # -- account -------------------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The account's API key."""
        return self.config.api_key

    @property
    def api_secret(self) -> str:
        """The account's API secret."""
        return self.config.api_secret

    @property
    def app_id(self) -> str:
        """The account's application id."""
        return self.config.app_id

    @property
    def business_phone(self) -> str:
        """The account's first business phone."""
        return self.config.business_phones[0]

    def auth_headers(self, timestamp: int | None = None) -> dict[str, str]:
        """
        Return valid request headers for this sandbox (a convenience for raw HTTP tests).

        :param timestamp: The ``Timestamp`` to sign; the sandbox clock by default.
        """
        ts = str(int(self._clock()) if timestamp is None else timestamp)
        return {
            "Content-Type": "application/json;charset=UTF-8",
            "Api-Key": self.api_key,
            "Timestamp": ts,
            "Sign": sign(self.api_key, self.api_secret, ts),
        }

    # -- inspection ----------------------------------------------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        """Return every accepted message, in order: ``{"messageId", "path", "body", "timestamp", "headers"}``."""
        return self._state.snapshot_messages()

    def requests(self) -> list[dict[str, Any]]:
        """Return every ``/wa/`` request received, accepted or not, in order: ``{"path", "status", "body", ...}``."""
        return self._state.snapshot_requests()

    def settings(self) -> dict[str, Any]:
        """Return the current balance, latency, phone statuses and pending faults."""
        return self._state.config()

    # -- steering ------------------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget the accepted messages and the request log (settings and faults are kept)."""
        self._state.clear()

    def reset(self) -> None:
        """
        Back to the start settings (balance, latency, phones, push settings), no pending fault or push, nothing
        recorded (messages, requests, push log, 24-hour windows, per-recipient push failures).
        """
        self._state.reset(self.config.business_phones, self.config.balance, self.config.latency)
        self._pushes.reset()

    def set_balance(self, balance: int | None) -> None:
        """
        Set how many more messages can be sent.

        :param balance: Messages left (each accepted message costs 1); None = unlimited.
        """
        _check_balance(balance)
        self._state.set_balance(balance)

    def set_latency(self, seconds: float) -> None:
        """
        Add a delay to every ``/wa/`` response.

        :param seconds: The delay (>= 0).
        """
        _check_latency(seconds)
        self._state.set_latency(float(seconds))

    def set_phone_status(self, phone: str, status: int) -> None:
        """
        Set a business phone's status (a new phone is added to the account).

        :param phone: The phone's digits.
        :param status: 0 PENDING, 1 DELETED, 2 MIGRATED, 3 BANNED, 4 RESTRICTED, 5 RATE_LIMITED, 6 FLAGGED,
            7 CONNECTED (the only one that can send), 8 DISCONNECTED, 9 UNKNOWN, 10 UNVERIFIED.
        """
        if not isinstance(phone, str) or not phone.isdigit():
            raise ValueError(f"phone must be a string of digits, got {phone!r}")
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(f"status must be an integer, got {status!r}")
        self._state.set_phone_status(phone, status)

    def fail_next(
        self,
        n: int = 1,
        *,
        http_status: int | None = None,
        api_status: str | int | None = None,
        reason: str | None = None,
        drop: bool = False,
        slow: float | None = None,
    ) -> None:
        """
        Make the next ``n`` ``/wa/`` requests fail (queued after faults already pending).

        :param n: How many requests the fault applies to.
        :param http_status: Answer with this HTTP status (e.g. 503) and ``{"error": reason}``.
        :param api_status: Answer HTTP 200 ``{"status": api_status, "reason": reason}``.
        :param reason: Reason / error text (defaults to the code's standard text).
        :param drop: Read the whole request, then close the connection without answering.
        :param slow: Sleep this long before answering; the request is otherwise handled normally, so a valid
            message IS recorded (it reached the API) even if the client gave up waiting.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if http_status is not None and (
            isinstance(http_status, bool) or not isinstance(http_status, int) or not 100 <= http_status <= 599
        ):
            raise ValueError(f"http_status must be an HTTP status code, got {http_status!r}")
        if api_status is not None and (isinstance(api_status, bool) or not isinstance(api_status, str | int)):
            raise ValueError(f"api_status must be a string such as '-68', got {api_status!r}")
        if reason is not None and not isinstance(reason, str):
            raise ValueError("reason must be a string")
        if not isinstance(drop, bool):
            raise ValueError("drop must be true or false")
        if slow is not None:
            _check_latency(slow, "slow")
        if http_status is None and api_status is None and not drop and slow is None:
            raise ValueError("give at least one of http_status, api_status, drop, slow")
        fault = Fault(
            remaining=n,
            http_status=http_status,
            api_status=None if api_status is None else str(api_status),
            reason=reason,
            drop=drop,
            slow=None if slow is None else float(slow),
        )
        self._state.add_fault(fault)

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        self._state.clear_faults()

    # -- pushes --------------------------------------------------------------------------------------

    @property
    def status_push_url(self) -> str | None:
        """Where status reports are pushed now (None: not pushed)."""
        return self._pushes.config.status_url

    @property
    def inbound_push_url(self) -> str | None:
        """Where customers' messages are pushed now (None: not pushed)."""
        return self._pushes.config.inbound_url

    @property
    def on_push(self) -> PushCallback | None:
        """Called (in a push thread) with each push-log entry."""
        return self._pushes.on_push

    @on_push.setter
    def on_push(self, callback: PushCallback | None) -> None:
        self._pushes.on_push = callback

    def configure_pushes(self, **changes: Any) -> None:
        """
        Change push settings at run time; every value is checked before any is applied.

        :param changes: Any of ``push_url`` (both addresses), ``status_push_url``, ``inbound_push_url`` (None
            stops that kind of push), ``enforce_window``, ``status_delays``, ``push_time_scale``,
            ``push_retry_delays``, ``push_timeout``, ``duplicate_probability``, ``reorder_probability``,
            ``duplicate_next`` (the next N pushes are delivered twice), ``reorder_next`` (the next N messages'
            statuses are pushed in reverse order).
        :raises ValueError: For an unknown setting or a bad value.
        """
        self._pushes.configure(changes)

    def push_settings(self) -> dict[str, Any]:
        """Return the push settings, rules, windows and pending count (addresses redacted)."""
        return self._pushes.settings()

    def pushes(self) -> list[dict[str, Any]]:
        """
        Return every push attempt, in the order they ended.

        Each entry: ``id`` (one per push; re-pushes keep it), ``kind`` (``status`` / ``inbound``), ``messageId``,
        ``status`` (the status word, or the inbound ``message.type``), ``attempt`` (1 = first), ``duplicate``,
        ``url`` (redacted), ``outcome`` (``ok`` / ``failed`` / ``dropped``), ``http_status``, ``error``,
        ``retry_in`` (seconds until the re-push, None when none follows), ``final``, ``at`` (Unix time) and
        ``body`` (what was pushed).
        """
        return self._pushes.log()

    def clear_pushes(self) -> None:
        """Forget the push log (pushes still pending go out and are logged)."""
        self._pushes.clear_log()

    def wait_for_pushes(self, timeout: float = 10.0) -> bool:
        """
        Wait until no push is pending or in flight, re-pushes included.

        :param timeout: Seconds to wait at most.
        :return: False when pushes were still pending after ``timeout``.
        """
        return self._pushes.wait_idle(timeout)

    def simulate_inbound(self, customer: str, text: str | None = None, **fields: Any) -> dict[str, Any]:
        """
        Simulate a customer writing to the business: open (renew) the 24-hour window and push the message.

        ``sb.simulate_inbound("15550100200", "Hi")``; ``sb.simulate_inbound(c, type="image", caption="receipt")``;
        ``sb.simulate_inbound(c, type="location", latitude=52.5, longitude=13.4, location_name="Office",
        address="1 Main St")``; ``sb.simulate_inbound(c, type="button_reply", context=sent_id,
        reply_title="Reschedule")`` (the id is taken from the quoted message's buttons); ``type="list_reply"``
        likewise with a row; ``type="button"`` for a template's quick-reply (``reply_id`` = payload); or
        ``message={...}`` for any other ``message`` object.

        :param customer: The customer's digits (``from.phone``).
        :param text: The text of a ``text`` message.
        :param fields: ``name``, ``business_phone``, ``type`` and the type's fields, as ``POST /sandbox/inbound``.
        :return: The pushed body (``messageId``: the inbound message's id, 32 hex digits).
        """
        request: dict[str, Any] = {"from": customer, **fields}
        if text is not None:
            request["text"] = text
        return self._pushes.inbound(request)

    def simulate_tap(self, option: str, *, message_id: str | None = None, to: str | None = None) -> dict[str, Any]:
        """
        Simulate the recipient of a message with buttons (or a list) tapping one: push the reply, quoting it.

        ``sb.simulate_tap("Approve", message_id=sent_id)``, or ``to="15550100200"`` for the newest such message sent
        to that number (:mod:`airflow_provider_itnio.sandbox.taps`).

        :param option: The title (or id) of the button or row.
        :param message_id: The ``messageId`` of the message tapped.
        :param to: Or the recipient's digits.
        :return: The pushed body (``messageId``: the tap's inbound message id).
        :raises ValueError: No such message or option.
        """
        from airflow_provider_itnio.sandbox.taps import tap_request

        request = tap_request(self.messages(), option, message_id=message_id, to=to)
        return self._pushes.inbound({key: value for key, value in request.items() if value is not None})

    def open_window(self, customer: str, business_phone: str | None = None, at: float | None = None) -> None:
        """
        Record that ``customer`` wrote at ``at`` without pushing anything (e.g. 25 hours ago: a closed window).

        :param customer: The customer's digits.
        :param business_phone: The business number (the first one by default).
        :param at: Unix time of the customer's last message (the sandbox clock's now by default).
        """
        self._pushes.open_window(customer, business_phone, at)

    def window_open(self, customer: str, business_phone: str | None = None) -> bool:
        """
        Return True when ``customer`` wrote to ``business_phone`` within the last 24 hours.

        :param customer: The customer's digits.
        :param business_phone: The business number (the first one by default).
        """
        return self._pushes.window_open(customer, business_phone)

    def set_push_failure(
        self, recipient: str, failure: str | None = RE_ENGAGEMENT_FAILURE, after: str = "sent"
    ) -> None:
        """
        Decide the statuses pushed for every message to ``recipient`` (sessions and templates, window or not).

        :param recipient: The customer's digits.
        :param failure: The ``failure`` of the final ``failed`` push (131047 by default); None: no failure,
            the progress stops at ``after`` (``after="delivered"``: delivered, never read).
        :param after: The last progress status pushed before: ``sent``, ``delivered``, ``read`` or ``none``.
        """
        self._pushes.set_failure(recipient, failure, after)

    def clear_push_failures(self, recipient: str | None = None) -> None:
        """
        Forget the push failure of one recipient, or of all.

        :param recipient: The customer's digits; None for all.
        """
        self._pushes.clear_failure(recipient)

    # -- Airflow connection --------------------------------------------------------------------------

    def conn_json(self) -> str:
        """Return the Airflow connection for this sandbox, in Airflow's JSON form (``conn_type`` ``itnio``)."""
        return json.dumps(
            {
                "conn_type": "itnio",
                "login": self.api_key,
                "password": self.api_secret,
                "host": self.base_url,
                "extra": {"app_id": self.app_id, "business_phone": self.business_phone},
            }
        )

    def conn_uri(self) -> str:
        """
        Return the Airflow connection as a URI.

        ``itnio://KEY:SECRET@HOST:PORT/?app_id=..&business_phone=..&scheme=http``
        """
        netloc = urlsplit(self.base_url).netloc
        query = urlencode({"app_id": self.app_id, "business_phone": self.business_phone, "scheme": "http"})
        return f"itnio://{quote(self.api_key, safe='')}:{quote(self.api_secret, safe='')}@{netloc}/?{query}"

    def env_line(self) -> str:
        """Return ``AIRFLOW_CONN_ITNIO_DEFAULT='<conn_json>'``, shell-quoted, ready to ``export``."""
        return f"AIRFLOW_CONN_ITNIO_DEFAULT={shlex.quote(self.conn_json())}"

    # -- internals -----------------------------------------------------------------------------------

    def _notify(self, entry: dict[str, Any]) -> None:
        callback = self.on_request
        if callback is None:
            return
        with contextlib.suppress(Exception):  # a logging callback must never break the server
            callback(entry)

    def __repr__(self) -> str:
        where = self.base_url if self.running else "not started"
        return f"Sandbox({where}, app_id={self.app_id!r}, business_phones={self.config.business_phones!r})"


def _check_balance(balance: object) -> None:
    if balance is not None and (isinstance(balance, bool) or not isinstance(balance, int) or balance < 0):
        raise ValueError(f"balance must be a non-negative integer or None, got {balance!r}")


def _check_latency(seconds: object, name: str = "latency") -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < 3600:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {seconds!r}")
