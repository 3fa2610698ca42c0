"""The DAG under Airflow's real scheduler, dag-processor and api-server: catchup, backfill, clearing a failed shop.

One stack serves the module (starting Airflow costs ~20 s on two cores): its DAG starts three days ago, so
the fixture first waits for the three catchup runs; the other tests use earlier days of their own. Two shops
keep each run short: alpha (6 variants, two batches) and gamma (one batch), whose token the tests break.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import psycopg
import pytest

from helpers import add_event, listed_days, product, register_shop
from local_stack.airflow_stack import DAG_ID, airflow_stack, metadata_database, wait_until
from local_stack.services import Endpoints, create_bucket, scratch_database
from shopify_sandbox import ShopifySandbox
from shopify_sandbox.world import SandboxShop

pytestmark = pytest.mark.scheduler

EXPORTS = "statistic-exports/"
TODAY = datetime.now(timezone.utc).date()
CATCHUP_DAYS = [TODAY - timedelta(days=n) for n in (3, 2, 1)]
SHOPS = {"shop_alpha", "shop_gamma"}
ALPHA_DOMAIN, GAMMA_DOMAIN = "shop-alpha.myshopify.com", "shop-gamma.myshopify.com"


def midnight(day: date) -> str:
    """Return the UTC midnight of a day as the REST API writes logical dates."""
    return datetime.combine(day, time.min, tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")


def run_day(run: dict) -> date:
    """Return the day of a run's logical date."""
    return datetime.fromisoformat(run["logical_date"].replace("Z", "+00:00")).date()


def exported(s3, bucket: str) -> dict[str, dict]:
    """Return every variant export file's key with its LastModified and body (run reports, Parquet left out)."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=EXPORTS):
        for item in page.get("Contents", ()):
            if item["Key"].startswith(f"{EXPORTS}_"):  # run reports and the Parquet parts: not variant files
                continue
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found[item["Key"]] = {"modified": item["LastModified"], "body": body}
    return found


def day_of_key(key: str) -> date:
    """Return the day an export file's key names."""
    return datetime.strptime(key.rsplit("/", 1)[1][:8], "%Y%m%d").date()


def exported_days(objects: dict[str, dict]) -> set[date]:
    """Return the days named by the export files' keys."""
    return {day_of_key(key) for key in objects}


def shops_of(objects: dict[str, dict]) -> set[str]:
    """Return the shops that have export files."""
    return {key.split("/")[1] for key in objects}


def csv_row(objects: dict[str, dict], key: str) -> dict:
    """Return the single row of an exported CSV file."""
    return next(csv.DictReader(io.StringIO(objects[key]["body"].decode())))


def alpha_key(day: date, extension: str = "csv") -> str:
    """Return the key of shop_alpha's first variant's file for a day."""
    return f"{EXPORTS}shop_alpha/1/1001/{day:%Y%m%d}.{extension}"


def add_impressions(db, day: date, count: int) -> None:
    """Record ``count`` impressions of shop_alpha's variant 1001 at noon of ``day``."""
    for _ in range(count):
        add_event(db, "shop_alpha", "1001", "IMPRESSION", datetime.combine(day, time(12), tzinfo=timezone.utc))


@dataclass
class World:
    """The module's app database, sandbox, the shop whose token the tests break, and the connections' targets."""

    db: psycopg.Connection
    sandbox: ShopifySandbox
    gamma: SandboxShop
    endpoints: Endpoints


@pytest.fixture(scope="module")
def world(pg_server_url, s3_endpoint):
    """The module's two shops: alpha (6 variants, two batches of 4) and gamma (one variant)."""
    with scratch_database(pg_server_url, prefix="scheduler") as app_db_url, ShopifySandbox() as sandbox:
        bucket = f"scheduler-{uuid.uuid4().hex[:12]}"
        create_bucket(s3_endpoint, bucket)
        with psycopg.connect(app_db_url) as db:
            register_shop(db, sandbox, "shop_alpha", [product(n, variants=2) for n in range(1, 4)])
            gamma = register_shop(db, sandbox, "shop_gamma", [product(20)])
            yield World(db, sandbox, gamma, Endpoints(app_db_url, s3_endpoint, bucket, sandbox.endpoint_template))


@pytest.fixture(scope="module")
def stack(world, pg_server_url, tmp_path_factory):
    """A LocalExecutor stack whose DAG starts three days ago, unpaused, once its three catchup runs have finished."""
    for n, day in enumerate(CATCHUP_DAYS):
        add_impressions(world.db, day, n + 1)
    extra_env = {"STATISTICS_EXPORT_START_DATE": CATCHUP_DAYS[0].isoformat(), "STATISTICS_EXPORT_BATCH_VARIANTS": "4"}
    home = tmp_path_factory.mktemp("scheduler") / "airflow-home"
    with (
        metadata_database(pg_server_url) as metadata_url,
        airflow_stack(world.endpoints, home, metadata_url, "LocalExecutor", extra_env=extra_env) as stack,
    ):
        stack.unpause()
        wait_until(lambda: finished_runs(stack, CATCHUP_DAYS), 300, "three catchup runs")
        yield stack


@pytest.fixture(autouse=True)
def component_logs(stack):
    """Print the tails of the components' logs after each test; pytest shows them only when it failed."""
    yield
    print(stack.log_tails(60))


@pytest.fixture
def bucket_of(world, s3):
    """Return the module bucket's export files, optionally only those of some days."""

    def read(days=None) -> dict[str, dict]:
        objects = exported(s3, world.endpoints.bucket)
        return {k: v for k, v in objects.items() if days is None or day_of_key(k) in days}

    return read


def finished_runs(stack, days) -> list[dict] | None:
    """Return the runs of these days once all have finished; fail fast when one failed."""
    runs = [r for r in stack.dag_runs() if run_day(r) in days]
    failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
    assert not failed, f"runs failed: {failed}\n{stack.log_tails()}"
    return runs if len(runs) == len(days) and all(r["state"] == "success" for r in runs) else None


def test_catchup_exports_each_missed_day_in_its_own_run(stack, bucket_of):
    runs = [r for r in stack.dag_runs() if r["run_type"] == "scheduled"]

    assert [run_day(r) for r in runs] == CATCHUP_DAYS
    assert {r["state"] for r in runs} == {"success"}
    objects = bucket_of(CATCHUP_DAYS)
    assert exported_days(objects) == set(CATCHUP_DAYS)
    for n, day in enumerate(CATCHUP_DAYS):
        row = csv_row(objects, alpha_key(day))
        # Each run exported its own day: the date column and that day's impressions (1, 2, 3) say so.
        assert (row["date"], row["impressions"]) == (day.isoformat(), str(n + 1))
    # Every shop's every variant, every day: (6 + 1) variants x 2 files x 3 days.
    assert len(objects) == 7 * 2 * 3


def backfill(stack, first: date, last: date, *extra: str) -> str:
    """Run `airflow backfill create` and return its output; assert it exited cleanly."""
    dates = ["--from-date", first.isoformat(), "--to-date", last.isoformat()]
    result = stack.cli("backfill", "create", "--dag-id", DAG_ID, *dates, *extra)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout + result.stderr


def dry_run(stack, first: date, last: date, reprocess_behavior: str) -> list[date]:
    """Return the days a backfill would run, from the REST dry run (the same selection the CLI's --dry-run prints)."""
    body = {"dag_id": DAG_ID, "from_date": midnight(first), "to_date": midnight(last)}
    answer = stack.api("POST", "/api/v2/backfills/dry_run", json={**body, "reprocess_behavior": reprocess_behavior})
    return [date.fromisoformat(b["logical_date"][:10]) for b in answer["backfills"]]


def wait_for_backfills(stack, count: int) -> list[dict]:
    """Wait until ``count`` backfills of the DAG exist and all have completed."""

    def completed():
        backfills = stack.api("GET", "/api/v2/backfills", params={"dag_id": DAG_ID})["backfills"]
        return len(backfills) >= count and all(b["completed_at"] for b in backfills) and backfills

    return wait_until(completed, 240, f"{count} completed backfill(s)\n{stack.log_tails()}")


def runs_by_day(stack) -> dict[date, dict]:
    """Return the DAG's runs that have a logical date, keyed by its day."""
    return {run_day(r): r for r in stack.dag_runs() if r["logical_date"]}


def test_backfill_exports_exactly_the_requested_days_and_reprocesses_as_told(stack, world, bucket_of):
    d0, d1, d2 = (TODAY - timedelta(days=n) for n in (9, 8, 7))
    for n, day in enumerate((d0, d1, d2)):
        add_impressions(world.db, day, n + 1)

    # --dry-run lists the days and creates nothing.
    assert listed_days(backfill(stack, d1, d2, "--dry-run")) == [d1, d2]
    assert not set(runs_by_day(stack)) & {d0, d1, d2}

    # Days before the DAG's start date too: backfill runs are exempt from it.
    backfill(stack, d1, d2)
    wait_for_backfills(stack, 1)
    before = runs_by_day(stack)
    assert {(before[d]["state"], before[d]["run_type"]) for d in (d1, d2)} == {("success", "backfill")}
    objects = bucket_of({d0, d1, d2})
    assert exported_days(objects) == {d1, d2}
    assert shops_of(objects) == SHOPS
    assert [csv_row(objects, alpha_key(d))["impressions"] for d in (d1, d2)] == ["2", "3"]

    # d1 failed (marked so, as an operator would); d0 has no run.
    stack.api("PATCH", f"/api/v2/dags/{DAG_ID}/dagRuns/{before[d1]['dag_run_id']}", json={"state": "failed"})
    assert dry_run(stack, d0, d2, "none") == [d0]  # the default: only days without a run
    assert dry_run(stack, d0, d2, "failed") == [d0, d1]  # and the failed days
    assert dry_run(stack, d0, d2, "completed") == [d0, d1, d2]  # and every finished day

    backfill(stack, d1, d2, "--reprocess-behavior", "failed")
    wait_for_backfills(stack, 2)
    after = runs_by_day(stack)
    # The failed day is cleared and run again in place (same run id); the successful day is left alone.
    assert (after[d1]["state"], after[d1]["dag_run_id"]) == ("success", before[d1]["dag_run_id"])
    assert after[d1]["end_date"] > before[d1]["end_date"]
    assert after[d2]["end_date"] == before[d2]["end_date"]
    assert exported_days(bucket_of({d0, d1, d2})) == {d1, d2}


def test_clearing_a_failed_shop_reexports_it_and_leaves_the_others_files_alone(stack, world, bucket_of):
    day = TODAY - timedelta(days=5)
    add_impressions(world.db, day, 2)
    world.sandbox.revoke_token(world.gamma.domain)
    try:
        # A manual run for a day before the DAG's start date needs the `date` param: a logical date that early
        # would get a run without task instances (Airflow skips tasks that start after the logical date).
        trigger = {"logical_date": None, "conf": {"date": day.isoformat()}}
        run_id = stack.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json=trigger)["dag_run_id"]
        assert stack.wait_for_run(run_id)["state"] == "failed"
    finally:
        world.sandbox.set_token(world.gamma.domain, world.gamma.access_token)

    # The shop fails alone, at its first per-shop task; its later tasks are upstream_failed, alpha's succeed.
    tis = stack.task_instances(run_id)
    failed = [ti for ti in tis if ti["state"] == "failed" and ti["map_index"] >= 0]
    assert [ti["rendered_map_index"] for ti in failed] == [GAMMA_DOMAIN], failed
    alpha_tasks = [ti for ti in tis if (ti["rendered_map_index"] or "").startswith(ALPHA_DOMAIN)]
    assert alpha_tasks and {ti["state"] for ti in alpha_tasks} == {"success"}
    first = bucket_of({day})
    assert shops_of(first) == {"shop_alpha"}

    # The cause is fixed (above); now what the Grid view's Clear with Downstream checked does on that map index.
    target = [failed[0]["task_id"], failed[0]["map_index"]]
    clear = {"dry_run": False, "dag_run_id": run_id, "task_ids": [target], "include_downstream": True}
    clear |= {"include_upstream": False, "only_failed": False, "reset_dag_runs": True}
    cleared = stack.api("POST", f"/api/v2/dags/{DAG_ID}/clearTaskInstances", json=clear)
    cleared_tasks = {ti["task_id"] for ti in cleared["task_instances"]}
    # The shop's own later steps and everything after the shops; not the steps before them.
    assert {target[0], "collect_batches", "export_product_batch"} <= cleared_tasks
    assert any(task.endswith("plan_shop_batches") for task in cleared_tasks)
    assert not {"resolve_export_day", "list_active_shops"} & cleared_tasks

    assert stack.wait_for_run(run_id)["state"] == "success"
    second = bucket_of({day})
    assert shops_of(second) == SHOPS
    assert csv_row(second, f"{EXPORTS}shop_gamma/20/20001/{day:%Y%m%d}.csv")["date"] == day.isoformat()
    assert csv_row(second, alpha_key(day))["impressions"] == "2"
    retried = {(ti["task_id"], ti["map_index"]): ti for ti in stack.task_instances(run_id)}
    assert retried[tuple(target)]["try_number"] == 2
    # Alpha's batches ran again but uploaded nothing: their files were byte-identical (content-hash skip).
    assert {key: second[key]["modified"] for key in first} == {key: first[key]["modified"] for key in first}


def test_a_shops_batches_under_the_scheduler_refresh_its_token_once(stack, world):
    """Nine batches of each shop, four task instances at a time (parallelism 4), each opening the shop's hook (the
    module's two shops are exported beside them: the whole day)."""
    day = TODAY - timedelta(days=12)
    now = datetime.now(timezone.utc)
    expired = register_shop(
        world.db, world.sandbox, "shop_expired", [product(n, variants=4) for n in range(30, 39)],
        expires=now - timedelta(hours=1),
    )  # fmt: skip
    dying = register_shop(
        world.db, world.sandbox, "shop_dying", [product(n, variants=4) for n in range(40, 49)],
        expires=now + timedelta(hours=1),
    )  # fmt: skip
    # Its hour ends at its first batch request (after counting, and listing its products): every batch then
    # meets a 401 at about the same time, and they renew it through the session's row lock.
    world.sandbox.expire_tokens_after(dying.domain, requests=4)
    try:
        trigger = {"logical_date": None, "conf": {"date": day.isoformat()}}
        run_id = stack.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json=trigger)["dag_run_id"]
        assert stack.wait_for_run(run_id)["state"] == "success"
    finally:
        with world.db.cursor() as cur:  # the module's other runs export alpha and gamma only
            cur.execute(
                'UPDATE "ShopCredential" SET "isActive" = false WHERE id IN (%s, %s)', ("shop_expired", "shop_dying")
            )
        world.db.commit()

    batches = [ti for ti in stack.task_instances(run_id) if ti["task_id"] == "export_product_batch"]
    expired_batches = [ti for ti in batches if (ti["rendered_map_index"] or "").startswith(expired.domain)]
    dying_batches = [ti for ti in batches if (ti["rendered_map_index"] or "").startswith(dying.domain)]
    assert len(expired_batches) == len(dying_batches) == 9 and {ti["state"] for ti in batches} == {"success"}
    assert world.sandbox.stats(expired.domain)["refreshes"] == 1
    assert world.sandbox.stats(dying.domain)["refreshes"] == 1
    for shop in (expired, dying):
        with world.db.cursor() as cur:
            cur.execute('SELECT "accessToken", "refreshToken" FROM "Session" WHERE shop = %s', (shop.domain,))
            stored = cur.fetchone()
        world.db.commit()
        assert world.sandbox.accepts(shop.domain, *stored)
