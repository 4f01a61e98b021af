"""
The receiver's asset outbox under faults: the writer's turns when the database fails, and the asset manager
shortcut where Airflow writes more than the event (a partition-aware DAG).

The first two tests drive :class:`~airflow_provider_itnio.webhook.writer.GroupWriter` with fakes of its two writes
(no database); the last one records pushes against the session's database while the module's API server runs.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.pushes import MESSAGES, inbound, status_push
from tests.support.receiver import CONN_ID, DAG_ID, INBOUND_URI, Server, needs_airflow_3, settle


def _push(message_id: str) -> Any:
    from airflow_provider_itnio.events import parse_push

    return parse_push(json.dumps(status_push(messageId=message_id, status="sent")).encode())


@needs_airflow_3
def test_a_turn_that_finds_the_database_locked_is_tried_again_without_a_new_push(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The turn after a push finds the database locked (SQLite's busy timeout, a PostgreSQL connection dropped): the
    real :func:`write_asset_events` says it failed, and the writer tries the outbox again a second later, not only
    at the next new push, which may never come.
    """
    from sqlalchemy.exc import OperationalError

    from airflow_provider_itnio.webhook import writer as writes
    from airflow_provider_itnio.webhook.asset_events import Written
    from airflow_provider_itnio.webhook.store import Recorded

    def locked() -> Any:
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    monkeypatch.setattr(writes, "_freeze_startup_objects", lambda: None)  # this test process is no API server
    monkeypatch.setattr(writes, "new_session", locked)
    assert writes.write_asset_events() == Written(failed=True)  # not what an empty outbox answers (Written())

    outbox: list[str] = []
    failed_once = threading.Event()

    def write(group: list[Any]) -> bool:
        for push in group:
            outbox.append(push.event.message_id)
            push.future.set_result(Recorded(new=True))
        return True

    def write_events(between: Any) -> Written:
        if outbox and not failed_once.is_set():
            failed_once.set()
            return writes.write_asset_events(between)  # the database is locked for this one turn
        taken = len(outbox)
        outbox.clear()
        return Written(taken=taken)

    writer = writes.GroupWriter(write, write_events=write_events, interval=0.05)
    writer.submit(_push("review-locked-turn"), CONN_ID).result(600)
    deadline = time.monotonic() + 600  # the turn after a failed one comes 1 s later: wait for it, not for a time
    while outbox and time.monotonic() < deadline:
        time.sleep(0.05)
    assert failed_once.is_set()
    assert outbox == [], "the row stays in the outbox until a new push comes"


@needs_airflow_3
def test_a_turn_that_keeps_failing_does_not_spin(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    ``[itnio] webhook_asset_events_interval = 0`` (accepted: ``max(0.0, value)``) and a turn that raises (e.g. the
    outbox table missing on PostgreSQL: ``ProgrammingError``, not one of the "database down" errors): the writer
    should back off, not call the turn in a busy loop.
    """
    from airflow_provider_itnio.webhook import writer as writes
    from airflow_provider_itnio.webhook.asset_events import Written
    from airflow_provider_itnio.webhook.store import Recorded

    monkeypatch.setattr(writes, "_freeze_startup_objects", lambda: None)
    monkeypatch.setattr(writes.log, "exception", lambda *args, **kwargs: None)  # keep the test's output short
    turns: list[float] = []
    failing = threading.Event()
    failing.set()

    def write(group: list[Any]) -> bool:
        for push in group:
            push.future.set_result(Recorded(new=True))
        return True

    def write_events(between: Any) -> Written:
        if not failing.is_set():  # after the test: the writer thread goes idle
            return Written()
        turns.append(time.monotonic())
        raise RuntimeError("relation itnio_asset_outbox does not exist")

    writer = writes.GroupWriter(write, write_events=write_events, interval=0.0)
    try:
        writer.submit(_push("review-spin"), CONN_ID).result(10)
        time.sleep(0.5)
        count = len(turns)
    finally:
        failing.clear()
    assert count < 50, f"{count} turns in half a second"


@pytest.mark.api_server
@needs_airflow_3
def test_an_asset_a_partition_aware_dag_and_another_dag_use_keeps_one_manager_call_per_event(
    scheduled: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    docs/receiving and ``asset_events``: "an asset a partition-aware DAG uses keeps one call per event" (Airflow writes
    a ``missing partition key`` log row per event). With a second, ordinary DAG on the same asset, Airflow's SQLite
    path queues it in a savepoint, whose ``begin_nested()`` flushes the log row before the shortcut's check of
    ``session.new``. Expected: one log row per event, as with one ``register_asset_change`` per event.
    """
    from airflow_provider_itnio.events import parse_push
    from airflow_provider_itnio.webhook import asset_events
    from airflow_provider_itnio.webhook.writer import _Push, record_group, write_asset_events

    other = "itnio_review_other_consumer"
    engine = scheduled.engine

    def copy_row(connection: Any, table: str, where: str, **params: Any) -> None:
        columns = [row[1] for row in connection.exec_driver_sql(f"PRAGMA table_info({table})")]
        chosen = ", ".join(":other" if column == "dag_id" else f'"{column}"' for column in columns)
        names = ", ".join(f'"{column}"' for column in columns)
        connection.execute(
            sa.text(f"INSERT INTO {table} ({names}) SELECT {chosen} FROM {table} WHERE {where}"),
            {"other": other, **params},
        )

    settle(scheduled)
    with engine.begin() as connection:
        [asset_id] = connection.execute(sa.text("SELECT id FROM asset WHERE uri = :u"), {"u": INBOUND_URI}).scalars()
        copy_row(connection, "dag", "dag_id = :dag", dag=DAG_ID)
        copy_row(connection, "dag_schedule_asset_reference", "dag_id = :dag AND asset_id = :a", dag=DAG_ID, a=asset_id)
        connection.execute(
            sa.text("UPDATE dag SET is_paused = 0, timetable_partitioned = 0 WHERE dag_id = :o"), {"o": other}
        )
        connection.execute(
            sa.text("UPDATE dag SET is_paused = 0, timetable_partitioned = 1 WHERE dag_id = :d"), {"d": DAG_ID}
        )
        # queue rows other tests of the session left for the test DAG
        connection.execute(sa.text("DELETE FROM asset_dag_run_queue WHERE target_dag_id = :d"), {"d": DAG_ID})

    def logs_of_three_events(tag: str) -> list[str]:
        """Record three new inbound pushes in one group, write the outbox; return the new partition log rows."""
        with engine.connect() as connection:
            before = connection.execute(sa.text("SELECT MAX(id) FROM log")).scalar() or 0
        bodies = [inbound(MESSAGES["text"], messageId=f"wamid.review-{tag}-{n}") for n in range(3)]
        pushes = [_Push(parse_push(json.dumps(body).encode()), CONN_ID) for body in bodies]
        record_group(pushes)
        written = write_asset_events()
        assert (written.taken, written.left) == (3, 0)
        with engine.connect() as connection:
            return list(
                connection.execute(
                    sa.text("SELECT extra FROM log WHERE id > :b AND event = 'missing partition key'"), {"b": before}
                ).scalars()
            )

    try:
        shortcut = logs_of_three_events("partitioned-shortcut")
        with engine.connect() as connection:
            queued = list(
                connection.execute(
                    sa.text("SELECT target_dag_id FROM asset_dag_run_queue WHERE asset_id = :a"), {"a": asset_id}
                ).scalars()
            )
        monkeypatch.setattr(asset_events, "_with_extra", lambda notify, extra: None)  # every event: the manager
        one_call_each = logs_of_three_events("partitioned-each")
    finally:
        with engine.begin() as connection:
            connection.execute(
                sa.text("DELETE FROM asset_dag_run_queue WHERE target_dag_id IN (:o, :d)"), {"o": other, "d": DAG_ID}
            )
            connection.execute(sa.text("DELETE FROM dag_schedule_asset_reference WHERE dag_id = :o"), {"o": other})
            connection.execute(sa.text("DELETE FROM dag WHERE dag_id = :o"), {"o": other})
            connection.execute(
                sa.text("UPDATE dag SET is_paused = 1, timetable_partitioned = 0 WHERE dag_id = :d"), {"d": DAG_ID}
            )
    assert queued == [other]  # the ordinary DAG is queued, the partition-aware one is not
    assert len(one_call_each) == 3  # Airflow: one log row per event
    assert len(shortcut) == len(one_call_each), f"{len(shortcut)} 'missing partition key' log rows for 3 events"
