"""
Write measured results into ``bench/RESULTS.md``: one section per benchmark (or stack suite), replaced in place.

Used by the bench scripts and by the stack suites (``tests/e2e/stack``), which record what they measured the same way.
It imports nothing of the project, so any of its virtual environments can use it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The results file.
RESULTS = Path(__file__).with_name("RESULTS.md")
#: What a machine-readable result line starts with (``bench/run_all.py`` collects these lines).
RESULT_PREFIX = "BENCH_RESULT "


def _blank(line: str) -> bool:
    return not line.strip()


def record_section(heading: str, lines: list[str], path: Path = RESULTS) -> None:
    """
    Replace the section ``heading`` (up to the next ``## `` heading) of a Markdown file, or append it.

    The section is kept apart from its neighbours by exactly one blank line on each side, however many it had.

    :param heading: The section's heading line, e.g. ``## Stack: worker killed``.
    :param lines: The section's lines after the heading.
    :param path: The file (default ``bench/RESULTS.md``).
    """
    existing = (path.read_text() if path.exists() else "# Benchmark results\n").splitlines()
    section = [heading, *lines]
    while section and _blank(section[-1]):
        section.pop()
    before, after = existing, []
    if heading in existing:
        start = existing.index(heading)
        end = next((i for i in range(start + 1, len(existing)) if existing[i].startswith("## ")), len(existing))
        before, after = existing[:start], existing[end:]
    while before and _blank(before[-1]):
        before = before[:-1]
    while after and _blank(after[0]):
        after = after[1:]
    text = [*before, "", *section] if before else section
    if after:
        text += ["", *after]
    path.write_text("\n".join(text).rstrip("\n") + "\n")


def section_lines(heading: str, path: Path = RESULTS) -> list[str]:
    """
    Return the lines of the section ``heading`` of a Markdown file (without the heading), or ``[]``.

    :param heading: The section's heading line.
    :param path: The file (default ``bench/RESULTS.md``).
    """
    lines = path.read_text().splitlines() if path.exists() else []
    if heading not in lines:
        return []
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def emit(result: dict[str, Any]) -> None:
    """Print the machine-readable result line that ``bench/run_all.py`` collects."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """
    Add the options every recording benchmark takes: ``--results``, ``--out`` and ``--from-json``.

    :param parser: The benchmark's argument parser.
    """
    parser.add_argument("--results", action="store_true", help="write the section into bench/RESULTS.md")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    parser.add_argument("--from-json", type=Path, help="do not run: write the section of a result saved by --out")


def finish(
    args: argparse.Namespace,
    bench: str,
    result: dict[str, Any],
    heading: str,
    section: Callable[[dict[str, Any], str], list[str]],
    command: str,
) -> None:
    """
    Record a benchmark's result as its options say, then emit it.

    :param args: The parsed options (see :func:`add_output_arguments`).
    :param bench: The benchmark's name in the emitted line.
    :param result: What it measured (or what ``--from-json`` read).
    :param heading: Its section's heading in ``bench/RESULTS.md``.
    :param section: Makes the section's lines from the result and the command that reproduces it.
    :param command: The command that reproduces the result.
    """
    if args.results:
        record_section(heading, section(result, command))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    emit({"bench": bench, **result})
