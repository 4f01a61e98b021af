"""
Tests of the vendor-push parser (``airflow_provider_itnio.events``).

The pushes are built from the field tables of the spec's section "Pushes from the vendor to you (webhooks)",
with the ids and numbers of the vendor's send example (the seed page has no example push). When the shared spec
is beside the checkout, tests check that these pushes and the status-order sentence still match it.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import re
import subprocess
import sys
from typing import Any

import pytest

from airflow_provider_itnio.errors import ItnioError
from airflow_provider_itnio.events import (
    INBOUND_EVENT,
    MAX_ID_CHARS,
    MAX_PHONE_DIGITS,
    MAX_PUSH_BYTES,
    MEDIA_TYPES,
    STATUS_EVENT,
    InboundEvent,
    MessageStatus,
    PushError,
    StatusEvent,
    advances,
    asset_extra,
    dedup_key,
    furthest,
    is_final,
    parse_push,
    parse_status,
)
from tests.support.paths import ROOT
from tests.support.pushes import (
    APP_ID,
    BUSINESS,
    CUSTOMER,
    FAILED_PUSH,
    MESSAGES,
    SENT_ID,
    STATUS_PUSH,
    WHEN,
    inbound,
    status_push,
)

SPEC = ROOT.parent / "shared" / "spec" / "itniotech-api.md"
needs_spec = pytest.mark.skipif(not SPEC.is_file(), reason=f"shared spec not found at {SPEC}")


def as_bytes(push: Any) -> bytes:
    return json.dumps(push).encode()


def spec_section(title: str) -> str:
    """Return the spec text from the heading containing ``title`` to the next heading of any level."""
    text = SPEC.read_text(encoding="utf-8")
    start = next(m.end() for m in re.finditer(r"^#+ .*$", text, re.M) if title in m.group())
    end = re.compile(r"^#+ ", re.M).search(text, start)
    return text[start : end.start() if end else len(text)]


def table_fields(section: str) -> set[str]:
    """Return the field names in the first column of the markdown table of a spec section."""
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


# ------------------------------------------------------------------------------------------- the spec itself


@needs_spec
def test_status_push_has_every_field_of_the_spec_table() -> None:
    assert set(STATUS_PUSH) == table_fields(spec_section("Message status report"))


@needs_spec
def test_inbound_push_has_every_field_of_the_spec_table() -> None:
    assert set(inbound(MESSAGES["text"])) == table_fields(spec_section("Uplink (inbound) message"))


@needs_spec
def test_every_message_type_and_field_the_spec_names_is_covered() -> None:
    section = spec_section("Uplink (inbound) message")
    paragraph = section[section.index("`message.type` is one of") : section.index("The vendor's page does not show")]
    named = {token for token in re.findall(r"`([^`]+)`", paragraph) if "." not in token}
    types = {message["type"] for message in MESSAGES.values()}
    object_fields = {
        key for message in MESSAGES.values() for part in message.values() if isinstance(part, dict) for key in part
    }
    assert named <= types | object_fields, named - types - object_fields
    assert named & types == types - {"interactive", "button"}  # the two tap types are the spec's assumption
    assert named >= MEDIA_TYPES


@needs_spec
def test_order_sentence_is_the_specs() -> None:
    assert ORDER_SENTENCE in " ".join(spec_section("Message status report").split())


# ------------------------------------------------------------------------------------------- status pushes


def test_status_push_with_every_field() -> None:
    event = parse_push(as_bytes(STATUS_PUSH))
    assert event == StatusEvent(
        app_id=APP_ID,
        channel_type=0,
        message_id=SENT_ID,
        status=MessageStatus.SENT,
        billable=True,
        business_phone=BUSINESS,
        recipient=CUSTOMER,
        failure=None,
        conversation_id="a1b2c3d4e5f6",
        expires_at=WHEN + 86400,
        conversation_type="service",
        timestamp=WHEN,
        raw=STATUS_PUSH,
    )
    assert event.warnings == ()
    assert event.event_type == STATUS_EVENT


def test_failed_status_push_carries_the_failure() -> None:
    event = parse_push(json.dumps(FAILED_PUSH))
    assert isinstance(event, StatusEvent)
    assert (event.status, event.is_final, event.billable) == (MessageStatus.FAILED, True, False)
    assert event.failure == FAILED_PUSH["failure"]
    assert (event.conversation_id, event.expires_at) == (None, None)


def test_failure_given_as_an_object_is_kept_as_its_json_text() -> None:
    failure = {"code": 131047, "title": "Re-engagement message"}
    event = parse_push(status_push(status="failed", failure=failure))
    assert isinstance(event, StatusEvent)
    assert event.failure is not None and json.loads(event.failure) == failure


@pytest.mark.parametrize("word", ["sent", "delivered", "read", "failed", "deleted"])
@pytest.mark.parametrize("spelling", [str.lower, str.upper, str.title, lambda w: f"  {w} "])
def test_status_words_in_any_case(word: str, spelling: Any) -> None:
    event = parse_push(status_push(status=spelling(word)))
    assert isinstance(event, StatusEvent)
    assert event.status is MessageStatus(word)
    assert event.raw["status"] == spelling(word)  # as sent


@pytest.mark.parametrize("value", [2, "2", 0, 3.0])
def test_integer_statuses_are_refused_because_no_vendor_page_defines_them(value: Any) -> None:
    with pytest.raises(PushError) as err:
        parse_push(status_push(status=value))
    assert (err.value.http_status, err.value.field) == (400, "status")
    assert "no integer status codes" in str(err.value)


def test_sender_number_from_form_or_from() -> None:
    by_from = parse_push(status_push(form=None, **{"from": "+91 85632-1321"}))
    assert isinstance(by_from, StatusEvent) and by_from.business_phone == BUSINESS
    both = parse_push(status_push(**{"from": "15550100200"}))
    assert isinstance(both, StatusEvent) and both.business_phone == BUSINESS  # the vendor's `form` wins


def test_numbers_as_strings_and_strings_as_numbers() -> None:
    push = status_push(
        appId=12345678,
        channelType="0",
        messageId=987654321,
        form=int(BUSINESS),
        recipient=int(CUSTOMER),
        timestamp=str(WHEN),
        expiresAt=float(WHEN),
        conversationId=42,
    )
    event = parse_push(push)
    assert isinstance(event, StatusEvent)
    assert (event.app_id, event.channel_type, event.message_id) == ("12345678", 0, "987654321")
    assert (event.business_phone, event.recipient) == (BUSINESS, CUSTOMER)
    assert (event.timestamp, event.expires_at, event.conversation_id) == (WHEN, WHEN, "42")
    assert event.warnings == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("true", True), ("false", False), ("TRUE", True), (" False ", False), (True, True), (False, False)],
        *[(1, True), (0, False), ("1", True), ("0", False), (None, None)],
    ],
)
def test_billable_leniency(value: Any, expected: bool | None) -> None:
    event = parse_push(status_push(billable=value))
    assert isinstance(event, StatusEvent)
    assert event.billable is expected
    assert event.warnings == ()


@pytest.mark.parametrize(
    ("field", "value", "attribute"),
    [
        ("billable", "maybe", "billable"),
        ("timestamp", "yesterday", "timestamp"),
        ("timestamp", -5, "timestamp"),
        ("expiresAt", {"at": 1}, "expires_at"),
        ("channelType", "WhatsApp", "channel_type"),
        ("conversationType", ["service"], "conversation_type"),
    ],
)
def test_unreadable_optional_field_is_none_named_in_warnings_and_kept_in_raw(
    field: str, value: Any, attribute: str
) -> None:
    event = parse_push(status_push(**{field: value}))
    assert getattr(event, attribute) is None
    assert len(event.warnings) == 1 and event.warnings[0].startswith(f"{field}: ")
    assert event.raw[field] == value


def test_absent_optional_fields_are_none() -> None:
    required = ("appId", "messageId", "eventType", "form", "recipient", "status")
    event = parse_push({key: STATUS_PUSH[key] for key in required})
    assert isinstance(event, StatusEvent)
    optional = ("channel_type", "billable", "failure", "conversation_id", "expires_at", "conversation_type")
    assert [getattr(event, name) for name in (*optional, "timestamp")] == [None] * 7
    assert event.warnings == ()


def test_unknown_fields_are_kept() -> None:
    extra = {"pricing": {"category": "utility", "pricing_model": "PMP"}, "newField": [1, 2]}
    event = parse_push({**STATUS_PUSH, **extra})
    assert event.raw == {**STATUS_PUSH, **extra}
    assert asset_extra(event)["raw"]["pricing"] == extra["pricing"]


# ------------------------------------------------------------------------------------------- inbound pushes


def test_inbound_text_push() -> None:
    push = inbound(MESSAGES["text"])
    event = parse_push(as_bytes(push))
    assert event == InboundEvent(
        app_id=APP_ID,
        channel_type=0,
        message_id=push["messageId"],
        timestamp=WHEN + 60,
        business_phone=BUSINESS,
        from_phone=CUSTOMER,
        name="Asha",
        type="text",
        text="Can I move my appointment?",
        reply=None,
        location=None,
        media=None,
        raw=push,
    )
    assert event.event_type == INBOUND_EVENT


@pytest.mark.parametrize("kind", sorted(MEDIA_TYPES))
def test_inbound_media_push(kind: str) -> None:
    message = MESSAGES[kind]
    event = parse_push(inbound(message))
    assert isinstance(event, InboundEvent)
    assert (event.type, event.media) == (kind, message[kind])
    assert event.text == message[kind].get("caption")  # the caption, else None (a filename is not text)
    assert (event.reply, event.location, event.warnings) == (None, None, ())


def test_inbound_location_push_has_float_coordinates() -> None:
    event = parse_push(inbound(MESSAGES["location"]))
    assert isinstance(event, InboundEvent)
    assert event.location == {"longitude": 116.397128, "latitude": 39.916527, "name": "Office", "address": "1 Main St"}
    assert (event.text, event.media, event.reply) == (None, None, None)


def test_location_with_numbers_and_without_name_or_address() -> None:
    event = parse_push(inbound({"type": "location", "location": {"latitude": -33.9, "longitude": 18, "url": "u"}}))
    assert isinstance(event, InboundEvent)
    assert event.location == {"latitude": -33.9, "longitude": 18.0, "name": None, "address": None, "url": "u"}


@pytest.mark.parametrize(("latitude", "problem"), [("north", "decimal"), ("91.5", "between")])
def test_unreadable_coordinate_is_kept_as_sent_with_a_warning(latitude: str, problem: str) -> None:
    event = parse_push(inbound({"type": "location", "location": {"latitude": latitude, "longitude": "1"}}))
    assert isinstance(event, InboundEvent) and event.location is not None
    assert event.location["latitude"] == latitude
    assert len(event.warnings) == 1
    assert event.warnings[0].startswith("message.location.latitude: ") and problem in event.warnings[0]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("button_reply", {"id": "reschedule", "title": "Reschedule"}),
        ("list_reply", {"id": "slot-2", "title": "Tue 10:00"}),
        ("quick_reply", {"id": "STOP_PROMOS", "title": "Stop promotions"}),
    ],
)
def test_taps_give_reply_id_and_title(case: str, expected: dict[str, str]) -> None:
    message = MESSAGES[case]
    event = parse_push(inbound(message))
    assert isinstance(event, InboundEvent)
    assert (event.type, event.reply, event.text) == (message["type"], expected, None)
    assert event.raw["message"] == message  # list_reply's description stays in raw


def test_tap_without_interactive_type_is_read_from_the_object_present() -> None:
    event = parse_push(inbound({"type": "interactive", "interactive": {"button_reply": {"id": "yes", "title": "Yes"}}}))
    assert isinstance(event, InboundEvent) and event.reply == {"id": "yes", "title": "Yes"}


def test_other_interactive_kinds_have_no_reply_but_are_kept() -> None:
    message = {"type": "interactive", "interactive": {"type": "nfm_reply", "nfm_reply": {"response_json": "{}"}}}
    event = parse_push(inbound(message))
    assert isinstance(event, InboundEvent)
    assert (event.type, event.reply, event.warnings) == ("interactive", None, ())
    assert event.raw["message"] == message


@pytest.mark.parametrize("case", ["unknown", "unsupported"])
def test_unknown_and_unsupported_types_are_kept(case: str) -> None:
    event = parse_push(inbound(MESSAGES[case]))
    assert isinstance(event, InboundEvent)
    assert (event.type, event.text, event.reply, event.media, event.location) == (case, None, None, None, None)
    assert event.raw["message"] == MESSAGES[case]


def test_a_type_no_one_documents_is_kept_as_sent_with_its_fields() -> None:
    message = {"type": "Reaction", "Reaction": {"emoji": "👍", "messageId": SENT_ID}, "context": {"id": "x"}}
    push = inbound(message, referral={"source_url": "https://ad.example"})
    event = parse_push(push)
    assert isinstance(event, InboundEvent)
    assert (event.type, event.text, event.reply, event.warnings) == ("Reaction", None, None, ())
    assert event.raw == push


def test_text_given_as_a_plain_string_and_missing_name() -> None:
    event = parse_push(inbound({"type": "text", "text": "hello"}, **{"from": {"phone": "+91 856 321 322"}}))
    assert isinstance(event, InboundEvent)
    assert (event.text, event.from_phone, event.name) == ("hello", CUSTOMER, None)


def test_text_message_without_its_object_is_recorded_with_a_warning() -> None:
    event = parse_push(inbound({"type": "text"}))
    assert isinstance(event, InboundEvent) and event.text is None
    assert [w.split(":")[0] for w in event.warnings] == ["message.text"]


def test_inbound_numbers_as_strings_and_strings_as_numbers() -> None:
    event = parse_push(inbound(MESSAGES["text"], businessPhone=int(BUSINESS), timestamp=str(WHEN), channelType="0"))
    assert isinstance(event, InboundEvent)
    assert (event.business_phone, event.timestamp, event.channel_type) == (BUSINESS, WHEN, 0)


def test_mapping_input_is_copied() -> None:
    push = inbound(MESSAGES["image"])
    event = parse_push(push)
    push["message"]["image"]["caption"] = "changed"
    assert event.raw["message"]["image"]["caption"] == "the receipt"
    assert isinstance(event, InboundEvent) and event.media is not None and event.media["caption"] == "the receipt"


def test_events_are_frozen_and_hashable() -> None:
    status, reply = parse_push(STATUS_PUSH), parse_push(inbound(MESSAGES["button_reply"]))
    assert isinstance(status, StatusEvent)
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.status = MessageStatus.READ  # type: ignore[misc]
    assert len({status, reply, parse_push(STATUS_PUSH)}) == 2


# ------------------------------------------------------------------------------------------- refused bodies


def _without(push: dict[str, Any], path: str) -> dict[str, Any]:
    push = copy.deepcopy(push)
    *parents, last = path.split(".")
    target = push
    for key in parents:
        target = target[key]
    del target[last]
    return push


def _with(push: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    push = copy.deepcopy(push)
    *parents, last = path.split(".")
    target = push
    for key in parents:
        target = target[key]
    target[last] = value
    return push


TEXT_PUSH = inbound(MESSAGES["text"])

#: (body, the field the error names, a piece of its rule or problem)
BAD_BODIES: dict[str, tuple[Any, str, str]] = {
    "not json": (b'{"appId": ', "body", "must be JSON"),
    "not utf-8": (b'{"appId": "\xff"}', "body", "UTF-8"),
    "NaN": (b'{"timestamp": NaN}', "body", "must be JSON"),
    "too deep": (b"[" * 200_000 + b"]" * 200_000, "body", "nested too deeply"),
    "huge integer": (b'{"timestamp": ' + b"9" * 5000 + b"}", "body", "must be JSON"),
    "array": (b"[]", "body", "got a JSON array"),
    "string": ('"up-message-event"', "body", "got a JSON string"),
    "null": ("null", "body", "got a JSON null"),
    "list object": ([STATUS_PUSH], "body", "must be a JSON object"),
    "mapping not json": ({**STATUS_PUSH, "when": object()}, "body", "cannot be encoded as JSON"),
    "eventType missing": (status_push(eventType=None), "eventType", "it is missing"),
    "eventType number": (status_push(eventType=1), "eventType", "must be"),
    "eventType unknown": (status_push(eventType="account-event"), "eventType", "'account-event'"),
    "appId missing": (status_push(appId=None), "appId", "it is missing"),
    "appId blank": (status_push(appId="  "), "appId", "it is blank"),
    "appId object": (status_push(appId={"id": 1}), "appId", "got a JSON object"),
    "messageId missing": (status_push(messageId=None), "messageId", "it is missing"),
    "messageId null": ({**STATUS_PUSH, "messageId": None}, "messageId", "it is null"),
    "messageId list": (status_push(messageId=[SENT_ID]), "messageId", "got a JSON array"),
    "messageId bool": (status_push(messageId=True), "messageId", "got a JSON boolean"),
    "status missing": (status_push(status=None), "status", "it is missing"),
    "status unknown": (status_push(status="opened"), "status", "'opened'"),
    "status bool": (status_push(status=True), "status", "got a JSON boolean"),
    "sender missing": (status_push(form=None), "form", "neither 'form' nor 'from'"),
    "sender not digits": (status_push(form="9185632132x"), "form", "other than digits"),
    "sender object": (status_push(form=None, **{"from": {"phone": BUSINESS}}), "from", "got a JSON object"),
    "recipient missing": (status_push(recipient=None), "recipient", "it is missing"),
    "recipient blank": (status_push(recipient=" + "), "recipient", "it is blank"),
    "recipient too long": (status_push(recipient="9" * (MAX_PHONE_DIGITS + 1)), "recipient", "digits"),
    "businessPhone missing": (_without(TEXT_PUSH, "businessPhone"), "businessPhone", "it is missing"),
    "businessPhone float": (_with(TEXT_PUSH, "businessPhone", 9.1e10), "businessPhone", "got a JSON number"),
    "from missing": (_without(TEXT_PUSH, "from"), "from", "it is missing"),
    "from list": (_with(TEXT_PUSH, "from", [CUSTOMER]), "from", "got a JSON array"),
    "from.phone missing": (_without(TEXT_PUSH, "from.phone"), "from.phone", "it is missing"),
    "from.phone letters": (_with(TEXT_PUSH, "from.phone", "call me"), "from.phone", "other than digits"),
    "message missing": (_without(TEXT_PUSH, "message"), "message", "it is missing"),
    "message string": (_with(TEXT_PUSH, "message", "hi"), "message", "got a JSON string"),
    "message.type missing": (_without(TEXT_PUSH, "message.type"), "message.type", "it is missing"),
    "message.type blank": (_with(TEXT_PUSH, "message.type", ""), "message.type", "it is blank"),
    "inbound messageId missing": (_without(TEXT_PUSH, "messageId"), "messageId", "it is missing"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_body_is_400_naming_the_field(case: str) -> None:
    body, field, fragment = BAD_BODIES[case]
    with pytest.raises(PushError) as err:
        parse_push(body)
    assert (err.value.http_status, err.value.field) == (400, field)
    assert str(err.value).startswith(f"{field}: ")
    assert fragment in str(err.value)
    assert isinstance(err.value, ItnioError)


def test_errors_do_not_quote_phone_numbers() -> None:
    with pytest.raises(PushError) as err:
        parse_push(_with(TEXT_PUSH, "from.phone", "+91 856 321 322 ext 7"))
    assert "856" not in str(err.value)


def _padded(size: int) -> bytes:
    """Return the status push as JSON of exactly ``size`` bytes (white space after the object)."""
    body = as_bytes(STATUS_PUSH)
    return body + b" " * (size - len(body))


def test_body_of_exactly_the_limit_is_accepted() -> None:
    assert parse_push(_padded(MAX_PUSH_BYTES)).message_id == SENT_ID


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_padded(MAX_PUSH_BYTES + 1), id="bytes"),
        pytest.param(_padded(MAX_PUSH_BYTES + 1).decode(), id="text"),
        pytest.param(json.dumps({**STATUS_PUSH, "note": "é" * (MAX_PUSH_BYTES // 2)}), id="text-multibyte"),
        pytest.param({**STATUS_PUSH, "note": "x" * MAX_PUSH_BYTES}, id="mapping"),
    ],
)
def test_body_over_the_limit_is_413(body: Any) -> None:
    if isinstance(body, str):
        assert len(body.encode()) > MAX_PUSH_BYTES
    with pytest.raises(PushError) as err:
        parse_push(body)
    assert (err.value.http_status, err.value.field) == (413, "body")
    assert str(MAX_PUSH_BYTES) in str(err.value)


def test_multibyte_text_under_the_limit_in_characters_but_not_in_bytes() -> None:
    body = json.dumps({**STATUS_PUSH, "note": "é" * (MAX_PUSH_BYTES // 2)}, ensure_ascii=False)
    assert len(body) < MAX_PUSH_BYTES < len(body.encode())
    with pytest.raises(PushError) as err:
        parse_push(body)
    assert err.value.http_status == 413


def _column_width(table: str, column: str) -> int:
    from airflow_provider_itnio.webhook.models import metadata

    length = getattr(metadata.tables[table].c[column].type, "length", None)
    assert isinstance(length, int)
    return length


@pytest.mark.parametrize(
    ("push", "field", "table", "column"),
    [
        pytest.param(lambda n: status_push(messageId="m" * n), "messageId", "itnio_message_status", "message_id"),
        pytest.param(lambda n: status_push(appId="a" * n), "appId", "itnio_status_history", "app_id"),
        pytest.param(
            lambda n: inbound(MESSAGES["text"], messageId="m" * n), "messageId", "itnio_inbound_message", "message_id"
        ),
        pytest.param(lambda n: inbound({"type": "t" * n}), "message.type", "itnio_inbound_message", "type"),
    ],
)
def test_ids_wider_than_their_column_are_400_not_a_database_error(
    push: Any, field: str, table: str, column: str
) -> None:
    """PostgreSQL refuses a value wider than its ``VARCHAR``: the push is refused before it gets there."""
    width = _column_width(table, column)
    assert parse_push(push(width)) is not None
    with pytest.raises(PushError) as err:
        parse_push(push(width + 1))
    assert (err.value.http_status, err.value.field) == (400, field)


def test_optional_values_a_column_cannot_hold_are_none_with_a_warning() -> None:
    width = _column_width("itnio_message_status", "conversation_id")
    event = parse_push(status_push(conversationId="c" * (width + 1), timestamp=2**63, expiresAt=10**30))
    assert isinstance(event, StatusEvent)
    assert (event.conversation_id, event.timestamp, event.expires_at) == (None, None, None)
    assert [w.split(":")[0] for w in event.warnings] == ["conversationId", "expiresAt", "timestamp"]
    assert event.raw["timestamp"] == 2**63  # kept as sent
    assert parse_push(status_push(timestamp=2**63 - 1)).timestamp == 2**63 - 1  # a BIGINT's largest


@pytest.mark.parametrize("where", ["text", "messageId", "key"])
def test_a_lone_surrogate_is_400_not_a_database_error(where: str) -> None:
    """``"\\ud800"`` is valid JSON syntax but no UTF-8 column can store it."""
    push = inbound(MESSAGES["text"])
    if where == "text":
        push["message"]["text"]["body"] = "half an emoji \ud83d"
    elif where == "messageId":
        push["messageId"] = "wamid.\udc00"
    else:
        push["extra\ud800"] = 1
    with pytest.raises(PushError) as err:
        parse_push(json.dumps(push).encode())
    assert (err.value.http_status, err.value.field) == (400, "body")
    assert "lone surrogate" in str(err.value)
    assert parse_push(json.dumps(inbound(MESSAGES["text"], note="\ud83d\ude00")).encode())  # a pair is fine


# ------------------------------------------------------------------------------------------- status progress

#: The spec's order statement (checked against the spec by test_order_sentence_is_the_specs).
ORDER_SENTENCE = "The order of progress is `sent` < `delivered` < `read`; `failed` and `deleted` are final."
PROGRESS = re.findall(r"`(\w+)`", ORDER_SENTENCE.split(";")[0])
FINALS = set(re.findall(r"`(\w+)`", ORDER_SENTENCE.split(";")[1]))
STATUSES = [*PROGRESS, *sorted(FINALS)]


def test_the_statement_names_every_status() -> None:
    assert sorted(STATUSES) == sorted(status.value for status in MessageStatus)


def spec_keeps_new(current: str | None, new: str) -> bool:
    """Return whether the spec's statement says ``new``, arriving after ``current``, becomes the status."""
    if current is None:
        return True
    if current in FINALS:  # final: nothing comes after it
        return False
    if new in FINALS:  # a final status ends any progress
        return True
    return PROGRESS.index(new) > PROGRESS.index(current)


@pytest.mark.parametrize(("current", "new"), list(itertools.product([None, *STATUSES], STATUSES)))
def test_advances_and_furthest_over_all_pairs(current: str | None, new: str) -> None:
    assert advances(current, new) is spec_keeps_new(current, new)
    assert furthest(current, new) == (new if spec_keeps_new(current, new) else current)
    assert advances(current and current.upper(), new.title()) is spec_keeps_new(current, new)


@pytest.mark.parametrize("length", [1, 2, 3, 4])
def test_progress_does_not_depend_on_arrival_order(length: int) -> None:
    for arrivals in itertools.product(STATUSES, repeat=length):
        kept: MessageStatus | None = None
        for status in arrivals:
            kept = furthest(kept, status)
        finals = [status for status in arrivals if status in FINALS]
        expected = finals[0] if finals else max(arrivals, key=PROGRESS.index)
        assert kept == expected, arrivals


def test_is_final() -> None:
    assert {status for status in STATUSES if is_final(status)} == FINALS
    assert is_final(" Failed ")


def test_status_helpers_refuse_unknown_words() -> None:
    with pytest.raises(PushError, match="status: must be one of"):
        advances("sent", "opened")
    with pytest.raises(PushError):
        is_final("7")
    assert parse_status("READ", "x") is MessageStatus.READ


# ------------------------------------------------------------------------------------------- dedup keys


def test_re_pushed_status_has_the_same_key() -> None:
    first = parse_push(as_bytes(status_push(status="read", timestamp=WHEN + 9)))
    again = parse_push(status_push(status="READ", timestamp=WHEN + 70, billable="false", extra="re-push"))
    assert dedup_key(first) == dedup_key(again)


def test_keys_differ_by_status_message_and_kind() -> None:
    keys = {dedup_key(parse_push(status_push(status=status))) for status in ("sent", "delivered", "read", "failed")} | {
        dedup_key(parse_push(status_push(status="read", messageId="another"))),
        dedup_key(parse_push(status_push(status="read", appId="otherApp"))),
        dedup_key(parse_push(inbound(MESSAGES["text"], messageId=SENT_ID))),
    }
    assert len(keys) == 7


def test_re_pushed_inbound_message_has_the_same_key() -> None:
    first = parse_push(inbound(MESSAGES["button_reply"]))
    again = parse_push(as_bytes(inbound(MESSAGES["button_reply"], timestamp=WHEN + 240)))
    other = parse_push(inbound(MESSAGES["button_reply"], messageId="wamid.other"))
    assert dedup_key(first) == dedup_key(again) != dedup_key(other)


def test_key_is_short_and_unambiguous_whatever_the_ids() -> None:
    long_id = parse_push(status_push(appId="a" * MAX_ID_CHARS, messageId="m" * MAX_ID_CHARS))  # the longest
    tricky_a = parse_push(status_push(appId="a:b", messageId="c"))
    tricky_b = parse_push(status_push(appId="a", messageId="b:c"))
    assert len(dedup_key(long_id)) <= 72
    assert dedup_key(tricky_a) != dedup_key(tricky_b)


# ------------------------------------------------------------------------------------------- asset extras

ALL_PUSHES = [STATUS_PUSH, FAILED_PUSH, *(inbound(message) for message in MESSAGES.values())]


@pytest.mark.parametrize("push", ALL_PUSHES, ids=["status", "failed", *MESSAGES])
def test_asset_extra_is_json_and_holds_what_the_issue_lists(push: dict[str, Any]) -> None:
    event = parse_push(push)
    extra = asset_extra(event)
    assert json.loads(json.dumps(extra, allow_nan=False)) == extra
    assert extra["raw"] == push
    if isinstance(event, StatusEvent):
        assert extra["status"] == push["status"] and type(extra["status"]) is str
        expected = {"message_id": push["messageId"], "recipient": CUSTOMER, "timestamp": push["timestamp"]}
        assert {key: extra[key] for key in expected} == expected
        assert extra["failure"] == (push["failure"] or None)
    else:
        listed = ["message_id", "from", "name", "business_phone", "type", "text", "reply", "location", "timestamp"]
        assert set(listed) <= set(extra)
        assert (extra["from"], extra["name"], extra["business_phone"]) == (CUSTOMER, "Asha", BUSINESS)
        assert (extra["type"], extra["text"], extra["reply"]) == (push["message"]["type"], event.text, event.reply)
        assert (extra["location"], extra["message_id"]) == (event.location, push["messageId"])


def test_asset_extra_does_not_share_the_events_small_dicts() -> None:
    event = parse_push(inbound(MESSAGES["button_reply"]))
    extra = asset_extra(event)
    extra["reply"]["id"] = "forged"
    assert isinstance(event, InboundEvent) and event.reply == {"id": "reschedule", "title": "Reschedule"}


# ------------------------------------------------------------------------------------------- purity


def test_module_imports_nothing_from_airflow() -> None:
    code = (
        "import sys, airflow_provider_itnio.events; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'requests', 'urllib3', 'pendulum')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
