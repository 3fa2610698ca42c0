"""Our export of one day for one shop, through the functions the DAG's tasks run (include/statistics_export/tasks/).

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

from bench.stack import BENCH_RUN, SPAWN, bench_writer
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
    # As the batches report them: files written and files found stored already with the same bytes (CSV and
    # JSON each count), images copied and images found backed up already, Parquet parts (re)written.
    files: int
    files_unchanged: int
    images: int
    images_reused: int
    parquet_parts_written: int
    plan_seconds: float
    bulk_wait_seconds: float
    batch_seconds: list[float] = field(default_factory=list)
    worker_cpu_seconds: float = 0.0
    phases: dict[str, list[float]] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    # The workers' peak RSS after each tenth of the batches (in completion order): flat memory shows as a flat list.
    peak_rss_mb_by_tenth: list[float] = field(default_factory=list)
    worker_start_rss_mb: float = 0.0
    first_batch: BatchPlan | None = None


def peak_rss_mb() -> float:
    """Return this process's own peak RSS in MB: ``VmHWM`` of /proc/self/status where there is one.

    Not ``getrusage``'s ``ru_maxrss``: Linux carries it across exec, so a spawned worker starts with the peak
    of the fork it was exec'd from, i.e. the bench process's RSS at that moment (201.6 MB at 100,000 variants,
    the world being in memory), whatever the worker itself uses.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / MB  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MB


def _worker_ready() -> float:
    """Import the export code in a fresh worker (as a warm Airflow worker has) and return its peak RSS in MB."""
    from include.statistics_export import tasks  # noqa: F401

    return peak_rss_mb()


def _cpu_seconds() -> float:
    """Return this process's CPU seconds so far, user plus system, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_batch(batch: dict[str, Any], settings: Settings) -> tuple[dict[str, Any], float, float]:
    """Export one batch in a worker process; return its result, the worker's peak RSS so far in MB and the
    CPU seconds the batch cost the worker (user plus system, all its threads).

    The plan and the result cross the process boundary as the dicts an XCom carries, as in the DAG.
    """
    from include.statistics_export.tasks import export_product_batch

    cpu = _cpu_seconds()
    result = export_product_batch(BatchPlan.from_xcom(batch), settings, BENCH_RUN)
    cpu = _cpu_seconds() - cpu
    return result.to_xcom(), peak_rss_mb(), cpu


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
    plan = tasks.plan_shop_batches(ready, bench_writer(day), settings)
    plan_seconds = time.monotonic() - started
    futures = [pool.submit(_run_batch, batch.to_xcom(), settings) for batch in plan.batches]
    results, peaks, cpu = [], [], 0.0
    for future in as_completed(futures):
        result, peak, batch_cpu = future.result()
        results.append(BatchResult.from_xcom(result))
        peaks.append(peak)
        cpu += batch_cpu
    seconds = time.monotonic() - started
    results.sort(key=lambda r: r.batch)
    return ExportRun(
        seconds=round(seconds, 2),
        mode=plan.mode,
        batches=len(plan.batches),
        variants=sum(r.variants for r in results),
        files=sum(r.files - r.files_unchanged for r in results),
        files_unchanged=sum(r.files_unchanged for r in results),
        images=sum(r.images_backed_up for r in results),
        images_reused=sum(r.images_reused for r in results),
        parquet_parts_written=sum(r.parquet_written for r in results),
        plan_seconds=round(plan_seconds, 2),
        bulk_wait_seconds=round(bulk_wait, 2) if ready.mode == "bulk" else 0.0,
        batch_seconds=[r.seconds for r in results],
        worker_cpu_seconds=round(cpu, 2),
        phases=summed_phases(results),
        peak_rss_mb=round(max(peaks, default=0.0), 1),
        peak_rss_mb_by_tenth=by_tenth(peaks),
        first_batch=plan.batches[0] if plan.batches else None,
    )


def by_tenth(peaks: list[float]) -> list[float]:
    """Return the highest peak so far at the end of each tenth of ``peaks`` (fewer when there are fewer)."""
    tenths = min(10, len(peaks))
    return [round(max(peaks[: round(len(peaks) * (n + 1) / tenths)]), 1) for n in range(tenths)]


def summed_phases(results: list[BatchResult]) -> dict[str, list[float]]:
    """Return each phase's wall and CPU seconds summed over the batches (both sum over parallel batches)."""
    phases: dict[str, list[float]] = {}
    for result in results:
        for name, (wall, cpu) in result.phases.items():
            spent = phases.setdefault(name, [0.0, 0.0])
            spent[0] += wall
            spent[1] += cpu
    return {name: [round(wall, 2), round(cpu, 2)] for name, (wall, cpu) in phases.items()}


def batch_pool(batch_parallelism: int) -> tuple[ProcessPoolExecutor, float]:
    """Start the batch workers (fresh interpreters, the export code imported) and return the pool and their RSS."""
    pool = ProcessPoolExecutor(batch_parallelism, mp_context=SPAWN)
    ready = [pool.submit(_worker_ready) for _ in range(batch_parallelism)]
    return pool, round(max(f.result() for f in ready), 1)
