"""
The webhook receiver through a real Airflow 3 API server (``airflow api-server`` started by this module).

One server for the whole module, on the session's Airflow home (SQLite, migrated by ``airflow db migrate`` in the
``airflow_db`` fixture, which runs the provider's DB manager). The tests push real HTTP to
``/itnio/webhook/{conn_id}/{token}`` and check the provider's tables with SQLAlchemy. The connections the server
reads come from environment variables (``AIRFLOW_CONN_*``) given to the server, and from the metadata database (the
``url`` command's test). The plugin is loaded through the ``airflow.plugins`` entry point when the installed
package has it, else from a plugins folder that imports the same class (an editable install made before the entry
point was added).

On Airflow 2 the server tests are skipped; the tests at the end check that the receiver's modules refuse to import
there with an error saying Airflow 3.1+ is needed.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from airflow_provider_itnio.events import MAX_PUSH_BYTES
from tests.support.pushes import APP_ID, FAILED_PUSH, MESSAGES, inbound, status_push
from tests.support.receiver import (
    AIRFLOW_2,
    CONN_ID,
    OTHER_TOKEN,
    TABLES,
    TOKEN,
    Server,
    needs_airflow_3,
)


def _failed_push(**fields: Any) -> dict[str, Any]:
    return {**FAILED_PUSH, **fields}


@pytest.mark.api_server
@needs_airflow_3
def test_airflow_db_migrate_created_the_provider_tables(server: Server) -> None:
    """The session's ``airflow db migrate`` (fixture ``airflow_db``) ran the provider's DB manager."""
    inspector = sa.inspect(server.engine)
    tables = set(inspector.get_table_names())
    assert set(TABLES) | {"alembic_version_itnio"} <= tables
    assert {c["name"] for c in inspector.get_columns("itnio_status_history")} >= {"dedup_key", "status", "raw"}
    assert [u["column_names"] for u in inspector.get_unique_constraints("itnio_status_history")] == [["dedup_key"]]
    assert [u["column_names"] for u in inspector.get_unique_constraints("itnio_inbound_message")] == [
        ["app_id", "message_id"]
    ]
    from airflow_provider_itnio.webhook.db_manager import ItnioDBManager

    [revision] = server.rows("SELECT version_num FROM alembic_version_itnio")
    assert revision["version_num"] == ItnioDBManager(None).get_script_object().get_current_head()


@needs_airflow_3
def test_airflow_db_migrate_adds_the_outbox_to_a_database_made_by_the_first_release(tmp_path: Path) -> None:
    """
    A database whose provider tables are at the first revision (no ``itnio_asset_outbox``, no later table or column)
    gets the outbox and the rest from ``airflow db migrate`` (the revisions under ``migrations/versions``), and the
    head revision is stamped; ``itnio_inbound_message.written_at`` is filled for the rows already there.
    """
    from airflow_provider_itnio.webhook.db_manager import ItnioDBManager

    database = tmp_path / "airflow.db"
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{database}"}

    def migrate() -> None:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]

    migrate()
    engine = sa.create_engine(f"sqlite:///{database}")
    now = int(time.time())
    try:
        # As the first release left it: every later revision's downgrade (what they added goes), then two customers'
        # messages recorded by that release: one pushed 9 minutes after it was written, one years ago.
        from alembic import command

        config = ItnioDBManager(None).get_alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "6c1f0a7e2b31")
        assert "itnio_asset_outbox" not in sa.inspect(engine).get_table_names()
        assert "written_at" not in {c["name"] for c in sa.inspect(engine).get_columns("itnio_inbound_message")}
        with engine.begin() as connection:
            for message_id, written, received in (("late", now - 600, now - 60), ("old", now - 9e7, now - 8e7)):
                connection.exec_driver_sql(
                    "INSERT INTO itnio_inbound_message (app_id, message_id, business_phone, from_phone, type, "
                    "message_timestamp, conn_id, received_at, raw) VALUES ('a', ?, '15550001111', '15550002222', "
                    "'text', ?, 'c', ?, '{}')",
                    (message_id, int(written), datetime.datetime.fromtimestamp(received, datetime.UTC).isoformat(" ")),
                )
        migrate()
        assert "itnio_asset_outbox" in sa.inspect(engine).get_table_names()
        with engine.connect() as connection:
            [revision] = connection.exec_driver_sql("SELECT version_num FROM alembic_version_itnio").scalars().all()
        # The window's time is filled: the customer's for the recent message, the arrival for the old one.
        written_at = {
            row["message_id"]: datetime.datetime.fromisoformat(str(row["written_at"])).replace(tzinfo=datetime.UTC)
            for row in _rows(engine, "SELECT message_id, written_at FROM itnio_inbound_message")
        }
    finally:
        engine.dispose()
    assert revision == ItnioDBManager(None).get_script_object().get_current_head() != "6c1f0a7e2b31"
    assert int(written_at["late"].timestamp()) == now - 600
    assert int(written_at["old"].timestamp()) == int(now - 8e7)


def _rows(engine: sa.engine.Engine, sql: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(sa.text(sql)).mappings()]


@pytest.mark.api_server
@needs_airflow_3
def test_bad_pushes_get_a_clear_status_and_record_nothing(server: Server) -> None:
    before = server.counts()
    good = status_push(messageId="bad-input-test")
    too_big = json.dumps({**good, "padding": "x" * MAX_PUSH_BYTES}).encode()
    cases: list[tuple[str, requests.Response, int, str | None]] = [
        ("not JSON", server.push(b"{not json", headers={"Content-Type": "application/json"}), 400, "body"),
        ("not an object", server.push([good]), 400, "body"),
        ("no messageId", server.push(status_push(messageId=None)), 400, "messageId"),
        ("no message", server.push({**inbound(MESSAGES["text"]), "message": None}), 400, "message"),
        ("unknown eventType", server.push({**good, "eventType": "template-status-event"}), 400, "eventType"),
        ("integer status", server.push({**good, "status": 2}), 400, "status"),
        ("another app", server.push({**good, "appId": "7WY0BQ7W"}), 400, "appId"),
        ("another app, inbound", server.push(inbound(MESSAGES["text"], appId="7WY0BQ7W")), 400, "appId"),
        ("over 1 MiB, declared", server.push(too_big), 413, "body"),
        # A generator body is sent chunked, without Content-Length: the read stops at the limit.
        ("over 1 MiB, chunked", server.push(iter([too_big[:65536], too_big[65536:]])), 413, "body"),
    ]
    for name, response, status, field in cases:
        assert response.status_code == status, (name, response.text)
        assert response.json()["field"] == field, name
        assert TOKEN not in response.text
    assert "Content-Length" not in cases[-1][1].request.headers  # the chunked case really was chunked
    assert server.counts() == before


@pytest.mark.api_server
@needs_airflow_3
def test_wrong_token_and_unknown_connection_get_the_same_404(server: Server) -> None:
    before = server.counts()
    push = status_push(messageId="not-found-test")
    answers = {
        "wrong token": server.push(push, token=OTHER_TOKEN),
        "token of another length": server.push(push, token=TOKEN[:-1]),
        "unknown connection": server.push(push, conn_id="itnio_nobody"),
        "not an itnio connection": server.push(push, conn_id="not_itnio_webhook", token=OTHER_TOKEN),
        "itnio connection without a token": server.push(push, conn_id="itnio_without_token", token=TOKEN),
        "no token at all": requests.post(f"{server.base_url}/itnio/webhook/{CONN_ID}", json=push, timeout=30),
        "a body that is not JSON, wrong token": server.push(b"{not json", token=OTHER_TOKEN),
    }

    def shape(response: requests.Response) -> tuple[int, bytes, dict[str, str]]:
        headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in ("date", "x-request-id")}
        return response.status_code, response.content, headers

    expected = shape(answers["unknown connection"])
    assert expected[0] == 404
    assert json.loads(expected[1]) == {"detail": "Not Found"}
    for name, response in answers.items():
        assert shape(response) == expected, name
    assert server.counts() == before


@pytest.mark.api_server
@needs_airflow_3
def test_a_status_push_is_recorded_once_and_keeps_its_furthest_progress(server: Server) -> None:
    message_id = "receiver-status-test"
    sent = status_push(messageId=message_id, status="sent", vendorAddsThis={"later": 1})
    answers = [server.push(sent) for _ in range(4)]  # the push and the vendor's three re-pushes
    assert [a.status_code for a in answers] == [200] * 4, answers[0].text
    assert [a.json()["duplicate"] for a in answers] == [False, True, True, True]

    read = server.push(status_push(messageId=message_id, status="READ"))  # the status word in any case
    delivered = server.push(status_push(messageId=message_id, status="delivered"))  # arrives after "read"
    assert (read.json()["status"], delivered.json()["status"]) == ("read", "read")
    assert delivered.json()["duplicate"] is False

    [row] = server.rows("SELECT * FROM itnio_message_status WHERE message_id = :m", m=message_id)
    assert (row["app_id"], row["status"], row["conn_id"]) == (APP_ID, "read", CONN_ID)
    history = server.rows(
        "SELECT status, raw FROM itnio_status_history WHERE message_id = :m ORDER BY id", m=message_id
    )
    assert [h["status"] for h in history] == ["sent", "read", "delivered"]
    assert json.loads(history[0]["raw"])["vendorAddsThis"] == {"later": 1}  # unknown fields kept

    failed = server.push(_failed_push(messageId=message_id))
    sent_late = server.push(status_push(messageId=message_id, status="sent", timestamp=1))  # a re-push of "sent"
    deleted = server.push(status_push(messageId=message_id, status="deleted"))  # a new push after a final status
    assert failed.json()["status"] == "failed"
    assert [(a.json()["duplicate"], a.json()["status"]) for a in (sent_late, deleted)] == [
        (True, "failed"),
        (False, "failed"),
    ]
    [row] = server.rows("SELECT status, failure FROM itnio_message_status WHERE message_id = :m", m=message_id)
    assert (row["status"], row["failure"]) == ("failed", FAILED_PUSH["failure"])


@pytest.mark.api_server
@needs_airflow_3
def test_concurrent_re_pushes_are_recorded_once(server: Server) -> None:
    push = status_push(messageId="receiver-concurrency-test", status="delivered")
    answers: list[requests.Response] = []
    start = threading.Barrier(8)

    def send() -> None:
        start.wait()
        answers.append(server.push(push))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * 8
    assert sorted(a.json()["duplicate"] for a in answers) == [False] + [True] * 7
    assert len(server.rows("SELECT id FROM itnio_status_history WHERE message_id = 'receiver-concurrency-test'")) == 1


@pytest.mark.api_server
@needs_airflow_3
def test_an_inbound_push_is_recorded_once_with_unknown_types_and_fields_kept(server: Server) -> None:
    tap = inbound(MESSAGES["button_reply"], messageId="wamid.receiver-tap", context={"refMessageId": "out-1"})
    odd = inbound({"type": "reaction", "reaction": {"emoji": "+1"}}, messageId="wamid.receiver-odd", extraField=7)
    answers = [server.push(tap) for _ in range(3)] + [server.push(odd), server.push(odd)]
    assert [a.status_code for a in answers] == [200] * 5, answers[0].text
    assert [a.json()["duplicate"] for a in answers] == [False, True, True, False, True]
    assert answers[0].json()["event_type"] == "up-message-event"

    rows = server.rows(
        "SELECT message_id, type, reply, raw FROM itnio_inbound_message WHERE message_id LIKE 'wamid.receiver-%' "
        "ORDER BY id"
    )
    assert [(r["message_id"], r["type"]) for r in rows] == [
        ("wamid.receiver-tap", "interactive"),
        ("wamid.receiver-odd", "reaction"),
    ]
    assert json.loads(rows[0]["reply"]) == {"id": "reschedule", "title": "Reschedule"}
    assert json.loads(rows[0]["raw"]) == tap
    assert json.loads(rows[1]["raw"]) == odd


@pytest.mark.api_server
@needs_airflow_3
def test_the_access_log_shows_the_address_with_the_token_masked(server: Server) -> None:
    assert server.push(status_push(messageId="access-log-test")).status_code == 200
    deadline = time.monotonic() + 10
    while f"/itnio/webhook/{CONN_ID}/***" not in server.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, server.log_path.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    assert TOKEN not in server.log_path.read_text(errors="replace")


@pytest.mark.api_server
@needs_airflow_3
def test_an_address_pasted_with_a_trailing_slash_works_and_no_variant_logs_the_token(server: Server) -> None:
    """A trailing slash is recorded (not redirected to the masked path); other paths under the address get 404."""
    slash = server.push(status_push(messageId="trailing-slash-test"), token=f"{TOKEN}/", allow_redirects=False)
    assert (slash.status_code, slash.json()["duplicate"]) == (200, False), slash.text
    variants = [f"{TOKEN}/status", f"{TOKEN}//", f"{TOKEN}/x/y"]
    answers = [server.push(status_push(messageId="variant-test"), token=v, allow_redirects=False) for v in variants]
    assert [a.status_code in (307, 404) for a in answers] == [True] * len(variants), [a.text for a in answers]
    for answer in answers:
        assert TOKEN not in answer.headers.get("location", "") and TOKEN not in answer.text
    assert server.rows("SELECT id FROM itnio_status_history WHERE message_id = 'variant-test'") == []
    deadline = time.monotonic() + 10
    while server.log_path.read_text(errors="replace").count(f"/itnio/webhook/{CONN_ID}/***/") < 3:
        assert time.monotonic() < deadline, server.log_path.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    assert TOKEN not in server.log_path.read_text(errors="replace")


@pytest.mark.api_server
@needs_airflow_3
def test_values_no_column_can_hold_get_400_or_a_warning_never_a_server_error(server: Server) -> None:
    before = server.counts()
    text = json.loads(json.dumps(inbound(MESSAGES["text"], messageId="wamid.surrogate")))
    text["message"]["text"]["body"] = "half an emoji \ud83d"  # JSON's "\\ud83d": no UTF-8 column can hold it
    surrogate = json.dumps(text).encode()
    refused = {
        "lone surrogate": server.push(surrogate, headers={"Content-Type": "application/json"}),
        "id wider than its column": server.push(status_push(messageId="m" * 400)),
        "type wider than its column": server.push(inbound({"type": "t" * 100}, messageId="wamid.long-type")),
    }
    for name, answer in refused.items():
        assert answer.status_code == 400, (name, answer.status_code, answer.text)
    assert server.counts() == before
    huge = server.push(status_push(messageId="huge-timestamp-test", timestamp=10**30))
    assert huge.status_code == 200, huge.text
    assert huge.json()["warnings"][0].startswith("timestamp: ")
    [row] = server.rows("SELECT status_timestamp FROM itnio_message_status WHERE message_id = 'huge-timestamp-test'")
    assert row["status_timestamp"] is None


@pytest.mark.api_server
@needs_airflow_3
def test_the_url_command_creates_a_token_once_and_prints_a_working_address(server: Server) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    conn_id = "itnio_webhook_from_db"
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(Connection(conn_id=conn_id, conn_type="itnio", extra=json.dumps({"app_id": APP_ID})))
    command = [sys.executable, "-m", "airflow_provider_itnio.webhook", "url", conn_id, "--base-url", server.base_url]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    [address] = first.stdout.splitlines()
    prefix = f"{server.base_url}/itnio/webhook/{conn_id}/"
    assert address.startswith(prefix)
    token = address.removeprefix(prefix)
    assert len(token) >= 43  # token_urlsafe(32)
    assert token not in first.stderr
    assert "Created a new 'webhook_token' extra" in first.stderr

    second = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert (second.returncode, second.stdout.strip(), second.stderr.count("Created")) == (0, address, 0)

    push = status_push(messageId="url-command-test")
    assert requests.post(address, json=push, timeout=30).json()["duplicate"] is False
    [row] = server.rows("SELECT conn_id FROM itnio_message_status WHERE message_id = 'url-command-test'")
    assert row["conn_id"] == conn_id


@needs_airflow_3
def test_the_url_command_refuses_a_connection_it_cannot_change(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from airflow_provider_itnio.webhook.__main__ import main

    monkeypatch.setenv("AIRFLOW_CONN_ITNIO_ENV_ONLY", json.dumps({"conn_type": "itnio", "extra": {"app_id": APP_ID}}))
    assert main(["url", "itnio_env_only"]) == 1
    assert "environment variable or a secrets backend" in capsys.readouterr().err
    assert main(["url", "itnio_nobody_here"]) == 1
    assert "There is no connection 'itnio_nobody_here'" in capsys.readouterr().err

    monkeypatch.setenv(
        "AIRFLOW_CONN_ITNIO_ENV_TOKEN",
        json.dumps({"conn_type": "itnio", "extra": {"app_id": APP_ID, "webhook_token": "tok/en"}}),
    )
    assert main(["url", "itnio_env_token", "--base-url", "https://airflow.example.com/sub/"]) == 0
    assert capsys.readouterr().out == "https://airflow.example.com/sub/itnio/webhook/itnio_env_token/tok%2Fen\n"


@pytest.mark.api_server
@needs_airflow_3
def test_the_cleanup_command_applies_the_retention(server: Server, capsys: Any) -> None:
    from airflow_provider_itnio.webhook.__main__ import main

    assert server.push(status_push(messageId="cleanup-test")).status_code == 200
    assert main(["cleanup", "--older-than-days", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"]["itnio_status_history"] == 0
    before = server.counts()
    [taps] = server.rows("SELECT COUNT(*) AS n FROM itnio_hitl_tap")  # approval taps earlier tests pushed
    assert main(["cleanup", "--older-than-days", "0"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer == {"older_than_days": 0.0, "deleted": {**before, "itnio_hitl_tap": taps["n"]}}
    assert server.counts() == dict.fromkeys(TABLES, 0)
    assert server.rows("SELECT COUNT(*) AS n FROM itnio_hitl_tap") == [{"n": 0}]


# -- group commit: one writer records the pushes waiting in one transaction -------------------------------------


def _send_all(server: Server, pushes: list[Any], clients: int = 16) -> list[requests.Response]:
    """Send ``pushes`` from ``clients`` threads at once (all start together); return the answers in push order."""
    start = threading.Barrier(clients)
    answers: list[requests.Response | None] = [None] * len(pushes)

    def client(offset: int) -> None:
        with requests.Session() as session:
            start.wait()
            for index in range(offset, len(pushes), clients):
                push = pushes[index]
                kwargs: dict[str, Any] = {"json": push} if isinstance(push, dict) else {"data": push}
                answers[index] = session.post(server.url(), timeout=60, **kwargs)

    threads = [threading.Thread(target=client, args=(offset,)) for offset in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


@pytest.mark.api_server
@needs_airflow_3
def test_concurrent_pushes_with_re_pushes_and_late_statuses_are_each_recorded_once(server: Server) -> None:
    """Many clients at once, each status of 40 messages pushed twice, half of them in reverse order."""
    from airflow_provider_itnio.events import furthest

    order = ("sent", "delivered", "read")
    pushes: list[dict[str, Any]] = []
    expected: dict[str, str] = {}
    for number in range(40):
        message_id = f"group-commit-{number}"
        statuses = list(order if number % 2 else reversed(order))
        if number % 5 == 0:
            statuses.append("failed")  # final, whatever comes after it
        pushes += [status_push(messageId=message_id, status=status) for status in statuses for _ in range(2)]
        kept = None
        for status in statuses:
            kept = furthest(kept, status)
        assert kept is not None
        expected[message_id] = kept.value
    answers = _send_all(server, pushes)
    assert [a.status_code for a in answers] == [200] * len(pushes), [a.text for a in answers if a.status_code != 200]
    first_answers: dict[tuple[str, str], list[bool]] = {}
    for push, answer in zip(pushes, answers, strict=True):
        first_answers.setdefault((push["messageId"], push["status"]), []).append(answer.json()["duplicate"])
    assert all(sorted(flags) == [False, True] for flags in first_answers.values())  # once new, once a re-push

    history = server.rows("SELECT message_id, status FROM itnio_status_history WHERE message_id LIKE 'group-commit-%'")
    assert sorted((row["message_id"], row["status"]) for row in history) == sorted(first_answers)
    rows = server.rows("SELECT message_id, status FROM itnio_message_status WHERE message_id LIKE 'group-commit-%'")
    assert {row["message_id"]: row["status"] for row in rows} == expected


@pytest.mark.api_server
@needs_airflow_3
def test_a_bad_push_among_concurrent_ones_gets_its_own_answer_and_the_others_are_recorded(server: Server) -> None:
    good = [status_push(messageId=f"group-mixed-{n}", status="delivered") for n in range(30)]
    bad: list[Any] = [
        status_push(messageId="group-mixed-bad-1", status="lost"),
        status_push(messageId="group-mixed-bad-2", appId="7WY0BQ7W"),
        b"{not json",
    ]
    pushes = good[:10] + bad[:1] + good[10:20] + bad[1:] + good[20:]
    answers = _send_all(server, pushes)
    codes = {
        (push["messageId"] if isinstance(push, dict) else "not json"): answer.status_code
        for push, answer in zip(pushes, answers, strict=True)
    }
    assert codes == {
        **{push["messageId"]: 200 for push in good},
        "group-mixed-bad-1": 400,
        "group-mixed-bad-2": 400,
        "not json": 400,
    }
    rows = server.rows("SELECT message_id FROM itnio_status_history WHERE message_id LIKE 'group-mixed-%'")
    assert sorted(row["message_id"] for row in rows) == sorted(push["messageId"] for push in good)


@pytest.mark.api_server
@needs_airflow_3
def test_pushes_while_the_database_is_locked_get_503_and_record_nothing_then_re_pushes_are_recorded(
    server: Server,
) -> None:
    """Another connection holds SQLite's write lock beyond its busy timeout: the whole group fails, nothing is kept."""
    import sqlite3

    pushes = [status_push(messageId=f"group-locked-{n}", status="sent") for n in range(12)]
    database = server.engine.url.database
    assert database is not None
    holder = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        holder.execute("BEGIN IMMEDIATE")  # SQLite's one write lock, held until every push is answered
        answers = _send_all(server, pushes, clients=12)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert [a.status_code for a in answers] == [503] * len(pushes), [a.text for a in answers]
    assert all(TOKEN not in a.text for a in answers)
    assert server.rows("SELECT id FROM itnio_status_history WHERE message_id LIKE 'group-locked-%'") == []
    assert server.rows("SELECT id FROM itnio_message_status WHERE message_id LIKE 'group-locked-%'") == []

    again = _send_all(server, pushes, clients=12)  # the vendor's re-pushes
    assert [(a.status_code, a.json()["duplicate"]) for a in again] == [(200, False)] * len(pushes)
    rows = server.rows("SELECT message_id FROM itnio_status_history WHERE message_id LIKE 'group-locked-%'")
    assert sorted(row["message_id"] for row in rows) == sorted(push["messageId"] for push in pushes)


@needs_airflow_3
def test_a_push_whose_writes_fail_in_a_group_is_rolled_back_alone(airflow_db: Path) -> None:
    """
    One group, one transaction: a push the database refuses (a NOT NULL column left empty, which the parser
    never lets through) fails on its own; the pushes before and after it, and a re-push, are recorded.
    """
    import dataclasses

    from airflow.utils.session import create_session

    from airflow_provider_itnio.events import MessageStatus, parse_push
    from airflow_provider_itnio.webhook.store import Recorded
    from airflow_provider_itnio.webhook.writer import _Push, record_group

    def event(message_id: str, **fields: Any) -> Any:
        return parse_push(json.dumps(status_push(messageId=message_id, **fields)).encode())

    refused = dataclasses.replace(event("in-group-refused"), recipient=None)
    pushes = [
        _Push(event("in-group-a", status="delivered"), CONN_ID),
        _Push(refused, CONN_ID),
        _Push(event("in-group-b", status="read"), CONN_ID),
        _Push(event("in-group-a", status="delivered"), CONN_ID),  # a re-push, in the same transaction
    ]
    record_group(pushes)
    assert pushes[0].future.result(0).new is True
    with pytest.raises(sa.exc.IntegrityError):
        pushes[1].future.result(0)
    assert pushes[2].future.result(0) == Recorded(new=True, advanced=True, status=MessageStatus.READ)
    assert pushes[3].future.result(0) == Recorded(new=False, status=MessageStatus.DELIVERED)

    with create_session() as session:
        rows = session.execute(
            sa.text("SELECT message_id, status FROM itnio_status_history WHERE message_id LIKE 'in-group-%'")
        ).all()
    assert sorted(tuple(row) for row in rows) == [("in-group-a", "delivered"), ("in-group-b", "read")]


@needs_airflow_3
def test_on_sqlite_the_writers_of_all_processes_take_turns_on_a_lock_file(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    With several API server workers, each process's writer records its group only while it holds
    ``<database>-itnio-writer.lock`` (here held by the test, as the other worker would): it waits for it, then
    records, and releases it once committed. Every wait is on what is asserted, with a deadline far above what a
    busy machine takes (a ``join(30)`` whose outcome was not checked failed a loaded full run: the lock was still
    the writer's at the final non-blocking ``flock``).
    """
    import concurrent.futures
    import fcntl

    from airflow_provider_itnio.events import parse_push
    from airflow_provider_itnio.webhook import writer as writes
    from airflow_provider_itnio.webhook.writer import _Push, record_group

    # The writer never goes on without its turn here, however long the machine makes the test hold the lock.
    monkeypatch.setattr(writes, "WRITER_TURN_WAIT", 3600.0)

    def push(message_id: str) -> _Push:
        return _Push(parse_push(json.dumps(status_push(messageId=message_id, status="sent")).encode()), CONN_ID)

    first = push("turns-first")
    record_group([first])  # the writer's first group (imports, mappers) before the other process takes its turn
    assert first.future.result(0).new is True
    waiting = push("turns-a")
    lock_path = str(airflow_db / "airflow.db") + "-itnio-writer.lock"
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # the other worker's writer, in its transaction
        writer = threading.Thread(target=record_group, args=([waiting],))
        writer.start()
        with pytest.raises(concurrent.futures.TimeoutError):
            waiting.future.result(timeout=3)  # not recorded while the other process has its turn
        assert writer.is_alive()
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        assert waiting.future.result(timeout=600).new is True  # recorded once the turn is its own
        writer.join(600)  # it releases the lock after its commit, then settles the future and returns
        assert not writer.is_alive(), "the writer did not finish its group within 600 s"
        # Released after the commit: a blocking wait for it ends. Not a non-blocking try: another writer thread of
        # this process (an outbox turn of a writer an earlier test started) may hold it a moment (a full CI run).
        pool = concurrent.futures.ThreadPoolExecutor(1)
        try:
            pool.submit(fcntl.flock, descriptor, fcntl.LOCK_EX).result(timeout=600)
        finally:
            pool.shutdown(wait=False)
    finally:
        os.close(descriptor)
    engine = sa.create_engine(f"sqlite:///{airflow_db / 'airflow.db'}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT status FROM itnio_status_history WHERE message_id = 'turns-a'")
            ).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [("sent",)]


@needs_airflow_3
def test_a_writer_whose_turn_never_comes_goes_on_under_sqlite_s_own_lock(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that keeps the writers' lock file (stuck) holds the others' pushes only for ``WRITER_TURN_WAIT``."""
    import fcntl

    from airflow_provider_itnio.events import parse_push
    from airflow_provider_itnio.webhook import writer as writes

    monkeypatch.setattr(writes, "WRITER_TURN_WAIT", 0.5)
    push = writes._Push(parse_push(json.dumps(status_push(messageId="turns-stuck", status="sent")).encode()), CONN_ID)
    descriptor = os.open(str(airflow_db / "airflow.db") + "-itnio-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # never released while the writer runs
        writes.record_group([push])
    finally:
        os.close(descriptor)
    assert push.future.result(0).new is True


@needs_airflow_3
def test_pushes_that_come_during_the_writer_s_turn_at_the_outbox_are_recorded_between_its_transactions(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The writer's turn at the outbox is one transaction per asset; a push that comes meanwhile is recorded (and its
    request answered) between two of them, not after the whole turn. The turn is held in its first transaction
    until the push is queued; the database work is the receiver's own (``record_group``).
    """
    from airflow_provider_itnio.events import parse_push
    from airflow_provider_itnio.webhook import writer as writes

    monkeypatch.setattr(writes, "_freeze_startup_objects", lambda: None)  # this test process is no API server
    hold, in_turn, queued = threading.Event(), threading.Event(), threading.Event()
    late: list[Any] = []
    answered_in_turn: list[bool] = []

    def turn(between: Any) -> Any:
        """Write nothing; once held, wait in the 'first transaction' for the late push, then let it in."""
        if not hold.is_set():
            return writes.Written()
        hold.clear()
        in_turn.set()
        assert queued.wait(30)
        between()  # what write_asset_events calls after each asset's transaction
        answered_in_turn.append(late[0].done())
        return writes.Written(taken=2)

    def event(message_id: str) -> Any:
        return parse_push(json.dumps(status_push(messageId=message_id, status="sent")).encode())

    writer = writes.GroupWriter(write_events=turn, interval=3600)
    assert writer.submit(event("turn-first"), CONN_ID).result(30).new
    hold.set()
    assert writer.submit(event("turn-trigger"), CONN_ID).result(30).new  # its group is followed by a turn
    assert in_turn.wait(30)
    late.append(writer.submit(event("turn-late"), CONN_ID))
    queued.set()
    assert late[0].result(30).new is True
    deadline = time.monotonic() + 30
    while not answered_in_turn and time.monotonic() < deadline:
        time.sleep(0.01)
    assert answered_in_turn == [True]  # answered inside the turn, before it ended


@needs_airflow_3
def test_a_push_whose_request_is_cancelled_in_the_queue_leaves_its_group_and_the_writer_sound(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A request cancelled while its push waits for the writer (the vendor hung up: Starlette cancels the endpoint,
    and ``asyncio.wrap_future`` cancels the future it awaited) takes only itself out: the pushes grouped with it
    get their own outcomes, and the writer records the next ones.
    """
    import asyncio

    from airflow_provider_itnio.events import parse_push
    from airflow_provider_itnio.webhook import writer as writes

    monkeypatch.setattr(writes, "_freeze_startup_objects", lambda: None)  # this test process is no API server
    busy, release = threading.Event(), threading.Event()

    def gated(pushes: list[Any]) -> None:
        """Hold the first group until the test has queued the next pushes, then record as the receiver does."""
        if pushes[0].event.message_id == "cancelled-blocker":
            busy.set()
            assert release.wait(600), "the test did not release the writer"  # the next pushes queue meanwhile
        writes.record_group(pushes)

    writer = writes.GroupWriter(gated)

    async def request(message_id: str) -> Any:
        event = parse_push(json.dumps(status_push(messageId=message_id, status="sent")).encode())
        return await asyncio.wrap_future(writer.submit(event, CONN_ID))  # as receive_push awaits its push

    async def scenario() -> tuple[list[Any], Any]:
        blocker = asyncio.create_task(request("cancelled-blocker"))
        await asyncio.to_thread(busy.wait, 30)  # the writer is busy: the next three queue into one group
        first, gone, last = (asyncio.create_task(request(f"cancelled-{n}")) for n in ("first", "gone", "last"))
        await asyncio.sleep(0.1)  # all three submitted
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        release.set()
        grouped = list(await asyncio.wait_for(asyncio.gather(blocker, first, last), 60))
        return grouped, await asyncio.wait_for(request("cancelled-after"), 60)

    grouped, after = asyncio.run(scenario())
    assert [recorded.new for recorded in grouped] == [True, True, True]
    assert after.new is True  # the writer lives on


@needs_airflow_3
def test_the_first_push_of_a_process_freezes_what_it_started_with(airflow_db: Path) -> None:
    """
    A process's writer starts at its first push and freezes the objects of the process's start (the API server's,
    hundreds of thousands), so that full garbage collections no longer walk them; the push is recorded as usual.
    A separate process, as each API server worker is one.
    """
    code = """if True:
        import gc, json, sys
        from airflow_provider_itnio.events import parse_push
        from airflow_provider_itnio.webhook.writer import writer
        assert gc.get_freeze_count() == 0
        event = parse_push(sys.stdin.buffer.read())
        recorded = writer.submit(event, sys.argv[1]).result(60)
        print(json.dumps({"new": recorded.new, "frozen": gc.get_freeze_count()}))
    """
    body = json.dumps(status_push(messageId="frozen-first", status="sent")).encode()
    result = subprocess.run(
        [sys.executable, "-c", code, CONN_ID], input=body, capture_output=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    answer = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert answer["new"] is True
    assert answer["frozen"] > 10_000


# -- which Airflow: the modules' import guard ------------------------------------------------------------------


@needs_airflow_3
def test_an_unknown_connection_and_a_wrong_token_cost_the_same_work(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The answer time must not tell whether a connection id exists. It did: a known connection's address was kept
    for a few seconds, so a wrong token was answered from memory (4-6 ms), while an unknown id was looked up in
    the secrets backends and the database every time (10 ms), and the read API never digested a token for an
    unknown id. Measured here as work, not time (a busy machine makes timings flaky): for both, through the
    webhook address and the read API, the same number of connection lookups and of constant-time comparisons.
    """
    import hmac

    from fastapi.testclient import TestClient

    from airflow_provider_itnio.webhook import app as receiver_app
    from airflow_provider_itnio.webhook import guards

    known, unknown = "itnio_gate_known", "itnio_gate_unknown"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{known.upper()}",
        json.dumps({"conn_type": "itnio", "extra": {"app_id": APP_ID, "webhook_token": TOKEN}}),
    )
    work = {"lookups": 0, "comparisons": 0}
    real_resolve, real_compare = guards._resolve, hmac.compare_digest

    def counted_resolve(conn_id: str) -> Any:
        work["lookups"] += 1
        return real_resolve(conn_id)

    def counted_compare(a: Any, b: Any) -> bool:
        work["comparisons"] += 1
        return real_compare(a, b)

    monkeypatch.setattr(guards, "_resolve", counted_resolve)
    monkeypatch.setattr(hmac, "compare_digest", counted_compare)
    client = TestClient(receiver_app.create_app())
    requests_of = {
        "webhook": lambda conn_id: client.post(f"/webhook/{conn_id}/{OTHER_TOKEN}", json=status_push()),
        "read API": lambda conn_id: client.get(
            f"/api/{conn_id}/messages/m/status", headers={"Authorization": f"Bearer {OTHER_TOKEN}"}
        ),
    }
    spent: dict[tuple[str, str], dict[str, int]] = {}
    for route, ask in requests_of.items():
        for conn_id in (known, unknown):
            guards._resolved.clear()
            work.update(lookups=0, comparisons=0)
            answers = [ask(conn_id) for _ in range(3)]
            assert [(a.status_code, a.json()) for a in answers] == [(404, {"detail": "Not Found"})] * 3
            spent[route, conn_id] = dict(work)
    assert spent == {key: {"lookups": 1, "comparisons": 3} for key in spent}, spent
    # The right token still opens the address (the cached lookup is the same for both).
    guards._resolved.clear()
    right = client.get(f"/api/{known}/messages/m/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (right.status_code, right.json()) != (404, {"detail": "Not Found"})


@pytest.mark.skipif(not AIRFLOW_2, reason="checks the error on Airflow 2")
@pytest.mark.parametrize("module", ["app", "plugin", "db_manager"])
def test_on_airflow_2_the_receiver_modules_say_airflow_3_1_is_needed(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import airflow_provider_itnio.webhook.{module}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "ImportError: The itnio " in result.stderr
    assert "needs Airflow 3.1 or later" in result.stderr


@pytest.mark.skipif(not AIRFLOW_2, reason="checks the entry point on Airflow 2")
def test_on_airflow_2_the_plugin_entry_point_is_skipped_silently() -> None:
    from airflow import plugins_manager

    from airflow_provider_itnio.webhook import _entry

    assert _entry.ItnioWebhookPlugin is None
    assert not plugins_manager.is_valid_plugin(_entry.ItnioWebhookPlugin)


@needs_airflow_3
def test_on_airflow_3_the_entry_point_is_the_plugin_serving_the_app() -> None:
    from airflow_provider_itnio.webhook import _entry
    from airflow_provider_itnio.webhook.app import app
    from airflow_provider_itnio.webhook.plugin import ItnioWebhookPlugin

    assert _entry.ItnioWebhookPlugin is ItnioWebhookPlugin
    assert ItnioWebhookPlugin.fastapi_apps == [{"app": app, "url_prefix": "/itnio", "name": "itnio webhook receiver"}]
