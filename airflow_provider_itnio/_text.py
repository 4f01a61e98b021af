"""
Text cut for display: one rule for every place the provider shortens a text. No Airflow import.

Two ellipses, each for a reason: ``…`` (one character) in what WhatsApp shows, where every character counts against
a limit (a button title, a list row, a request's subject), and ``...`` (ASCII) in error messages, logs and
template parameters.
"""

from __future__ import annotations

__all__ = ["ASCII_ELLIPSIS", "ELLIPSIS", "cut", "show"]

#: The ellipsis of texts shown on WhatsApp.
ELLIPSIS = "\u2026"
#: The ellipsis of error messages, logs and template parameters.
ASCII_ELLIPSIS = "..."


def cut(text: str, limit: int, *, ellipsis: str = ELLIPSIS) -> str:
    """
    Return ``text`` cut to ``limit`` characters, ending with ``ellipsis`` when it was longer.

    The kept part loses its trailing whitespace (``"a b…"``, never ``"a …"``).

    :param text: The text.
    :param limit: The most characters returned (more than the ellipsis's length).
    :param ellipsis: What marks the cut: :data:`ELLIPSIS` (default) or :data:`ASCII_ELLIPSIS`.
    """
    return text if len(text) <= limit else text[: limit - len(ellipsis)].rstrip() + ellipsis


def show(value: object, limit: int = 40) -> str:
    """
    Return a value for an error message: its repr, cut to about ``limit`` characters.

    :param value: The value as given.
    :param limit: The longest text returned, about (a string's quotes come on top).
    """
    if isinstance(value, str):
        return repr(cut(value, limit, ellipsis=ASCII_ELLIPSIS))
    return cut(repr(value), limit, ellipsis=ASCII_ELLIPSIS)
