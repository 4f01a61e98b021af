"""
``get_provider_info()`` and the hook's form answers, checked against what the installed Airflow does with them.

Airflow 3.1+ builds the connection form from ``conn-fields`` / ``ui-field-behaviour`` without importing the
hook; Airflow 2.x calls ``ItnioHook.get_connection_form_widgets()`` / ``get_ui_field_behaviour()``. Both are
built from :mod:`airflow_provider_itnio.connection_fields`; these tests pin the fields and check that the
real ``ProvidersManager`` of whichever Airflow is installed ends up with them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import airflow_provider_itnio
from airflow_provider_itnio import __version__, connection_fields, get_provider_info
from airflow_provider_itnio.hooks.itnio import ItnioHook
from tests.support.paths import ROOT

AIRFLOW_2 = metadata.version("apache-airflow").startswith("2.")
#: The documentation page that describes the connection (its "Fields" table and its UI paragraph).
CONNECTION_PAGE = ROOT / "docs" / "connection.md"
#: The form's single definition (what Airflow 3 reads from provider info and Airflow 2 from the hook).
FIELDS = {field.name: field for field in connection_fields.EXTRA_FIELDS}
EXTRA_FIELDS = list(FIELDS)


def _documented_connection_table() -> list[tuple[str, str]]:
    """Return the connection page's "Fields" table as ``(field, holds)`` rows."""
    section = CONNECTION_PAGE.read_text(encoding="utf-8").split("\n## Fields\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| ")]
    return [(field.strip(), holds.strip()) for field, holds in rows[1:]]  # without the header row


def _documented_ui_labels(section: str) -> list[str]:
    """
    Return the labels the connection page's UI paragraph lists in one section of the dialog, in order.

    :param section: The section's name as the page writes it, e.g. ``Extra Fields``.
    """
    text = " ".join(CONNECTION_PAGE.read_text(encoding="utf-8").split())
    listed = text.split(f"*{section}*: ", 1)[1].split(";", 1)[0].split(". *", 1)[0].split(", each with", 1)[0]
    while "(" in listed:  # drop the (possibly nested) parenthesised remarks
        listed = re.sub(r"\s*\([^()]*\)", "", listed)
    labels = [label for part in listed.split(", ") for label in part.split(" and ")]
    return [label.strip().rstrip(".,") for label in labels]


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
    assert entry["hook-name"] == ItnioHook.hook_name == connection_fields.HOOK_NAME
    assert entry["connection-type"] == ItnioHook.conn_type == connection_fields.CONN_TYPE
    assert ItnioHook.default_conn_name.startswith(f"{ItnioHook.conn_type}_")


def test_ui_field_behaviour_hides_relabels_and_fills_placeholders() -> None:
    behaviour = _itnio_conn_type()["ui-field-behaviour"]
    # the connection page's table names each standard field as "Label (field)": that is the relabeling
    documented = {}
    for field, _ in _documented_connection_table():
        standard = re.fullmatch(r"([A-Z][\w ]+) \((\w+)\)", field)  # "API Key (login)", not "`app_id` (extra)"
        if standard is not None:
            documented[standard.group(2)] = standard.group(1)
    assert behaviour["relabeling"] == documented
    # the connection page says "schema and port are hidden"; the raw extra is replaced by the extra fields
    assert "schema and port are hidden" in " ".join(CONNECTION_PAGE.read_text(encoding="utf-8").split())
    assert sorted(behaviour["hidden-fields"]) == sorted(["schema", "port", "extra"])
    assert not set(behaviour["hidden-fields"]) & set(behaviour["relabeling"])
    # every field the form shows has a placeholder; the Base URL's is the default the hook uses
    assert set(behaviour["placeholders"]) == {*behaviour["relabeling"], *EXTRA_FIELDS}
    hostless = _hook_config_with({"app_id": "a"}, host=None)
    assert behaviour["placeholders"]["host"] == hostless.base_url
    # the standard-field part is what Airflow validates (its own JSON schema for field behaviours)
    import jsonschema

    as_hook_spells_it = {
        "hidden_fields": behaviour["hidden-fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }
    jsonschema.validate(as_hook_spells_it, _airflow_schema("customized_form_field_behaviours.schema.json"))


def test_the_connection_page_describes_the_forms_fields() -> None:
    """Check the connection page's table and its UI paragraph (docs/connection.md) against the form's definition."""
    extras = [field for field, _ in _documented_connection_table() if "(extra" in field]
    assert [field.split("`")[1] for field in extras] == EXTRA_FIELDS
    required = {field.split("`")[1] for field in extras if "required" in field}
    assert required == {name for name, field in FIELDS.items() if field.required}
    assert _documented_ui_labels("Extra Fields") == [field.label for field in FIELDS.values()]
    relabeling = _itnio_conn_type()["ui-field-behaviour"]["relabeling"]
    assert set(_documented_ui_labels("Standard Fields")) == {"Description", *relabeling.values()}


def test_conn_fields_have_label_json_schema_type_and_a_one_line_description() -> None:
    fields = _itnio_conn_type()["conn-fields"]
    assert list(fields) == EXTRA_FIELDS
    for name, spec in fields.items():
        field = FIELDS[name]
        assert spec["label"] == field.label
        description = spec["description"]
        assert description and "\n" not in description and len(description) <= 100, name
        # Airflow 3.3's form marks a field required when its type does not allow null
        assert spec["schema"]["type"] == (field.type if field.required else [field.type, "null"]), name
        assert description.startswith("Required.") == field.required, name
    assert fields["timeout"]["schema"]["minimum"] == 1


def _hook_config_with(extra: dict[str, Any], host: str | None = "https://api.itniotech.com") -> Any:
    """
    Return the hook's config for an ``itnio`` connection with these extras.

    :param extra: The connection's ``extra``.
    :param host: The connection's host (Base URL); ``None`` to leave it empty.
    """
    conn = {"conn_type": "itnio", "host": host, "login": "k", "password": "s", "extra": extra}
    os.environ["AIRFLOW_CONN_ITNIO_FIELDS"] = json.dumps(conn)
    try:
        return ItnioHook(itnio_conn_id="itnio_fields").config
    finally:
        os.environ.pop("AIRFLOW_CONN_ITNIO_FIELDS")


#: How a module that reads a connection's ``extra_dejson`` reads one of its keys: ``extra.get("name")``,
#: ``(conn.extra_dejson or {}).get("name")``, ``extra["name"]``.
_EXTRA_READS = (
    re.compile(r"extra(?:_dejson)?(?: or \{\}\))?\.get\(\s*[\"']([a-z_]+)[\"']"),
    re.compile(r"extra(?:_dejson)?\[[\"']([a-z_]+)[\"']\]"),
)
#: A constant naming an extra, in any module: ``SOMETHING_EXTRA = "name"``.
_EXTRA_CONSTANT = re.compile(r"^[A-Z_]*EXTRA\s*(?::\s*str\s*)?=\s*[\"']([a-z_]+)[\"']", re.MULTILINE)


def test_every_extra_the_package_reads_is_declared_once_with_a_label_and_help() -> None:
    """
    Scan the package (not the sandbox, which is the vendor's side) for the extras it reads: each one is a field of
    the form, so the Add and Edit dialogs show it with its label and help instead of a raw, unlabelled key.
    """
    package = Path(airflow_provider_itnio.__file__).parent
    read: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        if "sandbox" in path.relative_to(package).parts:
            continue
        text = path.read_text(encoding="utf-8")
        patterns = (*_EXTRA_READS, _EXTRA_CONSTANT) if "extra_dejson" in text else (_EXTRA_CONSTANT,)
        for pattern in patterns:  # (asset events have an ``extra`` too: modules without a connection's skipped)
            for name in pattern.findall(text):
                read.setdefault(name, set()).add(str(path.relative_to(package)))
    for name in ("app_id", "timeout", "proxy", "webhook_token"):  # the scan finds what it must
        assert name in read, name
    assert {name: where for name, where in read.items() if name not in FIELDS} == {}
    assert len(connection_fields.EXTRA_FIELDS) == len(FIELDS)  # each declared once
    for name in (
        connection_fields.WEBHOOK_TOKEN_EXTRA,
        connection_fields.BUTTON_KEY_EXTRA,
        connection_fields.STRICT_PHONE_NUMBERS_EXTRA,
    ):
        assert FIELDS[name].label and FIELDS[name].description, name
    assert FIELDS[connection_fields.WEBHOOK_TOKEN_EXTRA].json_schema()["format"] == "password"
    assert FIELDS[connection_fields.BUTTON_KEY_EXTRA].json_schema()["format"] == "password"
    assert FIELDS[connection_fields.BUTTON_KEY_EXTRA].label == "Approval button key"
    assert FIELDS[connection_fields.STRICT_PHONE_NUMBERS_EXTRA].json_schema()["type"] == ["boolean", "null"]


def test_the_required_fields_are_those_the_hook_cannot_do_without() -> None:
    """Check that a field whose type allows null may be left out, and the hook refuses a connection without another."""
    from airflow_provider_itnio.errors import ItnioConfigError

    fields = _itnio_conn_type()["conn-fields"]
    examples = {  # each field's placeholder, as a value of the field's schema type
        name: int(FIELDS[name].placeholder) if FIELDS[name].type == "integer" else FIELDS[name].placeholder
        for name in fields
    }
    _hook_config_with(examples)  # every example value is one the hook accepts
    for name, spec in fields.items():
        without = {key: value for key, value in examples.items() if key != name}
        if "null" in spec["schema"]["type"]:
            _hook_config_with(without)
        else:
            with pytest.raises(ItnioConfigError, match=name):
                _hook_config_with(without)


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
            kinds = spec["schema"]["type"]
            expected_class = (
                "IntegerField"
                if "integer" in kinds
                else "BooleanField"
                if "boolean" in kinds
                else "PasswordField"  # a secret: Airflow 2 hides the stored value
                if spec["schema"].get("format") == "password"
                else "StringField"
            )
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
        assert info.is_sensitive == FIELDS[name].secret, name  # masked input; Airflow 2 hides the stored value
        if AIRFLOW_2:  # from the hook: unbound WTForms fields
            assert str(info.field.args[0]) == FIELDS[name].label
        else:  # from conn-fields, never importing the hook
            assert info.field["schema"] == {**FIELDS[name].json_schema(), "title": FIELDS[name].label}
    behaviour = manager.field_behaviours["itnio"]
    assert behaviour["hidden_fields"] == list(connection_fields.HIDDEN_FIELDS)
    assert behaviour["relabeling"] == connection_fields.RELABELING
    # extra-field placeholders are namespaced by Airflow, standard ones are not
    assert behaviour["placeholders"] == {
        **connection_fields.STANDARD_PLACEHOLDERS,
        **{f"extra__itnio__{name}": field.placeholder for name, field in FIELDS.items()},
    }


@pytest.mark.slow  # a subprocess importing Airflow
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
    license_text = (ROOT / "LICENSE").read_text()
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


# -- the provider's configuration section, [itnio] --------------------------------------------------------------

PACKAGE = Path(airflow_provider_itnio.__file__).parent
#: The methods of Airflow's ``conf`` that read an option.
CONF_READERS = frozenset({"get", "getint", "getfloat", "getboolean", "getjson", "getlist", "getimport", "has_option"})


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Return the module-level names bound to a string (``SECTION = "itnio"``, ``A, B = "itnio", "x"``)."""
    constants: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                pairs = list(zip(target.elts, value.elts, strict=False))
            else:
                pairs = [(target, value)]
            for name, bound in pairs:
                if isinstance(name, ast.Name) and isinstance(bound, ast.Constant) and isinstance(bound.value, str):
                    constants[name.id] = bound.value
    return constants


def _resolve(node: ast.expr, constants: dict[str, str]) -> str | None:
    """Return the string an argument is (a literal, or a name from :func:`_string_constants`), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return constants.get(node.id) if isinstance(node, ast.Name) else None


def _itnio_options_the_code_reads() -> dict[str, list[str]]:
    """Return each ``[itnio]`` option that a ``conf.<reader>(section, option, ...)`` call of the package reads."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports_conf = any(
            isinstance(node, ast.ImportFrom) and any(alias.name == "conf" for alias in node.names)
            for node in ast.walk(tree)
        )
        if not imports_conf:
            continue
        constants = _string_constants(tree)
        for call in ast.walk(tree):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr in CONF_READERS
                and isinstance(call.func.value, ast.Name)
                and call.func.value.id == "conf"
            ):
                continue
            where = f"{path.relative_to(PACKAGE)}:{call.lineno}"
            section, option = (_resolve(arg, constants) for arg in call.args[:2])
            assert section is not None and option is not None, f"{where}: a conf read this test cannot follow"
            if section == "itnio":
                found.setdefault(option, []).append(where)
    return found


def _declared_itnio_options() -> dict[str, dict[str, Any]]:
    return dict(get_provider_info()["config"]["itnio"]["options"])


def test_every_itnio_option_the_code_reads_is_declared_and_nothing_else() -> None:
    read = _itnio_options_the_code_reads()
    assert read, "no [itnio] option read: the scan above lost track of the code"
    declared = _declared_itnio_options()
    mismatch = {name: read.get(name, "declared, never read") for name in set(read) ^ set(declared)}
    assert set(declared) == set(read), mismatch
    for name, option in declared.items():
        assert option["description"] and option["version_added"] and option["example"] is not None, name
        if option["type"] in ("integer", "float"):  # the default and the example read as the declared type
            convert = int if option["type"] == "integer" else float
            convert(option["default"]), convert(option["example"])


def test_the_declared_retention_is_the_one_the_cleanup_falls_back_to() -> None:
    from airflow_provider_itnio.webhook.store import DEFAULT_RETENTION_DAYS

    assert float(_declared_itnio_options()["webhook_retention_days"]["default"]) == DEFAULT_RETENTION_DAYS


@pytest.mark.slow  # a subprocess running the Airflow CLI
def test_airflow_config_list_shows_the_itnio_options_with_their_defaults(tmp_path: Path) -> None:
    """``airflow config list --section itnio`` of the installed Airflow, in a fresh home: each option, its default."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    argv = [str(Path(sys.executable).parent / "airflow"), "config", "list", "--section", "itnio"]
    result = subprocess.run(
        argv + ([] if AIRFLOW_2 else ["--show-values"]),  # Airflow 3 hides values unless asked
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    section = result.stdout.split("[itnio]", 1)[1].split("\n[", 1)[0]
    listed: dict[str, str] = {}
    for line in section.splitlines():
        if line.strip() and not line.startswith("#"):
            name, value = line.split("=", 1)
            listed[name.strip()] = value.strip()
    assert listed == {name: str(option["default"]) for name, option in _declared_itnio_options().items()}
