"""ItnioHook: connection parsing, signing, transport and error mapping (against the real sandbox)."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest
import urllib3

from airflow_provider_itnio.errors import (
    ItnioApiError,
    ItnioConfigError,
    ItnioDeliveryUnknownError,
    ItnioTransportError,
    ItnioValidationError,
)
from airflow_provider_itnio.hooks.itnio import ItnioHook, SendResult, _normalise_base_url, sign
from airflow_provider_itnio.messages import Image, Template, Text


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: str | dict[str, Any]) -> ItnioHook:
    text = value if isinstance(value, str) else json.dumps(value)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", text)
    return ItnioHook(itnio_conn_id=conn_id)


# -- signing ------------------------------------------------------------------------------------------------


def test_sign_matches_the_vendors_published_vector() -> None:
    # From the vendor's account API page: key bDqJFiq9, secret 7bz1lzh9, timestamp 1630468800.
    assert sign("bDqJFiq9", "7bz1lzh9", "1630468800") == "05d7a50893e22a5c4bb3216ae3396c7c"


def test_sign_is_md5_of_the_concatenation_and_changes_with_each_part() -> None:
    base = sign("bDqJFiq9", "s3cr3t", "1630468800")
    assert base == "9f889720d09491a99b73102629bc4acd"
    assert sign("bDqJFiq9", "s3cr3t", "1630468801") != base
    assert sign("bDqJFiq8", "s3cr3t", "1630468800") != base
    assert sign("bDqJFiq9", "s3cr3u", "1630468800") != base


def test_headers_carry_key_timestamp_and_sign_never_the_secret(session_sandbox: Any) -> None:
    hook = ItnioHook()
    headers = hook._headers()
    assert headers["Api-Key"] == "sandbox-key"
    assert headers["Timestamp"].isdigit()
    assert headers["Sign"] == sign("sandbox-key", "sandbox-secret", headers["Timestamp"])
    assert "sandbox-secret" not in json.dumps(headers)
    assert "sandbox-secret" not in repr(hook.config)


# -- connection forms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "scheme", "expected"),
    [
        (None, None, None, "https://api.itniotech.com"),
        ("https://api.itniotech.com", None, None, "https://api.itniotech.com"),
        ("https://api.itniotech.com/", None, None, "https://api.itniotech.com"),
        ("https://api.itniotech.com/wa/", None, None, "https://api.itniotech.com"),
        ("https://api.itniotech.com/wa", None, None, "https://api.itniotech.com"),
        ("api.itniotech.com", None, None, "https://api.itniotech.com"),
        ("127.0.0.1", 8080, "http", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/wa/", None, None, "http://127.0.0.1:8080"),
        ("http://127.0.0.1", 8080, None, "http://127.0.0.1:8080"),
        ("http://127.0.0.1:9000", 8080, None, "http://127.0.0.1:9000"),  # the host's own port wins
        ("api.itniotech.com", 0, None, "https://api.itniotech.com"),  # the UI's "no port"
        ("HTTPS://api.itniotech.com/", None, None, "https://api.itniotech.com"),
        ("[::1]", 8080, "http", "http://[::1]:8080"),
        ("::1", 8080, "http", "http://[::1]:8080"),
        ("http://[::1]", 8080, None, "http://[::1]:8080"),
        ("http://[::1]:9000/wa", None, None, "http://[::1]:9000"),
        ("[2001:db8::7]/itnio/wa/", 443, None, "https://[2001:db8::7]:443/itnio"),
        ("https://gw.example.com/itnio", 8443, None, "https://gw.example.com:8443/itnio"),
        ("gw.example.com/itnio/wa/", 8443, None, "https://gw.example.com:8443/itnio"),
        ("http://gw.example.com:8080/itnio/", None, None, "http://gw.example.com:8080/itnio"),
    ],
)
def test_base_url_forms(host: str | None, port: int | None, scheme: str | None, expected: str) -> None:
    assert _normalise_base_url(host, port, scheme) == expected


def test_base_url_with_a_port_that_is_no_number_is_a_config_error() -> None:
    with pytest.raises(ItnioConfigError, match="invalid port"):
        _normalise_base_url("http://127.0.0.1:http", None, None)


def test_a_sandbox_on_ipv6_is_reached_through_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host and port fields as a user fills them in for a sandbox on ``[::1]``."""
    from airflow_provider_itnio.sandbox import Sandbox

    try:
        sandbox = Sandbox(host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        conn = {**json.loads(sandbox.conn_json()), "host": "[::1]", "port": sandbox.port}
        conn["extra"]["scheme"] = "http"
        result = _set_conn(monkeypatch, "itnio_ipv6", conn).send_text("15550100200", "hi")
        assert [m["messageId"] for m in sandbox.messages()] == [result.message_id]
    finally:
        sandbox.stop()


def test_connection_from_json_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _set_conn(
        monkeypatch,
        "itnio_json",
        {
            "conn_type": "itnio",
            "login": "KEY",
            "password": "SECRET",
            "host": "https://api.itniotech.com/wa/",
            "extra": {"app_id": "APP", "business_phone": "15550001111", "timeout": "12", "verify": "false"},
        },
    )
    cfg = hook.config
    assert (cfg.api_key, cfg.api_secret, cfg.app_id) == ("KEY", "SECRET", "APP")
    assert cfg.base_url == "https://api.itniotech.com"
    assert cfg.business_phone == "15550001111"
    assert cfg.timeout == 12.0
    assert cfg.verify is False
    assert hook.http.connection_pool_kw["cert_reqs"] == "CERT_NONE"


def test_connection_from_uri_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _set_conn(
        monkeypatch,
        "itnio_uri",
        "itnio://KEY:S%2Fecret@127.0.0.1:8080/?app_id=APP&business_phone=15550001111&scheme=http"
        "&verify=%2Fetc%2Fssl%2Fca.pem&proxy=http%3A%2F%2Fproxy%3A3128",
    )
    cfg = hook.config
    assert (cfg.api_key, cfg.api_secret, cfg.app_id) == ("KEY", "S/ecret", "APP")
    assert cfg.base_url == "http://127.0.0.1:8080"
    assert cfg.verify == "/etc/ssl/ca.pem"
    assert cfg.timeout == 30.0
    assert isinstance(hook.http, urllib3.ProxyManager)
    assert hook.http.proxy is not None and hook.http.proxy.url == "http://proxy:3128"
    assert hook.http.connection_pool_kw["ca_certs"] == "/etc/ssl/ca.pem"


def test_tls_verification_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _set_conn(
        monkeypatch,
        "itnio_tls",
        {"conn_type": "itnio", "login": "K", "password": "S", "extra": {"app_id": "A"}},
    )
    assert hook.config.verify is True
    assert hook.http.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
    assert hook.http.connection_pool_kw["ca_certs"]  # requests' env bundle or certifi's
    assert not isinstance(hook.http, urllib3.ProxyManager)
    assert hook.config.base_url == "https://api.itniotech.com"


@pytest.mark.parametrize(
    ("conn", "names"),
    [
        ({"conn_type": "itnio", "password": "S", "extra": {"app_id": "A"}}, "API Key (login)"),
        ({"conn_type": "itnio", "login": "K", "extra": {"app_id": "A"}}, "API Secret (password)"),
        ({"conn_type": "itnio", "login": "K", "password": "S"}, "'app_id'"),
        (
            {
                "conn_type": "itnio",
                "login": "K",
                "password": "S",
                "extra": {"app_id": "A", "timeout": "soon"},
            },
            "'timeout'",
        ),
    ],
)
def test_missing_connection_fields_name_the_field(
    monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any], names: str
) -> None:
    hook = _set_conn(monkeypatch, "itnio_bad", conn)
    with pytest.raises(ItnioConfigError, match=re.escape(names)) as info:
        _ = hook.config
    assert info.value.permanent


# -- sending against the sandbox ----------------------------------------------------------------------------


def test_send_returns_the_message_id_and_the_sandbox_got_the_body(sandbox: Any) -> None:
    hook = ItnioHook()
    result = hook.send("+1 (555) 010-0200", Text(body="héllo ✓"), reply_to="abc123")
    assert isinstance(result, SendResult)
    assert len(result.message_id) == 32 and int(result.message_id, 16) >= 0
    assert result.channel_type == 0 and isinstance(result.timestamp, int)
    [message] = sandbox.messages()
    assert message["messageId"] == result.message_id
    assert message["path"] == "/wa/custom/sendMsg"
    assert message["body"] == {
        "appId": "sandbox-app",
        "businessPhone": "15550001111",
        "recipient": "15550100200",
        "channelType": 0,
        "type": "text",
        "text": {"body": "héllo ✓"},
        "context": {"refMessageId": "abc123"},
    }
    assert message["headers"]["Content-Type"] == "application/json;charset=UTF-8"


def test_templates_go_to_the_template_endpoint(sandbox: Any) -> None:
    ItnioHook().send("15550100200", Template.with_body_parameters("order_update", "en_US", ["A-1", "shipped"]))
    [message] = sandbox.messages()
    assert message["path"] == "/wa/template/sendMsg"
    assert "type" not in message["body"]


def test_send_text_shortcut_and_business_phone_override(sandbox: Any) -> None:
    result = ItnioHook().send_text("15550100200", "hi", business_phone="91856321321")
    [message] = sandbox.messages()
    assert message["messageId"] == result.message_id
    assert message["body"]["businessPhone"] == "91856321321"


def test_one_keep_alive_session_serves_many_sends(sandbox: Any) -> None:
    hook = ItnioHook()
    pool = hook.get_conn()
    for n in range(5):
        hook.send_text("15550100200", f"n{n}")
    assert hook.get_conn() is pool
    connection_pool = pool.connection_from_url(sandbox.base_url)
    assert connection_pool.num_connections == 1  # five sends, one kept-alive connection
    assert connection_pool.num_requests == 5
    assert [m["body"]["text"]["body"] for m in sandbox.messages()] == ["n0", "n1", "n2", "n3", "n4"]


def test_bad_recipient_is_caught_before_any_request(sandbox: Any) -> None:
    with pytest.raises(ItnioValidationError) as info:
        ItnioHook().send("12-34", Image(link="https://example.com/a.png"))
    assert info.value.field == "recipient"
    assert info.value.status == "-71"
    assert sandbox.requests() == []


def test_api_status_becomes_an_api_error_with_code_and_reason(sandbox: Any) -> None:
    sandbox.fail_next(1, api_status="-68", reason="insufficient balance")
    with pytest.raises(ItnioApiError) as info:
        ItnioHook().send_text("15550100200", "hi")
    assert (info.value.status, info.value.reason) == ("-68", "insufficient balance")
    assert info.value.permanent and info.value.account_level


def test_unknown_status_keeps_code_and_reason_and_is_not_permanent(sandbox: Any) -> None:
    sandbox.fail_next(1, api_status="-4242", reason="system busy")
    with pytest.raises(ItnioApiError, match="-4242: system busy") as info:
        ItnioHook().send_text("15550100200", "hi")
    assert not info.value.permanent


def test_wrong_secret_surfaces_the_vendor_code(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = json.loads(sandbox.conn_json())
    conn["password"] = "not-the-secret"
    hook = _set_conn(monkeypatch, "itnio_wrong", conn)
    with pytest.raises(ItnioApiError) as info:
        hook.send_text("15550100200", "hi")
    assert info.value.status == "-1"
    assert "not-the-secret" not in str(info.value)
    assert sandbox.messages() == []


def test_http_503_is_retried_by_the_hook_and_sent_once(sandbox: Any) -> None:
    sandbox.fail_next(2, http_status=503)
    result = ItnioHook(retry_wait_max=0).send_text("15550100200", "hi")
    assert len(sandbox.requests()) == 3
    assert [m["messageId"] for m in sandbox.messages()] == [result.message_id]


def test_the_same_hook_still_retries_sends_after_test_connection(sandbox: Any) -> None:
    hook = ItnioHook(retry_wait_max=0)
    ok, _ = hook.test_connection()  # one try only, for the test
    assert ok
    sandbox.clear()
    sandbox.fail_next(1, http_status=503)
    result = hook.send_text("15550100200", "hi")  # the send gets its retries back
    assert len(sandbox.requests()) == 2  # the 503, then the send
    assert [m["messageId"] for m in sandbox.messages()] == [result.message_id]


def test_the_same_hook_still_retries_a_refused_send_after_test_connection(
    monkeypatch: pytest.MonkeyPatch, mocker: Any
) -> None:
    port = _closed_port()
    hook = _set_conn(
        monkeypatch,
        "itnio_refused_after_test",
        {
            "conn_type": "itnio",
            "login": "K",
            "password": "S",
            "host": f"http://127.0.0.1:{port}",
            "extra": {"app_id": "A", "business_phone": "15550001111"},
        },
    )
    hook.retry_wait_max = 0
    ok, message = hook.test_connection()
    assert not ok and "never reached the API" in message
    spy = mocker.spy(hook.http, "request")
    with pytest.raises(ItnioTransportError, match="never reached the API"):
        hook.send_text("15550100200", "hi")
    assert spy.call_count == hook.connect_retries == 3


def test_the_vendors_meaning_of_a_status_is_said_once() -> None:
    """The sandbox answers -1 with the reason "authentication error", which is also how the table starts."""
    from airflow_provider_itnio.errors import STATUS_CODES

    phrase, _, detail = STATUS_CODES["-1"].partition(" (")
    text = str(ItnioApiError("-1", phrase))
    assert text.count(phrase) == 1
    assert text == f"itniotech API error -1: {STATUS_CODES['-1']}"
    assert str(ItnioApiError("-1", "")).count(phrase) == 1
    # a reason that says something else keeps the table's meaning in parentheses
    assert str(ItnioApiError("-1", "Sign mismatch")) == f"itniotech API error -1: Sign mismatch ({STATUS_CODES['-1']})"
    assert detail.rstrip(")") in str(ItnioApiError("-1", "Authentication Error: bad Sign"))


def test_dropped_connection_is_never_resent(sandbox: Any) -> None:
    sandbox.fail_next(1, drop=True)
    with pytest.raises(ItnioDeliveryUnknownError, match="may have been delivered") as info:
        ItnioHook(retry_wait_max=0).send_text("15550100200", "hi")
    assert info.value.permanent
    assert len(sandbox.requests()) == 1


def test_read_timeout_is_never_resent(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = json.loads(sandbox.conn_json())
    conn["extra"]["timeout"] = 0.3
    hook = _set_conn(monkeypatch, "itnio_slow", conn)
    sandbox.fail_next(1, slow=1.0)
    with pytest.raises(ItnioDeliveryUnknownError, match="ReadTimeout"):
        hook.send_text("15550100200", "hi")
    assert len(sandbox.requests()) == 1


def test_http_500_is_ambiguous_and_not_resent(sandbox: Any) -> None:
    sandbox.fail_next(1, http_status=500)
    with pytest.raises(ItnioDeliveryUnknownError, match="HTTP 500"):
        ItnioHook(retry_wait_max=0).send_text("15550100200", "hi")
    assert len(sandbox.requests()) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch, mocker: Any) -> None:
    port = _closed_port()
    hook = _set_conn(
        monkeypatch,
        "itnio_refused",
        {
            "conn_type": "itnio",
            "login": "K",
            "password": "S",
            "host": f"http://127.0.0.1:{port}",
            "extra": {"app_id": "A", "business_phone": "15550001111"},
        },
    )
    hook.connect_retries = 3
    hook.retry_wait_max = 0
    spy = mocker.spy(hook.http, "request")
    with pytest.raises(ItnioTransportError, match="never reached the API"):
        hook.send_text("15550100200", "hi")
    assert spy.call_count == 3


def test_refused_then_up_sends_once(sandbox: Any, mocker: Any) -> None:
    hook = ItnioHook(retry_wait_max=0)
    real_request = hook.http.request
    calls = {"n": 0}

    def flaky_request(method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        calls["n"] += 1
        if calls["n"] == 1:  # the first try meets a closed port, as when the API restarts
            return real_request(method, f"http://127.0.0.1:{_closed_port()}/wa/custom/sendMsg", **kwargs)
        return real_request(method, url, **kwargs)

    mocker.patch.object(hook.http, "request", side_effect=flaky_request)
    result = hook.send_text("15550100200", "hi")
    assert calls["n"] == 2
    assert [m["messageId"] for m in sandbox.messages()] == [result.message_id]


def test_missing_business_phone_is_a_config_error(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    conn = json.loads(sandbox.conn_json())
    conn["extra"].pop("business_phone")
    hook = _set_conn(monkeypatch, "itnio_nophone", conn)
    with pytest.raises(ItnioConfigError, match="business_phone"):
        hook.send_text("15550100200", "hi")
    assert sandbox.requests() == []
