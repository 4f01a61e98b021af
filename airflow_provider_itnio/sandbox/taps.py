"""
An approver tapping a button (or a list row) of a message the sandbox accepted: what WhatsApp would push back.

:meth:`~airflow_provider_itnio.sandbox.server.Sandbox.simulate_tap`, ``POST /sandbox/tap`` and ``itnio-sandbox
tap`` find the message (by its ``messageId``, or the newest one with buttons or a list sent to a number), pick the
option by its title or id, and push the ``button_reply`` / ``list_reply`` from the message's recipient, quoting the
message, as the vendor would (:meth:`~airflow_provider_itnio.sandbox.pushes.PushEngine.inbound`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["tap_request"]


def _options(body: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """Return the tap's type and the options of a message body, or ``None`` when it offers none."""
    interactive = body.get("interactive")
    if body.get("type") != "interactive" or not isinstance(interactive, dict):
        return None
    action = interactive.get("action") or {}
    if interactive.get("type") == "button":
        buttons = [b["reply"] for b in action.get("buttons", []) if isinstance(b, dict) and "reply" in b]
        return "button_reply", buttons
    if interactive.get("type") == "list":
        return "list_reply", [row for section in action.get("sections", []) for row in section.get("rows", [])]
    return None


def _digits(number: object) -> str:
    """Return the digits of a number however it is written (``+1 555-010 0200`` is ``15550100200``)."""
    return re.sub(r"\D", "", number) if isinstance(number, str) else ""


def tap_request(
    messages: Sequence[Mapping[str, Any]], option: str, *, message_id: str | None = None, to: str | None = None
) -> dict[str, Any]:
    """
    Return the ``POST /sandbox/inbound`` fields of a tap on ``option`` of a message the sandbox accepted.

    :param messages: The accepted messages (``Sandbox.messages()``), oldest first.
    :param option: The title (or id) of the button or row tapped.
    :param message_id: The message's ``messageId``; or give ``to``.
    :param to: The recipient's number, in any form (only its digits are compared): the newest message with buttons
        or a list sent to them.
    :raises ValueError: No such message, it offers no options, or none has that title or id.
    """
    if (message_id is None) == (to is None):
        raise ValueError("give the message's 'message_id' or the recipient 'to' (one of them)")
    if not isinstance(option, str) or not option:
        raise ValueError("'option' must be the title (or id) of a button or list row")
    if message_id is not None:
        found = [m for m in messages if m.get("messageId") == message_id]
        if not found:
            raise ValueError(f"the sandbox accepted no message {message_id}")
        record = found[-1]
    else:
        digits = _digits(to)
        offering = [
            m for m in messages if _digits(m["body"].get("recipient")) == digits and _options(m["body"]) is not None
        ]
        if not digits or not offering:
            raise ValueError(f"the sandbox sent no message with buttons or a list to {to}")
        record = offering[-1]
    offered = _options(record["body"])
    if offered is None:
        kind = record["body"].get("type")
        raise ValueError(
            f"message {record['messageId']} ({kind}) has no buttons or list to tap (a template? the approver "
            "writes first: POST /sandbox/inbound, and the buttons follow)"
        )
    kind, choices = offered
    chosen = [c for c in choices if c.get("title") == option] or [c for c in choices if c.get("id") == option]
    if not chosen:
        titles = ", ".join(repr(c.get("title")) for c in choices)
        raise ValueError(f"message {record['messageId']} has no option {option!r}; its options: {titles}")
    return {
        "from": record["body"]["recipient"],
        "business_phone": record["body"].get("businessPhone"),
        "type": kind,
        "context": record["messageId"],
        "reply_id": chosen[0]["id"],
    }
