"""
The browser suite's harness: ``airflow standalone`` as ``make airflow`` starts it (``scripts/airflow_local.py``)
with the sandbox and ``dags_examples/``, and a headless Chromium (the system's, through Playwright) logged in to its
UI. ``tests/e2e/browser/conftest.py`` provides the fixtures and skips the suite unless ``ITNIO_BROWSER_TESTS=1``.
Screenshots are written to ``$ITNIO_BROWSER_ARTIFACTS`` (``artifacts/browser``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from tests.support.paths import ROOT

ARTIFACTS = Path(os.environ.get("ITNIO_BROWSER_ARTIFACTS") or ROOT / "artifacts" / "browser")


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def airflow_local() -> ModuleType:
    """Return ``scripts/airflow_local.py`` (``make airflow``) as a module."""
    spec = importlib.util.spec_from_file_location("airflow_local", ROOT / "scripts" / "airflow_local.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalAirflow:
    """A running ``airflow standalone`` and the sandbox it talks to."""

    url: str
    home: Path
    env: dict[str, str]
    sandbox_url: str
    password: str
    _token: str | None = field(default=None, repr=False)

    def api_get(self, path: str) -> requests.Response:
        """
        Return the answer of ``GET /api/v2<path>`` as ``admin`` (a JWT from ``POST /auth/token``, fetched once).

        :param path: The path after ``/api/v2``, e.g. ``/dags/itnio_followup``.
        """
        if self._token is None:
            answer = requests.post(
                f"{self.url}/auth/token", json={"username": "admin", "password": self.password}, timeout=60
            )
            answer.raise_for_status()
            self._token = str(answer.json()["access_token"])
        return requests.get(f"{self.url}/api/v2{path}", headers={"Authorization": f"Bearer {self._token}"}, timeout=60)

    def dag_stored(self, dag_id: str) -> bool:
        """
        Return True once the DAG processor has stored ``dag_id`` (the REST API knows it).

        :param dag_id: The DAG's id.
        """
        answer = self.api_get(f"/dags/{dag_id}")
        if answer.status_code == 404:
            return False
        answer.raise_for_status()
        return True

    def parse_diagnosis(self) -> str:
        """Return what tells why a DAG is missing: the import errors the API knows and the DAG processor's log."""
        errors = self.api_get("/importErrors").text[-2000:]
        log = self.home / "airflow.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        processor = [line for line in lines if line.startswith("dag-processor")][-40:]
        return f"import errors: {errors}\nthe DAG processor's last lines:\n" + "\n".join(processor)

    def cli(self, *args: str) -> str:
        """
        Run ``airflow ARGS`` against this Airflow's home and return its output.

        :param args: The command's arguments.
        """
        done = subprocess.run(
            [str(airflow_local().BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def sandbox_messages(self) -> list[dict[str, Any]]:
        """Return the messages the sandbox accepted, oldest first."""
        answer = requests.get(f"{self.sandbox_url}/sandbox/messages", timeout=10)
        answer.raise_for_status()
        messages = answer.json()
        return list(messages["messages"] if isinstance(messages, dict) else messages)


@pytest.fixture(scope="session")
def local_airflow() -> Iterator[LocalAirflow]:
    """Start the sandbox and ``airflow standalone`` with ``dags_examples/`` (no connection yet); stop both after."""
    script = airflow_local()
    home = Path(tempfile.mkdtemp(prefix="itnio-browser-airflow-"))
    port = _free_port()
    env = script.build_env(home, ROOT / "dags_examples", port)
    # A task's supervisor reports its start to the API server (PATCH /execution/task-instances/<id>/run): 5 tries of
    # 5 s each by default. Once, on a 2-core machine running the stack suite at the same time, the API server
    # answered nothing for 56 s and the follow-up's first task failed before it started ("state attribute is
    # queued"); a longer timeout per try lets the run wait for a slow API server as a user's would.
    env["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"] = "60"
    log = home / "airflow.log"
    sandbox, sandbox_port = script.start_sandbox(home / "sandbox.port")
    airflow = None
    try:
        airflow = script.start_standalone(env, log)
        url = f"http://localhost:{port}"
        try:
            script.wait_for_api(f"{url}/api/v2/monitor/health", airflow, timeout=240)
        except RuntimeError as err:
            pytest.fail(f"{err}\n{log.read_text()[-4000:]}")
        password = None
        deadline = time.monotonic() + 60
        while password is None and time.monotonic() < deadline:
            password = script.read_password(home)
            time.sleep(0.5)
        assert password, "airflow standalone wrote no admin password"
        yield LocalAirflow(url, home, env, f"http://127.0.0.1:{sandbox_port}", password)
    finally:
        if airflow is not None:
            script.stop_group(airflow, "airflow standalone", first=signal.SIGINT)
        script.stop_group(sandbox, "sandbox", first=signal.SIGINT, grace=10)
        if (home / "airflow.log").exists():
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "airflow.log").write_bytes((home / "airflow.log").read_bytes())


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Return a headless Chromium (the system's ``/usr/bin/chromium``; Playwright downloads no browser)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure_chromium.sh` (make test-browser does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def page(browser: Any, local_airflow: LocalAirflow) -> Iterator[Any]:
    """Return a page logged in to the UI as ``admin`` (the simple auth manager's generated password)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # every wait is on a condition the test asserts; the deadline is for a busy 2-core machine (a dialog closing
    # after the API server answered took over 30 s there while the stack suite ran)
    context.set_default_timeout(120_000)
    page = context.new_page()
    page.goto(f"{local_airflow.url}/auth/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(local_airflow.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/" not in url)
    yield page
    context.close()


def screenshot(page: Any, name: str) -> Path:
    """
    Save a full-page screenshot as ``<artifacts>/<name>.png`` and return its path.

    :param page: The Playwright page.
    :param name: The file name without extension.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def connection_json(local_airflow: LocalAirflow, conn_id: str) -> dict[str, Any]:
    """
    Return a stored connection as ``airflow connections get -o json`` prints it (with its ``extra`` parsed).

    :param local_airflow: The running Airflow.
    :param conn_id: The connection id.
    """
    [conn] = json.loads(local_airflow.cli("connections", "get", conn_id, "--output", "json"))
    return {**conn, "extra": conn["extra_dejson"]}
