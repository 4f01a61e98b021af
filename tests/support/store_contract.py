"""
The webhook store's contract: the store tests that take an ``engine`` or ``session``, whatever the database.

They run on SQLite (and on ``ITNIO_TEST_POSTGRES_URL``'s PostgreSQL when set) in ``tests/unit/webhook/test_store.py``
and on the stack's PostgreSQL in ``tests/e2e/stack/test_pg_store.py``: each of those modules defines the
``engine`` fixture for its databases, imports :func:`session`, and takes the tests with :func:`contract_tests`
(a test added here runs in both). The pushes are the parser tests' pushes (built from the spec's field tables); the
expected statuses follow the spec's rule as :func:`airflow_provider_itnio.events.furthest` implements it.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from airflow_provider_itnio.events import InboundEvent, MessageStatus, furthest, parse_push
from airflow_provider_itnio.webhook import store
from airflow_provider_itnio.webhook.models import (
    hitl_tap_table,
    inbound_message_table,
    message_status_table,
    metadata,
    status_history_table,
)
from tests.support.pushes import APP_ID, BUSINESS, CUSTOMER, FAILED_PUSH, MESSAGES, SENT_ID, WHEN, inbound, status_push

UTC = datetime.UTC
T0 = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


PROGRESS = ("sent", "delivered", "read")


#: A tap on an approval button (its id is one of the notifier's: ``hitl1.``), as the vendor pushes it.
TAP = {
    "type": "interactive",
    "interactive": {"type": "button_reply", "button_reply": {"id": "hitl1." + "0" * 32 + ".0..x.y", "title": "Go"}},
}


@contextlib.contextmanager
def store_engine(url: str) -> Iterator[Engine]:
    """
    Yield an engine on ``url`` with the provider's tables created empty (on a server, dropped before and after).

    :param url: A SQLAlchemy URL (``tests/e2e/stack/test_pg_store.py`` passes the stack's PostgreSQL).
    """
    engine = create_engine(url)
    server = engine.dialect.name != "sqlite"
    if server:
        metadata.drop_all(engine)
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        if server:
            metadata.drop_all(engine)
        engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


def record(session: Session, push: dict[str, Any], *, conn_id: str = "itnio_default", at: int = 0) -> store.Recorded:
    """Record ``push`` as the receiver does (parse, record, commit), ``at`` minutes after T0."""
    recorded = store.record_push(session, parse_push(push), conn_id, now=T0 + datetime.timedelta(minutes=at))
    session.commit()
    return recorded


def count(session: Session, table: Any) -> int:
    return int(session.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_status_push_is_recorded_once_under_the_vendors_re_pushes(session: Session) -> None:
    push = status_push(status="delivered", unknownField={"kept": True})
    answers = [record(session, push, at=minute) for minute in (0, 1, 3, 5)]  # the vendor's re-push schedule

    assert [a.new for a in answers] == [True, False, False, False]
    assert [a.status for a in answers] == [MessageStatus.DELIVERED] * 4
    assert count(session, status_history_table) == 1
    assert count(session, message_status_table) == 1
    [history] = store.get_status_history(session, SENT_ID)
    assert history["status"] == "delivered"
    assert history["raw"]["unknownField"] == {"kept": True}
    assert history["received_at"] == T0
    record_ = store.get_message_status(session, SENT_ID)
    assert record_ is not None
    assert record_.updated_at == T0  # the re-pushes changed nothing


@pytest.mark.parametrize("order", list(itertools.permutations(PROGRESS)), ids="-".join)
def test_statuses_keep_their_furthest_progress_whatever_the_arrival_order(
    session: Session, order: tuple[str, ...]
) -> None:
    answers = [record(session, status_push(status=word, timestamp=WHEN + i), at=i) for i, word in enumerate(order)]

    expected = functools.reduce(furthest, order, None)
    assert expected == MessageStatus.READ  # the spec: read beats delivered whatever the arrival order
    record_ = store.get_message_status(session, SENT_ID, app_id=APP_ID)
    assert record_ is not None
    assert record_.status == MessageStatus.READ
    assert all(a.new for a in answers)
    # A push advances the message exactly when it is further than everything before it.
    assert [a.advanced for a in answers] == [
        furthest(functools.reduce(furthest, order[:i], None), word) != functools.reduce(furthest, order[:i], None)
        for i, word in enumerate(order)
    ]
    # The history keeps every status, in arrival order, with the vendor's timestamps.
    history = store.get_status_history(session, SENT_ID)
    assert [h["status"] for h in history] == list(order)
    assert [h["status_timestamp"] for h in history] == [WHEN + i for i in range(3)]
    # status_timestamp / updated_at are those of the push that set the status.
    assert record_.status_timestamp == WHEN + order.index("read")
    assert record_.updated_at == T0 + datetime.timedelta(minutes=order.index("read"))
    assert record_.created_at == T0


@pytest.mark.parametrize("final", ["failed", "deleted"])
def test_a_final_status_beats_progress_and_is_never_replaced(session: Session, final: str) -> None:
    reason = FAILED_PUSH["failure"] if final == "failed" else None
    record(session, status_push(status="delivered"))
    assert record(session, status_push(status=final, failure=reason), at=1).advanced
    later = [record(session, status_push(status=word), at=2 + i) for i, word in enumerate(["read", "sent"])]
    other_final = "deleted" if final == "failed" else "failed"
    later.append(record(session, status_push(status=other_final, failure="too late"), at=5))

    assert [a.advanced for a in later] == [False, False, False]
    assert [a.status for a in later] == [MessageStatus(final)] * 3
    record_ = store.get_message_status(session, SENT_ID)
    assert record_ is not None
    assert (record_.status, record_.failure) == (MessageStatus(final), reason)
    assert record_.updated_at == T0 + datetime.timedelta(minutes=1)
    assert [h["status"] for h in store.get_status_history(session, SENT_ID)] == [
        "delivered",
        final,
        "read",
        "sent",
        other_final,
    ]


def test_a_failure_arriving_first_is_kept_with_its_reason(session: Session) -> None:
    record(session, dict(FAILED_PUSH))
    record(session, status_push(status="sent"), at=1)  # a late "sent" after the failure
    record_ = store.get_message_status(session, SENT_ID)
    assert record_ is not None
    assert record_.status == MessageStatus.FAILED
    assert record_.failure == FAILED_PUSH["failure"]
    assert record_.to_dict()["status"] == "failed"
    assert record_.to_dict()["updated_at"] == T0.isoformat()
    assert (record_.recipient, record_.business_phone, record_.conn_id) == (CUSTOMER, BUSINESS, "itnio_default")


def test_racing_pushes_of_one_message_are_recorded_once_and_end_at_the_furthest_status(engine: Engine) -> None:
    """Eight sessions at once (the API server's workers): each push once, the status never moves backwards."""
    pushes = [status_push(status=word) for word in ("read", "delivered", "sent", "read")] * 2
    start = threading.Barrier(len(pushes))
    answers: list[store.Recorded] = []

    def push(body: dict[str, Any]) -> None:
        with Session(engine) as session:
            start.wait()
            answers.append(store.record_push(session, parse_push(body), "itnio_default", now=T0))
            session.commit()

    threads = [threading.Thread(target=push, args=(body,)) for body in pushes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(answers) == len(pushes)
    assert sorted(a.new for a in answers) == [False] * 5 + [True] * 3  # three distinct statuses, each once
    with Session(engine) as session:
        record_ = store.get_message_status(session, SENT_ID)
        assert record_ is not None and record_.status == MessageStatus.READ
        assert sorted(h["status"] for h in store.get_status_history(session, SENT_ID)) == ["delivered", "read", "sent"]


def test_the_same_message_id_of_another_app_is_another_message(session: Session) -> None:
    record(session, status_push(status="read"))
    record(session, status_push(status="sent", appId="7WY0BQ7W"))
    assert count(session, message_status_table) == 2
    mine = store.get_message_status(session, SENT_ID, app_id=APP_ID)
    theirs = store.get_message_status(session, SENT_ID, app_id="7WY0BQ7W")
    assert mine is not None and theirs is not None
    assert (mine.status, theirs.status) == (MessageStatus.READ, MessageStatus.SENT)
    assert store.get_message_status(session, "no-such-message") is None


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_an_inbound_message_is_recorded_once_and_kept_whole(session: Session, kind: str) -> None:
    push = inbound(MESSAGES[kind], messageId=f"wamid.{kind}", somethingNew=[1, 2])
    answers = [record(session, push, at=minute) for minute in (0, 1, 3, 5)]

    assert [a.new for a in answers] == [True, False, False, False]
    rows = session.execute(select(inbound_message_table)).mappings().all()
    assert len(rows) == 1
    [row] = rows
    event = parse_push(push)
    assert isinstance(event, InboundEvent)
    assert row["type"] == MESSAGES[kind]["type"]  # unknown types kept as sent
    assert (row["message_id"], row["from_phone"], row["business_phone"]) == (f"wamid.{kind}", CUSTOMER, BUSINESS)
    assert (row["name"], row["text"], row["reply"], row["location"], row["media"]) == (
        event.name,
        event.text,
        event.reply,
        event.location,
        event.media,
    )
    assert row["raw"] == push  # unknown fields kept
    assert row["received_at"] == T0
    assert row["message_timestamp"] == WHEN + 60


def test_the_same_inbound_message_id_of_another_app_is_another_message(session: Session) -> None:
    record(session, inbound(MESSAGES["text"]))
    assert record(session, inbound(MESSAGES["text"], appId="7WY0BQ7W")).new
    assert count(session, inbound_message_table) == 2


def test_last_inbound_at_is_the_latest_message_from_that_customer_to_that_number(session: Session) -> None:
    assert store.last_inbound_at(session, BUSINESS, CUSTOMER) is None
    record(session, inbound(MESSAGES["text"], messageId="m1"), at=0)
    record(session, inbound(MESSAGES["text"], messageId="m2"), at=30)
    record(session, inbound(MESSAGES["text"], messageId="m3", businessPhone="15550001111"), at=60)
    assert store.last_inbound_at(session, BUSINESS, CUSTOMER) == T0 + datetime.timedelta(minutes=30)
    assert store.last_inbound_at(session, "15550001111", CUSTOMER) == T0 + datetime.timedelta(minutes=60)
    assert store.last_inbound_at(session, BUSINESS, "15550009999") is None
    # Scoped to an application (the read API answers only its connection's application).
    assert store.last_inbound_at(session, BUSINESS, CUSTOMER, app_id=APP_ID) == T0 + datetime.timedelta(minutes=30)
    assert store.last_inbound_at(session, BUSINESS, CUSTOMER, app_id="7WY0BQ7W") is None


def test_cleanup_deletes_only_what_is_older_than_the_cut_off(session: Session) -> None:
    day = 24 * 60
    record(session, status_push(status="sent", messageId="old"), at=0)
    record(session, status_push(status="sent", messageId="moving"), at=0)
    record(session, status_push(status="read", messageId="moving"), at=10 * day)
    record(session, inbound(MESSAGES["text"], messageId="old-in"), at=0)
    record(session, inbound(MESSAGES["text"], messageId="new-in"), at=10 * day)
    record(session, inbound(TAP, messageId="old-tap"), at=0)  # an approval tap, still pending: deleted with its push

    deleted = store.cleanup(session, T0 + datetime.timedelta(days=5))
    session.commit()

    assert deleted == {
        "itnio_status_history": 2,
        "itnio_inbound_message": 2,
        "itnio_hitl_tap": 1,
        "itnio_message_status": 1,
    }
    assert count(session, hitl_tap_table) == 0
    assert store.get_message_status(session, "old") is None
    moving = store.get_message_status(session, "moving")
    assert moving is not None and moving.status == MessageStatus.READ
    assert [h["status"] for h in store.get_status_history(session, "moving")] == ["read"]
    assert session.execute(select(inbound_message_table.c.message_id)).scalars().all() == ["new-in"]
    # A re-push of a status deleted by the retention is recorded again (it is new to the store).
    assert record(session, status_push(status="sent", messageId="old"), at=11 * day).new


def test_a_pending_tap_that_keeps_failing_backs_off_and_lets_the_sweep_reach_newer_ones(session: Session) -> None:
    """The sweep's order: due taps, most overdue first; an attempt moves the tap back by its backoff."""
    minute = datetime.timedelta(minutes=1)
    record(session, inbound(TAP, messageId="stuck"), at=0)
    record(session, inbound(TAP, messageId="newer"), at=1)
    assert store.pending_taps(session, T0, 10) == []  # not due before TAP_SWEEP_AFTER
    assert [t.message_id for t in store.pending_taps(session, T0 + 2 * minute, 1)] == ["stuck"]
    stuck, newer = store.pending_taps(session, T0 + 2 * minute, 5)
    assert (stuck.message_id, stuck.attempts, newer.message_id) == ("stuck", 0, "newer")
    assert stuck.raw["messageId"] == "stuck"
    # An attempt (which fails) books the next one later: the newer tap comes first now, even with a batch of one.
    assert store.note_tap_attempt(session, stuck.id, 0, T0 + 10 * minute)
    assert not store.note_tap_attempt(session, stuck.id, 0, T0 + 10 * minute)  # another sweep saw it first
    session.commit()
    assert [t.message_id for t in store.pending_taps(session, T0 + 2 * minute, 1)] == ["newer"]
    assert [t.message_id for t in store.pending_taps(session, T0 + 10 * minute, 5)] == ["newer", "stuck"]
    store.give_up_tap(session, stuck.id)
    session.commit()
    assert [t.message_id for t in store.pending_taps(session, T0 + 60 * minute, 5)] == ["newer"]
    rows = session.execute(select(hitl_tap_table.c.message_id, hitl_tap_table.c.state, hitl_tap_table.c.attempts))
    assert sorted(rows.all()) == [("newer", "pending", 0), ("stuck", "failed", 1)]  # no ORDER BY: PostgreSQL's order
    # A claimed tap says when its push arrived (a late tap is judged by it).
    assert store.claim_tap(session, APP_ID, "newer", T0 + 60 * minute) == T0 + minute
    assert store.claim_tap(session, APP_ID, "newer", T0 + 60 * minute) is None


def test_naive_datetimes_are_refused(session: Session) -> None:
    with pytest.raises(Exception, match="timezone-aware"):
        store.record_push(session, parse_push(status_push()), "itnio_default", now=datetime.datetime(2026, 1, 1))
    session.rollback()
    assert count(session, status_history_table) == 0


def contract_tests() -> dict[str, Callable[..., Any]]:
    """Return this module's tests (each takes ``engine`` or ``session``) by name, for a test module's namespace."""
    return {name: test for name, test in globals().items() if name.startswith("test_") and callable(test)}
