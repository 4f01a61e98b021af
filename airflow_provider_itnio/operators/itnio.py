"""
Operators that send one WhatsApp message each through the itniotech API.

Every operator is thin: it turns its (rendered) arguments into a model from
:mod:`airflow_provider_itnio.messages`, hands it to :class:`~airflow_provider_itnio.hooks.itnio.ItnioHook`,
and returns the vendor's ``messageId`` (pushed to XCom as ``return_value``).

A value that breaks one of the API's rules and holds no Jinja template fails when the DAG file is parsed;
a templated one fails in ``execute()``, before any request is sent. The hook is imported only when a task
runs, so parsing a DAG file that uses these operators stays cheap.

The session-message operators (and the batch operator, :mod:`airflow_provider_itnio.operators.batch`) take
``fallback_template``: sent instead of the message when the
webhook receiver recorded no message from the recipient to the business number in the last 24 hours (see
:mod:`airflow_provider_itnio.window`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_itnio import messages as m
from airflow_provider_itnio.errors import ItnioError, ItnioValidationError
from airflow_provider_itnio.operators._airflow_errors import task_failure

# The batch operator lives in operators/batch.py; this module still gives it, for code that imported it from here.
from airflow_provider_itnio.operators.batch import ItnioBatchSendOperator as ItnioBatchSendOperator
from airflow_provider_itnio.templating import is_static
from airflow_provider_itnio.window import (
    SENT_KIND_KEY,
    SESSION,
    TEMPLATE,
    WindowUnknown,
    check_window_unknown,
    fallback_payload,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class ItnioBaseOperator(BaseOperator):
    """
    Base class of the itniotech operators: the shared arguments, early validation and ``execute()``.

    :param recipient: The recipient's phone number, digits with or without formatting (templated).
    :param business_phone: The sender number; defaults to the connection's ``business_phone`` extra (templated).
    :param itnio_conn_id: The Airflow connection of type ``itnio`` (templated).
    :param reply_to: A ``messageId`` to reply to in context, e.g. ``earlier_task.output`` (templated).
    :param retry_on_unknown_delivery: By default a failure where the message may already have been delivered
        (a read timeout, a connection dropped after sending) fails the task without Airflow retries, so that
        no one gets the message twice. Set True to let Airflow's retries send it again anyway.
    :param fallback_template: An approved template (a :class:`~airflow_provider_itnio.messages.Template` or the
        API's template dict) sent instead of the message when the webhook receiver recorded no message from the
        recipient to the business number in the last 24 hours (templated; checked at parse time when static).
        XCom key ``sent_kind`` then says what was sent: ``"session"`` or ``"template"``. Needs the receiver
        (Airflow 3.1+). None (default): the message is sent as it is, and the receiver is not asked.
    :param window_unknown: What to do when ``fallback_template`` is given and the receiver cannot be asked
        (unreachable, an error answer, no ``webhook_token``): ``"fail"`` (default) fails the task before
        sending; ``"template"`` sends the fallback template.
    :param strict_phone_numbers: Refuse a recipient or business phone that can exist but lies in no range its
        country has assigned (test numbers such as ``+1 555 0100 ...``), instead of sending it with a warning.
        None (default): the connection's ``strict_phone_numbers`` extra decides. True also checks a static
        number when the DAG file is parsed.
    """

    #: The model the operator builds, from its own arguments named in ``message_fields`` (also template fields).
    model: ClassVar[type[m.Message] | None] = None
    message_fields: ClassVar[tuple[str, ...]] = ()
    template_fields: Sequence[str] = (
        "recipient",
        "business_phone",
        "itnio_conn_id",
        "reply_to",
        "fallback_template",
    )
    ui_color = "#25D366"

    def __init__(
        self,
        *,
        recipient: str | int,
        business_phone: str | int | None = None,
        itnio_conn_id: str = "itnio_default",
        reply_to: str | None = None,
        retry_on_unknown_delivery: bool = False,
        fallback_template: m.Template | dict[str, Any] | str | None = None,
        window_unknown: WindowUnknown = "fail",
        strict_phone_numbers: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.recipient = recipient
        self.business_phone = business_phone
        self.itnio_conn_id = itnio_conn_id
        self.reply_to = reply_to
        self.retry_on_unknown_delivery = retry_on_unknown_delivery
        self.window_unknown = check_window_unknown(window_unknown)
        self.strict_phone_numbers = strict_phone_numbers
        # Kept in the API's dict form so that Airflow can render and serialise it.
        self.fallback_template = fallback_payload(fallback_template)

    def build_message(self) -> m.Message:
        """Return the message model built from the operator's (rendered) arguments."""
        if self.model is None:
            raise NotImplementedError(f"{type(self).__name__} must set `model` or override build_message()")
        return self.model(**{name: getattr(self, name) for name in self.message_fields})

    def _validate_early(self) -> None:
        """Build the message (and check the phones) now when every value is known at parse time."""
        if all(is_static(getattr(self, name)) for name in self.message_fields):
            self.build_message()
        for name, field in (("recipient", "recipient"), ("business_phone", "businessPhone")):
            value = getattr(self, name)
            if value not in (None, "") and is_static(value):
                m.normalize_phone(value, field, strict=self.strict_phone_numbers is True)

    def _choose(self, hook: Any, message: m.Message) -> tuple[m.Message, str]:
        """Return the message to send and its kind: the fallback template when the recipient's window is closed."""
        from airflow_provider_itnio.window import WindowChooser, check_fallback

        if isinstance(message, m.Template):  # a template reaches the customer whatever the window
            return message, TEMPLATE
        fallback = check_fallback(self.fallback_template)
        strict = hook.strict_phone_numbers_for(self.strict_phone_numbers)
        sender = m.normalize_phone(hook.business_phone_for(self.business_phone), "businessPhone", strict=strict)
        recipient = m.normalize_phone(self.recipient, "recipient", strict=strict)
        chooser = WindowChooser(self.itnio_conn_id, window_unknown=self.window_unknown, log=self.log)
        if chooser.kind(sender, recipient) == SESSION:
            self.log.info("%s wrote to %s in the last 24 hours: sending the session message", recipient, sender)
            return message, SESSION
        self.log.info(
            "No message from %s to %s in the last 24 hours (the window is closed): sending the fallback template "
            "%r instead of the %s message%s",
            recipient,
            sender,
            fallback.name,
            type(message).__name__,
            " (a template cannot quote a message: reply_to is dropped)" if self.reply_to else "",
        )
        return fallback, TEMPLATE

    def execute(self, context: Context) -> str:
        from airflow_provider_itnio.hooks.itnio import ItnioHook

        hook = ItnioHook(itnio_conn_id=self.itnio_conn_id)
        kind = SESSION
        try:
            message = self.build_message()
            if self.fallback_template is not None:
                message, kind = self._choose(hook, message)
            result = hook.send(
                self.recipient,
                message,
                business_phone=self.business_phone,
                reply_to=(self.reply_to or None) if kind == SESSION else None,
                strict_phone_numbers=self.strict_phone_numbers,
            )
        except ItnioError as err:
            failure = task_failure(err, retry_on_unknown_delivery=self.retry_on_unknown_delivery)
            if failure is err:
                raise
            raise failure from err
        finally:
            hook.close()
        self.log.info("Sent %s message to %s: messageId %s", type(message).__name__, self.recipient, result.message_id)
        if self.fallback_template is not None:
            context["ti"].xcom_push(key=SENT_KIND_KEY, value=kind)
        return result.message_id


class ItnioSendTextOperator(ItnioBaseOperator):
    """
    Send a text message.

    .. code-block:: python

        ItnioSendTextOperator(task_id="thank_you", recipient="{{ params.phone }}", body="Thanks, {{ params.name }}!")

    :param body: The text, at most 4096 characters (templated).
    """

    model = m.Text
    message_fields = ("body",)
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(self, *, body: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.body = body
        self._validate_early()


class ItnioSendImageOperator(ItnioBaseOperator):
    """
    Send an image by its public URL (file at most 5 MB).

    :param link: The image's http(s) URL (templated).
    :param caption: Optional caption (templated).
    """

    model = m.Image
    message_fields = ("link", "caption")
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(self, *, link: str, caption: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.link = link
        self.caption = caption
        self._validate_early()


class ItnioSendDocumentOperator(ItnioBaseOperator):
    """
    Send a document (an invoice, a ticket...) by its public URL (file at most 100 MB).

    :param link: The document's http(s) URL (templated).
    :param filename: The file name the recipient sees (templated).
    :param caption: Optional caption (templated).
    """

    model = m.Document
    message_fields = ("link", "filename", "caption")
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(self, *, link: str, filename: str, caption: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.link = link
        self.filename = filename
        self.caption = caption
        self._validate_early()


class ItnioSendAudioOperator(ItnioBaseOperator):
    """
    Send an audio file by its public URL (at most 16 MB).

    :param link: The audio's http(s) URL (templated).
    """

    model = m.Audio
    message_fields = ("link",)
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(self, *, link: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.link = link
        self._validate_early()


class ItnioSendVideoOperator(ItnioBaseOperator):
    """
    Send a video by its public URL (at most 16 MB).

    :param link: The video's http(s) URL (templated).
    :param caption: Optional caption (templated).
    """

    model = m.Video
    message_fields = ("link", "caption")
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(self, *, link: str, caption: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.link = link
        self.caption = caption
        self._validate_early()


class ItnioSendStickerOperator(ItnioBaseOperator):
    """
    Send a sticker by its public URL (a webp file of at most 100 KB).

    :param link: The sticker's http(s) URL (templated).
    """

    model = m.Sticker
    message_fields = ("link",)
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(self, *, link: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.link = link
        self._validate_early()


class ItnioSendLocationOperator(ItnioBaseOperator):
    """
    Send a location pin.

    :param latitude: Latitude, a number or a numeric string (sent as a string) (templated).
    :param longitude: Longitude, a number or a numeric string (sent as a string) (templated).
    :param name: The place's name (templated).
    :param address: The place's address (templated).
    """

    model = m.Location
    message_fields = ("latitude", "longitude", "name", "address")
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(
        self, *, latitude: float | str, longitude: float | str, name: str, address: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.latitude = latitude
        self.longitude = longitude
        self.name = name
        self.address = address
        self._validate_early()


class ItnioSendListOperator(ItnioBaseOperator):
    """
    Send an interactive list: a button that opens up to 10 rows in 1-10 sections.

    :param body: The message text (templated).
    :param button: The label of the button that opens the list, at most 20 characters (templated).
    :param sections: ``[{"title": ..., "rows": [{"id": ..., "title": ..., "description": ...}]}]``
        (templated, rendered recursively).
    :param header: Optional header text (templated).
    :param footer: Optional footer text (templated).
    """

    model = m.ListMessage
    message_fields = ("body", "button", "sections", "header", "footer")
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(
        self,
        *,
        body: str,
        button: str,
        sections: list[dict[str, Any]],
        header: str | None = None,
        footer: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.body = body
        self.button = button
        self.sections = sections
        self.header = header
        self.footer = footer
        self._validate_early()


class ItnioSendButtonsOperator(ItnioBaseOperator):
    """
    Send up to three quick-reply buttons.

    :param body: The message text (templated).
    :param buttons: ``[{"id": ..., "title": ...}]``, 1-3 buttons with unique titles of at most 20 characters
        (templated, rendered recursively).
    :param header: Optional header text (templated).
    :param footer: Optional footer text (templated).
    """

    model = m.ReplyButtons
    message_fields = ("body", "buttons", "header", "footer")
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(
        self,
        *,
        body: str,
        buttons: list[dict[str, Any]],
        header: str | None = None,
        footer: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.body = body
        self.buttons = buttons
        self.header = header
        self.footer = footer
        self._validate_early()


class ItnioSendLocationRequestOperator(ItnioBaseOperator):
    """
    Ask the recipient to share their location (a "Send location" button).

    :param body: The message text (templated).
    """

    model = m.LocationRequest
    message_fields = ("body",)
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(self, *, body: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.body = body
        self._validate_early()


class ItnioSendContactsOperator(ItnioBaseOperator):
    """
    Send one or more contact cards.

    :param contacts: Contact cards in the API's shape (``name.formatted_name`` required; ``phones``,
        ``emails``, ``addresses``, ``org``, ``urls``, ``birthday`` optional) (templated, rendered recursively).
    """

    model = m.Contacts
    message_fields = ("contacts",)
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(self, *, contacts: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.contacts = contacts
        self._validate_early()


class ItnioSendTemplateOperator(ItnioBaseOperator):
    """
    Send an approved template: the only way to reach a user outside the 24-hour customer-service window.

    :param template_name: The approved template's name (templated).
    :param language: Its language code, e.g. ``en_US`` (templated).
    :param components: Optional header/body/button components with their parameters, in the API's shape
        (templated, rendered recursively).
    """

    message_fields = ("template_name", "language", "components")
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(
        self,
        *,
        template_name: str,
        language: str,
        components: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("reply_to") is not None:
            raise TypeError("ItnioSendTemplateOperator does not take reply_to: templates cannot quote a message.")
        if kwargs.get("fallback_template") is not None:
            raise TypeError(
                "ItnioSendTemplateOperator does not take fallback_template: a template reaches the customer whatever "
                "the 24-hour window, so no window is checked."
            )
        super().__init__(**kwargs)
        self.template_name = template_name
        self.language = language
        self.components = components
        self._validate_early()

    def build_message(self) -> m.Message:
        return m.Template(name=self.template_name, language=self.language, components=self.components)


class ItnioSendMessageOperator(ItnioBaseOperator):
    """
    Send any message: a model from :mod:`airflow_provider_itnio.messages`, or the API's type-specific dict.

    .. code-block:: python

        ItnioSendMessageOperator(
            task_id="send", recipient="8613800138000", message={"type": "text", "text": {"body": "Hi"}}
        )

    :param message: A ``messages`` model, or a dict such as ``{"type": "text", "text": {...}}`` or
        ``{"template": {...}}`` (templated, rendered recursively); or a Jinja string that renders to such a dict
        in a DAG with ``render_template_as_native_obj=True``, e.g. ``"{{ params.message }}"``.
    """

    message_fields = ("message",)
    template_fields = (*ItnioBaseOperator.template_fields, *message_fields)

    def __init__(self, *, message: m.Message | dict[str, Any] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Kept in the API's dict form so that Airflow can render and serialise it.
        self.message = message.to_payload() if isinstance(message, m.Message) else message
        self._validate_early()

    def build_message(self) -> m.Message:
        if not isinstance(self.message, Mapping):
            raise ItnioValidationError(
                "message",
                "must be a messages model or the API's dict form",
                f"got {type(self.message).__name__}",
            )
        return m.message_from_dict(dict(self.message))
