"""The ids of the DAG's tasks that other code names: the DAG gives its tasks these ids, and the day's report asks
their failed instances why a shop failed (``FAILURE_STEPS``). The logic names no task id: it is handed these."""

from __future__ import annotations

from include.statistics_export.report import FailureSteps

# The task group mapped per shop alone, and its steps.
SHOP_GROUP = "shop"
START_CATALOG_READ = "start_catalog_read"
WAIT_FOR_CATALOG = "wait_for_catalog"
PLAN_SHOP_BATCHES = "plan_shop_batches"
EXPORT_PRODUCT_BATCH = "export_product_batch"
EXPORT_SHOP_UNIT = "export_shop_unit"
EXPORT_MOVED_SHOP = "export_moved_shop"
LINK_SESSIONS = "link_sessions"


def in_shop_group(task_id: str) -> str:
    """Return the full id of a step of the shop group, as Airflow names it."""
    return f"{SHOP_GROUP}.{task_id}"


# Why a shop failed: the first of its steps whose failure left a reason, else its batch's, else its unit's.
FAILURE_STEPS = FailureSteps(
    shop_steps=tuple(in_shop_group(step) for step in (START_CATALOG_READ, WAIT_FOR_CATALOG, PLAN_SHOP_BATCHES)),
    batch=EXPORT_PRODUCT_BATCH,
    unit=EXPORT_SHOP_UNIT,
)


# Every task that may call Shopify (the Admin API, its token endpoint or a bulk result): what a pool bounding
# Shopify traffic across runs must hold (include/airflow_local_settings.py). A batch calls Shopify when its shop
# is read by pages (a batch of a bulk-read shop reads its staged catalog from R2, unless it must stage it again).
SHOPIFY_TASKS = (
    LINK_SESSIONS,
    in_shop_group(START_CATALOG_READ),
    in_shop_group(WAIT_FOR_CATALOG),
    in_shop_group(PLAN_SHOP_BATCHES),
    EXPORT_PRODUCT_BATCH,
    EXPORT_SHOP_UNIT,
    EXPORT_MOVED_SHOP,
)
