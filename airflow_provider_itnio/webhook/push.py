"""
The webhook address: ``POST /itnio/webhook/{conn_id}/{token}``, where the vendor pushes (Airflow 3.1+).

It takes both pushes (status reports and customers' messages, told apart by ``eventType``) for the ``itnio``
connection ``conn_id``, records each once in the provider's tables and answers at once (no outbound call inside the
request). In this order: the gate (:data:`~airflow_provider_itnio.webhook.guards.PushReceiver`: the declared size,
then the token), the body (read at most up to the limit), the push's shape, its application, then the writer. The
answers:

=====  ===============================================================================================
200    recorded, or a re-push of something already recorded (``"duplicate": true``): nothing written twice
400    not JSON, not an object, a required field missing or unreadable, an unknown ``eventType``, or an
       ``appId`` that is not the connection's ``app_id`` (the body names the field, never a token)
404    unknown connection, a connection of another type or without a ``webhook_token`` extra, or a wrong
       token: the same answer for all of them (``{"detail": "Not Found"}``, as for any unknown path)
413    a body over :data:`~airflow_provider_itnio.events.MAX_PUSH_BYTES` (1 MiB): a larger ``Content-Length``
       is refused before reading, and the read stops at the limit
503    the connection could not be read, the database could not record it (the tables are missing, or the
       database is down), or could not record the answer an approval tap gives; the vendor re-pushes
=====  ===============================================================================================

Nothing is recorded for an answer other than 200, but for a tap whose answer could not be recorded: its push is
kept with the tap pending, and the re-push applies it (:mod:`airflow_provider_itnio.webhook.taps`). A push
recorded for the first time is also an Airflow asset event (:mod:`airflow_provider_itnio.assets`; a tap on an
approval's button is none, it answers the approval) when a DAG uses the asset: kept in the provider's outbox in
the same transaction, and written as an Airflow asset event by the process's writer shortly after
(:mod:`airflow_provider_itnio.webhook.writer`, :mod:`airflow_provider_itnio.webhook.asset_events`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from airflow_provider_itnio.events import InboundEvent, PushError, StatusEvent, parse_push
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("The itnio webhook receiver")

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from airflow_provider_itnio.webhook.guards import PushReceiver, bad_request, read_body
from airflow_provider_itnio.webhook.writer import writer

__all__ = ["receive_push", "router"]

log = logging.getLogger(__name__)

#: The webhook address's routes (the app includes them).
router = APIRouter()


def _start_hitl_sweeper() -> None:
    """Start this process's sweep of approval taps left pending (:mod:`airflow_provider_itnio.webhook.tap_sweeper`)."""
    from airflow_provider_itnio.webhook.tap_sweeper import sweeper

    sweeper.ensure()


_SUMMARY = "Record a push from the itniotech API"


# A pasted address with a trailing slash is served too (not redirected), out of the schema.
@router.post("/webhook/{conn_id}/{token}/", summary=_SUMMARY, response_class=JSONResponse, include_in_schema=False)
@router.post("/webhook/{conn_id}/{token}", summary=_SUMMARY, response_class=JSONResponse)
async def receive_push(conn_id: str, receiver: PushReceiver, request: Request) -> JSONResponse:
    """
    Record one push from the vendor for connection ``conn_id`` (admitted by the gate: the token is right).

    :param conn_id: The ``itnio`` connection whose address this is.
    :param receiver: The connection's receiver (its application).
    :param request: The request.
    """
    _start_hitl_sweeper()

    body = await read_body(request)
    try:
        event = parse_push(body)
    except PushError as err:
        log.info("itnio webhook %s: refused a push (%s): %s", conn_id, err.http_status, err)
        return JSONResponse(status_code=err.http_status, content={"detail": str(err), "field": err.field})
    if event.app_id != receiver.app_id:
        detail = "appId: must be the connection's app_id; got another application's"
        log.info("itnio webhook %s: refused a push (400): %s", conn_id, detail)
        return bad_request(detail, "appId")

    try:
        recorded = await asyncio.wrap_future(writer.submit(event, conn_id))
    except SQLAlchemyError:
        log.exception(
            "itnio webhook %s: cannot record a push (are the provider's tables created? run `airflow db migrate`)",
            conn_id,
        )
        return JSONResponse(status_code=503, content={"detail": "The push cannot be recorded now; retry later."})
    answer: dict[str, Any] = {
        "event_type": event.event_type,
        "message_id": event.message_id,
        "duplicate": not recorded.new,
    }
    if isinstance(event, StatusEvent):
        answer["status"] = recorded.status.value if recorded.status is not None else None
    if event.warnings:
        answer["warnings"] = list(event.warnings)
    background = None
    if isinstance(event, InboundEvent):  # a HITL answer (also on a re-push, while pending), or an approver writing
        from airflow_provider_itnio.webhook.taps import TapNotRecorded, on_inbound

        try:  # what it sends goes after this answer
            background = await on_inbound(event, conn_id, new=recorded.new)
        except TapNotRecorded:  # the tap stays pending: its re-push (or the sweep) applies it
            return JSONResponse(status_code=503, content={"detail": "The tap cannot be recorded now; retry later."})
    return JSONResponse(status_code=200, content=answer, background=background)
