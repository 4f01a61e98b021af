"""
Wait in the triggerer until a sent message reaches a delivery status (Airflow 3.1+).

Airflow 3 does not let trigger code touch the metadata database, where the webhook receiver records the vendor's
status pushes. :class:`ItnioMessageStatusTrigger` asks the receiver's authenticated read endpoint on the API
server instead (``GET /itnio/api/{conn_id}/messages/{message_id}/status`` through
:class:`~airflow_provider_itnio.webhook.client.ItnioReceiverClient`), the way Airflow's own Human-in-the-loop
trigger reaches its data through the API server. The connection (its ``webhook_token``) is read in the triggerer
when the trigger runs; the trigger's serialized arguments hold nothing secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from airflow_provider_itnio.webhook import require_airflow_3_1

require_airflow_3_1("ItnioMessageStatusTrigger")

from airflow.triggers.base import BaseTrigger, TriggerEvent  # noqa: E402

from airflow_provider_itnio.errors import ItnioConfigError  # noqa: E402
from airflow_provider_itnio.events import MessageStatus, advances, is_final, parse_status  # noqa: E402
from airflow_provider_itnio.webhook.client import (  # noqa: E402
    ItnioReceiverClient,
    ItnioReceiverNotFoundError,
    ItnioReceiverUnreachableError,
    ItnioUnknownMessageError,
)

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "OUTCOMES",
    "TARGET_STATUSES",
    "ItnioMessageStatusTrigger",
    "check_target_status",
    "status_reached",
]

#: The statuses a wait can target, in the order a message reaches them.
TARGET_STATUSES: tuple[str, ...] = (MessageStatus.SENT.value, MessageStatus.DELIVERED.value, MessageStatus.READ.value)
#: Seconds between two questions to the receiver, by default.
DEFAULT_POLL_INTERVAL = 5.0
#: The shortest pause between two questions (a ``poll_interval`` of 0 would otherwise flood the API server).
MIN_POLL_INTERVAL = 0.1
#: The least time between the trigger's start and an event it fires (see ``ItnioMessageStatusTrigger.settle_seconds``).
SETTLE_SECONDS = 10.0
#: The ``outcome`` of the trigger's event: target reached, message failed/deleted, deadline passed, cannot ask.
OUTCOMES: tuple[str, ...] = ("reached", "final", "timeout", "error")


def check_target_status(value: object) -> str:
    """
    Return ``value`` as a target status (``sent``, ``delivered`` or ``read``, any case).

    :param value: The status to wait for.
    :raises ValueError: For anything else (``failed`` and ``deleted`` are outcomes, not targets).
    """
    word = value.strip().lower() if isinstance(value, str) else value
    if word not in TARGET_STATUSES:
        raise ValueError(f"target_status must be one of {', '.join(TARGET_STATUSES)}; got {value!r}")
    assert isinstance(word, str)
    return word


def status_reached(status: MessageStatus | str, target: MessageStatus | str) -> bool:
    """
    Return whether a message whose furthest status is ``status`` has reached ``target`` (or a later status).

    ``read`` reaches ``delivered`` and ``sent``; ``delivered`` reaches ``sent``. A final status (``failed``,
    ``deleted``) reaches nothing: check :func:`~airflow_provider_itnio.events.is_final` first.

    :param status: The message's furthest status, as the receiver recorded it.
    :param target: One of :data:`TARGET_STATUSES`.
    """
    current, wanted = parse_status(status), parse_status(target)
    if is_final(current):
        return False
    return current == wanted or advances(wanted, current)


class ItnioMessageStatusTrigger(BaseTrigger):
    """
    Fire when a message reaches ``target_status`` or a later one, or ends ``failed`` / ``deleted``.

    Asks the receiver on the API server every ``poll_interval`` seconds; a message with no status recorded yet,
    and an API server that cannot be reached for a moment, mean "not yet". The event's payload is a dict with
    ``outcome`` (one of :data:`OUTCOMES`), ``message_id``, ``target_status``, ``status`` (the furthest status, or
    ``None``), ``record`` (the receiver's answer, or ``None``) and, unless the target was reached, ``error``.

    :param message_id: The id the send call returned.
    :param target_status: ``sent``, ``delivered`` or ``read``.
    :param itnio_conn_id: The ``itnio`` connection whose ``webhook_token`` authenticates the question.
    :param poll_interval: Seconds between two questions (at least :data:`MIN_POLL_INTERVAL`).
    :param deadline: Unix time after which the trigger gives up (``outcome`` ``timeout``); ``None``: never.
    """

    #: Seconds the trigger waits after it started before it fires ``reached`` or ``final``. Airflow 3.3's scheduler
    #: fails a deferred task whose trigger fires before it has processed the deferring process's executor event
    #: ("finished with state success, but the task instance's state attribute is queued": apache/airflow#66374,
    #: #72716); a status already recorded when the task defers would hit that race, so the event waits this long.
    #: A wait on a WhatsApp status is minutes or hours long: the settling time costs nothing there.
    settle_seconds: ClassVar[float] = SETTLE_SECONDS

    def __init__(
        self,
        *,
        message_id: str,
        target_status: str = MessageStatus.DELIVERED.value,
        itnio_conn_id: str = "itnio_default",
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(message_id, str) or not message_id.strip():
            raise ValueError(f"message_id must be a non-empty string; got {message_id!r}")
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float) or poll_interval < 0:
            raise ValueError(f"poll_interval must be a non-negative number of seconds; got {poll_interval!r}")
        self.message_id = message_id.strip()
        self.target_status = check_target_status(target_status)
        self.itnio_conn_id = itnio_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = None if deadline is None else float(deadline)
        #: Questions asked so far, and the furthest status last answered (not serialized: for logs and tests).
        self.polls = 0
        self.last_status: str | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the arguments (no secret: the token is read from the connection)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "message_id": self.message_id,
                "target_status": self.target_status,
                "itnio_conn_id": self.itnio_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    async def _settle(self, started: float) -> None:
        """
        Wait until ``settle_seconds`` have passed since the trigger started (see the attribute).

        :param started: When :meth:`run` started (monotonic seconds).
        """
        left = self.settle_seconds - (time.monotonic() - started)
        if left > 0:
            await asyncio.sleep(left)

    def _event(self, outcome: str, record: dict[str, Any] | None, error: str | None = None) -> TriggerEvent:
        payload: dict[str, Any] = {
            "outcome": outcome,
            "message_id": self.message_id,
            "target_status": self.target_status,
            "status": None if record is None else record.get("status"),
            "record": record,
        }
        if error is not None:
            payload["error"] = error
        return TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Ask the receiver until the message reaches the target, ends, or the deadline passes."""
        client = ItnioReceiverClient(self.itnio_conn_id)
        record: dict[str, Any] | None = None
        started = time.monotonic()
        self.log.info(
            "Waiting for message %s to be %s (connection %s, every %s s)",
            self.message_id,
            self.target_status,
            self.itnio_conn_id,
            self.poll_interval,
        )
        while True:
            try:
                record = await client.amessage_status(self.message_id)
            except ItnioUnknownMessageError:
                record = None
            except ItnioReceiverUnreachableError as err:  # the API server restarting: ask again later
                self.log.warning("Cannot ask the receiver yet, asking again in %s s: %s", self.poll_interval, err)
            except (ItnioReceiverNotFoundError, ItnioConfigError, ValueError) as err:
                yield self._event("error", None, str(err))
                return
            if record is not None:
                status = str(record.get("status"))
                if status != self.last_status:
                    self.log.info("Message %s is %s", self.message_id, status)
                    self.last_status = status
                if is_final(status):
                    failure = record.get("failure")
                    await self._settle(started)
                    yield self._event("final", record, f"{status}: {failure or 'the vendor gave no reason'}")
                    return
                if status_reached(status, self.target_status):
                    await self._settle(started)
                    yield self._event("reached", record)
                    return
            self.polls += 1  # asked, and not done
            remaining = None if self.deadline is None else self.deadline - time.time()
            if remaining is not None and remaining <= 0:
                yield self._event(
                    "timeout",
                    record,
                    f"message {self.message_id} is {self.last_status or 'without any status'}, "
                    f"not {self.target_status}, at the deadline",
                )
                return
            pause = max(self.poll_interval, MIN_POLL_INTERVAL)
            await asyncio.sleep(pause if remaining is None else min(pause, remaining))
