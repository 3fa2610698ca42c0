"""`python -m bench`: build the synthetic world, run our export, the floor, the next day's export and the seed's way;
print one JSON line.

Every line before the last is for people (phases, the metrics query plan); the last line is the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from bench.floor import FLOOR_CONNECTIONS, image_floor, object_sizes, put_floor, throttle_floor
from bench.ours import batch_pool, run_export
from bench.query_plan import explain_metrics
from bench.second_day import day_events, run_second_day
from bench.stack import STORES, cores_floor, cpu_delta, cpu_snapshot, in_flight_peak, running_stack
from bench.world import SHOP_DOMAIN, SHOP_ID, build_world, seed_events, seed_shop

BUCKET = "bench"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the bench's options."""
    from include.statistics_export.settings import Settings

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--variants", type=int, default=10_000, help="variants of the shop (default 10,000)")
    p.add_argument("--products", type=int, default=None, help="products (default: 30%% of the variants)")
    p.add_argument("--events", type=int, default=1_000_000, help="events over 30 days (default 1,000,000)")
    p.add_argument("--shopify-latency", type=float, default=0.05, help="seconds the sandbox adds to every answer")
    p.add_argument(
        "--store", choices=STORES, default="seaweedfs", help="the S3 server (default seaweedfs; moto as before)"
    )
    p.add_argument(
        "--store-latency",
        type=float,
        default=0.0,
        help="seconds a proxy in front of the store adds to every request (default 0: no proxy; bench/latency_proxy.py, "
        "an asyncio proxy: its own cap is in bench/README.md)",
    )
    p.add_argument("--batch-parallelism", type=int, default=2, help="batch processes at a time (2: a 2-core worker)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=Settings().concurrency,
        help="threads per batch (STATISTICS_EXPORT_CONCURRENCY)",
    )
    p.add_argument(
        "--image-in-flight",
        type=int,
        default=Settings().image_in_flight,
        help="image downloads in flight per batch process (STATISTICS_EXPORT_IMAGE_IN_FLIGHT)",
    )
    p.add_argument(
        "--store-in-flight",
        type=int,
        default=Settings().store_in_flight,
        help="requests to the store in flight per batch process (STATISTICS_EXPORT_STORE_IN_FLIGHT)",
    )
    p.add_argument("--batch-variants", type=int, default=500, help="variants per batch")
    p.add_argument("--bulk-threshold", type=int, default=None, help="products from which bulk is used (default: ours)")
    p.add_argument("--bulk-polls", type=int, default=4, help="status polls before the sandbox's bulk query completes")
    p.add_argument("--poll-interval", type=float, default=0.5, help="seconds between bulk status polls")
    p.add_argument("--baseline-variants", type=int, default=1000, help="variants in the seed's-way slice")
    p.add_argument("--seed", type=int, default=3, help="random seed of the world")
    return p.parse_args(argv)


def log(message: str) -> None:
    """Print a progress line for people (the JSON comes last)."""
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the whole bench and print its JSON as the last line."""
    args = parse_args(argv)
    from include.statistics_export.handoffs import ShopRef
    from include.statistics_export.settings import IMAGE_HOSTS, Settings
    from local_stack.services import (
        Endpoints,
        connection_env,
        create_bucket,
        image_hosts_env,
        postgres_server,
        scratch_database,
    )

    # The other settings keep their defaults (the image limits and revenue cap do not bound the bench).
    threshold = {} if args.bulk_threshold is None else {"bulk_threshold": args.bulk_threshold}
    settings = Settings(
        batch_variants=args.batch_variants,
        concurrency=args.concurrency,
        store_in_flight=args.store_in_flight,
        image_in_flight=args.image_in_flight,
        **threshold,
    )
    # The first day is the day before yesterday, so that the second day (the same shop the next day) is yesterday,
    # a whole day as a daily run exports.
    day = (datetime.now(timezone.utc) - timedelta(days=2)).date()
    second_day = day + timedelta(days=1)
    products = args.products or max(1, round(args.variants * 0.3))
    world = build_world(args.variants, products, day, args.seed)
    log(
        f"World: {world.products} products, {world.variants} variants, {args.events} events, export day {day} "
        f"(the second day {second_day})"
    )
    report: dict = {}
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, os.environ["BENCH_AIRFLOW_HOME"], True)
        server = stack.enter_context(
            postgres_server(os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL"))
        )
        app_db_url = stack.enter_context(scratch_database(server, prefix="bench"))
        started = time.monotonic()
        import psycopg

        with psycopg.connect(app_db_url) as conn:
            seed_shop(conn, world)
            seed_events(conn, world, args.events, args.seed)
        log(f"Seeded the app database in {time.monotonic() - started:.1f} s")
        services = stack.enter_context(
            running_stack([world.shop], args.shopify_latency, args.store_latency, args.store)
        )
        create_bucket(services.store_address, BUCKET)
        endpoints = Endpoints(app_db_url, services.store_endpoint, BUCKET, services.sandbox.address)
        os.environ.update({**connection_env(endpoints), **image_hosts_env(endpoints)})
        # The sandbox's CDN serves the images: its origin allowed as the local stack allows it.
        settings = replace(settings, image_hosts=IMAGE_HOSTS.read(os.environ))
        services.sandbox.call("bulk_behaviour", SHOP_DOMAIN, args.bulk_polls)
        pool, start_rss = batch_pool(args.batch_parallelism)
        stack.callback(pool.shutdown)
        services.sandbox.call("reset_stats")
        puts_before = services.proxy.call("count", "PUT") if services.proxy else 0
        peak = in_flight_peak(services)  # the proxy's count of requests in flight at once, from here

        shop = ShopRef(SHOP_ID, SHOP_DOMAIN)
        cpu_before = cpu_snapshot(services)
        ours = run_export(shop, day, settings, poll_interval=args.poll_interval, pool=pool)
        cpu = cpu_delta(cpu_before, cpu_snapshot(services))
        export_in_flight = peak()
        shopify = services.sandbox.call("stats", SHOP_DOMAIN)
        sizes = object_sizes(services.store_address, BUCKET)
        # Without a proxy counting requests: one PUT per object written (a first run into an empty bucket).
        puts = services.proxy.call("count", "PUT") - puts_before if services.proxy else len(sizes)
        cpu_per_1000 = 1000 * ours.worker_cpu_seconds / max(1, ours.variants)
        log(
            f"Our export: {ours.seconds} s ({ours.mode}, {ours.batches} batches, planning {ours.plan_seconds} s "
            f"of which bulk wait {ours.bulk_wait_seconds} s), {puts} PUTs, cost {shopify['cost_charged']}, "
            f"throttled {shopify['throttled']}, {shopify['cdn_requests']} image downloads, "
            f"batch peak RSS {ours.peak_rss_mb} MB, worker CPU {ours.worker_cpu_seconds} s "
            f"({cpu_per_1000:.2f} s per 1,000 variants); files written {ours.files} ({ours.files_unchanged} "
            f"unchanged), images backed up {ours.images} ({ours.images_reused} reused)"
        )
        log("Batch phases, summed over batches, [wall s, CPU s]: " + json.dumps(ours.phases))
        log(
            f"CPU during our export: the store {cpu['store']:.1f} s, the sandbox {cpu['sandbox']:.1f} s, "
            f"workers {ours.worker_cpu_seconds} s; the machine's cores {100 * cpu['busy']:.0f}% busy (everyone's work)"
        )
        if ours.variants != world.variants:
            raise SystemExit(f"the export wrote {ours.variants} variants, the shop has {world.variants}")

        floor_cpu_before, floor_client_cpu = cpu_snapshot(services), time.process_time()
        peak = in_flight_peak(services)
        floor_puts = put_floor(sizes)
        floor_in_flight = peak()
        floor_client_cpu = time.process_time() - floor_client_cpu
        floor_cpu = cpu_delta(floor_cpu_before, cpu_snapshot(services))
        floor_throttle = throttle_floor(shopify["cost_charged"], world.shop.restore_rate)
        floor_images, image_bytes = image_floor(app_db_url, SHOP_ID, args.batch_parallelism * args.image_in_flight)
        floor = max(floor_puts, floor_throttle, floor_images)
        log(
            f"Floor: {len(sizes)} PUTs through obstore, {FLOOR_CONNECTIONS} in flight, in {floor_puts:.2f} s; "
            f"throttle {floor_throttle:.2f} s; {ours.images} images ({image_bytes} bytes) downloaded again with "
            f"{args.batch_parallelism * args.image_in_flight} threads in {floor_images:.2f} s"
        )
        if services.proxy:
            log(
                f"Store requests in flight at most: {export_in_flight} during our export, {floor_in_flight} in the floor"
            )

        plan = explain_metrics(app_db_url, SHOP_ID, [str(v) for v in world.variant_ids[: args.batch_variants]], day)
        log(f"Metrics query, {plan['variants']} variants: {plan['warm_ms']} ms warm ({plan['cold_ms']} ms cold)")
        log(plan["plan"])

        next_day = run_second_day(
            shop,
            world,
            second_day,
            events=day_events(args.events),
            seed=args.seed,
            app_db_url=app_db_url,
            services=services,
            bucket=BUCKET,
            settings=settings,
            poll_interval=args.poll_interval,
            pool=pool,
        )
        log(
            f"The second day ({second_day}, {next_day['events']} new events): {next_day['seconds']} s "
            f"({next_day['batches']} batches, planning {next_day['plan_seconds']} s), worker CPU "
            f"{next_day['worker_cpu_seconds']} s ({next_day['worker_cpu_seconds_per_1000_variants']:.2f} s per "
            f"1,000 variants); images backed up {next_day['images_backed_up']} ({next_day['images_reused']} reused), "
            f"files written {next_day['files_written']} ({next_day['files_unchanged']} unchanged), "
            f"{next_day['objects_written']} new objects ({next_day['objects_kept']} kept: {next_day['bytes_kept']} bytes), "
            f"{next_day['variants_with_other_numbers']} variants with "
            f"other numbers than the first day; the store {next_day['store_cpu_seconds']:.1f} s of CPU, the "
            f"machine's cores {100 * next_day['machine_cpu_busy']:.0f}% busy"
        )
        log("Second day's batch phases, summed over batches: " + json.dumps(next_day["phases"]))

        services.sandbox.call("refill", SHOP_DOMAIN)
        services.sandbox.call("reset_stats")
        stride = max(1, world.variants // args.baseline_variants)
        slice_ids = world.variant_ids[::stride][: args.baseline_variants]
        from bench.baseline import run_baseline

        base = run_baseline(shop, SHOP_DOMAIN, world.shop.access_token, app_db_url, slice_ids, day)
        base_shopify = services.sandbox.call("stats", SHOP_DOMAIN)
        baseline_seconds = base["slice_seconds"] * world.variants / base["slice_variants"]
        log(
            f"Seed's way: {base['slice_seconds']} s for {base['slice_variants']} variants ({base['ms_per_variant']} ms each)"
        )

        report = {
            "store": args.store,
            "variants": world.variants,
            "day": day.isoformat(),
            "seconds": ours.seconds,
            "baseline_seconds": round(baseline_seconds, 1),
            "speedup": round(baseline_seconds / ours.seconds, 2),
            "floor_seconds": round(floor, 2),
            "overhead_ratio": round(ours.seconds / floor, 3),
            "peak_rss_mb": ours.peak_rss_mb,
            "peak_rss_mb_by_tenth": ours.peak_rss_mb_by_tenth,
            "worker_cpu_seconds_per_1000_variants": round(cpu_per_1000, 3),
            "worker_cpu_seconds": ours.worker_cpu_seconds,
            "files_written": ours.files,
            "files_unchanged": ours.files_unchanged,
            "images_backed_up": ours.images,
            "images_reused": ours.images_reused,
            "parquet_parts_written": ours.parquet_parts_written,
            "phases": {name: {"wall_s": wall, "cpu_s": spent} for name, (wall, spent) in ours.phases.items()},
            "store_cpu_seconds": round(cpu["store"], 2),
            "sandbox_cpu_seconds": round(cpu["sandbox"], 2),
            "machine_cpu_busy": cpu["busy"],
            "graphql_cost": shopify["cost_charged"],
            "throttled": shopify["throttled"],
            "puts": puts,
            "products": world.products,
            "events": args.events,
            "path": ours.mode,
            "batches": ours.batches,
            "batch_parallelism": args.batch_parallelism,
            "concurrency": args.concurrency,
            "store_in_flight": args.store_in_flight,
            "image_in_flight": args.image_in_flight,
            "in_flight_peak": export_in_flight,
            "floor_in_flight_peak": floor_in_flight,
            "plan_seconds": ours.plan_seconds,
            "bulk_wait_seconds": ours.bulk_wait_seconds,
            "batch_seconds_max": max(ours.batch_seconds, default=0.0),
            "graphql_requests": shopify["requests"],
            "cdn_requests": shopify["cdn_requests"],
            "objects_written": len(sizes),
            "floor_put_seconds": round(floor_puts, 2),
            "floor_store_cpu_seconds": round(floor_cpu["store"], 2),
            "floor_client_cpu_seconds": round(floor_client_cpu, 2),
            "floor_machine_cpu_busy": floor_cpu["busy"],
            "cores_floor_seconds": round(cores_floor(cpu, ours.worker_cpu_seconds), 2),
            "floor_throttle_seconds": round(floor_throttle, 2),
            "floor_image_seconds": round(floor_images, 2),
            "floor_image_bytes": image_bytes,
            "worker_start_rss_mb": start_rss,
            "metrics_query_ms": plan["warm_ms"],
            "metrics_query_cold_ms": plan["cold_ms"],
            "baseline_slice_variants": base["slice_variants"],
            "baseline_slice_seconds": base["slice_seconds"],
            "baseline_ms_per_variant": base["ms_per_variant"],
            "baseline_graphql_cost": base_shopify["cost_charged"],
            "baseline_throttled": base_shopify["throttled"],
            "shopify_latency": args.shopify_latency,
            "store_latency": args.store_latency,
            "second_day": next_day,
        }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
