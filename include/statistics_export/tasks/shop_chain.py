"""A shop alone: ``start_catalog_read`` (count the products; bulk query above the threshold) ->
``poll_catalog_read`` (until Shopify finishes a bulk query) -> ``plan_shop_batches`` (batches of about
``batch_variants`` variants; a bulk catalog is staged under the run's prefix). Per batch:
``export_product_batch``. And the shops that left their packed units, each exported alone in one task."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from datetime import date

from export_hooks.r2 import R2Hook
from export_hooks.shopify import ShopifyError
from export_hooks.shopify_bulk import BulkAccessDenied, BulkOperationFailed, BulkOperationInProgress, iter_bulk_result
from export_hooks.shopify_queries import CATALOG_BULK_QUERY
from include.statistics_export.batching import plan_shop, restage_batch, stage_shop, streamed_batch_size
from include.statistics_export.bulk_catalog import assemble_products
from include.statistics_export.connections import app_db, image_source, object_store, shopify_for
from include.statistics_export.day_claims import DayWriter, check_writer
from include.statistics_export.errors import (
    PermanentError,
    StagedCatalogMissing,
    failure_reason,
)
from include.statistics_export.handoffs import (
    BatchPlan,
    BatchResult,
    CatalogRead,
    ShopPlan,
    ShopRef,
    ShopUnit,
    UnitResult,
)
from include.statistics_export.pipeline.read import read_batch
from include.statistics_export.pipeline.run import export
from include.statistics_export.settings import Settings
from include.statistics_export.tasks.day_start import check_day_writer

log = logging.getLogger(__name__)


def start_catalog_read(shop: ShopRef, settings: Settings, product_ids: Sequence[str] | None = None) -> CatalogRead:
    """Decide how to read a shop's catalog; above the threshold start the bulk query."""
    with shopify_for(shop.shop_id) as shopify:
        read = CatalogRead(shop.shop_id, shop.shop_domain, currency=shopify.shop_info().get("currencyCode"))
        if product_ids:
            return read.as_pages("some products only: read page by page")
        products = shopify.products_count()
        read = replace(read, products=products)
        if products < settings.bulk_threshold:
            return read
        try:
            operation = shopify.run_bulk_query(CATALOG_BULK_QUERY)
        except BulkOperationInProgress as exc:
            # Another bulk query of the shop (another app, or a run still going) holds the slot: the pages
            # still work, only slower, and the day's export stays on time.
            log.warning("%s; read page by page instead", exc)
            return read.as_pages(f"{exc}; read page by page instead")
    return replace(read, mode="bulk", operation_id=operation.id)


def poll_catalog_read(read: CatalogRead) -> CatalogRead | None:
    """Return the read once its catalog can be planned, or None while Shopify still runs the bulk query.

    A bulk query that ends FAILED, TIMEOUT, CANCELED or EXPIRED falls back to pages (noted in the report);
    ACCESS_DENIED is the shop's configuration and raises BulkAccessDenied (do not retry).
    """
    if read.mode != "bulk" or read.operation_id is None:
        return read
    with shopify_for(read.shop_id) as shopify:
        operation = shopify.bulk_operation(read.operation_id)
        if not operation.finished:
            log.info("Shop %s: bulk operation %s is %s", read.shop_domain, operation.id, operation.status)
            return None
        try:
            url = shopify.bulk_result_url(operation)
        except BulkAccessDenied:
            raise
        except BulkOperationFailed as exc:
            log.warning("%s; read page by page instead", exc)
            return read.as_pages(f"{exc}; read page by page instead")
    return replace(read, result_url=url, objects=operation.object_count)


def plan_shop_batches(
    read: CatalogRead,
    writer: DayWriter,
    settings: Settings,
    product_ids: Sequence[str] | None = None,
    max_batches: int | None = None,
) -> ShopPlan:
    """Cut one shop's catalog into batches, at most ``max_batches`` (its share of the day's mapped batches,
    fleet.batch_budgets; larger batches if it takes that): a bulk result is staged under the run's own prefix,
    pages are listed by id."""
    day = writer.day
    if read.mode == "bulk":
        check_day_writer(writer)
        products = assemble_products(iter_bulk_result(read.result_url)) if read.result_url else ()
        batches = stage_shop(
            R2Hook(),
            read.shop,
            day,
            writer.run_id,
            products,
            batch_variants=streamed_batch_size(read.objects, settings.batch_variants, max_batches),
            currency=read.currency,
            bulk_result_url=read.result_url,
        )
    else:
        with shopify_for(read.shop_id) as shopify:
            batches = plan_shop(
                shopify,
                read.shop,
                day,
                batch_variants=settings.batch_variants,
                product_ids=product_ids,
                currency=read.currency,
                max_batches=max_batches,
            )
    if product_ids:
        batches = [replace(batch, whole_shop=False) for batch in batches]
    variants = sum(batch.variants for batch in batches)
    log.info("Shop %s: %d batch(es), %d variants, read by %s", read.shop_domain, len(batches), variants, read.mode)
    return ShopPlan(read.shop_id, read.shop_domain, read.mode, read.note, variants, batches)


def export_product_batch(batch: BatchPlan, settings: Settings, run_id: str) -> BatchResult:
    """Export one batch end to end with one database connection, one R2 client, one image client, and a
    Shopify hook unless the batch's products are staged (staged again from the bulk result if its staging
    is gone)."""
    writer = DayWriter(date.fromisoformat(batch.date), run_id)
    with ExitStack() as stack:
        shopify = None if batch.staged_key else stack.enter_context(shopify_for(batch.shop_id))
        conn = stack.enter_context(app_db())
        check_writer(conn, writer)
        conn.commit()
        pool = stack.enter_context(ThreadPoolExecutor(settings.concurrency))
        images = stack.enter_context(image_source(settings))
        store = object_store(settings)

        def exported() -> BatchResult:
            (result,) = export(
                conn,
                store,
                images,
                lambda: [read_batch(shopify, store, batch)],
                pool=pool,
                max_revenue=settings.max_event_revenue,
                writer=writer,
            )
            return result

        try:
            result = exported()
        except StagedCatalogMissing:
            restage(store, batch)
            result = exported()
    log.info(
        "%s: %d/%d variants, %d files (%d unchanged), %d images backed up, %d failed, %.2fs",
        batch.label,
        result.variants,
        batch.variants,
        result.files,
        result.files_unchanged,
        result.images_backed_up,
        result.images_failed,
        result.seconds,
    )
    return result


def restage(store: R2Hook, batch: BatchPlan) -> None:
    """Stage a batch again from the bulk result it was cut from; raise naming the clear that reads the shop's
    catalog again when that result is gone too (Shopify keeps it a week)."""
    log.warning("%s: its staged catalog is gone; staging it again from the bulk result", batch.label)
    try:
        if not batch.bulk_result_url:
            raise StagedCatalogMissing(f"{batch.label}: no bulk result recorded")
        restage_batch(store, batch, assemble_products(iter_bulk_result(batch.bulk_result_url)))
    except (StagedCatalogMissing, ShopifyError) as exc:
        raise StagedCatalogMissing(
            f"{batch.label}: its staged catalog is gone and cannot be staged again ({exc}). Clear the shop's "
            f"shop.start_catalog_read task ({batch.shop_domain}) with downstream: its catalog is read and staged "
            "anew"
        ) from None


MOVED_NOTE = "found large on its first page in a packed unit: exported alone in one task"


def export_moved_shops(group: ShopUnit, writer: DayWriter, settings: Settings) -> UnitResult:
    """Export alone, one after another in this task, the shops that left their packed units (found large on their
    first page): each read as a shop alone is, in bulk when it is large (the bulk query waited for here), then its
    batches exported in turn (memory stays that of one batch). A shop that fails is recorded and the others go on.
    From the next day its size in the report puts it on the per-shop path."""
    outcome = UnitResult(index=group.index)
    for shop in group.shops:
        try:
            plan = _read_alone(shop, writer, settings)
            results = [export_product_batch(batch, settings, writer.run_id) for batch in plan.batches]
        except Exception as exc:
            outcome.permanent = outcome.permanent and isinstance(exc, PermanentError)
            outcome.failures[shop.shop_id] = failure_reason(exc)
            log.error("Shop %s failed, exported alone after leaving its unit: %s", shop.shop_domain, exc)
            continue
        outcome.plans.append(plan)
        outcome.results += results
    return outcome


def _read_alone(shop: ShopRef, writer: DayWriter, settings: Settings) -> ShopPlan:
    """Read and cut a shop's catalog as the per-shop chain does, waiting for its bulk query in this task."""
    read = start_catalog_read(shop, settings)
    read = replace(read, note=f"{MOVED_NOTE}; {read.note}" if read.note else MOVED_NOTE)
    while (ready := poll_catalog_read(read)) is None:
        time.sleep(settings.bulk_poll_seconds)
    return plan_shop_batches(ready, writer, settings)
