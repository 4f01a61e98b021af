"""
The package declares what it imports, and imports what it declares (``pyproject.toml``).

Read from the files: every import in ``airflow_provider_itnio/`` (with :mod:`ast`) is traced to the installed
distribution whose files hold the module, and that distribution must be a declared run-time dependency, one of
their own requirements (what Airflow brings: the guideline is Airflow's packages before anything new), or in a
declared extra. Each declared run-time dependency must hold a module the package imports. Runs on both venvs
(``make test`` on Airflow 3.3, ``make test-compat`` on 2.11), so each line's imports are traced where they resolve.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.paths import ROOT

PACKAGE = ROOT / "airflow_provider_itnio"


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _gate_line(tree: ast.Module) -> int | None:
    """Return the line of a module-level ``raise airflow_3_1_needed(...)`` (the 3.1+ gate), if the module has one."""
    for statement in tree.body:
        if isinstance(statement, ast.If):
            for node in ast.walk(statement):
                if (
                    isinstance(node, ast.Raise)
                    and isinstance(node.exc, ast.Call)
                    and isinstance(node.exc.func, ast.Name)
                    and node.exc.func.id == "airflow_3_1_needed"
                ):
                    return node.lineno
    return None


def _imports() -> Iterator[tuple[Path, int, str, bool]]:
    """
    Yield each absolute import of the package: file, line, module, and whether it may be absent on this Airflow.

    An import may be absent when it sits in a function (e.g. the Airflow 2 connection form's Flask widgets) or
    after a module's Airflow 3.1+ gate (the receiver's FastAPI): the other Airflow line's run traces it.
    """
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        gate = _gate_line(tree)
        optional: set[int] = set()
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                optional.update(id(n) for n in ast.walk(func))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                may_be_absent = id(node) in optional or (gate is not None and node.lineno > gate)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, node.lineno, alias.name, may_be_absent
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield path, node.lineno, node.module, may_be_absent


def _third_party(module: str) -> bool:
    top = module.split(".")[0]
    return top not in sys.stdlib_module_names and top != "airflow_provider_itnio"


@cache
def _file_owners() -> dict[str, str]:
    """Return each installed file's distribution (``airflow/providers/common/compat/sdk.py`` -> ``apache-...``)."""
    owners: dict[str, str] = {}
    for dist in md.distributions():
        for file in dist.files or ():
            owners.setdefault(str(file), canonicalize_name(dist.metadata["Name"]))
    return owners


def _owner(module: str) -> str | None:
    """Return the distribution holding ``module`` (the deepest importable part of a dotted name), or None."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.origin in (None, "namespace", "built-in", "frozen"):
            continue
        for root in map(Path, sys.path):
            try:
                relative = Path(spec.origin).relative_to(root)
            except ValueError:
                continue
            owner = _file_owners().get(str(relative))
            if owner:
                return owner
    return None


def _requirements_closure(names: set[str]) -> set[str]:
    """Return ``names`` and every distribution they require, recursively (no extras: what a plain install gets)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def test_every_import_is_declared_or_brought_by_a_declared_dependency() -> None:
    project = _pyproject()
    runtime = _names(project["dependencies"])  # type: ignore[arg-type]
    extras = set().union(*(_names(r) for r in project["optional-dependencies"].values()))  # type: ignore[attr-defined]
    allowed = _requirements_closure(runtime) | extras
    problems = []
    for path, line, module, may_be_absent in _imports():
        if not _third_party(module):
            continue
        owner = _owner(module)
        where = f"{path.relative_to(ROOT)}:{line} imports {module}"
        if owner is None:
            if not may_be_absent:
                problems.append(f"{where}: no installed distribution holds it")
        elif owner not in allowed:
            problems.append(f"{where} from {owner}: neither declared nor required by a declared dependency")
    assert not problems, "\n".join(problems)


def _holds_modules(name: str) -> bool:
    """Return whether a distribution installs Python modules (``apache-airflow`` 3 installs none: its parts do)."""
    return any(f.suffix == ".py" for f in md.distribution(name).files or ())


def test_every_declared_dependency_is_imported() -> None:
    owners = {_owner(module) for _, _, module, _ in _imports() if _third_party(module)}
    runtime = _names(_pyproject()["dependencies"])  # type: ignore[arg-type]
    # a distribution without modules of its own (a meta-package) is used when one of its direct requirements is
    used = {
        name
        for name in runtime
        if name in owners
        or (not _holds_modules(name) and _names([r for r in md.requires(name) or [] if ";" not in r]) & owners)
    }
    unused = sorted(runtime - used)
    assert not unused, f"declared in pyproject.toml's dependencies but never imported by the package: {unused}"


def test_the_package_is_typed() -> None:
    """PEP 561: ``py.typed`` ships, so a user's mypy reads the hints of the operators in their DAGs."""
    assert (PACKAGE / "py.typed").is_file()
