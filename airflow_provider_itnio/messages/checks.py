"""
The field checks every message family shares, and the limits and status codes they apply.

No Airflow import here. Each check returns the value it accepts (normalised where the rule says so: a
coordinate as a decimal string, an integer phone number as text) or raises
:class:`~airflow_provider_itnio.errors.ItnioValidationError` naming the field path, the rule, the value's problem
and, where the vendor has one, the status code the request would have been answered with.

The limits are the vendor's (``POST /wa/custom/sendMsg`` and ``/wa/template/sendMsg``), plus WhatsApp's own where
the vendor says nothing; the models read them from here, and the package re-exports them
(``airflow_provider_itnio.messages.MAX_TEXT_BODY``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_itnio._problems import fail as _fail
from airflow_provider_itnio._problems import show as _show
from airflow_provider_itnio.errors import ItnioValidationError

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

_DECIMAL = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


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
