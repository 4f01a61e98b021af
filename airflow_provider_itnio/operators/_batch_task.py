"""
Deprecated: the batch task's Airflow side moved to :mod:`airflow_provider_itnio.batch.task`.

Importing from here keeps working (the same objects) and warns. :func:`~airflow_provider_itnio.batch.task.run_batch`
now takes one :class:`~airflow_provider_itnio.batch.task.BatchSettings` instead of the operator's arguments one by
one.
"""

from __future__ import annotations

import warnings

from airflow_provider_itnio.batch.task import (
    BatchSettings,
    VariableBackend,
    run_batch,
    sweep_completed_ledgers,
)

__all__ = ["BatchSettings", "VariableBackend", "run_batch", "sweep_completed_ledgers"]

warnings.warn(
    "airflow_provider_itnio.operators._batch_task is deprecated: import from airflow_provider_itnio.batch.task",
    DeprecationWarning,
    stacklevel=2,
)
