"""
Template messages: :class:`~airflow_provider_itnio.messages.Template`, sent to ``/wa/template/sendMsg``, the only
message that reaches a customer outside the 24-hour window.

No Airflow import here. The name and language are checked, and each component's parameters are checked against
the types its component allows (header: text, image, video, document, location; body: text, currency, date_time;
button: payload, text). The shape only: whether the account has such an approved template, the vendor says.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from airflow_provider_itnio._problems import fail as _fail
from airflow_provider_itnio._problems import show as _show
from airflow_provider_itnio.messages.base import TEMPLATE_ENDPOINT, Message, _build, _set
from airflow_provider_itnio.messages.checks import (
    _EMPTY,
    _WRONG_TYPE,
    MAX_TEMPLATE_NAME,
    _check_keys,
    _link,
    _mapping,
    _one_of,
    _optional_text,
    _text,
    _under,
)
from airflow_provider_itnio.messages.simple import Location

_TEMPLATE_NAME = re.compile(r"[a-z0-9_]+")
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")

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
