"""
The *Edit Connection* dialog of the real Airflow 3.3 UI, in headless Chromium: it shows every extra field of the
``itnio`` form (as the *Add Connection* dialog does), whatever made the connection, and a proxy can be added to a
saved connection.

Two connections, each made outside the Add dialog's session: one exactly as ``make airflow`` makes
``itnio_default`` (``airflow connections add`` with ``scripts/airflow_local.py``'s JSON: App ID, Business phone and
a ``webhook_token``), one as the Add dialog stores a user's (only the fields filled in, and the Timeout default).
Airflow 3.3's Edit dialog shows an extra field only when its key is in the stored ``extra``: without the provider's
plugin the first showed App ID, Business phone and an unlabelled ``webhook_token`` box, the second App ID,
Business phone and Timeout, and neither had a Proxy field.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from airflow_provider_itnio.connection_fields import EXTRA_FIELDS, WEBHOOK_TOKEN_EXTRA
from airflow_provider_itnio.sandbox.server import DEFAULT_APP_ID, DEFAULT_BUSINESS_PHONES
from tests.support.browser import LocalAirflow, airflow_local, connection_json, screenshot

pytestmark = pytest.mark.api_server
PROXY = "http://proxy.example.com:3128"
TOKEN = "tok-" + "w" * 40


def _make_airflow_connection(local_airflow: LocalAirflow) -> dict[str, Any]:
    """Return the connection ``make airflow`` adds (its own function, with a token), as ``--conn-json`` takes it."""
    port = int(local_airflow.sandbox_url.rsplit(":", 1)[1])
    return dict(json.loads(airflow_local().sandbox_conn_json(port, TOKEN)))


def _user_made_connection(local_airflow: LocalAirflow) -> dict[str, Any]:
    """Return a connection as the Add dialog stores it: the fields filled in and the Timeout default only."""
    return {
        "conn_type": "itnio",
        "host": local_airflow.sandbox_url,
        "login": "sandbox-key",
        "password": "sandbox-secret",
        "extra": {"app_id": DEFAULT_APP_ID, "business_phone": DEFAULT_BUSINESS_PHONES[0], "timeout": "30"},
    }


@pytest.mark.parametrize(
    ("conn_id", "make"),
    [("itnio_edit_as_make_airflow", _make_airflow_connection), ("itnio_edit_user_made", _user_made_connection)],
    ids=["as-make-airflow-makes-it", "user-made"],
)
def test_the_edit_dialog_shows_every_field_and_adds_a_proxy(
    page: Any, local_airflow: LocalAirflow, conn_id: str, make: Any
) -> None:
    connection = make(local_airflow)
    local_airflow.cli("connections", "add", conn_id, "--conn-json", json.dumps(connection))
    before = connection_json(local_airflow, conn_id)["extra"]
    assert "proxy" not in before and before == connection["extra"]

    page.goto(f"{local_airflow.url}/connections")
    row = page.locator("tr").filter(has_text=conn_id)
    row.wait_for()
    row.get_by_role("button", name="Edit Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    extra_section = dialog.locator("button[aria-expanded]").filter(has_text=re.compile(r"^\s*Extra Fields\s*$"))
    if extra_section.get_attribute("aria-expanded") != "true":
        extra_section.click()
    dialog.locator("#element_app_id").wait_for()
    screenshot(page, f"10-edit-{conn_id}")

    # every declared field, with its label and help, like the Add dialog; no raw unlabelled key
    for field in EXTRA_FIELDS:
        # a text field's input is #element_<name>; a number's sits in #number-input:element_<name>; a switch's
        # parts have ids holding element_<name> too
        dialog.locator(f"[id*='element_{field.name}']").first.wait_for(state="attached")
        assert dialog.get_by_text(field.description, exact=True).is_visible(), field.name
        label = dialog.locator("label").filter(has_text=re.compile(rf"^\s*{re.escape(field.label)}\s*\*?\s*$"))
        assert label.count() >= 1, field.name
    ids = dialog.locator("[id*='element_']").evaluate_all("els => els.map(e => e.id)")
    shown = {match.group(1) for i in ids if (match := re.search(r"element_([a-z_]+)", i))}
    assert shown == {field.name for field in EXTRA_FIELDS}, shown  # each field, none for an undeclared key
    if WEBHOOK_TOKEN_EXTRA in connection["extra"]:  # masked: a password input holding Airflow's "***"
        token_input = dialog.locator(f"#element_{WEBHOOK_TOKEN_EXTRA}")
        assert token_input.get_attribute("type") == "password"
        assert token_input.input_value() == "***"
    assert dialog.locator("#element_app_id").input_value() == DEFAULT_APP_ID

    dialog.locator("#element_proxy").fill(PROXY)
    dialog.locator("#element_proxy").blur()
    save = dialog.get_by_role("button", name="Save")
    assert save.is_enabled()
    screenshot(page, f"11-edit-{conn_id}-proxy")
    save.click()
    dialog.wait_for(state="detached")

    after = connection_json(local_airflow, conn_id)["extra"]
    assert after == {**connection["extra"], "proxy": PROXY}, after  # the token kept, nothing else added
