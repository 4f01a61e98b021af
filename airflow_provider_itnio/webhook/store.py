"""
Record vendor pushes in the provider's tables, idempotently (pure SQLAlchemy; a session is passed in).

The receiver calls :func:`record_push` inside one transaction per push; it commits (or rolls back) itself. The
writes are safe under concurrent and repeated pushes (the vendor re-pushes after 1, 3 and 5 minutes, and the API
server may run several workers):

- a status push is inserted into ``itnio_status_history`` with "insert, or nothing on a conflict" on its
  ``dedup_key``: a re-push inserts nothing and changes nothing else;
- the message's row in ``itnio_message_status`` is inserted the same way, or else moved forward by a single
  conditional ``UPDATE`` whose ``WHERE`` accepts only the statuses the new one advances over
  (:func:`airflow_provider_itnio.events.advances`), so ``read`` beats ``delivered`` whatever the arrival order and
  ``failed`` / ``deleted`` are final, even when two pushes race;
- an inbound message is inserted with "insert, or nothing on a conflict" on ``app_id`` + ``message_id``; a tap on
  an approval button also gets its ``pending`` row in ``itnio_hitl_tap``, in the same transaction, which
  :func:`claim_tap` takes once when its answer is recorded.

"Insert, or nothing on a conflict" is ``INSERT ... ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL,
``INSERT IGNORE`` on MySQL, and an insert in a savepoint that swallows the ``IntegrityError`` elsewhere.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from airflow_provider_itnio.events import (
    InboundEvent,
    MessageStatus,
    StatusEvent,
    advances,
    dedup_key,
    parse_status,
)
from airflow_provider_itnio.hitl_buttons import ID_PREFIX
from airflow_provider_itnio.webhook.models import (
    STATUS_LENGTH,
    hitl_tap_table,
    inbound_message_table,
    message_status_table,
    status_history_table,
)

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "MAX_PUSH_DELAY",
    "TAP_ID_PREFIX",
    "MessageStatusRecord",
    "PendingTap",
    "Recorded",
    "claim_tap",
    "cleanup",
    "customer_wrote_at",
    "get_message_status",
    "get_message_statuses",
    "get_status_history",
    "give_up_tap",
    "is_approval_tap",
    "last_inbound_at",
    "last_inbounds_at",
    "note_tap_attempt",
    "pending_taps",
    "record_inbound",
    "record_push",
    "record_status",
    "set_tap_outcome",
]

#: How long pushes are kept when neither ``[itnio] webhook_retention_days`` nor ``--older-than-days`` says.
DEFAULT_RETENTION_DAYS = 90
#: The oldest a customer's message can be when its push arrives and its ``timestamp`` still be believed (see
#: :func:`customer_wrote_at`): the vendor re-pushes for 9 minutes (after 1, 3 and 5), a backlog may hold pushes for
#: hours or days; a ``timestamp`` older than this is not a delivery delay but a wrong clock or unit.
MAX_PUSH_DELAY = datetime.timedelta(days=7)
#: What the id of every approval button starts with (:data:`airflow_provider_itnio.hitl_buttons.ID_PREFIX`).
TAP_ID_PREFIX = f"{ID_PREFIX}."
#: ``itnio_hitl_tap.state``: recorded with the push, once its answer is recorded (or refused), and once the sweep
#: gave up on it.
TAP_PENDING, TAP_APPLIED, TAP_FAILED = "pending", "applied", "failed"
#: How long a tap waits before the sweep may take it (its push's own request applies it before), and the first
#: wait after an attempt of the sweep failed (:data:`airflow_provider_itnio.webhook.tap_sweeper.SWEEP_AFTER`).
TAP_SWEEP_AFTER = datetime.timedelta(seconds=30)

log = logging.getLogger(__name__)


def new_session() -> Any:
    """
    Return a new session of the metadata database, a context manager that commits on exit (not the scoped one).

    The receiver's writer, its read API and the approvals' taps each open their own; Airflow 3.1's
    ``create_session()`` has no ``scoped`` argument (its session is then the thread's scoped one).
    """
    from airflow.utils.session import create_session

    try:
        return create_session(scoped=False)  # type: ignore[call-arg]
    except TypeError:  # Airflow 3.1's create_session() has no "scoped"
        return create_session()


@dataclass(frozen=True)
class Recorded:
    """
    What recording one push did.

    :param new: ``False`` when the same push was recorded before (a re-push): nothing was written.
    :param advanced: For a status push, whether the message's status changed (``False`` for an inbound push).
    :param status: For a status push, the message's status after recording (its furthest), else ``None``.
    """

    new: bool
    advanced: bool = False
    status: MessageStatus | None = None


@dataclass(frozen=True)
class MessageStatusRecord:
    """
    A message's furthest status, as stored in ``itnio_message_status``.

    :param app_id: The application.
    :param message_id: The id the send call returned.
    :param status: The furthest status so far.
    :param failure: Why it failed, or ``None``.
    :param recipient: The customer's number (digits).
    :param business_phone: The sender number (digits).
    :param conversation_id: The vendor's conversation id, or ``None``.
    :param status_timestamp: The vendor's time of ``status`` (Unix seconds), or ``None``.
    :param conn_id: The connection whose address received the push that set ``status``.
    :param created_at: When the first push for the message was recorded (UTC).
    :param updated_at: When ``status`` last changed (UTC).
    """

    app_id: str
    message_id: str
    status: MessageStatus
    failure: str | None
    recipient: str
    business_phone: str
    conversation_id: str | None
    status_timestamp: int | None
    conn_id: str
    created_at: datetime.datetime
    updated_at: datetime.datetime

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-serialisable values (datetimes in ISO 8601)."""
        return {
            "app_id": self.app_id,
            "message_id": self.message_id,
            "status": self.status.value,
            "failure": self.failure,
            "recipient": self.recipient,
            "business_phone": self.business_phone,
            "conversation_id": self.conversation_id,
            "status_timestamp": self.status_timestamp,
            "conn_id": self.conn_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@functools.cache
def _insert_statement(dialect: str, table: Table, conflict: tuple[str, ...]) -> Any:
    """
    Return the "insert, or nothing on a conflict" statement of ``table`` for ``dialect`` (built once, values bound).

    Building the statement with ``.values(...)`` for every row costs more than running it; one statement per table
    executed with the row as parameters is compiled once (SQLAlchemy's statement cache).
    """
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        # SQLAlchemy adds RETURNING to PostgreSQL inserts, which leaves rowcount at -1: ask for the row instead.
        return postgresql_insert(table).on_conflict_do_nothing(index_elements=list(conflict)).returning(table.c.id)
    if dialect == "mysql":
        return insert(table).prefix_with("IGNORE")
    return insert(table)


def _insert_or_nothing(session: Session, table: Table, values: Mapping[str, Any], conflict: list[str]) -> bool:
    """Insert one row unless it conflicts on the unique columns ``conflict``; return whether it was inserted."""
    dialect = session.get_bind().dialect.name
    statement = _insert_statement(dialect, table, tuple(conflict))
    row = dict(values)
    if dialect == "postgresql":
        return session.execute(statement, row).first() is not None
    if dialect not in ("sqlite", "mysql"):
        try:
            with session.begin_nested():
                session.execute(statement, row)
        except IntegrityError:
            return False
        return True
    result: Any = session.execute(statement, row)
    return bool(result.rowcount == 1)


def record_push(
    session: Session, event: StatusEvent | InboundEvent, conn_id: str, *, now: datetime.datetime | None = None
) -> Recorded:
    """
    Record a parsed push once (see :func:`record_status` and :func:`record_inbound`); the caller commits.

    :param session: A SQLAlchemy session on the Airflow metadata database.
    :param event: The push, from :func:`airflow_provider_itnio.events.parse_push`.
    :param conn_id: The connection whose address received it.
    :param now: The time of arrival (UTC; default: now).
    """
    if isinstance(event, StatusEvent):
        return record_status(session, event, conn_id, now=now)
    return record_inbound(session, event, conn_id, now=now)


def record_status(
    session: Session, event: StatusEvent, conn_id: str, *, now: datetime.datetime | None = None
) -> Recorded:
    """
    Record a status push once in the history and move the message's status forward if it advances it.

    :param session: A SQLAlchemy session on the Airflow metadata database; the caller commits.
    :param event: The status push.
    :param conn_id: The connection whose address received it.
    :param now: The time of arrival (UTC; default: now).
    """
    now = now or _utcnow()
    history = {
        "dedup_key": dedup_key(event),
        "app_id": event.app_id,
        "message_id": event.message_id,
        "status": event.status.value,
        "failure": event.failure,
        "status_timestamp": event.timestamp,
        "conn_id": conn_id,
        "received_at": now,
        "raw": event.raw,
    }
    if not _insert_or_nothing(session, status_history_table, history, ["dedup_key"]):
        return Recorded(new=False, status=_current_status(session, event.app_id, event.message_id))

    columns = message_status_table.c
    status_row = {
        "app_id": event.app_id,
        "message_id": event.message_id,
        "status": event.status.value,
        "failure": event.failure,
        "recipient": event.recipient,
        "business_phone": event.business_phone,
        "conversation_id": event.conversation_id,
        "status_timestamp": event.timestamp,
        "conn_id": conn_id,
        "created_at": now,
        "updated_at": now,
    }
    if _insert_or_nothing(session, message_status_table, status_row, ["app_id", "message_id"]):
        return Recorded(new=True, advanced=True, status=event.status)

    # Only the statuses the new one advances over may be replaced: one statement, so racing pushes cannot
    # move a message backwards.
    replaceable = [status.value for status in MessageStatus if advances(status, event.status)]
    changes: dict[str, Any] = {
        "status": event.status.value,
        "status_timestamp": event.timestamp,
        "conn_id": conn_id,
        "updated_at": now,
    }
    if event.failure is not None:
        changes["failure"] = event.failure
    if event.conversation_id is not None:
        changes["conversation_id"] = event.conversation_id
    result: Any = session.execute(
        update(message_status_table)
        .where(
            and_(
                columns.app_id == event.app_id,
                columns.message_id == event.message_id,
                columns.status.in_(replaceable),
            )
        )
        .values(**changes)
    )
    advanced = result.rowcount == 1
    current = event.status if advanced else _current_status(session, event.app_id, event.message_id)
    return Recorded(new=True, advanced=advanced, status=current)


def record_inbound(
    session: Session, event: InboundEvent, conn_id: str, *, now: datetime.datetime | None = None
) -> Recorded:
    """
    Record an inbound message once (unique on ``app_id`` + ``message_id``).

    :param session: A SQLAlchemy session on the Airflow metadata database; the caller commits.
    :param event: The inbound push.
    :param conn_id: The connection whose address received it.
    :param now: The time of arrival (UTC; default: now).
    """
    now = now or _utcnow()
    row = {
        "app_id": event.app_id,
        "message_id": event.message_id,
        "business_phone": event.business_phone,
        "from_phone": event.from_phone,
        "name": event.name,
        "type": event.type,
        "text": event.text,
        "reply": event.reply,
        "location": event.location,
        "media": event.media,
        "message_timestamp": event.timestamp,
        "conn_id": conn_id,
        "received_at": now,
        "written_at": customer_wrote_at(event.timestamp, now),
        "raw": event.raw,
    }
    new = _insert_or_nothing(session, inbound_message_table, row, ["app_id", "message_id"])
    if new and is_approval_tap(event):
        tap = {
            "app_id": event.app_id,
            "message_id": event.message_id,
            "conn_id": conn_id,
            "state": TAP_PENDING,
            "received_at": now,
            "attempts": 0,
            "next_attempt_at": now + TAP_SWEEP_AFTER,
        }
        _insert_or_nothing(session, hitl_tap_table, tap, ["app_id", "message_id"])
    return Recorded(new=new)


def is_approval_tap(event: InboundEvent) -> bool:
    """
    Return whether an inbound message is a tap on an approval button (its reply id is one of the notifier's).

    :param event: The inbound push.
    """
    reply_id = (event.reply or {}).get("id")
    return isinstance(reply_id, str) and reply_id.startswith(TAP_ID_PREFIX)


def claim_tap(session: Session, app_id: str, message_id: str, now: datetime.datetime) -> datetime.datetime | None:
    """
    Mark a pending tap applied; return when its push first arrived (``None``: applied before, or never recorded).

    One conditional ``UPDATE``, the first statement of the transaction that records the tap's answer: a second
    transaction claiming the same tap waits for the first one's end, then finds it applied (or, rolled back,
    pending again).

    :param session: A SQLAlchemy session on the Airflow metadata database; the caller commits.
    :param app_id: The application.
    :param message_id: The tap's inbound message id.
    :param now: When it is applied (UTC).
    """
    columns = hitl_tap_table.c
    mine = (columns.app_id == app_id, columns.message_id == message_id)
    result: Any = session.execute(
        update(hitl_tap_table).where(*mine, columns.state == TAP_PENDING).values(state=TAP_APPLIED, applied_at=now)
    )
    if result.rowcount != 1:
        return None
    received: datetime.datetime = session.execute(select(columns.received_at).where(*mine)).scalar_one()
    return received


def set_tap_outcome(session: Session, app_id: str, message_id: str, outcome: str) -> None:
    """
    Record what a claimed tap did.

    :param session: The session that claimed it (:func:`claim_tap`); the caller commits.
    :param app_id: The application.
    :param message_id: The tap's inbound message id.
    :param outcome: ``answered``, ``already_answered``, ``forged``, ...
    """
    columns = hitl_tap_table.c
    session.execute(
        update(hitl_tap_table)
        .where(columns.app_id == app_id, columns.message_id == message_id)
        .values(outcome=outcome[:STATUS_LENGTH])
    )


@dataclass(frozen=True)
class PendingTap:
    """
    A tap the sweep may apply (:func:`pending_taps`).

    :param id: Its ``itnio_hitl_tap`` row.
    :param conn_id: The connection whose address received it.
    :param message_id: Its inbound message id.
    :param raw: Its push, as recorded (``None`` when its inbound row is gone).
    :param attempts: The sweep's attempts so far.
    """

    id: int
    conn_id: str
    message_id: str
    raw: Any
    attempts: int


def pending_taps(session: Session, now: datetime.datetime, limit: int) -> list[PendingTap]:
    """
    Return the taps still pending whose next attempt is due at ``now``, the most overdue first.

    A tap is due :data:`TAP_SWEEP_AFTER` after its push arrived, and again after each failed attempt
    (:func:`note_tap_attempt` moves it back): a tap that keeps failing does not hide the others.

    :param session: A SQLAlchemy session on the Airflow metadata database.
    :param now: The time of the sweep (timezone-aware).
    :param limit: The most taps returned.
    """
    taps, inbound = hitl_tap_table.c, inbound_message_table.c
    query = (
        select(taps.id, taps.conn_id, taps.message_id, inbound.raw, taps.attempts)
        .outerjoin(inbound_message_table, and_(inbound.app_id == taps.app_id, inbound.message_id == taps.message_id))
        .where(taps.state == TAP_PENDING, taps.next_attempt_at <= now)
        .order_by(taps.next_attempt_at)
        .limit(limit)
    )
    return [
        PendingTap(int(row_id), str(conn_id), str(message_id), raw, int(attempts))
        for row_id, conn_id, message_id, raw, attempts in session.execute(query)
    ]


def note_tap_attempt(session: Session, tap_id: int, attempts: int, next_attempt_at: datetime.datetime) -> bool:
    """
    Count an attempt at a pending tap and book the next one; return whether the tap was this caller's to try.

    A conditional ``UPDATE`` on the number of attempts seen: of two sweeps (two API server processes) that found
    the same tap, one goes on.

    :param session: A SQLAlchemy session on the Airflow metadata database; the caller commits (before trying).
    :param tap_id: The ``itnio_hitl_tap`` row.
    :param attempts: Its attempts as :func:`pending_taps` saw them.
    :param next_attempt_at: When the next attempt is due if this one fails (timezone-aware).
    """
    columns = hitl_tap_table.c
    result: Any = session.execute(
        update(hitl_tap_table)
        .where(columns.id == tap_id, columns.state == TAP_PENDING, columns.attempts == attempts)
        .values(attempts=attempts + 1, next_attempt_at=next_attempt_at)
    )
    return bool(result.rowcount == 1)


def give_up_tap(session: Session, tap_id: int) -> None:
    """
    Mark a pending tap failed: the sweep no longer tries it.

    :param session: A SQLAlchemy session on the Airflow metadata database; the caller commits.
    :param tap_id: The ``itnio_hitl_tap`` row.
    """
    columns = hitl_tap_table.c
    session.execute(
        update(hitl_tap_table)
        .where(columns.id == tap_id, columns.state == TAP_PENDING)
        .values(state=TAP_FAILED, outcome="failed")
    )


def _current_status(session: Session, app_id: str, message_id: str) -> MessageStatus | None:
    columns = message_status_table.c
    word = session.execute(
        select(columns.status).where(and_(columns.app_id == app_id, columns.message_id == message_id))
    ).scalar()
    return parse_status(word) if word is not None else None


def get_message_status(session: Session, message_id: str, app_id: str | None = None) -> MessageStatusRecord | None:
    """
    Return the furthest status recorded for a message, or ``None`` when no push for it has arrived.

    :param session: A SQLAlchemy session on the Airflow metadata database.
    :param message_id: The id the send call returned.
    :param app_id: The application; when ``None``, any (message ids are unique in practice).
    """
    columns = message_status_table.c
    query = select(message_status_table).where(columns.message_id == message_id)
    if app_id is not None:
        query = query.where(columns.app_id == app_id)
    row = session.execute(query.order_by(columns.id).limit(1)).mappings().first()
    if row is None:
        return None
    return MessageStatusRecord(
        app_id=row["app_id"],
        message_id=row["message_id"],
        status=parse_status(row["status"]),
        failure=row["failure"],
        recipient=row["recipient"],
        business_phone=row["business_phone"],
        conversation_id=row["conversation_id"],
        status_timestamp=row["status_timestamp"],
        conn_id=row["conn_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def get_status_history(session: Session, message_id: str, app_id: str | None = None) -> list[dict[str, Any]]:
    """
    Return every distinct status push of a message, in arrival order.

    Each item has ``status``, ``failure``, ``status_timestamp``, ``received_at`` (UTC), ``conn_id`` and ``raw``.

    :param session: A SQLAlchemy session on the Airflow metadata database.
    :param message_id: The id the send call returned.
    :param app_id: The application; when ``None``, any.
    """
    columns = status_history_table.c
    query = select(
        columns.status, columns.failure, columns.status_timestamp, columns.received_at, columns.conn_id, columns.raw
    ).where(columns.message_id == message_id)
    if app_id is not None:
        query = query.where(columns.app_id == app_id)
    return [dict(row) for row in session.execute(query.order_by(columns.id)).mappings()]


def customer_wrote_at(timestamp: int | None, received_at: datetime.datetime) -> datetime.datetime:
    """
    Return when the customer wrote a message: the push's ``timestamp`` when believable, else its arrival.

    WhatsApp's 24-hour window counts from the customer's message, not from its push: a push re-sent by the vendor
    (after 1, 3 and 5 minutes) or delivered from a backlog arrives minutes or hours after the customer wrote. The
    ``timestamp`` is believed when it is not after the arrival and at most :data:`MAX_PUSH_DELAY` before it. One
    after the arrival (the vendor's clock ahead of ours, or milliseconds for seconds) and one older than that (a
    wrong clock or unit) give the arrival time. The window so never ends later than the arrival would make it end.

    :param timestamp: The push's ``timestamp`` (Unix seconds), or ``None`` when it had none.
    :param received_at: When the push arrived (UTC, timezone-aware).
    """
    if timestamp is None:
        return received_at
    try:
        wrote = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    except (OverflowError, OSError, ValueError):  # beyond what a datetime holds
        return received_at
    if received_at - MAX_PUSH_DELAY <= wrote <= received_at:
        return wrote
    return received_at


def last_inbound_at(
    session: Session, business_phone: str, from_phone: str, *, app_id: str | None = None
) -> datetime.datetime | None:
    """
    Return when a customer last wrote to a business number (UTC; see :func:`customer_wrote_at`), or ``None``.

    :param session: A SQLAlchemy session on the Airflow metadata database.
    :param business_phone: The business number, digits.
    :param from_phone: The customer's number, digits.
    :param app_id: Count only the messages received for this application; when ``None``, any.
    """
    found = last_inbounds_at(session, business_phone, [from_phone], app_id=app_id)
    return found.get(from_phone)


#: Customers per ``IN (...)`` list of :func:`last_inbounds_at` (well under every database's parameter limit).
_IN_CHUNK = 500


def last_inbounds_at(
    session: Session, business_phone: str, from_phones: list[str], *, app_id: str | None = None
) -> dict[str, datetime.datetime]:
    """
    Return ``{customer: when they last wrote to business_phone}`` (UTC) for those of ``from_phones`` who ever did.

    The time is the customer's (:func:`customer_wrote_at`), which the 24-hour window counts from.

    :param session: A SQLAlchemy session on the Airflow metadata database.
    :param business_phone: The business number, digits.
    :param from_phones: The customers' numbers, digits.
    :param app_id: Count only the messages received for this application; when ``None``, any.
    """
    columns = inbound_message_table.c
    found: dict[str, datetime.datetime] = {}
    for start in range(0, len(from_phones), _IN_CHUNK):
        query = (
            select(columns.from_phone, func.max(columns.written_at))
            .where(
                columns.business_phone == business_phone,
                columns.from_phone.in_(from_phones[start : start + _IN_CHUNK]),
            )
            .group_by(columns.from_phone)
        )
        if app_id is not None:
            query = query.where(columns.app_id == app_id)
        for phone, last in session.execute(query):
            if last is not None:  # SQLite's max() of a UtcDateTime column comes back as text or a naive datetime
                found[phone] = _as_utc(last)
    return found


def _as_utc(value: datetime.datetime | str) -> datetime.datetime:
    """Return a ``max()`` of a UTC datetime column as a timezone-aware datetime (SQLite gives text or naive)."""
    moment = datetime.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def cleanup(session: Session, older_than: datetime.datetime) -> dict[str, int]:
    """
    Delete what arrived before ``older_than``: history rows, inbound messages and their approval taps, and message
    statuses not updated since.

    A tap still pending is deleted with its push (the sweep could not apply it without it), and logged as an error.

    :param session: A SQLAlchemy session on the Airflow metadata database; the caller commits.
    :param older_than: The cut-off (timezone-aware).
    :return: The number of rows deleted, by table name.
    """
    taps = hitl_tap_table.c
    pending = session.execute(
        select(func.count()).where(taps.state == TAP_PENDING, taps.received_at < older_than)
    ).scalar_one()
    if pending:
        log.error(
            "itnio webhook cleanup: deleted %d approval taps still pending (never applied) with their pushes: "
            "answer their requests in the Airflow UI if they still wait",
            pending,
        )
    deleted: dict[str, int] = {}
    for table, column in (
        (status_history_table, status_history_table.c.received_at),
        (inbound_message_table, inbound_message_table.c.received_at),
        (hitl_tap_table, taps.received_at),
        (message_status_table, message_status_table.c.updated_at),
    ):
        result: Any = session.execute(delete(table).where(column < older_than))
        deleted[table.name] = int(result.rowcount)
    return deleted


def get_message_statuses(
    session: Session, message_ids: list[str], app_id: str
) -> dict[str, tuple[MessageStatusRecord, list[dict[str, Any]]]]:
    """
    Return the furthest status and the history of many messages at once, keyed by message id.

    Two queries (statuses, then their history rows) for the whole list; a message without any recorded status is
    absent from the answer. Each history item has what :func:`get_status_history` returns but ``raw`` (the
    pushes' bodies are not needed to answer, and are most of the bytes).

    :param session: A SQLAlchemy session on the Airflow metadata database.
    :param message_ids: The ids the send calls returned (at most a few hundred: one ``IN (...)`` list).
    :param app_id: The application.
    """
    if not message_ids:
        return {}
    status_columns, history_columns = message_status_table.c, status_history_table.c
    rows = session.execute(
        select(message_status_table)
        .where(status_columns.app_id == app_id, status_columns.message_id.in_(message_ids))
        .order_by(status_columns.id)
    ).mappings()
    records: dict[str, MessageStatusRecord] = {}
    for row in rows:
        records.setdefault(
            row["message_id"],
            MessageStatusRecord(
                **{name: row[name] for name in MessageStatusRecord.__dataclass_fields__ if name != "status"},
                status=parse_status(row["status"]),
            ),
        )
    histories: dict[str, list[dict[str, Any]]] = {message_id: [] for message_id in records}
    if records:
        history = session.execute(
            select(
                history_columns.message_id,
                history_columns.status,
                history_columns.failure,
                history_columns.status_timestamp,
                history_columns.received_at,
                history_columns.conn_id,
            )
            .where(history_columns.app_id == app_id, history_columns.message_id.in_(list(records)))
            .order_by(history_columns.id)
        ).mappings()
        for item in history:
            histories[item["message_id"]].append({key: value for key, value in item.items() if key != "message_id"})
    return {message_id: (record, histories[message_id]) for message_id, record in records.items()}
