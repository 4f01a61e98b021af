"""
The batch engine's fakes and harnesses: scripted send functions, ledger stores, a try killed mid-batch, and the
Variable-backed progress of a DAG run.

Used by the engine's tests (``tests/unit/batch/``) and the operator's (``tests/integration/batch/``).
:func:`kill_mid_batch` runs :func:`sending_child` in a real process and SIGKILLs it while its sends are in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from airflow_provider_itnio import batch
from airflow_provider_itnio.batch import ledger
from airflow_provider_itnio.messages import Message, Text
from tests.support.paths import ROOT


def sent_recipients(sandbox: Any) -> list[str]:
    return [message["body"]["recipient"] for message in sandbox.messages()]


def batch_progress(dag_id: str) -> dict[str, str | None]:
    """Return every progress entry stored (in the metadata DB) for the batch tasks of ``dag_id``."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    found: dict[str, str | None] = {}
    with create_session() as session:
        rows = session.query(Variable).filter(Variable.key.like(f"{batch.PROGRESS_PREFIX}__{dag_id}__%")).all()
        for row in rows:
            suffix = row.key.rsplit("__", 1)[-1]
            if suffix == "head" or suffix.rstrip("0123456789") in ledger._RESULT_PARTS.values():
                continue  # progress parts only: not the head, not a completed result's parts
            found.update(json.loads(row.val))
    return found


def clear_batch_progress(dag_id: str) -> None:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Variable).filter(Variable.key.like(f"{batch.PROGRESS_PREFIX}__{dag_id}__%")).delete(
            synchronize_session=False
        )


class FakeApi:
    """A send function: scripted errors per recipient, records every call (and whether the store was down)."""

    def __init__(self, errors: dict[str, Exception] | None = None, delay: float = 0.0, store: Any = None) -> None:
        self.errors = errors or {}
        self.delay = delay
        self.store = store
        self.calls: list[str] = []
        self.calls_while_down = 0
        self.lock = threading.Lock()

    def __call__(self, recipient: str, message: Message) -> str:
        with self.lock:
            self.calls.append(recipient)
            if self.store is not None and self.store.down:
                self.calls_while_down += 1
        error = self.errors.get(recipient)
        if error is not None:
            raise error
        if self.delay:
            time.sleep(self.delay)
        return f"id-{recipient}"


def make_rows(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"recipient": f"1555080{i:04d}", "name": f"N{i}"} for i in range(start, start + n)]


def make_engine(send: Any, **kwargs: Any) -> batch.BatchSender:
    return batch.BatchSender(send, batch.MessagePlan(Text(body="Hi {{ recipient }}").to_payload()), **kwargs)


def make_store(backend: Any, owner: str | None = None, **kwargs: Any) -> batch.ProgressStore:
    options: dict[str, Any] = {"settle": 0.05, "write_retry_seconds": 0.5}
    options.update(kwargs)
    return batch.ProgressStore(backend, "k", owner=owner, **options)


def assert_counts_add_up(outcome: batch.BatchOutcome, rows: int) -> None:
    result = outcome.result()
    assert sum(result[name] for name in batch.COUNTERS) == rows, result
    assert result["failed"] == len(result["errors"])


def sandbox_send(sandbox: Any) -> tuple[Any, Any]:
    from airflow_provider_itnio.hooks.itnio import ItnioHook

    hook = ItnioHook()

    def send(recipient: str, message: Message) -> str:
        return hook.send(recipient, message).message_id

    return hook, send


def replay_batch(backend: Any, rows: list[Any]) -> batch.BatchOutcome:
    api = FakeApi()
    outcome = make_engine(api, progress=make_store(backend, batch.lease_owner(3))).run(rows)
    assert api.calls == [] and outcome.completed_earlier is not None  # nothing sent again
    return outcome


#: The killed try's batch: rows, the bound on unresolved sends (small, so that it bites), the lease (short, so
#: that the retry takes it over soon after the kill).
KILL_ROWS = 600


KILL_MAX_UNFLUSHED = 40


KILL_LEASE = {"lease_ttl": 3.0, "safety": 1.0}


KILL_LATENCY = 0.05


class SqliteBackend:
    """
    A :class:`~airflow_provider_itnio.batch.KeyValueBackend` in a SQLite file: it outlives a killed process, as
    Airflow Variables outlive a killed task.

    :param path: The database file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _db(self) -> contextlib.closing[sqlite3.Connection]:
        return contextlib.closing(sqlite3.connect(self.path, timeout=30, isolation_level=None))

    def get(self, key: str) -> str | None:
        """Return the value, or None."""
        with self._db() as db:
            row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        """Write the value."""
        with self._db() as db:
            db.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def delete(self, key: str) -> None:
        """Remove the value."""
        with self._db() as db:
            db.execute("DELETE FROM kv WHERE key = ?", (key,))


def sending_child(path: str) -> None:
    """Send the killed try's batch (run in a process of its own, which the test kills with SIGKILL)."""
    _hook, send = sandbox_send(None)  # the process is killed: the hook is never closed
    store = make_store(SqliteBackend(path), batch.lease_owner(1), max_unflushed=KILL_MAX_UNFLUSHED, **KILL_LEASE)
    make_engine(send, concurrency=8, progress=store).run(make_rows(KILL_ROWS))


def kill_mid_batch(sandbox: Any, path: Path) -> SqliteBackend:
    """Run the batch in a child process, SIGKILL it once a third of the rows reached the sandbox; return its ledger."""
    sandbox.set_latency(KILL_LATENCY)  # sends are in flight when the kill comes
    backend = SqliteBackend(path)
    code = f"from tests.support.batch import sending_child; sending_child({str(path)!r})"
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while len(sandbox.messages()) < KILL_ROWS // 3:
            assert child.poll() is None, "the batch ended before it could be killed"
            assert time.monotonic() < deadline, "the batch did not start"
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    sandbox.set_latency(0.0)
    while time.time() < json.loads(backend.get("k__head") or "{}").get("expires", 0):  # the dead try's lease
        time.sleep(0.05)
    return backend


def retry_batch(sandbox: Any, backend: Any, **options: Any) -> batch.BatchOutcome:
    """Run and complete the retry of the killed batch over the same ledger (as the task does)."""
    hook, send = sandbox_send(sandbox)
    store = make_store(backend, batch.lease_owner(2), max_unflushed=KILL_MAX_UNFLUSHED)
    try:
        outcome = make_engine(send, concurrency=8, progress=store, **options).run(make_rows(KILL_ROWS))
    finally:
        hook.close()
    assert outcome.aborted is None, outcome.summary()
    store.complete(outcome.result(), rows_digest=outcome.rows_digest)
    return outcome


def copies_by_recipient(sandbox: Any) -> Counter[str]:
    """Return how many times each recipient received the message (accepted at the sandbox)."""
    return Counter(message["body"]["recipient"] for message in sandbox.messages())


MESSAGE = {"type": "text", "text": {"body": "Hi {{ row.name }}"}}


FALLBACK = {
    "template": {
        "name": "{{ row.template }}",
        "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{ row.name }}"}]}],
    }
}
