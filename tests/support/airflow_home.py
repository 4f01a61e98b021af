"""
The session's throw-away Airflow home (SQLite) and DAGs folder, holding the example DAGs and the test DAGs.

Airflow reads its configuration when it is first imported, so importing this module sets the environment:
``tests/conftest.py`` imports it first, before any test module imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tests.support.paths import ROOT, TEST_DAGS

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="itnio-airflow-"))
DAGS_FOLDER = AIRFLOW_HOME / "dags"
DAGS_FOLDER.mkdir()
for source in [
    *sorted((ROOT / "dags_examples").glob("*.py")),
    *sorted(TEST_DAGS.glob("*.py")),
]:
    shutil.copy(source, DAGS_FOLDER / source.name)

os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)

#: Business phones the sandbox knows: the demo's and those of the vendor's examples.
SANDBOX_PHONES = (
    "15550001111",
    "91856321321",
    "17376111187",
    "6282299953162",
    "62822922299527",
    "91856321412",
)
#: The appIds of the vendor's examples; each gets a sandbox and a connection ``itnio_golden_<appid>``.
GOLDEN_APP_IDS = ("DGziZf5u", "7WY0BQ7W", "zRTc00Vs", "xJdRmKR3")
