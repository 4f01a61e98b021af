"""
The example DAGs (dags_examples/): they all import, each file defines a DAG, and every DAG runs end to end through
real Airflow (``dag.test()``) against the sandbox, sending what it says it sends, with the messageIds in XCom.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pendulum
import pytest

from tests.support.airflow_runs import run_dag, task_states, xcom_value
from tests.support.paths import ROOT

EXAMPLES = ROOT / "dags_examples"
PHONE = "15550100200"  # the params' default "+1 555 010 0200", as sent


def _kind(body: dict[str, Any]) -> str:
    """``text``, ``image``..., ``interactive:button``..., or ``template:<name>``."""
    if "template" in body:
        return f"template:{body['template']['name']}"
    if body["type"] == "interactive":
        return f"interactive:{body['interactive']['type']}"
    return str(body["type"])


def _check_run(dag_run: Any, sandbox: Any, sends: dict[str, str], skipped: tuple[str, ...] = ()) -> None:
    """
    Every task succeeded (or was skipped by a branch), each send task's XCom messageId is a message the sandbox
    accepted, of the kind expected, in task order, to the params' phone, and nothing else was sent.

    :param sends: ``{task_id: kind}`` of the send tasks, in the order they run.
    """
    states = task_states(dag_run)
    assert {t: s for t, s in states.items() if t in skipped} == {t: ("skipped", 0) for t in skipped}, states
    assert {t: s for t, s in states.items() if t not in skipped} == {
        t: ("success", 1) for t in states if t not in skipped
    }, states
    assert str(dag_run.state) == "success"
    received = sandbox.messages()
    assert [m["messageId"] for m in received] == [xcom_value(dag_run, task) for task in sends]
    assert [_kind(m["body"]) for m in received] == list(sends.values())
    assert {m["body"]["recipient"] for m in received} == {PHONE}
    assert all(r["status"] == "0" for r in sandbox.requests())


def test_every_example_imports_and_defines_a_dag() -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(str(EXAMPLES))
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

        bag = DagBag(str(EXAMPLES), include_examples=False)  # type: ignore[call-arg]
    assert bag.import_errors == {}
    files = sorted(EXAMPLES.glob("*.py"))
    assert len(files) >= 5
    for path in files:
        dags = [d for d in bag.dags.values() if Path(d.fileloc).resolve() == path.resolve()]
        assert dags, f"{path.name} defines no DAG"
        for dag in dags:
            assert dag.doc_md or path.read_text().startswith('"""'), dag.dag_id
            assert "example" in dag.tags


def _example_dags() -> dict[str, Any]:
    """Return every example DAG by id, parsed from ``dags_examples/`` as the DAG processor parses it."""
    try:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(str(EXAMPLES))
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

        bag = DagBag(str(EXAMPLES), include_examples=False)  # type: ignore[call-arg]
    assert bag.import_errors == {}
    return dict(bag.dags)


def _trigger_form_blocks(value: Any, schema: dict[str, Any]) -> bool:
    """
    Return whether Airflow 3.3's trigger form keeps *Trigger* disabled for a param with this default and schema.

    The form (``airflow/ui/src/components/FlexibleForm``) marks a param required when its schema has a ``type`` that
    does not allow ``null`` (``isRequired``), and reports an error, which disables the button, while a required
    param's value is ``null``, missing or ``""``.
    """
    kind = schema.get("type")
    required = bool(kind) and (not isinstance(kind, list) or "null" not in kind)
    return required and value in (None, "")


def test_every_example_can_be_triggered_from_the_ui_with_its_defaults() -> None:
    """
    The trigger dialog's *Trigger* button works with each example's defaults: no required param is empty, and the
    defaults pass the params' schemas (what ``POST .../dagRuns`` validates).
    """
    blocked: dict[str, list[str]] = {}
    for dag_id, dag in _example_dags().items():
        for name in dag.params:
            param = dag.params.get_param(name)
            if _trigger_form_blocks(param.value, dict(param.schema)):
                blocked.setdefault(dag_id, []).append(name)
        dag.params.validate()  # raises naming the param whose default breaks its schema
    assert blocked == {}


def _receiver_available() -> bool:
    from airflow_provider_itnio.window import receiver_available

    return receiver_available()


#: What ``itnio_followup`` sends with its default params when no receiver can tell that the customer wrote in the
#: last 24 hours (Airflow 3.1+): each task's approved fallback template.
FOLLOWUP_TEMPLATES = {
    "thank_you": "template:order_thank_you",
    "invoice": "template:order_invoice",
    "ask_rating": "template:order_rating",
}


def test_followup_sends_its_templates_when_the_window_cannot_be_known(airflow_sandbox: Any) -> None:
    """
    A follow-up is business-initiated: sent as session messages to a customer whose 24-hour window is closed, all
    three are accepted and then fail (131047) while every task is green. With no receiver to ask (``dag.test()``
    here, ``make demo``), each task sends its approved template instead, and says so in XCom ``sent_kind``.
    """
    dag_run = run_dag("itnio_followup")
    if not _receiver_available():  # Airflow 2.11: no receiver, so no fallback; the session messages go out
        _check_run(
            dag_run, airflow_sandbox, {"thank_you": "text", "invoice": "document", "ask_rating": "interactive:button"}
        )
        invoice = airflow_sandbox.messages()[1]["body"]
        assert invoice["context"] == {"refMessageId": xcom_value(dag_run, "thank_you")}
        return
    _check_run(dag_run, airflow_sandbox, FOLLOWUP_TEMPLATES)
    for task in FOLLOWUP_TEMPLATES:
        ti = dag_run.get_task_instance(task)
        assert ti.xcom_pull(task_ids=task, key="sent_kind") == "template", task
    thank_you, invoice, rating = (m["body"]["template"] for m in airflow_sandbox.messages())
    assert [p["text"] for p in thank_you["components"][0]["parameters"]] == ["Ada", "A-1042"]
    header, body = invoice["components"]
    assert header["parameters"][0]["document"] == {
        "link": "https://shop.example.com/invoices/A-1042.pdf",
        "filename": "invoice-A-1042.pdf",
    }
    assert body["parameters"] == [{"type": "text", "text": "A-1042"}]
    assert rating["components"][0]["parameters"] == [{"type": "text", "text": "A-1042"}]


def _runs_the_scheduler_starts_on_unpause(dag: Any) -> list[Any]:
    """
    Return the runs the scheduler would create right after the DAG is unpaused (before any trigger).

    The scheduler asks the DAG's timetable for its next run from "no run yet", restricted by the DAG's start date,
    end date and catchup; a run whose ``run_after`` is already past is created at once.
    """
    import pendulum
    from airflow.timetables.base import TimeRestriction

    timetable = dag.timetable
    try:  # Airflow 3: the SDK DAG holds the SDK timetable; the scheduler uses the core one
        from airflow.serialization.encoders import coerce_to_core_timetable

        timetable = coerce_to_core_timetable(timetable)
    except ImportError:  # Airflow 2: the DAG's timetable is the scheduler's
        pass
    restriction = TimeRestriction(earliest=dag.start_date, latest=dag.end_date, catchup=dag.catchup)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    return [info] if info is not None and info.run_after <= pendulum.now("UTC") else []


def test_followup_following_the_readme_sends_one_runs_messages(airflow_sandbox: Any) -> None:
    """The quick start (docs): unpause ``itnio_followup``, then trigger it: one run, so each message is sent once."""
    try:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(str(EXAMPLES))
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

        bag = DagBag(str(EXAMPLES), include_examples=False)  # type: ignore[call-arg]
    assert _runs_the_scheduler_starts_on_unpause(bag.dags["itnio_followup"]) == []  # unpausing: no run
    dag_run = run_dag("itnio_followup")  # the trigger: one run
    assert [m["body"]["recipient"] for m in airflow_sandbox.messages()] == [PHONE] * 3
    assert [m["messageId"] for m in airflow_sandbox.messages()] == [
        xcom_value(dag_run, task) for task in ("thank_you", "invoice", "ask_rating")
    ]


def test_appointment_reminder(airflow_sandbox: Any) -> None:
    conf = {"phone": PHONE, "name": "Lee", "appointment_id": "APT-7", "when": "Fri 6 Mar, 09:30"}
    dag_run = run_dag("itnio_appointment_reminder", conf=conf)
    _check_run(
        dag_run,
        airflow_sandbox,
        {
            "reminder": "text",
            "clinic_location": "location",
            "other_slots": "interactive:list",
            "pickup": "interactive:location_request_message",
        },
    )
    reminder, location, slots, _ = (m["body"] for m in airflow_sandbox.messages())
    assert "Lee" in reminder["text"]["body"] and "Fri 6 Mar, 09:30" in reminder["text"]["body"]
    assert location["context"] == {"refMessageId": xcom_value(dag_run, "reminder")}
    assert location["location"]["name"] == "Harbour Dental Clinic"
    rows = [row["id"] for section in slots["interactive"]["action"]["sections"] for row in section["rows"]]
    assert rows == ["APT-7-0900", "APT-7-1100", "APT-7-1400", "APT-7-1630"]


@pytest.mark.parametrize(
    ("hours_ago", "sent", "not_sent"),
    [(1, "session_text", "template_update"), (30, "template_update", "session_text"), (None, "template_update", "")],
)
def test_order_update_picks_the_channel_by_the_24_hour_window(
    airflow_sandbox: Any, hours_ago: int | None, sent: str, not_sent: str
) -> None:
    last = "" if hours_ago is None else pendulum.now("UTC").subtract(hours=hours_ago).isoformat()
    conf = {"phone": PHONE, "order_id": "B-77", "status": "out for delivery", "last_inbound_at": last}
    dag_run = run_dag("itnio_order_update", conf=conf)
    skipped = (not_sent or "session_text",)
    kind = "text" if sent == "session_text" else "template:order_update"
    _check_run(dag_run, airflow_sandbox, {sent: kind}, skipped=skipped)
    body = airflow_sandbox.messages()[0]["body"]
    if sent == "template_update":
        parameters = body["template"]["components"][0]["parameters"]
        assert [p["text"] for p in parameters] == ["B-77", "out for delivery"]
    else:
        assert "B-77 is now out for delivery" in body["text"]["body"]
    message_id = xcom_value(dag_run, sent)
    assert xcom_value(dag_run, "record") == {"order_id": "B-77", "channel": sent, "messageId": message_id}


def test_order_update_with_its_defaults_sends_the_template(airflow_sandbox: Any) -> None:
    """The trigger dialog's defaults (``last_inbound_at`` empty: ``None``) mean "never wrote": the template."""
    dag_run = run_dag("itnio_order_update")
    _check_run(dag_run, airflow_sandbox, {"template_update": "template:order_update"}, skipped=("session_text",))


def test_nightly_export_tells_the_lead_when_done(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_nightly_export_alerts")
    assert task_states(dag_run) == {"extract": ("success", 1), "load": ("success", 1)}
    assert xcom_value(dag_run, "load") == "loaded 1284 rows"
    [done] = airflow_sandbox.messages()  # the DAG's on_success_callback, nothing else
    assert done["body"]["recipient"] == "15550100400"
    assert (
        done["body"]["text"]["body"]
        == f"Nightly export {dag_run.run_id} of itnio_nightly_export_alerts finished: success."
    )


def test_nightly_export_pages_on_call_when_a_task_fails(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_nightly_export_alerts", conf={"simulate_failure": True})
    states = task_states(dag_run)
    assert states["extract"] == ("failed", 1)  # AirflowFailException: no retry, so no retry notification
    assert states["load"][0] == "upstream_failed"
    alerts = airflow_sandbox.messages()
    assert [a["body"]["recipient"] for a in alerts] == ["15550100300", "15550100301"]
    for alert in alerts:
        assert alert["path"] == "/wa/template/sendMsg"
        [body] = alert["body"]["template"]["components"]
        assert [p["text"] for p in body["parameters"]] == [
            "itnio_nightly_export_alerts",
            "extract",
            "the orders database refused the connection (simulated)",
        ]


def test_new_collection(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_new_collection", conf={"phone": PHONE, "collection": "autumn-26"})
    sends = {
        "video": "video",
        "image": "image",
        "audio": "audio",
        "sticker": "sticker",
        "stylist": "contacts",
        "offer": "text",
    }
    _check_run(dag_run, airflow_sandbox, sends)
    bodies = [m["body"] for m in airflow_sandbox.messages()]
    assert bodies[0]["video"]["link"] == "https://cdn.shop.example.com/collections/autumn-26/teaser.mp4"
    assert bodies[4]["contacts"][0]["name"]["formatted_name"] == "Mia Chen"
    assert bodies[5]["text"]["body"].endswith("off the autumn-26 collection with code AUTUMN2610, until Sunday.")
    assert bodies[5]["text"]["body"] == xcom_value(dag_run, "build_offer")["text"]["body"]


def _example_module(name: str) -> Any:
    """Import an example file as a module of its own (for its helper functions)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"itnio_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_appointment_confirm_sends_keep_and_reschedule_buttons_naming_the_appointment(airflow_sandbox: Any) -> None:
    dag_run = run_dag("itnio_appointment_confirm", conf={"phone": PHONE, "appointment_id": "APT-9", "when": "Mon"})
    _check_run(dag_run, airflow_sandbox, {"ask_keep_or_reschedule": "interactive:button"})
    buttons = airflow_sandbox.messages()[0]["body"]["interactive"]["action"]["buttons"]
    assert [b["reply"] for b in buttons] == [
        {"id": "keep:APT-9", "title": "Keep"},
        {"id": "reschedule:APT-9", "title": "Reschedule"},
    ]


def test_reschedule_requests_answer_each_reschedule_tap_once_in_context() -> None:
    module = _example_module("itnio_reschedule_on_reply")
    tap = {"message_id": "in-1", "from": PHONE, "reply": {"id": "reschedule:APT-9", "title": "Reschedule"}}
    extras = [
        tap,
        dict(tap),  # the same message twice in one run's events
        {"message_id": "in-2", "from": PHONE, "reply": {"id": "keep:APT-9", "title": "Keep"}},
        {"message_id": "in-3", "from": PHONE, "reply": None, "text": "reschedule:APT-9"},
    ]
    (request,) = module.reschedule_requests(extras)
    assert (request["recipient"], request["reply_to"]) == (PHONE, "in-1")
    (section,) = request["sections"]
    assert [row["id"] for row in section["rows"]] == [f"APT-9-{suffix}" for suffix, _, _ in module.SLOTS]
    # What the mapped list operator builds from it is a valid list message.
    from airflow_provider_itnio import messages as m

    m.ListMessage(body="b", button="See free slots", sections=request["sections"])


def test_record_failures_appends_each_failed_message_once(tmp_path: Path) -> None:
    import sqlite3

    module = _example_module("itnio_record_failed_statuses")
    db = tmp_path / "failures.db"
    failed = {"message_id": "m-1", "recipient": PHONE, "failure": "131026 Message undeliverable", "timestamp": 5}
    assert [row["message_id"] for row in module.record_failures([failed], db)] == ["m-1"]
    assert module.record_failures([failed], db) == []  # a retried task writes nothing twice
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT message_id, recipient, failure, timestamp FROM failed_messages").fetchall()
    assert rows == [("m-1", PHONE, "131026 Message undeliverable", 5)]


@pytest.mark.parametrize("dag_id", ["itnio_reschedule_on_reply", "itnio_record_failed_statuses"])
def test_asset_scheduled_examples_run_without_events_and_send_nothing(
    airflow_sandbox: Any, dag_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manual run (no triggering event) of a DAG scheduled on the receiver's assets does nothing, successfully."""
    import airflow

    if airflow.__version__.startswith("2."):
        pytest.skip("scheduling on the receiver's assets needs Airflow 3.1+ (the file defines a stub DAG)")
    monkeypatch.setenv("ITNIO_FAILED_MESSAGES_DB", str(tmp_path / "failures.db"))
    dag_run = run_dag(dag_id)
    assert str(dag_run.state) == "success"
    states = task_states(dag_run)
    if dag_id == "itnio_reschedule_on_reply":
        assert states["reschedule_taps"] == ("success", 1) and states["offer_slots"][0] == "skipped"
        assert xcom_value(dag_run, "reschedule_taps") == []
    else:
        assert states == {"record": ("success", 1)} and xcom_value(dag_run, "record") == []
    assert airflow_sandbox.messages() == []


def _examples_needing_airflow_3_1() -> list[str]:
    """Return the example DAGs that define the "needs Airflow 3.1+" stub when what they import is missing."""
    return sorted(path.stem for path in EXAMPLES.glob("*.py") if "needs_airflow_3_1_dag(" in path.read_text())


@pytest.mark.parametrize("dag_id", _examples_needing_airflow_3_1())
def test_examples_needing_airflow_3_1_are_stubs_that_fail_saying_so_on_airflow_2(airflow_db: Path, dag_id: str) -> None:
    """On Airflow 2.11 each is one task that fails naming the DAG and what is missing; on 3.x the real DAG."""
    import airflow

    from airflow_provider_itnio.stub_dags import STUB_TASK_ID

    if not airflow.__version__.startswith("2."):
        from airflow.dag_processing.dagbag import DagBag

        dag = DagBag(str(EXAMPLES)).get_dag(dag_id)
        assert dag is not None and STUB_TASK_ID not in dag.task_ids
        return
    dag_run = run_dag(dag_id)
    assert task_states(dag_run) == {STUB_TASK_ID: ("failed", 1)}
    assert str(dag_run.state) == "failed"
    stub = dag_run.dag.get_task(STUB_TASK_ID)
    with pytest.raises(RuntimeError, match=rf"^{dag_id} needs Airflow 3\.1\+: \S"):
        stub.python_callable()
    assert "example" in dag_run.dag.tags


#: The examples a person triggers from the UI with the dialog's defaults (the approval, sensor and asset examples
#: wait for people or pushes; their schedules are ``None`` or assets, which start no run when unpaused).
DIALOG_EXAMPLES = (
    "itnio_followup",
    "itnio_order_update",
    "itnio_appointment_reminder",
    "itnio_new_collection",
    "itnio_nightly_export_alerts",
)


@pytest.mark.api_server
@pytest.mark.slow
def test_the_trigger_dialogs_defaults_unpause_and_trigger_make_exactly_one_run(tmp_path: Path) -> None:
    """
    What Airflow 3.3's trigger dialog does with its defaults ("Unpause on trigger" checked, the params' defaults),
    through the REST calls it makes (``PATCH /dags/{id}`` ``is_paused: false``, ``POST /dags/{id}/dagRuns``),
    against a real API server, scheduler and dag-processor: one run per DAG, the manual one, and no scheduled run
    due (``next_dagrun_run_after`` in the future), so none is coming either. ``itnio_appointment_reminder`` used
    to get a scheduled run next to the manual one: every message sent twice.
    """
    import airflow

    if airflow.__version__.startswith("2."):
        pytest.skip("the trigger dialog and its REST API are Airflow 3's")
    from airflow_provider_itnio.sandbox import Sandbox
    from tests.support.airflow_stack import AirflowStack

    with Sandbox() as sandbox:
        connections = {"itnio_default": json.loads(sandbox.conn_json())}
        dags = [EXAMPLES / f"{dag_id}.py" for dag_id in DIALOG_EXAMPLES]
        with AirflowStack(tmp_path / "home", dags=dags, connections=connections) as stack:
            manual: dict[str, str] = {}
            for dag_id in DIALOG_EXAMPLES:
                stack.wait_for_dag(dag_id)
                params = stack.api("GET", f"/dags/{dag_id}/details").json()["params"]
                defaults = {name: spec["value"] for name, spec in params.items()}
                unpaused = stack.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
                assert unpaused.status_code == 200, unpaused.text
                run = stack.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": defaults})
                assert run.status_code == 200, run.text
                manual[dag_id] = run.json()["dag_run_id"]
            for dag_id, run_id in manual.items():
                assert stack.wait_for_run(dag_id, run_id, timeout=300) == "success", dag_id
            now = pendulum.now("UTC")
            for dag_id, run_id in manual.items():
                runs = stack.api("GET", f"/dags/{dag_id}/dagRuns").json()["dag_runs"]
                assert [(r["dag_run_id"], r["run_type"]) for r in runs] == [(run_id, "manual")], (dag_id, runs)
                due = stack.api("GET", f"/dags/{dag_id}").json()["next_dagrun_run_after"]
                assert due is None or datetime.datetime.fromisoformat(due) > now, (dag_id, due)  # no run is due
