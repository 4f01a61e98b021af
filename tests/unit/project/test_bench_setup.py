"""
``make bench`` installs what it measures.

The peers the benchmarks import (``bench/*.py``, the code strings they run in child processes and the modules
``bench_import`` times) are found by parsing the bench code; what ``make install`` and ``make bench`` install is
read from ``make -n -B`` and the installed packages' metadata. No benchmark runs here.
"""

from __future__ import annotations

import ast
import functools
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.paths import ROOT

BENCH = ROOT / "bench"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _imports_in(tree: ast.AST) -> Iterator[str]:
    """Yield the absolute modules imported in ``tree`` and in the Python code held in its string literals."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif isinstance(node, ast.Constant | ast.JoinedStr):
            # code run in a child process (``python -c CHILD``, a DAG file written by the bench): f-string
            # placeholders become ``0``; a string that is not Python is skipped
            if isinstance(node, ast.Constant):
                text = node.value if isinstance(node.value, str) else ""
            else:
                text = "".join(str(v.value) if isinstance(v, ast.Constant) else "0" for v in node.values)
            if "import" not in text:
                continue
            try:
                code = ast.parse(text)
            except SyntaxError:
                continue
            yield from _imports_in(code)


def bench_modules() -> set[str]:
    """Return every module the bench code imports, itself or in a child process."""
    modules: set[str] = set()
    for path in BENCH.glob("*.py"):
        modules.update(_imports_in(ast.parse(path.read_text(), str(path))))
    from bench.bench_import import MODULES  # timed in fresh processes: ``import <value>``

    for value in MODULES.values():
        modules.update(name.strip() for name in value.split(","))
    return modules


def _local(module: str) -> bool:
    """Return whether ``module`` is the standard library or a package of this repository."""
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top == "__future__" or (ROOT / top).is_dir()


def _make_installs(target: str) -> list[list[str]]:
    """
    Return the arguments of every ``uv pip install`` that ``make TARGET`` runs from nothing (``make -n -B``).

    :param target: The make target.
    """
    out = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    commands = out.replace("\\\n", " ").splitlines()
    return [shlex.split(c)[3:] for c in commands if "uv pip install " in c]


def _split_args(args: list[str]) -> tuple[list[str], list[str], list[str]]:
    """
    Split ``uv pip install`` arguments into (requirements, editable paths, constraint files).

    :param args: The arguments after ``uv pip install``.
    """
    requirements: list[str] = []
    editables: list[str] = []
    constraints: list[str] = []
    it = iter(args)
    for arg in it:
        if arg in ("--constraint", "-c"):
            constraints.append(next(it))
        elif arg in ("-e", "--editable"):
            editables.append(next(it))
        elif arg == "--python":
            next(it)
        elif not arg.startswith("-"):
            requirements.append(arg)
    return requirements, editables, constraints


def _pins(path: str) -> dict[str, str]:
    """
    Return ``{canonical name: version}`` of the ``==`` pins in a constraints file.

    :param path: The file, relative to the repository.
    """
    pins: dict[str, str] = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def _closure(roots: Iterable[Requirement]) -> set[str]:
    """
    Return the installed distributions that ``roots`` need, transitively (markers and extras evaluated).

    :param roots: The requirements ``make install`` asks for.
    """
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # not for this platform
        names.add(key[0])
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(sub)
    return names


def _install_closure() -> tuple[set[str], list[str]]:
    """Return (the distributions ``make install`` puts in the venv, the constraint files it uses)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    roots: list[Requirement] = []
    constraints: list[str] = []
    for requirements, editables, files in (_split_args(a) for a in _make_installs("install")):
        roots += [Requirement(r) for r in requirements]
        for editable in editables:
            assert editable.startswith("."), editable  # this repository, maybe with extras: ".[dev]"
            roots.append(Requirement(project + editable[1:]))
        constraints += [f for f in files if f not in constraints]
    assert roots, "`make -n -B install` shows no `uv pip install`"
    return _closure(roots), constraints


def _bench_installs() -> list[tuple[list[str], list[str], list[str]]]:
    """Return the split arguments of each ``uv pip install`` that ``make bench`` runs beyond ``make install``."""
    install = [_split_args(a) for a in _make_installs("install")]
    return [c for c in (_split_args(a) for a in _make_installs("bench")) if c not in install]


@functools.cache
def _top_level_distributions() -> dict[str, list[str]]:
    """Return ``importlib.metadata.packages_distributions()`` (computed once)."""
    return metadata.packages_distributions()  # type: ignore[return-value]


def _distributions_for(module: str) -> list[str]:
    """
    Return the distributions that may provide ``module`` (all of the candidates for a provider package).

    :param module: A dotted module name.
    """
    parts = module.split(".")
    if parts[:2] == ["airflow", "providers"] and len(parts) > 2:
        # apache-airflow-providers-<path>: airflow.providers.common.compat.sdk -> ...-common-compat
        return [canonicalize_name("apache-airflow-providers-" + "-".join(parts[2:k])) for k in range(3, len(parts) + 1)]
    return [canonicalize_name(d) for d in _top_level_distributions().get(parts[0], [])]


def test_every_peer_the_bench_imports_is_pinned_and_installed_by_make_bench() -> None:
    installed_by_install, install_constraints = _install_closure()
    extra = _bench_installs()
    installed_by_bench = {canonicalize_name(Requirement(r).name) for reqs, _, _ in extra for r in reqs}
    bench_pins: dict[str, str] = {}
    for _, _, constraints in extra:
        for path in constraints:
            if path not in install_constraints:
                bench_pins.update(_pins(path))

    peers = {}
    for module in sorted(bench_modules()):
        if _local(module):
            continue
        candidates = _distributions_for(module)
        assert candidates, f"{module}: no distribution provides it"
        if not set(candidates) & installed_by_install:
            peers[module] = candidates
    # the bench compares us with other providers: if the parsing finds none, it is broken
    assert peers, "no peer module found in bench/"
    for module, candidates in peers.items():
        covered = [d for d in candidates if d in installed_by_bench]
        assert covered, f"{module} ({' or '.join(candidates)}) is not installed by `make bench`"
        assert all(d in bench_pins for d in covered), f"{module}: {covered} not pinned in the bench constraints"
    assert installed_by_bench <= bench_pins.keys(), "`make bench` installs a package its constraints do not pin"


def test_make_bench_keeps_the_versions_make_test_uses() -> None:
    """Installing the peers runs under `make install`'s constraints too, and the bench pins agree with them."""
    _, install_constraints = _install_closure()
    extra = _bench_installs()
    assert extra, "`make bench` installs nothing beyond `make install`"
    main_pins: dict[str, str] = {}
    for path in install_constraints:
        main_pins.update(_pins(path))
    for _, _, constraints in extra:
        assert set(install_constraints) <= set(constraints)
        for path in set(constraints) - set(install_constraints):
            for name, version in _pins(path).items():
                assert main_pins.get(name, version) == version, f"{path}: {name}=={version} vs {main_pins[name]}"
