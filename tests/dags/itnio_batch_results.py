"""
DAGs for where ItnioBatchSendOperator keeps a large batch's full result, run by
tests/integration/batch/test_operator.py.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_itnio.messages import Text
from airflow_provider_itnio.operators import ItnioBatchSendOperator

_START = pendulum.datetime(2026, 1, 1, tz="UTC")
_NO_RETRY = {"retries": 0}
_RETRY_ONCE = {"retries": 1, "retry_delay": datetime.timedelta(seconds=0)}
#: Invalid rows mixed into the large batches (more than the XCom quotes).
INVALID_ROWS = 25


def audience_rows(n: int, start: int, invalid: int = INVALID_ROWS) -> list[str]:
    """``n`` distinct valid recipients from ``start`` on, with ``invalid`` too-short numbers spread among them."""
    rows = [f"1555{start + i:07d}" for i in range(n)]
    for k in range(invalid):
        rows.insert(k * (len(rows) // max(invalid, 1)), f"12{k:02d}")
    return rows


with DAG(
    "itnio_batch_results",
    schedule=None,
    start_date=_START,
    default_args=_NO_RETRY,
    params={"n": 50, "start": 0, "results_base": ""},
    tags=["test"],
):

    @task
    def audience(params: dict[str, Any] | None = None) -> list[str]:
        """Stands in for an upstream query of ``params.n`` customers."""
        assert params is not None
        return audience_rows(int(params["n"]), int(params["start"]))

    ItnioBatchSendOperator(
        task_id="send",
        rows=audience(),
        message=Text(body="Spring sale"),
        concurrency=16,
        fail_on_errors=False,
        results_path="{{ params.results_base }}/{{ ds_nodash }}",  # templated
    )

#: Rows of the DAG whose results_path goes to the default folder (above its threshold of 10 rows).
DEFAULT_PATH_ROWS = [f"1555{900 + i:07d}" for i in range(30)]

with DAG("itnio_batch_results_default_path", schedule=None, start_date=_START, default_args=_NO_RETRY, tags=["test"]):
    ItnioBatchSendOperator(task_id="send", rows=DEFAULT_PATH_ROWS, message=Text(body="Hi"), inline_results_max_rows=10)


def _unblock_results_path(context: Any) -> None:
    """on_retry_callback: remove the file that stands where results_path's folder must go."""
    os.remove(context["params"]["blocker"])


#: Rows of the DAG whose first try cannot write its full result.
BLOCKED_ROWS = [f"1555{950 + i:07d}" for i in range(40)]

with DAG(
    "itnio_batch_results_unwritable",
    schedule=None,
    start_date=_START,
    default_args=_RETRY_ONCE,
    params={"blocker": ""},
    tags=["test"],
):
    ItnioBatchSendOperator(
        task_id="send",
        rows=BLOCKED_ROWS,
        message=Text(body="Once"),
        concurrency=4,
        inline_results_max_rows=10,
        results_path="file://{{ params.blocker }}/results",  # a folder inside a regular file: no one can write it
        on_retry_callback=_unblock_results_path,
    )

with DAG("itnio_batch_results_no_path", schedule=None, start_date=_START, default_args=_RETRY_ONCE, tags=["test"]):
    ItnioBatchSendOperator(
        task_id="send",
        rows=BLOCKED_ROWS,
        message=Text(body="Never"),
        inline_results_max_rows=10,
        results_path="nosuchstore://bucket/prefix",
    )


class _FailsAfterExecuteOnTry1(ItnioBatchSendOperator):
    """Stands in for whatever fails a try after execute() returned (post_execute, the XCom push, a kill)."""

    def post_execute(self, context: Any, result: Any = None) -> None:
        if context["ti"].try_number == 1:
            raise RuntimeError("try 1 fails after execute() returned")


#: Rows of the DAG whose completed batch is replayed by try 2.
REPLAYED_ROWS = [f"1555{990 + i:07d}" for i in range(30)] + ["1234"]

with DAG(
    "itnio_batch_results_replayed",
    schedule=None,
    start_date=_START,
    default_args=_RETRY_ONCE,
    params={"results_base": ""},
    tags=["test"],
):
    _FailsAfterExecuteOnTry1(
        task_id="send",
        rows=REPLAYED_ROWS,
        message=Text(body="Once"),
        concurrency=4,
        fail_on_errors=False,
        inline_results_max_rows=10,
        results_path="{{ params.results_base }}",
    )
