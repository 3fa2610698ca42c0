"""Stage 2, enrich: each variant joined to its day's metrics and its images' backups, ready to render.

The reads (the metrics of every shop's variants, the images already backed up) are one short transaction each,
committed before any network wait: none stays open across the downloads (it would hold read locks on the app's
tables for minutes, queueing an app migration and the pixel behind it).

Images: each is copied to R2 once per shop (the ``ObjectStore``), from the ``ImageSource``: every download of
the batch is started at once and each image is handed to the store as it arrives; neither waits on a thread of
its own (each hook bounds its requests in flight). A download that
fails never fails the export: the image is listed with its Shopify URL and empty R2 fields, reported in the
batch's ``image_failures``, and tried again next run, since no backup row is recorded for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

from include.statistics_export.catalog import ImageBackup, ImageOwner, image_owners
from include.statistics_export.errors import ImageDownloadError, RevenueOverflow
from include.statistics_export.event_rules import MAX_ROW_REVENUE
from include.statistics_export.formats import VariantExport
from include.statistics_export.keys import image_key
from include.statistics_export.metrics import ZERO, VariantMetrics, shops_variant_metrics
from include.statistics_export.pipeline.clock import PhaseClock
from include.statistics_export.pipeline.read import ShopPart
from include.statistics_export.protocols import ImageSource, ObjectStore
from include.statistics_export.rows import shops_existing_backups
from include.statistics_export.utc import now_ms

log = logging.getLogger(__name__)

Metrics = dict[tuple[str, str], VariantMetrics]


@dataclass(frozen=True)
class EnrichedShop:
    """One shop's variants ready to render (each with its day's metrics and its images' backups), and what its
    image copies did."""

    part: ShopPart
    exports: list[VariantExport]
    new_images: list[tuple[ImageOwner, ImageBackup]]
    image_failures: list[str]
    images_reused: int


def enrich(
    conn: Any,
    store: ObjectStore,
    images: ImageSource,
    parts: Sequence[ShopPart],
    *,
    max_revenue: Decimal,
    clock: PhaseClock,
) -> list[EnrichedShop]:
    """Join every shop's variants to their metrics (one query for all shops) and their images' backups (one
    query for those already in R2; the others copied now, every shop's at once)."""
    day = date.fromisoformat(parts[0].plan.date)
    with clock.phase("metrics_sql"):
        metrics = parts_metrics(conn, parts, day, max_revenue)
    check_revenue_fits(parts, metrics)
    owners = {part.plan.shop_id: image_owners(part.products) for part in parts}
    with clock.phase("images"):
        already = shops_existing_backups(conn, [(s, gid) for s, found in owners.items() for gid in found])
        conn.commit()
        reused: dict[str, dict[str, ImageBackup]] = {part.plan.shop_id: {} for part in parts}
        for (shop_id, media_gid), backup in already.items():
            reused[shop_id][media_gid] = backup
        # Every shop's copies are started before any is awaited: a unit's small shops copy concurrently.
        copies = [
            start_image_backups(part.plan.shop_id, owners[part.plan.shop_id], reused[part.plan.shop_id], images, store)
            for part in parts
        ]
    enriched = []
    for part, collect in zip(parts, copies):
        with clock.phase("images"):
            backups, new, failures = collect()
        enriched.append(joined(part, backups, new, failures, len(reused[part.plan.shop_id]), metrics, day))
    return enriched


def parts_metrics(conn: Any, parts: Sequence[ShopPart], day: date, max_revenue: Decimal) -> Metrics:
    """Return the day's metrics of every shop's variants, by (shop, variant id), in one query."""
    return shops_variant_metrics(
        conn,
        {part.plan.shop_id: [v.variant_id for p in part.products for v in p.variants] for part in parts},
        day,
        max_revenue=max_revenue,
        currencies={part.plan.shop_id: part.plan.currency for part in parts},
    )


def check_revenue_fits(parts: Sequence[ShopPart], metrics: Metrics) -> None:
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


BackupOutcome = tuple[dict[str, ImageBackup], list[tuple[ImageOwner, ImageBackup]], list[str]]


def start_image_backups(
    shop_id: str,
    owners: dict[str, ImageOwner],
    already: dict[str, ImageBackup],
    images: ImageSource,
    store: ObjectStore,
) -> Callable[[], BackupOutcome]:
    """Start copying the images not yet in R2; return what waits for them (so several shops' copies run at once).

    Waiting returns every image's backup (old or new), the new backups to record, and one message per
    image that could not be copied (those keep null R2 fields and are tried again next run).
    """
    # The Shopify URL shown is today's; the R2 copy is the one made when the image was first seen.
    backups = {
        gid: replace(already[gid], shopify_url=owner.image.url) for gid, owner in owners.items() if gid in already
    }
    started = [
        (
            owner,
            copy_image(
                images, store, owner, image_key(shop_id, owner.product_id, owner.image.media_gid, owner.image.url)
            ),
        )
        for gid, owner in owners.items()
        if gid not in already
    ]

    def collect() -> BackupOutcome:
        wait([copied for _, copied in started])  # every copy ends before the first error is raised
        new, failures = [], []
        for owner, copied in started:
            try:
                backup = copied.result()
            except ImageDownloadError as exc:
                failures.append(f"shop {shop_id} product {owner.product_id} image {owner.image.media_gid}: {exc}")
                backup = ImageBackup(owner.image.media_gid, owner.image.url)
            else:
                new.append((owner, backup))
            backups[owner.image.media_gid] = backup
        return backups, new, failures

    return collect


def copy_image(images: ImageSource, store: ObjectStore, owner: ImageOwner, key: str) -> Future[ImageBackup]:
    """Start downloading an image and hand it to the store as soon as it arrives; return at once: a future of
    its backup, raising the download's error or the write's."""
    copied: Future[ImageBackup] = Future()

    def written(write: Future[None]) -> None:
        try:
            write.result()
            copied.set_result(ImageBackup(owner.image.media_gid, owner.image.url, key, store.object_url(key), now_ms()))
        except BaseException as exc:  # noqa: BLE001 - a callback's error would be lost, and the copy never end
            copied.set_exception(exc)

    def downloaded(fetch: Future[tuple[bytes, str]]) -> None:
        try:
            data, content_type = fetch.result()
            store.start_puts([(key, data, content_type)]).add_done_callback(written)
        except BaseException as exc:  # noqa: BLE001 - as above
            copied.set_exception(exc)

    images.start_fetch(owner.image.url).add_done_callback(downloaded)
    return copied


def joined(
    part: ShopPart,
    backups: dict[str, ImageBackup],
    new_images: list[tuple[ImageOwner, ImageBackup]],
    image_failures: list[str],
    images_reused: int,
    metrics: Metrics,
    day: date,
) -> EnrichedShop:
    """Join a shop's variants to their metrics and their images' backups, once its image copies are done."""
    plan = part.plan
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
    return EnrichedShop(part, exports, new_images, image_failures, images_reused)
