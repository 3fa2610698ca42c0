"""`make bench`: the scale benchmark of issue 3 (see bench/README.md).

The product and the stand-ins are installed (editable), so nothing here touches sys.path. Importing the
package gives the process an Airflow home of the bench's own (created once, inherited by every child
process) and points Airflow at the repo's DAGs and plugins folders.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if "BENCH_AIRFLOW_HOME" not in os.environ:
    # Airflow reads its home at import; a private one keeps the bench off other runs' metadata. The process
    # that creates it removes it when it exits (the child processes inherit it through the environment).
    os.environ["BENCH_AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-airflow-home-")
    atexit.register(shutil.rmtree, os.environ["BENCH_AIRFLOW_HOME"], True)
os.environ["AIRFLOW_HOME"] = os.environ["BENCH_AIRFLOW_HOME"]
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
