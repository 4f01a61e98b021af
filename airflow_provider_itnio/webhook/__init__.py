"""
The webhook receiver: vendor pushes (delivery statuses, customers' messages) recorded in Airflow (Airflow 3.1+).

- :mod:`~airflow_provider_itnio.webhook.models` and :mod:`~airflow_provider_itnio.webhook.store`: the provider's
  tables and the idempotent writes (pure SQLAlchemy; they import on every Airflow).
- :mod:`~airflow_provider_itnio.webhook.db_manager`: creates the tables on ``airflow db migrate`` (Airflow 3.1+).
- :mod:`~airflow_provider_itnio.webhook.app` and :mod:`~airflow_provider_itnio.webhook.plugin`: the FastAPI app
  that the API server serves at ``POST /itnio/webhook/{conn_id}/{token}`` (Airflow 3.1+: importing them on an
  older Airflow raises an ``ImportError`` that says so).
- :mod:`~airflow_provider_itnio.webhook.client`: :class:`ItnioReceiverClient`, which workers and triggers use to
  ask the app's authenticated read endpoints (``GET /itnio/api/{conn_id}/...``) what was recorded (Airflow 3.1+).
- Each new push is also an asset event on :mod:`airflow_provider_itnio.assets`' assets, for DAGs to schedule on.
- ``python -m airflow_provider_itnio.webhook url CONN_ID`` prints the address to paste into the vendor's console;
  ``python -m airflow_provider_itnio.webhook cleanup`` applies the retention.

Importing this package imports nothing else (the CLI and the plugin entry point stay light).
"""

from __future__ import annotations

import functools
from importlib import metadata

__all__ = ["MIN_AIRFLOW", "require_airflow_3_1"]

#: The oldest Airflow whose API server can serve the receiver.
MIN_AIRFLOW = (3, 1)


@functools.cache
def _airflow_release() -> tuple[int, ...]:
    """Return the installed Airflow's major and minor version (``3.1.0rc1`` gives ``(3, 1)``)."""
    from packaging.version import Version

    return Version(metadata.version("apache-airflow")).release[:2]


def require_airflow_3_1(what: str) -> None:
    """
    Raise an ``ImportError`` saying that ``what`` needs Airflow 3.1+ when the installed Airflow is older.

    :param what: What needs it, e.g. ``the itnio webhook receiver``.
    """
    release = _airflow_release()
    if release < MIN_AIRFLOW:
        installed = metadata.version("apache-airflow")
        raise ImportError(
            f"{what} needs Airflow {MIN_AIRFLOW[0]}.{MIN_AIRFLOW[1]} or later (it runs on the Airflow 3 API "
            f"server); this is Airflow {installed}. Sending messages works on this Airflow; receiving pushes "
            f"does not."
        )
