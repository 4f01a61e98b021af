"""
Deprecated: the batch task's Airflow side moved to :mod:`airflow_provider_itnio.batch.task`.

Importing from here keeps working (the same objects) and warns. :func:`~airflow_provider_itnio.batch.task.run_batch`
now takes one :class:`~airflow_provider_itnio.batch.task.BatchSettings` instead of the operator's arguments one by
one; the ``run_batch`` of this module still takes them one by one and builds the settings. The other names this
module held (the engine's and the results') resolve to the objects in their new modules.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from airflow_provider_itnio.batch import task as _task
from airflow_provider_itnio.batch.task import (
    BatchSettings,
    VariableBackend,
    sweep_completed_ledgers,
)

__all__ = ["BatchSettings", "VariableBackend", "run_batch", "sweep_completed_ledgers"]

_SETTINGS = frozenset(field.name for field in dataclasses.fields(BatchSettings))


def run_batch(settings: BatchSettings | None = None, /, **kwargs: Any) -> dict[str, Any]:
    """
    Run the batch task as :func:`airflow_provider_itnio.batch.task.run_batch` does, called either way.

    :param settings: The settings (the new call), or None: the settings are the keyword arguments (the old call:
        ``rows=..., message=..., ..., context=..., log=...``).
    :param kwargs: ``context``, ``log`` and ``on_start``, and (old call) the settings one by one.
    """
    if settings is None:
        settings = BatchSettings(**{name: kwargs.pop(name) for name in list(kwargs) if name in _SETTINGS})
    return _task.run_batch(settings, **kwargs)


def __getattr__(name: str) -> Any:
    """Return a name this module held before the split, from its new module."""
    import airflow_provider_itnio.batch as batch
    import airflow_provider_itnio.batch.results as results

    for module in (_task, results):
        if not name.startswith("__") and name in vars(module):
            return vars(module)[name]
    return getattr(batch, name)


warnings.warn(
    "airflow_provider_itnio.operators._batch_task is deprecated: import from airflow_provider_itnio.batch.task",
    DeprecationWarning,
    stacklevel=2,
)
