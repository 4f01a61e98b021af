"""The vendor's pushes, emulated: status reports and customers' messages POSTed to the configured addresses.

Built from the spec ("Pushes from the vendor to you (webhooks)"), never from the provider's parser: the sandbox
plays the vendor, so a bug in the provider's reading of a push must not be able to hide behind a shared one.

- Every accepted message gets ``sent``, ``delivered``, ``read`` status reports (``message-status-event``) after
  ``status_delays`` (seconds after the send was accepted, multiplied by ``time_scale``). The next status of a
  message goes out only once the previous one's first attempt is over, so they arrive in order unless a
  reorder is injected.
- WhatsApp's 24-hour window: an inbound message (:meth:`PushEngine.inbound`) opens it for (business phone,
  customer). A session message (``/wa/custom/sendMsg``) to a customer whose window is closed is still accepted
  (the vendor answers with a ``messageId``) but ends with ``sent`` then ``failed`` (131047 re-engagement) instead
  of ``delivered`` / ``read`` when ``enforce_window`` is on. Templates are always delivered.
- Per-recipient outcomes (:meth:`PushEngine.set_failure`), injected duplicates and out-of-order statuses.
- The vendor's re-push: a push answered with a non-2xx status, or that cannot be delivered (connection refused,
  timeout), is sent again after ``retry_delays`` (1, 3 and 5 minutes, each counted from the previous attempt,
  multiplied by ``time_scale``), then given up. Every attempt is in :meth:`PushEngine.log`.
- Pushes go out from a scheduler thread and a small pool of worker threads with bounded queues: the API's
  request handlers only add to a bounded heap and never wait. A push that does not fit is logged as dropped.

Push addresses may hold a secret token (the provider's receiver takes one in its path): the log and the
settings show them with the last path segment, the query and any user info replaced by ``***``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import heapq
import http.client
import itertools
import json
import math
import queue
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

STATUS_EVENT = "message-status-event"
INBOUND_EVENT = "up-message-event"
#: WhatsApp's customer-service window, in seconds.
WINDOW_SECONDS = 24 * 3600
#: The failure reason pushed for a session message outside the window (WhatsApp's error 131047).
RE_ENGAGEMENT_FAILURE = (
    "131047 Re-engagement message: more than 24 hours have passed since the customer last replied to this number"
)
#: The progress statuses, in order.
PROGRESS = ("sent", "delivered", "read")
DEFAULT_STATUS_DELAYS = (0.05, 0.1, 0.2)
#: The vendor's re-push schedule: 1, 3 and 5 minutes (each after the previous attempt).
DEFAULT_RETRY_DELAYS = (60.0, 180.0, 300.0)
DEFAULT_PUSH_TIMEOUT = 5.0
DEFAULT_PUSH_WORKERS = 4
DEFAULT_MAX_PENDING = 10_000
#: Most attempts kept in the push log (the oldest are forgotten first).
MAX_LOG = 100_000
#: ``message.type`` values of a simulated inbound message that describe a media file, with a default MIME type.
MEDIA_MIME_TYPES = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/ogg",
    "document": "application/pdf",
    "sticker": "image/webp",
}
TAP_TYPES = ("button_reply", "list_reply", "button")
#: Inbound kinds :meth:`PushEngine.inbound` builds (any other ``message.type`` can be given whole as ``message``).
INBOUND_TYPES = ("text", *MEDIA_MIME_TYPES, "location", *TAP_TYPES)
#: Keys accepted by :meth:`PushEngine.configure` (and ``POST /sandbox/config``).
CONFIG_KEYS = frozenset(
    {
        "push_url",
        "status_push_url",
        "inbound_push_url",
        "enforce_window",
        "status_delays",
        "push_time_scale",
        "push_retry_delays",
        "push_timeout",
        "duplicate_probability",
        "reorder_probability",
        "duplicate_next",
        "reorder_next",
    }
)
DEFAULT_CUSTOMER_NAME = "Sandbox Customer"

PushCallback = Callable[[dict[str, Any]], None]


def redact_url(url: str | None) -> str | None:
    """
    Return ``url`` without what may be secret: user info, the last non-empty path segment and the query.

    :param url: The push address (``None`` stays ``None``).
    """
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    segments = parts.path.split("/")
    for index in range(len(segments) - 1, -1, -1):
        if segments[index]:
            segments[index] = "***"
            break
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{'/'.join(segments)}{query}"


def check_url(value: object, name: str) -> str | None:
    """
    Return a push address after checking it (``None`` or ``""`` = no address).

    :param value: The address.
    :param name: The setting's name, for the error.
    :raises ValueError: When it is not an ``http://`` or ``https://`` URL with a host.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a URL string or null")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{name} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http:// or https:// URL with a host")
    return value


def _seconds(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _delays(value: object, name: str, length: int | None = None) -> tuple[float, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list of seconds")
    delays = tuple(_seconds(v, name) for v in value)
    if length is not None and len(delays) != length:
        raise ValueError(f"{name} must have {length} values, got {len(delays)}")
    return delays


def _probability(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _phone(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or not 7 <= len(value) <= 15:
        raise ValueError(f"{name} must be a string of 7 to 15 digits")
    return value


@dataclass(frozen=True)
class PushConfig:
    """
    How the sandbox pushes (start settings; most can be changed at run time with :meth:`PushEngine.configure`).

    :param status_url: Where status reports go (``None``: not pushed).
    :param inbound_url: Where customers' messages go (``None``: not pushed; the window still opens).
    :param enforce_window: Fail session messages to customers whose 24-hour window is closed (131047).
    :param status_delays: Seconds after acceptance of ``sent``, ``delivered`` and ``read``.
    :param time_scale: Multiplies every wait (status delays and re-push delays); 0.001 turns minutes into ms.
    :param retry_delays: Seconds before each re-push of a push that was not answered with a 2xx status.
    :param timeout: Seconds a push may take (connect, send, answer) before it counts as failed.
    :param duplicate_probability: Chance that a push is delivered twice.
    :param reorder_probability: Chance that a message's statuses are pushed in reverse order.
    :param seed: Seed of the random choices above (``None``: unpredictable).
    :param workers: Threads that deliver pushes.
    :param max_pending: Most pushes waiting to go out; more are dropped (and logged as such).
    """

    status_url: str | None = None
    inbound_url: str | None = None
    enforce_window: bool = True
    status_delays: tuple[float, ...] = DEFAULT_STATUS_DELAYS
    time_scale: float = 1.0
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    timeout: float = DEFAULT_PUSH_TIMEOUT
    duplicate_probability: float = 0.0
    reorder_probability: float = 0.0
    seed: int | None = None
    workers: int = DEFAULT_PUSH_WORKERS
    max_pending: int = DEFAULT_MAX_PENDING

    def checked(self) -> PushConfig:
        """Return this configuration after checking every value (raises ``ValueError``)."""
        if not isinstance(self.enforce_window, bool):
            raise ValueError("enforce_window must be true or false")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 1 <= self.workers <= 64:
            raise ValueError(f"workers must be an integer from 1 to 64, got {self.workers!r}")
        if isinstance(self.max_pending, bool) or not isinstance(self.max_pending, int) or self.max_pending < 1:
            raise ValueError(f"max_pending must be a positive integer, got {self.max_pending!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError("seed must be an integer or None")
        return replace(
            self,
            status_url=check_url(self.status_url, "status_push_url"),
            inbound_url=check_url(self.inbound_url, "inbound_push_url"),
            status_delays=_delays(self.status_delays, "status_delays", len(PROGRESS)),
            time_scale=_seconds(self.time_scale, "push_time_scale", positive=True),
            retry_delays=_delays(self.retry_delays, "push_retry_delays"),
            timeout=_seconds(self.timeout, "push_timeout", positive=True),
            duplicate_probability=_probability(self.duplicate_probability, "duplicate_probability"),
            reorder_probability=_probability(self.reorder_probability, "reorder_probability"),
        )


@dataclass(frozen=True)
class RecipientRule:
    """
    What happens to every message sent to one recipient.

    :param failure: The failure reason of a ``failed`` push, or ``None`` for no failure.
    :param after: The last progress status pushed before the failure (or before stopping): ``sent``,
        ``delivered``, ``read`` or ``none``.
    """

    failure: str | None
    after: str

    def statuses(self) -> list[str]:
        """Return the statuses pushed, in their natural order."""
        progress = [] if self.after == "none" else list(PROGRESS[: PROGRESS.index(self.after) + 1])
        return [*progress, "failed"] if self.failure is not None else progress


@dataclass
class _Step:
    """One push of a chain (a message's statuses, or one inbound message)."""

    kind: str
    label: str
    message_id: str
    offset: float
    body: dict[str, Any]
    duplicate: bool = False


@dataclass
class _Chain:
    """The pushes of one message, released one after the other."""

    steps: list[_Step]
    start: float
    generation: int
    index: int = 0


@dataclass
class _Attempt:
    """One delivery attempt of one push."""

    push_id: int
    step: _Step
    url: str
    data: bytes
    number: int
    generation: int
    chain: _Chain | None = None


@dataclass
class _Windows:
    last_inbound: dict[tuple[str, str], float] = field(default_factory=dict)
    conversations: dict[tuple[str, str, str], tuple[str, int]] = field(default_factory=dict)


class PushEngine:
    """
    Build and deliver the vendor's pushes for one sandbox.

    :param config: The start settings (:meth:`reset` returns to them).
    :param app_id: The account's application id (``appId`` of every push).
    :param business_phones: Returns the account's business phones (the first is the default).
    :param clock: Returns the sandbox's Unix time (push timestamps, windows).
    :param find_message: Returns an accepted message record by id, or ``None`` (to answer taps from it).
    :param on_push: Called (in a worker thread) with each log entry; exceptions are ignored.
    """

    def __init__(
        self,
        config: PushConfig,
        *,
        app_id: str,
        business_phones: Callable[[], list[str]],
        clock: Callable[[], float],
        find_message: Callable[[str], dict[str, Any] | None],
        on_push: PushCallback | None = None,
    ) -> None:
        self.start_config = config.checked()
        self._config = self.start_config
        self._app_id = app_id
        self._business_phones = business_phones
        self._clock = clock
        self._find_message = find_message
        self.on_push = on_push
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, _Chain | _Attempt]] = []
        self._seq = itertools.count()
        self._push_ids = itertools.count(1)
        self._busy = 0
        self._generation = 0
        self._stopping = False
        self._ready: queue.Queue[_Chain | _Attempt | None] = queue.Queue(maxsize=max(64, 16 * config.workers))
        self._threads: list[threading.Thread] = []
        self._active: set[http.client.HTTPConnection] = set()
        self._log: deque[dict[str, Any]] = deque(maxlen=MAX_LOG)
        self._windows = _Windows()
        self._rules: dict[str, RecipientRule] = {}
        self._duplicate_next = 0
        self._reorder_next = 0
        self._random = random.Random(config.seed)

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self, name: str = "itnio-sandbox-push") -> None:
        """
        Start the scheduler and the workers (do nothing when they run).

        :param name: The threads' name prefix.
        """
        with self._lock:
            if self._threads:
                return
            self._stopping = False
            threads = [threading.Thread(target=self._schedule_loop, name=f"{name}-scheduler", daemon=True)]
            threads += [
                threading.Thread(target=self._work_loop, name=f"{name}-{i}", daemon=True)
                for i in range(self._config.workers)
            ]
            self._threads = threads
        for thread in threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """
        Stop delivering: pending pushes are forgotten, attempts in flight are cut, the threads end.

        :param timeout: Seconds to wait for the threads.
        """
        with self._lock:
            threads, self._threads = self._threads, []
            self._stopping = True
            self._generation += 1
            self._busy -= len(self._heap)
            self._heap.clear()
            self._lock.notify_all()
            active = list(self._active)
        for conn in active:  # wake workers blocked on a slow receiver
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if not threads:
            return
        while True:  # make room for the sentinels
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._done()
        for _ in threads[1:]:
            self._ready.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def reset(self) -> None:
        """Back to the start settings: no pending push, empty log, no window, rule or injection."""
        with self._lock:
            self._generation += 1
            self._busy -= len(self._heap)
            self._heap.clear()
            self._config = self.start_config
            self._log.clear()
            self._windows = _Windows()
            self._rules.clear()
            self._duplicate_next = self._reorder_next = 0
            self._random = random.Random(self._config.seed)
            self._lock.notify_all()

    # -- settings ------------------------------------------------------------------------------------

    @property
    def config(self) -> PushConfig:
        """The current settings."""
        with self._lock:
            return self._config

    def configure(self, changes: Mapping[str, Any]) -> None:
        """
        Change settings at run time; every value is checked before any is applied.

        :param changes: Any of :data:`CONFIG_KEYS`: ``push_url`` (both addresses), ``status_push_url``,
            ``inbound_push_url``, ``enforce_window``, ``status_delays`` (3 values), ``push_time_scale``,
            ``push_retry_delays``, ``push_timeout``, ``duplicate_probability``, ``reorder_probability``,
            ``duplicate_next`` / ``reorder_next`` (the next N pushes duplicated / messages reordered).
        :raises ValueError: For an unknown key or a bad value (nothing is changed then).
        """
        unknown = set(changes) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown push settings: {', '.join(sorted(unknown))}")
        names = {
            "status_push_url": "status_url",
            "inbound_push_url": "inbound_url",
            "push_time_scale": "time_scale",
            "push_retry_delays": "retry_delays",
            "push_timeout": "timeout",
        }
        updates = {
            names.get(k, k): v for k, v in changes.items() if k not in ("push_url", "duplicate_next", "reorder_next")
        }
        if "push_url" in changes:
            updates.setdefault("status_url", changes["push_url"])
            updates.setdefault("inbound_url", changes["push_url"])
        duplicate_next = _count(changes.get("duplicate_next", 0), "duplicate_next")
        reorder_next = _count(changes.get("reorder_next", 0), "reorder_next")
        with self._lock:
            new = replace(self._config, **updates).checked()
            self._config = new
            self._duplicate_next += duplicate_next
            self._reorder_next += reorder_next

    def settings(self) -> dict[str, Any]:
        """Return the current push settings as JSON (addresses redacted)."""
        with self._lock:
            cfg = self._config
            now = self._clock()
            return {
                "status_push_url": redact_url(cfg.status_url),
                "inbound_push_url": redact_url(cfg.inbound_url),
                "enforce_window": cfg.enforce_window,
                "status_delays": list(cfg.status_delays),
                "push_time_scale": cfg.time_scale,
                "push_retry_delays": list(cfg.retry_delays),
                "push_timeout": cfg.timeout,
                "duplicate_probability": cfg.duplicate_probability,
                "reorder_probability": cfg.reorder_probability,
                "duplicate_next": self._duplicate_next,
                "reorder_next": self._reorder_next,
                "failures": [
                    {"recipient": r, "failure": rule.failure, "after": rule.after} for r, rule in self._rules.items()
                ],
                "windows": [
                    {
                        "business_phone": bp,
                        "customer": customer,
                        "last_inbound": int(at),
                        "open": now - at < WINDOW_SECONDS,
                    }
                    for (bp, customer), at in self._windows.last_inbound.items()
                ],
                "pending": self._busy,
            }

    def set_failure(self, recipient: str, failure: str | None = RE_ENGAGEMENT_FAILURE, after: str = "sent") -> None:
        """
        Decide what happens to every message sent to ``recipient`` (session and template alike).

        :param recipient: The customer's digits.
        :param failure: The ``failure`` of a ``failed`` push; ``None`` pushes no failure, progress just stops.
        :param after: The last progress status pushed first: ``sent`` (default), ``delivered``, ``read`` or
            ``none``. With ``failure=None, after="delivered"`` a message is delivered and never read.
        """
        _phone(recipient, "recipient")
        if failure is not None and (not isinstance(failure, str) or not failure.strip()):
            raise ValueError("failure must be a non-empty string or null")
        if after not in (*PROGRESS, "none"):
            raise ValueError(f"after must be one of sent, delivered, read, none; got {after!r}")
        with self._lock:
            self._rules[recipient] = RecipientRule(failure, after)

    def clear_failure(self, recipient: str | None = None) -> None:
        """
        Forget the rule of one recipient, or of all.

        :param recipient: The customer's digits; ``None`` for every rule.
        """
        with self._lock:
            if recipient is None:
                self._rules.clear()
            else:
                self._rules.pop(recipient, None)

    # -- windows -------------------------------------------------------------------------------------

    def open_window(self, customer: str, business_phone: str | None = None, at: float | None = None) -> None:
        """
        Record that ``customer`` wrote to ``business_phone`` at ``at`` (without pushing anything).

        :param customer: The customer's digits.
        :param business_phone: The business number (the account's first by default).
        :param at: Unix time of the customer's message (now by default; 25 hours ago closes the window).
        """
        key = (self._business_phone(business_phone), _phone(customer, "customer"))
        with self._lock:
            self._windows.last_inbound[key] = self._clock() if at is None else float(at)

    def window_open(self, customer: str, business_phone: str | None = None) -> bool:
        """
        Return True when ``customer`` wrote to ``business_phone`` within the last 24 hours.

        :param customer: The customer's digits.
        :param business_phone: The business number (the account's first by default).
        """
        key = (self._business_phone(business_phone), customer)
        with self._lock:
            at = self._windows.last_inbound.get(key)
            return at is not None and self._clock() - at < WINDOW_SECONDS

    # -- events --------------------------------------------------------------------------------------

    def message_accepted(self, record: Mapping[str, Any], session: bool) -> None:
        """
        Schedule the status reports of a message the API accepted (never blocks on delivery).

        :param record: The accepted message (``messageId``, ``body`` with ``businessPhone`` and ``recipient``).
        :param session: True for ``/wa/custom/sendMsg``, False for a template.
        """
        body = record["body"]
        business_phone, recipient = str(body.get("businessPhone")), str(body.get("recipient"))
        message_id = str(record["messageId"])
        now = self._clock()
        with self._lock:
            cfg = self._config
            if cfg.status_url is None:
                return
            rule = self._rules.get(recipient)
            failure: str | None = None
            if rule is not None:
                statuses, failure = rule.statuses(), rule.failure
            elif session and cfg.enforce_window and not self._window_open_locked(business_phone, recipient, now):
                statuses, failure = ["sent", "failed"], RE_ENGAGEMENT_FAILURE
            else:
                statuses = list(PROGRESS)
            if not statuses:
                return
            billable = "failed" not in statuses
            reorder = self._take_reorder_locked() if len(statuses) > 1 else False
            offsets = [cfg.status_delays[min(i, len(PROGRESS) - 1)] * cfg.time_scale for i in range(len(statuses))]
            kind = "service" if session else "utility"  # the sandbox does not know a template's category
            # the conversation opens when the first status happens
            conversation = (
                self._conversation_locked(business_phone, recipient, kind, now + offsets[0]) if billable else None
            )
            bodies = []
            for status, offset in zip(statuses, offsets, strict=True):
                push = {
                    "appId": self._app_id,
                    "channelType": 0,
                    "messageId": message_id,
                    "eventType": STATUS_EVENT,
                    "billable": "true" if billable else "false",
                    "form": business_phone,
                    "recipient": recipient,
                    "status": status,
                }
                if conversation is not None and status in ("sent", "delivered"):
                    push["conversationId"] = conversation[0]
                    if status == "sent":
                        push["expiresAt"] = conversation[1]
                    push["conversationType"] = conversation[2]
                if status == "failed":
                    push["failure"] = failure
                push["timestamp"] = int(now + offset)
                bodies.append((status, push))
            if reorder:
                bodies.reverse()
            steps = self._steps_locked("status", message_id, [(label, b) for label, b in bodies], offsets)
            self._schedule_locked(_Chain(steps, time.monotonic(), self._generation), time.monotonic() + offsets[0])

    def inbound(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """
        Simulate a customer writing to the business: open (renew) the window and push the uplink message.

        :param request: ``from`` (customer digits, required), ``name``, ``business_phone``, ``type`` (``text``,
            ``image`` / ``video`` / ``audio`` / ``document`` / ``sticker``, ``location``, ``button_reply``,
            ``list_reply``, ``button``) and its fields: ``text``; ``caption``, ``media_url``, ``mime_type``,
            ``filename``; ``latitude``, ``longitude``, ``location_name``, ``address``; ``context`` (the id of the
            message quoted), ``reply_id``, ``reply_title``, ``description``. Or ``message``: the whole
            ``message`` object, pushed as given (any ``type``).
        :return: The pushed body (its ``messageId`` is the inbound message's id).
        :raises ValueError: For a bad request.
        """
        known = {
            "from",
            "name",
            "business_phone",
            "type",
            "text",
            "caption",
            "media_url",
            "mime_type",
            "filename",
            "latitude",
            "longitude",
            "location_name",
            "address",
            "context",
            "reply_id",
            "reply_title",
            "description",
            "message",
        }
        unknown = set(request) - known
        if unknown:
            raise ValueError(f"unknown inbound keys: {', '.join(sorted(unknown))}")
        customer = _phone(request.get("from"), "from")
        name = request.get("name", DEFAULT_CUSTOMER_NAME)
        if name is not None and not isinstance(name, str):
            raise ValueError("name must be a string")
        business_phone = self._business_phone(request.get("business_phone"))
        message = self._inbound_message(request, business_phone)
        now = self._clock()
        push = {
            "appId": self._app_id,
            "channelType": 0,
            "messageId": uuid.uuid4().hex,
            "timestamp": int(now),
            "eventType": INBOUND_EVENT,
            "businessPhone": business_phone,
            "from": {"phone": customer, "name": name},
            "message": message,
        }
        with self._lock:
            self._windows.last_inbound[(business_phone, customer)] = now
            if self._config.inbound_url is not None:
                steps = self._steps_locked("inbound", str(push["messageId"]), [(str(message["type"]), push)], [0.0])
                self._schedule_locked(_Chain(steps, time.monotonic(), self._generation), time.monotonic())
        return copy.deepcopy(push)

    # -- log -----------------------------------------------------------------------------------------

    def log(self) -> list[dict[str, Any]]:
        """Return every push attempt, in the order they ended (see the module's documentation)."""
        with self._lock:
            return copy.deepcopy(list(self._log))

    def clear_log(self) -> None:
        """Forget the push log (pending pushes still go out)."""
        with self._lock:
            self._log.clear()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """
        Wait until no push is pending or in flight (re-pushes included).

        :param timeout: Seconds to wait at most.
        :return: True when idle, False on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    # -- internals: building -------------------------------------------------------------------------

    def _business_phone(self, value: object) -> str:
        phones = self._business_phones()
        if value is None:
            return phones[0]
        if not isinstance(value, str) or value not in phones:
            raise ValueError("business_phone must be one of the account's business phones")
        return value

    def _window_open_locked(self, business_phone: str, customer: str, now: float) -> bool:
        at = self._windows.last_inbound.get((business_phone, customer))
        return at is not None and now - at < WINDOW_SECONDS

    def _conversation_locked(self, business_phone: str, customer: str, kind: str, now: float) -> tuple[str, int, str]:
        key = (business_phone, customer, kind)
        current = self._windows.conversations.get(key)
        if current is None or current[1] <= now:
            current = (uuid.uuid4().hex, int(now) + WINDOW_SECONDS)
            self._windows.conversations[key] = current
        return current[0], current[1], kind

    def _take_reorder_locked(self) -> bool:
        if self._reorder_next > 0:
            self._reorder_next -= 1
            return True
        p = self._config.reorder_probability
        return p > 0 and self._random.random() < p

    def _take_duplicate_locked(self) -> bool:
        if self._duplicate_next > 0:
            self._duplicate_next -= 1
            return True
        p = self._config.duplicate_probability
        return p > 0 and self._random.random() < p

    def _steps_locked(
        self, kind: str, message_id: str, bodies: list[tuple[str, dict[str, Any]]], offsets: list[float]
    ) -> list[_Step]:
        steps: list[_Step] = []
        for (label, body), offset in zip(bodies, offsets, strict=True):
            steps.append(_Step(kind, label, message_id, offset, body))
            if self._take_duplicate_locked():
                steps.append(_Step(kind, label, message_id, offset, body, duplicate=True))
        return steps

    def _inbound_message(self, request: Mapping[str, Any], business_phone: str) -> dict[str, Any]:
        raw = request.get("message")
        if raw is not None:
            if not isinstance(raw, dict) or not isinstance(raw.get("type"), str) or not raw["type"]:
                raise ValueError("message must be an object with a non-empty 'type'")
            return copy.deepcopy(raw)
        kind = request.get("type", "text")
        if kind not in INBOUND_TYPES:
            raise ValueError(f"type must be one of {', '.join(INBOUND_TYPES)} (or give 'message'), got {kind!r}")
        context = request.get("context")
        if context is not None and (not isinstance(context, str) or not context):
            raise ValueError("context must be the id of an earlier message")
        message: dict[str, Any]
        if kind == "text":
            text = request.get("text")
            if not isinstance(text, str) or not text:
                raise ValueError("a text message needs a non-empty 'text'")
            message = {"type": "text", "text": {"body": text}}
        elif kind in MEDIA_MIME_TYPES:
            media_id = uuid.uuid4().hex
            link = request.get("media_url") or f"https://sandbox.invalid/media/{media_id}"
            media: dict[str, Any] = {
                "id": media_id,
                "filePath": _text(link, "media_url"),
                "mimeType": _text(request.get("mime_type") or MEDIA_MIME_TYPES[kind], "mime_type"),
                "sha256": hashlib.sha256(media_id.encode()).hexdigest(),
            }
            for key, target in (("caption", "caption"), ("filename", "filename")):
                if request.get(key) is not None:
                    media[target] = _text(request[key], key)
            message = {"type": kind, kind: media}
        elif kind == "location":
            location: dict[str, Any] = {}
            for key, limit in (("longitude", 180.0), ("latitude", 90.0)):
                value = request.get(key)
                if isinstance(value, bool) or not isinstance(value, int | float) or not -limit <= value <= limit:
                    raise ValueError(f"a location needs '{key}', a number from -{limit:g} to {limit:g}")
                location[key] = value
            location["name"] = _text(request.get("location_name", ""), "location_name")
            location["address"] = _text(request.get("address", ""), "address")
            message = {"type": "location", "location": location}
        else:
            message = self._tap(kind, request, context)
        if context is not None:
            message["context"] = {"from": business_phone, "id": context}
        return message

    def _tap(self, kind: str, request: Mapping[str, Any], context: str | None) -> dict[str, Any]:
        reply_id, title = request.get("reply_id"), request.get("reply_title")
        for value, key in ((reply_id, "reply_id"), (title, "reply_title")):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{key} must be a non-empty string")
        options = self._options(kind, context) if context is not None else []
        description = request.get("description")
        if options:
            match = [
                o
                for o in options
                if (reply_id is None or o["id"] == reply_id) and (title is None or o["title"] == title)
            ]
            if not match:
                raise ValueError(f"the quoted message {context} has no such {kind.replace('_', ' ')}")
            chosen = match[0]
            reply_id, title = chosen["id"], chosen["title"]
            description = description if description is not None else chosen.get("description")
        if reply_id is None and title is None:
            raise ValueError(f"a {kind} tap needs 'reply_id' or 'reply_title' (or a quoted message offering options)")
        reply_id = reply_id if reply_id is not None else title
        title = title if title is not None else reply_id
        if kind == "button":
            return {"type": "button", "button": {"payload": reply_id, "text": title}}
        tap: dict[str, Any] = {"id": reply_id, "title": title}
        if kind == "list_reply" and description is not None:
            tap["description"] = _text(description, "description")
        return {"type": "interactive", "interactive": {"type": kind, kind: tap}}

    def _options(self, kind: str, context: str) -> list[dict[str, Any]]:
        """Return the buttons or rows of the quoted message (empty when it offers none of this kind)."""
        record = self._find_message(context)
        if record is None or kind == "button":
            return []
        interactive = record.get("body", {}).get("interactive")
        if not isinstance(interactive, dict):
            return []
        action = interactive.get("action") or {}
        if kind == "button_reply" and interactive.get("type") == "button":
            return [
                b["reply"]
                for b in action.get("buttons", [])
                if isinstance(b, dict) and isinstance(b.get("reply"), dict)
            ]
        if kind == "list_reply" and interactive.get("type") == "list":
            return [row for section in action.get("sections", []) for row in section.get("rows", [])]
        return []

    # -- internals: delivering -----------------------------------------------------------------------

    def _schedule_locked(self, item: _Chain | _Attempt, due: float) -> None:
        if len(self._heap) >= self._config.max_pending:
            step = item.step if isinstance(item, _Attempt) else item.steps[item.index]
            self._record_locked(
                {
                    "id": next(self._push_ids),
                    "kind": step.kind,
                    "messageId": step.message_id,
                    "status": step.label,
                    "attempt": item.number if isinstance(item, _Attempt) else 1,
                    "duplicate": step.duplicate,
                    "url": None,
                    "outcome": "dropped",
                    "http_status": None,
                    "error": "too many pushes pending",
                    "retry_in": None,
                    "final": True,
                    "at": time.time(),
                    "body": step.body,
                }
            )
            return
        heapq.heappush(self._heap, (due, next(self._seq), item))
        self._busy += 1
        self._lock.notify_all()

    def _done(self) -> None:
        with self._lock:
            self._busy -= 1
            if self._busy <= 0:
                self._busy = 0
                self._lock.notify_all()

    def _schedule_loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._lock.wait(self._heap[0][0] - now if self._heap else None)
                if self._stopping:
                    return
                _, _, item = heapq.heappop(self._heap)
            while True:  # never blocks the API: only this thread waits for room in the workers' queue
                try:
                    self._ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    with self._lock:
                        if self._stopping:
                            self._busy -= 1
                            return

    def _work_loop(self) -> None:
        while True:
            item = self._ready.get()
            if item is None:
                return
            try:
                if isinstance(item, _Chain):
                    self._release(item)
                else:
                    self._deliver(item)
            except Exception:  # a bug must not kill the worker (that push is lost)
                pass
            finally:
                self._done()

    def _release(self, chain: _Chain) -> None:
        """Send the chain's current step (its first attempt); the next step is scheduled after it."""
        step = chain.steps[chain.index]
        with self._lock:
            if chain.generation != self._generation:
                return
            cfg = self._config
            url = cfg.status_url if step.kind == "status" else cfg.inbound_url
            push_id = next(self._push_ids)
        if url is None:  # the address was removed meanwhile: the vendor would not push
            self._advance(chain)
            return
        data = _encode(step.body)
        self._deliver(_Attempt(push_id, step, url, data, 1, chain.generation, chain))

    def _advance(self, chain: _Chain) -> None:
        with self._lock:
            if chain.generation != self._generation or self._stopping:
                return
            chain.index += 1
            if chain.index < len(chain.steps):
                due = max(time.monotonic(), chain.start + chain.steps[chain.index].offset)
                self._schedule_locked(chain, due)

    def _deliver(self, attempt: _Attempt) -> None:
        with self._lock:
            if attempt.generation != self._generation:
                return
            timeout = self._config.timeout
        http_status, error = self._post(attempt.url, attempt.data, timeout)
        ok = http_status is not None and 200 <= http_status < 300
        with self._lock:
            if attempt.generation != self._generation:
                return
            cfg = self._config
            retry_in: float | None = None
            if not ok and attempt.number <= len(cfg.retry_delays) and not self._stopping:
                retry_in = cfg.retry_delays[attempt.number - 1] * cfg.time_scale
            entry = {
                "id": attempt.push_id,
                "kind": attempt.step.kind,
                "messageId": attempt.step.message_id,
                "status": attempt.step.label,
                "attempt": attempt.number,
                "duplicate": attempt.step.duplicate,
                "url": redact_url(attempt.url),
                "outcome": "ok" if ok else "failed",
                "http_status": http_status,
                "error": error,
                "retry_in": retry_in,
                "final": retry_in is None,
                "at": time.time(),
                "body": attempt.step.body,
            }
            self._record_locked(entry)
            if retry_in is not None:
                again = _Attempt(
                    attempt.push_id, attempt.step, attempt.url, attempt.data, attempt.number + 1, attempt.generation
                )
                self._schedule_locked(again, time.monotonic() + retry_in)
        self._notify(entry)
        if attempt.chain is not None:
            self._advance(attempt.chain)

    def _record_locked(self, entry: dict[str, Any]) -> None:
        self._log.append(copy.deepcopy(entry))

    def _notify(self, entry: dict[str, Any]) -> None:
        callback = self.on_push
        if callback is not None:
            with contextlib.suppress(Exception):
                callback(entry)

    def _post(self, url: str, data: bytes, timeout: float) -> tuple[int | None, str | None]:
        """Return ``(http_status, None)`` or ``(None, error)``; the error never quotes the address."""
        parts = urlsplit(url)
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = connection_class(parts.hostname or "", parts.port, timeout=timeout)
        with self._lock:
            if self._stopping:
                return None, "sandbox stopping"
            self._active.add(conn)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/json;charset=UTF-8",
            "User-Agent": "itnio-sandbox-push/1",
        }
        try:
            conn.request("POST", target, body=data, headers=headers)
            response = conn.getresponse()
            response.read(64 * 1024)
            return response.status, None
        except TimeoutError:
            return None, "timeout"
        except OSError as exc:
            return None, f"{type(exc).__name__}: {exc.strerror}" if exc.strerror else type(exc).__name__
        except http.client.HTTPException as exc:
            return None, type(exc).__name__
        finally:
            with self._lock:
                self._active.discard(conn)
            conn.close()


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
