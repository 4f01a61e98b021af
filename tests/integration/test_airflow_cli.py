"""
``airflow itnio ...``: the provider's commands in Airflow's own command line (Airflow 3.1+, through the provider
info's ``cli`` key), run as a user runs them: ``airflow`` as a subprocess against a migrated metadata database.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_itnio import get_provider_info
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS

needs_3_1 = pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="`airflow itnio` needs Airflow 3.1+")
APP_ID = "cli-app"


def airflow(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``airflow ARGS`` (this interpreter's Airflow, the session's home) and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], capture_output=True, text=True, timeout=300, check=False
    )


def add_connection(conn_id: str, extra: dict[str, str]) -> None:
    """Store an ``itnio`` connection in the metadata database (replacing one of that id)."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(Connection(conn_id=conn_id, conn_type="itnio", extra=json.dumps(extra)))


def test_the_provider_declares_its_commands_only_where_airflow_reads_them() -> None:
    info = get_provider_info()
    if AIRFLOW_V_3_1_PLUS:
        [path] = info["cli"]
        module, _, name = path.rpartition(".")
        [group] = getattr(__import__(module, fromlist=[name]), name)()
        assert group.name == "itnio"
        assert sorted(command.name for command in group.subcommands) == ["cleanup", "webhook-url"]
    else:  # Airflow 2.11's provider-info schema has no "cli"; `python -m airflow_provider_itnio.webhook` serves it
        assert "cli" not in info


@needs_3_1
@pytest.mark.api_server
def test_webhook_url_creates_the_token_once_and_prints_what_the_module_command_prints(airflow_db: Path) -> None:
    conn_id = "itnio_cli_url"
    add_connection(conn_id, {"app_id": APP_ID})
    base_url = "https://airflow.example.com/sub/"

    first = airflow("itnio", "webhook-url", conn_id, "--base-url", base_url)
    assert first.returncode == 0, first.stderr[-3000:]
    [address] = first.stdout.splitlines()
    prefix = f"https://airflow.example.com/sub/itnio/webhook/{conn_id}/"
    assert address.startswith(prefix)
    token = address.removeprefix(prefix)
    assert len(token) >= 43  # secrets.token_urlsafe(32)
    assert token not in first.stderr
    assert "Created a new 'webhook_token' extra" in first.stderr

    again = airflow("itnio", "webhook-url", conn_id, "--base-url", base_url)
    assert (again.returncode, again.stdout.strip(), again.stderr.count("Created a new")) == (0, address, 0)
    module = subprocess.run(
        [sys.executable, "-m", "airflow_provider_itnio.webhook", "url", conn_id, "--base-url", base_url],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (module.returncode, module.stdout.strip()) == (0, address)


@needs_3_1
@pytest.mark.api_server
def test_webhook_url_and_cleanup_fail_with_the_reason_and_a_non_zero_status(airflow_db: Path) -> None:
    unknown = airflow("itnio", "webhook-url", "itnio_nobody_here")
    assert unknown.returncode == 1
    assert "There is no connection 'itnio_nobody_here'" in unknown.stderr
    assert unknown.stdout == ""

    negative = airflow("itnio", "cleanup", "--older-than-days", "-1")
    assert negative.returncode == 1
    assert "--older-than-days must not be negative" in negative.stderr

    kept = airflow("itnio", "cleanup", "--older-than-days", "36500")
    assert kept.returncode == 0, kept.stderr[-3000:]
    answer = json.loads(kept.stdout.strip().splitlines()[-1])
    assert answer["older_than_days"] == 36500.0
    assert set(answer["deleted"]) >= {"itnio_status_history", "itnio_inbound_message", "itnio_hitl_tap"}
