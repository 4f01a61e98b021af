"""
Ledger of a 1,000,000-row batch on PostgreSQL: size on disk, writes, bytes written, and what the sweep gives back.

The engine (:class:`~airflow_provider_itnio.batch.BatchSender`) and the real
:class:`~airflow_provider_itnio.batch.ProgressStore` (with a lease, as in a task) write through Airflow's own
``Variable`` model (``airflow.models.variable.Variable.set/get/delete``: the SQL a task's Variables cause on the
metadata database, Fernet-encrypted with the stack's key) into a scratch database ``itnio_bench_ledger`` of the
production-like stack's PostgreSQL cluster (never the ``airflow`` database), holding Airflow's ``variable`` table
(and ``team``, which it references) created from Airflow's models. The send is a stub answering at once with a
fresh 32-hex ``messageId``: sends never wait, so flushes happen as often as the ledger allows (every 500 records),
the most writes per row a batch can cause. The batch is completed (the completion marker), then deleted as the
next run's sweep deletes it (:meth:`~airflow_provider_itnio.batch.ProgressStore.delete`), then the table is
vacuumed (``VACUUM``, then ``VACUUM FULL``).

Needs the stack's PostgreSQL (``make stack``); run with the stack's venv (psycopg2):

    .venv-stack/bin/python -m bench.bench_ledger_pg [--rows 1000000] [--results]   # make bench-ledger-pg
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from bench.common import ROOT, emit, recipients
from bench.record import record_section

ROWS = 1_000_000
DATABASE = "itnio_bench_ledger"
HEADING = "## Stack: ledger of a 1,000,000-row batch on PostgreSQL"


def _stack() -> Any:
    """Return ``scripts/stack.py`` as a module (its state, ``create_database``, ``drop_database``)."""
    spec = importlib.util.spec_from_file_location("itnio_stack_script", ROOT / "scripts" / "stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class CountingVariables:
    """Airflow's ``Variable`` model as a ledger backend, counting reads, writes and the bytes handed to each write."""

    def __init__(self) -> None:
        from airflow.models.variable import Variable

        self._variable = Variable
        self.lock = threading.Lock()
        self.writes = self.reads = self.deletes = self.head_writes = 0
        self.bytes_written = 0
        self.largest = (0, "")

    def get(self, key: str) -> str | None:
        """Return the Variable's text, or None."""
        with self.lock:
            self.reads += 1
        value = self._variable.get(key, default_var=None)
        return None if value is None else str(value)

    def set(self, key: str, value: str) -> None:
        """Write the Variable (an upsert by Airflow's model, Fernet-encrypted)."""
        size = len(value.encode("utf-8"))
        with self.lock:
            self.writes += 1
            self.head_writes += key.endswith("__head")
            self.bytes_written += size
            self.largest = max(self.largest, (size, key))
        self._variable.set(key, value, description="bench_ledger_pg")

    def delete(self, key: str) -> None:
        """Delete the Variable."""
        with self.lock:
            self.deletes += 1
        self._variable.delete(key)


def table_figures(engine: Any) -> dict[str, int]:
    """Return the ``variable`` table's size on disk (with TOAST and indexes), its rows and the bytes of its values."""
    import sqlalchemy as sa

    with engine.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT pg_total_relation_size('variable'), pg_relation_size('variable'), count(*), "
                "coalesce(sum(octet_length(val)), 0), coalesce(max(octet_length(val)), 0) FROM variable"
            )
        ).one()
    total, heap, count, values, largest = (int(value) for value in row)
    return {"total_bytes": total, "heap_bytes": heap, "rows": count, "value_bytes": values, "largest_value": largest}


def vacuum(engine: Any, full: bool = False) -> None:
    """Run ``VACUUM`` (or ``VACUUM FULL``) on the ``variable`` table."""
    import sqlalchemy as sa

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text(f"VACUUM {'FULL ' if full else ''}variable"))


def measure(rows_count: int, url: str, fernet_key: str) -> dict[str, Any]:
    """
    Run, complete and delete one ledger of ``rows_count`` rows on the database ``url``; return the figures.

    :param rows_count: Rows of the batch (all valid, all accepted).
    :param url: The scratch database (SQLAlchemy URL).
    :param fernet_key: Encrypts the Variables, as on the stack.
    """
    os.environ.update(
        {
            "AIRFLOW_HOME": tempfile.mkdtemp(prefix="itnio-bench-ledger-"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
            "AIRFLOW__CORE__FERNET_KEY": fernet_key,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )
    from airflow import settings
    from airflow.models.base import Base
    from airflow.models.variable import Variable

    from airflow_provider_itnio import batch
    from airflow_provider_itnio.messages import Text

    settings.configure_orm()
    engine = settings.engine
    Base.metadata.create_all(engine, tables=[Base.metadata.tables["team"], Variable.__table__])
    vacuum(engine, full=True)
    before = table_figures(engine)

    backend = CountingVariables()
    key = batch.progress_key("bench_ledger_pg", "manual__bench", "send", -1)
    store = batch.ProgressStore(
        backend,
        key,
        owner=batch.lease_owner(1),
        task={"dag_id": "bench_ledger_pg", "run_id": "manual__bench", "task_id": "send", "map_index": -1},
    )
    plan = batch.MessagePlan(Text(body="Your order has shipped").to_payload())

    def rows() -> Iterator[str]:
        yield from recipients(rows_count)

    def send(recipient: str, message: Any) -> str:
        return uuid.uuid4().hex

    started = time.perf_counter()
    outcome = batch.BatchSender(send, plan, concurrency=8, progress=store).run(rows())
    store.complete(outcome.result(), rows_digest=outcome.rows_digest)
    seconds = time.perf_counter() - started
    assert outcome.sent == rows_count and not outcome.failed, outcome.summary()
    time.sleep(1.0)  # let PostgreSQL's statistics catch up (dead rows)
    after = table_figures(engine)
    writes = {"writes": backend.writes, "head_writes": backend.head_writes, "reads": backend.reads}
    written = backend.bytes_written

    started_delete = time.perf_counter()
    batch.ProgressStore(backend, key).delete()  # what the next run's sweep does (sweep_completed_ledgers)
    delete_seconds = time.perf_counter() - started_delete
    after_delete = table_figures(engine)
    vacuum(engine)
    after_vacuum = table_figures(engine)
    vacuum(engine, full=True)
    after_vacuum_full = table_figures(engine)
    return {
        "rows": rows_count,
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows_count / seconds),
        **writes,
        "writes_per_s": round(backend.writes / seconds, 1),
        "writes_per_1000_rows": round(backend.writes / rows_count * 1000, 2),
        "bytes_written": written,
        "bytes_written_per_s": round(written / seconds),
        "bytes_written_per_row": round(written / rows_count, 1),
        "largest_write": backend.largest[0],
        "deletes": backend.deletes,
        "delete_seconds": round(delete_seconds, 2),
        "table_before": before,
        "table_after": after,
        "table_after_delete": after_delete,
        "table_after_vacuum": after_vacuum,
        "table_after_vacuum_full": after_vacuum_full,
    }


def _mb(value: int) -> str:
    return f"{value / 1e6:,.1f} MB" if value >= 1e6 else f"{value / 1e3:,.0f} KB"


def section(figures: dict[str, Any], batch_md5: str, load: str) -> list[str]:
    """
    Return the lines of the results section.

    :param figures: What :func:`measure` returned.
    :param batch_md5: ``md5sum`` of the ``batch.py`` measured.
    :param load: The load average when the run started.
    """
    before, after = figures["table_before"], figures["table_after"]
    deleted, vacuumed, full = (
        figures["table_after_delete"],
        figures["table_after_vacuum"],
        figures["table_after_vacuum_full"],
    )
    return [
        "",
        f"`make bench-ledger-pg` (`bench/bench_ledger_pg.py`): {figures['rows']:,} rows through `BatchSender` and",
        "`ProgressStore` (with a lease, as in a task) writing through Airflow's `Variable` model (Fernet-encrypted)",
        "into a scratch database of the stack's PostgreSQL; the send is a stub answering at once, so the ledger",
        "flushes as often as it allows (every 500 records): the most writes per row. Then the completion marker,",
        "the sweep's delete, `VACUUM`, `VACUUM FULL`. Measured against `batch.py` md5 "
        f"`{batch_md5}`; load average {load} when it started (2 shared cores: the times are noisy).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| time (batch + completion) | {figures['seconds']} s ({figures['rows_per_s']:,} rows/s) |",
        f"| Variable writes | {figures['writes']:,} ({figures['head_writes']:,} of them the head), "
        f"{figures['writes_per_s']} /s, {figures['writes_per_1000_rows']} per 1,000 rows; "
        f"{figures['reads']:,} reads |",
        f"| bytes written (values before encryption) | {_mb(figures['bytes_written'])}, "
        f"{_mb(figures['bytes_written_per_s'])}/s, {figures['bytes_written_per_row']} bytes per row |",
        f"| largest Variable written | {figures['largest_write']:,} bytes ({after['largest_value']:,} stored, "
        "encrypted) |",
        f"| `variable` table before | {_mb(before['total_bytes'])} ({before['rows']} rows) |",
        f"| after the batch completed | {_mb(after['total_bytes'])} on disk (table, TOAST, indexes), "
        f"{after['rows']:,} Variables holding {_mb(after['value_bytes'])} of values |",
        f"| after the sweep deleted the ledger ({figures['deletes']:,} deletes, {figures['delete_seconds']} s) | "
        f"{_mb(deleted['total_bytes'])} ({deleted['rows']} rows) |",
        f"| after `VACUUM` | {_mb(vacuumed['total_bytes'])} (space reusable by later writes) |",
        f"| after `VACUUM FULL` | {_mb(full['total_bytes'])} |",
    ]


def main() -> None:
    """Measure, print, and with ``--results`` write the section into ``bench/RESULTS.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--results", action="store_true", help="write the section into bench/RESULTS.md")
    args = parser.parse_args()
    stack = _stack()
    state = stack.load_state()
    if not state or not stack.is_running("postgres"):
        raise SystemExit("the stack's PostgreSQL is not running: `make stack` first")
    url = stack.create_database(state, DATABASE)
    load = f"{os.getloadavg()[0]:.1f}"
    batch_md5 = hashlib.md5((ROOT / "airflow_provider_itnio" / "batch.py").read_bytes()).hexdigest()
    try:
        figures = measure(args.rows, url, state["fernet_key"])
    finally:
        from airflow import settings

        engine = getattr(settings, "engine", None)
        if engine is not None:
            engine.dispose()
        stack.drop_database(state, DATABASE)
    lines = section(figures, batch_md5, load)
    print(HEADING, *lines, sep="\n")
    emit({"bench": "ledger_pg", "batch_md5": batch_md5, **figures})
    if args.results:
        record_section(HEADING, lines)


if __name__ == "__main__":
    main()
