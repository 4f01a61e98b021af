"""
Wait in the triggerer until a sent message reaches a delivery status (Airflow 3.1+).

Airflow 3 does not let trigger code touch the metadata database, where the webhook receiver records the vendor's
status pushes. The triggers ask the receiver's authenticated read endpoint on the API server instead, the way
Airflow's own Human-in-the-loop trigger reaches its data through the API server. They do not ask one by one: every
:class:`ItnioMessageStatusTrigger` of a triggerer process registers its message with the one
:class:`ItnioStatusPoller` of its connection (one per connection and event loop), which asks
``POST /itnio/api/{conn_id}/statuses`` about all of them once per interval (through
:class:`~airflow_provider_itnio.hooks.receiver.ItnioReceiverClient`, up to ``MAX_STATUS_IDS`` ids per request) and
hands each trigger its message's answer. A thousand waiting sensors cost the API server one request per interval,
not a thousand. The request is a long poll: the API server answers as soon as a status push for one of the
messages is recorded, so a push is seen within a fraction of a second, not up to an interval later.

The connection (its ``webhook_token``) is read in the triggerer; the trigger's serialized arguments hold nothing
secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import weakref
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, ClassVar

from airflow_provider_itnio.errors import ItnioConfigError
from airflow_provider_itnio.events import MessageStatus, advances, is_final, parse_status
from airflow_provider_itnio.receiver_protocol import MAX_STATUS_IDS
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("ItnioMessageStatusTrigger")

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_itnio.hooks.receiver import (
    ItnioReceiverClient,
    ItnioReceiverConfigError,
    ItnioReceiverUnreachableError,
)

__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_UNREACHABLE_TIMEOUT",
    "OUTCOMES",
    "TARGET_STATUSES",
    "ItnioMessageStatusTrigger",
    "ItnioStatusPoller",
    "check_target_status",
    "check_unreachable_timeout",
    "status_reached",
]

log = logging.getLogger(__name__)

#: The statuses a wait can target, in the order a message reaches them.
TARGET_STATUSES: tuple[str, ...] = (MessageStatus.SENT.value, MessageStatus.DELIVERED.value, MessageStatus.READ.value)
#: Seconds between two questions to the receiver, by default.
DEFAULT_POLL_INTERVAL = 5.0
#: The shortest pause between two questions (a ``poll_interval`` of 0 would otherwise flood the API server).
MIN_POLL_INTERVAL = 0.1
#: The least time between the trigger's start and an event it fires (see ``ItnioMessageStatusTrigger.settle_seconds``).
SETTLE_SECONDS = 10.0
#: Seconds the receiver may stay unreachable (connection errors, 5xx, 429) before a wait fails, by default: long
#: enough for an API server to restart or be upgraded, short enough that a wrong address is not waited on for days.
DEFAULT_UNREACHABLE_TIMEOUT = 600.0
#: The ``outcome`` of the trigger's event: target reached, message failed/deleted, deadline passed, cannot ask (a
#: configuration error), the receiver unreachable for longer than the trigger's ``unreachable_timeout``.
OUTCOMES: tuple[str, ...] = ("reached", "final", "timeout", "error", "unreachable")


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


def check_unreachable_timeout(value: object) -> float | None:
    """
    Return ``value`` as seconds (``None`` stays ``None``: no bound but the wait's deadline).

    :param value: Seconds, or a ``timedelta``.
    :raises ValueError: For a negative number or anything else.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"receiver_unreachable_timeout must be a non-negative number of seconds; got {value!r}")
    return float(value)


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


#: What a poller hands a trigger after a round: the status record, ``None`` (no status recorded yet), or why it
#: could not ask (:class:`ItnioReceiverUnreachableError`: ask again; anything else: the wait cannot go on).
Answer = dict[str, Any] | None | Exception


class _Watch:
    """
    One trigger's registration with a poller: its message, its interval and the latest answer, flagged when new.

    :param message_id: The message waited on.
    :param interval: The trigger's poll interval (the poller asks at the smallest one registered).
    """

    def __init__(self, message_id: str, interval: float) -> None:
        self.message_id = message_id
        self.interval = interval
        self._answer: Answer = None
        self._new = asyncio.Event()

    def deliver(self, answer: Answer) -> None:
        """
        Keep ``answer`` as the latest and wake the trigger waiting on it.

        :param answer: The record, ``None`` or the error of this round.
        """
        self._answer = answer
        self._new.set()

    async def next_answer(self) -> Answer:
        """Return the next answer the poller delivers (the latest, when several arrived since the last call)."""
        await self._new.wait()
        self._new.clear()
        return self._answer


class ItnioStatusPoller:
    """
    Ask the receiver about every message the triggers of one connection wait on, in one request per round.

    One poller per event loop and connection (Airflow 3 runs all the triggers of a triggerer process in one event
    loop). A trigger registers its message with :meth:`watch` for as long as it waits; while any is registered,
    the poller asks ``POST /itnio/api/{conn_id}/statuses`` about all of them (``MAX_STATUS_IDS`` per request)
    and hands each trigger its message's answer, once per interval (the smallest registered). Each request is a
    long poll: the API server holds it for up to the interval and answers as soon as a status push for one of the
    messages is recorded, so a push is seen within a fraction of a second while a quiet wait costs one request per
    interval. The first trigger starts the poller; it stops after the round that finds none registered. Its task
    runs in an empty context, so that its log lines go to the triggerer's log, not to the log of the task whose
    trigger happened to start it.

    :param itnio_conn_id: The connection whose ``webhook_token`` authenticates the questions.
    """

    _pollers: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, ItnioStatusPoller]]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, itnio_conn_id: str) -> None:
        self.itnio_conn_id = itnio_conn_id
        self._watches: dict[str, list[_Watch]] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: ItnioReceiverClient | None = None
        self._cursor: int | None = None  # the last answer's: the next request waits for what changes after it
        self._asked: set[str] = set()  # the messages of the last round
        #: Rounds asked so far (each one request per ``MAX_STATUS_IDS`` messages): for logs and tests.
        self.rounds = 0

    def __repr__(self) -> str:
        return f"ItnioStatusPoller(itnio_conn_id={self.itnio_conn_id!r}, messages={len(self._watches)})"

    @classmethod
    def of(cls, itnio_conn_id: str) -> ItnioStatusPoller:
        """
        Return the running event loop's poller of a connection (created on first use).

        :param itnio_conn_id: The connection.
        """
        pollers = cls._pollers.setdefault(asyncio.get_running_loop(), {})
        poller = pollers.get(itnio_conn_id)
        if poller is None:
            poller = pollers[itnio_conn_id] = cls(itnio_conn_id)
        return poller

    @property
    def message_ids(self) -> list[str]:
        """The messages asked about in the next round."""
        return list(self._watches)

    @contextlib.asynccontextmanager
    async def watch(self, message_id: str, interval: float) -> AsyncIterator[_Watch]:
        """
        Register a message for the block's duration; yield the registration to await answers from.

        Leaving the block (the trigger fired, was cancelled or failed) unregisters it.

        :param message_id: The message.
        :param interval: Seconds between two questions the trigger wants (at least :data:`MIN_POLL_INTERVAL`).
        """
        registration = _Watch(message_id, max(interval, MIN_POLL_INTERVAL))
        self._watches.setdefault(message_id, []).append(registration)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"itnio status poller {self.itnio_conn_id}", context=contextvars.Context()
            )
        try:
            yield registration
        finally:
            watches = self._watches.get(message_id, [])
            if registration in watches:
                watches.remove(registration)
            if not watches:
                self._watches.pop(message_id, None)

    async def _ask(self, message_ids: list[str], since: int | None, wait: float) -> tuple[dict[str, Answer], bool]:
        """
        Return each message's answer (record or ``None``) and whether one changed after ``since``.

        :param message_ids: The messages registered.
        :param since: The last answer's cursor, or ``None`` to be answered at once.
        :param wait: Seconds the API server may hold the request until one of them changes.
        """
        if self._client is None:
            self._client = ItnioReceiverClient(self.itnio_conn_id)
        # A token rotated since the connection was read: the client reads it again and asks once more itself.
        answer = await self._client.astatuses(message_ids, since=since, wait=wait)
        self._cursor = answer.cursor
        return {message_id: answer.statuses.get(message_id) for message_id in message_ids}, answer.changed

    async def _run(self) -> None:
        """Ask, deliver, pause, while any trigger is registered."""
        while self._watches:
            message_ids = list(self._watches)
            interval = min(w.interval for watches in self._watches.values() for w in watches)
            started = time.monotonic()
            # A message not asked about last round may have had its status for long: ask without waiting (and
            # pace the rounds by the interval, so that triggers arriving one by one cost one request per interval).
            newcomers = not self._asked.issuperset(message_ids)
            self._asked = set(message_ids)
            answers: dict[str, Answer]
            changed = False
            try:
                if newcomers:
                    answers, _ = await self._ask(message_ids, None, 0.0)
                else:
                    answers, changed = await self._ask(message_ids, self._cursor, interval)
            except ItnioReceiverUnreachableError as err:
                answers = dict.fromkeys(message_ids, err)
            except (ItnioReceiverConfigError, ItnioConfigError, ValueError) as err:
                self._client = None  # read the connection again for the waits to come
                answers = dict.fromkeys(message_ids, err)
            except Exception as err:  # a bug must end the waits visibly, not stop the poller silently
                log.exception("itnio status poller %s: cannot ask the receiver", self.itnio_conn_id)
                self._client = None
                answers = dict.fromkeys(message_ids, err)
            self.rounds += 1
            for message_id, answer in answers.items():
                for registration in self._watches.get(message_id, ()):
                    registration.deliver(answer)
            # The API server held the request until a change or the interval's end: ask again at once after a
            # change (more may follow), else when the interval is over (an error answered early: wait it out).
            # More messages than one request takes are asked without a long poll: a change there is no reason to
            # ask again at once (with statuses streaming in, that would be a round every MIN_POLL_INTERVAL).
            long_poll = len(message_ids) <= MAX_STATUS_IDS
            pause = MIN_POLL_INTERVAL if changed and long_poll else interval - (time.monotonic() - started)
            if self._watches and pause > 0:
                await asyncio.sleep(pause)


class ItnioMessageStatusTrigger(BaseTrigger):
    """
    Fire when a message reaches ``target_status`` or a later one, or ends ``failed`` / ``deleted``.

    Registers the message with its connection's :class:`ItnioStatusPoller`, which asks the receiver on the API
    server about all the waits of the triggerer every ``poll_interval`` seconds (the smallest of theirs); a message
    with no status recorded yet, and an API server that cannot be reached for a moment (a connection error, 5xx,
    429), mean "not yet"; an API server unreachable for longer than ``unreachable_timeout`` ends the wait
    (``outcome`` ``unreachable``), and an answer that is not the receiver's (a redirect, 401, 403, 405, an HTML
    page: a wrong ``receiver_url``) ends it at once (``outcome`` ``error``). The trigger logs what it sees (in the
    task's log).

    With ``end_from_trigger=True`` (what :class:`~airflow_provider_itnio.sensors.itnio.ItnioMessageStatusSensor`
    asks for) a reached target ends the task from the triggerer: the trigger yields Airflow's ``TaskSuccessEvent``
    with the status record as the XCom ``return_value``, and the task never starts again on a worker. Every other
    outcome, and every outcome without ``end_from_trigger``, is a ``TriggerEvent`` whose payload is a dict with
    ``outcome`` (one of :data:`OUTCOMES`), ``message_id``, ``target_status``, ``status`` (the furthest status, or
    ``None``), ``record`` (the receiver's answer, or ``None``) and, unless the target was reached, ``error``: the
    task resumes on a worker to fail without retry, time out or skip, as Airflow's sensors do.

    :param message_id: The id the send call returned.
    :param target_status: ``sent``, ``delivered`` or ``read``.
    :param itnio_conn_id: The ``itnio`` connection whose ``webhook_token`` authenticates the question.
    :param poll_interval: Seconds between two questions (at least :data:`MIN_POLL_INTERVAL`).
    :param deadline: Unix time after which the trigger gives up (``outcome`` ``timeout``); ``None``: never.
    :param end_from_trigger: End the task from the triggerer when the target is reached (``TaskSuccessEvent``).
    :param push_xcom: With ``end_from_trigger``, push the status record as the XCom ``return_value``.
    :param unreachable_timeout: Seconds the receiver may stay unreachable before the wait ends with ``outcome``
        ``unreachable`` (default :data:`DEFAULT_UNREACHABLE_TIMEOUT`); ``None``: until the deadline.
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
        end_from_trigger: bool = False,
        push_xcom: bool = True,
        unreachable_timeout: float | None = DEFAULT_UNREACHABLE_TIMEOUT,
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
        self.end_from_trigger = bool(end_from_trigger)
        self.push_xcom = bool(push_xcom)
        self.unreachable_timeout = check_unreachable_timeout(unreachable_timeout)
        #: Answers received so far without firing, and the furthest status last answered (for logs and tests).
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
                "end_from_trigger": self.end_from_trigger,
                "push_xcom": self.push_xcom,
                "unreachable_timeout": self.unreachable_timeout,
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

    def _timeout(self, record: dict[str, Any] | None) -> TriggerEvent:
        error = (
            f"message {self.message_id} is {self.last_status or 'without any status'}, not {self.target_status}, "
            "at the deadline"
        )
        self.log.info("Giving up: %s", error)
        return self._event("timeout", record, error)

    def _unreachable(self, error: Exception, waited: float) -> TriggerEvent:
        message = (
            f"the itnio receiver could not be asked about message {self.message_id} for {waited:.0f} s "
            f"(the sensor's receiver_unreachable_timeout: {self.unreachable_timeout:g} s): {error}"
        )
        self.log.error("Giving up: %s", message)
        return self._event("unreachable", None, message)

    def _reached(self, record: dict[str, Any]) -> TriggerEvent:
        if not self.end_from_trigger:
            return self._event("reached", record)
        self.log.info(
            "Message %s is %s: the task ends successfully from the triggerer (no worker start)%s",
            self.message_id,
            record.get("status"),
            ", the status record is its XCom return_value" if self.push_xcom else "",
        )
        return TaskSuccessEvent(xcoms={"return_value": record} if self.push_xcom else None)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait for the poller's answers until the message reaches the target, ends, or the deadline passes."""
        started = time.monotonic()
        record: dict[str, Any] | None = None
        unreachable_since: float | None = None  # monotonic time of the first unanswered question in a row
        self.log.info(
            "Waiting for message %s to be %s (connection %s, asked every %s s with the triggerer's other waits)",
            self.message_id,
            self.target_status,
            self.itnio_conn_id,
            self.poll_interval,
        )
        async with ItnioStatusPoller.of(self.itnio_conn_id).watch(self.message_id, self.poll_interval) as watch:
            while True:
                remaining = None if self.deadline is None else self.deadline - time.time()
                if remaining is not None and remaining <= 0:
                    yield self._timeout(record)
                    return
                try:
                    answer = await asyncio.wait_for(watch.next_answer(), remaining)
                except TimeoutError:
                    yield self._timeout(record)
                    return
                if isinstance(answer, ItnioReceiverUnreachableError):  # the API server restarting: not yet
                    if unreachable_since is None:
                        unreachable_since = time.monotonic()
                        self.log.warning(
                            "Cannot ask the receiver now, asking again every %s s for up to %s s: %s",
                            watch.interval,
                            self.unreachable_timeout,
                            answer,
                        )
                    waited = time.monotonic() - unreachable_since
                    if self.unreachable_timeout is not None and waited >= self.unreachable_timeout:
                        yield self._unreachable(answer, waited)
                        return
                elif isinstance(answer, Exception):
                    yield self._event("error", None, str(answer))
                    return
                else:
                    if unreachable_since is not None:
                        self.log.info("The receiver answers again")
                    unreachable_since = None
                    if answer is not None:
                        record = answer
                        status = str(record.get("status"))
                        if status != self.last_status:
                            self.log.info("Message %s is %s", self.message_id, status)
                            self.last_status = status
                        if is_final(status):
                            failure = record.get("failure") or "the vendor gave no reason"
                            self.log.info(
                                "Message %s ended %r (the vendor's reason: %s): the task fails, without retry",
                                self.message_id,
                                status,
                                failure,
                            )
                            await self._settle(started)
                            yield self._event("final", record, f"{status}: {failure}")
                            return
                        if status_reached(status, self.target_status):
                            await self._settle(started)
                            yield self._reached(record)
                            return
                self.polls += 1  # answered, and not done
