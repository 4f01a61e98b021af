"""What a batch did (:class:`BatchOutcome`): its counters, the ``messageId`` of every row sent, its errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_itnio.batch.ledger import LedgerValue, sent_message_id
from airflow_provider_itnio.window import SESSION, TEMPLATE

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
    :param rows_digest: Digest of the rows' recipients, in order (see :attr:`.BatchSender.rows_digest`).
    :param windows: The batch chose per row between the message and a fallback template (the result then also
        has ``sent_by_kind`` and ``template_recipients``).
    :param sent_by_kind: This try's ``sent``, split into ``session`` (the message) and ``template`` (the fallback).
    :param template_recipients: The recipients this try sent the fallback template to.
    :param maybe_sent_twice: Recipients a killed earlier try was sending to (its outcome unknown: the ledger
        held :data:`.STARTED`) that this try, or an earlier one that did not complete the batch, sent again
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
        :param errors: The result's errors (:meth:`.ProgressStore.load_errors`); default: the marker's own.
        :param recipients: The rows' recipients, in order: ``message_ids`` holds only theirs, in that order (the
            ledger may also hold recipients of other rows that an earlier completion of the task sent to). None =
            every recipient.
        :param maybe_sent_twice: The result's ``maybe_sent_twice`` (:meth:`.ProgressStore.load_recipients`).
        :param template_recipients: The result's ``template_recipients`` (:meth:`.ProgressStore.load_recipients`),
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
