"""
How validation failures are told: the offending value shown briefly (:func:`~airflow_provider_itnio._text.show`),
and the error raised. No Airflow import.

Shared by the message models (:mod:`airflow_provider_itnio.messages`) and the phone numbers
(:mod:`airflow_provider_itnio.phones`), so that every refusal reads the same.
"""

from __future__ import annotations

from typing import NoReturn

from airflow_provider_itnio._text import show
from airflow_provider_itnio.errors import ItnioValidationError

__all__ = ["fail", "show"]


def fail(field: str, rule: str, problem: str, status: str | None = None) -> NoReturn:
    """
    Raise :class:`~airflow_provider_itnio.errors.ItnioValidationError`.

    :param field: Path of the offending field in the request body.
    :param rule: The rule that is broken.
    :param problem: What is wrong with the value (showing it with :func:`show`).
    :param status: The vendor status code the request would have been answered with, when one exists.
    """
    raise ItnioValidationError(field, rule, problem, status)
