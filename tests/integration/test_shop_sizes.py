"""Every shop's size per day in "StatisticsExportShopSizes" (real PostgreSQL): the nearest earlier day's sizes
plan a day, a backfill or a rerun of another day never changes them, and before the table holds any day the
nearest report in the bucket (written by the previous code) still sizes the fleet."""

import json
from datetime import date, timedelta

from helpers import DAY, writer_for
from include.statistics_export import tasks
from include.statistics_export.keys import report_key
from include.statistics_export.report_schema import RunReport, ShopSize
from include.statistics_export.shop_sizes import DaySizes, nearest_sizes, store_sizes

LARGE, SMALL = ShopSize(400, 9_000), ShopSize(2, 3)


def stored(db, day: date, sizes: dict[str, ShopSize], run_id: str) -> None:
    store_sizes(db, day, sizes, run_id)
    db.commit()


def test_a_day_is_sized_by_the_nearest_earlier_day_whatever_runs_of_other_days_write(db):
    assert nearest_sizes(db, DAY) is None
    yesterday, long_ago = DAY - timedelta(days=1), DAY - timedelta(days=30)
    stored(db, yesterday, {"big": LARGE}, "scheduled__yesterday")
    # A backfill of a day long past, written after yesterday's run: today's plan still reads yesterday's sizes.
    stored(db, long_ago, {"big": SMALL}, "backfill__long_ago")
    assert nearest_sizes(db, DAY) == DaySizes(yesterday, {"big": LARGE})
    # The backfill's own days read the nearest before them, else the oldest after them; never their own.
    assert nearest_sizes(db, long_ago) == DaySizes(yesterday, {"big": LARGE})
    assert nearest_sizes(db, long_ago - timedelta(days=5)) == DaySizes(long_ago, {"big": SMALL})
    assert nearest_sizes(db, yesterday) == DaySizes(long_ago, {"big": SMALL})
    # A rerun of yesterday replaces what its earlier run left, and only that.
    stored(db, yesterday, {"big": LARGE, "new": SMALL}, "manual__yesterday")
    assert nearest_sizes(db, DAY) == DaySizes(yesterday, {"big": LARGE, "new": SMALL})
    rows = db.execute('SELECT date, "runId" FROM "StatisticsExportShopSizes" ORDER BY date').fetchall()
    assert rows == [(long_ago, "backfill__long_ago"), (yesterday, "manual__yesterday")]


def test_before_the_table_holds_a_day_the_nearest_report_in_the_bucket_sizes_the_plan(db, s3, connections):
    # A report of the previous code: no shopSizes yet, its perShop figures in snake_case.
    earlier = {
        "date": "2026-11-20",
        "perShop": {"big": {"products": 400.0, "variants": 9000.0, "catalog_read": "bulk"}},
    }
    s3.put_object(Bucket=connections.bucket, Key=report_key(DAY - timedelta(days=1)), Body=json.dumps(earlier).encode())
    assert tasks.previous_sizes(DAY) == {"big": LARGE}

    # Once a day is in the table the bucket is not read for sizes: the table's answer stands.
    stored(db, DAY - timedelta(days=2), {"big": SMALL}, "scheduled__x")
    assert tasks.previous_sizes(DAY) == {"big": SMALL}


def test_the_report_task_keeps_the_days_sizes_in_the_table_under_its_claim(db, s3, connections):
    writer = writer_for(DAY)
    stored(db, DAY - timedelta(days=1), {"big": LARGE, "gone": SMALL}, "scheduled__yesterday")
    report = RunReport.from_document(
        {"date": DAY.isoformat(), "perShop": {"new": {"variants": 7, "products": 2, "batches": 1}}}
    )
    report.shops = 1
    tasks.carry_sizes(report)

    tasks.finish_day(report, writer)

    assert nearest_sizes(db, DAY + timedelta(days=1)) == DaySizes(
        DAY, {"big": LARGE, "gone": SMALL, "new": ShopSize(2, 7)}
    )
    written = json.loads(s3.get_object(Bucket=connections.bucket, Key=report_key(DAY))["Body"].read())
    assert written["shopSizes"] == {
        "big": {"products": 400, "variants": 9000},
        "gone": {"products": 2, "variants": 3},
        "new": {"products": 2, "variants": 7},
    }
