"""The sandbox's own checks of request bodies, written from the API spec (server side).

This module deliberately does not use the client's message models (``airflow_provider_itnio.messages``): the
sandbox plays the vendor, so a bug in the client's validation must not be able to hide behind a shared one.
Only the status-code *texts* are shared (``errors.STATUS_CODES``).

Each ``check_*`` function returns ``None`` when the body is acceptable and raises :class:`Rejected` with the
vendor status code otherwise. Codes follow the spec; where the spec names none: ``-134`` for a wrong JSON
type, a wrong shape, too long, too many or nested too deep, and ``-135`` for a missing or empty required value.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_itnio.errors import STATUS_CODES

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

CONNECTED = 7

#: Deepest nesting of arrays/objects accepted in a request body (the spec's bodies nest at most 7 deep);
#: deeper bodies are answered ``-134`` instead of exhausting the recursion limit when copied or encoded.
MAX_JSON_DEPTH = 32

WRONG_TYPE = "-134"
EMPTY = "-135"

MESSAGE_TYPES = (
    "text",
    "image",
    "audio",
    "video",
    "location",
    "document",
    "sticker",
    "interactive",
    "contacts",
)

#: type -> (object empty code, link empty code) for the media types.
MEDIA_CODES: dict[str, tuple[str, str]] = {
    "image": ("-116", "-117"),
    "audio": ("-118", "-119"),
    "video": ("-120", "-121"),
    "sticker": ("-122", "-123"),
    "document": ("-124", "-125"),
}
CAPTION_TYPES = frozenset({"image", "video", "document"})

TEXT_MAX = 4096
HEADER_MAX = 60
BODY_MAX = 1024
FOOTER_MAX = 60
BUTTON_LABEL_MAX = 20
SECTIONS_MAX = 10
ROWS_MAX = 10
SECTION_TITLE_MAX = 24
ROW_ID_MAX = 200
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
BUTTONS_MAX = 3
BUTTON_ID_MAX = 256
BUTTON_TITLE_MAX = 20

CONTACT_ADDRESS_TYPES = frozenset({"HOME", "WORK"})
CONTACT_PHONE_TYPES = frozenset({"CELL", "MAIN", "IPHONE", "HOME", "WORK"})
TEMPLATE_COMPONENT_PARAMS: dict[str, frozenset[str]] = {
    "header": frozenset({"text", "image", "video", "document", "location"}),
    "body": frozenset({"text", "currency", "date_time"}),
    "button": frozenset({"payload", "text"}),
}

_DIGITS = re.compile(r"[0-9]+")
_BIRTHDAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class Rejected(Exception):
    """
    A request the vendor would refuse.

    :param status: The vendor status code, e.g. ``"-115"``.
    :param detail: What is wrong (the field path and the problem); appended to the code's standard reason.
    :param reason: A full reason text replacing the standard one (used for the vendor's own auth texts).
    """

    def __init__(self, status: str, detail: str = "", *, reason: str | None = None) -> None:
        self.status = status
        if reason is None:
            reason = STATUS_CODES.get(status, "error")
            if detail:
                reason = f"{reason}: {detail}"
        self.reason = reason
        super().__init__(f"{status} {reason}")


# --------------------------------------------------------------------------------------------- helpers


class JsonTooDeep(ValueError):
    """JSON that nests arrays/objects deeper than :data:`MAX_JSON_DEPTH`."""

    def __init__(self) -> None:
        super().__init__(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


def load_json(raw: bytes | str) -> Any:
    """
    Parse JSON text, refusing what would break the sandbox later (its log copies and re-encodes every body).

    :param raw: The JSON text (UTF-8 bytes or a string).
    :raises ValueError: When it is not UTF-8 or not JSON.
    :raises JsonTooDeep: When it nests deeper than :data:`MAX_JSON_DEPTH`.
    """
    try:
        data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except RecursionError:  # the decoder's own recursion limit: far deeper than MAX_JSON_DEPTH
        raise JsonTooDeep from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise JsonTooDeep
    return data


def json_depth(value: Any) -> int:
    """
    Return how deeply a parsed JSON value nests arrays and objects (a scalar is 0, ``[]`` and ``{}`` are 1).

    The walk is iterative and keeps one iterator per level, so neither the recursion limit nor memory is at
    risk; it stops as soon as the depth passes :data:`MAX_JSON_DEPTH` (and returns that depth).

    :param value: A value returned by :func:`json.loads`.
    """
    if not isinstance(value, dict | list):
        return 0
    open_levels: list[Iterator[Any]] = [iter(_children(value))]
    deepest = 1
    while open_levels:
        child = next(open_levels[-1], _END)
        if child is _END:
            open_levels.pop()
        elif isinstance(child, dict | list):
            open_levels.append(iter(_children(child)))
            deepest = max(deepest, len(open_levels))
            if deepest > MAX_JSON_DEPTH:
                break
    return deepest


_END = object()


def _children(container: dict[str, Any] | list[Any]) -> Iterable[Any]:
    return container.values() if isinstance(container, dict) else container


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """
    Parse a request body that must be a JSON object.

    :param raw: The raw request body.
    :raises Rejected: ``-134`` when it is not UTF-8 JSON, not an object, or nested deeper than
        :data:`MAX_JSON_DEPTH`.
    """
    try:
        data = load_json(raw)
    except JsonTooDeep as exc:
        raise Rejected(WRONG_TYPE, f"request body is {exc}") from None
    except ValueError as exc:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
        raise Rejected(WRONG_TYPE, f"request body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise Rejected(WRONG_TYPE, "request body must be a JSON object")
    return data


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _required_str(obj: Mapping[str, Any], key: str, path: str, *, empty: str = EMPTY) -> str:
    """Return a required string field: missing/None/"" -> ``empty`` code, not a string -> -134."""
    value = obj.get(key)
    if value is None or value == "":
        raise Rejected(empty, f"{path} is required")
    if not isinstance(value, str):
        raise Rejected(WRONG_TYPE, f"{path} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise Rejected(empty, f"{path} is blank")
    return value


def _optional_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejected(WRONG_TYPE, f"{path} must be a string, got {type(value).__name__}")
    return value


def _max_len(value: str, limit: int, path: str) -> None:
    if len(value) > limit:
        raise Rejected(WRONG_TYPE, f"{path} must be at most {limit} characters, has {len(value)}")


def _object(obj: Mapping[str, Any], key: str, path: str, *, empty: str = EMPTY) -> dict[str, Any]:
    """Return a required JSON object: missing/None/{} -> ``empty`` code, not an object -> -134."""
    value = obj.get(key)
    if value is None or value == {}:
        raise Rejected(empty, f"{path} is required and must not be empty")
    if not isinstance(value, dict):
        raise Rejected(WRONG_TYPE, f"{path} must be an object, got {type(value).__name__}")
    return value


def _optional_object(obj: Mapping[str, Any], key: str, path: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Rejected(WRONG_TYPE, f"{path} must be an object, got {type(value).__name__}")
    return value


def _list(obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    """Return a required non-empty JSON array: missing/None/[] -> -135, not an array -> -134."""
    value = obj.get(key)
    if value is None or value == []:
        raise Rejected(EMPTY, f"{path} is required and must not be empty")
    if not isinstance(value, list):
        raise Rejected(WRONG_TYPE, f"{path} must be an array, got {type(value).__name__}")
    return value


def _optional_list(obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Rejected(WRONG_TYPE, f"{path} must be an array, got {type(value).__name__}")
    return value


def _item_object(item: object, path: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise Rejected(WRONG_TYPE, f"{path} must be an object, got {type(item).__name__}")
    return item


def _check_link(link: str, path: str) -> None:
    problem = f"{path} must be an http(s) URL, got {link!r}"
    try:
        parts = urlsplit(link)
        _ = parts.port  # raises ValueError for a port that is not a number in 0-65535
    except ValueError:  # e.g. a broken IPv6 literal "http://[::1/x.png"
        raise Rejected("-133", problem) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in link):
        raise Rejected("-133", problem)


def _check_phone(body: Mapping[str, Any], key: str, codes: tuple[str, str, str]) -> str:
    """Return a phone field: a string of 7-14 digits. ``codes`` = (too long, too short, not digits)."""
    too_long, too_short, not_digits = codes
    value = body.get(key)
    if value is None or value == "":
        raise Rejected(EMPTY, f"{key} is required")
    if not isinstance(value, str):
        raise Rejected(WRONG_TYPE, f"{key} must be a string of digits, got {type(value).__name__}")
    if not _DIGITS.fullmatch(value):
        raise Rejected(not_digits, f"{key} must contain digits only, got {value!r}")
    if len(value) > 14:
        raise Rejected(too_long, f"{key} has {len(value)} digits")
    if len(value) < 7:
        raise Rejected(too_short, f"{key} has {len(value)} digits")
    return value


# --------------------------------------------------------------------------------------------- envelope


def check_app_id(value: object, app_id: str) -> None:
    """
    Check an ``appId`` against the account's application.

    :param value: The ``appId`` from the request body.
    :param app_id: The account's application id.
    :raises Rejected: ``-134`` wrong type, ``-135`` empty, ``-2`` unknown for this key.
    """
    if value is None or value == "":
        raise Rejected(EMPTY, "appId is required")
    if not isinstance(value, str):
        raise Rejected(WRONG_TYPE, f"appId must be a string, got {type(value).__name__}")
    if value != app_id:
        raise Rejected("-2", reason="appId not found for this key")


def check_envelope(body: Mapping[str, Any], app_id: str, phone_statuses: Mapping[str, int]) -> None:
    """
    Check the fields common to custom and template messages.

    :param body: The parsed request body.
    :param app_id: The account's application id.
    :param phone_statuses: The account's business phones and their status (7 = CONNECTED).
    :raises Rejected: With the vendor's code for the first problem found.
    """
    check_app_id(body.get("appId"), app_id)
    phone = _check_phone(body, "businessPhone", ("-93", "-94", "-95"))
    if phone not in phone_statuses:
        raise Rejected("-96", f"businessPhone {phone} is not registered for this app")
    if phone_statuses[phone] != CONNECTED:
        raise Rejected("-97", f"businessPhone {phone} has status {phone_statuses[phone]}, not 7 (CONNECTED)")
    _check_phone(body, "recipient", ("-70", "-71", "-72"))
    channel = body.get("channelType")
    if isinstance(channel, bool) or not isinstance(channel, int) or channel != 0:
        raise Rejected("-112", f"channelType must be the integer 0, got {json.dumps(channel)}")


# --------------------------------------------------------------------------------------------- custom


def check_custom_message(body: Mapping[str, Any], app_id: str, phone_statuses: Mapping[str, int]) -> None:
    """
    Check a ``/wa/custom/sendMsg`` body.

    :param body: The parsed request body.
    :param app_id: The account's application id.
    :param phone_statuses: The account's business phones and their status.
    :raises Rejected: With the vendor's code for the first problem found.
    """
    check_envelope(body, app_id, phone_statuses)
    kind = body.get("type")
    if kind is not None and not isinstance(kind, str):
        raise Rejected(WRONG_TYPE, f"type must be a string, got {type(kind).__name__}")
    if kind not in MESSAGE_TYPES:
        raise Rejected("-132", f"type must be one of {', '.join(MESSAGE_TYPES)}, got {json.dumps(kind)}")
    if "context" in body:
        context = _object(body, "context", "context")
        _required_str(context, "refMessageId", "context.refMessageId")
    if kind == "text":
        _check_text(body)
    elif kind in MEDIA_CODES:
        _check_media(body, kind)
    elif kind == "location":
        _check_location(body)
    elif kind == "contacts":
        _check_contacts(body)
    else:
        _check_interactive(body)


def _check_text(body: Mapping[str, Any]) -> None:
    text = _object(body, "text", "text", empty="-114")
    value = _required_str(text, "body", "text.body", empty="-115")
    _max_len(value, TEXT_MAX, "text.body")


def _check_media(body: Mapping[str, Any], kind: str) -> None:
    object_code, link_code = MEDIA_CODES[kind]
    media = _object(body, kind, kind, empty=object_code)
    link = _required_str(media, "link", f"{kind}.link", empty=link_code)
    _check_link(link, f"{kind}.link")
    if kind in CAPTION_TYPES:
        _optional_str(media, "caption", f"{kind}.caption")
    if kind == "document":
        _required_str(media, "filename", "document.filename")


def _check_location(body: Mapping[str, Any]) -> None:
    location = _object(body, "location", "location", empty="-127")
    for key, code, limit in (("longitude", "-128", 180.0), ("latitude", "-129", 90.0)):
        value = _required_str(location, key, f"location.{key}", empty=code)
        try:
            number = float(value)
        except ValueError:
            raise Rejected(WRONG_TYPE, f"location.{key} must be a decimal number, got {value!r}") from None
        if not -limit <= number <= limit:
            raise Rejected(WRONG_TYPE, f"location.{key} must be within ±{limit:g}, got {value}")
    _required_str(location, "name", "location.name")
    _required_str(location, "address", "location.address")


def _check_contacts(body: Mapping[str, Any]) -> None:
    cards = _list(body, "contacts", "contacts")
    for i, item in enumerate(cards):
        path = f"contacts[{i}]"
        card = _item_object(item, path)
        name = _object(card, "name", f"{path}.name")
        _required_str(name, "formatted_name", f"{path}.name.formatted_name")
        for key in ("first_name", "last_name", "middle_name", "suffix", "prefix"):
            _optional_str(name, key, f"{path}.name.{key}")
        birthday = _optional_str(card, "birthday", f"{path}.birthday")
        if birthday is not None and not _BIRTHDAY.fullmatch(birthday):
            raise Rejected(WRONG_TYPE, f"{path}.birthday must be YYYY-MM-DD, got {birthday!r}")
        _check_contact_list(card, path, "addresses", None, CONTACT_ADDRESS_TYPES)
        _check_contact_list(card, path, "emails", "email", CONTACT_ADDRESS_TYPES)
        _check_contact_list(card, path, "phones", "phone", CONTACT_PHONE_TYPES)
        _check_contact_list(card, path, "urls", "url", CONTACT_ADDRESS_TYPES)
        org = _optional_object(card, "org", f"{path}.org")
        if org is not None:
            for key in ("company", "department", "title"):
                _optional_str(org, key, f"{path}.org.{key}")


def _check_contact_list(
    card: Mapping[str, Any], path: str, key: str, required: str | None, types: frozenset[str]
) -> None:
    for j, item in enumerate(_optional_list(card, key, f"{path}.{key}")):
        entry_path = f"{path}.{key}[{j}]"
        entry = _item_object(item, entry_path)
        if required is not None:
            _required_str(entry, required, f"{entry_path}.{required}")
        for field, value in entry.items():
            if not isinstance(value, str):
                raise Rejected(WRONG_TYPE, f"{entry_path}.{field} must be a string")
        kind = entry.get("type")
        if kind is not None and kind not in types:
            raise Rejected(WRONG_TYPE, f"{entry_path}.type must be one of {'|'.join(sorted(types))}")


# --------------------------------------------------------------------------------------------- interactive


def _check_interactive(body: Mapping[str, Any]) -> None:
    inter = _object(body, "interactive", "interactive")
    kind = _required_str(inter, "type", "interactive.type")
    body_part = _object(inter, "body", "interactive.body")
    _max_len(_required_str(body_part, "text", "interactive.body.text"), BODY_MAX, "interactive.body.text")
    if kind == "location_request_message":
        action = _object(inter, "action", "interactive.action")
        if action != {"name": "send_location"}:
            raise Rejected(WRONG_TYPE, 'interactive.action must be {"name": "send_location"}')
        return
    if kind not in ("list", "button"):
        raise Rejected(
            WRONG_TYPE,
            f"interactive.type must be list, button or location_request_message, got {kind!r}",
        )
    header = _optional_object(inter, "header", "interactive.header")
    if header is not None:
        if header.get("type") != "text":
            raise Rejected(WRONG_TYPE, 'interactive.header.type must be "text"')
        _max_len(_required_str(header, "text", "interactive.header.text"), HEADER_MAX, "interactive.header.text")
    footer = _optional_object(inter, "footer", "interactive.footer")
    if footer is not None:
        _max_len(_required_str(footer, "text", "interactive.footer.text"), FOOTER_MAX, "interactive.footer.text")
    action = _object(inter, "action", "interactive.action")
    if kind == "list":
        _check_list_action(action)
    else:
        _check_button_action(action)


def _check_list_action(action: Mapping[str, Any]) -> None:
    label = _required_str(action, "button", "interactive.action.button")
    _max_len(label, BUTTON_LABEL_MAX, "interactive.action.button")
    sections = _list(action, "sections", "interactive.action.sections")
    if len(sections) > SECTIONS_MAX:
        raise Rejected(WRONG_TYPE, f"interactive.action.sections: at most {SECTIONS_MAX}, got {len(sections)}")
    total_rows = 0
    for i, item in enumerate(sections):
        path = f"interactive.action.sections[{i}]"
        section = _item_object(item, path)
        if len(sections) > 1 or "title" in section:
            _max_len(_required_str(section, "title", f"{path}.title"), SECTION_TITLE_MAX, f"{path}.title")
        rows = _list(section, "rows", f"{path}.rows")
        total_rows += len(rows)
        if total_rows > ROWS_MAX:
            raise Rejected(WRONG_TYPE, f"interactive.action.sections: at most {ROWS_MAX} rows in total")
        for j, row_item in enumerate(rows):
            row_path = f"{path}.rows[{j}]"
            row = _item_object(row_item, row_path)
            _max_len(_required_str(row, "id", f"{row_path}.id"), ROW_ID_MAX, f"{row_path}.id")
            _max_len(_required_str(row, "title", f"{row_path}.title"), ROW_TITLE_MAX, f"{row_path}.title")
            description = _optional_str(row, "description", f"{row_path}.description")
            if description is not None:
                _max_len(description, ROW_DESCRIPTION_MAX, f"{row_path}.description")


def _check_button_action(action: Mapping[str, Any]) -> None:
    buttons = _list(action, "buttons", "interactive.action.buttons")
    if len(buttons) > BUTTONS_MAX:
        raise Rejected(WRONG_TYPE, f"interactive.action.buttons: at most {BUTTONS_MAX}, got {len(buttons)}")
    titles: set[str] = set()
    for i, item in enumerate(buttons):
        path = f"interactive.action.buttons[{i}]"
        button = _item_object(item, path)
        if button.get("type") != "reply":
            raise Rejected(WRONG_TYPE, f'{path}.type must be "reply"')
        reply = _object(button, "reply", f"{path}.reply")
        _max_len(_required_str(reply, "id", f"{path}.reply.id"), BUTTON_ID_MAX, f"{path}.reply.id")
        title = _required_str(reply, "title", f"{path}.reply.title")
        _max_len(title, BUTTON_TITLE_MAX, f"{path}.reply.title")
        if title in titles:
            raise Rejected(WRONG_TYPE, f"{path}.reply.title {title!r} is not unique")
        titles.add(title)


# --------------------------------------------------------------------------------------------- template


def check_template_message(body: Mapping[str, Any], app_id: str, phone_statuses: Mapping[str, int]) -> None:
    """
    Check a ``/wa/template/sendMsg`` body.

    :param body: The parsed request body.
    :param app_id: The account's application id.
    :param phone_statuses: The account's business phones and their status.
    :raises Rejected: With the vendor's code for the first problem found.
    """
    check_envelope(body, app_id, phone_statuses)
    template = _object(body, "template", "template")
    _required_str(template, "name", "template.name")
    language = _object(template, "language", "template.language")
    _required_str(language, "code", "template.language.code")
    for i, item in enumerate(_optional_list(template, "components", "template.components")):
        path = f"template.components[{i}]"
        component = _item_object(item, path)
        kind = _required_str(component, "type", f"{path}.type")
        if kind not in TEMPLATE_COMPONENT_PARAMS:
            raise Rejected(WRONG_TYPE, f"{path}.type must be header, body or button, got {kind!r}")
        allowed = TEMPLATE_COMPONENT_PARAMS[kind]
        for j, param_item in enumerate(_optional_list(component, "parameters", f"{path}.parameters")):
            _check_template_parameter(_item_object(param_item, f"{path}.parameters[{j}]"), allowed, path, j)


def _check_template_parameter(param: Mapping[str, Any], allowed: frozenset[str], path: str, j: int) -> None:
    param_path = f"{path}.parameters[{j}]"
    kind = _required_str(param, "type", f"{param_path}.type")
    if kind not in allowed:
        raise Rejected(WRONG_TYPE, f"{param_path}.type must be one of {', '.join(sorted(allowed))}")
    if kind in ("text", "payload"):
        _required_str(param, kind, f"{param_path}.{kind}")
    elif kind in ("image", "video", "document"):
        media = _object(param, kind, f"{param_path}.{kind}")
        link = _required_str(media, "link", f"{param_path}.{kind}.link")
        _check_link(link, f"{param_path}.{kind}.link")
    elif kind == "location":
        location = _object(param, "location", f"{param_path}.location")
        for key in ("latitude", "longitude", "name", "address"):
            _required_str(location, key, f"{param_path}.location.{key}")
    else:  # currency, date_time: an object named like the type
        _object(param, kind, f"{param_path}.{kind}")


# --------------------------------------------------------------------------------------------- query


def check_phone_query(body: Mapping[str, Any], app_id: str) -> tuple[int, int, list[str] | None]:
    """
    Check a ``/wa/queryBusinessPhoneInfo`` body.

    :param body: The parsed request body.
    :param app_id: The account's application id.
    :return: ``(current, size, phone_numbers)``; ``phone_numbers`` is None when no filter was given.
    :raises Rejected: ``-134`` wrong types, ``-2`` an appId that is not the account's.
    """
    current = body.get("current", 1)
    size = body.get("size", 10)
    for key, value in (("current", current), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise Rejected(WRONG_TYPE, f"{key} must be a positive integer")
    params = _optional_object(body, "params", "params") or {}
    for app in _optional_list(params, "appIds", "params.appIds"):
        check_app_id(app, app_id)
    numbers = params.get("phoneNumbers")
    if numbers is None or numbers == []:
        return current, size, None
    if not isinstance(numbers, list) or not all(_is_str(n) for n in numbers):
        raise Rejected(WRONG_TYPE, "params.phoneNumbers must be an array of strings")
    return current, size, list(numbers)
