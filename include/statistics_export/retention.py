"""A retention period (``STATISTICS_EXPORT_RETENTION_DAYS``, off by default: the original system promised to keep
every day): the DAG ``statistics_retention`` erases the days before the last N, with the shop redaction's erasing
code (``ObjectStore.delete_keys``, its counts, its database role: the only one with DELETE).

What goes, for each shop and expired day: its variants' CSV and JSON files, its Parquet partition, its rows of
``"StatisticsExport"`` and ``"VariantDailyStatistics"``. What stays: the day's report (the record of what was
exported and how the day went), the image backups and their rows (a product's, not a day's), the shop sizes.

The days are found in ``"VariantDailyStatistics"`` by its date index (migration 0004), then each day's shops and
their variants, whose files' keys are the export's own (``keys.export_key``): no listing of the bucket. Each
shop's day is erased objects first, then its rows in one transaction, so a run that dies halfway leaves rows
behind and the next run finds the day again and finishes it. Each day is erased under the day's fence, taken
exclusively (``day_claims.day_erasure``): a batch writing that day (a backfill) finishes first, and none writes it
meanwhile. A file with no row (a batch that failed before its rows, not retried) is not found, so not erased.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from include.statistics_export.day_claims import day_erasure
from include.statistics_export.keys import export_key, parquet_partition
from include.statistics_export.protocols import ObjectStore
from include.statistics_export.redaction import Erased

log = logging.getLogger(__name__)

_EXPIRED_DAYS = 'SELECT DISTINCT date FROM "VariantDailyStatistics" WHERE date < %(before)s ORDER BY date'
_DAY_SHOPS = 'SELECT DISTINCT shop FROM "VariantDailyStatistics" WHERE date = %(day)s ORDER BY shop'
_SHOP_DAY_VARIANTS = """
SELECT "productId", "variantId" FROM "VariantDailyStatistics" WHERE date = %(day)s AND shop = %(shop)s
"""
# By the natural key's unique index, one lookup per variant (the index starts with the shop, not the date).
_DELETE_EXPORT_ROWS = """
DELETE FROM "StatisticsExport" AS e USING unnest(%(products)s::text[], %(variants)s::text[]) AS k(product, variant)
WHERE e.shop = %(shop)s AND e."productId" = k.product AND e."variantId" = k.variant AND e.date = %(day)s
"""
_DELETE_STATISTICS_ROWS = 'DELETE FROM "VariantDailyStatistics" WHERE date = %(day)s AND shop = %(shop)s'


def first_kept_day(last_day: date, keep_days: int) -> date:
    """Return the first of the ``keep_days`` days that end with ``last_day``: every day before it has expired."""
    if keep_days < 1:
        raise ValueError(f"a retention period is at least 1 day, got {keep_days}")
    return last_day - timedelta(days=keep_days - 1)


def expire_days(conn: Any, store: ObjectStore, before: date) -> Erased:
    """Erase every shop's files, Parquet and rows of every day before ``before``; return what was erased."""
    days = _column(conn, _EXPIRED_DAYS, {"before": before})
    erased = Erased()
    for day in days:
        with day_erasure(conn, day):
            for shop_id in _column(conn, _DAY_SHOPS, {"day": day}):
                erased = erase_shop_day(conn, store, shop_id, day).plus(erased.document())
        log.info("Day %s: expired (kept from %s on); erased so far: %s", day, before, erased.text())
    if not days:
        log.info("No day before %s is left: nothing to erase", before)
    return erased


def erase_shop_day(conn: Any, store: ObjectStore, shop_id: str, day: date) -> Erased:
    """Erase one shop's files, Parquet partition and rows of one day; return how many of each."""
    with conn.cursor() as cur:
        cur.execute(_SHOP_DAY_VARIANTS, {"day": day, "shop": shop_id})
        variants = cur.fetchall()
    conn.commit()
    files = [
        export_key(shop_id, product, variant, day, kind) for product, variant in variants for kind in ("csv", "json")
    ]
    parquet = list(store.keys_under(parquet_partition(shop_id, day)))
    store.delete_keys(files + parquet)
    params = {
        "shop": shop_id,
        "day": day,
        "products": [product for product, _ in variants],
        "variants": [variant for _, variant in variants],
    }
    with conn.cursor() as cur:
        cur.execute(_DELETE_EXPORT_ROWS, params)
        export_rows = cur.rowcount
        cur.execute(_DELETE_STATISTICS_ROWS, params)
        statistics_rows = cur.rowcount
    conn.commit()
    return Erased(files=len(files), parquet=len(parquet), export_rows=export_rows, statistics_rows=statistics_rows)


def _column(conn: Any, statement: str, params: dict[str, Any]) -> list[Any]:
    with conn.cursor() as cur:
        cur.execute(statement, params)
        found = [row[0] for row in cur.fetchall()]
    conn.commit()
    return found
