"""
Deprecated: :class:`ItnioReceiverClient` is :mod:`airflow_provider_itnio.hooks.receiver`'s now.

Importing this module still gives every name it had (Airflow 3.1+), with a ``DeprecationWarning``; import them from
:mod:`airflow_provider_itnio.hooks.receiver` (the limits of the read API are in
:mod:`airflow_provider_itnio.receiver_protocol`).
"""

from __future__ import annotations

import warnings

from airflow_provider_itnio.hooks.receiver import (
    DEFAULT_BASE_URL,
    MAX_STATUS_IDS,
    MAX_STATUS_WAIT,
    MAX_WINDOW_RECIPIENTS,
    RECEIVER_URL_EXTRA,
    TOKEN_EXTRA,
    TRANSIENT_STATUSES,
    URL_PREFIX,
    ItnioReceiverClient,
    ItnioReceiverConfigError,
    ItnioReceiverError,
    ItnioReceiverNotFoundError,
    ItnioReceiverUnreachableError,
    ItnioUnknownMessageError,
    StatusesAnswer,
    receiver_base_url,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_STATUS_IDS",
    "MAX_STATUS_WAIT",
    "MAX_WINDOW_RECIPIENTS",
    "RECEIVER_URL_EXTRA",
    "TOKEN_EXTRA",
    "TRANSIENT_STATUSES",
    "URL_PREFIX",
    "ItnioReceiverClient",
    "ItnioReceiverConfigError",
    "ItnioReceiverError",
    "ItnioReceiverNotFoundError",
    "ItnioReceiverUnreachableError",
    "ItnioUnknownMessageError",
    "StatusesAnswer",
    "receiver_base_url",
]

warnings.warn(
    "airflow_provider_itnio.webhook.client is deprecated: import ItnioReceiverClient (and its errors) from "
    "airflow_provider_itnio.hooks.receiver",
    DeprecationWarning,
    stacklevel=2,
)
