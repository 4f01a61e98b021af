"""
The batch's promises under an adversarial review: interruptions during a ledger write, a lease that runs out
while a send waits for the rate limiter, ``on_kill`` (SIGTERM), a completed run cleared with other rows, and a
send that raises something unexpected.
"""

from __future__ import annotations

import json
from typing import Any

import pendulum
import pytest

from airflow_provider_itnio import batch
from airflow_provider_itnio.messages import Message
from tests.airflow_runs import run_dag, task_states, xcom_value
from tests.dags.itnio_batch import CHANGED_ROWS_VARIABLE, KILLED_ROWS
from tests.test_batch import _clear_progress, _progress, _recipients
from tests.test_batch_ledger import FakeApi, _assert_counts_add_up, _engine, _rows, _store


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
    rows = _rows(200)
    api = FakeApi(delay=0.002)
    engine = _engine(api, concurrency=4, progress=_store(backend, batch.lease_owner(1)), flush_interval=0.02)
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
    store = _store(backend, batch.lease_owner(1), lease_ttl=60.0, safety=10.0, monotonic=clock, sleep=lambda _: None)
    # one send a minute: the second send's wait (60 s) outlasts the lease (50 s without a renewal)
    limiter = batch.RateLimiter(1 / 60, margin=0.0, clock=clock, sleep=clock.sleep)
    api = FakeApi()
    outcome = _engine(api, concurrency=1, progress=store, limiter=limiter, flush_interval=3600).run(_rows(3))
    assert api.calls == [normalize(r) for r in _rows(1)]  # the first send; none after the lease may have expired
    assert isinstance(outcome.aborted, batch.LeaseLostError)
    _assert_counts_add_up(outcome, 3)


def normalize(row: dict[str, str]) -> str:
    """Return the row's recipient as the engine sends it."""
    from airflow_provider_itnio.messages import normalize_phone

    return normalize_phone(row["recipient"], "recipient")


def test_a_send_that_raises_something_unexpected_is_recorded_as_maybe_sent_and_never_repeated() -> None:
    rows = _rows(5)
    bug = normalize(rows[2])

    def send(recipient: str, message: Message) -> str:
        if recipient == bug:
            raise RuntimeError("a bug after the request went out")
        return f"id-{recipient}"

    backend = batch.MemoryBackend()
    first_store = _store(backend, batch.lease_owner(1))
    first = _engine(send, concurrency=1, progress=first_store).run(rows)
    first_store.release_lease()
    assert isinstance(first.aborted, RuntimeError)
    assert first.errors[bug]["status"] == "unknown_delivery"
    retry_api = FakeApi()
    retry = _engine(retry_api, progress=_store(backend, batch.lease_owner(2))).run(rows)
    assert bug not in retry_api.calls  # maybe delivered: not sent again
    assert retry.errors[bug]["status"] == "unknown_delivery"
    _assert_counts_add_up(first, len(rows))
    _assert_counts_add_up(retry, len(rows))


def test_a_completed_batch_rerun_with_other_rows_sends_the_new_rows_once() -> None:
    backend = batch.MemoryBackend()
    first_rows, new_rows = _rows(10), _rows(5, start=10)
    store = _store(backend, batch.lease_owner(1))
    first = _engine(FakeApi(), progress=store).run(first_rows)
    store.complete(first.result(), rows_digest=first.rows_digest)
    # a clear of the upstream task and this one: the query now answers with 5 more customers (a generator)
    api = FakeApi()
    second_store = _store(backend, batch.lease_owner(2))
    second = _engine(api, progress=second_store).run(iter(first_rows + new_rows))
    assert sorted(api.calls) == sorted(normalize(r) for r in new_rows)  # the new ones, once; the others skipped
    assert (second.sent, second.skipped_already_sent) == (len(new_rows), len(first_rows))
    assert second.completed_earlier is None
    _assert_counts_add_up(second, len(first_rows) + len(new_rows))
    second_store.complete(second.result(), rows_digest=second.rows_digest)
    # the same rows again: the recorded result, nothing sent
    third_api = FakeApi()
    third = _engine(third_api, progress=_store(backend, batch.lease_owner(3))).run(first_rows + new_rows)
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
    recipients = _recipients(airflow_sandbox)
    assert sorted(recipients) == sorted(first_rows + new_rows)  # every row once: none lost, none twice
    result = xcom_value(second, "send")
    assert (result["sent"], result["skipped_already_sent"]) == (len(new_rows), len(first_rows))
    _clear_progress("itnio_batch_changed_rows")


def test_on_kill_stops_the_batch_writes_its_ledger_and_fails_the_try(airflow_sandbox: Any) -> None:
    airflow_sandbox.set_latency(0.05)
    dag_run = run_dag("itnio_batch_killed")
    assert task_states(dag_run)["send"][0] == "failed"
    recipients = _recipients(airflow_sandbox)
    assert 0 < len(recipients) < len(KILLED_ROWS)  # it stopped sending
    # every accepted message is in the ledger: a retry repeats none of them
    accepted = {m["body"]["recipient"]: m["messageId"] for m in airflow_sandbox.messages()}
    assert _progress("itnio_batch_killed") == accepted
    _clear_progress("itnio_batch_killed")
