"""
The batch-send engine behind :class:`~airflow_provider_itnio.operators.itnio.ItnioBatchSendOperator`.

Pieces, each usable (and tested) on its own:

* :class:`MessagePlan` - the message in the API's dict form, its ``{{ row.<field> }}`` templates compiled once
  in Jinja's *immutable sandboxed* environment, rendered and validated per row.
* :class:`RateLimiter` - never more than ``max_per_second`` send starts in any one-second window.
* :class:`ProgressStore` - ``{recipient: messageId}`` of a task's earlier tries, kept outside XCom (which
  Airflow clears at the start of every try) in Airflow Variables, so a retry never sends twice.
* :class:`BatchSender` - reads rows lazily, hands them to ``concurrency`` worker threads through a bounded
  queue, stops at the first account-level error and flushes progress at least every ``flush_interval``.

Nothing here imports Airflow at module level; the Variable-backed store imports it when it is used.
"""

from __future__ import annotations

import collections
import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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

#: Prefix of the Airflow Variables that hold a batch task's progress.
PROGRESS_PREFIX = "itnio_batch_progress"
#: Longest Variable key written (Airflow's key column is 250 characters; room is left for ``__partN``).
MAX_KEY_LENGTH = 230
#: Recipients per Variable (about 50 bytes each: ~100 KB per Variable, so a flush stays cheap).
SHARD_SIZE = 2000

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
        """``{"status": "template", "reason": "<ExceptionName>: <message>"}``."""
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
    :raises ItnioValidationError: When the message has no templates and is invalid.
    :raises RowTemplateError: When a template string does not compile.
    """

    def __init__(self, message: Mapping[str, Any]) -> None:
        if not isinstance(message, Mapping):
            raise ItnioValidationError(
                "message", "must be a messages model or the API's dict form", f"got {type(message).__name__}"
            )
        self._env = _template_env()
        self._templates = 0
        try:
            self._tree = map_strings(unprotect_row_expressions(message), self._compile)
        except Exception as err:  # a TemplateSyntaxError
            raise RowTemplateError(err) from err
        self.static: m.Message | None = None
        if self._templates == 0:
            self.static = m.message_from_dict(self._tree)

    def _compile(self, value: Any) -> Any:
        if isinstance(value, str) and has_template(value):
            self._templates += 1
            return self._env.from_string(value)
        return value

    def render(self, row: Any, recipient: str) -> dict[str, Any]:
        """
        The message dict for one row (strings rendered; nothing validated).

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
        The validated message model for one row.

        :param row: The row, as for :meth:`render`.
        :param recipient: The row's normalised recipient.
        :raises RowTemplateError: When rendering fails.
        :raises ItnioValidationError: When the rendered message breaks a rule of the API.
        """
        if self.static is not None:
            return self.static
        return m.message_from_dict(self.render(row, recipient))


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
        """The value, or None when there is none."""

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
        """The value, or None."""
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


class VariableBackend:
    """
    Airflow Variables (through the execution API in Airflow 3, the metadata database in Airflow 2).

    :param description: Stored with every Variable written (shown in Admin > Variables).
    """

    def __init__(self, description: str = "") -> None:
        from airflow.providers.common.compat.sdk import Variable

        self._variable = Variable
        self.description = description

    def get(self, key: str) -> str | None:
        """The Variable's raw text, or None (read as text: no JSON decoding and masking of every entry)."""
        value = self._variable.get(key, None)  # positional: Airflow 2 names it default_var, 3 default
        return None if value is None else str(value)

    def set(self, key: str, value: str) -> None:
        """Write the Variable."""
        self._variable.set(key, value, description=self.description)

    def delete(self, key: str) -> None:
        """Delete the Variable."""
        self._variable.delete(key)


def progress_key(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    """
    ``itnio_batch_progress__<dag_id>__<run_id>__<task_id>__<map_index>``; when that is longer than
    :data:`MAX_KEY_LENGTH`, its end is replaced by a hash of the whole (so it stays unique and fits).

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


class ProgressStore:
    """
    The recipients a task's tries got a ``messageId`` for (and those that *may* have got the message).

    Kept as compact JSON objects ``{recipient: messageId}`` (``null`` = maybe sent: the request may have
    reached the API but no answer came back) in ``key``, ``key__part1``, ``key__part2``... with at most
    ``shard_size`` recipients each: a flush rewrites only the part still filling up and parts completed since
    the last flush, so its cost does not grow with the batch. Parts are written in order, so a reader that
    stops at the first missing part never misses a completed one.

    :meth:`record` is thread-safe and only touches memory; :meth:`flush` writes (call it from one thread).

    :param backend: Where the values live (Airflow Variables in a task).
    :param key: The first part's key (see :func:`progress_key`).
    :param shard_size: Recipients per part.
    """

    def __init__(self, backend: KeyValueBackend, key: str, *, shard_size: int = SHARD_SIZE) -> None:
        self.backend = backend
        self.key = key
        self.shard_size = shard_size
        self._lock = threading.Lock()
        self._next_part = 0  # index of the part now filling up
        self._open: dict[str, str | None] = {}
        self._full: list[tuple[int, dict[str, str | None]]] = []  # completed, not yet written
        self._dirty = False
        self._written_parts = 0  # parts that exist in the backend (loaded or written)

    def part_key(self, index: int) -> str:
        """
        The key of part ``index``.

        :param index: 0 for the first part.
        """
        return self.key if index == 0 else f"{self.key}__part{index}"

    def load(self) -> dict[str, str | None]:
        """What earlier tries recorded: ``{recipient: messageId or None}``. New parts go after these."""
        found: dict[str, str | None] = {}
        index = 0
        while True:
            text = self.backend.get(self.part_key(index))
            if text is None:
                break
            found.update(json.loads(text))
            index += 1
        with self._lock:
            self._next_part = self._written_parts = index
        return found

    def record(self, recipient: str, message_id: str | None) -> None:
        """
        Remember one recipient (in memory until the next :meth:`flush`).

        :param recipient: The normalised recipient.
        :param message_id: Its ``messageId``, or None when the message may or may not have been delivered.
        """
        with self._lock:
            self._open[recipient] = message_id
            self._dirty = True
            if len(self._open) >= self.shard_size:
                self._full.append((self._next_part, self._open))
                self._next_part += 1
                self._open = {}

    @property
    def dirty(self) -> bool:
        """True when something was recorded since the last flush."""
        return self._dirty

    def flush(self) -> None:
        """Write the parts completed since the last flush, then the part filling up (when not empty)."""
        with self._lock:
            if not self._dirty:
                return
            full, self._full = self._full, []
            open_index, open_part = self._next_part, dict(self._open)
            self._dirty = False
        try:
            for index, part in full:
                self._write(index, part)
            if open_part:
                self._write(open_index, open_part)
        except BaseException:
            with self._lock:  # write them again next time
                self._full[:0] = full
                self._dirty = True
            raise

    def _write(self, index: int, part: dict[str, str | None]) -> None:
        self.backend.set(self.part_key(index), json.dumps(part, separators=(",", ":")))
        self._written_parts = max(self._written_parts, index + 1)

    def delete(self) -> None:
        """Remove every part (after the task succeeded)."""
        with self._lock:
            count = max(self._written_parts, self._next_part + 1)
            self._open, self._full, self._dirty = {}, [], False
        for index in range(count):
            self.backend.delete(self.part_key(index))


# ------------------------------------------------------------------------------------------------ sender

#: Sends one message; returns its ``messageId``. Raises the hook's exceptions.
SendFunction = Callable[[str, m.Message], str]


@dataclass
class BatchOutcome:
    """
    What a batch did. :meth:`result` is the operator's XCom.

    :param sent: Messages accepted by the API in this try.
    :param failed: Rows that failed (invalid, rejected, maybe delivered); see ``errors``.
    :param skipped_already_sent: Rows an earlier try already got a ``messageId`` for (not sent again).
    :param duplicates: Rows whose (normalised) recipient appeared earlier in the batch (sent once).
    :param not_attempted: Rows never tried because the batch was aborted.
    :param message_ids: ``{recipient: messageId}``, this try's and earlier tries'.
    :param errors: ``{recipient: {"status", "reason"}}``.
    :param aborted: The account-level error (or unexpected exception) that stopped the batch, if any.
    :param retryable: True when some failure may go away on a retry (transport trouble, an unknown status).
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

    def result(self) -> dict[str, Any]:
        """``{"sent", "failed", "skipped_already_sent", "duplicates", "message_ids", "errors"}``."""
        return {
            "sent": self.sent,
            "failed": self.failed,
            "skipped_already_sent": self.skipped_already_sent,
            "duplicates": self.duplicates,
            "message_ids": self.message_ids,
            "errors": self.errors,
        }

    def summary(self, limit: int = 5) -> str:
        """
        One paragraph for the log / the task's failure message.

        :param limit: How many errors to quote.
        """
        text = (
            f"sent {self.sent}, failed {self.failed}, skipped (already sent by an earlier try) "
            f"{self.skipped_already_sent}, duplicates {self.duplicates}"
        )
        if self.aborted is not None:
            text += f"; ABORTED after an account-level error, {self.not_attempted} row(s) not attempted: {self.aborted}"
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
    Sends one message per row with ``concurrency`` threads, never faster than the rate limiter allows.

    Rows are read lazily; a bounded queue (``2 * concurrency``) sits in front of the workers, so memory does
    not grow with the number of rows beyond the result. Per row: the recipient is taken and normalised,
    duplicates and recipients an earlier try already reached are skipped, the message is rendered and
    validated, then a worker sends it. Row-level failures are recorded and the others go on; an
    account-level :class:`~airflow_provider_itnio.errors.ItnioApiError` (or a config error, or an
    unexpected exception) stops the batch: no new send starts, sends in flight finish and are recorded.

    :param send: Sends one message to a normalised recipient and returns its ``messageId``.
    :param plan: The message, compiled.
    :param recipient_field: Key of the recipient in a dict row (or index in a list/tuple row).
    :param concurrency: Worker threads (sends in flight at once).
    :param max_per_second: Most send starts in any one-second window (None = no limit).
    :param progress: Where progress survives the try (None = not kept).
    :param flush_interval: Longest time between two progress flushes, seconds.
    :param log: Logger for progress lines.
    :param limiter: A ready rate limiter (overrides ``max_per_second``; tests pass one with a fake clock).
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
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
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
        self._outcome = BatchOutcome()

    # -- rows ---------------------------------------------------------------------------------------

    def _recipient_of(self, row: Any, index: int) -> tuple[Any, Any]:
        """``(raw recipient, template row)``; raises ItnioValidationError for a row without one."""
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
        with self._lock:
            outcome = self._outcome
            if who not in outcome.errors:
                outcome.failed += 1
            outcome.errors[who] = payload
            outcome.retryable = outcome.retryable or retryable

    # -- workers ------------------------------------------------------------------------------------

    def _worker(self, work: queue.Queue[Any]) -> None:
        while True:
            item = work.get()
            if item is _DONE:
                return
            recipient, message = item
            if self._abort.is_set():
                self._skip_not_attempted()
                continue
            if self.limiter is not None:
                self.limiter.acquire()
                if self._abort.is_set():
                    self._skip_not_attempted()
                    continue
            try:
                message_id = self.send(recipient, message)
            except ItnioDeliveryUnknownError as err:
                if self.progress is not None:
                    self.progress.record(recipient, None)
                self._fail_row(recipient, error_payload(err))
            except ItnioApiError as err:
                self._fail_row(recipient, error_payload(err), retryable=not err.permanent)
                if err.account_level:
                    self._stop(err)
            except ItnioConfigError as err:
                self._fail_row(recipient, error_payload(err))
                self._stop(err)
            except ItnioError as err:  # validation (permanent), transport (retryable)
                self._fail_row(recipient, error_payload(err), retryable=not err.permanent)
            except BaseException as err:  # a bug or an interruption: stop everything, re-raised by run()
                self._fail_row(recipient, {"status": "error", "reason": f"{type(err).__name__}: {err}"})
                self._stop(err)
            else:
                if self.progress is not None:
                    self.progress.record(recipient, message_id)
                with self._lock:
                    self._outcome.sent += 1
                    self._outcome.message_ids[recipient] = message_id

    def _skip_not_attempted(self) -> None:
        with self._lock:
            self._outcome.not_attempted += 1

    def _stop(self, error: BaseException) -> None:
        with self._lock:
            if self._outcome.aborted is None:
                self._outcome.aborted = error
        self._abort.set()

    # -- run ----------------------------------------------------------------------------------------

    def _maybe_flush(self, last: list[float], *, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - last[0] >= self.flush_interval:
            last[0] = now
            self.progress.flush()

    def run(self, rows: Iterable[Any]) -> BatchOutcome:
        """
        Send to every row; return the outcome (raises only what is not a row's or the account's error).

        :param rows: Recipients, or dicts (lists/tuples) holding one at ``recipient_field``.
        """
        outcome = self._outcome
        earlier = self.progress.load() if self.progress is not None else {}
        if earlier and self.log is not None:
            self.log.info("%d recipient(s) recorded by earlier tries will not be sent again.", len(earlier))
        seen: set[str] = set()
        work: queue.Queue[Any] = queue.Queue(maxsize=2 * self.concurrency)
        workers = [
            threading.Thread(target=self._worker, args=(work,), name=f"itnio-batch-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        for worker in workers:
            worker.start()
        last_flush = [time.monotonic()]
        try:
            for index, row in enumerate(rows):
                if self._abort.is_set():
                    self._skip_not_attempted()
                    continue
                item = self._prepare(row, index, seen, earlier)
                if item is None:
                    continue
                while True:
                    try:
                        work.put(item, timeout=min(0.2, self.flush_interval))
                        break
                    except queue.Full:
                        self._maybe_flush(last_flush)
                self._maybe_flush(last_flush)
        except BaseException as err:
            self._stop(err)
            raise
        finally:
            for _ in workers:
                work.put(_DONE)
            for worker in workers:
                while worker.is_alive():
                    worker.join(timeout=min(0.2, self.flush_interval))
                    self._maybe_flush(last_flush)
            self._maybe_flush(last_flush, force=True)
        return outcome

    def _prepare(self, row: Any, index: int, seen: set[str], earlier: Mapping[str, str | None]) -> Any:
        """The ``(recipient, message)`` work item for a row, or None when the row is skipped or failed."""
        outcome = self._outcome
        raw: Any = None
        try:
            raw, template_row = self._recipient_of(row, index)
            recipient = m.normalize_phone(raw, "recipient")
        except ItnioValidationError as err:
            who = f"rows[{index}]" if raw is None else str(raw)
            self._fail_row(who, error_payload(err))
            return None
        if recipient in seen:
            outcome.duplicates += 1
            return None
        seen.add(recipient)
        if recipient in earlier:
            message_id = earlier[recipient]
            if message_id:
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
        try:
            message = self.plan.build(template_row, recipient)
        except RowTemplateError as err:
            self._fail_row(recipient, err.payload())
            return None
        except ItnioValidationError as err:
            self._fail_row(recipient, error_payload(err))
            return None
        return recipient, message


# ------------------------------------------------------------------------------------------ the task


def execute_batch(
    *,
    rows: Any,
    message: Any,
    recipient_field: str | int,
    business_phone: Any,
    itnio_conn_id: str,
    concurrency: int,
    max_per_second: float | None,
    fail_on_errors: bool,
    context: Mapping[str, Any],
    log: Any,
    flush_interval: float = 1.0,
) -> dict[str, Any]:
    """
    The body of ``ItnioBatchSendOperator.execute()`` (see the operator for the arguments and the policy).

    :param rows: The rendered rows.
    :param message: The rendered message dict.
    :param recipient_field: Key (or index) of the recipient in a row.
    :param business_phone: The sender number, or None for the connection's.
    :param itnio_conn_id: The connection id.
    :param concurrency: Worker threads.
    :param max_per_second: Rate limit, or None.
    :param fail_on_errors: Fail the task when a row failed.
    :param context: The task's context (its ``ti`` names the progress Variable).
    :param log: The operator's logger.
    :param flush_interval: Seconds between progress flushes.
    :return: The XCom result.
    """
    from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

    from airflow_provider_itnio.hooks.itnio import ItnioHook

    if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Iterable):
        raise AirflowFailException(
            f"rows must be a list of recipients or of dicts, got {type(rows).__name__}. Pass an XComArg "
            "(upstream_task.output) or set render_template_as_native_obj=True on the DAG for a Jinja string."
        )
    try:
        plan = MessagePlan(message)
    except ItnioError as err:
        raise AirflowFailException(f"The message is invalid, no row can be sent: {err}") from err
    hook = ItnioHook(itnio_conn_id=itnio_conn_id, pool_maxsize=max(64, concurrency))  # a connection per worker
    try:
        sender = m.normalize_phone(hook.business_phone_for(business_phone), "businessPhone")
    except ItnioError as err:
        raise AirflowFailException(str(err)) from err

    ti = context["ti"]
    store = ProgressStore(
        VariableBackend(f"Progress of the ItnioBatchSendOperator task {ti.task_id}; deleted when it succeeds."),
        progress_key(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1)),
    )

    def send(recipient: str, msg: m.Message) -> str:
        return hook.send(recipient, msg, business_phone=sender).message_id

    engine = BatchSender(
        send,
        plan,
        recipient_field=recipient_field,
        concurrency=concurrency,
        max_per_second=max_per_second,
        progress=store,
        flush_interval=flush_interval,
        log=log,
    )
    try:
        outcome = engine.run(rows)
    finally:
        hook.close()
    summary = outcome.summary()
    log.info("Batch done: %s", summary)
    aborted = outcome.aborted
    if aborted is not None:
        if not isinstance(aborted, ItnioError):
            raise aborted
        if isinstance(aborted, ItnioConfigError):
            raise AirflowFailException(f"Batch stopped: {summary}") from aborted
        raise AirflowException(
            f"Batch stopped by an account-level error; a retry sends only to the rows not reached yet: {summary}"
        ) from aborted
    if outcome.failed and fail_on_errors:
        if outcome.retryable:
            raise AirflowException(f"Batch finished with errors, some may pass on a retry: {summary}")
        raise AirflowFailException(f"Batch finished with errors that a retry cannot fix: {summary}")
    try:
        store.delete()
    except Exception:
        log.warning("Could not delete the progress Variable %s", store.key, exc_info=True)
    return outcome.result()
