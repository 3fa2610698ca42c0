"""`make airflow`: Airflow's UI on http://localhost:8080 against the demo world, until Ctrl-C.

Starts the local stand-ins (PostgreSQL, SeaweedFS as the S3 server, the Shopify sandbox), seeds the demo world (events around
yesterday), and runs the scheduler, dag-processor and api-server on loopback. The DAG starts yesterday and
is unpaused, so yesterday's scheduled run appears at once; trigger manual runs with params or create a
backfill from the UI. Everything, databases included, is removed at the end.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from local_stack.airflow_stack import DAG_ID, airflow_stack, check_alive, metadata_database
from local_stack.demo_world import build_world, running_world

PORT = int(os.environ.get("AIRFLOW_UI_PORT", 8080))
USERNAME = "admin"


def stop_on_sigterm(*_: object) -> None:
    """Turn SIGTERM into KeyboardInterrupt so `kill` tears everything down like Ctrl-C."""
    raise KeyboardInterrupt


def main() -> int:
    """Serve the UI until interrupted and return the exit code."""
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    # A shell without job control starts background jobs with SIGINT ignored; Ctrl-C must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).date()
    world = build_world(yesterday, products=int(os.environ.get("DEMO_PRODUCTS", 100)))
    # A password for this session only, so nothing guessable listens even on loopback.
    password = secrets.token_urlsafe(9)
    print("Starting PostgreSQL, the S3 stand-in, the Shopify sandbox and Airflow (about a minute)...", flush=True)
    try:
        with (
            running_world(world, prefix="ui") as (server_url, endpoints),
            metadata_database(server_url) as metadata_url,
            tempfile.TemporaryDirectory(prefix="airflow-ui-") as home,
        ):
            extra_env = {
                "STATISTICS_EXPORT_START_DATE": yesterday.isoformat(),
                "STATISTICS_EXPORT_BATCH_VARIANTS": "60",  # small batches, to see them mapped across shops
                "AIRFLOW__API__BASE_URL": f"http://localhost:{PORT}",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            }
            with airflow_stack(
                endpoints, Path(home), metadata_url, api_port=PORT, extra_env=extra_env, user=(USERNAME, password)
            ) as stack:
                stack.unpause()
                print(
                    f"\nAirflow UI: http://localhost:{PORT}   login: {USERNAME}   password: {password}\n"
                    f"DAG {DAG_ID}: unpaused, exporting {yesterday} now (shops: "
                    f"{', '.join(s.shop_id for s in world.shops if s.active)}).\n"
                    f"Statistics exports (Browse menu): http://localhost:{PORT}/statistics-exports/\n"
                    f"Try: Trigger with params (date, shop_ids, product_ids), or a backfill of earlier days.\n"
                    f"Component logs: {Path(home) / 'component-logs'}   Bucket: {endpoints.s3_endpoint}/{endpoints.bucket}\n"
                    "Press Ctrl-C to stop everything.",
                    flush=True,
                )
                while True:
                    check_alive(stack)
                    time.sleep(2)
    except KeyboardInterrupt:
        print("\nStopped; everything started here is gone.")
        return 0


if __name__ == "__main__":
    sys.exit(main())
