"""Tests of the message models: golden request bodies, every validation rule, phone normalisation."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_itnio.errors import STATUS_CODES, ItnioValidationError
from airflow_provider_itnio.messages import (
    CUSTOM_ENDPOINT,
    MAX_BUTTON_ID,
    MAX_BUTTON_TITLE,
    MAX_BUTTONS,
    MAX_CAPTION,
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
    MAX_TEMPLATE_NAME,
    MAX_TEXT_BODY,
    TEMPLATE_ENDPOINT,
    Address,
    Audio,
    Button,
    Contact,
    Contacts,
    Document,
    Email,
    Image,
    ListMessage,
    Location,
    LocationRequest,
    Message,
    Name,
    Org,
    Phone,
    ReplyButtons,
    Row,
    Section,
    Sticker,
    Template,
    Text,
    Url,
    Video,
    build_request_body,
    message_from_dict,
    normalize_phone,
)
from tests.support.paths import GOLDEN_DIR, ROOT
from tests.support.rule_cases import (
    BUTTONS,
    CARD,
    LINK,
    RULE_CASES,
    as_any,
    reply_buttons,
)

if TYPE_CHECKING:
    from collections.abc import Callable

SPEC = ROOT.parent / "shared" / "spec" / "itniotech-api.md"
needs_golden = pytest.mark.skipif(
    not GOLDEN_DIR.is_dir(), reason=f"golden request bodies not found at {GOLDEN_DIR} (shared spec absent)"
)

# ------------------------------------------------------------------------------------ golden examples

VENDOR = {"app_id": "DGziZf5u", "business_phone": "91856321321", "recipient": "91856321322"}
INTERACTIVE = {"app_id": "7WY0BQ7W", "business_phone": 6282299953162, "recipient": "8614718004557"}


def _golden_contact() -> Contact:
    address = {"street": "STREET", "city": "CITY", "state": "STATE", "zip": "ZIP", "country": "COUNTRY"}
    return Contact(
        name=Name(
            formatted_name="NAME",
            first_name="FIRST_NAME",
            last_name="LAST_NAME",
            middle_name="MIDDLE_NAME",
            suffix="SUFFIX",
            prefix="PREFIX",
        ),
        birthday="1995-01-11",
        addresses=[
            Address(**address, country_code="COUNTRY_CODE", type="HOME"),
            Address(**address, country_code="COUNTRY_CODE", type="WORK"),
        ],
        emails=[Email("EMAIL", "WORK"), Email("EMAIL", "HOME")],
        org=Org(company="COMPANY", department="DEPARTMENT", title="TITLE"),
        phones=[Phone("PHONE_NUMBER", "HOME"), Phone("PHONE_NUMBER", "WORK", wa_id="PHONE_OR_WA_ID")],
        urls=[Url("URL", "WORK"), Url("URL", "HOME")],
    )


def _golden_list() -> ListMessage:
    def section(n: int) -> Section:
        rows = [
            Row(f"SECTION_{n}_ROW_{r}_ID", f"SECTION_{n}_ROW_{r}_TITLE", f"SECTION_{n}_ROW_{r}_DESCRIPTION")
            for r in (1, 2)
        ]
        return Section(f"SECTION_{n}_TITLE", rows)

    return ListMessage(
        body="BODY_TEXT",
        button="BUTTON_TEXT",
        sections=[section(1), section(2)],
        header="HEADER_TEXT",
        footer="FOOTER_TEXT",
    )


#: golden file stem -> the keyword arguments of build_request_body, built from the vendor example's values.
GOLDEN_CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "text": lambda: {**VENDOR, "message": Text("this is body content")},
    "text_reply": lambda: {
        "app_id": "DGziZf5u",
        "business_phone": "17376111187",
        "recipient": "8618099900000",
        "message": Text("this is body content"),
        "reply_to": "1",
    },
    "image": lambda: {**VENDOR, "message": Image(LINK, caption="title")},
    "document": lambda: {**VENDOR, "message": Document(LINK, filename="123", caption="title")},
    "audio": lambda: {**VENDOR, "message": Audio(LINK)},
    "video": lambda: {**VENDOR, "message": Video(LINK, caption="title")},
    "sticker": lambda: {**VENDOR, "message": Sticker("https://abc.com/log.webp")},
    "location": lambda: {
        **VENDOR,
        "message": Location(latitude=62.636152267456, longitude=104.056640625, name="深圳", address="深圳市龙岗区"),
    },
    "contacts": lambda: {**INTERACTIVE, "message": Contacts([_golden_contact()])},
    "interactive_list": lambda: {**INTERACTIVE, "message": _golden_list()},
    "interactive_buttons": lambda: {
        **INTERACTIVE,
        "message": ReplyButtons(body="BUTTON_TEXT", buttons=[Button("22", "one"), Button("33", "two")]),
    },
    "interactive_location_request": lambda: {
        "app_id": "zRTc00Vs",
        "business_phone": "62822922299527",
        "recipient": "86173333376738",
        "message": LocationRequest("广东省深圳市龙岗区"),
    },
    "template": lambda: {
        "app_id": "xJdRmKR3",
        "business_phone": "91856321412",
        "recipient": "91856321432",
        "message": Template.with_body_parameters("order_update", "en_US", ["A-1042", "shipped"]),
    },
}


def _golden(stem: str) -> dict[str, Any]:
    return json.loads((GOLDEN_DIR / f"{stem}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@needs_golden
def test_every_golden_file_has_a_case():
    assert {path.stem for path in GOLDEN_DIR.glob("*.json")} == set(GOLDEN_CASES)


@needs_golden
@pytest.mark.parametrize("stem", sorted(GOLDEN_CASES))
def test_golden_body_built_from_models(stem):
    assert build_request_body(**GOLDEN_CASES[stem]()) == _golden(stem)


@needs_golden
@pytest.mark.parametrize("stem", sorted(GOLDEN_CASES))
def test_golden_body_round_trips_through_message_from_dict(stem):
    golden = _golden(stem)
    message = message_from_dict(golden)
    assert message == GOLDEN_CASES[stem]()["message"]
    body = build_request_body(
        app_id=golden["appId"],
        business_phone=golden["businessPhone"],
        recipient=golden["recipient"],
        message=message,
        reply_to=golden.get("context", {}).get("refMessageId"),
    )
    assert body == golden


# --------------------------------------------------------------------------------- valid behaviour

SECTIONS = [{"title": "Sizes", "rows": [{"id": "s", "title": "Small", "description": "up to 1 kg"}]}]

ALL_MODELS: list[Message] = [
    Text("hi *there*"),
    Image(LINK),
    Image(LINK, caption="c"),
    Document(LINK, "report.pdf"),
    Document(LINK, "report.pdf", caption="Q3"),
    Audio("http://example.com/a.ogg"),
    Video(LINK, "clip"),
    Sticker("https://example.com/s.webp"),
    Location("-33.8688", "151.2093", "Sydney", "NSW, Australia"),
    ListMessage("Pick one", "Sizes", SECTIONS),
    ListMessage("Pick one", "Sizes", SECTIONS, header="Shop", footer="Thanks"),
    ReplyButtons("Continue?", BUTTONS),
    ReplyButtons("Continue?", BUTTONS, header="Question", footer="Reply below"),
    LocationRequest("Where are you?"),
    Contacts([CARD]),
    Contacts([_golden_contact(), Contact(Name("Bob"), phones=[Phone(4155550100, "CELL", wa_id=14155550100)])]),
    Template("hello_world", "en"),
    Template.with_body_parameters("order_update", "pt_BR", ["A-1", "shipped"]),
    Template(
        "promo_2",
        "en_US",
        [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": LINK}}]},
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Ada"},
                    {
                        "type": "currency",
                        "currency": {"fallback_value": "$10", "code": "USD", "amount_1000": 10000},
                    },
                    {"type": "date_time", "date_time": {"fallback_value": "May 1"}},
                ],
            },
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": 0,
                "parameters": [{"type": "payload", "payload": "P"}],
            },
        ],
    ),
]


@pytest.mark.parametrize("message", ALL_MODELS, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    payload = message.to_payload()
    again = message_from_dict(payload)
    assert type(again) is type(message)
    assert again == message
    assert again.to_payload() == payload
    envelope = {"appId": "a", "businessPhone": "1234567", "recipient": "7654321", "channelType": 0}
    assert message_from_dict({**envelope, **payload, "context": {"refMessageId": "x"}}) == message
    assert json.loads(json.dumps(payload)) == payload  # JSON-safe, no tuples or custom objects


@pytest.mark.parametrize("message", ALL_MODELS, ids=lambda m: type(m).__name__)
def test_no_nulls_in_payload(message):
    def walk(value: Any) -> None:
        assert value is not None
        for item in value.values() if isinstance(value, dict) else value if isinstance(value, list) else []:
            walk(item)

    walk(message.to_payload())


def test_endpoints():
    assert all(m.endpoint == CUSTOM_ENDPOINT for m in ALL_MODELS if not isinstance(m, Template))
    assert Template("a", "en").endpoint == TEMPLATE_ENDPOINT == "/wa/template/sendMsg"
    assert CUSTOM_ENDPOINT == "/wa/custom/sendMsg"


def test_payload_shapes():
    assert Text("hi").to_payload() == {"type": "text", "text": {"body": "hi"}}
    assert Image(LINK).to_payload() == {"type": "image", "image": {"link": LINK}}
    assert Image(LINK, caption="   ").to_payload() == {"type": "image", "image": {"link": LINK}}
    assert LocationRequest("where?").to_payload() == {
        "type": "interactive",
        "interactive": {
            "type": "location_request_message",
            "body": {"text": "where?"},
            "action": {"name": "send_location"},
        },
    }
    buttons = ReplyButtons("b", [{"id": "1", "title": "One"}], header="H", footer="F").to_payload()
    assert buttons["interactive"] == {
        "type": "button",
        "header": {"type": "text", "text": "H"},
        "body": {"text": "b"},
        "footer": {"text": "F"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "1", "title": "One"}}]},
    }
    listed = ListMessage("b", "Open", [{"title": "T", "rows": [{"id": "1", "title": "One"}]}]).to_payload()
    assert listed["interactive"] == {
        "type": "list",
        "body": {"text": "b"},
        "action": {"button": "Open", "sections": [{"title": "T", "rows": [{"id": "1", "title": "One"}]}]},
    }
    assert Template("hello_world", "en").to_payload() == {
        "template": {"name": "hello_world", "language": {"code": "en"}}
    }
    assert (
        Template.with_body_parameters("hello_world", "en", []).to_payload()
        == Template("hello_world", "en").to_payload()
    )
    assert "type" not in Template.with_body_parameters("t", "en", ["x"]).to_payload()


def test_location_accepts_numbers_and_sends_strings():
    location = Location(-90, 180.0, "Pole", "South")
    assert (location.latitude, location.longitude) == ("-90", "180.0")
    assert Location(1e-05, "-0.5", "n", "a").latitude == "0.00001"
    assert Location(" 12.5 ", "+3", "n", "a").to_payload()["location"]["latitude"] == "12.5"


def test_parts_accept_dicts_and_models_alike():
    by_dict = ReplyButtons(
        "b", [{"id": "22", "title": "one"}, {"type": "reply", "reply": {"id": "33", "title": "two"}}]
    )
    by_model = ReplyButtons("b", [Button("22", "one"), Button("33", "two")])
    assert by_dict == by_model
    assert by_dict.buttons[0] == Button("22", "one")
    assert ListMessage("b", "o", SECTIONS).sections[0].rows[0] == Row("s", "Small", "up to 1 kg")
    card = Contacts([{"name": {"formatted_name": "A"}, "phones": [{"phone": 4155550100}]}]).contacts[0]
    assert card.phones == (Phone("4155550100"),)
    assert card.to_dict() == {"name": {"formatted_name": "A"}, "phones": [{"phone": "4155550100"}]}


def test_limits_are_inclusive():
    """Check that each of the message models' limits is accepted at the limit and refused one past it."""

    def sections(title: int = 1, row_id: int = 1, row_title: int = 1, description: int = 1) -> list[Any]:
        row = {"id": "i" * row_id, "title": "r" * row_title, "description": "d" * description}
        return [{"title": "t" * title, "rows": [row]}]

    def list_with(n_sections: int, rows_per_section: int) -> ListMessage:
        parts = [
            {"title": f"s{s}", "rows": [{"id": f"{s}-{r}", "title": "r"} for r in range(rows_per_section)]}
            for s in range(n_sections)
        ]
        return ListMessage("b", "o", parts)

    builds: dict[str, tuple[int, Callable[[int], Any]]] = {
        "text body": (MAX_TEXT_BODY, lambda n: Text("x" * n)),
        "image caption": (MAX_CAPTION, lambda n: Image(LINK, caption="c" * n)),
        "list body": (MAX_INTERACTIVE_BODY, lambda n: ListMessage("b" * n, "o", sections())),
        "list button": (MAX_LIST_BUTTON, lambda n: ListMessage("b", "B" * n, sections())),
        "list header": (MAX_HEADER, lambda n: ListMessage("b", "o", sections(), header="h" * n)),
        "list footer": (MAX_FOOTER, lambda n: ListMessage("b", "o", sections(), footer="f" * n)),
        "section title": (MAX_SECTION_TITLE, lambda n: ListMessage("b", "o", sections(title=n))),
        "row id": (MAX_ROW_ID, lambda n: ListMessage("b", "o", sections(row_id=n))),
        "row title": (MAX_ROW_TITLE, lambda n: ListMessage("b", "o", sections(row_title=n))),
        "row description": (MAX_ROW_DESCRIPTION, lambda n: ListMessage("b", "o", sections(description=n))),
        "sections": (MAX_SECTIONS, lambda n: list_with(n, 1)),
        "rows in total": (MAX_ROWS, lambda n: list_with(2, n // 2) if n % 2 == 0 else list_with(1, n)),
        "buttons": (MAX_BUTTONS, lambda n: ReplyButtons("b", [Button(str(i), f"t{i}") for i in range(n)])),
        "button id": (MAX_BUTTON_ID, lambda n: ReplyButtons("b", [Button("i" * n, "t")])),
        "button title": (MAX_BUTTON_TITLE, lambda n: ReplyButtons("b", [Button("i", "t" * n)])),
        "template name": (MAX_TEMPLATE_NAME, lambda n: Template("t" * n, "en")),
    }
    for what, (limit, build) in builds.items():
        try:
            build(limit)  # at the limit: accepted
        except ItnioValidationError as error:
            pytest.fail(f"{what}: {limit} refused: {error}")
        with pytest.raises(ItnioValidationError, match=f"at most {limit}"):
            build(limit + 1)


#: The spec's limits (shared/spec/itniotech-api.md, "POST /wa/custom/sendMsg"), as ``(phrase, constant)``.
SPEC_LIMITS = [
    (r"\| text \| `body` \(required\) \| ≤ (\d+) characters", "MAX_TEXT_BODY"),
    (r"`action.sections`: 1–(\d+) sections", "MAX_SECTIONS"),
    (r"each `title` ≤ (\d+) chars", "MAX_SECTION_TITLE"),
    (r"at most (\d+) rows \*\*in total\*\*", "MAX_ROWS"),
    (r"row `id` ≤ (\d+) chars", "MAX_ROW_ID"),
    (r"row `title` ≤ (\d+)", "MAX_ROW_TITLE"),
    (r"row `description` ≤ (\d+)", "MAX_ROW_DESCRIPTION"),
    (r"header text ≤ (\d+)", "MAX_HEADER"),
    (r"body text ≤ (\d+)", "MAX_INTERACTIVE_BODY"),
    (r"footer ≤ (\d+)", "MAX_FOOTER"),
    (r"button label ≤ (\d+)", "MAX_LIST_BUTTON"),
    (r"`action.buttons`:\s+1–(\d+) items", "MAX_BUTTONS"),
    (r"`id` ≤ (\d+) chars \(returned in the webhook", "MAX_BUTTON_ID"),
    (r"`title` non-empty, ≤ (\d+) chars", "MAX_BUTTON_TITLE"),
    (r"recipient longer than (\d+) ", "PHONE_MAX_DIGITS"),
    (r"recipient longer than \d+ / shorter than (\d+) ", "PHONE_MIN_DIGITS"),
]


@pytest.mark.skipif(not SPEC.is_file(), reason=f"shared spec not found at {SPEC}")
@pytest.mark.parametrize(("phrase", "constant"), SPEC_LIMITS, ids=[c for _, c in SPEC_LIMITS])
def test_limits_are_the_specs(phrase: str, constant: str) -> None:
    """Check the message models' limit against the number the spec states (the spec is the single source)."""
    import re

    import airflow_provider_itnio.messages as messages

    found = re.search(phrase, SPEC.read_text(encoding="utf-8"))
    assert found is not None, f"the spec no longer says {phrase!r}"
    assert getattr(messages, constant) == int(found.group(1))


def test_parts_are_validated_by_the_message_that_holds_them():
    too_long = Button("3", "Rate us on a scale of 5")  # a part alone only holds values
    with pytest.raises(ItnioValidationError) as info:
        ReplyButtons("b", [Button("1", "one"), too_long])
    assert info.value.field == "interactive.action.buttons[1].reply.title"
    blank = Contact(Name("  "))
    with pytest.raises(ItnioValidationError) as info:
        Contacts([_golden_contact(), blank])
    assert info.value.field == "contacts[1].name.formatted_name"


def test_models_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Text("hi").body = "changed"  # type: ignore[misc]


def test_build_request_body_envelope():
    body = build_request_body(
        app_id="app",
        business_phone="+62 822-9995-3162",
        recipient=8614718004557,
        message=Text("hi"),
        reply_to="m1",
    )
    assert list(body) == ["appId", "businessPhone", "recipient", "channelType", "type", "text", "context"]
    assert body["businessPhone"] == "6282299953162"
    assert body["recipient"] == "8614718004557"
    assert body["channelType"] == 0
    assert body["context"] == {"refMessageId": "m1"}
    for empty in (None, ""):
        assert "context" not in build_request_body(
            app_id="app", business_phone="91856321321", recipient="8614718004557", message=Text("hi"), reply_to=empty
        )


def test_build_request_body_rejects_non_messages():
    with pytest.raises(TypeError, match="Message model"):
        build_request_body(
            app_id="a", business_phone="91856321321", recipient="8614718004557", message=as_any({"type": "text"})
        )


def test_error_values_are_truncated():
    with pytest.raises(ItnioValidationError) as info:
        Text("y" * 5000)
    assert "got 5000 characters: 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy...'" in str(info.value)
    assert len(info.value.problem) < 80


# -------------------------------------------------------------------------------------------- rules


@pytest.mark.parametrize(("build", "field", "rule", "status"), RULE_CASES)
def test_rule(build, field, rule, status):
    with pytest.raises(ItnioValidationError) as info:
        build()
    error = info.value
    assert error.field == field
    assert rule in error.rule
    assert str(error).startswith(f"{field}: {error.rule}; ")
    assert error.problem
    assert error.status == status
    if status is not None:
        assert status in STATUS_CODES
        assert f"the API would answer {status}" in str(error)


OBJECT_EMPTY = {
    "text": "-114",
    "image": "-116",
    "audio": "-118",
    "video": "-120",
    "sticker": "-122",
    "document": "-124",
    "location": "-127",
    "interactive": "-135",
    "contacts": "-135",
}


@pytest.mark.parametrize("kind", sorted(OBJECT_EMPTY))
@pytest.mark.parametrize("value", [None, {}, []], ids=["missing", "empty-dict", "empty-list"])
def test_dict_object_named_like_type_required(kind, value):
    data: dict[str, Any] = {"type": kind} if value is None else {"type": kind, kind: value}
    with pytest.raises(ItnioValidationError) as info:
        message_from_dict(data)
    assert (info.value.field, info.value.status) == (kind, OBJECT_EMPTY[kind])


def test_dict_template_object_empty():
    with pytest.raises(ItnioValidationError) as info:
        message_from_dict({"template": {}})
    assert (info.value.field, info.value.status) == ("template", "-135")


def test_rule_field_names_the_offending_value():
    with pytest.raises(ItnioValidationError) as info:
        reply_buttons(buttons=[Button("1", "one"), Button("2", "two"), Button("3", "Rate us on a scale of 5")])
    assert info.value.problem == "got 23 characters: 'Rate us on a scale of 5'"


# ---------------------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+86 138-0013-8000", "8613800138000"),
        ("+1 (415) 555 0100", "14155550100"),
        ("91.856.321.321", "91856321321"),
        (6282299953162, "6282299953162"),
        ("  +44 20 7946 0958 ", "442079460958"),
        ("+683 7012", "6837012"),  # Niue: as short as the vendor allows (libphonenumber's example number)
        ("+977 16600101234", "97716600101234"),  # Nepal: as long as the vendor allows (idem)
        ("0086 138 0013 8000", "8613800138000"),  # more forms in test_phone_numbers.py
    ],
)
def test_normalize_phone_valid(value, expected):
    assert normalize_phone(value, "recipient") == expected
    assert normalize_phone(value, "businessPhone") == expected


@pytest.mark.parametrize(
    ("value", "recipient_status", "business_status", "rule"),
    [
        pytest.param("123456", "-71", "-94", "a number that can exist", id="too-short"),
        pytest.param("+1 (23) 45", "-71", "-94", "a number that can exist", id="too-short-after-formatting"),
        pytest.param("123456789012345", "-70", "-93", "a number that can exist", id="too-long"),
        pytest.param(123456789012345, "-70", "-93", "a number that can exist", id="too-long-int"),
        # a German number can have 15 digits (libphonenumber's example), one more than the vendor takes
        pytest.param("+49 800 1234567890", "-70", "-93", "at most 14 digits", id="possible-but-15-digits"),
        pytest.param("86 138 0013 800x", "-72", "-95", "digits only", id="letter"),
        pytest.param("++8613800138000", "-72", "-95", "digits only", id="two-pluses"),
        pytest.param("86+13800138000", "-72", "-95", "digits only", id="inner-plus"),
        pytest.param("8613800138000/1", "-72", "-95", "digits only", id="slash"),
        pytest.param("٨٦١٣٨٠٠١٣٨٠٠٠", "-72", "-95", "digits only", id="non-ascii-digits"),
        pytest.param(-8613800138, "-72", "-95", "digits only", id="negative-int"),
        pytest.param("", "-71", "-94", "required", id="empty"),
        pytest.param(" - ", "-71", "-94", "required", id="formatting-only"),
        pytest.param(None, "-134", "-134", "must be a string or an integer", id="none"),
        pytest.param(8613800138.0, "-134", "-134", "must be a string or an integer", id="float"),
        pytest.param(True, "-134", "-134", "must be a string or an integer", id="bool"),
    ],
)
def test_normalize_phone_invalid(value, recipient_status, business_status, rule):
    for field, status in (("recipient", recipient_status), ("businessPhone", business_status)):
        with pytest.raises(ItnioValidationError) as info:
            normalize_phone(value, field)
        assert info.value.field == field
        assert rule in info.value.rule
        assert info.value.status == status
        assert repr(value) in info.value.problem  # the original value, as given


def test_normalize_phone_other_field_has_no_status():
    with pytest.raises(ItnioValidationError) as info:
        normalize_phone("12", "contacts[0].phones[0].phone")
    assert info.value.status is None
    assert info.value.field == "contacts[0].phones[0].phone"
