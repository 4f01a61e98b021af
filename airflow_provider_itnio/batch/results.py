"""
Where :class:`~airflow_provider_itnio.operators.batch.ItnioBatchSendOperator` keeps a campaign's full result.

A batch's full result (``message_ids``: ``{recipient: messageId}`` of every row sent, ``errors`` of every
failed row, and any other per-recipient list) grows with the batch; XCom lives in the metadata database. So the
task's XCom (``return_value``) is a small summary (:func:`summarize`): the counters, the first
:data:`QUOTED_ERRORS` errors and where the full result went. Up to ``inline_results_max_rows`` rows (default
:data:`DEFAULT_INLINE_MAX_ROWS`) the per-recipient entries stay in the XCom as well, as before; above it the full
result is written, as gzipped JSON, to one object per task instance under ``results_path`` (an Object Storage
URL: ``file://``, ``s3://<conn_id>@bucket/prefix``, ``gs://``...; default ``[itnio] batch_results_path``, else
``file://$AIRFLOW_HOME/itnio/results``). Downstream tasks read it with :func:`load_batch_results`, whichever
way it was kept.

Only the standard library is imported here; Airflow's Object Storage is imported when a result is written or read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

#: Batches of at most this many rows keep their per-recipient entries (``message_ids``, ``errors``...) in the XCom.
DEFAULT_INLINE_MAX_ROWS = 1000
#: Errors quoted in the XCom summary (``first_errors``); the full result holds them all.
QUOTED_ERRORS = 20
#: The XCom key saying where the full result went (None: it is inline).
FULL_RESULT_KEY = "full_result"
#: The config section and option of the default ``results_path``.
CONFIG_SECTION, CONFIG_OPTION = "itnio", "batch_results_path"
#: Name of the object holding one task instance's full result, under its ``dag_id=/run_id=/task_id=`` folders.
OBJECT_NAME = "batch_result.json.gz"
#: Result entries that are small whatever the batch (kept in the summary even when they are mappings).
_SMALL_MAPPINGS = ("sent_by_kind",)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.~:+=-]")


class ResultsPathError(OSError):
    """The full result could not be written to (or read from) ``results_path``."""


def default_results_path() -> str:
    """Return ``[itnio] batch_results_path``, or ``file://$AIRFLOW_HOME/itnio/results`` when it is not set."""
    from airflow.providers.common.compat.sdk import conf

    configured = conf.get(CONFIG_SECTION, CONFIG_OPTION, fallback="") or ""
    if configured.strip():
        return configured.strip()
    home = os.path.abspath(os.path.expanduser(os.environ.get("AIRFLOW_HOME") or "~/airflow"))  # as Airflow finds it
    return f"file://{home}/itnio/results"


def _per_recipient(name: str, value: Any) -> bool:
    """Return True when the result entry ``name`` grows with the batch (a list, or a mapping keyed by recipient)."""
    return isinstance(value, list | tuple | set | frozenset) or (
        isinstance(value, Mapping) and name not in _SMALL_MAPPINGS
    )


def summarize(
    result: Mapping[str, Any], *, rows: int, inline: bool, full_result: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """
    Return the XCom of a batch: its counters and other small entries, the first errors and where the rest went.

    Every per-recipient entry ``<name>`` (``message_ids``, ``errors``, ``template_recipients``...) is counted in
    ``<name>_count``; it is kept as it is only when ``inline``. ``first_errors`` quotes the first
    :data:`QUOTED_ERRORS` errors; ``unknown_delivery`` counts the rows whose delivery is unknown.

    :param result: The batch's full result (:meth:`~airflow_provider_itnio.batch.outcome.BatchOutcome.result`).
    :param rows: The number of rows (the sum of the result's counters), kept as ``rows``.
    :param inline: Keep the per-recipient entries in the summary too.
    :param full_result: Where the full result was written (:func:`write_batch_results`), or None.
    """
    errors: Mapping[str, Any] = result.get("errors") or {}
    summary: dict[str, Any] = {"rows": rows}
    for name, value in result.items():
        if _per_recipient(name, value):
            summary[f"{name}_count"] = len(value)
            if inline:
                summary[name] = value
        else:
            summary[name] = value
    summary["unknown_delivery"] = sum(
        1 for error in errors.values() if isinstance(error, Mapping) and error.get("status") == "unknown_delivery"
    )
    summary["first_errors"] = dict(list(errors.items())[:QUOTED_ERRORS])
    summary[FULL_RESULT_KEY] = dict(full_result) if full_result is not None else None
    return summary


def _safe(part: Any) -> str:
    """Return ``part`` as one path segment (characters outside Airflow's run-id alphabet become ``_``)."""
    text = _UNSAFE.sub("_", str(part))
    return "_" if text in ("", ".", "..") else text


def results_object(base: Any, *, dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> Any:
    """
    Return the object (an ``ObjectStoragePath``) that holds one task instance's full result, the same for every try.

    ``<base>/dag_id=<dag>/run_id=<run>/task_id=<task>[/map_index=<i>]/batch_result.json.gz``, as Airflow lays out
    its task logs.

    :param base: ``results_path``: a URL (``s3://<conn_id>@bucket/prefix``, ``file:///data/itnio``...) or an
        ``ObjectStoragePath`` (whose ``conn_id`` is kept).
    :param dag_id: The DAG.
    :param run_id: The DAG run.
    :param task_id: The task.
    :param map_index: The mapped task's index (-1 or None: not mapped).
    """
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    root = base if isinstance(base, ObjectStoragePath) else ObjectStoragePath(str(base).strip())
    path = root / f"dag_id={_safe(dag_id)}" / f"run_id={_safe(run_id)}" / f"task_id={_safe(task_id)}"
    if map_index is not None and map_index >= 0:
        path = path / f"map_index={int(map_index)}"
    return path / OBJECT_NAME


def encode(result: Mapping[str, Any]) -> bytes:
    """
    Return the stored form of a full result: compact JSON with sorted keys, gzipped without a timestamp.

    The same result gives the same bytes, whatever order its entries were recorded in: a retry that replays a
    completed batch writes exactly the object the first try wrote.
    """
    text = json.dumps(result, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)


def write_batch_results(path: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    """
    Write a full result to ``path`` (overwriting an earlier try's) and return where it went, for the XCom summary.

    :param path: The object (:func:`results_object`).
    :param result: The full result.
    :return: ``{"path", "conn_id", "bytes", "sha256"}``: enough for :func:`load_batch_results` to find and check it.
    :raises ResultsPathError: When it cannot be written.
    """
    data = encode(result)
    try:
        if path.protocol in ("file", "local", ""):  # object stores have no folders to make (and no bucket is made)
            path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as stream:
            stream.write(data)
    except Exception as err:
        raise ResultsPathError(f"could not write {path}: {type(err).__name__}: {err}") from err
    return {
        "path": str(path),
        "conn_id": path.storage_options.get("conn_id"),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def load_batch_results(value: Mapping[str, Any]) -> dict[str, Any]:
    """
    Return the full result of a batch from its XCom, with ``message_ids`` and ``errors`` of every row.

    .. code-block:: python

        @task
        def record(result: dict) -> None:
            message_ids = load_batch_results(result)["message_ids"]  # {recipient: messageId}


        record(campaign.output)

    A small batch's XCom holds them already (returned as they are); a large one's names the object its task wrote
    (``full_result``), which is read (through Airflow's Object Storage and the connection it names) and checked
    against the digest the task recorded. On distributed workers that object must be on storage every worker
    reaches (S3, GCS, NFS...).

    :param value: The batch task's XCom ``return_value``.
    :raises ResultsPathError: When the object cannot be read, or is not the one the task wrote.
    """
    where = value.get(FULL_RESULT_KEY)
    if not where:
        if "message_ids" not in value:
            raise ValueError("not an ItnioBatchSendOperator's XCom: it has neither message_ids nor full_result")
        added = {FULL_RESULT_KEY, "first_errors", "unknown_delivery", "rows"}
        added |= {f"{name}_count" for name, entry in value.items() if _per_recipient(name, entry)}
        return {name: entry for name, entry in value.items() if name not in added}
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    path = ObjectStoragePath(where["path"], conn_id=where.get("conn_id"))
    try:
        data = path.read_bytes()
    except Exception as err:
        raise ResultsPathError(
            f"could not read the batch's full result {where['path']}: {type(err).__name__}: {err} (on distributed "
            "workers, results_path must be storage every worker reaches: S3, GCS, NFS...)"
        ) from err
    if hashlib.sha256(data).hexdigest() != where.get("sha256"):
        raise ResultsPathError(
            f"{where['path']} is not the full result this XCom points to (its digest differs: overwritten by a "
            "later run of the task?)"
        )
    loaded: dict[str, Any] = json.loads(gzip.decompress(data))
    return loaded
