"""
2. Per-send overhead: sequential text sends to the sandbox (no latency, its own process).

Contenders, each sending the same signed text message:

* ``bare``: ``requests.Session.post`` in a loop, body and headers precomputed
  (the issue's reference: a hand-written requests client);
* ``itnio``: ``ItnioHook.send(recipient, Text(...))`` (validation, body, signing, error mapping included);
* ``http``: ``HttpHook(method="POST").run(endpoint, data=body, headers=signed headers)`` (http provider),
  signing each call like a user would.

10 rounds of 200 sends per contender (2,000 each), the order rotating every round so that noise hits all of
them alike; throughput per round, median reported.

    .venv/bin/python -m bench.bench_send
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable

from airflow_provider_itnio.sandbox.server import DEFAULT_API_KEY, DEFAULT_API_SECRET, DEFAULT_APP_ID
from bench.common import SandboxProcess, emit

ROUNDS = 10
PER_ROUND = 200
RECIPIENT = "8613800138000"
SENDER = "15550001111"
PATH = "/wa/custom/sendMsg"


def signed_headers() -> dict[str, str]:
    """Return fresh ``Api-Key``/``Timestamp``/``Sign`` headers."""
    ts = str(int(time.time()))
    sign = hashlib.md5((DEFAULT_API_KEY + DEFAULT_API_SECRET + ts).encode(), usedforsecurity=False).hexdigest()
    return {"Content-Type": "application/json;charset=UTF-8", "Api-Key": DEFAULT_API_KEY, "Timestamp": ts, "Sign": sign}


def body_bytes() -> bytes:
    """Return the request body of the benchmark's text message."""
    body = {
        "appId": DEFAULT_APP_ID,
        "businessPhone": SENDER,
        "recipient": RECIPIENT,
        "channelType": 0,
        "type": "text",
        "text": {"body": "Your order has shipped"},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def main() -> None:
    """Run the rounds and print medians."""
    import requests
    from airflow.providers.http.hooks.http import HttpHook

    from airflow_provider_itnio.hooks.itnio import ItnioHook
    from airflow_provider_itnio.messages import Text

    with SandboxProcess() as sandbox:
        sandbox.use_as_default_connection()
        os.environ["AIRFLOW_CONN_BENCH_HTTP"] = json.dumps({"conn_type": "http", "host": sandbox.base_url})
        url = sandbox.base_url + PATH

        session = requests.Session()
        bare_headers = signed_headers()
        data = body_bytes()

        def bare() -> None:
            response = session.post(url, data=data, headers=bare_headers, timeout=30)
            assert response.json()["status"] == "0"

        hook = ItnioHook()
        message = Text(body="Your order has shipped")

        def itnio() -> None:
            hook.send(RECIPIENT, message)

        http_hook = HttpHook(method="POST", http_conn_id="bench_http")
        body_text = data.decode()

        def http() -> None:
            response = http_hook.run(PATH, data=body_text, headers=signed_headers())
            assert response.json()["status"] == "0"

        contenders: dict[str, Callable[[], None]] = {"bare": bare, "itnio": itnio, "http": http}
        for send in contenders.values():  # warm up: connections, lazy imports, connection lookups
            for _ in range(20):
                send()
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for round_no in range(ROUNDS):
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            for name in order:
                send = contenders[name]
                start = time.perf_counter()
                for _ in range(PER_ROUND):
                    send()
                rates[name].append(PER_ROUND / (time.perf_counter() - start))
            sandbox.reset()
    medians = {name: round(statistics.median(values), 1) for name, values in rates.items()}
    for name, values in rates.items():
        print(f"{name:6s} median {medians[name]:8.1f} sends/s  rounds {[round(v) for v in values]}")
    vs_bare = medians["itnio"] / medians["bare"]
    vs_http = medians["itnio"] / medians["http"]
    print(f"itnio / bare = {vs_bare:.2f} (target >= 0.9); itnio / HttpHook.run = {vs_http:.2f} (target >= 2)")
    emit(
        {
            "bench": "send",
            "sends_per_second": medians,
            "itnio_vs_bare": round(vs_bare, 3),
            "itnio_vs_http": round(vs_http, 2),
            "target_met": vs_bare >= 0.9 and vs_http >= 2,
        }
    )


if __name__ == "__main__":
    main()
