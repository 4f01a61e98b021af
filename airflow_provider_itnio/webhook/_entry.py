"""
The target of the ``airflow.plugins`` entry point ``itnio_webhook``.

On Airflow 3.1+ it is :class:`airflow_provider_itnio.webhook.plugin.ItnioWebhookPlugin`. On older Airflow it is
``None``, which Airflow's plugin loader skips silently: every Airflow 2 process loads entry-point plugins, and an
``ImportError`` there would be logged as a plugin import error in all of them (importing
:mod:`airflow_provider_itnio.webhook.plugin` directly still raises the clear error).
"""

from __future__ import annotations

import importlib
from typing import Any

from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS

ItnioWebhookPlugin: Any = (
    importlib.import_module("airflow_provider_itnio.webhook.plugin").ItnioWebhookPlugin if AIRFLOW_V_3_1_PLUS else None
)
