"""
The batch engine's window logic (:class:`~airflow_provider_itnio.batch.BatchSender` with a fallback template) and
the operators' argument checks, without a server: the window reader is a function the test controls.

The end-to-end behaviour through a real API server is in tests/integration/test_window.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_itnio import messages as m
from airflow_provider_itnio.batch import BatchSender, MemoryBackend, MessagePlan, ProgressStore
from airflow_provider_itnio.window import (
    SESSION,
    TEMPLATE,
    ItnioWindowUnknownError,
    check_fallback,
    receiver_available,
)
from tests.support.batch import FALLBACK, MESSAGE

needs_receiver = pytest.mark.skipif(not receiver_available(), reason="fallback_template needs Airflow 3.1+")


class Recorder:
    """The engine's ``send``: records what each recipient got."""

    def __init__(self) -> None:
        self.sent: dict[str, m.Message] = {}

    def __call__(self, recipient: str, message: m.Message) -> str:
        self.sent[recipient] = message
        return f"id-{recipient}"


def rows(n: int) -> list[dict[str, Any]]:
    return [{"recipient": f"1555060{i:04d}", "name": f"N{i}", "template": "order_update"} for i in range(n)]


def engine(send: Recorder, choose: Any, **kwargs: Any) -> BatchSender:
    return BatchSender(
        send,
        MessagePlan(MESSAGE),
        fallback=MessagePlan(FALLBACK, factory=check_fallback),
        choose=choose,
        concurrency=2,
        **kwargs,
    )


def test_each_row_gets_what_its_window_allows_and_windows_are_asked_a_chunk_at_a_time() -> None:
    asked: list[list[str]] = []

    def choose(recipients: list[str]) -> dict[str, str]:
        asked.append(recipients)
        return {r: SESSION if int(r[-1]) % 2 == 0 else TEMPLATE for r in recipients}

    send = Recorder()
    outcome = engine(send, choose, window_chunk=3).run(rows(7))
    assert [len(chunk) for chunk in asked] == [3, 3, 1]
    assert outcome.result()["sent_by_kind"] == {"session": 4, "template": 3}
    assert sorted(outcome.result()["template_recipients"]) == ["15550600001", "15550600003", "15550600005"]
    assert isinstance(send.sent["15550600000"], m.Text)
    template = send.sent["15550600001"]
    assert isinstance(template, m.Template) and template.components[0]["parameters"][0]["text"] == "N1"


def test_without_a_fallback_the_result_is_unchanged() -> None:
    outcome = BatchSender(Recorder(), MessagePlan(MESSAGE), concurrency=2).run(rows(2))
    assert "sent_by_kind" not in outcome.result() and "template_recipients" not in outcome.result()


def test_windows_that_cannot_be_read_stop_the_batch_before_those_rows_and_a_retry_resumes() -> None:
    calls = [0]

    def choose(recipients: list[str]) -> dict[str, str]:
        calls[0] += 1
        if calls[0] == 2:
            raise ItnioWindowUnknownError(ConnectionError("refused"), "itnio_default")
        return dict.fromkeys(recipients, SESSION)

    store = ProgressStore(MemoryBackend(), "ledger")
    send = Recorder()
    outcome = engine(send, choose, window_chunk=2, progress=store).run(rows(5))
    assert isinstance(outcome.aborted, ItnioWindowUnknownError)
    assert (outcome.sent, outcome.not_attempted) == (2, 3)
    assert sorted(send.sent) == ["15550600000", "15550600001"]

    store.release_lease()
    retry = Recorder()
    again = engine(
        retry, lambda rs: dict.fromkeys(rs, TEMPLATE), window_chunk=2, progress=ProgressStore(store.backend, "ledger")
    )
    outcome = again.run(rows(5))
    assert (outcome.sent, outcome.skipped_already_sent) == (3, 2)
    assert sorted(retry.sent) == ["15550600002", "15550600003", "15550600004"]
    assert outcome.result()["sent_by_kind"] == {"session": 0, "template": 3}


def test_a_row_whose_fallback_renders_to_an_invalid_template_fails_alone() -> None:
    data = rows(3)
    data[1]["template"] = "Not Valid"
    send = Recorder()
    outcome = engine(send, lambda rs: dict.fromkeys(rs, TEMPLATE)).run(data)
    assert (outcome.sent, outcome.failed) == (2, 1)
    assert "15550600001" not in send.sent
    assert outcome.errors["15550600001"]["status"] is not None


def test_check_fallback_names_the_field_and_refuses_a_session_message() -> None:
    with pytest.raises(ValueError, match=r"fallback_template\.template\.name"):
        check_fallback({"template": {"name": "Bad Name", "language": {"code": "en"}}})
    with pytest.raises(ValueError, match="fallback_template: must be a template"):
        check_fallback({"type": "text", "text": {"body": "hi"}})
    bare = check_fallback({"name": "order_update", "language": {"code": "en_US"}})  # the inner object is accepted
    assert bare.name == "order_update"


@needs_receiver
def test_the_operators_check_their_window_arguments() -> None:
    from airflow_provider_itnio.operators import ItnioSendTemplateOperator, ItnioSendTextOperator

    with pytest.raises(TypeError, match="does not take fallback_template"):
        ItnioSendTemplateOperator(
            task_id="t",
            recipient="15550600000",
            template_name="a",
            language="en",
            fallback_template=m.Template("a", "en"),
        )
    with pytest.raises(ValueError, match="window_unknown must be one of fail, template"):
        ItnioSendTextOperator(
            task_id="t", recipient="15550600000", body="hi", fallback_template=m.Template("a", "en"), window_unknown="x"
        )
    templated = ItnioSendTextOperator(
        task_id="t", recipient="15550600000", body="hi", fallback_template="{{ params.fallback }}"
    )  # checked when the task runs
    assert templated.fallback_template == "{{ params.fallback }}"
    assert "fallback_template" in templated.template_fields


@needs_receiver
def test_a_connection_without_webhook_token_is_a_permanent_window_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_itnio.window import WindowChooser

    monkeypatch.setenv(
        "AIRFLOW_CONN_ITNIO_WINDOW_NO_TOKEN", '{"conn_type": "itnio", "extra": {"receiver_url": "http://127.0.0.1:9"}}'
    )
    with pytest.raises(ItnioWindowUnknownError, match="has no 'webhook_token' extra") as caught:
        WindowChooser("itnio_window_no_token").kind("15550001111", "15550600000")
    assert caught.value.permanent  # a retry cannot fix the configuration: AirflowFailException in the operators
    template = WindowChooser("itnio_window_no_token", window_unknown="template").kind("15550001111", "15550600000")
    assert template == TEMPLATE


@needs_receiver
def test_the_window_counts_from_the_customer_s_timestamp_when_it_is_believable(tmp_path: Any) -> None:
    """
    The store keeps when the customer wrote (the push's ``timestamp``) apart from when the push arrived, and the
    window reads the former: a re-push 9 minutes late or a backlog 3 days late counts from the timestamp; a
    timestamp after the arrival, older than ``MAX_PUSH_DELAY``, absent or beyond any date counts from the arrival.
    """
    import datetime

    from sqlalchemy.orm import Session

    from airflow_provider_itnio.events import parse_push
    from airflow_provider_itnio.webhook import store
    from tests.support.pushes import BUSINESS, MESSAGES, inbound
    from tests.support.store_contract import store_engine

    arrival = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
    now = int(arrival.timestamp())
    cases = {  # customer: (the push's timestamp, when the window counts from)
        "15550700001": (now - 9 * 60, now - 9 * 60),  # the third re-push
        "15550700002": (now - 3 * 86400, now - 3 * 86400),  # a backlog
        "15550700003": (now + 7200, now),  # later than its arrival: the vendor's clock is ahead
        "15550700004": (now - int(store.MAX_PUSH_DELAY.total_seconds()) - 1, now),  # no delay is that long
        "15550700005": (None, now),  # no timestamp
        "15550700006": (2**62, now),  # beyond any date
    }
    with store_engine(f"sqlite:///{tmp_path / 'store.db'}") as engine, Session(engine) as session:
        for customer, (timestamp, _) in cases.items():
            push = inbound(
                MESSAGES["text"], messageId=f"m-{customer}", timestamp=timestamp, **{"from": {"phone": customer}}
            )
            if timestamp is None:
                push.pop("timestamp")
            store.record_push(session, parse_push(push), "itnio_default", now=arrival)
        # A later message from the first customer, delivered at once, moves their window on.
        later = inbound(MESSAGES["text"], messageId="m-later", timestamp=now + 60, **{"from": {"phone": "15550700001"}})
        store.record_push(session, parse_push(later), "itnio_default", now=arrival + datetime.timedelta(seconds=61))
        session.commit()
        found = store.last_inbounds_at(session, BUSINESS, [*cases, "15550700099"])
        single = store.last_inbound_at(session, BUSINESS, "15550700002")
    expected = {customer: wrote for customer, (_, wrote) in cases.items()} | {"15550700001": now + 60}
    assert {customer: int(moment.timestamp()) for customer, moment in found.items()} == expected
    assert all(moment.tzinfo is not None for moment in found.values())
    assert single == found["15550700002"]
