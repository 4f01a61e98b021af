"""Smoke test of the pieces of scripts/airflow_local.py (``make airflow``) that need no Airflow server."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
import requests

from tests.support.paths import ROOT


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("airflow_local", ROOT / "scripts" / "airflow_local.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sandbox_process_connection_and_stop(tmp_path: Path) -> None:
    script = _script()
    process, port = script.start_sandbox(tmp_path / "sandbox.port")
    try:
        conn = json.loads(script.sandbox_conn_json(port))
        assert conn["conn_type"] == "itnio" and conn["host"] == f"http://127.0.0.1:{port}"
        assert requests.get(f"{conn['host']}/sandbox/health", timeout=5).status_code == 200
    finally:
        script.stop_group(process, "sandbox", first=signal.SIGINT, grace=10)
    assert process.returncode == 0  # the sandbox's clean exit on SIGINT


def test_env_and_password(tmp_path: Path) -> None:
    script = _script()
    env = script.build_env(tmp_path, tmp_path / "dags", 8123)
    assert env["AIRFLOW_HOME"] == str(tmp_path)
    assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"
    assert env["AIRFLOW__API__PORT"] == "8123"
    assert "AIRFLOW_CONN_ITNIO_DEFAULT" not in env  # the connection lives in the metadata database
    assert script.read_password(tmp_path) is None
    (tmp_path / script.PASSWORD_FILE).write_text('{"admin": "s3cret"}')
    assert script.read_password(tmp_path) == "s3cret"


def test_the_ui_listens_on_loopback_with_its_base_url_and_the_cli_line_reaches_the_same_airflow(tmp_path: Path) -> None:
    """
    ``make airflow`` prints an admin login: the API server listens on loopback unless told otherwise, and
    ``[api] base_url`` is the address printed (approval messages link to it). The printed CLI line, pasted in a
    shell, gives the Airflow CLI the same home and ``test_connection`` (``airflow connections test`` works).
    """
    script = _script()
    env = script.build_env(tmp_path, tmp_path / "dags", 8123)
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8123"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert script.build_env(tmp_path, tmp_path / "dags", 8123, "0.0.0.0")["AIRFLOW__API__HOST"] == "0.0.0.0"
    line = script.cli_env_line(env)
    assert "\n" not in line and line.startswith("export ")
    shell = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    done = subprocess.run(
        [
            "bash",
            "-c",
            f"{line} && {sys.executable} -m airflow config get-value core test_connection "
            f"&& {sys.executable} -m airflow config get-value api base_url && echo $AIRFLOW_HOME",
        ],
        env=shell,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["Enabled", "http://127.0.0.1:8123", str(tmp_path)]
    printed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "airflow_local.py"), "--print-env", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert printed == script.cli_env_line(script.build_env(tmp_path, ROOT / "dags_examples", 8080))


def test_the_sandbox_gets_the_documented_stable_port_or_says_why_not(tmp_path: Path) -> None:
    """The same port at every start (the sandbox page's port); when it is taken, a clear message and a free one."""
    script = _script()
    sandbox_page = (ROOT / "docs" / "sandbox.md").read_text(encoding="utf-8").split("\n## Running it\n", 1)[1]
    assert f"--port {script.SANDBOX_PORT}" in sandbox_page.split("\n## ", 1)[0]
    from tests.support.servers import free_port

    port = free_port()  # another port than 8765, which a person's `make airflow` may hold on this machine
    assert script.sandbox_port_to_use(port) == (port, None)
    process, listening = script.start_sandbox(tmp_path / "sandbox.port", port=port)
    try:
        assert listening == port
        requests.get(f"http://127.0.0.1:{port}/sandbox/health", timeout=5).raise_for_status()
        fallback, message = script.sandbox_port_to_use(port)  # now taken, by that sandbox
        assert fallback == 0 and message is not None
        assert f"Port {port} on 127.0.0.1 is taken" in message and "--sandbox-port" in message
    finally:
        script.stop_group(process, "sandbox", first=signal.SIGINT, grace=10)


def test_the_connection_carries_a_webhook_token_and_the_plugin_is_loaded(tmp_path: Path) -> None:
    script = _script()
    conn = json.loads(script.sandbox_conn_json(8765, "tok-1"))
    assert conn["extra"]["webhook_token"] == "tok-1"
    assert "webhook_token" not in json.loads(script.sandbox_conn_json(8765))["extra"]
    assert script.webhook_url(8080, "tok-1") == "http://127.0.0.1:8080/itnio/webhook/itnio_default/tok-1"
    registered = "itnio_webhook" in {ep.name for ep in metadata.entry_points(group="airflow.plugins")}
    written = script.ensure_webhook_plugin(tmp_path)
    if registered:
        assert written is None and not (tmp_path / "plugins").exists()
    else:  # an editable install made before the entry point existed: the home's plugins folder loads it
        assert written == tmp_path / "plugins" / "itnio_webhook_plugin.py"
        if metadata.version("apache-airflow").startswith("2."):  # no receiver there (make airflow runs 3.3)
            assert "ItnioWebhookPlugin" in written.read_text()
        else:
            namespace: dict[str, object] = {}
            exec(written.read_text(), namespace)  # what Airflow's plugin loader runs
            assert getattr(namespace["ItnioWebhookPlugin"], "name", None) == "itnio_webhook"


class _Receiver(BaseHTTPRequestHandler):
    """Record each POST (path and JSON body) and answer 200, as the webhook receiver does."""

    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true, "duplicate": false}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_sandbox_pushes_to_the_webhook_and_the_printed_command_simulates_a_customer(tmp_path: Path) -> None:
    script = _script()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    process, port = script.start_sandbox(tmp_path / "sandbox.port")
    try:
        token = "t0ken-" + "x" * 30
        script.point_pushes(port, f"http://127.0.0.1:{server.server_port}/itnio/webhook/itnio_default/{token}")
        config = requests.get(f"http://127.0.0.1:{port}/sandbox/config", timeout=5).json()
        assert token not in json.dumps(config)  # shown redacted
        command = script.inbound_command(port, **{"from": script.CUSTOMER, "text": "Hi there"})
        assert command.startswith("curl ")
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30, check=True)
        pushed = json.loads(done.stdout)
        deadline = time.monotonic() + 30
        while not _Receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _Receiver.received, "the sandbox pushed nothing to the receiver within 30 s"
        [(path, body)] = _Receiver.received
        assert path == f"/itnio/webhook/itnio_default/{token}"
        assert body == pushed
        assert (body["eventType"], body["from"]["phone"]) == ("up-message-event", script.CUSTOMER)
        assert body["message"]["text"]["body"] == "Hi there"
        with pytest.raises(RuntimeError, match="did not take the push address"):
            script.point_pushes(port, "not a url")
    finally:
        script.stop_group(process, "sandbox", first=signal.SIGINT, grace=10)
        server.shutdown()
        server.server_close()


def _non_loopback_address() -> str | None:
    """Return this machine's address on its default route (a UDP socket's, no packet sent), or None."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the interface
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _wait_for(condition: Any, what: str, timeout: float, process: subprocess.Popen[str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"make airflow exited with {process.returncode} while waiting for {what}")
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.api_server
@pytest.mark.slow
@pytest.mark.skipif(
    metadata.version("apache-airflow").startswith("2."), reason="make airflow runs Airflow 3 (the receiver needs 3.1+)"
)
def test_make_airflow_a_simulated_reschedule_tap_starts_the_reply_dag(tmp_path: Path) -> None:
    """The whole script: the printed commands make a customer's tap start ``itnio_reschedule_on_reply``."""
    from tests.support.servers import free_port

    script = _script()
    port = free_port()
    output = tmp_path / "out.txt"
    with output.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "airflow_local.py"),
                *("--port", str(port), "--sandbox-port", str(free_port()), "--home", str(tmp_path)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        _wait_for(lambda: "Ctrl-C stops" in output.read_text(), "the login to be printed", 240, process)
        printed = output.read_text()
        password = re.search(r"Login:\s+admin / (\S+)", printed).group(1)  # type: ignore[union-attr]
        commands = [line.strip() for line in printed.splitlines() if line.strip().startswith("curl ")]
        assert len(commands) == 2 and "<messageId>" in commands[1], printed
        base = f"http://127.0.0.1:{port}"
        assert f"Airflow UI:  {base}  (listening on this machine only)" in printed  # [api] base_url, loopback
        assert "export AIRFLOW_HOME=" in printed and "AIRFLOW__CORE__TEST_CONNECTION=Enabled" in printed
        assert "Approvals on WhatsApp" in printed and "itnio_refund_approval" in printed
        address = _non_loopback_address()
        if address is not None:  # the admin login on screen must not open the UI to the network
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://{address}:{port}/api/v2/monitor/health", timeout=5)
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

        def api(method: str, path: str, **kwargs: Any) -> requests.Response:
            return requests.request(method, f"{base}/api/v2{path}", headers=headers, timeout=30, **kwargs)

        for dag_id in ("itnio_reschedule_on_reply", "itnio_appointment_confirm", "itnio_followup"):
            _wait_for(lambda d=dag_id: api("GET", f"/dags/{d}").status_code == 200, f"{dag_id} parsed", 120, process)
            assert api("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        sandbox = re.search(r"Sandbox:\s+(http://127\.0\.0\.1:\d+)", printed).group(1)  # type: ignore[union-attr]

        # The quick start's first invitation: the follow-up, to a customer who never wrote (window closed, which the
        # receiver knows): each message goes out as its approved template, and none is pushed back "failed".
        followup = api("POST", "/dags/itnio_followup/dagRuns", json={"logical_date": None}).json()["dag_run_id"]
        followup_path = f"/dags/itnio_followup/dagRuns/{followup}"
        _wait_for(lambda: api("GET", followup_path).json()["state"] == "success", "the follow-up run", 180, process)
        sent = requests.get(f"{sandbox}/sandbox/messages", timeout=10).json()
        sent = sent["messages"] if isinstance(sent, dict) else sent
        assert [m["body"].get("template", {}).get("name") for m in sent] == [
            "order_thank_you",
            "order_invoice",
            "order_rating",
        ], sent

        def pushed() -> list[dict[str, Any]]:
            answer = requests.get(f"{sandbox}/sandbox/pushes", timeout=10).json()
            return list(answer["pushes"] if isinstance(answer, dict) else answer)

        followup_ids = {m["messageId"] for m in sent}
        _wait_for(
            lambda: {p["messageId"] for p in pushed() if p.get("status") == "read"} >= followup_ids,
            "the templates read",
            60,
            process,
        )
        assert not [p for p in pushed() if p.get("messageId") in followup_ids and p.get("status") == "failed"]
        requests.delete(f"{sandbox}/sandbox/messages", timeout=10)

        subprocess.run(shlex.split(commands[0]), capture_output=True, timeout=30, check=True)  # "Hi": the window
        run_id = api("POST", "/dags/itnio_appointment_confirm/dagRuns", json={"logical_date": None}).json()[
            "dag_run_id"
        ]
        run_path = f"/dags/itnio_appointment_confirm/dagRuns/{run_id}"
        _wait_for(lambda: api("GET", run_path).json()["state"] == "success", "the confirmation run", 120, process)
        xcom = f"{run_path}/taskInstances/ask_keep_or_reschedule/xcomEntries/return_value"
        buttons = api("GET", xcom, params={"deserialize": 1}).json()["value"]
        done = subprocess.run(
            shlex.split(commands[1].replace("<messageId>", buttons)), capture_output=True, timeout=30, check=True
        )
        tap = json.loads(done.stdout)["messageId"]

        def answered() -> list[dict[str, Any]]:
            messages = requests.get(f"{sandbox}/sandbox/messages", timeout=10).json()
            messages = messages["messages"] if isinstance(messages, dict) else messages
            return [m for m in messages if m["body"].get("context") == {"refMessageId": tap}]

        (slots,) = _wait_for(answered, "the list of slots quoting the tap", 120, process)
        assert slots["body"]["interactive"]["type"] == "list"
        runs = api("GET", "/dags/itnio_reschedule_on_reply/dagRuns").json()["dag_runs"]
        assert any(r["run_type"] == "asset_triggered" and r["state"] in ("running", "success") for r in runs), runs
        assert f"http://127.0.0.1:{port}/itnio/webhook/itnio_default/*** (the receiver)" in printed  # token hidden
    finally:
        script.stop_group(process, "make airflow", first=signal.SIGINT, grace=60)  # type: ignore[arg-type]
    assert process.returncode == 0
