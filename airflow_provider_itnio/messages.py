"""
Message models of the itniotech WhatsApp API.

No Airflow import here. Every model validates every rule of the spec when it is built and raises
:class:`~airflow_provider_itnio.errors.ItnioValidationError` naming the field path (as in the request body,
e.g. ``interactive.action.buttons[1].reply.title``), the rule, the value's problem and, where one exists,
the vendor status code the request would have been answered with.

Messages (each knows its ``endpoint`` and its type-specific body part, :meth:`Message.to_payload`)::

    Text  Image  Document  Audio  Video  Sticker  Location            session ("custom") messages
    ListMessage(Section(Row))  ReplyButtons(Button)  LocationRequest  interactive session messages
    Contacts(Contact(Name, Address, Email, Org, Phone, Url))          contact cards
    Template                                                          template messages (any time)

Parts of a message (rows, sections, buttons, contact cards and their pieces) may be given as the part models
or as plain dicts in the API's shape; they are converted and validated. A part built on its own reports
field paths relative to itself (``reply.title``); inside a message the path is the full one.

Optional text fields that are ``None``, empty or whitespace-only are left out of the payload (never sent
as ``null``), so an optional templated argument that renders to ``""`` simply drops the field.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from airflow_provider_itnio._problems import fail as _fail
from airflow_provider_itnio._problems import show as _show
from airflow_provider_itnio.errors import ItnioValidationError

# Phone numbers have their own module (libphonenumber); re-exported here, where they were first defined.
from airflow_provider_itnio.phones import PHONE_MAX_DIGITS as PHONE_MAX_DIGITS
from airflow_provider_itnio.phones import PHONE_MIN_DIGITS as PHONE_MIN_DIGITS
from airflow_provider_itnio.phones import normalize_phone

__all__ = [
    "CUSTOM_ENDPOINT",
    "TEMPLATE_ENDPOINT",
    "Address",
    "Audio",
    "Button",
    "Contact",
    "Contacts",
    "Document",
    "Email",
    "Image",
    "ListMessage",
    "Location",
    "LocationRequest",
    "Message",
    "Name",
    "Org",
    "Phone",
    "ReplyButtons",
    "Row",
    "Section",
    "Sticker",
    "Template",
    "Text",
    "Url",
    "Video",
    "build_request_body",
    "message_from_dict",
    "normalize_phone",
]

CUSTOM_ENDPOINT = "/wa/custom/sendMsg"
TEMPLATE_ENDPOINT = "/wa/template/sendMsg"

# Limits (the vendor's, plus WhatsApp's own where the vendor says nothing).
MAX_TEXT_BODY = 4096
MAX_CAPTION = 1024
MAX_INTERACTIVE_BODY = 1024
MAX_HEADER = 60
MAX_FOOTER = 60
MAX_LIST_BUTTON = 20
MAX_SECTIONS = 10
MAX_ROWS = 10
MAX_SECTION_TITLE = 24
MAX_ROW_ID = 200
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
MAX_BUTTONS = 3
MAX_BUTTON_ID = 256
MAX_BUTTON_TITLE = 20
MAX_TEMPLATE_NAME = 512
_EMPTY = "-135"  # parameter value empty
_WRONG_TYPE = "-134"  # parameter of the wrong type
_BAD_LINK = "-133"  # malformed link URL
_UNKNOWN_TYPE = "-132"  # unknown message type

_CONTACT_TYPES = ("HOME", "WORK")
_PHONE_TYPES = ("CELL", "MAIN", "IPHONE", "HOME", "WORK")
_TEMPLATE_NAME = re.compile(r"[a-z0-9_]+")
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
_BIRTHDAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DECIMAL = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


# --------------------------------------------------------------------------------------------- checks


@contextmanager
def _under(prefix: str) -> Iterator[None]:
    """Re-raise validation errors of a part with the part's path (``prefix``) in front of the field."""
    try:
        yield
    except ItnioValidationError as err:
        field = prefix if not err.field else f"{prefix}{'' if err.field.startswith('[') else '.'}{err.field}"
        raise ItnioValidationError(field, err.rule, err.problem, err.status) from None


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _require(value: object, field: str, empty: str | None) -> None:
    """Check a required value: not ``None``, not a blank string."""
    if _is_blank(value):
        problem = "it is missing" if value is None else f"got a blank value: {_show(value)}"
        _fail(field, "required", problem, empty)


def _text(value: object, field: str, max_len: int | None = None, *, empty: str | None = _EMPTY) -> str:
    """Return a required, non-blank string of at most ``max_len`` characters."""
    _require(value, field, empty)
    if not isinstance(value, str):
        _fail(field, "must be a string", f"got {type(value).__name__}: {_show(value)}", _WRONG_TYPE)
    if max_len is not None and len(value) > max_len:
        _fail(field, f"at most {max_len} characters", f"got {len(value)} characters: {_show(value)}")
    return value


def _optional_text(value: object, field: str, max_len: int | None = None) -> str | None:
    """Return an optional string: ``None`` when missing or blank, else checked like :func:`_text`."""
    return None if _is_blank(value) else _text(value, field, max_len)


def _one_of(value: object, field: str, choices: Sequence[str], *, required: bool = False) -> str | None:
    """Return a string from ``choices`` (``None`` allowed unless ``required``)."""
    if value is None and not required:
        return None
    text = _text(value, field)
    if text not in choices:
        _fail(field, f"must be one of {', '.join(choices)}", f"got {_show(text)}")
    return text


def _link(value: object, field: str, empty: str | None) -> str:
    """Return a required absolute http(s) URL with a host."""
    link = _text(value, field, empty=empty)
    try:
        parts = urlsplit(link)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # bad IPv6 literal or port
        ok = False
    if not ok or any(char.isspace() for char in link):
        _fail(field, "must be an http(s) URL", f"got {_show(link)}", _BAD_LINK)
    return link


def _coordinate(value: object, field: str, limit: int, empty: str | None) -> str:
    """Return a latitude/longitude given as a number or a decimal string, within ``±limit``, as a string."""
    _require(value, field, empty)
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL.fullmatch(text):
            _fail(field, "must be a decimal number", f"got {_show(value)}", _WRONG_TYPE)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            _fail(field, "must be a decimal number", f"got {_show(value)}", _WRONG_TYPE)
        text = format(Decimal(repr(value)), "f") if isinstance(value, float) else str(value)
    else:
        _fail(field, "must be a decimal number", f"got {type(value).__name__}: {_show(value)}", _WRONG_TYPE)
    if not -limit <= float(text) <= limit:
        _fail(field, f"must be between -{limit} and {limit}", f"got {text}")
    return text


def _number_text(value: object, field: str) -> str:
    """Return a required string, or an integer turned into one (phone numbers and WhatsApp ids in cards)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(value, field)


def _check_keys(data: Mapping[Any, Any], allowed: Sequence[str], prefix: str = "") -> None:
    """Reject keys not in ``allowed`` (typo protection), naming the first unknown key."""
    for key in data:
        if key not in allowed:
            _fail(f"{prefix}{key}", "unknown key", f"{key!r} is not one of: {', '.join(allowed)}")


def _mapping(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _fail(field, "must be an object", f"got {type(value).__name__}: {_show(value)}", _WRONG_TYPE)
    return value


def _build(cls: type[Any], data: object, prefix: str = "") -> Any:
    """Build ``cls`` from a dict whose keys are its constructor's parameters; missing keys become ``None``."""
    mapping = _mapping(data, prefix.rstrip("."))
    params = list(inspect.signature(cls).parameters)
    _check_keys(mapping, params, prefix)
    return cls(**{name: mapping.get(name) for name in params})


def _dump(obj: object) -> dict[str, Any]:
    """Return the API dict of a model: fields in declaration order, parts converted, ``None``/empty left out."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, field.name)
        if isinstance(value, _Part):
            value = value.to_dict()
        elif isinstance(value, tuple | list):
            value = [part.to_dict() if isinstance(part, _Part) else part for part in value] or None
        if value is not None:
            out[field.name] = value
    return out


def _set(obj: object, **values: Any) -> None:
    """Assign attributes of a frozen dataclass (used while it is being built)."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)


class _Part:
    """
    A piece of a message (row, section, button, contact card and its parts).

    A part only holds values: the message it is put in validates it (and every part in it) when the message
    is built, so that an error names the full path, e.g. ``interactive.action.buttons[2].reply.title``.
    """

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """
        Build the part from its dict form in the API's shape.

        :param data: The dict; unknown keys are an error, missing keys count as not given.
        """
        return _build(cls, data)

    def _check(self) -> Self:
        """Return a validated, normalised copy of the part (error fields relative to the part)."""
        raise NotImplementedError

    @classmethod
    def _coerce(cls, value: object, field: str) -> Self:
        """Return the validated part for a part or a dict given at ``field``."""
        with _under(field):
            return (value if isinstance(value, cls) else cls.from_dict(value))._check()

    @classmethod
    def _many(
        cls, value: object, field: str, noun: str, minimum: int = 0, maximum: int | None = None
    ) -> tuple[Self, ...]:
        """Return a list of parts (models or dicts) with ``minimum``..``maximum`` items."""
        if value is None:
            value = ()
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            _fail(field, "must be a list", f"got {type(value).__name__}: {_show(value)}", _WRONG_TYPE)
        if len(value) < minimum:
            _fail(field, f"at least {minimum} {noun}", f"got {len(value)}", _EMPTY)
        if maximum is not None and len(value) > maximum:
            _fail(field, f"at most {maximum} {noun}s", f"got {len(value)}")
        return tuple(cls._coerce(item, f"{field}[{index}]") for index, item in enumerate(value))

    def to_dict(self) -> dict[str, Any]:
        """Return the part in the API's shape (``None`` fields left out)."""
        return _dump(self)


def _check_unique(values: Sequence[tuple[str, str]], rule_noun: str) -> None:
    """``values`` are (field path, value) pairs; a repeated value is an error at its second field."""
    seen: dict[str, str] = {}
    for field, value in values:
        if value in seen:
            _fail(
                field,
                "must be unique within the message",
                f"{_show(value)} is also the {rule_noun} at {seen[value]}",
            )
        seen[value] = field


# ------------------------------------------------------------------------------------------- messages


class Message:
    """Base class: a validated message that knows its endpoint and its type-specific body part."""

    endpoint: ClassVar[str] = CUSTOM_ENDPOINT
    #: The API's ``type`` of the message (also the key of its object in the request body).
    type_name: ClassVar[str] = ""

    def to_payload(self) -> dict[str, Any]:
        """Return the type-specific part of the request body, e.g. ``{"type": "text", "text": {"body": "hi"}}``."""
        return {"type": self.type_name, self.type_name: _dump(self)}


@dataclass(frozen=True)
class Text(Message):
    """
    A text message.

    :param body: The text, at most 4096 characters (WhatsApp formatting such as ``*bold*`` is allowed).
    """

    type_name: ClassVar[str] = "text"
    body: str

    def __post_init__(self) -> None:
        _text(self.body, "text.body", MAX_TEXT_BODY, empty="-115")


def _media(message: Message, link_empty: str) -> None:
    """Check what media messages share: the link, and the caption where the type has one."""
    name = message.type_name
    _link(getattr(message, "link", None), f"{name}.link", link_empty)
    if hasattr(message, "caption"):
        _set(message, caption=_optional_text(message.caption, f"{name}.caption", MAX_CAPTION))


@dataclass(frozen=True)
class Image(Message):
    """
    An image (JPEG or PNG, at most 5 MB) the API fetches from a public URL.

    :param link: Absolute http(s) URL of the image.
    :param caption: Optional caption, at most 1024 characters.
    """

    type_name: ClassVar[str] = "image"
    link: str
    caption: str | None = None

    def __post_init__(self) -> None:
        _media(self, "-117")


@dataclass(frozen=True)
class Document(Message):
    """
    A document (at most 100 MB) the API fetches from a public URL.

    :param link: Absolute http(s) URL of the document.
    :param filename: File name shown to the recipient (required).
    :param caption: Optional caption, at most 1024 characters.
    """

    type_name: ClassVar[str] = "document"
    link: str
    filename: str
    caption: str | None = None

    def __post_init__(self) -> None:
        _media(self, "-125")
        _text(self.filename, "document.filename")


@dataclass(frozen=True)
class Audio(Message):
    """
    An audio file (at most 16 MB) the API fetches from a public URL.

    :param link: Absolute http(s) URL of the audio file.
    """

    type_name: ClassVar[str] = "audio"
    link: str

    def __post_init__(self) -> None:
        _media(self, "-119")


@dataclass(frozen=True)
class Video(Message):
    """
    A video (at most 16 MB) the API fetches from a public URL.

    :param link: Absolute http(s) URL of the video.
    :param caption: Optional caption, at most 1024 characters.
    """

    type_name: ClassVar[str] = "video"
    link: str
    caption: str | None = None

    def __post_init__(self) -> None:
        _media(self, "-121")


@dataclass(frozen=True)
class Sticker(Message):
    """
    A sticker (webp, at most 100 KB) the API fetches from a public URL.

    :param link: Absolute http(s) URL of the sticker.
    """

    type_name: ClassVar[str] = "sticker"
    link: str

    def __post_init__(self) -> None:
        _media(self, "-123")


@dataclass(frozen=True, init=False)
class Location(Message):
    """
    A location pin. Coordinates may be numbers or decimal strings; they are stored and sent as strings.

    :param latitude: Latitude in degrees, -90 to 90.
    :param longitude: Longitude in degrees, -180 to 180.
    :param name: Name of the place (required).
    :param address: Address of the place (required).
    """

    type_name: ClassVar[str] = "location"
    latitude: str
    longitude: str
    name: str
    address: str

    def __init__(self, latitude: float | str, longitude: float | str, name: str, address: str) -> None:
        _set(
            self,
            latitude=_coordinate(latitude, "location.latitude", 90, "-129"),
            longitude=_coordinate(longitude, "location.longitude", 180, "-128"),
            name=_text(name, "location.name"),
            address=_text(address, "location.address"),
        )


# ---------------------------------------------------------------------------------------- interactive


def _interactive(
    kind: str, header: str | None, body: str, footer: str | None, action: dict[str, Any]
) -> dict[str, Any]:
    inner: dict[str, Any] = {"type": kind}
    if header is not None:
        inner["header"] = {"type": "text", "text": header}
    inner["body"] = {"text": body}
    if footer is not None:
        inner["footer"] = {"text": footer}
    inner["action"] = action
    return {"type": "interactive", "interactive": inner}


@dataclass(frozen=True)
class Row(_Part):
    """
    A row of a list message.

    :param id: Id returned in the webhook when the user picks the row; at most 200 characters, unique.
    :param title: Row title, at most 24 characters.
    :param description: Optional description, at most 72 characters.
    """

    id: str
    title: str
    description: str | None = None

    def _check(self) -> Self:
        return replace(
            self,
            id=_text(self.id, "id", MAX_ROW_ID),
            title=_text(self.title, "title", MAX_ROW_TITLE),
            description=_optional_text(self.description, "description", MAX_ROW_DESCRIPTION),
        )


@dataclass(frozen=True)
class Section(_Part):
    """
    A titled group of rows of a list message.

    :param title: Section title, at most 24 characters.
    :param rows: At least one :class:`Row` (or dict ``{"id", "title", "description"}``).
    """

    title: str
    rows: Sequence[Row | Mapping[str, Any]]

    def _check(self) -> Self:
        return replace(
            self,
            title=_text(self.title, "title", MAX_SECTION_TITLE),
            rows=Row._many(self.rows, "rows", "row", 1),
        )


@dataclass(frozen=True, init=False)
class ListMessage(Message):
    """
    An interactive list: a button that opens a menu of up to 10 rows in up to 10 sections.

    :param body: Message text, at most 1024 characters.
    :param button: Label of the button that opens the list, at most 20 characters.
    :param sections: 1-10 :class:`Section` (or dicts in API shape); at most 10 rows in total, row ids unique.
    :param header: Optional header text, at most 60 characters.
    :param footer: Optional footer text, at most 60 characters.
    """

    type_name: ClassVar[str] = "interactive"
    body: str
    button: str
    sections: tuple[Section, ...]
    header: str | None
    footer: str | None

    def __init__(
        self,
        body: str,
        button: str,
        sections: Sequence[Section | Mapping[str, Any]],
        header: str | None = None,
        footer: str | None = None,
    ) -> None:
        where = "interactive.action.sections"
        _set(
            self,
            body=_text(body, "interactive.body.text", MAX_INTERACTIVE_BODY),
            button=_text(button, "interactive.action.button", MAX_LIST_BUTTON),
            sections=Section._many(sections, where, "section", 1, MAX_SECTIONS),
            header=_optional_text(header, "interactive.header.text", MAX_HEADER),
            footer=_optional_text(footer, "interactive.footer.text", MAX_FOOTER),
        )
        rows = [
            (f"{where}[{s}].rows[{r}].id", row.id)
            for s, sec in enumerate(self.sections)
            for r, row in enumerate(sec.rows)
            if isinstance(row, Row)
        ]
        if len(rows) > MAX_ROWS:
            _fail(
                where,
                f"at most {MAX_ROWS} rows in total",
                f"got {len(rows)} rows in {len(self.sections)} sections",
            )
        _check_unique(rows, "row id")

    def to_payload(self) -> dict[str, Any]:
        """Return the ``interactive`` body part of type ``list``."""
        action = {"button": self.button, "sections": [section.to_dict() for section in self.sections]}
        return _interactive("list", self.header, self.body, self.footer, action)


@dataclass(frozen=True)
class Button(_Part):
    """
    A quick-reply button; API shape ``{"type": "reply", "reply": {"id", "title"}}`` (a flat dict also works).

    :param id: Id returned in the webhook when the user taps; at most 256 characters, unique.
    :param title: Button label, at most 20 characters, unique within the message.
    """

    id: str
    title: str

    def _check(self) -> Self:
        return replace(
            self,
            id=_text(self.id, "reply.id", MAX_BUTTON_ID),
            title=_text(self.title, "reply.title", MAX_BUTTON_TITLE),
        )

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """
        Build the button from ``{"type": "reply", "reply": {"id", "title"}}`` or ``{"id", "title"}``.

        :param data: The dict.
        """
        mapping = _mapping(data, "")
        if "reply" not in mapping and "type" not in mapping:
            return _build(cls, mapping)
        _check_keys(mapping, ("type", "reply"))
        _one_of(mapping.get("type"), "type", ("reply",), required=True)
        return _build(cls, mapping.get("reply"), "reply.")

    def to_dict(self) -> dict[str, Any]:
        """Return the button in the API's shape."""
        return {"type": "reply", "reply": {"id": self.id, "title": self.title}}


@dataclass(frozen=True, init=False)
class ReplyButtons(Message):
    """
    An interactive message with 1-3 quick-reply buttons.

    :param body: Message text, at most 1024 characters.
    :param buttons: 1-3 :class:`Button` (or dicts); ids and titles unique within the message.
    :param header: Optional header text, at most 60 characters.
    :param footer: Optional footer text, at most 60 characters.
    """

    type_name: ClassVar[str] = "interactive"
    body: str
    buttons: tuple[Button, ...]
    header: str | None
    footer: str | None

    def __init__(
        self,
        body: str,
        buttons: Sequence[Button | Mapping[str, Any]],
        header: str | None = None,
        footer: str | None = None,
    ) -> None:
        where = "interactive.action.buttons"
        _set(
            self,
            body=_text(body, "interactive.body.text", MAX_INTERACTIVE_BODY),
            buttons=Button._many(buttons, where, "button", 1, MAX_BUTTONS),
            header=_optional_text(header, "interactive.header.text", MAX_HEADER),
            footer=_optional_text(footer, "interactive.footer.text", MAX_FOOTER),
        )
        _check_unique([(f"{where}[{i}].reply.id", b.id) for i, b in enumerate(self.buttons)], "button id")
        _check_unique([(f"{where}[{i}].reply.title", b.title) for i, b in enumerate(self.buttons)], "button title")

    def to_payload(self) -> dict[str, Any]:
        """Return the ``interactive`` body part of type ``button``."""
        action = {"buttons": [button.to_dict() for button in self.buttons]}
        return _interactive("button", self.header, self.body, self.footer, action)


@dataclass(frozen=True)
class LocationRequest(Message):
    """
    An interactive message asking the user to share their location.

    :param body: Message text, at most 1024 characters.
    """

    type_name: ClassVar[str] = "interactive"
    body: str

    def __post_init__(self) -> None:
        _text(self.body, "interactive.body.text", MAX_INTERACTIVE_BODY)

    def to_payload(self) -> dict[str, Any]:
        """Return the ``interactive`` body part of type ``location_request_message``."""
        return _interactive("location_request_message", None, self.body, None, {"name": "send_location"})


# ------------------------------------------------------------------------------------------- contacts


@dataclass(frozen=True)
class Name(_Part):
    """
    The name on a contact card.

    :param formatted_name: Full name as displayed (required).
    :param first_name: Optional first name.
    :param last_name: Optional last name.
    :param middle_name: Optional middle name.
    :param suffix: Optional name suffix.
    :param prefix: Optional name prefix.
    """

    formatted_name: str
    first_name: str | None = None
    last_name: str | None = None
    middle_name: str | None = None
    suffix: str | None = None
    prefix: str | None = None

    def _check(self) -> Self:
        optional = ("first_name", "last_name", "middle_name", "suffix", "prefix")
        return replace(
            self,
            formatted_name=_text(self.formatted_name, "formatted_name"),
            **{name: _optional_text(getattr(self, name), name) for name in optional},
        )


@dataclass(frozen=True)
class Address(_Part):
    """
    A postal address on a contact card (every field optional).

    :param street: Street and number.
    :param city: City.
    :param state: State or province.
    :param zip: Postal code.
    :param country: Country name.
    :param country_code: Country code, e.g. ``US``.
    :param type: ``HOME`` or ``WORK``.
    """

    street: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    country_code: str | None = None
    type: str | None = None

    def _check(self) -> Self:
        texts = ("street", "city", "state", "zip", "country", "country_code")
        return replace(
            self,
            type=_one_of(self.type, "type", _CONTACT_TYPES),
            **{name: _optional_text(getattr(self, name), name) for name in texts},
        )


@dataclass(frozen=True)
class Email(_Part):
    """
    An e-mail address on a contact card.

    :param email: The address (required).
    :param type: Optional ``HOME`` or ``WORK``.
    """

    email: str
    type: str | None = None

    def _check(self) -> Self:
        return replace(self, email=_text(self.email, "email"), type=_one_of(self.type, "type", _CONTACT_TYPES))


@dataclass(frozen=True)
class Org(_Part):
    """
    The organisation on a contact card (every field optional).

    :param company: Company name.
    :param department: Department.
    :param title: Job title.
    """

    company: str | None = None
    department: str | None = None
    title: str | None = None

    def _check(self) -> Self:
        return replace(self, **{n: _optional_text(getattr(self, n), n) for n in ("company", "department", "title")})


@dataclass(frozen=True)
class Phone(_Part):
    """
    A phone number on a contact card (kept as written; an integer is turned into a string).

    :param phone: The number as displayed (required).
    :param type: Optional ``CELL``, ``MAIN``, ``IPHONE``, ``HOME`` or ``WORK``.
    :param wa_id: Optional WhatsApp id of the number.
    """

    phone: str | int
    type: str | None = None
    wa_id: str | int | None = None

    def _check(self) -> Self:
        return replace(
            self,
            phone=_number_text(self.phone, "phone"),
            type=_one_of(self.type, "type", _PHONE_TYPES),
            wa_id=None if _is_blank(self.wa_id) else _number_text(self.wa_id, "wa_id"),
        )


@dataclass(frozen=True)
class Url(_Part):
    """
    A web address on a contact card.

    :param url: The address (required).
    :param type: Optional ``HOME`` or ``WORK``.
    """

    url: str
    type: str | None = None

    def _check(self) -> Self:
        return replace(self, url=_text(self.url, "url"), type=_one_of(self.type, "type", _CONTACT_TYPES))


def _birthday(value: object, field: str) -> str | None:
    """Return an optional birthday ``YYYY-MM-DD`` that is a real date."""
    text = _optional_text(value, field)
    if text is not None:
        try:
            valid = bool(_BIRTHDAY.fullmatch(text)) and bool(date.fromisoformat(text))
        except ValueError:
            valid = False
        if not valid:
            _fail(field, "must be a real date YYYY-MM-DD", f"got {_show(text)}")
    return text


@dataclass(frozen=True)
class Contact(_Part):
    """
    A contact card. Lists are sent in the order given; empty lists are left out.

    :param name: A :class:`Name` (or dict) with at least ``formatted_name``.
    :param birthday: Optional birthday ``YYYY-MM-DD`` (a real date).
    :param addresses: Optional :class:`Address` list (or dicts).
    :param emails: Optional :class:`Email` list (or dicts).
    :param org: Optional :class:`Org` (or dict).
    :param phones: Optional :class:`Phone` list (or dicts).
    :param urls: Optional :class:`Url` list (or dicts).
    """

    name: Name | Mapping[str, Any]
    birthday: str | None = None
    addresses: Sequence[Address | Mapping[str, Any]] | None = None
    emails: Sequence[Email | Mapping[str, Any]] | None = None
    org: Org | Mapping[str, Any] | None = None
    phones: Sequence[Phone | Mapping[str, Any]] | None = None
    urls: Sequence[Url | Mapping[str, Any]] | None = None

    def _check(self) -> Self:
        if self.name is None:
            _fail("name", "required", "it is missing", _EMPTY)
        return replace(
            self,
            name=Name._coerce(self.name, "name"),
            birthday=_birthday(self.birthday, "birthday"),
            addresses=Address._many(self.addresses, "addresses", "address"),
            emails=Email._many(self.emails, "emails", "email"),
            org=None if self.org is None else Org._coerce(self.org, "org"),
            phones=Phone._many(self.phones, "phones", "phone"),
            urls=Url._many(self.urls, "urls", "url"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the card in the API's shape, keys in the order of the vendor's example (alphabetical)."""
        return dict(sorted(_dump(self).items()))


@dataclass(frozen=True, init=False)
class Contacts(Message):
    """
    One or more contact cards.

    :param contacts: At least one :class:`Contact` (or contact-card dict in the API's shape).
    """

    type_name: ClassVar[str] = "contacts"
    contacts: tuple[Contact, ...]

    def __init__(self, contacts: Sequence[Contact | Mapping[str, Any]]) -> None:
        _set(self, contacts=Contact._many(contacts, "contacts", "contact card", 1))

    def to_payload(self) -> dict[str, Any]:
        """``{"type": "contacts", "contacts": [...]}``."""
        return {"type": "contacts", "contacts": [contact.to_dict() for contact in self.contacts]}


# ------------------------------------------------------------------------------------------- template

_PARAMETER_TYPES = {
    "header": ("text", "image", "video", "document", "location"),
    "body": ("text", "currency", "date_time"),
    "button": ("payload", "text"),
}


def _check_parameter(param: object, component_type: str, field: str) -> None:
    """One template parameter: its type allowed for the component, and its value object."""
    mapping = _mapping(param, field)
    kind = _one_of(mapping.get("type"), f"{field}.type", _PARAMETER_TYPES[component_type], required=True)
    assert kind is not None
    _check_keys(mapping, ("type", kind), f"{field}.")
    value = mapping.get(kind)
    where = f"{field}.{kind}"
    if kind in ("text", "payload"):
        _text(value, where)
    elif kind in ("image", "video", "document"):
        media = _mapping(value, where)
        _check_keys(media, ("link", "filename") if kind == "document" else ("link",), f"{where}.")
        _link(media.get("link"), f"{where}.link", _EMPTY)
        _optional_text(media.get("filename"), f"{where}.filename")
    elif kind == "location":
        with _under(field):
            _build(Location, value, "location.")
    elif kind == "currency":
        currency = _mapping(value, where)
        _check_keys(currency, ("fallback_value", "code", "amount_1000"), f"{where}.")
        _text(currency.get("fallback_value"), f"{where}.fallback_value")
        _text(currency.get("code"), f"{where}.code")
        amount = currency.get("amount_1000")
        if not isinstance(amount, int) or isinstance(amount, bool):
            _fail(f"{where}.amount_1000", "must be an integer", f"got {_show(amount)}", _WRONG_TYPE)
    else:  # date_time
        date_time = _mapping(value, where)
        _check_keys(date_time, ("fallback_value",), f"{where}.")
        _text(date_time.get("fallback_value"), f"{where}.fallback_value")


def _check_component(component: object, field: str) -> dict[str, Any]:
    mapping = _mapping(component, field)
    _check_keys(mapping, ("type", "sub_type", "index", "parameters"), f"{field}.")
    kind = _one_of(mapping.get("type"), f"{field}.type", tuple(_PARAMETER_TYPES), required=True)
    assert kind is not None
    parameters = mapping.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, Sequence) or isinstance(parameters, str | bytes):
            _fail(f"{field}.parameters", "must be a list", f"got {_show(parameters)}", _WRONG_TYPE)
        for index, param in enumerate(parameters):
            _check_parameter(param, kind, f"{field}.parameters[{index}]")
    return copy.deepcopy(dict(mapping))


@dataclass(frozen=True, init=False)
class Template(Message):
    """
    A template message (sent to ``/wa/template/sendMsg``; allowed outside the 24-hour window).

    :param name: Name of an approved template: lowercase letters, digits and underscores.
    :param language: Language code of the template, e.g. ``en_US``, ``en``, ``pt_BR``.
    :param components: Optional components in the API's shape, e.g.
        ``[{"type": "body", "parameters": [{"type": "text", "text": "A-1042"}]}]``. Component types:
        ``header`` (parameters ``text``, ``image``, ``video``, ``document``, ``location``), ``body``
        (``text``, ``currency``, ``date_time``), ``button`` (``payload``, ``text``).
    """

    endpoint: ClassVar[str] = TEMPLATE_ENDPOINT
    type_name: ClassVar[str] = "template"
    name: str
    language: str
    components: tuple[dict[str, Any], ...]

    def __init__(self, name: str, language: str, components: Sequence[Mapping[str, Any]] | None = None) -> None:
        name = _text(name, "template.name", MAX_TEMPLATE_NAME)
        if not _TEMPLATE_NAME.fullmatch(name):
            _fail("template.name", "lowercase letters, digits and underscores only", f"got {_show(name)}")
        language = _text(language, "template.language.code")
        if not _LANGUAGE_CODE.fullmatch(language):
            _fail(
                "template.language.code",
                "must be a language code like en, en_US or pt_BR",
                f"got {_show(language)}",
            )
        if components is None:
            components = ()
        if not isinstance(components, Sequence) or isinstance(components, str | bytes):
            _fail("template.components", "must be a list", f"got {_show(components)}", _WRONG_TYPE)
        checked = tuple(_check_component(c, f"template.components[{i}]") for i, c in enumerate(components))
        _set(self, name=name, language=language, components=checked)

    @classmethod
    def with_body_parameters(cls, name: str, language: str, parameters: Sequence[str]) -> Template:
        """
        Build a template whose only component is a body with text parameters (``{{1}}``, ``{{2}}``... in order).

        :param name: Name of the approved template.
        :param language: Language code of the template, e.g. ``en_US``.
        :param parameters: The texts of the body's parameters, in order.
        """
        if not parameters:
            return cls(name, language)
        body = {"type": "body", "parameters": [{"type": "text", "text": text} for text in parameters]}
        return cls(name, language, [body])

    def to_payload(self) -> dict[str, Any]:
        """Return ``{"template": {"name", "language": {"code"}, "components"}}`` (no ``type``)."""
        template: dict[str, Any] = {"name": self.name, "language": {"code": self.language}}
        if self.components:
            template["components"] = copy.deepcopy(list(self.components))
        return {"template": template}


# ------------------------------------------------------------------------------------------ functions


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
