"""
The production-like stack (``scripts/stack.py``: PostgreSQL, Redis, Airflow with CeleryExecutor) seen from a test:
its REST API, the sandbox's control API, waits, and the scenarios' DAG folder. The ``stack`` fixture is in
``tests/e2e/stack/conftest.py``.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from tests.support.paths import TESTS

#: The scenarios' DAGs (a bundle of the stack: ``scripts/stack.py``).
DAGS = TESTS / "e2e" / "stack" / "dags"


def load_module(name: str, path: Path) -> ModuleType:
    """
    Import a file as a module (``scripts/stack.py``, a scenario DAG file).

    :param name: The module's name.
    :param path: The file.
    """
    if str(path.parent) not in sys.path:  # as Airflow does for a bundle: its DAG files import their neighbours
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Stack:
    """
    A running stack, through its REST API and the sandbox's control API.

    :param module: ``scripts/stack.py``.
    :param state: Its state (ports, generated passwords).
    """

    def __init__(self, module: ModuleType, state: dict[str, Any]) -> None:
        self.module = module
        self.state = state
        self.api_url: str = module.api_url(state)
        self.sandbox_url: str = module.sandbox_url(state)
        self._token: str | None = None

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """
        Call the REST API (``/api/v2`` + ``path``) with a JWT.

        :param method: The HTTP method.
        :param path: The path after ``/api/v2``.
        :param kwargs: Passed to :func:`requests.request`.
        """
        if self._token is None:
            self._token = self.module.api_token(self.state)
        headers = {"Authorization": f"Bearer {self._token}"}
        return requests.request(method, f"{self.api_url}/api/v2{path}", headers=headers, timeout=60, **kwargs)

    def sandbox(self, method: str, path: str, **kwargs: Any) -> Any:
        """
        Call the sandbox's control API and return its JSON.

        :param method: The HTTP method.
        :param path: The path, e.g. ``/sandbox/messages``.
        :param kwargs: Passed to :func:`requests.request`.
        """
        answer = requests.request(method, f"{self.sandbox_url}{path}", timeout=120, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def wait(self, condition: Callable[[], Any], what: str, timeout: float, interval: float = 2.0) -> Any:
        """
        Return the first truthy value of ``condition()``; fail the test after ``timeout`` seconds.

        :param condition: A callable without arguments.
        :param what: What is awaited.
        :param timeout: Seconds.
        :param interval: Seconds between checks.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(interval)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """
        Unpause a DAG once parsed, trigger a run and return its run id.

        :param dag_id: The DAG.
        :param conf: The run's ``conf``.
        """
        self.wait(lambda: self.api("GET", f"/dags/{dag_id}").status_code == 200, f"DAG {dag_id} parsed", 180)
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        answer = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        answer.raise_for_status()
        return str(answer.json()["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        """
        Return a DAG run once it has finished.

        :param dag_id: The DAG.
        :param run_id: The run.
        :param timeout: Seconds.
        """

        def finished() -> dict[str, Any] | None:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
            return run if run.get("state") in ("success", "failed") else None

        return dict(self.wait(finished, f"run {dag_id}/{run_id} to finish", timeout))
