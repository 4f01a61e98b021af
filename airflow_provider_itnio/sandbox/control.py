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
GET      /sandbox/config         ``{"balance", "latency", "phones": {phone: status}, "faults": [...]}``
POST     /sandbox/config         any of ``{"balance": 3 | null, "latency": 0.2, "phones": {phone: status}}``
                                 -> the config
POST     /sandbox/reset          back to the start settings, nothing recorded -> the config
=======  ======================  ============================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    unknown = set(data) - {"balance", "latency", "phones"}
    if unknown:
        raise ControlError(f"unknown config keys: {', '.join(sorted(unknown))}")
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
            return 200, sandbox.settings()
        if route == ("POST", "/sandbox/config"):
            _configure(sandbox, _json_object(raw))
            return 200, sandbox.settings()
        if route == ("POST", "/sandbox/faults"):
            _add_fault(sandbox, _json_object(raw))
            return 200, sandbox.settings()
        if route == ("DELETE", "/sandbox/faults"):
            sandbox.clear_faults()
            return 200, sandbox.settings()
        if route == ("POST", "/sandbox/reset"):
            sandbox.reset()
            return 200, sandbox.settings()
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
)
