"""
``itnio-sandbox`` / ``python -m airflow_provider_itnio.sandbox``: run the sandbox in the foreground.

``itnio-sandbox tap [--url URL] MESSAGE_ID OPTION`` (or ``tap --to NUMBER OPTION``) asks a running sandbox to
simulate the recipient of a message with buttons (e.g. an approval request) tapping one (``POST /sandbox/tap``),
waits for the push to reach the receiver, and says what it answered.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from airflow_provider_itnio.sandbox.pushes import DEFAULT_PUSH_TIMEOUT, DEFAULT_STATUS_DELAYS
from airflow_provider_itnio.sandbox.server import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_APP_ID,
    DEFAULT_BUSINESS_PHONES,
    DEFAULT_IDLE_TIMEOUT,
    Sandbox,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="itnio-sandbox",
        description="Run a local emulator of the itniotech WhatsApp API (for DAG development and tests).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind, 0 = any free port (default)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="API key (default: %(default)s)")
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET, help="API secret (default: sandbox-secret)")
    parser.add_argument("--app-id", default=DEFAULT_APP_ID, help="application id (default: %(default)s)")
    parser.add_argument(
        "--business-phone",
        action="append",
        dest="business_phones",
        metavar="DIGITS",
        help=f"a business phone of the account, repeatable (default: {DEFAULT_BUSINESS_PHONES[0]})",
    )
    parser.add_argument("--balance", type=int, default=None, help="messages that can be sent (default: unlimited)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API response")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help="seconds a connection may stay silent before it is closed (default: %(default)g)",
    )
    parser.add_argument("--port-file", default=None, help="write the chosen port to this file once listening")
    pushes = parser.add_argument_group("pushes (what the vendor POSTs to you: status reports, customers' messages)")
    pushes.add_argument("--push-url", default=None, metavar="URL", help="push both kinds to this address")
    pushes.add_argument(
        "--status-push-url", default=None, metavar="URL", help="push status reports (message-status-event) here"
    )
    pushes.add_argument(
        "--inbound-push-url", default=None, metavar="URL", help="push customers' messages (up-message-event) here"
    )
    pushes.add_argument(
        "--no-enforce-window",
        dest="enforce_window",
        action="store_false",
        help="deliver session messages even when the customer has not written in 24 h (default: fail them, 131047)",
    )
    pushes.add_argument(
        "--status-delays",
        type=_delays,
        default=DEFAULT_STATUS_DELAYS,
        metavar="SENT,DELIVERED,READ",
        help="seconds after acceptance of each status push (default: %(default)s)",
    )
    pushes.add_argument(
        "--push-time-scale",
        type=float,
        default=1.0,
        help="multiply every push wait (status delays, re-push after 1/3/5 min) by this (default: %(default)g)",
    )
    pushes.add_argument(
        "--push-timeout", type=float, default=DEFAULT_PUSH_TIMEOUT, help="seconds per push (default: %(default)g)"
    )
    pushes.add_argument("--duplicate-probability", type=float, default=0.0, help="chance a push is sent twice")
    pushes.add_argument(
        "--reorder-probability", type=float, default=0.0, help="chance a message's statuses go in reverse order"
    )
    return parser


def _delays(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give three numbers of seconds, e.g. 0.05,0.1,0.2") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError("give three numbers of seconds, e.g. 0.05,0.1,0.2")
    return values


def _write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(f"{port}\n")
    os.replace(tmp, path)


def _print(line: str) -> None:
    print(line, flush=True)


def _log_request(entry: dict[str, Any]) -> None:
    message_id = entry.get("messageId") or ""
    fault = f" [fault: {entry['fault']}]" if entry.get("fault") else ""
    _print(f"{entry.get('method', 'POST')} {entry['path']} -> {entry['status']} {message_id}{fault}".rstrip())


def _log_push(entry: dict[str, Any]) -> None:
    answer = f"http {entry['http_status']}" if entry.get("http_status") is not None else entry.get("error")
    retry = f", again in {entry['retry_in']:g} s" if entry.get("retry_in") is not None else ""
    label = f"{entry['kind']} {entry['status']}" + (" (duplicate)" if entry.get("duplicate") else "")
    where = entry.get("url") or ""
    _print(f"PUSH {label} {entry['messageId']} #{entry['attempt']} -> {where} {entry['outcome']} ({answer}){retry}")


#: Where ``itnio-sandbox tap`` finds the sandbox when neither ``--url`` nor ``ITNIO_SANDBOX_URL`` says.
DEFAULT_SANDBOX_URL = "http://127.0.0.1:8765"


def build_tap_parser() -> argparse.ArgumentParser:
    """Build the parser of ``itnio-sandbox tap``."""
    parser = argparse.ArgumentParser(
        prog="itnio-sandbox tap",
        description="Make the recipient of a message with buttons (or a list) tap one: the running sandbox pushes "
        "the reply to its push address, as the vendor would.",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("ITNIO_SANDBOX_URL", DEFAULT_SANDBOX_URL),
        help="the running sandbox (default: $ITNIO_SANDBOX_URL, else %(default)s)",
    )
    parser.add_argument("--to", metavar="NUMBER", help="tap the newest message with buttons sent to this number")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the push (default %(default)g)")
    parser.add_argument(
        "target", nargs="+", metavar="[MESSAGE_ID] OPTION", help="the message's messageId, and the option's title"
    )
    return parser


def _call(url: str, method: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def tap(argv: Sequence[str]) -> int:
    """
    Run ``itnio-sandbox tap``: ask the sandbox to push a tap, wait for the receiver's answer, and print it.

    :param argv: The arguments after ``tap``.
    :return: 0 when the receiver answered 2xx; 1 when the push failed or did not happen; 2 for a bad request.
    """
    parser = build_tap_parser()
    args = parser.parse_args(argv)
    if args.to is None and len(args.target) != 2:
        parser.error("give MESSAGE_ID OPTION, or --to NUMBER OPTION")
    if args.to is not None and len(args.target) != 1:
        parser.error("with --to, give only OPTION")
    body = {"option": args.target[-1], **({"to": args.to} if args.to else {"message_id": args.target[0]})}
    base = args.url.rstrip("/")
    try:
        status, pushed = _call(f"{base}/sandbox/tap", "POST", body)
        if status != 200:
            print(f"itnio-sandbox tap: {pushed.get('error') if isinstance(pushed, dict) else pushed}", file=sys.stderr)
            return 2
        inbound_url = _call(f"{base}/sandbox/config", "GET")[1]["pushes"].get("inbound_push_url")
    except (OSError, ValueError) as err:
        print(f"itnio-sandbox tap: cannot reach the sandbox at {base}: {err}", file=sys.stderr)
        return 1
    reply = pushed["message"]["interactive"]
    chosen = reply.get(reply["type"], {})
    quoted = pushed["message"]["context"]["id"]
    said = f"+{pushed['from']['phone']} tapped \u201c{chosen.get('title')}\u201d on message {quoted}"
    if not inbound_url:
        print(f"{said}, but the sandbox has no address for customers' messages: nothing was pushed", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.wait
    while True:
        attempts = [
            p
            for p in _call(f"{base}/sandbox/pushes", "GET")[1]
            if p.get("kind") == "inbound" and p.get("messageId") == pushed["messageId"]
        ]
        if attempts:
            last = attempts[-1]
            if last["outcome"] == "ok":
                print(f"{said}: pushed as {pushed['messageId']} to {last['url']}, answered {last['http_status']}")
                return 0
            again = f"; pushed again in {last['retry_in']:g} s" if last.get("retry_in") is not None else ""
            answer = last["http_status"] if last["http_status"] is not None else last.get("error")
            print(f"{said}: the push to {last['url']} got {answer}{again}", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"{said}: the push did not go out within {args.wait:g} s", file=sys.stderr)
            return 1
        time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the sandbox until SIGINT/SIGTERM (or, with ``tap`` first, simulate a tap on a running sandbox).

    :param argv: Command-line arguments (``sys.argv[1:]`` by default).
    :return: The exit code (0 after a clean stop).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tap"]:
        return tap(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        sandbox = Sandbox(
            args.host,
            args.port,
            api_key=args.api_key,
            api_secret=args.api_secret,
            app_id=args.app_id,
            business_phones=args.business_phones or DEFAULT_BUSINESS_PHONES,
            balance=args.balance,
            latency=args.latency,
            idle_timeout=args.idle_timeout,
            on_request=_log_request,
            push_url=args.push_url,
            status_push_url=args.status_push_url,
            inbound_push_url=args.inbound_push_url,
            enforce_window=args.enforce_window,
            status_delays=args.status_delays,
            push_time_scale=args.push_time_scale,
            push_timeout=args.push_timeout,
            duplicate_probability=args.duplicate_probability,
            reorder_probability=args.reorder_probability,
            on_push=_log_push,
        )
        sandbox.start()
    except (ValueError, OSError) as exc:
        print(f"itnio-sandbox: cannot start: {exc}", file=sys.stderr, flush=True)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.port_file:
            _write_port_file(args.port_file, sandbox.port)
        _print(f"Sandbox listening on {sandbox.base_url}")
        _print(f"export {sandbox.env_line()}")
        _print(f"Connection URI: {sandbox.conn_uri()}")
        _print("Control API: GET /sandbox/messages, /sandbox/requests, /sandbox/health; Ctrl-C to stop")
        _print(f"Tap a button: itnio-sandbox tap --url {sandbox.base_url} <messageId> <option title>")
        status_url, inbound_url = (
            sandbox.push_settings()["status_push_url"],
            sandbox.push_settings()["inbound_push_url"],
        )
        _print(f"Pushes: status reports -> {status_url or 'off'}, customers' messages -> {inbound_url or 'off'}")
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _print("Sandbox stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
