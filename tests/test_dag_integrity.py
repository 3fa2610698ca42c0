"""The DAG imports cleanly and has the contract's shape: schedule, catchup, params, mapping, trigger rules."""

import pytest

from include.statistics_export.days import export_day


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder="dags")


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["product_statistics_export"]


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert list(dagbag.dag_ids) == ["product_statistics_export"]


def test_schedule_is_daily_at_midnight_utc_with_data_intervals(dag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable._expression == "0 0 * * *"
    assert str(dag.timetable._timezone) in ("UTC", "Timezone('UTC')")
    assert dag.catchup is True


def test_params_of_a_manual_run(dag):
    assert set(dag.params.keys()) == {"date", "shop_ids", "product_ids"}
    assert dag.params["date"] is None and dag.params["shop_ids"] == []


def test_flow_and_trigger_rules(dag):
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {
        "resolve_export_day",
        "list_active_shops",
        "plan_shop_batches",
        "collect_batches",
        "export_product_batch",
        "summarize",
    }
    # One shop's failed planning must not stop the other shops' batches, and the summary must run to fail the run.
    assert tasks["collect_batches"].trigger_rule == "all_done"
    assert tasks["summarize"].trigger_rule == "all_done"
    assert tasks["export_product_batch"].upstream_task_ids == {"collect_batches"}
    assert [t.task_id for t in dag.leaves] == ["summarize"]


def test_scheduled_run_for_day_d_exports_day_d():
    from datetime import date, datetime, timezone

    from airflow.timetables.base import DataInterval
    from airflow.timetables.interval import CronDataIntervalTimetable

    timetable = CronDataIntervalTimetable("0 0 * * *", timezone="UTC")
    interval = DataInterval(datetime(2026, 11, 21, tzinfo=timezone.utc), datetime(2026, 11, 22, tzinfo=timezone.utc))
    logical = timetable.infer_manual_data_interval(run_after=interval.end).start
    assert export_day(None, logical, interval.end) == date(2026, 11, 21)
