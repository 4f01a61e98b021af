"""
The receiver's gate as FastAPI dependencies (``airflow_provider_itnio.webhook.guards``), in the app, in process.

What the dependencies must keep from the endpoints they replaced: the order of the checks (the webhook address
refuses a declared oversize body before it looks the connection up; the read API reads no body before the bearer
check), one lookup and one constant-time comparison per request whatever the reason for a 404, and the answers'
bodies. The connection lookup is replaced by a fake (no database): these are the gate's rules, the integration
tests run the same routes against Airflow's connections.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.receiver import needs_airflow_3

pytestmark = needs_airflow_3

TOKEN = "the-right-token-" + "x" * 24
KNOWN, UNKNOWN = "itnio_guards_known", "itnio_guards_unknown"
NOT_FOUND = (404, {"detail": "Not Found"})


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Replace the connection lookup with a fake that knows ``KNOWN``; count lookups and comparisons."""
    from airflow_provider_itnio.webhook import guards

    counted = {"lookups": 0, "comparisons": 0}
    real_compare = hmac.compare_digest

    def resolve(conn_id: str) -> guards.Receiver | None:
        counted["lookups"] += 1
        return guards.Receiver(app_id="app", token_digest=guards._digest(TOKEN)) if conn_id == KNOWN else None

    def compare(a: Any, b: Any) -> bool:
        counted["comparisons"] += 1
        return real_compare(a, b)

    monkeypatch.setattr(guards, "_resolve", resolve)
    monkeypatch.setattr(hmac, "compare_digest", compare)
    guards._resolved.clear()
    yield counted
    guards._resolved.clear()


@pytest.fixture
def client() -> Any:
    from fastapi.testclient import TestClient

    from airflow_provider_itnio.webhook.app import create_app

    return TestClient(create_app())


def _answer(response: Any) -> tuple[int, Any]:
    return response.status_code, response.json()


def test_a_declared_oversize_push_is_refused_before_the_connection_is_looked_up(
    client: Any, work: dict[str, int]
) -> None:
    body = b"{" + b" " * (1024 * 1024) + b"}"
    answer = _answer(client.post(f"/webhook/{KNOWN}/wrong-token", content=body))
    assert answer == (
        413,
        {"detail": f"body: at most {1024 * 1024} bytes; got {len(body)} bytes", "field": "body"},
    )
    assert work == {"lookups": 0, "comparisons": 0}


def test_the_read_api_reads_no_body_before_the_bearer_check(client: Any, work: dict[str, int]) -> None:
    """A stranger's oversize or broken body gets 404, not 413 or 400: the body is read only once admitted."""
    stranger = {"Authorization": "Bearer another-token"}
    oversize = b"[" + b" " * (1024 * 1024) + b"]"
    for path in ("statuses", "windows"):
        assert _answer(client.post(f"/api/{KNOWN}/{path}", headers=stranger, content=oversize)) == NOT_FOUND
        assert _answer(client.post(f"/api/{KNOWN}/{path}", headers=stranger, content=b"not json")) == NOT_FOUND
    admitted = {"Authorization": f"Bearer {TOKEN}"}
    too_large = _answer(client.post(f"/api/{KNOWN}/statuses", headers=admitted, content=oversize))
    assert too_large == (
        413,
        {"detail": f"body: at most {1024 * 1024} bytes; got more than {1024 * 1024} bytes", "field": "body"},
    )
    not_json = _answer(client.post(f"/api/{KNOWN}/windows", headers=admitted, content=b"not json"))
    assert not_json == (400, {"detail": "body: must be JSON", "field": "body"})
    not_object = _answer(client.post(f"/api/{KNOWN}/statuses", headers=admitted, content=b"[1, 2]"))
    assert not_object == (400, {"detail": "body: must be a JSON object", "field": "body"})
    refused_field = _answer(client.post(f"/api/{KNOWN}/statuses", headers=admitted, json={"message_ids": []}))
    assert refused_field == (
        400,
        {"detail": "message_ids: must be a non-empty list of message ids", "field": "message_ids"},
    )


@pytest.mark.parametrize(
    "ask",
    [
        pytest.param(lambda client, conn_id: client.post(f"/webhook/{conn_id}/wrong", content=b"{}"), id="push"),
        pytest.param(
            lambda client, conn_id: client.get(
                f"/api/{conn_id}/messages/m/status", headers={"Authorization": "Bearer wrong"}
            ),
            id="status",
        ),
        pytest.param(
            lambda client, conn_id: client.post(
                f"/api/{conn_id}/windows", headers={"Authorization": "Bearer wrong"}, json={}
            ),
            id="windows",
        ),
        pytest.param(lambda client, conn_id: client.get(f"/api/{conn_id}/window"), id="window-no-header"),
    ],
)
def test_an_unknown_connection_and_a_wrong_token_get_the_same_answer_for_the_same_work(
    client: Any, work: dict[str, int], ask: Any
) -> None:
    """Each route's dependency gates once: one cached lookup per connection, one comparison per request."""
    from airflow_provider_itnio.webhook import guards

    spent = {}
    for conn_id in (KNOWN, UNKNOWN):
        guards._resolved.clear()
        work.update(lookups=0, comparisons=0)
        assert [_answer(ask(client, conn_id)) for _ in range(2)] == [NOT_FOUND] * 2
        spent[conn_id] = dict(work)
    assert spent == {KNOWN: {"lookups": 1, "comparisons": 2}, UNKNOWN: {"lookups": 1, "comparisons": 2}}


def test_a_router_without_the_app_s_handler_still_answers_a_refusal_s_status_and_detail(work: dict[str, int]) -> None:
    """Refused is an HTTPException: a router included without :func:`answer_refused` keeps status and detail."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from airflow_provider_itnio.webhook import read_api

    bare = FastAPI()
    bare.include_router(read_api.router)
    client = TestClient(bare)
    admitted = {"Authorization": f"Bearer {TOKEN}"}
    assert _answer(client.post(f"/api/{UNKNOWN}/statuses", headers=admitted, json={})) == NOT_FOUND
    not_object = _answer(client.post(f"/api/{KNOWN}/statuses", headers=admitted, content=b"[1]"))
    assert not_object == (400, {"detail": "body: must be a JSON object"})  # the field is the app's handler's
