"""`make bench`: the scale benchmark of issue 3 (see bench/README.md).

Importing the package prepares the process the way the tests do: the repo and its plugins folder on
sys.path, and an Airflow home of the bench's own (created once, inherited by every child process).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (str(REPO / "plugins"), str(REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

if "BENCH_AIRFLOW_HOME" not in os.environ:
    # Airflow reads its home at import; a private one keeps the bench off other runs' metadata.
    os.environ["BENCH_AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-airflow-home-")
os.environ["AIRFLOW_HOME"] = os.environ["BENCH_AIRFLOW_HOME"]
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "plugins")])
