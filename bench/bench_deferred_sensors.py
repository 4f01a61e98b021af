"""
Many deferred ``ItnioMessageStatusSensor``\\ s waiting at once on one triggerer, and how fast they resume.

One Airflow (tests/support/airflow_stack.py: SQLite, LocalExecutor, one triggerer)
runs a DAG with one sensor mapped over
``--sensors`` made-up message ids (``target_status="read"``, ``poke_interval=--poll``: the triggerer's shared
poller asks the receiver's bulk read endpoint about all of them, a long poll of up to ``--poll`` seconds).
Parallelism, the DAG's active-task limit and the default pool are raised so the scheduler can start them all (each
starts on a worker once, then defers and frees its slot). The triggerer reaches the API server through a counting
forwarder in this process (the connection's ``receiver_url``), which counts the read requests. Once every one is
deferred, the triggerer's CPU (its process and children, psutil) and RSS, and the read requests, are sampled for
``--window`` seconds; then a ``read`` status push for every message goes to the receiver
(``POST /itnio/webhook/itnio_default/<token>``, 16 threads), and each task's ``end_date`` (set by the triggerer,
which ends the task itself) is compared with the moment its push was answered.

    .venv/bin/python -m bench.bench_deferred_sensors [--sensors 1000] [--poll 5] [--window 30] [--out result.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.bench_receiver import APP_ID, BUSINESS, CONN_ID, push_all
from bench.record import add_output_arguments, finish
from tests.support.airflow_stack import AirflowStack, free_port
from tests.support.servers import CountingProxy

DAG_ID = "bench_deferred_sensors"
HEADING = "## 8. 1,000 deferred sensors waiting at once on one triggerer (ItnioMessageStatusSensor)"
TARGET = "every one resumes, p99 from the `read` push to the task's success < 5 s"


def dag_file(message_ids: list[str], poll: float) -> str:
    """
    Return the DAG file: one sensor mapped over ``message_ids``.

    :param message_ids: The messages waited on.
    :param poll: The sensors' ``poke_interval`` (the triggers' poll interval).
    """
    return textwrap.dedent(
        f'''
        """One ItnioMessageStatusSensor mapped over {len(message_ids)} message ids (bench_deferred_sensors)."""
        import pendulum
        from airflow.sdk import DAG
        from airflow_provider_itnio.sensors.itnio import ItnioMessageStatusSensor

        with DAG(
            "{DAG_ID}",
            schedule=None,
            start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
            catchup=False,
            max_active_tasks={len(message_ids) + 10},
        ):
            ItnioMessageStatusSensor.partial(
                task_id="wait_read", target_status="read", poke_interval={poll}, timeout=3600, retries=0
            ).expand(message_id={message_ids!r})
        '''
    )


def reads(forwarder: CountingProxy) -> tuple[int, int]:
    """
    Return how many requests the triggerer sent the API server so far, and how many message ids they asked about.

    :param forwarder: The counting proxy between the triggerer and the API server.
    """
    seen = forwarder.seen()
    return len(seen), sum(len((body or {}).get("message_ids", [])) for _, _, body in seen)


def parse_time(value: Any) -> float:
    """Return a ``task_instance`` date (SQLite text or a datetime) as a POSIX timestamp."""
    if not isinstance(value, datetime.datetime):
        value = datetime.datetime.fromisoformat(str(value))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp()


def states(stack: AirflowStack, run_id: str) -> dict[str, int]:
    """Return the number of the run's sensor instances in each state."""
    rows = stack.rows(
        "SELECT state, COUNT(*) AS n FROM task_instance WHERE dag_id = :d AND run_id = :r GROUP BY state",
        d=DAG_ID,
        r=run_id,
    )
    return {str(row["state"]): int(row["n"]) for row in rows}


def sample(process: psutil.Process, seconds: float) -> dict[str, Any]:
    """
    Return the CPU share (of one core) and the RSS of ``process`` and its children over ``seconds``.

    :param process: The triggerer.
    :param seconds: The sampling window.
    """

    def cpu_and_rss() -> tuple[float, int]:
        cpu, rss = 0.0, 0
        for proc in [process, *process.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return cpu, rss

    cpu_start, _ = cpu_and_rss()
    started = time.monotonic()
    rss_samples = []
    while time.monotonic() - started < seconds:
        rss_samples.append(cpu_and_rss()[1])
        time.sleep(1.0)
    cpu_end, rss_end = cpu_and_rss()
    elapsed = time.monotonic() - started
    return {
        "window_s": round(elapsed, 1),
        "cpu_percent_of_one_core": round(100 * (cpu_end - cpu_start) / elapsed, 1),
        "rss_mib_max": round(max([*rss_samples, rss_end]) / 2**20, 1),
    }


def run(sensors: int, poll: float, window: float, clients: int) -> dict[str, Any]:
    """
    Start the stack, defer ``sensors`` sensors, measure the triggerer, push ``read`` and measure the resumes.

    :param sensors: How many sensors wait at once.
    :param poll: Their poll interval in seconds.
    :param window: Seconds the waiting triggerer is sampled.
    :param clients: Concurrent clients pushing the ``read`` statuses.
    """
    token = uuid.uuid4().hex + uuid.uuid4().hex
    api_port = free_port()
    forwarder = CountingProxy(f"http://127.0.0.1:{api_port}")  # bound now, serving from the `with` below
    message_ids = [f"benchwait{i:05d}{uuid.uuid4().hex[:8]}" for i in range(sensors)]
    home = Path(tempfile.mkdtemp(prefix="itnio-bench-deferred-"))
    dag = home / f"{DAG_ID}.py"
    dag.write_text(dag_file(message_ids, poll))
    connections = {
        CONN_ID: {
            "conn_type": "itnio",
            "login": "key",
            "password": "secret",
            "host": "http://127.0.0.1:9",
            "extra": {
                "app_id": APP_ID,
                "business_phone": BUSINESS,
                "webhook_token": token,
                "receiver_url": forwarder.base_url,  # the triggerer's reads go through the counting forwarder
            },
        }
    }
    env = {
        "AIRFLOW__CORE__PARALLELISM": "32",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(sensors + 10),
        "AIRFLOW__CORE__MAX_MAP_LENGTH": str(max(1024, sensors)),
        "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": str(sensors + 10),
        "AIRFLOW__TRIGGERER__CAPACITY": str(max(1000, sensors + 10)),
        "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "64",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    result: dict[str, Any] = {"sensors": sensors, "poll_interval_s": poll, "parallelism": 32}
    stack_home = home / "home"
    with (
        forwarder,
        AirflowStack(
            stack_home, dags=[dag], connections=connections, env=env, start_timeout=300, api_port=api_port
        ) as stack,
    ):
        started = time.monotonic()
        run_id = stack.trigger_dag(DAG_ID)

        def all_deferred() -> bool:
            now = states(stack, run_id)
            return now.get("deferred", 0) >= sensors or now.get("failed", 0) > 0

        stack.wait_until(all_deferred, f"{sensors} sensors deferred", timeout=3600, interval=2)
        if states(stack, run_id).get("failed", 0):
            raise RuntimeError(f"sensors failed before the pushes: {states(stack, run_id)}")
        result["time_to_defer_all_s"] = round(time.monotonic() - started, 1)
        print("all deferred after", result["time_to_defer_all_s"], "s", flush=True)
        triggerer = psutil.Process(stack.processes["triggerer"].pid)
        reads_before, _ = reads(forwarder)
        result["triggerer_waiting"] = sample(triggerer, window)
        reads_after, _ = reads(forwarder)
        result["reads_while_waiting"] = {
            "requests": reads_after - reads_before,
            "per_s": round((reads_after - reads_before) / result["triggerer_waiting"]["window_s"], 2),
        }
        result["trigger_rows"] = int(next(iter(stack.rows("SELECT COUNT(*) AS n FROM trigger")[0].values())))
        print("waiting", json.dumps(result["triggerer_waiting"]), flush=True)

        answered: dict[str, float] = {}
        now = int(time.time())
        pushes = [
            {
                "appId": APP_ID,
                "channelType": 0,
                "messageId": message_id,
                "eventType": "message-status-event",
                "billable": "true",
                "form": BUSINESS,
                "recipient": "15550100300",
                "status": "read",
                "failure": "",
                "conversationType": "service",
                "timestamp": now,
            }
            for message_id in message_ids
        ]
        url = f"{stack.base_url}/itnio/webhook/{CONN_ID}/{token}"

        def send(session: requests.Session, push: dict[str, Any]) -> requests.Response:
            answer = session.post(url, json=push, timeout=30)
            answered[push["messageId"]] = time.time()
            return answer

        reads_before, _ = reads(forwarder)
        result["pushes"] = push_all(send, pushes, clients)

        def all_done() -> bool:
            now_states = states(stack, run_id)
            return sum(now_states.get(s, 0) for s in ("success", "failed", "up_for_retry")) >= sensors

        stack.wait_until(all_done, f"{sensors} sensors finished", timeout=1800, interval=1)
        reads_after, _ = reads(forwarder)
        result["reads_from_first_push_to_all_done"] = reads_after - reads_before
        rows = stack.rows(
            "SELECT map_index, state, queued_dttm, end_date FROM task_instance WHERE dag_id = :d AND run_id = :r",
            d=DAG_ID,
            r=run_id,
        )
        delays = sorted(
            parse_time(row["end_date"]) - answered[message_ids[int(row["map_index"])]]
            for row in rows
            if row["state"] == "success"
        )
        # queued_dttm is when the task was last queued: after its push only if it started again on a worker.
        result["queued_again_after_push"] = sum(
            1
            for row in rows
            if row["queued_dttm"] is not None
            and parse_time(row["queued_dttm"]) > answered[message_ids[int(row["map_index"])]]
        )
        result["succeeded"] = len(delays)
        result["not_succeeded"] = sensors - len(delays)
        result["push_to_success_s"] = {
            "p50": round(statistics.median(delays), 2),
            "p99": round(delays[int(0.99 * (len(delays) - 1))], 2),
            "max": round(delays[-1], 2),
        }
        result["all_resumed_after_last_push_s"] = round(
            max(parse_time(row["end_date"]) for row in rows) - max(answered.values()), 2
        )
        result["read_requests_total"], result["ids_asked_total"] = reads(forwarder)
    return result


def section(result: dict[str, Any], command: str) -> list[str]:
    """
    Return the lines of the results section for ``result``.

    :param result: What :func:`run` returned (plus the wall time).
    :param command: The command that produced it.
    """
    n, poll = result["sensors"], result["poll_interval_s"]
    met = result["not_succeeded"] == 0 and result["push_to_success_s"]["p99"] < 5
    waiting = result["triggerer_waiting"]
    scaled = "" if n >= 1000 else f" **Scaled down to {n:,} sensors** (see below)."
    return [
        "",
        f"Target: {TARGET}. **{'met' if met else 'NOT met'}** at {n:,} sensors.{scaled} "
        f"(whole run {result['bench_wall_s']:.0f} s)",
        "",
        f"`{command}`: one DAG, `ItnioMessageStatusSensor.partial(target_status='read', poke_interval={poll:g})"
        f".expand(message_id=[{n:,} ids])`, LocalExecutor with parallelism {result['parallelism']} (each sensor "
        "starts on a worker once, defers and frees its slot), one triggerer, SQLite.",
        "",
        f"- Time from triggering the DAG to all {n:,} deferred: {result['time_to_defer_all_s']:.0f} s "
        f"({result['trigger_rows']:,} rows in `trigger`).",
        f"- Triggerer while all wait ({waiting['window_s']:.0f} s window, its process and children): "
        f"CPU {waiting['cpu_percent_of_one_core']}% of one core, RSS max {waiting['rss_mib_max']} MiB.",
        f"- Read load on the API server while they wait: {result['reads_while_waiting']['requests']} requests in "
        f"{waiting['window_s']:.0f} s = {result['reads_while_waiting']['per_s']}/s (one shared long poll of up to "
        f"{poll:g} s per connection for all {n:,}; the previous design: {n / poll:,.0f} requests/s); "
        f"{result['reads_from_first_push_to_all_done']} requests from the first push until all had succeeded.",
        f"- `read` pushes ({result['pushes']['requests']:,}, 16 clients): {result['pushes']['per_s']}/s, "
        f"answers {result['pushes']['codes']}.",
        f"- Succeeded: {result['succeeded']:,} of {n:,}, ended by the triggerer (`TaskSuccessEvent`); queued again on "
        f"a worker after its push: {result.get('queued_again_after_push', 'n/a')}; from its push answered to the "
        "task's `end_date`: "
        f"p50 {result['push_to_success_s']['p50']} s, p99 {result['push_to_success_s']['p99']} s, max "
        f"{result['push_to_success_s']['max']} s; the last task {result['all_resumed_after_last_push_s']} s after "
        "the last push.",
        "",
        "Design notes. The triggers of a triggerer process register their message with one shared poller per "
        "connection, which asks `POST /itnio/api/{conn_id}/statuses` about all of them at once; the API server "
        "holds that request until a status push for one of them is recorded (it looks every 0.25 s) or the poll "
        "interval passes, so a push is seen within a fraction of a second and a quiet wait costs one request per "
        "interval whatever the number of sensors. A reached target ends the task from the triggerer "
        "(`TaskSuccessEvent`, the status record as XCom `return_value`): no worker slot and no task start per "
        "success. A `failed` / `deleted` message still resumes the task on a worker, to fail it without retry.",
        "",
        f"Raw: `{json.dumps(result)}`",
    ]


def main() -> None:
    """Parse the arguments, run, print and emit the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sensors", type=int, default=1000, help="sensors waiting at once")
    parser.add_argument("--poll", type=float, default=5.0, help="their poll interval in seconds")
    parser.add_argument("--window", type=float, default=30.0, help="seconds the waiting triggerer is sampled")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients pushing `read`")
    add_output_arguments(parser)
    args = parser.parse_args()
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        started = time.monotonic()
        result = run(args.sensors, args.poll, args.window, args.clients)
        result["bench_wall_s"] = round(time.monotonic() - started, 1)
    command = (
        f".venv/bin/python -m bench.bench_deferred_sensors --sensors {result['sensors']} "
        f"--poll {result['poll_interval_s']:g}"
    )
    finish(args, "bench_deferred_sensors", result, HEADING, section, command)


if __name__ == "__main__":
    main()
