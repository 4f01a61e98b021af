"""
Record every message the vendor reports ``failed`` (Airflow 3.1+).

Scheduled on ``message_status("itnio_default", "failed")``: each ``failed`` status push the webhook receiver
records is an asset event, and a run handles the events since the previous run. The task logs each failure
(message id, recipient, the vendor's reason, e.g. ``131047 Re-engagement message`` for a session message outside
the 24-hour window) and appends it to the table ``failed_messages`` of a SQLite file, so that someone can follow up
(send a template instead, fix a number). A re-pushed status records no second event; the table's primary key
(the message id) also keeps a retried task from writing a row twice. The run's XCom holds the rows written.

The file is ``$ITNIO_FAILED_MESSAGES_DB``, else ``itnio_failed_messages.db`` in the Airflow home: it must be on
storage every worker shares (or point the task at your own database instead).

On Airflow 2 (assets fed by the receiver need Airflow 3.1+) the file defines a one-task DAG that fails saying so.
"""

from __future__ import annotations

import datetime
import os
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG

#: The table the failures go to.
TABLE = "failed_messages"


def failures_db() -> Path:
    """Return the SQLite file the failures are recorded in."""
    configured = os.environ.get("ITNIO_FAILED_MESSAGES_DB")
    if configured:
        return Path(configured)
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "itnio_failed_messages.db"


def record_failures(extras: Iterable[Mapping[str, Any]], path: Path) -> list[dict[str, Any]]:
    """
    Append the failed-status events' ``extra`` to the table :data:`TABLE` in ``path``; return the rows written.

    A message already in the table (a retried task) is not written again.

    :param extras: The events' ``extra`` dicts (``message_id``, ``recipient``, ``failure``, ``timestamp``...).
    :param path: The SQLite file (created with the table when missing).
    """
    recorded_at = datetime.datetime.now(datetime.UTC).isoformat()
    rows = [
        {
            "message_id": str(extra["message_id"]),
            "recipient": str(extra.get("recipient") or ""),
            "business_phone": str(extra.get("business_phone") or ""),
            "failure": extra.get("failure"),
            "timestamp": extra.get("timestamp"),
            "recorded_at": recorded_at,
        }
        for extra in extras
    ]
    written: list[dict[str, Any]] = []
    with closing(sqlite3.connect(path, timeout=30)) as db, db:
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (message_id TEXT PRIMARY KEY, recipient TEXT, "
            "business_phone TEXT, failure TEXT, timestamp INTEGER, recorded_at TEXT)"
        )
        for row in rows:
            cursor = db.execute(
                f"INSERT OR IGNORE INTO {TABLE} VALUES (:message_id, :recipient, :business_phone, :failure, "
                ":timestamp, :recorded_at)",
                row,
            )
            if cursor.rowcount:
                written.append(row)
    return written


try:
    from airflow_provider_itnio.assets import message_status
except ImportError as err:  # Airflow 2: no receiver, no asset events from it
    from airflow_provider_itnio.stub_dags import needs_airflow_3_1_dag

    dag = needs_airflow_3_1_dag("itnio_record_failed_statuses", err, tags=["itnio", "example"])
else:
    from airflow.sdk import task

    # [START howto_asset_message_status]
    with DAG(
        dag_id="itnio_record_failed_statuses",
        description="Log and record every message the vendor reports failed",
        schedule=message_status("itnio_default", "failed"),
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["itnio", "example"],
    ):

        @task
        def record(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
            """Log each failed message of the run's events and append it to the failures table."""
            extras = [
                dict(event.extra or {}) for events in (triggering_asset_events or {}).values() for event in events
            ]
            for extra in extras:
                print(
                    f"Message {extra.get('message_id')} to {extra.get('recipient')} failed: "
                    f"{extra.get('failure') or 'no reason given'}"
                )
            written = record_failures(extras, failures_db())
            print(f"{len(written)} failure(s) recorded in {failures_db()} (table {TABLE})")
            return written

        record()
    # [END howto_asset_message_status]
