"""
ItnioBatchSendOperator: real DAG runs (dag.test) against the sandbox, plus focused tests of the engine
(airflow_provider_itnio.batch) where a DAG run would add nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pendulum
import pytest

from airflow_provider_itnio import batch, templating
from airflow_provider_itnio.batch.rate import DEFAULT_MARGIN
from airflow_provider_itnio.errors import ItnioApiError, ItnioDeliveryUnknownError, ItnioTransportError
from airflow_provider_itnio.messages import Message, Text
from tests.dags.itnio_batch import (
    AFTER_EXECUTE_ERROR_ROWS,
    AFTER_EXECUTE_ROWS,
    BALANCE_ROWS,
    PARTIAL_ROWS,
    RENDER_ROWS,
)
from tests.support.airflow_runs import run_dag, task_states, xcom_value
from tests.support.batch import batch_progress, clear_batch_progress, sent_recipients

# ------------------------------------------------------------------------------------------- helpers


def _ledger_keys(dag_id: str) -> list[str]:
    """Return the keys of every ledger Variable (head, progress and errors parts) of the batch tasks of ``dag_id``."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(Variable.key).filter(Variable.key.like(f"{batch.PROGRESS_PREFIX}__{dag_id}__%")).all()
        return sorted(key for (key,) in rows)


def _heads(dag_id: str) -> dict[str, dict[str, Any]]:
    """Return ``{ledger key: head}`` of the batch ledgers of ``dag_id`` (lease and completion marker)."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(Variable).filter(Variable.key.like(f"{batch.PROGRESS_PREFIX}__{dag_id}__%__head")).all()
        return {row.key.removesuffix("__head"): json.loads(row.val) for row in rows}


def _run_at(dag_id: str, logical_date: Any) -> Any:
    """Run dag.test() for one logical date: a second call clears and re-runs the same DAG run."""
    return run_dag(dag_id, logical_date=logical_date)


# ----------------------------------------------------------------------------------- through Airflow


def test_partial_failure_fails_the_task_with_a_summary_and_sends_the_rest(airflow_sandbox: Any) -> None:
    airflow_sandbox.fail_next(1, api_status="-71", reason="recipient too short")  # the first request to arrive
    dag_run = run_dag("itnio_batch_partial")
    # AirflowFailException: only permanent failures, so none of the 2 retries is spent
    assert task_states(dag_run)["send"] == ("failed", 1)
    good = [row["recipient"] for row in PARTIAL_ROWS if row["recipient"] != "123"]
    requests = airflow_sandbox.requests()
    assert sorted(r["body"]["recipient"] for r in requests) == sorted(good)  # the bad row never left
    [rejected] = [r["body"]["recipient"] for r in requests if r["status"] == "-71"]
    assert sorted(sent_recipients(airflow_sandbox)) == sorted(set(good) - {rejected})
    # the failed try left its progress behind: the 4 accepted messages
    assert batch_progress("itnio_batch_partial") == {
        m["body"]["recipient"]: m["messageId"] for m in airflow_sandbox.messages()
    }
    clear_batch_progress("itnio_batch_partial")


def test_partial_failure_is_reported_and_the_task_succeeds_when_errors_are_allowed(airflow_sandbox: Any) -> None:
    airflow_sandbox.fail_next(1, api_status="-71", reason="recipient too short")
    dag_run = run_dag("itnio_batch_partial_lenient")
    assert task_states(dag_run)["send"] == ("success", 1)
    result = xcom_value(dag_run, "send")
    [rejected] = [r["body"]["recipient"] for r in airflow_sandbox.requests() if r["status"] == "-71"]
    assert result["sent"] == 4
    assert result["failed"] == 2
    assert result["skipped_already_sent"] == 0
    assert result["message_ids"] == {m["body"]["recipient"]: m["messageId"] for m in airflow_sandbox.messages()}
    assert result["errors"][rejected] == {"status": "-71", "reason": "recipient too short"}
    bad = f"rows[{PARTIAL_ROWS.index({'recipient': '123', 'name': 'short'})}]"
    assert result["errors"][bad]["status"] == "-71"  # found before sending: client-side validation
    assert "is too short for +1" in result["errors"][bad]["reason"]  # libphonenumber: +1 23 cannot exist
    # kept, with a completion marker, until a later run finds this one's success recorded
    [head] = _heads("itnio_batch_partial_lenient").values()
    assert head["done"]["sent"] == 4 and head["owner"] is None
    clear_batch_progress("itnio_batch_partial_lenient")


def test_an_account_error_stops_the_batch_at_once(airflow_sandbox: Any) -> None:
    airflow_sandbox.set_balance(10)
    dag_run = run_dag("itnio_batch_abort")
    assert task_states(dag_run)["send"] == ("failed", 1)
    requests = airflow_sandbox.requests()
    assert len(airflow_sandbox.messages()) == 10
    first_failure = next(i for i, r in enumerate(requests) if r["status"] == "-68")
    after = requests[first_failure + 1 :]
    # only sends already in flight (at most concurrency=4) reach the API after the failure
    assert len(after) <= 4
    assert len(requests) < len(BALANCE_ROWS)
    # the failed try's progress is kept: exactly the accepted messages
    assert batch_progress("itnio_batch_abort") == {
        m["body"]["recipient"]: m["messageId"] for m in airflow_sandbox.messages()
    }
    clear_batch_progress("itnio_batch_abort")


def test_a_retry_sends_only_to_rows_the_first_try_did_not_reach(airflow_sandbox: Any) -> None:
    airflow_sandbox.set_balance(12)  # try 1 runs out after 12; the retry callback tops the balance up
    dag_run = run_dag("itnio_batch_retry")
    assert task_states(dag_run)["send"] == ("success", 2)
    recipients = sent_recipients(airflow_sandbox)
    assert len(recipients) == len(set(recipients)) == len(BALANCE_ROWS)  # each exactly once
    assert set(recipients) == set(BALANCE_ROWS)
    result = xcom_value(dag_run, "send")
    assert result["skipped_already_sent"] == 12
    assert result["sent"] == len(BALANCE_ROWS) - 12
    assert result["failed"] == 0
    assert result["message_ids"] == {m["body"]["recipient"]: m["messageId"] for m in airflow_sandbox.messages()}
    assert [head["done"]["sent"] for head in _heads("itnio_batch_retry").values()] == [len(BALANCE_ROWS) - 12]
    clear_batch_progress("itnio_batch_retry")


def test_clear_and_rerun_of_a_failed_task_skips_what_was_sent(airflow_sandbox: Any) -> None:
    logical_date = pendulum.datetime(2026, 3, 1, tz="UTC")
    airflow_sandbox.set_balance(7)
    first = _run_at("itnio_batch_abort", logical_date)
    assert task_states(first)["send"] == ("failed", 1)
    assert len(batch_progress("itnio_batch_abort")) == 7
    airflow_sandbox.set_balance(None)
    second = _run_at("itnio_batch_abort", logical_date)  # clears the task, runs the same DAG run again
    assert second.run_id == first.run_id
    assert task_states(second)["send"][0] == "success"
    recipients = sent_recipients(airflow_sandbox)
    assert len(recipients) == len(set(recipients)) == len(BALANCE_ROWS)
    result = xcom_value(second, "send")
    assert (result["skipped_already_sent"], result["sent"]) == (7, len(BALANCE_ROWS) - 7)
    assert [head["done"]["sent"] for head in _heads("itnio_batch_abort").values()] == [len(BALANCE_ROWS) - 7]
    clear_batch_progress("itnio_batch_abort")


def test_rows_are_rendered_per_row_next_to_airflow_templates(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_batch_render")
    states = task_states(dag_run)
    assert states["text"][0] == states["template"][0] == "success"
    texts = {
        m["body"]["recipient"]: m["body"]["text"]["body"] for m in airflow_sandbox.messages() if "text" in m["body"]
    }
    assert texts == {
        "15550300001": "Hi Ada, use SPRING (15550300001)",
        # a value is data, never a template: it is sent as written
        "15550300002": "Hi {{ 7 * 7 }}, use SPRING (15550300002)",
    }
    templates = {
        m["body"]["recipient"]: m["body"]["template"] for m in airflow_sandbox.messages() if "template" in m["body"]
    }
    ds = dag_run.logical_date.strftime("%Y-%m-%d")
    params = {r: t["components"][0]["parameters"] for r, t in templates.items()}
    assert params["15550300001"] == [{"type": "text", "text": "ADA"}, {"type": "text", "text": ds}]
    assert params["15550300002"][0] == {"type": "text", "text": "{{ 7 * 7 }}"}
    assert len(RENDER_ROWS) == len(templates) == len(texts)


def test_a_template_reaching_for_python_internals_fails_each_row_safely(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_batch_escape")
    assert task_states(dag_run)["send"] == ("failed", 1)  # permanent: no retry spent
    assert airflow_sandbox.requests() == []


def test_duplicate_recipients_are_sent_once(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_batch_duplicates")
    result = xcom_value(dag_run, "send")
    assert sorted(sent_recipients(airflow_sandbox)) == ["15550400001", "15550400002", "15550400003"]
    assert (result["sent"], result["duplicates"], result["failed"]) == (3, 2, 0)


def test_a_try_failing_after_execute_returned_leaves_the_ledger_and_the_retry_sends_nothing(
    airflow_sandbox: Any,
) -> None:
    dag_run = run_dag("itnio_batch_after_execute")  # post_execute raises on try 1, after the batch completed
    assert task_states(dag_run)["send"] == ("success", 2)
    recipients = [r["body"]["recipient"] for r in airflow_sandbox.requests()]
    assert sorted(recipients) == sorted(AFTER_EXECUTE_ROWS)  # each exactly once, across both tries
    result = xcom_value(dag_run, "send")  # try 2 returns what try 1 recorded when it completed the batch
    assert (result["sent"], result["failed"], result["not_attempted"]) == (len(AFTER_EXECUTE_ROWS), 0, 0)
    assert result["message_ids"] == {m["body"]["recipient"]: m["messageId"] for m in airflow_sandbox.messages()}
    [head] = _heads("itnio_batch_after_execute").values()
    assert head["done"]["by"].startswith("try1@")
    clear_batch_progress("itnio_batch_after_execute")


def test_completed_ledgers_are_deleted_by_a_later_run_once_their_success_is_recorded(airflow_sandbox: Any) -> None:
    clear_batch_progress("itnio_batch_ledgers")
    first_date = pendulum.datetime(2026, 4, 1, tz="UTC")
    first = _run_at("itnio_batch_ledgers", first_date)
    assert task_states(first)["send"] == ("success", 1)
    [first_key] = _heads("itnio_batch_ledgers")
    assert first.run_id in first_key
    # clearing the succeeded task re-runs it: the completion marker makes that try send nothing again
    again = _run_at("itnio_batch_ledgers", first_date)
    assert task_states(again)["send"][0] == "success"
    assert len(airflow_sandbox.requests()) == 3
    assert xcom_value(again, "send")["sent"] == 3
    # a later run finds the first run's success recorded and deletes its ledger, parts and head
    second = _run_at("itnio_batch_ledgers", pendulum.datetime(2026, 4, 2, tz="UTC"))
    assert task_states(second)["send"] == ("success", 1)
    [second_key] = _heads("itnio_batch_ledgers")
    assert second.run_id in second_key and second_key != first_key
    assert set(batch_progress("itnio_batch_ledgers")) == {m["body"]["recipient"] for m in airflow_sandbox.messages()}
    clear_batch_progress("itnio_batch_ledgers")


# ----------------------------------------------------------------------------------------- the engine


class FakeApi:
    """A send function: scripted errors per recipient, records every call."""

    def __init__(self, errors: dict[str, Exception] | None = None, delay: float = 0.0) -> None:
        self.errors = errors or {}
        self.delay = delay
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, recipient: str, message: Message) -> str:
        with self.lock:
            self.calls.append(recipient)
        error = self.errors.get(recipient)
        if error is not None:
            raise error
        if self.delay:
            time.sleep(self.delay)
        return f"id-{recipient}"


def _engine(api: FakeApi, message: Any = None, **kwargs: Any) -> batch.BatchSender:
    plan = batch.MessagePlan(message or Text(body="Hi {{ row.name }}").to_payload())
    return batch.BatchSender(api, plan, **kwargs)


def _rows(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"recipient": f"1555060{i:04d}", "name": f"N{i}"} for i in range(start, start + n)]


def test_sandboxed_rendering_reports_security_errors_per_row() -> None:
    api = FakeApi()
    rows = [{"recipient": "15550700001", "name": "a"}, {"recipient": "15550700002", "name": "b"}]
    for template in ("{{ row.__class__.__mro__ }}", "{{ row.update({'recipient': '1'}) }}", "{{ cycler.__init__ }}"):
        outcome = _engine(FakeApi(), {"type": "text", "text": {"body": template}}).run(rows)
        assert outcome.failed == 2 and outcome.sent == 0
        for error in outcome.errors.values():
            assert error["status"] == "template"
            assert error["reason"].startswith("SecurityError"), error
    # a missing field fails only the row without it
    outcome = _engine(api).run([{"recipient": "15550700001", "name": "a"}, {"recipient": "15550700002"}])
    assert outcome.sent == 1
    assert outcome.errors["15550700002"]["reason"].startswith("UndefinedError")


def test_rendered_message_is_validated_per_row() -> None:
    api = FakeApi()
    rows = [{"recipient": "15550700001", "name": "ok"}, {"recipient": "15550700002", "name": "   "}]
    outcome = _engine(api, Text(body="{{ row.name }}").to_payload()).run(rows)
    assert outcome.sent == 1
    assert outcome.errors["15550700002"]["status"] == "-115"  # the rendered body is blank
    assert api.calls == ["15550700001"]


def test_row_shapes_and_recipient_field() -> None:
    api = FakeApi()
    outcome = _engine(api, Text(body="{{ row[1] }}").to_payload(), recipient_field=0).run(
        [["15550700001", "x"], ("15550700002", "y"), {"no": "index"}]
    )
    assert outcome.sent == 2
    assert list(outcome.errors) == ["rows[2]"]
    outcome = _engine(FakeApi(), Text(body="to {{ row.recipient }}").to_payload()).run(["15550700003", 15550700004])
    assert outcome.sent == 2


def test_an_account_error_stops_new_sends_and_records_the_ones_in_flight() -> None:
    rows = _rows(200)
    api = FakeApi({rows[20]["recipient"]: ItnioApiError("-68", "insufficient balance")}, delay=0.002)
    outcome = _engine(api, concurrency=4).run(rows)
    assert isinstance(outcome.aborted, ItnioApiError)
    first = api.calls.index(rows[20]["recipient"])
    assert len(api.calls) - first - 1 <= 4  # only sends already in flight (at most concurrency)
    assert outcome.sent == len(api.calls) - 1
    assert outcome.sent + outcome.failed + outcome.not_attempted == len(rows)


def test_permanent_and_retryable_row_errors() -> None:
    rows = _rows(6)
    api = FakeApi(
        {
            rows[0]["recipient"]: ItnioApiError("-69", "no rate"),
            rows[1]["recipient"]: ItnioTransportError("connection refused"),
        }
    )
    outcome = _engine(api).run(rows)
    assert outcome.aborted is None
    assert (outcome.sent, outcome.failed, outcome.retryable) == (4, 2, True)
    assert outcome.errors[rows[1]["recipient"]]["status"] == "transport"
    outcome = _engine(FakeApi({rows[0]["recipient"]: ItnioApiError("-69", "no rate")})).run(rows)
    assert (outcome.failed, outcome.retryable) == (1, False)


def test_progress_survives_tries_and_maybe_sent_rows_are_never_resent() -> None:
    backend = batch.MemoryBackend()
    rows = _rows(50)
    maybe = rows[3]["recipient"]
    errors: dict[str, Exception] = {
        maybe: ItnioDeliveryUnknownError("read timeout", recipient=maybe),
        rows[30]["recipient"]: ItnioApiError("-68", "insufficient balance"),
    }
    first_api = FakeApi(errors)
    store = batch.ProgressStore(backend, "k", shard_size=7)
    first = _engine(first_api, concurrency=1, progress=store).run(rows)
    assert first.aborted is not None
    assert first.errors[maybe]["status"] == "unknown_delivery"
    stored = batch.ProgressStore(backend, "k").load()
    assert stored[maybe] is None
    assert {r for r, mid in stored.items() if mid} == set(first.message_ids)
    # the 50 rows were marked as started in parts of 7 before sending; 29 sent + 1 maybe = 30 entries left, each
    # in the part it was marked in: the marks of the 20 rows refused or never sent were removed
    assert [len(json.loads(backend.values[store.part_key(i)])) for i in range(8)] == [7, 7, 7, 7, 2, 0, 0, 0]
    assert len(backend.values) == 8

    # second try (a retry, or a clear-and-rerun): same key
    second_api = FakeApi()
    store = batch.ProgressStore(backend, "k", shard_size=7)
    second = _engine(second_api, concurrency=3, progress=store).run(rows)
    assert set(second_api.calls) == {r["recipient"] for r in rows[30:]}  # nothing sent twice, maybe not resent
    assert second.skipped_already_sent == 29
    assert second.errors == {maybe: {"status": "unknown_delivery", "reason": second.errors[maybe]["reason"]}}
    assert len(second.message_ids) == 49
    store.delete()
    assert backend.values == {}


def test_progress_is_flushed_while_the_batch_runs() -> None:
    backend = batch.MemoryBackend()
    store = batch.ProgressStore(backend, "k")
    rows = _rows(60)
    api = FakeApi(delay=0.01)
    seen: list[int] = []

    def watch() -> None:
        while len(api.calls) < 60:
            text = backend.get("k")
            seen.append(0 if text is None else sum(isinstance(v, str) for v in json.loads(text).values()))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    _engine(api, concurrency=1, progress=store, flush_interval=0.05).run(rows)
    watcher.join()
    assert any(0 < count < 60 for count in seen)  # messageIds written before the end
    assert len(json.loads(backend.values["k"])) == 60  # and at the end


def test_rows_are_read_lazily_through_a_bounded_queue() -> None:
    release = threading.Event()
    consumed = 0

    def rows() -> Iterator[dict[str, str]]:
        nonlocal consumed
        for row in _rows(1000):
            consumed += 1
            yield row

    blocked: list[str] = []

    def send(recipient: str, message: Message) -> str:
        blocked.append(recipient)
        release.wait(600)  # held until the test has looked (a short wait would let a slow test see more rows read)
        return "id"

    plan = batch.MessagePlan(Text(body="x").to_payload())
    engine = batch.BatchSender(send, plan, concurrency=4)
    runner = threading.Thread(target=engine.run, args=(rows(),))
    runner.start()
    try:
        deadline = time.monotonic() + 600
        while len(blocked) < 4:  # every worker holds a row: what comes next can only fill the queue
            assert time.monotonic() < deadline, f"{len(blocked)} of 4 workers started within 600 s"
            time.sleep(0.01)
        time.sleep(0.3)  # a reader that is not lazy reads on meanwhile
        # 4 rows held by the blocked workers, 8 in the queue, one waiting to be put
        assert consumed <= 4 + 2 * 4 + 1
    finally:
        release.set()
        runner.join(600)
    assert not runner.is_alive(), "the batch did not finish within 600 s"
    assert consumed == 1000


def test_rate_limiter_schedule_never_exceeds_the_rate_in_any_window() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = batch.RateLimiter(50, clock=lambda: now[0], sleep=sleep)
    grants = [limiter.acquire() for _ in range(120)]
    now[0] += 5.0  # a stall: no burst afterwards
    now_after_stall = [now[0]]
    grants += [limiter.acquire() for _ in range(120)]
    assert _max_in_any_window(grants) <= 50
    assert grants[:50] == pytest.approx([i / 50 for i in range(50)])  # evenly spread
    margin = DEFAULT_MARGIN
    assert grants[50] == pytest.approx(1 + margin)  # one second (+ the margin) after grant 0
    assert 119 / 50 <= grants[119] <= 119 / 50 * (1 + margin + 0.01)  # the margin costs about its share
    assert grants[120] == now_after_stall[0]  # no burst after the stall: evenly spread again
    assert 119 / 50 <= grants[-1] - grants[120] <= 119 / 50 * (1 + margin + 0.01)
    assert _max_in_any_window(grants[120:], width=1 + margin) <= 50


def test_rate_limiter_holds_with_threads_that_wake_late() -> None:
    now = [0.0]
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:  # every sleeper moves the shared clock: late wake-ups for the others
            now[0] += seconds + 0.003

    limiter = batch.RateLimiter(20, clock=lambda: now[0], sleep=sleep)
    grants: list[float] = []

    def worker() -> None:
        for _ in range(40):
            grant = limiter.acquire()
            with lock:
                grants.append(grant)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(grants) == 160
    assert _max_in_any_window(sorted(grants)) <= 20


def test_batch_send_starts_respect_max_per_second() -> None:
    starts: list[float] = []
    lock = threading.Lock()

    def send(recipient: str, message: Message) -> str:
        with lock:
            starts.append(time.monotonic())
        return "id"

    plan = batch.MessagePlan(Text(body="x").to_payload())
    batch.BatchSender(send, plan, concurrency=4, max_per_second=100).run(_rows(150))
    assert len(starts) == 150
    # send() is called right after the limiter's grant; allow 10 ms of thread hand-over
    assert _max_in_any_window(sorted(starts), width=0.99) <= 100


def _max_in_any_window(times: list[float], width: float = 1.0) -> int:
    """Return the largest number of ``times`` (sorted) in any half-open window ``[t, t + width)``."""
    best, left = 0, 0
    for right, t in enumerate(times):
        while t - times[left] >= width - 1e-9:
            left += 1
        best = max(best, right - left + 1)
    return best


def test_row_expressions_survive_airflow_rendering_markers() -> None:
    message = {"type": "text", "text": {"body": "{{ params.x }} {{ row.name|title }} {{ 'V' if row.vip else '' }}"}}
    protected = templating.protect_row_expressions(message)
    body = protected["text"]["body"]
    assert body.startswith("{{ params.x }} {% raw %}{{ row.name|title }}{% endraw %}")
    assert templating.unprotect_row_expressions(protected) == message
    assert templating.protect_row_expressions("{{ params.row }} {{ x['row'] }}") == "{{ params.row }} {{ x['row'] }}"


def test_progress_key_fits_airflow_limits() -> None:
    key = batch.progress_key("d" * 200, "manual__2026-01-01T00:00:00+00:00", "t" * 200, 3)
    assert len(key) <= batch.MAX_KEY_LENGTH
    assert key != batch.progress_key("d" * 200, "manual__2026-01-01T00:00:00+00:00", "t" * 200, 4)
    assert batch.progress_key("d", "r", "t", None) == "itnio_batch_progress__d__r__t__-1"
    store = batch.ProgressStore(batch.MemoryBackend(), key)
    parts = 10**9  # a part index far beyond any batch: still within Airflow's 250 characters
    assert max(len(store.head_key), len(store.part_key(parts)), len(store.errors_key(parts))) <= 250


def test_a_replayed_result_with_errors_is_the_completed_one_and_a_later_run_deletes_its_errors_parts(
    airflow_sandbox: Any,
) -> None:
    dag_id = "itnio_batch_after_execute_errors"
    clear_batch_progress(dag_id)
    first = _run_at(dag_id, pendulum.datetime(2026, 4, 1, tz="UTC"))  # try 1 completes, then fails; try 2 replays
    assert task_states(first)["send"] == ("success", 2)
    sent = [r["body"]["recipient"] for r in airflow_sandbox.requests()]
    valid = [row for row in AFTER_EXECUTE_ERROR_ROWS if len(row) > 4]
    assert sorted(sent) == sorted(valid)  # each exactly once, across both tries
    # the result try 1 completed with: the same rows through the engine (the invalid rows' errors need no API)
    expected = _engine(FakeApi(), Text(body="Once").to_payload()).run(AFTER_EXECUTE_ERROR_ROWS).result()
    result = xcom_value(first, "send")
    assert {name: result[name] for name in batch.COUNTERS} == {name: expected[name] for name in batch.COUNTERS}
    assert result["errors"] == expected["errors"]
    assert len(result["errors"]) == len(AFTER_EXECUTE_ERROR_ROWS) - len(valid)
    assert result["message_ids"] == {m["body"]["recipient"]: m["messageId"] for m in airflow_sandbox.messages()}
    [(key, head)] = _heads(dag_id).items()
    assert head["done"]["by"].startswith("try1@") and "errors" not in head["done"]  # in their own part
    assert f"{key}__err0" in _ledger_keys(dag_id)
    # a later run finds the first run's success recorded and deletes all of its ledger, errors parts too
    second = _run_at(dag_id, pendulum.datetime(2026, 4, 2, tz="UTC"))
    assert task_states(second)["send"][0] == "success"
    assert not [k for k in _ledger_keys(dag_id) if k.startswith(key)]
    assert [k for k in _ledger_keys(dag_id) if second.run_id in k]  # its own ledger is kept
    clear_batch_progress(dag_id)


# ------------------------------------------------------------------------------ where the full result goes


def _accepted(sandbox: Any, recipients: Any) -> dict[str, str]:
    """Return ``{recipient: messageId}`` of the messages the sandbox accepted for ``recipients``."""
    wanted = set(recipients)
    return {m["body"]["recipient"]: m["messageId"] for m in sandbox.messages() if m["body"]["recipient"] in wanted}


def _result_objects(base: Any) -> list[Any]:
    return sorted(p for p in base.rglob("*") if p.is_file())


def test_a_large_batch_leaves_a_small_xcom_and_its_full_result_in_results_path(
    airflow_sandbox: Any, tmp_path: Any
) -> None:
    from airflow_provider_itnio.batch.results import QUOTED_ERRORS, load_batch_results
    from tests.dags.itnio_batch_results import INVALID_ROWS, audience_rows

    sizes: dict[int, int] = {}
    for n, start in ((5_000, 0), (20_000, 100_000)):
        conf = {"n": n, "start": start, "results_base": f"file://{tmp_path}/campaigns"}
        dag_run = run_dag("itnio_batch_results", conf=conf)
        assert task_states(dag_run)["send"] == ("success", 1)
        result = xcom_value(dag_run, "send")
        sizes[n] = len(json.dumps(result))
        rows = audience_rows(n, start)
        assert (result["rows"], result["sent"], result["failed"]) == (len(rows), n, INVALID_ROWS)
        assert (result["message_ids_count"], result["errors_count"]) == (n, INVALID_ROWS)
        assert "message_ids" not in result and "errors" not in result
        assert len(result["first_errors"]) == QUOTED_ERRORS
        # templated: "{{ params.results_base }}/{{ ds_nodash }}", one object per task instance
        ds = dag_run.logical_date.strftime("%Y%m%d")
        where = result["full_result"]["path"]
        assert where.startswith(f"file://{tmp_path}/campaigns/{ds}/dag_id=itnio_batch_results/run_id=")
        assert where.endswith("/task_id=send/batch_result.json.gz")
        full = load_batch_results(result)
        accepted = _accepted(airflow_sandbox, rows)
        assert len(accepted) == n
        assert full["message_ids"] == accepted  # every recipient, with the id the sandbox issued
        assert len(full["errors"]) == INVALID_ROWS
        assert {who: full["errors"][who] for who in result["first_errors"]} == result["first_errors"]
        assert all(error["status"] == "-71" for error in full["errors"].values())
        clear_batch_progress("itnio_batch_results")
    # bounded, and not growing with the rows: 4x the rows, the same size (the counts' digits differ); the bound is
    # the QUOTED_ERRORS first errors at their longest (a phone refusal names the rule, the reason and the status)
    assert max(sizes.values()) < 8192, sizes
    assert abs(sizes[20_000] - sizes[5_000]) < 64, sizes
    assert len(_result_objects(tmp_path)) == 2


def test_a_small_batch_keeps_its_message_ids_in_the_xcom_and_writes_nothing(
    airflow_sandbox: Any, tmp_path: Any
) -> None:
    from airflow_provider_itnio.batch.results import load_batch_results
    from tests.dags.itnio_batch_results import INVALID_ROWS, audience_rows

    dag_run = run_dag("itnio_batch_results", conf={"n": 50, "start": 0, "results_base": f"file://{tmp_path}"})
    result = xcom_value(dag_run, "send")
    accepted = _accepted(airflow_sandbox, audience_rows(50, 0))
    assert result["message_ids"] == accepted and len(accepted) == 50  # as before: DAGs reading it keep working
    assert len(result["errors"]) == result["failed"] == INVALID_ROWS
    assert result["full_result"] is None
    assert _result_objects(tmp_path) == []
    full = load_batch_results(result)
    assert (full["message_ids"], full["errors"]) == (result["message_ids"], result["errors"])
    assert set(full) == {*batch.COUNTERS, "message_ids", "errors", "maybe_sent_twice"}  # the engine's, no summary
    clear_batch_progress("itnio_batch_results")


def test_without_results_path_the_full_result_goes_under_airflow_home(airflow_sandbox: Any, airflow_db: Any) -> None:
    from airflow_provider_itnio.batch.results import load_batch_results
    from tests.dags.itnio_batch_results import DEFAULT_PATH_ROWS

    dag_run = run_dag("itnio_batch_results_default_path")
    result = xcom_value(dag_run, "send")
    assert "message_ids" not in result  # 30 rows, above this task's inline_results_max_rows=10
    assert result["full_result"]["path"].startswith(f"file://{airflow_db}/itnio/results/dag_id=")
    assert load_batch_results(result)["message_ids"] == _accepted(airflow_sandbox, DEFAULT_PATH_ROWS)
    clear_batch_progress("itnio_batch_results_default_path")


def test_an_unwritable_results_path_fails_naming_it_and_the_retry_writes_it_without_sending_again(
    airflow_sandbox: Any, tmp_path: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_itnio.batch.results import load_batch_results
    from tests.dags.itnio_batch_results import BLOCKED_ROWS

    blocker = tmp_path / "blocker"
    blocker.write_text("a file where results_path needs a folder")
    dag_run = run_dag("itnio_batch_results_unwritable", conf={"blocker": str(blocker)})
    out, err = capfd.readouterr()
    # try 1 sent everything, completed its ledger, then could not write: it failed naming results_path; its
    # on_retry_callback removes the blocking file and try 2 sends nothing, replays the result and writes it
    assert f"could not be written to results_path 'file://{blocker}/results'" in out + err
    assert task_states(dag_run)["send"] == ("success", 2)
    assert sorted(sent_recipients(airflow_sandbox)) == sorted(BLOCKED_ROWS)  # each exactly once, across both tries
    [head] = _heads("itnio_batch_results_unwritable").values()
    assert head["done"]["by"].startswith("try1@")
    result = xcom_value(dag_run, "send")
    assert result["full_result"]["path"].startswith(f"file://{blocker}/results/dag_id=")
    assert load_batch_results(result)["message_ids"] == _accepted(airflow_sandbox, BLOCKED_ROWS)
    clear_batch_progress("itnio_batch_results_unwritable")


def test_a_results_path_that_is_no_path_fails_the_task_before_sending(
    airflow_sandbox: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    dag_run = run_dag("itnio_batch_results_no_path")
    out, err = capfd.readouterr()
    assert task_states(dag_run)["send"] == ("failed", 1)  # AirflowFailException: no retry spent
    assert "results_path 'nosuchstore://bucket/prefix' is not a usable Object Storage path" in out + err
    assert airflow_sandbox.requests() == []
    clear_batch_progress("itnio_batch_results_no_path")


def test_a_replayed_batch_writes_the_same_full_result_to_the_same_object(airflow_sandbox: Any, tmp_path: Any) -> None:
    from airflow_provider_itnio.batch.results import encode, load_batch_results
    from tests.dags.itnio_batch_results import REPLAYED_ROWS

    dag_id = "itnio_batch_results_replayed"
    dag_run = run_dag(dag_id, conf={"results_base": f"file://{tmp_path}"})  # try 1 completes, fails; try 2 replays
    assert task_states(dag_run)["send"] == ("success", 2)
    sent = [r["body"]["recipient"] for r in airflow_sandbox.requests()]
    assert sorted(sent) == sorted(REPLAYED_ROWS[:-1])  # each exactly once, across both tries
    [head] = _heads(dag_id).values()
    assert head["done"]["by"].startswith("try1@")
    [stored] = _result_objects(tmp_path)  # one object per task instance, whatever the tries
    result = xcom_value(dag_run, "send")
    assert result["full_result"]["path"] == f"file://{stored}"
    # what try 1 completed the batch with, as the engine computes it for these rows and these ids
    expected = _engine(FakeApi(), Text(body="Once").to_payload()).run(REPLAYED_ROWS).result()
    expected["message_ids"] = _accepted(airflow_sandbox, REPLAYED_ROWS)
    assert load_batch_results(result) == expected
    assert stored.read_bytes() == encode(expected)
    clear_batch_progress(dag_id)
