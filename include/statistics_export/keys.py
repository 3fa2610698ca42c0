"""Every object key the export writes in the bucket, under one root each.

- ``statistic-exports/{shopId}/{productId}/{variantId}/{YYYYMMDD}.{csv|json}``: one variant's day;
- ``{shopId}/products/{productId}/media/{mediaId}.{ext}``: one image, backed up once per shop;
- ``statistic-exports/_runs/{YYYYMMDD}.json``: the day's report;
- ``statistic-exports/_staging/{YYYYMMDD}/{runKey}/{shopId}/batch-{n}.jsonl.gz``: a bulk-read catalog's batches,
  under the staging run's own prefix;
- ``statistic-exports/_parquet/shop={shopId}/date={YYYY-MM-DD}/part-{n}-of-{count}.parquet``: the day's rows
  of one batch of a shop, under a Hive layout query engines read directly.

Ids enter keys only through :func:`safe_key_part`, so no id can climb out of its prefix.
"""

from __future__ import annotations

import hashlib
import mimetypes
import posixpath
import re
from datetime import date
from urllib.parse import urlparse

from include.statistics_export.errors import BadInputError
from include.statistics_export.ids import media_numeric_id

EXPORTS_ROOT = "statistic-exports/"
RUNS_PREFIX = f"{EXPORTS_ROOT}_runs/"
STAGING_ROOT = f"{EXPORTS_ROOT}_staging/"
# The Airflow Asset a fully exported day updates (downstream DAGs schedule on it). The bucket is the r2_default
# connection's, which the DAG does not read at parse time: it travels in each event's extra instead.
EXPORTS_ASSET_NAME = EXPORTS_ROOT.rstrip("/")
EXPORTS_ASSET_URI = f"r2://{EXPORTS_ASSET_NAME}/"
PARQUET_ROOT = f"{EXPORTS_ROOT}_parquet/"
_SAFE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def safe_key_part(value: str, what: str) -> str:
    """Return an id that is safe inside an object key (no '/', no '..'), or raise naming it."""
    text = str(value)
    if not _SAFE.fullmatch(text):
        raise BadInputError(f"{what} {value!r} cannot be used in an object key")
    return text


def export_key(shop_id: str, product_id: str, variant_id: str, day: date, extension: str) -> str:
    """Return the key of one variant's CSV or JSON file of ``day``."""
    return (
        f"{EXPORTS_ROOT}{safe_key_part(shop_id, 'shop id')}/{safe_key_part(product_id, 'product id')}/"
        f"{safe_key_part(variant_id, 'variant id')}/{day:%Y%m%d}.{extension}"
    )


def image_extension(url: str, content_type: str | None = None) -> str:
    """Return the file extension of an image URL's path (``jpeg`` becomes ``jpg``)."""
    ext = posixpath.splitext(urlparse(url).path)[1].lstrip(".").lower()
    if not ext and content_type:
        ext = (mimetypes.guess_extension(content_type.split(";")[0].strip()) or "").lstrip(".")
    ext = {"jpeg": "jpg", "jpe": "jpg"}.get(ext, ext)
    return ext if ext.isalnum() and ext else "bin"


def image_key(shop_id: str, product_id: str, media_gid: str, url: str) -> str:
    """Return the key of an image's backup."""
    return (
        f"{safe_key_part(shop_id, 'shop id')}/products/{safe_key_part(product_id, 'product id')}"
        f"/media/{media_numeric_id(media_gid)}.{image_extension(url)}"
    )


def report_key(day: date) -> str:
    """Return the key of a day's run report."""
    return f"{RUNS_PREFIX}{day:%Y%m%d}.json"


def parquet_partition(shop_id: str, day: date) -> str:
    """Return the Hive partition (prefix) of a shop's day of Parquet parts."""
    return f"{PARQUET_ROOT}shop={safe_key_part(shop_id, 'shop id')}/date={day:%Y-%m-%d}/"


def parquet_part_key(shop_id: str, day: date, index: int, count: int) -> str:
    """Return the key of batch ``index`` of ``count`` of a shop's day in Parquet."""
    return f"{parquet_partition(shop_id, day)}part-{index:05d}-of-{count:05d}.parquet"


def run_staging_prefix(day: date, run_id: str) -> str:
    """Return the prefix under which one run stages its day's catalogs: the run's own, which only it deletes.

    A run id (``scheduled__2026-11-21T00:00:00+00:00``, ``manual__...``, ``backfill__...``) is cut to the key's
    safe characters, and a digest of the whole id keeps two runs apart whatever their ids share.
    """
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", run_id).strip("-")[:80] or "run"
    digest = hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:12]
    return f"{STAGING_ROOT}{day:%Y%m%d}/{readable}-{digest}/"


def staged_batch_key(shop_id: str, day: date, run_id: str, index: int) -> str:
    """Return the key of one staged batch of one shop's catalog, under the staging run's own prefix."""
    return f"{run_staging_prefix(day, run_id)}{safe_key_part(shop_id, 'shop id')}/batch-{index:05d}.jsonl.gz"


def shop_export_prefix(shop_id: str) -> str:
    """Return the folder of every CSV and JSON file of a shop."""
    return f"{EXPORTS_ROOT}{safe_key_part(shop_id, 'shop id')}/"


def shop_images_prefix(shop_id: str) -> str:
    """Return the folder of every image backup of a shop."""
    return f"{safe_key_part(shop_id, 'shop id')}/products/"


def shop_parquet_prefix(shop_id: str) -> str:
    """Return the folder of every Parquet partition of a shop."""
    return f"{PARQUET_ROOT}shop={safe_key_part(shop_id, 'shop id')}/"


def is_staged_for_shop(key: str, shop_id: str) -> bool:
    """Tell whether a key under the staging root is one of a shop's staged batches
    (``_staging/{day}/{run}/{shopId}/...``), whichever day and run staged it."""
    parts = key[len(STAGING_ROOT) :].split("/") if key.startswith(STAGING_ROOT) else []
    return len(parts) >= 4 and parts[2] == safe_key_part(shop_id, "shop id")
