"""What Airflow calls when a day goes wrong: a notifier when a day's run fails, a Deadline Alert when a day is late.

- :func:`notify_failed_day` is the DAG's ``on_failure_callback`` (run by the dag-processor, or in process by
  ``airflow dags test``): it names the day, the run and the failed shops with their reasons, read from the
  day's report in the bucket (``keys.report_key``); without a report (the run failed before writing it) it
  says so and names the failed task.
- :func:`export_deadline` is the DAG's ``deadline``: day D's run must have succeeded by D+1 00:00 UTC plus
  ``STATISTICS_EXPORT_DEADLINE_HOURS`` (6: D+1 06:00), measured from the run's logical date (D 00:00 for a
  scheduled run). When it passes, the scheduler queues :func:`day_missed_deadline` on the executor.
  ``STATISTICS_EXPORT_DEADLINE_ALERT=off`` parses the DAG without it (for ``airflow dags test``: see the setting).

Each callback reads its facts (``alert_facts``), builds its message (``alert_messages``, pure) and sends it
through the configured channels (``alert_channels``). The callbacks stay in this module: the Deadline Alert's
rows in Airflow's database name :func:`day_missed_deadline` by this module's path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextlib import closing
from datetime import date, timedelta
from typing import Any

from airflow.sdk.definitions.callback import SyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from export_hooks.r2 import R2Hook
from include.statistics_export.alert_facts import (
    StoredReport,
    dag_id_of,
    deadline_time,
    failed_task_ids,
    instant,
    run_facts,
)
from include.statistics_export.alert_messages import (
    exported_after_all,
    failed_day_alert,
    missed_deadline_alert,
    report_of_run,
)
from include.statistics_export.keys import RUNS_PREFIX, report_key
from include.statistics_export.report_schema import RunReport
from include.statistics_export.settings import Settings
from include.statistics_export.tasks.alert_channels import send

log = logging.getLogger(__name__)

DEADLINE_NAME = "day exported"


def read_stored_report(day: date) -> StoredReport | None:
    """Return the day's report from the bucket (r2_default), or None when there is none."""
    store, key = R2Hook(), report_key(day)
    written = store.modified_under(RUNS_PREFIX).get(key)
    if written is None:
        return None
    try:
        with closing(store.open_object(key)) as body:
            document = json.load(body)
    except FileNotFoundError:
        return None
    return StoredReport(RunReport.from_document(document if isinstance(document, dict) else {}), instant(written))


def notify_failed_day(context: Mapping[str, Any]) -> None:
    """The DAG's on_failure_callback: tell the configured channels which day failed, and which shops and why."""
    run = run_facts(context)
    found = report_of_run(run.day, run, lambda: read_stored_report(run.day), "the run failed before writing it")
    send(failed_day_alert(run, found, failed_task_ids(context), dag_id_of(context)), context)


def day_missed_deadline(context: Mapping[str, Any] | None = None, **_: Any) -> None:
    """The Deadline Alert's callback (run on the executor): tell the channels the day is not exported in time.

    Not sent for a backfill run (an operator asked for those past days) nor when the day's report shows the
    day exported after all (by another run of the day).
    """
    context = context or {}
    run = run_facts(context)
    if run.is_backfill:
        log.info("Run %s is a backfill of %s: no deadline alert", run.run_id, run.day)
        return
    absent = "the run has not written it yet" if run.unfinished else "no run has written it"
    found = report_of_run(run.day, run, lambda: read_stored_report(run.day), absent, since_run_start=False)
    if exported_after_all(found):
        log.info("Day %s is exported (its report is ok): no deadline alert for run %s", run.day, run.run_id)
        return
    send(missed_deadline_alert(run, deadline_time(context), found), context)


def export_deadline(settings: Settings) -> DeadlineAlert | None:
    """Return the DAG's Deadline Alert: day D's run must have succeeded by D+1 00:00 UTC + deadline_hours.

    None when ``STATISTICS_EXPORT_DEADLINE_ALERT`` is off: an explicit setting, never the command line, so the
    DAG's shape is the same in every process that parses it with the same environment. It exists for
    ``airflow dags test``, which runs no scheduler loop (so it never evaluates a deadline) and, in Airflow
    3.3.2, crashes at the end of a successful run of a DAG that has one (apache/airflow#73428: its in-memory
    DAG holds the encoded alerts where ``DagRun.update_state`` expects the ids of their ``deadline_alert``
    rows). Drop the setting once a release carries the fix (apache/airflow#73430).
    """
    if not settings.deadline_alert:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=deadline_interval(settings),
        callback=SyncCallback(day_missed_deadline),
        name=DEADLINE_NAME,
    )


def deadline_interval(settings: Settings) -> timedelta:
    """Return how long after a run's logical date (D 00:00) day D must be exported: a day plus the hours."""
    return timedelta(days=1, hours=settings.deadline_hours)
