"""
Vendor pushes as the spec's field tables describe them: status reports and customers' messages.

Built from the spec's section "Pushes from the vendor to you (webhooks)", with the ids and numbers of the vendor's
send example (the seed page has no example push). Used by the parser's tests, the receiver's, the store's, the
sensor's and the window's.
"""

from __future__ import annotations

import copy
from typing import Any

# The ids and numbers of the vendor's send example: appId, businessPhone, recipient, the returned messageId.
APP_ID = "DGziZf5u"
BUSINESS = "91856321321"
CUSTOMER = "91856321322"
SENT_ID = "10415ecbd0c848ebb7d5a3fe53269df6"
WHEN = 1693813991


#: A status push with every field of the spec's "Message status report" table.
STATUS_PUSH: dict[str, Any] = {
    "appId": APP_ID,
    "channelType": 0,
    "messageId": SENT_ID,
    "eventType": "message-status-event",
    "billable": "true",
    "form": BUSINESS,
    "recipient": CUSTOMER,
    "status": "sent",
    "failure": "",
    "conversationId": "a1b2c3d4e5f6",
    "expiresAt": WHEN + 86400,
    "conversationType": "service",
    "timestamp": WHEN,
}


#: The spec's failure example: a session message outside the 24-hour window.
FAILED_PUSH: dict[str, Any] = {
    "appId": APP_ID,
    "channelType": 0,
    "messageId": SENT_ID,
    "eventType": "message-status-event",
    "billable": "false",
    "form": BUSINESS,
    "recipient": CUSTOMER,
    "status": "failed",
    "failure": "131047 Re-engagement message: more than 24 hours have passed since the customer last replied",
    "conversationType": "service",
    "timestamp": WHEN + 5,
}


MEDIA_OBJECT = {"id": "1234567890", "filePath": "https://files.example/m/1", "mimeType": "image/jpeg", "sha256": "ab12"}


#: ``message`` of an inbound push, one per ``message.type`` of the spec (and the tap shapes it assumes).
MESSAGES: dict[str, dict[str, Any]] = {
    "text": {"type": "text", "text": {"body": "Can I move my appointment?"}},
    "image": {"type": "image", "image": {**MEDIA_OBJECT, "caption": "the receipt"}},
    "video": {
        "type": "video",
        "video": {**MEDIA_OBJECT, "mimeType": "video/mp4", "caption": "the leak", "filename": "leak.mp4"},
    },
    "audio": {"type": "audio", "audio": {**MEDIA_OBJECT, "mimeType": "audio/ogg"}},
    "document": {
        "type": "document",
        "document": {**MEDIA_OBJECT, "mimeType": "application/pdf", "filename": "invoice.pdf", "caption": "paid"},
    },
    "sticker": {"type": "sticker", "sticker": {**MEDIA_OBJECT, "mimeType": "image/webp"}},
    "location": {
        "type": "location",
        "location": {"longitude": "116.397128", "latitude": "39.916527", "name": "Office", "address": "1 Main St"},
    },
    "unknown": {"type": "unknown"},
    "unsupported": {"type": "unsupported", "unsupported": {"reason": "poll"}},
    "button_reply": {
        "type": "interactive",
        "interactive": {"type": "button_reply", "button_reply": {"id": "reschedule", "title": "Reschedule"}},
    },
    "list_reply": {
        "type": "interactive",
        "interactive": {
            "type": "list_reply",
            "list_reply": {"id": "slot-2", "title": "Tue 10:00", "description": "with Dr. Lee"},
        },
    },
    "quick_reply": {"type": "button", "button": {"payload": "STOP_PROMOS", "text": "Stop promotions"}},
}


def inbound(message: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Return an inbound push (every field of the spec's "Uplink (inbound) message" table) with ``message``."""
    push: dict[str, Any] = {
        "appId": APP_ID,
        "channelType": 0,
        "messageId": "wamid.HBgMOTE4NTYzMjEzMjIVAgASGBQzQTdGRTc2",
        "timestamp": WHEN + 60,
        "eventType": "up-message-event",
        "businessPhone": BUSINESS,
        "from": {"phone": CUSTOMER, "name": "Asha"},
        "message": copy.deepcopy(message),
    }
    push.update(fields)
    return push


def status_push(**fields: Any) -> dict[str, Any]:
    """Return :data:`STATUS_PUSH` with ``fields`` replaced (``None`` removes a field)."""
    push = copy.deepcopy(STATUS_PUSH)
    for key, value in fields.items():
        if value is None:
            push.pop(key, None)
        else:
            push[key] = value
    return push
