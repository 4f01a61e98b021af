"""
``make dist``'s check (scripts/check_dist.py), run as ``make dist`` runs it, on real builds (``uv build``, hatchling)
of a copy of the project: a clean build passes, and a file a ``.gitignore`` keeps out of the distributions, an entry
point naming a missing module, a README that PyPI would not render as Markdown and a build older than the source
are each named.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

pytestmark = pytest.mark.slow
SCRIPT = ROOT / "scripts" / "check_dist.py"
PACKAGE = "airflow_provider_itnio"


def _copy_project(dest: Path) -> Path:
    """Copy what a build reads (pyproject.toml, the README, the licence, the package) to ``dest``; return it."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / PACKAGE, dest / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _build(uv: str, project: Path, out: Path) -> None:
    done = subprocess.run([uv, "build", "--out-dir", str(out), str(project)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]


def _check(out: Path, project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--root", str(project)], capture_output=True, text=True, cwd=project
    )


def test_a_clean_build_passes(tmp_path: Path, uv: str) -> None:
    project = tmp_path / "src"
    project.mkdir()
    _copy_project(project)
    _build(uv, project, tmp_path / "dist")
    done = _check(tmp_path / "dist", project)
    assert done.returncode == 0, done.stderr
    assert "problem" not in done.stderr
    package_files = [p for p in (project / PACKAGE).rglob("*") if p.is_file()]
    wheel_line = next(line for line in done.stdout.splitlines() if line.startswith("OK ") and ".whl" in line)
    assert f"{len(package_files)} of them the package's" in wheel_line, done.stdout


def test_what_a_build_leaves_out_or_gets_wrong_is_named(tmp_path: Path, uv: str) -> None:
    project = tmp_path / "src"
    project.mkdir()
    _copy_project(project)
    hidden = sorted(p.relative_to(project).as_posix() for p in (project / PACKAGE).rglob("*.mako"))
    assert hidden, "the package ships Alembic's script.py.mako: the migrations need it"
    # a .gitignore pattern that hides a file the package needs (hatchling honours .gitignore)
    (project / ".gitignore").write_text("*.mako\n")
    pyproject = (project / "pyproject.toml").read_text()
    # a README PyPI shows as plain text, and an entry point whose module is not in the package
    (project / "README.txt").write_text((project / "README.md").read_text())
    pyproject = re.sub(r"(?m)^readme = .*$", 'readme = "README.txt"', pyproject)
    pyproject += '\n[project.entry-points.itnio_check_dist_test]\nghost = "airflow_provider_itnio.ghost:Plugin"\n'
    (project / "pyproject.toml").write_text(pyproject)
    _build(uv, project, tmp_path / "dist")
    # a source file edited after the build
    init = project / PACKAGE / "__init__.py"
    init.write_text(init.read_text() + "# edited after the build\n")

    done = _check(tmp_path / "dist", project)

    assert done.returncode == 1
    problems = done.stderr
    for path in hidden:
        assert re.search(rf"\.whl: missing {re.escape(path)}\b", problems), problems
        assert re.search(rf"\.tar\.gz: missing {re.escape(path)}\b", problems), problems
    assert (
        "entry point itnio_check_dist_test:ghost names airflow_provider_itnio.ghost, which the wheel lacks" in problems
    )
    assert "Description-Content-Type is 'text/plain'" in problems
    assert f"{PACKAGE}/__init__.py differs from the source tree" in problems
    assert "OK " not in done.stdout
