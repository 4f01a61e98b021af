"""
The package's import graph, read from its source: no circle between the notifier and the receiver, none at import
time anywhere, and no module that imports the tests.

Every ``import`` and ``from ... import`` statement counts, at module level and inside functions (a lazy import is
still a dependency); the import-time check takes the module-level ones only (outside ``if TYPE_CHECKING:``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import ROOT as REPOSITORY

PACKAGE = "airflow_provider_itnio"
ROOT = REPOSITORY / PACKAGE


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, package: str, *, module_level_only: bool) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(module, names)`` for each import of a module of ``package`` (``import a.b`` gives ``("a.b", [])``)."""

    def visit(nodes: list[Any]) -> Iterator[tuple[str, list[str]]]:
        for node in nodes:
            if isinstance(node, ast.Import):
                yield from ((alias.name, []) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # a relative import
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                yield base, [alias.name for alias in node.names]
            elif isinstance(node, ast.If) and _is_type_checking(node):
                if not module_level_only:
                    yield from visit(node.body)
                yield from visit(node.orelse)
            elif module_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if isinstance(node, ast.ClassDef):
                    yield from visit(node.body)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        yield from visit([c for c in children if isinstance(c, ast.stmt | ast.ExceptHandler)])

    yield from visit(tree.body)


def _graph(*, module_level_only: bool) -> dict[str, set[str]]:
    """Return ``{module: the modules it imports}`` (the package's and others', e.g. ``airflow.sdk``)."""
    sources = _sources()
    graph: dict[str, set[str]] = {}
    for module, path in sources.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = set()
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for base, names in _imports(tree, package, module_level_only=module_level_only):
            # ``from a import b``: the module ``a.b`` when there is one (its package ``a`` is imported first anyway,
            # as for every module), else ``a`` (whose ``b`` it is)
            submodules = {f"{base}.{name}" for name in names} & sources.keys()
            targets |= submodules | ({base} if len(submodules) < max(len(names), 1) else set())
        targets.discard(module)
        graph[module] = targets
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _in(subpackage: str, module: str) -> bool:
    return module == f"{PACKAGE}.{subpackage}" or module.startswith(f"{PACKAGE}.{subpackage}.")


def test_the_graph_sees_lazy_and_module_level_imports() -> None:
    """The reader itself: it must find an import inside a function and one at the top, or the checks prove nothing."""
    graph = _graph(module_level_only=False)
    top = _graph(module_level_only=True)
    # notifications/itnio.py imports the hook inside notify() and the base notifier at the top
    assert f"{PACKAGE}.hooks.itnio" in graph[f"{PACKAGE}.notifications.itnio"]
    assert f"{PACKAGE}.hooks.itnio" not in top[f"{PACKAGE}.notifications.itnio"]
    assert f"{PACKAGE}.notifications._base" in top[f"{PACKAGE}.notifications.itnio"]
    # both sides of approvals read the buttons from the shared module
    assert f"{PACKAGE}.hitl_buttons" in top[f"{PACKAGE}.notifications.hitl"]
    assert f"{PACKAGE}.hitl_buttons" in top[f"{PACKAGE}.webhook.taps"]
    # a circle is found when there is one, and only then
    assert "a" in _reachable({"a": {"b"}, "b": {"a"}}, "a")
    assert "a" not in _reachable({"a": {"b"}, "b": {"c"}}, "a")


@pytest.mark.parametrize(("low", "high"), [("notifications", "webhook"), ("webhook", "notifications")])
def test_no_circle_between_the_notifier_and_the_receiver(low: str, high: str) -> None:
    """No module of one subpackage imports (even lazily, even through other modules) the other subpackage's."""
    graph = _graph(module_level_only=False)
    reaching = {
        module: sorted(target for target in _reachable(graph, module) if _in(high, target))
        for module in graph
        if _in(low, module)
    }
    offenders = {module: targets for module, targets in reaching.items() if targets}
    other = {
        module
        for module in graph
        if _in(high, module) and any(_in(low, target) for target in _reachable(graph, module))
    }
    assert not (offenders and other), f"{low} -> {high}: {offenders}; {high} -> {low}: {sorted(other)}"


def test_no_import_circle_at_import_time() -> None:
    """Following the module-level imports (those that run when a module is imported), no module comes back to itself."""
    graph = {
        module: {t for t in targets if t.startswith(f"{PACKAGE}.")}
        for module, targets in _graph(module_level_only=True).items()
    }
    circles = sorted(module for module in graph if module in _reachable(graph, module))
    assert not circles, f"modules on an import circle: {circles}"


def test_no_module_imports_the_tests() -> None:
    graph = _graph(module_level_only=False)
    offenders = {
        module: sorted(t for t in targets if t == "tests" or t.startswith("tests."))
        for module, targets in graph.items()
    }
    assert not {module: names for module, names in offenders.items() if names}


# -- the paths users already import ---------------------------------------------------------------------------


def test_the_old_import_paths_give_the_moved_objects() -> None:
    """What moved is still importable where it was: the same objects, and the receiver client's old path warns."""
    from airflow_provider_itnio.version_compat import AIRFLOW_V_3_1_PLUS

    if not AIRFLOW_V_3_1_PLUS:
        pytest.skip("the receiver client and the approvals need Airflow 3.1+")
    code = textwrap.dedent(
        """
        import warnings

        warnings.simplefilter("error", DeprecationWarning)
        from airflow_provider_itnio import _text, hitl_buttons, version_compat
        from airflow_provider_itnio.hooks import receiver
        from airflow_provider_itnio.notifications.hitl import cut
        from airflow_provider_itnio.webhook import MIN_AIRFLOW, require_airflow_3_1

        assert (MIN_AIRFLOW, require_airflow_3_1) == (version_compat.MIN_AIRFLOW, version_compat.require_airflow_3_1)
        assert cut is _text.cut
        try:
            import airflow_provider_itnio.webhook.client
        except DeprecationWarning as warning:
            print("warned:", warning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from airflow_provider_itnio.webhook import client
        from airflow_provider_itnio.webhook.hitl import REQUESTS_XCOM_KEY, button_keys, sign_button

        assert (sign_button, button_keys) == (hitl_buttons.sign_button, hitl_buttons.button_keys)
        assert REQUESTS_XCOM_KEY == hitl_buttons.REQUESTS_XCOM_KEY

        assert client.ItnioReceiverClient is receiver.ItnioReceiverClient
        assert client.MAX_WINDOW_RECIPIENTS == receiver.MAX_WINDOW_RECIPIENTS
        print("same objects")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "warned: airflow_provider_itnio.webhook.client is deprecated" in result.stdout, result.stdout
    assert "airflow_provider_itnio.hooks.receiver" in result.stdout and "same objects" in result.stdout
