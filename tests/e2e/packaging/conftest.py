"""Fixtures of the distribution suite: the repository's scripts, loaded from their files (`scripts/` is no package)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.paths import ROOT


def _load_script(name: str) -> ModuleType:
    """
    Import ``scripts/<name>.py`` as the module ``itnio_scripts_<name>``.

    :param name: The script's file name without ``.py``.
    """
    module_name = f"itnio_scripts_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def check_dist() -> ModuleType:
    """Return ``scripts/check_dist.py`` (``make dist``'s check)."""
    return _load_script("check_dist")


@pytest.fixture(scope="session")
def demo() -> ModuleType:
    """Return ``scripts/demo.py`` (``make demo``: its DAG id and recipient, its XCom reader)."""
    return _load_script("demo")


@pytest.fixture(scope="session")
def uv() -> str:
    """Return the ``uv`` that builds and installs (the venv's: `make install` puts it there)."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    assert found, "uv is needed to build and install the distributions (`make install` installs it in .venv)"
    return found
