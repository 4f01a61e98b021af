"""
``ItnioHook.test_connection()`` (the connection form's *Test* button, ``airflow connections test``) against
the real sandbox: one signed call to the read-only ``/wa/queryBusinessPhoneInfo``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_itnio.hooks.itnio import QUERY_PHONE_INFO_PATH, ItnioHook
from tests.support.servers import free_port

CONN_ID = "itnio_conn_test"
WRONG_SECRET = "not-the-sandbox-secret"


def _conn(sandbox: Any, **changes: Any) -> dict[str, Any]:
    conn = json.loads(sandbox.conn_json())
    extra = {**conn["extra"], **changes.pop("extra", {})}
    return {**conn, **changes, "extra": extra}


def _test(monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any]) -> tuple[bool, str]:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    ok, message = ItnioHook(itnio_conn_id=CONN_ID).test_connection()
    assert conn["password"] not in message
    assert "sandbox-secret" not in message
    return ok, message


def test_a_good_connection_reports_the_phone_its_status_tier_and_quality(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, message = _test(monkeypatch, _conn(sandbox))
    assert ok is True
    assert message == (
        f"Connected to {sandbox.base_url}, app {sandbox.app_id}: business phone 15550001111 (+1 555-000-1111) is "
        "CONNECTED, messaging tier TIER_1K, quality rating GREEN."
    )
    # one signed, read-only request; nothing sent, nothing charged
    [request] = sandbox.requests()
    assert request["path"] == QUERY_PHONE_INFO_PATH
    assert request["status"] == "0"
    assert request["body"]["params"] == {"appIds": [sandbox.app_id], "phoneNumbers": ["15550001111"]}
    assert sandbox.messages() == []


@pytest.mark.parametrize(("status", "name"), [(3, "BANNED"), (4, "RESTRICTED"), (8, "DISCONNECTED"), (0, "PENDING")])
def test_a_phone_that_cannot_send_is_named_with_its_status_and_a_warning(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch, status: int, name: str
) -> None:
    sandbox.set_phone_status("15550001111", status)
    ok, message = _test(monkeypatch, _conn(sandbox))
    assert ok is True  # key, secret, app and phone are right: the connection itself works
    assert f"business phone 15550001111 (+1 555-000-1111) is {name}," in message
    assert message.endswith("Warning: 15550001111 cannot send until its status is CONNECTED (sends are answered -97).")


def test_without_a_business_phone_every_phone_of_the_app_is_listed(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = _conn(sandbox)
    del conn["extra"]["business_phone"]
    ok, message = _test(monkeypatch, conn)
    assert ok is True
    for phone in ("15550001111", "91856321321", "62822922299527"):
        assert f"business phone {phone} (" in message
    assert "Warning" not in message


@pytest.mark.parametrize(
    "changes",
    [{"password": WRONG_SECRET}, {"login": "not-the-sandbox-key"}],
    ids=["wrong-secret", "wrong-key"],
)
def test_bad_credentials_fail_with_the_vendors_code_and_reason(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any]
) -> None:
    ok, message = _test(monkeypatch, _conn(sandbox, **changes))
    assert ok is False
    assert "itniotech API error -1: authentication error" in message
    assert message.endswith("Check the API Key (login) and API Secret (password).")
    assert [r["status"] for r in sandbox.requests()] == ["-1"]


def test_a_wrong_secret_says_each_phrase_once(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_itnio.errors import STATUS_CODES

    ok, message = _test(monkeypatch, _conn(sandbox, password=WRONG_SECRET))
    assert ok is False
    phrase, _, detail = STATUS_CODES["-1"].partition(" (")
    assert message.count(phrase) == 1, message
    assert message.count(detail) == 1, message
    # sentences: the API's error ends with a full stop before the hint
    assert re.search(r"[a-z)\]]\. Check the API Key \(login\) and API Secret \(password\)\.$", message), message


@pytest.mark.parametrize("written", ["+1 555 000 1111", "+1 (555) 000-1111", "1-555-000-1111", 15550001111])
def test_a_business_phone_with_formatting_is_found_like_sends_find_it(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch, written: str | int
) -> None:
    """The form saves the number as typed; sends normalise it, so the test must too."""
    ok, message = _test(monkeypatch, _conn(sandbox, extra={"business_phone": written}))
    assert ok is True, message
    assert "business phone 15550001111 (+1 555-000-1111) is CONNECTED" in message
    [request] = sandbox.requests()
    assert request["body"]["params"]["phoneNumbers"] == ["15550001111"]
    # and a send with the same connection uses the same number
    ItnioHook(itnio_conn_id=CONN_ID).send_text("15550100200", "hi")
    assert sandbox.messages()[0]["body"]["businessPhone"] == "15550001111"


def test_a_business_phone_that_is_no_number_fails_before_any_request(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, message = _test(monkeypatch, _conn(sandbox, extra={"business_phone": "call me"}))
    assert ok is False
    assert message.startswith("The 'business_phone' extra is not a phone number the API accepts: businessPhone")
    assert sandbox.requests() == []


def test_an_unknown_app_id_fails_with_the_vendors_code(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = _test(monkeypatch, _conn(sandbox, extra={"app_id": "NoSuchApp"}))
    assert ok is False
    assert "itniotech API error -2: appId not found for this key" in message
    assert "Check the 'app_id' extra" in message


def test_an_unknown_business_phone_fails(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = _test(monkeypatch, _conn(sandbox, extra={"business_phone": "15559999999"}))
    assert ok is False
    assert message == (
        f"Signed in to {sandbox.base_url}, app {sandbox.app_id}, but the app has no business phone 15559999999 "
        "(the API would answer -96 to a send); check the 'business_phone' extra."
    )


def test_a_missing_app_id_fails_before_any_request(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = _conn(sandbox)
    del conn["extra"]["app_id"]
    ok, message = _test(monkeypatch, conn)
    assert ok is False
    assert "the extra field 'app_id' is missing" in message
    assert sandbox.requests() == []


def test_an_unreachable_host_fails_after_one_quick_try(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    port = free_port()  # nothing listens there: connection refused
    started = time.monotonic()
    ok, message = _test(monkeypatch, _conn(sandbox, host=f"http://127.0.0.1:{port}"))
    assert ok is False
    # what a person can act on, not urllib3's internals (_TrackedHTTPConnection(host=..., port=...): ...)
    assert message == f"The request never reached the API: cannot connect to 127.0.0.1:{port}: Connection refused."
    assert time.monotonic() - started < 1  # no retry backoff (three tries would wait 0.5 s + 1 s)


def test_a_busy_api_is_tried_once_only(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.fail_next(1, http_status=503, reason="maintenance")
    ok, message = _test(monkeypatch, _conn(sandbox))
    assert ok is False
    assert "itniotech API error HTTP 503" in message
    assert len(sandbox.requests()) == 1
    # and the hook's own retries are back for the sends that follow
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(_conn(sandbox)))
    hook = ItnioHook(itnio_conn_id=CONN_ID)
    hook.test_connection()
    assert hook.connect_retries == 3


def test_a_vendor_status_is_passed_on_with_its_reason(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.fail_next(1, api_status="-16", reason="timestamp expires")
    ok, message = _test(monkeypatch, _conn(sandbox))
    assert ok is False
    assert "itniotech API error -16: timestamp expires" in message
    assert message.endswith("check this machine's clock.")


# -- the CLI ------------------------------------------------------------------------------------------------


def _cli(conn: dict[str, Any], *args: str, enabled: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRFLOW_CONN_ITNIO_DEFAULT": json.dumps(conn)}
    if enabled:
        env["AIRFLOW__CORE__TEST_CONNECTION"] = "Enabled"
    else:
        env.pop("AIRFLOW__CORE__TEST_CONNECTION", None)
    return subprocess.run(
        [sys.executable, "-m", "airflow", "connections", "test", "itnio_default", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow  # runs the airflow CLI in a subprocess
def test_airflow_connections_test_cli(airflow_db: Path, sandbox: Any) -> None:
    """``airflow connections test itnio_default`` as a user runs it: success, failure, disabled."""
    good = _cli(_conn(sandbox), "--verbose")
    assert good.returncode == 0, good.stderr
    assert "Connection success!" in good.stdout
    # --verbose lets the hook's report through (the CLI silences logging otherwise)
    assert "is CONNECTED, messaging tier TIER_1K, quality rating GREEN." in good.stdout + good.stderr

    bad = _cli(_conn(sandbox, password=WRONG_SECRET))
    assert "Connection failed!" in bad.stdout
    assert "itniotech API error -1: authentication error" in bad.stdout
    assert WRONG_SECRET not in bad.stdout + bad.stderr
    assert [r["status"] for r in sandbox.requests()] == ["0", "-1"]

    disabled = _cli(_conn(sandbox), enabled=False)
    assert disabled.returncode == 1
    assert "Testing connections is disabled" in disabled.stdout
    assert len(sandbox.requests()) == 2


def test_a_secret_echoed_back_by_the_api_is_masked(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.fail_next(1, api_status="-1", reason=f"Sign does not match secret {sandbox.api_secret}")
    ok, message = _test(monkeypatch, _conn(sandbox))  # _test asserts the secret is not in the message
    assert ok is False
    assert "Sign does not match secret ***" in message
