"""
The webhook store on the stack's PostgreSQL: the store's contract (``tests/support/store_contract.py``, which
``tests/unit/webhook/test_store.py`` runs on SQLite), and the receiver's tables as ``airflow db migrate`` made them in
the metadata database.

The store tests run in a database of their own (``itnio_test_store``, created in the stack's cluster by
``scripts/stack.py``'s :func:`create_database` and dropped afterwards; never the metadata database ``airflow``):
every test of the contract (each takes the ``engine`` or ``session`` fixture) is collected here too (tests added
there later as well), on this module's ``engine`` fixture: PostgreSQL only (the SQLite runs
belong to ``make test``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.support.stack import Stack
from tests.support.store_contract import contract_tests, session, store_engine

DATABASE = "itnio_test_store"


__all__ = ["session"]  # the contract tests' fixture, imported for this module
globals().update(contract_tests())


@pytest.fixture(scope="module")
def postgres_database(stack: Stack) -> Iterator[str]:
    """Create the store tests' own database in the stack's cluster; yield its URL; drop it."""
    url: str = stack.module.create_database(stack.state, DATABASE)
    try:
        yield url
    finally:
        stack.module.drop_database(stack.state, DATABASE)


@pytest.fixture
def engine(postgres_database: str) -> Iterator[Engine]:
    """Give the contract tests PostgreSQL only (``tests/unit/webhook/test_store.py`` has SQLite): tables empty."""
    with store_engine(postgres_database) as on_postgres:
        yield on_postgres


def test_the_store_tests_are_collected_here(engine: Engine) -> None:
    """Guard the collection above: the engine-bound store tests are here, on PostgreSQL."""
    names = set(contract_tests())
    assert "test_racing_pushes_of_one_message_are_recorded_once_and_end_at_the_furthest_status" in names
    assert names <= set(globals())
    assert engine.dialect.name == "postgresql"
    assert engine.url.database == DATABASE


def test_airflow_db_migrate_made_the_receiver_tables_as_the_models_say(stack: Stack) -> None:
    """
    In the stack's metadata database (read-only): the receiver's tables, columns, types, constraints and indexes
    equal the models, and the DB manager's version table is at the migrations' head.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from airflow_provider_itnio.webhook.db_manager import ItnioDBManager
    from airflow_provider_itnio.webhook.models import TABLE_NAMES, metadata

    def ours(name: str | None, type_: str, parent_names: Any) -> bool:
        return type_ != "table" or name in TABLE_NAMES

    metadata_db = sa.create_engine(stack.module.database_url(stack.state))
    try:
        with metadata_db.connect() as connection:
            connection.execute(sa.text("SET TRANSACTION READ ONLY"))
            assert connection.execute(sa.text("SELECT current_database()")).scalar_one() == "airflow"
            context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": ours})
            diff = compare_metadata(context, metadata)
            version_table = ItnioDBManager.version_table_name
            stamped = sorted(connection.execute(sa.text(f"SELECT version_num FROM {version_table}")).scalars())
            indexes = {  # PostgreSQL lists a unique constraint's index too: those are compared as constraints
                name: sorted(
                    str(index["name"])
                    for index in sa.inspect(connection).get_indexes(name)
                    if "duplicates_constraint" not in index
                )
                for name in TABLE_NAMES
            }
            connection.rollback()
    finally:
        metadata_db.dispose()
    assert diff == []
    assert indexes == {
        table.name: sorted(str(index.name) for index in table.indexes) for table in metadata.tables.values()
    }
    assert stamped == sorted(ScriptDirectory(ItnioDBManager.migration_dir).get_heads())


def test_receiver_writers_take_turns_and_one_stuck_in_its_transaction_holds_the_others_only_so_long(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver's groups take turns on an advisory lock; a writer waits for its turn at most WRITER_TURN_WAIT."""
    import threading

    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from airflow_provider_itnio.webhook import writer as writes

    monkeypatch.setattr(writes, "WRITER_TURN_WAIT", 1.0)
    with Session(engine) as stuck:
        writes._begin_write(stuck)  # holds the turn, as a writer stopped inside its transaction would
        outcome: list[BaseException | str] = []

        def next_writer() -> None:
            with Session(engine) as waiter:
                try:
                    writes._begin_write(waiter)
                    outcome.append("got the turn")
                except BaseException as err:
                    outcome.append(err)

        waiting = threading.Thread(target=next_writer, daemon=True)
        waiting.start()
        waiting.join(timeout=60)  # liveness, not speed: without lock_timeout it waits as long as the stuck one
        assert not waiting.is_alive(), "the next writer waited for the stuck one without limit"
        assert len(outcome) == 1 and isinstance(outcome[0], OperationalError), outcome
        assert "lock timeout" in str(outcome[0])  # its group is answered 503 (_DATABASE_DOWN); the vendor re-pushes
        stuck.rollback()
    with Session(engine) as writer:  # the turn is free again; the writer's own waits are back to the default
        writes._begin_write(writer)
        setting = "SELECT {} FROM pg_settings WHERE name = 'lock_timeout'"
        default = writer.execute(sa.text(setting.format("reset_val"))).scalar()
        assert writer.execute(sa.text(setting.format("setting"))).scalar() == default
        writer.rollback()
