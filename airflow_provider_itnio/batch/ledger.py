"""
The ledger of a batch task: ``{recipient: messageId}`` of its tries, kept outside XCom.

XCom is cleared at the start of every try, so the ledger lives in a key-value store (Airflow Variables in a task:
:class:`~airflow_provider_itnio.batch.task.VariableBackend`), with a lease (one try sends at a time), write
retries, a bound on sends without a durable record and a completion marker. See :class:`ProgressStore`.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from airflow_provider_itnio.errors import ItnioError

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
                if not self._safe_to_send():
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
            return self._safe_to_send()

    def _safe_to_send(self) -> bool:
        """Return whether no failure was recorded and the lease is still safe (call with ``_lock`` held)."""
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
        :param rows_digest: The digest of the rows sent (:attr:`.BatchSender.rows_digest`): a later try replays
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
