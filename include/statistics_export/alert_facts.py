"""What an alert callback reads, as typed facts: the run from either context Airflow hands a callback, the failed
task it names, the deadline that passed, and the day's report as the bucket holds it.

Plain functions of the context mapping (no Airflow import): a DAG callback's context holds ``dag_run`` as an
object, a deadline callback's as a dict; both are read alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from include.statistics_export.report_schema import RunReport
from include.statistics_export.utc import as_utc, export_day


@dataclass(frozen=True)
class RunFacts:
    """What an alert says of a run, from either context Airflow hands a callback."""

    run_id: str
    run_type: str
    state: str
    logical_date: datetime | None
    run_after: datetime | None
    start_date: datetime | None
    conf: dict[str, Any]

    @property
    def day(self) -> date:
        """The day the run exports, as resolve_export_day computes it: the date param, else the logical date."""
        return export_day(self.conf.get("date"), self.logical_date, self.run_after)

    @property
    def is_backfill(self) -> bool:
        """Tell whether an operator asked for this run of a past day (``airflow backfill create``)."""
        return self.run_type == "backfill"

    @property
    def unfinished(self) -> bool:
        """Tell whether the run may still write its report (queued or running)."""
        return self.state in ("running", "queued")


@dataclass(frozen=True)
class StoredReport:
    """The day's report as the bucket holds it, with when it was written."""

    report: RunReport
    written_at: datetime | None


def field_of(source: Any, name: str) -> Any:
    """Return a field of a mapping or an object (None when absent)."""
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def instant(value: Any) -> datetime | None:
    """Return a datetime or an ISO 8601 text as a UTC datetime (None for anything else)."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str) and value:
        try:
            return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _text(value: Any) -> str:
    """Return an enum's value or anything else as text ('' for None)."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def run_facts(context: Mapping[str, Any]) -> RunFacts:
    """Return the run of a callback's context: a DAG callback's (``dag_run`` an object) or a deadline's (a dict)."""
    dag_run = context.get("dag_run") or {}
    conf = field_of(dag_run, "conf")
    return RunFacts(
        run_id=_text(field_of(dag_run, "run_id") or field_of(dag_run, "dag_run_id") or context.get("run_id")),
        run_type=_text(field_of(dag_run, "run_type")),
        state=_text(field_of(dag_run, "state")),
        logical_date=instant(field_of(dag_run, "logical_date") or context.get("logical_date")),
        run_after=instant(field_of(dag_run, "run_after")),
        start_date=instant(field_of(dag_run, "start_date")),
        conf=dict(conf) if isinstance(conf, Mapping) else {},
    )


def failed_task_ids(context: Mapping[str, Any]) -> list[str]:
    """Return the failed task the context names (the run's last failed task instance), if any."""
    ti = context.get("ti") or context.get("task_instance")
    task_id = field_of(ti, "task_id") if ti is not None else None
    if not task_id:
        return []
    map_index = field_of(ti, "map_index")
    return [f"{task_id}[{map_index}]" if isinstance(map_index, int) and map_index >= 0 else str(task_id)]


def dag_id_of(context: Mapping[str, Any]) -> str:
    """Return the id of the DAG a DAG callback's context names ('' when it names none)."""
    return str(field_of(context.get("dag"), "dag_id") or "")


def deadline_time(context: Mapping[str, Any]) -> datetime | None:
    """Return when the deadline a deadline callback's context names passed (None when it names none)."""
    return instant(field_of(context.get("deadline") or {}, "deadline_time"))
