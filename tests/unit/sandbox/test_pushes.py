"""The sandbox pushes like the vendor: status reports and customers' messages, POSTed over real HTTP.

A small local HTTP receiver collects what the sandbox pushes. Expectations come from the spec's push section
("Pushes from the vendor to you (webhooks)"); ``events.parse_push`` (the provider's parser) is only used to check
that what the sandbox pushes is accepted by the provider.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_itnio.events import InboundEvent, MessageStatus, StatusEvent, parse_push
from airflow_provider_itnio.sandbox import Sandbox
from airflow_provider_itnio.sandbox.pushes import RE_ENGAGEMENT_FAILURE, WINDOW_SECONDS
from airflow_provider_itnio.sandbox.testing import sandbox_fixture  # noqa: F401 - registers `sandbox`
from tests.support.paths import ROOT

REPO_ROOT = ROOT
CUSTOM = "/wa/custom/sendMsg"
TEMPLATE = "/wa/template/sendMsg"
KEY, SECRET, APP_ID = "sandbox-key", "sandbox-secret", "sandbox-app"
BUSINESS = "15550001111"
CUSTOMER = "15550100200"
HEX32 = re.compile(r"[0-9a-f]{32}")
TOKEN = "s3cret-webhook-token-never-shown"
#: The fields of the spec's tables (status report; uplink message).
STATUS_FIELDS = {
    "appId",
    "channelType",
    "messageId",
    "eventType",
    "billable",
    "form",
    "recipient",
    "status",
    "failure",
    "conversationId",
    "expiresAt",
    "conversationType",
    "timestamp",
}
INBOUND_FIELDS = {"appId", "channelType", "messageId", "timestamp", "eventType", "businessPhone", "from", "message"}
WAIT = 20.0  # seconds: an upper bound for waits that end as soon as the condition holds


class Receiver:
    """
    A local HTTP server that records every POST (path, parsed body, monotonic arrival time).

    :param answers: HTTP statuses to answer in turn (the last one repeats); 200 by default.
    :param port: Port to bind (0: any free one).
    """

    def __init__(self, answers: list[int] | None = None, port: int = 0) -> None:
        self.answers = list(answers or [200])
        self.received: list[tuple[str, dict[str, Any], float]] = []
        self.changed = threading.Condition()
        self.release = threading.Event()
        self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.release.wait(WAIT)
                with receiver.changed:
                    answer = receiver.answers[min(len(receiver.received), len(receiver.answers) - 1)]
                    receiver.received.append((self.path, json.loads(data), time.monotonic()))
                    receiver.changed.notify_all()
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str = f"/itnio/webhook/itnio_default/{TOKEN}") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.changed:
            return [body for p, body, _ in self.received if path is None or p == path]

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        """Wait until ``count`` pushes arrived; return their bodies."""
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.received) >= count, WAIT), self.received
            return [body for _, body, _ in self.received]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


def signed_headers() -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "Content-Type": "application/json;charset=UTF-8",
        "Api-Key": KEY,
        "Timestamp": ts,
        "Sign": hashlib.md5(f"{KEY}{SECRET}{ts}".encode()).hexdigest(),
    }


def envelope(recipient: str = CUSTOMER) -> dict[str, Any]:
    return {"appId": APP_ID, "businessPhone": BUSINESS, "recipient": recipient, "channelType": 0}


def text_message(recipient: str = CUSTOMER) -> dict[str, Any]:
    return {**envelope(recipient), "type": "text", "text": {"body": "Your order shipped"}}


def template_message(recipient: str = CUSTOMER) -> dict[str, Any]:
    return {
        **envelope(recipient),
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-1042"}]}],
        },
    }


BUTTONS_MESSAGE = {
    **envelope(),
    "type": "interactive",
    "interactive": {
        "type": "button",
        "body": {"text": "Your appointment is tomorrow at 10:00"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "confirm-42", "title": "Confirm"}},
                {"type": "reply", "reply": {"id": "reschedule-42", "title": "Reschedule"}},
            ]
        },
    },
}
LIST_MESSAGE = {
    **envelope(),
    "type": "interactive",
    "interactive": {
        "type": "list",
        "body": {"text": "Pick a new slot"},
        "action": {
            "button": "Slots",
            "sections": [
                {
                    "title": "Monday",
                    "rows": [
                        {"id": "slot-mon-9", "title": "Mon 09:00", "description": "with Dr. Rao"},
                        {"id": "slot-mon-14", "title": "Mon 14:00", "description": "with Dr. Lee"},
                    ],
                }
            ],
        },
    },
}


def send(sb: Sandbox, path: str, body: dict[str, Any]) -> str:
    """Send through the emulated API (real HTTP) and return the accepted messageId."""
    answer = requests.post(sb.base_url + path, json=body, headers=signed_headers(), timeout=10).json()
    assert answer["status"] == "0", answer
    return str(answer["data"]["messageId"])


def inbound(sb: Sandbox, **request: Any) -> dict[str, Any]:
    response = requests.post(sb.base_url + "/sandbox/inbound", json={"from": CUSTOMER, **request}, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def statuses_of(bodies: list[dict[str, Any]], message_id: str) -> list[str]:
    return [
        b["status"] for b in bodies if b.get("messageId") == message_id and b["eventType"] == "message-status-event"
    ]


def settle(sb: Sandbox) -> None:
    assert sb.wait_for_pushes(WAIT), sb.push_settings()["pending"]


# ------------------------------------------------------------------------------------------ status reports


def test_a_template_gets_sent_delivered_read_in_order_after_the_delays(receiver: Receiver) -> None:
    delays = (0.1, 0.3, 0.5)
    with Sandbox(status_push_url=receiver.url(), status_delays=delays) as sb:
        before = time.monotonic()
        message_id = send(sb, TEMPLATE, template_message())
        settle(sb)
    received = [(body, at) for _, body, at in receiver.received]
    assert [b["status"] for b, _ in received] == ["sent", "delivered", "read"]
    for (body, at), delay in zip(received, delays, strict=True):
        assert at - before >= delay  # never earlier than configured (an upper bound would be a timed assertion)
        assert set(body) <= STATUS_FIELDS
        assert body["eventType"] == "message-status-event"
        assert (body["appId"], body["channelType"], body["messageId"]) == (APP_ID, 0, message_id)
        assert (body["form"], body["recipient"], body["billable"]) == (BUSINESS, CUSTOMER, "true")
        assert isinstance(body["timestamp"], int)
        event = parse_push(json.dumps(body).encode())
        assert isinstance(event, StatusEvent) and event.status == MessageStatus(body["status"])
        assert event.warnings == ()
    sent, delivered, read = (b for b, _ in received)
    assert sent["conversationId"] == delivered["conversationId"] and HEX32.fullmatch(sent["conversationId"])
    assert sent["expiresAt"] == sent["timestamp"] + WINDOW_SECONDS  # expiresAt only with sent (spec)
    assert "expiresAt" not in delivered and "conversationId" not in read and "failure" not in read
    assert sent["conversationType"] == delivered["conversationType"] == "utility"


def test_a_session_message_outside_the_window_fails_with_131047_while_a_template_is_delivered(
    receiver: Receiver,
) -> None:
    with Sandbox(status_push_url=receiver.url(), push_time_scale=0.01) as sb:
        session_id = send(sb, CUSTOM, text_message())  # the customer never wrote: still accepted, with an id
        sb.open_window("15550100201", at=time.time() - WINDOW_SECONDS - 3600)  # wrote 25 hours ago: closed
        late_id = send(sb, CUSTOM, text_message("15550100201"))
        template_id = send(sb, TEMPLATE, template_message())
        settle(sb)
    bodies = receiver.bodies()
    assert statuses_of(bodies, session_id) == ["sent", "failed"]
    assert statuses_of(bodies, late_id) == ["sent", "failed"]
    assert statuses_of(bodies, template_id) == ["sent", "delivered", "read"]
    failed = next(b for b in bodies if b["messageId"] == session_id and b["status"] == "failed")
    assert failed["failure"] == RE_ENGAGEMENT_FAILURE and "131047" in failed["failure"]
    assert "Re-engagement message" in failed["failure"]
    assert failed["billable"] == "false"
    event = parse_push(json.dumps(failed))
    assert isinstance(event, StatusEvent) and event.status is MessageStatus.FAILED
    assert event.failure == RE_ENGAGEMENT_FAILURE and event.is_final


def test_window_enforcement_can_be_switched_off(receiver: Receiver, sandbox: Sandbox) -> None:
    requests.post(
        sandbox.base_url + "/sandbox/config",
        json={"status_push_url": receiver.url(), "enforce_window": False, "push_time_scale": 0.01},
        timeout=10,
    ).raise_for_status()
    message_id = send(sandbox, CUSTOM, text_message())
    settle(sandbox)
    assert statuses_of(receiver.bodies(), message_id) == ["sent", "delivered", "read"]


def test_an_inbound_message_opens_the_window(receiver: Receiver) -> None:
    status_path, inbound_path = f"/status/{TOKEN}", f"/inbound/{TOKEN}"
    with Sandbox(
        status_push_url=receiver.url(status_path), inbound_push_url=receiver.url(inbound_path), push_time_scale=0.01
    ) as sb:
        assert not sb.window_open(CUSTOMER)
        pushed = inbound(sb, name="Asha", text="Is my order on its way?")
        assert sb.window_open(CUSTOMER)
        message_id = send(sb, CUSTOM, text_message())
        other = send(sb, CUSTOM, text_message("15550100299"))  # a customer who did not write
        settle(sb)
        windows = requests.get(sb.base_url + "/sandbox/config", timeout=10).json()["pushes"]["windows"]
    assert receiver.bodies(inbound_path) == [pushed]  # one address per kind of push
    statuses = receiver.bodies(status_path)
    assert statuses_of(statuses, message_id) == ["sent", "delivered", "read"]
    assert statuses_of(statuses, other) == ["sent", "failed"]
    assert next(b for b in statuses if b["messageId"] == message_id)["conversationType"] == "service"
    assert windows == [
        {"business_phone": BUSINESS, "customer": CUSTOMER, "last_inbound": pushed["timestamp"], "open": True}
    ]


# ------------------------------------------------------------------------------------------ inbound shapes

INBOUND_KINDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # kind: (POST /sandbox/inbound fields, what the provider's parser must read from the push)
    "text": ({"text": "Can I move my appointment?"}, {"type": "text", "text": "Can I move my appointment?"}),
    "image": (
        {"type": "image", "caption": "the receipt", "mime_type": "image/png"},
        {"type": "image", "text": "the receipt", "reply": None},
    ),
    "location": (
        {"type": "location", "latitude": 52.52, "longitude": 13.405, "location_name": "Office", "address": "1 Main St"},
        {
            "type": "location",
            "location": {"latitude": 52.52, "longitude": 13.405, "name": "Office", "address": "1 Main St"},
        },
    ),
    "button_reply": (
        {"type": "button_reply", "reply_title": "Reschedule"},
        {"type": "interactive", "reply": {"id": "reschedule-42", "title": "Reschedule"}},
    ),
    "list_reply": (
        {"type": "list_reply", "reply_id": "slot-mon-14"},
        {"type": "interactive", "reply": {"id": "slot-mon-14", "title": "Mon 14:00"}},
    ),
    "button": (
        {"type": "button", "reply_id": "STOP_PROMOS", "reply_title": "Stop promotions"},
        {"type": "button", "reply": {"id": "STOP_PROMOS", "title": "Stop promotions"}},
    ),
    "unknown type, kept": (
        {"message": {"type": "reaction", "reaction": {"emoji": "+1"}}},
        {"type": "reaction", "text": None, "reply": None},
    ),
}


@pytest.mark.parametrize("kind", list(INBOUND_KINDS))
def test_every_inbound_kind_is_pushed_in_the_vendors_shape(kind: str, receiver: Receiver) -> None:
    fields, expected = INBOUND_KINDS[kind]
    with Sandbox(push_url=receiver.url(), enforce_window=False, push_time_scale=0.01) as sb:
        quoted = None
        if kind in ("button_reply", "list_reply", "button"):
            quoted = send(
                sb,
                CUSTOM if kind != "button" else TEMPLATE,
                {
                    "button_reply": BUTTONS_MESSAGE,
                    "list_reply": LIST_MESSAGE,
                    "button": template_message(),
                }[kind],
            )
            settle(sb)
            receiver.received.clear()
            fields = {**fields, "context": quoted}
        pushed = inbound(sb, name="Asha", **fields)
        settle(sb)
    assert receiver.bodies() == [pushed]
    assert set(pushed) == INBOUND_FIELDS
    assert pushed["eventType"] == "up-message-event" and pushed["appId"] == APP_ID and pushed["channelType"] == 0
    assert HEX32.fullmatch(pushed["messageId"]) and isinstance(pushed["timestamp"], int)
    assert pushed["businessPhone"] == BUSINESS and pushed["from"] == {"phone": CUSTOMER, "name": "Asha"}
    message = pushed["message"]
    if quoted is not None:
        assert message["context"] == {"from": BUSINESS, "id": quoted}
    if kind == "button_reply":
        assert message["interactive"] == {
            "type": "button_reply",
            "button_reply": {"id": "reschedule-42", "title": "Reschedule"},
        }
    if kind == "list_reply":
        row = message["interactive"]["list_reply"]
        assert row == {"id": "slot-mon-14", "title": "Mon 14:00", "description": "with Dr. Lee"}
    if kind == "image":
        assert set(message["image"]) == {"id", "filePath", "mimeType", "sha256", "caption"}
        assert message["image"]["mimeType"] == "image/png"
    event = parse_push(json.dumps(pushed).encode())
    assert isinstance(event, InboundEvent) and event.warnings == ()
    assert (event.message_id, event.from_phone, event.name, event.business_phone) == (
        pushed["messageId"],
        CUSTOMER,
        "Asha",
        BUSINESS,
    )
    for attribute, value in expected.items():
        actual = getattr(event, attribute)
        if attribute == "location":
            actual = {key: actual[key] for key in value}
        assert actual == value, attribute


def test_bad_inbound_requests_get_400_and_push_nothing(receiver: Receiver, sandbox: Sandbox) -> None:
    sandbox.configure_pushes(push_url=receiver.url())
    url = sandbox.base_url + "/sandbox/inbound"
    bad = [
        {"text": "no sender"},
        {"from": "12", "text": "too short"},
        {"from": CUSTOMER, "type": "text"},
        {"from": CUSTOMER, "type": "location", "latitude": 91, "longitude": 0},
        {"from": CUSTOMER, "type": "button_reply"},
        {"from": CUSTOMER, "type": "selfie", "text": "?"},
        {"from": CUSTOMER, "business_phone": "15550009999", "text": "not the account's number"},
        {"from": CUSTOMER, "text": "hi", "colour": "blue"},
    ]
    for body in bad:
        response = requests.post(url, json=body, timeout=10)
        assert response.status_code == 400, body
    quoted = send(sandbox, CUSTOM, {**BUTTONS_MESSAGE})
    no_such_button = {"from": CUSTOMER, "type": "button_reply", "context": quoted, "reply_title": "Cancel"}
    assert requests.post(url, json=no_such_button, timeout=10).status_code == 400
    settle(sandbox)
    assert [b for b in receiver.bodies() if b["eventType"] == "up-message-event"] == []
    assert not sandbox.window_open(CUSTOMER)


# ------------------------------------------------------------------------------------------ re-pushes


def test_a_push_answered_non_2xx_is_pushed_again_after_1_3_5_scaled_minutes_then_given_up() -> None:
    receiver = Receiver(answers=[503])
    scale = 0.001
    try:
        with Sandbox(inbound_push_url=receiver.url(), push_time_scale=scale) as sb:
            pushed = sb.simulate_inbound(CUSTOMER, "Hello?")
            settle(sb)
            log = requests.get(sb.base_url + "/sandbox/pushes", timeout=10).json()
    finally:
        receiver.close()
    assert [body for _, body, _ in receiver.received] == [pushed] * 4  # the same event, 1 + 3 re-pushes
    assert [(e["attempt"], e["outcome"], e["http_status"], e["final"]) for e in log] == [
        (1, "failed", 503, False),
        (2, "failed", 503, False),
        (3, "failed", 503, False),
        (4, "failed", 503, True),
    ]
    waits = [60 * scale, 180 * scale, 300 * scale]
    assert [e["retry_in"] for e in log] == [*waits, None]
    assert len({e["id"] for e in log}) == 1 and all(e["messageId"] == pushed["messageId"] for e in log)
    arrivals = [at for _, _, at in receiver.received]
    for earlier, later, wait in zip(arrivals[:-1], arrivals[1:], waits, strict=True):
        assert later - earlier >= wait  # each re-push waits at least its (scaled) delay


def test_a_re_push_stops_once_the_receiver_answers_2xx() -> None:
    receiver = Receiver(answers=[500, 200])
    try:
        with Sandbox(status_push_url=receiver.url(), push_time_scale=0.001) as sb:
            message_id = send(sb, TEMPLATE, template_message())
            settle(sb)
            log = sb.pushes()
    finally:
        receiver.close()
    # the re-push of "sent" comes 60 ms (scaled) later: after "delivered" and "read", as the vendor's would
    assert sorted(statuses_of(receiver.bodies(), message_id)) == ["delivered", "read", "sent", "sent"]
    sent = [e for e in log if e["status"] == "sent"]
    assert [(e["attempt"], e["outcome"]) for e in sent] == [(1, "failed"), (2, "ok")]


def test_a_receiver_that_is_down_then_up_gets_the_push() -> None:
    with socket.socket() as probe:  # a free port with nobody listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/itnio/webhook/itnio_default/{TOKEN}"
    with Sandbox(inbound_push_url=url, push_time_scale=0.005) as sb:
        pushed = sb.simulate_inbound(CUSTOMER, "anyone there?")
        deadline = time.monotonic() + WAIT
        while not sb.pushes() and time.monotonic() < deadline:  # the first attempt fails: connection refused
            time.sleep(0.01)
        assert sb.pushes(), f"no push attempt within {WAIT} s"
        first = sb.pushes()[0]
        assert (first["attempt"], first["outcome"], first["http_status"]) == (1, "failed", None)
        assert "Connection" in first["error"] and TOKEN not in json.dumps(first)
        receiver = Receiver(port=port)  # the receiver comes up; a re-push reaches it
        try:
            settle(sb)
            log = sb.pushes()
        finally:
            receiver.close()
    assert receiver.bodies() == [pushed]
    assert log[-1]["outcome"] == "ok" and log[-1]["attempt"] > 1
    assert all(e["outcome"] == "failed" for e in log[:-1])


# ------------------------------------------------------------------------------------------ injected faults


def test_injected_duplicates_and_out_of_order_statuses(receiver: Receiver, sandbox: Sandbox) -> None:
    config = requests.post(
        sandbox.base_url + "/sandbox/config",
        json={"status_push_url": receiver.url(), "push_time_scale": 0.01, "duplicate_next": 1, "reorder_next": 1},
        timeout=10,
    ).json()["pushes"]
    assert (config["duplicate_next"], config["reorder_next"]) == (1, 1)
    reordered = send(sandbox, TEMPLATE, template_message())  # reversed, and its first push twice
    settle(sandbox)
    normal = send(sandbox, TEMPLATE, template_message())  # injections used up
    settle(sandbox)
    bodies = receiver.bodies()
    assert statuses_of(bodies, reordered) == ["read", "read", "delivered", "sent"]
    assert statuses_of(bodies, normal) == ["sent", "delivered", "read"]
    first, duplicate = (b for b in bodies if b["messageId"] == reordered and b["status"] == "read")
    assert first == duplicate
    log = sandbox.pushes()
    assert [e["duplicate"] for e in log if e["messageId"] == reordered] == [False, True, False, False]

    receiver.received.clear()
    sandbox.configure_pushes(duplicate_probability=1.0, reorder_probability=1.0)
    always = send(sandbox, TEMPLATE, template_message())
    settle(sandbox)
    assert statuses_of(receiver.bodies(), always) == ["read", "read", "delivered", "delivered", "sent", "sent"]


def test_failures_configured_per_recipient(receiver: Receiver, sandbox: Sandbox) -> None:
    sandbox.configure_pushes(status_push_url=receiver.url(), push_time_scale=0.01, enforce_window=False)
    base = sandbox.base_url + "/sandbox/push-failures"
    undeliverable = "131026 Message undeliverable"
    requests.post(base, json={"recipient": CUSTOMER, "failure": undeliverable}, timeout=10).raise_for_status()
    config = requests.post(
        base, json={"recipient": "15550100201", "failure": None, "after": "delivered"}, timeout=10
    ).json()
    assert config["pushes"]["failures"] == [
        {"recipient": CUSTOMER, "failure": undeliverable, "after": "sent"},
        {"recipient": "15550100201", "failure": None, "after": "delivered"},
    ]
    assert requests.post(base, json={"recipient": CUSTOMER, "after": "opened"}, timeout=10).status_code == 400
    failing = send(sandbox, TEMPLATE, template_message())  # per-recipient failures apply to templates too
    never_read = send(sandbox, CUSTOM, text_message("15550100201"))
    settle(sandbox)
    bodies = receiver.bodies()
    assert statuses_of(bodies, failing) == ["sent", "failed"]
    assert next(b for b in bodies if b.get("status") == "failed")["failure"] == undeliverable
    assert statuses_of(bodies, never_read) == ["sent", "delivered"]

    requests.delete(base, timeout=10).raise_for_status()
    cleared = send(sandbox, TEMPLATE, template_message())
    settle(sandbox)
    assert statuses_of(receiver.bodies(), cleared) == ["sent", "delivered", "read"]


# ------------------------------------------------------------------------------------------ settings, threads


def test_push_addresses_are_set_at_run_time_redacted_and_reset(receiver: Receiver, sandbox: Sandbox) -> None:
    silent = send(sandbox, CUSTOM, text_message())  # no address: nothing is pushed, the send is unchanged
    assert sandbox.wait_for_pushes(WAIT) and sandbox.pushes() == []
    config = requests.post(sandbox.base_url + "/sandbox/config", json={"push_url": receiver.url()}, timeout=10)
    assert config.status_code == 200
    assert sandbox.status_push_url == sandbox.inbound_push_url == receiver.url()
    sandbox.simulate_inbound(CUSTOMER, "hi")
    message_id = send(sandbox, CUSTOM, text_message())
    settle(sandbox)
    assert statuses_of(receiver.bodies(), message_id) == ["sent", "delivered", "read"]
    assert statuses_of(receiver.bodies(), silent) == []
    shown = json.dumps(
        [requests.get(sandbox.base_url + p, timeout=10).json() for p in ("/sandbox/config", "/sandbox/pushes")]
    )
    assert TOKEN not in shown  # the address may hold the receiver's secret token
    assert f"127.0.0.1:{receiver.port}/itnio/webhook/itnio_default/***" in shown
    assert (
        requests.post(sandbox.base_url + "/sandbox/config", json={"push_url": "ftp://x"}, timeout=10).status_code == 400
    )
    assert requests.post(sandbox.base_url + "/sandbox/config", json={"push_timeout": 0}, timeout=10).status_code == 400

    sandbox.reset()
    assert sandbox.status_push_url is None and sandbox.pushes() == [] and not sandbox.window_open(CUSTOMER)
    assert sandbox.settings() == {"balance": None, "latency": 0.0, "phones": {BUSINESS: 7}, "faults": []}


def test_a_stuck_receiver_never_blocks_the_api_and_stop_ends_the_push_threads() -> None:
    receiver = Receiver()
    receiver.release.clear()  # the receiver accepts pushes but never answers until released
    try:
        sb = Sandbox(push_url=receiver.url(), enforce_window=False, status_delays=(0, 0, 0), push_workers=2)
        sb.start()
        prefix = f"itnio-sandbox-{sb.port}-push"
        assert len([t for t in threading.enumerate() if t.name.startswith(prefix)]) == 3  # scheduler + 2 workers
        try:
            ids = [send(sb, CUSTOM, text_message()) for _ in range(30)]  # every send is answered meanwhile
            assert len(set(ids)) == 30
            assert sb.simulate_inbound(CUSTOMER, "still there?")["eventType"] == "up-message-event"
            assert not sb.wait_for_pushes(0.2) and receiver.received == []
        finally:
            sb.stop()  # cuts the attempts in flight and forgets the pending ones
        assert [t.name for t in threading.enumerate() if t.name.startswith(prefix)] == []
    finally:
        receiver.close()


# ------------------------------------------------------------------------------------------ CLI


def test_cli_push_flags(tmp_path: Path) -> None:
    receiver = Receiver()
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [
        *(sys.executable, "-m", "airflow_provider_itnio.sandbox", "--port-file", str(port_file)),
        *("--status-push-url", receiver.url(f"/status/{TOKEN}"), "--inbound-push-url", receiver.url(f"/in/{TOKEN}")),
        *("--status-delays", "0,0.01,0.02", "--push-time-scale", "0.5", "--no-enforce-window"),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        url = re.fullmatch(r"Sandbox listening on (http://127\.0\.0\.1:\d+)\n", proc.stdout.readline())
        assert url, "no listening line"
        base = url.group(1)
        deadline = time.monotonic() + WAIT
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert port_file.exists(), f"the sandbox wrote no port file within {WAIT} s"
        pushes = requests.get(base + "/sandbox/config", timeout=10).json()["pushes"]
        assert pushes["enforce_window"] is False
        assert pushes["status_delays"] == [0, 0.01, 0.02] and pushes["push_time_scale"] == 0.5
        assert pushes["status_push_url"].endswith("/status/***") and pushes["inbound_push_url"].endswith("/in/***")
        answer = requests.post(base + CUSTOM, json=text_message(), headers=signed_headers(), timeout=10).json()
        pushed = requests.post(base + "/sandbox/inbound", json={"from": CUSTOMER, "text": "hi"}, timeout=10).json()
        receiver.wait_for(4)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        watchdog.cancel()
        receiver.close()
    assert proc.returncode == 0, err
    assert statuses_of(receiver.bodies(f"/status/{TOKEN}"), answer["data"]["messageId"]) == [
        "sent",
        "delivered",
        "read",
    ]
    assert receiver.bodies(f"/in/{TOKEN}") == [pushed]
    assert f"PUSH inbound text {pushed['messageId']} #1 -> " in out
    assert f"PUSH status read {answer['data']['messageId']} #1 -> " in out
    assert TOKEN not in out and TOKEN not in err
