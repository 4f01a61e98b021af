"""
The batch package's layout (issue 16): one module per job, and every path users already import still works.

``airflow_provider_itnio.batch`` was one module; its names are importable from the package as before (each from
the module that now defines it), the two modules that moved (``results``, ``operators._batch_task``) warn and give
the same objects, and a DAG file that imports the operators does not load the engine.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

#: What ``airflow_provider_itnio.batch`` defined when it was one module -> the module of the package defining it now.
OLD_NAMES = {
    **dict.fromkeys(("MessagePlan", "RowTemplateError"), "plan"),
    "RateLimiter": "rate",
    **dict.fromkeys(
        (
            "PROGRESS_PREFIX",
            "MAX_KEY_LENGTH",
            "SHARD_SIZE",
            "MAX_PART_BYTES",
            "LEASE_TTL",
            "LEASE_SETTLE",
            "LEASE_SAFETY",
            "MAX_UNFLUSHED",
            "WRITE_RETRY_SECONDS",
            "STARTED",
            "LedgerValue",
            "is_started",
            "is_resent",
            "sent_message_id",
            "KeyValueBackend",
            "MemoryBackend",
            "progress_key",
            "lease_owner",
            "LedgerError",
            "LeaseHeldError",
            "LeaseLostError",
            "LedgerWriteError",
            "ProgressStore",
        ),
        "ledger",
    ),
    **dict.fromkeys(("COUNTERS", "BatchOutcome"), "outcome"),
    **dict.fromkeys(
        ("MAX_ERROR_TEXT", "WRITE_AHEAD_BLOCK", "BatchKilledError", "SendFunction", "BatchSender"), "sender"
    ),
}


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (nothing imported yet), failing the test when it fails."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize(("name", "home"), sorted(OLD_NAMES.items()))
def test_every_name_of_the_old_module_is_the_new_modules_object(name: str, home: str) -> None:
    from airflow_provider_itnio import batch

    module = importlib.import_module(f"airflow_provider_itnio.batch.{home}")
    assert getattr(batch, name) is getattr(module, name)
    assert name in batch.__all__ and name in dir(batch)


def test_a_name_the_package_does_not_have_is_an_attribute_error() -> None:
    from airflow_provider_itnio import batch

    with pytest.raises(AttributeError, match="has no attribute 'ProgresStore'"):
        batch.ProgresStore  # noqa: B018 - a misspelt name must not pass silently


def test_importing_the_operators_does_not_load_the_engine() -> None:
    """A DAG file imports the operators every time it is parsed: the engine is loaded when a batch task runs."""
    result = _python(
        """
        import sys

        import airflow_provider_itnio.operators
        from airflow_provider_itnio.operators import ItnioBatchSendOperator

        print(sorted(m for m in sys.modules if m.startswith("airflow_provider_itnio.batch")))
        """
    )
    assert result.stdout.strip() == "['airflow_provider_itnio.batch', 'airflow_provider_itnio.batch.results']"


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        (
            "airflow_provider_itnio.results",
            "airflow_provider_itnio.batch.results",
            ["load_batch_results", "DEFAULT_INLINE_MAX_ROWS", "ResultsPathError", "summarize"],
        ),
        (
            "airflow_provider_itnio.operators._batch_task",
            "airflow_provider_itnio.batch.task",
            ["BatchSettings", "VariableBackend", "sweep_completed_ledgers", "BatchSender", "summarize"],
        ),
    ],
)
def test_a_moved_module_warns_and_gives_the_same_objects(old: str, new: str, names: list[str]) -> None:
    result = _python(
        f"""
        import importlib
        import warnings

        warnings.simplefilter("error", DeprecationWarning)
        try:
            importlib.import_module({old!r})
        except DeprecationWarning as warning:
            print("warned:", warning)
        warnings.simplefilter("ignore", DeprecationWarning)
        old, new = importlib.import_module({old!r}), importlib.import_module({new!r})
        print("same:", all(getattr(old, name) is getattr(new, name) for name in {names!r}))
        """
    )
    assert f"warned: {old} is deprecated: import from {new}" in result.stdout, result.stdout
    assert "same: True" in result.stdout, result.stdout


def test_every_name_an_engine_module_holds_resolves_from_the_package_as_the_one_module_had_it() -> None:
    """``batch._utc``, ``batch.ItnioError``, ``batch.SESSION``...: the old module held its helpers and imports too."""
    import airflow_provider_itnio.batch as batch

    for home in ("plan", "rate", "ledger", "outcome", "sender"):
        module = importlib.import_module(f"airflow_provider_itnio.batch.{home}")
        for name, value in vars(module).items():
            if not name.startswith("__") and name not in {"annotations", "batch"}:
                found = getattr(batch, name)
                # the first engine module holding the name answers (an imported name is the same object anyway)
                assert found is value or any(
                    vars(importlib.import_module(f"airflow_provider_itnio.batch.{other}")).get(name) is found
                    for other in ("plan", "rate", "ledger", "outcome", "sender")
                ), (home, name)


def test_the_old_run_batch_call_builds_the_settings_the_operator_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import warnings

    from airflow_provider_itnio.batch import task
    from airflow_provider_itnio.batch.task import BatchSettings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("airflow_provider_itnio.operators._batch_task")
    calls: list[tuple[BatchSettings, dict[str, object]]] = []

    def record(settings: BatchSettings, **kwargs: object) -> dict[str, object]:
        calls.append((settings, kwargs))
        return {}

    monkeypatch.setattr(task, "run_batch", record)
    one_by_one = {
        "rows": [{"recipient": "+1 555 010 0200"}],
        "message": {"type": "text", "body": "hi"},
        "recipient_field": "recipient",
        "business_phone": None,
        "itnio_conn_id": "itnio_default",
        "concurrency": 2,
        "max_per_second": 5.0,
        "fail_on_errors": False,
        "window_unknown": "template",
        "resend_interrupted": False,
    }
    context, log = {"ti": None}, object()
    assert old.run_batch(**one_by_one, context=context, log=log) == {}
    expected = BatchSettings(**one_by_one)  # type: ignore[arg-type]
    assert calls == [(expected, {"context": context, "log": log})]
    assert old.run_batch(expected, context=context, log=log) == {}  # the new call through the old path
    assert calls[1] == (expected, {"context": context, "log": log})
    assert {f.name for f in dataclasses.fields(BatchSettings)} >= set(one_by_one)
