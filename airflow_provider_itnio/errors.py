"""Exceptions raised by the itniotech provider, and the vendor's status-code table.

This module imports nothing from Airflow, so the message models (and the sandbox) can use it on their
own. Operators turn a *permanent* error into ``AirflowFailException`` so that Airflow does not spend the
task's retries on something a retry cannot fix.

The hierarchy::

    ItnioError
     +-- ItnioValidationError        bad input, caught before any request is sent       (permanent)
     +-- ItnioConfigError            the connection lacks a key, secret or app_id         (permanent)
     +-- ItnioApiError               the API answered with a non-"0" status             (permanent or not)
     +-- ItnioTransportError         the request was not wholly written (refused, DNS, connect or TLS
     |                               handshake failure, a failed write) after the hook's own bounded
     |                               retries                                               (retryable)
     +-- ItnioDeliveryUnknownError   the request was wholly written and may have reached the API (read
                                     timeout, connection or TLS dropped after sending, 5xx): never re-sent
                                                                                         (permanent by default)
"""

from __future__ import annotations

from typing import Any

#: Every status code the vendor documents for the send endpoints, with its meaning (English).
STATUS_CODES: dict[str, str] = {
    "0": "success",
    "-1": "authentication error (unknown Api-Key or wrong Sign)",
    "-2": "authentication error (access not allowed for this key)",
    "-16": "timestamp expired (the Timestamp header is too far from the server's clock)",
    "-68": "insufficient balance",
    "-69": "no rate (price) configured for this destination",
    "-70": "recipient is longer than 14 digits",
    "-71": "recipient is shorter than 7 digits",
    "-72": "recipient must contain digits only",
    "-93": "business phone is longer than 14 digits",
    "-94": "business phone is shorter than 7 digits",
    "-95": "business phone must contain digits only",
    "-96": "business phone does not exist",
    "-97": "business phone is in a wrong state",
    "-112": "channelType must be 0",
    "-114": "text object is empty",
    "-115": "text body is empty",
    "-116": "image object is empty",
    "-117": "image link is empty",
    "-118": "audio object is empty",
    "-119": "audio link is empty",
    "-120": "video object is empty",
    "-121": "video link is empty",
    "-122": "sticker object is empty",
    "-123": "sticker link is empty",
    "-124": "document object is empty",
    "-125": "document link is empty",
    "-127": "location object is empty",
    "-128": "location longitude is empty",
    "-129": "location latitude is empty",
    "-132": "unknown message type",
    "-133": "malformed link URL",
    "-134": "parameter of the wrong type",
    "-135": "parameter value is empty",
}

#: Status codes that describe the request itself (its fields): re-sending the same request cannot succeed.
VALIDATION_STATUSES: frozenset[str] = frozenset(
    {"-70", "-71", "-72", "-93", "-94", "-95", "-112"} | {str(code) for code in range(-135, -113)}  # -114 .. -135
)

#: Status codes about the account, its credentials or its sender number: every other message sent with the
#: same connection fails the same way, so a batch stops at the first one.
ACCOUNT_STATUSES: frozenset[str] = frozenset({"-1", "-2", "-16", "-68", "-96", "-97"})

#: Status codes that no retry can fix. ``-1``/``-2`` (credentials) and ``-16`` (clock skew) are left out on
#: purpose: a rotated secret or a corrected clock can make the next try succeed.
PERMANENT_STATUSES: frozenset[str] = VALIDATION_STATUSES | frozenset({"-68", "-69", "-96", "-97"})


class ItnioError(Exception):
    """Base class of every error raised by this provider."""

    #: True when retrying the same request cannot succeed (the task should fail without Airflow retries).
    permanent: bool = False


class ItnioValidationError(ItnioError, ValueError):
    """
    A value breaks one of the API's rules; raised before any request is sent.

    :param field: Path of the offending field in the request body, e.g. ``interactive.action.buttons[1].reply.title``.
    :param rule: The rule that is broken, e.g. ``at most 20 characters``.
    :param problem: What is wrong with the value, e.g. ``has 23 characters``.
    :param status: The vendor status code the request would have been answered with, when one exists.
    """

    permanent = True

    def __init__(self, field: str, rule: str, problem: str, status: str | None = None) -> None:
        self.field = field
        self.rule = rule
        self.problem = problem
        self.status = status
        message = f"{field}: {rule}; {problem}"
        if status is not None:
            message += f" (the API would answer {status}: {STATUS_CODES.get(status, 'error')})"
        super().__init__(message)


def _explain(status: str, reason: str) -> str:
    """
    Return the vendor's ``reason`` with the documented meaning of ``status`` added, each phrase said once.

    ``-1`` answered ``"authentication error"`` gives ``"authentication error (unknown Api-Key or wrong Sign)"``:
    when the reason already holds the meaning's phrase, only the meaning's detail is added.

    :param status: The vendor's status code.
    :param reason: The vendor's ``reason`` text.
    """
    known = STATUS_CODES.get(status)
    said = reason.strip()
    if not known or known.lower() in said.lower():
        return said
    if not said:
        return known
    phrase, parenthesis, detail = known.partition(" (")
    if parenthesis and phrase.lower() in said.lower():
        return f"{said} ({detail}"
    return f"{said} ({known})"


class ItnioApiError(ItnioError):
    """
    The API answered with a status other than ``"0"``.

    :param status: The vendor's status code, a string such as ``"-68"`` (unknown codes are kept as sent).
    :param reason: The vendor's ``reason`` text.
    :param http_status: The HTTP status of the response.
    """

    def __init__(self, status: str, reason: str, http_status: int = 200) -> None:
        self.status = str(status)
        self.reason = reason
        self.http_status = http_status
        text = f"itniotech API error {self.status}: {_explain(self.status, str(reason))}"
        if self.permanent:
            text += " [permanent: retrying cannot help]"
        super().__init__(text)

    @property
    def permanent(self) -> bool:  # type: ignore[override]
        """True for the statuses in :data:`PERMANENT_STATUSES` and for HTTP 4xx answers other than 408/429."""
        if self.status in PERMANENT_STATUSES:
            return True
        return 400 <= self.http_status < 500 and self.http_status not in (408, 429)

    @property
    def account_level(self) -> bool:
        """True when every other message sent with the same account would fail the same way."""
        return self.status in ACCOUNT_STATUSES


class ItnioConfigError(ItnioError, ValueError):
    """The Airflow connection lacks something the API needs (API key, secret, app_id, business phone)."""

    permanent = True


class ItnioTransportError(ItnioError):
    """
    Nothing reached the API, even after the hook's retries.

    The request failed before any byte of it was written to the API's connection (connection refused, DNS
    failure, connect timeout, a proxy that refused the tunnel, a TLS handshake that failed or never
    completed), or a write of it failed, so that its last bytes never left (a reused connection the server had
    closed, a reset or timeout while the body was going out): the API cannot have the whole request.
    """


class ItnioDeliveryUnknownError(ItnioError):
    """
    The request may have reached the API, but no usable answer came back.

    The request was wholly written to the API's connection, then the answer timed out, the connection dropped or
    its TLS layer broke; or a gateway answered 5xx; or the API said success without a readable
    ``messageId``. The hook never re-sends it, because the message may already have been delivered.
    """

    permanent = True

    def __init__(self, detail: str, *, recipient: str | None = None) -> None:
        self.detail = detail
        self.recipient = recipient
        who = f" to {recipient}" if recipient else ""
        super().__init__(
            f"The message{who} may have been delivered: {detail}. It was not sent again, to avoid a duplicate. "
            "Check the recipient's chat or the delivery report before sending it again; to let Airflow retry "
            "such failures anyway, set retry_on_unknown_delivery=True on the operator."
        )


def error_payload(error: BaseException) -> dict[str, Any]:
    """Return a JSON-safe summary of an error (used in batch results): ``{"status": ..., "reason": ...}``."""
    if isinstance(error, ItnioApiError):
        return {"status": error.status, "reason": error.reason}
    if isinstance(error, ItnioValidationError):
        return {"status": error.status or "validation", "reason": str(error)}
    if isinstance(error, ItnioDeliveryUnknownError):
        return {"status": "unknown_delivery", "reason": str(error)}
    return {"status": "transport", "reason": str(error)}
