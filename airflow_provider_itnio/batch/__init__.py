"""
The batch-send engine behind :class:`~airflow_provider_itnio.operators.batch.ItnioBatchSendOperator`.

One module per job, each usable (and tested) on its own, in the order a row meets them:

* :mod:`~airflow_provider_itnio.batch.plan` - :class:`MessagePlan`: the message in the API's dict form, its
  ``{{ row.<field> }}`` templates compiled once in Jinja's *immutable sandboxed* environment, rendered and
  validated per row.
* :mod:`~airflow_provider_itnio.batch.rate` - :class:`RateLimiter`: never more than ``max_per_second`` send
  starts in any one-second window.
* :mod:`~airflow_provider_itnio.batch.ledger` - :class:`ProgressStore`: ``{recipient: messageId}`` of a task's
  tries, kept outside XCom (which Airflow clears at the start of every try) in a key-value store, with a lease
  (one try sends at a time), write retries, a bound on sends without a durable record and a completion marker.
* :mod:`~airflow_provider_itnio.batch.sender` - :class:`BatchSender`: reads rows lazily, hands them to
  ``concurrency`` worker threads through a bounded queue, stops at the first account-level error and flushes
  progress at least every ``flush_interval``; with a fallback template, it sends the template to the rows whose
  24-hour window is closed.
* :mod:`~airflow_provider_itnio.batch.outcome` - :class:`BatchOutcome`: what a batch did, its XCom result.
* :mod:`~airflow_provider_itnio.batch.results` - where a large batch's full result is kept, and
  :func:`~airflow_provider_itnio.batch.results.load_batch_results` to read it downstream.
* :mod:`~airflow_provider_itnio.batch.task` - the Airflow side: the ledger in Airflow Variables, one task's run
  from the operator's :class:`~airflow_provider_itnio.batch.task.BatchSettings`, the clean-up of old ledgers.

Only :mod:`~airflow_provider_itnio.batch.task` and :mod:`~airflow_provider_itnio.batch.results` touch Airflow (the
latter when a result is written or read). The engine's names are importable from this package too (as they were
when it was one module); each is imported on first use, so that the operators module, which a DAG file imports,
does not load the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time, __getattr__ imports them on first use
    from airflow_provider_itnio.batch.ledger import (
        LEASE_SAFETY,
        LEASE_SETTLE,
        LEASE_TTL,
        MAX_KEY_LENGTH,
        MAX_PART_BYTES,
        MAX_UNFLUSHED,
        PROGRESS_PREFIX,
        SHARD_SIZE,
        STARTED,
        WRITE_RETRY_SECONDS,
        KeyValueBackend,
        LeaseHeldError,
        LeaseLostError,
        LedgerError,
        LedgerValue,
        LedgerWriteError,
        MemoryBackend,
        ProgressStore,
        is_resent,
        is_started,
        lease_owner,
        progress_key,
        sent_message_id,
    )
    from airflow_provider_itnio.batch.outcome import (
        COUNTERS,
        BatchOutcome,
    )
    from airflow_provider_itnio.batch.plan import (
        MessagePlan,
        RowTemplateError,
    )
    from airflow_provider_itnio.batch.rate import (
        RateLimiter,
    )
    from airflow_provider_itnio.batch.sender import (
        MAX_ERROR_TEXT,
        WRITE_AHEAD_BLOCK,
        BatchKilledError,
        BatchSender,
        SendFunction,
    )

__all__ = [
    "COUNTERS",
    "LEASE_SAFETY",
    "LEASE_SETTLE",
    "LEASE_TTL",
    "MAX_ERROR_TEXT",
    "MAX_KEY_LENGTH",
    "MAX_PART_BYTES",
    "MAX_UNFLUSHED",
    "PROGRESS_PREFIX",
    "SHARD_SIZE",
    "STARTED",
    "WRITE_AHEAD_BLOCK",
    "WRITE_RETRY_SECONDS",
    "BatchKilledError",
    "BatchOutcome",
    "BatchSender",
    "KeyValueBackend",
    "LeaseHeldError",
    "LeaseLostError",
    "LedgerError",
    "LedgerValue",
    "LedgerWriteError",
    "MemoryBackend",
    "MessagePlan",
    "ProgressStore",
    "RateLimiter",
    "RowTemplateError",
    "SendFunction",
    "is_resent",
    "is_started",
    "lease_owner",
    "progress_key",
    "sent_message_id",
]

#: The engine's modules, searched in this order for a name of ``__all__``.
_ENGINE = ("plan", "rate", "ledger", "outcome", "sender")


def __getattr__(name: str) -> Any:
    """
    Return one of the engine's names, importing the engine's modules on first use.

    Every name the single ``batch`` module had before the split (its ``__all__`` here, and the other names it
    held, found in the engine module that holds them now) keeps resolving. Patching a name here does not change the
    engine module that uses it: patch it there (e.g. ``airflow_provider_itnio.batch.ledger.LEASE_TTL``).

    :param name: The attribute asked for.
    :raises AttributeError: When the package has no such name.
    """
    if not name.startswith("__"):
        for home in _ENGINE:
            module = importlib.import_module(f"{__name__}.{home}")
            if name in vars(module):
                value = vars(module)[name]
                if name in __all__:
                    globals()[name] = value  # found directly from now on
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """Return the package's names, the engine's included."""
    return sorted({*globals(), *__all__})
