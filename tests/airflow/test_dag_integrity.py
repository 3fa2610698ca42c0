"""The DAG imports cleanly and has the contract's shape: schedule, catchup, params, mapping, trigger rules."""

import pytest

from include.statistics_export.utc import export_day


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder="dags")


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["product_statistics_export"]


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == ["product_statistics_export", "shop_data_redaction", "statistics_retention"]


def test_the_redaction_is_triggered_per_shop_and_never_scheduled(dagbag):
    redaction = dagbag.dags["shop_data_redaction"]
    assert type(redaction.timetable).__name__ == "NullTimetable" and not redaction.catchup
    assert [t.task_id for t in redaction.tasks] == ["erase_shop_data"]
    assert set(redaction.params) == {"shop_id", "force"} and redaction.params["force"] is False


def test_the_retention_runs_for_the_export_days_latest_only(dagbag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    retention = dagbag.dags["statistics_retention"]
    assert isinstance(retention.timetable, CronDataIntervalTimetable) and retention.timetable._expression == "0 0 * * *"
    assert not retention.catchup and retention.max_active_runs == 1
    assert [t.task_id for t in retention.tasks] == ["expire_days"]


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
        "claim_export_day",
        "link_sessions",
        "list_active_shops",
        "plan_fleet",
        "batch_sizing",
        "shops_alone",
        "packed_units",
        "export_shop_unit",
        "moved_shops",
        "export_moved_shop",
        "shop.start_catalog_read",
        "shop.wait_for_catalog",
        "shop.plan_shop_batches",
        "collect_batches",
        "export_product_batch",
        "reconcile",
        "report",
        "clean_staging",
        "check_pixel_health",
    }
    # Unlinked sessions are linked before the shops are listed, so a linked shop is exported in the same run;
    # the pixel check and the links feed the report (both only inform: their task bodies never raise).
    assert tasks["list_active_shops"].upstream_task_ids == {"link_sessions"}
    # One day, one writer: everything after the day is fixed waits for this run's claim of it, and the claim
    # waits without holding a worker slot.
    assert tasks["claim_export_day"].upstream_task_ids == {"resolve_export_day"}
    assert tasks["link_sessions"].upstream_task_ids == {"claim_export_day"}
    assert tasks["claim_export_day"].mode == "reschedule"
    assert {"link_sessions", "check_pixel_health"} <= tasks["report"].upstream_task_ids
    # One shop's failure must not stop the other shops' batches; reconcile and report must run to fail the run.
    for name in ("collect_batches", "reconcile", "report"):
        assert tasks[name].trigger_rule == "all_done"
    assert tasks["export_product_batch"].upstream_task_ids == {"collect_batches"}
    # The fleet is planned once; shops alone go through the task group, small shops through packed units,
    # and reconcile waits for the units (they hand their results over by XCom key, not as an argument).
    assert tasks["shop.start_catalog_read"].upstream_task_ids == {"shops_alone"}
    # How a shop alone cuts its catalog is a record of its own, handed as an argument (no side-channel XCom key).
    assert tasks["shop.plan_shop_batches"].upstream_task_ids == {
        "shop.wait_for_catalog",
        "batch_sizing",
        "resolve_export_day",
    }
    assert tasks["export_shop_unit"].upstream_task_ids == {"packed_units", "resolve_export_day"}
    # A large shop's first step is queued before any unit: the units cannot take every slot ahead of it.
    assert tasks["packed_units"].upstream_task_ids == {"plan_fleet", "shops_alone"}
    assert "export_shop_unit" in tasks["reconcile"].upstream_task_ids
    # A shop found large in its unit leaves it: it is exported alone once the units are done, before reconcile.
    assert tasks["moved_shops"].upstream_task_ids == {"export_shop_unit"}
    assert tasks["moved_shops"].trigger_rule == "all_done"
    assert tasks["export_moved_shop"].upstream_task_ids == {"moved_shops", "resolve_export_day"}
    assert "export_moved_shop" in tasks["reconcile"].upstream_task_ids
    assert tasks["export_shop_unit"].map_index_template == "{{ unit_label }}"
    # Staging is cleaned only after a day that fully succeeded (a cleared shop still needs it otherwise).
    assert tasks["clean_staging"].trigger_rule == "all_success"
    assert tasks["clean_staging"].upstream_task_ids == {"report", "resolve_export_day"}
    assert [t.task_id for t in dag.leaves] == ["clean_staging"]
    # A free slot goes to a shop alone's steps towards its batches, then to packed units (long), then batches.
    chain = ("shop.start_catalog_read", "shop.wait_for_catalog", "shop.plan_shop_batches", "collect_batches")
    weight = {name: tasks[name].priority_weight for name in (*chain, "export_shop_unit", "export_product_batch")}
    assert {tasks[name].weight_rule for name in weight} == {"absolute"}
    assert min(weight[name] for name in chain) > weight["export_shop_unit"] > weight["export_product_batch"]


def test_the_bulk_wait_frees_its_worker_slot_between_polls(dag):
    sensor = dag.get_task("shop.wait_for_catalog")
    assert sensor.mode == "reschedule"
    assert sensor.map_index_template == "{{ shop_label }}"


def test_scheduled_run_for_day_d_exports_day_d():
    from datetime import date, datetime, timezone

    from airflow.timetables.base import DataInterval
    from airflow.timetables.interval import CronDataIntervalTimetable

    timetable = CronDataIntervalTimetable("0 0 * * *", timezone="UTC")
    interval = DataInterval(datetime(2026, 11, 21, tzinfo=timezone.utc), datetime(2026, 11, 22, tzinfo=timezone.utc))
    logical = timetable.infer_manual_data_interval(run_after=interval.end).start
    assert export_day(None, logical, interval.end) == date(2026, 11, 21)


def test_a_failed_run_is_notified_and_a_late_day_raises_the_deadline_alert(dag):
    from datetime import datetime, timedelta, timezone

    from airflow.sdk.definitions.callback import SyncCallback
    from airflow.sdk.definitions.deadline import DeadlineReference
    from airflow.serialization.serialized_objects import DagSerialization

    from include.statistics_export import settings as export_settings
    from include.statistics_export.tasks import alerts

    callbacks = dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
    assert callbacks == [alerts.notify_failed_day]
    (deadline,) = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    # Day D's run (logical date D 00:00) must have succeeded by D+1 00:00 + STATISTICS_EXPORT_DEADLINE_HOURS.
    assert deadline.reference == DeadlineReference.DAGRUN_LOGICAL_DATE
    assert deadline.interval == timedelta(days=1, hours=export_settings.load().deadline_hours)
    day_d, default = datetime(2026, 11, 21, tzinfo=timezone.utc), alerts.deadline_interval(export_settings.Settings())
    assert default == timedelta(hours=30) and day_d + default == datetime(2026, 11, 22, 6, tzinfo=timezone.utc)
    # Run on the executor (no triggerer needed), imported by path where it runs.
    assert isinstance(deadline.callback, SyncCallback)
    assert deadline.callback.path == "include.statistics_export.tasks.alerts.day_missed_deadline"
    # The scheduler gets both from the serialized DAG.
    serialized = DagSerialization.to_dict(dag)["dag"]
    assert serialized.get("has_on_failure_callback") is True
    assert "day_missed_deadline" in str(serialized["deadline"])
    # Left out only by its explicit setting (for `airflow dags test`: 3.3.2's fails a successful run that has one).
    assert alerts.export_deadline(export_settings.load({"STATISTICS_EXPORT_DEADLINE_ALERT": "off"})) is None


def test_the_dags_shape_never_depends_on_the_command_line_that_parses_it(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setattr("sys.argv", ["/venv/bin/airflow", "dags", "test", "product_statistics_export", "2026-11-21"])
    monkeypatch.delenv("STATISTICS_EXPORT_DEADLINE_ALERT", raising=False)
    assert DagBag(dag_folder="dags").dags["product_statistics_export"].deadline
    monkeypatch.setenv("STATISTICS_EXPORT_DEADLINE_ALERT", "off")
    assert not DagBag(dag_folder="dags").dags["product_statistics_export"].deadline


def test_without_a_start_date_the_dag_does_not_load_and_names_the_variable(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("STATISTICS_EXPORT_START_DATE", raising=False)
    refused = DagBag(dag_folder="dags")
    # No export DAG, so no run for a day nobody chose; the redaction and the retention (no catchup) still load.
    assert sorted(refused.dag_ids) == ["shop_data_redaction", "statistics_retention"]
    ((path, error),) = refused.import_errors.items()
    assert path.endswith("product_statistics_export.py")
    assert "STATISTICS_EXPORT_START_DATE is not set: set it to the first day (UTC, YYYY-MM-DD) the DAG exports" in error

    monkeypatch.setenv("STATISTICS_EXPORT_START_DATE", "2026-12-01")
    monkeypatch.setenv("STATISTICS_EXPORT_CATCHUP", "off")
    monkeypatch.setenv("STATISTICS_EXPORT_MAX_ACTIVE_RUNS", "5")
    dag = DagBag(dag_folder="dags").dags["product_statistics_export"]
    assert (dag.start_date.isoformat(), dag.catchup, dag.max_active_runs) == ("2026-12-01T00:00:00+00:00", False, 5)


def test_the_task_ids_the_report_asks_why_a_shop_failed_are_the_dags(dag):
    from include.statistics_export.tasks import task_ids

    steps = task_ids.FAILURE_STEPS
    assert {*steps.shop_steps, steps.batch, steps.unit, task_ids.EXPORT_MOVED_SHOP} <= set(dag.task_ids)
    assert steps.shop_steps == ("shop.start_catalog_read", "shop.wait_for_catalog", "shop.plan_shop_batches")


def test_the_example_cluster_policy_puts_every_shopify_calling_task_of_the_real_dag_in_the_shopify_pool(dag):
    import copy

    from include.airflow_local_settings import SHOPIFY_POOL, task_policy
    from include.statistics_export.tasks import task_ids

    pools = {}
    for task in dag.tasks:
        applied = copy.copy(task)
        task_policy(applied)
        pools[task.task_id] = applied.pool
    shopify = {task_id for task_id, pool in pools.items() if pool == SHOPIFY_POOL}
    assert shopify == set(task_ids.SHOPIFY_TASKS)  # each one a real task id of the DAG, none missed
    assert {pool for task_id, pool in pools.items() if task_id not in shopify} == {"default_pool"}
    assert {"shop.start_catalog_read", "export_shop_unit", "export_moved_shop"} <= shopify
