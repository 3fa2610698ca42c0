"""The trend views (migration 0004) against sums computed in Python over a generated month of daily rows.

The rows run from Tuesday 2026-10-27 to Wednesday 2026-12-02: the week of Monday 2026-10-26 straddles
October and November, the week of Monday 2026-11-30 straddles November and December. Rates are checked as
ratios of the sums (never averages of the daily ratios), NULL where a period had no impression.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest

FIRST_DAY = date(2026, 10, 27)
LAST_DAY = date(2026, 12, 2)
VARIANTS = {"shop_a": [("p1", "v1"), ("p1", "v2"), ("p2", "v3")], "shop_b": [("p9", "v9")]}
SILENT_VARIANT = ("shop_a", "p2", "v3")  # never an impression: its rates are NULL in every period
METRICS = ("impressions", "addToCarts", "orders", "revenue")


def days() -> list[date]:
    return [FIRST_DAY + timedelta(n) for n in range((LAST_DAY - FIRST_DAY).days + 1)]


def monday(day: date) -> date:
    return day - timedelta(day.weekday())


def month(day: date) -> date:
    return day.replace(day=1)


@pytest.fixture
def daily_rows(db):
    """Insert one "VariantDailyStatistics" row per variant and day; return them as dicts."""
    rng = random.Random(12)
    rows = []
    for shop, variants in VARIANTS.items():
        for product_id, variant_id in variants:
            for day in days():
                silent = (shop, product_id, variant_id) == SILENT_VARIANT
                impressions = 0 if silent else rng.choice([0, 1, 2, 40, 900])
                add_to_carts = rng.randint(0, impressions)
                orders = rng.randint(0, add_to_carts)
                revenue = Decimal(rng.randint(0, 50_000)) / 100 if orders else Decimal("0.00")
                rows.append(
                    {
                        "shop": shop,
                        "productId": product_id,
                        "variantId": variant_id,
                        "date": day,
                        "impressions": impressions,
                        "addToCarts": add_to_carts,
                        "orders": orders,
                        "revenue": revenue,
                    }
                )
    with db.cursor() as cur:
        cur.executemany(
            'INSERT INTO "VariantDailyStatistics" (id, shop, "productId", "variantId", date, impressions,'
            ' "addToCarts", orders, revenue, ctr, "conversionRate")'
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
            # the stored daily ratios, deliberately: the views must not average them
            " CASE WHEN %s > 0 THEN %s::float / %s ELSE 0 END, CASE WHEN %s > 0 THEN %s::float / %s ELSE 0 END)",
            [
                (
                    f"{r['shop']}-{r['variantId']}-{r['date']}",
                    r["shop"],
                    r["productId"],
                    r["variantId"],
                    r["date"],
                    r["impressions"],
                    r["addToCarts"],
                    r["orders"],
                    r["revenue"],
                    *(r["impressions"], r["addToCarts"], r["impressions"]),
                    *(r["impressions"], r["orders"], r["impressions"]),
                )
                for r in rows
            ],
        )
    db.commit()
    return rows


def expected(rows, key) -> dict[tuple, dict]:
    """Sum the rows by key(row) and recompute the rates from the sums."""
    sums: dict[tuple, dict] = defaultdict(lambda: {m: 0 for m in METRICS} | {"days": set()})
    for row in rows:
        bucket = sums[key(row)]
        for metric in METRICS:
            bucket[metric] += row[metric]
        bucket["days"].add(row["date"])
    for bucket in sums.values():
        impressions = bucket["impressions"]
        bucket["ctr"] = Decimal(bucket["addToCarts"]) / impressions if impressions else None
        bucket["conversionRate"] = Decimal(bucket["orders"]) / impressions if impressions else None
        bucket["days"] = len(bucket["days"])
    return dict(sums)


def view_rows(db, view: str, keys: list[str], count_column: str) -> dict[tuple, dict]:
    columns = ", ".join(f'"{c}"' for c in [*keys, *METRICS, "ctr", "conversionRate", count_column])
    with db.cursor() as cur:
        cur.execute(f'SELECT {columns} FROM "{view}"')
        found = {}
        for row in cur.fetchall():
            values = dict(zip([*METRICS, "ctr", "conversionRate", "days"], row[len(keys) :]))
            found[tuple(row[: len(keys)])] = values
    return found


def rounded(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(Decimal("1e-12"))


VIEWS = [
    ("VariantWeeklyStatistics", ["shop", "productId", "variantId", "weekStart"], "days",
     lambda r: (r["shop"], r["productId"], r["variantId"], monday(r["date"]))),
    ("VariantMonthlyStatistics", ["shop", "productId", "variantId", "monthStart"], "days",
     lambda r: (r["shop"], r["productId"], r["variantId"], month(r["date"]))),
    ("ShopDailyStatistics", ["shop", "date"], "variants", lambda r: (r["shop"], r["date"])),
    ("ShopWeeklyStatistics", ["shop", "weekStart"], "days", lambda r: (r["shop"], monday(r["date"]))),
    ("ShopMonthlyStatistics", ["shop", "monthStart"], "days", lambda r: (r["shop"], month(r["date"]))),
]  # fmt: skip


@pytest.mark.parametrize("time_zone", ["UTC", "Pacific/Kiritimati", "America/Los_Angeles"])
@pytest.mark.parametrize(("view", "keys", "count_column", "key"), VIEWS, ids=[v[0] for v in VIEWS])
def test_view_equals_python_sums(db, daily_rows, view, keys, count_column, key, time_zone):
    db.execute(f"SET TimeZone = '{time_zone}'")  # the session's zone must not move a day to another week
    want = expected(daily_rows, key)
    if count_column == "variants":
        for bucket_key, bucket in want.items():
            bucket["days"] = sum(1 for r in daily_rows if key(r) == bucket_key)
    got = view_rows(db, view, keys, count_column)
    assert set(got) == set(want)
    for bucket_key, bucket in want.items():
        row = got[bucket_key]
        for metric in METRICS:
            assert row[metric] == bucket[metric], (view, bucket_key, metric)
        assert isinstance(row["revenue"], Decimal)
        assert rounded(row["ctr"]) == rounded(bucket["ctr"]), (view, bucket_key)
        assert rounded(row["conversionRate"]) == rounded(bucket["conversionRate"]), (view, bucket_key)
        assert row["days"] == bucket["days"], (view, bucket_key)


def test_weeks_start_on_monday_and_straddle_months(db, daily_rows):
    straddling = view_rows(db, "ShopWeeklyStatistics", ["shop", "weekStart"], "days")
    assert {week for _, week in straddling} == {monday(day) for day in days()}
    assert all(week.weekday() == 0 for _, week in straddling)
    # 2026-11-30 (Mon) .. 2026-12-02 (Wed) is one week, and 2026-10-27 (Tue) .. 2026-11-01 (Sun) another.
    assert straddling[("shop_b", date(2026, 11, 30))]["days"] == 3
    assert straddling[("shop_b", date(2026, 10, 26))]["days"] == 6
    months = view_rows(db, "ShopMonthlyStatistics", ["shop", "monthStart"], "days")
    assert {(m, v["days"]) for (s, m), v in months.items() if s == "shop_b"} == {
        (date(2026, 10, 1), 5),
        (date(2026, 11, 1), 30),
        (date(2026, 12, 1), 2),
    }


def test_rates_are_ratios_of_sums_not_averages(db, daily_rows):
    weekly = view_rows(db, "VariantWeeklyStatistics", ["shop", "productId", "variantId", "weekStart"], "days")
    averaged_somewhere = False
    for (shop, product_id, variant_id, week), row in weekly.items():
        if (shop, product_id, variant_id) == SILENT_VARIANT:
            assert row["ctr"] is None and row["conversionRate"] is None  # no impression: undefined, not 0
            continue
        daily = [
            Decimal(r["addToCarts"]) / r["impressions"] if r["impressions"] else Decimal(0)
            for r in daily_rows
            if (r["shop"], r["variantId"], monday(r["date"])) == (shop, variant_id, week)
        ]
        averaged_somewhere |= rounded(sum(daily) / len(daily)) != rounded(row["ctr"])
    assert averaged_somewhere  # the generated month distinguishes the two: the check above could fail


def test_views_are_recreated_idempotently(db, daily_rows, app_db_url):
    from include.statistics_export.migrate import apply_migrations, migration_files

    before = view_rows(db, "ShopMonthlyStatistics", ["shop", "monthStart"], "days")
    db.commit()
    apply_migrations(app_db_url, [p for p in migration_files() if p.name.startswith("0004")])
    assert view_rows(db, "ShopMonthlyStatistics", ["shop", "monthStart"], "days") == before
