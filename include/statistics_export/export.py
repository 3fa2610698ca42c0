"""The export's two units of work: plan a shop's batches, and export one batch end to end."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from include.statistics_export.catalog import (
    Product,
    batched_by_variants,
    existed_on,
    parse_datetime,
    parse_product,
    parse_summary,
)
from include.statistics_export.days import day_bounds
from include.statistics_export.formats import VariantExport, export_key, render_csv, render_json
from include.statistics_export.ids import gid
from include.statistics_export.images import (
    backup_images,
    existing_backups,
    image_owners,
)
from include.statistics_export.metrics import ZERO, variant_metrics
from include.statistics_export.rows import recorded_hashes, write_rows
from include.statistics_export.shops import ShopRef
from include.statistics_export.staging import read_staged_batch, stage_batch, staged_batch_key

log = logging.getLogger(__name__)

DEFAULT_BATCH_VARIANTS = 500


class Catalog(Protocol):
    """What the export needs of the Shopify hook."""

    def iter_product_summaries(self) -> Iterable[dict[str, Any]]: ...

    def iter_products(self, product_gids: list[str]) -> Iterable[dict[str, Any] | None]: ...


class ObjectStore(Protocol):
    """What the export needs of the R2 hook."""

    def put_object(self, key: str, body: bytes, content_type: str) -> None: ...

    def object_url(self, key: str) -> str: ...


class BatchRowsError(Exception):
    """A batch's files are written but its rows are not (the database went away or timed out)."""


@dataclass(frozen=True)
class BatchPlan:
    """One batch of one shop's products: the small descriptor the DAG maps over (no token, no catalog)."""

    shop_id: str
    shop_domain: str
    date: str
    index: int
    count: int
    product_ids: list[str]
    currency: str | None = None
    variants: int = 0
    # Set when the shop's catalog was read in bulk: the batch reads its products from the bucket.
    staged_key: str | None = None

    @property
    def label(self) -> str:
        """Return the label the UI shows for this batch."""
        return f"{self.shop_domain} · batch {self.index}/{self.count}"


@dataclass
class BatchResult:
    """What one batch did, for the run's summary."""

    shop_id: str
    batch: int
    products: int = 0
    variants: int = 0
    files: int = 0
    files_unchanged: int = 0
    images_backed_up: int = 0
    images_reused: int = 0
    images_failed: int = 0
    missing_products: list[str] = field(default_factory=list)
    image_failures: list[str] = field(default_factory=list)
    file_totals: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def plan_shop(
    catalog: Catalog,
    shop: ShopRef,
    day: date,
    *,
    batch_variants: int = DEFAULT_BATCH_VARIANTS,
    product_ids: Iterable[str] | None = None,
    currency: str | None = None,
) -> list[dict[str, Any]]:
    """List the shop's products that existed on ``day`` and group them into batches by variant count."""
    _, day_end = day_bounds(day)
    wanted = {str(p) for p in product_ids} if product_ids else None
    summaries = (
        summary
        for summary in map(parse_summary, catalog.iter_product_summaries())
        if existed_on(summary.created_at, day_end) and (wanted is None or summary.product_id in wanted)
    )
    batches = list(batched_by_variants(summaries, lambda summary: summary.variants, batch_variants))
    return [
        asdict(
            BatchPlan(
                shop.shop_id,
                shop.shop_domain,
                day.isoformat(),
                n,
                len(batches),
                [summary.product_id for summary in batch],
                currency,
                variants=sum(summary.variants for summary in batch),
            )
        )
        for n, batch in enumerate(batches, start=1)
    ]


def stage_shop(
    store: ObjectStore,
    shop: ShopRef,
    day: date,
    products: Iterable[dict[str, Any]],
    *,
    batch_variants: int = DEFAULT_BATCH_VARIANTS,
    currency: str | None = None,
) -> list[dict[str, Any]]:
    """Cut a bulk-read catalog into batches by variant count and stage each in the bucket."""
    _, day_end = day_bounds(day)
    existing = (raw for raw in products if existed_on(_created_at(raw), day_end))
    staged = []
    for n, batch in enumerate(batched_by_variants(existing, lambda raw: len(raw["variants"]), batch_variants), 1):
        key = staged_batch_key(shop.shop_id, day, n)
        stage_batch(store, key, batch)
        staged.append((key, sum(len(raw["variants"]) for raw in batch)))
    return [
        asdict(
            BatchPlan(
                shop.shop_id, shop.shop_domain, day.isoformat(), n, len(staged), [], currency, variants, staged_key=key
            )
        )
        for n, (key, variants) in enumerate(staged, start=1)
    ]


def _created_at(raw: dict[str, Any]):
    return parse_datetime(raw["createdAt"]) if raw.get("createdAt") else None


def fetch_products(catalog: Catalog, product_ids: list[str], day: date) -> tuple[list[Product], list[str]]:
    """Return the batch's products that existed on ``day``, and the ids Shopify no longer knows."""
    _, day_end = day_bounds(day)
    products, missing = [], []
    for product_id, raw in zip(product_ids, catalog.iter_products([gid("Product", p) for p in product_ids])):
        if raw is None:
            missing.append(product_id)
            continue
        product = parse_product(raw)
        if existed_on(product.created_at, day_end):
            products.append(product)
    return products, missing


def batch_products(catalog: Catalog, store: ObjectStore, plan: BatchPlan) -> tuple[list[Product], list[str]]:
    """Return the batch's products, from its staged catalog or else from Shopify, and the ids gone missing."""
    if plan.staged_key:
        return [parse_product(raw) for raw in read_staged_batch(store, plan.staged_key)], []
    return fetch_products(catalog, plan.product_ids, date.fromisoformat(plan.date))


def export_batch(
    conn: Any,
    catalog: Catalog,
    store: ObjectStore,
    plan: BatchPlan,
    fetch_image,
    *,
    pool: ThreadPoolExecutor,
) -> BatchResult:
    """Export one batch: catalog, metrics, images, files in R2, then the rows in one transaction."""
    started = time.monotonic()
    day = date.fromisoformat(plan.date)
    result = BatchResult(shop_id=plan.shop_id, batch=plan.index)
    products, result.missing_products = batch_products(catalog, store, plan)
    if result.missing_products:
        log.warning("Shop %s: products no longer in Shopify, skipped: %s", plan.shop_id, result.missing_products)

    variant_ids = [v.variant_id for p in products for v in p.variants]
    metrics = variant_metrics(conn, plan.shop_id, variant_ids, day)

    owners = image_owners(products)
    already = existing_backups(conn, plan.shop_id, owners)
    backups, new_images, result.image_failures = backup_images(
        plan.shop_id, owners, already, fetch_image, store.put_object, store.object_url, pool
    )
    for failure in result.image_failures:
        log.warning("Shop %s: image not backed up (tried again next run): %s", plan.shop_id, failure)

    exports = [
        VariantExport(
            day=day,
            shop_id=plan.shop_id,
            shop_domain=plan.shop_domain,
            product=product,
            variant=variant,
            metrics=metrics.get(variant.variant_id, ZERO),
            images=tuple(backups[image.media_gid] for image in product.images_of(variant)),
            currency=plan.currency,
        )
        for product in products
        for variant in product.variants
    ]
    rendered = list(pool.map(render_files, exports))
    known = recorded_hashes(conn, plan.shop_id, day, [(e.product.product_id, e.variant.variant_id) for e in exports])
    # Identical bytes are not written again: their objects keep LastModified and their rows stay as they are.
    changed = [
        (export, files)
        for export, files in zip(exports, rendered)
        if known.get((export.product.product_id, export.variant.variant_id)) != files.content_hash
    ]
    written = upload_files(store, changed, pool)
    try:
        write_rows(conn, plan.shop_id, written, new_images)
    except Exception as exc:
        raise BatchRowsError(
            f"Shop {plan.shop_id} batch {plan.index}/{plan.count}: the files are in R2 but the rows were not "
            f"written ({type(exc).__name__}: {exc}); a retry of the batch writes them"
        ) from exc

    result.products = len(products)
    result.variants = len(exports)
    result.files = 2 * len(exports)
    result.files_unchanged = 2 * (len(exports) - len(changed))
    result.images_backed_up = len(new_images)
    result.images_reused = len(already)
    result.images_failed = len(result.image_failures)
    result.file_totals = file_totals(rendered)
    result.seconds = round(time.monotonic() - started, 3)
    return result


@dataclass(frozen=True)
class RenderedFiles:
    """One variant's two files, rendered once, with the hash that tells whether they changed."""

    csv: bytes
    json: bytes

    @property
    def content_hash(self) -> str:
        """Return the sha256 of both files, recorded with the export to skip identical rewrites."""
        return hashlib.sha256(self.csv + b"\0" + self.json).hexdigest()


def render_files(export: VariantExport) -> RenderedFiles:
    """Render a variant's CSV and JSON files."""
    return RenderedFiles(render_csv(export), render_json(export))


def file_totals(rendered: Iterable[RenderedFiles]) -> dict[str, Any]:
    """Sum the metrics the CSV files say, read back with the csv module, for the day's reconciliation."""
    totals: dict[str, Any] = {"variants": 0, "impressions": 0, "addToCarts": 0, "orders": 0, "revenue": Decimal(0)}
    for files in rendered:
        for row in csv.DictReader(io.StringIO(files.csv.decode("utf-8"))):
            totals["variants"] += 1
            for name in ("impressions", "addToCarts", "orders"):
                totals[name] += int(row[name])
            totals["revenue"] += Decimal(row["revenue"])
    return {**totals, "revenue": str(totals["revenue"])}


def upload_files(
    store: ObjectStore, changed: list[tuple[VariantExport, RenderedFiles]], pool: ThreadPoolExecutor
) -> list[tuple[VariantExport, dict[str, str]]]:
    """Write each variant's CSV and JSON concurrently; return each export with its keys, URLs and hash."""

    def upload(item: tuple[VariantExport, RenderedFiles]) -> tuple[VariantExport, dict[str, str]]:
        export, files = item
        ids = (export.shop_id, export.product.product_id, export.variant.variant_id, export.day)
        csv_key, json_key = export_key(*ids, "csv"), export_key(*ids, "json")
        store.put_object(csv_key, files.csv, "text/csv; charset=utf-8")
        store.put_object(json_key, files.json, "application/json")
        return export, {
            "csvKey": csv_key,
            "jsonKey": json_key,
            "csvUrl": store.object_url(csv_key),
            "jsonUrl": store.object_url(json_key),
            "contentHash": files.content_hash,
        }

    return list(pool.map(upload, changed))
