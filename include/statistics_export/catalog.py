"""The catalog as the export sees it: products, variants, their images and the images' backups, and batches of
products."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from include.statistics_export.ids import gid_number, numeric_id
from include.statistics_export.utc import naive_utc, parse_shopify_datetime

T = TypeVar("T")


@dataclass(frozen=True)
class ImageRef:
    """A MediaImage of Shopify's with a URL (images still processing have none and are left out)."""

    media_gid: str
    url: str


@dataclass(frozen=True)
class ImageBackup:
    """Where one image lives: always its Shopify URL, and its R2 copy when the backup succeeded."""

    media_gid: str
    shopify_url: str
    r2_key: str | None = None
    r2_url: str | None = None
    backed_up_at: datetime | None = None


@dataclass(frozen=True)
class ImageOwner:
    """The product an image belongs to, and the variant when it is that variant's own media."""

    image: ImageRef
    product_id: str
    variant_id: str | None


@dataclass
class Variant:
    """One variant with its own images (possibly none)."""

    gid: str
    variant_id: str
    title: str = ""
    sku: str | None = None
    price: str | None = None
    images: list[ImageRef] = field(default_factory=list)


@dataclass
class Product:
    """One product with all its variants and its own images."""

    gid: str
    product_id: str
    title: str = ""
    handle: str = ""
    status: str = ""
    created_at: datetime | None = None
    images: list[ImageRef] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)

    def images_of(self, variant: Variant) -> list[ImageRef]:
        """Return a variant's images: its own media if it has any, otherwise the product's."""
        return variant.images if variant.images else self.images


@dataclass(frozen=True)
class ProductSummary:
    """What planning needs of a product: its id, when it was created, how many variants it has."""

    product_id: str
    created_at: datetime
    variants: int


def image_refs(media_nodes: Iterable[dict[str, Any]]) -> list[ImageRef]:
    """Keep the MediaImages that have an image URL, in ascending media id (videos, 3D models and
    images still processing are skipped)."""
    refs = []
    for node in media_nodes:
        image = node.get("image") if node.get("mediaContentType") == "IMAGE" else None
        if image and image.get("url"):
            refs.append(ImageRef(media_gid=node["id"], url=image["url"]))
    # A bulk result does not keep Shopify's media order; one order for both reading paths keeps the
    # files of a shop identical whichever path read its catalog.
    return sorted(refs, key=lambda ref: gid_number(ref.media_gid))


def parse_product(raw: dict[str, Any]) -> Product:
    """Build a Product from the hook's flattened product dict."""
    return Product(
        gid=raw["id"],
        product_id=numeric_id(raw.get("legacyResourceId") or raw["id"], "Product"),
        title=raw.get("title") or "",
        handle=raw.get("handle") or "",
        status=raw.get("status") or "",
        created_at=created_at(raw),
        images=image_refs(raw.get("media", ())),
        variants=[
            Variant(
                gid=v["id"],
                variant_id=numeric_id(v.get("legacyResourceId") or v["id"], "ProductVariant"),
                title=v.get("title") or "",
                sku=v.get("sku"),
                price=v.get("price"),
                images=image_refs(v.get("media", ())),
            )
            for v in raw.get("variants", ())
        ],
    )


def parse_summary(raw: dict[str, Any]) -> ProductSummary:
    """Build a ProductSummary from one node of the product listing."""
    return ProductSummary(
        product_id=numeric_id(raw.get("legacyResourceId") or raw["id"], "Product"),
        created_at=parse_shopify_datetime(raw["createdAt"]),
        variants=int((raw.get("variantsCount") or {}).get("count") or 1),
    )


def created_at(raw: dict[str, Any]) -> datetime | None:
    """Return when a raw product (the hook's dict or a bulk line) was created, if Shopify said."""
    return parse_shopify_datetime(raw["createdAt"]) if raw.get("createdAt") else None


def existed_on(created: datetime | None, day_end: datetime) -> bool:
    """Tell whether a product created at ``created`` existed before the end of the exported day (naive UTC)."""
    return created is None or naive_utc(created) < day_end


def batched_by_variants(items: Iterable[T], variants_of: Callable[[T], int], batch_variants: int) -> Iterator[list[T]]:
    """Group items (products), in order, into batches of about ``batch_variants`` variants each.

    A product is never split: one with more variants than the target is a batch of its own.
    """
    if batch_variants < 1:
        raise ValueError(f"batch_variants must be at least 1, got {batch_variants}")
    batch: list[T] = []
    size = 0
    for item in items:
        variants = max(1, variants_of(item))
        if batch and size + variants > batch_variants:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += variants
    if batch:
        yield batch


def image_owners(products: Iterable[Product]) -> dict[str, ImageOwner]:
    """Map every image the products show to its owner: the first variant using it as its own media, else the
    product."""
    owners: dict[str, ImageOwner] = {}
    for product in products:
        for variant in product.variants:
            for image in variant.images:
                owners.setdefault(image.media_gid, ImageOwner(image, product.product_id, variant.variant_id))
        for image in product.images:
            owners.setdefault(image.media_gid, ImageOwner(image, product.product_id, None))
    return owners
