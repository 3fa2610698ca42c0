"""Stage 4, publish: what changed since the last run uploaded, each whole shop's Parquet part, then every row in
one transaction, however many shops there are. The only stage that writes the day's outputs.

Identical bytes are not written again (the hash diff against the recorded rows): their objects keep
LastModified and their rows stay as they are. With a ``writer``, the files, parts and rows are written under the
day's fence, only while its run holds the day (``day_claims``); a committed row always has every file behind it.
The caller (``run.export``) holds the shops' fence (``shop_fence``) around it, and the rows' transaction refuses a
shop whose data was erased (shop/redact) once more.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date
from typing import Any

from include.statistics_export.catalog import ImageBackup, ImageOwner
from include.statistics_export.day_claims import DayWriter, day_fence
from include.statistics_export.errors import BatchRowsError, DayWrittenByAnotherRun, ShopRedacted
from include.statistics_export.formats import RenderedFiles, VariantExport, WrittenFiles
from include.statistics_export.keys import export_key
from include.statistics_export.parquet import ParquetPart, write_parquet_part
from include.statistics_export.pipeline.clock import PhaseClock
from include.statistics_export.pipeline.enrich import SettledImages
from include.statistics_export.pipeline.render import RenderedShop, without_failed_images
from include.statistics_export.protocols import ObjectStore, finish_writes
from include.statistics_export.rows import shops_recorded_hashes, write_shops_rows

NaturalKey = tuple[str, str, str]


@dataclass(frozen=True)
class PublishedShop:
    """What one shop's publication did: its files as written, how many variants' files were stored already, its
    Parquet part (None unless the shop was exported whole), and what its image copies did."""

    rendered: RenderedShop
    unchanged: int
    parquet: ParquetPart | None
    images: SettledImages


def publish(
    conn: Any,
    store: ObjectStore,
    shops: Sequence[RenderedShop],
    *,
    pool: ThreadPoolExecutor,
    writer: DayWriter | None,
    clock: PhaseClock,
) -> list[PublishedShop]:
    """Write what the shops' files changed, settle their image copies meanwhile, then their Parquet parts and
    their rows; return each shop's publication."""
    day = date.fromisoformat(shops[0].shop.part.plan.date)
    with clock.phase("rows"):
        known = shops_recorded_hashes(conn, day, list(_natural_keys(shops)))
        conn.commit()
    changed, unchanged = _diff(shops, known)
    with day_fence(conn, writer):
        with clock.phase("uploads"):
            written, uploads = start_uploads(store, changed)
        # The image copies were in flight while the files uploaded, the files showing each new image's R2 copy as
        # it will be. A variant of an image that could not be copied is rendered again without it and written
        # over, before any row: a committed row has the files as they are behind it.
        with clock.phase("images"):
            settled = settle_images(shops, uploads)
            final = [without_failed_images(shop, images) for shop, images in zip(shops, settled)]
        with clock.phase("uploads"):
            rewritten, rewrites = start_uploads(store, [again for _, corrected in final for again in corrected])
            finish_writes([uploads, rewrites])
        written = _latest(written, rewritten)
        shops = [shop for shop, _ in final]
        # Each shop's Parquet part too, before any row: a committed row always has every file behind it.
        with clock.phase("parquet"):
            parquet = write_parquet_parts(store, shops, day, pool)
        with clock.phase("rows"):
            new_images = [
                (shop.shop.part.plan.shop_id, owner, backup)
                for shop, images in zip(shops, settled)
                for owner, backup in images.new_images
            ]
            write_rows(conn, shops, written, new_images, writer)
    return [
        PublishedShop(shop, unchanged[shop.shop.part.plan.shop_id], parquet.get(shop.shop.part.plan.shop_id), images)
        for shop, images in zip(shops, settled)
    ]


def settle_images(shops: Sequence[RenderedShop], uploads: Future[None]) -> list[SettledImages]:
    """Wait for every shop's image copies; a write that failed is raised once the files' uploads have ended too."""
    try:
        return [shop.shop.copies.settle() for shop in shops]
    except BaseException:
        wait([uploads])  # none left in flight behind the error
        raise


def _latest(
    written: list[tuple[VariantExport, WrittenFiles]], rewritten: list[tuple[VariantExport, WrittenFiles]]
) -> list[tuple[VariantExport, WrittenFiles]]:
    """Return the written files with those written over replaced (same variant, same keys, the final hash)."""
    if not rewritten:
        return written
    again = {_natural_key(export): (export, files) for export, files in rewritten}
    return [again.get(_natural_key(export), (export, files)) for export, files in written]


def _natural_key(export: VariantExport) -> NaturalKey:
    return export.shop_id, export.product.product_id, export.variant.variant_id


def _natural_keys(shops: Sequence[RenderedShop]) -> Iterator[NaturalKey]:
    for shop in shops:
        for export in shop.shop.exports:
            yield _natural_key(export)


def _diff(
    shops: Sequence[RenderedShop], known: dict[NaturalKey, str]
) -> tuple[list[tuple[VariantExport, RenderedFiles]], dict[str, int]]:
    """Return the files that differ from those recorded (to write), and how many variants of each shop are
    unchanged, in one pass: a packed unit holds up to hundreds of shops."""
    changed = []
    unchanged = {shop.shop.part.plan.shop_id: 0 for shop in shops}
    for shop in shops:
        for export, files in zip(shop.shop.exports, shop.files):
            if known.get(_natural_key(export)) == files.content_hash:
                unchanged[export.shop_id] += 1
            else:
                changed.append((export, files))
    return changed, unchanged


def start_uploads(
    store: ObjectStore, changed: list[tuple[VariantExport, RenderedFiles]]
) -> tuple[list[tuple[VariantExport, WrittenFiles]], Future[None]]:
    """Start writing each variant's CSV and JSON: every write handed to the store at once (it keeps its in-flight
    limit, and no thread waits on one); return each export with where its files go, and the writes' future."""
    written, objects = [], []
    for export, files in changed:
        ids = (export.shop_id, export.product.product_id, export.variant.variant_id, export.day)
        csv_key, json_key = export_key(*ids, "csv"), export_key(*ids, "json")
        objects += [(csv_key, files.csv, "text/csv; charset=utf-8"), (json_key, files.json, "application/json")]
        urls = store.object_url(csv_key), store.object_url(json_key)
        written.append((export, WrittenFiles(csv_key, json_key, *urls, files.content_hash)))
    return written, store.start_puts(objects)


def write_parquet_parts(
    store: ObjectStore, shops: Sequence[RenderedShop], day: date, pool: ThreadPoolExecutor
) -> dict[str, ParquetPart]:
    """Write the Parquet part of each shop exported whole; return the parts by shop."""
    # One part per shop: a packed unit's shops write theirs concurrently (each a LIST, and a PUT if it changed).
    writes = {
        plan.shop_id: pool.submit(
            write_parquet_part, store, shop.shop.exports, plan.shop_id, day, plan.index, plan.count
        )
        for shop in shops
        if (plan := shop.shop.part.plan).whole_shop
    }
    return {shop_id: write.result() for shop_id, write in writes.items()}


def write_rows(
    conn: Any,
    shops: Sequence[RenderedShop],
    written: Sequence[tuple[VariantExport, WrittenFiles]],
    new_images: Sequence[tuple[str, ImageOwner, ImageBackup]],
    writer: DayWriter | None,
) -> None:
    """Write every shop's rows in one transaction; raise BatchRowsError naming the batches when that fails
    (the day taken over by another run, or a shop redacted, is raised as it is)."""
    try:
        write_shops_rows(conn, written, new_images, writer)
    except (DayWrittenByAnotherRun, ShopRedacted):
        raise
    except Exception as exc:
        plans = [shop.shop.part.plan for shop in shops]
        where = ", ".join(f"Shop {p.shop_id} batch {p.index}/{p.count}" for p in plans)
        raise BatchRowsError(
            f"{where}: the files are in R2 but the rows were not written ({type(exc).__name__}: {exc}); "
            "a retry of the batch writes them"
        ) from exc
