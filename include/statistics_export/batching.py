"""A shop's catalog cut into batches by variant count: listed page by page (ids only), or cut from a bulk read
and staged under the run's own prefix. A batch is what one mapped task instance exports (``pipeline``)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from typing import Any, TypeVar

from include.statistics_export.catalog import batched_by_variants, created_at, existed_on, parse_summary
from include.statistics_export.errors import StagedCatalogMissing
from include.statistics_export.handoffs import BatchPlan, ShopRef
from include.statistics_export.keys import staged_batch_key
from include.statistics_export.protocols import Catalog, ObjectStore
from include.statistics_export.settings import Settings
from include.statistics_export.staging import stage_batch
from include.statistics_export.utc import day_bounds

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
