"""
The 24-hour window's setup: a sandbox that pushes to a real API server with the receiver, and the connections.

:func:`env` (module-scoped, provided by ``tests/integration/conftest.py``) starts both and sets ``itnio_window``
(and ``itnio_window_unreachable``, whose receiver is a closed port) for the DAG runs of ``tests/dags/
itnio_window_dags.py``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_itnio.sandbox import Sandbox
from tests.support.airflow_home import SANDBOX_PHONES
from tests.support.receiver import AIRFLOW_2, needs_airflow_3
from tests.support.servers import api_server as api_server_process
from tests.support.servers import free_port, plugins_folder

CONN_ID = "itnio_window"


UNREACHABLE_CONN_ID = "itnio_window_unreachable"


WAIT = 30.0  # seconds: an upper bound for waits that end as soon as the condition holds


@dataclass
class Env:
    """The running setup: the sandbox, the API server's address and log, the metadata database, the token."""

    sandbox: Sandbox
    base_url: str
    log_path: Path
    engine: sa.engine.Engine
    token: str = field(repr=False)  # never in a failure report

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(sa.text(sql), params).mappings()]

    def customer_writes(self, customer: str, business_phone: str | None = None) -> None:
        """Simulate the customer writing (the sandbox pushes it) and wait until the receiver recorded it."""
        fields = {"business_phone": business_phone} if business_phone else {}
        pushed = self.sandbox.simulate_inbound(customer, "Where is my order?", **fields)
        deadline = time.monotonic() + WAIT
        while not self.rows("SELECT id FROM itnio_inbound_message WHERE message_id = :m", m=pushed["messageId"]):
            assert time.monotonic() < deadline, self.log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.1)

    def sent_to(self, recipient: str) -> list[dict[str, Any]]:
        return [m for m in self.sandbox.messages() if m["body"]["recipient"] == recipient]

    def window_requests(self) -> tuple[int, int]:
        """Return how many bulk (``POST .../windows``) and single (``GET .../window``) reads the access log shows."""
        text = self.log_path.read_text(errors="replace")
        return (
            len(re.findall(rf"/itnio/api/{CONN_ID}/windows\b", text)),
            len(re.findall(rf"/itnio/api/{CONN_ID}/window\?", text)),
        )


@pytest.fixture(scope="module")
def env(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Start the sandbox (pushing to the API server) and the API server; set both connections; stop them after."""
    if AIRFLOW_2:
        pytest.skip("the receiver needs Airflow 3.1+")
    home = tmp_path_factory.mktemp("itnio-window-server")
    plugins = plugins_folder(home)
    port, dead_port = free_port(), free_port()
    token = secrets.token_urlsafe(32)
    base_url = f"http://127.0.0.1:{port}"
    push_url = f"{base_url}/itnio/webhook/{CONN_ID}/{token}"
    with Sandbox(business_phones=SANDBOX_PHONES, push_url=push_url, push_time_scale=0.01) as sandbox:
        conn = json.loads(sandbox.conn_json())
        conn["extra"].update(webhook_token=token, receiver_url=base_url)
        unreachable = json.loads(sandbox.conn_json())
        unreachable["extra"].update(webhook_token=token, receiver_url=f"http://127.0.0.1:{dead_port}")
        connections = {
            f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(conn),
            f"AIRFLOW_CONN_{UNREACHABLE_CONN_ID.upper()}": json.dumps(unreachable),
        }
        os.environ.update(connections)  # the tasks run in this process (dag.test())
        log_path = home / "api-server.log"
        server_env = {
            **os.environ,
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        }
        engine = sa.create_engine(f"sqlite:///{airflow_db / 'airflow.db'}")
        try:
            with api_server_process(port, log_path, server_env):
                yield Env(sandbox, base_url, log_path, engine, token)
        finally:
            engine.dispose()
            for name in connections:
                os.environ.pop(name, None)
    assert token not in log_path.read_text(errors="replace")


__all__ = ["AIRFLOW_2", "CONN_ID", "UNREACHABLE_CONN_ID", "WAIT", "Env", "env", "needs_airflow_3"]
