"""
How validation failures are told: the offending value shown briefly, and the error raised. No Airflow import.

Shared by the message models (:mod:`airflow_provider_itnio.messages`) and the phone numbers
(:mod:`airflow_provider_itnio.phones`), so that every refusal reads the same.
"""

from __future__ import annotations

from typing import NoReturn

from airflow_provider_itnio.errors import ItnioValidationError


def show(value: object, limit: int = 40) -> str:
    """
    Return a value for an error message: its repr, truncated to about ``limit`` characters.

    :param value: The value as given.
    :param limit: The longest text returned, about.
    """
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[: limit - 3] + "...")
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fail(field: str, rule: str, problem: str, status: str | None = None) -> NoReturn:
    """
    Raise :class:`~airflow_provider_itnio.errors.ItnioValidationError`.

    :param field: Path of the offending field in the request body.
    :param rule: The rule that is broken.
    :param problem: What is wrong with the value (showing it with :func:`show`).
    :param status: The vendor status code the request would have been answered with, when one exists.
    """
    raise ItnioValidationError(field, rule, problem, status)
