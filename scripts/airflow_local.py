"""
``make airflow``: a local Airflow (``airflow standalone``) wired to the itniotech sandbox, to click through.

- Airflow home: ``.airflow_home/`` in the repository (SQLite; kept between runs, ``make clean`` removes it),
  DAGs folder: ``dags_examples/``, ``[core] test_connection = Enabled`` (the connection form's Test button).
- The sandbox runs as its own process on a free port; each request it receives is printed here.
- The connection ``itnio_default`` is (re)written in the metadata database to point at it, so it shows in
  Admin > Connections and can be tested and edited there.
- Prints the UI's URL and the admin login (the simple auth manager's generated password), then waits.
- Ctrl-C (or SIGTERM) stops Airflow's components and the sandbox, and waits until every one is gone.

Usage: ``python scripts/airflow_local.py [--port 8080] [--home .airflow_home] [--timeout 180]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


def build_env(home: Path, dags_folder: Path, api_port: int) -> dict[str, str]:
    """
    Return the environment of every Airflow command this script runs.

    :param home: The Airflow home (``AIRFLOW_HOME``).
    :param dags_folder: The DAGs folder.
    :param api_port: The API server's (and UI's) port.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # standalone starts `airflow ...` from PATH
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__API__PORT": str(api_port),
            # where task processes report to; Airflow's default assumes port 8080
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        }
    )
    return env


def sandbox_conn_json(port: int) -> str:
    """
    Return the ``itnio_default`` connection for a sandbox CLI on ``port`` (it runs with the default account).

    :param port: The sandbox's port.
    """
    from airflow_provider_itnio.sandbox.server import (
        DEFAULT_API_KEY,
        DEFAULT_API_SECRET,
        DEFAULT_APP_ID,
        DEFAULT_BUSINESS_PHONES,
    )

    return json.dumps(
        {
            "conn_type": "itnio",
            "description": "The local itniotech sandbox started by `make airflow`",
            "login": DEFAULT_API_KEY,
            "password": DEFAULT_API_SECRET,
            "host": f"http://127.0.0.1:{port}",
            "extra": {"app_id": DEFAULT_APP_ID, "business_phone": DEFAULT_BUSINESS_PHONES[0]},
        }
    )


def start_sandbox(port_file: Path, timeout: float = 20.0) -> tuple[subprocess.Popen[bytes], int]:
    """
    Start ``python -m airflow_provider_itnio.sandbox`` in its own process group; return it and its port.

    :param port_file: Where the sandbox writes its port once it listens (removed first).
    :param timeout: Seconds to wait for it.
    """
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_itnio.sandbox", "--port-file", str(port_file)],
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return process, int(port_file.read_text())
        if process.poll() is not None:
            raise RuntimeError(f"the sandbox exited with code {process.returncode}")
        time.sleep(0.1)
    stop_group(process, "sandbox")
    raise RuntimeError(f"the sandbox did not write {port_file} within {timeout:.0f} s")


def read_password(home: Path, user: str = "admin") -> str | None:
    """
    Return the simple auth manager's generated password of ``user``, if the file exists yet.

    :param home: The Airflow home.
    :param user: The user name.
    """
    path = home / PASSWORD_FILE
    try:
        value = json.loads(path.read_text()).get(user)
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def wait_for_api(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """
    Wait until ``url`` answers HTTP 200 (raises RuntimeError on timeout or if ``process`` exits).

    :param url: The health URL.
    :param process: The process that serves it.
    :param timeout: Seconds to wait.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop_group(process: subprocess.Popen[bytes], name: str, first: int = signal.SIGTERM, grace: float = 30.0) -> None:
    """
    Stop ``process`` and everything in its process group: ``first`` to the process, then SIGTERM, then SIGKILL
    to the whole group, each after ``grace`` seconds if anyone is left.

    :param process: A process started with ``start_new_session=True`` (so its group is its own).
    :param name: Its name, for messages.
    :param first: The first signal (``airflow standalone`` stops its components on SIGINT).
    :param grace: Seconds to wait after each signal.
    """
    pgid = process.pid
    for step, sig in enumerate((first, signal.SIGTERM, signal.SIGKILL)):
        try:
            if step == 0:
                process.send_signal(sig)  # the leader first: it stops its own children in order
            else:
                os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        waited_until = time.monotonic() + grace
        while time.monotonic() < waited_until:
            process.poll()
            try:
                os.killpg(pgid, 0)  # anyone left in the group?
            except ProcessLookupError:
                process.wait()
                print(f"  {name} stopped")
                return
            time.sleep(0.2)
        print(f"  {name}: still running after {signal.Signals(sig).name}; escalating")
    process.wait()
    print(f"  {name} stopped")


def start_standalone(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """
    Start ``airflow standalone`` (api-server, scheduler, dag-processor, triggerer) in its own process group.

    :param env: Its environment (see :func:`build_env`).
    :param log: The file its output is appended to.
    :return: The process; stop it with ``stop_group(process, ..., first=signal.SIGINT)``.
    """
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BIN / "airflow"), "standalone"], env=env, stdout=out, stderr=out, start_new_session=True
        )


def _airflow(args: list[str], env: dict[str, str], log: Path, check: bool = True) -> None:
    with log.open("ab") as out:
        done = subprocess.run([str(BIN / "airflow"), *args], env=env, stdout=out, stderr=out)
    if check and done.returncode != 0:
        raise RuntimeError(f"`airflow {' '.join(args)}` failed (exit {done.returncode}); see {log}")


def main(argv: list[str] | None = None) -> int:
    """
    Start everything, print how to log in, and wait for Ctrl-C.

    :param argv: Command-line arguments (``sys.argv[1:]`` by default).
    :return: The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8080, help="the UI / API server port (default: %(default)s)")
    parser.add_argument("--home", type=Path, default=ROOT / ".airflow_home", help="AIRFLOW_HOME")
    parser.add_argument("--dags-folder", type=Path, default=ROOT / "dags_examples")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the API server")
    args = parser.parse_args(argv)

    home: Path = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "airflow_local.log"
    env = build_env(home, args.dags_folder.resolve(), args.port)

    stopping = False

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    print(f"Airflow home {home}; DAGs folder {args.dags_folder}; log {log}")
    sandbox, sandbox_port = start_sandbox(home / "sandbox.port")
    airflow: subprocess.Popen[bytes] | None = None
    try:
        print("Migrating the metadata database ...")
        _airflow(["db", "migrate"], env, log)
        _airflow(["connections", "delete", "itnio_default"], env, log, check=False)
        _airflow(["connections", "add", "itnio_default", "--conn-json", sandbox_conn_json(sandbox_port)], env, log)
        print(f"Connection itnio_default -> the sandbox at http://127.0.0.1:{sandbox_port}")
        print("Starting `airflow standalone` (api-server, scheduler, dag-processor, triggerer) ...")
        airflow = start_standalone(env, log)
        url = f"http://localhost:{args.port}"
        deadline = time.monotonic() + args.timeout
        while not stopping:
            try:
                wait_for_api(f"{url}/api/v2/monitor/health", airflow, timeout=min(5.0, deadline - time.monotonic()))
                break
            except RuntimeError:
                if airflow.poll() is not None or time.monotonic() >= deadline:
                    raise
        if not stopping:
            password = read_password(home)
            print()
            print(f"  Airflow UI:  {url}")
            print(f"  Login:       admin / {password or f'(see {home / PASSWORD_FILE})'}")
            print(f"  Sandbox:     http://127.0.0.1:{sandbox_port}/sandbox/messages  (what it received)")
            print("  Try:         trigger itnio_followup, then look at its tasks' XCom (the messageIds)")
            print("  Ctrl-C stops Airflow and the sandbox.")
            print()
            sys.stdout.flush()
        while not stopping:
            if airflow.poll() is not None:
                print(f"airflow standalone exited with code {airflow.returncode}; see {log}")
                break
            time.sleep(0.5)
        return 0
    except RuntimeError as err:
        print(f"make airflow: {err}", file=sys.stderr)
        return 1
    finally:
        print("Stopping ...")
        if airflow is not None:
            stop_group(airflow, "airflow standalone", first=signal.SIGINT)
        stop_group(sandbox, "sandbox", first=signal.SIGINT, grace=10)


if __name__ == "__main__":
    raise SystemExit(main())
