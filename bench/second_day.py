"""The second day: the same shop exported the next day, its images backed up and the first day's files in place.

What a daily run costs in steady state. The next day's events arrive first (seeded as the first day's were, a
day's share of them, with another seed: other numbers for the same variants), then the export runs again with
the same warm batch workers, the Shopify cost bucket full again as for a daily run.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from datetime import date
from typing import Any

from bench.floor import object_sizes
from bench.ours import run_export
from bench.stack import Stack, cores_floor, cpu_delta, cpu_snapshot, in_flight_peak
from bench.world import EVENT_DAYS, SHOP_DOMAIN, BenchWorld, seed_events
from include.statistics_export.handoffs import ShopRef
from include.statistics_export.keys import STAGING_ROOT
from include.statistics_export.settings import Settings

# The second day's events come from their own random stream, not the first days' again.
SECOND_DAY_SEED_OFFSET = 1_000

# Variants whose second day's row says something else than their first day's (counts or revenue).
_VARIANTS_WITH_OTHER_NUMBERS = """
SELECT count(*)
FROM "VariantDailyStatistics" second
LEFT JOIN "VariantDailyStatistics" first
  ON first.shop = second.shop AND first."productId" = second."productId"
 AND first."variantId" = second."variantId" AND first.date = %(first_day)s
WHERE second.shop = %(shop)s AND second.date = %(second_day)s
  AND (first.id IS NULL
       OR (first.impressions, first."addToCarts", first.orders, first.revenue)
          IS DISTINCT FROM (second.impressions, second."addToCarts", second.orders, second.revenue))
"""


def day_events(events: int) -> int:
    """Return one day's share of ``events`` spread over the first day's window (what the next day brings)."""
    return round(events / EVENT_DAYS)


def run_second_day(
    shop: ShopRef,
    world: BenchWorld,
    second_day: date,
    *,
    events: int,
    seed: int,
    app_db_url: str,
    services: Stack,
    bucket: str,
    settings: Settings,
    poll_interval: float,
    pool: ProcessPoolExecutor,
) -> dict[str, Any]:
    """Seed ``second_day``'s ``events``, export the day (timed as S was) and return its figures."""
    import psycopg

    with psycopg.connect(app_db_url) as conn:
        seed_events(conn, world, events, seed + SECOND_DAY_SEED_OFFSET, last_day=second_day, days=1)
    services.sandbox.call("refill", SHOP_DOMAIN)
    services.sandbox.call("reset_stats")
    sizes_before = object_sizes(services.store_address, bucket)
    staged_before = object_sizes(services.store_address, bucket, STAGING_ROOT)
    puts_before = services.proxy.call("count", "PUT") if services.proxy else 0
    peak = in_flight_peak(services)

    cpu_before = cpu_snapshot(services)
    run = run_export(shop, second_day, settings, poll_interval=poll_interval, pool=pool)
    export_in_flight = peak()
    cpu = cpu_delta(cpu_before, cpu_snapshot(services))
    shopify = services.sandbox.call("stats", SHOP_DOMAIN)
    # New keys only (the day's files and Parquet parts): what a day adds to the bucket (docs/scale.md, retention).
    # An object rewritten under an existing key is not counted.
    sizes_after = object_sizes(services.store_address, bucket)
    staged = object_sizes(services.store_address, bucket, STAGING_ROOT)
    objects_written = len(sizes_after) - len(sizes_before)
    # What the day keeps: its new objects but the staged catalogs, which the day's run deletes (clean_staging).
    kept_objects = objects_written - (len(staged) - len(staged_before))
    kept_bytes = sum(sizes_after) - sum(sizes_before) - (sum(staged) - sum(staged_before))
    puts = services.proxy.call("count", "PUT") - puts_before if services.proxy else objects_written
    with psycopg.connect(app_db_url) as conn:
        row = conn.execute(
            _VARIANTS_WITH_OTHER_NUMBERS, {"shop": shop.shop_id, "first_day": world.day, "second_day": second_day}
        ).fetchone()
    if run.variants != world.variants:
        raise SystemExit(f"the second day's export wrote {run.variants} variants, the shop has {world.variants}")
    return {
        "day": second_day.isoformat(),
        "seconds": run.seconds,
        "worker_cpu_seconds_per_1000_variants": round(1000 * run.worker_cpu_seconds / max(1, run.variants), 3),
        "worker_cpu_seconds": run.worker_cpu_seconds,
        "images_backed_up": run.images,
        "images_reused": run.images_reused,
        "files_written": run.files,
        "files_unchanged": run.files_unchanged,
        "parquet_parts_written": run.parquet_parts_written,
        "objects_written": objects_written,
        "objects_kept": kept_objects,
        "bytes_kept": kept_bytes,
        "puts": puts,
        "in_flight_peak": export_in_flight,
        "events": events,
        "variants_with_other_numbers": row[0] if row else 0,
        "phases": {name: {"wall_s": wall, "cpu_s": spent} for name, (wall, spent) in run.phases.items()},
        "store_cpu_seconds": round(cpu["store"], 2),
        "sandbox_cpu_seconds": round(cpu["sandbox"], 2),
        "machine_cpu_busy": cpu["busy"],
        "cores_floor_seconds": round(cores_floor(cpu, run.worker_cpu_seconds), 2),
        "graphql_cost": shopify["cost_charged"],
        "throttled": shopify["throttled"],
        "cdn_requests": shopify["cdn_requests"],
        "path": run.mode,
        "batches": run.batches,
        "plan_seconds": run.plan_seconds,
        "bulk_wait_seconds": run.bulk_wait_seconds,
        "batch_seconds_max": max(run.batch_seconds, default=0.0),
    }
