"""The emulated vendor endpoints (``/wa/...``): from a request to the vendor's answer, no HTTP plumbing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio.sandbox.auth import check_headers
from airflow_provider_itnio.sandbox.validation import (
    Rejected,
    check_custom_message,
    check_phone_query,
    check_template_message,
    load_json,
    parse_json_object,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_itnio.sandbox.state import SandboxState

CUSTOM_PATH = "/wa/custom/sendMsg"
TEMPLATE_PATH = "/wa/template/sendMsg"
QUERY_PHONE_PATH = "/wa/queryBusinessPhoneInfo"
SEND_PATHS = frozenset({CUSTOM_PATH, TEMPLATE_PATH})
API_PATHS = SEND_PATHS | {QUERY_PHONE_PATH}

#: Request headers kept with an accepted message (never ``Sign``).
RECORDED_HEADERS = ("Api-Key", "Timestamp", "Content-Type")


@dataclass(frozen=True)
class Account:
    """
    The emulated vendor account.

    :param api_key: The API key (``Api-Key`` header).
    :param api_secret: The API secret (only used to check ``Sign``; never sent, logged nor returned).
    :param app_id: The application id (``appId``).
    :param waba_id: The WhatsApp Business Account id reported by ``queryBusinessPhoneInfo``.
    """

    api_key: str
    api_secret: str = field(repr=False)
    app_id: str
    waba_id: str = "sandbox-waba"


@dataclass
class ApiResult:
    """
    The answer to one ``/wa/`` request.

    :param http_status: The HTTP status (200 for every API-level outcome, like the vendor).
    :param payload: The JSON body of the answer.
    :param message_id: The id of the accepted message, when one was accepted.
    :param record: The accepted message's record (as :meth:`Sandbox.messages` lists it), when one was accepted.
    """

    http_status: int
    payload: dict[str, Any]
    message_id: str | None = None
    record: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        """The API status (``"0"``, ``"-68"``, ...), or ``"http NNN"`` for a non-API answer."""
        if self.http_status == 200 and "status" in self.payload:
            return str(self.payload["status"])
        return f"http {self.http_status}"


def loggable_body(raw: bytes) -> Any:
    """
    Return the request body as the request log keeps it: parsed JSON, or the text when it is not acceptable JSON.

    :param raw: The raw request body.
    """
    text = raw.decode("utf-8", errors="replace")
    try:
        return load_json(text)
    except ValueError:  # not JSON, or nested too deep to be copied and re-encoded safely
        return text


def process(
    method: str,
    path: str,
    headers: Mapping[str, str | None],
    raw: bytes,
    *,
    account: Account,
    state: SandboxState,
    now: float,
) -> ApiResult:
    """
    Answer one request on a ``/wa/`` path like the vendor would, recording it when it is an accepted message.

    :param method: The HTTP method.
    :param path: The URL path (no query string).
    :param headers: The request headers (``Api-Key``, ``Timestamp``, ``Sign``, ``Content-Type``).
    :param raw: The raw request body.
    :param account: The emulated account.
    :param state: The sandbox state (phones, balance, messages).
    :param now: The server clock, Unix seconds.
    """
    if path not in API_PATHS:
        return ApiResult(404, {"error": f"no such endpoint: {path}"})
    if method != "POST":
        return ApiResult(405, {"error": f"{method} not allowed, use POST"})
    try:
        check_headers(
            headers.get("Api-Key"),
            headers.get("Timestamp"),
            headers.get("Sign"),
            api_key=account.api_key,
            api_secret=account.api_secret,
            now=now,
        )
        body = parse_json_object(raw)
        if path == QUERY_PHONE_PATH:
            return _query_phone(body, account, state)
        if path == CUSTOM_PATH:
            check_custom_message(body, account.app_id, state.phone_statuses())
        else:
            check_template_message(body, account.app_id, state.phone_statuses())
        message_id = uuid.uuid4().hex
        timestamp = int(now)
        record = {
            "messageId": message_id,
            "path": path,
            "body": body,
            "timestamp": timestamp,
            "headers": {name: headers.get(name) for name in RECORDED_HEADERS},
        }
        if not state.charge_and_record(record):
            raise Rejected("-68", reason="insufficient balance")
    except Rejected as rejected:
        return ApiResult(200, {"status": rejected.status, "reason": rejected.reason})
    data = {"channelType": 0, "messageId": message_id, "timestamp": timestamp}
    return ApiResult(200, {"status": "0", "reason": "success", "data": data}, message_id, record)


def _query_phone(body: dict[str, Any], account: Account, state: SandboxState) -> ApiResult:
    current, size, numbers = check_phone_query(body, account.app_id)
    record = {"appId": account.app_id, "wabaId": account.waba_id, "dataList": state.phone_records(numbers)}
    records = [record] if current == 1 else []
    data = {"current": current, "size": size, "total": 1, "records": records}
    return ApiResult(200, {"status": "0", "reason": "success", "data": data})
