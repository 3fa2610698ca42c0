"""The export files: one CSV and one JSON document per variant and day, rendered with their content hash
(the keys they go under are keys.export_key's)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

from include.statistics_export.catalog import ImageBackup, Product, Variant
from include.statistics_export.metrics import VariantMetrics
from include.statistics_export.utc import iso_ms

CSV_HEADER = (
    "date,shopId,productId,variantId,shopifyProductId,shopifyVariantId,impressions,addToCarts,"
    "ctr,orders,revenue,imageMediaIds,shopifyImageUrls,r2ImageUrls,r2ImageKeys"
).split(",")


@dataclass(frozen=True)
class VariantExport:
    """Everything one variant's files say for one day."""

    day: date
    shop_id: str
    shop_domain: str
    product: Product
    variant: Variant
    metrics: VariantMetrics
    images: tuple[ImageBackup, ...]
    currency: str | None = None


@dataclass(frozen=True)
class RenderedFiles:
    """One variant's two files, rendered once, with the hash that tells whether they changed."""

    csv: bytes
    json: bytes

    @property
    def content_hash(self) -> str:
        """Return the sha256 of both files, recorded with the export to skip identical rewrites."""
        return hashlib.sha256(self.csv + b"\0" + self.json).hexdigest()


class WrittenFiles(NamedTuple):
    """Where one variant's two files were written, and the hash of what was written."""

    csv_key: str
    json_key: str
    csv_url: str
    json_url: str
    content_hash: str


def render_files(export: VariantExport) -> RenderedFiles:
    """Render a variant's CSV and JSON files."""
    return RenderedFiles(render_csv(export), render_json(export))


def render_csv(record: VariantExport) -> bytes:
    """Render the variant's CSV file: the header and one row."""
    metrics = record.metrics
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerow(
        [
            record.day.isoformat(),
            record.shop_id,
            record.product.product_id,
            record.variant.variant_id,
            record.product.gid,
            record.variant.gid,
            metrics.impressions,
            metrics.add_to_carts,
            f"{metrics.ctr_rounded:.4f}",
            metrics.orders,
            f"{metrics.revenue_rounded:.2f}",
            "|".join(image.media_gid for image in record.images),
            "|".join(image.shopify_url for image in record.images),
            # Positions line up across the lists: an image without an R2 copy leaves an empty slot.
            "|".join(image.r2_url or "" for image in record.images),
            "|".join(image.r2_key or "" for image in record.images),
        ]
    )
    return buffer.getvalue().encode("utf-8")


def metrics_document(metrics: VariantMetrics) -> dict[str, Any]:
    """Return the metrics as JSON numbers, rounded as in the CSV."""
    # Decimal becomes float only here, at formatting: a 2- or 4-decimal value far below 1e15
    # round-trips exactly through float's shortest repr.
    return {
        "impressions": metrics.impressions,
        "addToCarts": metrics.add_to_carts,
        "ctr": float(metrics.ctr_rounded),
        "orders": metrics.orders,
        "revenue": float(metrics.revenue_rounded),
    }


def images_document(images: tuple[ImageBackup, ...]) -> list[dict[str, Any]]:
    """Return the images as the JSON file lists them."""
    return [
        {
            "mediaId": image.media_gid,
            "shopifyUrl": image.shopify_url,
            "r2Url": image.r2_url,
            "r2Key": image.r2_key,
            "backedUpAt": iso_ms(image.backed_up_at),
        }
        for image in images
    ]


def render_json(record: VariantExport) -> bytes:
    """Render the variant's JSON file."""
    document = {
        "exportDate": record.day.isoformat(),
        "shopId": record.shop_id,
        "shopDomain": record.shop_domain,
        "product": {
            "productId": record.product.product_id,
            "shopifyProductId": record.product.gid,
            "title": record.product.title,
            "handle": record.product.handle,
            "status": record.product.status,
        },
        "variant": {
            "variantId": record.variant.variant_id,
            "shopifyVariantId": record.variant.gid,
            "title": record.variant.title,
            "sku": record.variant.sku,
            "price": record.variant.price,
            "currency": record.currency,
            "metrics": metrics_document(record.metrics),
            "images": images_document(record.images),
        },
    }
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
