"""
Daily export of Shopify product statistics: every variant of every product of every active shop.

resolve the export day, list the active shops
-> per shop (a mapped task group): start reading its catalog (a bulk operation for a large shop), wait for
   it without holding a worker slot, cut it into batches of about 500 variants
-> collect the batches of all shops -> export each batch (mapped): metrics, images, files in R2, rows
-> reconcile each shop (files = rows = events = catalog) -> report the day (statistic-exports/_runs/)
-> clean the staged catalogs once the day succeeded.
"""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta, timezone

from psycopg.errors import InsufficientPrivilege
from airflow.sdk import Param, PokeReturnValue, TriggerRule, dag, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret
from airflow.timetables.interval import CronDataIntervalTimetable

from export_hooks.shopify import ShopifyAuthError, ShopifyError
from export_hooks.shopify_bulk import BulkOperationFailed
from include.statistics_export import tasks
from include.statistics_export.days import export_day
from include.statistics_export.report import summarize_run
from include.statistics_export.shops import ShopConfigurationError, active_shops

log = logging.getLogger(__name__)

START_DATE = os.environ.get("STATISTICS_EXPORT_START_DATE", "2026-11-01")
SETTINGS = tasks.Settings(
    batch_variants=int(os.environ.get("STATISTICS_EXPORT_BATCH_VARIANTS", 500)),
    concurrency=int(os.environ.get("STATISTICS_EXPORT_CONCURRENCY", 8)),
    bulk_threshold=int(os.environ.get("STATISTICS_EXPORT_BULK_THRESHOLD", 150)),
)
BULK_POLL_SECONDS = float(os.environ.get("STATISTICS_EXPORT_BULK_POLL_SECONDS", 30))
# What retrying cannot fix: the shop's data or token, or the database role's grants. Fails at once, alone.
FATAL = (ShopConfigurationError, ShopifyAuthError, BulkOperationFailed, InsufficientPrivilege)


def fail_fast(call, *args, **kwargs):
    """Run a task body; a shop's configuration or token problem fails the task without retries.

    Whatever fails, the reason goes to an XCom ``failure`` so the day's report can say why: our
    exceptions name the shop and never carry a secret; others are reduced to their type.
    """
    try:
        return call(*args, **kwargs, on_token=mask_secret)
    except FATAL as exc:
        record_failure(str(exc))
        raise AirflowFailException(str(exc)) from None
    except Exception as exc:
        ours = isinstance(exc, (ShopifyError, ValueError, FileNotFoundError))
        record_failure(str(exc)[:500] if ours else f"{type(exc).__name__} (see the task log)")
        raise


def record_failure(reason: str) -> None:
    """Leave the reason of this task instance's failure where the report task finds it."""
    get_current_context()["ti"].xcom_push(key="failure", value=reason)


def failure_reasons(ti, shops: list[dict], plans: list[dict], batches: list[dict], results: list[dict]):
    """Collect why each failed shop failed, from the XComs its failed task instances left."""
    reasons: dict[str, str] = {}
    planned = {plan["shop_id"] for plan in plans}
    for index, shop in enumerate(shops):
        if shop["shop_id"] in planned:
            continue
        for task_id in ("shop.start_catalog_read", "shop.wait_for_catalog", "shop.plan_shop_batches"):
            reason = ti.xcom_pull(task_ids=task_id, key="failure", map_indexes=index)
            if reason:
                reasons[shop["shop_id"]] = f"{task_id.split('.')[-1]}: {reason}"
                break
    done = {(r["shop_id"], r["batch"]) for r in results}
    for index, batch in enumerate(batches):
        if (batch["shop_id"], batch["index"]) not in done and batch["shop_id"] not in reasons:
            reason = ti.xcom_pull(task_ids="export_product_batch", key="failure", map_indexes=index)
            if reason:
                reasons[batch["shop_id"]] = reason
    return reasons


def as_list(mapped_output) -> list[dict]:
    """Return the results of a mapped task as a list.

    Airflow 3.3 hands a downstream task the bare value, not a one-item list, when a single map index of
    a task inside a mapped task group produced a result (one shop, or all but one failed).
    """
    return [mapped_output] if isinstance(mapped_output, dict) else list(mapped_output or [])


def label(name: str, value: str) -> None:
    """Name this mapped task instance in the UI (its map_index_template reads the context)."""
    get_current_context()[name] = value


@dag(
    dag_id="product_statistics_export",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime.fromisoformat(START_DATE).replace(tzinfo=timezone.utc),
    catchup=True,
    max_active_runs=3,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True},
    params={
        "date": Param(None, type=["null", "string"], format="date", description="Export this UTC day (YYYY-MM-DD)"),
        "shop_ids": Param([], type="array", items={"type": "string"}, description="Only these shops (ids)"),
        "product_ids": Param([], type="array", items={"type": "string"}, description="Only these products"),
    },
    tags=["shopify", "statistics", "r2"],
    doc_md=__doc__,
)
def product_statistics_export():
    @task
    def resolve_export_day(params=None, logical_date=None, dag_run=None) -> str:
        """Fix, once per run, the UTC day every task of this run exports."""
        return export_day(params.get("date"), logical_date, getattr(dag_run, "run_after", None)).isoformat()

    @task
    def list_active_shops(params=None) -> list[dict]:
        """List the active shops to export (ids and domains only)."""
        with tasks.app_db() as conn:
            shops = active_shops(conn, params.get("shop_ids") or None)
        return [{"shop_id": s.shop_id, "shop_domain": s.shop_domain} for s in shops]

    @task(map_index_template="{{ shop_label }}")
    def start_catalog_read(shop: dict, params=None) -> dict:
        """Count the shop's products and, for a large shop, start a Shopify bulk query of its catalog."""
        label("shop_label", shop["shop_domain"])
        return fail_fast(tasks.start_catalog_read, shop, SETTINGS, params.get("product_ids") or None)

    @task.sensor(
        map_index_template="{{ shop_label }}",
        mode="reschedule",
        poke_interval=BULK_POLL_SECONDS,
        timeout=timedelta(hours=6).total_seconds(),
    )
    def wait_for_catalog(read: dict) -> PokeReturnValue:
        """Wait, without holding a worker slot, until Shopify has finished the shop's bulk query."""
        label("shop_label", read["shop_domain"])
        ready = fail_fast(tasks.poll_catalog_read, read)
        return PokeReturnValue(is_done=ready is not None, xcom_value=ready)

    @task(map_index_template="{{ shop_label }}")
    def plan_shop_batches(read: dict, day: str, params=None) -> dict:
        """Cut the shop's catalog into batches of about STATISTICS_EXPORT_BATCH_VARIANTS variants."""
        label("shop_label", read["shop_domain"])
        plan = fail_fast(
            tasks.plan_shop_batches, read, date.fromisoformat(day), SETTINGS, params.get("product_ids") or None
        )
        log.info(
            "Shop %s: %d batch(es), %d variants, read by %s",
            read["shop_domain"],
            len(plan["batches"]),
            plan["variants"],
            plan["mode"],
        )
        return plan

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def collect_batches(plans) -> list[dict]:
        """Flatten the batches of every shop that planned; a shop that failed has nothing here."""
        return [batch for plan in as_list(plans) for batch in plan["batches"]]

    @task(map_index_template="{{ batch_label }}")
    def export_product_batch(batch: dict) -> dict:
        """Export one batch of one shop's products end to end."""
        label("batch_label", f"{batch['shop_domain']} · batch {batch['index']}/{batch['count']}")
        result = fail_fast(tasks.export_product_batch, batch, SETTINGS)
        log.info(
            "%s · batch %d/%d: %d/%d variants, %d files (%d unchanged), %d images backed up, %d failed, %.2fs",
            result["shop_domain"],
            result["batch"],
            batch["count"],
            result["variants"],
            batch["variants"],
            result["files"],
            result["files_unchanged"],
            result["images_backed_up"],
            result["images_failed"],
            result["seconds"],
        )
        return result

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def reconcile(day: str, plans, results, params=None) -> list[dict]:
        """Check each finished shop: files, rows, the day's events and the catalog must agree."""
        if params.get("product_ids"):
            # Some products only: their files cannot add up to the whole shop's events and rows.
            log.info("Reconciliation skipped: the run exported some products only")
            return []
        return tasks.reconcile_day(date.fromisoformat(day), as_list(plans), as_list(results))

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report(day: str, shops: list[dict], plans, batches: list[dict], results, reconciliations, ti=None) -> dict:
        """Log, return and write the day's report; fail the run when any shop failed or did not reconcile."""
        plans, results = as_list(plans), as_list(results)
        reasons = failure_reasons(ti, shops, plans, batches, results)
        run = summarize_run(day, shops, plans, batches, results, list(reconciliations or []), reasons)
        log.info(run.text())
        log.info("Report written to %s", tasks.write_report(run))
        if run.failed:
            raise AirflowFailException(run.failure_message())
        return run.document()

    @task
    def clean_staging(day: str) -> int:
        """Delete the day's staged catalogs once the whole day has succeeded."""
        return tasks.clean_day_staging(date.fromisoformat(day))

    # A task group mapped per shop: each shop's three steps depend on that shop's own previous step, so
    # one shop failing leaves the others going (a task mapped over a mapped task's whole output would not).
    @task_group(group_id="shop")
    def read_shop_catalog(shop: dict, day: str):
        return plan_shop_batches(wait_for_catalog(start_catalog_read(shop)), day)

    day = resolve_export_day()
    shops = list_active_shops()
    plans = read_shop_catalog.partial(day=day).expand(shop=shops)
    batches = collect_batches(plans)
    results = export_product_batch.expand(batch=batches)
    reconciliations = reconcile(day, plans, results)
    report(day, shops, plans, batches, results, reconciliations) >> clean_staging(day)


product_statistics_export()
