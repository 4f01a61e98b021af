"""
The old path of the receiver's approvals, ``airflow_provider_itnio.webhook.hitl``: it warns, and it gives every name
it had, the very objects of the modules they live in now (:mod:`airflow_provider_itnio.webhook.taps`,
``owed_buttons``, ``tap_sweeper``, ``approvals_common`` and :mod:`airflow_provider_itnio.hitl_buttons`); the package
itself no longer imports it.

The imports run in a fresh interpreter: the warning is given once, when the module is first imported.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap

from tests.support.paths import ROOT
from tests.support.receiver import needs_airflow_3

OLD = "airflow_provider_itnio.webhook.hitl"

#: Every public name of the old module, and the module it lives in now.
MOVED = {
    "airflow_provider_itnio.hitl_buttons": [
        "ID_PREFIX",
        "MAX_ID",
        "PENDING_XCOM_KEY",
        "REQUESTS_XCOM_KEY",
        "ButtonId",
        "ButtonKeys",
        "button_key_secrets",
        "button_keys",
        "legacy_button_key",
        "mask_phone",
        "parse_button",
        "recipient_digest",
        "sign_button",
        "verify_button",
    ],
    "airflow_provider_itnio.webhook.taps": [
        "TapNotRecorded",
        "TapOutcome",
        "apply_tap",
        "handle_tap",
        "on_inbound",
        "responder",
        "ui_link",
    ],
    "airflow_provider_itnio.webhook.owed_buttons": [
        "SENDING_STALE_AFTER",
        "Owed",
        "pending_requests",
        "send_pending",
        "sweep_sending",
    ],
    "airflow_provider_itnio.webhook.tap_sweeper": [
        "MAX_TAP_ATTEMPTS",
        "MAX_TAP_BACKOFF",
        "SWEEP_AFTER",
        "SWEEP_BATCH",
        "SWEEP_INTERVAL",
        "Sweeper",
        "sweep",
        "sweep_taps",
        "sweeper",
    ],
    "airflow_provider_itnio.webhook.approvals_common": [
        "LOCK_TIMEOUT",
        "connection_button_keys",
        "phone_digest",
        "send_reply",
    ],
}


@needs_airflow_3
def test_the_old_path_warns_and_gives_the_same_objects() -> None:
    code = textwrap.dedent(
        f"""
        import importlib, json, warnings

        warnings.simplefilter("error", DeprecationWarning)
        for new in {sorted(MOVED)!r}:
            importlib.import_module(new)  # the new homes import without a warning
        try:
            importlib.import_module({OLD!r})
        except DeprecationWarning as warning:
            print("warned:", warning)
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module({OLD!r})
        moved = {MOVED!r}
        print(json.dumps({{
            "all": sorted(old.__all__),
            "different": [
                f"{{home}}.{{name}}"
                for home, names in moved.items()
                for name in names
                if getattr(old, name) is not getattr(importlib.import_module(home), name)
            ],
        }}))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    warned, answer = result.stdout.strip().splitlines()
    assert warned.startswith(f"warned: {OLD} is deprecated: import from airflow_provider_itnio.webhook.taps"), warned
    found = json.loads(answer)
    assert found["all"] == sorted(name for names in MOVED.values() for name in names)
    assert found["different"] == []


def test_no_module_of_the_package_imports_the_old_path() -> None:
    """Read from the sources (lazy imports inside functions count): only the old module itself names it."""
    package = ROOT / "airflow_provider_itnio"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path == package / "webhook" / "hitl.py":
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        here = parts[:-1]  # the package a relative import starts from (an __init__.py's is its own folder)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join([*here[: len(here) - node.level + 1], node.module or ""]) if node.level else node.module
                base = (base or "").rstrip(".")
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for name in names if name == OLD]
    assert offenders == []
