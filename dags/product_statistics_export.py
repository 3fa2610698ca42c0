"""
Daily export of Shopify product statistics: every variant of every product of every active shop.

resolve the export day, list the active shops -> plan each shop's batches (mapped per shop)
-> collect the batches of all shops -> export each batch (mapped): catalog, metrics, images,
files in R2, rows -> summarize the day.
"""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta, timezone

from airflow.sdk import Param, PokeReturnValue, TriggerRule, dag, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret
from airflow.timetables.interval import CronDataIntervalTimetable

from export_hooks.shopify import ShopifyAuthError
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
    bulk_threshold=int(os.environ.get("STATISTICS_EXPORT_BULK_THRESHOLD", 1000)),
)
BULK_POLL_SECONDS = float(os.environ.get("STATISTICS_EXPORT_BULK_POLL_SECONDS", 30))
# What retrying cannot fix: the shop's data or token. Such a shop fails at once, alone.
FATAL = (ShopConfigurationError, ShopifyAuthError, BulkOperationFailed)


def fail_fast(call, *args, **kwargs):
    """Run a task body; a shop's configuration or token problem fails the task without retries."""
    try:
        return call(*args, **kwargs, on_token=mask_secret)
    except FATAL as exc:
        raise AirflowFailException(str(exc)) from None


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
        return [batch for plan in plans for batch in plan["batches"]]

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
    def summarize(day: str, shops: list[dict], plans, batches: list[dict], results) -> dict:
        """Report the day; fail the run when any shop or batch failed, so it is seen."""
        report = summarize_run(day, shops, list(plans), batches, list(results))
        log.info(report.text())
        if report.failed:
            raise AirflowFailException(report.failure_message())
        return report.document()

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
    summarize(day, shops, plans, batches, results)


product_statistics_export()
