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
    :param type: The JSON-schema type of the value (``"string"`` or ``"integer"``); empty is always allowed.
    :param description: One line shown under the field.
    :param placeholder: An example value shown in the empty field.
    :param minimum: The smallest value allowed, for an integer field.
    """

    name: str
    label: str
    type: Literal["string", "integer"]
    description: str
    placeholder: str
    minimum: int | None = None

    def json_schema(self) -> dict[str, Any]:
        """The field's JSON schema, as ``conn-fields`` carries it (Airflow 3.1+)."""
        schema: dict[str, Any] = {"type": [self.type, "null"]}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        return schema


#: The extra fields, in the order the form shows them.
EXTRA_FIELDS: tuple[ExtraField, ...] = (
    ExtraField(
        name="app_id",
        label="App ID",
        type="string",
        description="Required. The application id (appId) from the itniotech console.",
        placeholder="DGziZf5u",
    ),
    ExtraField(
        name="business_phone",
        label="Business phone",
        type="string",
        description="Default sender number, digits only (7-14); operators may override it.",
        placeholder="91856321321",
    ),
    ExtraField(
        name="timeout",
        label="Timeout",
        type="integer",
        description="Seconds to wait for the API's answer (default 30).",
        placeholder="30",
        minimum=1,
    ),
    ExtraField(
        name="verify",
        label="Verify TLS",
        type="string",
        description="true (default), false, or the path of a CA bundle file.",
        placeholder="true",
    ),
    ExtraField(
        name="proxy",
        label="Proxy",
        type="string",
        description="Optional. HTTP(S) proxy URL for the calls to the API.",
        placeholder="http://proxy.example.com:3128",
    ),
)


def placeholders() -> dict[str, str]:
    """Placeholders of the standard fields and of the extra fields, keyed by (unprefixed) field name."""
    return {**STANDARD_PLACEHOLDERS, **{field.name: field.placeholder for field in EXTRA_FIELDS}}


def ui_field_behaviour() -> dict[str, Any]:
    """The hook's answer to ``get_ui_field_behaviour()`` (Airflow 2.x form)."""
    return {
        "hidden_fields": list(HIDDEN_FIELDS),
        "relabeling": dict(RELABELING),
        "placeholders": placeholders(),
    }


def provider_ui_field_behaviour() -> dict[str, Any]:
    """The same behaviour, spelled as ``get_provider_info()``'s ``ui-field-behaviour`` (Airflow 3.1+)."""
    behaviour = ui_field_behaviour()
    return {
        "hidden-fields": behaviour["hidden_fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }


def conn_fields() -> dict[str, dict[str, Any]]:
    """``get_provider_info()``'s ``conn-fields``: label, JSON schema and description of each extra field."""
    return {
        field.name: {"label": field.label, "schema": field.json_schema(), "description": field.description}
        for field in EXTRA_FIELDS
    }


def connection_type_info() -> dict[str, Any]:
    """The ``connection-types`` entry of ``get_provider_info()`` for the ``itnio`` type."""
    return {
        "hook-class-name": HOOK_CLASS_NAME,
        "hook-name": HOOK_NAME,
        "connection-type": CONN_TYPE,
        "ui-field-behaviour": provider_ui_field_behaviour(),
        "conn-fields": conn_fields(),
    }


def connection_form_widgets() -> dict[str, Any]:
    """
    The hook's answer to ``get_connection_form_widgets()``: one unbound WTForms field per extra field.

    Imports Flask-AppBuilder, Flask-Babel and WTForms, which Airflow 2's web server has; call it only there.
    """
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import IntegerField, StringField
    from wtforms.validators import NumberRange, Optional

    widgets: dict[str, Any] = {}
    for field in EXTRA_FIELDS:
        validators: list[Any] = [Optional(strip_whitespace=True)]
        if field.type == "integer":
            if field.minimum is not None:
                validators.append(NumberRange(min=field.minimum))
            widgets[field.name] = IntegerField(
                lazy_gettext(field.label),
                widget=BS3TextFieldWidget(),
                validators=validators,
                description=field.description,
            )
        else:
            widgets[field.name] = StringField(
                lazy_gettext(field.label),
                widget=BS3TextFieldWidget(),
                validators=validators,
                description=field.description,
            )
    return widgets
