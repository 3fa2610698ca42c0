"""The export's two units of work: plan a shop's batches, and export one batch end to end."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from typing import Any

from include.statistics_export.catalog import (
    Product,
    batched_by_variants,
    created_at,
    existed_on,
    parse_product,
    parse_summary,
)
from include.statistics_export.errors import BatchRowsError
from include.statistics_export.event_rules import DEFAULT_MAX_EVENT_REVENUE
from include.statistics_export.formats import RenderedFiles, VariantExport, WrittenFiles, render_files
from include.statistics_export.handoffs import BatchPlan, BatchResult, ShopRef
from include.statistics_export.ids import gid
from include.statistics_export.images import ImageFetch, backup_images, existing_backups, image_owners
from include.statistics_export.keys import export_key, staged_batch_key
from include.statistics_export.metrics import ZERO, variant_metrics
from include.statistics_export.protocols import Catalog, ObjectStore
from include.statistics_export.rows import recorded_hashes, write_rows
from include.statistics_export.settings import Settings
from include.statistics_export.staging import read_staged_batch, stage_batch
from include.statistics_export.totals import csv_totals
from include.statistics_export.utc import day_bounds

log = logging.getLogger(__name__)

DEFAULT_BATCH_VARIANTS = Settings().batch_variants


def plan_shop(
    catalog: Catalog,
    shop: ShopRef,
    day: date,
    *,
    batch_variants: int = DEFAULT_BATCH_VARIANTS,
    product_ids: Iterable[str] | None = None,
    currency: str | None = None,
) -> list[BatchPlan]:
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
) -> list[BatchPlan]:
    """Cut a bulk-read catalog into batches by variant count and stage each in the bucket."""
    _, day_end = day_bounds(day)
    existing = (raw for raw in products if existed_on(created_at(raw), day_end))
    staged = []
    for n, batch in enumerate(batched_by_variants(existing, lambda raw: len(raw["variants"]), batch_variants), 1):
        key = staged_batch_key(shop.shop_id, day, n)
        stage_batch(store, key, batch)
        staged.append((key, sum(len(raw["variants"]) for raw in batch)))
    return [
        BatchPlan(shop.shop_id, shop.shop_domain, day.isoformat(), n, len(staged), [], currency, variants, key)
        for n, (key, variants) in enumerate(staged, start=1)
    ]


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


def batch_products(catalog: Catalog | None, store: ObjectStore, plan: BatchPlan) -> tuple[list[Product], list[str]]:
    """Return the batch's products, from its staged catalog or else from Shopify, and the ids gone missing."""
    if plan.staged_key:
        return [parse_product(raw) for raw in read_staged_batch(store, plan.staged_key)], []
    if catalog is None:
        raise ValueError(f"{plan.label}: a batch planned page by page needs the Shopify catalog")
    return fetch_products(catalog, plan.product_ids, date.fromisoformat(plan.date))


class PhaseClock:
    """Wall and CPU seconds of a batch's phases, for the bench and the logs.

    CPU is the process's (``time.process_time``: every thread, user plus system): an export task is a
    process of its own, so a phase's CPU includes the pool threads working for it.
    """

    def __init__(self) -> None:
        self.phases: dict[str, list[float]] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall, cpu = time.monotonic(), time.process_time()
        try:
            yield
        finally:
            spent = self.phases.setdefault(name, [0.0, 0.0])
            spent[0] = round(spent[0] + time.monotonic() - wall, 4)
            spent[1] = round(spent[1] + time.process_time() - cpu, 4)


def export_batch(
    conn: Any,
    catalog: Catalog | None,
    store: ObjectStore,
    plan: BatchPlan,
    fetch_image: ImageFetch,
    *,
    pool: ThreadPoolExecutor,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
) -> BatchResult:
    """Export one batch: catalog, metrics, images, files in R2, then the rows in one transaction."""
    started = time.monotonic()
    day = date.fromisoformat(plan.date)
    result = BatchResult(shop_id=plan.shop_id, shop_domain=plan.shop_domain, batch=plan.index)
    clock = PhaseClock()
    with clock.phase("catalog"):
        products, result.missing_products = batch_products(catalog, store, plan)
    if result.missing_products:
        log.warning("Shop %s: products no longer in Shopify, skipped: %s", plan.shop_id, result.missing_products)

    with clock.phase("metrics_sql"):
        variant_ids = [v.variant_id for p in products for v in p.variants]
        metrics = variant_metrics(conn, plan.shop_id, variant_ids, day, max_revenue=max_revenue)

    with clock.phase("images"):
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
    with clock.phase("rendering"):
        # Rendering and hashing are pure Python (the GIL): done in this thread, a pool would only add switches.
        rendered = [render_files(export) for export in exports]
    with clock.phase("rows"):
        keys = [(e.product.product_id, e.variant.variant_id) for e in exports]
        known = recorded_hashes(conn, plan.shop_id, day, keys)
    # Identical bytes are not written again: their objects keep LastModified and their rows stay as they are.
    changed = [
        (export, files)
        for export, files in zip(exports, rendered)
        if known.get((export.product.product_id, export.variant.variant_id)) != files.content_hash
    ]
    with clock.phase("uploads"):
        written = upload_files(store, changed, pool)
    with clock.phase("rows"):
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
    result.file_totals = csv_totals(files.csv for files in rendered)
    result.seconds = round(time.monotonic() - started, 3)
    result.phases = clock.phases
    return result


def upload_files(
    store: ObjectStore, changed: list[tuple[VariantExport, RenderedFiles]], pool: ThreadPoolExecutor
) -> list[tuple[VariantExport, WrittenFiles]]:
    """Write each variant's CSV and JSON concurrently; return each export with where its files went."""

    def upload(item: tuple[VariantExport, RenderedFiles]) -> tuple[VariantExport, WrittenFiles]:
        export, files = item
        ids = (export.shop_id, export.product.product_id, export.variant.variant_id, export.day)
        csv_key, json_key = export_key(*ids, "csv"), export_key(*ids, "json")
        store.put_object(csv_key, files.csv, "text/csv; charset=utf-8")
        store.put_object(json_key, files.json, "application/json")
        return export, WrittenFiles(
            csv_key, json_key, store.object_url(csv_key), store.object_url(json_key), files.content_hash
        )

    return list(pool.map(upload, changed))
