"""
5. Rate limit: ``max_per_second=50`` over 1,000 rows.

Concurrency 8, sandbox without latency in its own process. The send start times are taken on the client
(``time.monotonic()`` as each send begins, after the limiter's grant); the largest count in any one-second
window must be at most 50, and the total time within 10% of the ideal 999 / 50 = 19.98 s.

    .venv/bin/python -m bench.bench_rate
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.common import SandboxProcess, emit, recipients

ROWS = 1000
RATE = 50


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """
    Return the largest number of ``times`` in any half-open window ``[t, t + width)``.

    :param times: Sorted times, seconds.
    :param width: The window, seconds.
    """
    best, left = 0, 0
    for right, t in enumerate(times):
        while t - times[left] >= width:
            left += 1
        best = max(best, right - left + 1)
    return best


def main() -> None:
    """Run the batch and check the windows."""
    from airflow_provider_itnio import batch
    from airflow_provider_itnio.hooks.itnio import ItnioHook
    from airflow_provider_itnio.messages import Text

    with SandboxProcess() as sandbox:
        sandbox.use_as_default_connection()
        hook = ItnioHook()
        starts: list[float] = []
        lock = threading.Lock()

        def send(recipient: str, message: Any) -> str:
            with lock:
                starts.append(time.monotonic())
            return hook.send(recipient, message).message_id

        plan = batch.MessagePlan(Text(body="Flash sale").to_payload())
        engine = batch.BatchSender(send, plan, concurrency=8, max_per_second=RATE)
        began = time.monotonic()
        outcome = engine.run(recipients(ROWS))
        total = time.monotonic() - began
        assert outcome.sent == ROWS, outcome.summary()
        hook.close()
    starts.sort()
    peak = max_in_window(starts)
    span = starts[-1] - starts[0]
    ideal = (ROWS - 1) / RATE
    print(f"largest count in any 1 s window: {peak} (limit {RATE})")
    print(f"first to last send: {span:.2f} s, whole batch {total:.2f} s; ideal {ideal:.2f} s ({span / ideal - 1:+.1%})")
    emit(
        {
            "bench": "rate",
            "max_in_any_window": peak,
            "span_s": round(span, 2),
            "total_s": round(total, 2),
            "ideal_s": ideal,
            "target_met": peak <= RATE and abs(total / ideal - 1) <= 0.10,
        }
    )


if __name__ == "__main__":
    main()
