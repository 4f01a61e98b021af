"""
The wheel ``make dist`` built, installed as a user installs it, and used from there.

A fresh virtual environment (``uv venv``, Python 3.11) gets Airflow and the wheel (``uv pip install`` with the
project's constraints file, no editable install), and everything then runs from a temporary folder with the
installed commands only, so that the repository is on no path: the sandbox from the ``itnio-sandbox`` console
script, ``airflow db migrate`` (which creates the receiver's tables from the installed migrations), the connection
the sandbox prints added with ``airflow connections add``, ``airflow providers list``, ``airflow connections test``,
and the demo DAG that ``make demo`` runs, copied to a DAGs folder and run with ``airflow dags test``.

Runs only when ``ITNIO_DIST_TESTS=1`` (``make test-dist``, after ``make dist``). ``ITNIO_DIST_AIRFLOW_VERSION`` and
``ITNIO_DIST_CONSTRAINTS`` choose the Airflow (default 3.3.2 and ``constraints/airflow-3.3.2.txt``); uv's cache is
used as configured (``UV_CACHE_DIR``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import requests

from tests.support.paths import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("ITNIO_DIST_TESTS") != "1", reason="ITNIO_DIST_TESTS=1 (make test-dist)"),
]
AIRFLOW_VERSION = os.environ.get("ITNIO_DIST_AIRFLOW_VERSION", "3.3.2")
CONSTRAINTS = ROOT / os.environ.get("ITNIO_DIST_CONSTRAINTS", f"constraints/airflow-{AIRFLOW_VERSION}.txt")
#: Seconds for installing Airflow (a cold uv cache downloads it) and for any one Airflow command.
INSTALL_TIMEOUT = 900
COMMAND_TIMEOUT = 300


@dataclass(frozen=True)
class Installed:
    """The fresh environment: its ``bin`` folder, a folder outside the repository to run in, and the wheel."""

    bin: Path
    workdir: Path
    wheel: Path
    version: str

    def env(self, **extra: str) -> dict[str, str]:
        """
        Return an environment with no trace of the repository's: no Airflow settings, no venv, no ``PYTHONPATH``.

        :param extra: Variables to add.
        """
        dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k not in dropped}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def run(self, args: list[str], env: dict[str, str], what: str) -> str:
        """
        Run one of the environment's commands from the work folder; return its output, or fail naming ``what``.

        :param args: The command (its first word is looked up in the environment's ``bin``).
        :param env: Its environment.
        :param what: How to name it when it fails (never the command line: a connection URI holds the secret).
        """
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{what} failed (exit {done.returncode}):\n{output[-6000:]}"
        return output


def _built_wheel(check_dist: ModuleType) -> tuple[Path, str]:
    """Return this version's wheel in dist/ and the version, after checking that dist/ holds this tree's build."""
    project = check_dist.Project.read(ROOT)
    wheels = sorted((ROOT / "dist").glob(f"{project.dist_stem()}-*.whl"))
    assert len(wheels) == 1, f"expected one {project.dist_stem()} wheel in dist/, found {wheels}: run `make dist`"
    report = check_dist.Report()  # its files only: `make dist` checked the rest
    with zipfile.ZipFile(wheels[0]) as wheel:
        check_dist.check_files(
            wheels[0].name, check_dist.package_members(wheel, project.package), project.package_files(), report
        )
    assert not report.problems, "dist/ does not hold this tree's wheel; run `make dist`:\n" + "\n".join(report.problems)
    return wheels[0], project.version


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, check_dist: ModuleType, uv: str) -> Installed:
    """Create a fresh venv with Airflow and the built wheel (no editable install); return it."""
    wheel, version = _built_wheel(check_dist)
    base = tmp_path_factory.mktemp("built-wheel")
    venv, workdir = base / "venv", base / "work"
    workdir.mkdir()
    uv_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    for command in (
        [uv, "venv", "--quiet", "--python", "3.11", str(venv)],
        [
            uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
            "--constraint", str(CONSTRAINTS), f"apache-airflow=={AIRFLOW_VERSION}", str(wheel),
        ],
    ):  # fmt: skip
        started = time.monotonic()
        done = subprocess.run(command, cwd=workdir, env=uv_env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        assert done.returncode == 0, f"{' '.join(command[:3])} failed:\n{done.stderr[-6000:]}"
        print(f"{' '.join(command[:3])}: {time.monotonic() - started:.0f} s")
    return Installed(bin=venv / "bin", workdir=workdir, wheel=wheel, version=version)


@pytest.fixture
def sandbox(installed: Installed) -> Iterator[tuple[str, str]]:
    """Start ``itnio-sandbox`` from the fresh venv; yield its address and the connection URI it prints."""
    log_path = installed.workdir / "sandbox.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(installed.bin / "itnio-sandbox"), "--port", "0"],
            cwd=installed.workdir,
            env=installed.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        printed: dict[str, str] = {}
        while not {"Sandbox listening on", "Connection URI"} <= set(printed):
            assert process.poll() is None, f"itnio-sandbox exited {process.returncode}: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"itnio-sandbox printed no address in 60 s: {log_path.read_text()}"
            for line in log_path.read_text().splitlines():
                for label in ("Sandbox listening on", "Connection URI"):
                    if line.startswith(label):
                        printed[label] = line.removeprefix(label).lstrip(": ").strip()
            time.sleep(0.1)
        yield printed["Sandbox listening on"], printed["Connection URI"]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_the_installed_package_is_the_wheel_not_the_repository(installed: Installed) -> None:
    probe = (
        "import json, sysconfig, importlib.metadata as m, airflow_provider_itnio as p\n"
        "d = m.distribution('airflow-provider-itnio')\n"
        "print(json.dumps({'file': p.__file__, 'purelib': sysconfig.get_paths()['purelib'], 'version': d.version,"
        " 'direct_url': json.loads(d.read_text('direct_url.json') or '{}')}))"
    )
    found = json.loads(installed.run(["python", "-c", probe], installed.env(), "importing the installed package"))
    site_packages = Path(found["purelib"]).resolve()
    assert Path(found["file"]).resolve().is_relative_to(site_packages), found
    assert site_packages.is_relative_to(installed.bin.parent.resolve()), found
    assert not Path(found["file"]).resolve().is_relative_to(ROOT), found
    assert "dir_info" not in found["direct_url"], found  # an editable or directory install would say so here
    assert found["direct_url"].get("url", "").endswith(installed.wheel.name), found
    assert found["version"] == installed.version


def test_demo_dag_and_connection_test_from_the_installed_wheel(
    installed: Installed, sandbox: tuple[str, str], demo: ModuleType
) -> None:
    base_url, conn_uri = sandbox
    home = installed.workdir / "airflow-home"
    dags = installed.workdir / "dags"
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(dags, ignore_errors=True)
    dags.mkdir(parents=True)
    shutil.copy(ROOT / "dags_examples" / f"{demo.DAG_ID}.py", dags)  # the DAG `make demo` runs
    env = installed.env(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )

    installed.run(["airflow", "db", "migrate"], env, "airflow db migrate")
    # the provider's DB manager ran the installed migrations: its tables exist, stamped at the head revision
    head_probe = (
        "import importlib; from alembic.script import ScriptDirectory; from airflow_provider_itnio import "
        "get_provider_info as g\nmodule, _, name = g()['db-managers'][0].rpartition('.')\n"
        "print(ScriptDirectory(getattr(importlib.import_module(module), name).migration_dir).get_current_head())"
    )
    head = installed.run(["python", "-c", head_probe], env, "reading the migrations' head").strip().splitlines()[-1]
    with sqlite3.connect(home / "airflow.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        stamped = [row[0] for row in db.execute("SELECT version_num FROM alembic_version_itnio")]
    assert {"itnio_message_status", "itnio_inbound_message"} <= tables, sorted(tables)
    assert stamped == [head]

    installed.run(["airflow", "connections", "add", "itnio_default", "--conn-uri", conn_uri], env, "connections add")
    listed = installed.run(["airflow", "providers", "list", "--output", "json"], env, "airflow providers list")
    providers = json.loads(listed[listed.index("[{") : listed.rindex("}]") + 2])
    assert [p["version"] for p in providers if p["package_name"] == "airflow-provider-itnio"] == [installed.version]
    tested = installed.run(["airflow", "connections", "test", "itnio_default"], env, "airflow connections test")
    assert "Connection success!" in tested, tested

    conf = json.dumps({"phone": demo.PHONE, "name": "Ada", "order_id": "A-1042"})
    installed.run(["airflow", "dags", "test", demo.DAG_ID, "--conf", conf], env, f"airflow dags test {demo.DAG_ID}")

    received = requests.get(f"{base_url}/sandbox/messages", timeout=10).json()
    message_ids = demo._xcoms(home / "airflow.db")  # {task_id: messageId}, as `make demo` reads them
    assert len(message_ids) == 3, message_ids
    assert sorted(m["messageId"] for m in received) == sorted(message_ids.values()), (received, message_ids)
    assert {m["body"]["recipient"] for m in received} == {"".join(c for c in demo.PHONE if c.isdigit())}
