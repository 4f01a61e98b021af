"""
Phone numbers: parse what people write into the digits the API takes, with Google's libphonenumber.

No Airflow import here. Every recipient and business phone goes through :func:`parse_phone` (or
:func:`normalize_phone`, its digits), wherever a send starts: the message models' request body, the operators'
parse-time checks, the batch's de-duplication, the notifiers, the 24-hour-window lookup and the receiver's read
API. One number therefore has one form everywhere: its E.164 digits without the ``+`` (``442079460958``), which is
what the API takes and what the vendor's pushes carry.

libphonenumber knows each country's calling code, national (trunk) prefixes, number lengths and assigned
ranges. A number is refused (:class:`~airflow_provider_itnio.errors.ItnioValidationError` naming the field, the
rule and the number as given) when it cannot exist: no such country code, too short or too long for its country.
A number that can exist but lies in no range its country has assigned (``is_valid_number`` false: test numbers
such as ``+1 555 0100...`` and ``+44 7700 900...``, the vendor's own examples such as ``91856321321``, or a range
newer than the library's data) is accepted; the hook logs a warning when it sends to one, and refuses it when
``strict_phone_numbers`` is on (:data:`~airflow_provider_itnio.connection_fields.STRICT_PHONE_NUMBERS_EXTRA`).

``phonenumbers`` is imported on the first number parsed, not with this module: DAG files import the operators
at every parse, and most take their numbers from templates, which are only parsed when the task runs.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from airflow_provider_itnio._problems import fail as _fail
from airflow_provider_itnio._problems import show as _show

__all__ = [
    "PHONE_MAX_DIGITS",
    "PHONE_MIN_DIGITS",
    "PhoneNumber",
    "normalize_phone",
    "outside_ranges_warning",
    "parse_phone",
]

#: The vendor's limits on ``recipient`` and ``businessPhone`` (digits; the spec's -70/-71, -93/-94).
PHONE_MIN_DIGITS = 7
PHONE_MAX_DIGITS = 14

#: Formatting people put in numbers: spaces, dashes, dots and parentheses (``+44 (0) 20 7946-0958``).
_FORMATTING = re.compile(r"[\s\-.()]")
_DIGITS = re.compile(r"[0-9]+")
#: The most digits a number may be written with (E.164's 15, plus a kept trunk or carrier selection prefix).
_MAX_WRITTEN_DIGITS = 20
#: The vendor's status codes for (longer than 14, shorter than 7, not all digits), per phone field.
_STATUSES = {"recipient": ("-70", "-71", "-72"), "businessPhone": ("-93", "-94", "-95")}
_WRONG_TYPE = "-134"
_RULE_CHARACTERS = "digits only (spaces, dashes, dots, parentheses and a leading '+' or '00' allowed)"
_RULE_POSSIBLE = "a number that can exist (a country code, then a national number of a length it uses)"
_RULE_ASSIGNED = "a number in a range its country has assigned (strict_phone_numbers is on)"


@dataclass(frozen=True)
class PhoneNumber:
    """
    A phone number that can exist, as :func:`parse_phone` found it.

    :param digits: The E.164 form without the ``+`` (country code first), as the API takes it.
    :param country_code: The country calling code, e.g. ``44``.
    :param valid: Whether the number lies in a range its country has assigned (libphonenumber's
        ``is_valid_number``); False for test and fictional numbers, and for ranges newer than the library's data.
    """

    digits: str
    country_code: int
    valid: bool

    @property
    def e164(self) -> str:
        """Return the number in E.164 form, e.g. ``+442079460958``."""
        return f"+{self.digits}"


def _statuses(field: str) -> tuple[str | None, str | None, str | None]:
    """Return the vendor's (too long, too short, not digits) status codes for ``field``, or ``None`` each."""
    for name, codes in _STATUSES.items():
        if field.startswith(name):
            return codes
    return None, None, None


def _digits_as_written(value: object, field: str) -> str:
    """
    Return the digits of a number in international form as written: formatting and the ``+`` / ``00`` removed.

    Refuse what is no number (wrong type, other characters, nothing left) and the forms whose country code cannot
    be known: a national form (a leading ``0``: a trunk prefix, or an international prefix other than ``00``,
    such as ``011``) and a country code starting with ``0``.

    :param value: The number as given.
    :param field: The request-body field it is for.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit() and value[0] != "0":
        return value  # the API's own form, as every send has it once parsed: the short way
    if isinstance(value, bool) or not isinstance(value, str | int):
        _fail(field, "must be a string or an integer", f"got {type(value).__name__}: {_show(value)}", _WRONG_TYPE)
    if isinstance(value, int) and value < 0:
        _fail(field, _RULE_CHARACTERS, f"got {_show(value)}", _statuses(field)[2])
    text = str(value).strip()
    plus = text.startswith("+")
    digits = _FORMATTING.sub("", text[1:] if plus else text)
    if not digits:
        _fail(field, "required", f"got {_show(value)}", _statuses(field)[1])
    if not _DIGITS.fullmatch(digits):
        _fail(field, _RULE_CHARACTERS, f"got {_show(value)}", _statuses(field)[2])
    international = plus or digits.startswith("00")
    if not plus and international:
        digits = digits[2:]
    if digits.startswith("0"):
        if international:
            _fail(
                field,
                "a country code after the leading '+' or '00' (country codes never start with 0)",
                f"the digits after the prefix start with 0: got {_show(value)}",
            )
        _fail(
            field,
            "the international form with the country code, e.g. +44 20 7946 0958 (E.164 numbers never start with 0)",
            f"a leading 0 is a national trunk prefix or an international prefix other than 00 (such as 011), "
            f"so the number is ambiguous: got {_show(value)}",
        )
    return digits


def _impossible(value: object, field: str, digits: str, reason: str) -> NoReturn:
    """
    Refuse a number that cannot exist, naming the field, the number and why.

    :param value: The number as given.
    :param field: The request-body field it is for.
    :param digits: Its digits as written (international form, no prefix); they pick the vendor's status code.
    :param reason: Why, e.g. ``"the 2-digit national number 12 is too short for +44"``.
    """
    too_long, too_short, _ = _statuses(field)
    status = too_long if len(digits) > PHONE_MAX_DIGITS else too_short if len(digits) < PHONE_MIN_DIGITS else None
    _fail(field, _RULE_POSSIBLE, f"{reason}: got {_show(value)}", status)


def parse_phone(value: object, field: str, *, strict: bool = False) -> PhoneNumber:
    """
    Return the phone number people wrote, e.g. ``'+44 (0) 20 7946 0958'`` -> ``PhoneNumber('442079460958', ...)``.

    The number is written in international form, country code first: with a ``+`` (``+86 138-0013-8000``), an
    ``00`` (``0044 20 7946 0958``) or neither (the API's own digits-only form, ``91856321321``). Spaces, dashes,
    dots and parentheses are formatting. A national (trunk) prefix kept after the country code is dropped as
    that country's numbering plan says: ``+44 (0) 20 ...`` and ``+44 020 ...`` are ``+44 20 ...``, ``+7 8 912 ...``
    is ``+7 912 ...``, ``+82 010 ...`` is ``+82 10 ...``, while Italy's ``+39 06 ...`` keeps its ``0``.

    Refused (:class:`~airflow_provider_itnio.errors.ItnioValidationError` naming the field, the rule and the
    number as given): what is not a string or an integer, characters other than digits and formatting, a
    national form (a leading ``0`` without country code) or ``+0...``, and numbers that cannot exist (no such
    country code; too short, too long, or only a local number, for that country: libphonenumber's
    ``is_possible_number_with_reason``). The vendor's status code is given when the digits break its 7-14 rule.

    :param value: The number, a string or a non-negative integer.
    :param field: The request-body field it is for (``recipient`` or ``businessPhone``: it picks the vendor
        status code reported in the error).
    :param strict: Also refuse a number that lies in no range its country has assigned
        (:attr:`PhoneNumber.valid` false); by default such numbers are accepted.
    :return: The number; :attr:`PhoneNumber.digits` is what the API takes.
    """
    digits = _digits_as_written(value, field)
    # E.164 has at most 15 digits; a kept trunk or carrier prefix adds a few: anything longer is not parsed (nor
    # cached)
    phone = _parse_digits(digits) if len(digits) <= _MAX_WRITTEN_DIGITS else "the number is too long"
    if isinstance(phone, str):
        _impossible(value, field, digits, phone)
    size = len(phone.digits)
    if not PHONE_MIN_DIGITS <= size <= PHONE_MAX_DIGITS:  # possible (E.164 allows 15 digits), but not for the API
        too_long, too_short, _ = _statuses(field)
        rule, status = (
            (f"at most {PHONE_MAX_DIGITS} digits", too_long)
            if size > PHONE_MAX_DIGITS
            else (f"at least {PHONE_MIN_DIGITS} digits", too_short)
        )
        _fail(field, rule, f"{phone.e164} has {size}: got {_show(value)}", status)
    if strict and not phone.valid:
        _fail(field, _RULE_ASSIGNED, f"{_outside(phone)}: got {_show(value)}")
    return phone


@functools.lru_cache(maxsize=4096)
def _parse_digits(digits: str) -> PhoneNumber | str:
    """
    Return the number that ``digits`` (international form, no prefix) are, or why no number can be so.

    Cached: a hook parses its business phone at every send, and a number is parsed again where a send starts
    and where its request body is built.

    :param digits: The digits as written, country code first.
    """
    import phonenumbers

    try:
        number = phonenumbers.parse(f"+{digits}", None)
    except phonenumbers.NumberParseException as err:
        if err.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            return f"no country calling code starts {digits[:3]}"
        return f"the number is {'too long' if err.error_type == err.TOO_LONG else 'too short'}"
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return _reason_text(number, reason)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    valid = phonenumbers.is_valid_number(number)
    return PhoneNumber(digits=e164, country_code=int(number.country_code or 0), valid=valid)


def _reason_text(number: Any, reason: int) -> str:
    """
    Return why libphonenumber finds ``number`` impossible, e.g. ``the 9-digit national number 1380013800 ...``.

    :param number: The parsed number.
    :param reason: Its ``ValidationResult``.
    """
    import phonenumbers

    results = phonenumbers.ValidationResult
    code = number.country_code
    if reason == results.INVALID_COUNTRY_CODE:
        return f"no country has the calling code +{code}"
    national = phonenumbers.national_significant_number(number)
    what = f"the {len(national)}-digit national number {national}"
    if reason == results.TOO_SHORT:
        return f"{what} is too short for +{code}"
    if reason == results.TOO_LONG:
        return f"{what} is too long for +{code}"
    if reason == results.IS_POSSIBLE_LOCAL_ONLY:
        return f"{what} is too short for +{code}: a local number, without its area code"
    return f"{what} has a length no +{code} number has"


def _outside(phone: PhoneNumber) -> str:
    """Return the phrase saying that ``phone`` lies in no range its country assigned."""
    import phonenumbers

    codes = phonenumbers.region_codes_for_country_code(phone.country_code)
    regions = ", ".join(codes[:6]) + (", ..." if len(codes) > 6 else "")
    return (
        f"{phone.e164} can exist but lies in no range that +{phone.country_code} ({regions}) has assigned, "
        f"as libphonenumber {phonenumbers.__version__} knows them (a test or fictional number, or a newer range)"
    )


def outside_ranges_warning(phone: PhoneNumber, field: str) -> str:
    """
    Return the warning logged when a number that lies in no assigned range is sent anyway.

    :param phone: The number (:attr:`PhoneNumber.valid` false).
    :param field: The request-body field it is for.
    """
    return (
        f"{field} {_outside(phone)}; sending it anyway. Set strict_phone_numbers (the connection's extra, or the "
        f"operator's argument) to refuse such numbers."
    )


def normalize_phone(value: object, field: str, *, strict: bool = False) -> str:
    """
    Return the digits the API takes for a phone number as people write it: its E.164 form without the ``+``.

    ``'+86 138-0013-8000'`` gives ``'8613800138000'``; see :func:`parse_phone` for what is accepted and refused.

    :param value: The number, a string or a non-negative integer.
    :param field: The request-body field it is for (``recipient`` or ``businessPhone``).
    :param strict: Also refuse a number in no range its country has assigned.
    :return: The digits.
    """
    return parse_phone(value, field, strict=strict).digits
