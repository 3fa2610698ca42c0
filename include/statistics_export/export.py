"""The export's units of work: plan a shop's batches (listed page by page, or cut from a bulk read and staged),
and export the products of one batch, or of a packed unit's many shops, end to end."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

from include.statistics_export.catalog import (
    Product,
    batched_by_variants,
    created_at,
    existed_on,
    parse_product,
    parse_summary,
)
from include.statistics_export.day_claims import DayWriter, day_fence
from include.statistics_export.errors import (
    BatchRowsError,
    DayWrittenByAnotherRun,
    RevenueOverflow,
    StagedCatalogMissing,
)
from include.statistics_export.event_rules import DEFAULT_MAX_EVENT_REVENUE, MAX_ROW_REVENUE
from include.statistics_export.formats import RenderedFiles, VariantExport, WrittenFiles, render_files
from include.statistics_export.handoffs import BatchPlan, BatchResult, ShopRef
from include.statistics_export.ids import gid
from include.statistics_export.images import (
    BackupOutcome,
    ImageBackup,
    ImageFetch,
    ImageOwner,
    image_owners,
    shops_existing_backups,
    start_image_backups,
)
from include.statistics_export.keys import export_key, staged_batch_key
from include.statistics_export.metrics import ZERO, VariantMetrics, shops_variant_metrics
from include.statistics_export.parquet import ParquetPart, write_parquet_part
from include.statistics_export.protocols import Catalog, ObjectStore
from include.statistics_export.rows import shops_recorded_hashes, write_shops_rows
from include.statistics_export.settings import Settings
from include.statistics_export.staging import read_staged_batch, stage_batch
from include.statistics_export.totals import csv_totals
from include.statistics_export.utc import day_bounds

log = logging.getLogger(__name__)

DEFAULT_BATCH_VARIANTS = Settings().batch_variants
# Staged batches being compressed and written while planning cuts the next ones.
STAGING_IN_FLIGHT = 4


T = TypeVar("T")


def fitted_cut(
    items: Sequence[T], variants_of: Callable[[T], int], batch_variants: int, max_batches: int | None = None
) -> list[list[T]]:
    """Cut items (products, in order) into batches of about ``batch_variants`` variants; with ``max_batches``,
    into batches as much larger as it takes to be at most that many (a mapped task's length has a limit)."""
    size = batch_variants
    while True:
        batches = list(batched_by_variants(items, variants_of, size))
        if max_batches is None or len(batches) <= max_batches:
            return batches
        size = max(size + 1, math.ceil(size * len(batches) / max_batches))


def streamed_batch_size(lines: int, batch_variants: int, max_batches: int | None) -> int:
    """Return the batch size a cut made as it streams (a bulk result: not held whole) needs to give at most
    ``max_batches`` batches, from an upper bound of its variants (its result's ``lines``: a product and each of
    its variants are a line each). A cut never splits a product, so two batches in a row hold more than the
    size: ``n`` batches of ``lines`` at most are fewer than ``2 * lines / size + 1``."""
    if max_batches is None or 2 * lines / batch_variants + 1 <= max_batches:
        return batch_variants
    return max(batch_variants, math.ceil(2 * lines / max(1, max_batches - 1)))


def plan_shop(
    catalog: Catalog,
    shop: ShopRef,
    day: date,
    *,
    batch_variants: int = DEFAULT_BATCH_VARIANTS,
    product_ids: Iterable[str] | None = None,
    currency: str | None = None,
    max_batches: int | None = None,
) -> list[BatchPlan]:
    """List the shop's products that existed on ``day`` and group them into batches by variant count (at most
    ``max_batches`` of them, larger ones if it takes that)."""
    _, day_end = day_bounds(day)
    wanted = {str(p) for p in product_ids} if product_ids else None
    summaries = [
        summary
        for summary in map(parse_summary, catalog.iter_product_summaries())
        if existed_on(summary.created_at, day_end) and (wanted is None or summary.product_id in wanted)
    ]
    batches = fitted_cut(summaries, lambda summary: summary.variants, batch_variants, max_batches)
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
    """Cut a bulk-read catalog into batches by variant count and stage each under the run's own prefix.

    A batch is compressed and written in the background while the next is cut (zlib and the PUT leave the GIL),
    at most STAGING_IN_FLIGHT at once, so memory stays a few batches."""
    staged = []
    with ThreadPoolExecutor(STAGING_IN_FLIGHT, thread_name_prefix="staging") as pool:
        writing: deque[Future[None]] = deque()
        for n, batch in enumerate(cut_catalog(products, day, batch_variants), start=1):
            key = staged_batch_key(shop.shop_id, day, run_id, n)
            if len(writing) >= STAGING_IN_FLIGHT:
                writing.popleft().result()
            writing.append(pool.submit(stage_batch, store, key, batch))
            staged.append((key, sum(len(raw["variants"]) for raw in batch)))
        for done in writing:
            done.result()
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

    def spent(self) -> dict[str, list[float]]:
        """Return the phases so far as a copy: a result keeps them while the clock may go on."""
        return {name: list(seconds) for name, seconds in self.phases.items()}


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
    # Reading the products is all the batch asks of Shopify: what it cost is known from here on.
    part = ShopPart(plan, products, missing, catalog.cost_charged if catalog is not None else 0.0)
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
    """One shop's share of a batch: its plan, its products already read, the ids Shopify no longer knows, and
    the GraphQL cost Shopify charged for reading them."""

    plan: BatchPlan
    products: list[Product]
    missing: list[str] = field(default_factory=list)
    graphql_cost: float = 0.0


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
    files are in R2, however many shops there are. The reads end before any network wait; with a ``writer``, the
    files, parts and rows are written under the day's fence, only while its run holds the day (day_claims)."""
    started = time.monotonic() if started is None else started
    clock = clock or PhaseClock()
    day = date.fromisoformat(parts[0].plan.date)
    # Every read first, in one short transaction: none stays open across the downloads and uploads below (it
    # would hold read locks on the app's tables for minutes, queueing an app migration and the pixel behind it).
    with clock.phase("metrics_sql"):
        metrics = parts_metrics(conn, parts, day, max_revenue)
    check_revenue_fits(parts, metrics)
    owners = {part.plan.shop_id: image_owners(part.products) for part in parts}
    with clock.phase("images"):
        already = shops_existing_backups(conn, [(s, gid) for s, found in owners.items() for gid in found])
    with clock.phase("rows"):
        known = shops_recorded_hashes(conn, day, [key for part in parts for key in _natural_keys(part)])
    conn.commit()
    with clock.phase("images"):
        copies = start_image_copies(store, parts, owners, already, fetch_image, pool)
    shops = []
    for part, shop_copies in zip(parts, copies):
        with clock.phase("images"):
            backed_up = shop_copies.collect()
        shops.append(shop_variants(part, shop_copies, backed_up, metrics, day))
    exports = [export for shop in shops for export in shop.exports]
    new_images = [(shop.part.plan.shop_id, owner, backup) for shop in shops for owner, backup in shop.new_images]
    with clock.phase("rendering"):
        # Rendering and hashing are pure Python (the GIL): done in this thread, a pool would only add switches.
        rendered = [render_files(export) for export in exports]
    files = sort_files(parts, exports, rendered, known)
    # The day's fence: no other run takes the day over while these files, parts and rows are written (day_claims).
    with day_fence(conn, writer):
        with clock.phase("uploads"):
            written = upload_files(store, files.changed, pool)
        # Each shop's Parquet part too, before any row: a committed row always has every file behind it.
        with clock.phase("parquet"):
            parquet = write_parquet_parts(store, shops, day, pool)
        with clock.phase("rows"):
            write_rows(conn, parts, written, new_images, writer)
    seconds = round((time.monotonic() - started) / len(parts), 3)  # a shared phase, shared out evenly
    # A unit's shops share the phases (they were exported together): the unit's result carries them once.
    phases = clock.spent() if len(parts) == 1 else {}
    return [
        batch_result(shop, files.by_shop[shop.part.plan.shop_id], parquet.get(shop.part.plan.shop_id), seconds, phases)
        for shop in shops
    ]


def parts_metrics(
    conn: Any, parts: Sequence[ShopPart], day: date, max_revenue: Decimal
) -> dict[tuple[str, str], VariantMetrics]:
    """Return the day's metrics of every shop's variants, by (shop, variant id), in one query."""
    return shops_variant_metrics(
        conn,
        {part.plan.shop_id: [v.variant_id for p in part.products for v in p.variants] for part in parts},
        day,
        max_revenue=max_revenue,
        currencies={part.plan.shop_id: part.plan.currency for part in parts},
    )


@dataclass(frozen=True)
class ImageCopies:
    """One shop's image copies under way: the backups already in R2, and what waits for the new copies."""

    reused: dict[str, ImageBackup]
    collect: Callable[[], BackupOutcome]


def start_image_copies(
    store: ObjectStore,
    parts: Sequence[ShopPart],
    owners: dict[str, dict[str, ImageOwner]],
    already: dict[tuple[str, str], ImageBackup],
    fetch_image: ImageFetch,
    pool: ThreadPoolExecutor,
) -> list[ImageCopies]:
    """Start copying every shop's images not yet in R2 (``already`` holds those backed up, read beforehand);
    return each part's copies in the parts' order."""
    reused: dict[str, dict[str, ImageBackup]] = {part.plan.shop_id: {} for part in parts}
    for (shop_id, media_gid), backup in already.items():
        reused[shop_id][media_gid] = backup
    # Every shop's copies are started before any is awaited: a unit's small shops copy concurrently.
    return [
        ImageCopies(
            reused[part.plan.shop_id],
            start_image_backups(
                part.plan.shop_id,
                owners[part.plan.shop_id],
                reused[part.plan.shop_id],
                fetch_image,
                store.put_object,
                store.object_url,
                pool,
            ),
        )
        for part in parts
    ]


@dataclass(frozen=True)
class ShopVariants:
    """One shop's variants ready to render (each with its day's metrics and its images' backups), and what its
    image copies did."""

    part: ShopPart
    exports: list[VariantExport]
    new_images: list[tuple[ImageOwner, ImageBackup]]
    image_failures: list[str]
    images_reused: int


def shop_variants(
    part: ShopPart,
    copies: ImageCopies,
    backed_up: BackupOutcome,
    metrics: dict[tuple[str, str], VariantMetrics],
    day: date,
) -> ShopVariants:
    """Join a shop's variants to their metrics and their images' backups, once its image copies are done."""
    plan = part.plan
    backups, new_images, image_failures = backed_up
    for failure in image_failures:
        log.warning("Shop %s: image not backed up (tried again next run): %s", plan.shop_id, failure)
    exports = [
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
    return ShopVariants(part, exports, new_images, image_failures, len(copies.reused))


@dataclass(frozen=True)
class ShopFiles:
    """One shop's rendered files, in its variants' order, and its variants whose files are stored already."""

    files: list[RenderedFiles] = field(default_factory=list)
    unchanged: list[VariantExport] = field(default_factory=list)


class SortedFiles(NamedTuple):
    """The unit's files that differ from those stored (to write), and every shop's files."""

    changed: list[tuple[VariantExport, RenderedFiles]]
    by_shop: dict[str, ShopFiles]


def sort_files(
    parts: Sequence[ShopPart],
    exports: Sequence[VariantExport],
    rendered: Sequence[RenderedFiles],
    known: dict[tuple[str, str, str], str],
) -> SortedFiles:
    """Sort the rendered files into those to write and each shop's, in one pass: a packed unit holds up to
    hundreds of shops.

    Identical bytes are not written again: their objects keep LastModified and their rows stay as they are.
    """
    changed = []
    by_shop = {part.plan.shop_id: ShopFiles() for part in parts}
    for export, files in zip(exports, rendered):
        mine = by_shop[export.shop_id]
        mine.files.append(files)
        if known.get(_natural_key(export)) == files.content_hash:
            mine.unchanged.append(export)
        else:
            changed.append((export, files))
    return SortedFiles(changed, by_shop)


def write_parquet_parts(
    store: ObjectStore, shops: Sequence[ShopVariants], day: date, pool: ThreadPoolExecutor
) -> dict[str, ParquetPart]:
    """Write the Parquet part of each shop exported whole; return the parts by shop."""
    # One part per shop: a packed unit's shops write theirs concurrently (each a LIST, and a PUT if it changed).
    writes = {
        shop.part.plan.shop_id: pool.submit(
            write_parquet_part,
            store,
            shop.exports,
            shop.part.plan.shop_id,
            day,
            shop.part.plan.index,
            shop.part.plan.count,
        )
        for shop in shops
        if shop.part.plan.whole_shop
    }
    return {shop_id: write.result() for shop_id, write in writes.items()}


def write_rows(
    conn: Any,
    parts: Sequence[ShopPart],
    written: Sequence[tuple[VariantExport, WrittenFiles]],
    new_images: Sequence[tuple[str, ImageOwner, ImageBackup]],
    writer: DayWriter | None,
) -> None:
    """Write every shop's rows in one transaction; raise BatchRowsError naming the batches when that fails
    (the day taken over by another run is raised as it is)."""
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


def batch_result(
    shop: ShopVariants,
    files: ShopFiles,
    parquet: ParquetPart | None,
    seconds: float,
    phases: dict[str, list[float]],
) -> BatchResult:
    """Return what a shop's share of the export did, once its rows are committed."""
    plan = shop.part.plan
    return BatchResult(
        shop_id=plan.shop_id,
        shop_domain=plan.shop_domain,
        batch=plan.index,
        products=len({export.product.product_id for export in shop.exports}),
        variants=len(shop.exports),
        files=2 * len(shop.exports),
        files_unchanged=2 * len(files.unchanged),
        images_backed_up=len(shop.new_images),
        images_reused=shop.images_reused,
        images_failed=len(shop.image_failures),
        missing_products=list(shop.part.missing),
        image_failures=shop.image_failures,
        file_totals=csv_totals(rendered.csv for rendered in files.files),
        seconds=seconds,
        graphql_cost=shop.part.graphql_cost,
        parquet_key=parquet.key if parquet is not None else None,
        parquet_written=parquet.written if parquet is not None else False,
        parquet_totals=parquet.totals if parquet is not None else None,
        phases=phases,
    )


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


def _natural_keys(part: ShopPart) -> Iterator[tuple[str, str, str]]:
    """The natural keys of a shop part's variants, known before anything is rendered."""
    for product in part.products:
        for variant in product.variants:
            yield part.plan.shop_id, product.product_id, variant.variant_id


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
