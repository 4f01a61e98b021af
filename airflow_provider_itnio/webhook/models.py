"""
The provider's own tables in the Airflow metadata database (pure SQLAlchemy: imports on every Airflow).

They sit on a :class:`~sqlalchemy.MetaData` of their own, because Airflow's external DB manager refuses tables that
are in Airflow's metadata. ``airflow db migrate`` creates them on Airflow 3.1+ through
:class:`airflow_provider_itnio.webhook.db_manager.ItnioDBManager`; Airflow 2.11 has no external DB managers, so
there they are never created (the receiver needs Airflow 3.1+ anyway).

- ``itnio_message_status``: one row per message sent through the API (``app_id`` + ``message_id``), holding its
  furthest status (see :func:`airflow_provider_itnio.events.advances`), the failure reason and timestamps.
- ``itnio_status_history``: every distinct status push, once (unique on ``dedup_key``), in arrival order.
- ``itnio_inbound_message``: every message a customer sent, once (unique on ``app_id`` + ``message_id``).
- ``itnio_asset_outbox``: the Airflow asset events of recorded pushes, from the push's transaction until the
  receiver's writer has written them (see :mod:`airflow_provider_itnio.webhook.asset_events`); empty when idle.
- ``itnio_hitl_tap``: every tap on an approval button, once (unique on ``app_id`` + ``message_id``), recorded
  ``pending`` with its push and ``applied`` once its answer is recorded (see
  :mod:`airflow_provider_itnio.webhook.taps`).

Every ``*_at`` column is a timezone-aware UTC datetime (SQLite, which keeps no zone, gives it back as UTC too).
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from airflow_provider_itnio.events import MAX_ID_CHARS, MAX_TYPE_CHARS

__all__ = [
    "TABLE_NAMES",
    "UtcDateTime",
    "asset_outbox_table",
    "hitl_tap_table",
    "inbound_message_table",
    "message_status_table",
    "metadata",
    "status_history_table",
]

#: Constraint and index names (the same convention as Airflow's own tables).
NAMING_CONVENTION = {
    "ix": "idx_%(column_0_label)s",
    "uq": "%(table_name)s_%(column_0_name)s_uq",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: The lengths of the identifier columns (the vendor's ids are short; these leave room). The parser refuses longer
#: ids (:data:`~airflow_provider_itnio.events.MAX_ID_CHARS`), so no push fails on a column's width.
ID_LENGTH = MAX_ID_CHARS
PHONE_LENGTH = 32
STATUS_LENGTH = 16
#: ``events.dedup_key``: ``status:`` or ``inbound:`` and a SHA-256 hex digest (at most 72 characters).
DEDUP_KEY_LENGTH = 80


class UtcDateTime(TypeDecorator):  # not subscripted: SQLAlchemy 1.4 (Airflow 2.11) has no generic TypeDecorator
    """A timezone-aware UTC datetime: naive values are refused on the way in, SQLite's naive results made UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime.datetime | None:
        """
        Return ``value`` in UTC.

        :param value: A timezone-aware datetime, or ``None``.
        :param dialect: The database dialect.
        """
        if value is None:
            return None
        if not isinstance(value, datetime.datetime) or value.tzinfo is None:
            raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
        utc = value.astimezone(datetime.UTC)
        return utc.replace(tzinfo=None) if dialect.name in ("sqlite", "mysql") else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime.datetime | None:
        """
        Return the stored value as a timezone-aware UTC datetime.

        :param value: The value read from the database.
        :param dialect: The database dialect.
        """
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC)


message_status_table = Table(
    "itnio_message_status",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app_id", String(ID_LENGTH), nullable=False),
    Column("message_id", String(ID_LENGTH), nullable=False),
    # The furthest status so far (events.furthest), the vendor's word.
    Column("status", String(STATUS_LENGTH), nullable=False),
    # Why the message failed (failed pushes), else null.
    Column("failure", Text),
    Column("recipient", String(PHONE_LENGTH), nullable=False),
    Column("business_phone", String(PHONE_LENGTH), nullable=False),
    Column("conversation_id", String(ID_LENGTH)),
    # The vendor's timestamp (Unix seconds) of the push that set ``status``.
    Column("status_timestamp", BigInteger),
    # The connection whose address received the push that set ``status``.
    Column("conn_id", String(250), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("app_id", "message_id", name="itnio_message_status_app_id_message_id_uq"),
    Index("idx_itnio_message_status_message_id", "message_id"),
    Index("idx_itnio_message_status_updated_at", "updated_at"),
)

status_history_table = Table(
    "itnio_status_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # events.dedup_key: a re-push of the same status of the same message has the same key.
    Column("dedup_key", String(DEDUP_KEY_LENGTH), nullable=False),
    Column("app_id", String(ID_LENGTH), nullable=False),
    Column("message_id", String(ID_LENGTH), nullable=False),
    Column("status", String(STATUS_LENGTH), nullable=False),
    Column("failure", Text),
    Column("status_timestamp", BigInteger),
    Column("conn_id", String(250), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    # The whole push as received (unknown fields kept).
    Column("raw", JSON, nullable=False),
    UniqueConstraint("dedup_key", name="itnio_status_history_dedup_key_uq"),
    Index("idx_itnio_status_history_app_id_message_id", "app_id", "message_id"),
    Index("idx_itnio_status_history_received_at", "received_at"),
)

inbound_message_table = Table(
    "itnio_inbound_message",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("app_id", String(ID_LENGTH), nullable=False),
    Column("message_id", String(ID_LENGTH), nullable=False),
    Column("business_phone", String(PHONE_LENGTH), nullable=False),
    Column("from_phone", String(PHONE_LENGTH), nullable=False),
    Column("name", Text),
    # message.type as sent (unknown types kept).
    Column("type", String(MAX_TYPE_CHARS), nullable=False),
    Column("text", Text),
    Column("reply", JSON),
    Column("location", JSON),
    Column("media", JSON),
    # The vendor's timestamp (Unix seconds), or null when the push had none.
    Column("message_timestamp", BigInteger),
    Column("conn_id", String(250), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("raw", JSON, nullable=False),
    # When the customer wrote: the push's timestamp when believable, else received_at (store.customer_wrote_at);
    # the 24-hour window counts from it. Null only for rows of a release before it (the migration fills those).
    Column("written_at", UtcDateTime),
    UniqueConstraint("app_id", "message_id", name="itnio_inbound_message_app_id_message_id_uq"),
    # The 24-hour window: the last message from a customer to a business number.
    Index("idx_itnio_inbound_message_window", "from_phone", "business_phone", "written_at"),
    Index("idx_itnio_inbound_message_received_at", "received_at"),
)

asset_outbox_table = Table(
    "itnio_asset_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The connection whose address received the push, and the URI of the asset the event is of.
    Column("conn_id", String(250), nullable=False),
    Column("asset_uri", Text, nullable=False),
    # The asset event's extra (events.asset_extra).
    Column("extra", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,  # ids are never reused: the writer takes rows in id order
)

hitl_tap_table = Table(
    "itnio_hitl_tap",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The inbound message (itnio_inbound_message) that is the tap.
    Column("app_id", String(ID_LENGTH), nullable=False),
    Column("message_id", String(ID_LENGTH), nullable=False),
    Column("conn_id", String(250), nullable=False),
    # "pending" from the push's transaction until the transaction that records its answer: then "applied"; "failed"
    # once the sweep gave up on it (webhook.tap_sweeper.MAX_TAP_ATTEMPTS).
    Column("state", String(STATUS_LENGTH), nullable=False),
    # What the tap did (webhook.taps.TapOutcome.code), once applied.
    Column("outcome", String(STATUS_LENGTH)),
    Column("received_at", UtcDateTime, nullable=False),
    Column("applied_at", UtcDateTime),
    # The sweep's attempts at a pending tap, and when it may try again (backing off after each failure).
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    UniqueConstraint("app_id", "message_id", name="itnio_hitl_tap_app_id_message_id_uq"),
    # The sweep: the taps still pending, the most overdue first.
    Index("idx_itnio_hitl_tap_state_next_attempt_at", "state", "next_attempt_at"),
    # The retention (cleanup).
    Index("idx_itnio_hitl_tap_received_at", "received_at"),
)

#: The provider's tables, by name.
TABLE_NAMES: frozenset[str] = frozenset(metadata.tables)
