"""
A real HTTP server that answers every request with one fixed answer: what stands at a wrong ``receiver_url``.

An auth proxy (401, 403), a redirect to a login page (302), a web server without the plugin (405, an HTML 200),
or a struggling one (503, 429): the receiver client must tell configuration errors from transient ones.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FixedAnswerServer:
    """
    Answer every request with ``status``, ``headers`` and ``body``; record the requests' method and path.

    :param status: The HTTP status.
    :param body: The body.
    :param headers: More headers (``Content-Type`` defaults to ``text/html``).
    """

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = {"Content-Type": "text/html; charset=utf-8", **(headers or {})}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Authorization header)
        self._lock = threading.Lock()
        fixed = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                with fixed._lock:
                    fixed.requests.append((self.command, self.path, self.headers.get("authorization")))
                self.send_response(fixed.status)
                for name, value in fixed.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(fixed.body)))
                self.end_headers()
                self.wfile.write(fixed.body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                """Keep quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FixedAnswerServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def seen(self) -> list[tuple[str, str, str | None]]:
        """Return the requests answered so far."""
        with self._lock:
            return list(self.requests)
