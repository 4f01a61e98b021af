"""
1. DAG-parse cost: the import time a DAG file pays for the operators module, after ``airflow.sdk``.

Each module is imported in 7 fresh processes under ``python -X importtime``; the cost is the sum of the
*self* times of every module imported after ``airflow.sdk`` (so shared dependencies that ``airflow.sdk``
already loaded are free for everyone). Median of the 7, the contenders alternating run by run.

Primary numbers use compiled bytecode, as a deployed scheduler has: ``PYTHONPYCACHEPREFIX`` points at a
private cache (the venv is not touched) that a warm-up import fills. This environment also sets
``PYTHONDONTWRITEBYTECODE=1``, so without that every import compiles from source: reported as "no bytecode"
(one run each, indicative only), for every contender alike.

Target: ours the lowest, under 30 ms, and at most a quarter of the Telegram provider's. Phone numbers are parsed
by libphonenumber (``phonenumbers``), imported on the first number parsed, not with the operators: the
``itnio+phones`` row (report only) is what a DAG file pays that also builds an operator with a static phone number
(checked when the file is parsed: the library and the metadata of that number's country).

    .venv/bin/python -m bench.bench_import
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

from bench.common import emit

MODULES = {
    "itnio": "airflow_provider_itnio.operators",
    "http": "airflow.providers.http.operators.http",
    "slack": "airflow.providers.slack.operators.slack_webhook",
    "telegram": "airflow.providers.telegram.operators.telegram",
    # not a contender: what a DAG file pays once it builds an operator from static values (validation loads
    # the message models)
    "itnio+models": "airflow_provider_itnio.operators, airflow_provider_itnio.messages",
    # not a contender: the same, then one static phone number checked (libphonenumber and one country's metadata)
    "itnio+phones": "airflow_provider_itnio.operators, airflow_provider_itnio.messages",
}
#: What runs after the imports, where a row measures more than them (its imports are counted the same way).
THEN = {"itnio+phones": "airflow_provider_itnio.messages.normalize_phone('+44 20 7946 0958', 'recipient')"}
RUNS = 7
MARK = "--bench-mark--"


def import_ms(module: str, env: dict[str, str], then: str = "") -> float:
    """
    Return the milliseconds spent importing ``module`` (and what it pulls in) after ``airflow.sdk``, in a fresh process.

    :param module: The dotted module name.
    :param env: The process environment.
    :param then: A statement run after the import, whose imports count too (e.g. parsing a phone number).
    """
    code = f"import airflow.sdk, sys; sys.stderr.write({MARK!r} + '\\n'); sys.stderr.flush(); import {module}"
    if then:
        code += f"; {then}"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, env=env
    )
    after = proc.stderr.split(MARK, 1)[1]
    total_us = 0
    for line in after.splitlines():
        if line.startswith("import time:") and "|" in line:
            self_us = line.split(":", 1)[1].split("|")[0].strip()
            if self_us.isdigit():
                total_us += int(self_us)
    return total_us / 1000


def main() -> None:
    """Measure every module, alternating them run by run, and print the medians."""
    cold_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    warm_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    warm_env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="itnio-bench-pycache-")
    for name, module in MODULES.items():  # fill the private bytecode cache
        import_ms(module, warm_env, THEN.get(name, ""))
    results = {}
    for label, env, runs in (("bytecode", warm_env, RUNS), ("no_bytecode", cold_env, 1)):
        samples: dict[str, list[float]] = {name: [] for name in MODULES}
        for _ in range(runs):
            for name, module in MODULES.items():
                samples[name].append(import_ms(module, env, THEN.get(name, "")))
        medians = {name: round(statistics.median(values), 1) for name, values in samples.items()}
        print(f"-- {label}: median of {runs} fresh processes")
        for name, module in MODULES.items():
            runs_ms = ", ".join(f"{v:.1f}" for v in sorted(samples[name]))
            print(f"{name:13s} {module:66s} {medians[name]:8.1f} ms   ({runs_ms})")
        results[label] = medians
    ours = results["bytecode"]["itnio"]
    peers = {k: v for k, v in results["bytecode"].items() if not k.startswith("itnio")}
    print(f"itnio / telegram = {ours / peers['telegram']:.2f} (target <= 0.25)")
    emit(
        {
            "bench": "import",
            "median_ms": results,
            "itnio_vs_telegram": round(ours / peers["telegram"], 3),
            "target_met": ours < 30 and ours <= peers["telegram"] / 4 and all(ours <= v for v in peers.values()),
        }
    )


if __name__ == "__main__":
    main()
