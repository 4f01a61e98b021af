"""
Deprecated: the batch's results moved to :mod:`airflow_provider_itnio.batch.results`.

Importing from here keeps working (the same objects) and warns; import
:func:`~airflow_provider_itnio.batch.results.load_batch_results` from :mod:`airflow_provider_itnio.batch.results`.
"""

from __future__ import annotations

import warnings

from airflow_provider_itnio.batch.results import (
    CONFIG_OPTION,
    CONFIG_SECTION,
    DEFAULT_INLINE_MAX_ROWS,
    FULL_RESULT_KEY,
    OBJECT_NAME,
    QUOTED_ERRORS,
    ResultsPathError,
    default_results_path,
    encode,
    load_batch_results,
    results_object,
    summarize,
    write_batch_results,
)

__all__ = [
    "CONFIG_OPTION",
    "CONFIG_SECTION",
    "DEFAULT_INLINE_MAX_ROWS",
    "FULL_RESULT_KEY",
    "OBJECT_NAME",
    "QUOTED_ERRORS",
    "ResultsPathError",
    "default_results_path",
    "encode",
    "load_batch_results",
    "results_object",
    "summarize",
    "write_batch_results",
]

warnings.warn(
    "airflow_provider_itnio.results is deprecated: import from airflow_provider_itnio.batch.results",
    DeprecationWarning,
    stacklevel=2,
)
