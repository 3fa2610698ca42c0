"""The catalog staged in the bucket for the batches of a shop read in bulk, and its cleanup.

A bulk-read catalog is written once, cut into batches, under keys.staged_batch_key: every worker can read
it, and the XComs carry only its keys. Each run stages under a prefix of its own (keys.run_staging_prefix),
so two runs of one day, or of several days at once, never share or delete each other's batches. A
successful run deletes its own staging; objects written over a week ago (runs that failed and were never
cleared) go with the next successful run, by their LastModified.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

from include.statistics_export.errors import StagedCatalogMissing
from include.statistics_export.keys import STAGING_ROOT, run_staging_prefix
from include.statistics_export.protocols import ObjectStore
from include.statistics_export.utc import now_ms

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
            f"Staged catalog {key} is gone (cleaned after a successful run, or over a week old)"
        ) from None
    with gzip.GzipFile(fileobj=body, mode="rb") as lines:
        for line in lines:
            yield json.loads(line)


def clean_staging(store: ObjectStore, day: date, run_id: str, *, now: datetime | None = None) -> int:
    """Delete this run's staging of ``day``, and any object under the staging root last written over a week
    ago (runs that failed and were never cleared); return how many objects went.

    Nothing another run may still read is deleted: a run's staging is its own, and what is "old" is judged
    by when it was written, never by the day it holds (a backfill stages days long past).
    """
    cutoff = (now or now_ms()) - timedelta(days=KEEP_FAILED_RUNS_DAYS)
    own = run_staging_prefix(day, run_id)
    doomed = list(store.keys_under(own))
    stale = [key for key, modified in store.modified_under(STAGING_ROOT).items() if modified < cutoff]
    doomed += [key for key in stale if not key.startswith(own)]
    store.delete_keys(doomed)
    log.info("Staging: %d object(s) deleted (%s, and %d written before %s)", len(doomed), own, len(stale), cutoff)
    return len(doomed)
