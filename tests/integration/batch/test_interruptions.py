"""
The batch's promises under an adversarial review: interruptions during a ledger write, a lease that runs out
while a send waits for the rate limiter, ``on_kill`` (SIGTERM), a completed run cleared with other rows, and a
send that raises something unexpected.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_provider_itnio import batch
from airflow_provider_itnio.errors import ItnioApiError
from airflow_provider_itnio.messages import Message
from tests.dags.itnio_batch import CHANGED_ROWS_VARIABLE, KILLED_ROWS
from tests.support.airflow_runs import run_dag, task_states, xcom_value
from tests.support.batch import (
    FALLBACK,
    KILL_MAX_UNFLUSHED,
    KILL_ROWS,
    MESSAGE,
    FakeApi,
    assert_counts_add_up,
    batch_progress,
    clear_batch_progress,
    copies_by_recipient,
    kill_mid_batch,
    make_engine,
    make_rows,
    make_store,
    replay_batch,
    retry_batch,
    sandbox_send,
    sent_recipients,
)


class Interrupted(BaseException):
    """Stands in for what Airflow raises in the task's main thread: ``AirflowTaskTimeout``, a SIGTERM's error."""


class InterruptedOnce(batch.MemoryBackend):
    """A MemoryBackend whose ``at``-th write of a ledger part raises :class:`Interrupted` (the signal's moment)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.part_writes = 0

    def set(self, key: str, value: str) -> None:
        if not key.endswith("__head"):
            self.part_writes += 1
            if self.part_writes == self.at:
                raise Interrupted("execution_timeout")
        super().set(key, value)


def test_an_interruption_during_a_ledger_write_is_raised_and_every_accepted_send_is_recorded() -> None:
    backend = InterruptedOnce(at=2)
    rows = make_rows(200)
    api = FakeApi(delay=0.002)
    engine = make_engine(api, concurrency=4, progress=make_store(backend, batch.lease_owner(1)), flush_interval=0.02)
    with pytest.raises(Interrupted):  # the task must end: a timeout is not a batch result
        engine.run(rows)
    assert 0 < len(api.calls) < len(rows)  # it stopped sending
    recorded = batch.ProgressStore(backend, "k").load()
    assert set(recorded) == set(api.calls)  # the interrupted write was done again: a retry repeats nothing


class SteppedClock:
    """A monotonic clock that moves only when something sleeps (the rate limiter's wait, here)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_send_that_waited_for_the_rate_limiter_past_the_lease_deadline_is_not_made() -> None:
    clock = SteppedClock()
    backend = batch.MemoryBackend()
    store = make_store(
        backend, batch.lease_owner(1), lease_ttl=60.0, safety=10.0, monotonic=clock, sleep=lambda _: None
    )
    # one send a minute: the second send's wait (60 s) outlasts the lease (50 s without a renewal)
    limiter = batch.RateLimiter(1 / 60, margin=0.0, clock=clock, sleep=clock.sleep)
    api = FakeApi()
    outcome = make_engine(api, concurrency=1, progress=store, limiter=limiter, flush_interval=3600).run(make_rows(3))
    assert api.calls == [normalize(r) for r in make_rows(1)]  # the first send; none after the lease may have expired
    assert isinstance(outcome.aborted, batch.LeaseLostError)
    assert_counts_add_up(outcome, 3)


def normalize(row: dict[str, str]) -> str:
    """Return the row's recipient as the engine sends it."""
    from airflow_provider_itnio.messages import normalize_phone

    return normalize_phone(row["recipient"], "recipient")


def test_a_send_that_raises_something_unexpected_is_recorded_as_maybe_sent_and_never_repeated() -> None:
    rows = make_rows(5)
    bug = normalize(rows[2])

    def send(recipient: str, message: Message) -> str:
        if recipient == bug:
            raise RuntimeError("a bug after the request went out")
        return f"id-{recipient}"

    backend = batch.MemoryBackend()
    first_store = make_store(backend, batch.lease_owner(1))
    first = make_engine(send, concurrency=1, progress=first_store).run(rows)
    first_store.release_lease()
    assert isinstance(first.aborted, RuntimeError)
    assert first.errors[bug]["status"] == "unknown_delivery"
    retry_api = FakeApi()
    retry = make_engine(retry_api, progress=make_store(backend, batch.lease_owner(2))).run(rows)
    assert bug not in retry_api.calls  # maybe delivered: not sent again
    assert retry.errors[bug]["status"] == "unknown_delivery"
    assert_counts_add_up(first, len(rows))
    assert_counts_add_up(retry, len(rows))


def test_a_completed_batch_rerun_with_other_rows_sends_the_new_rows_once() -> None:
    backend = batch.MemoryBackend()
    first_rows, new_rows = make_rows(10), make_rows(5, start=10)
    store = make_store(backend, batch.lease_owner(1))
    first = make_engine(FakeApi(), progress=store).run(first_rows)
    store.complete(first.result(), rows_digest=first.rows_digest)
    # a clear of the upstream task and this one: the query now answers with 5 more customers (a generator)
    api = FakeApi()
    second_store = make_store(backend, batch.lease_owner(2))
    second = make_engine(api, progress=second_store).run(iter(first_rows + new_rows))
    assert sorted(api.calls) == sorted(normalize(r) for r in new_rows)  # the new ones, once; the others skipped
    assert (second.sent, second.skipped_already_sent) == (len(new_rows), len(first_rows))
    assert second.completed_earlier is None
    assert_counts_add_up(second, len(first_rows) + len(new_rows))
    second_store.complete(second.result(), rows_digest=second.rows_digest)
    # the same rows again: the recorded result, nothing sent
    third_api = FakeApi()
    third = make_engine(third_api, progress=make_store(backend, batch.lease_owner(3))).run(first_rows + new_rows)
    assert third_api.calls == [] and third.completed_earlier is not None
    assert third.result() == second.result()


# ----------------------------------------------------------------------------------- through Airflow


def _set_rows(rows: list[str]) -> None:
    from airflow.models.variable import Variable

    Variable.set(CHANGED_ROWS_VARIABLE, json.dumps(rows))


def test_a_succeeded_run_cleared_with_a_changed_upstream_sends_to_the_new_rows(airflow_sandbox: Any) -> None:
    logical_date = pendulum.datetime(2026, 4, 1, tz="UTC")
    first_rows = [f"155503{i:05d}" for i in range(4)]
    new_rows = [f"155503{i:05d}" for i in range(4, 7)]
    _set_rows(first_rows)
    first = run_dag("itnio_batch_changed_rows", logical_date=logical_date)
    assert task_states(first)["send"] == ("success", 1)
    _set_rows(first_rows + new_rows)
    second = run_dag("itnio_batch_changed_rows", logical_date=logical_date)  # clears both tasks, runs again
    assert second.run_id == first.run_id
    assert task_states(second)["send"][0] == "success"
    recipients = sent_recipients(airflow_sandbox)
    assert sorted(recipients) == sorted(first_rows + new_rows)  # every row once: none lost, none twice
    result = xcom_value(second, "send")
    assert (result["sent"], result["skipped_already_sent"]) == (len(new_rows), len(first_rows))
    clear_batch_progress("itnio_batch_changed_rows")


def test_on_kill_stops_the_batch_writes_its_ledger_and_fails_the_try(airflow_sandbox: Any) -> None:
    airflow_sandbox.set_latency(0.05)
    dag_run = run_dag("itnio_batch_killed")
    assert task_states(dag_run)["send"][0] == "failed"
    recipients = sent_recipients(airflow_sandbox)
    assert 0 < len(recipients) < len(KILLED_ROWS)  # it stopped sending
    # every accepted message is in the ledger: a retry repeats none of them
    accepted = {m["body"]["recipient"]: m["messageId"] for m in airflow_sandbox.messages()}
    assert batch_progress("itnio_batch_killed") == accepted
    clear_batch_progress("itnio_batch_killed")


# ----------------------------------------------------------------------------------- after a kill


def test_recipients_sent_again_after_a_kill_stay_listed_when_the_resending_try_fails(
    sandbox: Any, tmp_path: Path
) -> None:
    # try 1 is SIGKILLed mid-batch; try 2 sends its cut-off recipients again, then stops on -68 (the balance runs
    # out) without completing; try 3 completes. The final result must still list every recipient sent twice.
    backend = kill_mid_batch(sandbox, tmp_path / "ledger.sqlite")
    cut_off = {r for r, value in batch.ProgressStore(backend, "k").load().items() if batch.is_started(value)}
    assert cut_off
    sandbox.set_balance(len(cut_off) + 20)  # enough for the cut-off recipients, then -68 (account-level)
    hook, send = sandbox_send(sandbox)
    store = make_store(backend, batch.lease_owner(2), max_unflushed=KILL_MAX_UNFLUSHED)
    try:
        second = make_engine(send, concurrency=8, progress=store).run(make_rows(KILL_ROWS))
    finally:
        hook.close()
        store.release_lease()  # what the task does when a try ends without completing the batch
    assert isinstance(second.aborted, ItnioApiError) and second.aborted.account_level
    assert set(second.maybe_sent_twice) == cut_off  # try 2 did send them again (its result is never pushed)
    sandbox.set_balance(None)
    third = retry_batch(sandbox, backend)
    copies = copies_by_recipient(sandbox)
    assert set(copies) == {normalize(row) for row in make_rows(KILL_ROWS)}
    twice = {recipient for recipient, count in copies.items() if count > 1}
    assert twice and twice <= cut_off
    assert sorted(twice - set(third.maybe_sent_twice)) == []  # the result of the try that completed lists them
    assert sorted(third.maybe_sent_twice) == sorted(cut_off)
    assert "maybe_sent_twice" in third.summary()
    # replayed the same; the completed ledger holds no "started" record
    assert replay_batch(backend, make_rows(KILL_ROWS)).result() == third.result()
    assert not [r for r, value in batch.ProgressStore(backend, "k").load().items() if batch.is_started(value)]


# ----------------------------------------------------------------------------------- fallback template


def test_a_completed_batch_with_a_fallback_template_keeps_its_head_small_and_replays_the_same_result() -> None:
    from airflow_provider_itnio.window import SESSION, TEMPLATE, check_fallback

    rows = [{"recipient": f"1555091{i:04d}", "name": f"N{i}", "template": "order_update"} for i in range(9000)]

    def run(api: FakeApi, owner: str) -> tuple[batch.ProgressStore, batch.BatchOutcome]:
        store = make_store(backend, owner)
        engine = batch.BatchSender(
            api,
            batch.MessagePlan(MESSAGE),
            fallback=batch.MessagePlan(FALLBACK, factory=check_fallback),
            choose=lambda recipients: {r: TEMPLATE if int(r[-2:]) % 3 else SESSION for r in recipients},
            concurrency=4,
            progress=store,
        )
        return store, engine.run(rows)

    backend = batch.MemoryBackend()
    store, outcome = run(FakeApi(), batch.lease_owner(1))
    assert len(outcome.template_recipients) > 5000
    store.complete(outcome.result(), rows_digest=outcome.rows_digest)
    assert len(backend.values[store.head_key]) < 2048  # the head holds no per-row data
    assert max(len(value) for value in backend.values.values()) < batch.MAX_PART_BYTES + 1024
    api = FakeApi()
    _, replayed = run(api, batch.lease_owner(2))
    assert api.calls == [] and replayed.completed_earlier is not None
    assert replayed.result() == outcome.result()  # with its sent_by_kind and template_recipients
    # a marker written by the previous release (template_recipients in the head) is replayed the same too
    head = json.loads(backend.values[store.head_key])
    head["done"]["template_recipients"] = outcome.template_recipients
    for name in ("template_recipients_parts", "template_recipients_digest"):
        del head["done"][name]
    backend.values = {k: v for k, v in backend.values.items() if "__tmpl" not in k} | {store.head_key: json.dumps(head)}
    _, old = run(api, batch.lease_owner(3))
    assert api.calls == [] and old.result() == outcome.result()


# ----------------------------------------------------------------------------------- ledger size


@pytest.mark.parametrize("id_length", [32, 400])
def test_ledger_parts_stay_within_max_part_bytes_when_outcomes_overwrite_marks(id_length: int) -> None:
    # marks are written before their outcomes are known: a part must not outgrow the bound once they are known
    def send(recipient: str, message: Message) -> str:
        return recipient.rjust(id_length, "x")

    backend = batch.MemoryBackend()
    rows = make_rows(6000)
    outcome = make_engine(send, concurrency=8, progress=make_store(backend, batch.lease_owner(1))).run(rows)
    assert outcome.sent == len(rows)
    entry = len(f'"{normalize(rows[0])}":"{send(normalize(rows[0]), None)}",')  # type: ignore[arg-type]
    assert max(len(value) for value in backend.values.values()) <= batch.MAX_PART_BYTES + entry
    assert batch.ProgressStore(backend, "k").load() == outcome.message_ids


# ----------------------------------------------------------------------------------- write-ahead blocks


def test_rows_from_a_slow_source_are_sent_as_they_come_not_a_whole_block_later() -> None:
    # rows are read lazily (e.g. a generator over a paged query): a row must not wait for 200 more to arrive
    rows = make_rows(8)
    api = FakeApi()
    sent_before: list[int] = []  # for each row yielded, how many sends had been made before it

    def slow_rows() -> Any:
        for row in rows:
            sent_before.append(len(api.calls))
            yield row
            time.sleep(0.3)  # the next page takes a while

    outcome = make_engine(api, concurrency=2, progress=make_store(batch.MemoryBackend(), batch.lease_owner(1))).run(
        slow_rows()
    )
    assert outcome.sent == len(rows)
    assert sent_before[-1] >= len(rows) // 2, sent_before  # the first rows went out while later ones were read


class CountingMarks(batch.MemoryBackend):
    """A MemoryBackend that records, at each write, how many entries of the whole ledger are "started"."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[int] = []

    def set(self, key: str, value: str) -> None:
        super().set(key, value)
        if not key.endswith("__head"):
            parts = [json.loads(text) for k, text in self.values.items() if not k.endswith("__head")]
            self.started.append(sum(batch.is_started(v) for part in parts for v in part.values()))


def test_with_a_rate_limit_the_marks_ahead_of_the_sends_stay_within_about_one_flush_interval_of_sends() -> None:
    # what a kill would leave as "maybe sent twice": with 25 sends a second, not the whole 200-row block
    backend = CountingMarks()
    concurrency, rate, rows = 4, 25.0, make_rows(100)
    engine = make_engine(FakeApi(), concurrency=concurrency, max_per_second=rate, progress=make_store(backend, "a"))
    assert engine.run(rows).sent == len(rows)
    block = rate * engine.flush_interval
    # queued (2 * concurrency + half a block) + a block being marked + one send per worker
    assert max(backend.started) <= 3 * concurrency + 1.5 * block, backend.started
