"""
Receiver throughput and latency on a real Airflow 3 API server, next to its peers in the same run.

One Airflow (tests/support/airflow_stack.py: SQLite, LocalExecutor) with the itnio plugin and the peer plugin
``airflow-provider-inbound-webhooks`` (installed by ``make bench-two-way``). A DAG file schedules on the three
targets' assets, so each of them writes asset events; once it is parsed, the scheduler, dag-processor and triggerer
are stopped, so only the API server (``--workers`` worker processes, 1 by default; 2 is what a production
deployment runs) runs while the clients push. The same pushes go,
one target after the other, to:

- ours: ``POST /itnio/webhook/itnio_default/<token>`` (status pushes in the vendor's shape);
- Airflow's REST ``POST /api/v2/assets/events`` (JWT from ``/auth/token``), the push as the event's ``extra``;
- the peer: ``POST /webhooks/itnio``, a ``token_header`` source (secret in ``X-Itnio-Secret``, event name from
  ``eventType``, delivery id ``<messageId>:<status>`` in ``X-Delivery-Id`` so that re-pushes are recognised).

The pushes: ``--pushes`` in all, 5% re-pushes of earlier ones, 5% arriving after a later status of the same message
(``read`` before ``delivered`` before ``sent``), from ``--clients`` threads each with its own keep-alive session and
one request in flight (loopback). Afterwards the rows are counted in each target's tables: lost and recorded-twice.
The CPU time the API server's processes spent during each target's turn, per push, is recorded next to its latency:
unlike wall-clock figures it hardly depends on what else the machine runs.

    .venv/bin/python -m bench.bench_receiver [--pushes 20000] [--clients 16] [--workers 2] [--targets ours]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bench.record import add_output_arguments, finish
from tests.support.airflow_stack import AirflowStack
from tests.support.servers import stop as _stop

APP_ID = "BenchApp1"
BUSINESS = "15550100000"
CONN_ID = "itnio_default"
PEER_NAME = "itnio"
PEER_ASSET = f"{PEER_NAME}/message-status-event"
REST_ASSET = "bench_rest_status_events"
ORDER = ("sent", "delivered", "read")
WARMUP = 30
HEADING = "## 7. Receiver throughput and latency (pushes from 16 clients to a real API server, peers in the same run)"
TARGET = "throughput >= each peer's, p99 < 50 ms, 0 lost, 0 recorded twice"

DAG_FILE = textwrap.dedent(
    f'''
    """Schedules on the three targets' assets, so that each of them records asset events."""
    import pendulum
    from airflow.sdk import DAG, Asset
    from airflow_provider_itnio.assets import message_status

    with DAG(
        "bench_receiver_assets",
        schedule=(
            message_status("{CONN_ID}", "sent")
            | message_status("{CONN_ID}", "delivered")
            | message_status("{CONN_ID}", "read")
            | Asset("{PEER_ASSET}")
            | Asset("{REST_ASSET}")
        ),
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
    ):
        pass
    '''
)


def build_pushes(total: int, seed: int = 8) -> tuple[list[dict[str, Any]], dict[str, str], int, int]:
    """
    Return (the pushes in sending order, each message's furthest status, distinct pushes, out-of-order pushes).

    :param total: Pushes in all (5% of them re-pushes).
    :param seed: The random seed.
    """
    rng = random.Random(seed)
    duplicates = total // 20
    distinct = total - duplicates
    pushes: list[dict[str, Any]] = []
    furthest: dict[str, str] = {}
    out_of_order = 0
    now = int(time.time())
    while len(pushes) < distinct:
        message_id = uuid.uuid4().hex
        statuses = list(ORDER[: min(3, distinct - len(pushes))])
        furthest[message_id] = statuses[-1]
        if len(statuses) == 3 and rng.random() < 0.075:  # 2 of 3 behind a later status: 5% of the pushes
            statuses.reverse()
            out_of_order += 2
        for status in statuses:
            pushes.append(
                {
                    "appId": APP_ID,
                    "channelType": 0,
                    "messageId": message_id,
                    "eventType": "message-status-event",
                    "billable": "true",
                    "form": BUSINESS,
                    "recipient": f"1555{rng.randrange(10**7):07d}",
                    "status": status,
                    "failure": "",
                    "conversationType": "service",
                    "timestamp": now + ORDER.index(status),
                }
            )
    for _ in range(duplicates):  # a re-push comes after its original
        index = rng.randrange(len(pushes))
        pushes.insert(rng.randrange(index + 1, len(pushes) + 1), pushes[index])
    return pushes, furthest, distinct, out_of_order


def push_all(
    send: Callable[[requests.Session, dict[str, Any]], requests.Response],
    pushes: list[dict[str, Any]],
    clients: int,
    budget: float = float("inf"),
) -> dict[str, Any]:
    """
    Send ``pushes`` from ``clients`` threads (one keep-alive session each, one request in flight each).

    :param send: Sends one push with a session and returns the answer.
    :param pushes: The pushes, taken in order from a shared queue.
    :param clients: The number of threads.
    :param budget: Seconds after which the clients take no new push (the rest is reported as not sent).
    """
    deadline = time.perf_counter() + budget
    work: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    for push in pushes:
        work.put(push)
    for _ in range(clients):
        work.put(None)
    latencies: list[float] = []
    codes: dict[int, int] = {}
    lock = threading.Lock()
    first_answers: dict[str, int] = {}

    def client() -> None:
        mine: list[float] = []
        statuses: dict[int, int] = {}
        with requests.Session() as session:
            while (push := work.get()) is not None and time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    answer = send(session, push)
                except requests.RequestException:
                    statuses[0] = statuses.get(0, 0) + 1  # no answer (timed out): code 0
                    mine.append(time.perf_counter() - started)
                    continue
                mine.append(time.perf_counter() - started)
                if answer.status_code < 300:
                    with lock:
                        key = f"{push['messageId']}:{push['status']}"
                        first_answers[key] = first_answers.get(key, 0) + 1
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        with lock:
            latencies.extend(mine)
            for code, count in statuses.items():
                codes[code] = codes.get(code, 0) + count

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "not_sent": len(pushes) - len(latencies),
        "distinct_answered_2xx": len(first_answers),
        "wall_s": round(wall, 2),
        "per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
        "max_ms": round(1000 * latencies[-1], 1),
        "codes": {str(code): count for code, count in sorted(codes.items())},
    }


def ok(measured: dict[str, Any]) -> int:
    """Return how many requests of a measurement were answered 2xx."""
    return sum(n for code, n in measured["codes"].items() if code.startswith("2"))


def count(stack: AirflowStack, sql: str, **params: Any) -> int:
    """Return the single number ``sql`` selects from the metadata database."""
    return int(next(iter(stack.rows(sql, **params)[0].values())))


def asset_events(stack: AirflowStack, names: list[str]) -> int:
    """Return the number of asset events recorded on the assets named ``names``."""
    marks = ", ".join(f":n{i}" for i in range(len(names)))
    params = {f"n{i}": name for i, name in enumerate(names)}
    return count(
        stack,
        f"SELECT COUNT(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name IN ({marks})",
        **params,
    )


def target_rows(stack: AirflowStack, target: str, ours_assets: list[str]) -> dict[str, int]:
    """
    Return the row counts of ``target``'s tables now (subtracted before and after its turn).

    :param stack: The running Airflow.
    :param target: A key of the targets (``ours``, ``airflow_rest``, ``airflow_rest_1_client``, ``inbound_webhooks``).
    :param ours_assets: The receiver's asset names.
    """
    if target == "ours":
        return {
            "status_history": count(stack, "SELECT COUNT(*) FROM itnio_status_history"),
            "message_status": count(stack, "SELECT COUNT(*) FROM itnio_message_status"),
            "asset_events": asset_events(stack, ours_assets),
        }
    if target == "inbound_webhooks":
        return {
            "deliveries": count(stack, "SELECT COUNT(*) FROM inbound_webhooks_delivery"),
            "asset_events": asset_events(stack, [PEER_ASSET]),
        }
    return {"asset_events": asset_events(stack, [REST_ASSET])}


def outbox_drained(stack: AirflowStack, timeout: float = 60.0) -> float:
    """Wait until the receiver's outbox is empty (every asset event written); return the milliseconds it took."""
    started = time.perf_counter()
    while count(stack, "SELECT COUNT(*) FROM itnio_asset_outbox"):
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"the receiver's outbox was not empty {timeout:g} s after the last answer")
        time.sleep(0.01)
    return round(1000 * (time.perf_counter() - started), 1)


def server_cpu_seconds(stack: AirflowStack) -> float:
    """
    Return the CPU time (user + system) the API server's processes have used so far (Linux ``/proc``).

    The API server runs in its own session (``start_new_session``): every process of that session counts (with
    ``--workers 2``, gunicorn's master and its workers).

    :param stack: The running Airflow.
    """
    session = stack.processes["api-server"].pid
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[3]) == session:  # fields after the name: state, ppid, pgrp, session, ...
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def restart_api_server(stack: AirflowStack, workers: int = 1, timeout: float = 180.0) -> None:
    """
    Stop the stack's API server and start a new one with the same configuration; return once it answers.

    :param stack: The running Airflow (its other components stopped).
    :param workers: The API server's worker processes (``airflow api-server --workers``).
    :param timeout: Seconds the new server may take to answer ``/api/v2/monitor/health``.
    """
    _stop(stack.processes.pop("api-server"))
    command = [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(stack.api_port)]
    with stack.component_log("api-server").open("ab") as log:  # appended: the token check reads every run
        stack.processes["api-server"] = subprocess.Popen(
            [*command, "--workers", str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=stack.env,
            start_new_session=True,
        )

    def healthy() -> bool:
        try:
            return requests.get(f"{stack.base_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    stack.wait_until(healthy, "the restarted API server", timeout)


#: The targets, in the order they are measured.
TARGETS = ("ours", "airflow_rest", "airflow_rest_1_client", "inbound_webhooks")


def run(total: int, clients: int, budget: float, workers: int = 1, only: tuple[str, ...] = TARGETS) -> dict[str, Any]:
    """
    Start the stack, push to the targets and return the measurements and the row counts.

    :param total: Pushes per target.
    :param clients: Concurrent clients.
    :param budget: Seconds each target may take at most (then the clients stop taking pushes).
    :param workers: The API server's worker processes.
    :param only: The targets to measure (``ours`` always).
    """
    from airflow_provider_itnio.assets import message_status_uri

    token = uuid.uuid4().hex + uuid.uuid4().hex
    peer_secret = uuid.uuid4().hex
    pushes, furthest, distinct, out_of_order = build_pushes(total)
    warm, _, _, _ = build_pushes(WARMUP, seed=9)
    ours_assets = [message_status_uri(CONN_ID, status) for status in ORDER]
    home = Path(tempfile.mkdtemp(prefix="itnio-bench-receiver-"))
    dag = home / "bench_receiver_assets.py"
    dag.write_text(DAG_FILE)
    connections = {
        CONN_ID: {
            "conn_type": "itnio",
            "login": "key",
            "password": "secret",
            "host": "http://127.0.0.1:9",
            "extra": {"app_id": APP_ID, "business_phone": BUSINESS, "webhook_token": token},
        },
        f"webhook_{PEER_NAME}": {
            "conn_type": "inbound_webhook",
            "password": peer_secret,
            "extra": {
                "source_type": "token_header",
                "token_header": "X-Itnio-Secret",
                "event_field": "eventType",
                "delivery_id_header": "X-Delivery-Id",
            },
        },
    }
    env = {"AIRFLOW__INBOUND_WEBHOOKS__WEBHOOK_NAMES": PEER_NAME, "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    result: dict[str, Any] = {
        "pushes": total,
        "distinct": distinct,
        "duplicates": total - distinct,
        "out_of_order": out_of_order,
        "messages": len(furthest),
        "clients": clients,
        "workers": workers,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with AirflowStack(home / "home", dags=[dag], connections=connections, env=env) as stack:
        stack.wait_for_dag("bench_receiver_assets")
        stack.wait_until(
            lambda: count(stack, "SELECT COUNT(*) FROM dag_schedule_asset_reference") >= 5, "asset references", 120
        )
        for name in ("triggerer", "dag-processor", "scheduler"):  # only the API server runs while measuring
            _stop(stack.processes.pop(name))
        answer = stack.api("GET", "/assets", params={"name_pattern": REST_ASSET})
        rest_asset_id = answer.json()["assets"][0]["id"]
        base = stack.base_url

        def ours(session: requests.Session, push: dict[str, Any]) -> requests.Response:
            return session.post(f"{base}/itnio/webhook/{CONN_ID}/{token}", json=push, timeout=30)

        def rest(session: requests.Session, push: dict[str, Any]) -> requests.Response:
            return session.post(
                f"{base}/api/v2/assets/events",
                json={"asset_id": rest_asset_id, "extra": push},
                headers={"Authorization": f"Bearer {stack.token()}"},
                timeout=30,
            )

        def peer(session: requests.Session, push: dict[str, Any]) -> requests.Response:
            headers = {"X-Itnio-Secret": peer_secret, "X-Delivery-Id": f"{push['messageId']}:{push['status']}"}
            return session.post(f"{base}/webhooks/{PEER_NAME}", json=push, headers=headers, timeout=30)

        # (sender, clients): Airflow's REST also with one client, the only way it answers on SQLite (see section()).
        targets = {
            "ours": (ours, clients),
            "airflow_rest": (rest, clients),
            "airflow_rest_1_client": (rest, 1),
            "inbound_webhooks": (peer, clients),
        }
        targets = {name: target for name, target in targets.items() if name == "ours" or name in only}
        for name, (send, concurrency) in targets.items():
            # A fresh API server for each target (same config), warmed up on that target alone: requests a client
            # gave up on cannot keep it busy during the next target's turn.
            restart_api_server(stack, workers)
            started = time.perf_counter()
            push_all(send, warm, 1, budget)
            if name == "ours":  # the warm-up's asset events are written after its answers: not in the count
                outbox_drained(stack)
            print("warmed up", name, round(time.perf_counter() - started, 1), "s", flush=True)
            before = target_rows(stack, name, ours_assets)
            load = [round(x, 2) for x in os.getloadavg()]
            cpu = server_cpu_seconds(stack)
            result[name] = push_all(send, pushes, concurrency, budget)
            if name == "ours":  # the writer writes its asset events after the answers: their CPU counts too
                result[name]["asset_events_lag_ms"] = outbox_drained(stack)
            cpu = server_cpu_seconds(stack) - cpu
            result[name]["clients"] = concurrency
            result[name]["server_cpu_ms_per_push"] = round(1000 * cpu / max(result[name]["requests"], 1), 2)
            result[name]["load_average_at_start"] = load
            print(name, json.dumps(result[name]), flush=True)
            after = target_rows(stack, name, ours_assets)
            result[name]["rows"] = {key: after[key] - before[key] for key in after}
        ids = list(furthest)
        twice = count(
            stack,
            "SELECT COUNT(*) FROM (SELECT message_id, status FROM itnio_status_history "
            "GROUP BY message_id, status HAVING COUNT(*) > 1) AS t",
        )
        rows = stack.rows("SELECT message_id, status FROM itnio_message_status")
        final = {row["message_id"]: row["status"] for row in rows if row["message_id"] in furthest}
        # every distinct push is one status_history row and one asset event (the DAG uses all three assets)
        distinct_ok = result["ours"]["distinct_answered_2xx"]
        ours_rows = result["ours"]["rows"]
        result["ours"]["rows"].update(
            {
                "lost": distinct_ok - ours_rows["status_history"] + max(0, distinct_ok - ours_rows["asset_events"]),
                "messages_without_status": len(ids) - len(final),
                "recorded_twice": twice + max(0, ours_rows["asset_events"] - distinct_ok),
                "wrong_furthest_status": sum(1 for mid in ids if final.get(mid) != furthest[mid]),
            }
        )
        for name in ("airflow_rest", "airflow_rest_1_client"):
            if name not in result:
                continue
            events = result[name]["rows"]["asset_events"]
            result[name]["rows"].update(
                {
                    "lost": max(0, ok(result[name]) - events),
                    # it has no idempotency: every re-push it accepts is a second event
                    "recorded_twice": max(0, events - result[name]["distinct_answered_2xx"]),
                }
            )
        peer_twice = (
            0
            if "inbound_webhooks" not in result
            else count(
                stack,
                "SELECT COUNT(*) FROM (SELECT delivery_id FROM inbound_webhooks_delivery WHERE webhook = :w "
                "GROUP BY delivery_id HAVING COUNT(*) > 1) AS t",
                w=PEER_NAME,
            )
        )
        if "inbound_webhooks" in result:
            peer_rows = result["inbound_webhooks"]["rows"]
            peer_rows.update(
                {
                    "lost": max(0, result["inbound_webhooks"]["distinct_answered_2xx"] - peer_rows["deliveries"]),
                    "recorded_twice": peer_twice,
                }
            )
        logs = "\n".join(stack.all_logs().values())
        result["token_in_logs"] = token in logs or peer_secret in logs
    return result


def _workers(result: dict[str, Any]) -> str:
    """Return how many API server worker processes served the run, in words."""
    workers = int(result.get("workers", 1))
    if workers == 1:
        return "one API server worker (the default)"
    return f"{workers} API server worker processes (`airflow api-server --workers {workers}`)"


def section(result: dict[str, Any], command: str) -> list[str]:
    """
    Return the lines of the results section for ``result``.

    :param result: What :func:`run` returned (plus the wall time).
    :param command: The command that produced it.
    """
    names = {
        "ours": "itnio receiver",
        "airflow_rest": "Airflow REST assets/events",
        "airflow_rest_1_client": "Airflow REST assets/events, 1 client",
        "inbound_webhooks": "inbound-webhooks",
    }
    names = {key: label for key, label in names.items() if key in result}
    ours = result["ours"]
    peers = [result[name] for name in names if name != "ours"]
    complete = ours["not_sent"] == 0
    met = (
        complete
        and all(ours["per_s"] >= peer["per_s"] for peer in peers)
        and ours["p99_ms"] < 50
        and ours["rows"]["lost"] == 0
        and ours["rows"]["recorded_twice"] == 0
        and ours["rows"]["wrong_furthest_status"] == 0
    )
    faster = all(ours["per_s"] >= peer["per_s"] for peer in peers)
    exact = ours["rows"]["lost"] == 0 and ours["rows"]["recorded_twice"] == 0
    verdicts = [
        f"throughput {'met' if complete and faster else 'NOT met'}",
        f"p99 {'met' if ours['p99_ms'] < 50 else 'NOT met'} ({ours['p99_ms']} ms)",
        f"0 lost / 0 twice {'met' if exact and ours['rows']['wrong_furthest_status'] == 0 else 'NOT met'}",
    ]
    lines = [
        "",
        f"Target: {TARGET}. **{'met' if met else 'NOT met'}**: {'; '.join(verdicts)}. "
        f"(whole run {result['bench_wall_s']:.0f} s)",
        "",
        f"`{command}`: {result['pushes']:,} pushes per target ({result['distinct']:,} distinct status pushes for "
        f"{result['messages']:,} messages, {result['duplicates']:,} re-pushes, {result['out_of_order']:,} arriving "
        f"after a later status of their message), {result['clients']} threads with a keep-alive session each, "
        f"loopback, {_workers(result)}, SQLite; scheduler, dag-processor and triggerer stopped "
        "while pushing; each target on a freshly started API server (same configuration), warmed up with "
        f"{WARMUP} pushes from one client just before its turn; each target at most {result['budget_s']:.0f} s "
        "(then its clients stop: `not sent`). Load average (1, 5, 15 min) at the start of the run: "
        f"{result.get('load_average_at_start', 'not recorded')}, and at each target's start in the table "
        "(2 cores, shared).",
        "",
        "| target | clients | load avg | sent | not sent | answers | pushes/s | p50 ms | p99 ms | max ms "
        "| server CPU ms/push | rows recorded | lost | twice |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label in names.items():
        m = result[key]
        rows = m["rows"]
        recorded = ", ".join(f"{k} {v:,}" for k, v in rows.items() if k not in ("lost", "recorded_twice"))
        codes = ", ".join(f"{code}: {n:,}" for code, n in m["codes"].items())
        load = m.get("load_average_at_start")
        lines.append(
            f"| {label} | {m.get('clients', result['clients'])} | {load[0] if load else '?'} | {m['requests']:,} | "
            f"{m['not_sent']:,} | {codes} | {m['per_s']} | {m['p50_ms']} | {m['p99_ms']} | {m['max_ms']} | "
            f"{m.get('server_cpu_ms_per_push', '?')} | {recorded} | {rows['lost']} | {rows['recorded_twice']} |"
        )
    lines += [
        "",
        "Lost: answered 2xx but not in the target's table (for the itnio receiver: in its status history or among "
        "the asset events, one per distinct push). Twice: the same status of the same message recorded "
        "more than once, or more asset events than distinct pushes (Airflow's REST has no idempotency key, so "
        "every re-push it accepts is a second event). "
        "Code 0: no answer within 30 s. 503: the target could not write (SQLite busy) and recorded nothing; "
        "the vendor re-pushes such a push after 1, 3 and 5 minutes. With SQLite the database has one write lock: "
        "the itnio receiver has one writer per API server process that records every push waiting in one "
        "transaction (group commit); the peers write one transaction per request, each queueing for the lock. "
        "Airflow's REST `POST /api/v2/assets/events` writes its audit-log row from an async dependency "
        "(`action_logging`) with a blocking database call on the API server's event loop; with two or more "
        "concurrent requests on SQLite that insert waits for the write lock of another request's open transaction, "
        "which cannot commit while the loop is blocked, until SQLite's 5 s busy timeout (500, or no answer within "
        "30 s once requests queue behind those stalls; 1 client: no stall). So it is also measured with one "
        "client, the only way it answers on SQLite.",
    ]
    lag = result["ours"].get("asset_events_lag_ms")
    if lag is not None:
        lines += [
            "",
            "The itnio receiver answers once a push is recorded with its asset event in its outbox table, in one "
            "transaction; its writer turns the outbox into Airflow asset events at most every 0.25 s (`[itnio] "
            f"webhook_asset_events_interval`), many per transaction. The last ones were written {lag:g} ms after the "
            "last answer (its rows above are counted after that, and its server CPU includes that work).",
        ]
    lines += [
        "",
        f"Raw: `{json.dumps(result)}`",
    ]
    return lines


def main() -> None:
    """Parse the arguments, run, print and emit the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pushes", type=int, default=20_000, help="pushes per target (5%% re-pushes)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (threads)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds per target at most")
    parser.add_argument("--workers", type=int, default=1, help="API server worker processes (default 1)")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated targets to measure (default all: {','.join(TARGETS)}; ours always)",
    )
    add_output_arguments(parser)
    args = parser.parse_args()
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        started = time.monotonic()
        only = tuple(name.strip() for name in args.targets.split(",") if name.strip())
        unknown = sorted(set(only) - set(TARGETS))
        if unknown:
            parser.error(f"--targets: unknown {', '.join(unknown)}; known: {', '.join(TARGETS)}")
        result = run(args.pushes, args.clients, args.budget, args.workers, only)
        result["bench_wall_s"] = round(time.monotonic() - started, 1)
        result["budget_s"] = args.budget
    command = (
        f".venv/bin/python -m bench.bench_receiver --pushes {result['pushes']} --clients {result['clients']} "
        f"--budget {result.get('budget_s', args.budget):g} --workers {result.get('workers', 1)}"
    )
    finish(args, "bench_receiver", result, HEADING, section, command)


if __name__ == "__main__":
    main()
