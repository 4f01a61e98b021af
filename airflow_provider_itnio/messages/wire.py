"""
The wire format, both ways: the whole request body of a send
(:func:`~airflow_provider_itnio.messages.build_request_body`) and the model for the API's dict form
(:func:`~airflow_provider_itnio.messages.message_from_dict`, the inverse of
:meth:`~airflow_provider_itnio.messages.Message.to_payload`).

No Airflow import here. Operators keep a message in its dict form (so that Airflow can render and serialise it)
and turn it back into a model here, which validates it; the hook builds the body it posts here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_itnio._problems import fail as _fail
from airflow_provider_itnio._problems import show as _show
from airflow_provider_itnio.errors import ItnioValidationError
from airflow_provider_itnio.messages.base import TEMPLATE_ENDPOINT, Message, _build
from airflow_provider_itnio.messages.checks import (
    _EMPTY,
    _UNKNOWN_TYPE,
    _WRONG_TYPE,
    _check_keys,
    _mapping,
    _one_of,
    _optional_text,
    _text,
)
from airflow_provider_itnio.messages.contacts import Contacts
from airflow_provider_itnio.messages.interactive import ListMessage, LocationRequest, ReplyButtons
from airflow_provider_itnio.messages.simple import Audio, Document, Image, Location, Sticker, Text, Video
from airflow_provider_itnio.messages.template import Template
from airflow_provider_itnio.phones import normalize_phone

_ENVELOPE = ("appId", "businessPhone", "recipient", "channelType", "context")
_SIMPLE_TYPES: dict[str, type[Message]] = {
    cls.type_name: cls for cls in (Text, Image, Audio, Video, Sticker, Document, Location)
}
#: The status code for a missing/empty object named like the type (``-135`` where the vendor has none).
_OBJECT_EMPTY = {
    "text": "-114",
    "image": "-116",
    "audio": "-118",
    "video": "-120",
    "sticker": "-122",
    "document": "-124",
    "location": "-127",
    "interactive": _EMPTY,
    "contacts": _EMPTY,
    "template": _EMPTY,
}


def _inner_text(value: object, field: str, keys: Sequence[str] = ("text",)) -> Any:
    """``text`` of an interactive ``{"text": ...}`` object (``None`` when the object is absent)."""
    if value is None:
        return None
    mapping = _mapping(value, field)
    _check_keys(mapping, keys, f"{field}.")
    return mapping.get("text")


def _interactive_from_dict(data: Mapping[str, Any]) -> Message:
    kinds = ("list", "button", "location_request_message")
    kind = data.get("type")
    if kind not in kinds:
        _fail("interactive.type", f"must be one of {', '.join(kinds)}", f"got {_show(kind)}", _UNKNOWN_TYPE)
    if kind == "location_request_message":
        _check_keys(data, ("type", "body", "action"), "interactive.")
        action = data.get("action")
        if action is not None and action != {"name": "send_location"}:
            _fail("interactive.action", "must be {'name': 'send_location'}", f"got {_show(action)}")
        return LocationRequest(_inner_text(data.get("body"), "interactive.body"))
    _check_keys(data, ("type", "header", "body", "footer", "action"), "interactive.")
    header = data.get("header")
    if header is not None:
        _one_of(
            _mapping(header, "interactive.header").get("type"),
            "interactive.header.type",
            ("text",),
            required=True,
        )
    texts = {
        "header": _inner_text(header, "interactive.header", ("type", "text")),
        "body": _inner_text(data.get("body"), "interactive.body"),
        "footer": _inner_text(data.get("footer"), "interactive.footer"),
    }
    action = _mapping(data.get("action") or {}, "interactive.action")
    if kind == "list":
        _check_keys(action, ("button", "sections"), "interactive.action.")
        return ListMessage(button=action.get("button"), sections=action.get("sections"), **texts)  # type: ignore[arg-type]
    _check_keys(action, ("buttons",), "interactive.action.")
    return ReplyButtons(buttons=action.get("buttons"), **texts)  # type: ignore[arg-type]


def _template_from_dict(data: Mapping[str, Any]) -> Template:
    _check_keys(data, ("name", "language", "components"), "template.")
    language = data.get("language")
    if isinstance(language, Mapping):
        _check_keys(language, ("code",), "template.language.")
        language = language.get("code")
    return Template(data.get("name"), language, data.get("components"))  # type: ignore[arg-type]


def message_from_dict(data: Mapping[str, Any]) -> Message:
    """
    Build (and so validate) the model for the API's dict form; the inverse of :meth:`Message.to_payload`.

    Accepts the type-specific part (``{"type": "text", "text": {...}}``, ``{"template": {...}}``) or a whole
    request body, whose envelope keys (``appId``, ``businessPhone``, ``recipient``, ``channelType``,
    ``context``) are ignored. Any other unknown key is an error.

    :param data: The dict.
    :return: The message model.
    """
    if not isinstance(data, Mapping):
        _fail("message", "must be an object", f"got {type(data).__name__}: {_show(data)}", _WRONG_TYPE)
    kind = data.get("type")
    if kind is None and "template" in data:
        kind = "template"
    if kind is None:
        _fail("type", "required", "the message has neither 'type' nor 'template'", _UNKNOWN_TYPE)
    if not isinstance(kind, str) or kind not in _OBJECT_EMPTY:
        _fail("type", f"must be one of {', '.join(_OBJECT_EMPTY)}", f"got {_show(kind)}", _UNKNOWN_TYPE)
    _check_keys(data, (*_ENVELOPE, "type", kind))
    obj = data.get(kind)
    if obj is None or (isinstance(obj, Mapping | Sequence) and len(obj) == 0):
        _fail(kind, f"the {kind} object is required", "it is missing or empty", _OBJECT_EMPTY[kind])
    if kind == "contacts":
        return Contacts(obj)
    obj = _mapping(obj, kind)
    if kind in _SIMPLE_TYPES:
        return _build(_SIMPLE_TYPES[kind], obj, f"{kind}.")
    if kind == "template":
        return _template_from_dict(obj)
    return _interactive_from_dict(obj)


def build_request_body(
    *,
    app_id: str,
    business_phone: object,
    recipient: object,
    message: Message,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """
    Return the whole request body: appId, businessPhone, recipient, channelType 0, the message, context.

    :param app_id: The application id (``appId``).
    :param business_phone: The sender number; normalised with :func:`normalize_phone`.
    :param recipient: The recipient's number; normalised with :func:`normalize_phone`.
    :param message: The message model.
    :param reply_to: Optional id of an earlier (inbound) message to quote (``context.refMessageId``);
        ``None`` or an empty string sends no context.
    :return: The body, ready to be sent as JSON to ``message.endpoint``.
    """
    if not isinstance(message, Message):
        raise TypeError(f"message must be a Message model, got {type(message).__name__}")
    body: dict[str, Any] = {
        "appId": _text(app_id, "appId"),
        "businessPhone": normalize_phone(business_phone, "businessPhone"),
        "recipient": normalize_phone(recipient, "recipient"),
        "channelType": 0,
        **message.to_payload(),
    }
    reference = _optional_text(reply_to, "context.refMessageId")
    if reference is not None:
        if message.endpoint == TEMPLATE_ENDPOINT:
            raise ItnioValidationError(
                "context.refMessageId",
                "not allowed on template messages (the template endpoint cannot quote a message)",
                f"got {reference!r}",
            )
        body["context"] = {"refMessageId": reference}
    return body
