"""
Ledger size: the largest Airflow Variable a 100,000-row campaign with 50% invalid rows writes.

The engine (:class:`~airflow_provider_itnio.batch.BatchSender`) and the real
:class:`~airflow_provider_itnio.batch.ProgressStore` (with a lease, as in a task) run in-process over a
:class:`~airflow_provider_itnio.batch.MemoryBackend` that records the size of every value written; the send
is a stub answering at once with a fresh 32-hex ``messageId`` (the ledger's size does not depend on HTTP).
Every other row has an invalid number, so the result holds 50,000 errors. The batch is completed
(``fail_on_errors=False``), then replayed by a second try, whose result must equal the first's.

A MySQL ``MEDIUMTEXT`` column holds 16 MiB (less once Fernet-encrypted): the largest Variable must stay far
below that whatever the number of rows. ``--batch-file`` measures another version of ``batch.py`` (e.g. the
one before the errors got parts of their own: ``git show <rev>:airflow_provider_itnio/batch.py > /tmp/b.py``).

    .venv/bin/python -m bench.bench_ledger_size [--rows 100000] [--batch-file PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import threading
import time
import uuid
from types import ModuleType
from typing import Any

from bench.common import emit, recipients

ROWS = 100_000
#: A bound well under MySQL's 16 MiB column, with room for Fernet's ~4/3 growth.
TARGET_BYTES = 1024 * 1024


def load_batch(path: str | None) -> ModuleType:
    """
    Return the batch module: the installed one, or the one in the file ``path``.

    :param path: A ``batch.py`` to load instead (None = ``airflow_provider_itnio.batch``).
    """
    if path is None:
        from airflow_provider_itnio import batch

        return batch
    spec = importlib.util.spec_from_file_location("batch_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def sizing_backend(batch: ModuleType) -> Any:
    """Return a MemoryBackend that keeps the largest size written per kind of key (head, part, errors part)."""

    class SizingBackend(batch.MemoryBackend):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.largest: dict[str, tuple[int, str]] = {}
            self.head_writes = 0
            self.bytes_written = 0
            self._sizes = threading.Lock()

        def set(self, key: str, value: str) -> None:
            size = len(value.encode("utf-8"))
            kind = "head" if key.endswith("__head") else "errors part" if "__err" in key else "progress part"
            with self._sizes:
                self.bytes_written += size
                self.head_writes += kind == "head"
                if size > self.largest.get(kind, (0, ""))[0]:
                    self.largest[kind] = (size, key)
            super().set(key, value)

    return SizingBackend()


def measure(batch: ModuleType, rows_count: int) -> dict[str, Any]:
    """
    Run, complete and replay one campaign; return the sizes.

    :param batch: The batch module to measure.
    :param rows_count: Number of rows (every other one invalid).
    """
    from airflow_provider_itnio.messages import Text

    rows: list[Any] = []
    for i, number in enumerate(recipients(rows_count // 2)):
        rows += [{"recipient": number, "name": f"Customer {i}"}, {"recipient": "123", "name": f"Invalid {i}"}]
    plan = batch.MessagePlan(Text(body="Hi {{ row.name }}, your order has shipped").to_payload())
    backend = sizing_backend(batch)

    def send(recipient: str, message: Any) -> str:
        return uuid.uuid4().hex

    store = batch.ProgressStore(backend, "itnio_batch_progress__bench__run__send__-1", owner=batch.lease_owner(1))
    start = time.perf_counter()
    outcome = batch.BatchSender(send, plan, concurrency=8, progress=store).run(rows)
    result = outcome.result()
    error: str | None = None
    try:
        store.complete(result, rows_digest=outcome.rows_digest)
    except Exception as err:  # e.g. a store refusing a value; MemoryBackend never does
        error = f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - start
    replayed = None
    if error is None:
        again = batch.ProgressStore(backend, store.key, owner=batch.lease_owner(2))
        replayed = batch.BatchSender(send, plan, progress=again).run(rows).result() == result
    largest = max(size for size, _ in backend.largest.values())
    return {
        "rows": rows_count,
        "failed": result["failed"],
        "largest_variable_bytes": largest,
        "largest_by_kind": {kind: size for kind, (size, _) in sorted(backend.largest.items())},
        "head_writes": backend.head_writes,
        "bytes_written": backend.bytes_written,
        "complete_error": error,
        "replay_equal": replayed,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    """Measure and print the sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--batch-file", default=None, help="a batch.py to measure instead of the installed one")
    args = parser.parse_args()
    sizes = measure(load_batch(args.batch_file), args.rows)
    print(f"{sizes['rows']:,} rows, {sizes['failed']:,} invalid: batch {sizes['seconds']} s")
    for kind, size in sizes["largest_by_kind"].items():
        print(f"  largest {kind:<13} {size:>12,} bytes")
    print(f"  largest Variable written: {sizes['largest_variable_bytes']:,} bytes (target < {TARGET_BYTES:,})")
    print(f"  head writes {sizes['head_writes']}, bytes written in all {sizes['bytes_written']:,}")
    print(f"  completion recorded: {sizes['complete_error'] or 'yes'}; replayed result equal: {sizes['replay_equal']}")
    emit(
        {
            "bench": "ledger_size",
            **sizes,
            "target_met": sizes["largest_variable_bytes"] < TARGET_BYTES and bool(sizes["replay_equal"]),
        }
    )


if __name__ == "__main__":
    main()
