"""
A production-like Airflow 3.3 on this machine: PostgreSQL, Redis, CeleryExecutor with two workers, the sandbox.

``make stack`` runs ``up``, ``make stack-down`` runs ``down``; ``status`` tells what runs. Everything lives under
``.stack/`` (git-ignored; ``ITNIO_STACK_DIR`` moves it) and listens on 127.0.0.1 only, on ports chosen free at the
first start and kept in ``.stack/state.json`` (mode 0600, with the generated passwords and keys):

- ``pg/``: a PostgreSQL cluster made with ``initdb`` as the ``postgres`` user (PostgreSQL refuses to run as root),
  run with ``pg_ctl``; database and role ``airflow`` (password authentication over TCP). When the ``postgres``
  user cannot reach ``.stack/`` (a checkout under a ``0700`` folder), ``pg/``, ``pg-run/`` and its log go to
  ``/var/tmp/itnio-stack-<hash of the stack folder>/`` instead;
- ``redis/``: ``redis-server`` with its own config (``bind 127.0.0.1``, a password, no persistence), the broker;
- ``airflow/``: the Airflow home; ``airflow db migrate`` (which also creates the provider's receiver tables
  through its DB manager), the ``itnio_default`` connection to the sandbox, the pool ``itnio_account``;
  then the api-server, scheduler, dag-processor, triggerer and two Celery workers (``worker1``, ``worker2``), each
  its own process group. DAG bundles: ``dags_examples/`` and ``tests/e2e/stack/dags/``. Each worker reports its own
  host name to Airflow (``[core] hostname_callable``), as workers on two machines would. Workers and triggerer run
  without their log servers (Airflow binds those to every interface): the API server reads the task logs from the
  shared log folder;
- the sandbox (``python -m airflow_provider_itnio.sandbox``), its pushes pointed at the API server's webhook
  address (``python -m airflow_provider_itnio.webhook url``), set through its control API so that the webhook
  token is in no command line;
- ``logs/``: each component's output; ``pids/``: a PID file per process (PID and start time, so a reused PID is
  never taken for ours).

``kill worker1`` SIGKILLs one component's process group (an Airflow component or the sandbox) and ``restart
worker1`` starts it again (the failure scenarios of ``tests/e2e/stack/test_faults.py``; :data:`FAILURE_DETECTION` makes
Airflow notice a lost task within about a minute).

``up`` starts whatever is not running and waits until each part is ready (a second ``up`` changes nothing);
``down`` stops the Airflow components first, then the sandbox, Redis and PostgreSQL (SIGTERM to each process
group, SIGKILL after a grace period; ``pg_ctl stop -m fast``), keeping the data for the next ``up``
(``down --purge`` deletes ``.stack/``). Only the standard library is used, so ``down`` works with any Python 3.11.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import glob
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = Path(os.environ.get("ITNIO_STACK_DIR", ROOT / ".stack")).resolve()
ADMIN = "admin"
CONN_ID = "itnio_default"
#: The pool that keeps a whole account under its rate (docs/contributing.md, the production-like stack), and its size.
ACCOUNT_POOL = "itnio_account"
ACCOUNT_POOL_SLOTS = 4
#: Celery workers (their host names) and the task slots of each: 6 slots in all, more than the pool's 4, so the
#: pool (not the workers' size) is what keeps the account under its rate.
WORKERS = ("worker1", "worker2")
WORKER_CONCURRENCY = int(os.environ.get("ITNIO_STACK_WORKER_CONCURRENCY", "3"))
#: Airflow components started with ``airflow <args>``, in start order (stopped in reverse).
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", *WORKERS)
#: Airflow settings that make a lost task instance (a killed worker or task process) be noticed and retried
#: within about a minute instead of 5 to 10 (the defaults): no heartbeat for 45 s (default 300), checked every 5 s
#: (10); queued (sent to a worker) for 180 s (600); orphaned tasks of a dead scheduler adopted every 30 s (300).
FAILURE_DETECTION = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "45",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "180",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
}
#: What ``kill`` and ``restart`` take.
RESTARTABLE = (*AIRFLOW_COMPONENTS, "sandbox")
START_TIMEOUT = 240.0
STOP_GRACE = 45.0
PORT_NAMES = ("postgres", "redis", "api", "sandbox")


class StackError(RuntimeError):
    """A part of the stack did not start or stop; the message ends with the tail of its log."""


# -- paths and state -----------------------------------------------------------------------------------------


class Paths:
    """
    The stack's folders and files under one root.

    :param root: The stack folder (``.stack/``).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.redis = root / "redis"
        self.home = root / "airflow"
        self.python = root / "python"
        self.logs = root / "logs"
        self.pids = root / "pids"
        self.state = root / "state.json"

    @functools.cached_property
    def pg_root(self) -> Path:
        """
        Return the folder of PostgreSQL's files: the stack folder, or one in ``/var/tmp`` when the ``postgres``
        user cannot reach the stack folder (e.g. a checkout under a ``0700`` folder).
        """
        if self.root.is_dir() and _postgres_can_enter(self.root):
            return self.root
        return Path("/var/tmp") / f"itnio-stack-{hashlib.sha1(str(self.root).encode()).hexdigest()[:12]}"

    @property
    def pg(self) -> Path:
        """The PostgreSQL cluster (data directory)."""
        return self.pg_root / "pg"

    @property
    def pg_run(self) -> Path:
        """PostgreSQL's Unix socket folder."""
        return self.pg_root / "pg-run"

    @property
    def pg_log(self) -> Path:
        """PostgreSQL's log."""
        return self.log("postgres") if self.pg_root == self.root else self.pg_root / "postgres.log"

    def log(self, name: str) -> Path:
        """
        Return the output file of a component.

        :param name: The component.
        """
        return self.logs / f"{name}.log"

    def pid(self, name: str) -> Path:
        """
        Return the PID file of a component.

        :param name: The component.
        """
        return self.pids / f"{name}.pid"


def _postgres_can_enter(folder: Path) -> bool:
    try:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-x", str(folder)], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


PATHS = Paths(STACK_DIR)


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """
    Return whether nothing listens on ``127.0.0.1:port``.

    :param port: The port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT does not count
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def load_state() -> dict[str, Any]:
    """Return ``.stack/state.json`` (ports, passwords, keys), or ``{}`` before the first ``up``."""
    try:
        return dict(json.loads(PATHS.state.read_text()))
    except FileNotFoundError:
        return {}


def _save_state(state: Mapping[str, Any]) -> None:
    PATHS.root.mkdir(parents=True, exist_ok=True)
    tmp = PATHS.state.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=2)
    os.replace(tmp, PATHS.state)


def _ensure_state() -> dict[str, Any]:
    state = load_state()
    if not state:
        state = {
            "pg_password": secrets.token_urlsafe(24),
            "redis_password": secrets.token_urlsafe(24),
            "admin_password": secrets.token_urlsafe(12),
            "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "api_secret_key": secrets.token_urlsafe(32),
            "jwt_secret": secrets.token_urlsafe(32),
            "ports": {},
        }
    ports: dict[str, int] = state.setdefault("ports", {})
    anything_running = any(is_running(name) for name in _all_components())
    for name in PORT_NAMES:  # keep the ports while a part runs; else take a new one where the old is taken
        if name not in ports or (not anything_running and not port_is_free(ports[name])):
            ports[name] = free_port()
    _save_state(state)
    return state


def _all_components() -> tuple[str, ...]:
    return ("postgres", "redis", *AIRFLOW_COMPONENTS, "sandbox")


# -- processes -------------------------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks since boot


def read_pid(name: str) -> int | None:
    """
    Return the PID of a running component of ours, or None (no PID file, or that process is gone).

    :param name: The component.
    """
    if name == "postgres":
        try:
            pid = int(PATHS.pg.joinpath("postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:  # a stale postmaster.pid whose PID was reused is not ours
            return pid if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres" else None
        except OSError:
            return None
    try:
        pid_text, started = PATHS.pid(name).read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    return pid if _start_time(pid) == started else None


def is_running(name: str) -> bool:
    """
    Return whether a component of ours runs.

    :param name: The component.
    """
    return read_pid(name) is not None


def _spawn(name: str, argv: list[str], env: Mapping[str, str]) -> int:
    PATHS.logs.mkdir(parents=True, exist_ok=True)
    PATHS.pids.mkdir(parents=True, exist_ok=True)
    with PATHS.log(name).open("ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        log.flush()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=PATHS.root,
            start_new_session=True,  # its own process group: `down` stops the component and its children
        )
    PATHS.pid(name).write_text(f"{process.pid} {_start_time(process.pid)}\n")
    return process.pid


def _stop_group(name: str, grace: float = STOP_GRACE) -> None:
    pid = read_pid(name)
    if pid is None:
        PATHS.pid(name).unlink(missing_ok=True)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    if _group_alive(pid):
        print(f"  {name} did not stop within {grace:g} s: SIGKILL", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while _group_alive(pid):
            time.sleep(0.1)
    PATHS.pid(name).unlink(missing_ok=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies of the group (our Popen children are not waited for by this process) count as gone
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def tail(path: Path, size: int = 3000) -> str:
    """
    Return the end of a log file.

    :param path: The file.
    :param size: Characters to return at most.
    """
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def wait_until(condition: Callable[[], Any], what: str, timeout: float, names: tuple[str, ...] = ()) -> Any:
    """
    Return the first truthy value of ``condition()``; fail early when one of ``names`` has died.

    :param condition: A callable without arguments.
    :param what: What is awaited, for the error.
    :param timeout: Seconds to wait at most.
    :param names: Components that must stay alive meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for name in names:
            if not is_running(name):
                raise StackError(f"{name} exited while waiting for {what}:\n{tail(PATHS.log(name))}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {name}:\n{tail(PATHS.log(name), 1500)}" for name in names)
            raise StackError(f"timed out after {timeout:g} s waiting for {what}\n{logs}")
        time.sleep(0.5)


# -- PostgreSQL --------------------------------------------------------------------------------------------------


def _pg_bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise StackError("PostgreSQL is not installed: run `make install-stack` (scripts/install_stack_deps.sh)")
    return found[-1]


def _as_postgres(*argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",
    )


def _psql(state: Mapping[str, Any], sql: str, database: str = "postgres") -> str:
    result = _as_postgres(
        _pg_bin("psql"),
        "-h",
        str(PATHS.pg_run),
        "-p",
        str(state["ports"]["postgres"]),
        "-U",
        "postgres",
        "-d",
        database,
        "-v",
        "ON_ERROR_STOP=1",
        "-tAc",
        sql,
    )
    if result.returncode != 0:
        raise StackError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


def start_postgres(state: dict[str, Any]) -> None:
    """
    Initialise (first time) and start the PostgreSQL cluster in ``.stack/pg``; create role and database ``airflow``.

    :param state: The stack state (port, password).
    """
    port = state["ports"]["postgres"]
    PATHS.pg_root.mkdir(mode=0o755, parents=True, exist_ok=True)
    for folder in (PATHS.pg, PATHS.pg_run):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "postgres", "postgres")
    PATHS.pg.chmod(0o700)
    PATHS.logs.mkdir(parents=True, exist_ok=True)
    log = PATHS.pg_log
    log.touch()
    shutil.chown(log, "postgres", "postgres")
    if not (PATHS.pg / "PG_VERSION").exists():
        # local (socket) connections by peer: only the postgres user; TCP connections need a password
        result = _as_postgres(
            _pg_bin("initdb"), "-D", str(PATHS.pg), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
            "--auth-local=peer", "--auth-host=scram-sha-256",
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
    if not is_running("postgres"):
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={PATHS.pg_run}"
        result = _as_postgres(
            _pg_bin("pg_ctl"), "-D", str(PATHS.pg), "-l", str(log), "-o", options, "-w", "-t", "60", "start"
        )
        if result.returncode != 0:
            raise StackError(f"pg_ctl start failed:\n{result.stdout}\n{result.stderr}\n{tail(log)}")
    if _psql(state, "SELECT 1 FROM pg_roles WHERE rolname = 'airflow'") != "1":
        _psql(state, f"CREATE ROLE airflow LOGIN PASSWORD '{state['pg_password']}'")
    if _psql(state, "SELECT 1 FROM pg_database WHERE datname = 'airflow'") != "1":
        _psql(state, "CREATE DATABASE airflow OWNER airflow")


def stop_postgres() -> None:
    """Stop the PostgreSQL cluster (``pg_ctl stop -m fast``: sessions are ended, the data is kept)."""
    if not is_running("postgres"):
        return
    result = _as_postgres(_pg_bin("pg_ctl"), "-D", str(PATHS.pg), "-m", "fast", "-w", "-t", "60", "stop")
    if result.returncode != 0:
        raise StackError(f"pg_ctl stop failed:\n{result.stdout}\n{result.stderr}")


def database_url(state: Mapping[str, Any], driver: str = "postgresql+psycopg2", database: str = "airflow") -> str:
    """
    Return the SQLAlchemy URL of a database of the cluster, as the role ``airflow`` (the metadata database's).

    :param state: The stack state.
    :param driver: The URL scheme.
    :param database: The database (another than the metadata database: see :func:`create_database`).
    """
    return f"{driver}://airflow:{state['pg_password']}@127.0.0.1:{state['ports']['postgres']}/{database}"


def _scratch_database(name: str) -> str:
    reserved = ("airflow", "postgres", "template0", "template1")
    if not (name.isascii() and name.isidentifier() and name == name.lower()) or name in reserved:
        raise StackError(f"{name!r} is not a name for a scratch database (a lower-case identifier, not airflow)")
    return name


def create_database(state: Mapping[str, Any], name: str) -> str:
    """
    Create an empty database of the cluster, owned by the role ``airflow`` (dropping an older one of that name
    first), for tests that need a PostgreSQL of their own; return its SQLAlchemy URL. Never the metadata database.

    :param state: The stack state.
    :param name: The database, e.g. ``itnio_test_store``.
    """
    name = _scratch_database(name)
    drop_database(state, name)
    _psql(state, f"CREATE DATABASE {name} OWNER airflow")
    return database_url(state, database=name)


def drop_database(state: Mapping[str, Any], name: str) -> None:
    """
    Drop a database made by :func:`create_database` (ending its sessions), if it exists.

    :param state: The stack state.
    :param name: The database.
    """
    _psql(state, f"DROP DATABASE IF EXISTS {_scratch_database(name)} WITH (FORCE)")


# -- Redis ---------------------------------------------------------------------------------------------------------


def start_redis(state: Mapping[str, Any]) -> None:
    """
    Start ``redis-server`` (or ``valkey-server``) on 127.0.0.1 with a password and no persistence.

    :param state: The stack state.
    """
    if is_running("redis"):
        return
    binary = shutil.which("valkey-server") or shutil.which("redis-server")
    if binary is None:
        raise StackError("redis-server is not installed: run `make install-stack` (scripts/install_stack_deps.sh)")
    PATHS.redis.mkdir(parents=True, exist_ok=True)
    config = PATHS.redis / "redis.conf"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(
            f"bind 127.0.0.1\nport {state['ports']['redis']}\nprotected-mode yes\ndaemonize no\n"
            f'dir {PATHS.redis}\nsave ""\nappendonly no\nrequirepass {state["redis_password"]}\n'
        )
    _spawn("redis", [binary, str(config)], os.environ)
    wait_until(lambda: _redis_ping(state), "redis to answer PING", 30, ("redis",))


def _redis_ping(state: Mapping[str, Any]) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", state["ports"]["redis"]), timeout=2) as sock:
            sock.sendall(f"AUTH {state['redis_password']}\r\nPING\r\n".encode())
            answer = b""
            while b"PONG" not in answer and len(answer) < 200:
                chunk = sock.recv(100)
                if not chunk:
                    break
                answer += chunk
            return b"+PONG" in answer
    except OSError:
        return False


# -- Airflow --------------------------------------------------------------------------------------------------------


def api_url(state: Mapping[str, Any]) -> str:
    """
    Return the API server's base URL (the UI).

    :param state: The stack state.
    """
    return f"http://127.0.0.1:{state['ports']['api']}"


def sandbox_url(state: Mapping[str, Any]) -> str:
    """
    Return the sandbox's base URL.

    :param state: The stack state.
    """
    return f"http://127.0.0.1:{state['ports']['sandbox']}"


def airflow_env(state: Mapping[str, Any], component: str | None = None) -> dict[str, str]:
    """
    Return the environment of every Airflow process of the stack (the caller's ``AIRFLOW*`` variables dropped).

    :param state: The stack state.
    :param component: A worker's name gives it its own host name.
    """
    ports = state["ports"]
    base = api_url(state)
    bundles = [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(ROOT / folder), "refresh_interval": 30},
        }
        for name, folder in (("dags_examples", "dags_examples"), ("stack_scenarios", "tests/e2e/stack/dags"))
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(PATHS.home),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PATHS.python), os.environ.get("PYTHONPATH")])),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__FERNET_KEY": state["fernet_key"],
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "itnio_stack_hostname.hostname",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(PATHS.home / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url(state),
            "AIRFLOW__CELERY__BROKER_URL": (f"redis://:{state['redis_password']}@127.0.0.1:{ports['redis']}/0"),
            "AIRFLOW__CELERY__RESULT_BACKEND": database_url(state, "db+postgresql+psycopg2"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(ports["api"]),
            "AIRFLOW__API__WORKERS": "2",
            "AIRFLOW__API__SECRET_KEY": state["api_secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": state["jwt_secret"],
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(PATHS.home / "logs"),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # failure detection within about a minute (docs/contributing.md: a worker is killed)
            **FAILURE_DETECTION,
        }
    )
    if component in WORKERS:
        env["ITNIO_STACK_HOSTNAME"] = component
    return env


def _write_home(state: Mapping[str, Any]) -> None:
    PATHS.home.mkdir(parents=True, exist_ok=True)
    PATHS.python.mkdir(parents=True, exist_ok=True)
    fd = os.open(PATHS.home / "passwords.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({ADMIN: state["admin_password"]}, handle)
    (PATHS.python / "itnio_stack_hostname.py").write_text(
        '"""The host name Airflow records for task instances: each stack worker\'s own (ITNIO_STACK_HOSTNAME)."""\n\n'
        "import os\nimport socket\n\n\n"
        "def hostname() -> str:\n"
        '    """Return the worker\'s name, else the machine\'s."""\n'
        '    return os.environ.get("ITNIO_STACK_HOSTNAME") or socket.getfqdn()\n'
    )


def _airflow_cli(state: Mapping[str, Any], name: str, *args: str, timeout: float = 600.0) -> str:
    """Run ``airflow <args>`` (or ``python <args>`` when ``args[0]`` is ``-m``/``-c``); return its standard output."""
    argv = [sys.executable, *args] if args[0] in ("-m", "-c") else [sys.executable, "-m", "airflow", *args]
    with PATHS.log(name).open("ab") as log:
        result = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=log, env=airflow_env(state), timeout=timeout, check=False
        )
    if result.returncode != 0:
        raise StackError(f"{name} exited with {result.returncode}:\n{tail(PATHS.log(name))}")
    return result.stdout.decode()


_UPSERT_CONNECTION = """
import json, sys
from airflow.models import Connection
from airflow.utils.session import create_session
spec = json.loads(sys.stdin.read())
with create_session() as session:
    conn = session.query(Connection).filter(Connection.conn_id == spec["conn_id"]).one_or_none()
    extra = json.loads(conn.extra) if conn is not None and conn.extra else {}
    extra.update(spec["extra"])
    if conn is None:
        conn = Connection(conn_id=spec["conn_id"], conn_type="itnio")
        session.add(conn)
    conn.conn_type, conn.host, conn.login = "itnio", spec["host"], spec["login"]
    conn.set_password(spec["password"])
    conn.set_extra(json.dumps(extra))
"""


def _upsert_connection(state: Mapping[str, Any]) -> None:
    """Create or update ``itnio_default`` to point at the sandbox (keeping its other extras: the webhook token)."""
    spec = {
        "conn_id": CONN_ID,
        "host": sandbox_url(state),
        "login": "sandbox-key",
        "password": "sandbox-secret",
        "extra": {"app_id": "sandbox-app", "business_phone": "15550001111"},
    }
    with PATHS.log("setup").open("ab") as log:
        result = subprocess.run(
            [sys.executable, "-c", _UPSERT_CONNECTION],
            input=json.dumps(spec).encode(),
            stdout=log,
            stderr=log,
            env=airflow_env(state),
            timeout=300,
            check=False,
        )
    if result.returncode != 0:
        raise StackError(f"creating the {CONN_ID} connection failed:\n{tail(PATHS.log('setup'))}")


def _http(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        raw = answer.read()
    return json.loads(raw) if raw else None


def api_token(state: Mapping[str, Any]) -> str:
    """
    Return a JWT for the REST API (the admin's generated password).

    :param state: The stack state.
    """
    answer = _http("POST", f"{api_url(state)}/auth/token", {"username": ADMIN, "password": state["admin_password"]})
    return str(answer["access_token"])


def _health(state: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        health = _http("GET", f"{api_url(state)}/api/v2/monitor/health", timeout=5)
    except (OSError, ValueError):
        return None
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return health if all((health.get(part) or {}).get("status") == "healthy" for part in parts) else None


def _worker_ready(name: str) -> bool:
    # celery prints "celery@<name> ready." once it consumes; only the lines after our latest start count
    text = tail(PATHS.log(name), 200_000)
    return f"celery@{name} ready." in text.rsplit(f"starting {name}\n", 1)[-1]


def _sandbox_ready(state: Mapping[str, Any]) -> bool:
    try:
        return bool(_http("GET", f"{sandbox_url(state)}/sandbox/health", timeout=2).get("ok"))
    except (OSError, ValueError):
        return False


def ensure_pool(state: Mapping[str, Any], token: str) -> None:
    """
    Create (or resize) the pool ``itnio_account`` with :data:`ACCOUNT_POOL_SLOTS` slots.

    :param state: The stack state.
    :param token: A REST API JWT.
    """
    body = {
        "name": ACCOUNT_POOL,
        "slots": ACCOUNT_POOL_SLOTS,
        "description": "itnio batch sends of one account: max_per_second = account rate / slots",
        "include_deferred": False,
    }
    try:
        _http("POST", f"{api_url(state)}/api/v2/pools", body, token)
    except urllib.error.HTTPError as err:
        if err.code != 409:
            raise
        _http("PATCH", f"{api_url(state)}/api/v2/pools/{ACCOUNT_POOL}", body, token)


def configure_sandbox_pushes(state: Mapping[str, Any]) -> None:
    """
    Point the sandbox's pushes at the API server's webhook receiver (the token stays out of logs and argv).

    :param state: The stack state.
    """
    url = _airflow_cli(
        state, "setup", "-m", "airflow_provider_itnio.webhook", "url", CONN_ID, "--base-url", api_url(state)
    ).strip()
    _http("POST", f"{sandbox_url(state)}/sandbox/config", {"push_url": url})


# -- commands -------------------------------------------------------------------------------------------------------


def up() -> dict[str, Any]:
    """Start every part that does not run yet, wait until all are ready, and return the state."""
    started = time.monotonic()
    PATHS.root.mkdir(parents=True, exist_ok=True)
    state = _ensure_state()
    if all(is_running(name) for name in _all_components()) and _health(state):
        print("The stack is already running.", flush=True)
        _print_access(state)
        return state
    print(f"Starting the stack in {PATHS.root} ...", flush=True)
    start_postgres(state)
    print(f"  postgres   127.0.0.1:{state['ports']['postgres']} (data in {PATHS.pg})", flush=True)
    start_redis(state)
    print(f"  redis      127.0.0.1:{state['ports']['redis']}", flush=True)
    _write_home(state)
    airflow_missing = [name for name in AIRFLOW_COMPONENTS if not is_running(name)]
    if airflow_missing:
        _airflow_cli(state, "db-migrate", "db", "migrate")
        _upsert_connection(state)
        print("  airflow db migrate done; connection itnio_default -> sandbox", flush=True)
    for name in airflow_missing:
        _spawn_airflow(state, name)
    sandbox_started = not is_running("sandbox")
    if sandbox_started:
        _spawn_sandbox(state)
    wait_until(lambda: _sandbox_ready(state), "the sandbox", 60, ("sandbox",))
    wait_until(lambda: _health(state), "Airflow's components to report healthy", START_TIMEOUT, AIRFLOW_COMPONENTS)
    for name in WORKERS:
        wait_until(functools.partial(_worker_ready, name), f"celery worker {name}", START_TIMEOUT, (name,))
    if sandbox_started or airflow_missing:
        configure_sandbox_pushes(state)
    ensure_pool(state, api_token(state))
    print(f"Stack up in {time.monotonic() - started:.0f} s.", flush=True)
    _print_access(state)
    return state


def _spawn_airflow(state: Mapping[str, Any], name: str) -> int:
    """Start one Airflow component (``airflow <name>``, a worker with ``celery worker``); return its PID."""
    # no log servers (--skip-serve-logs): Airflow's bind every interface; the API server reads the task logs
    # from the shared log folder instead
    if name in WORKERS:
        args = ["celery", "worker", "--concurrency", str(WORKER_CONCURRENCY), "-H", name, "--skip-serve-logs"]
    else:
        args = [name, "--skip-serve-logs"] if name == "triggerer" else [name]
    return _spawn(name, [sys.executable, "-m", "airflow", *args], airflow_env(state, name))


def _spawn_sandbox(state: Mapping[str, Any]) -> int:
    argv = [sys.executable, "-m", "airflow_provider_itnio.sandbox", "--port", str(state["ports"]["sandbox"])]
    return _spawn("sandbox", argv, {**os.environ, "PYTHONUNBUFFERED": "1"})


def kill(name: str, sig: int = signal.SIGKILL) -> None:
    """
    Send a signal to a component's whole process group (a worker: the Celery parent, its pool processes, their
    task supervisors and task processes) and wait until the group is gone; the PID file is removed.

    :param name: An Airflow component (``worker1``, ``scheduler``...) or ``sandbox``.
    :param sig: The signal (default SIGKILL: nothing is cleaned up, as when a machine dies).
    """
    if name not in RESTARTABLE:
        raise StackError(f"{name} cannot be killed or restarted alone (only {', '.join(RESTARTABLE)})")
    pid = read_pid(name)
    if pid is None:
        raise StackError(f"{name} does not run")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    wait_until(lambda: not _group_alive(pid), f"{name}'s processes to end", STOP_GRACE)
    PATHS.pid(name).unlink(missing_ok=True)


def restart(name: str) -> None:
    """
    Start one Airflow component or the sandbox again (after :func:`kill`, or stopping it first when it runs) and
    wait until it is ready: a worker until Celery reports it ready, the sandbox until it answers (its pushes pointed
    at the receiver again; it starts with nothing recorded), another component until the API server reports it
    healthy.

    :param name: An Airflow component or ``sandbox``.
    """
    if name not in RESTARTABLE:
        raise StackError(f"{name} cannot be killed or restarted alone (only {', '.join(RESTARTABLE)})")
    state = load_state()
    _stop_group(name)
    if name == "sandbox":
        _spawn_sandbox(state)
        wait_until(lambda: _sandbox_ready(state), "the sandbox", 60, ("sandbox",))
        configure_sandbox_pushes(state)
        return
    _spawn_airflow(state, name)
    if name in WORKERS:
        wait_until(functools.partial(_worker_ready, name), f"celery worker {name}", START_TIMEOUT, (name,))
    else:
        wait_until(lambda: _health(state), f"{name} to report healthy", START_TIMEOUT, (name,))


def _print_access(state: Mapping[str, Any]) -> None:
    print(
        f"\n  Airflow UI   {api_url(state)}   login: {ADMIN} / {state['admin_password']}\n"
        f"  sandbox      {sandbox_url(state)}  (GET /sandbox/messages; pushes go to the API server's webhook)\n"
        f"  workers      {', '.join(WORKERS)} (CeleryExecutor, {WORKER_CONCURRENCY} slots each), "
        f"pool {ACCOUNT_POOL} = {ACCOUNT_POOL_SLOTS} slots\n"
        f"  logs         {PATHS.logs}/\n  stop with    make stack-down\n",
        flush=True,
    )


def down(purge: bool = False) -> None:
    """
    Stop every part, Airflow first, then the sandbox, Redis and PostgreSQL.

    :param purge: Also delete ``.stack/`` (database, logs, state).
    """
    for name in (*reversed(AIRFLOW_COMPONENTS), "sandbox", "redis"):
        if is_running(name):
            print(f"  stopping {name}", flush=True)
        _stop_group(name)
    if is_running("postgres"):
        print("  stopping postgres", flush=True)
        stop_postgres()
    if purge:
        for folder in {PATHS.pg_root, PATHS.root}:
            if folder.exists():
                shutil.rmtree(folder)
                print(f"  deleted {folder}", flush=True)
    print("The stack is down.", flush=True)


def status() -> int:
    """Print what runs; return 0 when every part runs, else 1."""
    all_up = True
    for name in _all_components():
        pid = read_pid(name)
        all_up &= pid is not None
        print(f"  {name:<14} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0 if all_up else 1


def main(argv: list[str] | None = None) -> int:
    """
    Run ``up``, ``down``, ``status``, ``kill <component>`` or ``restart <component>``.

    :param argv: Command-line arguments.
    """
    parser = argparse.ArgumentParser(prog="stack.py", description=__doc__.split("\n\n")[0].strip())
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start what does not run yet; print the UI URL and login")
    down_parser = sub.add_parser("down", help="stop everything (the data is kept)")
    down_parser.add_argument("--purge", action="store_true", help="also delete .stack/")
    sub.add_parser("status", help="show what runs (exit 1 unless everything does)")
    kill_parser = sub.add_parser("kill", help="SIGKILL one component's process group (e.g. worker1)")
    kill_parser.add_argument("name", choices=RESTARTABLE)
    restart_parser = sub.add_parser("restart", help="start one component again and wait until it is ready")
    restart_parser.add_argument("name", choices=RESTARTABLE)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
            return 0
        if args.command == "down":
            down(purge=args.purge)
            return 0
        if args.command == "kill":
            kill(args.name)
            return 0
        if args.command == "restart":
            restart(args.name)
            return 0
        return status()
    except StackError as err:
        print(f"stack.py {args.command}: {err}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
