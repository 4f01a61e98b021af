"""
Every vendor example, sent by its operator through a real Airflow run (``dag.test()``), reaches the
sandbox as exactly the body in ``golden/`` (parsed JSON equality).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_itnio.messages import CUSTOM_ENDPOINT, TEMPLATE_ENDPOINT
from tests.support.airflow_home import GOLDEN_APP_IDS, SANDBOX_PHONES
from tests.support.airflow_runs import run_dag, xcom_value
from tests.support.paths import GOLDEN_DIR, SHARED_GOLDEN_DIR

GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.json"))


def test_golden_copy_matches_the_shared_spec() -> None:
    assert GOLDEN_FILES
    if not SHARED_GOLDEN_DIR.is_dir():
        pytest.skip("shared/spec/golden is not beside this checkout")
    shared = {p.name: json.loads(p.read_text()) for p in SHARED_GOLDEN_DIR.glob("*.json")}
    assert shared == {p.name: json.loads(p.read_text()) for p in GOLDEN_FILES}


@pytest.fixture(scope="module")
def golden_run(airflow_db: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Run the ``itnio_golden`` DAG once, each appId's tasks against a sandbox of that appId."""
    from airflow_provider_itnio.sandbox import Sandbox

    with ExitStack() as stack:
        sandboxes = {}
        for app_id in GOLDEN_APP_IDS:
            sandbox = stack.enter_context(Sandbox(app_id=app_id, business_phones=SANDBOX_PHONES))
            os.environ[f"AIRFLOW_CONN_ITNIO_GOLDEN_{app_id.upper()}"] = sandbox.conn_json()
            sandboxes[app_id] = sandbox
        dag_run = run_dag("itnio_golden")
        received = {m["messageId"]: m for s in sandboxes.values() for m in s.messages()}
        yield dag_run, received
        for app_id in GOLDEN_APP_IDS:
            os.environ.pop(f"AIRFLOW_CONN_ITNIO_GOLDEN_{app_id.upper()}", None)


def test_golden_run_succeeded(golden_run: tuple[Any, dict[str, Any]]) -> None:
    dag_run, received = golden_run
    assert str(dag_run.state) == "success"
    assert len(received) == len(GOLDEN_FILES)


@pytest.mark.parametrize("golden", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_operator_reproduces_golden_body(golden: Path, golden_run: tuple[Any, dict[str, Any]]) -> None:
    dag_run, received = golden_run
    message_id = xcom_value(dag_run, golden.stem)
    assert isinstance(message_id, str) and len(message_id) == 32, message_id
    message = received[message_id]
    assert message["body"] == json.loads(golden.read_text(encoding="utf-8"))
    # the spec: a template body has a ``template`` object and goes to the template endpoint, the rest to custom
    expected_path = TEMPLATE_ENDPOINT if "template" in message["body"] else CUSTOM_ENDPOINT
    assert message["path"] == expected_path
