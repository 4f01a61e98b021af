"""
The FastAPI app that receives the vendor's pushes on Airflow 3.1+'s API server (served under ``/itnio``).

``POST /itnio/webhook/{conn_id}/{token}`` takes both pushes (status reports and customers' messages, told apart by
``eventType``) for the ``itnio`` connection ``conn_id``, records each once in the provider's tables and answers
at once (no outbound call inside the request). The answers:

=====  ===============================================================================================
200    recorded, or a re-push of something already recorded (``"duplicate": true``): nothing written twice
400    not JSON, not an object, a required field missing or unreadable, an unknown ``eventType``, or an
       ``appId`` that is not the connection's ``app_id`` (the body names the field, never a token)
404    unknown connection, a connection of another type or without a ``webhook_token`` extra, or a wrong
       token: the same answer for all of them (``{"detail": "Not Found"}``, as for any unknown path)
413    a body over :data:`~airflow_provider_itnio.events.MAX_PUSH_BYTES` (1 MiB): a larger ``Content-Length``
       is refused before reading, and the read stops at the limit
503    the database could not record it (the tables are missing, or the database is down), or could not record
       the answer an approval tap gives; the vendor re-pushes
=====  ===============================================================================================

Nothing is recorded for an answer other than 200, but for a tap whose answer could not be recorded: its push is
kept with the tap pending, and the re-push applies it (:mod:`airflow_provider_itnio.webhook.hitl`). A push
recorded for the first time is also an Airflow asset event (:mod:`airflow_provider_itnio.assets`; a tap on an
approval's button is none, it answers the approval) when a DAG uses the asset: kept in the provider's outbox in
the same transaction, and written as an Airflow asset event by the process's writer shortly after
(:mod:`airflow_provider_itnio.webhook.asset_events`).

``GET /itnio/api/{conn_id}/messages/{message_id}/status``, ``GET /itnio/api/{conn_id}/window`` and its bulk form
``POST /itnio/api/{conn_id}/windows`` (up to :data:`~airflow_provider_itnio.receiver_protocol.MAX_WINDOW_RECIPIENTS`
customers per request) answer what was recorded to workers and triggers (which Airflow 3 keeps off the metadata
database), authenticated by ``Authorization: Bearer <webhook_token>``; see :mod:`airflow_provider_itnio.hooks.receiver`.

The token is compared in constant time (``hmac.compare_digest`` of SHA-256 digests, so not even its length leaks),
and an unknown connection id gets the same work as a wrong token (:func:`_gate`): its answer time does not tell
whether the connection exists.

The token never reaches a log line: the app's first middleware moves it out of the request's ``path`` (and
``raw_path``) into a private scope key and leaves ``***`` in its place, before routing; it does so for any path
under a webhook address too (``.../{token}/anything`` gets 404 with the token masked), and the address with a
trailing slash is served as it is (not redirected). Airflow 3's API server logs
each request once, from its ``HttpAccessLogMiddleware`` (uvicorn's and gunicorn's own access logs are turned off by
``airflow api-server``), reading the path from the same ASGI scope after the request, so it logs
``/itnio/webhook/<conn_id>/***``. A reverse proxy in front of the API server logs the URL it forwards: configure
it not to log ``/itnio/webhook/`` paths (or their last segment).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import dataclasses
import datetime
import hashlib
import hmac
import logging
import math
import os
import queue
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow_provider_itnio.connection_fields import APP_ID_EXTRA, CONN_TYPE, WEBHOOK_TOKEN_EXTRA
from airflow_provider_itnio.events import (
    MAX_PUSH_BYTES,
    InboundEvent,
    PushError,
    StatusEvent,
    is_final,
    parse_push,
)
from airflow_provider_itnio.receiver_protocol import MAX_STATUS_IDS, MAX_STATUS_WAIT, MAX_WINDOW_RECIPIENTS
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed
from airflow_provider_itnio.webhook.store import (
    Recorded,
    get_message_status,
    get_status_history,
    last_inbound_at,
    last_inbounds_at,
    record_push,
)

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("The itnio webhook receiver")

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text
from sqlalchemy.exc import (
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from airflow_provider_itnio.webhook.asset_events import (
    TakenByAnother,
    Written,
    keep_in_outbox,
    outbox_row,
    write_outbox,
)

__all__ = ["TOKEN_EXTRA", "app", "create_app"]

log = logging.getLogger(__name__)

#: :data:`~airflow_provider_itnio.connection_fields.WEBHOOK_TOKEN_EXTRA`, kept for code that imported it from here.
TOKEN_EXTRA = WEBHOOK_TOKEN_EXTRA
#: What replaces the token in the request's path (and so in the access log).
MASK = "***"
_SCOPE_TOKEN = "itnio.webhook_token"
#: A webhook address, and anything under it: the token is the segment after the connection id, whatever follows
#: (a pasted address with a trailing slash or an extra segment must not put the token in the access log).
_WEBHOOK_PATH = re.compile(r"^/+webhook/+[^/]+/+([^/]+)", re.IGNORECASE)
_NOT_FOUND = {"detail": "Not Found"}


@dataclass(frozen=True)
class _Receiver:
    """What a connection's webhook address needs: its application and the digest of its token."""

    app_id: str
    token_digest: bytes


def _digest(token: str) -> bytes:
    """Return the SHA-256 digest of a token (what is kept and compared, never the token)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


#: What a presented token is compared with when the connection has no webhook address (unknown, another type, no
#: token): a digest no token has, so that an unknown connection costs the same work as a wrong token.
_NO_RECEIVER_DIGEST = _digest(secrets.token_urlsafe(32))


class MaskTokenMiddleware:
    """
    Move the token out of a webhook request's path into the scope, leaving ``***`` in the path.

    :param app: The ASGI app to call.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Mask the token (HTTP requests to the webhook route only) and call the app."""
        if scope["type"] == "http":
            path: str = scope["path"]
            root_path: str = scope.get("root_path", "")
            route_path = path[len(root_path) :] if root_path and path.startswith(root_path) else path
            match = _WEBHOOK_PATH.match(route_path)
            if match:
                scope[_SCOPE_TOKEN] = match.group(1)
                masked = path[: len(path) - len(route_path)] + route_path[: match.start(1)] + MASK
                masked += route_path[match.end(1) :]
                scope["path"] = masked
                scope["raw_path"] = quote(masked, safe="/*").encode("ascii")
        await self.app(scope, receive, send)


def _resolve(conn_id: str) -> _Receiver | None:
    """Return what ``conn_id``'s webhook address needs, or ``None`` when it has none (unknown, other type, ...)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    if conn.conn_type != CONN_TYPE:
        return None
    extra = conn.extra_dejson or {}
    token = extra.get(WEBHOOK_TOKEN_EXTRA)
    app_id = str(extra.get(APP_ID_EXTRA) or "").strip()
    if not isinstance(token, str) or not token.strip():
        return None
    if not app_id:
        log.warning("itnio connection %s has a webhook token but no app_id extra: its pushes are refused", conn_id)
        return None
    return _Receiver(app_id=app_id, token_digest=_digest(token.strip()))


def _create_session() -> Any:
    """Return a session context manager that commits on exit (not the thread's scoped session)."""
    from airflow.utils.session import create_session

    try:
        return create_session(scoped=False)  # type: ignore[call-arg]
    except TypeError:  # Airflow 3.1's create_session() has no "scoped"
        return create_session()


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
#: Seconds a connection's webhook address (its application and token digest), or its having none, is reused before
#: the connection is read again.
RESOLVE_TTL = 5.0
#: The most connection ids whose webhook address (or its absence) is kept; the oldest goes first.
RESOLVE_CACHE_SIZE = 1000
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
    with contextlib.ExitStack() as turn, _create_session() as session:
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
        with _create_session() as session:
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

_resolved: OrderedDict[str, tuple[float, _Receiver | None]] = OrderedDict()


async def _resolve_cached(conn_id: str) -> _Receiver | None:
    """
    Return :func:`_resolve`'s answer, reusing it for :data:`RESOLVE_TTL` seconds, whether a receiver or ``None``.

    Pushes come in bursts to one address: reading (and decrypting) the connection once per burst instead of once per
    request saves a database read per request. An address that is not found is kept too, so that an unknown
    connection id is answered with the same work as a known one with a wrong token (its answer time does not tell
    whether it exists). A new, rotated or removed token takes effect within the TTL.
    """
    cached = _resolved.get(conn_id)
    if cached is not None and time.monotonic() - cached[0] < RESOLVE_TTL:
        return cached[1]
    receiver = await run_in_threadpool(_resolve, conn_id)
    _resolved[conn_id] = (time.monotonic(), receiver)
    _resolved.move_to_end(conn_id)
    while len(_resolved) > RESOLVE_CACHE_SIZE:  # never grow without bound (ids in URLs are anyone's to choose)
        _resolved.popitem(last=False)
    return receiver


async def _gate(conn_id: str, presented: str) -> _Receiver | None:
    """
    Return the connection's receiver when ``presented`` is its ``webhook_token``, else ``None``.

    The one check of the webhook address and of the read API. The same work whatever the reason for ``None`` (an
    unknown connection, one of another type or without a token, a wrong token): the connection is looked up through
    the same cache (:func:`_resolve_cached`), the presented token is digested and compared in constant time with the
    receiver's digest, or with one no token has.

    :param conn_id: The connection id in the URL.
    :param presented: The token presented (``""`` when none was).
    :raises SQLAlchemyError: The connection cannot be read now.
    """
    receiver = await _resolve_cached(conn_id)
    expected = receiver.token_digest if receiver is not None else _NO_RECEIVER_DIGEST
    matches = hmac.compare_digest(_digest(presented), expected)
    return receiver if matches and presented else None


def _start_hitl_sweeper() -> None:
    """Start this process's sweep of approval taps left pending (:mod:`airflow_provider_itnio.webhook.hitl`)."""
    from airflow_provider_itnio.webhook.hitl import sweeper

    sweeper.ensure()


@contextlib.asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """Start the approval taps' sweeper with the API server (Airflow 3.3 runs its plugins' lifespans)."""
    try:
        _start_hitl_sweeper()
    except Exception as err:  # the first push starts it again
        log.error("itnio webhook: cannot start the sweep of approval taps: %s", type(err).__name__)
    yield


async def _read_body(request: Request) -> bytes | None:
    """Return the request body, or ``None`` as soon as it exceeds :data:`MAX_PUSH_BYTES`."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_PUSH_BYTES:
            return None
    return bytes(body)


def _too_large(size: str) -> JSONResponse:
    return JSONResponse(
        status_code=413,
        content={"detail": f"body: at most {MAX_PUSH_BYTES} bytes; got {size}", "field": "body"},
    )


async def receive_push(conn_id: str, token: str, request: Request) -> JSONResponse:
    """
    Record one push from the vendor for connection ``conn_id``.

    :param conn_id: The ``itnio`` connection whose address this is.
    :param token: The token in the address (``***`` once masked: the real one is taken from the scope).
    :param request: The request.
    """
    presented: str = request.scope.get(_SCOPE_TOKEN, token)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PUSH_BYTES:
        return _too_large(f"{int(declared)} bytes")

    try:
        receiver = await _gate(conn_id, presented)
    except SQLAlchemyError:
        log.exception("itnio webhook: cannot read connection %s", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The push cannot be checked now; retry later."})
    if receiver is None:
        return JSONResponse(status_code=404, content=_NOT_FOUND)
    _start_hitl_sweeper()

    body = await _read_body(request)
    if body is None:
        return _too_large(f"more than {MAX_PUSH_BYTES} bytes")
    try:
        event = parse_push(body)
    except PushError as err:
        log.info("itnio webhook %s: refused a push (%s): %s", conn_id, err.http_status, err)
        return JSONResponse(status_code=err.http_status, content={"detail": str(err), "field": err.field})
    if event.app_id != receiver.app_id:
        detail = "appId: must be the connection's app_id; got another application's"
        log.info("itnio webhook %s: refused a push (400): %s", conn_id, detail)
        return JSONResponse(status_code=400, content={"detail": detail, "field": "appId"})

    try:
        recorded = await asyncio.wrap_future(writer.submit(event, conn_id))
    except SQLAlchemyError:
        log.exception(
            "itnio webhook %s: cannot record a push (are the provider's tables created? run `airflow db migrate`)",
            conn_id,
        )
        return JSONResponse(status_code=503, content={"detail": "The push cannot be recorded now; retry later."})
    answer: dict[str, Any] = {
        "event_type": event.event_type,
        "message_id": event.message_id,
        "duplicate": not recorded.new,
    }
    if isinstance(event, StatusEvent):
        answer["status"] = recorded.status.value if recorded.status is not None else None
    if event.warnings:
        answer["warnings"] = list(event.warnings)
    background = None
    if isinstance(event, InboundEvent):  # a HITL answer (also on a re-push, while pending), or an approver writing
        from airflow_provider_itnio.webhook.hitl import TapNotRecorded, on_inbound

        try:  # what it sends goes after this answer
            background = await on_inbound(event, conn_id, new=recorded.new)
        except TapNotRecorded:  # the tap stays pending: its re-push (or the sweep) applies it
            return JSONResponse(status_code=503, content={"detail": "The tap cannot be recorded now; retry later."})
    return JSONResponse(status_code=200, content=answer, background=background)


# -- the read API: what the triggerer and workers ask instead of the metadata database ------------------------

#: How long after a customer's last message a business may send session messages (WhatsApp's customer window).
WINDOW = datetime.timedelta(hours=24)
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.astimezone(datetime.UTC).isoformat()


def _unix_iso(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


async def _authorize(conn_id: str, request: Request) -> _Receiver | JSONResponse:
    """
    Return the connection's receiver when the request carries ``Authorization: Bearer <its webhook_token>``.

    Otherwise return the answer: 404 ``Not Found`` (the same for an unknown connection, a connection without a
    token, no or another header, and a wrong token), or 503 when the connection cannot be read.
    """
    match = _BEARER.match(request.headers.get("authorization", ""))
    presented = match.group(1) if match else ""
    try:
        receiver = await _gate(conn_id, presented)
    except SQLAlchemyError:
        log.exception("itnio webhook: cannot read connection %s", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The connection cannot be read now; retry later."})
    if receiver is None:
        return JSONResponse(status_code=404, content=_NOT_FOUND)
    return receiver


def _read_status(message_id: str, app_id: str) -> dict[str, Any] | None:
    """Return the message's status record as the API answers it, or ``None`` when no status was recorded."""
    with _create_session() as session:
        record = get_message_status(session, message_id, app_id)
        if record is None:
            return None
        history = get_status_history(session, message_id, app_id)
    return _status_answer(record, history)


def _status_answer(record: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a message's status record and history (from the store) as the read endpoints answer them."""
    return {
        "message_id": record.message_id,
        "status": record.status.value,
        "final": is_final(record.status),
        "failure": record.failure,
        "recipient": record.recipient,
        "business_phone": record.business_phone,
        "conversation_id": record.conversation_id,
        "timestamp": _unix_iso(record.status_timestamp) or _iso(record.updated_at),
        "updated_at": _iso(record.updated_at),
        "history": [
            {
                "status": item["status"],
                "failure": item["failure"],
                "timestamp": _unix_iso(item["status_timestamp"]),
                "received_at": _iso(item["received_at"]),
            }
            for item in history
        ],
    }


async def get_status(conn_id: str, message_id: str, request: Request) -> JSONResponse:
    """
    Answer a message's furthest status and its history (``Authorization: Bearer <webhook_token>``).

    :param conn_id: The ``itnio`` connection; only its application's messages are answered.
    :param message_id: The id the send call returned.
    :param request: The request.
    """
    receiver = await _authorize(conn_id, request)
    if isinstance(receiver, JSONResponse):
        return receiver
    try:
        answer = await run_in_threadpool(_read_status, message_id, receiver.app_id)
    except SQLAlchemyError:
        log.exception("itnio webhook %s: cannot read a message status", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The status cannot be read now; retry later."})
    if answer is None:
        return JSONResponse(status_code=404, content={"detail": "unknown message"})
    return JSONResponse(status_code=200, content=answer)


def _read_statuses(message_ids: list[str], app_id: str) -> dict[str, dict[str, Any] | None]:
    """Return ``{message_id: its status record, or None}`` for every id, reading ``_IN_CHUNK`` ids per query."""
    from airflow_provider_itnio.webhook.store import get_message_statuses

    found: dict[str, dict[str, Any] | None] = dict.fromkeys(message_ids)
    with _create_session() as session:
        for start in range(0, len(message_ids), _IN_CHUNK):
            for message_id, (record, history) in get_message_statuses(
                session, message_ids[start : start + _IN_CHUNK], app_id
            ).items():
                found[message_id] = _status_answer(record, history)
    return found


async def _authorized_json(conn_id: str, request: Request) -> tuple[_Receiver, dict[str, Any]] | JSONResponse:
    """
    Return the connection's receiver and the request's JSON object body, or the answer refusing the request.

    404 as :func:`_authorize` answers it, 413 for a body over 1 MiB, 400 (field ``body``) for a body that is not
    a JSON object.
    """
    import json

    receiver = await _authorize(conn_id, request)
    if isinstance(receiver, JSONResponse):
        return receiver
    body = await _read_body(request)
    if body is None:
        return _too_large(f"more than {MAX_PUSH_BYTES} bytes")
    try:
        data = json.loads(body)
    except ValueError:
        return _bad_request("body: must be JSON", "body")
    if not isinstance(data, dict):
        return _bad_request("body: must be a JSON object", "body")
    return receiver, data


#: Seconds between two looks at the status history while a ``POST .../statuses`` request waits for a change.
_STATUS_WAIT_CHECK = 0.25


def _status_mark() -> int:
    """Return the newest status history row's id (0 when none): what changed since a cursor is above it."""
    from airflow_provider_itnio.webhook.models import status_history_table

    with _create_session() as session:
        return int(session.execute(select(func.max(status_history_table.c.id))).scalar() or 0)


def _changed_since(message_ids: list[str], app_id: str, since: int) -> bool:
    """Return whether a status push for one of the messages was recorded after the history row ``since``."""
    from airflow_provider_itnio.webhook.models import status_history_table

    columns = status_history_table.c
    with _create_session() as session:
        for start in range(0, len(message_ids), _IN_CHUNK):
            query = select(columns.id).where(
                columns.app_id == app_id,
                columns.id > since,
                columns.message_id.in_(message_ids[start : start + _IN_CHUNK]),
            )
            if session.execute(query.limit(1)).first() is not None:
                return True
    return False


async def get_statuses(conn_id: str, request: Request) -> JSONResponse:
    """
    Answer the furthest status and history of many messages at once (``Authorization: Bearer <webhook_token>``).

    The body: ``{"message_ids": ["...", ...], "since": cursor, "wait": seconds}``: 1 to
    :data:`~airflow_provider_itnio.receiver_protocol.MAX_STATUS_IDS` non-empty strings; ``since`` (optional) the
    ``cursor`` of an earlier answer; ``wait`` (optional, 0 to
    :data:`~airflow_provider_itnio.receiver_protocol.MAX_STATUS_WAIT` seconds, default 0) how long to hold the request
    until a status push for one of the messages is recorded after ``since`` (a long poll: the answer comes at
    once when one was, or when ``since`` is absent). The answer: ``{"statuses": {message_id: record or null},
    "cursor": int, "changed": bool}``, one entry per distinct id, each record as
    ``GET .../messages/{message_id}/status`` answers it, ``null`` when no status was recorded (yet); ``changed``
    tells whether one of them changed after ``since``. 400 names the first bad field (``message_ids[3]``); 413 for
    a body over 1 MiB. What the shared poller of :mod:`airflow_provider_itnio.triggers.itnio` asks, once per
    interval, for all the waits of a triggerer.

    :param conn_id: The ``itnio`` connection; only its application's messages are answered.
    :param request: The request.
    """
    import asyncio
    import time

    authorized = await _authorized_json(conn_id, request)
    if isinstance(authorized, JSONResponse):
        return authorized
    receiver, data = authorized
    message_ids = data.get("message_ids")
    if not isinstance(message_ids, list) or not message_ids:
        return _bad_request("message_ids: must be a non-empty list of message ids", "message_ids")
    if len(message_ids) > MAX_STATUS_IDS:
        return _bad_request(f"message_ids: at most {MAX_STATUS_IDS} per request; got {len(message_ids)}", "message_ids")
    for index, value in enumerate(message_ids):
        if not isinstance(value, str) or not value.strip():
            field = f"message_ids[{index}]"
            return _bad_request(f"{field}: must be a non-empty string; got {value!r}"[:300], field)
    since, wait = data.get("since"), data.get("wait", 0)
    if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
        return _bad_request(f"since: must be the cursor of an earlier answer; got {since!r}"[:300], "since")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= MAX_STATUS_WAIT:
        return _bad_request(f"wait: must be 0 to {MAX_STATUS_WAIT} seconds; got {wait!r}"[:300], "wait")
    distinct = list(dict.fromkeys(value.strip() for value in message_ids))
    try:
        cursor = await run_in_threadpool(_status_mark)
        changed = since is None or (
            cursor > since and await run_in_threadpool(_changed_since, distinct, receiver.app_id, since)
        )
        deadline = time.monotonic() + wait
        while not changed and time.monotonic() < deadline:
            await asyncio.sleep(min(_STATUS_WAIT_CHECK, max(deadline - time.monotonic(), 0)))
            mark = await run_in_threadpool(_status_mark)
            if mark > cursor:
                changed = await run_in_threadpool(_changed_since, distinct, receiver.app_id, cursor)
                cursor = mark
        statuses = await run_in_threadpool(_read_statuses, distinct, receiver.app_id)
    except SQLAlchemyError:
        log.exception("itnio webhook %s: cannot read message statuses", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The statuses cannot be read now; retry later."})
    return JSONResponse(status_code=200, content={"statuses": statuses, "cursor": cursor, "changed": changed})


def _read_last_inbound(business_phone: str, recipient: str, app_id: str) -> datetime.datetime | None:
    with _create_session() as session:
        return last_inbound_at(session, business_phone, recipient, app_id=app_id)


async def get_window(conn_id: str, request: Request) -> JSONResponse:
    """
    Answer whether a customer's 24-hour window with a business number is open (``Authorization: Bearer ...``).

    Query parameters ``business_phone`` and ``recipient`` (any way people write numbers). The answer:
    ``last_inbound_at`` (when the customer last wrote to that number, or ``null``: the push's ``timestamp`` when
    believable, else its arrival, see :func:`~airflow_provider_itnio.webhook.store.customer_wrote_at`), ``open``
    (less than 24 hours ago) and ``closes_at`` (when the window closes, ``null`` when it is closed).

    :param conn_id: The ``itnio`` connection; only messages received for its application count.
    :param request: The request.
    """
    from airflow_provider_itnio.errors import ItnioValidationError
    from airflow_provider_itnio.messages import normalize_phone

    receiver = await _authorize(conn_id, request)
    if isinstance(receiver, JSONResponse):
        return receiver
    phones: dict[str, str] = {}
    for name, field in (("business_phone", "businessPhone"), ("recipient", "recipient")):
        value = request.query_params.get(name)
        if value is None or not value.strip():
            return JSONResponse(status_code=400, content={"detail": f"{name}: it is missing", "field": name})
        try:
            phones[name] = normalize_phone(value, field)
        except ItnioValidationError as err:
            return JSONResponse(
                status_code=400, content={"detail": f"{name}: {err.rule}; {err.problem}", "field": name}
            )
    try:
        last = await run_in_threadpool(
            _read_last_inbound, phones["business_phone"], phones["recipient"], receiver.app_id
        )
    except SQLAlchemyError:
        log.exception("itnio webhook %s: cannot read a window", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The window cannot be read now; retry later."})
    content = {"business_phone": phones["business_phone"], "recipient": phones["recipient"]}
    content.update(_window(last, datetime.datetime.now(datetime.UTC)))
    return JSONResponse(status_code=200, content=content)


def _window(last: datetime.datetime | None, now: datetime.datetime) -> dict[str, Any]:
    """Return ``{"last_inbound_at", "open", "closes_at"}`` for a customer who last wrote at ``last``."""
    is_open = last is not None and now < last + WINDOW
    return {
        "last_inbound_at": _iso(last),
        "open": is_open,
        "closes_at": _iso(last + WINDOW) if is_open and last is not None else None,
    }


#: Ids per ``IN (...)`` list of the bulk status queries (well under every database's parameter limit).
_IN_CHUNK = 500


def _read_last_inbounds(business_phone: str, recipients: list[str], app_id: str) -> dict[str, datetime.datetime]:
    """Return ``{recipient: when they last wrote to business_phone}`` for those who ever wrote."""
    with _create_session() as session:
        return last_inbounds_at(session, business_phone, recipients, app_id=app_id)


def _bad_request(detail: str, field: str) -> JSONResponse:
    return JSONResponse(status_code=400, content={"detail": detail, "field": field})


async def get_windows(conn_id: str, request: Request) -> JSONResponse:
    """
    Answer the 24-hour windows of many customers with one business number (``Authorization: Bearer ...``).

    The body: ``{"business_phone": "...", "recipients": ["...", ...]}``, 1 to
    :data:`~airflow_provider_itnio.receiver_protocol.MAX_WINDOW_RECIPIENTS` numbers (any way people write them).
    The answer: ``{"business_phone", "windows": {digits: {"last_inbound_at", "open", "closes_at"}}}``, one entry
    per distinct recipient. 400 names the first bad field (``recipients[3]``); 413 for a body over 1 MiB.

    :param conn_id: The ``itnio`` connection; only messages received for its application count.
    :param request: The request.
    """
    from airflow_provider_itnio.errors import ItnioValidationError
    from airflow_provider_itnio.messages import normalize_phone

    authorized = await _authorized_json(conn_id, request)
    if isinstance(authorized, JSONResponse):
        return authorized
    receiver, data = authorized
    business = data.get("business_phone")
    recipients = data.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        return _bad_request("recipients: must be a non-empty list of phone numbers", "recipients")
    if len(recipients) > MAX_WINDOW_RECIPIENTS:
        return _bad_request(
            f"recipients: at most {MAX_WINDOW_RECIPIENTS} per request; got {len(recipients)}", "recipients"
        )
    try:
        field = "business_phone"
        sender = normalize_phone(business if isinstance(business, str | int) else "", "businessPhone")
        phones: list[str] = []
        for index, value in enumerate(recipients):
            field = f"recipients[{index}]"
            if isinstance(value, bool) or not isinstance(value, str | int):
                return _bad_request(f"{field}: must be a phone number; got {type(value).__name__}", field)
            phones.append(normalize_phone(value, "recipient"))
    except ItnioValidationError as err:
        return _bad_request(f"{field}: {err.rule}; {err.problem}", field)
    distinct = list(dict.fromkeys(phones))
    try:
        last = await run_in_threadpool(_read_last_inbounds, sender, distinct, receiver.app_id)
    except SQLAlchemyError:
        log.exception("itnio webhook %s: cannot read windows", conn_id)
        return JSONResponse(status_code=503, content={"detail": "The windows cannot be read now; retry later."})
    now = datetime.datetime.now(datetime.UTC)
    return JSONResponse(
        status_code=200,
        content={"business_phone": sender, "windows": {phone: _window(last.get(phone), now) for phone in distinct}},
    )


def create_app() -> FastAPI:
    """Return the receiver's FastAPI app (mounted by the plugin under ``/itnio``)."""
    receiver = FastAPI(
        lifespan=_lifespan,
        title="itniotech WhatsApp webhook receiver",
        description="Receives the itniotech API's pushes (message statuses, customers' messages).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    for path in ("/webhook/{conn_id}/{token}", "/webhook/{conn_id}/{token}/"):  # a pasted trailing slash too
        receiver.add_api_route(
            path,
            receive_push,
            methods=["POST"],
            summary="Record a push from the itniotech API",
            response_class=JSONResponse,
            include_in_schema=not path.endswith("/"),
        )
    receiver.add_api_route(
        "/api/{conn_id}/messages/{message_id:path}/status",
        get_status,
        methods=["GET"],
        summary="Read a message's status (Authorization: Bearer <webhook_token>)",
        response_class=JSONResponse,
    )
    receiver.add_api_route(
        "/api/{conn_id}/statuses",
        get_statuses,
        methods=["POST"],
        summary="Read many messages' statuses (Authorization: Bearer <webhook_token>)",
        response_class=JSONResponse,
    )
    receiver.add_api_route(
        "/api/{conn_id}/window",
        get_window,
        methods=["GET"],
        summary="Read a customer's 24-hour window (Authorization: Bearer <webhook_token>)",
        response_class=JSONResponse,
    )
    receiver.add_api_route(
        "/api/{conn_id}/windows",
        get_windows,
        methods=["POST"],
        summary="Read many customers' 24-hour windows (Authorization: Bearer <webhook_token>)",
        response_class=JSONResponse,
    )
    receiver.add_middleware(MaskTokenMiddleware)
    return receiver


#: The app the plugin serves.
app = create_app()
