"""
``get_provider_info()`` and the hook's form answers, checked against what the installed Airflow does with them.

Airflow 3.1+ builds the connection form from ``conn-fields`` / ``ui-field-behaviour`` without importing the
hook; Airflow 2.x calls ``ItnioHook.get_connection_form_widgets()`` / ``get_ui_field_behaviour()``. Both are
built from :mod:`airflow_provider_itnio.connection_fields`; these tests pin the fields and check that the
real ``ProvidersManager`` of whichever Airflow is installed ends up with them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_itnio import __version__, get_provider_info
from airflow_provider_itnio.hooks.itnio import ItnioHook

AIRFLOW_2 = metadata.version("apache-airflow").startswith("2.")
EXTRA_FIELDS = ["app_id", "business_phone", "timeout", "verify", "proxy"]
LABELS = {
    "app_id": "App ID",
    "business_phone": "Business phone",
    "timeout": "Timeout",
    "verify": "Verify TLS",
    "proxy": "Proxy",
}
TYPES = {
    "app_id": "string",  # required: Airflow 3's form refuses to save without it
    "business_phone": ["string", "null"],
    "timeout": ["integer", "null"],
    "verify": ["string", "null"],
    "proxy": ["string", "null"],
}
RELABELING = {"login": "API Key", "password": "API Secret", "host": "Base URL"}


def _itnio_conn_type() -> dict[str, Any]:
    [entry] = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "itnio"]
    return entry


def _airflow_schema(name: str) -> dict[str, Any]:
    import airflow

    return json.loads((Path(airflow.__file__).parent / name).read_text())


def test_provider_info_validates_against_the_installed_airflows_schema() -> None:
    import jsonschema

    info = get_provider_info()
    jsonschema.validate(info, _airflow_schema("provider_info.schema.json"))
    assert info["package-name"] == metadata.metadata("airflow-provider-itnio")["Name"]
    assert info["versions"] == [__version__] == [metadata.version("airflow-provider-itnio")]


def test_the_entry_point_airflow_discovers_is_get_provider_info() -> None:
    [entry_point] = [
        ep for ep in metadata.entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider")
    ]
    assert entry_point.load() is get_provider_info


def test_connection_type_names_the_hook_and_its_type() -> None:
    entry = _itnio_conn_type()
    assert entry["hook-class-name"] == f"{ItnioHook.__module__}.{ItnioHook.__qualname__}"
    assert entry["hook-name"] == ItnioHook.hook_name == "itniotech WhatsApp"
    assert ItnioHook.conn_type == "itnio"


def test_ui_field_behaviour_hides_relabels_and_fills_placeholders() -> None:
    behaviour = _itnio_conn_type()["ui-field-behaviour"]
    assert sorted(behaviour["hidden-fields"]) == ["extra", "port", "schema"]
    assert behaviour["relabeling"] == RELABELING
    assert behaviour["placeholders"]["host"] == "https://api.itniotech.com"
    assert set(behaviour["placeholders"]) == {"login", "password", "host", *EXTRA_FIELDS}
    # the standard-field part is what Airflow validates (its own JSON schema for field behaviours)
    import jsonschema

    as_hook_spells_it = {
        "hidden_fields": behaviour["hidden-fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }
    jsonschema.validate(as_hook_spells_it, _airflow_schema("customized_form_field_behaviours.schema.json"))


def test_conn_fields_have_label_json_schema_type_and_a_one_line_description() -> None:
    fields = _itnio_conn_type()["conn-fields"]
    assert list(fields) == EXTRA_FIELDS
    for name, spec in fields.items():
        assert spec["label"] == LABELS[name]
        assert spec["schema"]["type"] == TYPES[name]
        description = spec["description"]
        assert description and "\n" not in description and len(description) <= 100, name
    assert fields["timeout"]["schema"]["minimum"] == 1
    assert fields["app_id"]["description"].startswith("Required.")


def test_the_hooks_answers_are_the_provider_infos_fields() -> None:
    """One source of truth: the Airflow 2 answers say exactly what ``get_provider_info()`` says."""
    entry = _itnio_conn_type()
    behaviour = ItnioHook.get_ui_field_behaviour()
    assert behaviour == {
        "hidden_fields": entry["ui-field-behaviour"]["hidden-fields"],
        "relabeling": entry["ui-field-behaviour"]["relabeling"],
        "placeholders": entry["ui-field-behaviour"]["placeholders"],
    }
    if AIRFLOW_2:  # WTForms and Flask-AppBuilder are only installed with Airflow 2's web server
        widgets = ItnioHook.get_connection_form_widgets()
        assert list(widgets) == list(entry["conn-fields"])
        for name, unbound in widgets.items():
            spec = entry["conn-fields"][name]
            assert str(unbound.args[0]) == spec["label"]
            assert unbound.kwargs["description"] == spec["description"]
            expected_class = "IntegerField" if "integer" in spec["schema"]["type"] else "StringField"
            assert unbound.field_class.__name__ == expected_class


def test_providers_manager_registers_the_form_fields() -> None:
    """The real ProvidersManager of the installed Airflow ends up with our five fields and the behaviour."""
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-itnio" in manager.providers
    widgets = {key: info for key, info in manager.connection_form_widgets.items() if key.startswith("extra__itnio__")}
    assert sorted(widgets) == sorted(f"extra__itnio__{name}" for name in EXTRA_FIELDS)
    for name in EXTRA_FIELDS:
        info = widgets[f"extra__itnio__{name}"]
        assert info.field_name == name
        # Airflow 3 records the class path from provider info, Airflow 2 the class name of the imported hook
        assert info.hook_class_name in ("airflow_provider_itnio.hooks.itnio.ItnioHook", "ItnioHook")
        assert not info.is_sensitive
        if AIRFLOW_2:  # from the hook: unbound WTForms fields
            assert str(info.field.args[0]) == LABELS[name]
        else:  # from conn-fields, never importing the hook
            assert info.field["schema"]["type"] == TYPES[name]
            assert info.field["schema"]["title"] == LABELS[name]
    behaviour = manager.field_behaviours["itnio"]
    assert sorted(behaviour["hidden_fields"]) == ["extra", "port", "schema"]
    assert behaviour["relabeling"] == RELABELING
    # extra-field placeholders are namespaced by Airflow, standard ones are not
    assert behaviour["placeholders"]["host"] == "https://api.itniotech.com"
    assert behaviour["placeholders"]["extra__itnio__app_id"] == "DGziZf5u"


@pytest.mark.skipif(AIRFLOW_2, reason="Airflow 2 has no provider-info form metadata; it always imports the hook")
def test_airflow_3_builds_the_form_without_calling_the_hooks_form_methods() -> None:
    """With ``conn-fields`` present, Airflow 3 must not call the hook's form methods (deprecated there)."""
    code = """
import json, warnings
from airflow.providers_manager import ProvidersManager
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    manager = ProvidersManager()
    info = manager.hooks["itnio"]
    widgets = sorted(k for k in manager.connection_form_widgets if k.startswith("extra__itnio__"))
print(json.dumps({
    "testable": info.connection_testable,
    "widgets": widgets,
    "deprecations": [str(w.message) for w in caught if "ItnioHook" in str(w.message)],
}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["testable"] is True
    assert answer["widgets"] == sorted(f"extra__itnio__{name}" for name in EXTRA_FIELDS)
    assert answer["deprecations"] == []


def test_form_polish_default_pattern_and_suggestions() -> None:
    """Check Timeout's default (the hook's), Business phone's pattern and Verify TLS's suggestions."""
    import re

    from airflow_provider_itnio.hooks.itnio import ItnioHook

    fields = _itnio_conn_type()["conn-fields"]
    conn = {"conn_type": "itnio", "host": "https://api.itniotech.com", "login": "k", "password": "s"}
    os.environ["AIRFLOW_CONN_ITNIO_POLISH"] = json.dumps({**conn, "extra": {"app_id": "a"}})
    try:
        assert fields["timeout"]["schema"]["default"] == ItnioHook(itnio_conn_id="itnio_polish").config.timeout
    finally:
        os.environ.pop("AIRFLOW_CONN_ITNIO_POLISH")
    pattern = re.compile(fields["business_phone"]["schema"]["pattern"])
    for written in ("91856321321", "+1 555 000 1111", "+44 (0) 20 7946 0958", "+86 138-0013-8000"):
        assert pattern.fullmatch(written), written
    for not_a_phone in ("", "abc", "+", "12", "555 000 1111 ext. 2"):
        assert not pattern.fullmatch(not_a_phone), not_a_phone
    assert {"true", "false"} <= set(fields["verify"]["schema"]["examples"])
    assert set(_itnio_conn_type()["ui-field-behaviour"]["placeholders"]) >= set(fields)  # Airflow 2's placeholders


def test_package_metadata_links_docs_and_source_and_declares_what_it_imports() -> None:
    """Check the Providers page's docs link (Project-URL Documentation), classifiers, LICENSE and tenacity."""
    dist = metadata.distribution("airflow-provider-itnio")
    urls = dict(entry.split(", ", 1) for entry in dist.metadata.get_all("Project-URL") or [])
    assert urls["Documentation"].startswith("https://") and urls["Source"].startswith("https://")
    classifiers = dist.metadata.get_all("Classifier") or []
    assert "Framework :: Apache Airflow :: Provider" in classifiers
    assert dist.metadata["License-Expression"] == "Apache-2.0"
    license_text = (Path(__file__).resolve().parents[1] / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    requirements = {req.split(";")[0].split(">")[0].split("=")[0].strip() for req in dist.requires or []}
    import airflow_provider_itnio.hooks.itnio as hook_module

    assert "tenacity" in vars(hook_module)  # the hook imports it, so the package declares it
    assert "tenacity" in requirements


def test_the_providers_page_gets_the_documentation_url() -> None:
    """The installed Airflow's ProvidersManager reads ``documentation-url`` from the Project-URL (Airflow 3)."""
    from airflow.providers_manager import ProvidersManager

    info = ProvidersManager().providers["airflow-provider-itnio"]
    if AIRFLOW_2:
        assert info.data["package-name"] == "airflow-provider-itnio"  # Airflow 2's page links by package name
    else:
        dist = metadata.distribution("airflow-provider-itnio")
        urls = dict(entry.split(", ", 1) for entry in dist.metadata.get_all("Project-URL") or [])
        assert info.data["documentation-url"] == urls["Documentation"]
