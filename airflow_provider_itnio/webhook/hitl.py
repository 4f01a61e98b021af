"""
Deprecated: the receiver's side of approvals is :mod:`airflow_provider_itnio.webhook.taps`' now.

Importing this module still gives every name it had (Airflow 3.1+), with a ``DeprecationWarning``. Import them from
where they live:

- :mod:`airflow_provider_itnio.webhook.taps`: a tap answers the HITL request (``on_inbound``, ``apply_tap``,
  ``handle_tap``, ``TapOutcome``, ``TapNotRecorded``, ``responder``, ``ui_link``);
- :mod:`airflow_provider_itnio.webhook.owed_buttons`: buttons owed after a template (``Owed``,
  ``pending_requests``, ``send_pending``, ``sweep_sending``, ``SENDING_STALE_AFTER``);
- :mod:`airflow_provider_itnio.webhook.tap_sweeper`: the API server's sweep (``sweeper``, ``sweep``, ``sweep_taps``
  and their limits);
- :mod:`airflow_provider_itnio.webhook.approvals_common`: what those share (``phone_digest``, ``send_reply``,
  ``connection_button_keys``, ``LOCK_TIMEOUT``);
- :mod:`airflow_provider_itnio.hitl_buttons`: button ids and keys (``sign_button``, ``button_keys``, ...).
"""

from __future__ import annotations

import warnings

from airflow_provider_itnio.hitl_buttons import (
    ID_PREFIX,
    MAX_ID,
    PENDING_XCOM_KEY,
    REQUESTS_XCOM_KEY,
    ButtonId,
    ButtonKeys,
    button_key_secrets,
    button_keys,
    legacy_button_key,
    mask_phone,
    parse_button,
    recipient_digest,
    sign_button,
    verify_button,
)
from airflow_provider_itnio.webhook.approvals_common import (
    LOCK_TIMEOUT,
    connection_button_keys,
    phone_digest,
    send_reply,
)
from airflow_provider_itnio.webhook.owed_buttons import (
    SENDING_STALE_AFTER,
    Owed,
    pending_requests,
    send_pending,
    sweep_sending,
)
from airflow_provider_itnio.webhook.tap_sweeper import (
    MAX_TAP_ATTEMPTS,
    MAX_TAP_BACKOFF,
    SWEEP_AFTER,
    SWEEP_BATCH,
    SWEEP_INTERVAL,
    Sweeper,
    sweep,
    sweep_taps,
    sweeper,
)
from airflow_provider_itnio.webhook.taps import (
    TapNotRecorded,
    TapOutcome,
    apply_tap,
    handle_tap,
    on_inbound,
    responder,
    ui_link,
)

__all__ = [
    "ID_PREFIX",
    "LOCK_TIMEOUT",
    "MAX_ID",
    "MAX_TAP_ATTEMPTS",
    "MAX_TAP_BACKOFF",
    "PENDING_XCOM_KEY",
    "REQUESTS_XCOM_KEY",
    "SENDING_STALE_AFTER",
    "SWEEP_AFTER",
    "SWEEP_BATCH",
    "SWEEP_INTERVAL",
    "ButtonId",
    "ButtonKeys",
    "Owed",
    "Sweeper",
    "TapNotRecorded",
    "TapOutcome",
    "apply_tap",
    "button_key_secrets",
    "button_keys",
    "connection_button_keys",
    "handle_tap",
    "legacy_button_key",
    "mask_phone",
    "on_inbound",
    "parse_button",
    "pending_requests",
    "phone_digest",
    "recipient_digest",
    "responder",
    "send_pending",
    "send_reply",
    "sign_button",
    "sweep",
    "sweep_sending",
    "sweep_taps",
    "sweeper",
    "ui_link",
    "verify_button",
]

warnings.warn(
    "airflow_provider_itnio.webhook.hitl is deprecated: import from airflow_provider_itnio.webhook.taps (taps), "
    "webhook.owed_buttons (buttons owed after a template), webhook.tap_sweeper (the sweep), "
    "webhook.approvals_common (phone_digest, send_reply, connection_button_keys) or "
    "airflow_provider_itnio.hitl_buttons (button ids and keys)",
    DeprecationWarning,
    stacklevel=2,
)
