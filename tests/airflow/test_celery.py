"""The DAG on CeleryExecutor: Redis as broker (or, without Redis, kombu's SQLAlchemy transport in PostgreSQL),
results in PostgreSQL, two workers sharing the default queue."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from helpers import add_event, product, register_shop
from local_stack.airflow_stack import DAG_ID, airflow_stack, metadata_database

pytestmark = pytest.mark.celery

TODAY = datetime.now(timezone.utc).date()
WORKERS = ("worker-a", "worker-b")


@pytest.fixture
def celery_stack(endpoints, pg_server_url, tmp_path):
    """A CeleryExecutor stack with two workers told apart by their hostnames; logs printed at teardown."""
    extra_env = {"STATISTICS_EXPORT_START_DATE": TODAY.isoformat(), "STATISTICS_EXPORT_BATCH_VARIANTS": "2"}
    with (
        metadata_database(pg_server_url) as metadata_url,
        airflow_stack(
            endpoints, tmp_path / "airflow-home", metadata_url, "CeleryExecutor", extra_env=extra_env, workers=WORKERS
        ) as stack,
    ):
        yield stack
        print(stack.log_tails(60))  # pytest shows it only when the test failed


def test_a_run_spreads_its_batches_over_both_celery_workers(db, sandbox, celery_stack, s3, endpoints):
    day = TODAY - timedelta(days=2)
    register_shop(db, sandbox, "shop_alpha", [product(n, variants=2) for n in range(1, 5)])
    register_shop(db, sandbox, "shop_beta", [product(n, variants=2) for n in range(10, 12)])
    add_event(db, "shop_beta", "10001", "PURCHASE", datetime.combine(day, time(9), tzinfo=timezone.utc), "12.50")
    celery_stack.unpause()

    trigger = {"logical_date": None, "conf": {"date": day.isoformat()}}
    run_id = celery_stack.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json=trigger)["dag_run_id"]
    assert celery_stack.wait_for_run(run_id, timeout=300)["state"] == "success", celery_stack.log_tails()

    batches = [ti for ti in celery_stack.task_instances(run_id) if ti["task_id"] == "export_product_batch"]
    # 4 + 2 products of 2 variants, batches of 2 variants: one batch per product.
    assert len(batches) == 6 and {ti["state"] for ti in batches} == {"success"}
    assert {ti["hostname"] for ti in batches} == set(WORKERS)
    keys = [
        item["Key"]
        for item in s3.list_objects_v2(Bucket=endpoints.bucket, Prefix="statistic-exports/shop_")["Contents"]
    ]
    assert len(keys) == (8 + 4) * 2
    assert all(key.endswith(f"/{day:%Y%m%d}.csv") or key.endswith(f"/{day:%Y%m%d}.json") for key in keys)
    beta = s3.get_object(Bucket=endpoints.bucket, Key=f"statistic-exports/shop_beta/10/10001/{day:%Y%m%d}.csv")
    assert b",1,12.50," in beta["Body"].read()
