"""
Pushes from the vendor (webhooks) turned into typed events: pure Python, no Airflow import, no I/O.

The vendor POSTs two kinds of JSON body to the address the customer gives it (spec, "Pushes from the vendor to
you (webhooks)"), told apart by ``eventType``::

    message-status-event  -> StatusEvent    one per status change of a message sent through the API
    up-message-event      -> InboundEvent   one per message a customer sends to the business number

:func:`parse_push` reads either one from the request body (bytes, text or an already decoded mapping) and raises
:class:`PushError` (``http_status`` 400, or 413 over :data:`MAX_PUSH_BYTES`) naming the field, the rule and the
problem. The receiver answers with that status and records nothing.

What is strict and what is lenient:

- Required, because the event cannot be recorded without them: ``eventType`` (one of the two above),
  ``appId``, ``messageId``, ``status`` (status pushes), ``message`` with ``message.type`` (inbound pushes), and
  the phone numbers (``form``/``from`` and ``recipient``; ``businessPhone`` and ``from.phone``). Missing, null,
  blank or of a type that cannot be read as the field: 400.
- Lenient where the vendor is inconsistent: numbers given as strings and strings as numbers, ``billable`` as
  ``"true"``/``"false"``, a bool, ``1``/``0``; the status word in any case; the sender number of a status push as
  ``form`` (the vendor's spelling) or ``from``; a phone number with a leading ``+`` or spaces/dashes.
- Optional fields that are absent, null or ``""`` become ``None``. An optional field that is present but
  cannot be read (``timestamp: "yesterday"``) also becomes ``None`` and is named in the event's ``warnings``:
  a push is not refused over a field the event does not need (the vendor would re-push it three times and
  then give up, and the event would be lost).
- Nothing is dropped: unknown fields and unknown ``message.type`` values are kept (``type`` as sent, the whole
  body in ``raw``).

How taps arrive is not on the vendor's pages; following the spec, this module assumes WhatsApp's own shape:
``message.type`` ``interactive`` with ``interactive.type`` ``button_reply`` / ``list_reply`` (``{id, title}``) for
a reply-button or list-row tap, and ``message.type`` ``button`` with ``button: {payload, text}`` for a template's
quick-reply button. Both become ``reply = {"id": ..., "title": ...}``.

Status progress (one rule, :func:`advances`): ``sent`` < ``delivered`` < ``read`` whatever the arrival order;
``failed`` and ``deleted`` are final: they beat any progress status and nothing replaces them afterwards (when
both finals arrive, the first one recorded stays).

Sources, and where they differ. The English spec (``shared/spec/itniotech-api.md``) is followed. The vendor's
original Chinese page in ``shared/seed/`` documents only ``/wa/custom/sendMsg``: it has **no push section, no
example push and no integer status codes**. It mentions pushes only twice, and agrees with the spec both times:
a reply button's ``id`` "is returned in the Webhook when the user taps the button", and ``context.refMessageId``
is "the id of the uplink (inbound) message being replied to" (the inbound push's ``messageId``). So:

- The status table types ``status`` as Integer but lists only words; no page gives the integers, so integer
  statuses (and digit strings) are refused with a 400 that says so, instead of being guessed.
- ``form`` is the vendor's spelling of the sender field; ``from`` is accepted too (``form`` wins when both are
  there).
- The seed page's send response types ``channelType`` as String while its example sends an integer;
  ``channelType`` is read from either.
- Tap shapes (above) are an assumption of the spec, not vendor documentation.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, NoReturn

from airflow_provider_itnio._text import show as _show
from airflow_provider_itnio.errors import ItnioError

__all__ = [
    "EVENT_TYPES",
    "INBOUND_EVENT",
    "MAX_ID_CHARS",
    "MAX_INTEGER",
    "MAX_PHONE_DIGITS",
    "MAX_PUSH_BYTES",
    "MAX_TYPE_CHARS",
    "MEDIA_TYPES",
    "STATUS_EVENT",
    "STATUS_RANK",
    "InboundEvent",
    "MessageStatus",
    "PushError",
    "PushEvent",
    "StatusEvent",
    "advances",
    "asset_extra",
    "dedup_key",
    "furthest",
    "is_final",
    "parse_push",
    "parse_status",
]

#: The largest push body accepted, in bytes (a larger one gets 413).
MAX_PUSH_BYTES = 1024 * 1024

#: ``eventType`` of a message status report.
STATUS_EVENT = "message-status-event"
#: ``eventType`` of an uplink (inbound) message.
INBOUND_EVENT = "up-message-event"
EVENT_TYPES: tuple[str, ...] = (STATUS_EVENT, INBOUND_EVENT)

#: Inbound ``message.type`` values whose object describes a media file (``id``, ``filePath``, ``mimeType``, ...).
MEDIA_TYPES: frozenset[str] = frozenset({"image", "video", "audio", "document", "sticker"})

#: The longest ``appId``, ``messageId`` and ``conversationId`` recorded (the width of the tables' id columns).
MAX_ID_CHARS = 191
#: The longest ``message.type`` recorded (the width of the table's column).
MAX_TYPE_CHARS = 64
#: The largest integer read from a push (a 64-bit column; a larger ``timestamp`` is not a time).
MAX_INTEGER = 2**63 - 1

#: More digits than any phone number has (E.164 allows 15; the vendor's own examples have up to 17).
MAX_PHONE_DIGITS = 20

_PHONE_FORMATTING = re.compile(r"[\s\-.()]")
_DIGITS = re.compile(r"[0-9]+")
_TAP_TYPES = ("button_reply", "list_reply")


class MessageStatus(enum.StrEnum):
    """A status the vendor reports for a sent message (the values are the vendor's words)."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    DELETED = "deleted"


#: Progress of a message: a status with a higher rank replaces a lower one. The final statuses share the top
#: rank, so neither replaces the other (see :func:`advances`).
STATUS_RANK: Mapping[MessageStatus, int] = MappingProxyType(
    {
        MessageStatus.SENT: 1,
        MessageStatus.DELIVERED: 2,
        MessageStatus.READ: 3,
        MessageStatus.FAILED: 4,
        MessageStatus.DELETED: 4,
    }
)
_FINAL: frozenset[MessageStatus] = frozenset({MessageStatus.FAILED, MessageStatus.DELETED})
_STATUS_WORDS: frozenset[str] = frozenset(status.value for status in MessageStatus)


class PushError(ItnioError, ValueError):
    """
    A push body that cannot be recorded; the receiver answers ``http_status`` and records nothing.

    The message names the field (a path in the body, e.g. ``from.phone``), the rule and the problem. It never
    quotes a phone number.

    :param field: Path of the offending field in the push body (``body`` for the body as a whole).
    :param rule: The rule that is broken, e.g. ``required``.
    :param problem: What is wrong, e.g. ``it is missing``.
    :param http_status: 400 (bad body) or 413 (body too large).
    """

    permanent = True

    def __init__(self, field: str, rule: str, problem: str, http_status: int = 400) -> None:
        self.field = field
        self.rule = rule
        self.problem = problem
        self.http_status = http_status
        super().__init__(f"{field}: {rule}; {problem}")


# --------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class StatusEvent:
    """
    A message status report (``eventType: "message-status-event"``).

    :param app_id: The application (``appId``).
    :param channel_type: ``channelType`` (0 = WhatsApp), or ``None`` when absent.
    :param message_id: The id the send call returned (``messageId``).
    :param status: The reported status.
    :param billable: Whether the conversation is billed (``billable``), or ``None`` when absent.
    :param business_phone: The sender (business) number, digits (``form``, or ``from``).
    :param recipient: The customer number, digits.
    :param failure: Why the message failed (``failure``; an object is kept as its JSON text), or ``None``.
    :param conversation_id: ``conversationId`` (with ``sent`` / ``delivered``), or ``None``.
    :param expires_at: ``expiresAt``, Unix seconds (with ``sent``), or ``None``.
    :param conversation_type: ``conversationType`` as sent, or ``None``.
    :param timestamp: When the status happened, Unix seconds, or ``None`` when absent.
    :param raw: The whole push as decoded JSON (do not modify it).
    :param warnings: Optional fields that were present but could not be read (they are ``None`` here and
        intact in ``raw``).
    """

    event_type: ClassVar[str] = STATUS_EVENT

    app_id: str
    channel_type: int | None
    message_id: str
    status: MessageStatus
    billable: bool | None
    business_phone: str
    recipient: str
    failure: str | None
    conversation_id: str | None
    expires_at: int | None
    conversation_type: str | None
    timestamp: int | None
    raw: dict[str, Any] = field(hash=False, repr=False)
    warnings: tuple[str, ...] = ()

    @property
    def is_final(self) -> bool:
        """Return whether this status is final (``failed`` or ``deleted``)."""
        return is_final(self.status)


@dataclass(frozen=True)
class InboundEvent:
    """
    A message a customer sent to the business number (``eventType: "up-message-event"``).

    :param app_id: The application (``appId``).
    :param channel_type: ``channelType`` (0 = WhatsApp), or ``None`` when absent.
    :param message_id: The inbound message's id: pass it as ``context.refMessageId`` to reply quoting it.
    :param timestamp: When it was sent, Unix seconds, or ``None`` when absent.
    :param business_phone: The business number that received it, digits (``businessPhone``).
    :param from_phone: The customer's number, digits (``from.phone``).
    :param name: The customer's WhatsApp profile name (``from.name``), or ``None``.
    :param type: ``message.type`` as sent (unknown types are kept).
    :param text: The text body, or a media caption, else ``None``.
    :param reply: ``{"id", "title"}`` for a reply-button or list-row tap (``interactive``) and for a template
        quick-reply tap (``button``: ``payload`` -> ``id``, ``text`` -> ``title``), else ``None``.
    :param location: For ``location``: the sent object with ``latitude`` / ``longitude`` as floats and ``name`` /
        ``address`` always present (``None`` when absent), else ``None``.
    :param media: For image, video, audio, document and sticker: the media object as sent (``id``, ``filePath``,
        ``mimeType``, ``sha256``, ``caption``, ``filename``), else ``None``.
    :param raw: The whole push as decoded JSON (do not modify it).
    :param warnings: Optional fields that were present but could not be read.
    """

    event_type: ClassVar[str] = INBOUND_EVENT

    app_id: str
    channel_type: int | None
    message_id: str
    timestamp: int | None
    business_phone: str
    from_phone: str
    name: str | None
    type: str
    text: str | None
    reply: dict[str, str | None] | None = field(hash=False)
    location: dict[str, Any] | None = field(hash=False)
    media: dict[str, Any] | None = field(hash=False)
    raw: dict[str, Any] = field(hash=False, repr=False)
    warnings: tuple[str, ...] = ()


PushEvent = StatusEvent | InboundEvent


# --------------------------------------------------------------------------------------------- status progress


def parse_status(value: object, field: str = "status") -> MessageStatus:
    """
    Return the status named by ``value``: one of the vendor's words, in any case, surrounding spaces ignored.

    :param value: The status as pushed (or as stored).
    :param field: The field name used in the error.
    :raises PushError: (400) when ``value`` is missing, not a string, or not a known word; integers are refused
        because no vendor page defines integer status codes.
    """
    words = ", ".join(status.value for status in MessageStatus)
    if isinstance(value, MessageStatus):
        return value
    if value is None:
        _fail(field, "required", "it is missing")
    if isinstance(value, int | float) and not isinstance(value, bool):
        _fail(
            field,
            f"must be one of {words}",
            f"got the number {_show(value)}; the vendor documents no integer status codes",
        )
    if not isinstance(value, str):
        _fail(field, f"must be one of {words}", f"got a JSON {_json_kind(value)}")
    word = value.strip().lower()
    if word not in _STATUS_WORDS:
        extra = "; the vendor documents no integer status codes" if _DIGITS.fullmatch(word) else ""
        _fail(field, f"must be one of {words}", f"got {_show(value)}{extra}")
    return MessageStatus(word)


def is_final(status: MessageStatus | str) -> bool:
    """
    Return whether ``status`` is final (``failed`` or ``deleted``): nothing replaces it afterwards.

    :param status: A status, or its word in any case.
    """
    return parse_status(status) in _FINAL


def advances(current: MessageStatus | str | None, new: MessageStatus | str) -> bool:
    """
    Return whether a status ``new`` that arrives after ``current`` replaces it as the message's status.

    The one rule: nothing replaces a final status; otherwise a higher :data:`STATUS_RANK` replaces a lower one
    (``read`` beats ``delivered`` whatever the arrival order; ``failed`` / ``deleted`` beat every progress status).
    The same status again (a re-push) does not advance.

    :param current: The status recorded so far, or ``None`` when there is none.
    :param new: The status just pushed.
    """
    new_status = parse_status(new)
    if current is None:
        return True
    current_status = parse_status(current)
    return current_status not in _FINAL and STATUS_RANK[new_status] > STATUS_RANK[current_status]


def furthest(current: MessageStatus | str | None, new: MessageStatus | str) -> MessageStatus:
    """
    Return the status to keep when ``new`` arrives after ``current`` (see :func:`advances`).

    :param current: The status recorded so far, or ``None``.
    :param new: The status just pushed.
    """
    if current is None or advances(current, new):
        return parse_status(new)
    return parse_status(current)


# --------------------------------------------------------------------------------------------- keys and extras


def dedup_key(event: StatusEvent | InboundEvent) -> str:
    """
    Return the key under which a push is recorded once: a re-push of it gives the same key.

    A status push is identified by its application, message id and status (so ``delivered`` and ``read`` of one
    message are two pushes, and a re-pushed ``read`` is the same one); an inbound push by its application and
    message id. The key is ``status:`` or ``inbound:`` followed by a SHA-256 hex digest (at most 72 characters,
    whatever the ids' lengths).

    :param event: A parsed push.
    """
    if isinstance(event, StatusEvent):
        parts = ["status", event.app_id, event.message_id, event.status.value]
    else:
        parts = ["inbound", event.app_id, event.message_id]
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()
    return f"{parts[0]}:{digest}"


def asset_extra(event: StatusEvent | InboundEvent) -> dict[str, Any]:
    """
    Return the ``extra`` of the Airflow asset event for a push (JSON-serialisable).

    Inbound: ``message_id``, ``from`` (digits), ``name``, ``business_phone``, ``type``, ``text``, ``reply``,
    ``location``, ``media``, ``timestamp``, ``raw``. Status: ``message_id``, ``recipient``, ``business_phone``,
    ``status`` (the word), ``failure``, ``timestamp``, ``raw``. ``raw`` is the event's own dict (not a copy).

    :param event: A parsed push.
    """
    if isinstance(event, StatusEvent):
        return {
            "message_id": event.message_id,
            "recipient": event.recipient,
            "business_phone": event.business_phone,
            "status": event.status.value,
            "failure": event.failure,
            "timestamp": event.timestamp,
            "raw": event.raw,
        }
    return {
        "message_id": event.message_id,
        "from": event.from_phone,
        "name": event.name,
        "business_phone": event.business_phone,
        "type": event.type,
        "text": event.text,
        "reply": dict(event.reply) if event.reply is not None else None,
        "location": dict(event.location) if event.location is not None else None,
        "media": dict(event.media) if event.media is not None else None,
        "timestamp": event.timestamp,
        "raw": event.raw,
    }


# --------------------------------------------------------------------------------------------- parsing


def parse_push(body: bytes | bytearray | str | Mapping[str, Any]) -> StatusEvent | InboundEvent:
    """
    Return the typed event of a vendor push.

    :param body: The request body as received (bytes, UTF-8 text) or an already decoded JSON object. A mapping
        is re-encoded to check its size and that it is JSON; ``raw`` is a detached copy either way.
    :raises PushError: 413 when the body is larger than :data:`MAX_PUSH_BYTES`; 400 when it is not JSON, not an
        object, misses or mistypes a required field, or has an unknown ``eventType``.
    """
    data = _decode(body)
    reader = _Reader()
    event_type = _required_text(data, "eventType")
    kind = event_type.lower()
    if kind == STATUS_EVENT:
        return _status_event(data, reader)
    if kind == INBOUND_EVENT:
        return _inbound_event(data, reader)
    _fail("eventType", f"must be {STATUS_EVENT!r} or {INBOUND_EVENT!r}", f"got {_show(event_type)}")


def _decode(body: object) -> dict[str, Any]:
    """Return the JSON object in ``body``, checking its size first."""
    if isinstance(body, Mapping):
        try:
            text = json.dumps(dict(body), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as err:
            _fail("body", "must be JSON", f"the mapping cannot be encoded as JSON ({err})")
        raw: bytes | str = text
        size = len(text.encode("utf-8", "surrogatepass"))
    elif isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        size = len(raw)
    elif isinstance(body, str):
        raw = body
        size = len(body) if len(body) * 4 <= MAX_PUSH_BYTES else len(body.encode("utf-8", "surrogatepass"))
    else:
        _fail("body", "must be a JSON object", f"got {type(body).__name__}")
    if size > MAX_PUSH_BYTES:
        _fail("body", f"at most {MAX_PUSH_BYTES} bytes", f"got {size} bytes", http_status=413)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            _fail("body", "must be UTF-8 JSON", f"byte {err.start} is not UTF-8")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        _fail("body", "must be JSON", _json_problem(err))
    if not isinstance(data, dict):
        _fail("body", "must be a JSON object", f"got a JSON {_json_kind(data)}")
    try:  # "\\ud800" decodes to a lone surrogate, which no database column (UTF-8) can hold
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        _fail("body", "must be JSON in Unicode", f"a string holds the lone surrogate {err.object[err.start]!r}")
    return data


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _json_problem(err: BaseException) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg} at line {err.lineno} column {err.colno}"
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return str(err)


def _json_kind(value: object) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    kinds[type(None)] = "null"
    return kinds.get(type(value), type(value).__name__)


def _status_event(data: dict[str, Any], reader: _Reader) -> StatusEvent:
    sender_key = "form" if data.get("form") is not None or "from" not in data else "from"
    return StatusEvent(
        app_id=_required_text(data, "appId", max_chars=MAX_ID_CHARS),
        channel_type=reader.integer(data, "channelType"),
        message_id=_required_text(data, "messageId", max_chars=MAX_ID_CHARS),
        status=parse_status(data.get("status")),
        billable=reader.boolean(data, "billable"),
        business_phone=_phone(data, sender_key, sender_key, missing="it is missing (neither 'form' nor 'from')"),
        recipient=_phone(data, "recipient", "recipient"),
        failure=_failure(data.get("failure")),
        conversation_id=reader.text(data, "conversationId", strip=True, max_chars=MAX_ID_CHARS),
        expires_at=reader.integer(data, "expiresAt", minimum=0),
        conversation_type=reader.text(data, "conversationType", strip=True),
        timestamp=reader.integer(data, "timestamp", minimum=0),
        raw=data,
        warnings=tuple(reader.warnings),
    )


def _inbound_event(data: dict[str, Any], reader: _Reader) -> InboundEvent:
    app_id = _required_text(data, "appId", max_chars=MAX_ID_CHARS)
    message_id = _required_text(data, "messageId", max_chars=MAX_ID_CHARS)
    business_phone = _phone(data, "businessPhone", "businessPhone")
    sender = data.get("from")
    if isinstance(sender, Mapping):
        from_phone = _phone(sender, "phone", "from.phone")
        name = reader.text(sender, "name", "from.name")
    elif isinstance(sender, str | int) and not isinstance(sender, bool):  # lenient: the number alone
        from_phone = _phone(data, "from", "from")
        name = None
    else:
        _fail("from", "required: an object with 'phone' and 'name'", _missing_or_type(data, "from"))
    message = data.get("message")
    if not isinstance(message, Mapping):
        _fail("message", "required: an object with 'type'", _missing_or_type(data, "message"))
    message_type = _required_text(message, "type", "message.type", max_chars=MAX_TYPE_CHARS)
    kind = message_type.lower()
    content_key = message_type if message_type in message else kind
    content = message.get(content_key)
    content_field = f"message.{content_key}"
    if content is None and kind in MEDIA_TYPES | {"text", "location", "interactive", "button"}:
        reader.warn(content_field, f"a {kind!r} message should carry it", "it is missing")

    text: str | None = None
    if isinstance(content, str):  # lenient: "text": "hello"
        text = content or None
    elif isinstance(content, Mapping):
        text = reader.text(content, "body", f"{content_field}.body")
        if text is None:
            text = reader.text(content, "caption", f"{content_field}.caption")
    elif content is not None:
        reader.warn(content_field, "must be an object", f"got {_json_kind(content)}")

    media: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    reply: dict[str, str | None] | None = None
    if isinstance(content, Mapping):
        if kind in MEDIA_TYPES:
            media = dict(content)
        elif kind == "location":
            location = _location(content, content_field, reader)
        elif kind == "interactive":
            reply = _interactive_reply(content, content_field, reader)
        elif kind == "button":
            reply = {
                "id": reader.text(content, "payload", f"{content_field}.payload"),
                "title": reader.text(content, "text", f"{content_field}.text"),
            }

    return InboundEvent(
        app_id=app_id,
        channel_type=reader.integer(data, "channelType"),
        message_id=message_id,
        timestamp=reader.integer(data, "timestamp", minimum=0),
        business_phone=business_phone,
        from_phone=from_phone,
        name=name,
        type=message_type,
        text=text,
        reply=reply,
        location=location,
        media=media,
        raw=data,
        warnings=tuple(reader.warnings),
    )


def _interactive_reply(content: Mapping[str, Any], path: str, reader: _Reader) -> dict[str, str | None] | None:
    """Return ``{"id", "title"}`` of a reply-button or list-row tap, or ``None`` for other interactive kinds."""
    tap_type = content.get("type")
    keys = [tap_type] if tap_type in _TAP_TYPES else [key for key in _TAP_TYPES if key in content]
    if not keys:
        return None
    tap = content.get(keys[0])
    if not isinstance(tap, Mapping):
        reader.warn(f"{path}.{keys[0]}", "must be an object with 'id' and 'title'", _missing_or_type(content, keys[0]))
        return None
    return {
        "id": reader.text(tap, "id", f"{path}.{keys[0]}.id"),
        "title": reader.text(tap, "title", f"{path}.{keys[0]}.title"),
    }


def _location(content: Mapping[str, Any], path: str, reader: _Reader) -> dict[str, Any]:
    """Return the location object with float coordinates (when they read) and ``name`` / ``address`` present."""
    location = dict(content)
    for key, limit in (("latitude", 90.0), ("longitude", 180.0)):
        value = reader.number(content, key, f"{path}.{key}", limit=limit)
        location[key] = value if value is not None or content.get(key) in (None, "") else content[key]
    for key in ("name", "address"):
        location[key] = reader.text(content, key, f"{path}.{key}")
    return location


def _failure(value: object) -> str | None:
    """Return the failure reason as text: strings as sent (stripped), anything else as its JSON text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------------------------- field readers


def _fail(field: str, rule: str, problem: str, http_status: int = 400) -> NoReturn:
    raise PushError(field, rule, problem, http_status)


def _missing_or_type(data: Mapping[str, Any], key: str) -> str:
    if key not in data:
        return "it is missing"
    value = data[key]
    return "it is null" if value is None else f"got a JSON {_json_kind(value)}"


def _required_text(data: Mapping[str, Any], key: str, field: str | None = None, *, max_chars: int | None = None) -> str:
    """Return a required identifier (a string, or an integer turned into one), stripped, not blank, not too long."""
    field = field or key
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int):
        _fail(field, "required: a string", _missing_or_type(data, key))
    text = str(value).strip()
    if not text:
        _fail(field, "required: a string", "it is blank")
    if max_chars is not None and len(text) > max_chars:
        _fail(field, f"at most {max_chars} characters", f"it has {len(text)}")
    return text


def _phone(data: Mapping[str, Any], key: str, field: str, *, missing: str = "it is missing") -> str:
    """Return the digits of a required phone number (a leading ``+``, spaces, dashes, dots, parentheses removed)."""
    value = data.get(key)
    rule = "required: a phone number, digits only"
    if value is None:
        _fail(field, rule, missing if key not in data else "it is null")
    if isinstance(value, bool) or not isinstance(value, str | int):
        _fail(field, rule, f"got a JSON {_json_kind(value)}")
    text = str(value).strip()
    digits = _PHONE_FORMATTING.sub("", text[1:] if text.startswith("+") else text)
    if not digits:
        _fail(field, rule, "it is blank")
    if not _DIGITS.fullmatch(digits):
        _fail(field, rule, "it has characters other than digits")  # the number itself is not quoted
    if len(digits) > MAX_PHONE_DIGITS:
        _fail(field, f"at most {MAX_PHONE_DIGITS} digits", f"it has {len(digits)} digits")
    return digits


class _Reader:
    """Read optional fields leniently, collecting a warning for each present value that cannot be read."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, field: str, rule: str, problem: str) -> None:
        """Record that optional ``field`` was ignored."""
        self.warnings.append(f"{field}: {rule}; {problem}")

    def text(
        self,
        data: Mapping[str, Any],
        key: str,
        field: str | None = None,
        *,
        strip: bool = False,
        max_chars: int | None = None,
    ) -> str | None:
        """
        Return an optional string (a number is turned into one); ``None`` when absent, null or empty.

        :param strip: Strip surrounding white space (identifiers); texts and names are kept as sent.
        :param max_chars: The most characters (an identifier's column width); a longer value is ignored.
        """
        value = data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.warn(field or key, "must be a string", f"got a JSON {_json_kind(value)}")
            return None
        text = value if isinstance(value, str) else json.dumps(value)
        if strip:
            text = text.strip()
        if max_chars is not None and len(text) > max_chars:
            self.warn(field or key, f"at most {max_chars} characters", f"it has {len(text)}")
            return None
        return text or None

    def integer(self, data: Mapping[str, Any], key: str, *, minimum: int | None = None) -> int | None:
        """Return an optional integer given as a number or a decimal string; ``None`` when absent or unreadable."""
        value = data.get(key)
        if value is None or value == "":
            return None
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and len(value) <= 40:
            text = value.strip()
            if re.fullmatch(r"[+-]?[0-9]+", text):
                number = int(text)
            else:
                try:
                    as_float = float(text)
                except ValueError:
                    as_float = math.nan
                if math.isfinite(as_float) and as_float.is_integer():
                    number = int(as_float)
        if number is None:
            self.warn(key, "must be an integer", f"got {_show(value)}")
            return None
        if minimum is not None and number < minimum:
            self.warn(key, f"must be at least {minimum}", f"got {number}")
            return None
        if not -MAX_INTEGER <= number <= MAX_INTEGER:  # a 64-bit column cannot hold it
            self.warn(key, f"must be at most {MAX_INTEGER}", f"it has {len(str(abs(number)))} digits")
            return None
        return number

    def boolean(self, data: Mapping[str, Any], key: str) -> bool | None:
        """Return an optional boolean given as a bool, ``"true"``/``"false"`` (any case) or ``1``/``0``."""
        value = data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("true", "1", "yes"):
                return True
            if word in ("false", "0", "no"):
                return False
        self.warn(key, "must be true or false", f"got {_show(value)}")
        return None

    def number(self, data: Mapping[str, Any], key: str, field: str, *, limit: float) -> float | None:
        """Return an optional decimal number within ``±limit`` given as a number or a string."""
        value = data.get(key)
        if value is None or value == "":
            return None
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and len(value) <= 40:
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            self.warn(field, "must be a decimal number", f"got {_show(value)}")
            return None
        if not -limit <= number <= limit:
            self.warn(field, f"must be between -{limit:g} and {limit:g}", f"got {number:g}")
            return None
        return number
