"""`python -m bench.planning`: how long a large shop's planning takes, the step every batch waits for.

One shop of ``--variants`` variants (the bench's world, read in bulk), planned ``--repeat`` times as
`plan_shop_batches` does it: the bulk result downloaded and assembled, cut into batches and staged in the
bucket. The bulk query is started and waited for once (`bulk_query_seconds`); each repeat plans the same
result again under a run of its own. The last line is one JSON object: each repeat's seconds, their median and
range, batches staged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

from bench.stack import running_stack
from bench.world import SHOP_DOMAIN, SHOP_ID, build_world, seed_shop

BUCKET = "bench-planning"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.planning", description=__doc__.splitlines()[0])
    p.add_argument("--variants", type=int, default=100_000, help="variants of the shop (default 100,000)")
    p.add_argument("--repeat", type=int, default=3, help="plannings of the same bulk result (default 3)")
    p.add_argument("--batch-variants", type=int, default=500, help="variants per batch")
    p.add_argument("--shopify-latency", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=3)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from include.statistics_export import tasks
    from include.statistics_export.day_claims import DayWriter
    from include.statistics_export.handoffs import ShopRef
    from include.statistics_export.settings import Settings
    from local_stack.services import Endpoints, connection_env, create_bucket, postgres_server, scratch_database

    day = (datetime.now(timezone.utc) - timedelta(days=1)).date()
    world = build_world(args.variants, max(1, round(args.variants * 0.3)), day, args.seed)
    settings = Settings(batch_variants=args.batch_variants, bulk_threshold=1)
    seconds: list[float] = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, os.environ["BENCH_AIRFLOW_HOME"], True)
        server = stack.enter_context(
            postgres_server(os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL"))
        )
        app_db_url = stack.enter_context(scratch_database(server, prefix="planning"))
        import psycopg

        with psycopg.connect(app_db_url) as conn:
            seed_shop(conn, world)
        services = stack.enter_context(running_stack([world.shop], args.shopify_latency, 0.0, "seaweedfs"))
        create_bucket(services.store_address, BUCKET)
        endpoints = Endpoints(app_db_url, services.store_endpoint, BUCKET, services.sandbox.address)
        os.environ.update(connection_env(endpoints))
        services.sandbox.call("bulk_behaviour", SHOP_DOMAIN, 1)
        started = time.monotonic()
        read = tasks.start_catalog_read(ShopRef(SHOP_ID, SHOP_DOMAIN), settings)
        while (ready := tasks.poll_catalog_read(read)) is None:
            time.sleep(0.5)
        bulk_seconds = round(time.monotonic() - started, 2)
        print(f"Bulk query started and completed in {bulk_seconds} s", flush=True)
        for n in range(1, args.repeat + 1):
            writer = DayWriter(day, f"planning_{n}")
            tasks.claim_export_day(writer, lambda other: False)  # as the DAG's claim_export_day, before planning
            started = time.monotonic()
            plan = tasks.plan_shop_batches(ready, writer, settings)
            seconds.append(round(time.monotonic() - started, 2))
            print(f"Planning {n}: {seconds[-1]} s, {len(plan.batches)} batches, {plan.variants} variants", flush=True)
    print(
        json.dumps(
            {
                "variants": world.variants,
                "products": world.products,
                "batches": len(plan.batches),
                "bulk_query_seconds": bulk_seconds,
                "plan_seconds": statistics.median(seconds),
                "plan_seconds_range": [min(seconds), max(seconds)],
                "runs": seconds,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
