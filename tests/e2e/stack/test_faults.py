"""
Scenario 2 of the production-like stack: a worker, a task process or the scheduler dies mid-campaign.

Each test runs ``itnio_stack_faults`` (``tests/e2e/stack/dags``: the campaign of scenario 1 with retries), kills a
part of the stack with SIGKILL once about a third of the messages reached the sandbox, and lets Airflow's own
failure detection (``scripts/stack.py``'s ``FAILURE_DETECTION``: no heartbeat for 45 s) fail the lost task
instances and retry them. Promises checked, counted at the sandbox and in the operator's own records:

- the run succeeds and every recipient received the message (none left without);
- recipients sent twice in a chunk are at most ``MAX_UNFLUSHED`` (1,000, README "Campaigns": the most sends
  without a durable record at any moment) per lost try of that chunk;
- every recipient sent twice is listed by the operator as "maybe sent" (its result's ``maybe_sent_twice``: the
  retry found it recorded as "send started" by the killed try, and sent it again; or its ledger holds ``null`` for
  it, or its result's ``errors`` has it as ``unknown_delivery``), so a person can check (issue 9, scenario 2).

The figures go to ``bench/RESULTS.md`` under "Stack: worker killed" before the last promise is checked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_itnio.batch import MAX_UNFLUSHED, LedgerValue, ProgressStore, progress_key
from bench.record import record_section, section_lines
from tests.support.stack import DAGS, Stack, load_module

DAG_ID = "itnio_stack_faults"
SEND_PATHS = frozenset({"/wa/custom/sendMsg", "/wa/template/sendMsg"})
HEADING = "## Stack: worker killed"
LATENCY = 0.02
#: The fault strikes once this share of the campaign reached the sandbox.
STRIKE_AT = 0.3


@pytest.fixture(scope="module")
def dag_module() -> Any:
    """Return the scenario DAG file as a module (its constants: recipients, chunks, retries)."""
    return load_module("itnio_stack_faults", DAGS / "itnio_stack_faults.py")


class RestVariables:
    """
    The ledger's key-value store read through the REST API (Airflow Variables), for :class:`ProgressStore`.

    :param stack: The running stack.
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def get(self, key: str) -> str | None:
        """
        Return a Variable's value, or None when there is none.

        :param key: The Variable's key.
        """
        answer = self.stack.api("GET", f"/variables/{key}")
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return str(answer.json()["value"])

    def set(self, key: str, value: str) -> None:
        """
        Refuse: the test only reads the ledger.

        :param key: The key.
        :param value: The value.
        """
        raise AssertionError(f"the test must not write the ledger ({key})")

    def delete(self, key: str) -> None:
        """
        Refuse: the test only reads the ledger.

        :param key: The key.
        """
        raise AssertionError(f"the test must not delete the ledger ({key})")


def _send_tis(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    answer = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    answer.raise_for_status()
    return [ti for ti in answer.json()["task_instances"] if ti["task_id"] == "send"]


def _received(stack: Stack) -> list[dict[str, Any]]:
    return [m for m in stack.sandbox("GET", "/sandbox/messages") if m["path"] in SEND_PATHS]


def _full_result(value: dict[str, Any]) -> dict[str, Any]:
    """Return a chunk's full result from its XCom (read from ``results_path`` when the XCom holds a summary)."""
    if "message_ids" in value and not value.get("full_result"):
        return value
    from airflow_provider_itnio.batch.results import load_batch_results

    return load_batch_results(value)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _task_process(ti_id: str) -> int | None:
    """Return the PID of the task process of a task instance (``airflow worker -- <ti id>``), if it runs."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text.startswith("airflow worker --") and ti_id in text:
            return int(cmdline.parent.name)
    return None


def _run_with_fault(
    stack: Stack, dag_module: Any, rows: int, strike: Callable[[str], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    Run the campaign, call ``strike(run_id)`` once ``STRIKE_AT`` of it reached the sandbox, and collect.

    Return the figures (with what ``strike`` returned under ``fault``) and the raw material for the assertions.
    """
    stack.sandbox("POST", "/sandbox/config", json={"latency": LATENCY, "push_url": None})
    stack.sandbox("DELETE", "/sandbox/messages")
    try:
        run_id = stack.trigger(DAG_ID, conf={"rows": rows, "chunks": dag_module.CHUNKS})

        def halfway() -> bool:
            running = [ti for ti in _send_tis(stack, run_id) if ti["state"] == "running"]
            return bool(running) and len(_received(stack)) >= rows * STRIKE_AT

        stack.wait(halfway, f"{STRIKE_AT:.0%} of the campaign at the sandbox", 600, interval=1.0)
        struck = time.monotonic()
        fault = strike(run_id)
        run = stack.wait_for_run(DAG_ID, run_id, timeout=900)
        recovered = time.monotonic() - struck
        messages = _received(stack)
    finally:
        stack.sandbox("POST", "/sandbox/config", json={"latency": 0.0})
        stack.module.configure_sandbox_pushes(stack.state)

    sends = _send_tis(stack, run_id)
    assert run["state"] == "success", [(ti["map_index"], ti["state"]) for ti in sends]
    chunks = dag_module.CHUNKS
    tries: dict[int, list[dict[str, Any]]] = {}
    results: dict[int, dict[str, Any]] = {}
    ledgers: dict[int, dict[str, LedgerValue]] = {}
    for index in range(chunks):
        answer = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/send/{index}/tries")
        answer.raise_for_status()
        tries[index] = sorted(answer.json()["task_instances"], key=lambda t: t["try_number"])
        answer = stack.api(
            "GET",
            f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/send/xcomEntries/return_value",
            params={"map_index": index, "deserialize": True},
        )
        answer.raise_for_status()
        value = answer.json()["value"]
        results[index] = _full_result(json.loads(value) if isinstance(value, str) else value)
        # the ledger stays until the next run of the task: read it now
        ledgers[index] = ProgressStore(RestVariables(stack), progress_key(DAG_ID, run_id, "send", index)).load()

    received = Counter(message["body"]["recipient"] for message in messages)
    twice = {r: n for r, n in received.items() if n > 1}
    maybe_sent = {r for ledger in ledgers.values() for r, message_id in ledger.items() if message_id is None}
    maybe_sent |= {
        r for result in results.values() for r, err in result["errors"].items() if err["status"] == "unknown_delivery"
    }
    maybe_sent |= {r for result in results.values() for r in result.get("maybe_sent_twice", [])}
    killed = {index: int(index in fault["chunks"]) for index in tries}  # tries that died while sending
    run_seconds = (_parse_time(run["end_date"]) - _parse_time(run["start_date"])).total_seconds()
    figures = {
        "rows": rows,
        "chunks": chunks,
        "fault": fault,
        "run_wall_s": round(run_seconds, 1),
        "strike_to_finished_s": round(recovered, 1),
        "tries_per_chunk": {str(i): [(t["try_number"], t["state"], t["hostname"]) for t in tries[i]] for i in tries},
        "received": sum(received.values()),
        "recipients_sent_twice": len(twice),
        "most_copies": max(received.values(), default=0),
        "maybe_sent_listed": len(maybe_sent),
        "sent_twice_and_listed": len(set(twice) & maybe_sent),
        "bound": MAX_UNFLUSHED * sum(killed.values()),
    }
    material = {
        "received": received,
        "twice": twice,
        "maybe_sent": maybe_sent,
        "results": results,
        "tries": tries,
        "killed": killed,
    }
    print(json.dumps(figures))
    return figures, material


def _check(dag_module: Any, figures: dict[str, Any], material: dict[str, Any], variant: str) -> None:
    """Assert the promises of scenario 2 (recording the figures before the last one)."""
    rows, chunks = figures["rows"], figures["chunks"]
    received: Counter[str] = material["received"]
    expected = {dag_module.recipient(i) for i in range(rows)}
    assert set(received) - expected == set()
    assert sorted(expected - set(received)) == []  # no recipient left without a message
    for index, result in material["results"].items():  # each chunk's result accounts for its rows
        size = len(range(index, rows, chunks))
        counted = sum(result[k] for k in ("sent", "failed", "skipped_already_sent", "duplicates", "not_attempted"))
        assert counted == size, (index, result)
        assert result["not_attempted"] == 0, (index, result)
    for index in range(chunks):  # sent twice: at most MAX_UNFLUSHED per killed try of the chunk, none elsewhere
        chunk = {dag_module.recipient(i) for i in range(index, rows, chunks)}
        twice_here = len(chunk & set(material["twice"]))
        assert twice_here <= MAX_UNFLUSHED * material["killed"][index], (index, twice_here)
    assert figures["most_copies"] <= 2
    _record(variant, figures)
    unlisted = sorted(set(material["twice"]) - material["maybe_sent"])
    assert unlisted == [], (
        f"{len(unlisted)} recipients received the message twice and the operator does not list them as maybe sent "
        f"(ledger null / errors unknown_delivery), e.g. {unlisted[:5]}"
    )


def test_worker_killed(stack: Stack, dag_module: Any) -> None:
    """SIGKILL a Celery worker's process group mid-campaign; its chunks are retried on the other worker."""
    killed: dict[str, Any] = {}

    def strike(run_id: str) -> dict[str, Any]:
        running = [ti for ti in _send_tis(stack, run_id) if ti["state"] == "running"]
        victim = Counter(ti["hostname"] for ti in running).most_common(1)[0][0]
        killed.update(
            worker=victim,
            chunks=sorted(ti["map_index"] for ti in running if ti["hostname"] == victim),
        )
        stack.module.kill(victim)
        return dict(killed, kind="SIGKILL of a Celery worker's process group")

    try:
        figures, material = _run_with_fault(stack, dag_module, dag_module.ROWS, strike)
    finally:
        if killed and not stack.module.is_running(killed["worker"]):
            stack.module.restart(killed["worker"])  # restarted after the run
    survivor = next(w for w in stack.module.WORKERS if w != killed["worker"])
    for index in killed["chunks"]:  # the killed tries were failed by Airflow and the chunk retried elsewhere
        tries = material["tries"][index]
        assert tries[0]["hostname"] == killed["worker"] and tries[0]["state"] == "failed", tries
        assert tries[-1]["state"] == "success" and tries[-1]["hostname"] == survivor, tries
    _check(dag_module, figures, material, "worker")


def test_task_process_killed(stack: Stack, dag_module: Any) -> None:
    """SIGKILL one task process (``airflow worker -- <ti id>``) alone; its supervisor reports it and it is retried."""

    def strike(run_id: str) -> dict[str, Any]:
        running = [ti for ti in _send_tis(stack, run_id) if ti["state"] == "running"]
        for ti in running:
            pid = _task_process(ti["id"])
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                return {
                    "kind": "SIGKILL of one task process",
                    "chunks": [ti["map_index"]],
                    "worker": ti["hostname"],
                }
        pytest.fail(f"no task process found for the running task instances {[ti['id'] for ti in running]}")

    figures, material = _run_with_fault(stack, dag_module, dag_module.SMALL_ROWS, strike)
    (index,) = figures["fault"]["chunks"]
    assert material["tries"][index][0]["state"] == "failed" and material["tries"][index][-1]["state"] == "success"
    assert all(len(t) == 1 for i, t in material["tries"].items() if i != index)
    _check(dag_module, figures, material, "task process")


def test_scheduler_restarted(stack: Stack, dag_module: Any) -> None:
    """SIGKILL the scheduler mid-campaign and start it again: running chunks go on, nothing is sent twice."""

    def strike(run_id: str) -> dict[str, Any]:
        stack.module.kill("scheduler")
        stack.module.restart("scheduler")
        return {"kind": "SIGKILL of the scheduler, then started again", "chunks": []}

    try:
        figures, material = _run_with_fault(stack, dag_module, dag_module.SMALL_ROWS, strike)
    finally:
        if not stack.module.is_running("scheduler"):
            stack.module.restart("scheduler")
    assert material["twice"] == {}
    _check(dag_module, figures, material, "scheduler")


def _tries_text(index: int, tries: list[list[Any]]) -> str:
    """Return e.g. ``chunk 3: 7 tries, the 1st killed on worker1, the last success on worker2``."""
    return (
        f"chunk {index}: {len(tries)} tries, the 1st killed on {tries[0][2]}, the last {tries[-1][1]} on {tries[-1][2]}"
    )


def _record(variant: str, figures: dict[str, Any]) -> None:
    """Write this variant's figures into the "Stack: worker killed" section (keeping the other variants')."""
    raws: dict[str, dict[str, Any]] = {}
    for line in section_lines(HEADING):
        if line.startswith("Raw ") and ": `" in line:
            name, raw = line[4:].split(": `", 1)
            raws[name] = json.loads(raw.rstrip("`"))
    raws[variant] = figures
    intro = textwrap.fill(
        'Scenario 2 of issue 9 on the production-like stack (`make stack`, as in "Stack: campaign across '
        'workers"): DAG `itnio_stack_faults`, the campaign of scenario 1 (8 chunks, pool of 4 slots x 100 msg/s, '
        f"sandbox latency {LATENCY * 1000:.0f} ms, retries every 10 s), struck with SIGKILL once {STRIKE_AT:.0%} "
        "of it reached the sandbox. Airflow's failure detection as set by `scripts/stack.py` (`FAILURE_DETECTION`): "
        "`[scheduler] task_instance_heartbeat_timeout = 45`, `task_instance_heartbeat_timeout_detection_interval = "
        '5`, `task_queued_timeout = 180`, `orphaned_tasks_check_interval = 30`. "sent twice" is counted at the '
        'sandbox; "listed" means the operator reports them as maybe sent (the result\'s `maybe_sent_twice`, or '
        "ledger `null` / `unknown_delivery`).",
        width=115,
    )
    table = [
        "| variant | rows | run wall s | strike to end s | tries of struck chunks | sent twice | bound | "
        "sent twice and listed as maybe sent |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("worker", "task process", "scheduler"):
        if name not in raws:
            continue
        f = raws[name]
        tries = (
            "; ".join(_tries_text(i, f["tries_per_chunk"][str(i)]) for i in f["fault"].get("chunks", [])) or "1 each"
        )
        table.append(
            f"| {f['fault']['kind']} | {f['rows']:,} | {f['run_wall_s']} | {f['strike_to_finished_s']} | {tries} | "
            f"{f['recipients_sent_twice']} | {f['bound']} | {f['sent_twice_and_listed']} |"
        )
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = ["", intro, "", f"`make test-stack` (tests/e2e/stack/test_faults.py), {date}:", "", *table, ""]
    lines += [f"Raw {name}: `{json.dumps(f)}`" for name, f in raws.items()]
    record_section(HEADING, lines)


# -- scenario 3: soak with faults -------------------------------------------------------------------------------

SOAK_HEADING = "## Stack: soak"
#: The soak's length in seconds comes from this variable: ``make test-stack`` sets 180 (to stay under 20 minutes),
#: ``make test-soak`` the issue's "about 10 minutes" (:data:`ISSUE_SOAK_SECONDS`).
SOAK_SECONDS_VARIABLE = "ITNIO_SOAK_SECONDS"
SOAK_DEFAULT_SECONDS = 180
ISSUE_SOAK_SECONDS = 600
#: The shortest soak: the first minute's worker memory is the baseline, so the soak must run well past it.
SOAK_MIN_SECONDS = 120
#: Seconds between two triggered runs of ``itnio_stack_soak``.
SOAK_RUN_EVERY = 12
SOAK_PARAMS = {"singles": 10, "batches": 2, "batch_rows": 200}
#: The request faults, injected in turn: each kind on :data:`FAULT_SHARE` of the requests (counted every
#: :data:`FAULT_EVERY` seconds in the sandbox's request log, the faults for the requests since queued then).
REQUEST_FAULTS: dict[str, dict[str, Any]] = {
    "drop": {"drop": True},
    "read timeout": {"slow": 5.0},  # the soak connection's read timeout is 3 s
    "429": {"http_status": 429},
    "500": {"http_status": 500},
    "503": {"http_status": 503},
}
FAULT_EVERY = 2.0
FAULT_SHARE = 0.01
#: Owed faults are queued only while requests flow (this many since the last count): a fault queued while the
#: sandbox is idle would hit the next run's first requests, its single sends, far more often than 1%.
TRAFFIC = 20
#: When the balance is 0 (``-68`` answers) for :data:`BALANCE_OUT_FOR` seconds, and when the sandbox restarts
#: (connection refused for :data:`REFUSED_FOR` seconds), as shares of the soak's length (45 s, 130 s and 90 s
#: of a 3-minute soak).
BALANCE_OUT_AT = (0.25, 0.72)
BALANCE_OUT_FOR = 3.0
RESTART_AT = 0.5
REFUSED_FOR = 5.0


def soak_seconds() -> int:
    """Return the soak's length: ``ITNIO_SOAK_SECONDS`` (a whole number of seconds, at least 120), else 180."""
    text = os.environ.get(SOAK_SECONDS_VARIABLE, "").strip() or str(SOAK_DEFAULT_SECONDS)
    if not text.isdigit() or int(text) < SOAK_MIN_SECONDS:
        raise ValueError(f"{SOAK_SECONDS_VARIABLE}={text!r}: give whole seconds, at least {SOAK_MIN_SECONDS}")
    return int(text)


def _worker_rss(stack: Stack) -> dict[str, int]:
    """Return each worker's resident memory in KiB: its Celery processes, task processes left out."""
    totals: dict[str, int] = {}
    for name in stack.module.WORKERS:
        pgid = stack.module.read_pid(name)
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) != pgid:
                    continue
                cmdline = (stat.parent / "cmdline").read_bytes()
                if cmdline.startswith(b"airflow worker --"):
                    continue
                status = (stat.parent / "status").read_text()
            except (OSError, IndexError, ValueError):
                continue
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        totals[name] = total
    return totals


class FaultDriver:
    """
    Inject the sandbox's faults during the soak, from a thread: the request faults in turn, the balance out, the
    sandbox restarted (its accepted messages kept first, as it forgets them).

    :param stack: The running stack.
    :param seconds: The soak's length (:data:`BALANCE_OUT_AT` and :data:`RESTART_AT` are shares of it).
    """

    def __init__(self, stack: Stack, seconds: float) -> None:
        import threading

        self.stack = stack
        self.seconds = seconds
        self.kept: list[dict[str, Any]] = []
        self.injected: Counter[str] = Counter()
        self.events: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-faults", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        """Start injecting."""
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stop injecting and drop what is pending; raise what failed in the thread."""
        self._stop.set()
        self._thread.join(60)
        self.stack.sandbox("DELETE", "/sandbox/faults")
        self.stack.sandbox("POST", "/sandbox/config", json={"balance": None})
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        kinds = list(REQUEST_FAULTS)
        turn = 0
        balance_outs = [share * self.seconds for share in BALANCE_OUT_AT]
        restarted = False
        seen = 0  # requests in the sandbox's log when last counted
        owed = 0.0  # faults owed for the requests counted so far
        try:
            while not self._stop.wait(FAULT_EVERY):
                elapsed = time.monotonic() - self._started
                if balance_outs and elapsed >= balance_outs[0]:
                    balance_outs.pop(0)
                    self.stack.sandbox("POST", "/sandbox/config", json={"balance": 0})
                    time.sleep(BALANCE_OUT_FOR)
                    self.stack.sandbox("POST", "/sandbox/config", json={"balance": None})
                    self.injected["-68 balance"] += 1
                    self.events.append(f"{elapsed:.0f} s: balance 0 (-68) for {BALANCE_OUT_FOR:g} s")
                elif not restarted and elapsed >= RESTART_AT * self.seconds:
                    restarted = True
                    self._restart_sandbox(elapsed)
                    seen = 0  # the restarted sandbox's log starts empty
                else:
                    count = len(self.stack.sandbox("GET", "/sandbox/requests"))
                    owed += max(0, count - seen) * FAULT_SHARE * len(kinds)
                    flowing = count - seen >= TRAFFIC
                    seen = count
                    while flowing and owed >= 1:
                        kind = kinds[turn % len(kinds)]
                        turn += 1
                        owed -= 1
                        self.stack.sandbox("POST", "/sandbox/faults", json={"n": 1, **REQUEST_FAULTS[kind]})
                        self.injected[kind] += 1
        except BaseException as err:  # reported by stop()
            self.error = err

    def _restart_sandbox(self, elapsed: float) -> None:
        # every request answered 503 from now on (nothing accepted), then keep what was accepted, then kill
        self.stack.sandbox("POST", "/sandbox/faults", json={"n": 1_000_000, "http_status": 503})
        self.kept.extend(self.stack.sandbox("GET", "/sandbox/messages"))
        self.stack.module.kill("sandbox")
        time.sleep(REFUSED_FOR)
        self.stack.module.restart("sandbox")
        self.stack.sandbox("POST", "/sandbox/config", json={"latency": LATENCY, "push_url": None})
        self.injected["connection refused (restart)"] += 1
        self.events.append(f"{elapsed:.0f} s: sandbox killed, connection refused for {REFUSED_FOR:g} s, restarted")


def _soak_connection(stack: Stack, dag: Any) -> None:
    """Create (or update) the soak's connection: the sandbox with a short read timeout."""
    body = {
        "connection_id": dag.CONN_ID,
        "conn_type": "itnio",
        "host": stack.sandbox_url,
        "login": "sandbox-key",
        "password": "sandbox-secret",
        "extra": json.dumps({"app_id": "sandbox-app", "business_phone": "15550001111", "timeout": dag.READ_TIMEOUT}),
    }
    answer = stack.api("POST", "/connections", json=body)
    if answer.status_code == 409:
        answer = stack.api("PATCH", f"/connections/{dag.CONN_ID}", json=body)
    answer.raise_for_status()


def _ti_log(stack: Stack, run_id: str, ti: dict[str, Any]) -> str:
    answer = stack.api(
        "GET",
        f"/dags/itnio_stack_soak/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}",
        params={"map_index": ti["map_index"], "full_content": True},
    )
    answer.raise_for_status()
    return json.dumps(answer.json())


def _reason(text: str) -> str:
    """Return the kind of a failure from its message or task log: ``HTTP 500``, ``ReadTimeoutError``..."""
    found = (
        re.search(r"may have been delivered: (HTTP \d+|\w+)", text)
        or re.search(r'"exc_type": "(Itnio\w+)", "exc_value": "(HTTP \d+|-?\d+|\w+)', text)
        or re.search(r'"exc_type": "(\w+)"', text)
    )
    return " ".join(found.groups()) if found else "other"


def _xcom(stack: Stack, run_id: str, task_id: str, map_index: int) -> Any:
    answer = stack.api(
        "GET",
        f"/dags/itnio_stack_soak/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
        params={"map_index": map_index, "deserialize": True},
    )
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    value = answer.json()["value"]
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


def test_soak_with_faults(stack: Stack) -> None:
    """Single sends and batches for a few minutes under every sandbox fault: each send ends in one stated way."""
    seconds = soak_seconds()
    soak = load_module("itnio_stack_soak", DAGS / "itnio_stack_soak.py")
    _soak_connection(stack, soak)
    stack.sandbox("POST", "/sandbox/config", json={"latency": LATENCY, "push_url": None, "balance": None})
    stack.sandbox("DELETE", "/sandbox/faults")
    stack.sandbox("DELETE", "/sandbox/messages")
    driver = FaultDriver(stack, seconds)
    runs: dict[int, str] = {}
    rss_first: dict[str, int] | None = None
    started = time.monotonic()
    try:
        driver.start()
        while time.monotonic() - started < seconds:
            runs[len(runs)] = stack.trigger("itnio_stack_soak", conf={"run": len(runs), **SOAK_PARAMS})
            if rss_first is None and time.monotonic() - started >= 60:
                rss_first = _worker_rss(stack)
            time.sleep(max(0.0, started + len(runs) * SOAK_RUN_EVERY - time.monotonic()))
        for run_id in runs.values():
            stack.wait_for_run("itnio_stack_soak", run_id, timeout=600)
        wall = time.monotonic() - started
        rss_last = _worker_rss(stack)
    finally:
        driver.stop()
        stack.sandbox("POST", "/sandbox/config", json={"latency": 0.0})
        stack.module.configure_sandbox_pushes(stack.state)
    messages = [m for m in driver.kept + stack.sandbox("GET", "/sandbox/messages") if m["path"] in SEND_PATHS]
    requests_log = stack.sandbox("GET", "/sandbox/requests")  # since the restart only
    received = Counter(m["body"]["recipient"] for m in messages)
    ids: dict[str, set[str]] = {}
    for message in messages:
        ids.setdefault(message["body"]["recipient"], set()).add(message["messageId"])

    outcomes: Counter[str] = Counter()
    broken: list[str] = []
    reasons: Counter[str] = Counter()
    expected: set[str] = set()
    for run_number, run_id in runs.items():
        answer = stack.api("GET", f"/dags/itnio_stack_soak/dagRuns/{run_id}/taskInstances", params={"limit": 200})
        answer.raise_for_status()
        for ti in answer.json()["task_instances"]:
            if ti["task_id"] == "single":
                who = soak.recipient(run_number, "single", ti["map_index"])
                expected.add(who)
                copies = received[who]
                if ti["state"] == "success":
                    message_id = _xcom(stack, run_id, "single", ti["map_index"])
                    outcome = "accepted once" if copies == 1 and message_id in ids.get(who, ()) else "BROKEN"
                elif ti["state"] == "failed":
                    log = _ti_log(stack, run_id, ti)
                    if "may have been delivered" in log:
                        outcome = "unknown delivery" if copies <= 1 else "BROKEN"
                    else:
                        outcome = "failed with reason" if copies == 0 and "Itnio" in log else "BROKEN"
                    reasons[f"single {outcome}: {_reason(log)}"] += 1
                else:
                    outcome = "BROKEN"
                outcomes[f"single: {outcome}"] += 1
                if outcome == "BROKEN":
                    broken.append(f"single {who} ({ti['state']}, received {copies}x)")
            elif ti["task_id"] == "batch":
                rows = [
                    soak.recipient(run_number, "batch", i)
                    for i in range(ti["map_index"], SOAK_PARAMS["batches"] * SOAK_PARAMS["batch_rows"], 2)
                ]
                expected.update(rows)
                result = _xcom(stack, run_id, "batch", ti["map_index"]) if ti["state"] == "success" else None
                if result is None:
                    broken.append(f"batch {run_id}/{ti['map_index']} ended {ti['state']} without a result")
                    outcomes["batch: BROKEN"] += len(rows)
                    continue
                for who in rows:
                    copies = received[who]
                    error = result["errors"].get(who)
                    if who in result["message_ids"]:
                        ok = copies == 1 and result["message_ids"][who] in ids.get(who, ())
                        outcome = "accepted once" if ok else "BROKEN"
                    elif error is not None and error["status"] == "unknown_delivery":
                        outcome = "unknown delivery" if copies <= 1 else "BROKEN"
                        reasons[f"batch unknown delivery: {_reason(error['reason'])}"] += 1
                    elif error is not None:
                        outcome = "failed with reason" if copies == 0 and error["reason"] else "BROKEN"
                        reasons[f"batch failed: {error['status']}"] += 1
                    else:
                        outcome = "BROKEN"
                    outcomes[f"batch: {outcome}"] += 1
                    if outcome == "BROKEN":
                        broken.append(f"batch {who} (result {error or 'sent'}, received {copies}x)")
    strangers = sorted(set(received) - expected)
    faults_seen = Counter(entry.get("fault") or "none" for entry in requests_log)
    assert rss_first is not None
    figures = {
        "soak_s": seconds,
        "wall_s": round(wall),
        "runs": len(runs),
        "sends": sum(outcomes.values()),
        "outcomes": dict(sorted(outcomes.items())),
        "failure_reasons": dict(sorted(reasons.items())),
        "faults_injected": dict(sorted(driver.injected.items())),
        "events": driver.events,
        "requests_after_restart": len(requests_log),
        "faulted_requests_after_restart": sum(n for f, n in faults_seen.items() if f != "none"),
        "received": sum(received.values()),
        "rss_kib_first_minute": rss_first,
        "rss_kib_end": rss_last,
        "broken": broken[:20],
    }
    print(json.dumps(figures))
    _record_soak(figures)
    assert strangers == []
    assert broken == [], f"{len(broken)} sends did not end in exactly one stated way: {broken[:10]}"
    for name, first in rss_first.items():
        assert rss_last[name] <= first * 1.10, (name, first, rss_last[name])


def _record_soak(figures: dict[str, Any]) -> None:
    """Replace (or append) the "Stack: soak" section of ``bench/RESULTS.md``."""
    seconds = figures["soak_s"]
    length = f"{seconds / 60:g} minutes of runs (the last one done {figures['wall_s'] / 60:.1f} minutes after start)"
    if seconds < ISSUE_SOAK_SECONDS:
        length = (
            f"SHORTENED: {length} instead of the issue's {ISSUE_SOAK_SECONDS // 60} (`make test-stack` keeps under "
            f"20 minutes; `make test-soak` runs {ISSUE_SOAK_SECONDS // 60})"
        )
    fault_times = [f"{share * seconds:.0f}" for share in BALANCE_OUT_AT]
    intro = textwrap.fill(
        f"Scenario 3 of issue 9, {length}. A run of DAG `itnio_stack_soak` every {SOAK_RUN_EVERY} s "
        f"({SOAK_PARAMS['singles']} mapped `ItnioSendTextOperator` sends and {SOAK_PARAMS['batches']} batches of "
        f"{SOAK_PARAMS['batch_rows']} rows each at `max_per_second=20`, retries 3), sandbox latency 20 ms, "
        "connection read timeout 3 s. "
        f"Faults: drop / read timeout (slow 5 s) / 429 / 500 / 503 in turn, each on {FAULT_SHARE:.0%} of the "
        "requests (the requests counted "
        f"every {FAULT_EVERY:g} s, the faults they are owed queued then if {TRAFFIC} or more came), the balance "
        f"at 0 (-68) for {BALANCE_OUT_FOR:g} s at {' and '.join(fault_times)} s, "
        f"the sandbox SIGKILLed at {RESTART_AT * seconds:.0f} s and restarted {REFUSED_FOR:g} s later "
        "(connection refused meanwhile). Every send is classified from the operator's own report (XCom, task log) "
        "against the copies the sandbox accepted.",
        width=115,
    )
    rss = ", ".join(
        f"{name} {figures['rss_kib_first_minute'][name] / 1024:.0f} -> {figures['rss_kib_end'][name] / 1024:.0f} MiB"
        for name in figures["rss_kib_end"]
    )
    lines = [
        "",
        intro,
        "",
        "```",
        f"$ {SOAK_SECONDS_VARIABLE}={seconds} pytest tests/e2e/stack/test_faults.py::test_soak_with_faults"
        f"   # make {'test-soak' if seconds >= ISSUE_SOAK_SECONDS else 'test-stack'}",
        f"runs, sends            {figures['runs']}, {figures['sends']:,}",
        *(f"{name:<38} {n:,}" for name, n in figures["outcomes"].items()),
        f"faults injected        {', '.join(f'{k} {n}' for k, n in figures['faults_injected'].items())}",
        f"worker RSS (1st min -> end)  {rss}",
        "```",
        "",
        f"Raw: `{json.dumps(figures)}`",
        "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
    ]
    record_section(SOAK_HEADING, lines)
