"""A local emulator of the itniotech WhatsApp Business API (the provider's sandbox).

Standard library + nothing else; no Airflow import, so ``itnio-sandbox`` starts fast without Airflow.

>>> from airflow_provider_itnio.sandbox import Sandbox
>>> with Sandbox() as sb:  # doctest: +SKIP
...     print(sb.env_line())
"""

from __future__ import annotations

from airflow_provider_itnio.sandbox.server import Sandbox, SandboxConfig

__all__ = ["Sandbox", "SandboxConfig"]
