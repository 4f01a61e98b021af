"""
The Airflow side of :class:`~airflow_provider_itnio.operators.batch.ItnioBatchSendOperator`.

The engine (:mod:`airflow_provider_itnio.batch`: plan, rate, ledger, sender) imports no Airflow; this module gives
it a ledger in Airflow Variables, runs it for one task instance with the operator's :class:`BatchSettings`, turns
its outcome into the task's result or failure (through
:func:`~airflow_provider_itnio.operators._airflow_errors.task_failure`) and cleans up the ledgers of earlier runs
once their task instance's success is recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass
from functools import partial
from typing import Any

from airflow_provider_itnio import messages as m
from airflow_provider_itnio.batch.ledger import (
    MAX_KEY_LENGTH,
    PROGRESS_PREFIX,
    ProgressStore,
    lease_owner,
    progress_key,
)
from airflow_provider_itnio.batch.outcome import COUNTERS
from airflow_provider_itnio.batch.plan import MessagePlan
from airflow_provider_itnio.batch.results import (
    DEFAULT_INLINE_MAX_ROWS,
    ResultsPathError,
    default_results_path,
    results_object,
    summarize,
    write_batch_results,
)
from airflow_provider_itnio.batch.sender import BatchSender
from airflow_provider_itnio.errors import ItnioApiError, ItnioError
from airflow_provider_itnio.operators._airflow_errors import task_failure


@dataclass(frozen=True, kw_only=True)
class BatchSettings:
    """
    What one batch task sends and how: the operator's rendered arguments, built in its ``execute()``.

    :param rows: The rendered rows.
    :param message: The rendered message dict.
    :param recipient_field: Key (or index) of the recipient in a row.
    :param business_phone: The sender number, or None for the connection's.
    :param itnio_conn_id: The connection id.
    :param concurrency: Worker threads.
    :param max_per_second: Rate limit, or None.
    :param fail_on_errors: Fail the task when a row failed.
    :param fallback_template: The rendered fallback template dict (``{{ row.* }}`` still in it), or None: no
        window is checked.
    :param window_unknown: ``"fail"`` or ``"template"`` (see :class:`~airflow_provider_itnio.window.WindowChooser`).
    :param results_path: Where a full result above ``inline_results_max_rows`` rows goes (a URL or an
        ``ObjectStoragePath``; None = :func:`~airflow_provider_itnio.batch.results.default_results_path`).
    :param inline_results_max_rows: Up to this many rows, the XCom keeps the per-recipient entries and nothing is
        written to ``results_path``.
    :param resend_interrupted: Send again to the recipients a killed try was sending to (listed in
        ``maybe_sent_twice``); False: report them as ``unknown_delivery`` (see
        :class:`~airflow_provider_itnio.batch.sender.BatchSender`).
    :param strict_phone_numbers: Refuse numbers in no range their country has assigned (None: the connection's
        ``strict_phone_numbers`` extra decides).
    :param flush_interval: Seconds between progress flushes.
    :param store_options: Extra keyword arguments of :class:`~airflow_provider_itnio.batch.ledger.ProgressStore`
        (lease and write-retry timings).
    """

    rows: Any
    message: Any
    recipient_field: str | int
    business_phone: Any
    itnio_conn_id: str
    concurrency: int
    max_per_second: float | None
    fail_on_errors: bool
    fallback_template: Any = None
    window_unknown: str = "fail"
    results_path: Any = None
    inline_results_max_rows: int = DEFAULT_INLINE_MAX_ROWS
    resend_interrupted: bool = True
    strict_phone_numbers: bool | None = None
    flush_interval: float = 1.0
    store_options: Mapping[str, Any] | None = None


_HEAD_SUFFIX = "__head"


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
        """Return the Variable's raw text, or None (read as text: no JSON decoding, no masking of entries)."""
        value = self._variable.get(key, None)  # positional: Airflow 2 names it default_var, 3 default
        return None if value is None else str(value)

    def set(self, key: str, value: str) -> None:
        """Write the Variable."""
        self._variable.set(key, value, description=self.description)

    def delete(self, key: str) -> None:
        """Delete the Variable."""
        self._variable.delete(key)


def _variable_keys(prefix: str) -> list[str]:
    """Return the keys of the Variables (in the metadata database) that start with ``prefix``."""
    try:
        from airflow.sdk import Variable
    except ImportError:  # Airflow 2: tasks reach the metadata database
        Variable = None  # type: ignore[assignment,misc]
    if Variable is not None:
        keys = getattr(Variable, "keys", None)
        return list(keys(prefix=prefix)) if keys is not None else []  # Variable.keys: Airflow 3.3+
    from airflow.models.variable import Variable as VariableModel
    from airflow.utils.session import create_session

    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with create_session() as session:
        return [key for (key,) in session.query(VariableModel.key).filter(VariableModel.key.like(pattern, escape="\\"))]


def _succeeded(ti: Any, task: Mapping[str, Any]) -> bool:
    """Return True when the metadata database records the task instance ``task`` names as successful."""
    if hasattr(ti, "get_ti_count"):  # Airflow 3: ask the API server
        count = ti.get_ti_count(
            dag_id=task["dag_id"],
            task_ids=[task["task_id"]],
            run_ids=[task["run_id"]],
            map_index=task.get("map_index", -1),
            states=["success"],
        )
        return bool(count)
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        state = (
            session.query(TaskInstance.state)
            .filter_by(
                dag_id=task["dag_id"],
                task_id=task["task_id"],
                run_id=task["run_id"],
                map_index=task.get("map_index", -1),
            )
            .scalar()
        )
    return str(state) in ("success", "TaskInstanceState.SUCCESS")


def sweep_completed_ledgers(ti: Any, backend: Any, keep: str, log: Any) -> list[str]:
    """
    Delete the ledgers of this task's other runs that hold a completion marker and whose success is recorded.

    A ledger is never deleted by the try that completes it: that try's success is not recorded yet, and a
    retry after a failure in Airflow's own bookkeeping must still find it. The next run of the task deletes it.

    :param ti: The running task instance.
    :param backend: The Variable backend.
    :param keep: The running try's own ledger key (never deleted here).
    :param log: Logger.
    :return: The keys of the ledgers deleted.
    """
    prefix = f"{PROGRESS_PREFIX}__{ti.dag_id}__"[: MAX_KEY_LENGTH - 26]  # long keys end in a hash
    deleted: list[str] = []
    for head_key in _variable_keys(prefix):
        if not head_key.endswith(_HEAD_SUFFIX) or head_key == keep + _HEAD_SUFFIX:
            continue
        head = json.loads(backend.get(head_key) or "{}")
        task = head.get("task") or {}
        if head.get("done") is None or (task.get("dag_id"), task.get("task_id")) != (ti.dag_id, ti.task_id):
            continue
        if not _succeeded(ti, task):
            continue
        key = head_key[: -len(_HEAD_SUFFIX)]
        ProgressStore(backend, key).delete()
        deleted.append(key)
        log.info("Deleted the ledger of the completed, successful batch %s", key)
    return deleted


class _ResultsWriter:
    """
    Turn a batch's full result into its XCom: inline when small, else written to ``results_path`` first.

    :param results_path: The operator's ``results_path`` (None: the configured default).
    :param inline_max_rows: The most rows whose per-recipient entries stay in the XCom.
    :param ti: The running task instance (names the object, the same for every try).
    :param map_index: Its map index.
    :param log: Logger.
    """

    def __init__(self, results_path: Any, inline_max_rows: int, ti: Any, map_index: int, log: Any) -> None:
        self.results_path = results_path
        self.inline_max_rows = inline_max_rows
        self.ti = ti
        self.map_index = map_index
        self.log = log
        self._path: Any = None

    def _describe(self) -> str:
        return repr(str(self.results_path)) if self.results_path not in (None, "") else "(default)"

    def resolve(self) -> Any:
        """Return the object the full result goes to; fail the task (no retry) when ``results_path`` is no path."""
        if self._path is None:
            try:
                base = self.results_path if self.results_path not in (None, "") else default_results_path()
                path = results_object(
                    base,
                    dag_id=self.ti.dag_id,
                    run_id=self.ti.run_id,
                    task_id=self.ti.task_id,
                    map_index=self.map_index,
                )
                path.fs  # noqa: B018 - the filesystem (and its connection) is found now, before sending
            except Exception as err:
                raise task_failure(
                    None,
                    retry=False,
                    message=f"results_path {self._describe()} is not a usable Object Storage path: "
                    f"{type(err).__name__}: {err}",
                ) from err
            self._path = path
        return self._path

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """
        Return the XCom of ``result`` (called once the ledger holds the completed result).

        A failed write fails the task (retryably) naming ``results_path``: nothing is lost, since the ledger keeps
        the completed result until a successful run of the task, and a retry or a clear sends nothing and writes
        it again.
        """
        rows = sum(int(result.get(name, 0)) for name in COUNTERS)
        if rows <= self.inline_max_rows:
            return summarize(result, rows=rows, inline=True)
        path = self.resolve()
        try:
            where = write_batch_results(path, result)
        except ResultsPathError as err:
            raise task_failure(
                None,
                retry=True,
                message=f"The batch is complete and recorded in its ledger, but its full result could not be written "
                f"to results_path {self._describe()}: {err}. Nothing is lost and nothing will be sent again: fix "
                "results_path (or its storage), then let the task retry or clear it; that try sends nothing and "
                "writes the result again.",
            ) from err
        self.log.info(
            "Full result of %d rows written to %s (%d bytes); the XCom holds its summary (load_batch_results reads it)",
            rows,
            where["path"],
            where["bytes"],
        )
        return summarize(result, rows=rows, inline=False, full_result=where)


def run_batch(
    settings: BatchSettings,
    *,
    context: Mapping[str, Any],
    log: Any,
    on_start: Callable[[BatchSender], None] | None = None,
) -> dict[str, Any]:
    """
    Run ``ItnioBatchSendOperator.execute()``: send the batch, keep its ledger, return the XCom result.

    :param settings: What to send and how (the operator's rendered arguments).
    :param context: The task's context (its ``ti`` names the ledger).
    :param log: The operator's logger.
    :param on_start: Called with the engine before it sends (the operator keeps it to stop it in ``on_kill``).
    """
    from airflow_provider_itnio.hooks.itnio import ItnioHook

    rows = settings.rows
    if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Iterable):
        raise task_failure(
            None,
            retry=False,
            message=f"rows must be a list of recipients or of dicts, got {type(rows).__name__}. Pass an XComArg "
            "(upstream_task.output) or set render_template_as_native_obj=True on the DAG for a Jinja string.",
        )
    try:
        plan = MessagePlan(settings.message)
    except ItnioError as err:
        raise task_failure(err, message=f"The message is invalid, no row can be sent: {err}") from err
    fallback: MessagePlan | None = None
    if settings.fallback_template is not None:
        from airflow_provider_itnio.window import as_message_dict, check_fallback

        try:
            payload = as_message_dict(settings.fallback_template)
            if not isinstance(payload, Mapping):
                check_fallback(payload)  # raises, naming fallback_template
            fallback = MessagePlan(payload, factory=check_fallback)
        except ItnioError as err:
            raise task_failure(err, message=f"The fallback_template is invalid, no row can be sent: {err}") from err

    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    key = progress_key(ti.dag_id, ti.run_id, ti.task_id, map_index)
    results = _ResultsWriter(settings.results_path, settings.inline_results_max_rows, ti, map_index, log)
    if not (isinstance(rows, Sized) and len(rows) <= settings.inline_results_max_rows):
        results.resolve()  # a results_path that cannot be a path fails the task before anything is sent
    backend = VariableBackend(f"Ledger of the ItnioBatchSendOperator task {ti.task_id} (see the Campaigns page).")
    try:
        sweep_completed_ledgers(ti, backend, key, log)
    except Exception:
        log.warning("Could not clean up the ledgers of earlier runs", exc_info=True)
    store = ProgressStore(
        backend,
        key,
        owner=lease_owner(getattr(ti, "try_number", None)),
        task={"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "map_index": map_index},
        log=log,
        **(settings.store_options or {}),
    )

    # a connection per worker
    hook = ItnioHook(itnio_conn_id=settings.itnio_conn_id, pool_maxsize=max(64, settings.concurrency))
    completed = False
    try:
        try:
            strict = hook.strict_phone_numbers_for(settings.strict_phone_numbers)
            sender = hook.phone_digits(hook.business_phone_for(settings.business_phone), "businessPhone", strict)
        except ItnioError as err:
            raise task_failure(err, message=str(err)) from err

        def send(recipient: str, msg: m.Message) -> str:
            return hook.send(recipient, msg, business_phone=sender, strict_phone_numbers=strict).message_id

        choose: Callable[[list[str]], dict[str, str]] | None = None
        if fallback is not None:
            from airflow_provider_itnio.window import WindowChooser, check_window_unknown

            chooser = WindowChooser(
                settings.itnio_conn_id, window_unknown=check_window_unknown(settings.window_unknown), log=log
            )
            choose = partial(chooser.kinds, sender)

        engine = BatchSender(
            send,
            plan,
            recipient_field=settings.recipient_field,
            concurrency=settings.concurrency,
            max_per_second=settings.max_per_second,
            progress=store,
            flush_interval=settings.flush_interval,
            log=log,
            fallback=fallback,
            choose=choose,
            resend_interrupted=settings.resend_interrupted,
            strict_phone_numbers=strict,
        )
        if on_start is not None:
            on_start(engine)
        try:
            outcome = engine.run(rows)
        except ItnioError as err:  # the ledger is held by another try, or cannot be read
            raise task_failure(err, message=f"Batch not started: {err}") from err
        summary = outcome.summary()
        if outcome.completed_earlier is not None:
            completed = True
            log.info("Batch already completed, nothing sent: %s", summary)
            return results.finish(outcome.result())
        log.info("Batch done: %s", summary)
        aborted = outcome.aborted
        if aborted is not None:
            text = f"Batch stopped: {summary}"
            if isinstance(aborted, ItnioApiError) and aborted.account_level:
                text = f"Batch stopped by an account-level error; a retry sends only to rows not reached yet: {summary}"
            raise task_failure(aborted, message=text, resumable=True)
        if outcome.failed and settings.fail_on_errors:
            if outcome.retryable:
                raise task_failure(
                    None, retry=True, message=f"Batch finished with errors, some may pass on a retry: {summary}"
                )
            raise task_failure(
                None, retry=False, message=f"Batch finished with errors that a retry cannot fix: {summary}"
            )
        try:
            store.complete(outcome.result(), rows_digest=outcome.rows_digest)
        except ItnioError as err:
            raise task_failure(err, message=f"Batch sent, but its completion could not be recorded: {err}") from err
        completed = True
        return results.finish(outcome.result())
    finally:
        hook.close()
        if not completed:
            try:
                store.release_lease()
            except Exception:
                log.warning("Could not release the lease on the ledger %s", key, exc_info=True)
