"""The export's units of work: plan a shop's batches (listed page by page, or cut from a bulk read and staged),
and export the products of one batch, or of a packed unit's many shops, end to end."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from include.statistics_export.day_claims import DayWriter
from include.statistics_export.errors import (
    BatchRowsError,
    DayWrittenByAnotherRun,
    RevenueOverflow,
    StagedCatalogMissing,
)
from include.statistics_export.event_rules import DEFAULT_MAX_EVENT_REVENUE
from include.statistics_export.formats import RenderedFiles, VariantExport, WrittenFiles, render_files
from include.statistics_export.handoffs import BatchPlan, BatchResult, ShopRef
from include.statistics_export.ids import gid
from include.statistics_export.images import (
    ImageBackup,
    ImageFetch,
    image_owners,
    shops_existing_backups,
    start_image_backups,
)
from include.statistics_export.keys import export_key, staged_batch_key
from include.statistics_export.metrics import MAX_ROW_REVENUE, ZERO, VariantMetrics, shops_variant_metrics
from include.statistics_export.parquet import write_parquet_part
from include.statistics_export.protocols import Catalog, ObjectStore
from include.statistics_export.rows import shops_recorded_hashes, write_shops_rows
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
    run_id: str,
    products: Iterable[dict[str, Any]],
    *,
    batch_variants: int = DEFAULT_BATCH_VARIANTS,
    currency: str | None = None,
    bulk_result_url: str | None = None,
) -> list[BatchPlan]:
    """Cut a bulk-read catalog into batches by variant count and stage each under the run's own prefix."""
    staged = []
    for n, batch in enumerate(cut_catalog(products, day, batch_variants), start=1):
        key = staged_batch_key(shop.shop_id, day, run_id, n)
        stage_batch(store, key, batch)
        staged.append((key, sum(len(raw["variants"]) for raw in batch)))
    return [
        BatchPlan(
            shop.shop_id,
            shop.shop_domain,
            day.isoformat(),
            n,
            len(staged),
            [],
            currency,
            variants,
            key,
            bulk_result_url=bulk_result_url,
            cut_variants=batch_variants,
        )
        for n, (key, variants) in enumerate(staged, start=1)
    ]


def cut_catalog(products: Iterable[dict[str, Any]], day: date, batch_variants: int) -> Iterator[list[dict[str, Any]]]:
    """Yield a bulk-read catalog's products that existed on ``day`` in batches: the same catalog and size give
    the same batches, so one batch can be staged again alone."""
    _, day_end = day_bounds(day)
    existing = (raw for raw in products if existed_on(created_at(raw), day_end))
    yield from batched_by_variants(existing, lambda raw: len(raw["variants"]), batch_variants)


def restage_batch(store: ObjectStore, plan: BatchPlan, products: Iterable[dict[str, Any]]) -> None:
    """Stage one batch again from the catalog it was cut from (its staging was deleted); raise naming the
    batch when the catalog no longer cuts into the planned batches."""
    if plan.staged_key is None:
        raise ValueError(f"{plan.label}: only a staged batch can be staged again")
    batches = cut_catalog(products, date.fromisoformat(plan.date), plan.cut_variants)
    for n, batch in enumerate(batches, start=1):
        if n == plan.index:
            variants = sum(len(raw["variants"]) for raw in batch)
            if variants != plan.variants:
                break
            stage_batch(store, plan.staged_key, batch)
            return
    raise StagedCatalogMissing(
        f"{plan.label}: its staged catalog is gone and the bulk result no longer cuts into the planned batches"
    )


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
    writer: DayWriter | None = None,
) -> BatchResult:
    """Export one batch: catalog, metrics, images, files in R2, then the rows in one transaction."""
    started = time.monotonic()
    clock = PhaseClock()
    with clock.phase("catalog"):
        products, missing = batch_products(catalog, store, plan)
    if missing:
        log.warning("Shop %s: products no longer in Shopify, skipped: %s", plan.shop_id, missing)
    part = ShopPart(plan, products, missing)
    (result,) = export_parts(
        conn,
        store,
        [part],
        fetch_image,
        pool=pool,
        max_revenue=max_revenue,
        started=started,
        clock=clock,
        writer=writer,
    )
    return result


@dataclass(frozen=True)
class ShopPart:
    """One shop's share of a batch: its plan, its products already read, and the ids Shopify no longer knows."""

    plan: BatchPlan
    products: list[Product]
    missing: list[str] = field(default_factory=list)


def export_parts(
    conn: Any,
    store: ObjectStore,
    parts: Sequence[ShopPart],
    fetch_image: ImageFetch,
    *,
    pool: ThreadPoolExecutor,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
    started: float | None = None,
    clock: PhaseClock | None = None,
    writer: DayWriter | None = None,
) -> list[BatchResult]:
    """Export the products of one or more shops of one day together: one metrics query, one query for the
    images already backed up and one for the recorded hashes, then every row in one transaction once the
    files are in R2, however many shops there are. With a ``writer``, the rows are committed only while its
    run holds the day (day_claims)."""
    started = time.monotonic() if started is None else started
    clock = clock or PhaseClock()
    day = date.fromisoformat(parts[0].plan.date)
    with clock.phase("metrics_sql"):
        metrics = shops_variant_metrics(
            conn,
            {part.plan.shop_id: [v.variant_id for p in part.products for v in p.variants] for part in parts},
            day,
            max_revenue=max_revenue,
            currencies={part.plan.shop_id: part.plan.currency for part in parts},
        )
    check_revenue_fits(parts, metrics)
    with clock.phase("images"):
        owners = {part.plan.shop_id: image_owners(part.products) for part in parts}
        already = shops_existing_backups(conn, [(s, gid) for s, found in owners.items() for gid in found])

        # Every shop's copies are started before any is awaited: a unit's small shops copy concurrently.
        reused: dict[str, dict[str, ImageBackup]] = {part.plan.shop_id: {} for part in parts}
        for (shop_id, media_gid), backup in already.items():
            reused[shop_id][media_gid] = backup
        pending = [
            start_image_backups(
                part.plan.shop_id,
                owners[part.plan.shop_id],
                reused[part.plan.shop_id],
                fetch_image,
                store.put_object,
                store.object_url,
                pool,
            )
            for part in parts
        ]
    results, exports, new_images = [], [], []
    for part, collect in zip(parts, pending):
        plan = part.plan
        result = BatchResult(shop_id=plan.shop_id, shop_domain=plan.shop_domain, batch=plan.index)
        result.missing_products = list(part.missing)
        with clock.phase("images"):
            backups, shop_new_images, result.image_failures = collect()
        for failure in result.image_failures:
            log.warning("Shop %s: image not backed up (tried again next run): %s", plan.shop_id, failure)
        new_images += [(plan.shop_id, owner, backup) for owner, backup in shop_new_images]
        exports += [
            VariantExport(
                day=day,
                shop_id=plan.shop_id,
                shop_domain=plan.shop_domain,
                product=product,
                variant=variant,
                metrics=metrics.get((plan.shop_id, variant.variant_id), ZERO),
                images=tuple(backups[image.media_gid] for image in product.images_of(variant)),
                currency=plan.currency,
            )
            for product in part.products
            for variant in product.variants
        ]
        result.images_backed_up, result.images_reused = len(shop_new_images), len(reused[plan.shop_id])
        result.images_failed = len(result.image_failures)
        results.append(result)

    with clock.phase("rendering"):
        # Rendering and hashing are pure Python (the GIL): done in this thread, a pool would only add switches.
        rendered = [render_files(export) for export in exports]
    with clock.phase("rows"):
        known = shops_recorded_hashes(conn, day, [_natural_key(e) for e in exports])
    # Identical bytes are not written again: their objects keep LastModified and their rows stay as they are.
    changed = [(e, files) for e, files in zip(exports, rendered) if known.get(_natural_key(e)) != files.content_hash]
    with clock.phase("uploads"):
        written = upload_files(store, changed, pool)
    # Each shop's Parquet part too, before any row: a committed row always has every file behind it.
    # Each shop's variants, grouped once: a packed unit holds up to hundreds of shops.
    shop_exports: dict[str, list[VariantExport]] = {part.plan.shop_id: [] for part in parts}
    shop_files: dict[str, list[tuple[VariantExport, RenderedFiles]]] = {part.plan.shop_id: [] for part in parts}
    for export, files in zip(exports, rendered):
        shop_exports[export.shop_id].append(export)
        shop_files[export.shop_id].append((export, files))
    with clock.phase("parquet"):
        # One part per shop: a packed unit's shops write theirs concurrently (each is a GET, a LIST and a PUT).
        writes = {
            result.shop_id: pool.submit(
                write_parquet_part,
                store,
                shop_exports[result.shop_id],
                part.plan.shop_id,
                day,
                part.plan.index,
                part.plan.count,
            )
            for part, result in zip(parts, results)
            if part.plan.whole_shop
        }
        for result in results:
            if result.shop_id in writes:
                parquet = writes[result.shop_id].result()
                result.parquet_key, result.parquet_written, result.parquet_totals = (
                    parquet.key,
                    parquet.written,
                    parquet.totals,
                )
    with clock.phase("rows"):
        try:
            write_shops_rows(conn, written, new_images, writer)
        except DayWrittenByAnotherRun:
            raise
        except Exception as exc:
            where = ", ".join(f"Shop {p.plan.shop_id} batch {p.plan.index}/{p.plan.count}" for p in parts)
            raise BatchRowsError(
                f"{where}: the files are in R2 but the rows were not written ({type(exc).__name__}: {exc}); "
                "a retry of the batch writes them"
            ) from exc

    unchanged = {
        _natural_key(e) for e, files in zip(exports, rendered) if known.get(_natural_key(e)) == files.content_hash
    }
    seconds = round((time.monotonic() - started) / len(parts), 3)  # a shared phase, shared out evenly
    for result in results:
        mine = shop_files[result.shop_id]
        result.products = len({e.product.product_id for e, _ in mine})
        result.variants = len(mine)
        result.files = 2 * len(mine)
        result.files_unchanged = 2 * sum(1 for e, _ in mine if _natural_key(e) in unchanged)
        result.file_totals = csv_totals(files.csv for _, files in mine)
        result.seconds = seconds
        result.phases = clock.phases  # a unit's shops share them: they were exported together
    return results


def check_revenue_fits(parts: Sequence[ShopPart], metrics: dict[tuple[str, str], VariantMetrics]) -> None:
    """Raise RevenueOverflow naming every shop, product and variant whose day's revenue the rows cannot hold,
    before anything of the batch is written."""
    overflowing: dict[str, list[str]] = {}
    for part in parts:
        for product in part.products:
            for variant in product.variants:
                found = metrics.get((part.plan.shop_id, variant.variant_id))
                if found is not None and found.revenue_rounded > MAX_ROW_REVENUE:
                    overflowing.setdefault(part.plan.shop_id, []).append(
                        f"product {product.product_id} variant {variant.variant_id}: "
                        f"{found.revenue_rounded} {part.plan.currency or ''}".rstrip()
                    )
    if overflowing:
        raise RevenueOverflow(
            {
                shop_id: f"Shop {shop_id} on {parts[0].plan.date}: the day's revenue of "
                f"{'; '.join(found)} is over {MAX_ROW_REVENUE}, the most "
                '"VariantDailyStatistics".revenue DECIMAL(12, 2) holds (nothing of the shop was written)'
                for shop_id, found in overflowing.items()
            }
        )


def _natural_key(export: VariantExport) -> tuple[str, str, str]:
    return export.shop_id, export.product.product_id, export.variant.variant_id


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
