"""
The tests' own layout (``tests/README.md``): no module imports a test module or a ``conftest.py``.

What several modules share lives in ``tests/support/`` (or ``tests/dags/``), and shared fixtures come from the
nearest ``conftest.py``: importing a test module would run its module-level code twice and collect its tests again
under another name. Read from the files with :mod:`ast`, so a module added later is checked as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT, TESTS

#: Folders whose Python files are checked: the tests, and the bench and scripts that use the tests' harnesses.
CHECKED = (TESTS, ROOT / "bench", ROOT / "scripts")


def _is_test_module(name: str) -> bool:
    """Return whether a dotted module name is a test module or a conftest (``tests.unit.test_x``, ``conftest``)."""
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last.endswith("_test") or last == "conftest"


def _imports(path: Path) -> list[tuple[int, str]]:
    """Return each module ``path`` imports, with its line (``from tests import test_x`` counts as ``tests.test_x``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def _python_files() -> list[Path]:
    return sorted(path for folder in CHECKED for path in folder.rglob("*.py") if "__pycache__" not in path.parts)


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in _python_files()
        for line, name in _imports(path)
        if name.split(".")[0] == "tests" and _is_test_module(name)
    ]
    assert offences == []


def test_no_code_string_imports_a_test_module() -> None:
    """A child process's ``python -c`` code imports from ``tests.support``, never from a test module."""
    offences = [
        f"{path.relative_to(ROOT)}: {text!r}"
        for path in _python_files()
        if path != Path(__file__)  # the guard below writes an offending file on purpose
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        for text in [node.value]
        if "import " in text
        and any(_is_test_module(word) for word in text.replace(";", " ").split() if "tests." in word)
    ]
    assert offences == []


def test_the_check_sees_the_tests_and_would_catch_an_import_of_one(tmp_path: Path) -> None:
    """Guard the two checks above: they read every test module, and an offending import is found."""
    files = _python_files()
    assert len([p for p in files if p.name.startswith("test_")]) >= 40
    assert {"unit", "integration", "e2e", "support"} <= {
        p.relative_to(TESTS).parts[0] for p in files if TESTS in p.parents
    }
    bad = tmp_path / "test_bad.py"
    bad.write_text("from tests.unit.test_events import APP_ID\nfrom tests import conftest\n")
    assert [name for _, name in _imports(bad) if _is_test_module(name)] == ["tests.unit.test_events", "tests.conftest"]


def test_every_test_folder_is_a_package() -> None:
    """Two test files may share a name in different folders (``unit/.../test_hitl.py``, ``e2e/test_hitl.py``)."""
    folders = {path.parent for path in TESTS.rglob("test_*.py")}
    assert [str(f.relative_to(ROOT)) for f in sorted(folders) if not (f / "__init__.py").exists()] == []
