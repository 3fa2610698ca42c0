"""Stage 2, enrich: each variant joined to its day's metrics and its images' backups, ready to render.

The reads (the metrics of every shop's variants, the images already backed up) are one short transaction each,
committed before any network wait: none stays open across the downloads (it would hold read locks on the app's
tables for minutes, queueing an app migration and the pixel behind it).

Images: each is copied to R2 once per shop (the ``ObjectStore``), from the ``ImageSource``: every download of
the batch is started at once and each image is written to the store as it arrives, in the same coroutine on
the downloads' event loop; none waits on a thread of its own (each hook bounds its requests in flight). The
copies are not awaited here: the variants carry each new image's backup as it will be once copied (its key and
URL are known, its time is when its copy started), and ``publish`` settles the copies while the files upload, so
the downloads' waits overlap the uploads'. A download that fails never fails the export: the image is listed
with its Shopify URL and empty R2 fields (its variants' files rendered again so, and written over the first
ones before any row), reported in the batch's ``image_failures``, and tried again next run, since no backup row
is recorded for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
class SettledImages:
    """What a shop's image copies did once all ended: the new backups to record, one message per image that could
    not be copied, and those images' backups without an R2 copy (by media id)."""

    new_images: list[tuple[ImageOwner, ImageBackup]]
    failures: list[str]
    failed: dict[str, ImageBackup]

    def corrected(self, export: VariantExport) -> VariantExport | None:
        """Return the export with the R2 fields of its images that could not be copied emptied, or None when all
        of its images were."""
        if not any(image.media_gid in self.failed for image in export.images):
            return None
        return replace(export, images=tuple(self.failed.get(image.media_gid, image) for image in export.images))


@dataclass(frozen=True)
class ImageCopies:
    """A shop's image copies in flight: each new image's owner, the backup it has once copied, and its copy."""

    shop_id: str
    started: list[tuple[ImageOwner, ImageBackup, Future[None]]]

    def wait(self) -> None:
        """Wait for every copy to end, whatever it did."""
        wait([copied for _, _, copied in self.started])

    def settle(self) -> SettledImages:
        """Wait for every copy; return what they did. A download that failed is a failure of its image only; a
        write to the store that failed is raised (after every copy has ended): the batch fails and is retried."""
        self.wait()
        new, failures, failed = [], [], {}
        for owner, backup, copied in self.started:
            try:
                copied.result()
            except ImageDownloadError as exc:
                gid = owner.image.media_gid
                failures.append(f"shop {self.shop_id} product {owner.product_id} image {gid}: {exc}")
                failed[gid] = ImageBackup(gid, owner.image.url)
            else:
                new.append((owner, backup))
        for failure in failures:
            log.warning("Shop %s: image not backed up (tried again next run): %s", self.shop_id, failure)
        return SettledImages(new, failures, failed)


@dataclass(frozen=True)
class EnrichedShop:
    """One shop's variants ready to render, each with its day's metrics and its images' backups (a new image's as
    it will be once copied: its key, URL and the time its copy started), how many images were reused, and the
    image copies still in flight (``publish`` settles them while the files upload)."""

    part: ShopPart
    exports: list[VariantExport]
    images_reused: int
    copies: ImageCopies


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
    query for those already in R2; the others' copies started now, every shop's at once, and not awaited)."""
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
        # Every shop's copies are started before any is awaited: a unit's small shops copy concurrently, and
        # while the files upload.
        started = [
            start_image_backups(part.plan.shop_id, owners[part.plan.shop_id], reused[part.plan.shop_id], images, store)
            for part in parts
        ]
    return [
        joined(part, backups, len(reused[part.plan.shop_id]), copies, metrics, day)
        for part, (backups, copies) in zip(parts, started)
    ]


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


def start_image_backups(
    shop_id: str,
    owners: dict[str, ImageOwner],
    already: dict[str, ImageBackup],
    images: ImageSource,
    store: ObjectStore,
) -> tuple[dict[str, ImageBackup], ImageCopies]:
    """Start copying the images not yet in R2; return every image's backup (an old one, or a new one as it will be
    once copied) and the copies in flight."""
    # The Shopify URL shown is today's; the R2 copy is the one made when the image was first seen.
    backups = {
        gid: replace(already[gid], shopify_url=owner.image.url) for gid, owner in owners.items() if gid in already
    }
    started = []
    for gid, owner in owners.items():
        if gid not in already:
            key = image_key(shop_id, owner.product_id, gid, owner.image.url)
            backups[gid] = ImageBackup(gid, owner.image.url, key, store.object_url(key), now_ms())
            started.append((owner, backups[gid], copy_image(images, store, owner.image.url, key)))
    return backups, ImageCopies(shop_id, started)


def copy_image(images: ImageSource, store: ObjectStore, url: str, key: str) -> Future[None]:
    """Start downloading an image and writing it to the store as soon as it arrives (one coroutine on the
    download's loop); return at once: a future raising the download's error or the write's."""

    async def keep(data: bytes, content_type: str) -> None:
        await store.put_object_async(key, data, content_type)

    return images.start_copy(url, keep)


def joined(
    part: ShopPart,
    backups: dict[str, ImageBackup],
    images_reused: int,
    copies: ImageCopies,
    metrics: Metrics,
    day: date,
) -> EnrichedShop:
    """Join a shop's variants to their metrics and their images' backups."""
    plan = part.plan
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
    return EnrichedShop(part, exports, images_reused, copies)
