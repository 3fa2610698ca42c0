"""`make demo`: start the local stand-ins, seed a demo world, export yesterday with `airflow dags test`, summarize.

Everything started here is stopped at the end; the exported objects are copied to demo-output/ so
they can be read afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from local_stack.demo_world import DEMO_BUCKET, build_world, running_world
from local_stack.services import (
    REPO,
    airflow_env,
    dags_test_env,
    read_bucket,
    s3_client,
)

DAG_ID = "product_statistics_export"
OUTPUT = REPO / "demo-output"


def run_airflow(env: dict[str, str], *args: str, log_path: Path) -> int:
    """Run the airflow CLI with the demo's environment, its output going to a log file."""
    airflow = Path(sys.executable).with_name("airflow")
    with log_path.open("a") as log:
        return subprocess.run([str(airflow), *args], env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def copy_bucket(endpoint: str, destination: Path) -> int:
    """Copy every object of the demo bucket to a local folder and return how many there were."""
    shutil.rmtree(destination, ignore_errors=True)
    copied = 0
    for key, body in read_bucket(s3_client(endpoint), DEMO_BUCKET):
        target = destination / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        copied += 1
    return copied


def table_counts(url: str) -> dict[str, int]:
    """Count the rows of the three output tables."""
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            for table in ("StatisticsExport", "VariantDailyStatistics", "ProductImageBackup")
        }


def main() -> int:
    """Run the demo and return the process exit code."""
    day = (datetime.now(timezone.utc) - timedelta(days=1)).date()
    world = build_world(day, products=int(os.environ.get("DEMO_PRODUCTS", 100)))
    active = [s for s in world.shops if s.active]
    OUTPUT.mkdir(exist_ok=True)
    log_path = OUTPUT / "airflow.log"
    log_path.write_text("")
    print(
        f"Demo: exporting {day} for {len(active)} active shops "
        f"({sum(len(s.sandbox.products) for s in active)} products, {len(world.events)} events)"
    )
    with (
        running_world(world, prefix="demo") as (_, endpoints),
        tempfile.TemporaryDirectory(prefix="airflow-demo-") as airflow_home,
    ):
        env = airflow_env(Path(airflow_home), endpoints) | dags_test_env()
        # Small batches so the demo shows batches mapped across shops.
        env.setdefault("STATISTICS_EXPORT_BATCH_VARIANTS", "60")
        if run_airflow(env, "db", "migrate", log_path=log_path) != 0:
            print(f"airflow db migrate failed: see {log_path}")
            return 1
        started = time.monotonic()
        code = run_airflow(env, "dags", "test", DAG_ID, day.isoformat(), log_path=log_path)
        seconds = time.monotonic() - started
        counts = table_counts(endpoints.app_db_url)
        objects = copy_bucket(endpoints.s3_endpoint, OUTPUT / "bucket")

    variants = sum(len(p.variants) for s in active for p in s.sandbox.products)
    exports = sorted(p for p in (OUTPUT / "bucket" / "statistic-exports").rglob("*.csv"))
    print(
        f"Shops: {len(active)} active (1 on a custom domain, 1 on expiring tokens whose stored token had expired "
        "and was refreshed), 1 inactive skipped"
    )
    print(f"Products: {sum(len(s.sandbox.products) for s in active)}, variants: {variants}")
    print(
        f"Files: {counts['StatisticsExport'] * 2} export files, {counts['ProductImageBackup']} images backed up, "
        f"{objects} objects in the bucket"
    )
    print(f"Rows: {counts}")
    print(f"airflow dags test: {seconds:.1f} s, {'succeeded' if code == 0 else 'FAILED'} (log: {log_path})")
    report = OUTPUT / "bucket" / "statistic-exports" / "_runs" / f"{day:%Y%m%d}.json"
    if report.exists():
        print(f"The day's report: {report.relative_to(REPO)}")
        document = json.loads(report.read_text())
        for section in ("sessionLinks", "tokens", "pixelHealth"):
            if section in document:
                print(document[section]["summary"])
    parquet = sorted((OUTPUT / "bucket" / "statistic-exports" / "_parquet").rglob("*.parquet"))
    if parquet:
        print(f"Parquet (one part per batch, Hive layout; {len(parquet)} parts): {parquet[0].relative_to(REPO)}")
    if exports:
        print("Look at a few exported files:")
        for path in exports[:2]:
            print(f"  {path.relative_to(REPO)}")
            print(f"  {path.with_suffix('.json').relative_to(REPO)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
