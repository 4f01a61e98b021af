"""
What the receiver's approval modules share: the connection's key ring, a writer transaction, a message back to the
approver, and log lines without phone numbers or SQL parameters.

:mod:`~airflow_provider_itnio.webhook.taps` (a tap answers a HITL request),
:mod:`~airflow_provider_itnio.webhook.owed_buttons` (buttons owed after a template) and
:mod:`~airflow_provider_itnio.webhook.tap_sweeper` (the API server's sweep) all read and write Airflow's tables and
send through the account from the API server; they do it through here, so that each does it one way.

Phone numbers are logged as a short digest (:func:`phone_digest`, ``#1a2b3c4d``), never in clear, and so are
database errors (:func:`masked_error`): their type and message, without the statement's parameters.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio.hitl_buttons import ButtonKeys, button_keys
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed
from airflow_provider_itnio.webhook.store import new_session

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("Human-in-the-loop answers on WhatsApp")

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_provider_itnio.events import InboundEvent

__all__ = [
    "LOCK_TIMEOUT",
    "PARKED_STATES",
    "aware",
    "begin_writing",
    "connection_button_keys",
    "masked_error",
    "new_session",
    "phone_digest",
    "send_message",
    "send_reply",
]

log = logging.getLogger(__name__)

#: Seconds a PostgreSQL transaction of the approval modules waits for a row lock (``lock_timeout``) before it fails.
LOCK_TIMEOUT = 10.0
#: The states a parked task is resumed from (as the UI's route does).
PARKED_STATES = ("awaiting_input", "deferred")


def connection_button_keys(conn_id: str) -> ButtonKeys | None:
    """
    Return the key ring of connection ``conn_id`` as the API server reads it, or ``None`` when it does not exist.

    :param conn_id: The ``itnio`` connection.
    """
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    return button_keys(conn.extra_dejson, conn.password)


def masked_error(error: BaseException, phone: str | None = None) -> str:
    """
    Return ``"<type>: <error>"`` for a log line, with ``phone`` replaced by its digest (a hook's error may name it).

    A database error (SQLAlchemy's ``StatementError``) gives only its driver's error: its text would end with the
    statement and its parameters (``[parameters: ...]``), where a tap's ``responded_by`` holds the number.

    :param error: The error to log.
    :param phone: The number its text may name (replaced by :func:`phone_digest`), or ``None``.
    """
    from sqlalchemy.exc import StatementError

    if isinstance(error, StatementError):
        orig = error.orig
        text = f"{type(error).__name__}: " + (f"{type(orig).__name__}: {orig}" if orig is not None else "(no detail)")
    else:
        text = f"{type(error).__name__}: {error}"
    text = " ".join(text.split())[:500]
    return text.replace(phone, phone_digest(phone)) if phone else text


def phone_digest(phone: str) -> str:
    """
    Return a short digest of a phone number for logs (``#1a2b3c4d``): the same number always gives the same one.

    :param phone: The digits.
    """
    return "#" + hashlib.sha256(phone.encode("utf-8")).hexdigest()[:8]


def begin_writing(session: Session) -> None:
    """
    Start the session's transaction as a writer: ``BEGIN IMMEDIATE`` on SQLite, a ``lock_timeout`` on PostgreSQL.

    On SQLite two read-modify-writes of one row (two messages from one approver at once) then take turns; elsewhere
    the queries lock their rows (``FOR UPDATE``). On PostgreSQL a row lock is waited for at most
    :data:`LOCK_TIMEOUT` seconds (as the receiver's writer does): a task instance row held by a stuck transaction
    fails the tap (503, the vendor re-pushes) instead of holding the request, and a thread, for ever.

    :param session: A session with no transaction begun yet.
    """
    from sqlalchemy import text

    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))
    elif dialect == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = '{int(LOCK_TIMEOUT * 1000)}ms'"))


def aware(value: datetime.datetime) -> datetime.datetime:
    """
    Return ``value`` with a time zone: UTC when it has none (as SQLite gives it back).

    :param value: A time read from the database.
    """
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)


def send_message(conn_id: str, event: InboundEvent, message: Any) -> Any:
    """
    Send ``message`` to the sender of ``event``, quoting it; return the hook's result, raise its error.

    The hook reads connection ``conn_id`` as the API server does (no task SDK there).

    :param conn_id: The connection that received ``event`` (the message goes through its account).
    :param event: The inbound message to answer.
    :param message: A text, or a :class:`~airflow_provider_itnio.messages.Message`.
    """
    from airflow.models.connection import Connection

    from airflow_provider_itnio.hooks.itnio import ItnioHook
    from airflow_provider_itnio.messages import Text

    class _ServerHook(ItnioHook):
        """The hook, reading its connection as the API server does (no task SDK here)."""

        @classmethod
        def get_connection(cls, conn_id: str) -> Any:
            return Connection.get_connection_from_secrets(conn_id)

    hook = _ServerHook(itnio_conn_id=conn_id)
    try:
        body = Text(body=message) if isinstance(message, str) else message
        return hook.send(event.from_phone, body, business_phone=event.business_phone, reply_to=event.message_id)
    finally:
        hook.close()


def send_reply(conn_id: str, event: InboundEvent, text: str | Any) -> None:
    """
    Send ``text`` (or a message model) to the sender of ``event``, quoting it; log, never raise.

    Runs after the HTTP answer.

    :param conn_id: The connection that received the tap (the reply goes through its account).
    :param event: The tap.
    :param text: The reply's text, or a :class:`~airflow_provider_itnio.messages.Message`.
    """
    try:
        send_message(conn_id, event, text)
    except Exception as err:
        log.error(
            "itnio HITL: the reply to %s was not sent: %s",
            phone_digest(event.from_phone),
            masked_error(err, event.from_phone),
        )
