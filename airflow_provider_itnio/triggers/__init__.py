"""Triggers of the itniotech provider (Airflow 3.1+): waits that run in the triggerer, not on a worker."""

from __future__ import annotations
