"""
Command line of the webhook receiver (Airflow 3.1+).

``python -m airflow_provider_itnio.webhook url CONN_ID [--base-url URL]``
    Print the address to paste into the vendor's console for the ``itnio`` connection ``CONN_ID``:
    ``{base URL}/itnio/webhook/{CONN_ID}/{token}``. When the connection is stored in the metadata database and has
    no ``webhook_token`` extra, a strong random one (``secrets.token_urlsafe(32)``) is added to it first; so is a
    ``button_key`` (which signs approval buttons) when it has none (missing, null or empty), also when the token was
    there already. The base URL defaults to ``[api] base_url`` (else ``http://localhost:8080``): pass the address
    the vendor reaches the API server at. The address is the only thing printed on standard output; the token
    appears nowhere else. A connection defined by an environment variable or a secrets backend cannot be changed
    from here: add the extra there (without ``button_key``, its API secret signs the buttons).

``python -m airflow_provider_itnio.webhook cleanup [--older-than-days N]``
    Delete the status history, inbound messages and approval taps that arrived more than ``N`` days ago, and the
    message statuses not updated for ``N`` days. ``N`` defaults to ``[itnio] webhook_retention_days`` (else 90).
    Run it daily (a cron job, or a DAG with a ``BashOperator``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import secrets
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from airflow_provider_itnio.connection_fields import WEBHOOK_TOKEN_EXTRA
from airflow_provider_itnio.webhook import require_airflow_3_1

TOKEN_EXTRA = WEBHOOK_TOKEN_EXTRA
DEFAULT_BASE_URL = "http://localhost:8080"
URL_PREFIX = "/itnio"


class CommandError(Exception):
    """A command that cannot do what it was asked; the message says why (it never holds a token)."""


def webhook_url(base_url: str, conn_id: str, token: str) -> str:
    """
    Return the webhook address of a connection.

    :param base_url: Where the vendor reaches Airflow's API server (with any path it is served under).
    :param conn_id: The connection id.
    :param token: The connection's ``webhook_token``.
    """
    return f"{base_url.rstrip('/')}{URL_PREFIX}/webhook/{quote(conn_id, safe='')}/{quote(token, safe='')}"


def _default_base_url() -> str:
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback=None) or DEFAULT_BASE_URL


def _token_of(conn: Any) -> str | None:
    token = (conn.extra_dejson or {}).get(TOKEN_EXTRA)
    return token.strip() if isinstance(token, str) and token.strip() else None


def _has_button_key(extra: dict[str, Any]) -> bool:
    """Return whether ``extra`` holds a ``button_key`` (a non-empty string or list; anything else is the user's)."""
    from airflow_provider_itnio.connection_fields import BUTTON_KEY_EXTRA

    value = extra.get(BUTTON_KEY_EXTRA)
    if value is None:
        return False
    if isinstance(value, str | list):
        return bool(value.strip() if isinstance(value, str) else value)
    return True  # not ours to replace: the receiver and the notifier refuse it, saying what it must be


def ensure_token(conn_id: str) -> tuple[str, bool]:
    """
    Return the connection's webhook token and whether it was just created.

    A connection stored in the metadata database also gets a random ``button_key`` when it has none (missing, null
    or empty), whether or not its token was created now: buttons are then signed with it (those already sent, with
    the API secret's key, keep answering).

    :param conn_id: An ``itnio`` connection.
    :raises CommandError: When the connection is unknown, of another type, or has no token and is not stored in the
        metadata database (or is shadowed by another definition, which Airflow reads first).
    """
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from airflow_provider_itnio.connection_fields import BUTTON_KEY_EXTRA, CONN_TYPE

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        raise CommandError(f"There is no connection {conn_id!r}.") from None
    if conn.conn_type != CONN_TYPE:
        raise CommandError(f"Connection {conn_id!r} is of type {conn.conn_type!r}, not {CONN_TYPE!r}.")
    token = _token_of(conn)
    if token is not None and _has_button_key(dict(conn.extra_dejson or {})):
        return token, False

    with create_session() as session:
        stored = session.query(Connection).filter(Connection.conn_id == conn_id).one_or_none()
        if token is not None and (stored is None or _token_of(stored) != token):
            return token, False  # read from an environment variable or a secrets backend: not changed from here
        if stored is None:
            raise CommandError(
                f"Connection {conn_id!r} has no {TOKEN_EXTRA!r} extra and is not stored in the metadata database "
                "(it comes from an environment variable or a secrets backend): add the extra there, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        extra = dict(stored.extra_dejson or {})
        created = _token_of(stored) is None
        if created:
            extra[TOKEN_EXTRA] = secrets.token_urlsafe(32)
        if not _has_button_key(extra):  # signs approval buttons; kept when the token is rotated
            extra[BUTTON_KEY_EXTRA] = secrets.token_urlsafe(32)
            print(f"Added a {BUTTON_KEY_EXTRA!r} extra to connection {conn_id!r}.", file=sys.stderr)
        if extra != (stored.extra_dejson or {}):
            stored.set_extra(json.dumps(extra))
    if not created and token is not None:
        return token, False
    token = _token_of(Connection.get_connection_from_secrets(conn_id))
    if token is None:
        raise CommandError(
            f"Added a {TOKEN_EXTRA!r} extra to connection {conn_id!r} in the metadata database, but Airflow reads "
            "that connection from an environment variable or a secrets backend first: add the extra there."
        )
    return token, True


def cleanup(older_than_days: float) -> dict[str, int]:
    """
    Delete what arrived more than ``older_than_days`` days ago; return the number of rows deleted by table.

    :param older_than_days: The retention, in days.
    """
    from airflow.utils.session import create_session

    from airflow_provider_itnio.webhook import store

    cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=older_than_days)
    with create_session() as session:
        return store.cleanup(session, cutoff)


def _retention_days() -> float:
    from airflow.configuration import conf

    from airflow_provider_itnio.webhook.store import DEFAULT_RETENTION_DAYS

    return conf.getfloat("itnio", "webhook_retention_days", fallback=float(DEFAULT_RETENTION_DAYS))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_itnio.webhook",
        description="The itnio webhook receiver (Airflow 3.1+ API server).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    url = commands.add_parser(
        "url", help="Print the address to paste into the vendor's console (creating the connection's token)."
    )
    url.add_argument("conn_id", help="The itnio connection, e.g. itnio_default.")
    url.add_argument(
        "--base-url",
        help=f"Where the vendor reaches the API server (default: [api] base_url, else {DEFAULT_BASE_URL}).",
    )
    clean = commands.add_parser("cleanup", help="Delete recorded pushes older than the retention.")
    clean.add_argument(
        "--older-than-days",
        type=float,
        help="Retention in days (default: [itnio] webhook_retention_days, else 90).",
    )
    return parser


def _airflow_can_run_it() -> bool:
    """Return whether this Airflow runs the receiver; else say why on standard error."""
    try:
        require_airflow_3_1("The itnio webhook receiver")
    except ImportError as err:
        print(f"error: {err}", file=sys.stderr)
        return False
    return True


def run_url(conn_id: str, base_url: str | None) -> int:
    """
    Print the connection's webhook address (creating its token first when it has none); return the exit status.

    The address is the only thing printed on standard output; what was created and errors go to standard error.

    :param conn_id: The ``itnio`` connection.
    :param base_url: Where the vendor reaches the API server (default: ``[api] base_url``).
    """
    if not _airflow_can_run_it():
        return 2
    try:
        token, created = ensure_token(conn_id)
    except CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if created:
        print(f"Created a new {TOKEN_EXTRA!r} extra on connection {conn_id!r}.", file=sys.stderr)
    print(webhook_url(base_url or _default_base_url(), conn_id, token))
    return 0


def run_cleanup(older_than_days: float | None) -> int:
    """
    Apply the retention and print what was deleted as JSON; return the exit status.

    :param older_than_days: The retention in days (default: ``[itnio] webhook_retention_days``, else 90).
    """
    if not _airflow_can_run_it():
        return 2
    days = older_than_days if older_than_days is not None else _retention_days()
    if days < 0:
        print("error: --older-than-days must not be negative.", file=sys.stderr)
        return 1
    deleted = cleanup(days)
    print(json.dumps({"older_than_days": days, "deleted": deleted}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the command line; return the exit status.

    :param argv: The arguments (default: ``sys.argv[1:]``).
    """
    args = _parser().parse_args(argv)
    if args.command == "url":
        return run_url(args.conn_id, args.base_url)
    return run_cleanup(args.older_than_days)


if __name__ == "__main__":
    sys.exit(main())
