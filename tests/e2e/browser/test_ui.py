"""
The README's click-through in the real Airflow 3.3 UI, in headless Chromium.

In order (the tests share one Airflow and one logged-in page): create ``itnio_default`` through the *Add
Connection* form, press the connection list's *Test* button (success, then a failure with a wrong secret), then
unpause and trigger ``itnio_followup`` and read the thank-you text's ``messageId`` in the XCom view. Each step
saves a screenshot in ``artifacts/browser/``.
"""

from __future__ import annotations

import re
import time
import warnings
from typing import Any

import pytest

from airflow_provider_itnio.connection_fields import EXTRA_FIELDS, RELABELING, STANDARD_PLACEHOLDERS
from airflow_provider_itnio.sandbox.server import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_APP_ID,
    DEFAULT_BUSINESS_PHONES,
)
from tests.support.browser import LocalAirflow, connection_json, screenshot

pytestmark = pytest.mark.api_server
WRONG_SECRET = "not-the-sandbox-secret"
#: Where the followup run is waited for (a scheduler loop plus three tasks on LocalExecutor).
RUN_DEADLINE_S = 240
#: Where the DAG processor's first parse of ``dags_examples/`` is waited for.
PARSE_DEADLINE_S = 120


def _open_connection_dialog(page: Any, local_airflow: LocalAirflow, button: str) -> Any:
    page.goto(f"{local_airflow.url}/connections")
    page.get_by_role("button", name=button).first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    return dialog


def _toast(page: Any, title: str) -> Any:
    """Return the newest toast with ``title`` once it is visible."""
    toast = page.get_by_role("status").filter(has_text=title).last
    toast.wait_for()
    return toast


def _set_secret(page: Any, local_airflow: LocalAirflow, secret: str) -> None:
    dialog = _open_connection_dialog(page, local_airflow, "Edit Connection")
    dialog.locator("input[name=password]").fill(secret)
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="detached")


def test_create_the_connection_through_the_form(page: Any, local_airflow: LocalAirflow) -> None:
    dialog = _open_connection_dialog(page, local_airflow, "Add Connection")
    dialog.locator("input[name=connection_id]").fill("itnio_default")
    dialog.get_by_role("combobox").click()
    page.keyboard.type("itniotech WhatsApp")
    page.keyboard.press("Enter")

    # Standard fields: relabelled, with placeholders; schema, port and the raw extra are not among them
    for name, label in RELABELING.items():
        assert dialog.locator("label").filter(has_text=re.compile(rf"^{label}$")).count() == 1, label
        assert dialog.locator(f"input[name={name}]").get_attribute("placeholder") == STANDARD_PLACEHOLDERS[name]
    for hidden in ("port", "schema"):
        assert dialog.locator(f"input[name={hidden}]").count() == 0, hidden
    dialog.locator("input[name=host]").fill(local_airflow.sandbox_url)
    dialog.locator("input[name=login]").fill(DEFAULT_API_KEY)
    dialog.locator("input[name=password]").fill(DEFAULT_API_SECRET)
    screenshot(page, "01-add-connection-standard-fields")

    # Extra fields: label, description, default; App ID required (Save stays disabled without it)
    extra_section = dialog.locator("button[aria-expanded]").filter(has_text=re.compile(r"^\s*Extra Fields\s*$"))
    if extra_section.get_attribute("aria-expanded") != "true":
        extra_section.click()
    dialog.locator("#element_app_id").wait_for()
    for field in EXTRA_FIELDS:
        if field.type == "boolean":  # a switch (its parts' ids hold element_<name>), off when empty
            dialog.locator(f"[id*='element_{field.name}']").first.wait_for(state="attached")
            checked = dialog.locator(f"[id*='element_{field.name}'][data-state='checked']")
            assert checked.count() == 0, field.name  # off
            assert dialog.get_by_text(field.description, exact=True).is_visible(), field.name
            label = dialog.locator("label").filter(has_text=re.compile(rf"^\s*{re.escape(field.label)}\s*$"))
            assert label.count() >= 1, field.name
            continue
        # a text field's input is #element_<name>; a number field's sits in #number-input:element_<name>
        element = dialog.locator(f"input[id='element_{field.name}'], [id='number-input:element_{field.name}'] input")
        element.wait_for()
        row = element.locator("xpath=ancestor::*[.//label][1]")  # the field's row: its label, input and help
        assert row.get_by_text(field.description, exact=True).is_visible(), field.name
        label_text = row.locator("label").first.inner_text()
        assert label_text.replace("*", "").strip() == field.label, field.name
        assert ("*" in label_text) == field.required, field.name
        assert element.input_value() == ("" if field.default is None else str(field.default)), field.name
        assert (element.get_attribute("type") == "password") == field.secret, field.name  # secrets masked
    assert dialog.get_by_text("This field is required").is_visible()
    assert dialog.get_by_role("button", name="Extra Fields JSON").is_visible()
    save = dialog.get_by_role("button", name="Save")
    assert save.is_disabled()
    screenshot(page, "02-add-connection-extra-fields-app-id-required")

    dialog.locator("#element_app_id").fill(DEFAULT_APP_ID)
    dialog.locator("#element_business_phone").fill(DEFAULT_BUSINESS_PHONES[0])
    dialog.locator("#element_business_phone").blur()
    assert save.is_enabled()
    screenshot(page, "03-add-connection-filled")
    save.click()
    dialog.wait_for(state="detached")

    stored = connection_json(local_airflow, "itnio_default")
    assert stored["conn_type"] == "itnio"
    assert stored["host"] == local_airflow.sandbox_url
    assert stored["port"] is None
    # only what was filled in and the Timeout default (which the UI stores as a string); no null keys
    extra = stored["extra"]
    assert sorted(extra) == ["app_id", "business_phone", "timeout"], extra
    assert (extra["app_id"], extra["business_phone"]) == (DEFAULT_APP_ID, DEFAULT_BUSINESS_PHONES[0])
    assert int(extra["timeout"]) == next(f.default for f in EXTRA_FIELDS if f.name == "timeout")


def test_the_test_button_succeeds(page: Any, local_airflow: LocalAirflow) -> None:
    page.goto(f"{local_airflow.url}/connections")
    page.get_by_text("itnio_default", exact=True).wait_for()
    page.get_by_role("button", name="Test Connection").click()
    toast = _toast(page, "Test Connection Successful")
    message = toast.inner_text()
    assert f"Connected to {local_airflow.sandbox_url}, app {DEFAULT_APP_ID}" in message
    assert f"business phone {DEFAULT_BUSINESS_PHONES[0]}" in message and "is CONNECTED" in message
    screenshot(page, "04-test-button-success")


def test_the_test_button_reports_a_wrong_secret(page: Any, local_airflow: LocalAirflow) -> None:
    _set_secret(page, local_airflow, WRONG_SECRET)
    try:
        page.goto(f"{local_airflow.url}/connections")
        page.get_by_text("itnio_default", exact=True).wait_for()
        page.get_by_role("button", name="Test Connection").click()
        toast = _toast(page, "Test Connection Failed")
        message = toast.inner_text()
        assert "itniotech API error -1" in message and "authentication error" in message
        assert "Bad Request" not in message
        assert WRONG_SECRET not in message
        screenshot(page, "05-test-button-wrong-secret")
    finally:
        _set_secret(page, local_airflow, DEFAULT_API_SECRET)
    assert connection_json(local_airflow, "itnio_default")["password"] == DEFAULT_API_SECRET


def _wait_for_dag(page: Any, local_airflow: LocalAirflow, dag_id: str) -> None:
    """
    Wait until ``dag_id`` is stored (the REST API knows it), then open its page and wait for its Trigger button.

    The DAG processor of ``airflow standalone`` parses ``dags_examples/`` within seconds of its start on a quiet
    machine. Once in CI the page did not show the DAG for 120 s, and nothing said why; now the wait is on the REST
    API, and if the processor has not stored the DAG by :data:`PARSE_DEADLINE_S`, the test warns with the import
    errors and the processor's log, and stores it as a user would (``airflow dags reserialize``): this test is about
    the UI, not the processor's timing.
    """
    deadline = time.monotonic() + PARSE_DEADLINE_S
    while not local_airflow.dag_stored(dag_id) and time.monotonic() < deadline:
        page.wait_for_timeout(1000)
    if not local_airflow.dag_stored(dag_id):
        diagnosis = local_airflow.parse_diagnosis()
        warnings.warn(f"{dag_id} not stored after {PARSE_DEADLINE_S} s; reserializing\n{diagnosis}", stacklevel=1)
        local_airflow.cli("dags", "reserialize")
        assert local_airflow.dag_stored(dag_id), f"{dag_id} not stored, even by reserialize\n{diagnosis}"
    page.goto(f"{local_airflow.url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger Dag").wait_for()


def _finished_runs(page: Any, local_airflow: LocalAirflow, dag_id: str) -> list[str]:
    """Wait until no run of ``dag_id`` is queued or running; return the run ids the Runs tab lists."""
    deadline = time.monotonic() + RUN_DEADLINE_S
    while True:
        page.goto(f"{local_airflow.url}/dags/{dag_id}/runs")
        page.get_by_text(re.compile(r"^\d+ Dag Runs?$")).wait_for()
        states = [s.lower() for s in page.locator("table tbody tr td:nth-child(4)").all_inner_texts()]
        if states and all(s.strip() in ("success", "failed") for s in states):
            break
        assert time.monotonic() < deadline, f"runs still going: {states}"
        page.wait_for_timeout(3000)
    hrefs = page.locator(f"table a[href^='/dags/{dag_id}/runs/']").evaluate_all("els => els.map(e => e.href)")
    return sorted({re.sub(r".*/runs/([^/]+)/?$", r"\1", h) for h in hrefs if "/tasks/" not in h})


def test_unpause_and_trigger_the_followup_then_read_the_message_id_in_xcom(
    page: Any, local_airflow: LocalAirflow
) -> None:
    dag_id = "itnio_followup"
    _wait_for_dag(page, local_airflow, dag_id)
    # the README's steps: unpause, then trigger with the default params
    switch = page.locator("label:has(input[id^='switch'])").first
    switch.click()
    page.wait_for_function("() => document.querySelector(\"input[id^='switch']\").checked")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    screenshot(page, "06-trigger-followup")
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    dialog.wait_for(state="detached")

    run_ids = _finished_runs(page, local_airflow, dag_id)
    screenshot(page, "07-followup-runs")
    assert len(run_ids) == 1, run_ids  # unpausing started no scheduled run: one run, the triggered one
    [run_id] = run_ids
    assert run_id.startswith("manual__")
    messages = local_airflow.sandbox_messages()
    assert len(messages) == 3, [m["body"].get("type") for m in messages]  # thank-you, invoice, rating

    page.goto(f"{local_airflow.url}/dags/{dag_id}/runs/{run_id}/tasks/thank_you/xcom")  # the task's XCom tab
    cell = page.get_by_text(messages[0]["messageId"])
    cell.first.wait_for()
    screenshot(page, "08-thank-you-xcom-message-id")
    assert page.get_by_text("return_value").first.is_visible()
