"""Our export of one day for one shop, through the functions the DAG's tasks run (include/statistics_export/tasks.py).

Planning runs in this process, as its own Airflow task would; the batches run in a pool of
``batch_parallelism`` worker processes (2 by default: a 2-core Airflow worker running one task per
core), each batch with its own thread pool of ``concurrency`` threads, as ``export_product_batch`` does.
"""

from __future__ import annotations

import resource
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from bench.stack import SPAWN
from include.statistics_export.handoffs import BatchPlan, BatchResult, ShopRef
from include.statistics_export.settings import Settings

MB = 1024  # ru_maxrss is in KiB on Linux


@dataclass
class ExportRun:
    """What our export did and how long each phase took."""

    seconds: float
    mode: str
    batches: int
    variants: int
    files: int
    images: int
    plan_seconds: float
    bulk_wait_seconds: float
    batch_seconds: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    worker_start_rss_mb: float = 0.0
    first_batch: BatchPlan | None = None


def _worker_ready() -> float:
    """Import the export code in a fresh worker (as a warm Airflow worker has) and return its RSS in MB."""
    from include.statistics_export import tasks  # noqa: F401

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MB


def _run_batch(batch: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], float]:
    """Export one batch in a worker process; return its result and the worker's peak RSS so far in MB.

    The plan and the result cross the process boundary as the dicts an XCom carries, as in the DAG.
    """
    from include.statistics_export.tasks import export_product_batch

    result = export_product_batch(BatchPlan.from_xcom(batch), settings)
    return result.to_xcom(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MB


def run_export(
    shop: ShopRef,
    day: date,
    settings: Settings,
    *,
    poll_interval: float,
    pool: ProcessPoolExecutor,
) -> ExportRun:
    """Run start -> poll -> plan -> every batch, timing the whole as S."""
    from include.statistics_export import tasks

    started = time.monotonic()
    read = tasks.start_catalog_read(shop, settings)
    bulk_started = time.monotonic()
    while (ready := tasks.poll_catalog_read(read)) is None:
        # The sensor's poke interval: the bench's one deliberate wait.
        time.sleep(poll_interval)
    bulk_wait = time.monotonic() - bulk_started
    plan = tasks.plan_shop_batches(ready, day, settings)
    plan_seconds = time.monotonic() - started
    futures = [pool.submit(_run_batch, batch.to_xcom(), settings) for batch in plan.batches]
    results, peaks = [], []
    for future in as_completed(futures):
        result, peak = future.result()
        results.append(BatchResult.from_xcom(result))
        peaks.append(peak)
    seconds = time.monotonic() - started
    results.sort(key=lambda r: r.batch)
    return ExportRun(
        seconds=round(seconds, 2),
        mode=plan.mode,
        batches=len(plan.batches),
        variants=sum(r.variants for r in results),
        files=sum(r.files - r.files_unchanged for r in results),
        images=sum(r.images_backed_up for r in results),
        plan_seconds=round(plan_seconds, 2),
        bulk_wait_seconds=round(bulk_wait, 2) if ready.mode == "bulk" else 0.0,
        batch_seconds=[r.seconds for r in results],
        peak_rss_mb=round(max(peaks, default=0.0), 1),
        first_batch=plan.batches[0] if plan.batches else None,
    )


def batch_pool(batch_parallelism: int) -> tuple[ProcessPoolExecutor, float]:
    """Start the batch workers (fresh interpreters, the export code imported) and return the pool and their RSS."""
    pool = ProcessPoolExecutor(batch_parallelism, mp_context=SPAWN)
    ready = [pool.submit(_worker_ready) for _ in range(batch_parallelism)]
    return pool, round(max(f.result() for f in ready), 1)
