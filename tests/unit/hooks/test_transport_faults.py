"""
What the hook does when the transport fails, with real sockets: real TLS servers (a self-signed certificate made
here, trusted through the connection's ``verify`` extra), a server that answers odd success bodies, and a real
forwarding proxy that wants a login.

Whether a failed request may be sent again depends on whether its bytes were written to the API, not on the
exception urllib3 raises: ``ItnioTransportError`` (retried) before, ``ItnioDeliveryUnknownError`` (never
re-sent) after.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import ipaddress
import json
import logging
import os
import socket
import ssl
import struct
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airflow_provider_itnio.errors import (
    ItnioApiError,
    ItnioConfigError,
    ItnioDeliveryUnknownError,
    ItnioTransportError,
)
from airflow_provider_itnio.hooks.itnio import ItnioHook, SendResult

CONN_ID = "itnio_faults"
#: A valid success body of the vendor's send endpoints (shared/spec/itniotech-api.md).
MESSAGE_ID = "10415ecbd0c848ebb7d5a3fe53269df6"
ACCEPTED: dict[str, Any] = {
    "status": "0",
    "reason": "success",
    "data": {"channelType": 0, "messageId": MESSAGE_ID, "timestamp": 1693813991},
}

#: What a fake server does with one connection: gets the (TLS-wrapped) socket and the parsed request.
Action = Callable[[socket.socket, bytes], None]


# -- a self-signed certificate ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Make a self-signed certificate for ``127.0.0.1`` and ``localhost``: ``(cert.pem, key.pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


# -- a scripted server --------------------------------------------------------------------------------------


def _read_request(sock: socket.socket) -> bytes:
    """Read one HTTP request (head and ``Content-Length`` body); b"" when the peer closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _answer(sock: socket.socket, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    head = f"HTTP/1.1 {status} {http.client.responses.get(status, 'X')}\r\nContent-Length: {len(body)}\r\n"
    head += "Content-Type: application/json\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    sock.sendall(head.encode() + b"\r\n" + body)


def answer_json(value: Any, status: int = 200) -> Action:
    """Answer the request with ``value`` as JSON."""
    return lambda sock, request: _answer(sock, status, json.dumps(value).encode())


def garbage_after_request(sock: socket.socket, request: bytes) -> None:
    """Write bytes that are no TLS record straight to the TCP socket: the client's TLS layer breaks."""
    os.write(sock.fileno(), b"\x17\x03\x03\xff\xffthis is not a TLS record" * 4)


def close_after_request(sock: socket.socket, request: bytes) -> None:
    """Say nothing and close: the connection drops after the request was sent."""


class ScriptedServer:
    """
    A TCP server on 127.0.0.1 that runs one action per request, in order (the last one repeats).

    :param actions: What to do with each request.
    :param tls: Wrap connections in TLS with this context; ``None`` for plain HTTP.
    :param hang: How many of the first connections are accepted and then never answered (their TLS handshake
        never completes) until :meth:`release` closes them.
    """

    def __init__(self, actions: list[Action], *, tls: ssl.SSLContext | None = None, hang: int = 0) -> None:
        self.actions = actions
        self.tls = tls
        self.hang = hang
        self.connections = 0
        self.received: list[bytes] = []  # every request read, whole
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.hung: list[socket.socket] = []
        self.hung_event = threading.Event()  # set once a connection hangs
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()
        self.release()

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def release(self) -> None:
        """Close the connections that hang (their clients see the handshake fail)."""
        with self.lock:
            hung, self.hung = self.hung, []
        for sock in hung:
            sock.close()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with self.lock:
                self.connections += 1
                if self.connections <= self.hang:
                    self.hung.append(conn)  # accepted, never spoken to
                    self.hung_event.set()
                    continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            sock = self.tls.wrap_socket(conn, server_side=True) if self.tls else conn
            request = _read_request(sock)
            if not request:
                return
            with self.lock:
                self.received.append(request)
                action = self.actions[min(len(self.received), len(self.actions)) - 1]
            action(sock, request)
        except OSError:
            pass
        finally:
            conn.close()


def _tls_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


def _hook(monkeypatch: pytest.MonkeyPatch, url: str, **extra: Any) -> ItnioHook:
    conn = {
        "conn_type": "itnio",
        "login": "K",
        "password": "S",
        "host": url,
        "extra": {"app_id": "A", "business_phone": "15550001111", "timeout": 1, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return ItnioHook(itnio_conn_id=CONN_ID, connect_retries=3, retry_wait_max=0)


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """Return what was logged so far: Airflow 2 logs through ``logging``, Airflow 3 prints through structlog."""
    caplog.set_level(logging.DEBUG)

    def text() -> str:
        captured = capfd.readouterr()
        return caplog.text + captured.out + captured.err

    return text


# -- TLS: before and after the request was written ----------------------------------------------------------


def test_the_tls_server_works_with_the_verify_extra(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    with ScriptedServer([answer_json(ACCEPTED)], tls=_tls_context(certificate)) as server:
        result = _hook(monkeypatch, server.url, verify=str(certificate[0])).send_text("15550100200", "hi")
    assert result == SendResult(message_id=MESSAGE_ID, timestamp=1693813991, channel_type=0)
    [request] = server.received
    assert request.startswith(b"POST /wa/custom/sendMsg HTTP/1.1\r\n")


def test_tls_broken_after_the_request_was_written_is_an_unknown_delivery(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    """The server reads the whole request, then answers with a corrupt TLS record: the API has the message."""
    with ScriptedServer([garbage_after_request], tls=_tls_context(certificate)) as server:
        hook = _hook(monkeypatch, server.url, verify=str(certificate[0]))
        with pytest.raises(ItnioDeliveryUnknownError, match="SSLError") as info:
            hook.send_text("15550100200", "hi")
    assert info.value.permanent
    assert len(server.received) == 1  # never sent again
    assert server.received[0].endswith(b'"text":{"body":"hi"}}')


def test_a_tls_handshake_that_never_completes_is_never_sent_and_retried(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    """The server accepts TCP and never answers the ClientHello: no request byte can have gone out."""
    with ScriptedServer([answer_json(ACCEPTED)], tls=_tls_context(certificate), hang=100) as server:
        hook = _hook(monkeypatch, server.url, verify=str(certificate[0]), timeout=0.3)
        with pytest.raises(ItnioTransportError, match="never reached the API") as info:
            hook.send_text("15550100200", "hi")
    assert not info.value.permanent
    assert server.connections == hook.connect_retries  # one TCP connection per try
    assert server.received == []


def test_an_untrusted_certificate_is_never_sent_and_retried(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    """The default trust store does not know the test's certificate: the handshake fails, nothing was sent."""
    with ScriptedServer([answer_json(ACCEPTED)], tls=_tls_context(certificate)) as server:
        hook = _hook(monkeypatch, server.url)
        with pytest.raises(ItnioTransportError, match="CERTIFICATE_VERIFY_FAILED"):
            hook.send_text("15550100200", "hi")
    assert server.connections == hook.connect_retries
    assert server.received == []


def _hold(sock: socket.socket, request: bytes) -> None:
    threading.Event().wait(3)  # longer than the client's timeout


@pytest.mark.parametrize(
    ("action", "error"),
    [(close_after_request, "ProtocolError"), (_hold, "ReadTimeoutError")],
    ids=["dropped", "read-timeout"],
)
def test_tls_failures_after_the_request_stay_unknown_deliveries(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path], action: Action, error: str
) -> None:
    with ScriptedServer([action], tls=_tls_context(certificate)) as server:
        hook = _hook(monkeypatch, server.url, verify=str(certificate[0]), timeout=0.5)
        with pytest.raises(ItnioDeliveryUnknownError, match=error):
            hook.send_text("15550100200", "hi")
    assert len(server.received) == 1


class HeadReader:
    """
    A server on 127.0.0.1 that reads each request's head only, then resets the connection (``SO_LINGER`` 0)
    while the client is still writing the body. Its receive buffer is tiny, so a large body cannot all be
    queued before the reset: the client's write fails, and the request's last bytes never leave.

    :param tls: Wrap connections in TLS with this context; ``None`` for plain HTTP.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.heads: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepted sockets
        self.listener.settimeout(0.1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.listener.getsockname()[1]}"

    def __enter__(self) -> HeadReader:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            sock = conn
            try:
                sock = self.tls.wrap_socket(conn, server_side=True) if self.tls else conn  # detaches conn
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                self.heads.append(head)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            finally:
                sock.close()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_write_that_fails_is_never_sent_and_retried(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path], tls: bool
) -> None:
    """
    The server resets the connection after reading the head, while the body is going out: the write fails.

    urllib3 swallows the write error (to read an early answer) and then fails reading; the request was never
    whole at the server (its ``Content-Length`` was not reached), so it is never-sent and retried, not an
    unknown delivery that nobody would ever send.
    """
    body = {"filler": "x" * 8_000_000}  # far more than the loopback buffers hold
    with HeadReader(_tls_context(certificate) if tls else None) as server:
        hook = _hook(monkeypatch, server.url, verify=str(certificate[0]), timeout=10)
        with pytest.raises(ItnioTransportError, match="never reached the API") as info:
            hook.post("/wa/custom/sendMsg", body)
    assert not info.value.permanent
    assert len(server.heads) == hook.connect_retries  # tried again on a new connection each time
    assert all(head.startswith(b"POST /wa/custom/sendMsg HTTP/1.1\r\n") for head in server.heads)


def test_a_keep_alive_connection_the_server_closed_is_reopened_and_sent_once(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    """The pooled connection of the first send was closed by the server while idle: the next send reconnects."""
    keep_alive = json.dumps(ACCEPTED).encode()
    closed = threading.Event()

    def answer_then_close_idle(sock: socket.socket, request: bytes) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(keep_alive), keep_alive))
        # close it before saying so (the TLS socket owns the descriptor: the handler's conn.close() would not
        # close it, and a second send racing in before it is collected writes onto it: rightly "maybe delivered")
        sock.close()
        closed.set()  # idle in the client's pool, now dead: the next send must see it closed and reconnect

    with ScriptedServer([answer_then_close_idle, answer_json(ACCEPTED)], tls=_tls_context(certificate)) as server:
        hook = _hook(monkeypatch, server.url, verify=str(certificate[0]))
        assert hook.send_text("15550100200", "first").message_id == MESSAGE_ID
        assert closed.wait(600), "the server did not close the idle connection"
        assert hook.send_text("15550100200", "second").message_id == MESSAGE_ID
    bodies = [request.rpartition(b'"body":')[2] for request in server.received]
    assert bodies == [b'"first"}}', b'"second"}}']
    assert server.connections == 2


def test_what_was_written_is_tracked_per_thread(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    """
    Two threads share one hook. Thread A's first connection hangs in the handshake while thread B writes and
    completes a request; then A's handshake fails. B's write must not make A's failure look maybe-sent: A is
    retried on a new connection and sent once.
    """
    with ScriptedServer([answer_json(ACCEPTED)], tls=_tls_context(certificate), hang=1) as server:
        hook = _hook(monkeypatch, server.url, verify=str(certificate[0]), timeout=30)
        outcome: dict[str, Any] = {}

        def send(name: str) -> None:
            try:
                outcome[name] = hook.send_text("15550100200", name)
            except Exception as err:  # reported by the assertions below
                outcome[name] = err

        thread_a = threading.Thread(target=send, args=("A",))
        thread_a.start()
        assert server.hung_event.wait(600)  # A's connection is accepted and hangs
        send("B")  # this thread writes a whole request meanwhile
        server.release()  # A's handshake now fails (the server closed the connection)
        thread_a.join(600)
        assert not thread_a.is_alive(), "thread A's send did not end within 600 s"
    assert isinstance(outcome["B"], SendResult)
    assert isinstance(outcome["A"], SendResult), outcome["A"]
    bodies = sorted(request.rpartition(b'"body":')[2] for request in server.received)
    assert bodies == [b'"A"}}', b'"B"}}']  # each sent once
    assert server.connections == 3


# -- odd answers to an accepted send ------------------------------------------------------------------------


def _accepted(**data: Any) -> dict[str, Any]:
    """Return ACCEPTED with ``data`` fields changed (a ``None`` value removes the field)."""
    fields = {**ACCEPTED["data"], **data}
    return {**ACCEPTED, "data": {key: value for key, value in fields.items() if value is not None}}


@pytest.mark.parametrize(
    ("answer", "timestamp", "channel_type", "malformed"),
    [
        (_accepted(timestamp="1693813991.0"), 1693813991, 0, "timestamp"),
        (_accepted(timestamp="1693813991"), 1693813991, 0, "timestamp"),
        (_accepted(timestamp=1693813991.0), 1693813991, 0, "timestamp"),
        (_accepted(timestamp="yesterday"), None, 0, "timestamp"),
        (_accepted(timestamp=None), None, 0, None),
        (_accepted(channelType="0"), 1693813991, 0, "channelType"),
        (_accepted(channelType="WhatsApp"), 1693813991, 0, "channelType"),
        (_accepted(channelType=None), 1693813991, 0, None),
    ],
    ids=[
        "timestamp-float-string",
        "timestamp-string",
        "timestamp-float",
        "timestamp-word",
        "no-timestamp",
        "channelType-string",
        "channelType-word",
        "no-channelType",
    ],
)
def test_an_accepted_send_with_odd_optional_fields_returns_its_message_id(
    monkeypatch: pytest.MonkeyPatch,
    logged: Callable[[], str],
    answer: dict[str, Any],
    timestamp: int | None,
    channel_type: int,
    malformed: str | None,
) -> None:
    with ScriptedServer([answer_json(answer)]) as server:
        result = _hook(monkeypatch, server.url).send_text("15550100200", "hi")
    assert result == SendResult(message_id=MESSAGE_ID, timestamp=timestamp, channel_type=channel_type)
    assert len(server.received) == 1
    text = logged()
    if malformed:
        value = answer["data"][malformed]
        assert f"itniotech accepted message {result.message_id}, but its {malformed} is malformed: {value!r}" in text
    else:
        assert "is malformed" not in text


@pytest.mark.parametrize(
    "answer",
    [
        {"status": "0", "reason": "success", "data": ["m" * 32]},
        {"status": "0", "reason": "success", "data": "m" * 32},
        {"status": "0", "reason": "success", "data": None},
        {"status": "0", "reason": "success"},
        _accepted(messageId=None),
        _accepted(messageId=""),
        _accepted(messageId={"id": "m"}),
    ],
    ids=["data-list", "data-string", "data-null", "no-data", "no-messageId", "empty-messageId", "messageId-object"],
)
def test_success_without_a_readable_message_id_is_an_unknown_delivery(
    monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any]
) -> None:
    with ScriptedServer([answer_json(answer)]) as server:
        hook = _hook(monkeypatch, server.url)
        with pytest.raises(ItnioDeliveryUnknownError, match="messageId") as info:
            hook.send_text("15550100200", "hi")
    assert info.value.permanent  # the batch records it as maybe sent; nobody re-sends it
    assert len(server.received) == 1


# -- proxies that need a login ------------------------------------------------------------------------------

PROXY_USER = "proxy user"
PROXY_PASSWORD = "p@ss:wörd/9"  # percent-encoded in the URL


class LoginProxy:
    """
    A tiny HTTP proxy on 127.0.0.1 that wants ``Proxy-Authorization: Basic`` for PROXY_USER/PROXY_PASSWORD.

    It answers 407 without the right header; otherwise it forwards plain-HTTP requests (absolute-form) and
    opens ``CONNECT`` tunnels. ``seen`` lists ``(method, target, authorized)`` per request.
    """

    def __init__(self) -> None:
        self.expected = "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
        self.seen: list[tuple[str, str, bool]] = []
        self.server = ScriptedServer([self._handle])

    def __enter__(self) -> LoginProxy:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def url(self, user: str = PROXY_USER, password: str = PROXY_PASSWORD) -> str:
        """Return the proxy's URL with (percent-encoded) credentials."""
        login = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}@" if user else ""
        return f"http://{login}127.0.0.1:{self.server.port}"

    def _handle(self, sock: socket.socket, request: bytes) -> None:
        head, _, body = request.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
        authorized = headers.get("proxy-authorization") == self.expected
        self.seen.append((method, target, authorized))
        if not authorized:
            _answer(sock, 407, b"login needed", {"Proxy-Authenticate": 'Basic realm="test"'})
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _pipe(sock, upstream)
            return
        url = urllib.parse.urlsplit(target)
        forward = {k: v for k, v in headers.items() if k not in ("proxy-authorization", "connection", "host")}
        upstream_conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
        upstream_conn.request(method, url.path or "/", body=body, headers=forward)
        response = upstream_conn.getresponse()
        _answer(sock, response.status, response.read())
        upstream_conn.close()


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until one side closes."""

    def copy(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    other = threading.Thread(target=copy, args=(upstream, client), daemon=True)
    other.start()
    copy(client, upstream)
    other.join(10)
    upstream.close()


@pytest.fixture
def login_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoginProxy]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with LoginProxy() as proxy:
        yield proxy


def _sandbox_hook(monkeypatch: pytest.MonkeyPatch, sandbox: Any, **extra: Any) -> ItnioHook:
    conn = json.loads(sandbox.conn_json())
    conn["extra"].update(extra)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return ItnioHook(itnio_conn_id=CONN_ID, retry_wait_max=0)


def test_the_proxy_extras_login_is_sent(
    monkeypatch: pytest.MonkeyPatch, logged: Callable[[], str], sandbox: Any, login_proxy: LoginProxy
) -> None:
    hook = _sandbox_hook(monkeypatch, sandbox, proxy=login_proxy.url())
    result = hook.send_text("15550100200", "via proxy")
    assert [m["messageId"] for m in sandbox.messages()] == [result.message_id]
    assert login_proxy.seen == [("POST", f"{sandbox.base_url}/wa/custom/sendMsg", True)]
    assert hook.http.proxy is not None and hook.http.proxy.url == f"http://127.0.0.1:{login_proxy.server.port}"
    assert urllib.parse.quote(PROXY_PASSWORD, safe="") not in logged()


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_an_environment_proxys_login_is_sent(
    monkeypatch: pytest.MonkeyPatch, sandbox: Any, login_proxy: LoginProxy, variable: str
) -> None:
    monkeypatch.setenv(variable, login_proxy.url())
    result = _sandbox_hook(monkeypatch, sandbox).send_text("15550100200", "via env proxy")
    assert [m["messageId"] for m in sandbox.messages()] == [result.message_id]
    assert login_proxy.seen == [("POST", f"{sandbox.base_url}/wa/custom/sendMsg", True)]


def test_the_login_opens_a_connect_tunnel_to_an_https_api(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path], login_proxy: LoginProxy
) -> None:
    with ScriptedServer([answer_json(ACCEPTED)], tls=_tls_context(certificate)) as api:
        hook = _hook(monkeypatch, api.url, verify=str(certificate[0]), proxy=login_proxy.url())
        assert hook.send_text("15550100200", "hi").message_id == MESSAGE_ID
    assert login_proxy.seen == [("CONNECT", f"127.0.0.1:{api.port}", True)]
    assert len(api.received) == 1


@pytest.mark.parametrize(("user", "password"), [(PROXY_USER, "wrong-password"), ("", "")], ids=["wrong", "none"])
def test_a_refused_proxy_login_fails_without_showing_the_password(
    monkeypatch: pytest.MonkeyPatch,
    logged: Callable[[], str],
    sandbox: Any,
    login_proxy: LoginProxy,
    user: str,
    password: str,
) -> None:
    hook = _sandbox_hook(monkeypatch, sandbox, proxy=login_proxy.url(user, password))
    with pytest.raises(ItnioApiError, match="HTTP 407") as info:
        hook.send_text("15550100200", "hi")
    assert info.value.http_status == 407 and info.value.permanent
    assert sandbox.requests() == []
    assert login_proxy.seen == [("POST", f"{sandbox.base_url}/wa/custom/sendMsg", False)]
    shown = str(info.value) + repr(info.value) + logged() + repr(hook.http.proxy)
    for secret in (password, urllib.parse.quote(password, safe=""), PROXY_PASSWORD):
        assert not password or secret not in shown


def test_a_refused_tunnel_is_never_sent_and_hides_the_password(
    monkeypatch: pytest.MonkeyPatch,
    logged: Callable[[], str],
    certificate: tuple[Path, Path],
    login_proxy: LoginProxy,
) -> None:
    with ScriptedServer([answer_json(ACCEPTED)], tls=_tls_context(certificate)) as api:
        hook = _hook(monkeypatch, api.url, verify=str(certificate[0]), proxy=login_proxy.url(password="wrong-pw"))
        with pytest.raises(ItnioTransportError, match="407") as info:
            hook.send_text("15550100200", "hi")
    assert api.received == []
    assert len(login_proxy.seen) == hook.connect_retries  # the CONNECT is no request byte: retried
    assert "wrong-pw" not in str(info.value) + logged()


@pytest.mark.parametrize("cut", ["#", "/", "?", "["], ids=["hash", "slash", "question-mark", "bracket"])
def test_a_proxy_url_with_an_unencoded_character_in_the_password_never_shows_it(
    monkeypatch: pytest.MonkeyPatch, logged: Callable[[], str], cut: str
) -> None:
    """
    ``http://user:pa#ss@proxy:3128``: the ``#`` ends the host part inside the password, so the URL cannot be read.

    Its error is a configuration error (not retried as a transport failure) that shows no part of the password:
    urllib3's own parse error would quote ``'user:pa'``.
    """
    password = f"Pa55{cut}word-Tail"
    with ScriptedServer([answer_json(ACCEPTED)]) as api:
        hook = _hook(monkeypatch, api.url, proxy=f"http://proxy-user:{password}@127.0.0.1:9")
        with pytest.raises(ItnioConfigError, match="proxy URL") as info:
            hook.send_text("15550100200", "hi")
        ok, message = hook.test_connection()
    assert not ok and "proxy URL" in message
    assert api.received == []
    shown = str(info.value) + repr(info.value) + message + logged()
    for piece in password.split(cut):
        assert piece not in shown
    assert "Attempt 1 of" not in shown  # not retried: trying again cannot help
