"""Where things are in the repository (no side effect: safe to import from any suite, and from ``bench/``)."""

from __future__ import annotations

from pathlib import Path

#: The repository's root.
ROOT = Path(__file__).resolve().parents[2]
#: The tests' tree.
TESTS = ROOT / "tests"
#: The DAGs the tests run (copied with ``dags_examples/`` into the session's DAGs folder).
TEST_DAGS = TESTS / "dags"
#: The request bodies the provider must produce for the vendor's examples (a copy of shared/spec/golden).
GOLDEN_DIR = TESTS / "golden"
SHARED_GOLDEN_DIR = ROOT.parent / "shared" / "spec" / "golden"
