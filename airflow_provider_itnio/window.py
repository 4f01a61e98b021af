"""
Which message to send to a customer: the session message, or the fallback template when their 24-hour window is closed.

WhatsApp lets a business send a session message (text, media, interactive...) only within 24 hours of the
customer's last message to that business number; outside that window only an approved template gets through (the
vendor accepts the send, then pushes a ``failed`` status with the 131047 re-engagement error). The operators'
``fallback_template`` argument uses this module:

- :func:`fallback_payload` checks the argument when the operator is created (a static value is validated then, so
  a bad one is a DAG import error naming ``fallback_template``; on an Airflow without the receiver it refuses the
  argument, since the window is only known from the receiver's records);
- :class:`WindowChooser` asks the receiver on the API server
  (:class:`~airflow_provider_itnio.hooks.receiver.ItnioReceiverClient`, its bulk ``POST /itnio/api/{conn_id}/windows``
  in chunks of :data:`WINDOW_CHUNK`) and returns, per recipient, :data:`SESSION` or :data:`TEMPLATE`. The
  single-message operators and the batch both use it.

When the receiver cannot be asked (unreachable, an error answer, no ``webhook_token`` extra), nothing is guessed:
:class:`ItnioWindowUnknownError` is raised before anything is sent, unless ``window_unknown="template"`` says to
send the template (which reaches the customer whatever the window).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from airflow_provider_itnio import messages as m
from airflow_provider_itnio.errors import ItnioConfigError, ItnioError, ItnioValidationError
from airflow_provider_itnio.templating import is_static
from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, MIN_AIRFLOW

__all__ = [
    "FIELD",
    "SENT_KIND_KEY",
    "SESSION",
    "TEMPLATE",
    "WINDOW_CHUNK",
    "WINDOW_UNKNOWN_CHOICES",
    "ItnioWindowUnknownError",
    "WindowChooser",
    "as_message_dict",
    "check_fallback",
    "check_window_unknown",
    "fallback_payload",
    "receiver_available",
]

#: What was sent: the operator's own (session) message.
SESSION = "session"
#: What was sent: the fallback template.
TEMPLATE = "template"
#: The XCom key under which the single-message operators push :data:`SESSION` or :data:`TEMPLATE`.
SENT_KIND_KEY = "sent_kind"
#: The operators' argument.
FIELD = "fallback_template"
#: What ``window_unknown`` may be: fail before sending (the default), or send the fallback template.
WINDOW_UNKNOWN_CHOICES = ("fail", "template")
#: Recipients asked about per request to the receiver (at most the receiver's ``MAX_WINDOW_RECIPIENTS``).
WINDOW_CHUNK = 500

WindowUnknown = Literal["fail", "template"]


class ItnioWindowUnknownError(ItnioError):
    """
    The customer's 24-hour window could not be read from the receiver, so nothing was sent to them.

    Retryable when the receiver was unreachable or answered a server error; permanent when the connection lacks
    a ``webhook_token`` or the API server does not know it (a retry cannot fix the configuration).

    :param cause: The error the receiver client raised.
    :param itnio_conn_id: The connection whose receiver was asked.
    """

    def __init__(self, cause: BaseException, itnio_conn_id: str) -> None:
        self.cause = cause
        self.permanent = bool(getattr(cause, "permanent", False))
        super().__init__(
            f"Not sent: the 24-hour window could not be read from the itnio receiver of connection "
            f"{itnio_conn_id!r}, so it is unknown whether the session message or the fallback template applies. "
            f"{cause} (Pass window_unknown='template' to send the fallback template whenever the receiver cannot "
            f"be asked.)"
        )


def receiver_available() -> bool:
    """Return True when the installed Airflow can run the webhook receiver (3.1+), which knows the windows."""
    return AIRFLOW_V_3_1_PLUS


def as_message_dict(value: Any) -> Any:
    """
    Return a model as the API's dict form, and a bare ``{"name", "language", ...}`` as ``{"template": ...}``.

    :param value: The ``fallback_template`` argument (other values are returned as they are).
    """
    if isinstance(value, m.Message):
        return value.to_payload()
    if isinstance(value, Mapping) and "name" in value and "template" not in value and "type" not in value:
        return {"template": dict(value)}
    return value


def check_fallback(payload: Any) -> m.Template:
    """
    Return the fallback template's model; raise ``ItnioValidationError`` naming ``fallback_template`` when invalid.

    :param payload: The rendered argument: the API's template dict (``{"template": {...}}`` or its inner object).
    """
    payload = as_message_dict(payload)
    if not isinstance(payload, Mapping):
        raise ItnioValidationError(
            FIELD, "must be a Template model or the API's template dict", f"got {type(payload).__name__}"
        )
    try:
        message = m.message_from_dict(payload)
    except ItnioValidationError as err:
        raise ItnioValidationError(f"{FIELD}.{err.field}", err.rule, err.problem, err.status) from err
    if not isinstance(message, m.Template):
        raise ItnioValidationError(
            FIELD,
            "must be a template (only templates reach a customer outside the 24-hour window)",
            f"got a {message.type_name} message",
        )
    return message


def check_window_unknown(value: Any) -> WindowUnknown:
    """
    Return ``value`` when it is one of :data:`WINDOW_UNKNOWN_CHOICES`, else raise ``ValueError``.

    :param value: The operator's ``window_unknown`` argument.
    """
    if value not in WINDOW_UNKNOWN_CHOICES:
        raise ValueError(f"window_unknown must be one of {', '.join(WINDOW_UNKNOWN_CHOICES)}; got {value!r}")
    return value  # type: ignore[no-any-return]


def fallback_payload(value: Any, *, keep: Callable[[Any], Any] | None = None) -> Any:
    """
    Return the operator's ``fallback_template`` as it is stored (the API's dict form), checked when static.

    :param value: ``None``, a :class:`~airflow_provider_itnio.messages.Template`, the API's template dict, or a
        Jinja string / XComArg resolved when the task runs.
    :param keep: Applied to the stored value (the batch wraps ``{{ row.* }}`` so that Airflow leaves it).
    :raises ItnioConfigError: When a fallback is given on an Airflow without the receiver (older than 3.1).
    :raises ItnioValidationError: When a static value is not a valid template (the field names ``fallback_template``).
    """
    if value is None:
        return None
    if not receiver_available():
        raise ItnioConfigError(
            f"{FIELD} needs the itnio webhook receiver, which runs on the API server of Airflow "
            f"{MIN_AIRFLOW[0]}.{MIN_AIRFLOW[1]} or later: only the receiver knows when a customer last wrote. On "
            "this Airflow, send a template (ItnioSendTemplateOperator) when you cannot know the window is open."
        )
    payload = as_message_dict(value)
    if is_static(payload):
        check_fallback(payload)
    return keep(payload) if keep is not None else payload


class WindowChooser:
    """
    Tell, per recipient, whether to send the session message or the fallback template, from the receiver's records.

    :param itnio_conn_id: The ``itnio`` connection (its ``webhook_token`` and ``receiver_url`` extras reach the
        receiver; see :mod:`airflow_provider_itnio.hooks.receiver`).
    :param window_unknown: ``"fail"``: raise :class:`ItnioWindowUnknownError` when the receiver cannot be asked;
        ``"template"``: choose the template for those recipients.
    :param log: Logger for the decisions that are not the plain one (the receiver could not be asked).
    :param chunk_size: Recipients per request (default :data:`WINDOW_CHUNK`).
    :param client: A ready receiver client (default: one for ``itnio_conn_id``).
    """

    def __init__(
        self,
        itnio_conn_id: str,
        *,
        window_unknown: WindowUnknown = "fail",
        log: Any = None,
        chunk_size: int | None = None,
        client: Any = None,
    ) -> None:
        self.itnio_conn_id = itnio_conn_id
        self.window_unknown = check_window_unknown(window_unknown)
        self.log = log
        self.chunk_size = chunk_size or WINDOW_CHUNK
        self._client = client
        #: Requests made to the receiver so far.
        self.requests = 0

    def _receiver(self) -> Any:
        if self._client is None:
            from airflow_provider_itnio.hooks.receiver import ItnioReceiverClient

            self._client = ItnioReceiverClient(self.itnio_conn_id)
        return self._client

    def kinds(self, business_phone: str, recipients: Iterable[str]) -> dict[str, str]:
        """
        Return ``{recipient: SESSION or TEMPLATE}``: the template for those whose window is closed.

        :param business_phone: The sender number, digits.
        :param recipients: Normalised recipients (digits), as the receiver's answer names them.
        :raises ItnioWindowUnknownError: When the receiver cannot be asked and ``window_unknown`` is ``"fail"``.
        """
        wanted = list(dict.fromkeys(recipients))
        chosen: dict[str, str] = {}
        for start in range(0, len(wanted), self.chunk_size):
            chunk = wanted[start : start + self.chunk_size]
            try:
                self.requests += 1
                windows = self._receiver().windows(business_phone, chunk)
            except (ItnioError, ValueError) as err:
                if self.window_unknown != TEMPLATE:
                    raise ItnioWindowUnknownError(err, self.itnio_conn_id) from err
                if self.log is not None:
                    self.log.warning(
                        "The 24-hour window of %d recipient(s) could not be read (%s); sending them the fallback "
                        "template (window_unknown='template')",
                        len(chunk),
                        err,
                    )
                chosen.update(dict.fromkeys(chunk, TEMPLATE))
                continue
            for recipient in chunk:
                window = windows.get(recipient) or {}
                chosen[recipient] = SESSION if window.get("open") is True else TEMPLATE
        return chosen

    def kind(self, business_phone: str, recipient: str) -> str:
        """
        Return :data:`SESSION` or :data:`TEMPLATE` for one recipient (see :meth:`kinds`).

        :param business_phone: The sender number, digits.
        :param recipient: The recipient, digits.
        """
        return self.kinds(business_phone, [recipient])[recipient]
