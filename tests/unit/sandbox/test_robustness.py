"""The sandbox under malformed input, with raw sockets: every request gets an HTTP answer, memory stays bounded.

Each case sends crafted bytes on a real socket and then checks that the sandbox still serves a normal send.
``CLIENT_TIMEOUT`` only guards against a server that never answers (the test fails instead of hanging); no test
asserts how long anything took.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import pytest
import requests

from airflow_provider_itnio.sandbox import Sandbox
from airflow_provider_itnio.sandbox.server import MAX_BODY
from airflow_provider_itnio.sandbox.testing import sandbox_fixture  # noqa: F401 - registers `sandbox`

CUSTOM = "/wa/custom/sendMsg"
TEMPLATE = "/wa/template/sendMsg"
PHONE = "15550001111"
#: Guard against a server that never answers; far longer than QUICK_IDLE.
CLIENT_TIMEOUT = 10.0
#: The idle timeout of the sandbox used by the timeout tests.
QUICK_IDLE = 0.3
#: The spec's status codes (shared/spec/itniotech-api.md, "Status codes").
MALFORMED_LINK = "-133"
WRONG_TYPE = "-134"
#: A link whose IPv6 literal is never closed: ``urllib.parse.urlsplit`` raises ValueError on it.
BROKEN_IPV6_LINK = "http://[::1/x.png"


@dataclass
class Answer:
    """An HTTP answer read from a raw socket."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes
    closed: bool | None

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


def raw_request(
    target: str = CUSTOM, *, method: str = "POST", headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
) -> bytes:
    """
    Return the bytes of a request, with exactly the given headers (plus ``Host``).

    :param target: The request target.
    :param method: The method.
    :param headers: ``(name, value)`` pairs, sent as they are (duplicates included).
    :param body: The bytes after the header block.
    """
    lines = [f"{method} {target} HTTP/1.1", "Host: sandbox", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(sb: Sandbox, data: bytes, *, shut_write: bool = False, expect_close: bool = True) -> Answer:
    """
    Send raw bytes on a new connection and read one HTTP answer.

    :param sb: The sandbox.
    :param data: The bytes to send.
    :param shut_write: Close the sending side after ``data`` (the client has nothing more to say).
    :param expect_close: Also read whether the server then closed the connection.
    """
    with socket.create_connection(("127.0.0.1", sb.port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()  # http.client.RemoteDisconnected when the server closes without answering
        body = response.read()
        return Answer(response.status, response.headers, body, server_closed(sock) if expect_close else None)


def server_closed(sock: socket.socket) -> bool:
    """Return whether the server closed the connection (reading after its answer finds the end)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:  # closed while some of our bytes were still unread: closed all the same
        return True


def auth_headers(sb: Sandbox) -> tuple[tuple[str, str], ...]:
    """Return the vendor's auth headers for ``sb``, as header pairs."""
    return tuple(sb.auth_headers().items())


def text_body(**overrides: Any) -> dict[str, Any]:
    """Return a valid text message for the default sandbox account."""
    body: dict[str, Any] = {
        "appId": "sandbox-app",
        "businessPhone": PHONE,
        "recipient": "4915112345678",
        "channelType": 0,
        "type": "text",
        "text": {"body": "hello"},
    }
    body.update(overrides)
    return body


def send(sb: Sandbox, body: Any = None, path: str = CUSTOM) -> dict[str, Any]:
    """Post a JSON body (a valid text message by default) with ``requests`` and return the vendor's answer."""
    response = requests.post(
        sb.base_url + path,
        json=text_body() if body is None else body,
        headers=sb.auth_headers(),
        timeout=CLIENT_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def post_raw_json(sb: Sandbox, raw: bytes, path: str = CUSTOM) -> dict[str, Any]:
    """Post raw JSON text (that ``requests`` could not build) and return the vendor's answer."""
    answer = exchange(
        sb,
        raw_request(path, headers=(*auth_headers(sb), ("Content-Length", str(len(raw)))), body=raw),
        expect_close=False,
    )
    assert answer.status == HTTPStatus.OK, answer.body
    result: dict[str, Any] = answer.json()
    return result


def assert_still_serving(sb: Sandbox) -> None:
    """Assert that a normal send on a new connection is accepted."""
    answer = send(sb)
    assert answer["status"] == "0", answer
    assert answer["data"]["messageId"] in {m["messageId"] for m in sb.messages()}


def chunked(*lines: bytes) -> bytes:
    """Return a chunked body made of the given raw lines (each followed by CRLF)."""
    return b"".join(line + b"\r\n" for line in lines)


@pytest.fixture(scope="module")
def quick_sandbox() -> Iterator[Sandbox]:
    """Yield a sandbox that closes connections silent for ``QUICK_IDLE`` seconds."""
    with Sandbox(idle_timeout=QUICK_IDLE) as sb:
        yield sb


# ------------------------------------------------------------------------------------------ vendor answers


@pytest.mark.parametrize("kind", ["image", "audio", "video", "sticker", "document"])
def test_broken_ipv6_link_is_malformed_link(sandbox: Sandbox, kind: str) -> None:
    media = {"link": BROKEN_IPV6_LINK, "filename": "x.pdf"} if kind == "document" else {"link": BROKEN_IPV6_LINK}
    answer = send(sandbox, text_body(type=kind, text=None, **{kind: media}))
    assert answer["status"] == MALFORMED_LINK, answer
    assert sandbox.messages() == []
    assert_still_serving(sandbox)


def test_broken_ipv6_link_in_template_parameter_is_malformed_link(sandbox: Sandbox) -> None:
    header = {"type": "header", "parameters": [{"type": "image", "image": {"link": BROKEN_IPV6_LINK}}]}
    body = text_body(
        type=None, text=None, template={"name": "t", "language": {"code": "en_US"}, "components": [header]}
    )
    assert send(sandbox, body, TEMPLATE)["status"] == MALFORMED_LINK
    assert_still_serving(sandbox)


@pytest.mark.parametrize("link", ["http://example.com:port/x.png", "http://example.com:99999/x.png", "http:///x.png"])
def test_link_with_bad_port_or_no_host_is_malformed_link(sandbox: Sandbox, link: str) -> None:
    assert send(sandbox, text_body(type="image", text=None, image={"link": link}))["status"] == MALFORMED_LINK


@pytest.mark.parametrize("opener,closer", [(b"[", b"]"), (b'{"a":', b"}")], ids=["arrays", "objects"])
def test_json_nested_100000_deep_is_wrong_type(sandbox: Sandbox, opener: bytes, closer: bytes) -> None:
    deep = opener * 100_000 + b"0" + closer * 100_000
    assert post_raw_json(sandbox, deep)["status"] == WRONG_TYPE
    # the same depth inside an otherwise valid message
    message = json.dumps(text_body()).encode()
    assert post_raw_json(sandbox, message[:-1] + b', "extra": ' + deep + b"}")["status"] == WRONG_TYPE
    assert sandbox.messages() == []
    assert requests.get(sandbox.base_url + "/sandbox/requests", timeout=CLIENT_TIMEOUT).status_code == 200
    assert_still_serving(sandbox)


def test_json_that_parses_but_nests_too_deep_to_copy_is_wrong_type(sandbox: Sandbox) -> None:
    # Shallow enough for json.loads, deep enough that copying it (the request log, /sandbox/messages) recursed
    # past the limit: the message was accepted and then every GET /sandbox/messages closed the connection.
    depth = sys.getrecursionlimit() // 2
    message = json.dumps(text_body()).encode()
    answer = post_raw_json(sandbox, message[:-1] + b', "extra": ' + b"[" * depth + b"]" * depth + b"}")
    assert answer["status"] == WRONG_TYPE
    for endpoint in ("/sandbox/messages", "/sandbox/requests"):
        assert requests.get(sandbox.base_url + endpoint, timeout=CLIENT_TIMEOUT).status_code == 200
    assert_still_serving(sandbox)


def test_nesting_up_to_the_limit_is_accepted(sandbox: Sandbox) -> None:
    from airflow_provider_itnio.sandbox.validation import MAX_JSON_DEPTH

    def nested(depth: int) -> Any:  # depth counts the message object itself
        value: Any = "x"
        for _ in range(depth - 1):
            value = [value]
        return value

    assert send(sandbox, text_body(extra=nested(MAX_JSON_DEPTH)))["status"] == "0"
    assert send(sandbox, text_body(extra=nested(MAX_JSON_DEPTH + 1)))["status"] == WRONG_TYPE
    assert len(sandbox.messages()) == 1


def test_lone_surrogate_does_not_break_the_inspection_api(sandbox: Sandbox) -> None:
    # "\ud800" is valid JSON syntax but cannot be encoded as UTF-8: answering it used to raise in the handler.
    message = json.dumps(text_body()).encode().replace(b'"hello"', b'"\\ud800"')
    assert post_raw_json(sandbox, message)["status"] == "0"
    for endpoint in ("/sandbox/messages", "/sandbox/requests"):
        response = requests.get(sandbox.base_url + endpoint, timeout=CLIENT_TIMEOUT)
        assert response.status_code == 200
        assert response.json()[0]["body"]["text"]["body"] == "\ud800"
    assert_still_serving(sandbox)


def test_control_api_answers_deep_json_with_400(sandbox: Sandbox) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = exchange(
        sandbox,
        raw_request("/sandbox/config", headers=(("Content-Length", str(len(deep))),), body=deep),
        expect_close=False,
    )
    assert answer.status == HTTPStatus.BAD_REQUEST
    assert_still_serving(sandbox)


# ------------------------------------------------------------------------------------------ malformed HTTP

HEALTH = "/sandbox/health"

MALFORMED_HTTP: list[tuple[str, bytes, HTTPStatus]] = [
    # chunked bodies: int(x, 16) accepts "-1", "0x5", "+5" and "1_0"; a chunk size of -1 read to EOF, unbounded
    (
        "chunk-size-minus-one",
        raw_request(headers=(("Transfer-Encoding", "chunked"),), body=b"-1\r\n"),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "chunk-size-0x",
        raw_request(headers=(("Transfer-Encoding", "chunked"),), body=chunked(b"0x5", b"hello", b"0", b"")),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "chunk-size-plus",
        raw_request(headers=(("Transfer-Encoding", "chunked"),), body=chunked(b"+5", b"hello", b"0", b"")),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "chunk-size-not-hex",
        raw_request(headers=(("Transfer-Encoding", "chunked"),), body=chunked(b"zz", b"hello", b"0", b"")),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "chunk-data-without-crlf",
        raw_request(headers=(("Transfer-Encoding", "chunked"),), body=chunked(b"5", b"helloXX", b"0", b"")),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "chunk-size-over-limit",  # answered from the size line alone, without reading the data
        raw_request(headers=(("Transfer-Encoding", "chunked"),), body=b"%x\r\n" % (MAX_BODY + 1)),
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ),
    (
        "chunk-size-line-too-long",
        raw_request(headers=(("Transfer-Encoding", "chunked"),), body=b"1" + b" " * 70_000 + b"\r\n"),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "too-many-trailers",
        raw_request(
            headers=(("Transfer-Encoding", "chunked"),),
            body=chunked(b"2", b"{}", b"0", *(b"X-T%d: 1" % i for i in range(200)), b""),
        ),
        HTTPStatus.BAD_REQUEST,
    ),
    # transfer codings (RFC 9112 6.1 / 6.3)
    (
        "transfer-encoding-and-content-length",
        raw_request(headers=(("Content-Length", "5"), ("Transfer-Encoding", "chunked")), body=chunked(b"0", b"")),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "transfer-encoding-not-ending-in-chunked",
        raw_request(headers=(("Transfer-Encoding", "gzip"),), body=b"XYZ"),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "transfer-encoding-gzip-chunked",
        raw_request(headers=(("Transfer-Encoding", "gzip, chunked"),), body=chunked(b"0", b"")),
        HTTPStatus.NOT_IMPLEMENTED,
    ),
    # Content-Length: int() accepts "1_0" and "+10"
    (
        "content-length-underscore",
        raw_request(HEALTH, method="GET", headers=(("Content-Length", "1_0"),), body=b"0123456789"),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "content-length-plus",
        raw_request(HEALTH, method="GET", headers=(("Content-Length", "+10"),), body=b"0123456789"),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "content-length-negative",
        raw_request(headers=(("Content-Length", "-1"),)),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "content-length-not-a-number",
        raw_request(headers=(("Content-Length", "ten"),)),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "content-length-conflicting",
        raw_request(HEALTH, method="GET", headers=(("Content-Length", "2"), ("Content-Length", "4")), body=b"{}"),
        HTTPStatus.BAD_REQUEST,
    ),
    (
        "content-length-5000-digits",  # more digits than int() converts
        raw_request(headers=(("Content-Length", "9" * 5000),)),
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ),
    (
        "content-length-over-limit",  # answered from the header alone, without reading the body
        raw_request(headers=(("Content-Length", str(MAX_BODY + 1)),)),
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ),
    # request line and headers
    (
        "absolute-target-with-broken-ipv6",
        raw_request("http://[::1/wa/custom/sendMsg", headers=(("Content-Length", "0"),)),
        HTTPStatus.BAD_REQUEST,
    ),
    ("garbage-request-line", b"HELLO\r\n\r\n", HTTPStatus.BAD_REQUEST),
    ("bad-http-version", b"GET /sandbox/health HTTP/1.1x\r\n\r\n", HTTPStatus.BAD_REQUEST),
    ("request-line-too-long", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", HTTPStatus.REQUEST_URI_TOO_LONG),
    (
        "header-line-too-long",
        raw_request(HEALTH, method="GET", headers=(("X-Long", "a" * 70_000),)),
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
    ),
    (
        "header-flood",
        raw_request(HEALTH, method="GET", headers=tuple((f"X-H{i}", "1") for i in range(200))),
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
    ),
    ("unsupported-method", raw_request(HEALTH, method="OPTIONS"), HTTPStatus.NOT_IMPLEMENTED),
]


@pytest.mark.parametrize(
    "data,expected", [(data, expected) for _, data, expected in MALFORMED_HTTP], ids=[n for n, _, _ in MALFORMED_HTTP]
)
def test_malformed_http_gets_an_http_answer_and_a_close(sandbox: Sandbox, data: bytes, expected: HTTPStatus) -> None:
    answer = exchange(sandbox, data)
    assert answer.status == expected, answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    assert "error" in answer.json()
    assert answer.closed  # the rest of the stream cannot be trusted
    assert sandbox.messages() == []
    assert_still_serving(sandbox)


def test_chunks_adding_up_past_the_limit_are_refused_before_the_last_one_is_read(sandbox: Sandbox) -> None:
    half = MAX_BODY // 2 + 1
    body = b"%x\r\n" % half + b" " * half + b"\r\n" + b"%x\r\n" % half  # the second chunk's data is never sent
    answer = exchange(sandbox, raw_request(headers=(("Transfer-Encoding", "chunked"),), body=body))
    assert (answer.status, answer.closed) == (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, True)
    assert_still_serving(sandbox)


def test_valid_chunked_body_with_extension_and_trailer_is_accepted(sandbox: Sandbox) -> None:
    message = json.dumps(text_body()).encode()
    first, rest = message[:10], message[10:]
    body = chunked(b"%x;name=value" % len(first), first, b"%X" % len(rest), rest, b"0", b"X-Trailer: 1", b"")
    data = raw_request(headers=(*auth_headers(sandbox), ("Transfer-Encoding", "chunked")), body=body)
    answer = exchange(sandbox, data, expect_close=False)
    assert answer.status == HTTPStatus.OK
    assert answer.json()["status"] == "0"
    assert [m["body"] for m in sandbox.messages()] == [text_body()]


def test_request_without_http_version_gets_a_status_line(sandbox: Sandbox) -> None:
    # The standard library answers a version-less request line as HTTP/0.9: a bare body, no status line.
    answer = exchange(sandbox, b"GET /sandbox/health\r\n\r\n")
    assert (answer.status, answer.json(), answer.closed) == (HTTPStatus.OK, {"ok": True}, True)


def test_body_cut_short_by_the_client_gets_400(sandbox: Sandbox) -> None:
    data = raw_request(headers=(("Content-Length", "100"),), body=b"0123456789")
    answer = exchange(sandbox, data, shut_write=True)
    assert (answer.status, answer.closed) == (HTTPStatus.BAD_REQUEST, True)
    assert_still_serving(sandbox)


def test_unexpected_error_gets_500_and_the_server_keeps_serving(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug cannot be produced for real: stand one in for the API emulation.
    from airflow_provider_itnio.sandbox import api

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    with monkeypatch.context() as patch:
        patch.setattr(api, "process", broken)
        response = requests.post(sandbox.base_url + CUSTOM, json=text_body(), timeout=CLIENT_TIMEOUT)
        assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
        assert response.json() == {"error": "RuntimeError"}
    assert_still_serving(sandbox)


# ------------------------------------------------------------------------------------------ idle timeout


def test_idle_timeout_is_validated() -> None:
    for bad in (0, -1, float("inf"), float("nan"), "5", True):
        with pytest.raises(ValueError):
            Sandbox(idle_timeout=bad)  # type: ignore[arg-type]
    assert Sandbox(idle_timeout=2).config.idle_timeout == 2.0


def test_silent_client_is_closed_after_the_idle_timeout(quick_sandbox: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", quick_sandbox.port), timeout=CLIENT_TIMEOUT) as sock:
        assert sock.recv(1) == b""  # closed, without an answer to a request that never came
    assert_still_serving(quick_sandbox)


def test_client_stalled_in_its_headers_is_closed_after_the_idle_timeout(quick_sandbox: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", quick_sandbox.port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"POST /wa/custom/sendMsg HTTP/1.1\r\nHost: sandbox\r\n")
        assert sock.recv(1) == b""
    assert_still_serving(quick_sandbox)


@pytest.mark.parametrize(
    "data",
    [
        raw_request(headers=(("Content-Length", "100"),), body=b"0123456789"),
        raw_request(headers=(("Transfer-Encoding", "chunked"),), body=b"a\r\n01234"),
        raw_request(headers=(("Transfer-Encoding", "chunked"),), body=chunked(b"2", b"{}")),  # no last chunk
    ],
    ids=["shorter-than-content-length", "stalled-in-a-chunk", "no-last-chunk"],
)
def test_body_shorter_than_announced_gets_408_after_the_idle_timeout(quick_sandbox: Sandbox, data: bytes) -> None:
    answer = exchange(quick_sandbox, data)
    assert (answer.status, answer.closed) == (HTTPStatus.REQUEST_TIMEOUT, True)
    assert_still_serving(quick_sandbox)


def test_stalled_client_does_not_block_others(quick_sandbox: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", quick_sandbox.port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(raw_request(headers=(("Content-Length", "100"),), body=b"0123456789"))
        assert_still_serving(quick_sandbox)  # while the stalled request holds its own thread
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == HTTPStatus.REQUEST_TIMEOUT


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(quick_sandbox: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", quick_sandbox.port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(raw_request(HEALTH, method="GET"))
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert (response.status, json.loads(response.read())) == (HTTPStatus.OK, {"ok": True})
        assert not response.will_close  # kept alive ...
        assert sock.recv(1) == b""  # ... until it has been idle for the timeout
    assert_still_serving(quick_sandbox)


def test_cli_passes_the_idle_timeout() -> None:
    from airflow_provider_itnio.sandbox.__main__ import build_parser

    assert build_parser().parse_args(["--idle-timeout", "2.5"]).idle_timeout == 2.5
