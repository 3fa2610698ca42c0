"""`python -m bench.crossover`: the product count from which the bulk catalog read beats the paginated one.

For each shop size, the catalog is read both ways through the functions the DAG's tasks run, and only
what differs between the two paths is timed (the files written are the same either way):
pages: plan from the product listing, then every batch fetches its products by id (``batch_parallelism``
batches at a time); bulk: start the bulk query, poll every ``poll_interval`` until it completes, stage the
catalog in the bucket, then every batch reads its staged products. The shop's cost bucket is full at the
start of each read, as it is for a daily run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import date, datetime, timedelta, timezone

import psycopg

from bench.stack import bench_writer, running_stack
from bench.world import SHOP_DOMAIN, SHOP_ID, build_world, seed_shop

BUCKET = "bench-crossover"


def read_catalog(settings, day: date, poll_interval: float, parallelism: int) -> dict:
    """Read the shop's catalog the way ``settings`` picks and return the seconds, path and batches."""
    from export_hooks.r2 import R2Hook
    from include.statistics_export import tasks
    from include.statistics_export.handoffs import BatchPlan, ShopRef
    from include.statistics_export.pipeline.read import read_batch

    shop = ShopRef(SHOP_ID, SHOP_DOMAIN)
    started = time.monotonic()
    read = tasks.start_catalog_read(shop, settings)
    while (ready := tasks.poll_catalog_read(read)) is None:
        time.sleep(poll_interval)  # the sensor's poke interval
    plan = tasks.plan_shop_batches(ready, bench_writer(day), settings)

    def fetch(batch: BatchPlan) -> int:
        # As export_product_batch: a staged batch reads the bucket and opens no Shopify hook.
        if batch.staged_key:
            return len(read_batch(None, R2Hook(), batch).products)
        with tasks.shopify_for(SHOP_ID) as shopify:
            return len(read_batch(shopify, R2Hook(), batch).products)

    with ThreadPoolExecutor(parallelism) as pool:
        products = sum(pool.map(fetch, plan.batches))
    return {"path": plan.mode, "seconds": round(time.monotonic() - started, 2), "products": products}


def measure(products: int, args, day: date, server_url: str) -> dict:
    """Build a shop of ``products`` products and read its catalog by pages and in bulk."""
    from include.statistics_export.settings import Settings
    from local_stack.services import Endpoints, connection_env, create_bucket, scratch_database

    world = build_world(max(products, round(products * args.variants_per_product)), products, day, args.seed)
    row = {"products": products, "variants": world.variants}
    with ExitStack() as stack:
        app_db_url = stack.enter_context(scratch_database(server_url, prefix="bench_crossover"))
        with psycopg.connect(app_db_url) as conn:
            seed_shop(conn, world)
        services = stack.enter_context(running_stack([world.shop], args.shopify_latency, args.store_latency))
        create_bucket(services.store_address, BUCKET)
        os.environ.update(
            connection_env(Endpoints(app_db_url, services.store_endpoint, BUCKET, services.sandbox.address))
        )
        services.sandbox.call("bulk_behaviour", SHOP_DOMAIN, args.bulk_polls)
        for name, threshold in (("pages", 10**9), ("bulk", 0)):
            services.sandbox.call("refill", SHOP_DOMAIN)
            services.sandbox.call("reset_stats")
            result = read_catalog(Settings(bulk_threshold=threshold), day, args.poll_interval, args.batch_parallelism)
            stats = services.sandbox.call("stats", SHOP_DOMAIN)
            if result["path"] != name or result["products"] != products:
                raise SystemExit(f"{name} read {result} for {products} products")
            row[f"{name}_seconds"] = result["seconds"]
            row[f"{name}_cost"] = stats["cost_charged"]
            row[f"{name}_throttled"] = stats["throttled"]
    return row


def main(argv: list[str] | None = None) -> int:
    """Sweep the shop sizes and print one JSON line per size, then the crossover."""
    p = argparse.ArgumentParser(prog="python -m bench.crossover", description=__doc__)
    p.add_argument("--products", default="50,100,200,400,800", help="comma-separated shop sizes")
    p.add_argument("--variants-per-product", type=float, default=3.3)
    p.add_argument("--shopify-latency", type=float, default=0.05)
    p.add_argument("--store-latency", type=float, default=0.04)
    p.add_argument("--bulk-polls", type=int, default=4)
    p.add_argument("--poll-interval", type=float, default=0.5)
    p.add_argument("--batch-parallelism", type=int, default=2)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    from local_stack.services import postgres_server

    day = (datetime.now(timezone.utc) - timedelta(days=1)).date()
    rows = []
    try:
        with postgres_server(os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")) as url:
            for products in (int(n) for n in args.products.split(",")):
                rows.append(measure(products, args, day, url))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(os.environ["BENCH_AIRFLOW_HOME"], ignore_errors=True)
    faster = [row["products"] for row in rows if row["bulk_seconds"] < row["pages_seconds"]]
    print(json.dumps({"crossover_products": min(faster) if faster else None, "sizes": len(rows)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
