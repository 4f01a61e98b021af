"""Smoke test of the pieces of scripts/airflow_local.py (``make airflow``) that need no Airflow server."""

from __future__ import annotations

import importlib.util
import json
import signal
from pathlib import Path
from types import ModuleType

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
