"""
The Airflow assets the webhook receiver records events on (Airflow 3.1+), for DAGs to schedule on.

- :func:`inbound_messages`: one event per message a customer sends (``itnio://<conn_id>/inbound``);
- :func:`message_status`: one event per distinct status push with a given status
  (``itnio://<conn_id>/status/<status>``, e.g. ``itnio://itnio_default/status/failed``).

Each asset's name is its URI and its group is ``itnio``, so ``Asset("itnio://itnio_default/inbound")`` written by
hand is the same asset. Airflow 3 accepts the custom ``itnio`` scheme as it is (only ``airflow`` is reserved, and a
scheme without a registered normalizer is kept verbatim). The receiver records an event only when the asset is
known to Airflow (a parsed DAG uses it); otherwise a push records nothing on it and nothing fails.

DAG files import this module when they are parsed, so it imports only ``airflow.sdk``. Airflow 2 has no API
server to serve the receiver (and no asset events from plugins): importing this module there raises an
``ImportError`` that says Airflow 3.1+ is needed.
"""

from __future__ import annotations

import re

from airflow_provider_itnio.webhook import require_airflow_3_1

require_airflow_3_1("Scheduling on itnio pushes (airflow_provider_itnio.assets)")

from airflow.sdk import Asset  # noqa: E402

__all__ = [
    "ASSET_GROUP",
    "ASSET_SCHEME",
    "STATUSES",
    "inbound_messages",
    "inbound_messages_uri",
    "message_status",
    "message_status_uri",
]

#: The URI scheme of the provider's assets.
ASSET_SCHEME = "itnio"
#: The asset group shown in the UI.
ASSET_GROUP = "itnio"
#: The statuses :func:`message_status` takes (the vendor's words).
STATUSES: tuple[str, ...] = ("sent", "delivered", "read", "failed", "deleted")
#: What a connection id may hold (Airflow's own rule for connection ids), so that it is a valid URI host.
_CONN_ID = re.compile(r"^[\w.-]{1,250}$", re.ASCII)


def _conn_id(itnio_conn_id: object) -> str:
    if not isinstance(itnio_conn_id, str) or not _CONN_ID.fullmatch(itnio_conn_id):
        raise ValueError(
            f"itnio_conn_id: must be a connection id (letters, digits, '_', '.', '-'); got {itnio_conn_id!r}"
        )
    return itnio_conn_id


def inbound_messages_uri(itnio_conn_id: str = "itnio_default") -> str:
    """
    Return the URI (and name) of :func:`inbound_messages`' asset, ``itnio://<itnio_conn_id>/inbound``.

    :param itnio_conn_id: The ``itnio`` connection whose webhook address receives the messages.
    """
    return f"{ASSET_SCHEME}://{_conn_id(itnio_conn_id)}/inbound"


def message_status_uri(itnio_conn_id: str = "itnio_default", status: str = "failed") -> str:
    """
    Return the URI (and name) of :func:`message_status`' asset, ``itnio://<itnio_conn_id>/status/<status>``.

    :param itnio_conn_id: The ``itnio`` connection whose webhook address receives the status pushes.
    :param status: One of :data:`STATUSES` (any case).
    """
    word = status.strip().lower() if isinstance(status, str) else status
    if word not in STATUSES:
        raise ValueError(f"status: must be one of {', '.join(STATUSES)}; got {status!r}")
    return f"{ASSET_SCHEME}://{_conn_id(itnio_conn_id)}/status/{word}"


def inbound_messages(itnio_conn_id: str = "itnio_default") -> Asset:
    """
    Return the asset that gets an event for every message a customer sends to the connection's application.

    Schedule a DAG on it (``schedule=inbound_messages("itnio_default")``) to run on customers' messages. Each
    event's ``extra`` has ``message_id``, ``from`` (digits), ``name``, ``business_phone``, ``type``, ``text``
    (body or caption, else ``None``), ``reply`` (``{"id", "title"}`` for a button or list-row tap, else ``None``),
    ``location``, ``media``, ``timestamp`` (the vendor's, Unix seconds) and ``raw`` (the whole push). A re-push of
    the same message records no second event.

    :param itnio_conn_id: The ``itnio`` connection whose webhook address receives the messages.
    """
    uri = inbound_messages_uri(itnio_conn_id)
    return Asset(name=uri, uri=uri, group=ASSET_GROUP)


def message_status(itnio_conn_id: str = "itnio_default", status: str = "failed") -> Asset:
    """
    Return the asset that gets an event for every distinct status push with ``status``.

    Schedule a DAG on ``message_status("itnio_default", "failed")`` to react to failed messages. Each event's
    ``extra`` has ``message_id``, ``recipient``, ``business_phone``, ``status``, ``failure`` (the vendor's reason,
    or ``None``), ``timestamp`` (the vendor's, Unix seconds) and ``raw`` (the whole push). A re-push of the same
    status of the same message records no second event; a push that arrives late (``delivered`` after ``read``)
    still records its event, since it is a status the message did reach.

    :param itnio_conn_id: The ``itnio`` connection whose webhook address receives the status pushes.
    :param status: ``sent``, ``delivered``, ``read``, ``failed`` or ``deleted`` (any case).
    """
    uri = message_status_uri(itnio_conn_id, status)
    return Asset(name=uri, uri=uri, group=ASSET_GROUP)
