"""Sphinx configuration of the provider's documentation (``make docs``)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # autodoc imports the package from this checkout

# autodoc imports modules that import Airflow: give it a throw-away home so that the build writes no airflow.cfg
# into the user's ~/airflow and reads no configuration of theirs.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="itnio-docs-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

from airflow_provider_itnio import __version__  # noqa: E402  (after AIRFLOW_HOME is set)

project = "airflow-provider-itnio"
author = "airflow-provider-itnio contributors"
copyright = "the airflow-provider-itnio contributors, Apache License 2.0"
release = version = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# MyST: GitHub-style anchors for headings (so `page.md#a-heading` works here and on the repository's web view),
# `{directive}` fences and ::: blocks.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

# autodoc: every public member (documented or not: a reference lists them all) in source order, the signature's
# type hints once (in the description, where the :param: lines are).
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
autodoc_inherit_docstrings = False  # overrides of Airflow and SQLAlchemy methods keep their own docs there
# The receiver's FastAPI dependencies (``Annotated[..., Depends(...)]``) shown by their names, linked to their entries.
autodoc_type_aliases = {
    name: f"airflow_provider_itnio.webhook.guards.{name}" for name in ("BearerReceiver", "JSONObject", "PushReceiver")
}

# Nitpicky (-n): every cross-reference to this package must resolve. Other projects' objects (Airflow, the standard
# library, SQLAlchemy, ...) have no inventory here (intersphinx would need the network at build time), so
# references to them are not checked.
nitpick_ignore_regex = [
    (r"py:.*", r"(?!airflow_provider_itnio\b).*"),
    (r"py:.*", r"airflow_provider_itnio\.(.*\.)?_.*"),  # private modules and names, left out of the reference
]

# "More than one target found" (ref.python): a builtin in an annotation, e.g. ``type[BaseException]``, also matches
# attributes named ``type`` of this package's classes; a missing target is still an error.
suppress_warnings = ["ref.python"]

html_theme = "furo"
html_title = f"airflow-provider-itnio {release}"
html_static_path: list[str] = []
