"""
``make airflow``: a local Airflow (``airflow standalone``) wired to the itniotech sandbox, to click through.

- Airflow home: ``.airflow_home/`` in the repository (SQLite; kept between runs, ``make clean`` removes it),
  DAGs folder: ``dags_examples/``, ``[core] test_connection = Enabled`` (the connection form's Test button).
- The UI and API listen on loopback only (``127.0.0.1:8080``; ``--host 0.0.0.0`` opens them to the network): the
  admin login is printed on screen. ``[api] base_url`` is that address, so approval messages carry a link to the
  task in the UI.
- The sandbox runs as its own process on port 8765 (docs/sandbox.md), the same at every start, so a
  connection made by hand keeps working; when 8765 is taken it says so and takes a free port. Each request it
  receives is printed here.
- The connection ``itnio_default`` is (re)written in the metadata database to point at it, so it shows in
  Admin > Connections and can be tested and edited there, with a new random ``webhook_token`` extra.
- Two-way: the sandbox pushes statuses and customers' messages to the webhook receiver on the local API server
  (``/itnio/webhook/itnio_default/<token>``, given through the sandbox's control API, so the token is on no
  command line), so a simulated customer reply (``POST /sandbox/inbound``, printed as a ``curl`` command) starts
  the DAGs scheduled on it in the UI. When the installed package does not register the receiver's entry point (an
  editable install made before it existed), ``plugins/itnio_webhook_plugin.py`` in the home loads it.
- Prints the UI's URL, the admin login (the simple auth manager's generated password), one line to paste in
  another shell for the Airflow CLI next to it (``AIRFLOW_HOME``, ``AIRFLOW__CORE__TEST_CONNECTION``...; also
  ``make airflow-env``), and how to try approvals, then waits.
- Ctrl-C (or SIGTERM) stops Airflow's components and the sandbox, and waits until every one is gone.

Usage: ``python scripts/airflow_local.py [--port 8080] [--host 127.0.0.1] [--sandbox-port 8765] [--home .airflow_home]
[--timeout 180]``; ``python scripts/airflow_local.py --print-env`` prints the CLI line only.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"
#: The customer the printed commands simulate (the example DAGs' default recipient, +1 555 010 0200).
CUSTOMER = "15550100200"
#: The interface the UI and API listen on by default: loopback, since the admin login is printed on screen.
DEFAULT_HOST = "127.0.0.1"
#: The sandbox's port, the one the sandbox page (docs/sandbox.md) uses: the same at every start.
SANDBOX_PORT = 8765
#: The variables of :func:`build_env` that the Airflow CLI needs next to ``make airflow`` (the printed line).
CLI_ENV = (
    "AIRFLOW_HOME",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__TEST_CONNECTION",
    "AIRFLOW__API__BASE_URL",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
)


def ui_url(api_port: int, host: str = DEFAULT_HOST) -> str:
    """
    Return the address of the UI and API (``[api] base_url``): loopback unless the API listens on a given address.

    :param api_port: The API server's port.
    :param host: The interface it listens on (``0.0.0.0`` / ``::``: every one; the URL then names loopback).
    """
    name = DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host
    return f"http://{f'[{name}]' if ':' in name else name}:{api_port}"


def build_env(home: Path, dags_folder: Path, api_port: int, host: str = DEFAULT_HOST) -> dict[str, str]:
    """
    Return the environment of every Airflow command this script runs.

    :param home: The Airflow home (``AIRFLOW_HOME``).
    :param dags_folder: The DAGs folder.
    :param api_port: The API server's (and UI's) port.
    :param host: The interface the API server listens on (default: loopback only).
    """
    url = ui_url(api_port, host)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # standalone starts `airflow ...` from PATH
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": str(api_port),
            # links to the UI (approval messages, notifications) and the receiver client's default
            "AIRFLOW__API__BASE_URL": url,
            # where task processes report to; Airflow's default assumes port 8080
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        }
    )
    return env


def cli_env_line(env: dict[str, str]) -> str:
    """
    Return one shell line that points the Airflow CLI of another shell at this Airflow (``export ...``).

    :param env: The environment from :func:`build_env` (it holds no secret: connections live in the database).
    """
    return "export " + " ".join(f"{name}={shlex.quote(env[name])}" for name in CLI_ENV if name in env)


def sandbox_port_to_use(preferred: int = SANDBOX_PORT) -> tuple[int, str | None]:
    """
    Return the port to start the sandbox on, and a message when it is not ``preferred`` (which is taken).

    :param preferred: The stable port (0: any free port, no message).
    """
    if preferred == 0:
        return 0, None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError as err:
            return 0, (
                f"Port {preferred} on 127.0.0.1 is taken ({err.strerror or err}), so the sandbox takes a free port "
                f"instead, printed below. A connection you made by hand for port {preferred} will not reach it: "
                f"stop what holds the port (`ss -ltnp 'sport = :{preferred}'`) or use `--sandbox-port`."
            )
    return preferred, None


def sandbox_conn_json(port: int, webhook_token: str | None = None) -> str:
    """
    Return the ``itnio_default`` connection for a sandbox CLI on ``port`` (it runs with the default account).

    :param port: The sandbox's port.
    :param webhook_token: The receiver's ``webhook_token`` extra (None: none).
    """
    from airflow_provider_itnio.sandbox.server import (
        DEFAULT_API_KEY,
        DEFAULT_API_SECRET,
        DEFAULT_APP_ID,
        DEFAULT_BUSINESS_PHONES,
    )

    extra: dict[str, Any] = {"app_id": DEFAULT_APP_ID, "business_phone": DEFAULT_BUSINESS_PHONES[0]}
    if webhook_token is not None:
        extra["webhook_token"] = webhook_token
    return json.dumps(
        {
            "conn_type": "itnio",
            "description": "The local itniotech sandbox started by `make airflow`",
            "login": DEFAULT_API_KEY,
            "password": DEFAULT_API_SECRET,
            "host": f"http://127.0.0.1:{port}",
            "extra": extra,
        }
    )


def webhook_url(api_port: int, token: str, conn_id: str = "itnio_default") -> str:
    """
    Return the receiver's address on the local API server (where the sandbox pushes).

    :param api_port: The API server's port.
    :param token: The connection's ``webhook_token``.
    :param conn_id: The ``itnio`` connection.
    """
    return f"http://127.0.0.1:{api_port}/itnio/webhook/{conn_id}/{token}"


def ensure_webhook_plugin(home: Path) -> Path | None:
    """
    Make ``airflow standalone`` load the webhook receiver; return the plugin file written, if one was needed.

    The installed package registers the plugin through the ``airflow.plugins`` entry point; an editable install made
    before that entry point existed does not, so the home's plugins folder then gets a file importing the class.

    :param home: The Airflow home (its plugins folder is ``home/plugins``).
    """
    if "itnio_webhook" in {ep.name for ep in metadata.entry_points(group="airflow.plugins")}:
        return None
    path = home / "plugins" / "itnio_webhook_plugin.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("from airflow_provider_itnio.webhook.plugin import ItnioWebhookPlugin  # noqa: F401\n")
    return path


def point_pushes(sandbox_port: int, push_url: str) -> None:
    """
    Make the sandbox push statuses and customers' messages to ``push_url`` (``POST /sandbox/config``).

    :param sandbox_port: The sandbox's port.
    :param push_url: The receiver's address (it holds the token: it goes in the request body only).
    """
    request = urllib.request.Request(
        f"http://127.0.0.1:{sandbox_port}/sandbox/config",
        data=json.dumps({"push_url": push_url}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except (urllib.error.URLError, OSError) as err:  # HTTPError (a 400) included
        raise RuntimeError(f"the sandbox did not take the push address: {err}") from None


def inbound_command(sandbox_port: int, **message: Any) -> str:
    """
    Return a ``curl`` command that simulates a customer writing (``POST /sandbox/inbound``).

    :param sandbox_port: The sandbox's port.
    :param message: The request's fields (``from``, ``text``, ``type``, ``context``, ``reply_title``...).
    """
    body = json.dumps(message)
    return (
        f"curl -s -X POST http://127.0.0.1:{sandbox_port}/sandbox/inbound "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )


def start_sandbox(port_file: Path, timeout: float = 20.0, port: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    """
    Start ``python -m airflow_provider_itnio.sandbox`` in its own process group; return it and its port.

    :param port_file: Where the sandbox writes its port once it listens (removed first).
    :param timeout: Seconds to wait for it.
    :param port: The port to listen on (0: a free one).
    """
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_itnio.sandbox", "--port", str(port), "--port-file", str(port_file)],
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
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="the interface the UI / API listen on (default: %(default)s, loopback)"
    )
    parser.add_argument(
        "--sandbox-port", type=int, default=SANDBOX_PORT, help="the sandbox's port (default: %(default)s; 0: any)"
    )
    parser.add_argument("--home", type=Path, default=ROOT / ".airflow_home", help="AIRFLOW_HOME")
    parser.add_argument("--dags-folder", type=Path, default=ROOT / "dags_examples")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the API server")
    parser.add_argument(
        "--print-env", action="store_true", help="print the line that points the Airflow CLI at it, and exit"
    )
    args = parser.parse_args(argv)

    home: Path = args.home.resolve()
    env = build_env(home, args.dags_folder.resolve(), args.port, args.host)
    if args.print_env:
        print(cli_env_line(env))
        return 0
    home.mkdir(parents=True, exist_ok=True)
    log = home / "airflow_local.log"

    stopping = False

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    print(f"Airflow home {home}; DAGs folder {args.dags_folder}; log {log}")
    ensure_webhook_plugin(home)
    wanted_port, taken = sandbox_port_to_use(args.sandbox_port)
    if taken:
        print(f"make airflow: {taken}", file=sys.stderr)
    sandbox, sandbox_port = start_sandbox(home / "sandbox.port", port=wanted_port)
    airflow: subprocess.Popen[bytes] | None = None
    try:
        print("Migrating the metadata database ...")
        _airflow(["db", "migrate"], env, log)
        _airflow(["connections", "delete", "itnio_default"], env, log, check=False)
        token = secrets.token_urlsafe(32)
        _airflow(
            ["connections", "add", "itnio_default", "--conn-json", sandbox_conn_json(sandbox_port, token)], env, log
        )
        print(f"Connection itnio_default -> the sandbox at http://127.0.0.1:{sandbox_port}")
        point_pushes(sandbox_port, webhook_url(args.port, token))
        print(f"The sandbox pushes to http://127.0.0.1:{args.port}/itnio/webhook/itnio_default/*** (the receiver)")
        print("Starting `airflow standalone` (api-server, scheduler, dag-processor, triggerer) ...")
        airflow = start_standalone(env, log)
        url = env["AIRFLOW__API__BASE_URL"]
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
            where = "this machine only" if args.host == DEFAULT_HOST else f"every address of {args.host}"
            print(f"  Airflow UI:  {url}  (listening on {where})")
            print(f"  Login:       admin / {password or f'(see {home / PASSWORD_FILE})'}")
            print(f"  Sandbox:     http://127.0.0.1:{sandbox_port}/sandbox/messages  (what it received)")
            print(
                "  CLI:         paste in another shell to use the Airflow CLI with this Airflow (or: make airflow-env)"
            )
            print(f"               {cli_env_line(env)}")
            print("  Try:         trigger itnio_followup, then look at its tasks' XCom (the messageIds); the customer")
            print("               has not written, so each message goes out as its approved template (sent_kind)")
            print("  Two-way:     a customer writes (opens their 24-hour window for session messages):")
            print(f"               {inbound_command(sandbox_port, **{'from': CUSTOMER, 'text': 'Hi'})}")
            print("               unpause itnio_reschedule_on_reply, trigger itnio_appointment_confirm, then tap")
            print("               Reschedule on its buttons (the messageId is in its task's XCom):")
            tap = {"from": CUSTOMER, "type": "button_reply", "context": "<messageId>", "reply_title": "Reschedule"}
            print(f"               {inbound_command(sandbox_port, **tap)}")
            print("               the tap starts a run of itnio_reschedule_on_reply, which answers with free slots")
            print("  Approvals:   trigger itnio_refund_approval: the manager's WhatsApp gets Approve / Reject buttons")
            print(f"               with a link to the task at {url}; tap one with the sandbox (docs/notifications.md,")
            print("               \"Approvals on WhatsApp\"; the request's messageId is in the task's XCom)")
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
