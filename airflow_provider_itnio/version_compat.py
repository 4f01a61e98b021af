"""
Which Airflow this is: the one place in the provider that knows (like the official providers' ``version_compat``).

Sending works on Airflow 2.11 and 3.x; what runs on the Airflow 3 API server (the webhook receiver, its assets,
the status sensor and trigger, approvals on WhatsApp) needs Airflow 3.1+. A module that needs it starts with::

    from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS, airflow_3_1_needed

    if not AIRFLOW_V_3_1_PLUS:
        raise airflow_3_1_needed("ItnioMessageStatusSensor")

    from airflow.triggers.base import BaseTrigger  # what needs Airflow 3.1 comes after the gate

The version is read from the installed distribution's metadata, without importing Airflow (the webhook CLI and the
plugin entry point stay light).
"""

from __future__ import annotations

import functools
from importlib import metadata

__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_1_PLUS",
    "MIN_AIRFLOW",
    "airflow_3_1_needed",
    "get_base_airflow_version_tuple",
    "require_airflow_3_1",
]

#: The oldest Airflow whose API server can serve the receiver.
MIN_AIRFLOW = (3, 1)


@functools.cache
def get_base_airflow_version_tuple() -> tuple[int, ...]:
    """Return the installed Airflow's major and minor version (``3.1.0rc1`` gives ``(3, 1)``)."""
    from packaging.version import Version

    return Version(metadata.version("apache-airflow")).release[:2]


#: Whether the installed Airflow is 3.0 or later.
AIRFLOW_V_3_0_PLUS: bool = get_base_airflow_version_tuple() >= (3, 0)
#: Whether the installed Airflow is 3.1 or later: it can run the webhook receiver and what reads from it.
AIRFLOW_V_3_1_PLUS: bool = get_base_airflow_version_tuple() >= MIN_AIRFLOW


def airflow_3_1_needed(what: str) -> ImportError:
    """
    Return the ``ImportError`` that says ``what`` needs Airflow 3.1+ (for a gated module to raise).

    :param what: What needs it, e.g. ``the itnio webhook receiver``.
    """
    installed = metadata.version("apache-airflow")
    return ImportError(
        f"{what} needs Airflow {MIN_AIRFLOW[0]}.{MIN_AIRFLOW[1]} or later (it runs on the Airflow 3 API "
        f"server); this is Airflow {installed}. Sending messages works on this Airflow; receiving pushes "
        f"does not."
    )


def require_airflow_3_1(what: str) -> None:
    """
    Raise an ``ImportError`` saying that ``what`` needs Airflow 3.1+ when the installed Airflow is older.

    :param what: What needs it, e.g. ``the itnio webhook receiver``.
    """
    if not AIRFLOW_V_3_1_PLUS:
        raise airflow_3_1_needed(what)
