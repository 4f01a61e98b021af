"""
Start and stop the real servers tests talk to: a free loopback port, ``airflow api-server`` until it is healthy.

One place for what the connection-form, receiver, window and stack tests all need.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

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
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or too busy starting to answer in 2 s
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server did not answer in {timeout:g} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base_url
    finally:
        stop(process)


class CountingProxy:
    """
    A real HTTP server between the triggers and the API server that forwards every request and records it.

    :param target: The API server's base URL.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, JSON body or None)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests.append((self.command, self.path, json.loads(body) if body else None))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.request(  # long enough for a long poll (the API server holds it up to 30 s)
                    self.command, proxy.target + self.path, data=body or None, headers=headers, timeout=120
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward

            def log_message(self, format: str, *args: Any) -> None:
                """Keep quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def seen(self) -> list[tuple[str, str, Any]]:
        """Return the requests forwarded so far."""
        with self._lock:
            return list(self.requests)
