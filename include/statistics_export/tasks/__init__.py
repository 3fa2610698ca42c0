"""What each task of the DAG does, with its connections opened: the task layer, the one part of the package
that uses the hooks (and so Airflow), imported only by the DAG and the Statistics page's plugin (and the
benchmark and the tests, which call these functions alike). The DAG adds only Airflow's concerns (mapping,
labels, retries, failing fast on PermanentError).

By concern: ``day_start`` (sessions, shops, the day's claim, the fleet), ``shop_chain`` (a shop alone and its
batches), ``packed_units`` (many small shops per task instance) and ``day_end`` (reconcile, report, staging); and
``redaction``, the one task of the ``shop_data_redaction`` DAG.
"""

from include.statistics_export.connections import app_db, shopify_for
from include.statistics_export.tasks import alerts, task_ids
from include.statistics_export.tasks.day_end import (
    add_report_sections,
    carry_sizes,
    check_pixel_health,
    clean_day_staging,
    finish_day,
    reconcile_day,
    report_day,
    write_report,
)
from include.statistics_export.tasks.day_start import (
    census_tokens,
    check_day_writer,
    claim_export_day,
    link_unlinked_sessions,
    list_active_shops,
    nearest_report,
    plan_fleet,
    previous_sizes,
)
from include.statistics_export.tasks.packed_units import export_unit, fail_unit_if_any_shop_failed
from include.statistics_export.tasks.redaction import redact_shop
from include.statistics_export.tasks.retention import expire_days
from include.statistics_export.tasks.retry_policy import AIRFLOW_RETRIES
from include.statistics_export.tasks.runtime import (
    FAILURE,
    UNIT_RESULT,
    day_outcome,
    export_task,
    label,
    map_limit,
    only,
    push_outcome,
    pushed_moved_shops,
    run_is_active,
    writer,
)
from include.statistics_export.tasks.shop_chain import (
    export_moved_shops,
    export_product_batch,
    plan_shop_batches,
    poll_catalog_read,
    restage,
    start_catalog_read,
)

__all__ = [
    "AIRFLOW_RETRIES",
    "alerts",
    "task_ids",
    "FAILURE",
    "UNIT_RESULT",
    "day_outcome",
    "export_task",
    "label",
    "map_limit",
    "only",
    "push_outcome",
    "pushed_moved_shops",
    "run_is_active",
    "writer",
    "add_report_sections",
    "app_db",
    "carry_sizes",
    "census_tokens",
    "check_day_writer",
    "check_pixel_health",
    "claim_export_day",
    "clean_day_staging",
    "expire_days",
    "export_moved_shops",
    "export_product_batch",
    "export_unit",
    "fail_unit_if_any_shop_failed",
    "finish_day",
    "link_unlinked_sessions",
    "list_active_shops",
    "nearest_report",
    "previous_sizes",
    "plan_fleet",
    "plan_shop_batches",
    "poll_catalog_read",
    "reconcile_day",
    "redact_shop",
    "report_day",
    "restage",
    "shopify_for",
    "start_catalog_read",
    "write_report",
]
