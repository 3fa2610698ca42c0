"""The catalog staged in the bucket for the batches of a shop read in bulk, and its cleanup.

A bulk-read catalog is written once, cut into batches, under keys.staged_batch_key: every worker can read
it, and the XComs carry only its keys. A successful run deletes its day's staging; staging older than a
week (runs that failed and were never cleared) goes with the next successful run.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import Any

from include.statistics_export.errors import StagedCatalogMissing
from include.statistics_export.keys import STAGING_ROOT, staged_day, staging_prefix
from include.statistics_export.protocols import ObjectStore
from include.statistics_export.utc import today as utc_today

log = logging.getLogger(__name__)

KEEP_FAILED_RUNS_DAYS = 7


def stage_batch(store: ObjectStore, key: str, products: Iterable[dict[str, Any]]) -> None:
    """Write one batch's raw products as gzipped JSON lines."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=5, mtime=0) as out:
        for product in products:
            out.write(json.dumps(product, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
    store.put_object(key, buffer.getvalue(), "application/gzip")


def read_staged_batch(store: ObjectStore, key: str) -> Iterator[dict[str, Any]]:
    """Yield the raw products of one staged batch, streaming the object."""
    try:
        body = store.open_object(key)
    except FileNotFoundError:
        raise StagedCatalogMissing(
            f"Staged catalog {key} is gone (cleaned after a successful run?): clear the shop's catalog tasks too"
        ) from None
    with gzip.GzipFile(fileobj=body, mode="rb") as lines:
        for line in lines:
            yield json.loads(line)


def clean_staging(store: ObjectStore, day: date, *, today: date | None = None) -> int:
    """Delete the day's staged catalogs and any staging older than a week; return how many objects went."""
    cutoff = (today or utc_today()) - timedelta(days=KEEP_FAILED_RUNS_DAYS)
    prefixes = [staging_prefix(day)]
    for prefix in store.prefixes_under(STAGING_ROOT):
        stamped = staged_day(prefix)
        if stamped is not None and stamped < cutoff:
            prefixes.append(prefix)
    deleted = 0
    for prefix in prefixes:
        keys = list(store.keys_under(prefix))
        if keys:
            store.delete_keys(keys)
            deleted += len(keys)
    log.info("Staging: %d object(s) deleted under %s", deleted, ", ".join(prefixes))
    return deleted
