"""The catalog staged in the bucket for the batches of a shop read in bulk, and its cleanup.

A bulk-read catalog is written once, cut into batches, under
``statistic-exports/_staging/{YYYYMMDD}/{shopId}/batch-{n}.jsonl.gz``: every worker can read it, and the
XComs carry only its keys. A successful run deletes its day's staging; staging older than a week
(runs that failed and were never cleared) goes with the next successful run.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

from include.statistics_export.ids import safe_key_part

log = logging.getLogger(__name__)

STAGING_ROOT = "statistic-exports/_staging/"
KEEP_FAILED_RUNS_DAYS = 7


def staging_prefix(day: date) -> str:
    """Return the prefix under which a day's catalogs are staged."""
    return f"{STAGING_ROOT}{day:%Y%m%d}/"


def staged_batch_key(shop_id: str, day: date, index: int) -> str:
    """Return the key of one staged batch of one shop's catalog."""
    return f"{staging_prefix(day)}{safe_key_part(shop_id, 'shop id')}/batch-{index:05d}.jsonl.gz"


def stage_batch(store: Any, key: str, products: Iterable[dict[str, Any]]) -> None:
    """Write one batch's raw products as gzipped JSON lines."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=5, mtime=0) as out:
        for product in products:
            out.write(json.dumps(product, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
    store.put_object(key, buffer.getvalue(), "application/gzip")


def read_staged_batch(store: Any, key: str) -> Iterator[dict[str, Any]]:
    """Yield the raw products of one staged batch, streaming the object."""
    try:
        body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"]
    except store.client.exceptions.NoSuchKey:
        raise FileNotFoundError(
            f"Staged catalog {key} is gone (cleaned after a successful run?): clear the shop's catalog tasks too"
        ) from None
    with gzip.GzipFile(fileobj=body, mode="rb") as lines:
        for line in lines:
            yield json.loads(line)


def clean_staging(store: Any, day: date, *, today: date | None = None) -> int:
    """Delete the day's staged catalogs and any staging older than a week; return how many objects went."""
    cutoff = (today or datetime.now(timezone.utc).date()) - timedelta(days=KEEP_FAILED_RUNS_DAYS)
    prefixes = [staging_prefix(day)]
    for prefix in store.list_prefixes(bucket_name=store.bucket, prefix=STAGING_ROOT, delimiter="/") or []:
        stamp = prefix[len(STAGING_ROOT) :].strip("/")
        if stamp.isdigit() and len(stamp) == 8 and datetime.strptime(stamp, "%Y%m%d").date() < cutoff:
            prefixes.append(prefix)
    deleted = 0
    for prefix in prefixes:
        keys = store.list_keys(bucket_name=store.bucket, prefix=prefix) or []
        if keys:
            store.delete_objects(store.bucket, keys)
            deleted += len(keys)
    log.info("Staging: %d object(s) deleted under %s", deleted, ", ".join(prefixes))
    return deleted
