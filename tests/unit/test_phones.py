"""
Phone numbers parsed by libphonenumber (:mod:`airflow_provider_itnio.phones`), the ``00`` and ``(0)`` forms included.

The API takes a number as its digits in international form (country code first, no ``+``; the vendor's examples
are all written so, see ``tests/golden``). People write one number in many ways: ``+44 20 7946 0958``,
``+44 (0) 20 7946 0958``, ``+44 020 7946 0958``, ``00 44 20 7946 0958``. Each must become the number's E.164
digits, so that one subscriber gets one message, and the digits come from the country's own numbering plan: which
national (trunk) prefix it has, how long its numbers are, which ranges it assigned. Expectations are derived
from libphonenumber itself (its example numbers, ``is_possible_number_with_reason``, ``is_valid_number``) and
from the issue's examples, never from a hand-written table.
"""

from __future__ import annotations

import json
from typing import Any

import phonenumbers
import pytest

from airflow_provider_itnio.batch import BatchSender, MessagePlan
from airflow_provider_itnio.errors import ItnioValidationError
from airflow_provider_itnio.hooks.itnio import ItnioHook
from airflow_provider_itnio.messages import Message, Text, normalize_phone
from airflow_provider_itnio.notifications.itnio import ItnioNotifier
from tests.support.paths import GOLDEN_DIR

#: The spelling every other one of a row must equal: ``+``, the country code, the national number.
LONDON = "+44 20 7946 0958"
#: Spellings of one London number: the trunk 0 in parentheses, kept, the ``00`` prefix, the API's own form.
LONDON_SPELLINGS = [LONDON, "+44 (0) 20 7946 0958", "+44 020 7946 0958", "00 44 20 7946 0958", "442079460958"]
FIELDS = ("recipient", "businessPhone")
#: Numbers that can exist but lie in no assigned range: the issue's test numbers and the vendor's own example.
UNASSIGNED = ["+1 555 0100 200", "+44 7700 900123", "91856321321"]


def e164_digits(text: str) -> str:
    """Return libphonenumber's E.164 form of ``text`` (international form), without the ``+``."""
    return phonenumbers.format_number(phonenumbers.parse(text, None), phonenumbers.PhoneNumberFormat.E164)[1:]


# -- what a number means --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "e164"),
    [
        pytest.param("+7 8 912 345 6789", "+79123456789", id="russia-trunk-8"),  # was sent as 789123456789
        pytest.param("+82 010 1234 5678", "+821012345678", id="korea-trunk-0"),  # was refused
        pytest.param("+880 01712 345678", "+8801712345678", id="bangladesh-trunk-0"),  # was refused
        pytest.param("+234 0803 123 4567", "+2348031234567", id="nigeria-trunk-0"),  # was refused
    ],
)
@pytest.mark.parametrize("field", FIELDS)
def test_the_issues_numbers_are_sent_as_the_number_they_mean(field: str, written: str, e164: str) -> None:
    assert normalize_phone(written, field) == e164[1:]
    assert normalize_phone(written, field, strict=True) == e164[1:]  # real, assigned numbers


def test_a_kept_national_prefix_is_dropped_as_each_countrys_plan_says() -> None:
    """
    Every country's example number, written as its people write it at home (national format, trunk prefix and
    all) behind ``+<country code>``, is the number itself: ``+44 07400 123456`` is ``+44 7400 123456``, Italy's
    ``+39 06 ...`` keeps its 0 (the 0 belongs to the number), Russia's trunk is 8, Hungary's 06.
    """
    checked = wrong = 0
    problems = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
            written = f"+{example.country_code} {national}"
            expected = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[1:]
            checked += 1
            try:
                got = normalize_phone(written, "recipient")
            except ItnioValidationError as err:
                got = str(err)
            if got != expected:
                wrong += 1
                problems.append(f"{region} {written!r}: {got} != {expected}")
    assert checked > 400
    assert not problems, f"{wrong} of {checked}: " + "; ".join(problems[:10])


@pytest.mark.parametrize("spelling", LONDON_SPELLINGS)
@pytest.mark.parametrize("field", FIELDS)
def test_every_spelling_of_one_number_gives_its_e164_digits(field: str, spelling: str) -> None:
    assert normalize_phone(spelling, field) == e164_digits(LONDON) == "442079460958"


@pytest.mark.parametrize(
    ("spelling", "plus_form"),
    [
        ("+44(0)2079460958", LONDON),
        ("+44 ( 0 ) 20-7946-0958", LONDON),
        ("0044 (0) 20 7946 0958", LONDON),
        ("0086 138 0013 8000", "+86 138 0013 8000"),
        ("00353 (0)1 234 5678", "+353 1 234 5678"),  # a three-digit country code
        ("0049 (0)30 1234 5678", "+49 30 1234 5678"),
        ("0039 06 1234 5678", "+39 06 1234 5678"),  # Italian numbers start with their 0: it stays
        ("+39 (0)6 1234 5678", "+39 06 1234 5678"),  # ... even in parentheses: Italy has no trunk prefix
        ("+1 (415) 555-0100", "+1 415 555 0100"),  # parentheses that are not "(0)" are only formatting
        ("+7 (8) 495 123-45-67", "+7 495 123 45 67"),  # Russia's trunk 8 in parentheses
        ("+36 06 1 234 5678", "+36 1 234 5678"),  # Hungary's trunk prefix is 06
    ],
)
def test_prefixes_and_formatting_give_the_number_of_the_plus_form(spelling: str, plus_form: str) -> None:
    assert normalize_phone(spelling, "recipient") == e164_digits(plus_form)


# -- numbers that are refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason", "problem", "status"),
    [
        # a US number without its country code reads as +41 55 550 100: one digit short for Switzerland
        pytest.param("(415) 555 0100", "TOO_SHORT", "is too short for +41", None, id="no-country-code"),
        pytest.param("+1 212 555 01000", "TOO_LONG", "is too long for +1", None, id="too-long"),
        pytest.param("+44 7946 0958", "IS_POSSIBLE_LOCAL_ONLY", "a local number", None, id="local-only"),
        pytest.param("+1 (0) 212 555 0100", "TOO_LONG", "is too long for +1", None, id="nanp-0-is-no-trunk"),
        pytest.param("+7 0 495 123 45 67", "INVALID_LENGTH", "a length no +7 number has", None, id="russia-0"),
        pytest.param("+44 20 (0) 7946 0958", "TOO_LONG", "is too long for +44", None, id="late-0"),
        pytest.param("+999 1234 5678", None, "no country calling code starts 999", None, id="no-such-country"),
        pytest.param("+1 23 45", "TOO_SHORT", "is too short for +1", "-71", id="vendor-too-short"),
        pytest.param("+86 138 0013 8000 1234", "TOO_LONG", "is too long for +86", "-70", id="vendor-too-long"),
        pytest.param("+44" + "1" * 25, None, "the number is too long", "-70", id="far-too-long"),  # not even parsed
    ],
)
@pytest.mark.parametrize("field", FIELDS)
def test_numbers_that_cannot_exist_are_refused_naming_the_field_the_number_and_the_reason(
    field: str, value: str, reason: str | None, problem: str, status: str | None
) -> None:
    if reason is not None:  # the test's claim about the number is libphonenumber's
        parsed = phonenumbers.parse("+" + "".join(c for c in value if c.isdigit()), None)
        assert phonenumbers.is_possible_number_with_reason(parsed) == getattr(phonenumbers.ValidationResult, reason)
    with pytest.raises(ItnioValidationError) as info:
        normalize_phone(value, field)
    error = info.value
    assert error.field == field
    assert "a number that can exist" in error.rule
    assert problem in error.problem
    assert repr(value) in error.problem  # the number as given
    vendor = {"-71": {"recipient": "-71", "businessPhone": "-94"}, "-70": {"recipient": "-70", "businessPhone": "-93"}}
    assert error.status == (vendor[status][field] if status else None)
    assert str(error).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("value", "rule", "problem"),
    [
        pytest.param("020 7946 0958", "international form with the country code", "national trunk prefix", id="trunk"),
        pytest.param("(020) 7946 0958", "international form with the country code", "got '(020)", id="trunk-paren"),
        pytest.param("(0) 20 7946 0958", "international form with the country code", "national", id="paren-0"),
        pytest.param("011 44 20 7946 0958", "international form", "other than 00 (such as 011)", id="idd-011"),
        pytest.param("+0 44 20 7946 0958", "country codes never start with 0", "after the prefix", id="plus-0"),
        pytest.param("+0044 20 7946 0958", "country codes never start with 0", "after the prefix", id="plus-00"),
        pytest.param("000 44 20 7946 0958", "country codes never start with 0", "after the prefix", id="000"),
    ],
)
@pytest.mark.parametrize("field", FIELDS)
def test_forms_whose_country_code_cannot_be_known_are_refused(field: str, value: str, rule: str, problem: str) -> None:
    with pytest.raises(ItnioValidationError) as info:
        normalize_phone(value, field)
    error = info.value
    assert (error.field, error.status) == (field, None)
    assert rule in error.rule
    assert problem in error.problem
    assert repr(value) in error.problem


@pytest.mark.parametrize("value", UNASSIGNED)
@pytest.mark.parametrize("field", FIELDS)
def test_numbers_outside_the_assigned_ranges_pass_unless_strict(field: str, value: str) -> None:
    digits = "".join(c for c in value if c.isdigit())
    number = phonenumbers.parse(f"+{digits}", None)
    assert phonenumbers.is_possible_number(number) and not phonenumbers.is_valid_number(number)  # the premise
    assert normalize_phone(value, field) == digits
    with pytest.raises(ItnioValidationError) as info:
        normalize_phone(value, field, strict=True)
    error = info.value
    assert error.field == field
    assert "strict_phone_numbers" in error.rule
    assert f"+{digits} can exist but lies in no range" in error.problem
    assert repr(value) in error.problem
    assert error.status is None  # the vendor would take it


def test_the_vendors_example_numbers_still_pass_as_they_are() -> None:
    numbers = {
        body[key] for path in GOLDEN_DIR.glob("*.json") for body in [json.loads(path.read_text())] for key in FIELDS
    }
    assert numbers
    for number in numbers:
        assert normalize_phone(number, "recipient") == normalize_phone(number, "businessPhone") == number
        assert normalize_phone(f"+{number}", "recipient") == normalize_phone(f"00{number}", "recipient") == number


# -- sends against the sandbox: the wire, the warning, strict -------------------------------------------------


def _conn(monkeypatch: pytest.MonkeyPatch, sandbox: Any, conn_id: str, **extra: Any) -> str:
    """Point the connection ``conn_id`` at the sandbox, with ``extra`` added to its extras."""
    conn = json.loads(sandbox.conn_json())
    conn["extra"].update(extra)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def test_the_hook_sends_the_e164_digits_and_warns_once_per_number_outside_the_ranges(sandbox: Any, logged: Any) -> None:
    hook = ItnioHook()
    try:
        hook.send("+7 8 912 345 6789", Text(body="one"))
        hook.send("+1 555 0100 200", Text(body="two"))
        hook.send("+1 555 0100 200", Text(body="three"))
    finally:
        hook.close()
    assert [m["body"]["recipient"] for m in sandbox.messages()] == ["79123456789", "15550100200", "15550100200"]
    places = logged()
    assert not [place for place in places if "+79123456789 can exist" in place]  # an assigned number: no warning
    for warning in (
        "recipient +15550100200 can exist but lies in no range that +1",
        "businessPhone +15550001111 can exist but lies in no range",  # the sandbox's business phone: a test number
    ):
        # logged once per number and hook, not once per send
        assert max(place.count(warning) for place in places) == 1, places
    assert "sending it anyway. Set strict_phone_numbers" in "".join(places)


def test_a_hook_warns_about_at_most_max_phone_warnings_numbers_one_by_one(sandbox: Any, logged: Any) -> None:
    from airflow_provider_itnio.hooks.itnio import MAX_PHONE_WARNINGS

    numbers = [f"1555{index:07d}" for index in range(MAX_PHONE_WARNINGS + 15)]  # 555 numbers: in no assigned range
    hook = ItnioHook()
    try:
        for number in numbers:
            hook.send(number, Text(body="hi"))
    finally:
        hook.close()
    assert [m["body"]["recipient"] for m in sandbox.messages()] == numbers  # every one sent
    text = max(logged(), key=lambda place: place.count("can exist but lies in no range"))
    warned = [number for number in numbers if f"recipient +{number} can exist" in text]
    # the sandbox's business phone is a test number too: it takes one of the places
    assert warned == numbers[: MAX_PHONE_WARNINGS - 1], warned
    assert text.count(f"{MAX_PHONE_WARNINGS} numbers in no assigned range were logged") == 1


def test_strict_phone_numbers_in_the_connection_refuses_before_any_request(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = _conn(monkeypatch, sandbox, "itnio_strict", strict_phone_numbers=True, business_phone="17376111187")
    hook = ItnioHook(conn_id)
    try:
        with pytest.raises(ItnioValidationError) as info:
            hook.send("+1 555 0100 200", Text(body="hi"))
        assert (info.value.field, "strict_phone_numbers" in info.value.rule) == ("recipient", True)
        assert sandbox.messages() == []
        hook.send("+82 010 1234 5678", Text(body="hi"))  # an assigned number goes out
        # the argument overrides the connection
        hook.send("+1 555 0100 200", Text(body="hi"), strict_phone_numbers=False)
    finally:
        hook.close()
    assert [m["body"]["recipient"] for m in sandbox.messages()] == ["821012345678", "15550100200"]


@pytest.mark.parametrize("value", ["yes", 2, "strict"])
def test_a_strict_phone_numbers_extra_that_is_no_boolean_is_a_config_error(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch, value: Any
) -> None:
    from airflow_provider_itnio.errors import ItnioConfigError

    conn_id = _conn(monkeypatch, sandbox, "itnio_strict_bad", strict_phone_numbers=value)
    hook = ItnioHook(conn_id)
    try:
        with pytest.raises(ItnioConfigError, match="strict_phone_numbers"):
            hook.send("+82 010 1234 5678", Text(body="hi"))
    finally:
        hook.close()
    assert sandbox.messages() == []


def test_a_static_number_that_cannot_exist_is_a_parse_time_error() -> None:
    from airflow_provider_itnio.operators import ItnioSendTextOperator

    with pytest.raises(ItnioValidationError, match="too short for \\+41"):
        ItnioSendTextOperator(task_id="t", recipient="(415) 555 0100", body="hi")
    with pytest.raises(ItnioValidationError, match="strict_phone_numbers"):
        ItnioSendTextOperator(task_id="t", recipient="+1 555 0100 200", body="hi", strict_phone_numbers=True)
    ItnioSendTextOperator(task_id="t", recipient="+1 555 0100 200", body="hi")  # the connection decides later


# -- de-duplication by the E.164 digits: the batch engine and the notifier, against the sandbox --------------


def test_the_batch_engine_sends_one_message_for_every_spelling_of_one_number(sandbox: Any) -> None:
    hook = ItnioHook()

    def send(recipient: str, message: Message) -> str:
        return hook.send(recipient, message).message_id

    rows = [{"recipient": spelling, "name": "Ada"} for spelling in LONDON_SPELLINGS]
    try:
        outcome = BatchSender(send, MessagePlan(Text(body="Hi {{ row.name }}").to_payload()), concurrency=3).run(rows)
    finally:
        hook.close()
    [message] = sandbox.messages()
    assert message["body"]["recipient"] == e164_digits(LONDON)
    assert message["body"]["text"] == {"body": "Hi Ada"}
    assert (outcome.sent, outcome.duplicates, outcome.failed) == (1, len(rows) - 1, 0)
    assert outcome.message_ids == {message["body"]["recipient"]: message["messageId"]}


def test_the_batch_engine_refuses_rows_outside_the_ranges_when_strict(sandbox: Any) -> None:
    hook = ItnioHook()

    def send(recipient: str, message: Message) -> str:
        return hook.send(recipient, message).message_id

    rows = ["+82 010 1234 5678", "+1 555 0100 200"]
    plan = MessagePlan(Text(body="Hi").to_payload())
    try:
        outcome = BatchSender(send, plan, concurrency=2, strict_phone_numbers=True).run(rows)
    finally:
        hook.close()
    assert [m["body"]["recipient"] for m in sandbox.messages()] == ["821012345678"]
    assert (outcome.sent, outcome.failed) == (1, 1)
    assert "strict_phone_numbers" in outcome.errors["rows[1]"]["reason"]


def test_the_notifier_sends_one_message_for_every_spelling_of_one_number(sandbox: Any) -> None:
    notifier = ItnioNotifier(recipients=[", ".join(LONDON_SPELLINGS[:3]), *LONDON_SPELLINGS[3:]], text="Disk full")
    assert notifier._recipient_list() == [e164_digits(LONDON)]
    notifier({"dag": None})  # as Airflow calls a notifier
    [message] = sandbox.messages()
    assert message["body"]["recipient"] == e164_digits(LONDON)
    assert notifier.sent == {message["body"]["recipient"]: message["messageId"]}
    assert notifier.failed == {}
