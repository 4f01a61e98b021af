"""Sensors of the itniotech provider (Airflow 3.1+): wait on what the vendor pushes about a message."""

from __future__ import annotations
