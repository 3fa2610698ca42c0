"""
Erase the days a retention period has left behind: with `STATISTICS_EXPORT_RETENTION_DAYS` set to N, each day's run
keeps the last N days ending with its day and erases every earlier day's per-variant files, Parquet partitions and
rows. Off by default (every day is kept, as the original system promised): the run then erases nothing.

The day's report and the image backups stay. It runs as the redaction's role (`app_db_redaction`, the only one
with DELETE) and needs DeleteObject on the bucket (docs/security.md). A run that fails halfway is finished by its
retry or by the next day's run.
"""

from __future__ import annotations

from datetime import date, timedelta

from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from include.statistics_export import settings as export_settings
from include.statistics_export import tasks
from include.statistics_export.utc import export_day, midnight

DAG_ID = "statistics_retention"
SETTINGS = export_settings.load()


@dag(
    dag_id=DAG_ID,
    # The export's days: the run of day D starts once D has ended, beside the export of D, and never erases D.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    # No catchup: the latest run erases every expired day, earlier ones would add nothing; so any past start date.
    start_date=midnight(date(2026, 1, 1)),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": tasks.AIRFLOW_RETRIES, "retry_delay": timedelta(seconds=SETTINGS.retry_delay_seconds)},
    tags=["shopify", "statistics", "retention", "r2"],
    doc_md=__doc__,
)
def statistics_retention():
    @task(task_id="expire_days")
    def expire_days(logical_date=None, dag_run=None) -> dict[str, int]:
        """Erase every day before the retention period that ends with this run's day; return what, by kind."""
        last_day = export_day(None, logical_date, getattr(dag_run, "run_after", None))
        return tasks.export_task(tasks.expire_days)(last_day)

    expire_days()


statistics_retention()
