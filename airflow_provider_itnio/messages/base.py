"""
What every message model is built on: the :class:`~airflow_provider_itnio.messages.Message` base, the parts
(rows, sections, buttons, contact cards and their pieces), the endpoints, and the models' dict form.

No Airflow import here. A message knows its endpoint and returns its type-specific part of the request body
(:meth:`~airflow_provider_itnio.messages.Message.to_payload`): by default ``{"type": <type>, <type>: {fields}}``,
fields in declaration order, ``None`` and empty lists left out (never sent as ``null``). A part converts to and
from its dict in the API's shape; the message holding it validates it, so that an error names the full path.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar, Self

from airflow_provider_itnio._problems import fail as _fail
from airflow_provider_itnio._problems import show as _show
from airflow_provider_itnio.messages.checks import _EMPTY, _WRONG_TYPE, _check_keys, _mapping, _under

CUSTOM_ENDPOINT = "/wa/custom/sendMsg"
TEMPLATE_ENDPOINT = "/wa/template/sendMsg"


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


class Message:
    """
    Base class: a validated message that knows its endpoint and its type-specific body part.

    ``type_name`` is the API's ``type`` of the message (also the key of its object in the request body).
    """

    endpoint: ClassVar[str] = CUSTOM_ENDPOINT
    type_name: ClassVar[str] = ""

    def to_payload(self) -> dict[str, Any]:
        """Return the type-specific part of the request body, e.g. ``{"type": "text", "text": {"body": "hi"}}``."""
        return {"type": self.type_name, self.type_name: _dump(self)}
