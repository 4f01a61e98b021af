"""
4. Batch operator against dynamic task mapping, both run by real Airflow.

Both run through ``dag.test()`` (temporary ``AIRFLOW_HOME`` with SQLite, sandbox in its own process): 200 recipients as
``ItnioSendTextOperator.partial(...).expand(recipient=...)`` (200 task instances) against one
``ItnioBatchSendOperator``. Wall time of each ``dag.test()`` (DAG-run setup included), mapped run first.

    .venv/bin/python -m bench.bench_mapping
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import RESULT_PREFIX, SandboxProcess, emit

N = 200

DAG_FILE = f"""
from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_itnio.operators import ItnioBatchSendOperator, ItnioSendTextOperator

PHONES = [f"861380{{i:07d}}" for i in range({N})]
START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG("bench_mapped", schedule=None, start_date=START):
    ItnioSendTextOperator.partial(task_id="send", body="Your order has shipped").expand(recipient=PHONES)

with DAG("bench_batch", schedule=None, start_date=START):
    ItnioBatchSendOperator(task_id="send", rows=PHONES, message={{"type": "text", "text": {{"body": "Shipped"}}}})
"""

CHILD = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
assert not bag.import_errors, bag.import_errors
out = {}
for dag_id in ("bench_mapped", "bench_batch"):
    start = time.perf_counter()
    run = bag.get_dag(dag_id).test()
    out[dag_id] = {"seconds": time.perf_counter() - start, "state": str(run.state)}
print(sys.argv[2] + json.dumps(out))
"""


def main() -> None:
    """Set up a temporary Airflow home, run both DAGs in one process, report."""
    home = Path(tempfile.mkdtemp(prefix="itnio-bench-airflow-"))
    dags = home / "dags"
    dags.mkdir()
    (dags / "bench_dags.py").write_text(DAG_FILE)
    try:
        with SandboxProcess() as sandbox:
            env = {
                **os.environ,
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                "AIRFLOW_CONN_ITNIO_DEFAULT": sandbox.conn_json(),
            }
            subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, str(dags), RESULT_PREFIX],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            sent = len(sandbox.messages())
    finally:
        shutil.rmtree(home, ignore_errors=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX))
    runs = json.loads(line[len(RESULT_PREFIX) :])
    mapped, single = runs["bench_mapped"]["seconds"], runs["bench_batch"]["seconds"]
    print(f"dynamic task mapping, {N} task instances: {mapped:.1f} s ({runs['bench_mapped']['state']})")
    print(f"one ItnioBatchSendOperator:                {single:.1f} s ({runs['bench_batch']['state']})")
    print(f"ratio mapped / batch: {mapped / single:.1f}x; messages accepted by the sandbox: {sent} (expect {2 * N})")
    emit(
        {
            "bench": "mapping",
            "mapped_s": round(mapped, 2),
            "batch_s": round(single, 2),
            "ratio": round(mapped / single, 1),
            "messages": sent,
            "states": {k: v["state"] for k, v in runs.items()},
        }
    )


if __name__ == "__main__":
    main()
