"""Old days and the day itself under Airflow's real scheduler: a backfill of four old days running at once,
every shop read in bulk and staged; two runs of one day started together (one writer per day); today refused.

One stack serves the module (starting Airflow costs ~20 s on two cores). Its DAG starts today, so catchup
creates no run: every run here is one the tests ask for. Every shop is read in bulk (a threshold of one
product), the sandbox's bulk operations end after two polls and the sensors poll every three seconds, so the
runs overlap while their catalogs are staged. Two shops of two batches each keep a run short.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from helpers import add_event, product, register_shop
from local_stack.airflow_stack import DAG_ID, airflow_stack, metadata_database, wait_until
from local_stack.services import Endpoints, create_bucket, s3_client, scratch_database
from shopify_sandbox import ShopifySandbox

pytestmark = pytest.mark.scheduler

TODAY = datetime.now(timezone.utc).date()
EXPORTS = "statistic-exports/"
STAGING = f"{EXPORTS}_staging/"
BACKFILL_DAYS = [TODAY - timedelta(days=n) for n in (33, 32, 31, 30)]
PAIR_DAY = TODAY - timedelta(days=5)
BATCH_VARIANTS = 2
# Each shop two batches of at most two variants (a product is never split): alpha 2 + 2, beta 1 + 2.
CATALOGS = {
    "shop_alpha": [product(1, variants=2), product(2, variants=2)],
    "shop_beta": [product(20), product(21, variants=2)],
}
VARIANTS = {shop: [(str(p.id), str(v.id)) for p in products for v in p.variants] for shop, products in CATALOGS.items()}
FILES_PER_DAY = 2 * sum(len(v) for v in VARIANTS.values())
REPORT_TIMINGS = {"seconds"}


def domain(shop_id: str) -> str:
    return f"{shop_id.replace('_', '-')}.myshopify.com"


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=timezone.utc)


def instant(value: str) -> datetime:
    """Parse a REST API timestamp."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class World:
    """The module's app database, sandbox, bucket and the connections' targets."""

    db_url: str
    sandbox: ShopifySandbox
    endpoints: Endpoints
    s3: Any

    @property
    def bucket(self) -> str:
        return self.endpoints.bucket

    def objects(self, prefix: str = EXPORTS) -> dict[str, dict]:
        """Every object under ``prefix``: its LastModified and bytes."""
        found = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                found[item["Key"]] = {"modified": item["LastModified"], "body": body}
        return found

    def keys(self, prefix: str = EXPORTS) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))

    def query(self, sql: str, *params: Any) -> list[dict]:
        with psycopg.connect(self.db_url) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            names = [column.name for column in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]


@pytest.fixture(scope="module")
def world(pg_server_url, s3_endpoint):
    """Two shops of two batches each, every one of their variants seen on each day the tests export."""
    with scratch_database(pg_server_url, prefix="history") as app_db_url, ShopifySandbox() as sandbox:
        bucket = f"history-{uuid.uuid4().hex[:12]}"
        create_bucket(s3_endpoint, bucket)
        with psycopg.connect(app_db_url) as db:
            for shop_id, products in CATALOGS.items():
                register_shop(db, sandbox, shop_id, products)
                # A bulk operation that runs a few polls, so the runs overlap while they wait and stage.
                sandbox.bulk_behaviour(domain(shop_id), polls=2)
            # Each day its own count (1, 2, ...) on alpha's first variant: the files say which day they hold.
            for n, day in enumerate([*BACKFILL_DAYS, PAIR_DAY, TODAY]):
                for _ in range(n + 1):
                    add_event(db, "shop_alpha", "1001", "IMPRESSION", noon(day))
                add_event(db, "shop_beta", "21002", "ADD_TO_CART", noon(day))
        endpoints = Endpoints(app_db_url, s3_endpoint, bucket, sandbox.endpoint_template)
        yield World(app_db_url, sandbox, endpoints, s3_client(s3_endpoint))


@pytest.fixture(scope="module")
def stack(world, pg_server_url, tmp_path_factory):
    """A LocalExecutor stack whose DAG starts today (no catchup run), unpaused."""
    extra_env = {
        "STATISTICS_EXPORT_START_DATE": TODAY.isoformat(),
        "STATISTICS_EXPORT_BULK_THRESHOLD": "1",
        "STATISTICS_EXPORT_BATCH_VARIANTS": str(BATCH_VARIANTS),
        # Short, yet not so short that a poke often starts before the scheduler has seen its predecessor's
        # executor event (apache/airflow#71172): claim_export_day would then wait out the DAG's minute-long retry.
        "STATISTICS_EXPORT_BULK_POLL_SECONDS": "3",
    }
    home = tmp_path_factory.mktemp("history") / "airflow-home"
    with (
        metadata_database(pg_server_url) as metadata_url,
        airflow_stack(world.endpoints, home, metadata_url, "LocalExecutor", extra_env=extra_env) as stack,
    ):
        stack.unpause()
        yield stack


@pytest.fixture(autouse=True)
def component_logs(stack):
    """Print the tails of the components' logs after each test; pytest shows them only when it failed."""
    yield
    print(stack.log_tails(60))


def trigger(stack, *, day: date | None = None, logical_date: datetime | None = None) -> str:
    """Trigger a manual run through the REST API (as the UI's Trigger does) and return its id."""
    body = {
        "logical_date": logical_date.isoformat().replace("+00:00", "Z") if logical_date else None,
        "conf": {"date": day.isoformat()} if day else {},
    }
    return stack.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json=body)["dag_run_id"]


def task_instance(stack, run_id: str, task_id: str) -> dict:
    (ti,) = [ti for ti in stack.task_instances(run_id) if ti["task_id"] == task_id and ti["map_index"] < 0]
    return ti


def task_log(stack, run_id: str, task_id: str) -> str:
    """Return the text of every try of a task instance's log, read from the stack's log folder."""
    found = sorted((stack.home / "logs").glob(f"dag_id={DAG_ID}/run_id={run_id}/task_id={task_id}/*.log"))
    return "\n".join(Path(path).read_text(errors="replace") for path in found)


def task_errors(stack, run_id: str, task_id: str) -> list[str]:
    """Return the exceptions a task instance's log records, as ``Type: message``."""
    errors = []
    for line in task_log(stack, run_id, task_id).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        errors += [f"{e['exc_type']}: {e['exc_value']}" for e in entry.get("error_detail") or ()]
    return errors


def day_keys(day: date) -> set[str]:
    """Every key a successful run of ``day`` leaves: each variant's CSV and JSON, the Parquet parts, the report."""
    keys = {
        f"{EXPORTS}{shop}/{pid}/{vid}/{day:%Y%m%d}.{ext}"
        for shop, variants in VARIANTS.items()
        for pid, vid in variants
        for ext in ("csv", "json")
    }
    keys |= {
        f"{EXPORTS}_parquet/shop={shop}/date={day:%Y-%m-%d}/part-0000{n}-of-00002.parquet"
        for shop in VARIANTS
        for n in (1, 2)
    }
    return keys | {f"{EXPORTS}_runs/{day:%Y%m%d}.json"}


def of_day(objects: dict[str, dict], day: date) -> dict[str, dict]:
    """The objects of one day: its variant files, its Parquet parts and its report."""
    marks = (f"/{day:%Y%m%d}.", f"/date={day:%Y-%m-%d}/")
    return {key: value for key, value in objects.items() if any(mark in key for mark in marks)}


def report_of(world: World, day: date) -> dict:
    return json.loads(world.s3.get_object(Bucket=world.bucket, Key=f"{EXPORTS}_runs/{day:%Y%m%d}.json")["Body"].read())


def without(value: Any, names: set[str]) -> Any:
    """A JSON document without the fields ``names`` (at any depth)."""
    if isinstance(value, dict):
        return {k: without(v, names) for k, v in value.items() if k not in names}
    if isinstance(value, list):
        return [without(v, names) for v in value]
    return value


def rows_of(world: World, day: date) -> dict[str, list[dict]]:
    """The day's output rows, the moment of the export left out."""
    stats = world.query('SELECT * FROM "VariantDailyStatistics" WHERE date = %s ORDER BY id', day)
    exports = world.query('SELECT * FROM "StatisticsExport" WHERE date = %s ORDER BY id', day)
    return {"VariantDailyStatistics": stats, "StatisticsExport": [without(r, {"exportedAt"}) for r in exports]}


def overlapping(runs: list[dict]) -> list[tuple[str, str]]:
    """Pairs of runs that were running at the same time, by their start and end dates."""
    spans = [(r["dag_run_id"], instant(r["start_date"]), instant(r["end_date"])) for r in runs]
    return [(a, b) for i, (a, a0, a1) in enumerate(spans) for (b, b0, b1) in spans[i + 1 :] if a0 < b1 and b0 < a1]


def test_a_backfill_of_old_days_runs_them_at_once_each_staging_its_own_bulk_catalogs(stack, world):
    first, last = BACKFILL_DAYS[0], BACKFILL_DAYS[-1]
    dates = ["--from-date", first.isoformat(), "--to-date", last.isoformat()]
    result = stack.cli("backfill", "create", "--dag-id", DAG_ID, *dates, "--max-active-runs", "4")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    # While the runs go, watch the staging: which runs' prefixes hold staged batches at the same moment.
    staged_together: set[frozenset[str]] = set()

    def finished():
        runs = [r for r in stack.dag_runs() if r["run_type"] == "backfill"]
        staged = {"/".join(key[len(STAGING) :].split("/")[:2]) for key in world.keys(STAGING)}
        staged_together.add(frozenset(staged))
        done = len(runs) == len(BACKFILL_DAYS) and all(r["state"] in ("success", "failed") for r in runs)
        return runs if done else None

    runs = wait_until(finished, 300, f"the backfill's {len(BACKFILL_DAYS)} runs\n{stack.log_tails()}")

    assert sorted(instant(r["logical_date"]).date() for r in runs) == BACKFILL_DAYS
    assert {r["state"] for r in runs} == {"success"}, stack.log_tails()
    # The runs overlapped: at least two were running at the same time, and two had staged catalogs at once.
    assert overlapping(runs), [(r["start_date"], r["end_date"]) for r in runs]
    assert max(len(prefixes) for prefixes in staged_together) >= 2, staged_together

    objects = world.objects()
    for n, day in enumerate(BACKFILL_DAYS):
        day_objects = of_day(objects, day)
        assert set(day_objects) == day_keys(day)
        for key, value in day_objects.items():
            if key.endswith(".csv"):
                (row,) = csv.DictReader(io.StringIO(value["body"].decode()))
                assert row["date"] == day.isoformat(), key
            elif key.endswith(".json") and "/_runs/" not in key:
                assert json.loads(value["body"])["exportDate"] == day.isoformat(), key
        alpha = next(
            csv.DictReader(io.StringIO(day_objects[f"{EXPORTS}shop_alpha/1/1001/{day:%Y%m%d}.csv"]["body"].decode()))
        )
        assert alpha["impressions"] == str(n + 1)  # this day's own events
        for shop, variants in VARIANTS.items():
            parts = [
                pq.read_table(io.BytesIO(day_objects[key]["body"]))
                for key in sorted(day_objects)
                if key.startswith(f"{EXPORTS}_parquet/shop={shop}/")
            ]
            assert sorted(v for part in parts for v in part.column("variantId").to_pylist()) == sorted(
                vid for _, vid in variants
            )
            assert {d for part in parts for d in part.column("day").to_pylist()} == {day}
        report = json.loads(day_objects[f"{EXPORTS}_runs/{day:%Y%m%d}.json"]["body"])
        assert (report["ok"], report["date"], report["files"]) == (True, day.isoformat(), FILES_PER_DAY)
        # Every shop read in bulk and cut into two staged batches.
        assert {shop: (figures["catalogRead"], figures["batches"]) for shop, figures in report["perShop"].items()} == {
            shop: ("bulk", 2) for shop in VARIANTS
        }
    # Each run deleted its own staging: nothing is left of any of them.
    assert world.keys(STAGING) == []


def test_two_runs_of_one_day_started_together_one_waits_and_the_day_is_written_once(stack, world):
    for shop_id in CATALOGS:  # the bulk reads are not what this test is about: one poll each
        world.sandbox.bulk_behaviour(domain(shop_id), polls=1)
    first, second = trigger(stack, day=PAIR_DAY), trigger(stack, day=PAIR_DAY)
    runs = {run_id: stack.wait_for_run(run_id, timeout=300) for run_id in (first, second)}
    assert {run["state"] for run in runs.values()} == {"success"}, stack.log_tails()

    # One run claimed the day; the other waited in claim_export_day until that run had finished, then took over.
    logs = {run_id: task_log(stack, run_id, "claim_export_day") for run_id in runs}
    (waiter,) = [run_id for run_id, text in logs.items() if "waits for it to finish" in text]
    (holder,) = set(runs) - {waiter}
    assert f"takes the day over from the finished run {holder}" in logs[waiter], logs[waiter][-3000:]
    assert "waits for it to finish" not in logs[holder]
    # It waited by rescheduling its poke (no worker slot held between pokes), and ended only once the holder had.
    assert "Rescheduling task, marking task as UP_FOR_RESCHEDULE" in logs[waiter]
    claim = task_instance(stack, waiter, "claim_export_day")
    assert claim["state"] == "success"
    assert instant(claim["end_date"]) >= instant(runs[holder]["end_date"])
    assert instant(task_instance(stack, waiter, "report")["start_date"]) >= instant(runs[holder]["end_date"])
    (row,) = world.query('SELECT "runId" FROM "StatisticsExportDay" WHERE date = %s', PAIR_DAY)
    assert row["runId"] == waiter

    together = of_day(world.objects(), PAIR_DAY)
    assert set(together) == day_keys(PAIR_DAY)
    together_rows = rows_of(world, PAIR_DAY)
    assert len(together_rows["VariantDailyStatistics"]) == len(together_rows["StatisticsExport"]) == FILES_PER_DAY // 2
    together_report = report_of(world, PAIR_DAY)
    assert together_report["ok"] is True
    assert world.keys(f"{STAGING}{PAIR_DAY:%Y%m%d}/") == []

    # The same day run alone afterwards finds every file as it is: nothing to rewrite, nothing different.
    alone = trigger(stack, day=PAIR_DAY)
    assert stack.wait_for_run(alone, timeout=240)["state"] == "success", stack.log_tails()
    # It waited for nobody: it took the day over from the run that held it last.
    assert f"takes the day over from the finished run {waiter}" in task_log(stack, alone, "claim_export_day")
    assert "waits for it to finish" not in task_log(stack, alone, "claim_export_day")
    after = of_day(world.objects(), PAIR_DAY)
    assert set(after) == set(together)
    # Every variant file and Parquet part byte for byte (the report is compared below, its timings aside).
    files = [key for key in together if "/_runs/" not in key]
    assert {key: after[key]["body"] for key in files} == {key: together[key]["body"] for key in files}
    # Not even written again: the content-hash skip found every file as the pair had left it.
    assert {key: after[key]["modified"] for key in files} == {key: together[key]["modified"] for key in files}
    assert rows_of(world, PAIR_DAY) == together_rows
    alone_report = report_of(world, PAIR_DAY)
    assert alone_report["files"] == alone_report["filesUnchanged"] == FILES_PER_DAY
    assert without(alone_report, REPORT_TIMINGS) == without(together_report, REPORT_TIMINGS)
    assert world.keys(f"{STAGING}{PAIR_DAY:%Y%m%d}/") == []


def settled(stack, run_id: str) -> list[dict] | None:
    """Return a run's task instances once all have finished, or as soon as one waits for a retry."""
    tis = stack.task_instances(run_id)
    finished = all(ti["state"] in ("success", "failed", "upstream_failed", "skipped", "removed") for ti in tis)
    return tis if tis and (finished or any(ti["state"] == "up_for_retry" for ti in tis)) else None


def test_a_manual_run_of_today_is_refused_and_writes_nothing(stack, world):
    today = datetime.now(timezone.utc).date()
    # The date param, and a logical date of now (what the UI's Trigger form fills in).
    runs = [trigger(stack, day=today), trigger(stack, logical_date=datetime.now(timezone.utc))]
    tis = {run_id: wait_until(lambda: settled(stack, run_id), 120, f"{run_id} to settle") for run_id in runs}

    for run_id in runs:
        states = {ti["task_id"]: ti for ti in tis[run_id] if ti["map_index"] < 0}
        resolve = states["resolve_export_day"]
        assert (resolve["state"], resolve["try_number"]) == ("failed", 1)  # refused at once, never retried
        assert f"Day {today.isoformat()} has not ended" in task_log(stack, run_id, "resolve_export_day")
        assert states["claim_export_day"]["state"] == "upstream_failed"  # nothing claimed the day
    assert [k for k in world.keys() if f"/{today:%Y%m%d}" in k or f"date={today:%Y-%m-%d}" in k] == []
    assert world.query('SELECT id FROM "VariantDailyStatistics" WHERE date = %s', today) == []
    assert world.query('SELECT id FROM "StatisticsExport" WHERE date = %s', today) == []
    assert world.query('SELECT date FROM "StatisticsExportDay" WHERE date = %s', today) == []

    for run_id in runs:
        # The refusal fails the run at once: no task that runs whatever happened (ALL_DONE) is retried, minutes
        # long, for want of the day that was refused.
        retried = {
            (ti["task_id"], ti["state"], ti["try_number"]): task_errors(stack, run_id, ti["task_id"])
            for ti in tis[run_id]
            if ti["state"] == "up_for_retry" or (ti["state"] == "failed" and ti["try_number"] > 1)
        }
        assert not retried, retried
        assert stack.wait_for_run(run_id, timeout=60)["state"] == "failed"
    assert [k for k in world.keys() if f"/{today:%Y%m%d}" in k or f"date={today:%Y-%m-%d}" in k] == []
