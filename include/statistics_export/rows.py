"""Rows of the output tables, upserted in bulk: one statement per table, one transaction per batch."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import psycopg

from include.statistics_export.catalog import ImageBackup, ImageOwner
from include.statistics_export.day_claims import DayWriter, check_writer
from include.statistics_export.formats import VariantExport, WrittenFiles, images_document, metrics_document
from include.statistics_export.ids import row_id
from include.statistics_export.shop_fence import refuse_redacted
from include.statistics_export.utc import as_utc, naive_utc, now_ms

# Arrays are sent in binary (%b): psycopg's text array dumper escapes every element in Python, which cost about
# 20 us per JSON snapshot; in binary it is about 0.3 us.
_UPSERT_IMAGES = """
INSERT INTO "ProductImageBackup" (id, shop, "productId", "variantId", "mediaId", "shopifyUrl", "r2Url", "r2Key", "backedUpAt")
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamp[])
ON CONFLICT (shop, "mediaId") DO UPDATE SET
    "productId" = EXCLUDED."productId", "variantId" = EXCLUDED."variantId", "shopifyUrl" = EXCLUDED."shopifyUrl",
    "r2Url" = EXCLUDED."r2Url", "r2Key" = EXCLUDED."r2Key", "backedUpAt" = EXCLUDED."backedUpAt"
"""

_UPSERT_STATISTICS = """
INSERT INTO "VariantDailyStatistics" (id, shop, "productId", "variantId", date, impressions, "addToCarts", orders, revenue, ctr, "conversionRate")
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::date[], %b::int[], %b::int[], %b::int[], %b::numeric[], %b::float8[], %b::float8[])
ON CONFLICT (shop, "productId", "variantId", date) DO UPDATE SET
    impressions = EXCLUDED.impressions, "addToCarts" = EXCLUDED."addToCarts", orders = EXCLUDED.orders,
    revenue = EXCLUDED.revenue, ctr = EXCLUDED.ctr, "conversionRate" = EXCLUDED."conversionRate"
"""

_UPSERT_EXPORTS = """
INSERT INTO "StatisticsExport" (id, shop, "productId", "variantId", date, "csvR2Key", "jsonR2Key", "csvUrl", "jsonUrl", "metricsSnapshot", "imagesSnapshot", "exportedAt", "contentHash")
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::date[], %b::text[], %b::text[], %b::text[], %b::text[], %b::jsonb[], %b::jsonb[], %b::timestamp[], %b::text[])
ON CONFLICT (shop, "productId", "variantId", date) DO UPDATE SET
    "csvR2Key" = EXCLUDED."csvR2Key", "jsonR2Key" = EXCLUDED."jsonR2Key", "csvUrl" = EXCLUDED."csvUrl",
    "jsonUrl" = EXCLUDED."jsonUrl", "metricsSnapshot" = EXCLUDED."metricsSnapshot",
    "imagesSnapshot" = EXCLUDED."imagesSnapshot", "exportedAt" = EXCLUDED."exportedAt",
    "contentHash" = EXCLUDED."contentHash"
"""

# Joined on the full natural key so each lookup is one probe of the unique index, however many days
# of history the shop has.
_RECORDED_HASHES = """
SELECT e.shop, e."productId", e."variantId", e."contentHash"
FROM unnest(%b::text[], %b::text[], %b::text[]) AS k(shop, "productId", "variantId")
JOIN "StatisticsExport" e
  ON e.shop = k.shop AND e."productId" = k."productId" AND e."variantId" = k."variantId" AND e.date = %s
"""


def shops_recorded_hashes(
    conn: Any, day: date, variants: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str]:
    """Return the content hash last recorded for each (shop, product id, variant id) of the day, in one query."""
    if not variants:
        return {}
    with conn.cursor() as cur:
        shops, products, variant_ids = _columns(variants, 3)
        cur.execute(_RECORDED_HASHES, (shops, products, variant_ids, day))
        return {(shop, product, variant): content_hash for shop, product, variant, content_hash in cur.fetchall()}


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)] if rows else [[] for _ in range(width)]


def write_shops_rows(
    conn: Any,
    exports: Sequence[tuple[VariantExport, WrittenFiles]],
    new_images: Sequence[tuple[str, ImageOwner, ImageBackup]],
    writer: DayWriter | None = None,
) -> None:
    """Upsert the image backups, daily statistics and export records of any number of shops in one transaction.

    ``exports`` pairs each variant's export with the files written for it. Call it only once they are in R2.
    With a ``writer``, the transaction first checks that its run still holds the day, and keeps the day's
    claim from being taken over until it commits. It refuses any shop whose data was erased (shop/redact).
    """
    exported_at = naive_utc(now_ms())
    images = [
        (
            row_id(shop_id, backup.media_gid),
            shop_id,
            owner.product_id,
            owner.variant_id,
            backup.media_gid,
            backup.shopify_url,
            backup.r2_url,
            backup.r2_key,
            naive_utc(backup.backed_up_at) if backup.backed_up_at else None,
        )
        for shop_id, owner, backup in new_images
    ]
    statistics, records = [], []
    for export, files in exports:
        key = (export.shop_id, export.product.product_id, export.variant.variant_id, export.day)
        m = export.metrics
        statistics.append(
            (
                row_id("stats", *key),
                *key,
                m.impressions,
                m.add_to_carts,
                m.orders,
                m.revenue_rounded,
                float(m.ctr),
                float(m.conversion_rate),
            )
        )
        records.append(
            (
                row_id("export", *key),
                *key,
                files.csv_key,
                files.json_key,
                files.csv_url,
                files.json_url,
                json.dumps(metrics_document(m)),
                json.dumps(images_document(export.images)),
                exported_at,
                files.content_hash,
            )
        )
    # Commit explicitly: earlier reads on this connection may already have opened a transaction.
    try:
        if writer is not None:
            check_writer(conn, writer)
        refuse_redacted(conn, {row[1] for row in images} | {row[1] for row in statistics})
        with conn.cursor() as cur:
            if images:
                cur.execute(_UPSERT_IMAGES, _columns(images, 9))
            if statistics:
                cur.execute(_UPSERT_STATISTICS, _columns(statistics, 11))
                cur.execute(_UPSERT_EXPORTS, _columns(records, 13))
        conn.commit()
    except BaseException:
        # A connection the server dropped cannot roll back; the error that matters is the one raised above.
        with contextlib.suppress(psycopg.OperationalError):
            conn.rollback()
        raise


# Joined on the natural key (shop, "mediaId"): one probe of the unique index per image, any number of shops.
_EXISTING_BACKUPS = """
SELECT b.shop, b."mediaId", b."shopifyUrl", b."r2Key", b."r2Url", b."backedUpAt"
FROM unnest(%(shops)b::text[], %(media_ids)b::text[]) AS k(shop, "mediaId")
JOIN "ProductImageBackup" b ON b.shop = k.shop AND b."mediaId" = k."mediaId"
WHERE b."r2Key" IS NOT NULL
"""


def shops_existing_backups(conn: Any, images: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ImageBackup]:
    """Return which of these (shop, media GID) images are already backed up, in one query."""
    pairs = list(images)
    if not pairs:
        return {}
    with conn.cursor() as cur:
        cur.execute(_EXISTING_BACKUPS, {"shops": [p[0] for p in pairs], "media_ids": [p[1] for p in pairs]})
        return {
            (row[0], row[1]): ImageBackup(
                row[1], row[2], r2_key=row[3], r2_url=row[4], backed_up_at=as_utc(row[5]) if row[5] else None
            )
            for row in cur.fetchall()
        }
