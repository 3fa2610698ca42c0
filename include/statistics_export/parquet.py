"""The analytics-ready copy of a shop's day: Parquet under a Hive layout that query engines read directly.

Beside the per-variant CSV and JSON (unchanged), each batch writes its variants' rows as one Parquet file
under the shop's and day's partition, ``keys.parquet_partition(shop, day)``: a shop of one batch has one
file per day, a 100,000-variant shop ~200 (its batches run in parallel tasks, so each writes its own
part; memory stays that of one batch). Columns: the CSV's, typed (a date, integers, decimal ctr and
revenue, lists for the image columns), plus the product and variant titles, SKU and currency. The
partition keys ``shop`` and ``date`` live in the path only, so engines that add them from the path
(pyarrow, DuckDB, Spark, Trino) see no clash; the file's own columns are ``shopId`` and ``day``.

Built from the batch's records, never by reading the CSVs back. One listing of the partition decides the
rest: a part whose bytes would be identical to the stored one is not written again (its ETag, the MD5 of
a single-PUT object on S3, R2 and the local stand-ins, is the MD5 of the new bytes), and parts of an earlier
plan of the same day (another batch count) are deleted, so a re-planned day never holds a row twice. A part
costs one LIST and, when it changed, one PUT: a packed unit writes one per small shop.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from include.statistics_export.formats import VariantExport
from include.statistics_export.keys import parquet_part_key, parquet_partition
from include.statistics_export.protocols import ObjectStore
from include.statistics_export.totals import Totals

CTR = pa.decimal128(12, 4)
MONEY = pa.decimal128(18, 2)
SCHEMA = pa.schema(
    [
        pa.field("day", pa.date32(), nullable=False),
        pa.field("shopId", pa.string(), nullable=False),
        pa.field("productId", pa.string(), nullable=False),
        pa.field("variantId", pa.string(), nullable=False),
        pa.field("shopifyProductId", pa.string(), nullable=False),
        pa.field("shopifyVariantId", pa.string(), nullable=False),
        pa.field("impressions", pa.int64(), nullable=False),
        pa.field("addToCarts", pa.int64(), nullable=False),
        pa.field("ctr", CTR, nullable=False),
        pa.field("orders", pa.int64(), nullable=False),
        pa.field("revenue", MONEY, nullable=False),
        pa.field("imageMediaIds", pa.list_(pa.string()), nullable=False),
        pa.field("shopifyImageUrls", pa.list_(pa.string()), nullable=False),
        pa.field("r2ImageUrls", pa.list_(pa.string()), nullable=False),  # null where an image has no R2 copy
        pa.field("r2ImageKeys", pa.list_(pa.string()), nullable=False),
        pa.field("productTitle", pa.string()),
        pa.field("variantTitle", pa.string()),
        pa.field("sku", pa.string()),
        pa.field("currency", pa.string()),
    ]
)
# From this many rows a part is zstd-compressed (see part_compression).
ZSTD_FROM_ROWS = 32
_PART = re.compile(r"part-\d{5}-of-(\d{5})\.parquet$")


@dataclass(frozen=True)
class ParquetPart:
    """One batch's Parquet part: where it went, whether it was written, and the totals of its rows."""

    key: str
    written: bool
    totals: Totals


def parquet_table(exports: Sequence[VariantExport]) -> pa.Table:
    """Return the batch's rows as an Arrow table (one row per variant, in the batch's order)."""
    columns: dict[str, list[object]] = {name: [] for name in SCHEMA.names}
    for record in exports:
        metrics = record.metrics
        images = record.images
        values = {
            "day": record.day,
            "shopId": record.shop_id,
            "productId": record.product.product_id,
            "variantId": record.variant.variant_id,
            "shopifyProductId": record.product.gid,
            "shopifyVariantId": record.variant.gid,
            "impressions": metrics.impressions,
            "addToCarts": metrics.add_to_carts,
            "ctr": metrics.ctr_rounded,
            "orders": metrics.orders,
            "revenue": metrics.revenue_rounded,
            "imageMediaIds": [image.media_gid for image in images],
            "shopifyImageUrls": [image.shopify_url for image in images],
            "r2ImageUrls": [image.r2_url for image in images],
            "r2ImageKeys": [image.r2_key for image in images],
            "productTitle": record.product.title,
            "variantTitle": record.variant.title,
            "sku": record.variant.sku,
            "currency": record.currency,
        }
        for name, value in values.items():
            columns[name].append(value)
    return pa.table(columns, schema=SCHEMA)


def part_compression(rows: int) -> str:
    """Return the codec of a part of ``rows`` rows: zstd, or snappy for a small shop's few rows.

    zstd costs about 1.2 ms more CPU a part than snappy whatever its size (it starts a context per column),
    which was most of a small shop's Parquet cost; under 32 rows snappy's bytes are about as small.
    """
    return "zstd" if rows >= ZSTD_FROM_ROWS else "snappy"


def render_parquet(table: pa.Table) -> bytes:
    """Return the batch's Parquet bytes: zstd (snappy for a few rows), dictionary-encoded strings, statistics
    for pruning.

    The same rows give the same bytes (pyarrow writes no timestamp), which is what lets a rerun skip.
    """
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=part_compression(table.num_rows), write_statistics=True)
    return buffer.getvalue()


def table_totals(table: pa.Table) -> Totals:
    """Sum what a part's rows say (for the reconciliation): the table its bytes were written from."""

    def total(name: str) -> int:
        return int(pc.sum(table[name]).as_py() or 0)

    revenue = pc.sum(table["revenue"]).as_py()
    return Totals(
        table.num_rows,
        total("impressions"),
        total("addToCarts"),
        total("orders"),
        Decimal(revenue if revenue is not None else "0.00"),
    )


def write_parquet_part(
    store: ObjectStore, exports: Sequence[VariantExport], shop_id: str, day: date, index: int, count: int
) -> ParquetPart:
    """Write the batch's part unless identical bytes are stored, and drop parts of another plan of the day."""
    key = parquet_part_key(shop_id, day, index, count)
    table = parquet_table(exports)
    body = render_parquet(table)
    stored = store.etags_under(parquet_partition(shop_id, day))
    written = not same_bytes(stored.get(key), body)
    if written:
        store.put_object(key, body, "application/vnd.apache.parquet")
    stale = [other for other in stored if (found := _PART.search(other)) is None or int(found.group(1)) != count]
    if stale:
        store.delete_keys(stale)
    return ParquetPart(key, written, table_totals(table))


def same_bytes(etag: str | None, body: bytes) -> bool:
    """Return whether a stored object's ETag says it holds ``body``: a single-PUT ETag is the MD5 of the bytes
    (a multipart one, ``<md5>-<parts>``, never matches, so such an object is written again)."""
    return etag is not None and etag.strip('"') == hashlib.md5(body, usedforsecurity=False).hexdigest()
