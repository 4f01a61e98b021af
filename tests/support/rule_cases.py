"""
Every rule of the spec, broken once: a message-building callable, the field, the rule, the vendor's code.

The message models' tests (``tests/unit/messages/test_models.py``) check each case's error; the end-to-end rules test
(``tests/integration/test_rules_end_to_end.py``) sends each through real Airflow and checks that no request went out.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_itnio.messages import (
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
    Name,
    ReplyButtons,
    Row,
    Section,
    Sticker,
    Template,
    Text,
    Video,
    build_request_body,
    message_from_dict,
)

LINK = "https://abc.com/log.png"


BUTTONS = [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}]


CARD = {"name": {"formatted_name": "Ada Lovelace"}}


def as_any(value: object) -> Any:
    """Return a value of the wrong type, passed on purpose (keeps mypy quiet without type: ignore)."""
    return value


def list_row(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"r{n}", "title": f"Row {n}", **extra}


def list_message(**overrides: Any) -> ListMessage:
    args: dict[str, Any] = {"body": "Pick", "button": "Open", "sections": [{"title": "S", "rows": [list_row(1)]}]}
    return ListMessage(**{**args, **overrides})


def reply_buttons(**overrides: Any) -> ReplyButtons:
    return ReplyButtons(**{"body": "Continue?", "buttons": BUTTONS, **overrides})


def contact_card(**overrides: Any) -> Contacts:
    return Contacts([{**CARD, **overrides}])


def location_message(**overrides: Any) -> Location:
    return Location(**{"latitude": "1.5", "longitude": "2.5", "name": "N", "address": "A", **overrides})


def template_component(ctype: str, *params: Any) -> Template:
    return Template("t", "en", [{"type": ctype, "parameters": list(params)}])


def request_body(**overrides: Any) -> dict[str, Any]:
    args = {
        "app_id": "app",
        "business_phone": "91856321321",  # the vendor's example numbers (possible, in no assigned range)
        "recipient": "8614718004557",
        "message": Text("hi"),
        **overrides,
    }
    return build_request_body(**args)


P0 = "template.components[0].parameters[0]"


S = "interactive.action.sections"


B = "interactive.action.buttons"


RULE_CASES = [
    # text
    pytest.param(lambda: Text(as_any(None)), "text.body", "required", "-115", id="text-body-required"),
    pytest.param(lambda: Text(""), "text.body", "required", "-115", id="text-body-empty"),
    pytest.param(lambda: Text(" \n\t "), "text.body", "required", "-115", id="text-body-whitespace-only"),
    pytest.param(lambda: Text("x" * 4097), "text.body", "at most 4096 characters", None, id="text-body-max-4096"),
    pytest.param(
        lambda: Text(as_any({"a": 1})), "text.body", "must be a string", "-134", id="text-body-must-be-string"
    ),
    # media
    pytest.param(lambda: Image(""), "image.link", "required", "-117", id="image-link-required"),
    pytest.param(lambda: Audio(""), "audio.link", "required", "-119", id="audio-link-required"),
    pytest.param(lambda: Video(" "), "video.link", "required", "-121", id="video-link-required"),
    pytest.param(lambda: Sticker(as_any(None)), "sticker.link", "required", "-123", id="sticker-link-required"),
    pytest.param(lambda: Document("", "f.pdf"), "document.link", "required", "-125", id="document-link-required"),
    pytest.param(lambda: Image("ftp://abc.com/a.png"), "image.link", "http(s) URL", "-133", id="link-scheme-http"),
    pytest.param(lambda: Audio("/files/a.ogg"), "audio.link", "http(s) URL", "-133", id="link-absolute"),
    pytest.param(lambda: Video("https://"), "video.link", "http(s) URL", "-133", id="link-needs-host"),
    pytest.param(lambda: Sticker("abc.com/s.webp"), "sticker.link", "http(s) URL", "-133", id="link-needs-scheme"),
    pytest.param(lambda: Image("https://abc.com/a b.png"), "image.link", "http(s) URL", "-133", id="link-no-spaces"),
    pytest.param(lambda: Document("http://[::1/x", "f"), "document.link", "http(s) URL", "-133", id="link-parsable"),
    pytest.param(
        lambda: Image(as_any(["https://a.com"])),
        "image.link",
        "must be a string",
        "-134",
        id="link-must-be-string",
    ),
    pytest.param(lambda: Image(LINK, "c" * 1025), "image.caption", "at most 1024", None, id="caption-max-1024"),
    pytest.param(
        lambda: Video(LINK, as_any(42)),
        "video.caption",
        "must be a string",
        "-134",
        id="caption-must-be-string",
    ),
    pytest.param(
        lambda: Document(LINK, "", "c"),
        "document.filename",
        "required",
        "-135",
        id="document-filename-required",
    ),
    pytest.param(
        lambda: Document(LINK, "f", "c" * 1025),
        "document.caption",
        "at most 1024",
        None,
        id="document-caption-max",
    ),
    # location
    pytest.param(
        lambda: location_message(latitude=""), "location.latitude", "required", "-129", id="latitude-required"
    ),
    pytest.param(
        lambda: location_message(longitude=None), "location.longitude", "required", "-128", id="longitude-required"
    ),
    pytest.param(
        lambda: location_message(latitude="north"),
        "location.latitude",
        "decimal number",
        "-134",
        id="latitude-numeric",
    ),
    pytest.param(
        lambda: location_message(longitude=[1]),
        "location.longitude",
        "decimal number",
        "-134",
        id="longitude-numeric",
    ),
    pytest.param(
        lambda: location_message(latitude=float("nan")),
        "location.latitude",
        "decimal number",
        "-134",
        id="latitude-finite",
    ),
    pytest.param(
        lambda: location_message(latitude=True),
        "location.latitude",
        "decimal number",
        "-134",
        id="latitude-not-bool",
    ),
    pytest.param(
        lambda: location_message(latitude=90.5), "location.latitude", "between -90 and 90", None, id="latitude-range"
    ),
    pytest.param(
        lambda: location_message(longitude="-180.01"),
        "location.longitude",
        "between -180 and 180",
        None,
        id="longitude-range",
    ),
    pytest.param(lambda: location_message(name=""), "location.name", "required", "-135", id="location-name-required"),
    pytest.param(
        lambda: location_message(address="  "),
        "location.address",
        "required",
        "-135",
        id="location-address-required",
    ),
    pytest.param(
        lambda: location_message(name=7), "location.name", "must be a string", "-134", id="location-name-string"
    ),
    # interactive list
    pytest.param(lambda: list_message(body=""), "interactive.body.text", "required", "-135", id="list-body-required"),
    pytest.param(
        lambda: list_message(body="b" * 1025), "interactive.body.text", "at most 1024", None, id="list-body-max-1024"
    ),
    pytest.param(
        lambda: list_message(header="h" * 61), "interactive.header.text", "at most 60", None, id="list-header-max-60"
    ),
    pytest.param(
        lambda: list_message(footer="f" * 61), "interactive.footer.text", "at most 60", None, id="list-footer-max-60"
    ),
    pytest.param(
        lambda: list_message(button=""), "interactive.action.button", "required", "-135", id="list-button-required"
    ),
    pytest.param(
        lambda: list_message(button="B" * 21),
        "interactive.action.button",
        "at most 20",
        None,
        id="list-button-max-20",
    ),
    pytest.param(lambda: list_message(sections=[]), S, "at least 1 section", "-135", id="list-sections-at-least-1"),
    pytest.param(
        lambda: list_message(sections=[{"title": f"s{n}", "rows": [list_row(n)]} for n in range(11)]),
        S,
        "at most 10 sections",
        None,
        id="list-sections-at-most-10",
    ),
    pytest.param(lambda: list_message(sections="S"), S, "must be a list", "-134", id="list-sections-must-be-list"),
    pytest.param(
        lambda: list_message(sections=["S"]),
        f"{S}[0]",
        "must be an object",
        "-134",
        id="list-section-must-be-object",
    ),
    pytest.param(
        lambda: list_message(sections=[{"title": "", "rows": [list_row(1)]}]),
        f"{S}[0].title",
        "required",
        "-135",
        id="section-title-required",
    ),
    pytest.param(
        lambda: list_message(sections=[{"title": "T" * 25, "rows": [list_row(1)]}]),
        f"{S}[0].title",
        "at most 24",
        None,
        id="section-title-max-24",
    ),
    pytest.param(
        lambda: list_message(sections=[{"title": "A", "rows": [list_row(1)]}, {"title": "B", "rows": []}]),
        f"{S}[1].rows",
        "at least 1 row",
        "-135",
        id="section-rows-at-least-1",
    ),
    pytest.param(
        lambda: list_message(
            sections=[
                {"title": "A", "rows": [list_row(n) for n in range(6)]},
                {"title": "B", "rows": [list_row(n) for n in range(6, 11)]},
            ]
        ),
        S,
        "at most 10 rows in total",
        None,
        id="list-rows-at-most-10-in-total",
    ),
    pytest.param(
        lambda: list_message(sections=[{"title": "A", "rows": [{"id": "", "title": "t"}]}]),
        f"{S}[0].rows[0].id",
        "required",
        "-135",
        id="row-id-required",
    ),
    pytest.param(
        lambda: list_message(sections=[{"title": "A", "rows": [list_row(1), {"id": "i" * 201, "title": "t"}]}]),
        f"{S}[0].rows[1].id",
        "at most 200",
        None,
        id="row-id-max-200",
    ),
    pytest.param(
        lambda: list_message(
            sections=[{"title": "A", "rows": [list_row(1)]}, {"title": "B", "rows": [list_row(2), list_row(1)]}]
        ),
        f"{S}[1].rows[1].id",
        "must be unique within the message",
        None,
        id="row-id-unique-across-sections",
    ),
    pytest.param(
        lambda: list_message(sections=[{"title": "A", "rows": [{"id": "1", "title": ""}]}]),
        f"{S}[0].rows[0].title",
        "required",
        "-135",
        id="row-title-required",
    ),
    pytest.param(
        lambda: list_message(sections=[{"title": "A", "rows": [list_row(1), {"id": "2", "title": "t" * 25}]}]),
        f"{S}[0].rows[1].title",
        "at most 24",
        None,
        id="row-title-max-24",
    ),
    pytest.param(
        lambda: list_message(sections=[{"title": "A", "rows": [list_row(1, description="d" * 73)]}]),
        f"{S}[0].rows[0].description",
        "at most 72",
        None,
        id="row-description-max-72",
    ),
    pytest.param(
        lambda: list_message(sections=[{"title": "A", "rows": [list_row(1, desc="typo")]}]),
        f"{S}[0].rows[0].desc",
        "unknown key",
        None,
        id="row-unknown-key",
    ),
    pytest.param(
        lambda: list_message(sections=[Section("", [Row("1", "t")])]),
        f"{S}[0].title",
        "required",
        "-135",
        id="section-model-title-required",
    ),
    pytest.param(
        lambda: list_message(sections=[Section("A", [Row("1", "t")]), Section("B", [Row("2", "t", "d" * 73)])]),
        f"{S}[1].rows[0].description",
        "at most 72",
        None,
        id="row-model-description-max-72",
    ),
    # interactive buttons
    pytest.param(
        lambda: reply_buttons(body=" "), "interactive.body.text", "required", "-135", id="buttons-body-required"
    ),
    pytest.param(
        lambda: reply_buttons(body="b" * 1025),
        "interactive.body.text",
        "at most 1024",
        None,
        id="buttons-body-max-1024",
    ),
    pytest.param(
        lambda: reply_buttons(header="h" * 61),
        "interactive.header.text",
        "at most 60",
        None,
        id="buttons-header-max-60",
    ),
    pytest.param(
        lambda: reply_buttons(footer="f" * 61),
        "interactive.footer.text",
        "at most 60",
        None,
        id="buttons-footer-max-60",
    ),
    pytest.param(lambda: reply_buttons(buttons=[]), B, "at least 1 button", "-135", id="buttons-at-least-1"),
    pytest.param(
        lambda: reply_buttons(buttons=[Button(str(n), f"t{n}") for n in range(4)]),
        B,
        "at most 3 buttons",
        None,
        id="buttons-at-most-3",
    ),
    pytest.param(
        lambda: reply_buttons(buttons=[{"id": "", "title": "t"}]),
        f"{B}[0].reply.id",
        "required",
        "-135",
        id="button-id-required",
    ),
    pytest.param(
        lambda: reply_buttons(buttons=[Button("i" * 257, "t")]),
        f"{B}[0].reply.id",
        "at most 256",
        None,
        id="button-id-max-256",
    ),
    pytest.param(
        lambda: reply_buttons(buttons=[Button("a", "One"), Button("a", "Two")]),
        f"{B}[1].reply.id",
        "must be unique within the message",
        None,
        id="button-id-unique",
    ),
    pytest.param(
        lambda: reply_buttons(buttons=[{"id": "1", "title": ""}]),
        f"{B}[0].reply.title",
        "required",
        "-135",
        id="button-title-required",
    ),
    pytest.param(
        lambda: reply_buttons(buttons=[Button("1", "one"), Button("2", "two"), Button("3", "Rate us on a scale of 5")]),
        f"{B}[2].reply.title",
        "at most 20 characters",
        None,
        id="button-title-max-20",
    ),
    pytest.param(
        lambda: reply_buttons(buttons=[Button("1", "Same"), Button("2", "Same")]),
        f"{B}[1].reply.title",
        "must be unique within the message",
        None,
        id="button-title-unique",
    ),
    pytest.param(
        lambda: reply_buttons(buttons=[{"type": "url", "reply": {"id": "1", "title": "t"}}]),
        f"{B}[0].type",
        "must be one of reply",
        None,
        id="button-type-reply",
    ),
    pytest.param(
        lambda: reply_buttons(buttons=[{"type": "reply", "reply": {"id": "1", "titel": "t"}}]),
        f"{B}[0].reply.titel",
        "unknown key",
        None,
        id="button-unknown-key",
    ),
    pytest.param(
        lambda: reply_buttons(buttons=[{"id": 1, "title": "t"}]),
        f"{B}[0].reply.id",
        "must be a string",
        "-134",
        id="button-id-string",
    ),
    # location request
    pytest.param(
        lambda: LocationRequest(""),
        "interactive.body.text",
        "required",
        "-135",
        id="location-request-body-required",
    ),
    pytest.param(
        lambda: LocationRequest("b" * 1025),
        "interactive.body.text",
        "at most 1024",
        None,
        id="location-request-body-max",
    ),
    # contacts
    pytest.param(lambda: Contacts([]), "contacts", "at least 1 contact card", "-135", id="contacts-at-least-1"),
    pytest.param(lambda: Contacts(as_any(CARD)), "contacts", "must be a list", "-134", id="contacts-must-be-list"),
    pytest.param(
        lambda: Contacts(as_any(["Ada"])), "contacts[0]", "must be an object", "-134", id="contact-card-object"
    ),
    pytest.param(
        lambda: Contacts([{"birthday": "1995-01-11"}]),
        "contacts[0].name",
        "required",
        "-135",
        id="contact-name-required",
    ),
    pytest.param(
        lambda: contact_card(name={"first_name": "A"}),
        "contacts[0].name.formatted_name",
        "required",
        "-135",
        id="formatted-name-required",
    ),
    pytest.param(
        lambda: contact_card(birthday="11/01/1995"), "contacts[0].birthday", "YYYY-MM-DD", None, id="birthday-format"
    ),
    pytest.param(
        lambda: contact_card(birthday="1995-02-30"),
        "contacts[0].birthday",
        "real date",
        None,
        id="birthday-real-date",
    ),
    pytest.param(
        lambda: contact_card(birthday="1995-1-11"),
        "contacts[0].birthday",
        "YYYY-MM-DD",
        None,
        id="birthday-two-digit-month",
    ),
    pytest.param(
        lambda: contact_card(addresses=[{"city": "X", "type": "HOME"}, {"city": "Y", "type": "OFFICE"}]),
        "contacts[0].addresses[1].type",
        "must be one of HOME, WORK",
        None,
        id="address-type-home-work",
    ),
    pytest.param(
        lambda: contact_card(emails=[{"email": "a@b.c", "type": "home"}]),
        "contacts[0].emails[0].type",
        "must be one of HOME, WORK",
        None,
        id="email-type-home-work",
    ),
    pytest.param(
        lambda: contact_card(emails=[{"type": "HOME"}]),
        "contacts[0].emails[0].email",
        "required",
        "-135",
        id="email-required",
    ),
    pytest.param(
        lambda: contact_card(urls=[{"url": "https://a.b", "type": "CELL"}]),
        "contacts[0].urls[0].type",
        "must be one of HOME, WORK",
        None,
        id="url-type-home-work",
    ),
    pytest.param(
        lambda: contact_card(phones=[{"phone": "+1 555", "type": "MOBILE"}]),
        "contacts[0].phones[0].type",
        "must be one of CELL, MAIN, IPHONE, HOME, WORK",
        None,
        id="phone-type-enum",
    ),
    pytest.param(
        lambda: contact_card(phones=[{"phone": ""}]),
        "contacts[0].phones[0].phone",
        "required",
        "-135",
        id="contact-phone-required",
    ),
    pytest.param(
        lambda: contact_card(nmae={"formatted_name": "x"}),
        "contacts[0].nmae",
        "unknown key",
        None,
        id="contact-unknown-key",
    ),
    pytest.param(
        lambda: contact_card(name={"formatted_name": "A", "fullname": "B"}),
        "contacts[0].name.fullname",
        "unknown key",
        None,
        id="contact-name-unknown-key",
    ),
    pytest.param(
        lambda: contact_card(org={"company": 5}),
        "contacts[0].org.company",
        "must be a string",
        "-134",
        id="contact-org-string",
    ),
    pytest.param(
        lambda: Contacts([Contact(Name("A"), emails=[Email("a@b.c", "HOME"), Email("a@b.c", "PERSONAL")])]),
        "contacts[0].emails[1].type",
        "must be one of HOME, WORK",
        None,
        id="email-model-type-home-work",
    ),
    # template
    pytest.param(lambda: Template("", "en"), "template.name", "required", "-135", id="template-name-required"),
    pytest.param(
        lambda: Template("Order_Update", "en"),
        "template.name",
        "lowercase letters, digits and underscores",
        None,
        id="template-name-lowercase",
    ),
    pytest.param(
        lambda: Template("order-update", "en"),
        "template.name",
        "lowercase letters, digits and underscores",
        None,
        id="template-name-charset",
    ),
    pytest.param(
        lambda: Template("t", ""),
        "template.language.code",
        "required",
        "-135",
        id="template-language-required",
    ),
    pytest.param(
        lambda: Template("t", "en-US"),
        "template.language.code",
        "language code",
        None,
        id="template-language-dash",
    ),
    pytest.param(
        lambda: Template("t", "english"),
        "template.language.code",
        "language code",
        None,
        id="template-language-pattern",
    ),
    pytest.param(
        lambda: Template("t", "en_us"),
        "template.language.code",
        "language code",
        None,
        id="template-language-region-upper",
    ),
    pytest.param(
        lambda: Template("t", "en", as_any({"type": "body"})),
        "template.components",
        "must be a list",
        "-134",
        id="template-components-list",
    ),
    pytest.param(
        lambda: Template("t", "en", [{"type": "footer"}]),
        "template.components[0].type",
        "must be one of header, body, button",
        None,
        id="component-type",
    ),
    pytest.param(
        lambda: Template("t", "en", [{"parameters": []}]),
        "template.components[0].type",
        "required",
        "-135",
        id="component-type-required",
    ),
    pytest.param(
        lambda: template_component("header", {"type": "currency", "currency": {}}),
        f"{P0}.type",
        "must be one of text, image, video, document, location",
        None,
        id="header-parameter-types",
    ),
    pytest.param(
        lambda: template_component("body", {"type": "image", "image": {"link": LINK}}),
        f"{P0}.type",
        "must be one of text, currency, date_time",
        None,
        id="body-parameter-types",
    ),
    pytest.param(
        lambda: Template.with_body_parameters("t", "en", ["A-1", ""]),
        "template.components[0].parameters[1].text",
        "required",
        "-135",
        id="text-parameter-required",
    ),
    pytest.param(
        lambda: template_component("body", {"type": "text"}),
        f"{P0}.text",
        "required",
        "-135",
        id="text-parameter-missing",
    ),
    pytest.param(
        lambda: template_component("body", {"type": "text", "text": "a"}, "b"),
        "template.components[0].parameters[1]",
        "must be an object",
        "-134",
        id="parameter-object",
    ),
    pytest.param(
        lambda: template_component("header", {"type": "image", "image": {"link": "nope"}}),
        f"{P0}.image.link",
        "http(s) URL",
        "-133",
        id="image-parameter-link",
    ),
    pytest.param(
        lambda: template_component("header", {"type": "document", "document": {"filename": "a.pdf"}}),
        f"{P0}.document.link",
        "required",
        "-135",
        id="document-parameter-link",
    ),
    pytest.param(
        lambda: template_component("header", {"type": "video", "video": LINK}),
        f"{P0}.video",
        "must be an object",
        "-134",
        id="video-parameter-object",
    ),
    pytest.param(
        lambda: template_component(
            "header",
            {
                "type": "location",
                "location": {"latitude": "91", "longitude": "0", "name": "n", "address": "a"},
            },
        ),
        f"{P0}.location.latitude",
        "between -90 and 90",
        None,
        id="location-parameter-range",
    ),
    pytest.param(
        lambda: template_component(
            "body",
            {"type": "currency", "currency": {"fallback_value": "$1", "code": "USD", "amount_1000": "1000"}},
        ),
        f"{P0}.currency.amount_1000",
        "must be an integer",
        "-134",
        id="currency-parameter-amount",
    ),
    pytest.param(
        lambda: template_component("body", {"type": "date_time", "date_time": {}}),
        f"{P0}.date_time.fallback_value",
        "required",
        "-135",
        id="date-time-parameter",
    ),
    pytest.param(
        lambda: template_component("body", {"type": "text", "text": "a", "txt": "b"}),
        f"{P0}.txt",
        "unknown key",
        None,
        id="parameter-unknown-key",
    ),
    # envelope
    pytest.param(lambda: request_body(app_id=""), "appId", "required", "-135", id="app-id-required"),
    pytest.param(lambda: request_body(app_id=123), "appId", "must be a string", "-134", id="app-id-string"),
    pytest.param(
        lambda: request_body(reply_to=17),
        "context.refMessageId",
        "must be a string",
        "-134",
        id="reply-to-string",
    ),
    pytest.param(
        lambda: request_body(recipient="12-34"),
        "recipient",
        "a number that can exist",
        "-71",
        id="envelope-recipient-normalised",
    ),
    pytest.param(
        lambda: request_body(business_phone="1234567x"),
        "businessPhone",
        "digits only",
        "-95",
        id="envelope-business-phone-normalised",
    ),
    # message_from_dict
    pytest.param(
        lambda: message_from_dict({"type": "carousel", "carousel": {}}),
        "type",
        "must be one of",
        "-132",
        id="dict-unknown-type",
    ),
    pytest.param(
        lambda: message_from_dict({"text": {"body": "hi"}}),
        "type",
        "required",
        "-132",
        id="dict-type-required",
    ),
    pytest.param(
        lambda: message_from_dict({"type": ["text"]}), "type", "must be one of", "-132", id="dict-type-string"
    ),
    pytest.param(
        lambda: message_from_dict(as_any("hi")),
        "message",
        "must be an object",
        "-134",
        id="dict-must-be-object",
    ),
    pytest.param(
        lambda: message_from_dict({"type": "text", "text": "hi"}),
        "text",
        "must be an object",
        "-134",
        id="dict-object-must-be-object",
    ),
    pytest.param(
        lambda: message_from_dict({"type": "text", "text": {"body": "hi", "preview_url": True}}),
        "text.preview_url",
        "unknown key",
        None,
        id="dict-object-unknown-key",
    ),
    pytest.param(
        lambda: message_from_dict(
            {
                "type": "location",
                "location": {"latitude": "1", "longitude": "2", "name": "n", "address": "a"},
                "link": LINK,
            }
        ),
        "link",
        "unknown key",
        None,
        id="dict-stray-top-level-key",
    ),
    pytest.param(
        lambda: message_from_dict({"type": "interactive", "interactive": {"type": "carousel", "body": {"text": "b"}}}),
        "interactive.type",
        "must be one of list, button, location_request_message",
        "-132",
        id="dict-interactive-type",
    ),
    pytest.param(
        lambda: message_from_dict(
            {
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "header": {"type": "image", "text": "h"},
                    "body": {"text": "b"},
                    "action": {"buttons": BUTTONS},
                },
            }
        ),
        "interactive.header.type",
        "must be one of text",
        None,
        id="dict-interactive-header-text",
    ),
    pytest.param(
        lambda: message_from_dict(
            {
                "type": "interactive",
                "interactive": {
                    "type": "location_request_message",
                    "body": {"text": "b"},
                    "action": {"name": "send"},
                },
            }
        ),
        "interactive.action",
        "send_location",
        None,
        id="dict-location-request-action",
    ),
    pytest.param(
        lambda: message_from_dict({"type": "interactive", "interactive": {"type": "list", "body": {"text": "b"}}}),
        "interactive.action.button",
        "required",
        "-135",
        id="dict-list-action-required",
    ),
    pytest.param(
        lambda: message_from_dict({"template": {"name": "t", "language": {"code": "en", "policy": "x"}}}),
        "template.language.policy",
        "unknown key",
        None,
        id="dict-template-language-key",
    ),
]
