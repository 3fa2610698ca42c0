"""The backfill commands of docs/operations.md (section "Backfill as the original's operators typed it"), run as written.

The test reads the commands from that section's code block, so the documentation and the test cannot drift:
each `airflow backfill create` line runs through bash (its `$(date ...)` substitutions included) with
`--dry-run` added where it lacks one, against the DAG in a fresh metadata database, and the days it lists
must be the days the comment above it promises.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from helpers import listed_days
from local_stack.airflow_stack import DAG_ID
from local_stack.services import airflow_env

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]
SECTION = "### Backfill as the original's operators typed it"


def documented_commands() -> list[tuple[str, str]]:
    """Return (comment, command) for each command of the section's bash block, the comment being the line above."""
    text = (REPO / "docs" / "operations.md").read_text()
    section = text.split(SECTION, 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    pairs, comment = [], ""
    for line in block.splitlines():
        if line.startswith("#"):
            comment = line
        elif line.strip():
            pairs.append((comment, line))
    return pairs


def promised_days(comment: str, today: date) -> list[date]:
    """The days the original's options in a comment stand for: --days N (up to yesterday), --start/--end."""
    if found := re.search(r"--days (\d+)", comment):
        return [today - timedelta(days=n) for n in range(int(found.group(1)), 0, -1)]
    if found := re.search(r"--start (\S+) --end (\S+)", comment):
        first, last = date.fromisoformat(found.group(1)), date.fromisoformat(found.group(2))
    elif found := re.search(r"--from-date (\S+) --to-date (\S+)", comment):
        first, last = date.fromisoformat(found.group(1)), date.fromisoformat(found.group(2))
    else:
        raise AssertionError(f"the documented comment {comment!r} names no days the test understands")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def test_the_docs_document_each_of_the_originals_commands():
    commands = documented_commands()
    comments = " ".join(comment for comment, _ in commands)
    for original in ("--days 5", "--start 2025-01-01 --end 2025-01-05", "--days 3 --dry-run", "failed days only"):
        assert original in comments
    assert all(command.startswith(f"airflow backfill create --dag-id {DAG_ID} ") for _, command in commands)
    assert "airflow dags backfill" not in "".join(command for _, command in commands)  # Airflow 2's, gone in 3


@pytest.fixture
def dag_in_metadata(run_airflow):
    """The DAG serialized into the test home's metadata database, as the dag-processor would."""
    done = run_airflow("dags", "reserialize")
    assert done.returncode == 0, done.stderr[-2000:]
    return run_airflow


@pytest.mark.parametrize(("comment", "command"), documented_commands(), ids=lambda value: value[:40])
def test_each_documented_command_lists_the_promised_days(dag_in_metadata, airflow_home, endpoints, comment, command):
    if "--dry-run" not in command:
        command += " --dry-run"
    env = airflow_env(airflow_home, endpoints)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's airflow
    today = datetime.now(timezone.utc).date()
    done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-2000:]
    if today != datetime.now(timezone.utc).date():
        pytest.fail("the UTC day changed while the command ran: run the test again")
    assert listed_days(output) == promised_days(comment, today), output[-2000:]
