"""
The ``itnio`` connection form, defined once.

Airflow 3.1+ draws the connection form from ``get_provider_info()`` (``conn-fields`` and
``ui-field-behaviour``) without importing the hook; Airflow 2.x asks the hook
(``get_connection_form_widgets()`` / ``get_ui_field_behaviour()``). Both answers are built here from the
same definitions, so a label or description is never written twice.

This module imports nothing heavy: ``get_provider_info()`` imports it every time Airflow discovers providers.
Flask-AppBuilder and WTForms are imported only inside :func:`connection_form_widgets`, which only Airflow 2's
web UI calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: The connection type, as stored in ``Connection.conn_type``.
CONN_TYPE = "itnio"
#: The name shown in the connection-type drop-down.
HOOK_NAME = "itniotech WhatsApp"
#: Where the hook lives (Airflow imports it lazily, only when it needs it).
HOOK_CLASS_NAME = "airflow_provider_itnio.hooks.itnio.ItnioHook"

#: Standard connection fields the form does not show.
HIDDEN_FIELDS: tuple[str, ...] = ("schema", "port", "extra")
#: Standard connection fields shown under another label.
RELABELING: dict[str, str] = {"login": "API Key", "password": "API Secret", "host": "Base URL"}
#: Example values shown in the empty standard fields.
STANDARD_PLACEHOLDERS: dict[str, str] = {
    "login": "bDqJFiq9",
    "password": "your API secret",
    "host": "https://api.itniotech.com",
}


@dataclass(frozen=True)
class ExtraField:
    """
    One field of the connection form stored in the connection's ``extra`` JSON.

    :param name: The key in ``extra`` (what :class:`~airflow_provider_itnio.hooks.itnio.ItnioHook` reads).
    :param label: The label the form shows.
    :param type: The JSON-schema type of the value (``"string"``, ``"integer"`` or ``"boolean"``).
    :param description: One line shown under the field.
    :param placeholder: An example value shown in the empty field (Airflow 2's form; Airflow 3's form shows
        :attr:`examples` as suggestions instead, since it has no placeholder for extra fields).
    :param required: Whether the form refuses to save without a value (Airflow 3's form; see
        :func:`connection_form_widgets` for Airflow 2).
    :param default: The value a new connection's form starts with.
    :param minimum: The smallest value allowed, for an integer field.
    :param pattern: A regular expression the value must match (JavaScript and Python syntax alike).
    :param examples: Values the form suggests while typing (Airflow 3's ``examples``).
    :param secret: Whether the value is a secret: a masked input (Airflow 3's ``format: password``, Airflow 2's
        password widget), and a key the API server redacts in what it returns (see
        :mod:`airflow_provider_itnio.ui_plugin`).
    """

    name: str
    label: str
    type: Literal["string", "integer", "boolean"]
    description: str
    placeholder: str
    required: bool = False
    default: int | str | None = None
    minimum: int | None = None
    pattern: str | None = None
    examples: tuple[str, ...] = ()
    secret: bool = False

    def json_schema(self) -> dict[str, Any]:
        """
        Return the field's JSON schema, as ``conn-fields`` carries it (Airflow 3.1+).

        Airflow 3.3's form marks a field required when its type does not allow ``null``, starts a new
        connection's field at ``default``, bounds an integer field by ``minimum``, offers ``examples`` as
        suggestions, draws a boolean as a switch and a ``format: password`` string as a masked input; it does not
        check ``pattern`` (the hook does, when it uses the value).
        """
        schema: dict[str, Any] = {"type": self.type if self.required else [self.type, "null"]}
        if self.secret:
            schema["format"] = "password"
        if self.default is not None:
            schema["default"] = self.default
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        if self.examples:
            schema["examples"] = list(self.examples)
        return schema


#: The extra holding the application id (``appId``) every call carries.
APP_ID_EXTRA = "app_id"
#: The extra holding the default sender number.
BUSINESS_PHONE_EXTRA = "business_phone"
#: The extra giving the seconds to wait for the API's answer.
TIMEOUT_EXTRA = "timeout"
#: The extra saying whether (or against which CA bundle) TLS is verified.
VERIFY_EXTRA = "verify"
#: The extra giving an HTTP(S) proxy for the calls to the API.
PROXY_EXTRA = "proxy"
#: The extra holding the secret part of the receiver's push URL (``/itnio/webhook/<conn_id>/<token>``).
WEBHOOK_TOKEN_EXTRA = "webhook_token"
#: The extra holding the key that signs approval buttons (kept apart from the URL token, so rotating the token
#: does not invalidate buttons already sent).
BUTTON_KEY_EXTRA = "button_key"
#: The extra that makes possible-but-unassigned phone numbers an error instead of a warning.
STRICT_PHONE_NUMBERS_EXTRA = "strict_phone_numbers"
#: The extra giving the base URL of the API server that serves the receiver (its read API's client uses it).
RECEIVER_URL_EXTRA = "receiver_url"
#: The extra giving the scheme of a Base URL (host) written without one.
SCHEME_EXTRA = "scheme"


#: Phone numbers as people write them: digits with spaces, dashes, dots, parentheses and a leading ``+``.
PHONE_PATTERN = r"^\+?[0-9][0-9 ().-]{5,22}[0-9]$"
#: The hook's default timeout in seconds, when the connection sets none.
DEFAULT_TIMEOUT = 30


#: The extra fields, in the order the form shows them.
EXTRA_FIELDS: tuple[ExtraField, ...] = (
    ExtraField(
        name=APP_ID_EXTRA,
        label="App ID",
        type="string",
        description="Required. The application id (appId) from the itniotech console.",
        placeholder="DGziZf5u",
        required=True,
    ),
    ExtraField(
        name=BUSINESS_PHONE_EXTRA,
        label="Business phone",
        type="string",
        description="Default sender number in international form, e.g. +91 85632 1321; operators may override it.",
        placeholder="+91 85632 1321",
        pattern=PHONE_PATTERN,
    ),
    ExtraField(
        name=TIMEOUT_EXTRA,
        label="Timeout",
        type="integer",
        description=f"Seconds to wait for the API's answer (default {DEFAULT_TIMEOUT}).",
        placeholder=str(DEFAULT_TIMEOUT),
        default=DEFAULT_TIMEOUT,
        minimum=1,
    ),
    ExtraField(
        name=VERIFY_EXTRA,
        label="Verify TLS",
        type="string",
        description="true (default), false, or the path of a CA bundle file.",
        placeholder="true",
        examples=("true", "false", "/etc/ssl/certs/ca-certificates.crt"),
    ),
    ExtraField(
        name=PROXY_EXTRA,
        label="Proxy",
        type="string",
        description="Optional. HTTP(S) proxy URL for the calls to the API.",
        placeholder="http://proxy.example.com:3128",
        examples=("http://proxy.example.com:3128",),
    ),
    ExtraField(
        name=SCHEME_EXTRA,
        label="Scheme",
        type="string",
        description="https (default) or http: the scheme of a Base URL written without one.",
        placeholder="https",
        examples=("https", "http"),
    ),
    ExtraField(
        name=WEBHOOK_TOKEN_EXTRA,
        label="Webhook token",
        type="string",
        description="Airflow 3.1+: the secret end of the push URL /itnio/webhook/<conn id>/<token>.",
        placeholder="a long random string",
        secret=True,
    ),
    ExtraField(
        name=RECEIVER_URL_EXTRA,
        label="Receiver URL",
        type="string",
        description="Airflow 3.1+: the API server that serves the receiver (default: [api] base_url).",
        placeholder="http://localhost:8080",
        examples=("http://localhost:8080",),
    ),
    ExtraField(
        name=BUTTON_KEY_EXTRA,
        label="Approval button key",
        type="string",
        description="Airflow 3.1+: signs approval buttons, whatever the token; generated when missing.",
        placeholder="generated when missing",
        secret=True,
    ),
    ExtraField(
        name=STRICT_PHONE_NUMBERS_EXTRA,
        label="Strict phone numbers",
        type="boolean",
        description="Refuse numbers outside their country's assigned ranges (default: send with a warning).",
        placeholder="false",
    ),
)

#: The names of the extras whose values are secrets.
SECRET_EXTRAS: tuple[str, ...] = tuple(field.name for field in EXTRA_FIELDS if field.secret)


def placeholders() -> dict[str, str]:
    """Return the placeholders of the standard and the extra fields, keyed by (unprefixed) field name."""
    return {**STANDARD_PLACEHOLDERS, **{field.name: field.placeholder for field in EXTRA_FIELDS}}


def ui_field_behaviour() -> dict[str, Any]:
    """Return the hook's answer to ``get_ui_field_behaviour()`` (Airflow 2.x form)."""
    return {
        "hidden_fields": list(HIDDEN_FIELDS),
        "relabeling": dict(RELABELING),
        "placeholders": placeholders(),
    }


def provider_ui_field_behaviour() -> dict[str, Any]:
    """Return the same behaviour, spelled as ``get_provider_info()``'s ``ui-field-behaviour`` (Airflow 3.1+)."""
    behaviour = ui_field_behaviour()
    return {
        "hidden-fields": behaviour["hidden_fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }


def conn_fields() -> dict[str, dict[str, Any]]:
    """Return ``get_provider_info()``'s ``conn-fields``: label, JSON schema and description of each extra field."""
    return {
        field.name: {"label": field.label, "schema": field.json_schema(), "description": field.description}
        for field in EXTRA_FIELDS
    }


def connection_type_info() -> dict[str, Any]:
    """Return the ``connection-types`` entry of ``get_provider_info()`` for the ``itnio`` type."""
    return {
        "hook-class-name": HOOK_CLASS_NAME,
        "hook-name": HOOK_NAME,
        "connection-type": CONN_TYPE,
        "ui-field-behaviour": provider_ui_field_behaviour(),
        "conn-fields": conn_fields(),
    }


def _empty_as_blank(value: Any) -> Any:
    """
    Return ``""`` for an empty value (``None``), else the value.

    Airflow 2's form stores every extra field whose value is not ``""``, so an empty integer field (``None``)
    would be saved as ``null``; with this filter it is left out of ``extra``.

    :param value: The field's data after WTForms parsed it.
    """
    return "" if value is None else value


def connection_form_widgets() -> dict[str, Any]:
    """
    Return the hook's answer to ``get_connection_form_widgets()``: one unbound WTForms field per extra field.

    Imports Flask-AppBuilder, Flask-Babel and WTForms, which Airflow 2's web server has; call it only there.
    Every field is optional here, App ID too: Airflow 2 validates the extra fields of every connection type on
    each save, so a required field would block saving connections of other types (the description says
    "Required." and the hook names the missing field).
    """
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, IntegerField, PasswordField, StringField
    from wtforms.validators import NumberRange, Optional, Regexp

    widgets: dict[str, Any] = {}
    for field in EXTRA_FIELDS:
        if field.type == "boolean":  # a check box (its own widget); unchecked is stored as false
            widgets[field.name] = BooleanField(lazy_gettext(field.label), description=field.description)
            continue
        validators: list[Any] = [Optional(strip_whitespace=True)]
        if field.minimum is not None:
            validators.append(NumberRange(min=field.minimum))
        if field.pattern is not None:
            validators.append(Regexp(field.pattern, message=f"Not a valid {field.label.lower()}."))
        # Airflow 2 treats a PasswordField as sensitive: the form shows a placeholder instead of the stored value
        # and keeps the stored value when the placeholder comes back.
        field_class = IntegerField if field.type == "integer" else PasswordField if field.secret else StringField
        widget = BS3PasswordFieldWidget() if field.secret else BS3TextFieldWidget()
        widgets[field.name] = field_class(
            lazy_gettext(field.label),
            widget=widget,
            validators=validators,
            description=field.description,
            default=field.default,
            filters=[_empty_as_blank],
        )
    return widgets
