"""
The batch's sender (:class:`BatchSender`): one message per row, by worker threads, within the rate and the ledger.

It reads rows lazily, hands them to ``concurrency`` worker threads through a bounded queue, stops at the first
account-level error and flushes progress at least every ``flush_interval``. With a fallback template and a window
chooser (:mod:`airflow_provider_itnio.window`), it asks about the rows' 24-hour windows a chunk at a time, just
before sending them, and sends the template to those whose window is closed.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from airflow_provider_itnio import messages as m
from airflow_provider_itnio.batch.ledger import (
    LeaseLostError,
    LedgerError,
    LedgerValue,
    LedgerWriteError,
    ProgressStore,
    is_resent,
    is_started,
    sent_message_id,
)
from airflow_provider_itnio.batch.outcome import BatchOutcome
from airflow_provider_itnio.batch.plan import MessagePlan, RowTemplateError
from airflow_provider_itnio.batch.rate import RateLimiter
from airflow_provider_itnio.errors import (
    ItnioApiError,
    ItnioConfigError,
    ItnioDeliveryUnknownError,
    ItnioError,
    ItnioValidationError,
    error_payload,
)
from airflow_provider_itnio.window import TEMPLATE, WINDOW_CHUNK

#: Longest text kept in a failed row's ``status`` or ``reason`` (longer ones are cut, in the result too).
MAX_ERROR_TEXT = 1000
#: Most sends marked as started at once, ahead of the workers (and at most half of ``max_unflushed``; with a rate
#: limit, at most ``max_per_second * flush_interval``).
WRITE_AHEAD_BLOCK = 200

#: Sends one message; returns its ``messageId``. Raises the hook's exceptions.
SendFunction = Callable[[str, m.Message], str]


def _cut(text: str) -> str:
    """Return ``text`` cut to :data:`MAX_ERROR_TEXT` characters (saying how much was left out)."""
    if len(text) <= MAX_ERROR_TEXT:
        return text
    return f"{text[:MAX_ERROR_TEXT]}... ({len(text) - MAX_ERROR_TEXT} more characters)"


class BatchKilledError(ItnioError):
    """The task was told to stop (Airflow called ``on_kill``: SIGTERM, a timeout, a user marking it failed)."""


_DONE = object()


class BatchSender:
    """
    Send one message per row with ``concurrency`` threads, never faster than the rate limiter allows.

    Rows are read lazily; a bounded queue (``2 * concurrency``) sits in front of the workers, so memory does
    not grow with the number of rows beyond the result. Per row: the recipient is taken and normalised,
    duplicates and recipients an earlier try already reached are skipped, the message is rendered and
    validated, then a worker sends it. Row-level failures are recorded and the others go on; an
    account-level :class:`~airflow_provider_itnio.errors.ItnioApiError`, a config error, a ledger that cannot
    be kept (:class:`.LedgerError`) or an unexpected exception stops the batch: no new send starts, sends in
    flight finish and are recorded.

    With a ledger, sends go out only once they are durably recorded as started (:meth:`.ProgressStore.mark`): the
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
        holds :data:`.STARTED` for them: whether the message went out is unknown). True (default): send again
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

        :param error: Why (becomes :attr:`.BatchOutcome.aborted`).
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

        With a ledger, first claim it (:meth:`.ProgressStore.claim`): when an earlier try completed the batch,
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
