"""A packed unit under Airflow's real scheduler: failed shops fail their unit (red in the Grid, named in its
label as far as it goes), and clearing that one task instance exports them without rewriting their neighbours'
files."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from helpers import product, register_shop
from local_stack.airflow_stack import DAG_ID, airflow_stack, metadata_database
from local_stack.services import Endpoints, create_bucket, scratch_database
from shopify_sandbox import ShopifySandbox

pytestmark = pytest.mark.scheduler

TODAY = datetime.now(timezone.utc).date()
EXPORTS = "statistic-exports/"


def exported(s3, bucket: str, day) -> dict[str, tuple]:
    """Return each export file of a day with its LastModified and ETag."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=EXPORTS):
        for item in page.get("Contents", ()):
            if item["Key"].startswith(f"{EXPORTS}shop_") and item["Key"].endswith(
                (f"/{day:%Y%m%d}.csv", f"/{day:%Y%m%d}.json")
            ):
                found[item["Key"]] = (item["LastModified"], item["ETag"])
    return found


def test_clearing_a_failed_unit_exports_its_failed_shop_and_leaves_the_others_files_alone(
    pg_server_url, s3_endpoint, s3, tmp_path
):
    day = TODAY - timedelta(days=2)
    with scratch_database(pg_server_url, prefix="units") as app_db_url, ShopifySandbox() as sandbox:
        bucket = f"units-{uuid.uuid4().hex[:12]}"
        create_bucket(s3_endpoint, bucket)
        with psycopg.connect(app_db_url) as db:
            register_shop(db, sandbox, "shop_a", [product(1, variants=2)])
            # Twelve shops failing at once: more domains than the label (250 characters in Airflow) can name.
            broken = [register_shop(db, sandbox, f"shop_b{n:02d}", [product(100 + n)]) for n in range(12)]
            register_shop(db, sandbox, "shop_c", [product(3, variants=3)])
        endpoints = Endpoints(app_db_url, s3_endpoint, bucket, sandbox.endpoint_template)
        # Fourteen shops is over the threshold of 0: they are packed, all in one unit.
        extra_env = {"STATISTICS_EXPORT_START_DATE": TODAY.isoformat(), "STATISTICS_EXPORT_SHOP_TASKS_UP_TO": "0"}
        with (
            metadata_database(pg_server_url) as metadata_url,
            airflow_stack(endpoints, tmp_path / "home", metadata_url, "LocalExecutor", extra_env=extra_env) as stack,
        ):
            stack.unpause()
            for shop in broken:
                sandbox.revoke_token(shop.domain)
            trigger = {"logical_date": None, "conf": {"date": day.isoformat()}}
            run_id = stack.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json=trigger)["dag_run_id"]
            assert stack.wait_for_run(run_id)["state"] == "failed", stack.log_tails()

            (unit,) = [ti for ti in stack.task_instances(run_id) if ti["task_id"] == "export_shop_unit"]
            # Failed once, for good (a revoked token is not retried), named as far as the label goes.
            assert (unit["state"], unit["try_number"]) == ("failed", 1), stack.log_tails()
            label = unit["rendered_map_index"]
            assert label.startswith("14 shops · unit 1/1 · failed: shop-b00.myshopify.com, shop-b01.myshopify.com")
            named = label.count(".myshopify.com")
            assert len(label) <= 250 and label.endswith(f" and {12 - named} more")
            first = exported(s3, bucket, day)
            assert {key.split("/")[1] for key in first} == {"shop_a", "shop_c"}
            states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(run_id) if ti["map_index"] < 0}
            assert (states["reconcile"], states["report"]) == ("success", "failed")

            # The merchant fixed the token; the operator clears the red unit with its downstream tasks.
            for shop in broken:
                sandbox.set_token(shop.domain, shop.access_token)
            clear = {"dry_run": False, "dag_run_id": run_id, "task_ids": [["export_shop_unit", 0]]}
            clear |= {"include_downstream": True, "include_upstream": False, "only_failed": False}
            clear |= {"reset_dag_runs": True}
            cleared = stack.api("POST", f"/api/v2/dags/{DAG_ID}/clearTaskInstances", json=clear)
            assert {"export_shop_unit", "reconcile", "report"} <= {ti["task_id"] for ti in cleared["task_instances"]}
            assert stack.wait_for_run(run_id)["state"] == "success", stack.log_tails()

            second = exported(s3, bucket, day)
            assert {key.split("/")[1] for key in second} == {"shop_a", "shop_c"} | {f"shop_b{n:02d}" for n in range(12)}
            assert len(second) == 2 * (2 + 12 + 3)
            # The neighbours' files were byte-identical: not written again (same LastModified and ETag).
            assert {key: second[key] for key in first} == first
            (unit,) = [ti for ti in stack.task_instances(run_id) if ti["task_id"] == "export_shop_unit"]
            assert (unit["state"], unit["try_number"], unit["rendered_map_index"]) == (
                "success",
                2,
                "14 shops · unit 1/1",
            )
