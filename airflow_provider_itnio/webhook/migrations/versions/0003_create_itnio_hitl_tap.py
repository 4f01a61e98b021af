"""
Create the itnio provider's approval taps: each tap on an approval button, pending until its answer is recorded.

Revision ID: 3b7e5d90c4a2
Revises: 9d4e2c81f0a7
Create Date: 2026-12-07 13:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "3b7e5d90c4a2"
down_revision = "9d4e2c81f0a7"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the taps table."""
    op.create_table(
        "itnio_hitl_tap",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=191), nullable=False),
        sa.Column("message_id", sa.String(length=191), nullable=False),
        sa.Column("conn_id", sa.String(length=250), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="itnio_hitl_tap_pkey"),
        sa.UniqueConstraint("app_id", "message_id", name="itnio_hitl_tap_app_id_message_id_uq"),
    )
    op.create_index("idx_itnio_hitl_tap_state_next_attempt_at", "itnio_hitl_tap", ["state", "next_attempt_at"])
    op.create_index("idx_itnio_hitl_tap_received_at", "itnio_hitl_tap", ["received_at"])


def downgrade() -> None:
    """Drop the taps table (taps still pending are lost with it)."""
    op.drop_index("idx_itnio_hitl_tap_received_at", table_name="itnio_hitl_tap")
    op.drop_index("idx_itnio_hitl_tap_state_next_attempt_at", table_name="itnio_hitl_tap")
    op.drop_table("itnio_hitl_tap")
