"""
The external DB manager that creates and migrates the provider's tables on ``airflow db migrate`` (Airflow 3.1+).

Airflow 3.2+ finds it through ``db-managers`` in ``get_provider_info()``; on Airflow 3.1 name it in
``[database] external_db_managers`` (``airflow_provider_itnio.webhook.db_manager.ItnioDBManager``). A fresh
database gets the tables from the models and is stamped at the migrations' head; later releases add Alembic
revisions under ``migrations/versions``, which ``airflow db migrate`` applies. ``airflow db reset`` drops them with
Airflow's. Airflow 2 has no external DB managers: importing this module there raises an ``ImportError``.
"""

from __future__ import annotations

from pathlib import Path

from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed
from airflow_provider_itnio.webhook.models import metadata

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("The itnio DB manager")

from airflow.utils.db_manager import BaseDBManager

_MIGRATIONS = Path(__file__).parent / "migrations"


class ItnioDBManager(BaseDBManager):
    """Create and migrate the tables of :mod:`airflow_provider_itnio.webhook.models` with Airflow's own."""

    metadata = metadata
    version_table_name = "alembic_version_itnio"
    migration_dir = _MIGRATIONS.as_posix()
    alembic_file = (_MIGRATIONS / "alembic.ini").as_posix()
    supports_table_dropping = True
