"""
A whole Airflow 3 for end-to-end tests: API server (with the itnio plugin), scheduler, dag-processor and triggerer.

:class:`AirflowStack` makes a throw-away Airflow home (SQLite, LocalExecutor), runs ``airflow db migrate`` (which
also runs the provider's DB manager), imports the given connections into the metadata database, and starts the
four components as subprocesses, each in its own process group, on free loopback ports. Task processes and the
triggerer reach the API server through ``[core] execution_api_server_url``, as in production; the receiver client
finds it through ``[api] base_url``.

Helpers: a JWT from ``POST /auth/token`` (simple auth manager, a generated password), the REST API
(:meth:`AirflowStack.api`), triggering a DAG and waiting for its run, reading the metadata database with SQLAlchemy,
recording every ``task_instance`` state change (:meth:`AirflowStack.record_state_history`: SQLite triggers,
because Airflow 3 keeps no such history itself) and every component's log plus the task logs
(:meth:`AirflowStack.all_logs`).

Usage::

    port = free_port()
    with Sandbox(push_url=webhook_url(port, "itnio_default", token)) as sandbox:
        with AirflowStack(home, dags=[...], connections={...}, api_port=port) as stack:
            run_id = stack.trigger_dag("my_dag", conf={...})
            assert stack.wait_for_run("my_dag", run_id) == "success"

The caller's ``AIRFLOW*`` environment variables (e.g. the test session's home) are not passed on.

:func:`receiver_stack` does all of that for the receiver's end-to-end tests: a sandbox pushing to the stack's
receiver, the connection with its ``webhook_token``, and no secret in any log afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import sqlalchemy as sa

from tests.support.servers import free_port as _free_port
from tests.support.servers import plugins_folder
from tests.support.servers import stop as _stop

__all__ = [
    "COMPONENTS",
    "AirflowStack",
    "AirflowStackError",
    "free_port",
    "plugins_folder",
    "receiver_stack",
    "webhook_url",
]

#: The components started, in this order (stopped in the reverse order).
COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Run states after which a run does not change any more.
FINISHED = frozenset({"success", "failed"})
#: ``task_instance`` columns recorded by :meth:`AirflowStack.record_state_history`.
HISTORY_COLUMNS = ("dag_id", "task_id", "run_id", "map_index", "try_number", "state", "next_method", "trigger_id")
#: The user of the simple auth manager the harness logs in as.
ADMIN = "admin"


class AirflowStackError(RuntimeError):
    """A component did not start or died; the message ends with the tail of its log."""


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    return _free_port()


def webhook_url(api_port: int, conn_id: str, token: str) -> str:
    """
    Return the receiver's address on a stack's API server (what the vendor, or the sandbox, pushes to).

    :param api_port: The API server's port.
    :param conn_id: The ``itnio`` connection.
    :param token: Its ``webhook_token``.
    """
    return f"http://127.0.0.1:{api_port}/itnio/webhook/{conn_id}/{token}"


class AirflowStack:
    """
    Start and stop a whole Airflow 3 (see the module docstring); a context manager.

    :param home: An empty folder for the Airflow home (created when missing).
    :param dags: DAG files copied into the home's DAGs folder.
    :param connections: Connections imported into the metadata database: ``{conn_id: {"conn_type": ...,
        "login": ..., "password": ..., "host": ..., "extra": {...}}}``.
    :param api_port: The API server's port (0: a free one; pass one to know the webhook address beforehand).
    :param env: More environment variables for every component (e.g. ``AIRFLOW__CORE__PARALLELISM``).
    :param start_timeout: Seconds each start step may take.
    """

    def __init__(
        self,
        home: Path,
        *,
        dags: Iterable[Path] = (),
        connections: Mapping[str, Mapping[str, Any]] | None = None,
        api_port: int = 0,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 180.0,
    ) -> None:
        self.home = Path(home)
        self.dags_folder = self.home / "dags"
        self.logs_folder = self.home / "logs"
        self.api_port = api_port or free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.dags = [Path(path) for path in dags]
        self.connections = {key: dict(value) for key, value in (connections or {}).items()}
        self.start_timeout = start_timeout
        self.fernet_key = _fernet_key()
        self.password = secrets.token_urlsafe(16)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None
        self._engine: sa.engine.Engine | None = None
        self.env = self._build_env(dict(env or {}))

    # -- setup -------------------------------------------------------------------------------------------

    def _build_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.home / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs_folder),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                # the log servers of task processes and of the triggerer: free ports, not the shared defaults
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            }
        )
        env.update(extra)
        return env

    def _prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.dags_folder.mkdir(exist_ok=True)
        self.logs_folder.mkdir(exist_ok=True)
        plugins_folder(self.home)
        for dag in self.dags:
            shutil.copy(dag, self.dags_folder / dag.name)
        (self.home / "passwords.json").write_text(json.dumps({ADMIN: self.password}))
        self._airflow("db", "migrate")
        if self.connections:
            path = self.home / "connections.json"
            path.write_text(json.dumps(self.connections))
            try:
                self._airflow("connections", "import", str(path))
            finally:
                path.unlink()  # it holds secrets

    def _airflow(self, *args: str) -> None:
        log = self.logs_folder / f"cli-{args[0]}-{args[1]}.log"
        with log.open("wb") as out:
            result = subprocess.run(
                [sys.executable, "-m", "airflow", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                timeout=self.start_timeout,
                check=False,
            )
        if result.returncode != 0:
            raise AirflowStackError(f"`airflow {' '.join(args)}` exited with {result.returncode}:\n{_tail(log)}")

    def start(self) -> AirflowStack:
        """Prepare the home, start every component and wait until the API server reports them healthy."""
        self._prepare()
        try:
            for name in COMPONENTS:
                args = [name, "--host", "127.0.0.1", "--port", str(self.api_port)] if name == "api-server" else [name]
                with self.component_log(name).open("wb") as log:
                    self.processes[name] = subprocess.Popen(
                        [sys.executable, "-m", "airflow", *args],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=self.env,
                        start_new_session=True,
                    )
            self.wait_until(self._healthy, f"every component healthy at {self.base_url}", self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _healthy(self) -> bool:
        try:
            answer = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
        except requests.RequestException:
            return False
        if answer.status_code != 200:
            return False
        health = answer.json()
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(part) or {}).get("status") == "healthy" for part in parts)

    def stop(self) -> None:
        """Stop every component (SIGTERM to its process group, SIGKILL after 30 s), the last started first."""
        for name in reversed(list(self.processes)):
            _stop(self.processes[name])
        if self._engine is not None:
            self._engine.dispose()

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- waiting -----------------------------------------------------------------------------------------

    def check_alive(self) -> None:
        """Raise :class:`AirflowStackError` when a component has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AirflowStackError(
                    f"airflow {name} exited with {process.returncode}:\n{_tail(self.component_log(name))}"
                )

    def wait_until(self, condition: Any, what: str, timeout: float = 120.0, interval: float = 0.5) -> Any:
        """
        Return the first truthy value of ``condition()``, checking the components are alive in between.

        :param condition: A callable without arguments.
        :param what: What is awaited, for the error.
        :param timeout: Seconds to wait at most.
        :param interval: Seconds between two checks.
        :raises AirflowStackError: A component died, or ``timeout`` passed.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {name}:\n{_tail(self.component_log(name), 1500)}" for name in self.processes)
                raise AirflowStackError(f"Timed out after {timeout} s waiting for {what}\n{tails}")
            time.sleep(interval)

    # -- the REST API ------------------------------------------------------------------------------------

    def token(self) -> str:
        """Return a JWT for the REST API (``POST /auth/token`` with the admin's generated password)."""
        if self._token is None:
            answer = requests.post(
                f"{self.base_url}/auth/token", json={"username": ADMIN, "password": self.password}, timeout=30
            )
            answer.raise_for_status()
            self._token = str(answer.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """
        Call the REST API (``/api/v2`` + ``path``) with the JWT.

        :param method: ``GET``, ``POST``, ``PATCH``, ...
        :param path: The path after ``/api/v2``, e.g. ``/dags/my_dag``.
        :param kwargs: Passed to :func:`requests.request` (``json``, ``params``, ...).
        """
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.base_url}/api/v2{path}", headers=headers, timeout=30, **kwargs)

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """
        Return the DAG once the dag-processor has parsed it (REST ``GET /dags/{dag_id}``).

        :param dag_id: The DAG.
        :param timeout: Seconds to wait at most.
        """

        def parsed() -> dict[str, Any] | None:
            answer = self.api("GET", f"/dags/{dag_id}")
            return answer.json() if answer.status_code == 200 else None

        return dict(self.wait_until(parsed, f"DAG {dag_id} to be parsed", timeout))

    def import_errors(self) -> list[dict[str, Any]]:
        """Return the DAG files' import errors the API reports."""
        return list(self.api("GET", "/importErrors").json().get("import_errors", []))

    def trigger_dag(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """
        Trigger a run of ``dag_id`` through the REST API and return its run id.

        :param dag_id: The DAG (waited for until parsed).
        :param conf: The run's ``conf``.
        """
        self.wait_for_dag(dag_id)
        answer = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})})
        if answer.status_code not in (200, 201):
            raise AirflowStackError(f"triggering {dag_id} answered {answer.status_code}: {answer.text}")
        return str(answer.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        """
        Return the state of a DAG run.

        :param dag_id: The DAG.
        :param run_id: The run.
        """
        answer = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        answer.raise_for_status()
        return str(answer.json()["state"])

    def wait_for_run(self, dag_id: str, run_id: str, states: Iterable[str] = FINISHED, timeout: float = 120.0) -> str:
        """
        Return the state of a DAG run once it is one of ``states``.

        :param dag_id: The DAG.
        :param run_id: The run.
        :param states: The states to wait for (default: finished).
        :param timeout: Seconds to wait at most.
        """
        wanted = frozenset(states)

        def reached() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in wanted else None

        return str(self.wait_until(reached, f"run {dag_id}/{run_id} to be one of {sorted(wanted)}", timeout, 1.0))

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """
        Return the run's task instances by task id (REST API).

        :param dag_id: The DAG.
        :param run_id: The run.
        """
        answer = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        answer.raise_for_status()
        return {ti["task_id"]: ti for ti in answer.json()["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """
        Return an XCom value (REST API, deserialized).

        :param dag_id: The DAG.
        :param run_id: The run.
        :param task_id: The task.
        :param key: The XCom key.
        """
        answer = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"deserialize": True},
        )
        answer.raise_for_status()
        return answer.json()["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """
        Return a task try's log as text (REST API; the structured events as JSON lines).

        :param dag_id: The DAG.
        :param run_id: The run.
        :param task_id: The task.
        :param try_number: The try.
        """
        answer = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": True},
            headers={"Accept": "application/json"},
        )
        answer.raise_for_status()
        content = answer.json().get("content", [])
        return "\n".join(item if isinstance(item, str) else json.dumps(item) for item in content)

    # -- the metadata database ---------------------------------------------------------------------------

    @property
    def engine(self) -> sa.engine.Engine:
        """A SQLAlchemy engine on the stack's metadata database."""
        if self._engine is None:
            self._engine = sa.create_engine(f"sqlite:///{self.home / 'airflow.db'}", connect_args={"timeout": 30})
        return self._engine

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """
        Return the rows of a query on the metadata database as dicts.

        :param sql: The query, with ``:name`` parameters.
        :param params: The parameters.
        """
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(sa.text(sql), params).mappings()]

    def record_state_history(self) -> None:
        """
        Record every insert and state change of ``task_instance`` (and every new ``trigger``) in side tables.

        ``itnio_test_ti_history`` gets the :data:`HISTORY_COLUMNS` and ``seq`` (order) for each change;
        ``itnio_test_trigger_history`` the ``id``, ``classpath`` and (encrypted) ``kwargs`` of each trigger row,
        which Airflow deletes once no task uses it.
        """
        columns = ", ".join(HISTORY_COLUMNS)
        new_values = ", ".join(f"NEW.{column}" for column in HISTORY_COLUMNS)
        statements = [
            f"CREATE TABLE IF NOT EXISTS itnio_test_ti_history (seq INTEGER PRIMARY KEY AUTOINCREMENT, {columns})",
            "CREATE TABLE IF NOT EXISTS itnio_test_trigger_history (id INTEGER, classpath TEXT, kwargs TEXT)",
            "CREATE TRIGGER IF NOT EXISTS itnio_test_ti_insert AFTER INSERT ON task_instance BEGIN "
            f"INSERT INTO itnio_test_ti_history ({columns}) VALUES ({new_values}); END",
            "CREATE TRIGGER IF NOT EXISTS itnio_test_ti_update AFTER UPDATE ON task_instance "
            "WHEN NEW.state IS NOT OLD.state OR NEW.next_method IS NOT OLD.next_method BEGIN "
            f"INSERT INTO itnio_test_ti_history ({columns}) VALUES ({new_values}); END",
            "CREATE TRIGGER IF NOT EXISTS itnio_test_trigger_insert AFTER INSERT ON trigger BEGIN "
            "INSERT INTO itnio_test_trigger_history (id, classpath, kwargs) "
            "VALUES (NEW.id, NEW.classpath, NEW.kwargs); END",
        ]
        with self.engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)

    def state_history(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """
        Return the recorded changes of one task instance, oldest first (see :meth:`record_state_history`).

        :param dag_id: The DAG.
        :param run_id: The run.
        :param task_id: The task.
        """
        return self.rows(
            "SELECT * FROM itnio_test_ti_history WHERE dag_id = :d AND run_id = :r AND task_id = :t ORDER BY seq",
            d=dag_id,
            r=run_id,
            t=task_id,
        )

    def trigger_kwargs(self, stored: str) -> dict[str, Any]:
        """
        Return a trigger's arguments as stored in the ``trigger`` table's ``kwargs`` column.

        Airflow stores them as JSON, Fernet-encrypted (with the stack's key) when the scheduler wrote them, plain
        when a task process deferred through the Execution API (Airflow 3.3): both are read.

        :param stored: The column's text.
        """
        if not stored.startswith("{"):
            from cryptography.fernet import Fernet

            stored = Fernet(self.fernet_key.encode()).decrypt(stored.encode()).decode()
        value = json.loads(stored)
        if isinstance(value, dict) and value.get("__type") == "dict" and "__var" in value:  # Airflow's serde
            value = value["__var"]
        return dict(value)

    # -- logs --------------------------------------------------------------------------------------------

    def component_log(self, name: str) -> Path:
        """
        Return the path of a component's output (``logs/<name>.log``).

        :param name: One of :data:`COMPONENTS`.
        """
        return self.logs_folder / f"{name}.log"

    def deferral_race(self, dag_id: str) -> bool:
        """
        Return True when the scheduler failed a task of ``dag_id`` over Airflow's own deferral race.

        A trigger that fires within seconds of the deferral can beat the scheduler to the deferring process's
        executor event; the scheduler then marks the resumed task instance failed ("finished with state success,
        but the task instance's state attribute is queued"): apache/airflow#66374 and #72716, not the provider.

        :param dag_id: The DAG whose task instances to look for.
        """
        log = (self.logs_folder / "scheduler.log").read_text(errors="replace")
        return any(
            f"<TaskInstance: {dag_id}." in line and "finished with state success, but the task instance's state" in line
            for line in log.splitlines()
        )

    def all_logs(self) -> dict[str, str]:
        """Return every log file under the home's ``logs`` folder (components, CLI, tasks) by relative path."""
        return {
            str(path.relative_to(self.logs_folder)): path.read_text(errors="replace")
            for path in sorted(self.logs_folder.rglob("*"))
            if path.is_file()
        }


@contextlib.contextmanager
def receiver_stack(
    home: Path,
    dags: Iterable[Path],
    *,
    conn_id: str = "itnio_default",
    env: Mapping[str, str] | None = None,
    **sandbox_options: Any,
) -> Iterator[Any]:
    """
    Yield a started :class:`AirflowStack` whose connection ``conn_id`` is a sandbox that pushes to the stack's
    receiver; once both are stopped, check that neither the webhook token nor the sandbox's API secret is in a log.

    The stack gets three attributes: ``sandbox`` (the :class:`~airflow_provider_itnio.sandbox.Sandbox`),
    ``webhook`` (the receiver's address) and ``webhook_token``.

    :param home: An empty folder for the Airflow home.
    :param dags: DAG files for the stack.
    :param conn_id: The ``itnio`` connection the sandbox is, with its ``webhook_token``.
    :param env: More environment variables for every component.
    :param sandbox_options: Passed to the ``Sandbox`` (e.g. ``status_delays``).
    """
    from airflow_provider_itnio.sandbox import Sandbox

    port, token = free_port(), secrets.token_urlsafe(32)
    webhook = webhook_url(port, conn_id, token)
    with Sandbox(push_url=webhook, **sandbox_options) as sandbox:
        connection = json.loads(sandbox.conn_json())
        connection["extra"]["webhook_token"] = token
        stack: Any = AirflowStack(home, dags=dags, connections={conn_id: connection}, api_port=port, env=env)
        stack.sandbox, stack.webhook, stack.webhook_token = sandbox, webhook, token
        with stack:
            yield stack
    for name, text in stack.all_logs().items():
        assert token not in text, name
        assert sandbox.api_secret not in text, name


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"
