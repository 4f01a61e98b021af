"""
Wait until a sent WhatsApp message is sent, delivered or read, without holding a worker (Airflow 3.1+).

.. code-block:: python

    send = ItnioSendTextOperator(task_id="send_invoice", recipient="{{ params.phone }}", body="Your invoice ...")
    read = ItnioMessageStatusSensor(task_id="invoice_read", message_id=send.output, target_status="read")

The vendor pushes every status change of a message to the provider's webhook receiver on the API server, which
records it in the metadata database. The sensor asks the receiver's authenticated read endpoints
(``Authorization: Bearer <webhook_token>``) what it recorded: from the triggerer when deferrable (the default),
where one shared poller per connection asks ``POST /itnio/api/{conn_id}/statuses`` about all the waiting sensors
at once, and from the worker in ``poke`` / ``reschedule`` mode (``GET /itnio/api/{conn_id}/messages/{id}/status``).
Neither touches the database (Airflow 3 forbids it outside the API server and the scheduler).

Deferred, the sensor takes a worker slot once, to defer. When the message reaches the target, the trigger ends the
task from the triggerer (Airflow's ``TaskSuccessEvent``, the status record as XCom ``return_value``): no second
start on a worker. A ``failed`` / ``deleted`` message, the timeout and an unusable connection resume the task on a
worker (``execute_complete``), which fails it without retry, times it out or skips it, as Airflow users expect. A
receiver unreachable for longer than ``receiver_unreachable_timeout`` fails it too, retryably. ``dag.test()``, which
runs the trigger in line and resumes the task even after a ``TaskSuccessEvent``, gets the record read once more.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio.errors import ItnioConfigError
from airflow_provider_itnio.events import MessageStatus, is_final
from airflow_provider_itnio.templating import is_static
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("ItnioMessageStatusSensor")

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
)

from airflow_provider_itnio.hooks.receiver import (
    ItnioReceiverClient,
    ItnioReceiverConfigError,
    ItnioReceiverUnreachableError,
    ItnioUnknownMessageError,
)
from airflow_provider_itnio.triggers.itnio import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_UNREACHABLE_TIMEOUT,
    ItnioMessageStatusTrigger,
    check_target_status,
    check_unreachable_timeout,
    status_reached,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.sdk import XComArg

__all__ = ["ItnioMessageStatusSensor"]


class ItnioMessageStatusSensor(BaseSensorOperator):
    """
    Wait until a message reaches ``target_status`` or a later one (``read`` satisfies ``delivered``).

    On success the receiver's status record is the task's return value (XCom ``return_value``): ``message_id``,
    ``status`` (the furthest one), ``final``, ``failure``, ``recipient``, ``business_phone``,
    ``conversation_id``, ``timestamp``, ``updated_at`` and ``history``. When the vendor reports the message
    ``failed`` or ``deleted`` the task fails without retries (``AirflowFailException``) with the vendor's
    failure reason: waiting longer, or again, cannot change a final status.

    Deferrable by default: the task hands the wait to the triggerer at once (no worker slot is held while
    waiting). When :class:`~airflow_provider_itnio.triggers.itnio.ItnioMessageStatusTrigger` sees the target
    reached it ends the task successfully itself (the record as XCom, unless ``do_xcom_push=False``), without
    starting it on a worker again; every other outcome resumes it on a worker in :meth:`execute_complete`.
    The usual sensor arguments keep their meaning: ``timeout`` (seconds; then ``AirflowSensorTimeout``, or
    skipped with ``soft_fail=True``, which also skips instead of failing on ``failed`` / ``deleted``, as for
    any Airflow sensor), ``poke_interval`` (seconds between two questions to the receiver, in the triggerer too)
    and, with ``deferrable=False``, ``mode="poke"`` or ``mode="reschedule"``. ``deferrable=True`` takes
    precedence over ``mode``.

    A message with no status recorded yet is "not yet"; so is an API server that cannot be reached for a while
    (a connection error, 5xx or 429: it is asked again), but for ``receiver_unreachable_timeout`` seconds at most
    (default 10 minutes, enough for an API server to restart): then the task fails with
    :class:`~airflow_provider_itnio.hooks.receiver.ItnioReceiverUnreachableError`, naming the URL, and its retries
    apply. In ``reschedule`` mode, where nothing is kept between pokes, the bound counts from the sensor's first
    poke. An answer that is not the receiver's (a redirect, 401 / 403 from an auth proxy, 405 or an HTML page: a
    wrong ``receiver_url``) and an API server that does not know the connection or its ``webhook_token`` fail the
    task at once, without retries, naming the URL asked and what came back.

    :param message_id: The ``messageId`` the send returned, e.g. ``send_task.output`` (templated).
    :param target_status: ``sent``, ``delivered`` (default) or ``read`` (templated; checked when the DAG is
        parsed unless it is a template).
    :param itnio_conn_id: The ``itnio`` connection whose ``webhook_token`` authenticates the question; its
        optional ``receiver_url`` extra says where the API server is (templated).
    :param deferrable: Wait in the triggerer (default) instead of on a worker.
    :param poke_interval: Seconds between two questions (default 5).
    :param receiver_unreachable_timeout: Seconds (or a ``timedelta``) the receiver may stay unreachable before the
        task fails (default 600); ``None``: until the sensor's ``timeout``.
    """

    template_fields: Sequence[str] = ("message_id", "target_status", "itnio_conn_id")
    ui_color = "#25D366"

    def __init__(
        self,
        *,
        message_id: str | XComArg,
        target_status: str = MessageStatus.DELIVERED.value,
        itnio_conn_id: str = "itnio_default",
        deferrable: bool = True,
        poke_interval: timedelta | float = DEFAULT_POLL_INTERVAL,
        receiver_unreachable_timeout: timedelta | float | None = DEFAULT_UNREACHABLE_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        if is_static(target_status):
            target_status = check_target_status(target_status)
        if isinstance(message_id, str) and is_static(message_id) and not message_id.strip():
            raise ValueError("message_id must be a non-empty string (the messageId a send returned)")
        self.message_id = message_id
        self.target_status = target_status
        self.itnio_conn_id = itnio_conn_id
        self.deferrable = deferrable
        self.receiver_unreachable_timeout = check_unreachable_timeout(receiver_unreachable_timeout)
        #: Monotonic time of the first poke in a row that could not reach the receiver (poke mode).
        self._unreachable_since: float | None = None

    # -- the rendered arguments --------------------------------------------------------------------------

    def _checked(self) -> tuple[str, str]:
        """Return the rendered message id and target status, or fail the task without retries."""
        try:
            target = check_target_status(self.target_status)
        except ValueError as err:
            raise AirflowFailException(str(err)) from None
        message_id = self.message_id
        if not isinstance(message_id, str) or not message_id.strip():
            raise AirflowFailException(
                f"message_id must be a non-empty string (the messageId a send returned); got {message_id!r}"
            )
        return message_id.strip(), target

    # -- deferrable --------------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        message_id, target = self._checked()
        if not self.deferrable:
            return super().execute(context)
        self.log.info(
            "Deferring: the triggerer waits for message %s to be %s (timeout %s s)", message_id, target, self.timeout
        )
        self.defer(
            trigger=ItnioMessageStatusTrigger(
                message_id=message_id,
                target_status=target,
                itnio_conn_id=self.itnio_conn_id,
                poll_interval=self.poke_interval,
                deadline=time.time() + self.timeout,
                end_from_trigger=True,
                push_xcom=self.do_xcom_push,
                unreachable_timeout=self.receiver_unreachable_timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | str | None) -> dict[str, Any]:
        """
        Return the status record when the trigger saw the target reached; otherwise end the task.

        The sensor's own trigger ends a reached wait from the triggerer; ``reached`` arrives here only from a trigger
        deferred without ``end_from_trigger`` (e.g. by an earlier version of the provider). ``dag.test()`` (and
        ``airflow dags test``) runs the trigger in line and resumes the task even with the ``TaskSuccessEvent`` that
        ends a reached wait, passing the event's payload (the state's name, ``"success"``) and dropping its XCom:
        the record is then read again from the receiver (a status never goes back) and returned.

        :param context: The task's context.
        :param event: The trigger's payload (see :class:`ItnioMessageStatusTrigger`), or the state's name when a
            ``TaskSuccessEvent`` resumed the task.
        :raises AirflowFailException: The message ended ``failed`` / ``deleted``, or the receiver cannot be asked.
        :raises AirflowSensorTimeout: The timeout passed first.
        """
        if not isinstance(event, dict):
            return self._ended_by_trigger(event)
        outcome = event.get("outcome")
        message_id = event.get("message_id", self.message_id)
        if outcome == "reached":
            record: dict[str, Any] = event["record"]
            self.log.info(
                "Message %s is %s (waited for %s)", message_id, record.get("status"), event.get("target_status")
            )
            return record
        if outcome == "final":
            raise AirflowFailException(self._final_message(message_id, event.get("record") or {}))
        if outcome == "timeout":
            raise AirflowSensorTimeout(f"Sensor has timed out: {event.get('error')}")
        if outcome == "unreachable":  # retryable: the task's retries apply
            raise ItnioReceiverUnreachableError(f"Cannot wait for message {message_id}: {event.get('error')}")
        raise AirflowFailException(f"Cannot wait for message {message_id}: {event.get('error', event)}")

    def _ended_by_trigger(self, event: str | None) -> dict[str, Any]:
        """
        Return the status record for a task resumed by a ``TaskSuccessEvent`` (``dag.test()`` runs triggers in line).

        :param event: What the runner passed: the ended state's name.
        :raises AirflowFailException: For anything but ``"success"`` (the trigger ends a task with nothing else), or
            when the receiver no longer knows the message or cannot be asked (see :meth:`poke`).
        """
        message_id, target = self._checked()
        if str(event) != "success":
            raise AirflowFailException(f"Cannot wait for message {message_id}: unexpected trigger event {event!r}")
        try:
            record = ItnioReceiverClient(self.itnio_conn_id).message_status(message_id)
        except ItnioReceiverUnreachableError as err:
            raise ItnioReceiverUnreachableError(
                f"Message {message_id} reached {target!r}, but its status record cannot be read now: {err}"
            ) from None
        except (ItnioUnknownMessageError, ItnioReceiverConfigError, ItnioConfigError, ValueError) as err:
            raise AirflowFailException(
                f"Message {message_id} reached {target!r}, but its status record cannot be read: {err}"
            ) from None
        self.log.info(
            "Message %s is %s (waited for %s; the trigger ran in line, as under dag.test(): record read again)",
            message_id,
            record.get("status"),
            target,
        )
        return record

    # -- poke / reschedule -------------------------------------------------------------------------------

    def poke(self, context: Context) -> bool | PokeReturnValue:
        message_id, target = self._checked()
        client = ItnioReceiverClient(self.itnio_conn_id)
        try:
            record = client.message_status(message_id)
        except ItnioUnknownMessageError:
            self._unreachable_since = None
            self.log.info("No status recorded for message %s yet", message_id)
            return False
        except ItnioReceiverUnreachableError as err:
            return self._unreachable(context, message_id, err)
        except (ItnioReceiverConfigError, ItnioConfigError, ValueError) as err:
            raise AirflowFailException(f"Cannot wait for message {message_id}: {err}") from None
        self._unreachable_since = None
        status = str(record.get("status"))
        if is_final(status):
            raise AirflowFailException(self._final_message(message_id, record))
        if status_reached(status, target):
            self.log.info("Message %s is %s (waited for %s)", message_id, status, target)
            return PokeReturnValue(is_done=True, xcom_value=record)
        self.log.info("Message %s is %s, not %s yet", message_id, status, target)
        return False

    def _unreachable(self, context: Context, message_id: str, error: ItnioReceiverUnreachableError) -> bool:
        """
        Return ``False`` ("not yet") while the receiver has been unreachable for less than the bound; else raise.

        :param context: The task's context (in ``reschedule`` mode the bound counts from the first poke).
        :param message_id: The message waited on.
        :param error: Why the receiver could not be asked.
        :raises ItnioReceiverUnreachableError: The bound has passed (retryable).
        """
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now - self._waited_before(context)
        waited = now - self._unreachable_since
        bound = self.receiver_unreachable_timeout
        if bound is not None and waited >= bound:
            raise ItnioReceiverUnreachableError(
                f"Cannot wait for message {message_id}: the itnio receiver could not be asked for {waited:.0f} s "
                f"(receiver_unreachable_timeout {bound:g} s): {error}"
            ) from None
        self.log.warning("Cannot ask the receiver now, asking again for up to %s s: %s", bound, error)
        return False

    def _waited_before(self, context: Context) -> float:
        """Return the seconds since the first poke of a ``reschedule``-mode sensor (nothing else survives there)."""
        if not self.reschedule:
            return 0.0
        try:
            from airflow.sdk import timezone

            first = context["ti"].get_first_reschedule_date(context)
        except Exception:  # no task instance (a sensor called directly): count from now
            return 0.0
        return max((timezone.utcnow() - first).total_seconds(), 0.0) if first is not None else 0.0

    @staticmethod
    def _final_message(message_id: str, record: dict[str, Any]) -> str:
        status = record.get("status", "failed")
        failure = record.get("failure") or "the vendor gave no reason"
        return f"Message {message_id} ended {status!r} (the vendor's reason: {failure})"
