"""
The ``itnio`` connection form in a real Airflow UI backend.

- Airflow 3: a real ``airflow api-server`` (simple auth manager, all admins) serves the form's metadata at
  ``/ui/connections/hook_meta`` (the UI's own route in 3.3) and runs the form's *Test* button
  (``POST /api/v2/connections/test``) against the sandbox.
- Airflow 2: the real Flask web server app renders ``/connection/add`` with our fields and stores what the
  form posts as the ``extra`` JSON the hook reads.

The tests that start a server or app (in a subprocess) are marked ``api_server``; deselect them with
``-m "not api_server"``.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_itnio import connection_fields
from tests.support.servers import api_server as api_server_process
from tests.support.servers import free_port

AIRFLOW_2 = metadata.version("apache-airflow").startswith("2.")
#: The form's single definition: what the UI must show.
FIELDS = connection_fields.EXTRA_FIELDS


# -- Airflow 3: the API server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_server(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a real ``airflow api-server`` on a free loopback port; yield its base URL and stop it afterwards."""
    if AIRFLOW_2:
        pytest.skip("Airflow 2 has no api-server (its web server is tested below)")
    port = free_port()
    log_path = tmp_path_factory.mktemp("api-server") / "api-server.log"
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    }
    with api_server_process(port, log_path, env) as base_url:
        yield base_url


def _stored_extra(conn_id: str) -> dict[str, Any]:
    """
    Return a connection's ``extra`` as stored in the metadata database (the API server's answers add keys), read
    with the Airflow CLI (in a subprocess, like the API server, so this process's Airflow configuration is not used).

    :param conn_id: The connection id.
    """
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "connections", "get", conn_id, "--output", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),  # the API server's (and the session's) home and Fernet key
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [conn] = json.loads(done.stdout)
    return dict(conn["extra_dejson"])


@pytest.mark.slow
@pytest.mark.api_server
def test_hook_meta_lists_the_itnio_form(api_server: str) -> None:
    response = requests.get(f"{api_server}/ui/connections/hook_meta", timeout=30)
    assert response.status_code == 200, response.text
    [meta] = [m for m in response.json() if m["connection_type"] == "itnio"]
    assert meta["hook_name"] == connection_fields.HOOK_NAME
    assert meta["hook_class_name"] == connection_fields.HOOK_CLASS_NAME
    ui_name = {"schema": "url_schema"}.get  # Airflow's UI calls the schema field url_schema; extra is not listed
    assert meta["standard_fields"] == {
        "description": None,
        **{
            ui_name(name, name): {"hidden": True, "title": None, "placeholder": None}
            for name in connection_fields.HIDDEN_FIELDS
            if name != "extra"
        },
        **{
            name: {"hidden": False, "title": title, "placeholder": connection_fields.STANDARD_PLACEHOLDERS[name]}
            for name, title in connection_fields.RELABELING.items()
        },
    }
    assert list(meta["extra_fields"]) == [field.name for field in FIELDS]
    for field in FIELDS:
        shown = meta["extra_fields"][field.name]
        assert shown["schema"]["title"] == field.label and shown["description"] == field.description, field.name
        # Airflow 3.3's form marks a field required when its type does not allow null
        assert shown["schema"]["type"] == (field.type if field.required else [field.type, "null"]), field.name
        assert shown["value"] == field.default, field.name  # the form's start value
    assert meta["extra_fields"]["timeout"]["schema"]["minimum"] == 1
    assert "pattern" in meta["extra_fields"]["business_phone"]["schema"]
    assert "true" in meta["extra_fields"]["verify"]["schema"]["examples"]


@pytest.mark.slow
@pytest.mark.api_server
def test_the_forms_test_button_checks_the_connection(api_server: str, sandbox: Any) -> None:
    """``POST /api/v2/connections/test`` is what the UI's *Test* button calls with the form's values."""
    form = {
        "connection_id": "itnio_from_the_form",
        "conn_type": "itnio",
        "host": sandbox.base_url,
        "login": sandbox.api_key,
        "password": sandbox.api_secret,
        "extra": json.dumps({"app_id": sandbox.app_id, "business_phone": sandbox.business_phone, "timeout": 5}),
    }
    good = requests.post(f"{api_server}/api/v2/connections/test", json=form, timeout=60)
    assert good.status_code == 200, good.text
    assert good.json()["status"] is True
    assert "business phone 15550001111 (+1 555-000-1111) is CONNECTED" in good.json()["message"]

    bad = requests.post(
        f"{api_server}/api/v2/connections/test", json={**form, "password": "not-the-sandbox-secret"}, timeout=60
    )
    assert bad.status_code == 200, bad.text
    assert bad.json()["status"] is False
    assert "itniotech API error -1: authentication error" in bad.json()["message"]
    assert "not-the-sandbox-secret" not in bad.text
    assert [r["status"] for r in sandbox.requests()] == ["0", "-1"]


@pytest.mark.slow
@pytest.mark.api_server
def test_the_list_test_button_works_on_what_the_ui_saves_and_posts(api_server: str, sandbox: Any) -> None:
    """
    Save a connection with the body the Add dialog posts, then test it with the body the list's Test button posts.

    Airflow 3.3's UI posts ``port: Number(null)`` (0) and the masked secret ``"***"`` for the stored connection;
    without the provider's plugin the route answers 400 ("The host or port to test differs ...").
    """
    conn_id = "itnio_saved_by_the_ui"
    empty_fields = {"business_phone": None, "verify": None, "proxy": None}
    add_body = {  # the Add dialog: every extra field, null when empty; the hidden port left out
        "connection_id": conn_id,
        "conn_type": "itnio",
        "host": sandbox.base_url,
        "login": sandbox.api_key,
        "password": sandbox.api_secret,
        "extra": json.dumps({"app_id": sandbox.app_id, **empty_fields, "timeout": "30"}),
    }
    created = requests.post(f"{api_server}/api/v2/connections", json=add_body, timeout=30)
    assert created.status_code == 201, created.text
    stored = requests.get(f"{api_server}/api/v2/connections/{conn_id}", timeout=30).json()
    assert _stored_extra(conn_id) == {"app_id": sandbox.app_id, "timeout": "30"}  # no null keys
    assert stored["port"] is None and stored["password"] == "***"

    list_test_body = {  # what the row's Test button posts: the listed connection, port as Number(port)
        "conn_type": stored["conn_type"],
        "connection_id": conn_id,
        "description": stored["description"] or "",
        "extra": stored["extra"],
        "host": stored["host"],
        "login": stored["login"],
        "password": stored["password"],
        "port": 0,
        "schema": "",
    }
    good = requests.post(f"{api_server}/api/v2/connections/test", json=list_test_body, timeout=60)
    assert good.status_code == 200, good.text
    assert good.json()["status"] is True, good.json()
    assert "is CONNECTED" in good.json()["message"]

    # a different host with the masked secret is still refused by Airflow (the plugin drops only port 0)
    elsewhere = {**list_test_body, "host": "http://127.0.0.1:9"}
    refused = requests.post(f"{api_server}/api/v2/connections/test", json=elsewhere, timeout=60)
    assert refused.status_code == 400, refused.text

    # the Edit dialog saves a wrong secret (PATCH, port null); the Test button then reports the API's -1
    edit_body = {**add_body, "password": "not-the-sandbox-secret", "port": None}
    patched = requests.patch(f"{api_server}/api/v2/connections/{conn_id}", json=edit_body, timeout=30)
    assert patched.status_code == 200, patched.text
    bad = requests.post(f"{api_server}/api/v2/connections/test", json=list_test_body, timeout=60)
    assert bad.status_code == 200, bad.text
    assert bad.json()["status"] is False
    assert "itniotech API error -1" in bad.json()["message"]
    assert "not-the-sandbox-secret" not in bad.text
    assert _stored_extra(conn_id) == {"app_id": sandbox.app_id, "timeout": "30"}


@pytest.mark.slow
@pytest.mark.api_server
def test_the_edit_dialog_gets_every_extra_field_and_saving_it_adds_a_proxy(api_server: str) -> None:
    """
    What the Edit dialog reads and saves, for a connection stored with only some extras (as ``make airflow``'s
    ``airflow connections add`` or the Add dialog store it).

    Airflow 3.3's Edit dialog shows a declared extra field only when its key is in the ``extra`` it is given (the
    connection list's row), and shows an undeclared key as a raw text field. Without the plugin the answer holds
    only the stored keys: the dialog had no Timeout, Verify TLS or Proxy field, so no proxy could be added.
    """
    conn_id = "itnio_to_edit"
    token, button_key = "tok-" + "t" * 40, "bk-" + "k" * 40
    stored_extra = {
        "app_id": "DGziZf5u",
        "business_phone": "91856321321",
        "webhook_token": token,
        "button_key": button_key,
    }
    created = requests.post(
        f"{api_server}/api/v2/connections",
        json={
            "connection_id": conn_id,
            "conn_type": "itnio",
            "host": "http://127.0.0.1:8765",
            "login": "k",
            "password": "s3cret-value",
            "extra": json.dumps(stored_extra),
        },
        timeout=30,
    )
    assert created.status_code == 201, created.text
    other = {"connection_id": "http_untouched", "conn_type": "http", "host": "example.com", "extra": '{"a": 1}'}
    assert requests.post(f"{api_server}/api/v2/connections", json=other, timeout=30).status_code == 201
    declared = [field.name for field in FIELDS]

    one = requests.get(f"{api_server}/api/v2/connections/{conn_id}", timeout=30)
    listed = requests.get(f"{api_server}/api/v2/connections", params={"limit": 50}, timeout=30)
    assert one.status_code == listed.status_code == 200, (one.text, listed.text)
    rows = {row["connection_id"]: row for row in listed.json()["connections"]}
    for answer in (one.json(), rows[conn_id]):
        extra = json.loads(answer["extra"])
        assert sorted(extra) == sorted(declared), extra  # every field, so the dialog shows every one
        assert {key: value for key, value in extra.items() if key not in stored_extra} == dict.fromkeys(
            set(declared) - set(stored_extra)
        )
        assert extra["app_id"] == "DGziZf5u"
        assert {field.name for field in FIELDS if field.secret} >= {"webhook_token", "button_key"}
        assert extra[connection_fields.WEBHOOK_TOKEN_EXTRA] == extra[connection_fields.BUTTON_KEY_EXTRA] == "***"
    assert token not in one.text + listed.text and button_key not in one.text + listed.text
    assert json.loads(rows["http_untouched"]["extra"]) == {"a": 1}  # other types: as stored

    # Save in the Edit dialog after typing a proxy: the dialog sends back what it got, with the proxy filled in
    edited = {**json.loads(rows[conn_id]["extra"]), "proxy": "http://proxy.example.com:3128"}
    patched = requests.patch(
        f"{api_server}/api/v2/connections/{conn_id}",
        params={"update_mask": "extra"},
        json={"connection_id": conn_id, "conn_type": "itnio", "extra": json.dumps(edited)},
        timeout=30,
    )
    assert patched.status_code == 200, patched.text
    # the secrets kept (*** restored), the proxy added, no null keys stored
    assert _stored_extra(conn_id) == {**stored_extra, "proxy": "http://proxy.example.com:3128"}


# -- Airflow 2: the Flask web server ------------------------------------------------------------------------

_AIRFLOW_2_WEBSERVER = """
import json, re, sys
from airflow.www.app import create_app
from airflow.models import Connection
from airflow.utils.session import create_session

client = create_app(testing=True).test_client()
page = client.get("/connection/add")
form = {"conn_id": "itnio_form", "conn_type": "itnio", "host": "https://api.itniotech.com",
        "login": "bDqJFiq9", "password": "s3cr3t", "extra__itnio__app_id": "DGziZf5u",
        "extra__itnio__business_phone": "91856321321", "extra__itnio__timeout": "20"}
rejected = client.post("/connection/add", data={**form, "conn_id": "itnio_bad", "extra__itnio__timeout": "0"})
saved = client.post("/connection/add", data=form)
with create_session() as session:
    stored = {c.conn_id: [c.conn_type, c.host, c.login, c.extra_dejson]
              for c in session.query(Connection).filter(Connection.conn_id.like("itnio_%"))}
print(json.dumps({"page": [page.status_code, page.data.decode()],
                  "rejected": [rejected.status_code, rejected.data.decode()],
                  "saved": saved.status_code, "stored": stored}))
"""


@pytest.mark.slow
@pytest.mark.api_server
@pytest.mark.skipif(not AIRFLOW_2, reason="Airflow 3 has no Flask connection form (the API server test covers 3)")
def test_airflow_2_web_form_renders_the_fields_and_saves_them_as_extra(airflow_db: Path, tmp_path: Path) -> None:
    config = tmp_path / "webserver_config.py"
    config.write_text('AUTH_ROLE_PUBLIC = "Admin"\nWTF_CSRF_ENABLED = False\n')
    env = {**os.environ, "AIRFLOW__WEBSERVER__CONFIG_FILE": str(config)}
    result = subprocess.run(
        [sys.executable, "-c", _AIRFLOW_2_WEBSERVER], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])

    status, page = answer["page"]
    assert status == 200
    for field in FIELDS:
        name, label, description = field.name, field.label, field.description
        key = f"extra__itnio__{name}"
        assert re.search(rf'<label for="{key}"[^>]*>\s*{re.escape(label)}', page), name
        if field.type == "boolean":  # a check box, without Bootstrap's form-control class
            field_html = rf"<input[^>]*id=\"{key}\" name=\"{key}\" type=\"checkbox\".*?class=\"help-block\">(.*?)<"
        else:  # a secret has type="password" and no value (Airflow 2 shows a placeholder for a stored one)
            field_html = rf"<input class=\"form-control\" id=\"{key}\" name=\"{key}\".*?class=\"help-block\">(.*?)<"
        shown = re.search(field_html, page, re.S)
        assert shown is not None, name
        assert html.unescape(shown.group(1)).strip() == description
    [behaviour_json] = re.findall(r'<script id="field_behaviours" type="text/json">(.*?)</script>', page, re.S)
    behaviour = json.loads(html.unescape(behaviour_json))["itnio"]
    assert behaviour["hidden_fields"] == list(connection_fields.HIDDEN_FIELDS)
    assert behaviour["relabeling"] == connection_fields.RELABELING
    assert behaviour["placeholders"] == {
        **connection_fields.STANDARD_PLACEHOLDERS,
        **{f"extra__itnio__{field.name}": field.placeholder for field in FIELDS},
    }

    status, rejected_page = answer["rejected"]
    assert status == 200  # the form comes back with the error, nothing is saved
    assert "Number must be at least 1." in rejected_page
    assert answer["saved"] == 302
    assert list(answer["stored"]) == ["itnio_form"]
    conn_type, host, login, extra = answer["stored"]["itnio_form"]
    assert (conn_type, host, login) == ("itnio", "https://api.itniotech.com", "bDqJFiq9")
    # no null keys; an unchecked check box is stored as false (Airflow 2 keeps every value but "")
    assert extra == {
        "app_id": "DGziZf5u",
        "business_phone": "91856321321",
        "timeout": 20,
        "strict_phone_numbers": False,
    }


@pytest.mark.parametrize(
    "extra",
    [
        {"app_id": "DGziZf5u", "business_phone": "91856321321", "timeout": 20, "verify": None, "proxy": None},
        {"app_id": "DGziZf5u", "business_phone": "91856321321", "timeout": "20"},  # Airflow 3.3's form
    ],
    ids=["null-keys", "absent-keys"],
)
def test_the_hook_reads_what_the_form_stores(monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any]) -> None:
    """Check that empty fields, stored as null or left out of ``extra``, give the hook's defaults."""
    from airflow_provider_itnio.hooks.itnio import ItnioHook

    conn = {"conn_type": "itnio", "host": "https://api.itniotech.com", "login": "k", "password": "s", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_ITNIO_FORM", json.dumps(conn))
    config = ItnioHook(itnio_conn_id="itnio_form").config
    assert (config.app_id, config.business_phone, config.timeout) == ("DGziZf5u", "91856321321", 20.0)
    assert (config.verify, config.proxy, config.base_url) == (True, None, "https://api.itniotech.com")
