"""
Erase one shop's exported data: Shopify's mandatory shop/redact webhook, which arrives 48 hours after a merchant
uninstalls the app. The app's webhook handler triggers one run per shop with `{"shop_id": "...", "force": false}`
(docs/operations.md: "When a merchant uninstalls").

The run refuses a shop that is still active unless `force` is true, records the redaction (the daily export skips
and refuses the shop from then on), waits for any export of the shop in flight, then erases its files, image
backups, Parquet partitions, staged catalogs, rows and report entries, and records what it erased (counts only).
A second run, or a run after a crash, finishes the job and succeeds.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

from include.statistics_export import settings as export_settings
from include.statistics_export import tasks

DAG_ID = "shop_data_redaction"


@dag(
    dag_id=DAG_ID,
    schedule=None,
    catchup=False,
    # Retried like the export's tasks: each run erases what is left, so a retry finishes what a failure left.
    default_args={
        "retries": tasks.AIRFLOW_RETRIES,
        "retry_delay": timedelta(seconds=export_settings.load().retry_delay_seconds),
    },
    params={
        "shop_id": Param(type="string", minLength=1, description='The shop\'s id ("ShopCredential".id)'),
        "force": Param(False, type="boolean", description="Erase even though the shop is still active"),
    },
    tags=["shopify", "redaction", "r2"],
    doc_md=__doc__,
)
def shop_data_redaction():
    @task(task_id="erase_shop_data")
    def erase_shop_data(params=None, run_id=None) -> dict[str, int]:
        """Erase everything the export wrote of the shop; return how many of each kind this run erased."""
        return tasks.export_task(tasks.redact_shop)(str(params["shop_id"]), bool(params.get("force")), run_id)

    erase_shop_data()


shop_data_redaction()
