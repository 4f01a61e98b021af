"""
The campaign operator: one message per row, through the batch engine (:mod:`airflow_provider_itnio.batch`).

The operator is thin: it checks its arguments, keeps the message in the API's dict form (``{{ row.<field> }}``
protected from Airflow's rendering), and in ``execute()`` hands one
:class:`~airflow_provider_itnio.batch.task.BatchSettings` to :func:`~airflow_provider_itnio.batch.task.run_batch`.
The engine is imported only when a task runs, so parsing a DAG file that uses it stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_itnio import messages as m
from airflow_provider_itnio.batch.results import DEFAULT_INLINE_MAX_ROWS
from airflow_provider_itnio.templating import is_static, protect_row_expressions
from airflow_provider_itnio.window import WindowUnknown, check_window_unknown, fallback_payload

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = ["ItnioBatchSendOperator"]


class ItnioBatchSendOperator(BaseOperator):
    """
    Send one message per row (a campaign) with a pool of workers over one keep-alive connection pool.

    The message's strings may use ``{{ row.<field> }}`` and ``{{ recipient }}``, rendered per row in Jinja's
    sandboxed environment; every other template is rendered by Airflow. Invalid or rejected rows are reported
    and the others go on; an account-level error stops the batch. A ledger in Airflow Variables makes sure
    that no try sends a row an earlier try sent, and that only one try sends at a time. The policy (result,
    retries, ledger, lease, bounds) is on the documentation's Campaigns page (``docs/campaigns.md``).

    .. code-block:: python

        ItnioBatchSendOperator(
            task_id="campaign",
            rows=customers.output,  # [[phone, first_name], ...]
            recipient_field=0,  # dict rows: the key, e.g. "recipient" (the default)
            message=Template.with_body_parameters("spring_sale", "en_US", ["{{ row[1] }}", "{{ params.code }}"]),
            max_per_second=50,
        )

    Result (XCom ``return_value``), small whatever the batch: the counters ``"sent", "failed",
    "skipped_already_sent", "duplicates", "not_attempted"`` (they add up to the number of rows, ``"rows"``),
    ``"unknown_delivery"``, ``"<entry>_count"`` of each per-recipient entry, ``"first_errors"`` (the first 20)
    and ``"full_result"``: where the full result went. The full result is ``{counters..., "message_ids":
    {recipient: messageId}, "errors": {recipient or "rows[<i>]": {"status", "reason"}}}``; up to
    ``inline_results_max_rows`` rows its entries are in the XCom too, above it in one gzipped JSON object under
    ``results_path``. Read it in a downstream task with
    :func:`airflow_provider_itnio.batch.results.load_batch_results`, which works for both.

    :param rows: Recipients (strings/integers), or dicts holding one at ``recipient_field`` (or lists/tuples
        with an integer ``recipient_field``), typically an upstream task's XCom (templated).
    :param message: A model from :mod:`airflow_provider_itnio.messages` or the API's dict form, whose strings
        may use ``{{ row.<field> }}`` (templated; stored as the dict form).
    :param recipient_field: The key of the recipient in a dict row, or its index in a list/tuple row.
    :param business_phone: The sender number; defaults to the connection's ``business_phone`` extra (templated).
    :param itnio_conn_id: The Airflow connection of type ``itnio`` (templated).
    :param concurrency: Sends in flight at once (worker threads sharing the hook's connection pool), default 8.
    :param max_per_second: The most sends started in any one-second window (evenly spread, with a 50 ms safety
        margin on the window for the requests' jitter on their way: about 5% slower than the nominal rate);
        None (default) = no limit.
    :param fail_on_errors: Fail the task after the batch when a row failed (default True); False = succeed and
        report the failures in the result only.
    :param fallback_template: An approved template (a :class:`~airflow_provider_itnio.messages.Template` or the
        API's template dict, whose strings may use ``{{ row.<field> }}`` too) sent instead of the message to the
        rows whose customer sent no message to the business number in the last 24 hours, as the webhook receiver
        recorded (asked in bulk, a chunk of rows at a time, just before sending them). The result then also has
        ``sent_by_kind`` (``{"session": n, "template": n}``, this try's sends) and ``template_recipients``.
        Needs the receiver (Airflow 3.1+). None (default): no window is checked.
    :param window_unknown: With ``fallback_template``, when the receiver cannot be asked: ``"fail"`` (default)
        stops the batch before sending those rows (a retry resumes there); ``"template"`` sends them the template.
    :param results_path: Where the full result of a batch above ``inline_results_max_rows`` rows is written: an
        Object Storage URL (``s3://<conn_id>@bucket/prefix``, ``gs://...``, ``file:///shared/itnio``) or an
        ``ObjectStoragePath``, one object per task instance (the same for every try:
        ``<results_path>/dag_id=<dag>/run_id=<run>/task_id=<task>[/map_index=<i>]/batch_result.json.gz``)
        (templated). None (default): ``[itnio] batch_results_path``, else ``file://$AIRFLOW_HOME/itnio/results``.
        On distributed workers it must be storage every worker reaches, for a downstream task to read it.
    :param inline_results_max_rows: Up to this many rows (default 1,000) the XCom also holds the per-recipient
        entries (``message_ids``, ``errors``...) and nothing is written to ``results_path``.
    :param resend_interrupted: What a retry does with the recipients a killed try (SIGKILL, OOM) was sending to,
        whose outcome is unknown: True (default) sends again and lists them in the result's ``maybe_sent_twice``
        (nobody is left without the message; at most ``MAX_UNFLUSHED`` per killed try may get it twice); False
        reports them in ``errors`` as ``unknown_delivery`` without sending (nobody gets it twice).
    :param strict_phone_numbers: Refuse the rows (and the business phone) whose number can exist but lies in no
        range its country has assigned, instead of sending them with a warning; None (default): the connection's
        ``strict_phone_numbers`` extra decides.
    """

    template_fields: Sequence[str] = (
        "rows",
        "message",
        "business_phone",
        "itnio_conn_id",
        "fallback_template",
        "results_path",
    )
    ui_color = "#25D366"

    def __init__(
        self,
        *,
        rows: Any,
        message: m.Message | dict[str, Any],
        recipient_field: str | int = "recipient",
        business_phone: str | int | None = None,
        itnio_conn_id: str = "itnio_default",
        concurrency: int = 8,
        max_per_second: float | None = None,
        fail_on_errors: bool = True,
        fallback_template: m.Template | dict[str, Any] | str | None = None,
        window_unknown: WindowUnknown = "fail",
        results_path: Any = None,
        inline_results_max_rows: int = DEFAULT_INLINE_MAX_ROWS,
        resend_interrupted: bool = True,
        strict_phone_numbers: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(inline_results_max_rows, bool) or not isinstance(inline_results_max_rows, int):
            raise ValueError(f"inline_results_max_rows must be an integer, got {inline_results_max_rows!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        if max_per_second is not None and not (isinstance(max_per_second, int | float) and max_per_second > 0):
            raise ValueError(f"max_per_second must be a positive number or None, got {max_per_second!r}")
        payload = message.to_payload() if isinstance(message, m.Message) else message
        if is_static(payload) and isinstance(payload, Mapping):
            m.message_from_dict(payload)  # no template at all: check it when the DAG is parsed
        self.rows = rows
        # ``{{ row.x }}`` is wrapped in {% raw %} here, so that Airflow's rendering hands it on untouched.
        self.message = protect_row_expressions(payload)
        self.recipient_field = recipient_field
        self.business_phone = business_phone
        self.itnio_conn_id = itnio_conn_id
        self.concurrency = concurrency
        self.max_per_second = max_per_second
        self.fail_on_errors = fail_on_errors
        self.window_unknown = check_window_unknown(window_unknown)
        self.fallback_template = fallback_payload(fallback_template, keep=protect_row_expressions)
        self.results_path = results_path
        self.inline_results_max_rows = inline_results_max_rows
        self.resend_interrupted = resend_interrupted
        self.strict_phone_numbers = strict_phone_numbers

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_itnio.batch.task import BatchSettings, run_batch

        settings = BatchSettings(
            rows=self.rows,
            message=self.message,
            recipient_field=self.recipient_field,
            business_phone=self.business_phone,
            itnio_conn_id=self.itnio_conn_id,
            concurrency=self.concurrency,
            max_per_second=self.max_per_second,
            fail_on_errors=self.fail_on_errors,
            fallback_template=self.fallback_template,
            window_unknown=self.window_unknown,
            results_path=self.results_path,
            inline_results_max_rows=self.inline_results_max_rows,
            resend_interrupted=self.resend_interrupted,
            strict_phone_numbers=self.strict_phone_numbers,
        )
        return run_batch(settings, context=context, log=self.log, on_start=self._keep_engine)

    def _keep_engine(self, engine: Any) -> None:
        self._engine = engine

    def on_kill(self) -> None:
        """Stop the batch (SIGTERM, a timeout): sends in flight finish, the ledger is written, the try fails."""
        from airflow_provider_itnio.batch.sender import BatchKilledError

        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.stop(BatchKilledError("the task was told to stop (on_kill); a retry sends the rows not reached"))
