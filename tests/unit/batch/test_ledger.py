"""
The batch's ledger under fire: counts that add up, one try at a time (the lease), a store that fails, and a
try that is killed (SIGKILL) in the middle of its sends.

The lease tests run two real engines at once against the sandbox; the store-outage tests use a backend whose
writes fail for a while (a Variable store outage cannot be produced for real in-process); the kill tests run a
try in a real process, SIGKILL it while its sends are in flight, and run the retry over the same ledger.
"""

from __future__ import annotations

import json
import random
import threading
import time
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
from tests.support.batch import (
    KILL_MAX_UNFLUSHED,
    KILL_ROWS,
    FakeApi,
    assert_counts_add_up,
    copies_by_recipient,
    kill_mid_batch,
    make_engine,
    make_rows,
    make_store,
    replay_batch,
    retry_batch,
    sandbox_send,
)


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


# ---------------------------------------------------------------------------------------------- counts


def test_repeated_invalid_rows_each_count_and_keep_their_own_error() -> None:
    rows: list[Any] = ["15550800001", "15550800002", "123", "15550800003", "123", "15550800004", "12"]
    rows += ["+1 555 080 0001", "123", {"name": "no recipient"}]
    outcome = make_engine(FakeApi(), concurrency=2).run(rows)
    invalid = [i for i, row in enumerate(rows) if not isinstance(row, str) or row in ("123", "12")]
    assert (outcome.sent, outcome.duplicates, outcome.failed) == (4, 1, len(invalid))
    assert sorted(outcome.errors) == sorted(f"rows[{i}]" for i in invalid)  # one entry per row, none overwritten
    assert outcome.result()["not_attempted"] == 0
    assert_counts_add_up(outcome, len(rows))


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
    first_store = make_store(backend, "a")
    first = make_engine(first_api, concurrency=rng.randint(1, 4), progress=first_store).run(rows)
    first_store.release_lease()  # what the task does when a try ends without completing the batch
    assert_counts_add_up(first, len(rows))
    assert len(first_api.calls) == len(set(first_api.calls))
    # the retry: no account error this time, same ledger
    second_api = FakeApi({r: e for r, e in errors.items() if not getattr(e, "account_level", False)})
    second = make_engine(second_api, concurrency=rng.randint(1, 4), progress=make_store(backend, "b")).run(rows)
    assert_counts_add_up(second, len(rows))
    assert second.aborted is None and second.not_attempted == 0
    assert not set(first.message_ids) & set(second_api.calls)  # nothing accepted in try 1 is sent again
    maybe = {r for r, e in errors.items() if isinstance(e, ItnioDeliveryUnknownError)} & set(first_api.calls)
    assert not maybe & set(second_api.calls)  # "maybe delivered" is never sent again
    assert second.skipped_already_sent == len(first.message_ids)


# ----------------------------------------------------------------------------------------------- lease


def test_a_second_try_refuses_to_send_while_a_live_try_holds_the_batch(sandbox: Any) -> None:
    sandbox.set_latency(0.05)
    backend = batch.MemoryBackend()
    rows = make_rows(60)
    hook, send = sandbox_send(sandbox)
    first_owner, second_owner = batch.lease_owner(1), batch.lease_owner(2)
    first = make_engine(send, concurrency=2, progress=make_store(backend, first_owner), flush_interval=0.1)
    outcome: dict[str, batch.BatchOutcome] = {}
    runner = threading.Thread(target=lambda: outcome.update(first=first.run(rows)))
    runner.start()
    try:
        deadline = time.monotonic() + 600
        while not sandbox.messages():  # try 1 is sending
            assert time.monotonic() < deadline, "try 1 sent nothing within 600 s"
            time.sleep(0.01)
        second = make_engine(send, concurrency=2, progress=make_store(backend, second_owner))
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

        stores = [make_store(backend, batch.lease_owner(n), settle=0.2) for n in range(4)]
        threads = [threading.Thread(target=claim, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == ["refused"] * 3 + ["won"]


def test_an_expired_lease_of_a_killed_try_is_taken_over(sandbox: Any) -> None:
    backend = batch.MemoryBackend()
    rows = make_rows(30)
    hook, send = sandbox_send(sandbox)
    # try 1 claims, sends 10 rows, flushes, then is "killed": it never renews nor releases its lease
    killed = make_store(backend, batch.lease_owner(1), lease_ttl=1.0, safety=0.3)
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
            make_engine(send, progress=make_store(backend, batch.lease_owner(2))).run(rows)
        while time.time() < json.loads(backend.values["k__head"])["expires"]:
            time.sleep(0.05)
        second = make_engine(send, progress=make_store(backend, batch.lease_owner(2))).run(rows)
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
    rows = make_rows(300)
    api = FakeApi(delay=0.002)
    engine = make_engine(api, concurrency=2, progress=make_store(backend, batch.lease_owner(1)), flush_interval=0.02)
    outcome = engine.run(rows)
    assert isinstance(outcome.aborted, batch.LeaseLostError)
    assert "try2@elsewhere" in str(outcome.aborted)
    assert len(api.calls) < len(rows) and outcome.not_attempted > 0
    assert_counts_add_up(outcome, len(rows))
    assert backend.writes == backend.writes_at_steal  # not one write after the lease was lost
    assert json.loads(backend.values["k__head"])["owner"] == "try2@elsewhere"


# ------------------------------------------------------------------------------------------ store down


def test_a_store_outage_is_retried_and_sending_pauses_until_it_ends() -> None:
    backend = OutageBackend()
    rows = make_rows(300)
    api = FakeApi(delay=0.002)
    calls_at: dict[str, int] = {}
    backend.on_first_failure = lambda: calls_at.setdefault("first_failure", len(api.calls))
    store = make_store(backend, batch.lease_owner(1), write_retry_seconds=10.0)
    engine = make_engine(api, concurrency=4, progress=store, flush_interval=0.05)

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
    assert_counts_add_up(outcome, len(rows))


def test_a_store_down_from_the_start_lets_no_send_out() -> None:
    backend = OutageBackend()
    backend.down_at_first_part = True  # the claim works; the first "send started" records cannot be written
    api = FakeApi()
    store = make_store(backend, batch.lease_owner(1), max_unflushed=5, write_retry_seconds=0.3)
    outcome = make_engine(api, concurrency=8, progress=store, flush_interval=0.05).run(make_rows(100))
    assert isinstance(outcome.aborted, batch.LedgerWriteError)
    assert api.calls == [] and outcome.not_attempted == 100  # write-ahead: no send without a durable record


def test_a_store_that_stays_down_stops_the_batch_and_at_most_max_unflushed_sends_repeat() -> None:
    backend = OutageBackend()
    rows = make_rows(100)
    api = FakeApi(delay=0.002)

    def send(recipient: str, message: Message) -> str:
        if len(api.calls) == 3:
            backend.down = True  # every read and write fails from the 4th send on
        return api(recipient, message)

    store = make_store(backend, batch.lease_owner(1), max_unflushed=5, write_retry_seconds=0.3)
    outcome = make_engine(send, concurrency=8, progress=store, flush_interval=0.05).run(rows)
    assert isinstance(outcome.aborted, batch.LedgerWriteError)
    assert backend.failures > 2  # retried
    # the 3 sends before the outage may be recorded; at most max_unflushed more went out on durable "started"
    # marks only (written before the store went down), none without one
    assert 3 < len(api.calls) <= 3 + store.max_unflushed
    assert 0 < outcome.unrecorded <= len(api.calls)
    assert outcome.not_attempted > 0
    assert_counts_add_up(outcome, len(rows))
    # the store comes back; the next try repeats exactly the unrecorded sends and sends every other row once
    backend.down = False
    store.release_lease()
    retry_api = FakeApi()
    retry = make_engine(retry_api, progress=make_store(backend, batch.lease_owner(2))).run(rows)
    assert retry.sent + retry.skipped_already_sent == len(rows)
    assert len(set(api.calls) & set(retry_api.calls)) == outcome.unrecorded <= store.max_unflushed
    assert set(api.calls) & set(retry_api.calls) <= set(retry.maybe_sent_twice)  # each one listed
    assert len(retry.maybe_sent_twice) <= store.max_unflushed
    assert_counts_add_up(retry, len(rows))


def test_a_completed_batch_is_never_sent_again_by_a_later_try() -> None:
    backend = batch.MemoryBackend()
    rows = [*make_rows(10), "123"]
    store = make_store(backend, batch.lease_owner(1))
    first = make_engine(FakeApi(), progress=store).run(rows)
    store.complete(first.result())
    again_api = FakeApi()
    again = make_engine(again_api, progress=make_store(backend, batch.lease_owner(2))).run(rows)
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
    store = make_store(backend, batch.lease_owner(1))
    outcome = make_engine(FakeApi(errors), concurrency=4, progress=store, flush_interval=0.05).run(rows)
    assert outcome.aborted is None
    store.complete(outcome.result(), rows_digest=outcome.rows_digest)
    return outcome.result()


@pytest.mark.parametrize("invalid", [10, 6000])
def test_a_large_failing_batch_completes_in_a_store_that_limits_values_and_replays_the_same_result(
    invalid: int,
) -> None:
    backend = ColumnBackend(limit=_PART_BOUND)  # far below what 6,000 errors take (~900 KB)
    rows: list[Any] = [row for pair in zip(make_rows(invalid), ["123"] * invalid, strict=True) for row in pair]
    result = _failing_batch(backend, rows)
    assert result["failed"] == invalid == len(result["errors"]) and result["sent"] == invalid
    assert backend.largest_head <= 1024  # small whatever the batch's size, at every write (renewals too)
    assert backend.largest <= _PART_BOUND
    head = json.loads(backend.values["k__head"])
    assert "errors" not in head["done"]
    assert replay_batch(backend, rows).result() == result  # reassembled from the parts, as returned the first time
    batch.ProgressStore(backend, "k").delete()
    assert backend.values == {}  # the errors parts are deleted with the ledger


def test_huge_error_texts_are_cut_in_the_result_and_every_ledger_value_stays_bounded() -> None:
    backend = ColumnBackend(limit=_PART_BOUND)
    rows = make_rows(30)
    huge = "the vendor explains at length \u00e9\u4e2d " * 40_000  # ~1.3 MB, non-ASCII (stored escaped)
    failing: dict[str, Exception] = {
        normalize_phone(row["recipient"], "recipient"): ItnioApiError("-71", huge) for row in rows[:20]
    }
    result = _failing_batch(backend, rows, failing)
    assert result["failed"] == len(failing) and result["sent"] == len(rows) - len(failing)
    for error in result["errors"].values():
        assert len(error["reason"]) <= batch.MAX_ERROR_TEXT + 50 and "more characters" in error["reason"]
    assert backend.largest <= _PART_BOUND
    assert replay_batch(backend, rows).result() == result


def test_a_replayed_result_holds_only_the_message_ids_of_its_own_rows() -> None:
    backend = batch.MemoryBackend()
    first_rows, second_rows = make_rows(10), make_rows(10, start=5)  # a clear with a changed upstream: 5 gone, 5 new
    _failing_batch(backend, first_rows)
    store = make_store(backend, batch.lease_owner(2))
    second = make_engine(FakeApi(), progress=store).run(second_rows)
    assert (second.sent, second.skipped_already_sent) == (5, 5)
    store.complete(second.result(), rows_digest=second.rows_digest)
    assert replay_batch(backend, second_rows).result() == second.result()


def test_a_completed_ledger_with_a_missing_errors_part_is_not_replayed_as_if_it_had_no_errors() -> None:
    backend = batch.MemoryBackend()
    rows: list[Any] = [*make_rows(3), "123"]
    _failing_batch(backend, rows)
    del backend.values["k__err0"]  # a sweep deleting it at that moment
    with pytest.raises(batch.LedgerError, match="missing"):
        make_engine(FakeApi(), progress=make_store(backend, batch.lease_owner(2))).run(rows)


def test_a_marker_written_before_the_errors_had_parts_is_still_replayed() -> None:
    backend = batch.MemoryBackend()
    rows: list[Any] = [*make_rows(3), "123"]
    result = _failing_batch(backend, rows)
    head = json.loads(backend.values["k__head"])
    head["done"]["errors"] = result["errors"]  # the format of the marker before the errors parts
    del head["done"]["errors_parts"], head["done"]["errors_digest"], backend.values["k__err0"]
    backend.values["k__head"] = json.dumps(head)
    assert replay_batch(backend, rows).result() == result


# -------------------------------------------------------------------------------------------- killed try


def test_after_a_sigkill_the_retry_sends_to_everybody_and_lists_every_recipient_sent_twice(
    sandbox: Any, tmp_path: Path
) -> None:
    backend = kill_mid_batch(sandbox, tmp_path / "ledger.sqlite")
    outcome = retry_batch(sandbox, backend)
    copies = copies_by_recipient(sandbox)
    recipients = {normalize_phone(row["recipient"], "recipient") for row in make_rows(KILL_ROWS)}
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
    replayed = make_engine(again, progress=make_store(backend, batch.lease_owner(3))).run(make_rows(KILL_ROWS))
    assert again.calls == [] and replayed.result() == outcome.result()


def test_after_a_sigkill_with_resend_interrupted_false_nobody_gets_a_second_copy(sandbox: Any, tmp_path: Path) -> None:
    backend = kill_mid_batch(sandbox, tmp_path / "ledger.sqlite")
    outcome = retry_batch(sandbox, backend, resend_interrupted=False)
    copies = copies_by_recipient(sandbox)
    assert max(copies.values()) == 1  # nobody got the message twice
    unknown = {who for who, error in outcome.errors.items() if error["status"] == "unknown_delivery"}
    assert 0 < len(unknown) <= KILL_MAX_UNFLUSHED
    assert all("cut off" in outcome.errors[who]["reason"] for who in unknown)
    recipients = {normalize_phone(row["recipient"], "recipient") for row in make_rows(KILL_ROWS)}
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
    rows = make_rows(40)

    def send(recipient: str, message: Message) -> str:
        time.sleep(0.02 if int(recipient[-1]) % 2 == 0 else 0.0)  # the odd rows' answers come first
        return f"id-{recipient}"

    store = make_store(backend, batch.lease_owner(1))
    outcome = make_engine(send, concurrency=4, progress=store).run(rows)
    store.complete(outcome.result(), rows_digest=outcome.rows_digest)
    in_rows_order = [normalize_phone(row["recipient"], "recipient") for row in rows]
    assert list(outcome.message_ids) == in_rows_order
    assert list(replay_batch(backend, rows).result()["message_ids"]) == in_rows_order
