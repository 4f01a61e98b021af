"""
Scenario 1 (campaign across workers) and 5 (rate across workers) on the production-like stack.

One run of ``itnio_stack_campaign`` (``tests/e2e/stack/dags``): 20,000 rows in 8 chunks, one mapped
``ItnioBatchSendOperator`` task per chunk, sandbox latency 20 ms, two Celery workers. Promises checked: every
recipient receives the message exactly once (counted at the sandbox), both workers ran chunks, each chunk's result
accounts for its rows, and the account's rate (pool + ``max_per_second``) held at the sandbox in every second.
The figures go to ``bench/RESULTS.md`` under "Stack: campaign across workers".
"""

from __future__ import annotations

import json
import textwrap
import time
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_itnio.batch.results import load_batch_results
from bench.record import record_section
from tests.support.stack import DAGS, Stack, load_module

SEND_PATHS = frozenset({"/wa/custom/sendMsg", "/wa/template/sendMsg"})
HEADING = "## Stack: campaign across workers"
LATENCY = 0.02


@pytest.fixture(scope="module")
def dag_module() -> Any:
    """Return the scenario DAG file as a module (its constants: rows, chunks, account rate, pool)."""
    return load_module("itnio_stack_campaign", DAGS / "itnio_stack_campaign.py")


def test_receiver_tables_on_postgres(stack: Stack) -> None:
    """``airflow db migrate`` created the webhook receiver's tables in PostgreSQL (the provider's DB manager)."""
    import sqlalchemy as sa

    engine = sa.create_engine(stack.module.database_url(stack.state))
    try:
        assert engine.dialect.name == "postgresql"
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"itnio_message_status", "itnio_status_history", "itnio_inbound_message"} <= tables
    assert {"dag_run", "task_instance"} <= tables  # Airflow's own, in the same database


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_campaign_across_workers(stack: Stack, dag_module: Any) -> None:
    """20,000 recipients, 8 chunks on two workers: each recipient once, the account rate held in every second."""
    rows, chunks, rate = dag_module.ROWS, dag_module.CHUNKS, dag_module.ACCOUNT_RATE
    pool = stack.api("GET", f"/pools/{dag_module.ACCOUNT_POOL}")
    pool.raise_for_status()
    assert pool.json()["slots"] == dag_module.POOL_SLOTS  # the per-task rate is ACCOUNT_RATE / POOL_SLOTS
    # more worker slots than pool slots (and than a worker's own): the pool bounds the sends, both workers take part
    assert (
        stack.module.WORKER_CONCURRENCY
        < dag_module.POOL_SLOTS
        < len(stack.module.WORKERS) * stack.module.WORKER_CONCURRENCY
    )

    # pushes off for this scenario (60,000 status pushes are scenario 4's load), 20 ms per API answer
    stack.sandbox("POST", "/sandbox/config", json={"latency": LATENCY, "push_url": None})
    stack.sandbox("DELETE", "/sandbox/messages")
    try:
        started = time.monotonic()
        run_id = stack.trigger("itnio_stack_campaign")
        run = stack.wait_for_run("itnio_stack_campaign", run_id, timeout=900)
        waited = time.monotonic() - started
        messages = stack.sandbox("GET", "/sandbox/messages")  # no paging: ~20,000 entries, a few MB of JSON
        requests_log = stack.sandbox("GET", "/sandbox/requests")
    finally:
        stack.sandbox("POST", "/sandbox/config", json={"latency": 0.0})
        stack.module.configure_sandbox_pushes(stack.state)

    tis = stack.api("GET", f"/dags/itnio_stack_campaign/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    tis.raise_for_status()
    sends = [ti for ti in tis.json()["task_instances"] if ti["task_id"] == "send"]
    assert run["state"] == "success", [(ti["map_index"], ti["state"]) for ti in sends]
    assert sorted(ti["map_index"] for ti in sends) == list(range(chunks))
    assert {ti["state"] for ti in sends} == {"success"}
    hosts = Counter(ti["hostname"] for ti in sends)
    assert set(hosts) == set(stack.module.WORKERS), hosts  # both workers ran chunks

    # exactly once, counted at the sandbox
    received = Counter(message["body"]["recipient"] for message in messages)
    expected = {dag_module.recipient(i) for i in range(rows)}
    assert set(received) == expected
    assert [r for r, n in received.items() if n != 1] == []
    sandbox_ids = {message["body"]["recipient"]: message["messageId"] for message in messages}

    # each chunk's result accounts for its rows, with the ids the sandbox issued
    totals: Counter[str] = Counter()
    for index in range(chunks):
        answer = stack.api(
            "GET",
            f"/dags/itnio_stack_campaign/dagRuns/{run_id}/taskInstances/send/xcomEntries/return_value",
            params={"map_index": index, "deserialize": True},
        )
        answer.raise_for_status()
        value = answer.json()["value"]
        result = json.loads(value) if isinstance(value, str) else value
        for key in ("sent", "failed", "skipped_already_sent", "duplicates", "not_attempted"):
            totals[key] += result[key]
        message_ids = load_batch_results(result)["message_ids"]  # 2,500 rows: read from results_path
        assert len(message_ids) == result["sent"] + result["skipped_already_sent"]
        assert all(sandbox_ids[r] == mid for r, mid in message_ids.items())
    assert totals["sent"] == rows
    assert totals["failed"] == totals["skipped_already_sent"] == totals["duplicates"] == totals["not_attempted"] == 0

    # scenario 5: the account rate held in every second, at the sandbox
    per_second = Counter(entry["timestamp"] for entry in requests_log if entry["path"] in SEND_PATHS)
    peak_second, peak = max(per_second.items(), key=lambda item: item[1])
    assert peak <= rate, f"{peak} sends arrived in second {peak_second}; the account allows {rate}"

    run_seconds = (_parse_time(run["end_date"]) - _parse_time(run["start_date"])).total_seconds()
    first, last = min(per_second), max(per_second)
    figures = {
        "rows": rows,
        "chunks": chunks,
        "latency_s": LATENCY,
        "account_rate": rate,
        "pool_slots": dag_module.POOL_SLOTS,
        "max_per_second_per_task": rate / dag_module.POOL_SLOTS,
        "run_wall_s": round(run_seconds, 1),
        "msg_per_s": round(rows / run_seconds, 1),
        "send_span_s": last - first + 1,
        "msg_per_s_sending": round(rows / (last - first + 1), 1),
        "peak_per_second": peak,
        "chunks_per_worker": dict(sorted(hosts.items())),
        "worker_slots": stack.module.WORKER_CONCURRENCY,
        "trigger_to_finished_s": round(waited, 1),
    }
    print(json.dumps(figures))
    _record(figures)


def _record(figures: dict[str, Any]) -> None:
    """Replace (or append) the "Stack: campaign across workers" section of ``bench/RESULTS.md``."""
    from platform import python_version

    import airflow

    per_worker = ", ".join(f"{host} {n}" for host, n in figures["chunks_per_worker"].items())
    section = [
        HEADING,
        "",
        "Scenario 1 (and 5) of issue 9 on the production-like stack (`make stack`: PostgreSQL, Redis, Airflow "
        f"{airflow.__version__} with CeleryExecutor, two workers of {figures['worker_slots']} slots, Python "
        f"{python_version()}), on this project's 2-core machine with every component on it. {figures['rows']:,} "
        f"rows in {figures['chunks']} chunks, `ItnioBatchSendOperator.partial(...).expand(rows=...)`, "
        f"concurrency 8, sandbox latency {figures['latency_s'] * 1000:.0f} ms; account rate {figures['account_rate']} "
        f"msg/s = pool `itnio_account` of {figures['pool_slots']} slots x `max_per_second="
        f"{figures['max_per_second_per_task']:g}`. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "```",
        "$ make test-stack   # tests/e2e/stack/test_campaign.py::test_campaign_across_workers",
        f"DAG run wall time         {figures['run_wall_s']:.1f} s  ({figures['msg_per_s']:.1f} msg/s)",
        f"sending span at sandbox   {figures['send_span_s']} s  ({figures['msg_per_s_sending']:.1f} msg/s)",
        f"peak in one second        {figures['peak_per_second']} (account rate {figures['account_rate']})",
        f"chunks per worker         {per_worker}",
        f"each recipient received   exactly once ({figures['rows']:,} of {figures['rows']:,})",
        "```",
        "",
        f"Raw: `{json.dumps(figures)}`",
        "",
    ]
    section[2] = textwrap.fill(section[2], width=115)
    record_section(section[0], section[1:])
