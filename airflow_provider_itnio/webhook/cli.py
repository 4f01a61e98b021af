"""
The provider's commands in Airflow's own command line (Airflow 3.1+): ``airflow itnio ...``.

Airflow finds them through the provider info's ``cli`` key (:func:`get_itnio_cli_commands`), as it finds the
Celery and Edge providers' commands:

``airflow itnio webhook-url CONN_ID [--base-url URL]``
    Print the address to paste into the vendor's console (creating the connection's ``webhook_token`` and
    ``button_key`` when it has none): :func:`airflow_provider_itnio.webhook.__main__.run_url`.
``airflow itnio cleanup [--older-than-days N]``
    Delete the recorded pushes older than the retention: :func:`airflow_provider_itnio.webhook.__main__.run_cleanup`.

``python -m airflow_provider_itnio.webhook url|cleanup`` runs the same code on Airflow versions that do not read
the ``cli`` key. Airflow imports this module for every ``airflow`` command: it imports nothing but Airflow's CLI
definitions, and the commands' code is loaded only when one of them runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

ARG_CONN_ID = Arg(("conn_id",), help="The itnio connection, e.g. itnio_default.")
ARG_BASE_URL = Arg(
    ("--base-url",),
    help="Where the vendor reaches the API server (default: [api] base_url, else http://localhost:8080).",
)
ARG_OLDER_THAN_DAYS = Arg(
    ("--older-than-days",),
    type=float,
    help="Retention in days (default: [itnio] webhook_retention_days, else 90).",
)


def webhook_url_command(args: argparse.Namespace) -> None:
    """
    Run ``airflow itnio webhook-url``; exit with a non-zero status when it fails.

    :param args: The parsed arguments (``conn_id``, ``base_url``).
    """
    from airflow_provider_itnio.webhook.__main__ import run_url

    _exit(run_url(args.conn_id, args.base_url))


def cleanup_command(args: argparse.Namespace) -> None:
    """
    Run ``airflow itnio cleanup``; exit with a non-zero status when it fails.

    :param args: The parsed arguments (``older_than_days``).
    """
    from airflow_provider_itnio.webhook.__main__ import run_cleanup

    _exit(run_cleanup(args.older_than_days))


def _exit(status: int) -> None:
    if status:
        sys.exit(status)


def get_itnio_cli_commands() -> list[Any]:
    """Return the ``airflow itnio`` command group (the provider info's ``cli`` entry)."""
    return [
        GroupCommand(
            name="itnio",
            help="The itniotech WhatsApp provider's webhook receiver (Airflow 3.1+)",
            subcommands=(
                ActionCommand(
                    name="webhook-url",
                    help="Print the address to paste into the vendor's console (creating the connection's token)",
                    func=lazy_load_command("airflow_provider_itnio.webhook.cli.webhook_url_command"),
                    args=(ARG_CONN_ID, ARG_BASE_URL),
                ),
                ActionCommand(
                    name="cleanup",
                    help="Delete the recorded pushes older than the retention",
                    func=lazy_load_command("airflow_provider_itnio.webhook.cli.cleanup_command"),
                    args=(ARG_OLDER_THAN_DAYS,),
                ),
            ),
        )
    ]
