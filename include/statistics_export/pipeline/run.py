"""The export of a unit of work, end to end: read -> enrich -> render -> publish, timed phase by phase.

The one verb: a batch of a shop alone, a packed unit of small shops and a shop that left its unit are exported
the same way; only the ``read`` they hand in differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from include.statistics_export.day_claims import DayWriter
from include.statistics_export.handoffs import BatchResult
from include.statistics_export.pipeline.clock import PhaseClock
from include.statistics_export.pipeline.enrich import enrich
from include.statistics_export.pipeline.publish import PublishedShop, publish
from include.statistics_export.pipeline.read import ShopPart
from include.statistics_export.pipeline.render import render
from include.statistics_export.protocols import ImageSource, ObjectStore
from include.statistics_export.shop_fence import shops_fence
from include.statistics_export.totals import csv_totals


def export(
    conn: Any,
    store: ObjectStore,
    images: ImageSource,
    read: Callable[[], Sequence[ShopPart]],
    *,
    pool: ThreadPoolExecutor,
    max_revenue: Decimal,
    writer: DayWriter | None = None,
    clock: PhaseClock | None = None,
) -> list[BatchResult]:
    """Export the shops' parts ``read`` gives: one metrics query, one query for the images already backed up
    and one for the recorded hashes, then every row in one transaction once the files are in R2, however many
    shops there are. Returns a result per shop, in the parts' order."""
    started = time.monotonic()
    clock = clock or PhaseClock()
    with clock.phase("catalog"):
        parts = read()
    # From the first image copy to the rows' commit, under the shops' fence: a shop redacted (shop/redact) is refused
    # before anything of it is written, and a redaction waits until what is in flight here is in.
    with shops_fence(conn, (part.plan.shop_id for part in parts)):
        enriched = enrich(conn, store, images, parts, max_revenue=max_revenue, clock=clock)
        try:
            with clock.phase("rendering"):
                rendered = render(enriched)
            published = publish(conn, store, rendered, pool=pool, writer=writer, clock=clock)
        except BaseException:
            for shop in enriched:  # the image copies still in flight end before the error is raised
                shop.copies.wait()
            raise
    seconds = round((time.monotonic() - started) / len(parts), 3)  # a shared phase, shared out evenly
    # A unit's shops share the phases (they were exported together): the unit's result carries them once.
    phases = clock.spent() if len(parts) == 1 else {}
    return [result_of(shop, seconds, phases) for shop in published]


def result_of(published: PublishedShop, seconds: float, phases: dict[str, list[float]]) -> BatchResult:
    """Return what a shop's share of the export did, once its rows are committed."""
    shop = published.rendered.shop
    plan, parquet = shop.part.plan, published.parquet
    return BatchResult(
        shop_id=plan.shop_id,
        shop_domain=plan.shop_domain,
        batch=plan.index,
        products=len({export.product.product_id for export in shop.exports}),
        variants=len(shop.exports),
        files=2 * len(shop.exports),
        files_unchanged=2 * published.unchanged,
        images_backed_up=len(published.images.new_images),
        images_reused=shop.images_reused,
        images_failed=len(published.images.failures),
        missing_products=list(shop.part.missing),
        image_failures=published.images.failures,
        file_totals=csv_totals(files.csv for files in published.rendered.files),
        seconds=seconds,
        graphql_cost=shop.part.graphql_cost,
        parquet_key=parquet.key if parquet is not None else None,
        parquet_written=parquet.written if parquet is not None else False,
        parquet_totals=parquet.totals if parquet is not None else None,
        phases=phases,
    )
