"""
The Airflow plugin that serves the webhook receiver on Airflow 3.1+'s API server, under ``/itnio``.

Registered through the ``airflow.plugins`` entry point ``itnio_webhook`` (via
:mod:`airflow_provider_itnio.webhook._entry`), so installing the provider is enough: the API server then answers
``POST /itnio/webhook/{conn_id}/{token}`` (see :mod:`airflow_provider_itnio.webhook.app`). Importing this module on
an older Airflow raises an ``ImportError`` that says Airflow 3.1+ is needed.
"""

from __future__ import annotations

from airflow_provider_itnio.receiver_protocol import URL_PREFIX
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("The itnio webhook receiver")

from airflow.providers.common.compat.sdk import AirflowPlugin

from airflow_provider_itnio.webhook.app import app

__all__ = ["URL_PREFIX", "ItnioWebhookPlugin"]


class ItnioWebhookPlugin(AirflowPlugin):
    """Serve the itnio webhook receiver (``POST /itnio/webhook/{conn_id}/{token}``) on the API server."""

    name = "itnio_webhook"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "itnio webhook receiver"}]
