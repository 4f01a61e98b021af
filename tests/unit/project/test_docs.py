"""
The documentation's pages (``docs/*.md``) and the README, read as files: what ``make docs`` cannot check alone.

Every sample a page includes comes from an example DAG by its START/END markers (so the tests that run the example
DAGs run every sample), relative links point at files that exist (the pages are read on the repository's web view
too), no page points at ``shared/`` (the vendor's spec and seed files, which users do not have), and every Python
block a page writes out parses and imports names that exist. Building the HTML itself is ``make docs``.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from tests.support.paths import ROOT

DOCS = ROOT / "docs"
EXAMPLES = ROOT / "dags_examples"
PAGES = sorted(DOCS.glob("*.md"))
README = ROOT / "README.md"

#: A MyST ``literalinclude`` fence: its argument and its option lines.
INCLUDE = re.compile(r"^```\{literalinclude\}\s+(?P<path>\S+)\n(?P<options>(?::[\w-]+:.*\n)*)```", re.MULTILINE)
#: A Markdown link or image target, ``[text](target)``.
LINK = re.compile(r"\]\(([^)\s]+)\)")
#: A fenced Python block written out on a page.
PYTHON_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def _includes() -> list[tuple[Path, Path, dict[str, str]]]:
    """Return ``(page, included file, options)`` for every ``literalinclude`` of the docs."""
    found = []
    for page in PAGES:
        for match in INCLUDE.finditer(page.read_text(encoding="utf-8")):
            options = {}
            for line in match["options"].splitlines():
                name, _, value = line[1:].partition(":")
                options[name] = value.strip().strip('"')
            found.append((page, (page.parent / match["path"]).resolve(), options))
    return found


def test_the_docs_have_pages_and_include_samples() -> None:
    assert {"index.md", "quickstart.md", "connection.md", "sending.md", "sandbox.md"} <= {p.name for p in PAGES}
    assert len(_includes()) >= 10


@pytest.mark.parametrize(("page", "path", "options"), _includes(), ids=lambda v: getattr(v, "name", ""))
def test_every_include_names_an_example_dag_and_markers_it_has(page: Path, path: Path, options: dict) -> None:
    assert path.parent == EXAMPLES, f"{page.name} includes {path}, not a file of dags_examples/"
    assert path.is_file(), f"{page.name} includes {path.name}, which does not exist"
    text = path.read_text(encoding="utf-8")
    start, end = options.get("start-after"), options.get("end-before")
    assert start and end, f"{page.name}: include {path.name} without :start-after: and :end-before: markers"
    assert start.startswith("[START ") and end == start.replace("[START ", "[END ", 1)
    assert text.count(f"# {start}") == 1, f"{path.name} has no single '# {start}' line"
    assert text.count(f"# {end}") == 1, f"{path.name} has no single '# {end}' line"
    sample = text.split(f"# {start}", 1)[1].split(f"# {end}", 1)[0]
    assert sample.strip(), f"{path.name}: the block {start} is empty"


def test_every_marker_in_the_examples_is_a_pair() -> None:
    for path in sorted(EXAMPLES.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        starts = re.findall(r"# \[START (\w+)\]", text)
        ends = re.findall(r"# \[END (\w+)\]", text)
        assert sorted(starts) == sorted(ends) and len(set(starts)) == len(starts), path.name
        for name in starts:
            assert text.index(f"# [START {name}]") < text.index(f"# [END {name}]"), (path.name, name)


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_no_page_points_at_files_users_do_not_have(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"\bshared/(spec|seed)\b", text), f"{page.name} names the vendor's spec or seed in shared/"
    linked = [target for target in LINK.findall(text) if "shared/" in target]
    assert not linked, f"{page.name} links to {linked}, outside what users have"


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_relative_links_point_at_files_that_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # another site, or an anchor of this page (make docs checks those)
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.name} links to {target}, which does not exist"
        assert path.is_relative_to(ROOT), f"{page.name} links outside the repository: {target}"


def test_the_readme_links_every_page() -> None:
    linked = {(README.parent / target.split("#", 1)[0]).resolve() for target in LINK.findall(README.read_text())}
    missing = [page.name for page in PAGES if page.name != "index.md" and page.resolve() not in linked]
    assert not missing, f"the README's table does not link {missing}"


def _python_blocks() -> list[tuple[str, str]]:
    """Return ``(page name, code)`` for every Python block the README and the pages write out."""
    blocks = []
    for page in [README, *PAGES]:
        for match in PYTHON_BLOCK.finditer(page.read_text(encoding="utf-8")):
            code = "\n".join(line[len(match[1]) :] for line in match[2].splitlines())
            blocks.append((page.name, code))
    return blocks


@pytest.mark.parametrize(("page", "code"), _python_blocks(), ids=lambda v: v if v.endswith(".md") else "")
def test_written_out_python_parses_and_imports_what_exists(page: str, code: str) -> None:
    tree = ast.parse(code)  # a SyntaxError names the page's block
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow_provider_itnio"):
            try:
                module = importlib.import_module(node.module or "")
            except ImportError as err:
                if "3.1" in str(err):  # a two-way module on Airflow 2.11
                    continue
                raise
            for alias in node.names:
                assert alias.name == "*" or hasattr(module, alias.name), f"{page}: {node.module} has no {alias.name}"
