"""
The receiver's HTTP protocol as both of its sides know it: where it is served and the limits of its read API.

The server (:mod:`airflow_provider_itnio.webhook.app`) enforces these limits and the client
(:class:`~airflow_provider_itnio.hooks.receiver.ItnioReceiverClient`) keeps its requests within them; neither takes
them from the other. No Airflow import.
"""

from __future__ import annotations

__all__ = ["MAX_STATUS_IDS", "MAX_STATUS_WAIT", "MAX_WINDOW_RECIPIENTS", "URL_PREFIX"]

#: Where the API server serves the receiver (the plugin's ``url_prefix``).
URL_PREFIX = "/itnio"
#: The most recipients one ``POST /itnio/api/{conn_id}/windows`` request may ask about.
MAX_WINDOW_RECIPIENTS = 1000
#: The most message ids one ``POST /itnio/api/{conn_id}/statuses`` request may ask about.
MAX_STATUS_IDS = 1000
#: The longest a ``POST /itnio/api/{conn_id}/statuses`` request may wait for a change (seconds).
MAX_STATUS_WAIT = 30.0
