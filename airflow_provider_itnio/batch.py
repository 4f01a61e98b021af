"""
The batch-send engine behind :class:`~airflow_provider_itnio.operators.itnio.ItnioBatchSendOperator`.

Pieces, each usable (and tested) on its own:

* :class:`MessagePlan` - the message in the API's dict form, its ``{{ row.<field> }}`` templates compiled once
  in Jinja's *immutable sandboxed* environment, rendered and validated per row.
* :class:`RateLimiter` - never more than ``max_per_second`` send starts in any one-second window.
* :class:`ProgressStore` - the ledger: ``{recipient: messageId}`` of a task's tries, kept outside XCom (which
  Airflow clears at the start of every try) in a key-value store, with a lease (one try sends at a time),
  write retries, a bound on sends without a durable record and a completion marker.
* :class:`BatchSender` - reads rows lazily, hands them to ``concurrency`` worker threads through a bounded
  queue, stops at the first account-level error and flushes progress at least every ``flush_interval``. With a
  fallback template and a window chooser (:mod:`airflow_provider_itnio.window`), it asks about the rows'
  24-hour windows a chunk at a time, just before sending them, and sends the template to those whose window is
  closed.

Nothing here imports Airflow: the Airflow Variable backend and the task's glue live in
:mod:`airflow_provider_itnio.operators._batch_task`.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

from airflow_provider_itnio import messages as m
from airflow_provider_itnio.errors import (
    ItnioApiError,
    ItnioConfigError,
    ItnioDeliveryUnknownError,
    ItnioError,
    ItnioValidationError,
    error_payload,
)
from airflow_provider_itnio.templating import has_template, map_strings, unprotect_row_expressions
from airflow_provider_itnio.window import SESSION, TEMPLATE, WINDOW_CHUNK

#: Prefix of the Airflow Variables that hold a batch task's progress.
PROGRESS_PREFIX = "itnio_batch_progress"
#: Longest Variable key written (Airflow's key column is 250 characters; room is left for ``__partN``).
MAX_KEY_LENGTH = 230
#: Recipients per Variable (about 60 bytes each: ~30 KB per Variable; a flush rewrites the part filling up, so
#: the bytes written per row grow with this: for 1,000,000 rows of about 68 bytes, 2,000 wrote 301 and 500 wrote
#: 121 bytes per row; see bench/bench_ledger_pg.py).
SHARD_SIZE = 500
#: Size (bytes of ASCII JSON) at which a ledger part (progress or errors) is closed and the next one started:
#: a part holds at most this plus one entry, whatever the batch size (a database column has a limit too).
MAX_PART_BYTES = 128 * 1024
#: Longest text kept in a failed row's ``status`` or ``reason`` (longer ones are cut, in the result too).
MAX_ERROR_TEXT = 1000
#: Seconds a try's lease on a ledger lasts without renewal (renewed at every flush, about once a second).
LEASE_TTL = 60.0
#: Seconds a try waits after writing its claim before it re-reads the lease (see :meth:`ProgressStore.claim`).
LEASE_SETTLE = 0.5
#: Seconds before its lease expires (by its own clock) that a try stops starting sends: allows for clock skew.
LEASE_SAFETY = 10.0
#: Most sends that may lack a durable record at any moment (in flight, or accepted and not yet written).
MAX_UNFLUSHED = 1000
#: Seconds a failing ledger write is retried (with exponential backoff) before the batch stops.
WRITE_RETRY_SECONDS = 30.0
#: A ledger entry's value while its send may be under way (write-ahead "send started" record): the JSON number
#: ``0``, distinct from a ``messageId`` (a string) and from ``null`` (maybe sent: no answer came back).
STARTED = 0
_STARTED_SIZE = len(str(STARTED))  # bytes of a mark's value in a part
#: A ledger entry's value: a ``messageId``, None (maybe sent), :data:`STARTED`, or ``[messageId or None]`` (sent
#: again after a try was cut off: see :func:`is_resent`).
LedgerValue = str | int | list[str | None] | None
#: Most sends marked as started at once, ahead of the workers (and at most half of ``max_unflushed``; with a rate
#: limit, at most ``max_per_second * flush_interval``).
WRITE_AHEAD_BLOCK = 200
#: The completed result's per-row entries kept in parts of their own: result key -> key infix (``key__err0``).
_RESULT_PARTS = {"errors": "err", "maybe_sent_twice": "twice", "template_recipients": "tmpl"}


def is_started(value: Any) -> bool:
    """
    Return True when a ledger entry's value is :data:`STARTED` (a send cut off: its outcome is unknown).

    :param value: The value read from a ledger part.
    """
    return type(value) is int and value == STARTED


def is_resent(value: Any) -> bool:
    """
    Return True when a ledger entry records a send made again after a try was cut off while making it.

    Such an entry is a one-item list, ``[messageId]`` (or ``[null]``: no answer came back): the recipient may
    have received the message twice, and every later result lists it in ``maybe_sent_twice``.

    :param value: The value read from a ledger part.
    """
    return type(value) is list


def sent_message_id(value: Any) -> str | None:
    """
    Return the ``messageId`` a ledger entry records, or None (maybe sent, started, or no entry).

    :param value: The value read from a ledger part (a plain or a :func:`is_resent` entry).
    """
    if type(value) is list:
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


# ------------------------------------------------------------------------------------------- templates


class RowTemplateError(ItnioError):
    """
    A ``{{ row.* }}`` template failed for one row: a missing field, a Jinja error, or a ``SecurityError``
    (the template tried to reach Python internals, which the sandboxed environment forbids).

    :param error: The exception Jinja raised.
    """

    permanent = True

    def __init__(self, error: Exception) -> None:
        self.error = error
        super().__init__(f"{type(error).__name__}: {error}")

    def payload(self) -> dict[str, Any]:
        """Return ``{"status": "template", "reason": "<ExceptionName>: <message>"}``."""
        return {"status": "template", "reason": str(self)}


def _template_env() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class MessagePlan:
    """
    A message in the API's dict form whose strings may hold ``{{ row.<field> }}`` templates.

    Every template string is compiled once, in Jinja's immutable sandboxed environment (a row or a template
    cannot call into Python internals or mutate data); :meth:`build` renders it for one row and validates
    the result with :func:`~airflow_provider_itnio.messages.message_from_dict`. A message without templates
    is validated once, here.

    :param message: The message dict, e.g. ``{"type": "text", "text": {"body": "Hi {{ row.name }}"}}``.
    :param factory: Builds (and validates) the model from the rendered dict (default
        :func:`~airflow_provider_itnio.messages.message_from_dict`; the fallback template's checks it is a template).
    :raises ItnioValidationError: When the message has no templates and is invalid.
    :raises RowTemplateError: When a template string does not compile.
    """

    def __init__(
        self, message: Mapping[str, Any], factory: Callable[[Mapping[str, Any]], m.Message] | None = None
    ) -> None:
        if not isinstance(message, Mapping):
            raise ItnioValidationError(
                "message", "must be a messages model or the API's dict form", f"got {type(message).__name__}"
            )
        self._factory = factory or m.message_from_dict
        self._env = _template_env()
        self._templates = 0
        try:
            self._tree = map_strings(unprotect_row_expressions(message), self._compile)
        except Exception as err:  # a TemplateSyntaxError
            raise RowTemplateError(err) from err
        self.static: m.Message | None = None
        if self._templates == 0:
            self.static = self._factory(self._tree)

    def _compile(self, value: Any) -> Any:
        if isinstance(value, str) and has_template(value):
            self._templates += 1
            return self._env.from_string(value)
        return value

    def render(self, row: Any, recipient: str) -> dict[str, Any]:
        """
        Return the message dict for one row (strings rendered; nothing validated).

        :param row: The row: a dict, a list/tuple, or ``{recipient_field: value}`` for a bare recipient.
        :param recipient: The row's normalised recipient (available as ``{{ recipient }}``).
        :raises RowTemplateError: When rendering fails for this row.
        """
        try:
            variables = {"row": row, "recipient": recipient}
            return map_strings(self._tree, lambda leaf: leaf.render(variables) if isinstance(leaf, Template) else leaf)
        except Exception as err:  # SecurityError, UndefinedError, errors of filters...
            raise RowTemplateError(err) from err

    def build(self, row: Any, recipient: str) -> m.Message:
        """
        Return the validated message model for one row.

        :param row: The row, as for :meth:`render`.
        :param recipient: The row's normalised recipient.
        :raises RowTemplateError: When rendering fails.
        :raises ItnioValidationError: When the rendered message breaks a rule of the API.
        """
        if self.static is not None:
            return self.static
        return self._factory(self.render(row, recipient))


# ------------------------------------------------------------------------------------------ rate limit


class RateLimiter:
    """
    At most ``max_per_second`` grants in any one-second window, spread evenly.

    Grant ``i`` is scheduled ``1/rate`` after grant ``i-1``'s slot (at most one interval is made up after a
    stall), and on top of that is never given less than ``1 s + margin`` after the grant ``rate`` places before
    it (a sliding window over the *actual* grant times), so the limit holds for any window even when threads
    wake late. The margin absorbs the jitter between a grant and the moment the request really starts
    (thread hand-over, building the request): it costs ``margin`` per second of sending (2% by default).
    Thread-safe. Clock and sleep are injectable for tests.

    :param max_per_second: The rate, > 0.
    :param margin: Seconds added to the one-second window (default 0.02).
    :param clock: Monotonic seconds (default :func:`time.monotonic`).
    :param sleep: Sleeps a number of seconds (default :func:`time.sleep`).
    """

    def __init__(
        self,
        max_per_second: float,
        *,
        margin: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(max_per_second, bool) or not max_per_second > 0:
            raise ValueError(f"max_per_second must be a positive number, got {max_per_second!r}")
        self.rate = float(max_per_second)
        self.interval = 1.0 / self.rate
        self.window = 1.0 + margin
        self._window_size = max(1, int(self.rate))  # grants allowed in a one-second window
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: float | None = None  # the next grant's scheduled time
        self._recent: collections.deque[float] = collections.deque(maxlen=self._window_size)

    def acquire(self) -> float:
        """Block until a send may start; return the (clock) time it was granted."""
        while True:
            with self._lock:
                now = self._clock()
                earliest = now if self._next is None else self._next
                if len(self._recent) == self._window_size:
                    earliest = max(earliest, self._recent[0] + self.window)
                if now >= earliest:
                    # keep to the ideal schedule (small wake-up delays do not add up), but give back at most
                    # one interval after a stall
                    base = now if self._next is None else max(self._next, now - self.interval)
                    self._next = base + self.interval
                    self._recent.append(now)
                    return now
                wait = earliest - now
            self._sleep(wait)


# -------------------------------------------------------------------------------------------- progress


class KeyValueBackend(Protocol):
    """Where a :class:`ProgressStore` keeps its text values."""

    def get(self, key: str) -> str | None:
        """Return the value, or None when there is none."""

    def set(self, key: str, value: str) -> None:
        """Write the value."""

    def delete(self, key: str) -> None:
        """Remove the value (no error when absent)."""


class MemoryBackend:
    """A dict-backed :class:`KeyValueBackend` (tests, benchmarks); ``writes`` counts :meth:`set` calls."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.writes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        """Return the value, or None."""
        with self._lock:
            return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        """Write the value."""
        with self._lock:
            self.values[key] = value
            self.writes += 1

    def delete(self, key: str) -> None:
        """Remove the value."""
        with self._lock:
            self.values.pop(key, None)


def progress_key(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    """
    Return ``itnio_batch_progress__<dag_id>__<run_id>__<task_id>__<map_index>``, shortened when too long.

    When the key is longer than :data:`MAX_KEY_LENGTH`, its end is replaced by a hash of the whole (so it stays
    unique and fits).

    :param dag_id: The DAG id.
    :param run_id: The DAG run id.
    :param task_id: The task id.
    :param map_index: The task's map index (-1 / None when not mapped).
    """
    index = -1 if map_index is None else map_index
    key = f"{PROGRESS_PREFIX}__{dag_id}__{run_id}__{task_id}__{index}"
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
    return f"{key[: MAX_KEY_LENGTH - len(digest) - 2]}__{digest}"


def lease_owner(try_number: int | None = None) -> str:
    """
    Return a new lease owner id, ``try<n>@<host>:<pid>:<random>``: unique per try and per process.

    :param try_number: The Airflow try number (None when unknown).
    """
    number = "?" if try_number is None else try_number
    return f"try{number}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _json_size(value: str | None) -> int:
    """Return the length of ``value`` as compact ASCII JSON (what a ledger part stores), fast for plain text."""
    if value is None:
        return 4
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return len(value) + 2
    return len(json.dumps(value))


def _cut(text: str) -> str:
    """Return ``text`` cut to :data:`MAX_ERROR_TEXT` characters (saying how much was left out)."""
    if len(text) <= MAX_ERROR_TEXT:
        return text
    return f"{text[:MAX_ERROR_TEXT]}... ({len(text) - MAX_ERROR_TEXT} more characters)"


def _shards(errors: Mapping[str, Any]) -> list[str]:
    """Return ``errors`` as compact JSON objects of at most :data:`MAX_PART_BYTES` (plus one entry) each, in order."""
    parts: list[str] = []
    entries: list[str] = []
    size = 0
    for who, error in errors.items():
        entry = f"{json.dumps(who)}:{json.dumps(error, separators=(',', ':'))}"
        entries.append(entry)
        size += len(entry) + 1
        if size >= MAX_PART_BYTES:
            parts.append("{" + ",".join(entries) + "}")
            entries, size = [], 0
    if entries:
        parts.append("{" + ",".join(entries) + "}")
    return parts


class LedgerError(ItnioError):
    """The batch's ledger cannot be used safely, so the batch sends nothing more (base class)."""


class LeaseHeldError(LedgerError):
    """
    Another live try holds the batch's lease, so this try sends nothing.

    :param holder: The lease's owner id (try number, host, pid, random part).
    :param expires: When the lease expires unless its holder renews it, in seconds since the epoch.
    """

    def __init__(self, holder: str, expires: float) -> None:
        self.holder = holder
        self.expires = expires
        super().__init__(
            f"Another try is sending this batch: its ledger's lease is held by {holder} until {_utc(expires)} "
            "(renewed about once a second while that try runs). This try sent nothing; a retry proceeds once "
            "that try has ended or its lease has expired."
        )


class LeaseLostError(LedgerError):
    """This try could not keep its lease (not renewed in time, or taken over), so it stopped sending."""


class BatchKilledError(ItnioError):
    """The task was told to stop (Airflow called ``on_kill``: SIGTERM, a timeout, a user marking it failed)."""


class LedgerWriteError(LedgerError):
    """The ledger could not be read or written, even after retries, so the batch stopped sending."""


class ProgressStore:
    """
    The ledger of a batch task: the recipients its tries got a ``messageId`` for (or that *may* have got it).

    Kept as compact JSON objects ``{recipient: value}`` in ``key``, ``key__part1``, ``key__part2``... with at
    most ``shard_size`` recipients (and about :data:`MAX_PART_BYTES`) each. A value is one of:

    * a ``messageId`` (string): sent; never sent again;
    * ``null``: maybe sent (the request may have reached the API but no answer came back); never sent again;
    * ``0`` (:data:`STARTED`): the send was about to start or under way. Written *before* the send may go out
      (write-ahead, a block of sends at a time, see :meth:`mark`) and overwritten in place by its outcome
      (:meth:`record`) or removed when it never went out (:meth:`release`). Found by a later try, it means a
      try was cut off (SIGKILL, OOM) with that send's outcome unknown: the later try sends it again and lists
      it as maybe sent twice (or, with ``resend_interrupted=False``, records it as ``null``);
    * ``[messageId]`` or ``[null]`` (:func:`is_resent`): sent again after a try was cut off while sending it,
      so maybe received twice; never sent again, and listed in ``maybe_sent_twice`` by every later try, so
      that the result of the try that completes the batch lists it even when the try that sent it again failed.

    A flush rewrites only the parts that changed since the last one (the part filling up, parts completed since,
    parts whose marks were resolved since), so its cost does not grow with the batch, and no recipient is in two
    parts. Parts are written in order, so a reader that stops at the first missing part never misses a completed
    one. ``key__head`` holds the lease (``owner``, ``expires``), the completion marker (``done``: the counters of
    the try that completed the batch) and ``task`` (whose ledger it is); it stays small whatever the batch's
    size: the completed result's ``errors`` are in ``key__err0``, ``key__err1``..., its ``maybe_sent_twice``
    in ``key__twice0``... and its ``template_recipients`` in ``key__tmpl0``... (same size bound).

    With an ``owner``, one try at a time may send (see :meth:`claim`); the lease is renewed at every
    :meth:`flush` and a try stops starting sends :data:`LEASE_SAFETY` seconds before its lease would expire.
    Writes that fail are retried with exponential backoff for ``write_retry_seconds``; while a write fails,
    :meth:`start_send` holds new sends back. At most ``max_unflushed`` sends are marked as started and not yet
    durably resolved at any moment (:meth:`room`): after a kill, at most that many recipients are left as
    :data:`STARTED`, the only ones a later try can send twice.

    :meth:`mark`, :meth:`start_send`, :meth:`record`, :meth:`release` and :meth:`end_send` are thread-safe and
    only touch memory; :meth:`flush` writes (call it from one thread).

    :param backend: Where the values live (Airflow Variables in a task).
    :param key: The first part's key (see :func:`progress_key`).
    :param shard_size: Recipients per part.
    :param owner: This try's lease owner id (see :func:`lease_owner`); None = no lease (a single process).
    :param task: Stored in the head: which task instance the ledger belongs to (for clean-ups).
    :param lease_ttl: Seconds a lease lasts without renewal.
    :param settle: Seconds :meth:`claim` waits between writing its claim and reading it back.
    :param safety: Seconds before the lease's expiry that sending stops (allows for clock skew between hosts).
    :param max_unflushed: Most sends whose outcome lacks a durable record at any moment (marked as started, in
        flight, or not yet written).
    :param write_retry_seconds: How long a failing read or write is retried.
    :param log: Logger for retried writes.
    :param clock: Wall-clock seconds since the epoch (lease expiry, shared between hosts).
    :param monotonic: Monotonic seconds (local deadlines).
    :param sleep: Sleeps a number of seconds.
    """

    def __init__(
        self,
        backend: KeyValueBackend,
        key: str,
        *,
        shard_size: int = SHARD_SIZE,
        owner: str | None = None,
        task: Mapping[str, Any] | None = None,
        lease_ttl: float = LEASE_TTL,
        settle: float = LEASE_SETTLE,
        safety: float = LEASE_SAFETY,
        max_unflushed: int = MAX_UNFLUSHED,
        write_retry_seconds: float = WRITE_RETRY_SECONDS,
        log: Any = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_unflushed < 1:
            raise ValueError(f"max_unflushed must be at least 1, got {max_unflushed!r}")
        self.backend = backend
        self.key = key
        self.shard_size = shard_size
        self.owner = owner
        self.task = dict(task) if task else None
        self.lease_ttl = lease_ttl
        self.settle = settle
        self.safety = min(safety, lease_ttl / 2)
        self.max_unflushed = max_unflushed
        self.write_retry_seconds = write_retry_seconds
        self.log = log
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Condition()
        self._in_flight = 0  # reserved sends not yet recorded or released
        self._reset()
        self._healthy = True  # False while a write fails
        self._waiting = 0  # threads waiting in start_send
        self._fence: float | None = None  # monotonic time after which no send may start (lease)
        self._head: dict[str, Any] = {}
        #: The error that stopped sending (a lost lease, a ledger that cannot be written), if any.
        self.failure: LedgerError | None = None
        #: Reads and writes that failed and were retried.
        self.failed_attempts = 0

    def _reset(self) -> None:
        """Forget every entry kept in memory (a new ledger: nothing loaded)."""
        self._next_part = 0  # index of the part now filling up
        #: Parts kept in memory: the one filling up, those not written yet, those holding a mark.
        self._parts: dict[int, dict[str, Any]] = {0: {}}
        self._bytes: dict[int, int] = {0: 0}  # their sizes as written (ASCII JSON)
        self._dirty: set[int] = set()  # parts changed since the last flush
        self._where: dict[str, int] = {}  # recipient -> index of its part, while its entry is STARTED
        self._markers: collections.Counter[int] = collections.Counter()  # STARTED entries per part
        self._sending: set[str] = set()  # marked by this try, outcome not recorded
        self._inherited: set[str] = set()  # left STARTED by a killed try, not recorded by this one
        self._reserve = _json_size("0" * 32)  # room a mark needs for its outcome: the longest outcome seen so far
        self._unwritten = 0  # changes (outcomes, released marks) not yet written
        self._unrecorded = 0  # outcomes not yet written

    # -- keys and raw access ------------------------------------------------------------------------

    def part_key(self, index: int) -> str:
        """
        Return the key of part ``index``.

        :param index: 0 for the first part.
        """
        return self.key if index == 0 else f"{self.key}__part{index}"

    @property
    def head_key(self) -> str:
        """Return the key of the head (lease, completion marker)."""
        return f"{self.key}__head"

    def errors_key(self, index: int) -> str:
        """
        Return the key of the completed result's errors part ``index``.

        :param index: 0 for the first part.
        """
        return self._result_key(_RESULT_PARTS["errors"], index)

    def _retrying(self, action: Callable[[], Any], what: str) -> Any:
        """Run a backend call, retrying failures with exponential backoff for ``write_retry_seconds``."""
        delay = 0.05
        deadline = self._monotonic() + self.write_retry_seconds
        while True:
            try:
                value = action()
            except Exception as err:
                with self._lock:
                    self._healthy = False  # hold new sends back while the store fails
                    self.failed_attempts += 1
                if self._monotonic() + delay > deadline:
                    raise LedgerWriteError(
                        f"Could not {what} for {self.write_retry_seconds:g} s ({type(err).__name__}: {err}); "
                        "the batch stopped sending, since a send without a durable record could be repeated "
                        "by a later try"
                    ) from err
                if self.log is not None:
                    self.log.warning("Could not %s (%s: %s); retrying in %.2f s", what, type(err).__name__, err, delay)
                self._sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                with self._lock:
                    if not self._healthy:
                        self._healthy = True
                        self._lock.notify_all()
                return value

    def _get(self, key: str) -> str | None:
        return self._retrying(lambda: self.backend.get(key), f"read the ledger {key!r}")  # type: ignore[no-any-return]

    def _set(self, key: str, value: Any) -> None:
        self._set_text(key, json.dumps(value, separators=(",", ":")))

    def _set_text(self, key: str, text: str) -> None:
        self._retrying(lambda: self.backend.set(key, text), f"write the ledger {key!r}")

    def read_head(self) -> dict[str, Any]:
        """Return the head: ``{"owner", "expires", "done", "task"}`` (empty when there is none)."""
        text = self._get(self.head_key)
        return json.loads(text) if text else {}

    # -- the lease ----------------------------------------------------------------------------------

    def _refuse_if_held(self, head: Mapping[str, Any]) -> None:
        holder = head.get("owner")
        expires = float(head.get("expires") or 0)
        if holder and holder != self.owner and expires > self._clock():
            raise LeaseHeldError(holder, expires)

    def claim(self, *, reopen: bool = False) -> dict[str, Any] | None:
        """
        Take the lease for this try; return the completion marker instead when the batch was completed.

        Variables have no compare-and-swap, so: read the head; refuse when another try's lease has not
        expired; write this try's claim; wait ``settle`` seconds; read it back and go on only when it is still
        this try's. A claim whose read-to-write took ``settle`` or longer starts over. Two tries that claim at
        once cannot both go on: the later writer's read came before the earlier writer's write, so the earlier
        writer's read-back (``settle`` after its write) sees the later claim, unless the later writer's
        read-to-write took longer than ``settle``, which it refuses.

        :param reopen: Take the lease even when the batch was completed, and drop the completion marker (the
            rows are not the ones the completed try sent to: the recipients it reached are still skipped).
        :raises LeaseHeldError: When another try holds a lease that has not expired.
        :raises LedgerWriteError: When the head cannot be read or written.
        """
        if self.owner is None:
            self._head = self.read_head()
            if reopen and self._head.pop("done", None) is not None:
                self._set(self.head_key, self._head)
            return self._head.get("done")
        for _ in range(5):
            started = self._monotonic()
            head = self.read_head()
            if head.get("done") is not None and not reopen:
                self._head = head
                return head["done"]  # type: ignore[no-any-return]
            head.pop("done", None)
            self._refuse_if_held(head)
            previous = head.get("owner")
            head.update(owner=self.owner, expires=self._clock() + self.lease_ttl)
            if self.task is not None:
                head["task"] = self.task
            self._set(self.head_key, head)
            if self._monotonic() - started >= self.settle:
                continue  # too slow: another try may have read the old head meanwhile
            self._sleep(self.settle)
            head = self.read_head()
            if head.get("owner") != self.owner:
                self._refuse_if_held(head)
                continue
            self._head = head
            self._fence = started + self.lease_ttl - self.safety
            if previous and previous != self.owner and self.log is not None:
                self.log.warning("Took over the batch's expired lease from %s", previous)
            return None
        raise LedgerWriteError("Could not take the batch's lease after 5 attempts (the ledger's store is too slow)")

    def release_lease(self) -> None:
        """Give up the lease (when this try still holds it), so that a retry need not wait for it to expire."""
        if self.owner is None or self._fence is None:
            return
        self._fence = None
        head = self.read_head()
        if head.get("owner") == self.owner:
            head.update(owner=None, expires=0)
            self._set(self.head_key, head)

    def _check_lease(self) -> dict[str, Any]:
        head = self.read_head()
        if head.get("owner") != self.owner:
            holder = head.get("owner") or "nobody"
            raise LeaseLostError(
                f"This try's lease on the batch was taken over (now held by {holder}): it stopped sending. "
                f"It was not renewed for more than {self.lease_ttl:g} s (a stalled process or a store outage)."
            )
        return head

    # -- recording ----------------------------------------------------------------------------------

    def load(self) -> dict[str, LedgerValue]:
        """
        Return what earlier tries recorded, ``{recipient: LedgerValue}``; new parts go after these.

        A recipient still recorded as :data:`STARTED` was being sent when a try was cut off (killed): whether the
        message went out is unknown. Its part is kept in memory, so that :meth:`record` can overwrite its entry
        in place (:meth:`mark` of it writes nothing: it is already durable).
        """
        found: dict[str, LedgerValue] = {}
        parts: dict[int, dict[str, Any]] = {}
        sizes: dict[int, int] = {}
        where: dict[str, int] = {}
        index = 0
        while True:
            text = self._get(self.part_key(index))
            if text is None:
                break
            part = json.loads(text)
            for recipient, value in part.items():
                if is_started(value):
                    where[recipient] = index
                else:
                    where.pop(recipient, None)  # a later part has the outcome (never written so by this version)
            found.update(part)
            parts[index], sizes[index] = part, len(text)
            index += 1
        with self._lock:
            self._next_part = index
            self._where = where
            self._inherited = set(where)
            self._markers = collections.Counter(where.values())
            self._parts = {i: parts[i] for i in self._markers}
            self._bytes = {i: sizes[i] for i in self._markers}
            self._parts[index], self._bytes[index] = {}, 0
            self._dirty = set()
        return found

    def _check_fence(self) -> None:
        """Raise (and stop sending) when this try's lease may have expired; call with the lock held."""
        if self._fence is not None and self._monotonic() >= self._fence:
            if self.failure is None:
                self.failure = LeaseLostError(
                    f"This try's lease on the batch was not renewed for {self.lease_ttl - self.safety:g} s "
                    "(the ledger could not be written): it stopped sending before the lease could expire."
                )
            self._lock.notify_all()
            raise self.failure

    def start_send(self) -> bool:
        """
        Wait until one more send may start without exceeding ``max_unflushed``; return False when none may.

        Sends are held back while a write fails, and refused once the store has stopped (:attr:`failure`) or
        the lease is about to expire without renewal. Pair each True with one :meth:`end_send`.
        """
        with self._lock:
            while True:
                if self.failure is not None:
                    return False
                try:
                    self._check_fence()
                except LedgerError:
                    return False
                if self._healthy and self._in_flight + self._unwritten < self.max_unflushed:
                    self._in_flight += 1
                    return True
                self._waiting += 1
                try:
                    self._lock.wait(0.1)
                finally:
                    self._waiting -= 1

    def may_send(self) -> bool:
        """Return True when a send reserved with :meth:`start_send` may still go out (the lease is still safe)."""
        with self._lock:
            if self.failure is not None:
                return False
            try:
                self._check_fence()
            except LedgerError:
                return False
            return True

    def end_send(self) -> None:
        """Mark a send started with :meth:`start_send` as over (after :meth:`record` when it was recorded)."""
        with self._lock:
            self._in_flight -= 1
            if self._waiting:
                self._lock.notify_all()

    def _add(self, recipient: str, value: Any, size: int) -> int:
        """
        Put a new entry in the part filling up (closing it when full); return its index. Hold the lock.

        The part is full at ``shard_size`` entries, or at :data:`MAX_PART_BYTES` counting each mark in it as the
        longest outcome seen so far (what it will take once its outcome overwrites it).
        """
        index = self._next_part
        self._parts[index][recipient] = value
        self._bytes[index] += size
        if is_started(value):
            self._where[recipient] = index
            self._markers[index] += 1
        self._dirty.add(index)
        full = self._bytes[index] + self._markers[index] * (self._reserve - _STARTED_SIZE) >= MAX_PART_BYTES
        if full or len(self._parts[index]) >= self.shard_size:
            self._next_part += 1
            self._parts[self._next_part], self._bytes[self._next_part] = {}, 0
        return index

    def mark(self, recipients: Iterable[str]) -> None:
        """
        Record ``recipients`` as :data:`STARTED` (write-ahead, in memory until the next :meth:`flush`).

        A send may go out only once its recipient's mark is durable (flushed). Each mark is resolved by one
        :meth:`record` (the send's outcome) or :meth:`release` (the send never went out, or was refused). A
        recipient a killed try left as :data:`STARTED` (see :meth:`load`) keeps its durable mark.

        :param recipients: Normalised recipients, none of them recorded in this ledger yet (or left as started).
        """
        with self._lock:
            for recipient in recipients:
                self._sending.add(recipient)
                if recipient not in self._where:
                    self._add(recipient, STARTED, _json_size(recipient) + _STARTED_SIZE + 2)

    def room(self) -> int:
        """
        Return how many more sends may be marked without exceeding ``max_unflushed`` (see :meth:`mark`).

        Marks not yet resolved count; outcomes not yet written do not, as the flush that makes new marks durable
        writes them first: marks go to the part filling up, after every part an outcome can be in, and parts are
        written in order. So the marks left in the ledger by a kill at any moment are at most ``max_unflushed``
        (not counting those an earlier killed try left and this one did not send yet).
        """
        with self._lock:
            return self.max_unflushed - len(self._sending)

    def wait(self, timeout: float) -> None:
        """
        Wait until a send ends (:meth:`end_send`) or ``timeout`` seconds pass.

        :param timeout: Seconds.
        """
        with self._lock:
            self._waiting += 1
            try:
                self._lock.wait(timeout)
            finally:
                self._waiting -= 1

    def _resolve(self, recipient: str) -> int | None:
        """Forget ``recipient``'s mark (not its entry); return the index of its part, if it has one. Hold the lock."""
        self._sending.discard(recipient)
        self._inherited.discard(recipient)
        index = self._where.pop(recipient, None)
        if index is not None:
            self._markers[index] -= 1
            if not self._markers[index]:
                del self._markers[index]
        return index

    def record(self, recipient: str, message_id: str | None, *, again: bool = False) -> None:
        """
        Remember one recipient's outcome (in memory until the next :meth:`flush`).

        A marked recipient's entry is overwritten in the part it is in (that part is written again), so no
        recipient is in two parts.

        :param recipient: The normalised recipient.
        :param message_id: Its ``messageId``, or None when the message may or may not have been delivered.
        :param again: The send was made again after a try was cut off while making it (stored as
            ``[message_id]``, see :func:`is_resent`).
        """
        value: str | list[str | None] | None = [message_id] if again else message_id
        size = _json_size(message_id) + (2 if again else 0)
        with self._lock:
            index = self._resolve(recipient)
            if index is None:
                self._add(recipient, value, _json_size(recipient) + size + 2)
            else:
                self._parts[index][recipient] = value
                self._bytes[index] += size - _STARTED_SIZE
                self._dirty.add(index)
            self._reserve = max(self._reserve, size)
            self._unwritten += 1
            self._unrecorded += 1

    def release(self, recipient: str) -> None:
        """
        Drop the mark of a send that never went out, or that the API refused (nothing was delivered).

        The entry is removed from its part (written again at the next :meth:`flush`), unless a killed try left it
        as :data:`STARTED`: that try's send may have gone out, so the mark stays (a later try sends it again, or
        :meth:`complete` records it as maybe sent).

        :param recipient: The normalised recipient, marked with :meth:`mark`.
        """
        with self._lock:
            inherited = recipient in self._inherited
            if recipient not in self._sending or inherited:
                self._sending.discard(recipient)
                return
            index = self._resolve(recipient)
            if index is not None:
                del self._parts[index][recipient]
                self._bytes[index] -= _json_size(recipient) + _STARTED_SIZE + 2
                self._dirty.add(index)
                self._unwritten += 1

    @property
    def unwritten(self) -> int:
        """Return how many outcomes recorded with :meth:`record` are not written yet."""
        return self._unrecorded

    @property
    def interrupted(self) -> list[str]:
        """Return the recipients a killed try left as :data:`STARTED` that no :meth:`record` resolved yet."""
        with self._lock:
            return sorted(self._inherited)

    @property
    def wants_flush(self) -> bool:
        """Return True when half of ``max_unflushed`` is used up by changes not written yet."""
        return self._unwritten * 2 >= self.max_unflushed

    def stop(self, error: LedgerError) -> None:
        """
        Refuse every further send (:meth:`start_send` returns False).

        :param error: Why.
        """
        with self._lock:
            if self.failure is None:
                self.failure = error
            self._lock.notify_all()

    def flush(self) -> None:
        """
        Write the parts changed since the last flush (in order), then renew the lease.

        Only changed parts are written (the part filling up, parts completed since, parts holding a mark that
        was resolved since), so a flush's cost does not grow with the batch. With a lease, the head is read
        first: a try that lost its lease writes nothing (:class:`LeaseLostError`).

        :raises LeaseLostError: When another try holds the lease now.
        :raises LedgerWriteError: When a write still fails after ``write_retry_seconds``.
        """
        started = self._monotonic()
        head = self._check_lease() if self.owner is not None and self._fence is not None else None
        with self._lock:
            self._check_fence()
            dirty, self._dirty = sorted(self._dirty), set()
            parts = [(index, dict(self._parts[index])) for index in dirty]
            count, records = self._unwritten, self._unrecorded
        try:
            for index, part in parts:
                self._set(self.part_key(index), part)
        except BaseException:
            with self._lock:  # write them again next time
                self._dirty.update(dirty)
            raise
        with self._lock:
            self._unwritten -= count
            self._unrecorded -= records
            for index in dirty:  # keep in memory only the parts that may change again
                if index != self._next_part and index not in self._markers and index not in self._dirty:
                    self._parts.pop(index, None)
                    self._bytes.pop(index, None)
            self._lock.notify_all()
        if head is not None:
            self._renew(head, started)

    def _renew(self, head: dict[str, Any], started: float) -> None:
        """Write ``head`` (read since ``started``, still this try's) with the lease's expiry pushed back."""
        with self._lock:
            self._check_fence()  # a lease that may have expired meanwhile is never written over
        head["expires"] = self._clock() + self.lease_ttl
        self._set(self.head_key, head)
        self._head = head
        self._fence = started + self.lease_ttl - self.safety

    def complete(self, result: Mapping[str, Any], rows_digest: str | None = None) -> None:
        """
        Flush, then write the completion marker (a later try of the task sends nothing) and give up the lease.

        Every recipient still recorded as :data:`STARTED` (a killed try's send that this try did not make again:
        ``resend_interrupted=False``, refused, or not in these rows) is recorded as maybe sent (``null``) first:
        a completed ledger holds no "started" record. The result's ``errors``, ``maybe_sent_twice`` and
        ``template_recipients`` go to parts of their own (``key__err<n>``, ``key__twice<n>``, ``key__tmpl<n>``,
        written first, each within :data:`MAX_PART_BYTES` plus one entry); the head holds only their number and
        digest, so it stays small.

        :param result: The batch's result (its ``message_ids`` are not stored again: they are in the parts).
        :param rows_digest: The digest of the rows sent (:attr:`BatchSender.rows_digest`): a later try replays
            the result only for the same rows.
        :raises LeaseLostError: When another try holds the lease now.
        :raises LedgerWriteError: When a write still fails after ``write_retry_seconds``.
        """
        with self._lock:
            left = [recipient for recipient in self._where if recipient not in self._sending]
        for recipient in left:
            self.record(recipient, None)
        self.flush()
        leased = self.owner is not None and self._fence is not None
        done = {key: value for key, value in result.items() if key != "message_ids" and key not in _RESULT_PARTS}
        written: dict[str, int] = {}
        for name, infix in _RESULT_PARTS.items():
            entries = result.get(name) or {}
            parts = _shards(entries if isinstance(entries, Mapping) else dict.fromkeys(entries))
            if not parts and name != "errors":
                written[infix] = 0  # no field in the head: it stays as small as before
                continue
            digest = hashlib.sha256()
            for index, text in enumerate(parts):
                if leased and self._monotonic() >= (self._fence or 0) - (self.lease_ttl - self.safety) / 2:
                    started = self._monotonic()  # many parts, or slow writes: renew the lease on the way
                    self._renew(self._check_lease(), started)
                with self._lock:
                    self._check_fence()
                self._set_text(self._result_key(infix, index), text)
                digest.update(text.encode())
            done[f"{name}_parts"] = written[infix] = len(parts)
            done[f"{name}_digest"] = digest.hexdigest()
        head = self._check_lease() if leased else self.read_head()
        if rows_digest is not None:
            done["rows_digest"] = rows_digest
        head.update(done={**done, "completed_at": _utc(self._clock()), "by": self.owner}, owner=None, expires=0)
        if self.task is not None:
            head["task"] = self.task
        self._set(self.head_key, head)
        self._head = head
        self._fence = None
        try:
            for infix, count in written.items():  # left by an earlier completion (of other rows): not ours
                self._delete_result_parts(infix, start=count)
        except LedgerError:
            if self.log is not None:
                self.log.warning("Could not delete the stale result parts of the ledger %s", self.key, exc_info=True)

    def _result_key(self, infix: str, index: int) -> str:
        return f"{self.key}__{infix}{index}"

    def _load_result_parts(self, done: Mapping[str, Any], name: str) -> dict[str, Any]:
        """Return the completed result's ``name`` entries, read back from their parts (see :meth:`complete`)."""
        entries: dict[str, Any] = {}
        digest = hashlib.sha256()
        for index in range(int(done.get(f"{name}_parts") or 0)):
            key = self._result_key(_RESULT_PARTS[name], index)
            text = self._get(key)
            if text is None:
                raise LedgerError(
                    f"The completed batch's {name} part {key!r} is missing (the ledger is being deleted?): "
                    "its result cannot be replayed"
                )
            digest.update(text.encode())
            entries.update(json.loads(text))
        if f"{name}_parts" in done and digest.hexdigest() != done.get(f"{name}_digest"):
            raise LedgerError(f"The completed batch's {name} parts do not match its completion marker")
        return entries

    def load_errors(self, done: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """
        Return the ``errors`` of the completed result whose marker is ``done``, read back from their parts.

        :param done: The completion marker (:meth:`claim` returned it).
        :raises LedgerError: When a part is missing or does not match the marker (the ledger is being deleted,
            or two tries completed it at once): the result cannot be replayed as it was.
        """
        if "errors_parts" not in done:  # a marker written before the errors had parts of their own
            return dict(done.get("errors") or {})
        return self._load_result_parts(done, "errors")

    def load_recipients(self, done: Mapping[str, Any], name: str) -> list[str]:
        """
        Return a recipient list of the completed result whose marker is ``done``, read back from its parts.

        :param done: The completion marker (:meth:`claim` returned it).
        :param name: ``maybe_sent_twice`` or ``template_recipients``.
        :raises LedgerError: When a part is missing or does not match the marker.
        """
        if f"{name}_parts" not in done:  # none, or a marker written before the list had parts of its own
            return list(done.get(name) or [])
        return list(self._load_result_parts(done, name))

    def _delete_result_parts(self, infix: str, start: int = 0) -> None:
        """Delete a result's parts from ``start`` on (they are contiguous: written in order, deleted from the end)."""
        count = start
        while self._get(self._result_key(infix, count)) is not None:
            count += 1
        for index in reversed(range(start, count)):
            key = self._result_key(infix, index)
            self._retrying(partial(self.backend.delete, key), f"delete the ledger {key!r}")

    def delete(self) -> None:
        """Remove every part (result's, then progress), then the head (a ledger half deleted keeps its marker)."""
        for infix in _RESULT_PARTS.values():
            self._delete_result_parts(infix)
        count = 0
        while self._get(self.part_key(count)) is not None:
            count += 1
        for index in reversed(range(count)):
            self.backend.delete(self.part_key(index))
        self.backend.delete(self.head_key)
        with self._lock:
            self._reset()


# ------------------------------------------------------------------------------------------------ sender

#: Sends one message; returns its ``messageId``. Raises the hook's exceptions.
SendFunction = Callable[[str, m.Message], str]

#: The counters of a batch's result; they add up to the number of rows.
COUNTERS = ("sent", "failed", "skipped_already_sent", "duplicates", "not_attempted")


@dataclass
class BatchOutcome:
    """
    What a batch did; :meth:`result` is the operator's XCom.

    Every row is counted exactly once: ``sent + failed + skipped_already_sent + duplicates + not_attempted``
    is the number of rows.

    :param sent: Messages accepted by the API in this try.
    :param failed: Rows that failed (invalid, rejected, maybe delivered); each has an entry in ``errors``.
    :param skipped_already_sent: Rows an earlier try already got a ``messageId`` for (not sent again).
    :param duplicates: Rows whose (normalised) recipient appeared earlier in the batch (sent once).
    :param not_attempted: Rows never tried because the batch stopped.
    :param message_ids: ``{recipient: messageId}``, this try's and earlier tries'.
    :param errors: ``{recipient or "rows[<index>]": {"status", "reason"}}``, one entry per failed row.
    :param aborted: The error that stopped the batch (account-level, ledger, unexpected), if any.
    :param retryable: True when some failure may go away on a retry (transport trouble, an unknown status).
    :param unrecorded: Sends accepted in this try that the ledger could not record (a later try repeats them).
    :param completed_earlier: The completion marker when an earlier try completed the batch (nothing was sent).
    :param rows_digest: Digest of the rows' recipients, in order (see :attr:`BatchSender.rows_digest`).
    :param windows: The batch chose per row between the message and a fallback template (the result then also
        has ``sent_by_kind`` and ``template_recipients``).
    :param sent_by_kind: This try's ``sent``, split into ``session`` (the message) and ``template`` (the fallback).
    :param template_recipients: The recipients this try sent the fallback template to.
    :param maybe_sent_twice: Recipients a killed earlier try was sending to (its outcome unknown: the ledger
        held :data:`STARTED`) that this try, or an earlier one that did not complete the batch, sent again
        (accepted, or again without an answer): each may have received the message twice, so a person can check.
        Counted in ``sent`` (or ``failed``; ``skipped_already_sent`` when an earlier try sent it again), not apart.
    """

    sent: int = 0
    failed: int = 0
    skipped_already_sent: int = 0
    duplicates: int = 0
    not_attempted: int = 0
    message_ids: dict[str, str] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    aborted: BaseException | None = None
    retryable: bool = False
    unrecorded: int = 0
    completed_earlier: dict[str, Any] | None = None
    rows_digest: str | None = None
    windows: bool = False
    sent_by_kind: dict[str, int] = field(default_factory=lambda: {SESSION: 0, TEMPLATE: 0})
    template_recipients: list[str] = field(default_factory=list)
    maybe_sent_twice: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Return the number of rows counted."""
        return sum(getattr(self, name) for name in COUNTERS)

    def result(self) -> dict[str, Any]:
        """
        Return the XCom: the :data:`COUNTERS`, ``message_ids``, ``errors`` and ``maybe_sent_twice`` (and the kinds
        sent, with windows).
        """
        result: dict[str, Any] = {
            **{name: getattr(self, name) for name in COUNTERS},
            "message_ids": self.message_ids,
            "errors": self.errors,
            "maybe_sent_twice": list(self.maybe_sent_twice),
        }
        if self.windows:
            result["sent_by_kind"] = dict(self.sent_by_kind)
            result["template_recipients"] = list(self.template_recipients)
        return result

    @classmethod
    def replay(
        cls,
        done: Mapping[str, Any],
        recorded: Mapping[str, LedgerValue],
        *,
        errors: Mapping[str, dict[str, Any]] | None = None,
        recipients: Iterable[str] | None = None,
        maybe_sent_twice: Iterable[str] = (),
        template_recipients: Iterable[str] = (),
    ) -> BatchOutcome:
        """
        Return the outcome an earlier try recorded in its completion marker.

        :param done: The completion marker (the result's counters).
        :param recorded: The ledger's ``{recipient: messageId or None}``.
        :param errors: The result's errors (:meth:`ProgressStore.load_errors`); default: the marker's own.
        :param recipients: The rows' recipients, in order: ``message_ids`` holds only theirs, in that order (the
            ledger may also hold recipients of other rows that an earlier completion of the task sent to). None =
            every recipient.
        :param maybe_sent_twice: The result's ``maybe_sent_twice`` (:meth:`ProgressStore.load_recipients`).
        :param template_recipients: The result's ``template_recipients`` (:meth:`ProgressStore.load_recipients`),
            when the batch chose per row between the message and a fallback template (``sent_by_kind`` in ``done``).
        """
        outcome = cls()
        for name in COUNTERS:
            setattr(outcome, name, int(done.get(name, 0)))
        outcome.errors = dict(done.get("errors") or {}) if errors is None else dict(errors)
        if recipients is not None:
            recorded = {recipient: recorded[recipient] for recipient in recipients if recipient in recorded}
        outcome.message_ids = {r: mid for r, value in recorded.items() if (mid := sent_message_id(value)) is not None}
        outcome.maybe_sent_twice = list(maybe_sent_twice)
        if isinstance(done.get("sent_by_kind"), Mapping):
            outcome.windows = True
            outcome.sent_by_kind = dict(done["sent_by_kind"])
            outcome.template_recipients = list(template_recipients)
        outcome.completed_earlier = dict(done)
        outcome.rows_digest = done.get("rows_digest")
        return outcome

    def summary(self, limit: int = 5) -> str:
        """
        Return one paragraph for the log / the task's failure message.

        :param limit: How many errors to quote.
        """
        text = (
            f"sent {self.sent}, failed {self.failed}, skipped (already sent by an earlier try) "
            f"{self.skipped_already_sent}, duplicates {self.duplicates}, not attempted {self.not_attempted}"
        )
        if self.windows and self.completed_earlier is None:
            text += (
                f" (session messages {self.sent_by_kind[SESSION]}, fallback templates {self.sent_by_kind[TEMPLATE]}:"
                " no message from those customers in the last 24 hours)"
            )
        if self.completed_earlier is not None:
            text += (
                f" (the result recorded when {self.completed_earlier.get('by') or 'an earlier try'} completed the "
                f"batch at {self.completed_earlier.get('completed_at')}; nothing was sent again)"
            )
        if self.aborted is not None:
            text += f"; STOPPED: {self.aborted}"
        if self.maybe_sent_twice:
            text += (
                f"; {len(self.maybe_sent_twice)} recipient(s) sent again after an earlier try was cut off while "
                "sending to them: each may have received the message twice (listed in maybe_sent_twice)"
            )
        if self.unrecorded:
            text += (
                f"; {self.unrecorded} send outcome(s) could not be recorded: a later try sends to those recipients "
                "again and lists them in maybe_sent_twice (with resend_interrupted=False: reports them as "
                "unknown_delivery)"
            )
        if self.errors:
            quoted = "; ".join(
                f"{who}: {err['status']} {err['reason']}" for who, err in list(self.errors.items())[:limit]
            )
            more = f" (and {len(self.errors) - limit} more)" if len(self.errors) > limit else ""
            text += f". Errors: {quoted}{more}"
        return text


_DONE = object()


class BatchSender:
    """
    Send one message per row with ``concurrency`` threads, never faster than the rate limiter allows.

    Rows are read lazily; a bounded queue (``2 * concurrency``) sits in front of the workers, so memory does
    not grow with the number of rows beyond the result. Per row: the recipient is taken and normalised,
    duplicates and recipients an earlier try already reached are skipped, the message is rendered and
    validated, then a worker sends it. Row-level failures are recorded and the others go on; an
    account-level :class:`~airflow_provider_itnio.errors.ItnioApiError`, a config error, a ledger that cannot
    be kept (:class:`LedgerError`) or an unexpected exception stops the batch: no new send starts, sends in
    flight finish and are recorded.

    With a ledger, sends go out only once they are durably recorded as started (:meth:`ProgressStore.mark`): the
    rows are marked a block at a time (at most :data:`WRITE_AHEAD_BLOCK`, half of ``max_unflushed``), ahead of
    the workers, within ``max_unflushed`` marks not yet resolved. A recipient a killed try left as started is
    sent again and listed in ``maybe_sent_twice`` (or, with ``resend_interrupted=False``, reported as
    ``unknown_delivery`` and not sent).

    :param send: Sends one message to a normalised recipient and returns its ``messageId``.
    :param plan: The message, compiled.
    :param recipient_field: Key of the recipient in a dict row (or index in a list/tuple row).
    :param concurrency: Worker threads (sends in flight at once).
    :param max_per_second: Most send starts in any one-second window (None = no limit).
    :param progress: The ledger (None = not kept); :meth:`run` claims it and honours its completion marker.
    :param flush_interval: Longest time between two progress flushes, seconds.
    :param log: Logger for progress lines.
    :param limiter: A ready rate limiter (overrides ``max_per_second``; tests pass one with a fake clock).
    :param fallback: The fallback template, compiled (its factory checks it is a template); needs ``choose``.
    :param choose: Given a chunk of normalised recipients, returns ``{recipient: "session" or "template"}``
        (:meth:`airflow_provider_itnio.window.WindowChooser.kinds` for one sender); an ``ItnioError`` it raises
        stops the batch before that chunk is sent.
    :param window_chunk: Rows whose windows are asked about at once, just before they are sent.
    :param resend_interrupted: What to do with the recipients a killed earlier try was sending to (the ledger
        holds :data:`STARTED` for them: whether the message went out is unknown). True (default): send again
        and list them in the result's ``maybe_sent_twice`` (nobody is left without the message; at most
        ``max_unflushed`` recipients per killed try may get it twice). False: do not send, report each in
        ``errors`` as ``unknown_delivery`` (nobody gets it twice; some may get it never).
    :param strict_phone_numbers: Fail the rows whose number can exist but lies in no range its country has
        assigned (:func:`airflow_provider_itnio.phones.parse_phone`); by default they are sent.
    """

    def __init__(
        self,
        send: SendFunction,
        plan: MessagePlan,
        *,
        recipient_field: str | int = "recipient",
        concurrency: int = 8,
        max_per_second: float | None = None,
        progress: ProgressStore | None = None,
        flush_interval: float = 1.0,
        log: Any = None,
        limiter: RateLimiter | None = None,
        fallback: MessagePlan | None = None,
        choose: Callable[[list[str]], Mapping[str, str]] | None = None,
        window_chunk: int = WINDOW_CHUNK,
        resend_interrupted: bool = True,
        strict_phone_numbers: bool = False,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        if (fallback is None) != (choose is None):
            raise ValueError("fallback and choose go together")
        self.send = send
        self.plan = plan
        self.recipient_field = recipient_field
        self.concurrency = concurrency
        self.limiter = limiter or (RateLimiter(max_per_second) if max_per_second is not None else None)
        self.progress = progress
        self.flush_interval = flush_interval
        self.log = log
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self.fallback = fallback
        self.choose = choose
        self.window_chunk = max(1, int(window_chunk))
        self._outcome = BatchOutcome(windows=choose is not None)
        #: Why no more rows are read (the windows could not be read): rows queued before still go out.
        self._halt: BaseException | None = None
        self._digest = hashlib.sha256()
        self.resend_interrupted = resend_interrupted
        self.strict_phone_numbers = strict_phone_numbers
        self._interrupted: set[str] = set()  # recipients a killed try left as started, sent again by this one
        self._staged: list[tuple[str, m.Message, str | None]] = []  # work items not marked yet
        self._staged_at = 0.0  # monotonic time the first of them was staged
        self._block = 1  # work items marked at once (set by run() from the ledger's max_unflushed)

    @property
    def rows_digest(self) -> str:
        """Return the digest of the rows prepared so far: their recipients (or ``rows[<i>]`` when invalid), in order."""
        return self._digest.hexdigest()

    def stop(self, error: BaseException) -> None:
        """
        Stop the batch (thread-safe): no new send starts; sends in flight finish and are recorded.

        :param error: Why (becomes :attr:`BatchOutcome.aborted`).
        """
        self._stop(error)

    # -- rows ---------------------------------------------------------------------------------------

    def _recipient_of(self, row: Any, index: int) -> tuple[Any, Any]:
        """Return ``(raw recipient, template row)``; raise ItnioValidationError for a row without one."""
        field_name = self.recipient_field
        if isinstance(row, str | int) and not isinstance(row, bool):
            return row, {field_name: row}
        if isinstance(row, Mapping):
            if field_name not in row:
                raise ItnioValidationError(
                    f"rows[{index}].{field_name}", "required", f"the row has no {field_name!r}: {sorted(row)[:10]}"
                )
            return row[field_name], row
        if isinstance(row, Sequence) and not isinstance(row, bytes) and isinstance(field_name, int):
            if not -len(row) <= field_name < len(row):
                raise ItnioValidationError(f"rows[{index}][{field_name}]", "required", f"the row has {len(row)} items")
            return row[field_name], row
        raise ItnioValidationError(
            f"rows[{index}]",
            "must be a recipient, a dict (or a list/tuple with an integer recipient_field)",
            f"got {type(row).__name__}",
        )

    def _fail_row(self, who: str, payload: dict[str, Any], *, retryable: bool = False) -> None:
        """Count one failed row; ``who`` is unique per row (a recipient sent once, or ``rows[<index>]``)."""
        payload = {name: _cut(value) if isinstance(value, str) else value for name, value in payload.items()}
        with self._lock:
            outcome = self._outcome
            outcome.failed += 1
            key, copy = who, 1
            while key in outcome.errors:  # never overwrite another row's error
                copy += 1
                key = f"{who} #{copy}"
            outcome.errors[key] = payload
            outcome.retryable = outcome.retryable or retryable

    # -- workers ------------------------------------------------------------------------------------

    def _worker(self, work: queue.Queue[Any]) -> None:
        progress = self.progress
        while True:
            item = work.get()
            if item is _DONE:
                return
            recipient, message, kind = item
            if self._abort.is_set():
                self._skip_not_attempted(recipient)
                continue
            if progress is not None and not progress.start_send():
                self._stop(progress.failure or LedgerError("the ledger stopped"))
                self._skip_not_attempted(recipient)
                continue
            try:
                self._send_one(recipient, message, kind)
            finally:
                if progress is not None:
                    progress.end_send()

    def _send_one(self, recipient: str, message: m.Message, kind: str | None = None) -> None:
        if self.limiter is not None:
            self.limiter.acquire()
            if self._abort.is_set():
                self._skip_not_attempted(recipient)
                return
            if self.progress is not None and not self.progress.may_send():  # the lease ran out while waiting
                self._stop(self.progress.failure or LedgerError("the ledger stopped"))
                self._skip_not_attempted(recipient)
                return
        try:
            message_id = self.send(recipient, message)
        except ItnioDeliveryUnknownError as err:
            self._maybe_sent(recipient)
            self._fail_row(recipient, error_payload(err))
        except ItnioApiError as err:
            self._release(recipient)  # refused: nothing was delivered
            self._fail_row(recipient, error_payload(err), retryable=not err.permanent)
            if err.account_level:
                self._stop(err)
        except ItnioConfigError as err:
            self._release(recipient)
            self._fail_row(recipient, error_payload(err))
            self._stop(err)
        except ItnioError as err:  # validation (permanent), transport (retryable): nothing reached the API
            self._release(recipient)
            self._fail_row(recipient, error_payload(err), retryable=not err.permanent)
        except BaseException as err:  # a bug or an interruption: stop everything, re-raised by the caller
            self._maybe_sent(recipient)  # the request may have gone out: never send it again
            self._fail_row(
                recipient,
                {
                    "status": "unknown_delivery",
                    "reason": f"{type(err).__name__}: {err} (the message may have been sent; it is not sent again)",
                },
            )
            self._stop(err)
        else:
            if self.progress is not None:
                self.progress.record(recipient, message_id, again=recipient in self._interrupted)
            with self._lock:
                self._outcome.sent += 1
                self._outcome.message_ids[recipient] = message_id
                if kind is not None:
                    self._outcome.sent_by_kind[kind] += 1
                    if kind == TEMPLATE:
                        self._outcome.template_recipients.append(recipient)
                if recipient in self._interrupted:
                    self._outcome.maybe_sent_twice.append(recipient)

    def _maybe_sent(self, recipient: str) -> None:
        """Record a send whose request may have reached the API (no answer): never sent again."""
        again = recipient in self._interrupted
        if self.progress is not None:
            self.progress.record(recipient, None, again=again)
        if again:
            with self._lock:
                self._outcome.maybe_sent_twice.append(recipient)

    def _release(self, recipient: str) -> None:
        if self.progress is not None:
            self.progress.release(recipient)

    def _skip_not_attempted(self, recipient: str | None = None) -> None:
        """Count a row never tried; ``recipient`` = its send was marked as started (the mark is released)."""
        if recipient is not None:
            self._release(recipient)
        with self._lock:
            self._outcome.not_attempted += 1

    def _stop(self, error: BaseException) -> None:
        with self._lock:
            if self._outcome.aborted is None:
                self._outcome.aborted = error
        self._abort.set()

    # -- run ----------------------------------------------------------------------------------------

    def _maybe_flush(self, last: list[float], *, force: bool = False) -> None:
        progress = self.progress
        if progress is None or last[0] < 0:  # no ledger, or it can no longer be written
            return
        now = time.monotonic()
        if force or now - last[0] >= self.flush_interval or progress.wants_flush:
            last[0] = now
            try:
                progress.flush()
            except LedgerError as err:
                progress.stop(err)
                self._stop(err)
                if isinstance(err, LeaseLostError):
                    last[0] = -1.0  # another try owns the ledger now: write nothing more
            except Exception as err:
                progress.stop(LedgerWriteError(f"{type(err).__name__}: {err}"))
                self._stop(err)
                last[0] = -1.0
            except BaseException as err:  # a timeout or a signal during the write: the caller flushes again
                self._stop(err)
                raise

    def run(self, rows: Iterable[Any]) -> BatchOutcome:
        """
        Send to every row and return the outcome (raise only what is not a row's, the account's or the ledger's).

        With a ledger, first claim it (:meth:`ProgressStore.claim`): when an earlier try completed the batch,
        return the outcome it recorded and send nothing. Recipients a killed try left as started are sent again
        (listed in ``maybe_sent_twice``, with a warning in the log) or, with ``resend_interrupted=False``,
        reported as ``unknown_delivery``.

        :param rows: Recipients, or dicts (lists/tuples) holding one at ``recipient_field``.
        :raises LeaseHeldError: When another live try holds the ledger.
        :raises LedgerError: When the ledger cannot be read, or a completed result cannot be read back whole.
        """
        outcome = self._outcome
        earlier: Mapping[str, LedgerValue] = {}
        if self.progress is not None:
            done = self.progress.claim()
            if done is not None:
                if not isinstance(rows, Sequence):
                    rows = list(rows)  # read twice: the digest, then (other rows) the sends
                digest, recipients = self._scan(rows)
                if done.get("rows_digest") in (None, digest):
                    self._outcome = BatchOutcome.replay(
                        done,
                        self.progress.load(),
                        errors=self.progress.load_errors(done),
                        recipients=recipients,
                        maybe_sent_twice=self.progress.load_recipients(done, "maybe_sent_twice"),
                        template_recipients=self.progress.load_recipients(done, "template_recipients"),
                    )
                    return self._outcome
                if self.log is not None:
                    self.log.warning(
                        "The batch was completed by %s for other rows; sending to the rows it did not reach.",
                        done.get("by") or "an earlier try",
                    )
                self.progress.claim(reopen=True)
            earlier = self.progress.load()
            self._block = max(1, min(self.progress.max_unflushed // 2, WRITE_AHEAD_BLOCK))
            if self.limiter is not None:  # no more marks ahead than about one flush interval of sends
                self._block = max(1, min(self._block, int(self.limiter.rate * self.flush_interval + 0.999)))
        cut_off = sum(1 for value in earlier.values() if is_started(value))
        if len(earlier) > cut_off and self.log is not None:
            self.log.info("%d recipient(s) recorded by earlier tries will not be sent again.", len(earlier) - cut_off)
        if cut_off and self.log is not None:
            self.log.warning(
                "%d recipient(s) were being sent when an earlier try was cut off (killed): whether they got the "
                "message is unknown. %s",
                cut_off,
                "They are sent again and listed in the result's maybe_sent_twice."
                if self.resend_interrupted
                else "They are not sent again (resend_interrupted=False): reported as unknown_delivery.",
            )
        seen: dict[str, None] = {}  # the rows' recipients, in order
        # with a ledger, room for the marked blocks too: they are queued whole once their marks are durable
        backlog = 2 * self.concurrency + (2 * self._block if self.progress is not None else 0)
        work: queue.Queue[Any] = queue.Queue(maxsize=backlog)
        workers = [
            threading.Thread(target=self._worker, args=(work,), name=f"itnio-batch-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        for worker in workers:
            worker.start()
        last_flush = [time.monotonic()]
        pending: list[tuple[str, Any]] = []  # rows waiting for their windows (with a fallback)
        try:
            for index, row in enumerate(rows):
                if self._abort.is_set() or self._halt is not None:
                    self._skip_not_attempted()
                    continue
                item = self._prepare(row, index, seen, earlier)
                if item is None:
                    continue
                if self.choose is None:
                    self._put(work, item, last_flush)
                    continue
                pending.append(item)
                if len(pending) >= self.window_chunk:
                    self._send_chunk(pending, work, last_flush)
                    pending = []
            if pending:
                self._send_chunk(pending, work, last_flush)
            if self.progress is not None and self._staged:
                self._mark_staged(work, last_flush)
        except BaseException as err:
            self._stop(err)
            raise
        finally:
            self._drop_pending()
            interrupted = self._finish(work, workers, last_flush)
            if self.progress is not None:
                outcome.unrecorded = self.progress.unwritten
        if interrupted is not None:
            raise interrupted
        ids = outcome.message_ids  # in the rows' order, as a replay of the completed result lists them
        outcome.message_ids = {recipient: ids[recipient] for recipient in seen if recipient in ids}
        if self._halt is not None and outcome.aborted is None:
            outcome.aborted = self._halt
        outcome.rows_digest = self.rows_digest
        if outcome.maybe_sent_twice and self.log is not None:
            self.log.warning(
                "%d recipient(s) were sent again after an earlier try was cut off (killed) while sending to them: "
                "each may have received the message twice; they are listed in the result's maybe_sent_twice.",
                len(outcome.maybe_sent_twice),
            )
        return outcome

    def _put(self, work: queue.Queue[Any], item: Any, last_flush: list[float]) -> None:
        """
        Queue a ``(recipient, message, kind)`` work item, flushing progress while the queue is full.

        With a ledger, the item waits in a block that is marked as started (and flushed) before it is queued: the
        block is marked once full, or once its first item has waited ``min(0.2 s, flush_interval)`` (rows that
        come slowly are not held back until a block is full).
        """
        if self.progress is not None:
            now = time.monotonic()
            if not self._staged:
                self._staged_at = now
            self._staged.append(item)
            due = len(self._staged) >= self._block or now - self._staged_at >= min(0.2, self.flush_interval)
            if due:
                self._mark_staged(work, last_flush)
            self._maybe_flush(last_flush)
            return
        while True:
            try:
                work.put(item, timeout=min(0.2, self.flush_interval))
                break
            except queue.Full:
                self._maybe_flush(last_flush)
        self._maybe_flush(last_flush)

    def _mark_staged(self, work: queue.Queue[Any], last_flush: list[float]) -> None:
        """
        Record the staged items as started, durably, then queue them for the workers.

        Wait first until at most half a block is queued beyond the workers' usual backlog (``2 * concurrency``)
        and the marks fit in ``max_unflushed``: the workers keep that much work while the marks are written. The
        queue has room for the block (see :meth:`run`), so queuing it never blocks. When the batch stopped, or the
        marks could not be written, nothing is queued (the items are not attempted).
        """
        progress = self.progress
        assert progress is not None
        backlog = 2 * self.concurrency + self._block // 2
        while not self._abort.is_set() and (work.qsize() > backlog or len(self._staged) > progress.room()):
            progress.wait(min(0.2, self.flush_interval))  # the sends under way make room as they end
            self._maybe_flush(last_flush)
        if self._abort.is_set():
            return  # the staged items are counted as not attempted by _drop_pending
        block, self._staged = self._staged, []
        progress.mark([recipient for recipient, _, _ in block])
        try:
            self._maybe_flush(last_flush, force=True)
        finally:
            if self._abort.is_set():  # the marks could not be written, or the batch stopped meanwhile: send none
                for recipient, _, _ in block:
                    self._skip_not_attempted(recipient)
                block = []
        for item in block:
            work.put(item)

    def _drop_pending(self) -> None:
        """Count the items staged and not marked yet as not attempted."""
        for _ in self._staged:
            self._skip_not_attempted()
        self._staged = []

    def _send_chunk(self, pending: list[tuple[str, Any]], work: queue.Queue[Any], last_flush: list[float]) -> None:
        """Ask about the windows of ``pending`` ``(recipient, row)`` items, then queue each one's message."""
        assert self.choose is not None and self.fallback is not None
        if self._abort.is_set():
            for _ in pending:
                self._skip_not_attempted()
            return
        try:
            kinds = self.choose([recipient for recipient, _ in pending])
        except ItnioError as err:  # the windows are unknown: send none of these rows (a retry resumes here)
            self._halt = err  # the rows queued before, whose windows are known, still go out
            for _ in pending:
                self._skip_not_attempted()
            return
        for recipient, row in pending:
            if self._abort.is_set():
                self._skip_not_attempted()
                continue
            kind = kinds.get(recipient, TEMPLATE)
            message = self._build(self.fallback if kind == TEMPLATE else self.plan, row, recipient)
            if message is not None:
                self._put(work, (recipient, message, kind), last_flush)

    def _build(self, plan: MessagePlan, row: Any, recipient: str) -> m.Message | None:
        """Return the row's message from ``plan``, or None when it cannot be built (the row is failed)."""
        try:
            return plan.build(row, recipient)
        except RowTemplateError as err:
            self._fail_row(recipient, err.payload())
        except ItnioValidationError as err:
            self._fail_row(recipient, error_payload(err))
        return None

    def _finish(self, work: queue.Queue[Any], workers: list[threading.Thread], last_flush: list[float]) -> Any:
        """
        Let the workers finish the sends in flight and write the ledger, even when interrupted meanwhile.

        Return the interruption (a timeout or a signal raised in this thread while waiting), if any.
        """
        interrupted: BaseException | None = None
        for _ in workers:
            work.put(_DONE)  # the workers drain the queue, skipping what is left once the batch stopped
        for attempt in range(3):
            try:
                for worker in workers:
                    while worker.is_alive():
                        worker.join(timeout=min(0.2, self.flush_interval))
                        self._maybe_flush(last_flush)
                self._maybe_flush(last_flush, force=True)
                break
            except BaseException as err:  # e.g. Airflow's execution_timeout firing again: keep the ledger
                self._stop(err)
                interrupted = interrupted or err
                if attempt == 2:
                    raise
        return interrupted

    def _scan(self, rows: Iterable[Any]) -> tuple[str, dict[str, None]]:
        """
        Return :attr:`rows_digest` for ``rows`` and their valid recipients (in order), without sending.

        The recipients are read as :meth:`_prepare` reads them.
        """
        digest = hashlib.sha256()
        recipients: dict[str, None] = {}  # in order, as the result lists them
        for index, row in enumerate(rows):
            try:
                raw, _ = self._recipient_of(row, index)
                recipient = m.normalize_phone(raw, "recipient", strict=self.strict_phone_numbers)
            except ItnioValidationError:
                digest.update(f"rows[{index}]\n".encode())
                continue
            recipients[recipient] = None
            digest.update(f"{recipient}\n".encode())
        return digest.hexdigest(), recipients

    def _prepare(self, row: Any, index: int, seen: dict[str, None], earlier: Mapping[str, LedgerValue]) -> Any:
        """
        Return the ``(recipient, message, None)`` work item for a row, or None when the row is skipped or failed.

        With a window chooser, return ``(recipient, row)``: the message is built once the window is known.
        """
        outcome = self._outcome
        try:
            raw, template_row = self._recipient_of(row, index)
            recipient = m.normalize_phone(raw, "recipient", strict=self.strict_phone_numbers)
        except ItnioValidationError as err:
            self._digest.update(f"rows[{index}]\n".encode())
            self._fail_row(f"rows[{index}]", error_payload(err))  # keyed by position: repeated values count
            return None
        self._digest.update(f"{recipient}\n".encode())
        if recipient in seen:
            with self._lock:
                outcome.duplicates += 1
            return None
        seen[recipient] = None
        if recipient in earlier and is_started(earlier[recipient]):
            if self.resend_interrupted:
                self._interrupted.add(recipient)  # sent again below, and listed in maybe_sent_twice
            else:
                assert self.progress is not None
                self.progress.record(recipient, None)  # maybe sent: never sent again
                self._fail_row(
                    recipient,
                    {
                        "status": "unknown_delivery",
                        "reason": "an earlier try was cut off (killed) while sending this message: it may have been "
                        "delivered; it is not sent again (resend_interrupted=False). Delete its entry from the "
                        "progress Variable to send it anyway.",
                    },
                )
                return None
        elif recipient in earlier:
            value = earlier[recipient]
            message_id = sent_message_id(value)
            if is_resent(value):  # sent again by an earlier try that did not complete the batch: still listed
                with self._lock:
                    outcome.maybe_sent_twice.append(recipient)
            if message_id is not None:
                with self._lock:
                    outcome.skipped_already_sent += 1
                    outcome.message_ids[recipient] = message_id
            else:
                self._fail_row(
                    recipient,
                    {
                        "status": "unknown_delivery",
                        "reason": "an earlier try may have delivered this message (no answer came back); "
                        "it is not sent again. Delete the progress Variable to send it anyway.",
                    },
                )
            return None
        if self.choose is not None:
            return recipient, template_row
        message = self._build(self.plan, template_row, recipient)
        return None if message is None else (recipient, message, None)
