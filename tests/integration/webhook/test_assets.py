"""
Asset events and the read API of the webhook receiver, through a real Airflow 3 API server (one for this module).

The server is :func:`tests.support.receiver.server` (same connections, same token, the token checked absent
from its log at the end). ``airflow dags reserialize`` parses the session's DAGs folder, which holds
``tests/dags/itnio_webhook_assets.py``: a DAG scheduled on ``inbound_messages("itnio_webhook_test")`` and
``message_status("itnio_webhook_test", "failed")``, so those two assets are in the metadata database and the
receiver records events on them. The expected ``extra`` follows the issue's field list and
:func:`airflow_provider_itnio.events.asset_extra`.

On Airflow 2 the server tests are skipped; the tests at the end check that the assets and the client modules refuse
to import there with an error that says Airflow 3.1+ is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.paths import TEST_DAGS
from tests.support.pushes import APP_ID, BUSINESS, CUSTOMER, FAILED_PUSH, MESSAGES, WHEN, inbound, status_push
from tests.support.receiver import (
    AIRFLOW_2,
    CONN_ID,
    DAG_ID,
    FAILED_URI,
    INBOUND_URI,
    NARROWED_URIS,
    OTHER_TOKEN,
    TOKEN,
    Server,
    needs_airflow_3,
    server_env,
    settle,
)
from tests.support.servers import api_server as api_server_process
from tests.support.servers import free_port


def events_of(server: Server, uri: str, message_id: str) -> list[dict[str, Any]]:
    """Return the asset events on ``uri`` whose extra names ``message_id``, oldest first, once the outbox is empty."""
    settle(server)
    return events_of_now(server, uri, message_id)


def events_of_now(server: Server, uri: str, message_id: str) -> list[dict[str, Any]]:
    """Return the asset events on ``uri`` whose extra names ``message_id``, oldest first, as they are now."""
    rows = server.rows(
        "SELECT e.id, e.extra, e.source_dag_id FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "WHERE a.uri = :uri ORDER BY e.id",
        uri=uri,
    )
    extras = [{**row, "extra": json.loads(row["extra"])} for row in rows]
    return [row for row in extras if row["extra"].get("message_id") == message_id]


def unpause(server: Server, paused: bool = False, dag_ids: tuple[str, ...] = (DAG_ID,)) -> None:
    with server.engine.begin() as connection:
        for dag_id in dag_ids:
            connection.exec_driver_sql("UPDATE dag SET is_paused = ? WHERE dag_id = ?", (paused, dag_id))


# -- asset events ------------------------------------------------------------------------------------------


@pytest.mark.api_server
@needs_airflow_3
def test_an_inbound_message_is_one_asset_event_with_the_reply_and_queues_the_dag(scheduled: Server) -> None:
    server = scheduled
    unpause(server)
    try:
        tap = inbound(MESSAGES["button_reply"], messageId="wamid.assets-tap", context={"refMessageId": "out-9"})
        answers = [server.push(tap) for _ in range(4)]  # the push and the vendor's three re-pushes
        settle(server)  # the DAG is queued when the writer writes the event: unpaused until then
    finally:
        unpause(server, paused=True)
    assert [a.json()["duplicate"] for a in answers] == [False, True, True, True]

    [event] = events_of(server, INBOUND_URI, "wamid.assets-tap")
    extra = event["extra"]
    assert {key: extra[key] for key in ("message_id", "from", "name", "business_phone", "type")} == {
        "message_id": "wamid.assets-tap",
        "from": CUSTOMER,
        "name": "Asha",
        "business_phone": BUSINESS,
        "type": "interactive",
    }
    assert extra["reply"] == {"id": "reschedule", "title": "Reschedule"}
    assert (extra["text"], extra["location"], extra["timestamp"]) == (None, None, WHEN + 60)
    assert extra["raw"] == tap  # the whole push, unknown fields ("context") kept
    assert event["source_dag_id"] is None  # recorded by the receiver, not by a task
    # The DAG scheduled on the asset (unpaused) is queued to run once: what the scheduler turns into a run.
    queued = server.rows(
        "SELECT q.target_dag_id FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id WHERE a.uri = :uri",
        uri=INBOUND_URI,
    )
    assert queued == [{"target_dag_id": DAG_ID}]


@pytest.mark.api_server
@needs_airflow_3
def test_text_and_location_messages_carry_their_content(scheduled: Server) -> None:
    text = inbound(MESSAGES["text"], messageId="wamid.assets-text")
    where = inbound(MESSAGES["location"], messageId="wamid.assets-location")
    assert [scheduled.push(p).status_code for p in (text, where)] == [200, 200]
    [text_event] = events_of(scheduled, INBOUND_URI, "wamid.assets-text")
    [where_event] = events_of(scheduled, INBOUND_URI, "wamid.assets-location")
    assert (text_event["extra"]["text"], text_event["extra"]["reply"]) == ("Can I move my appointment?", None)
    location = where_event["extra"]["location"]
    assert (location["latitude"], location["longitude"], location["name"]) == (39.916527, 116.397128, "Office")


@pytest.mark.api_server
@needs_airflow_3
def test_a_failed_status_is_one_asset_event_and_other_statuses_none(scheduled: Server) -> None:
    message_id = "assets-failed-test"
    sent = scheduled.push(status_push(messageId=message_id, status="sent"))
    failed = [scheduled.push({**FAILED_PUSH, "messageId": message_id}) for _ in range(3)]
    assert sent.status_code == 200  # no DAG uses the "sent" asset: recorded in the store, no event, no error
    assert [a.json()["duplicate"] for a in failed] == [False, True, True]

    [event] = events_of(scheduled, FAILED_URI, message_id)
    assert event["extra"] == {
        "message_id": message_id,
        "recipient": CUSTOMER,
        "business_phone": BUSINESS,
        "status": "failed",
        "failure": FAILED_PUSH["failure"],
        "timestamp": FAILED_PUSH["timestamp"],
        "raw": {**FAILED_PUSH, "messageId": message_id},
    }
    assert events_of(scheduled, INBOUND_URI, message_id) == []
    sent_assets = scheduled.rows("SELECT id FROM asset WHERE uri = :uri", uri=f"itnio://{CONN_ID}/status/sent")
    assert sent_assets == []
    [row] = scheduled.rows("SELECT status FROM itnio_message_status WHERE message_id = :m", m=message_id)
    assert row["status"] == "failed"


@contextlib.contextmanager
def refused_inserts(server: Server, table: str) -> Iterator[None]:
    """Make the database refuse every insert into ``table`` while inside (a SQLite trigger)."""
    with server.engine.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE TRIGGER itnio_test_refuse BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    try:
        yield
    finally:
        with server.engine.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER itnio_test_refuse")


@pytest.mark.api_server
@needs_airflow_3
def test_the_asset_event_is_kept_in_the_same_transaction_as_the_store_write(scheduled: Server) -> None:
    """A database refusing the push's outbox row refuses the push (503, nothing stored); the re-push records both."""
    push = inbound(MESSAGES["text"], messageId="wamid.assets-atomic")
    with refused_inserts(scheduled, "itnio_asset_outbox"):
        refused = scheduled.push(push)
    assert refused.status_code == 503, refused.text
    assert scheduled.rows("SELECT id FROM itnio_inbound_message WHERE message_id = 'wamid.assets-atomic'") == []

    again = scheduled.push(push)  # the vendor's re-push
    assert (again.status_code, again.json()["duplicate"]) == (200, False)
    assert len(scheduled.rows("SELECT id FROM itnio_inbound_message WHERE message_id = 'wamid.assets-atomic'")) == 1
    assert len(events_of(scheduled, INBOUND_URI, "wamid.assets-atomic")) == 1


@pytest.mark.api_server
@needs_airflow_3
def test_an_asset_event_the_database_refuses_stays_in_the_outbox_and_is_written_once_it_is_accepted(
    scheduled: Server,
) -> None:
    """
    The push is recorded and answered 200 at once; its event, which Airflow's table refuses, stays in the outbox
    (the writer logs it) while other events are written, and is written exactly once at the writer's next turn
    after the database accepts it.
    """
    refused_push = inbound(MESSAGES["text"], messageId="wamid.assets-refused")
    with refused_inserts(scheduled, "asset_event"):
        answer = scheduled.push(refused_push)
        assert (answer.status_code, answer.json()["duplicate"]) == (200, False)
        deadline = time.monotonic() + 15
        while "kept to try again" not in scheduled.log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the writer did not try the refused event"
            time.sleep(0.1)
        [kept] = scheduled.rows("SELECT extra FROM itnio_asset_outbox")
        assert json.loads(kept["extra"])["message_id"] == "wamid.assets-refused"
    assert len(scheduled.rows("SELECT id FROM itnio_inbound_message WHERE message_id = 'wamid.assets-refused'")) == 1

    after = inbound(MESSAGES["text"], messageId="wamid.assets-after-refused")  # the writer's next turn
    assert scheduled.push(after).status_code == 200
    assert len(events_of(scheduled, INBOUND_URI, "wamid.assets-refused")) == 1
    assert len(events_of(scheduled, INBOUND_URI, "wamid.assets-after-refused")) == 1


def _tap(reply_id: str, message_id: str, sender: str = CUSTOMER, title: str = "Approve") -> dict[str, Any]:
    """Return the push of a tap on a reply button whose id is ``reply_id``."""
    reply = {"type": "button_reply", "button_reply": {"id": reply_id, "title": title}}
    return inbound({"type": "interactive", "interactive": reply}, messageId=message_id, **{"from": {"phone": sender}})


def _text(body: str, message_id: str) -> dict[str, Any]:
    return inbound({"type": "text", "text": {"body": body}}, messageId=message_id)


def _queued_for(server: Server, dag_ids: Any) -> list[tuple[str, str]]:
    """Return ``(dag_id, asset uri)`` of the asset queue rows of ``dag_ids``, sorted."""
    rows = server.rows(
        "SELECT q.target_dag_id, a.uri FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id ORDER BY 1, 2"
    )
    return [(row["target_dag_id"], row["uri"]) for row in rows if row["target_dag_id"] in set(dag_ids)]


@pytest.mark.api_server
@needs_airflow_3
def test_a_tap_on_an_approval_button_is_no_inbound_asset_event(scheduled: Server) -> None:
    """
    What the issue saw (one tap on "Reschedule", 5 runs of the DAG scheduled on every inbound message): a session
    of 5 inbound messages, each an asset event that queues the DAG again. Here: the customer writes "Hi", taps an
    approval's button, taps it again, a stranger taps the same button (a relayed message), and the customer taps
    "Reschedule". The approval taps (any id with the HITL notifier's prefix, whether it verifies or not: the
    approval layer answers them) are recorded in the store and start nothing; the other two are events.
    """
    from airflow_provider_itnio.hitl_buttons import ID_PREFIX

    approval = f"{ID_PREFIX}.{'0' * 31}1.0..{'A' * 16}.{'B' * 16}"  # the shape of a notifier's id (not signed)
    pushes = [
        _text("Hi", "wamid.approval-hi"),
        _tap(approval, "wamid.approval-tap"),
        _tap(approval, "wamid.approval-tap-again"),
        _tap(approval, "wamid.approval-stranger", sender="15550109999"),
        _tap(f"{ID_PREFIX}.not-even-an-id", "wamid.approval-garbled"),
        _tap("reschedule:APT-5", "wamid.approval-reschedule", title="Reschedule"),
    ]
    with scheduled.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM asset_dag_run_queue WHERE target_dag_id = ?", (DAG_ID,))
    unpause(scheduled)
    try:
        answers = [scheduled.push(push) for push in pushes]
        settle(scheduled)
    finally:
        unpause(scheduled, paused=True)
    assert [(a.status_code, a.json()["duplicate"]) for a in answers] == [(200, False)] * len(pushes)
    ids = [push["messageId"] for push in pushes]
    stored = scheduled.rows("SELECT message_id FROM itnio_inbound_message WHERE message_id LIKE 'wamid.approval-%'")
    assert sorted(row["message_id"] for row in stored) == sorted(ids)  # every one recorded
    events = {message_id: len(events_of_now(scheduled, INBOUND_URI, message_id)) for message_id in ids}
    assert events == {
        "wamid.approval-hi": 1,
        "wamid.approval-tap": 0,
        "wamid.approval-tap-again": 0,
        "wamid.approval-stranger": 0,
        "wamid.approval-garbled": 0,
        "wamid.approval-reschedule": 1,
    }
    for uri in NARROWED_URIS.values():  # no narrowed asset takes them either (any tap's included)
        assert [m for m in ids[1:5] if events_of_now(scheduled, uri, m)] == [], uri
    assert _queued_for(scheduled, [DAG_ID]) == [(DAG_ID, INBOUND_URI)]


@pytest.mark.api_server
@needs_airflow_3
def test_a_narrowed_inbound_asset_gets_only_the_messages_it_takes_and_queues_only_its_dag(
    scheduled: Server,
) -> None:
    """
    DAGs scheduled on narrowed inbound assets (tests/dags/itnio_webhook_narrowed.py): by reply id (a prefix, any
    tap), by keyword (whole words, any case and spacing), by message type, and by type and reply id together.
    Each push is an event of the unnarrowed asset and of exactly the narrowed ones whose filter takes it, once
    (a re-push records nothing); each narrowed DAG is queued only by the messages it takes.
    """
    pushes = {
        "reschedule": _tap("reschedule:APT-311", "wamid.narrow-reschedule", title="Reschedule"),
        "keep": _tap("keep:APT-311", "wamid.narrow-keep", title="Keep"),
        "stop": _text("Please STOP sending me these", "wamid.narrow-stop"),
        "opt-out": _text("I want to  Opt\nOUT.", "wamid.narrow-opt-out"),
        "stopwatch": _text("Is the stopwatch on sale?", "wamid.narrow-stopwatch"),
        "sticker": inbound(MESSAGES["sticker"], messageId="wamid.narrow-sticker"),
        "caption": inbound(
            {"type": "image", "image": {**MESSAGES["image"]["image"], "caption": "stop"}},
            messageId="wamid.narrow-caption",
        ),
        "quick-reply": inbound(
            {"type": "button", "button": {"payload": "keep:APT-312", "text": "Keep"}},
            messageId="wamid.narrow-quick-reply",
        ),
    }
    dags = tuple(NARROWED_URIS)
    with scheduled.engine.begin() as connection:
        for dag_id in dags:
            connection.exec_driver_sql("DELETE FROM asset_dag_run_queue WHERE target_dag_id = ?", (dag_id,))
    unpause(scheduled, dag_ids=dags)
    try:
        answers = [scheduled.push(push) for push in pushes.values()]
        again = scheduled.push(pushes["reschedule"])  # the vendor's re-push
        settle(scheduled)
    finally:
        unpause(scheduled, paused=True, dag_ids=dags)
    assert [(a.status_code, a.json()["duplicate"]) for a in answers] == [(200, False)] * len(pushes)
    assert again.json()["duplicate"] is True

    def taken(uri: str) -> dict[str, int]:
        counts = {name: len(events_of_now(scheduled, uri, push["messageId"])) for name, push in pushes.items()}
        return {name: count for name, count in counts.items() if count}

    assert taken(INBOUND_URI) == dict.fromkeys(pushes, 1)  # the unnarrowed asset: every one
    assert {dag_id: taken(uri) for dag_id, uri in NARROWED_URIS.items()} == {
        "itnio_webhook_on_reschedule_taps": {"reschedule": 1},
        "itnio_webhook_on_any_tap": {"reschedule": 1, "keep": 1, "quick-reply": 1},
        "itnio_webhook_on_stop_words": {"stop": 1, "opt-out": 1, "caption": 1},
        "itnio_webhook_on_stickers": {"sticker": 1},
        "itnio_webhook_on_keep_taps": {"keep": 1},  # the quick reply's type is "button", not "interactive"
    }
    [event] = events_of_now(scheduled, NARROWED_URIS["itnio_webhook_on_reschedule_taps"], "wamid.narrow-reschedule")
    assert event["extra"]["reply"] == {"id": "reschedule:APT-311", "title": "Reschedule"}
    assert event["extra"]["raw"] == pushes["reschedule"]
    assert _queued_for(scheduled, dags) == sorted(NARROWED_URIS.items())


@needs_airflow_3
def test_a_narrowed_asset_has_one_uri_per_filter_and_bad_filters_are_refused_naming_the_argument() -> None:
    from airflow.sdk import Asset

    from airflow_provider_itnio.assets import InboundFilter, inbound_filter, inbound_messages

    narrowed = inbound_messages("itnio_b", keywords=["Opt  Out", "stop"], message_type=["Text", "image"])
    assert narrowed.uri == "itnio://itnio_b/inbound?keyword=opt+out&keyword=stop&type=image&type=text"
    assert narrowed == inbound_messages("itnio_b", message_type=("image", "text"), keywords=("STOP", "opt out"))
    assert Asset(narrowed.uri).uri == narrowed.uri == narrowed.name  # Airflow's normalization changes nothing
    assert inbound_messages("itnio_b").uri == "itnio://itnio_b/inbound"  # unnarrowed: as before
    assert inbound_filter(narrowed.uri) == InboundFilter(
        message_types=frozenset({"text", "image"}), keywords=frozenset({"opt out", "stop"})
    )
    assert inbound_filter("itnio://itnio_b/inbound") is None
    assert inbound_filter("itnio://itnio_b/status/failed") is None

    refused = {
        "message_type": {"message_type": "free text"},
        "reply_ids": {"reply_ids": "re*schedule"},
        "keywords": {"keywords": ["stop", "  "]},
    }
    for argument, kwargs in refused.items():
        with pytest.raises(ValueError, match=f"^{argument}: "):
            inbound_messages("itnio_b", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^reply_ids: must name at least one"):
        inbound_messages("itnio_b", reply_ids=[])
    with pytest.raises(ValueError, match=r"^keywords: each must be a string; got 3"):
        inbound_messages("itnio_b", keywords=["stop", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="Airflow stores at most 1500"):
        inbound_messages("itnio_b", keywords=[f"word{n}" * 10 for n in range(40)])

    def takes(**kwargs: Any) -> Any:
        found = inbound_filter(inbound_messages("itnio_b", **kwargs).uri)
        assert found is not None
        return found.matches

    text = {"type": "text", "text": "Please STOP now", "reply": None}
    tap = {"type": "interactive", "text": None, "reply": {"id": "reschedule:APT-1", "title": "Reschedule"}}
    assert (takes(keywords="stop")(text), takes(keywords="sto")(text), takes(keywords="now")(tap)) == (
        True,
        False,
        False,
    )
    assert takes(reply_ids="reschedule:*")(tap) and not takes(reply_ids="reschedule:")(tap)
    assert takes(reply_ids="reschedule:APT-1")(tap) and not takes(reply_ids="*")(text)
    assert takes(message_type="interactive", reply_ids="*")(tap) and not takes(message_type="text", reply_ids="*")(tap)


def _server_pid(port: int) -> int:
    """Return the id of the process listening on ``port`` (an API server started by a test: its group's leader)."""
    import psutil

    for connection in psutil.net_connections(kind="tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == psutil.CONN_LISTEN:
            assert connection.pid is not None
            return os.getpgid(connection.pid)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.mark.api_server
@needs_airflow_3
def test_an_event_answered_just_before_the_api_server_is_killed_is_written_by_the_next_one(
    scheduled: Server, tmp_path: Path
) -> None:
    """
    A push answered 200 whose asset event was still in the outbox when its API server was SIGKILLed: the next API
    server process writes it at its writer's first turn, once.
    """
    settle(scheduled)
    pushes = [inbound(MESSAGES["text"], messageId=f"wamid.assets-killed-{n}") for n in range(3)]
    slow = server_env(tmp_path / "slow", AIRFLOW__ITNIO__WEBHOOK_ASSET_EVENTS_INTERVAL="3600")
    port = free_port()
    with api_server_process(port, tmp_path / "slow.log", slow) as base_url:
        killed = Server(base_url, tmp_path / "slow.log", scheduled.engine)
        assert killed.push(pushes[0]).status_code == 200
        assert len(events_of(killed, INBOUND_URI, "wamid.assets-killed-0")) == 1  # its first turn: at once
        assert killed.push(pushes[1]).status_code == 200  # the next turn: in an hour
        time.sleep(1.0)
        [kept] = scheduled.rows("SELECT extra FROM itnio_asset_outbox")
        assert json.loads(kept["extra"])["message_id"] == "wamid.assets-killed-1"
        os.killpg(_server_pid(port), signal.SIGKILL)
    assert scheduled.rows("SELECT id FROM itnio_inbound_message WHERE message_id = 'wamid.assets-killed-1'")
    assert len(events_of_now(scheduled, INBOUND_URI, "wamid.assets-killed-1")) == 0

    with api_server_process(free_port(), tmp_path / "next.log", server_env(tmp_path / "next")) as base_url:
        following = Server(base_url, tmp_path / "next.log", scheduled.engine)
        assert following.push(pushes[2]).status_code == 200
        counts = {
            message_id: len(events_of(following, INBOUND_URI, message_id))
            for message_id in (f"wamid.assets-killed-{n}" for n in range(3))
        }
    assert counts == {"wamid.assets-killed-0": 1, "wamid.assets-killed-1": 1, "wamid.assets-killed-2": 1}


def _record_in_one_group(scheduled_server: Server, tag: str) -> list[Any]:
    """
    Record, in one transaction of the receiver's writer (in this process), four inbound messages and three failed
    statuses (both assets the test DAG uses), a re-push and a ``delivered`` status (no DAG uses it), then write the
    outbox's asset events as the writer's next turn does; return the pushes, each with its settled future.
    """
    from airflow_provider_itnio.events import parse_push
    from airflow_provider_itnio.webhook.writer import _Push, record_group, write_asset_events

    settle(scheduled_server)  # the API server's writer has no turn at the outbox under way
    bodies = [
        inbound(MESSAGES["text"], messageId=f"wamid.{tag}-in-1"),
        _failed(f"wamid.{tag}-failed-1"),
        inbound(MESSAGES["button_reply"], messageId=f"wamid.{tag}-in-2"),
        _failed(f"wamid.{tag}-failed-2"),
        inbound(MESSAGES["text"], messageId=f"wamid.{tag}-in-1"),  # a re-push: no second event
        status_push(messageId=f"wamid.{tag}-delivered", status="delivered"),  # no DAG uses it: no event
        inbound(MESSAGES["location"], messageId=f"wamid.{tag}-in-3"),
        _failed(f"wamid.{tag}-failed-3"),
        inbound(MESSAGES["image"], messageId=f"wamid.{tag}-in-4"),
    ]
    pushes = [_Push(parse_push(json.dumps(body).encode()), CONN_ID) for body in bodies]
    record_group(pushes)
    written = write_asset_events()  # the writer's next turn at the outbox
    assert (written.taken, written.left) == (8, 0)  # every new push, the delivered one too (no DAG: no event)
    return pushes


def _failed(message_id: str) -> dict[str, Any]:
    return {**FAILED_PUSH, "messageId": message_id}


@pytest.mark.api_server
@needs_airflow_3
def test_a_group_records_what_one_asset_manager_call_per_push_records_with_one_call_per_asset(
    scheduled: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    In one transaction the receiver has Airflow's asset manager record the first event of each asset and writes
    the next ones of that asset itself (``webhook/asset_events.py``). Expected: exactly what the asset manager
    records when it is called for every event (the same group, other message ids, the shortcut turned off): the
    same events with the same fields, the same DAG queue rows, the same listener calls after the commit, in order.
    """
    from airflow.assets.manager import AssetManager
    from airflow.listeners import hookimpl
    from airflow.listeners.listener import get_listener_manager

    from airflow_provider_itnio.webhook import asset_events

    heard: list[tuple[str, str, str | None]] = []

    class Listener:
        @hookimpl
        def on_asset_changed(self, asset: Any) -> None:
            heard.append(("changed", asset.uri, None))

        @hookimpl
        def on_asset_event_emitted(self, asset_event: Any) -> None:
            heard.append(("emitted", asset_event.asset.uri, json.dumps(asset_event.extra, sort_keys=True)))

    manager_calls: list[str] = []
    register = AssetManager.register_asset_change.__func__  # type: ignore[attr-defined]

    @functools.wraps(register)
    def counted(cls: Any, **kwargs: Any) -> Any:
        manager_calls.append(kwargs["asset"].uri)
        return register(cls, **kwargs)

    monkeypatch.setattr(AssetManager, "register_asset_change", classmethod(counted))
    listener = Listener()
    get_listener_manager().add_listener(listener)

    def run(tag: str) -> dict[str, Any]:
        with scheduled.engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM asset_dag_run_queue WHERE target_dag_id = ?", (DAG_ID,))
        heard.clear()
        manager_calls.clear()
        started = datetime.datetime.now(datetime.UTC)
        pushes = _record_in_one_group(scheduled, tag)
        assert [push.future.result(0).new for push in pushes] == [True] * 4 + [False] + [True] * 4
        events = scheduled.rows(
            "SELECT a.uri, e.extra, e.source_dag_id, e.source_task_id, e.source_run_id, e.source_map_index, "
            "e.partition_key, e.timestamp FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE e.extra LIKE :tag ORDER BY a.uri, e.id",
            tag=f"%wamid.{tag}-%",
        )
        for event in events:
            stamp = datetime.datetime.fromisoformat(event.pop("timestamp")).replace(tzinfo=datetime.UTC)
            assert started - datetime.timedelta(seconds=1) <= stamp <= datetime.datetime.now(datetime.UTC)
        queue = scheduled.rows(
            "SELECT a.uri, q.target_dag_id FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id "
            "WHERE q.target_dag_id = :dag ORDER BY a.uri",
            dag=DAG_ID,
        )
        found = {"events": events, "queue": queue, "listeners": list(heard), "manager_calls": list(manager_calls)}
        return json.loads(json.dumps(found).replace(f"wamid.{tag}-", "wamid.<group>-"))

    try:
        unpause(scheduled)
        grouped = run("shortcut")
        monkeypatch.setattr(asset_events, "_with_extra", lambda notify, extra: None)  # every event: the manager
        one_call_each = run("each")
    finally:
        unpause(scheduled, paused=True)
        get_listener_manager().pm.unregister(listener)

    # 4 inbound, the tap also on the narrowed asset of any tap (in the inbound transaction), 3 failed; no re-push,
    # no delivered
    assert len(one_call_each["events"]) == 8
    # one transaction per asset, the asset of the oldest row first, each asset's events in the pushes' order
    any_tap = NARROWED_URIS["itnio_webhook_on_any_tap"]
    assert one_call_each["manager_calls"] == [INBOUND_URI] * 2 + [any_tap] + [INBOUND_URI] * 2 + [FAILED_URI] * 3
    assert {row["uri"] for row in one_call_each["queue"]} == {INBOUND_URI, FAILED_URI}
    assert len(one_call_each["listeners"]) == 16  # changed + emitted, per event
    assert grouped["manager_calls"] == [INBOUND_URI, any_tap, FAILED_URI]  # the first event of each asset
    assert {key: value for key, value in grouped.items() if key != "manager_calls"} == {
        key: value for key, value in one_call_each.items() if key != "manager_calls"
    }


@pytest.mark.api_server
@needs_airflow_3
def test_a_deployment_s_own_asset_manager_is_called_for_every_event(
    scheduled: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[core] asset_manager_class`` set to another class: the receiver takes no shortcut past it."""
    import airflow.assets.manager

    seen: list[str] = []

    class OwnManager(airflow.assets.manager.AssetManager):
        @classmethod
        def register_asset_change(cls, **kwargs: Any) -> Any:  # type: ignore[override]
            seen.append(kwargs["extra"]["message_id"])
            return super().register_asset_change(**kwargs)

    monkeypatch.setattr(airflow.assets.manager, "asset_manager", OwnManager())
    pushes = _record_in_one_group(scheduled, "own-manager")
    assert all(not isinstance(push.future.exception(0), BaseException) for push in pushes)
    # by outbox asset, then as they came; the tap also on the narrowed asset of any tap, right after its own
    order = ("in-1", "in-2", "in-2", "in-3", "in-4", "failed-1", "failed-2", "failed-3")
    assert seen == [f"wamid.own-manager-{name}" for name in order]
    assert len(events_of(scheduled, INBOUND_URI, "wamid.own-manager-in-4")) == 1


# -- the read API --------------------------------------------------------------------------------------------


def api(server: Server, path: str, token: str | None = TOKEN, conn_id: str = CONN_ID, **params: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(f"{server.base_url}/itnio/api/{conn_id}/{path}", headers=headers, params=params, timeout=30)


@pytest.mark.api_server
@needs_airflow_3
def test_the_status_endpoint_answers_the_furthest_status_and_its_history(server: Server) -> None:
    message_id = "api-status-test"
    for status, at in (("sent", WHEN), ("read", WHEN + 20), ("delivered", WHEN + 10)):
        assert server.push(status_push(messageId=message_id, status=status, timestamp=at)).status_code == 200
    answer = api(server, f"messages/{message_id}/status")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {k: body[k] for k in ("message_id", "status", "final", "failure", "recipient", "business_phone")} == {
        "message_id": message_id,
        "status": "read",
        "final": False,
        "failure": None,
        "recipient": CUSTOMER,
        "business_phone": BUSINESS,
    }
    assert datetime.datetime.fromisoformat(body["timestamp"]) == datetime.datetime.fromtimestamp(
        WHEN + 20, datetime.UTC
    )
    assert [(h["status"], h["timestamp"]) for h in body["history"]] == [
        (status, datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat())
        for status, at in (("sent", WHEN), ("read", WHEN + 20), ("delivered", WHEN + 10))
    ]

    failed_id = "api-status-failed-test"
    assert server.push({**FAILED_PUSH, "messageId": failed_id}).status_code == 200
    failed = api(server, f"messages/{failed_id}/status").json()
    assert (failed["status"], failed["final"], failed["failure"]) == ("failed", True, FAILED_PUSH["failure"])

    unknown = api(server, "messages/never-sent/status")
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "unknown message"})


@pytest.mark.api_server
@needs_airflow_3
def test_the_read_endpoints_answer_the_same_404_without_the_right_bearer_token(server: Server) -> None:
    message_id = "api-auth-test"
    assert server.push(status_push(messageId=message_id)).status_code == 200
    path = f"messages/{message_id}/status"
    window = {"business_phone": BUSINESS, "recipient": CUSTOMER}
    answers = {
        "wrong token": api(server, path, token=OTHER_TOKEN),
        "token of another length": api(server, path, token=TOKEN[:-1]),
        "no header": api(server, path, token=None),
        "unknown connection": api(server, path, conn_id="itnio_nobody"),
        "not an itnio connection": api(server, path, token=OTHER_TOKEN, conn_id="not_itnio_webhook"),
        "itnio connection without a token": api(server, path, conn_id="itnio_without_token"),
        "window, wrong token": api(server, "window", token=OTHER_TOKEN, **window),
        "window, no parameters, no header": api(server, "window", token=None),
        "basic instead of bearer": requests.get(
            f"{server.base_url}/itnio/api/{CONN_ID}/{path}", auth=("x", TOKEN), timeout=30
        ),
        "the token in the query": requests.get(
            f"{server.base_url}/itnio/api/{CONN_ID}/{path}", params={"token": TOKEN}, timeout=30
        ),
    }
    for name, response in answers.items():
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"}), name
    assert api(server, path).status_code == 200  # the right token, same request


@pytest.mark.api_server
@needs_airflow_3
def test_the_window_endpoint_says_whether_the_customer_wrote_in_the_last_24_hours(server: Server) -> None:
    open_customer, closed_customer, silent_customer = "15550102001", "15550102002", "15550102003"
    for customer in (open_customer, closed_customer):
        push = inbound(MESSAGES["text"], messageId=f"wamid.window-{customer}", **{"from": {"phone": customer}})
        assert server.push(push).status_code == 200
    # The closed customer's message arrived 25 hours ago.
    with server.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE itnio_inbound_message SET received_at = datetime(received_at, '-25 hours'), "
            "written_at = datetime(written_at, '-25 hours') WHERE from_phone = ?",
            (closed_customer,),
        )
    [row] = server.rows("SELECT received_at FROM itnio_inbound_message WHERE from_phone = :p", p=open_customer)

    # The numbers as people write them: normalised like the send operators' recipients.
    opened = api(
        server, "window", business_phone="+91 85632-1321", recipient=f"+1 ({open_customer[1:4]}) {open_customer[4:]}"
    )
    assert opened.status_code == 200, opened.text
    body = opened.json()
    last = datetime.datetime.fromisoformat(body["last_inbound_at"])
    assert last == datetime.datetime.fromisoformat(str(row["received_at"])).replace(tzinfo=datetime.UTC)
    assert body == {
        "business_phone": BUSINESS,
        "recipient": open_customer,
        "last_inbound_at": last.isoformat(),
        "open": True,
        "closes_at": (last + datetime.timedelta(hours=24)).isoformat(),
    }

    closed = api(server, "window", business_phone=BUSINESS, recipient=closed_customer).json()
    assert (closed["open"], closed["closes_at"]) == (False, None)
    assert closed["last_inbound_at"] is not None
    silent = api(server, "window", business_phone=BUSINESS, recipient=silent_customer).json()
    assert (silent["last_inbound_at"], silent["open"], silent["closes_at"]) == (None, False, None)
    other_number = api(server, "window", business_phone="15550001111", recipient=open_customer).json()
    assert other_number["open"] is False  # the window is per business number

    missing = api(server, "window", business_phone=BUSINESS)
    bad = api(server, "window", business_phone=BUSINESS, recipient="12ab")
    assert (missing.status_code, missing.json()["field"]) == (400, "recipient")
    assert (bad.status_code, bad.json()["field"]) == (400, "recipient")


# -- the client ----------------------------------------------------------------------------------------------


@pytest.fixture
def client_conn(server: Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """Return the receiver's connection as the worker sees it, with ``receiver_url`` pointing at the test server."""
    extra = {"app_id": APP_ID, "webhook_token": TOKEN, "receiver_url": server.base_url + "/"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "itnio", "extra": extra}))
    return CONN_ID


@pytest.mark.api_server
@needs_airflow_3
def test_the_client_reads_status_and_window_sync_and_async(server: Server, client_conn: str) -> None:
    from airflow_provider_itnio.webhook.client import ItnioReceiverClient, ItnioUnknownMessageError

    message_id = "client-status-test/with a slash"
    assert server.push(status_push(messageId=message_id, status="delivered")).status_code == 200
    assert server.push(inbound(MESSAGES["text"], messageId="wamid.client-window")).status_code == 200

    sync_status = ItnioReceiverClient(client_conn).message_status(message_id)
    sync_window = ItnioReceiverClient(client_conn).window(f"+{BUSINESS}", CUSTOMER)

    async def read_async() -> tuple[dict[str, Any], dict[str, Any]]:
        client = ItnioReceiverClient(client_conn)
        return await client.amessage_status(message_id), await client.awindow(BUSINESS, f"00{CUSTOMER}")

    async_status, async_window = asyncio.run(read_async())
    assert sync_status == async_status
    assert (sync_status["message_id"], sync_status["status"]) == (message_id, "delivered")
    assert sync_window == async_window
    assert (sync_window["open"], sync_window["recipient"]) == (True, CUSTOMER)

    with pytest.raises(ItnioUnknownMessageError, match="never-sent"):
        ItnioReceiverClient(client_conn).message_status("never-sent")
    with pytest.raises(ItnioUnknownMessageError):
        asyncio.run(ItnioReceiverClient(client_conn).amessage_status("never-sent"))


@pytest.mark.api_server
@needs_airflow_3
def test_the_client_finds_the_api_server_from_airflow_config(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_itnio.webhook.client import ItnioReceiverClient, receiver_base_url

    extra = {"app_id": APP_ID, "webhook_token": TOKEN}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "itnio", "extra": extra}))
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"{server.base_url}/execution/")
    assert receiver_base_url({}) == server.base_url
    assert ItnioReceiverClient(CONN_ID).window(BUSINESS, CUSTOMER)["business_phone"] == BUSINESS

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/sub/")
    assert receiver_base_url({}) == "https://airflow.example.com/sub"  # [api] base_url wins over the execution URL
    assert receiver_base_url({"receiver_url": "http://api:8080/"}) == "http://api:8080"  # the extra wins over both
    monkeypatch.delenv("AIRFLOW__API__BASE_URL")
    monkeypatch.delenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
    assert receiver_base_url({}) == "http://localhost:8080"


@pytest.mark.api_server
@needs_airflow_3
def test_the_client_raises_typed_errors_without_the_token(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_itnio.errors import ItnioConfigError
    from airflow_provider_itnio.webhook.client import (
        ItnioReceiverClient,
        ItnioReceiverNotFoundError,
        ItnioReceiverUnreachableError,
    )

    def connection(conn_id: str, **extra: str) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "itnio", "extra": extra}))
        return conn_id

    wrong = connection("itnio_client_wrong", webhook_token=OTHER_TOKEN, receiver_url=server.base_url)
    nowhere = connection("itnio_client_nowhere", webhook_token=TOKEN, receiver_url=f"http://127.0.0.1:{free_port()}")
    tokenless = connection("itnio_client_tokenless", receiver_url=server.base_url)
    unknown_here = connection(CONN_ID.replace("test", "absent"), webhook_token=TOKEN, receiver_url=server.base_url)

    errors: list[Exception] = []
    with caplog.at_level("DEBUG"):
        for conn_id, expected in (
            (wrong, ItnioReceiverNotFoundError),
            (unknown_here, ItnioReceiverNotFoundError),
            (nowhere, ItnioReceiverUnreachableError),
            (tokenless, ItnioConfigError),
        ):
            with pytest.raises(expected) as sync_error:
                ItnioReceiverClient(conn_id).message_status("any")
            with pytest.raises(expected) as async_error:
                asyncio.run(ItnioReceiverClient(conn_id).awindow(BUSINESS, CUSTOMER))
            errors += [sync_error.value, async_error.value]
    for error in errors:
        assert TOKEN not in str(error) and OTHER_TOKEN not in str(error)
        assert TOKEN not in repr(error.__cause__) and TOKEN not in repr(error.__context__)
    assert "webhook_token" in str(errors[-1])
    assert TOKEN not in caplog.text and OTHER_TOKEN not in caplog.text


# -- which Airflow -------------------------------------------------------------------------------------------


@needs_airflow_3
def test_the_assets_have_stable_uris_and_refuse_unknown_statuses() -> None:
    from airflow.sdk import Asset

    from airflow_provider_itnio.assets import STATUSES, inbound_messages, message_status
    from airflow_provider_itnio.events import MessageStatus

    assert tuple(status.value for status in MessageStatus) == STATUSES
    assert inbound_messages() == Asset(
        name="itnio://itnio_default/inbound", uri="itnio://itnio_default/inbound", group="itnio"
    )
    assert message_status().uri == "itnio://itnio_default/status/failed"
    assert message_status("itnio_b", "READ").name == "itnio://itnio_b/status/read"
    assert inbound_messages("itnio_b") == inbound_messages("itnio_b")  # the same asset on every parse
    with pytest.raises(ValueError, match="status: must be one of sent, delivered, read, failed, deleted; got 'seen'"):
        message_status(status="seen")
    with pytest.raises(ValueError, match="itnio_conn_id"):
        inbound_messages("no spaces please")


@pytest.mark.skipif(not AIRFLOW_2, reason="checks the error on Airflow 2")
@pytest.mark.parametrize("module", ["airflow_provider_itnio.assets", "airflow_provider_itnio.webhook.client"])
def test_on_airflow_2_assets_and_client_say_airflow_3_1_is_needed(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    assert "needs Airflow 3.1 or later" in result.stderr


def test_the_test_dag_defines_a_dag_only_where_the_assets_exist() -> None:
    """Airflow 2 parses the test DAGs folder too: the file must import cleanly and define nothing there."""
    import importlib.util

    path = TEST_DAGS / "itnio_webhook_assets.py"
    spec = importlib.util.spec_from_file_location("itnio_webhook_assets_check", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert hasattr(module, "inbound_messages") is not AIRFLOW_2
