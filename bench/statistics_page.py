"""`python -m bench.statistics_page`: the Statistics page's overview of 365 days x 200 shops of reports, and
the plan of its fleet chart query. Prints figures for people, the last line one JSON object.

The overview is requested through FastAPI's TestClient on the page's own app with the Airflow permission
checks replaced by "allowed" (they cost a JWT decode and one lookup, independent of the number of days);
everything else is real: reports read from an S3 server over HTTP, the chart's aggregate on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from datetime import timedelta

import psycopg

import bench  # noqa: F401 - the bench's Airflow home
from include.statistics_export.keys import report_key
from include.statistics_export.page.statistics_queries import FLEET_DAYS_SQL
from include.statistics_export.utc import today
from local_stack.services import (
    Endpoints,
    connection_env,
    create_bucket,
    postgres_server,
    s3_client,
    s3_server,
    scratch_database,
)


def report_document(day, shops: int) -> dict:
    """A realistic report: every shop with its figures and reconciliation, one shop failed every tenth day."""
    per_shop = {
        f"shop_{n:04d}": {"variants": 500, "batches": 1, "catalog_read": "pages", "seconds": 12.5, "files": 1000}
        for n in range(shops)
    }
    reconciliation = {
        shop: {"shopId": shop, "ok": True, "files": {"impressions": 100, "orders": 3, "revenue": "59.70"}}
        for shop in per_shop
    }
    failed = {"shop_0007": "shop-0007.myshopify.com: start_catalog_read: token rejected"} if day.day % 10 == 0 else {}
    return {
        "date": day.isoformat(),
        "ok": not failed,
        "shops": shops,
        "variants": 500 * shops,
        "files": 1000 * shops,
        "filesUnchanged": 0,
        "imagesBackedUp": 0,
        "imagesFailed": 0,
        "rejectedEvents": 0,
        "failedShops": failed,
        "perShop": per_shop,
        "reconciliation": reconciliation,
    }


def seed_statistics(url: str, days: int, shops: int, variants: int) -> int:
    """Fill "VariantDailyStatistics" with ``shops`` x ``variants`` rows per day, in one statement."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            'INSERT INTO "VariantDailyStatistics" (id, shop, "productId", "variantId", date, impressions, orders, revenue) '
            "SELECT md5(s || '-' || v || '-' || d), 'shop_' || s, (v / 3)::text, v::text, "
            "current_date - d, (s + v + d) %% 50, (s + v) %% 3, ((s + v) %% 3) * 19.90 "
            "FROM generate_series(1, %s) d, generate_series(1, %s) s, generate_series(1, %s) v",
            (days, shops, variants),
        )
        conn.execute('VACUUM ANALYZE "VariantDailyStatistics"')
        return conn.execute('SELECT count(*) FROM "VariantDailyStatistics"').fetchone()[0]


def explain(url: str, first, last) -> tuple[str, float]:
    """Return the chart query's plan (EXPLAIN ANALYZE, BUFFERS; warm) and its execution time."""
    with psycopg.connect(url) as conn:
        for _ in range(2):
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + FLEET_DAYS_SQL, (first, last + timedelta(days=1)))
            plan = "\n".join(row[0] for row in rows.fetchall())
    return plan, float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.statistics_page", description=__doc__)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--shops", type=int, default=200)
    p.add_argument(
        "--variants-per-shop", type=int, default=50, help='rows per shop and day in "VariantDailyStatistics"'
    )
    p.add_argument("--loads", type=int, default=5, help="warm page loads to time")
    args = p.parse_args()
    with postgres_server(os.environ.get("APP_DB_URL")) as server, scratch_database(server, "statspage") as url:
        with s3_server() as endpoint:
            create_bucket(endpoint, "bench")
            os.environ.update(connection_env(Endpoints(url, endpoint, "bench", "http://127.0.0.1:1/{shop}")))
            s3 = s3_client(endpoint)
            last = today() - timedelta(days=1)
            sizes = []
            for n in range(args.days):
                body = json.dumps(report_document(last - timedelta(days=n), args.shops), indent=2).encode()
                sizes.append(len(body))
                s3.put_object(Bucket="bench", Key=report_key(last - timedelta(days=n)), Body=body)
            started = time.perf_counter()
            rows = seed_statistics(url, args.days, args.shops, args.variants_per_shop)
            print(
                f"seeded {args.days} reports of {statistics.mean(sizes) / 1024:.0f} KiB and {rows:,} statistics rows "
                f"in {time.perf_counter() - started:.1f} s",
                flush=True,
            )

            from fastapi import FastAPI
            from fastapi.testclient import TestClient

            from statistics_ui import app as page

            outer = FastAPI()
            sub = page.create_app()
            for check in (page.CAN_READ, page.CAN_READ_RUNS, page.CAN_RETRY):
                sub.dependency_overrides[check.dependency] = lambda: None
            outer.mount("/statistics-exports", sub)
            with TestClient(outer) as client:
                timings = []
                for _ in range(1 + args.loads):
                    started = time.perf_counter()
                    answer = client.get(f"/statistics-exports/?days={args.days}")
                    timings.append(time.perf_counter() - started)
                    assert answer.status_code == 200 and answer.text.count("<tr data-day=") == args.days
            plan30, chart30_ms = explain(url, last - timedelta(days=29), last)
            print(f"chart query over {rows:,} rows, 30 days (the page's default): {chart30_ms:.1f} ms\n{plan30}")
            plan, chart_ms = explain(url, last - timedelta(days=args.days - 1), last)
            print(
                f"overview of {args.days} days x {args.shops} shops: first load {timings[0]:.2f} s "
                f"(every report fetched and parsed), then {statistics.median(timings[1:]):.3f} s "
                f"(median of {args.loads}: one listing, reports cached by ETag); page {len(answer.content) / 1024:.0f} KiB"
            )
            print(f"chart query over {rows:,} rows, {args.days} days: {chart_ms:.1f} ms\n{plan}")
            print(
                json.dumps(
                    {
                        "days": args.days,
                        "shops": args.shops,
                        "statistics_rows": rows,
                        "first_load_s": round(timings[0], 3),
                        "warm_load_s": round(statistics.median(timings[1:]), 3),
                        "chart_query_ms": chart_ms,
                        "chart_query_30_days_ms": chart30_ms,
                        "index_only_30_days": 'Index Only Scan using "VariantDailyStatistics_date_idx"' in plan30,
                    }
                )
            )


if __name__ == "__main__":
    main()
