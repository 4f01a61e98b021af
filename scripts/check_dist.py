"""
``make dist``'s check of the built sdist and wheel (``python scripts/check_dist.py [DIST_DIR]``, default ``dist``).

What it checks, each against the source tree rather than a hand-written list:

- **The wheel's files.** Every file under ``airflow_provider_itnio/`` that is not a cache or test artefact
  (:data:`ARTEFACT_DIRS`, :data:`ARTEFACT_SUFFIXES`, :data:`ARTEFACT_NAMES`) is in the wheel, with the same
  bytes (a difference means a stale build), and the wheel holds nothing else under the package. Files a
  ``.gitignore`` hides are *not* exempt: hatchling leaves them out, and that is exactly what this catches.
- **The sdist's files.** The same package files, and what a build from the sdist needs (``pyproject.toml``, the
  README, the licence files, ``PKG-INFO``).
- **The metadata** (what ``twine check`` checks, offline and with no new dependency): the wheel's ``METADATA``
  and the sdist's ``PKG-INFO`` parse as valid core metadata (``packaging.metadata``, which twine itself uses),
  name and version are the project's, the long description is the README, rendered as Markdown
  (``text/markdown``), and both files agree.
- **The entry points.** The wheel's ``entry_points.txt`` declares exactly ``[project.scripts]`` and
  ``[project.entry-points]`` of ``pyproject.toml``, and every module they name is a file of the wheel.

Prints one line per problem, naming the file or field, and exits 1; prints a summary and exits 0 when all is well.
Relative links in the README (which PyPI cannot resolve) are listed as notes, not failures.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import re
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from packaging.metadata import InvalidMetadata, Metadata
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
#: Directories that hold only caches or test and build artefacts, at any depth under the package.
ARTEFACT_DIRS = frozenset(
    {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "node_modules", ".ipynb_checkpoints"}
)
#: File suffixes of compiled, editor or coverage artefacts.
ARTEFACT_SUFFIXES = (".pyc", ".pyo", ".swp", "~", ".orig", ".rej")
#: File names of artefacts.
ARTEFACT_NAMES = frozenset({".DS_Store", ".coverage"})


@dataclass
class Report:
    """What the check found: problems fail it, notes do not."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Project:
    """What the source tree says the distributions must hold."""

    root: Path
    name: str
    version: str
    package: str
    readme: str
    license_files: tuple[str, ...]
    entry_points: dict[str, dict[str, str]]

    @classmethod
    def read(cls, root: Path = ROOT) -> Project:
        """
        Read the project's name, version, package, README and entry points from its ``pyproject.toml``.

        :param root: The repository (the folder of ``pyproject.toml``).
        """
        pyproject = tomllib.loads((root / "pyproject.toml").read_text())
        project = pyproject["project"]
        tool = pyproject.get("tool", {}).get("hatch", {})
        packages = tool.get("build", {}).get("targets", {}).get("wheel", {}).get("packages", [])
        if len(packages) != 1:
            raise SystemExit(
                f"pyproject.toml: expected one package in [tool.hatch.build.targets.wheel], got {packages}"
            )
        version_file = root / tool["version"]["path"]
        found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", version_file.read_text(), re.MULTILINE)
        if found is None:
            raise SystemExit(f"{version_file.relative_to(root)}: no __version__ = '...' line")
        entry_points = {group: dict(points) for group, points in project.get("entry-points", {}).items()}
        if project.get("scripts"):
            entry_points["console_scripts"] = dict(project["scripts"])
        readme = project["readme"]
        return cls(
            root=root,
            name=project["name"],
            version=found.group(1),
            package=packages[0],
            readme=readme if isinstance(readme, str) else readme["file"],
            license_files=tuple(project.get("license-files", [])),
            entry_points=entry_points,
        )

    def package_files(self) -> dict[str, Path]:
        """Return ``{path in the wheel: source file}`` for every file of the package that is not an artefact."""
        files: dict[str, Path] = {}
        base = self.root / self.package
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(self.root)
            if not path.is_file() or is_artefact(PurePosixPath(relative.as_posix())):
                continue
            files[relative.as_posix()] = path
        return files

    def dist_stem(self) -> str:
        """Return the file-name prefix of this version's distributions (``airflow_provider_itnio-0.1.0``)."""
        return f"{canonicalize_name(self.name).replace('-', '_')}-{self.version}"


def is_artefact(path: PurePosixPath) -> bool:
    """
    Tell whether a file of the source tree is a cache or test artefact, which the wheel need not hold.

    :param path: The file's path relative to the repository.
    """
    return (
        any(part in ARTEFACT_DIRS or part.endswith(".egg-info") for part in path.parts[:-1])
        or path.name in ARTEFACT_NAMES
        or path.name.endswith(ARTEFACT_SUFFIXES)
    )


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_files(where: str, members: dict[str, bytes], expected: dict[str, Path], report: Report) -> None:
    """
    Compare a distribution's package files with the source tree's.

    :param where: The distribution's file name, for the messages.
    :param members: ``{path: content}`` of the distribution's files under the package (paths as in the wheel).
    :param expected: :meth:`Project.package_files`.
    :param report: Where problems go.
    """
    for path in sorted(set(expected) - set(members)):
        report.problems.append(
            f"{where}: missing {path}, which the package has (left out by a .gitignore pattern or pyproject.toml's "
            "[tool.hatch.build] settings, or the build is older than the file)"
        )
    for path in sorted(set(members) - set(expected)):
        report.problems.append(f"{where}: holds {path}, which the source tree does not have (stale build?)")
    for path in sorted(set(members) & set(expected)):
        if _digest(members[path]) != _digest(expected[path].read_bytes()):
            report.problems.append(f"{where}: {path} differs from the source tree (stale build? run `make dist`)")


def check_metadata(where: str, raw: bytes, project: Project, report: Report) -> Metadata | None:
    """
    Check one distribution's core metadata as ``twine check`` and PyPI would; return it when it parses.

    :param where: The metadata file (``<wheel>/…/METADATA`` or ``<sdist>/PKG-INFO``), for the messages.
    :param raw: Its bytes.
    :param project: The project it must describe.
    :param report: Where problems go.
    """
    try:
        metadata = Metadata.from_email(raw, validate=True)
    except ExceptionGroup as group:
        for error in group.exceptions:
            field_name = getattr(error, "field", "?")
            report.problems.append(f"{where}: invalid metadata field {field_name!r}: {error}")
        return None
    except InvalidMetadata as error:
        report.problems.append(f"{where}: invalid metadata field {error.field!r}: {error}")
        return None
    if canonicalize_name(metadata.name) != canonicalize_name(project.name):
        report.problems.append(f"{where}: Name is {metadata.name!r}, pyproject.toml says {project.name!r}")
    if str(metadata.version) != project.version:
        report.problems.append(
            f"{where}: Version is {metadata.version}, the package's __version__ is {project.version}"
        )
    if not metadata.summary:
        report.problems.append(f"{where}: no Summary (pyproject.toml's description)")
    content_type = (metadata.description_content_type or "").split(";")[0].strip()
    if content_type != "text/markdown":
        report.problems.append(f"{where}: Description-Content-Type is {content_type!r}, PyPI must render Markdown")
    readme = (project.root / project.readme).read_text()
    if (metadata.description or "").strip() != readme.strip():
        report.problems.append(f"{where}: the long description is not {project.readme}")
    if metadata.requires_python is None:
        report.problems.append(f"{where}: no Requires-Python")
    if not metadata.license_expression:
        report.problems.append(f"{where}: no License-Expression")
    for label, url in (metadata.project_urls or {}).items():  # PyPI refuses an upload whose URL is not http(s)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(label) > 32:
            report.problems.append(
                f"{where}: Project-URL {label!r} is {url!r}; PyPI refuses the upload unless it is an http(s) URL "
                "with a host and a label of at most 32 characters ([project.urls] in pyproject.toml)"
            )
    return metadata


def check_entry_points(where: str, text: str, wheel_files: set[str], project: Project, report: Report) -> None:
    """
    Check that the wheel declares ``pyproject.toml``'s entry points and holds every module they name.

    :param where: The wheel's file name, for the messages.
    :param text: Its ``entry_points.txt``.
    :param wheel_files: Every path in the wheel.
    :param project: The project.
    :param report: Where problems go.
    """
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # entry point names are case-sensitive
    parser.read_string(text)
    declared = {group: dict(parser[group]) for group in parser.sections()}
    for group in sorted(set(project.entry_points) | set(declared)):
        want, have = project.entry_points.get(group, {}), declared.get(group, {})
        if want != have:
            report.problems.append(f"{where}: entry points [{group}] are {have}, pyproject.toml declares {want}")
    for group, points in sorted(declared.items()):
        for name, target in sorted(points.items()):
            module = target.split(":")[0].strip()
            stem = module.replace(".", "/")
            if f"{stem}.py" not in wheel_files and f"{stem}/__init__.py" not in wheel_files:
                report.problems.append(f"{where}: entry point {group}:{name} names {module}, which the wheel lacks")


def relative_links(markdown: str) -> list[str]:
    """
    Return the link targets of a Markdown text that PyPI cannot resolve (relative paths, not anchors or URLs).

    :param markdown: The README.
    """
    targets = re.findall(r"\]\(\s*<?([^)\s>]+)", markdown)
    return sorted({t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#|//)", t, re.IGNORECASE)})


def package_members(wheel: zipfile.ZipFile, package: str) -> dict[str, bytes]:
    """
    Return ``{path: content}`` of a wheel's files under the package.

    :param wheel: The open wheel.
    :param package: The package's folder name.
    """
    return {name: wheel.read(name) for name in wheel.namelist() if name.startswith(f"{package}/")}


def check_wheel(path: Path, project: Project, report: Report) -> Metadata | None:
    """
    Check the wheel: its package files, metadata and entry points; return its metadata.

    :param path: The ``.whl`` file.
    :param project: The project it was built from.
    :param report: Where problems go.
    """
    dist_info = f"{project.dist_stem()}.dist-info"
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        members = package_members(wheel, project.package)
        check_files(path.name, members, project.package_files(), report)
        for needed in ("METADATA", "WHEEL", "RECORD", "entry_points.txt"):
            if f"{dist_info}/{needed}" not in names:
                report.problems.append(f"{path.name}: missing {dist_info}/{needed}")
        for license_file in project.license_files:
            if f"{dist_info}/licenses/{license_file}" not in names:
                report.problems.append(f"{path.name}: missing the licence file {dist_info}/licenses/{license_file}")
        record = wheel.read(f"{dist_info}/RECORD").decode() if f"{dist_info}/RECORD" in names else ""
        recorded = {line.split(",")[0] for line in record.splitlines() if line}
        for name in sorted(names - recorded):
            report.problems.append(f"{path.name}: {name} is not listed in RECORD")
        entry_points = (
            wheel.read(f"{dist_info}/entry_points.txt").decode() if f"{dist_info}/entry_points.txt" in names else ""
        )
        check_entry_points(path.name, entry_points, names, project, report)
        metadata = None
        if f"{dist_info}/METADATA" in names:
            metadata = check_metadata(f"{path.name}:METADATA", wheel.read(f"{dist_info}/METADATA"), project, report)
    report.summary.append(f"{path.name}: {len(names)} files, {len(members)} of them the package's")
    return metadata


def check_sdist(path: Path, project: Project, report: Report) -> Metadata | None:
    """
    Check the sdist: the package files, what a build needs, and ``PKG-INFO``; return its metadata.

    :param path: The ``.tar.gz`` file.
    :param project: The project it was built from.
    :param report: Where problems go.
    """
    top = project.dist_stem()
    with tarfile.open(path) as sdist:
        files: dict[str, bytes] = {}
        for member in sdist.getmembers():
            extracted = sdist.extractfile(member) if member.isfile() else None
            if extracted is not None:
                files[member.name.removeprefix(f"{top}/")] = extracted.read()
    members = {name: data for name, data in files.items() if name.startswith(f"{project.package}/")}
    check_files(path.name, members, project.package_files(), report)
    for needed in ("pyproject.toml", "PKG-INFO", project.readme, *project.license_files):
        if needed not in files:
            report.problems.append(f"{path.name}: missing {top}/{needed}")
    metadata = None
    if "PKG-INFO" in files:
        metadata = check_metadata(f"{path.name}:PKG-INFO", files["PKG-INFO"], project, report)
    report.summary.append(f"{path.name}: {len(files)} files, {len(members)} of them the package's")
    return metadata


def check_dist(dist_dir: Path, project: Project) -> Report:
    """
    Check this version's sdist and wheel in ``dist_dir``.

    :param dist_dir: Where ``uv build`` wrote them.
    :param project: The project they were built from.
    """
    report = Report()
    stem = project.dist_stem()
    wheels = sorted(dist_dir.glob(f"{stem}-*.whl"))
    sdists = sorted(dist_dir.glob(f"{stem}.tar.gz"))
    if len(wheels) != 1:
        report.problems.append(f"{dist_dir}: expected one {stem}-*.whl, found {[w.name for w in wheels]}")
    if len(sdists) != 1:
        report.problems.append(f"{dist_dir}: expected {stem}.tar.gz, found {[s.name for s in sdists]}")
    wheel_meta = check_wheel(wheels[0], project, report) if len(wheels) == 1 else None
    sdist_meta = check_sdist(sdists[0], project, report) if len(sdists) == 1 else None
    if wheel_meta is not None and sdist_meta is not None:
        for name in ("name", "version", "summary", "requires_python", "requires_dist", "license_expression"):
            if getattr(wheel_meta, name) != getattr(sdist_meta, name):
                report.problems.append(f"the wheel's and the sdist's metadata disagree on {name}")
    for target in relative_links((project.root / project.readme).read_text()):
        report.notes.append(f"{project.readme} links {target!r}: relative, so it will not resolve on PyPI")
    return report


def main(argv: list[str] | None = None) -> int:
    """
    Check the distributions and print what is wrong; return the exit status.

    :param argv: The command line (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description="Check the sdist and wheel that `make dist` built.")
    parser.add_argument("dist_dir", nargs="?", default="dist", type=Path, help="where they are (default: dist)")
    parser.add_argument("--root", default=ROOT, type=Path, help="the project they were built from (default: this one)")
    args = parser.parse_args(argv)
    project = Project.read(args.root)
    report = check_dist(args.dist_dir, project)
    for note in report.notes:
        print(f"note: {note}")
    if report.problems:
        print(f"check_dist: {len(report.problems)} problem(s) in {args.dist_dir}:", file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    for line in report.summary:
        print(f"OK {line}")
    print(
        f"check_dist: {project.name} {project.version}: valid metadata, every package file in both, entry points found"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
