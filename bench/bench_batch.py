"""
3. Batch throughput and memory.

Throughput: 5,000 rows through :class:`~airflow_provider_itnio.batch.BatchSender` (the operator's engine, with
the real ``ItnioHook`` and the real ``ProgressStore`` over an in-memory backend instead of Airflow Variables),
``concurrency=16``, sandbox latency 20 ms in its own process: the ceiling is 16 / 0.02 = 800 msg/s. Compared
with a bare loop: 16 threads posting precomputed requests through one ``requests.Session`` (pool of 16).

Memory: 100,000 rows in a fresh process; peak RSS growth (``ru_maxrss``) measured from after the rows are
built to the end of the batch, next to the size of the result it keeps (``message_ids``: 100,000 entries).
The engine, the real ``ProgressStore`` (its in-memory backend keeps every flushed part, ~5 MB, counted in
the growth) and the rendering/validation of every row are real; the send is a stub that answers at once
with a fresh 32-hex ``messageId``: 100,000 real sends take minutes on a 2-core machine (the throughput part
above covers the HTTP path), and the HTTP client's memory does not depend on the number of rows.

    .venv/bin/python -m bench.bench_batch
"""

from __future__ import annotations

import os
import queue
import resource
import subprocess
import sys
import threading
import time
from typing import Any

from bench.bench_send import PATH, body_bytes, signed_headers
from bench.common import RESULT_PREFIX, SandboxProcess, emit, recipients

ROWS = 5000
CONCURRENCY = 16
LATENCY = 0.02
MEMORY_ROWS = 100_000


def run_engine(rows: list[Any], concurrency: int, *, stub: bool = False) -> tuple[float, Any]:
    """
    Send ``rows`` with the batch engine and return (seconds, outcome).

    :param rows: The rows.
    :param concurrency: Worker threads.
    :param stub: Answer every send at once with a fresh id instead of calling the sandbox (through
        ``itnio_default``).
    """
    import uuid

    from airflow_provider_itnio import batch
    from airflow_provider_itnio.hooks.itnio import ItnioHook
    from airflow_provider_itnio.messages import Text

    hook = ItnioHook()
    plan = batch.MessagePlan(Text(body="Hi {{ row.name }}, your order has shipped").to_payload())
    store = batch.ProgressStore(batch.MemoryBackend(), "bench")

    def send(recipient: str, message: Any) -> str:
        if stub:
            return uuid.uuid4().hex
        return hook.send(recipient, message).message_id

    engine = batch.BatchSender(send, plan, concurrency=concurrency, progress=store)
    start = time.perf_counter()
    outcome = engine.run(rows)
    elapsed = time.perf_counter() - start
    hook.close()
    return elapsed, outcome


def run_bare(sandbox: SandboxProcess, n: int, concurrency: int) -> float:
    """Return the seconds that ``concurrency`` threads over one session take for ``n`` precomputed posts."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=concurrency))
    url, data, headers = sandbox.base_url + PATH, body_bytes(), signed_headers()
    work: queue.Queue[int | None] = queue.Queue()
    for i in range(n):
        work.put(i)
    for _ in range(concurrency):
        work.put(None)

    def worker() -> None:
        while work.get() is not None:
            assert session.post(url, data=data, headers=headers, timeout=30).json()["status"] == "0"

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def memory_child() -> None:
    """Print the peak RSS growth of a 100,000-row batch (run in a fresh process)."""
    import gc

    run_engine([{"recipient": r, "name": "A"} for r in recipients(100, start=9_000_000)], CONCURRENCY, stub=True)
    rows = [{"recipient": r, "name": f"Customer {i}"} for i, r in enumerate(recipients(MEMORY_ROWS))]
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    elapsed, outcome = run_engine(rows, CONCURRENCY, stub=True)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result_bytes = sys.getsizeof(outcome.message_ids) + sum(
        sys.getsizeof(k) + sys.getsizeof(v) for k, v in outcome.message_ids.items()
    )
    assert outcome.sent == MEMORY_ROWS, outcome.summary()
    print(
        RESULT_PREFIX
        + repr(
            {
                "rss_growth_mb": round((after - before) / 1024, 1),
                "result_mb": round(result_bytes / 2**20, 1),
                "seconds": round(elapsed, 1),
            }
        ).replace("'", '"'),
        flush=True,
    )


def main() -> None:
    """Measure throughput against the bare loop, then memory in a child process."""
    with SandboxProcess(latency=LATENCY) as sandbox:
        sandbox.use_as_default_connection()
        run_engine([{"recipient": r, "name": "A"} for r in recipients(200, start=9_000_000)], CONCURRENCY)  # warm
        run_bare(sandbox, 200, CONCURRENCY)
        sandbox.reset()
        ours: list[float] = []
        bare: list[float] = []
        for round_no in range(2):  # alternate: engine, bare, bare, engine
            order = ("engine", "bare") if round_no == 0 else ("bare", "engine")
            for name in order:
                if name == "engine":
                    rows = [{"recipient": r, "name": f"C{i}"} for i, r in enumerate(recipients(ROWS))]
                    elapsed, outcome = run_engine(rows, CONCURRENCY)
                    assert outcome.sent == ROWS, outcome.summary()
                    ours.append(ROWS / elapsed)
                else:
                    bare.append(ROWS / run_bare(sandbox, ROWS, CONCURRENCY))
                sandbox.reset()
    ceiling = CONCURRENCY / LATENCY
    best_ours, best_bare = max(ours), max(bare)
    reference = min(ceiling, best_bare)
    print(f"engine: {[round(r) for r in ours]} msg/s; bare 16-thread loop: {[round(r) for r in bare]} msg/s")
    print(f"ceiling {ceiling:.0f} msg/s; engine: {best_ours / ceiling:.0%} of it, {best_ours / best_bare:.0%} of bare")

    child = subprocess.run(
        [sys.executable, "-c", "from bench.bench_batch import memory_child; memory_child()"],
        env={**os.environ, "AIRFLOW_CONN_ITNIO_DEFAULT": SandboxProcess().conn_json()},
        capture_output=True,
        text=True,
        check=True,
    )
    import json

    line = next(x for x in child.stdout.splitlines() if x.startswith(RESULT_PREFIX))
    memory = json.loads(line[len(RESULT_PREFIX) :])
    print(
        f"100,000 rows: peak RSS growth {memory['rss_growth_mb']} MB (result message_ids alone "
        f"{memory['result_mb']} MB), {memory['seconds']} s"
    )
    emit(
        {
            "bench": "batch",
            "engine_msg_per_s": [round(r, 1) for r in ours],
            "bare_msg_per_s": [round(r, 1) for r in bare],
            "ceiling": ceiling,
            "fraction_of_reference": round(best_ours / reference, 3),
            "memory_100k": memory,
            "target_met": best_ours >= 0.8 * reference,
        }
    )


if __name__ == "__main__":
    main()
