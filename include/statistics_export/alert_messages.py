"""The alerts' messages: pure functions from the facts of a run (``alert_facts``) to a subject and a plain-text body.

A message carries no secret: ids, the day, task ids, counts, and the report's reasons, which the export already
keeps free of tokens and keys. Nothing in it is rendered as a template (a reason may hold braces).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime

from include.statistics_export.alert_facts import RunFacts, StoredReport
from include.statistics_export.keys import report_key
from include.statistics_export.report_schema import RunReport
from include.statistics_export.utc import as_utc

# A report line per failed shop is enough to act on; a fleet-wide failure is summed up after this many.
LISTED_SHOPS = 50
REASON_CHARS = 300


@dataclass(frozen=True)
class Alert:
    """One message: a subject line and a plain-text body."""

    subject: str
    text: str


@dataclass(frozen=True)
class ReportOfRun:
    """The run's own report of the day, or why the message has none (``missing_why``)."""

    stored: StoredReport | None
    missing_why: str = ""


def report_of_run(
    day: date, run: RunFacts, read: Callable[[], StoredReport | None], absent: str, since_run_start: bool = True
) -> ReportOfRun:
    """Return the run's report of the day by ``read`` (the bucket), or why there is none: absent (``absent`` ends
    the sentence), unreadable, or, with ``since_run_start``, written before the run started (an earlier run's)."""
    try:
        stored = read()
    except Exception as exc:  # noqa: BLE001 - an alert must go out even when the bucket does not answer
        return ReportOfRun(None, f"The day's report could not be read from the bucket ({type(exc).__name__}).")
    if stored is None:
        return ReportOfRun(None, f"No report of the day is in the bucket ({report_key(day)}): {absent}.")
    if since_run_start and run.start_date and stored.written_at and stored.written_at < run.start_date:
        return ReportOfRun(
            None,
            f"The day's report in the bucket ({report_key(day)}) was written at {when(stored.written_at)}, "
            "before this run started, by an earlier run: this run failed before writing its own.",
        )
    return ReportOfRun(stored)


def exported_after_all(found: ReportOfRun) -> bool:
    """Tell whether the day's report shows the day exported whole (by another run of the day)."""
    return found.stored is not None and not found.stored.report.failed


def when(value: datetime) -> str:
    """Return an instant as the messages show it (UTC, to the minute)."""
    return f"{as_utc(value):%Y-%m-%d %H:%M} UTC"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:REASON_CHARS]


def shop_lines(report: RunReport) -> list[str]:
    """Return a line per failed shop with its reason, the first ``LISTED_SHOPS`` by id and how many more."""
    failed = sorted(report.failed_shops.items())
    lines = [f"- {shop}: {_one_line(reason)}" for shop, reason in failed[:LISTED_SHOPS]]
    if len(failed) > LISTED_SHOPS:
        lines.append(f"- ... and {len(failed) - LISTED_SHOPS} more (the report lists them all)")
    return lines


def report_lines(day: date, report: RunReport) -> list[str]:
    """Return what the day's report says: its failed shops, the tasks that did not finish, and its totals."""
    failed = report.failed_shops
    lines = [f"Failed shops ({len(failed)}):", *shop_lines(report)] if failed else ["No shop is marked failed."]
    lines += [f"Did not finish: {task}: {_one_line(why)}" for task, why in sorted(report.failed_tasks.items())]
    lines.append(
        f"Report {report_key(day)}: {report.shops} shop(s), {report.variants} variant(s), {report.files} file(s)."
    )
    return lines


def failed_day_alert(run: RunFacts, found: ReportOfRun, failed_tasks: Iterable[str], dag_id: str = "") -> Alert:
    """Return the message of a failed run of a day."""
    day = run.day
    failed = found.stored.report.failed_shops if found.stored else {}
    what = f"{len(failed)} shop(s) failed" if failed else "the run failed"
    lines = [
        f"The statistics export of {day.isoformat()} failed.",
        f"Run: {run.run_id}" + (f" ({dag_id})" if dag_id else ""),
    ]
    lines += report_lines(day, found.stored.report) if found.stored else [found.missing_why]
    tasks = list(failed_tasks)
    if tasks:
        lines.append("Failed task: " + ", ".join(tasks))
    lines.append("Retry: clear the run's failed tasks, or trigger the day again with the date param.")
    return Alert(subject=f"Statistics export {day.isoformat()}: {what}", text="\n".join(lines))


def missed_deadline_alert(run: RunFacts, deadline_time: datetime | None, found: ReportOfRun) -> Alert:
    """Return the message of a day not exported by its deadline."""
    day = run.day
    by = when(deadline_time) if deadline_time else "its deadline"
    lines = [
        f"The statistics export of {day.isoformat()} has not succeeded by {by}.",
        f"Run: {run.run_id}, {run.state or 'state unknown'}.",
    ]
    lines += report_lines(day, found.stored.report) if found.stored else [found.missing_why]
    return Alert(subject=f"Statistics export {day.isoformat()}: not exported by {by}", text="\n".join(lines))
