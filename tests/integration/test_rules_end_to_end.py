"""
Every rule of the spec, broken: a clear error and zero requests at the sandbox, whether the value is
known when the DAG file is parsed (an import error naming the field) or only once rendered (the task fails
in ``execute()`` on its first try, without retries).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_itnio.errors import ItnioValidationError
from airflow_provider_itnio.hooks.itnio import ItnioHook
from tests.dags.itnio_rendered_rules import BAD_MESSAGES
from tests.support.airflow_runs import run_dag, task_states
from tests.support.rule_cases import RULE_CASES


@pytest.mark.parametrize(("build", "field", "rule", "status"), RULE_CASES)
def test_rule_breaks_before_any_request(sandbox: Any, build: Any, field: str, rule: str, status: str | None) -> None:
    hook = ItnioHook()
    with pytest.raises(ItnioValidationError) as info:
        hook.send("15550100200", build())
    assert info.value.field == field
    assert rule in str(info.value)
    assert sandbox.requests() == []


def test_rendered_rule_breaks_fail_the_task_before_any_request(airflow_db: Path, sandbox: Any) -> None:
    dag_run = run_dag("itnio_rendered_rules")
    states = task_states(dag_run)
    assert states == {name: ("failed", 1) for name in BAD_MESSAGES}
    assert sandbox.requests() == []


STATIC_BAD_DAG = """
from __future__ import annotations

import pendulum

from airflow.providers.common.compat.sdk import DAG
from airflow_provider_itnio.operators import ItnioSendButtonsOperator

with DAG("bad_static", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    ItnioSendButtonsOperator(
        task_id="ask",
        recipient="15550100200",
        body="How did we do?",
        buttons=[{"id": "good", "title": "Absolutely wonderful!!"}],
    )
"""


def test_static_rule_break_is_an_import_error_naming_the_field(tmp_path: Path) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    dag_file = tmp_path / "bad_static.py"
    dag_file.write_text(textwrap.dedent(STATIC_BAD_DAG))
    bag = DagBag(dag_folder=str(tmp_path))
    assert "bad_static" not in bag.dag_ids
    [error] = bag.import_errors.values()
    assert "interactive.action.buttons[0].reply.title" in error
    assert "at most 20 characters" in error


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"recipient": "12345", "body": "hi"}, "recipient"),
        ({"recipient": "15550100200", "business_phone": "+1 (555) 000-1111-2222-3", "body": "hi"}, "businessPhone"),
        ({"recipient": "15550100200", "body": ""}, "text.body"),
    ],
)
def test_operator_checks_static_values_when_built(kwargs: dict[str, Any], field: str) -> None:
    from airflow_provider_itnio.operators import ItnioSendTextOperator

    with pytest.raises(ItnioValidationError) as info:
        ItnioSendTextOperator(task_id="t", **kwargs)
    assert info.value.field == field


def test_templated_values_are_checked_at_run_time_not_when_built() -> None:
    from airflow_provider_itnio.operators import ItnioSendButtonsOperator

    operator = ItnioSendButtonsOperator(
        task_id="t",
        recipient="{{ params.phone }}",
        body="Rate {{ params.order }}",
        buttons=[{"id": "a", "title": "{{ params.long_title }}"}],
    )
    assert operator.buttons == [{"id": "a", "title": "{{ params.long_title }}"}]
