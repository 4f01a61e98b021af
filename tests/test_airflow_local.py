"""Smoke test of the pieces of scripts/airflow_local.py (``make airflow``) that need no Airflow server."""

from __future__ import annotations

import importlib.util
import json
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

from tests.conftest import ROOT


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
    from tests.servers import free_port

    script = _script()
    port = free_port()
    output = tmp_path / "out.txt"
    with output.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "airflow_local.py"), "--port", str(port), "--home", str(tmp_path)],
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
        base = f"http://localhost:{port}"
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

        def api(method: str, path: str, **kwargs: Any) -> requests.Response:
            return requests.request(method, f"{base}/api/v2{path}", headers=headers, timeout=30, **kwargs)

        for dag_id in ("itnio_reschedule_on_reply", "itnio_appointment_confirm"):
            _wait_for(lambda d=dag_id: api("GET", f"/dags/{d}").status_code == 200, f"{dag_id} parsed", 120, process)
            assert api("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
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

        sandbox = re.search(r"Sandbox:\s+(http://127\.0\.0\.1:\d+)", printed).group(1)  # type: ignore[union-attr]

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
