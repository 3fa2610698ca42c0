"""Product image backups: each image copied to R2 once per shop, and the rules for its key."""

from __future__ import annotations

import logging
import mimetypes
import posixpath
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from include.statistics_export.catalog import ImageRef, Product
from include.statistics_export.ids import media_numeric_id, safe_key_part

log = logging.getLogger(__name__)

DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024


class ImageDownloadError(Exception):
    """An image could not be fetched; the export goes on and the next run tries again."""


class _TransientDownloadError(ImageDownloadError):
    pass


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


def image_extension(url: str, content_type: str | None = None) -> str:
    """Return the file extension of an image URL's path (``jpeg`` becomes ``jpg``)."""
    ext = posixpath.splitext(urlparse(url).path)[1].lstrip(".").lower()
    if not ext and content_type:
        ext = (mimetypes.guess_extension(content_type.split(";")[0].strip()) or "").lstrip(".")
    ext = {"jpeg": "jpg", "jpe": "jpg"}.get(ext, ext)
    return ext if ext.isalnum() and ext else "bin"


def image_key(shop_id: str, product_id: str, media_gid: str, url: str) -> str:
    """Return ``{shopId}/products/{productId}/media/{mediaId}.{ext}`` for an image."""
    return (
        f"{safe_key_part(shop_id, 'shop id')}/products/{safe_key_part(product_id, 'product id')}"
        f"/media/{media_numeric_id(media_gid)}.{image_extension(url)}"
    )


def image_owners(products: Iterable[Product]) -> dict[str, ImageOwner]:
    """Map every image the batch exports to its owner: the first variant using it as its own
    media, else the product."""
    owners: dict[str, ImageOwner] = {}
    for product in products:
        for variant in product.variants:
            for image in variant.images:
                owners.setdefault(image.media_gid, ImageOwner(image, product.product_id, variant.variant_id))
        for image in product.images:
            owners.setdefault(image.media_gid, ImageOwner(image, product.product_id, None))
    return owners


_EXISTING = """
SELECT "mediaId", "shopifyUrl", "r2Key", "r2Url", "backedUpAt"
FROM "ProductImageBackup"
WHERE shop = %(shop_id)s AND "mediaId" = ANY(%(media_ids)s::text[]) AND "r2Key" IS NOT NULL
"""


def existing_backups(conn: Any, shop_id: str, media_gids: Iterable[str]) -> dict[str, ImageBackup]:
    """Return the images of this list already backed up for the shop, in one query."""
    ids = list(media_gids)
    if not ids:
        return {}
    with conn.cursor() as cur:
        cur.execute(_EXISTING, {"shop_id": shop_id, "media_ids": ids})
        return {
            row[0]: ImageBackup(row[0], row[1], r2_key=row[2], r2_url=row[3], backed_up_at=_utc(row[4]))
            for row in cur.fetchall()
        }


def download_image(session: requests.Session, url: str, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> tuple[bytes, str]:
    """Fetch an image (retrying 5xx and connection errors) and return its bytes and content type."""
    retrying = Retrying(
        retry=retry_if_exception_type((_TransientDownloadError, requests.ConnectionError, requests.Timeout)),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.5, max=5),
        reraise=True,
    )
    try:
        return retrying(_download_once, session, url, max_bytes)
    except requests.RequestException as exc:
        raise ImageDownloadError(f"{type(exc).__name__} fetching {url}") from None


def _download_once(session: requests.Session, url: str, max_bytes: int) -> tuple[bytes, str]:
    with session.get(url, timeout=(5, 30), stream=True) as response:
        if response.status_code >= 500 or response.status_code == 429:
            raise _TransientDownloadError(f"HTTP {response.status_code} fetching {url}")
        if response.status_code != 200:
            raise ImageDownloadError(f"HTTP {response.status_code} fetching {url}")
        content_type = response.headers.get("Content-Type", "application/octet-stream")
        if not content_type.startswith("image/"):
            raise ImageDownloadError(f"{url} answered {content_type}, not an image")
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise ImageDownloadError(f"{url} is larger than the {max_bytes}-byte cap")
            chunks.append(chunk)
        return b"".join(chunks), content_type


def backup_images(
    shop_id: str,
    owners: dict[str, ImageOwner],
    already: dict[str, ImageBackup],
    fetch: Callable[[str], tuple[bytes, str]],
    put: Callable[[str, bytes, str], None],
    object_url: Callable[[str], str],
    pool: ThreadPoolExecutor,
) -> tuple[dict[str, ImageBackup], list[tuple[ImageOwner, ImageBackup]], list[str]]:
    """Copy the images not yet in R2, concurrently on ``pool``.

    Returns every image's backup (old or new), the new backups to record, and one message per
    image that could not be copied (those keep null R2 fields and are tried again next run).
    """
    # The Shopify URL shown is today's; the R2 copy is the one made when the image was first seen.
    backups = {
        gid: replace(already[gid], shopify_url=owner.image.url) for gid, owner in owners.items() if gid in already
    }
    todo = [owner for gid, owner in owners.items() if gid not in already]

    def copy(owner: ImageOwner) -> ImageBackup:
        data, content_type = fetch(owner.image.url)
        key = image_key(shop_id, owner.product_id, owner.image.media_gid, owner.image.url)
        put(key, data, content_type)
        return ImageBackup(owner.image.media_gid, owner.image.url, key, object_url(key), _now_ms())

    new, failures = [], []
    for owner, future in [(owner, pool.submit(copy, owner)) for owner in todo]:
        try:
            backup = future.result()
        except ImageDownloadError as exc:
            failures.append(f"product {owner.product_id} image {owner.image.media_gid}: {exc}")
            backup = ImageBackup(owner.image.media_gid, owner.image.url)
        else:
            new.append((owner, backup))
        backups[owner.image.media_gid] = backup
    return backups, new, failures


def _now_ms() -> datetime:
    # TIMESTAMP(3) keeps milliseconds: a rerun reading the row back must render the same instant.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
