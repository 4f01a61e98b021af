"""
The batch's ledger under fire: counts that add up, one try at a time (the lease), a store that fails, and a
try that is killed (SIGKILL) in the middle of its sends.

The lease tests run two real engines at once against the sandbox; the store-outage tests use a backend whose
writes fail for a while (a Variable store outage cannot be produced for real in-process); the kill tests run a
try in a real process, SIGKILL it while its sends are in flight, and run the retry over the same ledger.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_itnio import batch
from airflow_provider_itnio.batch import ledger
from airflow_provider_itnio.errors import (
    ItnioApiError,
    ItnioDeliveryUnknownError,
    ItnioError,
    ItnioTransportError,
)
from airflow_provider_itnio.messages import Message, Text, normalize_phone


class FakeApi:
    """A send function: scripted errors per recipient, records every call (and whether the store was down)."""

    def __init__(self, errors: dict[str, Exception] | None = None, delay: float = 0.0, store: Any = None) -> None:
        self.errors = errors or {}
        self.delay = delay
        self.store = store
        self.calls: list[str] = []
        self.calls_while_down = 0
        self.lock = threading.Lock()

    def __call__(self, recipient: str, message: Message) -> str:
        with self.lock:
            self.calls.append(recipient)
            if self.store is not None and self.store.down:
                self.calls_while_down += 1
        error = self.errors.get(recipient)
        if error is not None:
            raise error
        if self.delay:
            time.sleep(self.delay)
        return f"id-{recipient}"


class OutageBackend(batch.MemoryBackend):
    """A MemoryBackend whose reads and writes raise while ``down`` is set; counts the failures."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.failures = 0
        self.down_at_first_part = False
        self.part_writes_before_down: int | None = None
        self.on_first_failure: Any = None

    def _check(self) -> None:
        if self.down:
            if self.failures == 0 and self.on_first_failure is not None:
                self.on_first_failure()
            self.failures += 1
            raise ConnectionError("the Variable store is unreachable")

    def get(self, key: str) -> str | None:
        self._check()
        return super().get(key)

    def set(self, key: str, value: str) -> None:
        if self.down_at_first_part and not key.endswith("__head"):
            self.down, self.down_at_first_part = True, False
        if self.part_writes_before_down is not None and not key.endswith("__head"):
            if self.part_writes_before_down == 0:
                self.down, self.part_writes_before_down = True, None
            else:
                self.part_writes_before_down -= 1
        self._check()
        super().set(key, value)


class StealingBackend(batch.MemoryBackend):
    """A MemoryBackend where another try takes the lease over just before the ``steal_at``-th read of the head."""

    def __init__(self, steal_at: int) -> None:
        super().__init__()
        self.steal_at = steal_at
        self.head_reads = 0
        self.writes_at_steal: int | None = None

    def get(self, key: str) -> str | None:
        if key.endswith("__head"):
            self.head_reads += 1
            if self.head_reads == self.steal_at:
                head = json.loads(self.values[key])
                self.set(key, json.dumps({**head, "owner": "try2@elsewhere", "expires": time.time() + 60}))
                self.writes_at_steal = self.writes
        return super().get(key)


def _rows(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"recipient": f"1555080{i:04d}", "name": f"N{i}"} for i in range(start, start + n)]


def _engine(send: Any, **kwargs: Any) -> batch.BatchSender:
    return batch.BatchSender(send, batch.MessagePlan(Text(body="Hi {{ recipient }}").to_payload()), **kwargs)


def _store(backend: Any, owner: str | None = None, **kwargs: Any) -> batch.ProgressStore:
    options: dict[str, Any] = {"settle": 0.05, "write_retry_seconds": 0.5}
    options.update(kwargs)
    return batch.ProgressStore(backend, "k", owner=owner, **options)


def _assert_counts_add_up(outcome: batch.BatchOutcome, rows: int) -> None:
    result = outcome.result()
    assert sum(result[name] for name in batch.COUNTERS) == rows, result
    assert result["failed"] == len(result["errors"])


# ---------------------------------------------------------------------------------------------- counts


def test_repeated_invalid_rows_each_count_and_keep_their_own_error() -> None:
    rows: list[Any] = ["15550800001", "15550800002", "123", "15550800003", "123", "15550800004", "12"]
    rows += ["+1 555 080 0001", "123", {"name": "no recipient"}]
    outcome = _engine(FakeApi(), concurrency=2).run(rows)
    invalid = [i for i, row in enumerate(rows) if not isinstance(row, str) or row in ("123", "12")]
    assert (outcome.sent, outcome.duplicates, outcome.failed) == (4, 1, len(invalid))
    assert sorted(outcome.errors) == sorted(f"rows[{i}]" for i in invalid)  # one entry per row, none overwritten
    assert outcome.result()["not_attempted"] == 0
    _assert_counts_add_up(outcome, len(rows))


def _mix(rng: random.Random, size: int) -> tuple[list[Any], dict[str, Exception]]:
    """Rows of every kind (valid, reformatted duplicates, invalid, repeated invalid, no recipient) and API errors."""
    pool = [f"1555081{i:04d}" for i in range(size)]
    rows: list[Any] = []
    errors: dict[str, Exception] = {}
    for _ in range(size):
        kind = rng.random()
        if kind < 0.55:
            rows.append({"recipient": rng.choice(pool), "name": "x"})
        elif kind < 0.65:
            number = rng.choice(pool)
            rows.append({"recipient": f"+{number[0]} {number[1:4]} {number[4:]}", "name": "x"})
        elif kind < 0.8:
            rows.append({"recipient": rng.choice(["123", "12", "abc"]), "name": "x"})
        elif kind < 0.85:
            rows.append({"name": "no recipient"})
        else:
            rows.append(rng.choice(pool))
    for number in rng.sample(pool, size // 6):
        errors[number] = rng.choice(
            [
                ItnioApiError("-71", "too short"),
                ItnioTransportError("refused"),
                ItnioDeliveryUnknownError("read timeout", recipient=number),
            ]
        )
    if rng.random() < 0.5:
        errors[rng.choice(pool)] = ItnioApiError("-68", "insufficient balance")  # account-level: aborts
    return rows, errors


@pytest.mark.parametrize("seed", range(40))
def test_counts_add_up_on_partial_failure_abort_and_retry(seed: int) -> None:
    rng = random.Random(seed)
    rows, errors = _mix(rng, rng.randint(1, 60))
    backend = batch.MemoryBackend()
    first_api = FakeApi(errors)
    first_store = _store(backend, "a")
    first = _engine(first_api, concurrency=rng.randint(1, 4), progress=first_store).run(rows)
    first_store.release_lease()  # what the task does when a try ends without completing the batch
    _assert_counts_add_up(first, len(rows))
    assert len(first_api.calls) == len(set(first_api.calls))
    # the retry: no account error this time, same ledger
    second_api = FakeApi({r: e for r, e in errors.items() if not getattr(e, "account_level", False)})
    second = _engine(second_api, concurrency=rng.randint(1, 4), progress=_store(backend, "b")).run(rows)
    _assert_counts_add_up(second, len(rows))
    assert second.aborted is None and second.not_attempted == 0
    assert not set(first.message_ids) & set(second_api.calls)  # nothing accepted in try 1 is sent again
    maybe = {r for r, e in errors.items() if isinstance(e, ItnioDeliveryUnknownError)} & set(first_api.calls)
    assert not maybe & set(second_api.calls)  # "maybe delivered" is never sent again
    assert second.skipped_already_sent == len(first.message_ids)


# ----------------------------------------------------------------------------------------------- lease


def _sandbox_send(sandbox: Any) -> tuple[Any, Any]:
    from airflow_provider_itnio.hooks.itnio import ItnioHook

    hook = ItnioHook()

    def send(recipient: str, message: Message) -> str:
        return hook.send(recipient, message).message_id

    return hook, send


def test_a_second_try_refuses_to_send_while_a_live_try_holds_the_batch(sandbox: Any) -> None:
    sandbox.set_latency(0.05)
    backend = batch.MemoryBackend()
    rows = _rows(60)
    hook, send = _sandbox_send(sandbox)
    first_owner, second_owner = batch.lease_owner(1), batch.lease_owner(2)
    first = _engine(send, concurrency=2, progress=_store(backend, first_owner), flush_interval=0.1)
    outcome: dict[str, batch.BatchOutcome] = {}
    runner = threading.Thread(target=lambda: outcome.update(first=first.run(rows)))
    runner.start()
    try:
        deadline = time.monotonic() + 600
        while not sandbox.messages():  # try 1 is sending
            assert time.monotonic() < deadline, "try 1 sent nothing within 600 s"
            time.sleep(0.01)
        second = _engine(send, concurrency=2, progress=_store(backend, second_owner))
        with pytest.raises(batch.LeaseHeldError) as refused:
            second.run(rows)
    finally:
        runner.join(600)  # what follows reads what try 1 sent: it must have finished
        hook.close()
    assert not runner.is_alive(), "try 1 did not finish its batch within 600 s"
    head = json.loads(backend.values["k__head"])
    assert refused.value.holder == first_owner
    assert first_owner in str(refused.value)
    assert ledger._utc(refused.value.expires) in str(refused.value)  # the expiry, readable
    assert head["owner"] == first_owner  # the refused try did not touch the lease
    recipients = [m["body"]["recipient"] for m in sandbox.requests()]
    assert sorted(recipients) == sorted(r["recipient"] for r in rows)  # every row exactly once
    assert outcome["first"].sent == len(rows)


def test_claims_made_at_the_same_moment_let_exactly_one_try_send() -> None:
    for _ in range(5):
        backend = batch.MemoryBackend()
        barrier = threading.Barrier(4)
        results: list[str] = []

        def claim(
            store: batch.ProgressStore, barrier: threading.Barrier = barrier, results: list[str] = results
        ) -> None:
            barrier.wait()
            try:
                store.claim()
                results.append("won")
            except batch.LeaseHeldError:
                results.append("refused")

        stores = [_store(backend, batch.lease_owner(n), settle=0.2) for n in range(4)]
        threads = [threading.Thread(target=claim, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == ["refused"] * 3 + ["won"]


def test_an_expired_lease_of_a_killed_try_is_taken_over(sandbox: Any) -> None:
    backend = batch.MemoryBackend()
    rows = _rows(30)
    hook, send = _sandbox_send(sandbox)
    # try 1 claims, sends 10 rows, flushes, then is "killed": it never renews nor releases its lease
    killed = _store(backend, batch.lease_owner(1), lease_ttl=1.0, safety=0.3)
    assert killed.claim() is None
    killed.load()
    for row in rows[:10]:
        recipient = normalize_phone(row["recipient"], "recipient")
        assert killed.start_send()
        killed.record(recipient, send(recipient, Text(body="x")))
        killed.end_send()
    killed.flush()
    try:
        with pytest.raises(batch.LeaseHeldError):
            _engine(send, progress=_store(backend, batch.lease_owner(2))).run(rows)
        while time.time() < json.loads(backend.values["k__head"])["expires"]:
            time.sleep(0.05)
        second = _engine(send, progress=_store(backend, batch.lease_owner(2))).run(rows)
    finally:
        hook.close()
    assert (second.skipped_already_sent, second.sent) == (10, 20)
    recipients = [m["body"]["recipient"] for m in sandbox.requests()]
    assert sorted(recipients) == sorted(r["recipient"] for r in rows)
    # had the killed try only stalled, it would refuse to send by now: its own deadline passed before expiry
    assert not killed.start_send()
    assert isinstance(killed.failure, batch.LeaseLostError)


def test_a_try_that_lost_its_lease_stops_at_its_next_flush_and_writes_nothing() -> None:
    backend = StealingBackend(steal_at=6)  # the claim reads the head twice, each flush once
    rows = _rows(300)
    api = FakeApi(delay=0.002)
    engine = _engine(api, concurrency=2, progress=_store(backend, batch.lease_owner(1)), flush_interval=0.02)
    outcome = engine.run(rows)
    assert isinstance(outcome.aborted, batch.LeaseLostError)
    assert "try2@elsewhere" in str(outcome.aborted)
    assert len(api.calls) < len(rows) and outcome.not_attempted > 0
    _assert_counts_add_up(outcome, len(rows))
    assert backend.writes == backend.writes_at_steal  # not one write after the lease was lost
    assert json.loads(backend.values["k__head"])["owner"] == "try2@elsewhere"


# ------------------------------------------------------------------------------------------ store down


def test_a_store_outage_is_retried_and_sending_pauses_until_it_ends() -> None:
    backend = OutageBackend()
    rows = _rows(300)
    api = FakeApi(delay=0.002)
    calls_at: dict[str, int] = {}
    backend.on_first_failure = lambda: calls_at.setdefault("first_failure", len(api.calls))
    store = _store(backend, batch.lease_owner(1), write_retry_seconds=10.0)
    engine = _engine(api, concurrency=4, progress=store, flush_interval=0.05)

    def outage() -> None:
        while len(api.calls) < 50:
            time.sleep(0.001)
        backend.down = True
        while backend.failures < 4:  # the store noticed and retried a few times
            time.sleep(0.01)
        calls_at["recovery"] = len(api.calls)
        backend.down = False

    breaker = threading.Thread(target=outage)
    breaker.start()
    outcome = engine.run(rows)
    breaker.join()
    assert store.failed_attempts == backend.failures >= 4  # retried, not given up
    assert calls_at["recovery"] - calls_at["first_failure"] <= 4  # paused: only sends already started
    assert outcome.aborted is None and outcome.sent == len(rows)
    assert len(api.calls) == len(set(api.calls)) == len(rows)  # no row sent twice
    assert batch.ProgressStore(backend, "k").load() == outcome.message_ids
    _assert_counts_add_up(outcome, len(rows))


def test_a_store_down_from_the_start_lets_no_send_out() -> None:
    backend = OutageBackend()
    backend.down_at_first_part = True  # the claim works; the first "send started" records cannot be written
    api = FakeApi()
    store = _store(backend, batch.lease_owner(1), max_unflushed=5, write_retry_seconds=0.3)
    outcome = _engine(api, concurrency=8, progress=store, flush_interval=0.05).run(_rows(100))
    assert isinstance(outcome.aborted, batch.LedgerWriteError)
    assert api.calls == [] and outcome.not_attempted == 100  # write-ahead: no send without a durable record


def test_a_store_that_stays_down_stops_the_batch_and_at_most_max_unflushed_sends_repeat() -> None:
    backend = OutageBackend()
    rows = _rows(100)
    api = FakeApi(delay=0.002)

    def send(recipient: str, message: Message) -> str:
        if len(api.calls) == 3:
            backend.down = True  # every read and write fails from the 4th send on
        return api(recipient, message)

    store = _store(backend, batch.lease_owner(1), max_unflushed=5, write_retry_seconds=0.3)
    outcome = _engine(send, concurrency=8, progress=store, flush_interval=0.05).run(rows)
    assert isinstance(outcome.aborted, batch.LedgerWriteError)
    assert backend.failures > 2  # retried
    # the 3 sends before the outage may be recorded; at most max_unflushed more went out on durable "started"
    # marks only (written before the store went down), none without one
    assert 3 < len(api.calls) <= 3 + store.max_unflushed
    assert 0 < outcome.unrecorded <= len(api.calls)
    assert outcome.not_attempted > 0
    _assert_counts_add_up(outcome, len(rows))
    # the store comes back; the next try repeats exactly the unrecorded sends and sends every other row once
    backend.down = False
    store.release_lease()
    retry_api = FakeApi()
    retry = _engine(retry_api, progress=_store(backend, batch.lease_owner(2))).run(rows)
    assert retry.sent + retry.skipped_already_sent == len(rows)
    assert len(set(api.calls) & set(retry_api.calls)) == outcome.unrecorded <= store.max_unflushed
    assert set(api.calls) & set(retry_api.calls) <= set(retry.maybe_sent_twice)  # each one listed
    assert len(retry.maybe_sent_twice) <= store.max_unflushed
    _assert_counts_add_up(retry, len(rows))


def test_a_completed_batch_is_never_sent_again_by_a_later_try() -> None:
    backend = batch.MemoryBackend()
    rows = [*_rows(10), "123"]
    store = _store(backend, batch.lease_owner(1))
    first = _engine(FakeApi(), progress=store).run(rows)
    store.complete(first.result())
    again_api = FakeApi()
    again = _engine(again_api, progress=_store(backend, batch.lease_owner(2))).run(rows)
    assert again_api.calls == []
    assert again.completed_earlier is not None
    assert again.result() == first.result()
    assert "nothing was sent again" in again.summary()


def test_errors_of_the_ledger_are_retryable_item_errors() -> None:
    assert issubclass(batch.LedgerError, ItnioError)
    assert not batch.LeaseHeldError("x", 0).permanent


# -------------------------------------------------------------------------------------------- size


class ColumnBackend(batch.MemoryBackend):
    """A MemoryBackend that refuses values over ``limit`` bytes, as a database column does; keeps the sizes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.largest_head = 0
        self.largest = 0

    def set(self, key: str, value: str) -> None:
        size = len(value.encode("utf-8"))
        if size > self.limit:
            raise ValueError(f"Data too long for column 'val': {size} bytes")
        self.largest = max(self.largest, size)
        if key.endswith("__head"):
            self.largest_head = max(self.largest_head, size)
        super().set(key, value)


#: What a ledger Variable may hold: a part is closed at MAX_PART_BYTES, plus one entry (its texts cut, \uXXXX).
_PART_BOUND = batch.MAX_PART_BYTES + 12 * (2 * batch.MAX_ERROR_TEXT + 100)


def _failing_batch(backend: Any, rows: list[Any], errors: dict[str, Exception] | None = None) -> dict[str, Any]:
    """Run and complete a batch (fail_on_errors=False: completed with errors); return its result."""
    store = _store(backend, batch.lease_owner(1))
    outcome = _engine(FakeApi(errors), concurrency=4, progress=store, flush_interval=0.05).run(rows)
    assert outcome.aborted is None
    store.complete(outcome.result(), rows_digest=outcome.rows_digest)
    return outcome.result()


def _replay(backend: Any, rows: list[Any]) -> batch.BatchOutcome:
    api = FakeApi()
    outcome = _engine(api, progress=_store(backend, batch.lease_owner(3))).run(rows)
    assert api.calls == [] and outcome.completed_earlier is not None  # nothing sent again
    return outcome


@pytest.mark.parametrize("invalid", [10, 6000])
def test_a_large_failing_batch_completes_in_a_store_that_limits_values_and_replays_the_same_result(
    invalid: int,
) -> None:
    backend = ColumnBackend(limit=_PART_BOUND)  # far below what 6,000 errors take (~900 KB)
    rows: list[Any] = [row for pair in zip(_rows(invalid), ["123"] * invalid, strict=True) for row in pair]
    result = _failing_batch(backend, rows)
    assert result["failed"] == invalid == len(result["errors"]) and result["sent"] == invalid
    assert backend.largest_head <= 1024  # small whatever the batch's size, at every write (renewals too)
    assert backend.largest <= _PART_BOUND
    head = json.loads(backend.values["k__head"])
    assert "errors" not in head["done"]
    assert _replay(backend, rows).result() == result  # reassembled from the parts, as returned the first time
    batch.ProgressStore(backend, "k").delete()
    assert backend.values == {}  # the errors parts are deleted with the ledger


def test_huge_error_texts_are_cut_in_the_result_and_every_ledger_value_stays_bounded() -> None:
    backend = ColumnBackend(limit=_PART_BOUND)
    rows = _rows(30)
    huge = "the vendor explains at length \u00e9\u4e2d " * 40_000  # ~1.3 MB, non-ASCII (stored escaped)
    failing: dict[str, Exception] = {
        normalize_phone(row["recipient"], "recipient"): ItnioApiError("-71", huge) for row in rows[:20]
    }
    result = _failing_batch(backend, rows, failing)
    assert result["failed"] == len(failing) and result["sent"] == len(rows) - len(failing)
    for error in result["errors"].values():
        assert len(error["reason"]) <= batch.MAX_ERROR_TEXT + 50 and "more characters" in error["reason"]
    assert backend.largest <= _PART_BOUND
    assert _replay(backend, rows).result() == result


def test_a_replayed_result_holds_only_the_message_ids_of_its_own_rows() -> None:
    backend = batch.MemoryBackend()
    first_rows, second_rows = _rows(10), _rows(10, start=5)  # a clear with a changed upstream: 5 gone, 5 new
    _failing_batch(backend, first_rows)
    store = _store(backend, batch.lease_owner(2))
    second = _engine(FakeApi(), progress=store).run(second_rows)
    assert (second.sent, second.skipped_already_sent) == (5, 5)
    store.complete(second.result(), rows_digest=second.rows_digest)
    assert _replay(backend, second_rows).result() == second.result()


def test_a_completed_ledger_with_a_missing_errors_part_is_not_replayed_as_if_it_had_no_errors() -> None:
    backend = batch.MemoryBackend()
    rows: list[Any] = [*_rows(3), "123"]
    _failing_batch(backend, rows)
    del backend.values["k__err0"]  # a sweep deleting it at that moment
    with pytest.raises(batch.LedgerError, match="missing"):
        _engine(FakeApi(), progress=_store(backend, batch.lease_owner(2))).run(rows)


def test_a_marker_written_before_the_errors_had_parts_is_still_replayed() -> None:
    backend = batch.MemoryBackend()
    rows: list[Any] = [*_rows(3), "123"]
    result = _failing_batch(backend, rows)
    head = json.loads(backend.values["k__head"])
    head["done"]["errors"] = result["errors"]  # the format of the marker before the errors parts
    del head["done"]["errors_parts"], head["done"]["errors_digest"], backend.values["k__err0"]
    backend.values["k__head"] = json.dumps(head)
    assert _replay(backend, rows).result() == result


# -------------------------------------------------------------------------------------------- killed try

#: The killed try's batch: rows, the bound on unresolved sends (small, so that it bites), the lease (short, so
#: that the retry takes it over soon after the kill).
KILL_ROWS = 600
KILL_MAX_UNFLUSHED = 40
KILL_LEASE = {"lease_ttl": 3.0, "safety": 1.0}
KILL_LATENCY = 0.05


class SqliteBackend:
    """
    A :class:`~airflow_provider_itnio.batch.KeyValueBackend` in a SQLite file: it outlives a killed process, as
    Airflow Variables outlive a killed task.

    :param path: The database file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _db(self) -> contextlib.closing[sqlite3.Connection]:
        return contextlib.closing(sqlite3.connect(self.path, timeout=30, isolation_level=None))

    def get(self, key: str) -> str | None:
        """Return the value, or None."""
        with self._db() as db:
            row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        """Write the value."""
        with self._db() as db:
            db.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def delete(self, key: str) -> None:
        """Remove the value."""
        with self._db() as db:
            db.execute("DELETE FROM kv WHERE key = ?", (key,))


def sending_child(path: str) -> None:
    """Send the killed try's batch (run in a process of its own, which the test kills with SIGKILL)."""
    _hook, send = _sandbox_send(None)  # the process is killed: the hook is never closed
    store = _store(SqliteBackend(path), batch.lease_owner(1), max_unflushed=KILL_MAX_UNFLUSHED, **KILL_LEASE)
    _engine(send, concurrency=8, progress=store).run(_rows(KILL_ROWS))


def _kill_mid_batch(sandbox: Any, path: Path) -> SqliteBackend:
    """Run the batch in a child process, SIGKILL it once a third of the rows reached the sandbox; return its ledger."""
    sandbox.set_latency(KILL_LATENCY)  # sends are in flight when the kill comes
    backend = SqliteBackend(path)
    code = f"from tests.test_batch_ledger import sending_child; sending_child({str(path)!r})"
    child = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 120
        while len(sandbox.messages()) < KILL_ROWS // 3:
            assert child.poll() is None, "the batch ended before it could be killed"
            assert time.monotonic() < deadline, "the batch did not start"
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    sandbox.set_latency(0.0)
    while time.time() < json.loads(backend.get("k__head") or "{}").get("expires", 0):  # the dead try's lease
        time.sleep(0.05)
    return backend


def _retry(sandbox: Any, backend: Any, **options: Any) -> batch.BatchOutcome:
    """Run and complete the retry of the killed batch over the same ledger (as the task does)."""
    hook, send = _sandbox_send(sandbox)
    store = _store(backend, batch.lease_owner(2), max_unflushed=KILL_MAX_UNFLUSHED)
    try:
        outcome = _engine(send, concurrency=8, progress=store, **options).run(_rows(KILL_ROWS))
    finally:
        hook.close()
    assert outcome.aborted is None, outcome.summary()
    store.complete(outcome.result(), rows_digest=outcome.rows_digest)
    return outcome


def _copies(sandbox: Any) -> Counter[str]:
    """Return how many times each recipient received the message (accepted at the sandbox)."""
    return Counter(message["body"]["recipient"] for message in sandbox.messages())


def test_after_a_sigkill_the_retry_sends_to_everybody_and_lists_every_recipient_sent_twice(
    sandbox: Any, tmp_path: Path
) -> None:
    backend = _kill_mid_batch(sandbox, tmp_path / "ledger.sqlite")
    outcome = _retry(sandbox, backend)
    copies = _copies(sandbox)
    recipients = {normalize_phone(row["recipient"], "recipient") for row in _rows(KILL_ROWS)}
    assert set(copies) == recipients  # nobody is left without the message
    assert max(copies.values()) == 2  # the kill cut sends off (in flight at the sandbox), none got three copies
    twice = {recipient for recipient, count in copies.items() if count == 2}
    listed = set(outcome.result().get("maybe_sent_twice", []))
    assert sorted(twice - listed) == []  # every recipient sent twice is listed as maybe sent twice
    assert len(listed) <= KILL_MAX_UNFLUSHED  # the documented bound: at most max_unflushed per killed try
    # listed: the marks the killed try left in its ledger, each sent or not yet (a kill leaves no trace of which)
    assert outcome.sent + outcome.skipped_already_sent == KILL_ROWS and outcome.failed == 0
    assert "maybe sent twice" in outcome.summary() or "maybe_sent_twice" in outcome.summary()
    # the completed ledger holds no "started" record, and a later try replays the same result, sending nothing
    assert not [r for r, value in batch.ProgressStore(backend, "k").load().items() if batch.is_started(value)]
    again = FakeApi()
    replayed = _engine(again, progress=_store(backend, batch.lease_owner(3))).run(_rows(KILL_ROWS))
    assert again.calls == [] and replayed.result() == outcome.result()


def test_after_a_sigkill_with_resend_interrupted_false_nobody_gets_a_second_copy(sandbox: Any, tmp_path: Path) -> None:
    backend = _kill_mid_batch(sandbox, tmp_path / "ledger.sqlite")
    outcome = _retry(sandbox, backend, resend_interrupted=False)
    copies = _copies(sandbox)
    assert max(copies.values()) == 1  # nobody got the message twice
    unknown = {who for who, error in outcome.errors.items() if error["status"] == "unknown_delivery"}
    assert 0 < len(unknown) <= KILL_MAX_UNFLUSHED
    assert all("cut off" in outcome.errors[who]["reason"] for who in unknown)
    recipients = {normalize_phone(row["recipient"], "recipient") for row in _rows(KILL_ROWS)}
    assert recipients - set(copies) <= unknown  # a recipient without the message is reported
    assert outcome.result()["maybe_sent_twice"] == []
    assert (outcome.failed, outcome.sent + outcome.skipped_already_sent) == (len(unknown), KILL_ROWS - len(unknown))
    # recorded as maybe sent (null): never sent by a later try either, no "started" record left
    stored = batch.ProgressStore(backend, "k").load()
    assert {r for r in unknown if stored[r] is None} == unknown
    assert not [r for r, value in stored.items() if batch.is_started(value)]


def test_outcomes_overwrite_their_marks_in_place_and_a_flush_writes_only_the_parts_that_changed() -> None:
    backend = batch.MemoryBackend()
    store = batch.ProgressStore(backend, "k", shard_size=4)
    store.load()
    recipients = [f"1555082{i:04d}" for i in range(10)]
    store.mark(recipients)  # parts of 4: two full, one filling up
    store.flush()
    parts = [json.loads(backend.values[store.part_key(i)]) for i in range(3)]
    assert parts == [dict.fromkeys(recipients[i : i + 4], batch.STARTED) for i in (0, 4, 8)]
    writes = backend.writes
    store.record(recipients[1], "id-1")  # in the first part, already full and written
    store.release(recipients[9])  # never sent: its mark goes
    store.flush()
    assert backend.writes - writes == 2  # the two parts that changed, not the one in between
    stored = [json.loads(backend.values[store.part_key(i)]) for i in range(3)]
    assert stored[0][recipients[1]] == "id-1" and recipients[9] not in stored[2]
    assert sum(len(part) for part in stored) == 9 and len(backend.values) == 3  # nobody in two parts
    # a later try: the marks left are a killed try's; sending one again and its outcome keep it in its part
    later = batch.ProgressStore(backend, "k", shard_size=4)
    found = later.load()
    left = {r for r, value in found.items() if batch.is_started(value)}
    assert left == set(recipients[:9]) - {recipients[1]} == set(later.interrupted)
    later.mark([recipients[0]])
    later.record(recipients[0], "id-0")
    later.flush()
    assert json.loads(backend.values["k"])[recipients[0]] == "id-0" and len(backend.values) == 3
    later.release(recipients[2])  # refused when sent again: the killed try's send may still have gone out
    later.complete({"sent": 1})  # the marks left become "maybe sent": a completed ledger holds none
    final = batch.ProgressStore(backend, "k").load()
    assert final == {
        **dict.fromkeys(set(recipients[:9]) - {recipients[0], recipients[1]}),
        recipients[0]: "id-0",
        recipients[1]: "id-1",
    }


def test_a_replayed_result_lists_the_message_ids_in_the_same_order_as_the_first_the_rows_order() -> None:
    backend = batch.MemoryBackend()
    rows = _rows(40)

    def send(recipient: str, message: Message) -> str:
        time.sleep(0.02 if int(recipient[-1]) % 2 == 0 else 0.0)  # the odd rows' answers come first
        return f"id-{recipient}"

    store = _store(backend, batch.lease_owner(1))
    outcome = _engine(send, concurrency=4, progress=store).run(rows)
    store.complete(outcome.result(), rows_digest=outcome.rows_digest)
    in_rows_order = [normalize_phone(row["recipient"], "recipient") for row in rows]
    assert list(outcome.message_ids) == in_rows_order
    assert list(_replay(backend, rows).result()["message_ids"]) == in_rows_order
