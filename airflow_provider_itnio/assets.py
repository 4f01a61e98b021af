"""
The Airflow assets the webhook receiver records events on (Airflow 3.1+), for DAGs to schedule on.

- :func:`inbound_messages`: one event per message a customer sends (``itnio://<conn_id>/inbound``), or, narrowed,
  per message of the kinds a DAG handles (``itnio://<conn_id>/inbound?reply_id=reschedule%3A%2A``);
- :func:`message_status`: one event per distinct status push with a given status
  (``itnio://<conn_id>/status/<status>``, e.g. ``itnio://itnio_default/status/failed``).

Each asset's name is its URI and its group is ``itnio``, so ``Asset("itnio://itnio_default/inbound")`` written by
hand is the same asset. Airflow 3 accepts the custom ``itnio`` scheme as it is (only ``airflow`` is reserved, and a
scheme without a registered normalizer is kept verbatim, its query sorted). The receiver records an event only when
the asset is known to Airflow (a parsed DAG uses it); otherwise a push records nothing on it and nothing fails.

A tap on an approval's button (an id made by the HITL notifier, ``hitl1.``...) answers the approval: it is the
approval layer's, and no inbound asset gets an event for it, narrowed or not.

DAG files import this module when they are parsed, so it imports only ``airflow.sdk``. Airflow 2 has no API
server to serve the receiver (and no asset events from plugins): importing this module there raises an
``ImportError`` that says Airflow 3.1+ is needed.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed

if not AIRFLOW_V_3_1_PLUS:
    raise airflow_3_1_needed("Scheduling on itnio pushes (airflow_provider_itnio.assets)")

from airflow.sdk import Asset

__all__ = [
    "ASSET_GROUP",
    "ASSET_SCHEME",
    "STATUSES",
    "InboundFilter",
    "inbound_filter",
    "inbound_messages",
    "inbound_messages_uri",
    "message_status",
    "message_status_uri",
]

#: The URI scheme of the provider's assets.
ASSET_SCHEME = "itnio"
#: The asset group shown in the UI.
ASSET_GROUP = "itnio"
#: The statuses :func:`message_status` takes (the vendor's words).
STATUSES: tuple[str, ...] = ("sent", "delivered", "read", "failed", "deleted")
#: What a connection id may hold (Airflow's own rule for connection ids), so that it is a valid URI host.
_CONN_ID = re.compile(r"^[\w.-]{1,250}$", re.ASCII)
#: What a ``message.type`` may be (the vendor's words: ``text``, ``interactive``, ``button``, ``image``...).
_MESSAGE_TYPE = re.compile(r"^[a-z0-9_-]{1,50}$")
#: The longest reply id WhatsApp gives a button (a list row's is 200).
_MAX_REPLY_ID = 256
#: The longest keyword (a phrase of a few words).
_MAX_KEYWORD = 100
#: The longest asset URI Airflow stores.
_MAX_URI = 1500
#: The query keys of a narrowed :func:`inbound_messages` URI.
_TYPE_KEY, _REPLY_KEY, _KEYWORD_KEY = "type", "reply_id", "keyword"


def _conn_id(itnio_conn_id: object) -> str:
    if not isinstance(itnio_conn_id, str) or not _CONN_ID.fullmatch(itnio_conn_id):
        raise ValueError(
            f"itnio_conn_id: must be a connection id (letters, digits, '_', '.', '-'); got {itnio_conn_id!r}"
        )
    return itnio_conn_id


def _words(text: str) -> str:
    """Return ``text`` case-folded, its runs of white space made one space, without leading or trailing space."""
    return " ".join(text.casefold().split())


def _message_type(value: str) -> str:
    word = value.strip().lower()
    if not _MESSAGE_TYPE.fullmatch(word):
        raise ValueError(
            "message_type: must be a message type of the vendor's (letters, digits, '_', '-'; e.g. 'text', "
            f"'interactive', 'image'); got {value!r}"
        )
    return word


def _reply_id(value: str) -> str:
    reply_id = value.strip()
    if not reply_id or len(reply_id) > _MAX_REPLY_ID + 1:
        raise ValueError(f"reply_ids: each must be 1 to {_MAX_REPLY_ID} characters; got {value!r}")
    if "*" in reply_id[:-1]:
        raise ValueError(f"reply_ids: '*' may only end an id (a prefix: 'reschedule:*'); got {value!r}")
    return reply_id


def _keyword(value: str) -> str:
    keyword = _words(value)
    if not keyword or len(keyword) > _MAX_KEYWORD:
        raise ValueError(f"keywords: each must be 1 to {_MAX_KEYWORD} characters, not only spaces; got {value!r}")
    return keyword


def _values(name: str, value: object, normalize: Callable[[str], str]) -> frozenset[str]:
    """Return the normalized values of the argument ``name`` (``None``, one string, or strings)."""
    if value is None:
        return frozenset()
    items: list[object] = [value] if isinstance(value, str) else []
    if not items:
        if isinstance(value, bytes | Mapping) or not isinstance(value, Iterable):
            raise ValueError(f"{name}: must be a string or a list of strings; got {type(value).__name__}")
        items = list(value)
        if not items:
            raise ValueError(f"{name}: must name at least one (or be None: any)")
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{name}: each must be a string; got {item!r}")
    return frozenset(normalize(item) for item in items if isinstance(item, str))


@functools.lru_cache(maxsize=1024)
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(keyword)}(?!\w)")


@dataclasses.dataclass(frozen=True)
class InboundFilter:
    """
    Which inbound messages a narrowed :func:`inbound_messages` asset gets: each given criterion must hold (any of
    its values), the ones left empty hold for every message.

    :param message_types: ``message.type`` is one of these (lower case: ``text``, ``interactive`` for a reply
        button or list row tap, ``button`` for a template's quick reply, ``image``, ``location``...).
    :param reply_ids: The tapped button's or list row's id is one of these; one ending in ``*`` is a prefix
        (``reschedule:*``), ``*`` alone is any tap.
    :param keywords: The text (a text's body or a media caption) holds one of these as whole words, in any case,
        with any spacing (``stop`` matches "Please STOP", not "stopwatch").
    """

    message_types: frozenset[str] = frozenset()
    reply_ids: frozenset[str] = frozenset()
    keywords: frozenset[str] = frozenset()

    def query(self) -> str:
        """Return the filter as a URI query, as Airflow normalizes one (pairs sorted, URL-encoded)."""
        pairs = [(_TYPE_KEY, value) for value in self.message_types]
        pairs += [(_REPLY_KEY, value) for value in self.reply_ids]
        pairs += [(_KEYWORD_KEY, value) for value in self.keywords]
        return urlencode(sorted(pairs))

    def matches(self, extra: Mapping[str, Any]) -> bool:
        """
        Return whether an inbound message is one this filter takes.

        :param extra: The message's asset event ``extra`` (:func:`~airflow_provider_itnio.events.asset_extra`).
        """
        if self.message_types and str(extra.get("type") or "").lower() not in self.message_types:
            return False
        if self.reply_ids:
            reply = extra.get("reply")
            reply_id = reply.get("id") if isinstance(reply, Mapping) else None
            if not isinstance(reply_id, str) or not any(_id_matches(want, reply_id) for want in self.reply_ids):
                return False
        if self.keywords:
            text = extra.get("text")
            words = _words(text) if isinstance(text, str) else ""
            if not any(_keyword_pattern(keyword).search(words) for keyword in self.keywords):
                return False
        return True


def _id_matches(wanted: str, reply_id: str) -> bool:
    return reply_id.startswith(wanted[:-1]) if wanted.endswith("*") else reply_id == wanted


def inbound_filter(uri: str) -> InboundFilter | None:
    """
    Return the filter of a narrowed :func:`inbound_messages` asset's URI, or ``None`` when it is not one.

    :param uri: An asset's URI (``itnio://<conn_id>/inbound?...``).
    :raises ValueError: For an ``inbound`` URI whose query this provider cannot read (an unknown key, a bad value).
    """
    parts = urlsplit(uri)
    if parts.scheme != ASSET_SCHEME or parts.path != "/inbound" or not parts.query:
        return None
    found: dict[str, list[str]] = {_TYPE_KEY: [], _REPLY_KEY: [], _KEYWORD_KEY: []}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in found:
            raise ValueError(f"{uri}: unknown query key {key!r} (known: {', '.join(found)})")
        found[key].append(value)
    return InboundFilter(
        message_types=_values("message_type", found[_TYPE_KEY] or None, _message_type),
        reply_ids=_values("reply_ids", found[_REPLY_KEY] or None, _reply_id),
        keywords=_values("keywords", found[_KEYWORD_KEY] or None, _keyword),
    )


def inbound_messages_uri(
    itnio_conn_id: str = "itnio_default",
    *,
    message_type: str | Iterable[str] | None = None,
    reply_ids: str | Iterable[str] | None = None,
    keywords: str | Iterable[str] | None = None,
) -> str:
    """
    Return the URI (and name) of :func:`inbound_messages`' asset: ``itnio://<itnio_conn_id>/inbound``, with the
    filter as its query when narrowed (``itnio://itnio_default/inbound?reply_id=reschedule%3A%2A``).

    The same filter always gives the same URI, whatever the order of its values. The arguments are
    :func:`inbound_messages`'.
    """
    uri = f"{ASSET_SCHEME}://{_conn_id(itnio_conn_id)}/inbound"
    narrowed = InboundFilter(
        message_types=_values("message_type", message_type, _message_type),
        reply_ids=_values("reply_ids", reply_ids, _reply_id),
        keywords=_values("keywords", keywords, _keyword),
    )
    if narrowed == InboundFilter():
        return uri
    uri = f"{uri}?{narrowed.query()}"
    if len(uri) > _MAX_URI:
        raise ValueError(
            f"message_type, reply_ids, keywords: too many or too long (the asset URI has {len(uri)} "
            f"characters; Airflow stores at most {_MAX_URI})"
        )
    return uri


def message_status_uri(itnio_conn_id: str = "itnio_default", status: str = "failed") -> str:
    """
    Return the URI (and name) of :func:`message_status`' asset, ``itnio://<itnio_conn_id>/status/<status>``.

    :param itnio_conn_id: The ``itnio`` connection whose webhook address receives the status pushes.
    :param status: One of :data:`STATUSES` (any case).
    """
    word = status.strip().lower() if isinstance(status, str) else status
    if word not in STATUSES:
        raise ValueError(f"status: must be one of {', '.join(STATUSES)}; got {status!r}")
    return f"{ASSET_SCHEME}://{_conn_id(itnio_conn_id)}/status/{word}"


def inbound_messages(
    itnio_conn_id: str = "itnio_default",
    *,
    message_type: str | Iterable[str] | None = None,
    reply_ids: str | Iterable[str] | None = None,
    keywords: str | Iterable[str] | None = None,
) -> Asset:
    """
    Return the asset that gets an event for every message a customer sends to the connection's application, or,
    narrowed, for the messages a DAG handles.

    Schedule a DAG on it (``schedule=inbound_messages("itnio_default")``) to run on customers' messages; narrow it
    (``inbound_messages("itnio_default", reply_ids="reschedule:*")``) so that the DAG runs only for the replies it
    handles. Each narrowed form is an asset of its own, whose URI holds the filter; every criterion given must
    hold (any of its values). A tap on an approval's button is no event of any of them: it answers the approval.

    Each event's ``extra`` has ``message_id``, ``from`` (digits), ``name``, ``business_phone``, ``type``, ``text``
    (body or caption, else ``None``), ``reply`` (``{"id", "title"}`` for a button or list-row tap, else ``None``),
    ``location``, ``media``, ``timestamp`` (the vendor's, Unix seconds) and ``raw`` (the whole push). A re-push of
    the same message records no second event.

    :param itnio_conn_id: The ``itnio`` connection whose webhook address receives the messages.
    :param message_type: Only messages of this ``message.type`` (or of one of these): ``text``, ``interactive``
        (a reply button or list row tap), ``button`` (a template's quick reply), ``image``, ``location``... (any
        case).
    :param reply_ids: Only taps on a button or list row with one of these ids; an id ending in ``*`` is a prefix
        (``"reschedule:*"`` takes ``reschedule:APT-311``), ``"*"`` any tap.
    :param keywords: Only messages whose text (or caption) holds one of these as whole words, in any case
        (``"stop"`` takes "Please STOP", not "stopwatch").
    :raises ValueError: For a bad argument, naming it.
    """
    uri = inbound_messages_uri(itnio_conn_id, message_type=message_type, reply_ids=reply_ids, keywords=keywords)
    return Asset(name=uri, uri=uri, group=ASSET_GROUP)


def message_status(itnio_conn_id: str = "itnio_default", status: str = "failed") -> Asset:
    """
    Return the asset that gets an event for every distinct status push with ``status``.

    Schedule a DAG on ``message_status("itnio_default", "failed")`` to react to failed messages. Each event's
    ``extra`` has ``message_id``, ``recipient``, ``business_phone``, ``status``, ``failure`` (the vendor's reason,
    or ``None``), ``timestamp`` (the vendor's, Unix seconds) and ``raw`` (the whole push). A re-push of the same
    status of the same message records no second event; a push that arrives late (``delivered`` after ``read``)
    still records its event, since it is a status the message did reach.

    :param itnio_conn_id: The ``itnio`` connection whose webhook address receives the status pushes.
    :param status: ``sent``, ``delivered``, ``read``, ``failed`` or ``deleted`` (any case).
    """
    uri = message_status_uri(itnio_conn_id, status)
    return Asset(name=uri, uri=uri, group=ASSET_GROUP)
