"""An example cluster policy for deployments of this package: every task of ``product_statistics_export`` that may
call Shopify runs in the ``shopify_api`` pool, so that catchup, backfills, retries and the daily run together
never send Shopify more than the pool's slots at once. No DAG edit: Airflow applies ``task_policy`` to every task
it loads.

To use it, create the pool (``airflow pools set shopify_api 16 "Shopify Admin API"``) and put this file where
Airflow looks for its local settings, ``$AIRFLOW_HOME/config/airflow_local_settings.py`` (the official image:
``/opt/airflow/config/``; the Helm chart: ``airflowLocalSettings``), or merge its ``task_policy`` into the one you
have. It imports the package's task ids, so ``include/`` must be importable where the policy runs (the
scheduler, the dag-processor and the workers), as it is for the DAG itself.

A pool bounds how many of these tasks run at once, not Shopify's points: each shop has its own cost bucket,
which the hook already respects. Size it to what the app's other Shopify traffic leaves; the batches are in it
too (a batch of a shop read by pages calls Shopify), so a day's batches run at most as many at once as it has
slots.
"""

from __future__ import annotations

from typing import Any

from include.statistics_export.tasks.task_ids import SHOPIFY_TASKS

DAG_ID = "product_statistics_export"
SHOPIFY_POOL = "shopify_api"


def task_policy(task: Any) -> None:
    """Put the export's Shopify-calling tasks in the ``shopify_api`` pool; leave every other task as it is."""
    if task.dag_id == DAG_ID and task.task_id in SHOPIFY_TASKS:
        task.pool = SHOPIFY_POOL
