"""What the Statistics page reads from the app's database: the fleet's totals per day, shop domains, a
shop's files of a day. Read-only, and exactly the columns docs/least_privilege.sql grants the page role
(tests/airflow/test_least_privilege.py runs every query here as that role)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from include.statistics_export.shops import display_domain

# Served by "VariantDailyStatistics_date_idx" (migration 0004): an index-only scan of the days asked for.
FLEET_DAYS_SQL = (
    'SELECT date, SUM(impressions), SUM(orders), SUM(revenue) FROM "VariantDailyStatistics" '
    "WHERE date >= %s AND date < %s GROUP BY date ORDER BY date"
)


@dataclass(frozen=True)
class FleetDay:
    """The whole fleet's statistics of one day."""

    day: date
    impressions: int
    orders: int
    revenue: Decimal


@dataclass(frozen=True)
class ShopFile:
    """One variant's two files of a day."""

    product_id: str
    variant_id: str
    csv_key: str
    json_key: str


def fleet_days(conn: Any, first: date, last: date) -> list[FleetDay]:
    """Return the fleet's impressions, orders and revenue per day in [first, last], in one aggregate query."""
    with conn.cursor() as cur:
        cur.execute(FLEET_DAYS_SQL, (first, last + timedelta(days=1)))
        rows = cur.fetchall()
    return [FleetDay(row[0], int(row[1] or 0), int(row[2] or 0), Decimal(row[3] or 0)) for row in rows]


def shop_domains(conn: Any, shop_ids: list[str]) -> dict[str, str]:
    """Return the domain each shop is known by in the UI's task labels, for the shops that exist."""
    if not shop_ids:
        return {}
    with conn.cursor() as cur:
        cur.execute('SELECT id, "shopDomain" FROM "ShopCredential" WHERE id = ANY(%s)', (list(shop_ids),))
        return {row[0]: display_domain(row[1]) for row in cur.fetchall()}


def shop_files(conn: Any, shop_id: str, day: date) -> list[ShopFile]:
    """Return a shop's exported files of a day, as its export rows record them, by product and variant."""
    with conn.cursor() as cur:
        cur.execute(
            'SELECT "productId", "variantId", "csvR2Key", "jsonR2Key" FROM "StatisticsExport" '
            'WHERE shop = %s AND date = %s ORDER BY "productId", "variantId"',
            (shop_id, day),
        )
        return [ShopFile(*row) for row in cur.fetchall()]


def shop_file(conn: Any, shop_id: str, day: date, variant_id: str) -> ShopFile | None:
    """Return one variant's files of a day, or None when it was not exported that day."""
    with conn.cursor() as cur:
        cur.execute(
            'SELECT "productId", "variantId", "csvR2Key", "jsonR2Key" FROM "StatisticsExport" '
            'WHERE shop = %s AND date = %s AND "variantId" = %s',
            (shop_id, day, variant_id),
        )
        row = cur.fetchone()
    return ShopFile(*row) if row else None
