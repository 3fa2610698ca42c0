"""What each task of the DAG does, with its connections opened: plain functions the DAG, the benchmark
and the tests call alike. The DAG only adds Airflow's concerns (mapping, labels, retries, failing fast).

Per shop: ``start_catalog_read`` (count the products; bulk query above the threshold) ->
``poll_catalog_read`` (until Shopify finishes a bulk query) -> ``plan_shop_batches`` (batches of about
``batch_variants`` variants; a bulk catalog is staged in the bucket). Per batch: ``export_product_batch``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from airflow.providers.postgres.hooks.postgres import PostgresHook

from export_hooks import shopify_bulk as bulk
from export_hooks.r2 import R2Hook
from export_hooks.shopify import ShopifyHook
from export_hooks.shopify_queries import CATALOG_BULK_QUERY
from include.statistics_export.bulk_catalog import assemble_products
from include.statistics_export.export import BatchPlan, export_batch, plan_shop, stage_shop
from include.statistics_export.images import download_image
from include.statistics_export.reconcile import add_totals, reconcile_shop
from include.statistics_export.report import RunReport, report_key
from include.statistics_export.shops import ShopCredentials, ShopRef, shop_credentials
from include.statistics_export.staging import clean_staging

log = logging.getLogger(__name__)

APP_DB_CONN_ID = "app_db"


@dataclass(frozen=True)
class Settings:
    """The knobs of a run (environment variables in the DAG)."""

    batch_variants: int = 500
    concurrency: int = 8
    # Shops with at least this many products are read with one bulk operation instead of pages.
    bulk_threshold: int = 150


def app_db():
    """Open a connection to the Shopify app's database, closed when the block ends."""
    return closing(PostgresHook(postgres_conn_id=APP_DB_CONN_ID).get_conn())


def credentials_of(shop_id: str, on_token=None) -> ShopCredentials:
    """Read a shop's token from its linked session; ``on_token`` sees it first (the DAG masks it)."""
    with app_db() as conn:
        creds = shop_credentials(conn, shop_id)
    if on_token:
        on_token(creds.access_token)
    return creds


@contextmanager
def shopify_for(shop_id: str, on_token=None) -> Iterator[ShopifyHook]:
    """Open the Shopify hook of one shop."""
    creds = credentials_of(shop_id, on_token)
    with ShopifyHook(creds.api_domain, creds.access_token) as hook:
        yield hook


def start_catalog_read(shop: dict, settings: Settings, product_ids=None, on_token=None) -> dict[str, Any]:
    """Decide how to read a shop's catalog; above the threshold start the bulk query. Returns a small descriptor."""
    read = {**shop, "mode": "pages", "operation_id": None, "note": None}
    with shopify_for(shop["shop_id"], on_token) as shopify:
        read["currency"] = shopify.shop_info().get("currencyCode")
        if product_ids:
            read["note"] = "some products only: read page by page"
            return read
        read["products"] = bulk.products_count(shopify)
        if read["products"] < settings.bulk_threshold:
            return read
        try:
            operation = bulk.start_bulk_query(shopify, CATALOG_BULK_QUERY)
        except bulk.BulkOperationInProgress as exc:
            # Another bulk query of the shop (another app, or a run still going) holds the slot: the pages
            # still work, only slower, and the day's export stays on time.
            read["note"] = f"{exc}; read page by page instead"
            log.warning("%s", read["note"])
            return read
    return {**read, "mode": "bulk", "operation_id": operation.id}


def poll_catalog_read(read: dict, on_token=None) -> dict[str, Any] | None:
    """Return the read once its catalog can be planned, or None while Shopify still runs the bulk query.

    A bulk query that ends FAILED, CANCELED or EXPIRED falls back to pages (noted in the report);
    ACCESS_DENIED is the shop's configuration and raises.
    """
    if read["mode"] != "bulk":
        return read
    with shopify_for(read["shop_id"], on_token) as shopify:
        operation = bulk.bulk_operation(shopify, read["operation_id"])
        if not operation.finished:
            log.info("Shop %s: bulk operation %s is %s", read["shop_domain"], operation.id, operation.status)
            return None
        try:
            url = bulk.completed_url(shopify, operation)
        except bulk.BulkOperationFailed as exc:
            if operation.error_code == "ACCESS_DENIED":
                raise
            note = f"{exc}; read page by page instead"
            log.warning("%s", note)
            return {**read, "mode": "pages", "note": note}
    return {**read, "result_url": url, "objects": operation.object_count}


def plan_shop_batches(read: dict, day: date, settings: Settings, product_ids=None, on_token=None) -> dict[str, Any]:
    """Cut one shop's catalog into batches: a bulk result is staged in the bucket, pages are listed by id."""
    shop = ShopRef(read["shop_id"], read["shop_domain"])
    if read["mode"] == "bulk":
        products = assemble_products(bulk.iter_bulk_result(read["result_url"])) if read.get("result_url") else ()
        batches = stage_shop(
            R2Hook(), shop, day, products, batch_variants=settings.batch_variants, currency=read.get("currency")
        )
    else:
        with shopify_for(shop.shop_id, on_token) as shopify:
            batches = plan_shop(
                shopify,
                shop,
                day,
                batch_variants=settings.batch_variants,
                product_ids=product_ids,
                currency=read.get("currency"),
            )
    return {
        "shop_id": shop.shop_id,
        "shop_domain": shop.shop_domain,
        "mode": read["mode"],
        "note": read.get("note"),
        "variants": sum(batch["variants"] for batch in batches),
        "batches": batches,
    }


def export_product_batch(batch: dict, settings: Settings, on_token=None) -> dict[str, Any]:
    """Export one batch end to end with one Shopify hook, one R2 client, one database connection."""
    plan = BatchPlan(**batch)
    images = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=settings.concurrency)
    images.mount("https://", adapter)
    images.mount("http://", adapter)
    with (
        shopify_for(plan.shop_id, on_token) as shopify,
        app_db() as conn,
        ThreadPoolExecutor(settings.concurrency) as pool,
        closing(images),
    ):
        store = R2Hook(max_pool_connections=settings.concurrency)
        result = export_batch(conn, shopify, store, plan, partial(download_image, images), pool=pool)
    return {**result.__dict__, "shop_domain": plan.shop_domain, "graphql_cost": shopify.cost_charged}


def reconcile_day(day: date, plans: list[dict], results: list[dict]) -> list[dict[str, Any]]:
    """Reconcile every shop whose batches all finished: files, rows, events and catalog must agree.

    A product deleted from Shopify during the run leaves the planned variant count behind: such a shop's
    catalog count is the variants its batches found (the deletion is in the report as skipped products).
    """
    finished: dict[str, list[dict]] = {}
    for result in results:
        finished.setdefault(result["shop_id"], []).append(result)
    expected = {plan["shop_id"]: len(plan["batches"]) for plan in plans}
    documents = []
    with app_db() as conn:
        for plan in plans:
            shop_results = finished.get(plan["shop_id"], [])
            if len(shop_results) != expected[plan["shop_id"]]:
                continue  # a failed batch already fails the shop; its numbers cannot agree
            files = add_totals(r["file_totals"] for r in shop_results)
            skipped = any(r["missing_products"] for r in shop_results)
            catalog = files["variants"] if skipped else plan["variants"]
            reconciliation = reconcile_shop(conn, plan["shop_id"], day, catalog, files)
            for difference in reconciliation.differences:
                log.error("%s", difference)
            documents.append(reconciliation.document())
    return documents


def write_report(report: RunReport) -> str:
    """Write the day's report to the bucket and return its key."""
    key = report_key(date.fromisoformat(report.date))
    R2Hook().put_object(key, report.json_bytes(), "application/json")
    return key


def clean_day_staging(day: date) -> int:
    """Delete the day's staged catalogs (and staging left by failed runs over a week ago)."""
    return clean_staging(R2Hook(), day)
