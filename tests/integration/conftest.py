"""
Fixtures shared by the integration modules: the module-scoped API servers with the receiver.

Each is module-scoped: every module that asks for one gets its own server, started for it and stopped after it.
"""

from __future__ import annotations

from tests.support.receiver import scheduled, server
from tests.support.window import env

__all__ = ["env", "scheduled", "server"]
