"""
The buttons of a Human-in-the-loop request on WhatsApp: their signed ids, the keys, and the message carrying them.

Shared by the notifier that sends them (:mod:`airflow_provider_itnio.notifications.hitl`) and the receiver that
takes the taps (:mod:`airflow_provider_itnio.webhook.taps`) and sends owed buttons
(:mod:`airflow_provider_itnio.webhook.owed_buttons`); neither imports the other. No Airflow import.

**Button ids.** ``hitl1.<ti id, 32 hex>.<option index>.<user id, base64url, may be empty>.<tag>.<tag>``:

- the first tag is HMAC-SHA256 over the TI id, the option index and the user id; it proves the id was made by the
  notifier for that task instance and option (an id made for one task instance cannot answer another, and an id
  cannot be made up: a *forged* id);
- the second tag also covers the recipient's number: the id only answers when tapped by the number it was sent
  to. This is how "only the recipients the notifier sent to can answer" is enforced, without a table of who was
  sent what: the id itself is the record, and nobody can make one for another number.

**Keys** (:func:`button_keys`): new ids are signed with a key derived from the connection's ``button_key`` extra
(:data:`~airflow_provider_itnio.connection_fields.BUTTON_KEY_EXTRA`), or, without one, from its API secret; never
from the ``webhook_token``, so rotating the push address's token (what one does after a leaked URL) leaves the
buttons already sent working. A tap is verified against every key of the connection's ring: each key of
``button_key`` (several, separated by spaces or commas, the first signing: keep the previous one after the new one
while requests signed with it are open), the API secret's, and the ``webhook_token``'s (ids made before this
scheme, until the token is rotated). Tags are 96 bits, compared in constant time (``hmac.compare_digest``). Ids
are at most :data:`MAX_ID` characters (WhatsApp allows 256 for a button, 200 for a list row).

**The request** (:func:`request_message`): 1-3 options (one to choose, no ``params``) as reply buttons, 4-10 as an
interactive list, anything else as a text saying to answer in the Airflow UI; the subject (bold) and body cut with
an ellipsis to WhatsApp's limits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_itnio import messages as m
from airflow_provider_itnio._text import cut
from airflow_provider_itnio.connection_fields import BUTTON_KEY_EXTRA, WEBHOOK_TOKEN_EXTRA

__all__ = [
    "BUTTONS",
    "ID_PREFIX",
    "LIST",
    "MAX_ID",
    "PENDING_XCOM_KEY",
    "REQUESTS_XCOM_KEY",
    "UI_ONLY",
    "ButtonId",
    "ButtonKeys",
    "button_key_secrets",
    "button_keys",
    "legacy_button_key",
    "mask_phone",
    "offer",
    "parse_button",
    "recipient_digest",
    "request_message",
    "request_text",
    "sign_button",
    "verify_button",
]

#: What every button id the notifier makes starts with (other buttons are not this module's business).
ID_PREFIX = "hitl1"
#: The longest id :func:`sign_button` makes (a list row's id may have 200 characters, a button's 256).
MAX_ID = 200
#: The XCom key under which the notifier records who is owed the buttons (their window was closed).
PENDING_XCOM_KEY = "itnio_hitl_pending"
#: The XCom key under which the notifier records what it sent to whom (masked numbers, messageIds).
REQUESTS_XCOM_KEY = "itnio_hitl_requests"
#: How the options are offered.
BUTTONS, LIST, UI_ONLY = "buttons", "list", "ui_only"
#: Labels of the key derivations (HMAC-SHA256 of the label under the secret): ``button_key``, the API secret, and
#: the ``webhook_token`` (the first scheme, only verified).
_BUTTON_KEY_LABEL = b"itnio-hitl-button-key-v2"
_API_SECRET_LABEL = b"itnio-hitl-api-secret-v2"
_LEGACY_LABEL = b"itnio-hitl-button-v1"
_TAG_BYTES = 12
_TAG_CHARS = 16  # base64url of 12 bytes, no padding
_ID = re.compile(
    rf"^{ID_PREFIX}\.([0-9a-f]{{32}})\.([0-9]{{1,2}})\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]{{16}})\.([A-Za-z0-9_-]{{16}})$"
)


# -- keys ----------------------------------------------------------------------------------------------------


def _derive(secret: str, label: bytes) -> bytes:
    return hmac.new(secret.strip().encode("utf-8"), label, hashlib.sha256).digest()


def legacy_button_key(webhook_token: str) -> bytes:
    """
    Return the key the first scheme derived from a connection's ``webhook_token`` (verified, never used to sign).

    :param webhook_token: The connection's ``webhook_token`` extra.
    """
    return _derive(webhook_token, _LEGACY_LABEL)


@dataclass(frozen=True)
class ButtonKeys:
    """
    A connection's key ring for button ids.

    :param signing: The key new ids are signed with, or ``None`` when the connection has neither a ``button_key``
        nor an API secret.
    :param verifying: Every key a tapped id may have been signed with (``signing`` first).
    """

    signing: bytes | None
    verifying: tuple[bytes, ...]


def button_keys(extra: Mapping[str, Any] | None, api_secret: str | None) -> ButtonKeys:
    """
    Return the key ring of a connection (see the module): ``button_key``'s keys, the API secret's, the token's.

    :param extra: The connection's extras (``button_key``: one or more secrets separated by spaces or commas, or a
        JSON list of them, the first signing; ``webhook_token``).
    :param api_secret: The connection's password (the API secret), or ``None``.
    :raises ValueError: When ``button_key`` is neither a string nor a list of strings.
    """
    extra = extra or {}
    keys = [_derive(secret, _BUTTON_KEY_LABEL) for secret in button_key_secrets(extra.get(BUTTON_KEY_EXTRA))]
    if isinstance(api_secret, str) and api_secret.strip():
        keys.append(_derive(api_secret, _API_SECRET_LABEL))
    signing = keys[0] if keys else None
    token = extra.get(WEBHOOK_TOKEN_EXTRA)
    if isinstance(token, str) and token.strip():
        keys.append(legacy_button_key(token))
    return ButtonKeys(signing, tuple(dict.fromkeys(keys)))


def button_key_secrets(value: object) -> list[str]:
    """
    Return the secrets of a ``button_key`` extra, the signing one first (``[]`` when it is unset, null or empty).

    :param value: The extra's value: secrets separated by spaces or commas, or a JSON list of them.
    :raises ValueError: When it is neither a string nor a list of strings.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [secret for secret in re.split(r"[\s,]+", value.strip()) if secret]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [secret for item in value for secret in button_key_secrets(item)]
    raise ValueError(
        f"the {BUTTON_KEY_EXTRA!r} extra must be a string (keys separated by spaces or commas, the first signing) or "
        f"a list of such strings; got {type(value).__name__}"
    )


# -- ids ------------------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, *parts: str) -> str:
    digest = hmac.new(key, "\x1f".join(parts).encode("utf-8"), hashlib.sha256).digest()
    return _b64(digest[:_TAG_BYTES])


@dataclass(frozen=True)
class ButtonId:
    """
    What a button id says (read by :func:`parse_button`; only to be trusted after :func:`verify_button`).

    :param ti_id: The task instance's id (32 hex digits).
    :param index: The option's index in the task's ``options``.
    :param user_id: The Airflow user id the recipient's number was mapped to, or ``None``.
    :param encoded_user: The user id as it is in the button id (base64url).
    :param task_tag: The tag over the TI id, the index and the user id.
    :param recipient_tag: The tag that also covers the recipient's number.
    """

    ti_id: str
    index: int
    user_id: str | None
    encoded_user: str
    task_tag: str
    recipient_tag: str


def sign_button(key: bytes, ti_id: uuid.UUID | str, index: int, recipient: str, user_id: str | None = None) -> str:
    """
    Return the button id of option ``index`` of task instance ``ti_id``, sent to ``recipient``.

    :param key: The signing key (:attr:`ButtonKeys.signing`).
    :param ti_id: The task instance's id.
    :param index: The option's index (0-99).
    :param recipient: The recipient's digits (as :func:`~airflow_provider_itnio.messages.normalize_phone` gives).
    :param user_id: The Airflow user the number stands for, or ``None``.
    :raises ValueError: When the id would be longer than :data:`MAX_ID` (a very long user id).
    """
    ti_hex = uuid.UUID(str(ti_id)).hex
    if not 0 <= index < 100:
        raise ValueError(f"option index must be 0-99; got {index}")
    user = _b64(user_id.encode("utf-8")) if user_id else ""
    task_tag = _tag(key, "task", ti_hex, str(index), user)
    recipient_tag = _tag(key, "recipient", ti_hex, str(index), user, recipient)
    value = f"{ID_PREFIX}.{ti_hex}.{index}.{user}.{task_tag}.{recipient_tag}"
    if len(value) > MAX_ID:
        raise ValueError(f"the user id {user_id!r} is too long for a button id (at most {MAX_ID} characters)")
    return value


def parse_button(value: object) -> ButtonId | None:
    """
    Return what a button id says, or ``None`` when it is not one of :func:`sign_button`'s (e.g. another feature's).

    :param value: The tapped button's or row's id.
    """
    if not isinstance(value, str) or not value.startswith(f"{ID_PREFIX}."):
        return None
    match = _ID.match(value)
    if match is None:
        return None
    ti_hex, index, user, task_tag, recipient_tag = match.groups()
    try:
        user_id = _unb64(user).decode("utf-8") if user else None
    except (ValueError, UnicodeDecodeError):
        return None
    return ButtonId(ti_hex, int(index), user_id, user, task_tag, recipient_tag)


def verify_button(keys: bytes | Iterable[bytes], button: ButtonId, sender: str) -> str:
    """
    Return ``"ok"``, ``"forged"`` (no key of the ring made it for this TI and option) or ``"other_number"``.

    :param keys: One key, or the key ring (:attr:`ButtonKeys.verifying`) of the connection that received the tap.
    :param button: From :func:`parse_button`.
    :param sender: The digits of the number that tapped.
    """
    parts = (button.ti_id, str(button.index), button.encoded_user)
    for key in [keys] if isinstance(keys, bytes) else keys:
        if hmac.compare_digest(_tag(key, "task", *parts), button.task_tag):
            if not hmac.compare_digest(_tag(key, "recipient", *parts, sender), button.recipient_tag):
                return "other_number"
            return "ok"
    return "forged"


def recipient_digest(key: bytes, phone: str) -> str:
    """
    Return a keyed digest of a recipient's number, to record who is owed the buttons without the number.

    :param key: The signing key.
    :param phone: The digits.
    """
    return _tag(key, "pending", phone)


def mask_phone(phone: str) -> str:
    """
    Return a number as the notifier's XCom shows it: ``+15*****0200`` (its first two and last four digits).

    :param phone: The digits.
    """
    keep = 4 if len(phone) >= 10 else 2
    return f"+{phone[:2]}{'*' * max(len(phone) - 2 - keep, 1)}{phone[-keep:]}"


# -- the request -------------------------------------------------------------------------------------------


def _unique(values: list[str]) -> bool:
    return len(set(values)) == len(values)


def offer(request: Any) -> str:
    """
    Return how a request's options are offered: :data:`BUTTONS`, :data:`LIST` or :data:`UI_ONLY`.

    :param request: The HITL operator, or its ``hitl_detail`` row (``options``, ``multiple``, ``params``).
    """
    options = [str(option) for option in request.options]
    if getattr(request, "multiple", False) or getattr(request, "params", None) or len(options) > m.MAX_ROWS:
        return UI_ONLY
    titles = [cut(option, m.MAX_BUTTON_TITLE) for option in options]
    if len(options) <= m.MAX_BUTTONS and _unique(titles):
        return BUTTONS
    return LIST if _unique([cut(option, m.MAX_ROW_TITLE) for option in options]) else UI_ONLY


def request_text(request: Any, link: str | None, limit: int, *, ui_only: bool) -> str:
    """
    Return a request's text: the subject in bold, the body, and the link, within ``limit`` characters.

    :param request: The (rendered) HITL operator, or its ``hitl_detail`` row (``subject``, ``body``).
    :param link: The UI link, or ``None``.
    :param limit: The most characters (1024 with buttons or a list, 4096 for a text).
    :param ui_only: Whether the answer must be given in the UI.
    """
    if ui_only:
        tail = f"\n\nAnswer in Airflow: {link}" if link else "\n\nAnswer in the Airflow UI."
        tail = "\n\nThis request needs the Airflow UI (it cannot be answered here)." + tail
    else:
        tail = f"\n\nOr answer in Airflow: {link}" if link else ""
    subject = "*" + cut(" ".join(str(request.subject).split()), 200) + "*"
    body = str(request.body or "").strip()
    room = limit - len(subject) - len(tail) - 2
    if room < 20:  # a very long link: leave it out rather than the request
        tail, room = "", limit - len(subject) - 2
    return subject + (f"\n\n{cut(body, room)}" if body else "") + tail


def request_message(
    request: Any,
    ti_id: uuid.UUID | str,
    recipient: str,
    key: bytes | None,
    link: str | None,
    *,
    user_id: str | None = None,
    list_button: str = "Choose",
) -> m.Message:
    """
    Return a request for one recipient: buttons, a list, or a text saying to answer in the UI.

    :param request: The (rendered) HITL operator, or its ``hitl_detail`` row (``options``, ``subject``, ``body``,
        ``multiple``, ``params``, ``assigned_users``).
    :param ti_id: The task instance's id (it goes, signed, into the button ids).
    :param recipient: The recipient's digits.
    :param key: The signing key (:attr:`ButtonKeys.signing`), or ``None``: a text only.
    :param link: The UI link, or ``None``.
    :param user_id: The Airflow user id the recipient's number stands for, or ``None``; when the request has
        ``assigned_users`` and this is none of theirs, a text only.
    :param list_button: The label of the button that opens the list of options (at most
        :data:`~airflow_provider_itnio.messages.MAX_LIST_BUTTON` characters).
    """
    mode = offer(request)
    assigned = {str(user.get("id")) for user in (getattr(request, "assigned_users", None) or [])}
    if key is None or (assigned and user_id not in assigned):
        mode = UI_ONLY
    if mode == UI_ONLY or key is None:
        return m.Text(body=request_text(request, link, m.MAX_TEXT_BODY, ui_only=True))
    options = [str(option) for option in request.options]
    ids = [sign_button(key, ti_id, index, recipient, user_id) for index in range(len(options))]
    text = request_text(request, link, m.MAX_INTERACTIVE_BODY, ui_only=False)
    if mode == BUTTONS:
        buttons = [m.Button(id=i, title=cut(o, m.MAX_BUTTON_TITLE)) for i, o in zip(ids, options, strict=True)]
        return m.ReplyButtons(body=text, buttons=buttons)
    rows = [
        m.Row(
            id=i,
            title=cut(o, m.MAX_ROW_TITLE),
            description=cut(o, m.MAX_ROW_DESCRIPTION) if len(o) > m.MAX_ROW_TITLE else None,
        )
        for i, o in zip(ids, options, strict=True)
    ]
    section = m.Section(title="Options", rows=rows)
    return m.ListMessage(body=text, button=cut(list_button, m.MAX_LIST_BUTTON), sections=[section])
