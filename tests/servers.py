"""
Start and stop the real servers tests talk to: a free loopback port, ``airflow api-server`` until it is healthy.

One place for what the connection-form, receiver, window and stack tests all need.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import pytest
import requests


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    """
    Stop a server a test started (its own process group), politely first.

    :param process: The server's process, started with ``start_new_session=True``.
    """
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def plugins_folder(home: Path) -> Path:
    """
    Return a plugins folder for ``home`` that makes Airflow load the itnio webhook plugin.

    The installed package registers the plugin through the ``airflow.plugins`` entry point; an editable install
    made before that entry point existed does not, so the folder then holds a file importing the same class.

    :param home: The Airflow home (the folder is ``home/plugins``).
    """
    plugins = home / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    if "itnio_webhook" not in {ep.name for ep in metadata.entry_points(group="airflow.plugins")}:
        (plugins / "itnio_webhook_plugin.py").write_text(
            "from airflow_provider_itnio.webhook.plugin import ItnioWebhookPlugin  # noqa: F401\n"
        )
    return plugins


@contextmanager
def api_server(port: int, log_path: Path, env: Mapping[str, str], *, timeout: float = 120) -> Iterator[str]:
    """
    Run ``airflow api-server`` on ``127.0.0.1:port`` until the block ends; yield its base URL once it is healthy.

    :param port: The port to listen on.
    :param log_path: Where its output goes (quoted when it does not start).
    :param env: Its whole environment.
    :param timeout: Seconds it may take to answer ``/api/v2/monitor/health``.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"airflow api-server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{base_url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server did not answer in {timeout:g} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base_url
    finally:
        stop(process)
