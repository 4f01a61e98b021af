"""
Phone numbers written with a trunk zero ``(0)`` or an international ``00`` prefix (issue 7, item 7).

The API takes a number as its digits in international form (country code first, no ``+``; the vendor's examples
are all written so, see ``tests/golden``). A person may write one number as ``+44 20 7946 0958``,
``+44 (0) 20 7946 0958`` or ``00 44 20 7946 0958``: all three must become the same digits, so that one subscriber
gets one message. Forms whose number cannot be known (a leading ``0`` without a country code, ``+0...``, a ``(0)``
anywhere but right after the country code, a ``(0)`` after a country code whose numbers start with 0 or whose
trunk prefix is not 0, a trunk 0 kept after the country code) are refused before anything is sent.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_itnio.batch import BatchSender, MessagePlan
from airflow_provider_itnio.errors import ItnioValidationError
from airflow_provider_itnio.hooks.itnio import ItnioHook
from airflow_provider_itnio.messages import (
    COUNTRY_CODES,
    OTHER_TRUNK_CODES,
    ZERO_IN_NUMBER_CODES,
    Message,
    Text,
    normalize_phone,
)
from airflow_provider_itnio.notifications.itnio import ItnioNotifier
from tests.conftest import GOLDEN_DIR

#: The spelling every other one of a row must equal: ``+``, the country code, the national number.
LONDON = "+44 20 7946 0958"
#: The issue's three spellings of one London number.
LONDON_SPELLINGS = [LONDON, "+44 (0) 20 7946 0958", "00 44 20 7946 0958"]
FIELDS = ("recipient", "businessPhone")


@pytest.mark.parametrize(
    ("spelling", "plus_form"),
    [
        ("+44 (0) 20 7946 0958", LONDON),
        ("+44(0)2079460958", LONDON),
        ("+44 ( 0 ) 20-7946-0958", LONDON),
        ("00 44 20 7946 0958", LONDON),
        ("0044 (0) 20 7946 0958", LONDON),
        ("0086 138 0013 8000", "+86 138 0013 8000"),
        ("00353 (0)1 234 5678", "+353 1 234 5678"),  # a three-digit country code
        ("0049 (0)30 1234 5678", "+49 30 1234 5678"),
        ("0039 06 1234 5678", "+39 06 1234 5678"),  # Italian numbers start with their 0: it stays
        ("+1 (415) 555-0100", "+1 415 555 0100"),  # parentheses that are not "(0)" are only formatting
    ],
)
@pytest.mark.parametrize("field", FIELDS)
def test_trunk_zero_and_00_prefix_give_the_number_of_the_plus_form(field: str, spelling: str, plus_form: str) -> None:
    digits = normalize_phone(spelling, field)
    assert digits == normalize_phone(plus_form, field)
    assert digits == "".join(char for char in plus_form if char.isdigit())  # the spec: digits only, no prefix


@pytest.mark.parametrize(
    ("value", "rule", "problem"),
    [
        pytest.param("020 7946 0958", "international form with the country code", "national trunk prefix", id="trunk"),
        pytest.param("(020) 7946 0958", "international form with the country code", "got '(020)", id="trunk-paren"),
        pytest.param("011 44 20 7946 0958", "international form", "other than 00 (such as 011)", id="idd-011"),
        pytest.param("+0 44 20 7946 0958", "country codes never start with 0", "after the prefix", id="plus-0"),
        pytest.param("+0044 20 7946 0958", "country codes never start with 0", "after the prefix", id="plus-00"),
        pytest.param("000 44 20 7946 0958", "country codes never start with 0", "after the prefix", id="000"),
        pytest.param("+44 20 (0) 7946 0958", "right after the country code", "'4420' before '(0)'", id="late-0"),
        pytest.param("+442 (0) 0 7946 0958", "right after the country code", "'442' before '(0)'", id="not-a-code"),
        pytest.param("(0) 20 7946 0958", "right after the country code", "no '+' or '00'", id="no-country-code"),
        pytest.param("44 (0) 20 7946 0958", "right after the country code", "no '+' or '00'", id="no-prefix"),
        pytest.param("+44 (0) (0) 20 7946 0958", "only once", "appears 2 times", id="two-zeros"),
        pytest.param("+39 (0)6 1234 5678", "right after the country code", "part of the number", id="italy-0"),
        pytest.param("+1 (0) 212 555 0100", "right after the country code", "not 0", id="nanp-trunk-1"),
        pytest.param("007 (0) 495 123 45 67", "right after the country code", "not 0", id="russia-trunk-8"),
        pytest.param("+44 020 7946 0958", "no 0 right after the country code", "trunk prefix", id="kept-trunk"),
        pytest.param("4402079460958", "no 0 right after the country code", "trunk prefix", id="kept-trunk-digits"),
        pytest.param(4402079460958, "no 0 right after the country code", "trunk prefix", id="kept-trunk-int"),
        pytest.param("0033 0 1 23 45 67 89", "no 0 right after the country code", "+33 numbers", id="kept-trunk-00"),
    ],
)
@pytest.mark.parametrize("field", FIELDS)
def test_forms_that_cannot_be_made_unambiguous_are_refused(field: str, value: str, rule: str, problem: str) -> None:
    with pytest.raises(ItnioValidationError) as info:
        normalize_phone(value, field)
    error = info.value
    assert error.field == field
    assert rule in error.rule
    assert problem in error.problem
    assert repr(value) in error.problem or str(value) in error.problem  # the value as given
    # the vendor takes any 7-14 digits: it would not refuse these, it would send to another number
    assert error.status is None
    assert str(error).startswith(f"{field}: ")


def test_a_0_after_the_country_code_stays_only_where_numbers_start_with_0() -> None:
    """
    ``+44 020 ...`` (a kept trunk zero) would be sent as another number than ``+44 20 ...``: refused. Where a
    country's numbers start with 0 (``+39 06 ...``), the 0 is the number's own and is kept, and a ``(0)`` is
    refused since it may or may not be part of the number.
    """
    for code in sorted(COUNTRY_CODES):
        national = "0612345678"[: 11 - len(code)]
        if code in ZERO_IN_NUMBER_CODES:
            assert normalize_phone(f"+{code} {national}", "recipient") == code + national
            with pytest.raises(ItnioValidationError, match="part of the number"):
                normalize_phone(f"+{code} (0) {national[1:]}", "recipient")
        else:
            with pytest.raises(ItnioValidationError, match="trunk prefix"):
                normalize_phone(f"+{code} {national}", "recipient")
    assert ZERO_IN_NUMBER_CODES <= COUNTRY_CODES and OTHER_TRUNK_CODES <= COUNTRY_CODES


def test_country_codes_are_prefix_free_and_never_start_with_0() -> None:
    """E.164 country codes are prefix-free, which is what lets a ``(0)`` be placed after exactly one of them."""
    assert all(code.isdigit() and not code.startswith("0") and 1 <= len(code) <= 3 for code in COUNTRY_CODES)
    assert not [(a, b) for a in COUNTRY_CODES for b in COUNTRY_CODES if a != b and b.startswith(a)]


def test_the_vendors_example_numbers_are_already_normalised_and_start_with_a_country_code() -> None:
    numbers = {
        body[key] for path in GOLDEN_DIR.glob("*.json") for body in [json.loads(path.read_text())] for key in FIELDS
    }
    assert numbers
    for number in numbers:
        assert normalize_phone(number, "recipient") == number
        assert any(number.startswith(code) for code in COUNTRY_CODES), number
        assert normalize_phone(f"+{number}", "recipient") == normalize_phone(f"00{number}", "recipient") == number


# -- de-duplication by the normalised number: the batch engine and the notifier, against the sandbox ------------


def test_the_batch_engine_sends_one_message_for_three_spellings_of_one_number(sandbox: Any) -> None:
    hook = ItnioHook()

    def send(recipient: str, message: Message) -> str:
        return hook.send(recipient, message).message_id

    rows = [{"recipient": spelling, "name": "Ada"} for spelling in LONDON_SPELLINGS]
    try:
        outcome = BatchSender(send, MessagePlan(Text(body="Hi {{ row.name }}").to_payload()), concurrency=3).run(rows)
    finally:
        hook.close()
    [message] = sandbox.messages()
    assert message["body"]["recipient"] == normalize_phone(LONDON, "recipient")
    assert message["body"]["text"] == {"body": "Hi Ada"}
    assert (outcome.sent, outcome.duplicates, outcome.failed) == (1, len(rows) - 1, 0)
    assert outcome.message_ids == {message["body"]["recipient"]: message["messageId"]}


def test_the_notifier_sends_one_message_for_three_spellings_of_one_number(sandbox: Any) -> None:
    notifier = ItnioNotifier(recipients=[", ".join(LONDON_SPELLINGS[:2]), LONDON_SPELLINGS[2]], text="Disk full")
    assert notifier._recipient_list() == [normalize_phone(LONDON, "recipient")]
    notifier({"dag": None})  # as Airflow calls a notifier
    [message] = sandbox.messages()
    assert message["body"]["recipient"] == normalize_phone(LONDON, "recipient")
    assert notifier.sent == {message["body"]["recipient"]: message["messageId"]}
    assert notifier.failed == {}
