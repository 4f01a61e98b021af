"""
The interactive session messages: a list (:class:`~airflow_provider_itnio.messages.ListMessage` of
:class:`~airflow_provider_itnio.messages.Section` of :class:`~airflow_provider_itnio.messages.Row`), quick-reply
buttons (:class:`~airflow_provider_itnio.messages.ReplyButtons` of :class:`~airflow_provider_itnio.messages.Button`)
and a location request.

No Airflow import here. All three are sent as ``{"type": "interactive", "interactive": {"type": ...}}``, with the
vendor's limits and WhatsApp's own (header, body, footer, button label); row ids, button ids and button titles
are unique within the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

from airflow_provider_itnio._problems import fail as _fail
from airflow_provider_itnio.messages.base import Message, _build, _Part, _set
from airflow_provider_itnio.messages.checks import (
    MAX_BUTTON_ID,
    MAX_BUTTON_TITLE,
    MAX_BUTTONS,
    MAX_FOOTER,
    MAX_HEADER,
    MAX_INTERACTIVE_BODY,
    MAX_LIST_BUTTON,
    MAX_ROW_DESCRIPTION,
    MAX_ROW_ID,
    MAX_ROW_TITLE,
    MAX_ROWS,
    MAX_SECTION_TITLE,
    MAX_SECTIONS,
    _check_keys,
    _check_unique,
    _mapping,
    _one_of,
    _optional_text,
    _text,
)


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
