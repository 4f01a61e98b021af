"""Alembic environment for the provider's tables, run by ``ItnioDBManager`` (never touches Airflow's tables)."""

from __future__ import annotations

import contextlib
from typing import Any

from airflow import settings
from alembic import context

from airflow_provider_itnio.webhook.db_manager import ItnioDBManager

config = context.config
target_metadata = ItnioDBManager.metadata
TABLE_NAMES = {table.name for table in target_metadata.tables.values()}


def include_object(_object: Any, name: str | None, type_: str, *_args: Any) -> bool:
    """Return whether alembic may look at an object: only the provider's tables (Airflow's share the database)."""
    return type_ != "table" or name in TABLE_NAMES


def run_migrations_offline() -> None:
    """Run the migrations without a database (``--show-sql-only``)."""
    context.configure(
        url=settings.SQL_ALCHEMY_CONN,
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        render_as_batch=True,
        version_table=ItnioDBManager.version_table_name,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on Airflow's database."""
    with contextlib.ExitStack() as stack:
        connection = config.attributes.get("connection")
        if connection is None:
            if settings.engine is None:
                raise RuntimeError("Airflow's database engine is not configured")
            connection = stack.enter_context(settings.engine.connect())
        context.configure(
            connection=connection,
            transaction_per_migration=True,
            target_metadata=target_metadata,
            compare_type=True,
            render_as_batch=True,
            version_table=ItnioDBManager.version_table_name,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
