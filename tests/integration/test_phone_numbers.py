"""
Phone numbers as people write them, through real Airflow: the operators and the batch in a DAG run
(``tests/dags/itnio_phone_numbers.py``) against the sandbox, and the 24-hour window looked up by the E.164 digits
through a real API server with the receiver. The parsing itself is tested in ``tests/unit/test_phones.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.airflow_runs import run_dag, task_states, xcom_value
from tests.support.window import AIRFLOW_2, Env


def test_operators_and_the_batch_send_the_e164_digits_warn_and_honour_strict(airflow_sandbox: Any, logged: Any) -> None:
    dag_run = run_dag("itnio_phone_numbers")
    assert task_states(dag_run) == {
        "kept_trunk": ("success", 1),
        "unassigned": ("success", 1),
        "unassigned_strict": ("failed", 1),  # refused before any request
        "batch_strict": ("success", 1),  # fail_on_errors=False: the invalid row is reported
    }
    by_id = {m["messageId"]: m["body"] for m in airflow_sandbox.messages()}
    assert by_id[xcom_value(dag_run, "kept_trunk")]["recipient"] == "821012345678"
    assert by_id[xcom_value(dag_run, "unassigned")]["recipient"] == "15550100200"
    result = xcom_value(dag_run, "batch_strict")
    assert (result["sent"], result["failed"]) == (1, 1)
    [batch_id] = result["message_ids"].values()
    assert list(result["message_ids"]) == ["821012345678"]
    assert by_id[batch_id]["text"] == {"body": "Spring sale"}
    [error] = result["errors"].values()
    assert "strict_phone_numbers" in error["reason"]
    assert sorted(b["recipient"] for b in by_id.values()) == ["15550100200", "821012345678", "821012345678"]
    text = "".join(logged())
    assert "recipient +15550100200 can exist but lies in no range that +1" in text  # the warning (unassigned)
    assert "recipient: a number in a range its country has assigned (strict_phone_numbers is on)" in text


# -- the 24-hour window is looked up by the E.164 digits (a real API server with the receiver) ----------------


@pytest.mark.api_server
@pytest.mark.skipif(AIRFLOW_2, reason="the receiver needs Airflow 3.1+")
def test_the_window_of_a_number_written_with_its_trunk_prefix_is_the_numbers(env: Env) -> None:
    """
    The customer writes from ``79123456789`` (the vendor's push carries the E.164 digits); the DAG's recipient is
    the same number written with Russia's trunk 8. The window is found open: the session message goes out to
    ``79123456789`` (the old parser sent a template to ``789123456789``, a number that does not exist).
    """
    customer = "79123456789"
    env.customer_writes(customer)
    dag_run = run_dag("itnio_window_single", conf={"recipient": "+7 8 912 345 6789", "name": "Ada"})
    assert task_states(dag_run)["text"] == ("success", 1)
    sent = {m["messageId"]: m for m in env.sent_to(customer)}
    text = sent[xcom_value(dag_run, "text")]
    assert (text["path"], text["body"]["text"]["body"]) == ("/wa/custom/sendMsg", "Your order shipped, Ada.")
    assert dag_run.get_task_instance("text").xcom_pull(task_ids="text", key="sent_kind") == "session"
    assert not [m for m in env.sandbox.messages() if m["body"]["recipient"] != customer]
