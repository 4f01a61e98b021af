"""Shared helpers of the benchmarks: a sandbox in its own process, the Airflow connection, result output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow_provider_itnio.sandbox.server import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_APP_ID,
    DEFAULT_BUSINESS_PHONES,
)
from bench.record import RESULT_PREFIX, emit

__all__ = ["RESULT_PREFIX", "ROOT", "SandboxProcess", "emit", "recipients"]

ROOT = Path(__file__).resolve().parents[1]


class SandboxProcess:
    """
    Run ``python -m airflow_provider_itnio.sandbox`` in a separate process (its CPU does not share our GIL).

    :param latency: Seconds the sandbox adds to every API answer.
    """

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> SandboxProcess:
        port_file = Path(tempfile.mkdtemp(prefix="itnio-bench-")) / "port"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow_provider_itnio.sandbox",
                "--port-file",
                str(port_file),
                "--latency",
                str(self.latency),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.05)
        self.port = int(port_file.read_text().strip())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    @property
    def base_url(self) -> str:
        """Return ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def conn_json(self) -> str:
        """Return the ``itnio_default`` connection for this sandbox, as Airflow's JSON form."""
        return json.dumps(
            {
                "conn_type": "itnio",
                "login": DEFAULT_API_KEY,
                "password": DEFAULT_API_SECRET,
                "host": self.base_url,
                "extra": {"app_id": DEFAULT_APP_ID, "business_phone": DEFAULT_BUSINESS_PHONES[0]},
            }
        )

    def use_as_default_connection(self) -> None:
        """Point ``AIRFLOW_CONN_ITNIO_DEFAULT`` at this sandbox (for hooks created in this process)."""
        os.environ["AIRFLOW_CONN_ITNIO_DEFAULT"] = self.conn_json()

    def reset(self) -> None:
        """Forget recorded messages (keeps the sandbox's memory flat between rounds)."""
        import requests

        requests.delete(f"{self.base_url}/sandbox/messages", timeout=10).raise_for_status()

    def messages(self) -> list[dict[str, Any]]:
        """Return the accepted messages."""
        import requests

        response = requests.get(f"{self.base_url}/sandbox/messages", timeout=60)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result


def recipients(n: int, start: int = 0) -> list[str]:
    """Return ``n`` distinct valid recipient numbers."""
    return [f"861380{i:07d}" for i in range(start, start + n)]
