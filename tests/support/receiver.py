"""
A real ``airflow api-server`` with the webhook receiver, for the modules that push to it.

:func:`server` (module-scoped: one server per module that asks for it) runs on the session's Airflow home, with the
connections of :data:`SERVER_CONNECTIONS` in its environment; :func:`scheduled` adds the test DAGs scheduled on the
receiver's assets (``tests/dags/itnio_webhook_assets.py``, ``itnio_webhook_narrowed.py``). ``tests/integration/
conftest.py`` provides both fixtures. Airflow 2 has no API server: :data:`needs_airflow_3` skips there.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.support.pushes import APP_ID
from tests.support.servers import api_server as api_server_process
from tests.support.servers import free_port, plugins_folder

AIRFLOW_2 = metadata.version("apache-airflow").startswith("2.")


TOKEN = secrets.token_urlsafe(32)


OTHER_TOKEN = secrets.token_urlsafe(32)


CONN_ID = "itnio_webhook_test"


#: Connections the server reads from its environment: the receiver's, one of another type, one without a token.
SERVER_CONNECTIONS = {
    CONN_ID: {
        "conn_type": "itnio",
        "login": "key",
        "password": "secret",
        "extra": {"app_id": APP_ID, "webhook_token": TOKEN},
    },
    "not_itnio_webhook": {"conn_type": "http", "extra": {"app_id": APP_ID, "webhook_token": OTHER_TOKEN}},
    "itnio_without_token": {"conn_type": "itnio", "extra": {"app_id": APP_ID}},
}


TABLES = ("itnio_message_status", "itnio_status_history", "itnio_inbound_message")


needs_airflow_3 = pytest.mark.skipif(AIRFLOW_2, reason="the receiver needs Airflow 3.1+ (Airflow 2 has no API server)")


class Server:
    """The running API server: its base URL, its log file and the metadata database."""

    def __init__(self, base_url: str, log_path: Path, engine: sa.engine.Engine) -> None:
        self.base_url = base_url
        self.log_path = log_path
        self.engine = engine

    def url(self, conn_id: str = CONN_ID, token: str = TOKEN) -> str:
        return f"{self.base_url}/itnio/webhook/{conn_id}/{token}"

    def push(self, body: Any, *, conn_id: str = CONN_ID, token: str = TOKEN, **kwargs: Any) -> requests.Response:
        if isinstance(body, dict | list):
            kwargs["json"] = body
        else:
            kwargs["data"] = body
        return requests.post(self.url(conn_id, token), timeout=30, **kwargs)

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            return {
                table: int(connection.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
                for table in TABLES
            }

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(sa.text(sql), params).mappings()]


def server_env(home: Path, **options: str) -> dict[str, str]:
    """
    Return the environment of a test API server with the receiver (the session's database and connections).

    :param home: A folder of its own (its plugins folder goes there).
    :param options: More environment variables, e.g. ``AIRFLOW__ITNIO__...`` options.
    """
    return {
        **os.environ,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder(home)),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        **{f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn) for conn_id, conn in SERVER_CONNECTIONS.items()},
        **options,
    }


@pytest.fixture(scope="module")
def server(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Start a real ``airflow api-server`` with the receiver; yield it and stop it afterwards."""
    if AIRFLOW_2:
        pytest.skip("the receiver needs Airflow 3.1+")
    home = tmp_path_factory.mktemp("itnio-webhook-server")
    port = free_port()
    log_path = home / "api-server.log"
    env = server_env(home)
    engine = sa.create_engine(f"sqlite:///{airflow_db / 'airflow.db'}")
    try:
        with api_server_process(port, log_path, env) as base_url:
            yield Server(base_url, log_path, engine)
    finally:
        engine.dispose()
    log_text = log_path.read_text(errors="replace")
    # The token is in every address pushed to, and in no log line.
    assert TOKEN not in log_text
    assert OTHER_TOKEN not in log_text


INBOUND_URI = f"itnio://{CONN_ID}/inbound"


FAILED_URI = f"itnio://{CONN_ID}/status/failed"


DAG_ID = "itnio_webhook_on_pushes"


#: The narrowed inbound assets of tests/dags/itnio_webhook_narrowed.py, by DAG, as Airflow stores them (its own
#: normalization of the URI: the query's pairs sorted and URL-encoded).
NARROWED_URIS = {
    "itnio_webhook_on_reschedule_taps": f"{INBOUND_URI}?reply_id=reschedule%3A%2A",
    "itnio_webhook_on_any_tap": f"{INBOUND_URI}?reply_id=%2A",
    "itnio_webhook_on_stop_words": f"{INBOUND_URI}?keyword=opt+out&keyword=stop",
    "itnio_webhook_on_stickers": f"{INBOUND_URI}?type=sticker",
    "itnio_webhook_on_keep_taps": f"{INBOUND_URI}?reply_id=keep%3A%2A&type=interactive",
}


@pytest.fixture(scope="module")
def scheduled(server: Server) -> Server:
    """Return the API server once ``airflow dags reserialize`` has put the test DAG and its assets in the database."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "reserialize"],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assets = server.rows(
        'SELECT a.uri, a.name, a."group", (SELECT COUNT(*) FROM asset_active aa WHERE aa.name = a.name '
        "AND aa.uri = a.uri) AS active FROM asset a WHERE a.uri LIKE :prefix ORDER BY a.uri",
        prefix=f"itnio://{CONN_ID}/%",
    )
    expected = sorted([INBOUND_URI, FAILED_URI, *NARROWED_URIS.values()])
    assert assets == [{"uri": uri, "name": uri, "group": "itnio", "active": 1} for uri in expected]
    return server


def settle(server: Server, timeout: float = 300.0) -> None:
    """
    Wait until the receiver's writer has turned its outbox into asset events (it does so within
    ``[itnio] webhook_asset_events_interval``, 0.25 s, of the pushes), and its turn is over. The deadline is far
    above that: a freshly started API server's first turn on a loaded machine took more than 15 s.
    """
    deadline = time.monotonic() + timeout
    while server.rows("SELECT id FROM itnio_asset_outbox"):
        assert time.monotonic() < deadline, f"the outbox was not written within {timeout} s"
        time.sleep(0.05)
    time.sleep(0.3)  # a turn that took the last rows has committed, and the writer waits for pushes again
