"""How the DAG's task bodies run under Airflow: records in and out, the one place a PermanentError fails a task
at once, each failure's reason left for the day's report, the labels of mapped instances, and the XComs the
report reads back."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

from airflow.configuration import conf
from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException

from include.statistics_export.day_claims import DayWriter
from include.statistics_export.errors import PermanentError, failure_reason
from include.statistics_export.fleet import moved_groups
from include.statistics_export.handoffs import (
    BatchPlan,
    BatchResult,
    ShopPlan,
    ShopRef,
    ShopUnit,
    UnitResult,
    decode_xcom,
    fit_label,
    handoff_task,
)
from include.statistics_export.report import DayOutcome, collect_failures
from include.statistics_export.tasks.task_ids import EXPORT_MOVED_SHOP, EXPORT_SHOP_UNIT, FAILURE_STEPS

FAILURE = "failure"
UNIT_RESULT = "unit_result"
# Only the shops a unit found large: moved_shops reads these few bytes, not every unit's whole result.
MOVED_SHOPS = "moved_shops"


def export_task(body: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a DAG task body: its arguments decoded into records by their annotations, its result encoded, and
    whatever fails leaves its reason in the XCom ``failure`` for the report; a PermanentError fails the task
    at once (no retry)."""
    typed = handoff_task(body)

    @functools.wraps(body)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return typed(*args, **kwargs)
        except PermanentError as exc:
            record_failure(failure_reason(exc))
            raise AirflowFailException(str(exc)) from None
        except Exception as exc:
            record_failure(failure_reason(exc))
            raise

    return run


def writer(day: str, run_id: str) -> DayWriter:
    """Return the run as the writer of its day (the day as the DAG's XCom carries it)."""
    return DayWriter(date.fromisoformat(day), run_id)


def map_limit() -> int:
    """Return Airflow's ``[core] max_map_length``: the most task instances a mapped task may have."""
    return conf.getint("core", "max_map_length")


def only(params: Mapping[str, Any], name: str) -> list[str] | None:
    """Return a list param as a filter: None when empty (everything)."""
    return list(params.get(name) or []) or None


def run_is_active(ti: Any, dag_id: str) -> Callable[[str], bool]:
    """Return whether a run of the DAG, by its id, is running (asked of Airflow's API).

    Running only, not queued: a holder cleared back to queued while runs waiting for its day fill
    ``max_active_runs`` could never start, and they would wait for it until their sensors time out. A queued run
    has no task writing (and a write still in flight holds the day's fence, which a takeover waits for); once it
    runs, it waits for the day in its turn.
    """

    def is_active(run_id: str) -> bool:
        return int(ti.get_dr_count(dag_id=dag_id, run_ids=[run_id], states=["running"])) > 0

    return is_active


def record_failure(reason: str) -> None:
    """Leave the reason of this task instance's failure where the report task finds it."""
    get_current_context()["ti"].xcom_push(key=FAILURE, value=reason)


def label(name: str, value: str) -> None:
    """Name this mapped task instance in the UI (its map_index_template reads the context)."""
    get_current_context()[name] = fit_label(value)


def push_outcome(ti: Any, outcome: UnitResult) -> None:
    """Leave what a unit (or a moved shop) did, whatever happens next: reconcile and the report read it."""
    ti.xcom_push(key=UNIT_RESULT, value=outcome.to_xcom())
    ti.xcom_push(key=MOVED_SHOPS, value=[shop.to_xcom() for shop in outcome.moved])


def pushed_outcomes(ti: Any, task_id: str) -> list[UnitResult]:
    """Return what every instance of a packed-unit task pushed, finished or failed."""
    pushed = ti.xcom_pull(task_ids=task_id, key=UNIT_RESULT) or []
    found = [pushed] if isinstance(pushed, dict) else [item for item in pushed if item]
    outcomes: list[UnitResult] = decode_xcom(found, list[UnitResult])
    return outcomes


def pushed_moved_shops(ti: Any) -> list[ShopUnit]:
    """Return the shops every packed unit found large on their first page (each unit pushes its own list), in
    groups that fit a mapped task (fleet.moved_groups)."""
    pushed = ti.xcom_pull(task_ids=EXPORT_SHOP_UNIT, key=MOVED_SHOPS) or []
    lists = [pushed] if pushed and isinstance(pushed[0], dict) else [item for item in pushed if item]
    moved: list[ShopRef] = decode_xcom([shop for shops in lists for shop in shops], list[ShopRef])
    return moved_groups(moved, map_limit())


def day_outcome(
    ti: Any,
    alone: Sequence[ShopRef],
    plans: Sequence[ShopPlan],
    batches: Sequence[BatchPlan],
    results: Sequence[BatchResult],
    units: Sequence[ShopUnit],
) -> DayOutcome:
    """Everything the day's shops did and why each failed shop failed, from the task instances' XComs."""

    def reason_of(task_id: str, map_index: int) -> str | None:
        reason: str | None = ti.xcom_pull(task_ids=task_id, key=FAILURE, map_indexes=map_index)
        return reason

    return collect_failures(
        alone,
        plans,
        batches,
        results,
        units,
        pushed_outcomes(ti, EXPORT_SHOP_UNIT),
        pushed_outcomes(ti, EXPORT_MOVED_SHOP),
        reason_of,
        FAILURE_STEPS,
    )
