"""
The webhook receiver: vendor pushes (delivery statuses, customers' messages) recorded in Airflow (Airflow 3.1+).

- :mod:`~airflow_provider_itnio.webhook.models` and :mod:`~airflow_provider_itnio.webhook.store`: the provider's
  tables and the idempotent writes (pure SQLAlchemy; they import on every Airflow).
- :mod:`~airflow_provider_itnio.webhook.db_manager`: creates the tables on ``airflow db migrate`` (Airflow 3.1+).
- :mod:`~airflow_provider_itnio.webhook.app` and :mod:`~airflow_provider_itnio.webhook.plugin`: the FastAPI app
  that the API server serves at ``POST /itnio/webhook/{conn_id}/{token}`` (Airflow 3.1+: importing them on an
  older Airflow raises an ``ImportError`` that says so).
- :class:`~airflow_provider_itnio.hooks.receiver.ItnioReceiverClient` (in :mod:`airflow_provider_itnio.hooks.receiver`;
  ``webhook.client`` is its old, deprecated path): what workers and triggers use to ask the app's authenticated read
  endpoints (``GET /itnio/api/{conn_id}/...``) what was recorded (Airflow 3.1+).
- Each new push is also an asset event on :mod:`airflow_provider_itnio.assets`' assets, for DAGs to schedule on.
- ``python -m airflow_provider_itnio.webhook url CONN_ID`` prints the address to paste into the vendor's console;
  ``python -m airflow_provider_itnio.webhook cleanup`` applies the retention.

Importing this package imports nothing else but :mod:`airflow_provider_itnio.version_compat` (the CLI and the plugin
entry point stay light). ``MIN_AIRFLOW`` and ``require_airflow_3_1`` are re-exported from there for the code that
imported them from here.
"""

from __future__ import annotations

from airflow_provider_itnio.version_compat import MIN_AIRFLOW, require_airflow_3_1

__all__ = ["MIN_AIRFLOW", "require_airflow_3_1"]
