"""
The receiver's database writes: one writer thread per process records the pushes in groups (Airflow 3.1+).

A push request does not write itself: :func:`~airflow_provider_itnio.webhook.push.receive_push` hands its parsed
push to the process's :data:`writer` (a :class:`GroupWriter`) and awaits the outcome. The writer takes every push
waiting (up to :data:`GROUP_CAP`) and records them in ONE transaction (:func:`record_group`), each in a savepoint of
its own, with the asset events of the new ones kept in the provider's outbox in the same transaction
(:mod:`airflow_provider_itnio.webhook.asset_events`); each request is answered once its group is committed. Between
groups the writer turns the outbox into Airflow asset events (:func:`write_asset_events`), at most every
``[itnio] webhook_asset_events_interval`` seconds (:func:`asset_events_interval`) while pushes keep coming.

The writers of all API server processes take turns (:func:`_write_transaction`): on SQLite on a lock file next to the
database, on PostgreSQL on a transaction-level advisory lock (:data:`WRITER_ADVISORY_LOCK`), each waiting at most
:data:`WRITER_TURN_WAIT` seconds. A database that is down fails the whole group: every request of it answers 503 and
the vendor re-pushes. At the process's exit the writer finishes the transaction it is in (:func:`_at_exit`).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import dataclasses
import datetime
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from airflow_provider_itnio.events import InboundEvent, StatusEvent
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed
from airflow_provider_itnio.webhook.store import Recorded, new_session, record_push

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("The itnio webhook receiver")

from sqlalchemy import func, select, text
from sqlalchemy.exc import (
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm import Session

from airflow_provider_itnio.webhook.asset_events import (
    TakenByAnother,
    Written,
    keep_in_outbox,
    outbox_row,
    write_outbox,
)

__all__ = [
    "DEFAULT_ASSET_EVENTS_INTERVAL",
    "GROUP_CAP",
    "MAX_TURN_BACKOFF",
    "MIN_ASSET_EVENTS_INTERVAL",
    "STOP_WAIT",
    "WRITER_ADVISORY_LOCK",
    "WRITER_TURN_WAIT",
    "GroupWriter",
    "asset_events_interval",
    "record_group",
    "write_asset_events",
    "writer",
]

log = logging.getLogger(__name__)


#: Seconds the process's exit waits for its writer to finish the transaction it is in.
STOP_WAIT = 10.0
#: The most pushes one transaction of the writer records (the rest wait for the next one).
GROUP_CAP = 100
#: Seconds between two writes of the outbox's asset events while pushes keep coming (``[itnio]
#: webhook_asset_events_interval``).
DEFAULT_ASSET_EVENTS_INTERVAL = 0.25
#: The least interval taken from the configuration (seconds): a turn at the outbox is never a busy loop.
MIN_ASSET_EVENTS_INTERVAL = 0.01
#: The longest wait between two turns at the outbox that failed (seconds; the first waits 1 s, then doubling).
MAX_TURN_BACKOFF = 30.0
#: Seconds a writer waits for its turn on SQLite (see :func:`_writers_take_turns`) before it goes on without it.
WRITER_TURN_WAIT = 10.0
#: PostgreSQL advisory lock key the receiver's group transactions take turns on (see :func:`_begin_write`).
WRITER_ADVISORY_LOCK = 0x17_01_10_0B
#: Errors after which the transaction cannot go on (the database is down, locked or gone): the whole group fails.
_DATABASE_DOWN = (OperationalError, InterfaceError, DisconnectionError, SQLAlchemyTimeoutError)


@dataclass
class _Push:
    """A push waiting for the writer: its event, its connection and the future its request awaits."""

    event: StatusEvent | InboundEvent
    conn_id: str
    future: concurrent.futures.Future[Recorded] = dataclasses.field(default_factory=concurrent.futures.Future)


def _begin_write(session: Session) -> None:
    """
    Open the session's transaction as a write transaction.

    On SQLite, ``BEGIN IMMEDIATE``: the database's write lock is taken (or waited for) at once, so a transaction
    cannot fail half-way when another process wrote in between, and the per-push savepoints nest inside it (the
    Python driver would otherwise start the transaction with the first ``SAVEPOINT``, whose ``RELEASE`` commits).
    On PostgreSQL, a transaction-level advisory lock (:data:`WRITER_ADVISORY_LOCK`) makes the groups of all API
    server processes take turns: two groups running at once would take the rows of the same messages and the same
    asset's queue row in different orders and deadlock (measured: 93 of 20,000 pushes answered 503 with two API
    server workers before). A writer waits for its turn at most :data:`WRITER_TURN_WAIT` seconds (``lock_timeout``):
    when another one is stuck inside its transaction, the group fails (503, the vendor re-pushes) instead of every
    push request hanging. Other databases open it with their first statement.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))
    elif dialect == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = '{int(WRITER_TURN_WAIT * 1000)}ms'"))
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITER_ADVISORY_LOCK})
        session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))


def _sqlite_database(session: Session) -> str | None:
    """Return the path of the session's SQLite database file, or ``None`` for another database (or in memory)."""
    url = session.get_bind().engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return os.path.abspath(url.database)


@contextlib.contextmanager
def _writers_take_turns(session: Session) -> Iterator[None]:
    """
    Hold, on SQLite, an exclusive lock on ``<database>-itnio-writer.lock`` (``flock``) while inside.

    SQLite has one write lock, and a process waiting for it polls (its busy handler sleeps up to 100 ms between
    tries), so with several API server workers a group could wait long after the other process committed. The
    writers of all processes queue on this lock file instead (trying every millisecond), and the next one starts as
    soon as the previous one released it, after its commit. A writer that waited :data:`WRITER_TURN_WAIT` seconds
    goes on without its turn: SQLite's own lock still keeps the writes apart (and its busy timeout answers 503), so
    a stuck process cannot hold the others' requests forever. Other writers (Airflow's) meet SQLite's lock as before.
    Elsewhere (PostgreSQL, MySQL), or when the file cannot be created, nothing is held.

    :param session: The writer's session (only its database's URL is read).
    """
    import fcntl  # POSIX, as Airflow itself

    path = _sqlite_database(session)
    descriptor: int | None = None
    if path is not None:
        try:
            descriptor = os.open(path + "-itnio-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:  # cannot create it: SQLite's own lock still keeps the writes apart
            log.warning("itnio webhook: no writer lock file next to the database (%s); writing without it", err)
    if descriptor is None:
        yield
        return
    try:
        deadline = time.monotonic() + WRITER_TURN_WAIT
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:  # the other process is stuck: SQLite's lock decides (503 if held)
                    log.warning("itnio webhook: another writer kept its turn %g s; writing anyway", WRITER_TURN_WAIT)
                    break
                time.sleep(0.001)
        yield
    finally:
        os.close(descriptor)  # releases the lock


@contextlib.contextmanager
def _write_transaction() -> Iterator[Session]:
    """
    Yield a session in a write transaction, in this process's turn among the writers; commit it on the way out.

    The turn (:func:`_writers_take_turns`) is released once the session has committed (or rolled back).
    """
    with contextlib.ExitStack() as turn, new_session() as session:
        turn.enter_context(_writers_take_turns(session))
        _begin_write(session)
        yield session


def record_group(pushes: list[_Push]) -> bool:
    """
    Record ``pushes`` in ONE transaction and settle each one's future once it is committed (or cannot be).

    Each push is recorded in a savepoint: a push whose writes fail on their own (a constraint, a value the database
    refuses) is rolled back alone and its future gets the error, the others go on. The asset events of the new
    pushes go into the outbox in the same transaction (one ``INSERT``; :mod:`.asset_events`), for the writer to
    write later (:func:`write_asset_events`). An error of the database itself (down, locked beyond its busy
    timeout, the commit failing), or of the outbox's insert, rolls the whole transaction back and every future gets
    it: nothing of the group is recorded, every request answers 503 and the vendor re-pushes.

    Return whether it put anything into the outbox.

    :param pushes: The pushes, in arrival order (a re-push after its original in the same group is a duplicate).
    """
    outcomes: list[Recorded | BaseException] = []
    try:
        kept = _write_group(pushes, outcomes)
    except Exception as err:
        for push in pushes:
            push.future.set_exception(err)
        return False
    for push, outcome in zip(pushes, outcomes, strict=True):
        if isinstance(outcome, Recorded):
            push.future.set_result(outcome)
        else:
            push.future.set_exception(outcome)
    return kept


def _write_group(pushes: list[_Push], outcomes: list[Recorded | BaseException]) -> bool:
    """
    Write ``pushes`` in one transaction (see :func:`record_group`), appending each one's outcome to ``outcomes``.

    Return whether it put anything into the outbox.

    :param pushes: The pushes.
    :param outcomes: Filled with one :class:`Recorded` or error per push, in order.
    :raises Exception: A database error that rolled the whole transaction back.
    """
    now = datetime.datetime.now(datetime.UTC)
    outbox: list[dict[str, Any]] = []
    with _write_transaction() as session:
        for push in pushes:
            try:
                with session.begin_nested():
                    recorded = record_push(session, push.event, push.conn_id, now=now)
            except _DATABASE_DOWN:
                raise
            except Exception as err:  # this push alone: its savepoint is rolled back
                outcomes.append(err)
                continue
            outcomes.append(recorded)
            if recorded.new:
                row = outbox_row(push.event, push.conn_id, now)
                if row is not None:
                    outbox.append(row)
        keep_in_outbox(session, outbox)  # an error here fails the whole group: nothing of it is committed
    return bool(outbox)


def write_asset_events(between: Callable[[], object] | None = None) -> Written:
    """
    Turn the outbox into Airflow asset events: one transaction per asset (the oldest rows of each, in order), each
    followed by its asset listeners' calls, then by ``between``.

    An asset's events need Airflow's asset manager once per transaction (:mod:`.asset_events`), so a transaction per
    asset costs no more of it than one for all, and the writer's turn at the outbox is cut into short transactions
    between which ``between`` records the pushes that came meanwhile (no push waits for the whole turn).

    When an asset's transaction fails on an error that is not the database's own (an event the database refuses), it
    is tried again one row at a time: such a row is logged and left in the outbox, the others are written. A
    database that is down, locked or without the outbox table leaves every row for a later turn (``failed``).

    :param between: Called after each asset's transaction (the writer records the pushes waiting).
    """
    from airflow_provider_itnio.webhook.models import asset_outbox_table

    total = Written()
    try:
        with new_session() as session:
            columns = asset_outbox_table.c  # the asset whose oldest row is oldest first
            uris = session.scalars(
                select(columns.asset_uri).group_by(columns.asset_uri).order_by(func.min(columns.id))
            ).all()
    except Exception as err:  # down, locked, or no outbox table (`airflow db migrate` not run after an upgrade)
        log.warning("itnio webhook: cannot read the asset outbox now (is `airflow db migrate` done?): %s", err)
        return Written(failed=True)
    for uri in uris:
        written = _write_asset_events_of(uri)
        total.taken += written.taken
        total.left += written.left
        total.more = total.more or written.more
        total.failed = total.failed or written.failed
        for notify in written.notifications:  # only for committed events
            try:
                notify()
            except Exception:
                log.exception("itnio webhook: an asset listener failed")
        if between is not None:
            between()
    return total


def _write_asset_events_of(uri: str) -> Written:
    """Write the outbox rows of the asset ``uri`` in one transaction (one by one when that fails; see above)."""
    try:
        with _write_transaction() as session:
            return write_outbox(session, asset_uri=uri)
    except _DATABASE_DOWN as err:
        log.warning("itnio webhook: cannot write asset events now (kept in the outbox): %s", err)
        return Written(failed=True)
    except TakenByAnother:
        log.info("itnio webhook: another writer took outbox rows of %s meanwhile; writing them one by one", uri)
    except Exception:
        log.warning("itnio webhook: writing the events of %s failed; trying them one by one", uri, exc_info=True)
    try:
        with _write_transaction() as session:
            return write_outbox(session, asset_uri=uri, one_by_one=True, database_down=_DATABASE_DOWN)
    except Exception as err:
        log.warning("itnio webhook: cannot write asset events now (kept in the outbox): %s", err)
        return Written(failed=True)


def asset_events_interval() -> float:
    """Return ``[itnio] webhook_asset_events_interval`` (seconds; default 0.25, at least 0.01)."""
    from airflow.configuration import conf

    try:
        value = conf.getfloat("itnio", "webhook_asset_events_interval", fallback=DEFAULT_ASSET_EVENTS_INTERVAL)
    except (ValueError, TypeError):
        log.warning("itnio webhook: [itnio] webhook_asset_events_interval is not a number; using the default")
        return DEFAULT_ASSET_EVENTS_INTERVAL
    return max(MIN_ASSET_EVENTS_INTERVAL, value)


def _freeze_startup_objects() -> None:
    """
    Move every object the process holds now (the API server's whole start: about 600,000) out of the garbage
    collector's reach (:func:`gc.freeze`), once per process, when its first push arrives.

    Otherwise each full collection walks all of them: on the API server one ran every few seconds under pushes and
    stopped every request for 350-450 ms, which was the receiver's p99. What is frozen is never collected as a
    cycle (it is freed by reference counting as before), as with Airflow's own ``gc.freeze()`` before it forks.
    """
    import gc

    gc.freeze()


def _at_exit(stop: Callable[[], None]) -> None:
    """
    Call ``stop`` when the interpreter starts to exit, before ``atexit``'s callbacks.

    Airflow disposes of its database engine from an ``atexit`` callback registered when it first connects (after
    the writer started): a writer still inside the driver then crashes the process. ``threading``'s own exit hook
    (what ``concurrent.futures`` uses to join its workers) runs before any ``atexit`` callback; ``atexit`` is the
    fallback where it does not exist.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(stop)
        return
    with contextlib.suppress(RuntimeError):  # the interpreter is already exiting
        register(stop)


class _Stopping(Exception):
    """The writer was told to stop in the middle of its turn at the outbox (between two transactions)."""


class GroupWriter:
    """
    Record pushes with one writer thread per process: it takes every push waiting (up to :data:`GROUP_CAP`) and
    records them in one transaction (:func:`record_group`), while the next ones queue; between groups it turns the
    outbox into asset events (:func:`write_asset_events`), at most every ``interval`` seconds while pushes keep
    coming, at once when they stop.

    On SQLite the database has one write lock: one writer that commits many pushes at a time, instead of a
    transaction per request queueing for the lock, is what keeps the answers fast. Each request awaits its own
    push's outcome; it is answered only once its group is committed.

    The writer's first turn at the outbox comes with its first group (rows a previous process left are written
    then), and after that whenever a group put rows into it, or the last turn left rows behind: at once when the
    last turn found nothing (the first push after a quiet spell), else ``interval`` seconds after the last turn.

    :param write: Records one group; returns whether it put rows into the outbox (default :func:`record_group`).
    :param cap: The most pushes per group.
    :param write_events: Writes the outbox's asset events, calling its argument between its transactions (default
        :func:`write_asset_events`).
    :param interval: Seconds between two turns at the outbox while pushes keep coming (default
        :func:`asset_events_interval`, read when the writer starts).
    """

    def __init__(
        self,
        write: Callable[[list[_Push]], bool | None] = record_group,
        cap: int = GROUP_CAP,
        write_events: Callable[[Callable[[], object]], Written] = write_asset_events,
        interval: float | None = None,
    ) -> None:
        self._write = write
        self._cap = cap
        self._write_events = write_events
        self._interval = interval
        self._queue: queue.SimpleQueue[_Push | None] = queue.SimpleQueue()  # None: stop
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, event: StatusEvent | InboundEvent, conn_id: str) -> concurrent.futures.Future[Recorded]:
        """
        Queue a push for the writer; return the future that gets its :class:`Recorded` (or its error).

        :param event: The parsed push.
        :param conn_id: The connection whose address received it.
        """
        self._ensure_thread()
        push = _Push(event, conn_id)
        self._queue.put(push)
        return push.future

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:  # once per process (a forked API server worker starts its own writer)
            if self._pid != os.getpid():
                _freeze_startup_objects()
                self._queue = queue.SimpleQueue()
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="itnio-webhook-writer", daemon=True)
                self._thread.start()
                self._pid = os.getpid()
                _at_exit(self.stop)

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """
        Let the writer finish the transaction it is in and stop (at the process's exit; waits at most ``timeout``).

        A daemon thread still inside the database driver when the interpreter finalizes can crash the process
        (SIGSEGV): the writer's turns at the outbox often run just after the last request was answered. What stays
        in the queue is not recorded (nobody waits for it any more); what stays in the outbox is written by the next
        writer.

        :param timeout: Seconds to wait for the writer to stop.
        """
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        self._stopping = True
        self._queue.put(None)
        thread.join(timeout)

    def _run(self) -> None:
        pushes = self._queue
        interval = asset_events_interval() if self._interval is None else self._interval
        pending = True  # rows a previous process may have left in the outbox
        due = -math.inf  # when the outbox's next turn may come: at once, until a turn finds rows
        backoff = 0.0  # after turns that failed: 1 s, doubling up to MAX_TURN_BACKOFF
        while True:
            first: _Push | None = None  # None also when told to stop
            # with rows pending, wait for a push at most until the outbox's turn is due
            wait = max(due - time.monotonic(), 1e-9) if pending else None
            with contextlib.suppress(queue.Empty):
                first = pushes.get(timeout=wait)
            if self._stopping:
                return
            if first is not None:
                if self._record([first]):
                    pending = True
                if time.monotonic() < due:
                    continue
            if pending:
                written, recorded = self._outbox_turn()
                pending = written.failed or written.more or recorded
                if written.failed:  # the rows stay: try again later, not in a busy loop
                    backoff = min(max(2 * backoff, 1.0), MAX_TURN_BACKOFF)
                    due = time.monotonic() + max(backoff, interval)
                else:
                    backoff = 0.0
                    due = time.monotonic() + (interval if written.taken else 0.0)

    def _record(self, group: list[_Push]) -> bool:
        """Record ``group`` and every push waiting behind it (up to the cap); return whether the outbox got rows."""
        while len(group) < self._cap:
            try:
                push = self._queue.get_nowait()
            except queue.Empty:
                break
            if push is None:  # told to stop: record what came before it
                break
            group.append(push)
        # Claim every future: one whose request was cancelled meanwhile (the vendor hung up and Starlette
        # cancelled the endpoint, which cancels the future it awaits) is left out; the others can no longer be
        # cancelled, so settling them cannot raise InvalidStateError half-way through the group.
        group = [push for push in group if push.future.set_running_or_notify_cancel()]
        if not group:
            return False
        try:
            return self._write(group) is not False
        except BaseException as err:  # never leave a request waiting, never let the writer die
            for push in group:
                if not push.future.done():
                    push.future.set_exception(err)
            return True

    def _outbox_turn(self) -> tuple[Written, bool]:
        """
        Write the outbox's asset events once, recording the pushes that come meanwhile between its transactions;
        return what it wrote, and whether those pushes put rows into the outbox.
        """
        recorded = False

        def between() -> None:
            nonlocal recorded
            if self._stopping:
                raise _Stopping
            with contextlib.suppress(queue.Empty):
                push = self._queue.get_nowait()
                if push is not None and self._record([push]):
                    recorded = True

        try:
            written = self._write_events(between)
        except _Stopping:
            return Written(), recorded
        except Exception:  # never let the writer die
            log.exception("itnio webhook: writing asset events failed; they stay in the outbox")
            written = Written(failed=True)
        return written, recorded


#: The process's writer.
writer = GroupWriter()
