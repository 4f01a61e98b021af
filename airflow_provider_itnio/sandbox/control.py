"""The sandbox's own control API (``/sandbox/...``, no authentication): inspect and steer a running sandbox.

=======  ======================  ============================================================================
method   path                    JSON
=======  ======================  ============================================================================
GET      /sandbox/health         ``{"ok": true}``
GET      /sandbox/messages       accepted messages, in order: ``[{"messageId", "path", "body", "timestamp",
                                 "headers": {"Api-Key", "Timestamp", "Content-Type"}}]``
DELETE   /sandbox/messages       clears the messages and the request log -> ``{"ok": true}``
GET      /sandbox/requests       every ``/wa/`` request, in order: ``[{"path", "status", "body", ...}]``
DELETE   /sandbox/requests       same as ``DELETE /sandbox/messages``
POST     /sandbox/faults         ``{"n": 1, "http_status": 503 | null, "api_status": "-68" | null,
                                 "reason": "...", "drop": false, "slow": 2.5 | null}`` -> the config
DELETE   /sandbox/faults         drops pending faults -> the config
GET      /sandbox/config         ``{"balance", "latency", "phones": {phone: status}, "faults": [...],
                                 "pushes": {push settings, "failures", "windows", "pending"}}``
POST     /sandbox/config         any of ``{"balance": 3 | null, "latency": 0.2, "phones": {phone: status}}``
                                 and of the push settings: ``"push_url"`` (both), ``"status_push_url"``,
                                 ``"inbound_push_url"`` (null: no push), ``"enforce_window"``,
                                 ``"status_delays": [0.05, 0.1, 0.2]``, ``"push_time_scale"``,
                                 ``"push_retry_delays": [60, 180, 300]``, ``"push_timeout"``,
                                 ``"duplicate_probability"``, ``"reorder_probability"``, ``"duplicate_next": N``,
                                 ``"reorder_next": N`` -> the config
POST     /sandbox/reset          back to the start settings, nothing recorded -> the config
GET      /sandbox/pushes         every push attempt, in order (see ``Sandbox.pushes``)
DELETE   /sandbox/pushes         forgets the push log -> ``{"ok": true}``
POST     /sandbox/inbound        a customer writes: ``{"from": "15550100200", "name", "business_phone",
                                 "type": "text", "text": "Hi"}`` (other types: see ``Sandbox.simulate_inbound``)
                                 -> the pushed body
POST     /sandbox/tap            the recipient of a message with buttons or a list taps one: ``{"message_id":
                                 "...", "option": "Approve"}`` (or ``"to": "15550100200"``: the newest such
                                 message sent to that number) -> the pushed body
POST     /sandbox/push-failures  ``{"recipient": "...", "failure": "131026 ..." | null, "after": "sent"}``
                                 -> the config
DELETE   /sandbox/push-failures  ``{"recipient": "..."}`` or no body (all) -> the config
=======  ======================  ============================================================================

Push addresses are shown redacted (they may hold a secret token); ``GET /sandbox/config`` never shows them whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_itnio.sandbox.pushes import CONFIG_KEYS as PUSH_CONFIG_KEYS
from airflow_provider_itnio.sandbox.validation import load_json

if TYPE_CHECKING:
    from airflow_provider_itnio.sandbox.server import Sandbox


class ControlError(ValueError):
    """A bad control request (answered with HTTP 400)."""


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        data = load_json(raw)
    except ValueError as exc:  # not UTF-8, not JSON, or nested too deep
        raise ControlError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError("body must be a JSON object")
    return data


def _configure(sandbox: Sandbox, data: dict[str, Any]) -> None:
    unknown = set(data) - {"balance", "latency", "phones"} - PUSH_CONFIG_KEYS
    if unknown:
        raise ControlError(f"unknown config keys: {', '.join(sorted(unknown))}")
    push_changes = {key: value for key, value in data.items() if key in PUSH_CONFIG_KEYS}
    if push_changes:
        sandbox.configure_pushes(**push_changes)
    if "balance" in data:
        sandbox.set_balance(data["balance"])
    if "latency" in data:
        sandbox.set_latency(data["latency"])
    phones = data.get("phones", {})
    if not isinstance(phones, dict):
        raise ControlError('"phones" must be an object {phone: status}')
    for phone, status in phones.items():
        sandbox.set_phone_status(phone, status)


def _add_fault(sandbox: Sandbox, data: dict[str, Any]) -> None:
    unknown = set(data) - {"n", "http_status", "api_status", "reason", "drop", "slow"}
    if unknown:
        raise ControlError(f"unknown fault keys: {', '.join(sorted(unknown))}")
    sandbox.fail_next(
        data.get("n", 1),
        http_status=data.get("http_status"),
        api_status=data.get("api_status"),
        reason=data.get("reason"),
        drop=data.get("drop", False),
        slow=data.get("slow"),
    )


def _config(sandbox: Sandbox) -> dict[str, Any]:
    return {**sandbox.settings(), "pushes": sandbox.push_settings()}


def _set_push_failure(sandbox: Sandbox, data: dict[str, Any]) -> None:
    unknown = set(data) - {"recipient", "failure", "after"}
    if unknown:
        raise ControlError(f"unknown push-failure keys: {', '.join(sorted(unknown))}")
    if "recipient" not in data:
        raise ControlError('"recipient" is required')
    kwargs = {key: data[key] for key in ("failure", "after") if key in data}
    sandbox.set_push_failure(data["recipient"], **kwargs)


def _clear_push_failures(sandbox: Sandbox, data: dict[str, Any]) -> None:
    unknown = set(data) - {"recipient"}
    if unknown:
        raise ControlError(f"unknown keys: {', '.join(sorted(unknown))}")
    sandbox.clear_push_failures(data.get("recipient"))


def handle_control(sandbox: Sandbox, method: str, path: str, raw: bytes) -> tuple[int, Any]:
    """
    Answer one control request.

    :param sandbox: The sandbox being controlled.
    :param method: The HTTP method.
    :param path: The URL path, starting with ``/sandbox/``.
    :param raw: The raw request body.
    :return: ``(http_status, json_value)``.
    """
    route = (method, path.rstrip("/"))
    try:
        if route == ("GET", "/sandbox/health"):
            return 200, {"ok": True}
        if route == ("GET", "/sandbox/messages"):
            return 200, sandbox.messages()
        if route == ("GET", "/sandbox/requests"):
            return 200, sandbox.requests()
        if route in (("DELETE", "/sandbox/messages"), ("DELETE", "/sandbox/requests")):
            sandbox.clear()
            return 200, {"ok": True}
        if route == ("GET", "/sandbox/config"):
            return 200, _config(sandbox)
        if route == ("POST", "/sandbox/config"):
            _configure(sandbox, _json_object(raw))
            return 200, _config(sandbox)
        if route == ("POST", "/sandbox/faults"):
            _add_fault(sandbox, _json_object(raw))
            return 200, _config(sandbox)
        if route == ("DELETE", "/sandbox/faults"):
            sandbox.clear_faults()
            return 200, _config(sandbox)
        if route == ("POST", "/sandbox/reset"):
            sandbox.reset()
            return 200, _config(sandbox)
        if route == ("GET", "/sandbox/pushes"):
            return 200, sandbox.pushes()
        if route == ("DELETE", "/sandbox/pushes"):
            sandbox.clear_pushes()
            return 200, {"ok": True}
        if route == ("POST", "/sandbox/inbound"):
            data = _json_object(raw)
            if "from" not in data:
                raise ControlError('"from" (the customer\'s digits) is required')
            customer = data.pop("from")
            return 200, sandbox.simulate_inbound(customer, **data)
        if route == ("POST", "/sandbox/tap"):
            data = _json_object(raw)
            unknown = set(data) - {"message_id", "to", "option"}
            if unknown:
                raise ControlError(f"unknown tap keys: {', '.join(sorted(unknown))}")
            option = data.get("option")
            if not isinstance(option, str):
                raise ControlError('"option" (the title of the button or list row) is required')
            return 200, sandbox.simulate_tap(option, message_id=data.get("message_id"), to=data.get("to"))
        if route == ("POST", "/sandbox/push-failures"):
            _set_push_failure(sandbox, _json_object(raw))
            return 200, _config(sandbox)
        if route == ("DELETE", "/sandbox/push-failures"):
            _clear_push_failures(sandbox, _json_object(raw))
            return 200, _config(sandbox)
    except (ValueError, TypeError) as exc:
        return 400, {"error": str(exc)}
    known_paths = {p for _, p in _ROUTES}
    if route[1] in known_paths:
        return 405, {"error": f"{method} not allowed on {path}"}
    return 404, {"error": f"no such sandbox endpoint: {path}"}


_ROUTES = (
    ("GET", "/sandbox/health"),
    ("GET", "/sandbox/messages"),
    ("DELETE", "/sandbox/messages"),
    ("GET", "/sandbox/requests"),
    ("DELETE", "/sandbox/requests"),
    ("GET", "/sandbox/config"),
    ("POST", "/sandbox/config"),
    ("POST", "/sandbox/faults"),
    ("DELETE", "/sandbox/faults"),
    ("POST", "/sandbox/reset"),
    ("GET", "/sandbox/pushes"),
    ("DELETE", "/sandbox/pushes"),
    ("POST", "/sandbox/inbound"),
    ("POST", "/sandbox/tap"),
    ("POST", "/sandbox/push-failures"),
    ("DELETE", "/sandbox/push-failures"),
)
