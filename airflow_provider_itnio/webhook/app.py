"""
The FastAPI app that receives the vendor's pushes on Airflow 3.1+'s API server (served under ``/itnio``).

:func:`create_app` builds it from one router per concern; the plugin (``airflow_provider_itnio.webhook.plugin``)
serves :data:`app`. A request goes through these rooms:

- :mod:`~airflow_provider_itnio.webhook.guards`: the gate every route shares. The app's first middleware
  (:class:`~airflow_provider_itnio.webhook.guards.MaskTokenMiddleware`) takes the token out of the path before
  routing, so it never reaches a log line; the routes' dependencies check it in constant time, with the same work
  and the same 404 for an unknown connection and a wrong token, and refuse a body over 1 MiB.
- :mod:`~airflow_provider_itnio.webhook.push`: ``POST /itnio/webhook/{conn_id}/{token}``, where the vendor pushes
  status reports and customers' messages (its answers: 200, 400, 404, 413, 503).
- :mod:`~airflow_provider_itnio.webhook.writer`: the process's writer, which records the pushes in groups, one
  transaction each, and turns the outbox into Airflow asset events
  (:mod:`~airflow_provider_itnio.webhook.asset_events`).
- :mod:`~airflow_provider_itnio.webhook.read_api`: ``GET /itnio/api/{conn_id}/messages/{message_id}/status``,
  ``POST .../statuses``, ``GET .../window`` and ``POST .../windows``, what workers and triggers ask
  (``Authorization: Bearer <webhook_token>``; their client is :mod:`airflow_provider_itnio.hooks.receiver`).
- :mod:`~airflow_provider_itnio.webhook.taps`: a tap on an approval's button answers the approval; the app's
  lifespan starts the sweep of taps left pending.

The names that lived here before the split (``GroupWriter``, ``writer``, ``record_group``, ``RESOLVE_TTL``, ...)
are still importable from here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from airflow_provider_itnio.connection_fields import WEBHOOK_TOKEN_EXTRA
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("The itnio webhook receiver")

from fastapi import FastAPI

from airflow_provider_itnio.webhook import push, read_api
from airflow_provider_itnio.webhook.guards import (  # noqa: F401  (names that lived here, kept importable)
    MASK,
    RESOLVE_CACHE_SIZE,
    RESOLVE_TTL,
    MaskTokenMiddleware,
    Refused,
    _gate,
    _resolve,
    _resolve_cached,
    _resolved,
    answer_refused,
)
from airflow_provider_itnio.webhook.push import _start_hitl_sweeper, receive_push  # noqa: F401
from airflow_provider_itnio.webhook.read_api import (  # noqa: F401
    WINDOW,
    get_status,
    get_statuses,
    get_window,
    get_windows,
)
from airflow_provider_itnio.webhook.store import new_session as _create_session  # noqa: F401
from airflow_provider_itnio.webhook.writer import (  # noqa: F401
    DEFAULT_ASSET_EVENTS_INTERVAL,
    GROUP_CAP,
    MAX_TURN_BACKOFF,
    MIN_ASSET_EVENTS_INTERVAL,
    STOP_WAIT,
    WRITER_ADVISORY_LOCK,
    WRITER_TURN_WAIT,
    GroupWriter,
    _at_exit,
    _begin_write,
    _Push,
    _write_transaction,
    _writers_take_turns,
    asset_events_interval,
    record_group,
    write_asset_events,
    writer,
)

__all__ = ["TOKEN_EXTRA", "app", "create_app"]

log = logging.getLogger(__name__)

#: :data:`~airflow_provider_itnio.connection_fields.WEBHOOK_TOKEN_EXTRA`, kept for code that imported it from here.
TOKEN_EXTRA = WEBHOOK_TOKEN_EXTRA


@contextlib.asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """Start the approval taps' sweeper with the API server (Airflow 3.3 runs its plugins' lifespans)."""
    try:
        _start_hitl_sweeper()
    except Exception as err:  # the first push starts it again
        log.error("itnio webhook: cannot start the sweep of approval taps: %s", type(err).__name__)
    yield


def create_app() -> FastAPI:
    """Return the receiver's FastAPI app (mounted by the plugin under ``/itnio``)."""
    receiver = FastAPI(
        lifespan=_lifespan,
        title="itniotech WhatsApp webhook receiver",
        description="Receives the itniotech API's pushes (message statuses, customers' messages).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    receiver.include_router(push.router)
    receiver.include_router(read_api.router)
    receiver.add_exception_handler(Refused, answer_refused)  # what the guards refuse, answered as they say
    receiver.add_middleware(MaskTokenMiddleware)  # first: the token leaves the path before anything reads it
    return receiver


#: The app the plugin serves.
app = create_app()
