"""The pipeline's stages as plain functions: no PostgreSQL, no S3, no Shopify (the integration tests run them
together against the real parts)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from include.statistics_export.catalog import ImageBackup, image_owners, parse_product
from include.statistics_export.errors import ImageDownloadError, ImageURLRefused, RevenueOverflow
from include.statistics_export.handoffs import BatchPlan, ShopRef
from include.statistics_export.metrics import VariantMetrics
from include.statistics_export.pipeline.enrich import (
    EnrichedShop,
    ImageCopies,
    SettledImages,
    check_revenue_fits,
    joined,
    start_image_backups,
)
from include.statistics_export.pipeline.publish import PublishedShop, _diff, start_uploads
from include.statistics_export.pipeline.read import ShopPart, ShopTooLargeForUnit, fetch_products, read_packed_shop
from include.statistics_export.pipeline.render import render, without_failed_images
from include.statistics_export.pipeline.run import result_of

T = TypeVar("T")

DAY = date(2026, 12, 1)
SHOP = ShopRef("shop-1", "one.myshopify.com")


def raw_product(pid: int, variants: int = 2, created: str = "2026-01-01T10:00:00Z", images: int = 1) -> dict:
    media = [
        {
            "id": f"gid://shopify/MediaImage/{pid}0{n}",
            "mediaContentType": "IMAGE",
            "image": {"url": f"https://cdn/{pid}/{n}.jpg"},
        }
        for n in range(1, images + 1)
    ]
    return {
        "id": f"gid://shopify/Product/{pid}",
        "legacyResourceId": str(pid),
        "title": f"Product {pid}",
        "createdAt": created,
        "media": media,
        "variants": [
            {
                "id": f"gid://shopify/ProductVariant/{pid}00{n}",
                "legacyResourceId": f"{pid}00{n}",
                "title": f"V{n}",
                "media": [],
            }
            for n in range(1, variants + 1)
        ],
    }


@dataclass
class Page:
    currency: str | None
    products_count: int
    products: list[dict[str, Any]]


@dataclass
class PagedCatalog:
    """A shop's catalog held in memory, answering as the Shopify hook does."""

    pages: list[Page]
    cost_charged: float = 12.0
    pages_read: int = 0

    def shop_catalog_pages(self):
        for page in self.pages:
            self.pages_read += 1
            yield page

    def iter_product_summaries(self):
        return []

    def iter_products(self, product_gids):
        known = {raw["id"]: raw for page in self.pages for raw in page.products}
        return [known.get(gid) for gid in product_gids]


@dataclass
class MemoryStore:
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        self.objects[key] = (body, content_type)

    def start_puts(self, objects: list[tuple[str, bytes, str]]) -> Future[None]:
        for key, body, content_type in objects:
            self.put_object(key, body, content_type)
        written: Future[None] = Future()
        written.set_result(None)
        return written

    async def put_object_async(self, key: str, body: bytes, content_type: str) -> None:
        self.put_object(key, body, content_type)

    def object_url(self, key: str) -> str:
        return f"https://r2.test/{key}"


@dataclass
class Images:
    """An image source: every URL answers its bytes, but those listed as refused."""

    refused: set[str] = field(default_factory=set)

    def start_fetch(self, url: str) -> Future[tuple[bytes, str]]:
        fetched: Future[tuple[bytes, str]] = Future()
        if url in self.refused:
            fetched.set_exception(ImageURLRefused(f"image URL {url} refused: not an allowed image origin"))
        else:
            fetched.set_result((b"\xff\xd8\xff" + url.encode(), "image/jpeg"))
        return fetched

    def start_copy(self, url: str, keep: Callable[[bytes, str], Awaitable[T]]) -> Future[T]:
        copied: Future[T] = Future()
        try:
            data, content_type = self.start_fetch(url).result()
            copied.set_result(asyncio.run(_awaited(keep(data, content_type))))
        except Exception as exc:  # noqa: BLE001 - the future carries it, as the hook's does
            copied.set_exception(exc)
        return copied


async def _awaited(pending: Awaitable[T]) -> T:
    return await pending


def plan(variants: int = 0, currency: str | None = "EUR") -> BatchPlan:
    return BatchPlan(SHOP.shop_id, SHOP.shop_domain, DAY.isoformat(), 1, 1, [], currency, variants)


# -- read ------------------------------------------------------------------------------------------------


def test_a_packed_shop_is_read_whole_with_the_products_that_existed_on_the_day():
    catalog = PagedCatalog(
        [
            Page("EUR", 3, [raw_product(1), raw_product(2, created="2026-12-02T00:00:00Z")]),
            Page("EUR", 3, [raw_product(3, 1)]),
        ]
    )
    part = read_packed_shop(catalog, SHOP, DAY, bulk_threshold=150)
    # Product 2 was created after the day ended: not exported for it.
    assert [p.product_id for p in part.products] == ["1", "3"]
    assert (part.plan.variants, part.plan.currency, part.graphql_cost) == (3, "EUR", 12.0)
    assert part.plan.whole_shop and (part.plan.index, part.plan.count) == (1, 1)


def test_a_packed_shop_found_large_on_its_first_page_leaves_before_the_rest_is_read():
    catalog = PagedCatalog([Page("EUR", 150, [raw_product(1)]), Page("EUR", 150, [raw_product(2)])])
    with pytest.raises(ShopTooLargeForUnit, match="one.myshopify.com: 150 products"):
        read_packed_shop(catalog, SHOP, DAY, bulk_threshold=150)
    assert catalog.pages_read == 1


def test_products_gone_from_shopify_are_named_not_exported():
    catalog = PagedCatalog([Page("EUR", 1, [raw_product(1)])])
    products, missing = fetch_products(catalog, ["1", "9"], DAY)
    assert [p.product_id for p in products] == ["1"] and missing == ["9"]


# -- enrich ----------------------------------------------------------------------------------------------


def test_a_revenue_the_rows_cannot_hold_fails_its_shop_naming_product_and_variant():
    part = ShopPart(plan(), [parse_product(raw_product(1))])
    metrics = {(SHOP.shop_id, "1001"): VariantMetrics(1, 1, 1, Decimal("10000000000.00"))}
    with pytest.raises(RevenueOverflow) as overflow:
        check_revenue_fits([part], metrics)
    assert list(overflow.value.by_shop) == [SHOP.shop_id]
    assert "product 1 variant 1001: 10000000000.00 EUR" in overflow.value.by_shop[SHOP.shop_id]
    check_revenue_fits([part], {(SHOP.shop_id, "1001"): VariantMetrics(1, 1, 1, Decimal("9999999999.99"))})


def test_images_are_copied_once_and_a_refused_one_keeps_its_shopify_url_only():
    products = [parse_product(raw_product(1, images=2)), parse_product(raw_product(2))]
    owners = image_owners(products)
    kept = ImageBackup("gid://shopify/MediaImage/201", "https://old-url", "old-key", "https://r2.test/old-key")
    store = MemoryStore()
    backups, copies = start_image_backups(
        SHOP.shop_id, owners, {kept.media_gid: kept}, Images({"https://cdn/1/2.jpg"}), store
    )
    settled = copies.settle()
    # The kept backup shows today's Shopify URL and keeps its R2 copy; one image copied; one refused.
    assert backups[kept.media_gid] == ImageBackup(kept.media_gid, "https://cdn/2/1.jpg", "old-key", kept.r2_url)
    assert [owner.image.media_gid for owner, _ in settled.new_images] == ["gid://shopify/MediaImage/101"]
    assert len(store.objects) == 1 and next(iter(store.objects.values()))[1] == "image/jpeg"
    # Before the copies end, every new image shows its R2 copy as it will be; the refused one, once settled, none.
    new_key = settled.new_images[0][1].r2_key
    assert new_key in store.objects and backups["gid://shopify/MediaImage/101"] == settled.new_images[0][1]
    assert backups["gid://shopify/MediaImage/102"].r2_key is not None
    assert settled.failed == {
        "gid://shopify/MediaImage/102": ImageBackup("gid://shopify/MediaImage/102", "https://cdn/1/2.jpg")
    }
    assert settled.failures == [
        "shop shop-1 product 1 image gid://shopify/MediaImage/102: image URL https://cdn/1/2.jpg refused: "
        "not an allowed image origin"
    ]
    assert issubclass(ImageURLRefused, ImageDownloadError)


def test_a_variant_of_an_image_not_copied_is_rendered_again_without_its_r2_copy():
    product = parse_product(raw_product(1, variants=2, images=2))
    part = ShopPart(plan(2), [product])
    backups, copies = start_image_backups(
        SHOP.shop_id, image_owners([product]), {}, Images({"https://cdn/1/2.jpg"}), MemoryStore()
    )
    (first,) = render([joined(part, backups, 0, copies, {}, DAY)])
    settled = copies.settle()
    final, again = without_failed_images(first, settled)
    # Both variants show both product images: both are rendered again, the refused image without its R2 copy.
    assert [export.variant.variant_id for export, _ in again] == ["1001", "1002"]
    images = final.shop.exports[0].images
    assert [image.r2_key is None for image in images] == [False, True]
    assert final.files[0] != first.files[0] and final.files[0] == again[0][1]
    assert b"https://cdn/1/2.jpg" in final.files[0].json and b"/media/102" not in final.files[0].csv


def test_a_variant_without_events_gets_zero_metrics_and_its_products_images():
    product = parse_product(raw_product(1))
    image = product.images[0]
    backup = ImageBackup(image.media_gid, image.url, "k", "https://r2.test/k")
    shop = joined(
        ShopPart(plan(2), [product]),
        {image.media_gid: backup},
        1,
        ImageCopies(SHOP.shop_id, []),
        {(SHOP.shop_id, "1001"): VariantMetrics(10, 2, 1, Decimal("5.00"))},
        DAY,
    )
    first, second = shop.exports
    assert (first.metrics.impressions, second.metrics.impressions) == (10, 0)
    assert first.images == second.images == (backup,)
    assert first.currency == "EUR" and shop.images_reused == 1


# -- render and publish ----------------------------------------------------------------------------------


def enriched_shop(pid: int = 1, variants: int = 2) -> EnrichedShop:
    product = parse_product(raw_product(pid, variants, images=0))
    return joined(ShopPart(plan(variants), [product]), {}, 0, ImageCopies(SHOP.shop_id, []), {}, DAY)


def test_rendering_keeps_the_variants_order_and_a_hash_per_variant():
    (shop,) = render([enriched_shop(variants=3)])
    assert [f.csv.decode().splitlines()[1].split(",")[3] for f in shop.files] == ["1001", "1002", "1003"]
    assert len({f.content_hash for f in shop.files}) == 3


def test_only_files_whose_hash_changed_are_written_again():
    (shop,) = render([enriched_shop()])
    first, second = shop.shop.exports
    known = {(SHOP.shop_id, "1", first.variant.variant_id): shop.files[0].content_hash,
             (SHOP.shop_id, "1", second.variant.variant_id): "stale"}  # fmt: skip
    changed, unchanged = _diff([shop], known)
    assert [export.variant.variant_id for export, _ in changed] == [second.variant.variant_id]
    assert unchanged == {SHOP.shop_id: 1}
    store = MemoryStore()
    ((export, written),), uploads = start_uploads(store, changed)
    uploads.result()
    assert sorted(store.objects) == sorted([written.csv_key, written.json_key])
    assert written.csv_key.endswith("/1002/20261201.csv") and written.content_hash == shop.files[1].content_hash


def test_a_shops_result_counts_what_its_publication_did():
    (shop,) = render([enriched_shop(variants=2)])
    images = SettledImages([], ["shop shop-1 product 1 image gid://shopify/MediaImage/101: HTTP 404"], {})
    result = result_of(PublishedShop(shop, 1, None, images), 0.5, {"uploads": [0.1, 0.05]})
    assert (result.products, result.variants, result.files, result.files_unchanged) == (1, 2, 4, 2)
    assert result.parquet_key is None and not result.parquet_written and result.phases == {"uploads": [0.1, 0.05]}
    assert (result.images_backed_up, result.images_failed, result.image_failures) == (0, 1, images.failures)
