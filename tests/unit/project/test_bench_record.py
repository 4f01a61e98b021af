"""``bench/record.py``: the one writer of ``bench/RESULTS.md`` sections (bench scripts and stack suites)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.record import record_section, section_lines

SECTIONS = {
    "## 1. First": ["", "first body", ""],
    "## 2. Second": ["", "| a | b |", "|---|---|", "| 1 | 2 |"],
    "## 3. Third": ["", "third body"],
}


def document(sections: dict[str, list[str]]) -> str:
    """Return a results file holding ``sections`` in order, one blank line between two of them."""
    parts = ["# Benchmark results"]
    for heading, lines in sections.items():
        body = [heading, *lines]
        while not body[-1]:
            body.pop()
        parts.append("\n".join(body))
    return "\n\n".join(parts) + "\n"


@pytest.mark.parametrize("gap", [1, 3])
@pytest.mark.parametrize("heading", list(SECTIONS))
def test_a_recorded_section_replaces_its_old_text_with_one_blank_line_around_it(
    tmp_path: Path, heading: str, gap: int
) -> None:
    """The old section had ``gap`` blank lines before it and after it; the other sections are left as they were."""
    path = tmp_path / "RESULTS.md"
    headings = list(SECTIONS)
    around = headings[headings.index(heading) : headings.index(heading) + 2]  # it, and the one after it
    text = document(SECTIONS)
    for name in around:
        text = text.replace(f"\n\n{name}\n", "\n" * (gap + 1) + f"{name}\n")
    path.write_text(text)
    new = ["", "measured again", "", ""]
    record_section(heading, new, path)
    assert path.read_text() == document({**SECTIONS, heading: new})
    assert section_lines(heading, path) == ["", "measured again"] + ([""] if heading != "## 3. Third" else [])
    record_section(heading, new, path)  # the same again: nothing moves
    assert path.read_text() == document({**SECTIONS, heading: new})


def test_a_new_section_is_appended_after_one_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(document(SECTIONS) + "\n\n")
    record_section("## 4. Fourth", ["", "fourth body"], path)
    assert path.read_text() == document({**SECTIONS, "## 4. Fourth": ["", "fourth body"]})


def test_a_missing_file_is_started_and_a_missing_section_reads_empty(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    assert section_lines("## 1. First", path) == []
    record_section("## 1. First", ["", "first body"], path)
    assert path.read_text() == document({"## 1. First": ["", "first body"]})
    assert section_lines("## 2. Second", path) == []
