"""
Create the itnio provider's asset outbox: the asset events of recorded pushes until the receiver writes them.

Revision ID: 9d4e2c81f0a7
Revises: 6c1f0a7e2b31
Create Date: 2026-11-27 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "9d4e2c81f0a7"
down_revision = "6c1f0a7e2b31"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the outbox table."""
    op.create_table(
        "itnio_asset_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("conn_id", sa.String(length=250), nullable=False),
        sa.Column("asset_uri", sa.Text(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="itnio_asset_outbox_pkey"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    """Drop the outbox table (asset events not written yet are lost with it)."""
    op.drop_table("itnio_asset_outbox")
