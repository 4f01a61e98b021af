"""
Run every benchmark, one after the other, and rewrite ``bench/RESULTS.md`` (``make bench``).

    .venv/bin/python -m bench.run_all
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULT_PREFIX, ROOT

BENCHES = [
    ("bench_import", "1. DAG-parse cost (import time after airflow.sdk)", "ours lowest, < 30 ms, <= 1/4 of telegram"),
    (
        "bench_send",
        "2. Per-send overhead (2,000 sequential sends each)",
        ">= 0.9x bare requests loop, >= 2x HttpHook.run",
    ),
    (
        "bench_batch",
        "3. Batch throughput (5,000 rows, latency 20 ms, concurrency 16) and memory",
        ">= 80% of min(800 msg/s, bare 16-thread loop)",
    ),
    (
        "bench_mapping",
        "4. Batch operator vs dynamic task mapping (200 recipients, dag.test)",
        "report wall time and ratio",
    ),
    (
        "bench_rate",
        "5. Rate limit (max_per_second=50, 1,000 rows)",
        "<= 50 in any 1 s window, total within 10% of 19.98 s",
    ),
    (
        "bench_ledger_size",
        "6. Batch ledger size (100,000 rows, 50% invalid)",
        "largest Variable written < 1 MiB, replayed result equal",
    ),
]


def machine() -> list[str]:
    """Return lines describing the machine and the software."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib import metadata

    import airflow

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    prefix = "apache-airflow-providers-"
    providers = sorted(
        f"{d.metadata['Name'][len(prefix) :]} {d.version}"
        for d in metadata.distributions()
        if d.metadata["Name"].startswith(prefix)
    )
    return [
        f"- Machine: {platform.node()}, {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, Apache Airflow {airflow.__version__}",
        f"- Airflow providers installed (`make bench` adds the peers): {', '.join(providers)}",
        f"- Load average when the run started: {load} (other work was running on the machine: see the spread)",
        f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def kept_sections(old: str, ours: set[str]) -> str:
    """
    Return the ``## `` sections of ``old`` that another command wrote (e.g. ``make test-stack``), to keep them.

    :param old: The results file as it was.
    :param ours: The titles of the sections this run writes (and so replaces).
    """
    chunks = old.split("\n## ")[1:]
    keep = [chunk for chunk in chunks if chunk.splitlines()[0].strip() not in ours]
    return "".join(f"## {chunk.rstrip()}\n\n" for chunk in keep)


def main() -> int:
    """Run all benchmarks and write the results file."""
    header = machine()
    sections: list[str] = []
    summary: list[str] = []
    ok = True
    for module, title, target in BENCHES:
        command = f".venv/bin/python -m bench.{module}"
        print(f"== {title}\n$ {command}", flush=True)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", f"bench.{module}"], cwd=ROOT, capture_output=True, text=True)
        seconds = time.monotonic() - start
        lines = [x for x in proc.stdout.splitlines() if not x.startswith(RESULT_PREFIX)]
        result: dict[str, Any] = {}
        for line in proc.stdout.splitlines():
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX) :])
        if proc.returncode != 0:
            ok = False
            lines += ["FAILED:", *proc.stderr.splitlines()[-20:]]
        print("\n".join(lines), flush=True)
        met = result.get("target_met")
        verdict = "n/a (report only)" if met is None else ("met" if met else "NOT met")
        summary.append(f"| {title} | {target} | {verdict} |")
        sections += [
            f"## {title}",
            "",
            f"Target: {target}. **{verdict}**. ({seconds:.0f} s)",
            "",
            "```",
            f"$ {command}",
            *lines,
            "```",
            "",
            f"Raw: `{json.dumps(result)}`",
            "",
        ]
    text = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`.venv/bin/python -m bench.run_all`); every script can also be run alone.",
        "Each peer was measured in the same run, on the same machine.",
        "",
        *header,
        "",
        "| benchmark | target | result |",
        "|---|---|---|",
        *summary,
        "",
        *sections,
    ]
    results = ROOT / "bench" / "RESULTS.md"
    ours = {title for _, title, _ in BENCHES}
    kept = kept_sections(results.read_text() if results.exists() else "", ours)
    results.write_text("\n".join(text) + ("\n" + kept if kept else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
