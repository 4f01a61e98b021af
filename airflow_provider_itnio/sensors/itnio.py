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
worker (``execute_complete``), which fails it without retry, times it out or skips it, as Airflow users expect.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio.webhook import require_airflow_3_1

require_airflow_3_1("ItnioMessageStatusSensor")

from airflow.providers.common.compat.sdk import (  # noqa: E402
    AirflowFailException,
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
)

from airflow_provider_itnio.errors import ItnioConfigError  # noqa: E402
from airflow_provider_itnio.events import MessageStatus, is_final  # noqa: E402
from airflow_provider_itnio.templating import is_static  # noqa: E402
from airflow_provider_itnio.triggers.itnio import (  # noqa: E402
    DEFAULT_POLL_INTERVAL,
    ItnioMessageStatusTrigger,
    check_target_status,
    status_reached,
)
from airflow_provider_itnio.webhook.client import (  # noqa: E402
    ItnioReceiverClient,
    ItnioReceiverNotFoundError,
    ItnioReceiverUnreachableError,
    ItnioUnknownMessageError,
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
    (it is asked again). An API server that does not know the connection or its ``webhook_token`` fails the task
    without retries.

    :param message_id: The ``messageId`` the send returned, e.g. ``send_task.output`` (templated).
    :param target_status: ``sent``, ``delivered`` (default) or ``read`` (templated; checked when the DAG is
        parsed unless it is a template).
    :param itnio_conn_id: The ``itnio`` connection whose ``webhook_token`` authenticates the question; its
        optional ``receiver_url`` extra says where the API server is (templated).
    :param deferrable: Wait in the triggerer (default) instead of on a worker.
    :param poke_interval: Seconds between two questions (default 5).
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
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """
        Return the status record when the trigger saw the target reached; otherwise end the task.

        The sensor's own trigger ends a reached wait from the triggerer; ``reached`` arrives here only from a trigger
        deferred without ``end_from_trigger`` (e.g. by an earlier version of the provider).

        :param context: The task's context.
        :param event: The trigger's payload (see :class:`ItnioMessageStatusTrigger`).
        :raises AirflowFailException: The message ended ``failed`` / ``deleted``, or the receiver cannot be asked.
        :raises AirflowSensorTimeout: The timeout passed first.
        """
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
        raise AirflowFailException(f"Cannot wait for message {message_id}: {event.get('error', event)}")

    # -- poke / reschedule -------------------------------------------------------------------------------

    def poke(self, context: Context) -> bool | PokeReturnValue:
        message_id, target = self._checked()
        client = ItnioReceiverClient(self.itnio_conn_id)
        try:
            record = client.message_status(message_id)
        except ItnioUnknownMessageError:
            self.log.info("No status recorded for message %s yet", message_id)
            return False
        except ItnioReceiverUnreachableError as err:
            self.log.warning("Cannot ask the receiver now, asking again later: %s", err)
            return False
        except (ItnioReceiverNotFoundError, ItnioConfigError, ValueError) as err:
            raise AirflowFailException(f"Cannot wait for message {message_id}: {err}") from None
        status = str(record.get("status"))
        if is_final(status):
            raise AirflowFailException(self._final_message(message_id, record))
        if status_reached(status, target):
            self.log.info("Message %s is %s (waited for %s)", message_id, status, target)
            return PokeReturnValue(is_done=True, xcom_value=record)
        self.log.info("Message %s is %s, not %s yet", message_id, status, target)
        return False

    @staticmethod
    def _final_message(message_id: str, record: dict[str, Any]) -> str:
        status = record.get("status", "failed")
        failure = record.get("failure") or "the vendor gave no reason"
        return f"Message {message_id} ended {status!r} (the vendor's reason: {failure})"
