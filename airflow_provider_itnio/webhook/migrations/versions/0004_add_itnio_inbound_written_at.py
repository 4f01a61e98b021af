"""
Add ``itnio_inbound_message.written_at``: when the customer wrote, which the 24-hour window counts from.

The window used to count from ``received_at`` (the push's arrival), which a re-pushed or backlogged message puts
minutes or hours after the customer wrote. ``written_at`` is the push's ``timestamp`` when believable (not after the
arrival, at most 7 days before it), else ``received_at`` (the rule of
:func:`airflow_provider_itnio.webhook.store.customer_wrote_at`, copied here as it was when this revision was
written). Existing rows are filled: those of the last 8 days by that rule, older ones (whose window is closed
either way) with ``received_at``. The window's index moves to ``written_at``.

Revision ID: 5e2a9c71d3b8
Revises: 3b7e5d90c4a2
Create Date: 2026-12-07 14:00:00.000000
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from alembic import op

revision = "5e2a9c71d3b8"
down_revision = "3b7e5d90c4a2"
branch_labels = None
depends_on = None

_TABLE = "itnio_inbound_message"
_INDEX = "idx_itnio_inbound_message_window"
#: The oldest a message can be at its arrival and its timestamp still be believed (store.MAX_PUSH_DELAY).
_MAX_PUSH_DELAY = datetime.timedelta(days=7)
#: Rows older than this keep ``received_at``: their window is closed whichever time it counts from.
_RECENT = datetime.timedelta(days=8)


def _aware(value: datetime.datetime | str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _wrote_at(timestamp: int | None, received_at: datetime.datetime) -> datetime.datetime:
    if timestamp is None:
        return received_at
    try:
        wrote = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return received_at
    return wrote if received_at - _MAX_PUSH_DELAY <= wrote <= received_at else received_at


def upgrade() -> None:
    """Add and fill the column, and index the window on it."""
    op.add_column(_TABLE, sa.Column("written_at", sa.DateTime(timezone=True), nullable=True))
    table = sa.table(
        _TABLE,
        sa.column("id", sa.Integer()),
        sa.column("message_timestamp", sa.BigInteger()),
        sa.column("received_at", sa.DateTime(timezone=True)),
        sa.column("written_at", sa.DateTime(timezone=True)),
    )
    connection = op.get_bind()
    since = datetime.datetime.now(datetime.UTC) - _RECENT
    recent = connection.execute(
        sa.select(table.c.id, table.c.message_timestamp, table.c.received_at).where(table.c.received_at >= since)
    ).all()
    for row_id, timestamp, received_at in recent:
        connection.execute(
            sa.update(table).where(table.c.id == row_id).values(written_at=_wrote_at(timestamp, _aware(received_at)))
        )
    connection.execute(sa.update(table).where(table.c.written_at.is_(None)).values(written_at=table.c.received_at))
    op.drop_index(_INDEX, table_name=_TABLE)
    op.create_index(_INDEX, _TABLE, ["from_phone", "business_phone", "written_at"])


def downgrade() -> None:
    """Index the window on ``received_at`` again and drop the column."""
    op.drop_index(_INDEX, table_name=_TABLE)
    op.create_index(_INDEX, _TABLE, ["from_phone", "business_phone", "received_at"])
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_column("written_at")
