"""
Tests of the webhook store (``airflow_provider_itnio.webhook.store`` and ``.models``) on a real SQLite database.

The store is pure SQLAlchemy, so these run on both Airflow lines (SQLAlchemy 2 with Airflow 3, 1.4 with Airflow
2.11). The pushes are the parser tests' pushes (built from the spec's field tables); the expected statuses follow
the spec's rule as :func:`airflow_provider_itnio.events.furthest` implements it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import UniqueConstraint, create_engine, inspect
from sqlalchemy.engine import Engine

from airflow_provider_itnio.webhook.models import (
    TABLE_NAMES,
    metadata,
)
from tests.support.paths import ROOT
from tests.support.store_contract import contract_tests, session, store_engine

MIGRATIONS = ROOT / "airflow_provider_itnio" / "webhook" / "migrations" / "versions"

#: A PostgreSQL database to run the store tests on as well (their tables are dropped and created), e.g.
#: ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``; unset, those runs are skipped.
POSTGRES_URL = os.environ.get("ITNIO_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    elif POSTGRES_URL:
        url = POSTGRES_URL
    else:  # make test-stack runs them on the stack's PostgreSQL (tests/e2e/stack/test_pg_store.py)
        pytest.skip("set ITNIO_TEST_POSTGRES_URL to run the store tests on PostgreSQL too")
    with store_engine(url) as on_url:
        yield on_url


__all__ = ["session"]  # the contract tests' fixture, imported for this module
globals().update(contract_tests())  # the store's contract (tests.support.store_contract), on these databases


def test_the_models_are_the_provider_tables_on_their_own_metadata() -> None:
    assert {
        "itnio_message_status",
        "itnio_status_history",
        "itnio_inbound_message",
        "itnio_asset_outbox",
        "itnio_hitl_tap",
    } == TABLE_NAMES
    unique = {
        table.name: sorted(
            tuple(column.name for column in constraint.columns)
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)
        )
        for table in metadata.tables.values()
    }
    assert unique == {
        "itnio_message_status": [("app_id", "message_id")],
        "itnio_status_history": [("dedup_key",)],
        "itnio_inbound_message": [("app_id", "message_id")],
        "itnio_asset_outbox": [],
        "itnio_hitl_tap": [("app_id", "message_id")],
    }


def test_the_migration_creates_exactly_the_models_tables(tmp_path: Path) -> None:
    """The Alembic revision that ``airflow db migrate --use-migration-files`` runs matches the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    engine = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    revisions = {}
    for path in sorted(MIGRATIONS.glob("[0-9]*.py")):
        spec = importlib.util.spec_from_file_location(f"itnio_migration_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        revisions[path.stem] = (spec, importlib.util.module_from_spec(spec))
    with engine.begin() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        with Operations.context(context):
            down_revision = None
            for spec, migration in revisions.values():  # in file order, each revising the one before
                spec.loader.exec_module(migration)  # type: ignore[union-attr]
                assert migration.down_revision == down_revision, spec.name
                migration.upgrade()
                down_revision = migration.revision
        # SQLite's own table behind the outbox's AUTOINCREMENT (older Alembic lists it as a table to remove)
        diff = [
            change
            for change in compare_metadata(context, metadata)
            if not (change[0] == "remove_table" and change[1].name == "sqlite_sequence")
        ]
    indexes = {name: sorted(str(index["name"]) for index in inspect(engine).get_indexes(name)) for name in TABLE_NAMES}
    engine.dispose()
    assert diff == []
    assert indexes == {
        table.name: sorted(str(index.name) for index in table.indexes) for table in metadata.tables.values()
    }
