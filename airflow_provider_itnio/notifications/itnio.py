"""
``ItnioNotifier``: send a WhatsApp message from an Airflow callback.

Usable wherever Airflow takes a notifier: a task's ``on_failure_callback`` / ``on_success_callback`` /
``on_retry_callback`` (also through ``default_args``), a DAG's ``on_failure_callback`` /
``on_success_callback``, a Deadline Alert on Airflow 3 (``AsyncCallback(ItnioNotifier, kwargs={...})`` or
``SyncCallback(...)``) and ``sla_miss_callback`` on Airflow 2.

.. code-block:: python

    from airflow_provider_itnio.notifications.itnio import send_itnio_notification

    on_call = send_itnio_notification(
        recipients=["+1 555 010 0300", "+1 555 010 0301"],
        template_name="task_failed",
        language="en_US",
        body_parameters=["{{ dag.dag_id }}", "{{ ti.task_id }}", "{{ exception }}"],
    )
    ItnioSendTextOperator(..., on_failure_callback=on_call)

A notifier never raises out of the callback, called or awaited: an error (a template that cannot be rendered,
API, transport, validation, connection) is logged and the task's or run's own outcome stays what it was; with
several recipients, one failure does not stop the others. The HTTP work is
:class:`~airflow_provider_itnio.hooks.itnio.ItnioHook`'s.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio import messages as m
from airflow_provider_itnio._text import ASCII_ELLIPSIS, cut
from airflow_provider_itnio.errors import ItnioConfigError, ItnioError
from airflow_provider_itnio.notifications._base import ItnioBaseNotifier
from airflow_provider_itnio.templating import is_static

if TYPE_CHECKING:
    import jinja2
    from airflow.providers.common.compat.sdk import Context

__all__ = ["ItnioNotifier", "send_itnio_notification"]

_WHITESPACE = re.compile(r"\s+")


class ItnioNotifier(ItnioBaseNotifier):
    """
    Send a WhatsApp message (a session text or an approved template) to one or more recipients.

    Give either ``text`` (a session message: only delivered to users who wrote to the business in the last
    24 hours) or ``template_name`` with ``language`` and ``body_parameters`` (a template message: delivered at
    any time, which is what most on-call alerts need).

    Template parameters are rendered with the callback's context (``{{ dag.dag_id }}``, ``{{ ti.task_id }}``,
    ``{{ exception }}``, ``{{ params.x }}``, for a Deadline Alert ``{{ dag_run.dag_id }}`` ...). Each rendered
    body parameter is put on one line (WhatsApp refuses newlines, tabs and long runs of spaces in template
    parameters), cut to ``max_parameter_length`` characters, and an empty one is sent as ``-``.

    :param recipients: The recipient's phone number, or a list of them; a string may hold several numbers
        separated by commas, e.g. ``"{{ var.value.on_call_phones }}"`` (templated).
    :param text: The text of a session message, at most 4096 characters (templated).
    :param template_name: The name of an approved template (templated).
    :param language: The template's language code, e.g. ``en_US``; required with ``template_name`` (templated).
    :param body_parameters: The texts of the template body's variables ``{{1}}``, ``{{2}}``..., in order
        (templated, each item rendered).
    :param business_phone: The sender number; defaults to the connection's ``business_phone`` extra (templated).
    :param itnio_conn_id: The Airflow connection of type ``itnio`` (templated).
    :param max_parameter_length: The longest a rendered body parameter may be; longer ones are cut with ``...``.
    :param context: Set by Airflow when it builds the notifier for a Deadline Alert; not for DAG authors.
    """

    template_fields: Sequence[str] = (
        "recipients",
        "text",
        "template_name",
        "language",
        "body_parameters",
        "business_phone",
        "itnio_conn_id",
    )

    def __init__(
        self,
        *,
        recipients: str | int | Sequence[str | int],
        text: str | None = None,
        template_name: str | None = None,
        language: str | None = None,
        body_parameters: Sequence[Any] | None = None,
        business_phone: str | int | None = None,
        itnio_conn_id: str = "itnio_default",
        max_parameter_length: int = 200,
        context: Context | None = None,
    ) -> None:
        super().__init__(context=context)
        if (text is None) == (template_name is None):
            raise ValueError("ItnioNotifier needs exactly one of text= (a session message) or template_name=.")
        if template_name is not None and not language:
            raise ValueError("ItnioNotifier: template_name= needs language=, e.g. language='en_US'.")
        if text is not None and body_parameters:
            raise ValueError("ItnioNotifier: body_parameters= only goes with template_name=.")
        if max_parameter_length < 4:
            raise ValueError("ItnioNotifier: max_parameter_length must be at least 4.")
        self.recipients = recipients
        self.text = text
        self.template_name = template_name
        self.language = language
        self.body_parameters = list(body_parameters or [])
        self.business_phone = business_phone
        self.itnio_conn_id = itnio_conn_id
        self.max_parameter_length = max_parameter_length
        #: ``{recipient digits: messageId}`` of the last notification sent; failed recipients are left out.
        self.sent: dict[str, str] = {}
        #: ``{recipient: error text}`` of the last notification's failures.
        self.failed: dict[str, str] = {}
        self.keep_templates()
        self._validate_early()

    # -- building -----------------------------------------------------------------------------------------

    def _validate_early(self) -> None:
        """Check, when the DAG file is parsed, every value that holds no Jinja template."""
        if is_static(self.recipients):
            self._recipient_list()
        fields = ("text",) if self.text is not None else ("template_name", "language", "body_parameters")
        if all(is_static(getattr(self, name)) for name in fields):
            self.build_message()

    def _parameter(self, value: Any) -> str:
        text = _WHITESPACE.sub(" ", "" if value is None else str(value)).strip() or "-"
        return cut(text, self.max_parameter_length, ellipsis=ASCII_ELLIPSIS)

    def build_message(self) -> m.Message:
        """Build the message model from the (rendered) arguments (raises ItnioValidationError)."""
        if self.template_name is None:
            return m.Text(body=str(self.text))
        parameters = [self._parameter(value) for value in self.body_parameters]
        return m.Template.with_body_parameters(str(self.template_name), str(self.language), parameters)

    # -- Airflow's notifier interface ---------------------------------------------------------------------

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """
        Render the template fields with ``context``, starting again from the unrendered templates.

        :param context: The callback's context.
        :param jinja_env: The Jinja environment to render with (the DAG's by default).
        """
        dag = context.get("dag")
        if jinja_env is None and dag is not None and not hasattr(dag, "get_template_env"):
            # dag.test() gives DAG-level callbacks the scheduler's SerializedDAG, which has no Jinja environment
            jinja_env = self.get_template_env(dag=None)
        super().render_template_fields(context, jinja_env)

    def notify(self, context: Context) -> None:
        """
        Send the message to every recipient; log, never raise, what goes wrong.

        :param context: The callback's context (the template fields are already rendered with it).
        """
        from airflow_provider_itnio.hooks.itnio import ItnioHook

        self.sent, self.failed = {}, {}
        try:
            recipients = self._recipient_list()
            message = self.build_message()
        except (ItnioError, ValueError) as err:
            self.log.error("itniotech notification not sent: %s", err)
            self.failed = {str(self.recipients): str(err)}
            return
        hook = ItnioHook(itnio_conn_id=self.itnio_conn_id)
        try:
            for recipient in recipients:
                try:
                    result = hook.send(recipient, message, business_phone=self.business_phone or None)
                except ItnioConfigError as err:  # the same for every recipient: nothing can be sent
                    self.log.error("itniotech notification not sent: %s", err)
                    self.failed.update({r: str(err) for r in recipients if r not in self.sent})
                    break
                except ItnioError as err:
                    self.log.error("itniotech notification to %s not sent: %s", recipient, err)
                    self.failed[recipient] = str(err)
                except Exception as err:  # a callback must never mask the task's own outcome
                    self.log.exception("itniotech notification to %s not sent: %s", recipient, err)
                    self.failed[recipient] = f"{type(err).__name__}: {err}"
                else:
                    self.sent[recipient] = result.message_id
                    self.log.info(
                        "itniotech notification (%s) sent to %s: messageId %s",
                        type(message).__name__,
                        recipient,
                        result.message_id,
                    )
        finally:
            hook.close()

    def __await__(self) -> Generator[Any, None, None]:
        """
        Render the template fields with ``self.context`` and send, as a Deadline Alert awaits it; never raise.

        Airflow's own ``__await__`` renders the templates outside any guard, so a template that cannot be
        rendered would raise into the triggerer; here it is logged like every other error.
        """
        return self._render_and_notify_async().__await__()

    async def _render_and_notify_async(self) -> None:
        """Render the template fields with ``self.context`` and run :meth:`async_notify`; log, never raise, errors."""
        context: Any = getattr(self, "context", None) or {}  # Airflow 2's notifier has no context attribute
        try:
            self._update_context(context)
            self.render_template_fields(context)
        except Exception as err:  # e.g. a template that cannot be rendered
            self.log.exception("itniotech notification not sent: %s", err)
            return
        await self.async_notify(context)

    async def async_notify(self, context: Context) -> None:
        """
        Send the notification in a worker thread (the triggerer runs Deadline Alerts' ``AsyncCallback``); never raise.

        :param context: The callback's context (the template fields are already rendered with it).
        """
        try:
            await asyncio.to_thread(self.notify, context)
        except Exception as err:  # notify() logs its own errors; this is the last guard of the async path
            self.log.exception("itniotech notification not sent: %s", err)


send_itnio_notification = ItnioNotifier
