"""`make bench-fleet`: a fleet of small shops against their catalog as one shop, under the real scheduler.

The fleet: ``--shops`` active shops with long-tail catalogs (about 2 products of 1-2 variants at the median),
one large shop on the bulk path, ``--failing`` of them failing (half with a revoked token, half without any
session), one image per product, a few events per variant. The single shop: the fleet's products and variants
as one shop (``--single-shop three-per-product``: as many variants, three to a product). Both are exported for
the same day by the same LocalExecutor stack (scheduler, dag-processor, api-server; metadata on PostgreSQL),
with the sandbox throttling every shop like Shopify's Standard plan, on the bench's store (SeaweedFS by
default).

``--repeat N`` (3) runs the pair N times, fleet then single shop, each run from the same empty state (the
bucket but for the previous day's report, and the export's tables, emptied before it), so no run finds the
files, images or rows of another. Each figure is reported as the median of the N runs with its range, and
``fleet_ratio`` is the median of the N pairs' ratios; ``pairs`` keeps every pair's own figures. The fleet run
also reports what grows with the fleet: the seconds of plan_fleet, reconcile, report and the other
day-wide tasks, the XCom bytes each task pushed, and the report's bytes. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bench  # noqa: F401 - Airflow's environment for this process and its children
from bench.stack import cpu_delta, cpu_snapshot, running_stack

SINGLE_ID = "shop_single"
LARGE_ID = "shop_large"
BUCKET = "statistics-fleet"
RUN_TIMEOUT = 3600


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--shops", type=int, default=2000, help="active shops in the fleet (default 2000)")
    parser.add_argument("--large-variants", type=int, default=4000, help="variants of the fleet's large shop")
    parser.add_argument("--failing", type=float, default=0.03, help="share of the fleet's shops that fail")
    parser.add_argument("--events-per-variant", type=int, default=2)
    parser.add_argument("--shopify-latency", type=float, default=0.05)
    parser.add_argument("--store", choices=("seaweedfs", "moto"), default="seaweedfs", help="the local S3 server")
    parser.add_argument("--store-latency", type=float, default=0.0, help="added per store request (as make bench)")
    parser.add_argument("--parallelism", type=int, default=4, help="Airflow parallelism for this 2-core machine")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs (fleet, then single shop); default 3")
    parser.add_argument(
        "--single-shop",
        choices=("same-products", "three-per-product"),
        default="same-products",
        help="the single shop's catalog: the fleet's products and variants as one shop (default), or as many "
        "variants three to a product (half the fleet's products and images: the yardstick before 2026-12-03)",
    )
    parser.add_argument("--timeline", type=Path, help="write every run's task instances (start, end, state) here")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[bench-fleet {datetime.now(timezone.utc):%H:%M:%S}] {message}", flush=True)


def long_tail_products(rng: random.Random) -> int:
    """Products of one small shop: median 2, a long tail (p95 about 10 products, so about 20 variants)."""
    return max(1, min(60, round(rng.lognormvariate(0.7, 0.95))))


def build_fleet(args: argparse.Namespace) -> tuple[list, dict[str, str], list[str], list[str]]:
    """Return the sandbox shops, each shop's kind of failure (if any), the fleet's ids and the single shop's id."""
    from shopify_sandbox.world import SandboxMedia, SandboxProduct, SandboxShop, SandboxVariant

    rng = random.Random(args.seed)
    old = datetime(2025, 1, 1, tzinfo=timezone.utc)
    next_product = iter(range(1, 10_000_000))

    def shop(shop_id: str, products: int, variants_of) -> SandboxShop:
        catalog = []
        for _ in range(products):
            pid = next(next_product)
            count = variants_of()
            catalog.append(
                SandboxProduct(
                    id=pid,
                    title=f"Product {pid}",
                    created_at=old,
                    media=[SandboxMedia(id=pid * 10 + 1, filename="photo.jpeg")],
                    variants=[SandboxVariant(id=pid * 1000 + n, title=f"V{n}") for n in range(1, count + 1)],
                )
            )
        return SandboxShop(
            domain=f"{shop_id.replace('_', '-')}.myshopify.com",
            access_token=f"shpat_bench_{shop_id}",
            products=catalog,
            restore_rate=100.0,
            bucket_size=2000,
        )

    small = [f"shop_{n:05d}" for n in range(args.shops - 1)]
    shops = [shop(shop_id, long_tail_products(rng), lambda: rng.choice((1, 2))) for shop_id in small]
    shops.append(shop(LARGE_ID, math.ceil(args.large_variants / 3), lambda: 3))
    failing = rng.sample(small, round(args.failing * args.shops))
    kinds = {shop_id: ("revoked" if n % 2 else "no session") for n, shop_id in enumerate(failing)}
    if args.single_shop == "same-products":
        # The fleet's catalog as one shop: the ratio then weighs what splitting it over shops costs, not a
        # catalog of half the products (and half the images) the fleet has.
        counts = iter([len(p.variants) for s in shops for p in s.products])
        shops.append(shop(SINGLE_ID, sum(len(s.products) for s in shops), lambda: next(counts)))
    else:
        fleet_variants = sum(len(p.variants) for s in shops for p in s.products)
        shops.append(shop(SINGLE_ID, math.ceil(fleet_variants / 3), lambda: 3))
    return shops, kinds, [*small, LARGE_ID], [SINGLE_ID]


def seed_database(app_db_url: str, shops, kinds: dict[str, str], day, events_per_variant: int) -> None:
    """The shops, their sessions and tests, and the day's events (one COPY)."""
    import psycopg

    from local_stack.demo_world import insert_shop

    noon = datetime.combine(day, datetime.min.time()) + timedelta(hours=12)
    with psycopg.connect(app_db_url) as conn, conn.cursor() as cur:
        for s in shops:
            shop_id = s.domain.split(".")[0].replace("-", "_")
            insert_shop(cur, shop_id, s.domain, s.domain, s.access_token)
        # A shop without any session: nothing the run's session linking could link, so it fails by name.
        cur.execute(
            'DELETE FROM "Session" WHERE "shopId" = ANY(%s)', ([i for i, k in kinds.items() if k == "no session"],)
        )
        cur.executemany(
            'INSERT INTO "ABTest" (id, shop, name, "productId", status) VALUES (%s, %s, %s, %s, %s)',
            [
                (f"test_{s.domain.split('.')[0]}", s.domain.split(".")[0].replace("-", "_"), "t", "0", "ACTIVE")
                for s in shops
            ],
        )
        with cur.copy(
            'COPY "ABTestEvent" (id, "testId", "sessionId", "eventType", "productId", "variantId", "createdAt") FROM STDIN'
        ) as copy:
            n = 0
            for s in shops:
                for product in s.products:
                    for variant in product.variants:
                        for k in range(events_per_variant):
                            n += 1
                            kind = "IMPRESSION" if k % 2 == 0 else "ADD_TO_CART"
                            test = f"test_{s.domain.split('.')[0]}"
                            copy.write_row((f"e{n}", test, "s", kind, str(product.id), str(variant.id), noon))
        cur.execute("ANALYZE")


class ProcessSampler:
    """Samples a process tree every half second: the CPU of each process seen (user + system) and peak RSS."""

    def __init__(self, roots: dict[str, int]) -> None:
        import psutil

        self.psutil = psutil
        self.roots = roots
        self.cpu: dict[str, dict[int, float]] = {name: {} for name in roots}
        self.peak_rss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def sample(self) -> None:
        for name, pid in self.roots.items():
            try:
                root = self.psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except self.psutil.Error:
                continue
            for process in tree:
                try:
                    times = process.cpu_times()
                    self.cpu[name][process.pid] = times.user + times.system
                    if process is not root:
                        self.peak_rss = max(self.peak_rss, process.memory_info().rss / 2**20)
                except self.psutil.Error:
                    continue

    def __enter__(self) -> ProcessSampler:
        self.sample()
        self.start = {name: dict(per) for name, per in self.cpu.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def cpu_seconds(self, name: str, *, own: bool) -> float:
        """CPU used during the sampling by the root process (``own``) or by everything below it."""
        root = self.roots[name]
        return round(
            sum(
                value - self.start[name].get(pid, 0.0) for pid, value in self.cpu[name].items() if (pid == root) == own
            ),
            2,
        )


def run_day(stack, day, shop_ids: list[str]) -> tuple[dict, list[dict], float]:
    """Trigger one run for these shops and day; return the run, its task instances and its seconds."""
    conf = {"date": day.isoformat(), "shop_ids": shop_ids}
    started = time.monotonic()
    run_id = stack.api(
        "POST", "/api/v2/dags/product_statistics_export/dagRuns", json={"logical_date": None, "conf": conf}
    )["dag_run_id"]
    run = stack.wait_for_run(run_id, timeout=RUN_TIMEOUT)
    seconds = round(time.monotonic() - started, 1)
    return run, stack.task_instances(run_id), seconds


# The export's own tables: emptied before each run so that every run starts from the same state.
EXPORT_TABLES = ("StatisticsExport", "VariantDailyStatistics", "ProductImageBackup")
# Tasks that run once a day whatever the fleet's size, whose work grows with it.
DAY_WIDE_TASKS = (
    "resolve_export_day",
    "claim_export_day",
    "link_sessions",
    "list_active_shops",
    "plan_fleet",
    "batch_sizing",
    "shops_alone",
    "packed_units",
    "moved_shops",
    "collect_batches",
    "reconcile",
    "check_pixel_health",
    "report",
    "clean_staging",
)


def reset_outputs(app_db_url: str, s3, keep: str) -> None:
    """Empty the bucket (but for ``keep``) and the export's tables: the next run starts as the first did."""
    import psycopg

    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", ()) if item["Key"] != keep]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})
    with psycopg.connect(app_db_url) as conn:
        conn.execute("TRUNCATE " + ", ".join(f'"{table}"' for table in EXPORT_TABLES))


def libpq_url(sqlalchemy_url: str) -> str:
    """Return the metadata database's SQLAlchemy URL as psycopg takes it (no driver in the scheme)."""
    return "postgresql" + sqlalchemy_url[sqlalchemy_url.index("://") :]


def xcom_bytes(metadata_url: str, run_id: str) -> dict[str, dict[str, int]]:
    """Return, per task, how many XComs the run's instances pushed and their bytes (as JSON text)."""
    import psycopg

    with psycopg.connect(libpq_url(metadata_url)) as conn:
        rows = conn.execute(
            "SELECT task_id, count(*), coalesce(sum(octet_length(value::text)), 0) FROM xcom"
            " WHERE run_id = %s GROUP BY task_id ORDER BY task_id",
            (run_id,),
        ).fetchall()
    return {task_id: {"xcoms": int(count), "bytes": int(size)} for task_id, count, size in rows}


def unit_phases(metadata_url: str, run_id: str) -> dict[str, list[float]]:
    """Return the packed units' phases ([wall s, CPU s] each), summed over the run's units (their UnitResults)."""
    import psycopg

    with psycopg.connect(libpq_url(metadata_url)) as conn:
        rows = conn.execute(
            "SELECT value FROM xcom WHERE run_id = %s AND task_id = 'export_shop_unit' AND key = 'unit_result'",
            (run_id,),
        ).fetchall()
    summed: dict[str, list[float]] = {}
    for (value,) in rows:
        document = json.loads(value) if isinstance(value, str) else value
        for name, (wall, cpu) in (document.get("phases") or {}).items():
            spent = summed.setdefault(name, [0.0, 0.0])
            spent[0], spent[1] = round(spent[0] + wall, 2), round(spent[1] + cpu, 2)
    return summed


def task_seconds(task_instances: list[dict], task_ids: tuple[str, ...]) -> dict[str, float]:
    """Return the seconds each of these tasks ran (summed over tries and mapped instances)."""
    spent: dict[str, float] = {}
    for ti in task_instances:
        if ti["task_id"] in task_ids and ti.get("duration") is not None:
            spent[ti["task_id"]] = round(spent.get(ti["task_id"], 0.0) + float(ti["duration"]), 2)
    return spent


def measure_run(airflow, services, roots: dict[str, int], day, shop_ids: list[str]) -> dict[str, Any]:
    """Run one day for these shops under the sampler; return its run, task instances and figures."""
    before = cpu_snapshot(services)
    with ProcessSampler(roots) as sample:
        run, tis, seconds = run_day(airflow, day, shop_ids)
    cpu = cpu_delta(before, cpu_snapshot(services))
    return {
        "run": run,
        "task_instances": tis,
        "seconds": seconds,
        "scheduler_cpu_seconds": sample.cpu_seconds("scheduler", own=True),
        "worker_cpu_seconds": sample.cpu_seconds("scheduler", own=False),
        "peak_rss_mb": round(sample.peak_rss, 1),
        "store_cpu_seconds": cpu["store"],
        "sandbox_cpu_seconds": cpu["sandbox"],
        "machine_cpu_busy": cpu["busy"],
    }


def median_and_range(values: list[float]) -> dict[str, float]:
    """Return the median of ``values`` and their lowest and highest."""
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    from include.statistics_export.keys import report_key
    from local_stack.airflow_stack import airflow_stack, metadata_database
    from local_stack.services import Endpoints, create_bucket, postgres_server, s3_client, scratch_database

    day = (datetime.now(timezone.utc) - timedelta(days=1)).date()
    shops, kinds, fleet_ids, single_ids = build_fleet(args)
    by_id = {s.domain.split(".")[0].replace("-", "_"): s for s in shops}
    fleet_variants = sum(len(p.variants) for i in fleet_ids for p in by_id[i].products)
    single_variants = sum(len(p.variants) for p in by_id[SINGLE_ID].products)
    log(f"Fleet: {len(fleet_ids)} shops, {fleet_variants} variants, {len(kinds)} failing; single: {SINGLE_ID}")
    pairs: list[dict[str, Any]] = []
    timelines: list[dict[str, Any]] = []
    with ExitStack() as stack:
        home = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
        stack.callback(shutil.rmtree, home, True)
        server = stack.enter_context(
            postgres_server(os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL"))
        )
        app_db_url = stack.enter_context(scratch_database(server, prefix="fleet"))
        seeding = time.monotonic()
        seed_database(app_db_url, shops, kinds, day, args.events_per_variant)
        log(f"Seeded the app database in {time.monotonic() - seeding:.1f} s")
        services = stack.enter_context(running_stack(shops, args.shopify_latency, args.store_latency, args.store))
        for shop_id, kind in kinds.items():
            if kind == "revoked":
                services.sandbox.call("revoke", by_id[shop_id].domain)
        services.sandbox.call("bulk_behaviour", by_id[LARGE_ID].domain, 3)
        services.sandbox.call("bulk_behaviour", by_id[SINGLE_ID].domain, 3)
        create_bucket(services.store_address, BUCKET)
        s3 = s3_client(services.store_address)
        # What a production day finds: yesterday's report, naming the large shop's size (the fleet plan reads it).
        yesterday = {
            "perShop": {LARGE_ID: {"products": len(by_id[LARGE_ID].products), "variants": args.large_variants}}
        }
        yesterday_key = report_key(day - timedelta(days=1))
        s3.put_object(Bucket=BUCKET, Key=yesterday_key, Body=json.dumps(yesterday).encode())
        endpoints = Endpoints(app_db_url, services.store_endpoint, BUCKET, services.sandbox.address)
        extra_env = {
            "STATISTICS_EXPORT_START_DATE": datetime.now(timezone.utc).date().isoformat(),
            "STATISTICS_EXPORT_BULK_POLL_SECONDS": "2",
            "AIRFLOW__CORE__PARALLELISM": str(args.parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(args.parallelism),
        }
        metadata_url = stack.enter_context(metadata_database(server))
        airflow = stack.enter_context(
            airflow_stack(endpoints, home / "airflow-home", metadata_url, extra_env=extra_env)
        )
        airflow.unpause()
        roots = {name: process.pid for name, process in airflow.processes.items() if name in ("scheduler",)}
        healthy = [i for i in fleet_ids if i not in kinds]
        for n in range(1, args.repeat + 1):
            if n > 1:
                reset_outputs(app_db_url, s3, yesterday_key)
            fleet = measure_run(airflow, services, roots, day, fleet_ids)
            log(f"Pair {n}: fleet {fleet['run']['state']} in {fleet['seconds']} s, {len(fleet['task_instances'])} TIs")
            # Read now: the single shop's run writes its own report under the same day's key.
            report_object = s3.get_object(Bucket=BUCKET, Key=report_key(day))
            fleet_report_bytes = int(report_object["ContentLength"])
            fleet_report = json.loads(report_object["Body"].read())
            missing = files_missing(s3, by_id, healthy, day)
            xcoms = xcom_bytes(metadata_url, fleet["run"]["dag_run_id"])
            phases = unit_phases(metadata_url, fleet["run"]["dag_run_id"])
            reset_outputs(app_db_url, s3, yesterday_key)
            single = measure_run(airflow, services, roots, day, single_ids)
            log(f"Pair {n}: single shop {single['run']['state']} in {single['seconds']} s")
            timelines.append({"fleet": fleet["task_instances"], "single": single["task_instances"]})
            xcom_total = sum(task["bytes"] for task in xcoms.values())
            pairs.append(
                {
                    "seconds": fleet["seconds"],
                    "single_shop_seconds": single["seconds"],
                    "fleet_ratio": round(fleet["seconds"] / single["seconds"], 3),
                    "task_instances": len(fleet["task_instances"]),
                    "single_shop_task_instances": len(single["task_instances"]),
                    "scheduler_cpu_seconds": fleet["scheduler_cpu_seconds"],
                    "worker_cpu_seconds": fleet["worker_cpu_seconds"],
                    "peak_rss_mb": fleet["peak_rss_mb"],
                    "store_cpu_seconds": fleet["store_cpu_seconds"],
                    "sandbox_cpu_seconds": fleet["sandbox_cpu_seconds"],
                    "machine_cpu_busy": fleet["machine_cpu_busy"],
                    "single_shop_scheduler_cpu_seconds": single["scheduler_cpu_seconds"],
                    "single_shop_worker_cpu_seconds": single["worker_cpu_seconds"],
                    "single_shop_store_cpu_seconds": single["store_cpu_seconds"],
                    "single_shop_sandbox_cpu_seconds": single["sandbox_cpu_seconds"],
                    "single_shop_machine_cpu_busy": single["machine_cpu_busy"],
                    "failed_shops_reported": len(set(fleet_report["failedShops"]) & set(kinds)),
                    "failed_shops_named_in_labels": failed_shops_named(fleet["task_instances"], kinds),
                    "files_missing_for_healthy_shops": missing,
                    "fleet_state": fleet["run"]["state"],
                    "single_state": single["run"]["state"],
                    "day_wide_task_seconds": task_seconds(fleet["task_instances"], DAY_WIDE_TASKS),
                    "unit_phases": phases,
                    "xcom_bytes_by_task": xcoms,
                    "xcom_bytes_per_shop": round(xcom_total / len(fleet_ids), 1),
                    "report_bytes": fleet_report_bytes,
                    "report_bytes_per_shop": round(fleet_report_bytes / len(fleet_ids), 1),
                }
            )
        if args.timeline:
            args.timeline.write_text(json.dumps(timelines, indent=1))
    summary = summarize(pairs)
    report = {
        "shops": len(fleet_ids),
        "variants": fleet_variants,
        "single_shop_variants": single_variants,
        "products": sum(len(by_id[i].products) for i in fleet_ids),
        "single_shop_products": len(by_id[SINGLE_ID].products),
        "single_shop": args.single_shop,
        "repeat": args.repeat,
        "fleet_ratio": summary["fleet_ratio"]["median"],
        "fleet_ratio_range": [summary["fleet_ratio"]["min"], summary["fleet_ratio"]["max"]],
        "task_instances": max(pair["task_instances"] for pair in pairs),
        "failed_shops_reported": min(pair["failed_shops_reported"] for pair in pairs),
        "failed_shops_generated": len(kinds),
        "files_missing_for_healthy_shops": max(pair["files_missing_for_healthy_shops"] for pair in pairs),
        "medians": summary,
        "pairs": pairs,
        "parallelism": args.parallelism,
        "store": args.store,
        "store_latency": args.store_latency,
    }
    print(json.dumps(report))
    return 0


def files_missing(s3, by_id: dict[str, Any], healthy: list[str], day) -> int:
    """Count the CSV and JSON files of the healthy shops' variants that are not in the bucket."""
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="statistic-exports/shop_"):
        keys.update(item["Key"] for item in page.get("Contents", ()))
    return sum(
        1
        for shop_id in healthy
        for p in by_id[shop_id].products
        for v in p.variants
        for ext in ("csv", "json")
        if f"statistic-exports/{shop_id}/{p.id}/{v.id}/{day:%Y%m%d}.{ext}" not in keys
    )


def summarize(pairs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Return the median and range over the pairs of every numeric figure."""
    names = [
        name for name, value in pairs[0].items() if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    return {name: median_and_range([pair[name] for pair in pairs]) for name in names}


def failed_shops_named(task_instances: list[dict], kinds: dict[str, str]) -> int:
    """Count the generated failing shops the labels of the run's failed task instances name."""
    labels = " ".join(ti.get("rendered_map_index") or "" for ti in task_instances if ti["state"] == "failed")
    return sum(1 for shop_id in kinds if shop_id.replace("_", "-") + ".myshopify.com" in labels)


if __name__ == "__main__":
    raise SystemExit(main())
