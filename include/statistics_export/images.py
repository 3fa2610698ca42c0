"""Product image backups: each image copied to R2 once per shop, and the rules for its key.

A download that fails (HTTP 4xx, 5xx or 429 after retries, a timeout, an HTML page or any body that is
not an image, a file over the size cap) never fails the export: the image is listed with its Shopify URL
and empty R2 fields, reported in the batch's ``image_failures``, and tried again on the next run, since
no backup row is recorded for it. 5xx, 429, connection errors and timeouts are also retried within the
run; a 4xx, a page that is not an image or an oversized file is the same answer seconds later, so it
is not. A page instead of an image (a CDN's error page) and an oversized file (the merchant may replace
it, the operator may raise the cap) are retried next run too: the cost is bounded, as an oversized
file is refused from its Content-Length, or at the cap when it has none, never read whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from include.statistics_export import settings
from include.statistics_export.catalog import ImageRef, Product
from include.statistics_export.errors import ExportError
from include.statistics_export.keys import image_key
from include.statistics_export.utc import as_utc, now_ms

log = logging.getLogger(__name__)

DOWNLOAD_ATTEMPTS = 3
_DEFAULTS = settings.Settings()
ImageFetch = Callable[[str], tuple[bytes, str]]

# The leading bytes of the formats a product image can be in (ISO BMFF "ftyp" at offset 4: AVIF, HEIC).
_IMAGE_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"BM",
    b"\x00\x00\x01\x00",  # ICO
    b"\xff\x0a",  # JPEG XL codestream
    b"\x00\x00\x00\x0cJXL ",
)


class ImageDownloadError(ExportError):
    """An image could not be fetched; the export goes on and the next run tries again."""


class _TransientDownloadError(ImageDownloadError):
    pass


def is_image(body: bytes, content_type: str) -> bool:
    """Return whether a body is an image file by its leading bytes, whatever its Content-Type says."""
    if body.startswith(_IMAGE_SIGNATURES):
        return True
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return True
    if body[4:8] == b"ftyp":
        return True
    # SVG is text: only believe it when the server says so and the document is an <svg>.
    return content_type.split(";")[0].strip().lower() == "image/svg+xml" and b"<svg" in body[:4096].lower()


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


# Joined on the natural key (shop, "mediaId"): one probe of the unique index per image, any number of shops.
_EXISTING = """
SELECT b.shop, b."mediaId", b."shopifyUrl", b."r2Key", b."r2Url", b."backedUpAt"
FROM unnest(%(shops)s::text[], %(media_ids)s::text[]) AS k(shop, "mediaId")
JOIN "ProductImageBackup" b ON b.shop = k.shop AND b."mediaId" = k."mediaId"
WHERE b."r2Key" IS NOT NULL
"""


def shops_existing_backups(conn: Any, images: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ImageBackup]:
    """Return which of these (shop, media GID) images are already backed up, in one query."""
    pairs = list(images)
    if not pairs:
        return {}
    with conn.cursor() as cur:
        cur.execute(_EXISTING, {"shops": [p[0] for p in pairs], "media_ids": [p[1] for p in pairs]})
        return {
            (row[0], row[1]): ImageBackup(
                row[1], row[2], r2_key=row[3], r2_url=row[4], backed_up_at=as_utc(row[5]) if row[5] else None
            )
            for row in cur.fetchall()
        }


def existing_backups(conn: Any, shop_id: str, media_gids: Iterable[str]) -> dict[str, ImageBackup]:
    """Return the images of this list already backed up for one shop, in one query."""
    found = shops_existing_backups(conn, ((shop_id, gid) for gid in media_gids))
    return {gid: backup for (_, gid), backup in found.items()}


def download_image(
    session: requests.Session,
    url: str,
    *,
    max_bytes: int = _DEFAULTS.image_max_bytes,
    timeout: float = _DEFAULTS.image_timeout,
) -> tuple[bytes, str]:
    """Fetch an image (retrying 5xx, 429, connection errors and timeouts) and return its bytes and content type.

    ``max_bytes`` caps the body; ``timeout`` bounds each attempt as a whole (settings IMAGE_MAX_BYTES and
    IMAGE_TIMEOUT).
    """
    retrying = Retrying(
        retry=retry_if_exception_type((_TransientDownloadError, requests.ConnectionError, requests.Timeout)),
        stop=stop_after_attempt(DOWNLOAD_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=5),
        reraise=True,
    )
    try:
        return retrying(_download_once, session, url, max_bytes, timeout)
    except requests.Timeout:
        raise ImageDownloadError(
            f"timed out after {timeout:g} s ({DOWNLOAD_ATTEMPTS} attempts) fetching {url}"
        ) from None
    except requests.RequestException as exc:
        raise ImageDownloadError(f"{type(exc).__name__} ({DOWNLOAD_ATTEMPTS} attempts) fetching {url}") from None


def _download_once(session: requests.Session, url: str, max_bytes: int, timeout: float) -> tuple[bytes, str]:
    deadline = time.monotonic() + timeout
    # requests' read timeout bounds each wait for bytes; the deadline bounds a body that trickles in.
    with session.get(url, timeout=(timeout, timeout), stream=True) as response:
        if response.status_code >= 500 or response.status_code == 429:
            raise _TransientDownloadError(f"HTTP {response.status_code} fetching {url}")
        if response.status_code != 200:
            raise ImageDownloadError(f"HTTP {response.status_code} fetching {url}")
        content_type = response.headers.get("Content-Type", "application/octet-stream")
        if not content_type.lower().startswith("image/"):
            raise ImageDownloadError(f"the CDN answered {content_type.split(';')[0]}, not an image, for {url}")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ImageDownloadError(
                f"{url} is {declared} bytes, over the {max_bytes}-byte cap ({settings.IMAGE_MAX_BYTES.env})"
            )
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise ImageDownloadError(f"{url} is over the {max_bytes}-byte cap ({settings.IMAGE_MAX_BYTES.env})")
            if time.monotonic() > deadline:
                raise requests.Timeout(f"the body of {url} took over {timeout:g} s")
            chunks.append(chunk)
        body = b"".join(chunks)
        if not is_image(body, content_type):
            raise ImageDownloadError(f"the body of {url} is not an image file (declared {content_type.split(';')[0]})")
        return body, content_type


BackupOutcome = tuple[dict[str, ImageBackup], list[tuple[ImageOwner, ImageBackup]], list[str]]


def start_image_backups(
    shop_id: str,
    owners: dict[str, ImageOwner],
    already: dict[str, ImageBackup],
    fetch: ImageFetch,
    put: Callable[[str, bytes, str], None],
    object_url: Callable[[str], str],
    pool: ThreadPoolExecutor,
) -> Callable[[], BackupOutcome]:
    """Start copying the images not yet in R2 on ``pool``; return what waits for them (so several shops'
    copies run at once).

    Waiting returns every image's backup (old or new), the new backups to record, and one message per
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
        return ImageBackup(owner.image.media_gid, owner.image.url, key, object_url(key), now_ms())

    started = [(owner, pool.submit(copy, owner)) for owner in todo]

    def collect() -> BackupOutcome:
        new, failures = [], []
        for owner, future in started:
            try:
                backup = future.result()
            except ImageDownloadError as exc:
                failures.append(f"shop {shop_id} product {owner.product_id} image {owner.image.media_gid}: {exc}")
                backup = ImageBackup(owner.image.media_gid, owner.image.url)
            else:
                new.append((owner, backup))
            backups[owner.image.media_gid] = backup
        return backups, new, failures

    return collect
