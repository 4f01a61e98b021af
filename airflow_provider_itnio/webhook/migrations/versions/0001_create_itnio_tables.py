"""
Create the itnio provider's tables: message statuses, status history, inbound messages.

Revision ID: 6c1f0a7e2b31
Revises:
Create Date: 2026-11-27 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "6c1f0a7e2b31"
down_revision = None
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the three tables and their indexes."""
    op.create_table(
        "itnio_message_status",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=191), nullable=False),
        sa.Column("message_id", sa.String(length=191), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("recipient", sa.String(length=32), nullable=False),
        sa.Column("business_phone", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=191), nullable=True),
        sa.Column("status_timestamp", sa.BigInteger(), nullable=True),
        sa.Column("conn_id", sa.String(length=250), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="itnio_message_status_pkey"),
        sa.UniqueConstraint("app_id", "message_id", name="itnio_message_status_app_id_message_id_uq"),
    )
    op.create_index("idx_itnio_message_status_message_id", "itnio_message_status", ["message_id"])
    op.create_index("idx_itnio_message_status_updated_at", "itnio_message_status", ["updated_at"])

    op.create_table(
        "itnio_status_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(length=80), nullable=False),
        sa.Column("app_id", sa.String(length=191), nullable=False),
        sa.Column("message_id", sa.String(length=191), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("status_timestamp", sa.BigInteger(), nullable=True),
        sa.Column("conn_id", sa.String(length=250), nullable=False),
        sa.Column("received_at", _UTC, nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="itnio_status_history_pkey"),
        sa.UniqueConstraint("dedup_key", name="itnio_status_history_dedup_key_uq"),
    )
    op.create_index("idx_itnio_status_history_app_id_message_id", "itnio_status_history", ["app_id", "message_id"])
    op.create_index("idx_itnio_status_history_received_at", "itnio_status_history", ["received_at"])

    op.create_table(
        "itnio_inbound_message",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=191), nullable=False),
        sa.Column("message_id", sa.String(length=191), nullable=False),
        sa.Column("business_phone", sa.String(length=32), nullable=False),
        sa.Column("from_phone", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("reply", sa.JSON(), nullable=True),
        sa.Column("location", sa.JSON(), nullable=True),
        sa.Column("media", sa.JSON(), nullable=True),
        sa.Column("message_timestamp", sa.BigInteger(), nullable=True),
        sa.Column("conn_id", sa.String(length=250), nullable=False),
        sa.Column("received_at", _UTC, nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="itnio_inbound_message_pkey"),
        sa.UniqueConstraint("app_id", "message_id", name="itnio_inbound_message_app_id_message_id_uq"),
    )
    op.create_index(
        "idx_itnio_inbound_message_window",
        "itnio_inbound_message",
        ["from_phone", "business_phone", "received_at"],
    )
    op.create_index("idx_itnio_inbound_message_received_at", "itnio_inbound_message", ["received_at"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("itnio_inbound_message")
    op.drop_table("itnio_status_history")
    op.drop_table("itnio_message_status")
