"""
Daily export of Shopify product statistics: every variant of every product of every active shop.

resolve the export day, list the active shops -> plan each shop's batches (mapped per shop)
-> collect the batches of all shops -> export each batch (mapped): catalog, metrics, images,
files in R2, rows -> summarize the day.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import date, datetime, timedelta, timezone
from functools import partial

import requests
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import Param, TriggerRule, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret
from airflow.timetables.interval import CronDataIntervalTimetable

from export_hooks.r2 import R2Hook
from export_hooks.shopify import ShopifyAuthError, ShopifyHook
from include.statistics_export.days import export_day
from include.statistics_export.export import DEFAULT_BATCH_VARIANTS, BatchPlan, export_batch, plan_shop
from include.statistics_export.images import download_image
from include.statistics_export.report import summarize_run
from include.statistics_export.shops import (
    ShopConfigurationError,
    ShopCredentials,
    ShopRef,
    active_shops,
    shop_credentials,
)

log = logging.getLogger(__name__)

APP_DB_CONN_ID = "app_db"
START_DATE = os.environ.get("STATISTICS_EXPORT_START_DATE", "2026-11-01")
BATCH_VARIANTS = int(os.environ.get("STATISTICS_EXPORT_BATCH_VARIANTS", DEFAULT_BATCH_VARIANTS))
CONCURRENCY = int(os.environ.get("STATISTICS_EXPORT_CONCURRENCY", 8))


def app_db():
    """Open a connection to the Shopify app's database, closed when the block ends."""
    return closing(PostgresHook(postgres_conn_id=APP_DB_CONN_ID).get_conn())


def credentials_of(shop_id: str) -> ShopCredentials:
    """Read a shop's token from its linked session; a shop without one fails at once, alone."""
    try:
        with app_db() as conn:
            creds = shop_credentials(conn, shop_id)
    except ShopConfigurationError as exc:
        raise AirflowFailException(str(exc)) from None
    mask_secret(creds.access_token)
    return creds


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
        with app_db() as conn:
            shops = active_shops(conn, params.get("shop_ids") or None)
        return [{"shop_id": s.shop_id, "shop_domain": s.shop_domain} for s in shops]

    @task(map_index_template="{{ shop_label }}")
    def plan_shop_batches(shop: dict, day: str, params=None) -> dict:
        """List one shop's products and cut them into batches of about BATCH_VARIANTS variants."""
        get_current_context()["shop_label"] = shop["shop_domain"]
        creds = credentials_of(shop["shop_id"])
        try:
            with ShopifyHook(creds.api_domain, creds.access_token) as shopify:
                currency = shopify.shop_info().get("currencyCode")
                batches = plan_shop(
                    shopify,
                    ShopRef(shop["shop_id"], shop["shop_domain"]),
                    date.fromisoformat(day),
                    batch_variants=BATCH_VARIANTS,
                    product_ids=params.get("product_ids") or None,
                    currency=currency,
                )
        except ShopifyAuthError as exc:
            raise AirflowFailException(str(exc)) from None
        log.info("Shop %s: %d batch(es) for %s", shop["shop_domain"], len(batches), day)
        return {"shop_id": shop["shop_id"], "batches": batches}

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def collect_batches(plans) -> list[dict]:
        """Flatten the batches of every shop that planned; a shop that failed has nothing here."""
        return [batch for plan in plans for batch in plan["batches"]]

    @task(map_index_template="{{ batch_label }}")
    def export_product_batch(batch: dict) -> dict:
        """Export one batch of one shop's products end to end."""
        plan = BatchPlan(**batch)
        get_current_context()["batch_label"] = plan.label
        creds = credentials_of(plan.shop_id)
        images = requests.Session()
        try:
            with (
                ShopifyHook(creds.api_domain, creds.access_token) as shopify,
                app_db() as conn,
                ThreadPoolExecutor(CONCURRENCY) as pool,
                closing(images),
            ):
                store = R2Hook(max_pool_connections=CONCURRENCY)
                result = export_batch(conn, shopify, store, plan, partial(download_image, images), pool=pool)
        except ShopifyAuthError as exc:
            raise AirflowFailException(str(exc)) from None
        log.info(
            "%s: %d variants, %d files, %d images backed up, %d failed, %.2fs",
            plan.label,
            result.variants,
            result.files,
            result.images_backed_up,
            result.images_failed,
            result.seconds,
        )
        return result.__dict__

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def summarize(day: str, shops: list[dict], plans, batches: list[dict], results) -> dict:
        """Report the day; fail the run when any shop or batch failed, so it is seen."""
        report = summarize_run(day, shops, list(plans), batches, list(results))
        log.info(report.text())
        if report.failed:
            raise AirflowFailException(report.failure_message())
        return report.document()

    day = resolve_export_day()
    shops = list_active_shops()
    plans = plan_shop_batches.partial(day=day).expand(shop=shops)
    batches = collect_batches(plans)
    results = export_product_batch.expand(batch=batches)
    summarize(day, shops, plans, batches, results)


product_statistics_export()
