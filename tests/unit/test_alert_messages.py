"""The alerts' facts and messages as pure functions: a callback's context read into facts, facts into a message."""

from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

from include.statistics_export.alert_facts import (
    RunFacts,
    StoredReport,
    dag_id_of,
    deadline_time,
    failed_task_ids,
    run_facts,
)
from include.statistics_export.alert_messages import (
    LISTED_SHOPS,
    REASON_CHARS,
    ReportOfRun,
    exported_after_all,
    failed_day_alert,
    missed_deadline_alert,
    report_of_run,
)
from include.statistics_export.report_schema import RunReport

DAY = date(2026, 11, 21)
MIDNIGHT = datetime(2026, 11, 21, tzinfo=timezone.utc)
STARTED = MIDNIGHT + timedelta(days=1, minutes=1)
RUN = RunFacts("scheduled__2026-11-22T00:00:00+00:00", "scheduled", "failed", MIDNIGHT, None, STARTED, {})


def stored(written_at: datetime = STARTED + timedelta(hours=1), **document) -> StoredReport:
    return StoredReport(RunReport.from_document({"date": DAY.isoformat(), **document}), written_at)


def test_a_dag_callbacks_context_and_a_deadlines_are_read_alike():
    dag_run = SimpleNamespace(
        run_id="manual__1", run_type=SimpleNamespace(value="manual"), state="failed", logical_date=MIDNIGHT,
        run_after=MIDNIGHT, start_date=STARTED, conf={"date": "2026-11-20"},
    )  # fmt: skip
    context = {"dag_run": dag_run, "ti": SimpleNamespace(task_id="export_product_batch", map_index=3)}
    facts = run_facts(context | {"dag": SimpleNamespace(dag_id="product_statistics_export")})
    assert (facts.run_id, facts.run_type, facts.day) == ("manual__1", "manual", date(2026, 11, 20))
    assert failed_task_ids(context) == ["export_product_batch[3]"] and failed_task_ids({}) == []
    assert (
        dag_id_of(context | {"dag": SimpleNamespace(dag_id="product_statistics_export")}) == "product_statistics_export"
    )
    # A deadline's context: the run as a dict of texts, the deadline's time beside it.
    deadline = {
        "dag_run": {"dag_run_id": "scheduled__x", "run_type": "backfill", "state": "running",
                    "logical_date": "2026-11-21T00:00:00Z"},
        "deadline": {"deadline_time": "2026-11-22T06:00:00+00:00"},
    }  # fmt: skip
    facts = run_facts(deadline)
    assert facts.run_id == "scheduled__x" and facts.day == DAY and facts.is_backfill and facts.unfinished
    assert deadline_time(deadline) == datetime(2026, 11, 22, 6, tzinfo=timezone.utc) and deadline_time({}) is None


def test_a_failed_day_names_each_failed_shop_with_its_reason_and_the_tasks_that_did_not_finish():
    report = stored(
        ok=False, shops=3, variants=12, files=24,
        failedShops={"shop_b": "b.example:\n token   rejected", "shop_a": "x" * 1000},
        failedTasks={"reconcile": "not checked"},
    )  # fmt: skip
    alert = failed_day_alert(RUN, ReportOfRun(report), ["report"], "product_statistics_export")
    assert alert.subject == "Statistics export 2026-11-21: 2 shop(s) failed"
    lines = alert.text.splitlines()
    assert lines[:4] == [
        "The statistics export of 2026-11-21 failed.",
        "Run: scheduled__2026-11-22T00:00:00+00:00 (product_statistics_export)",
        "Failed shops (2):",
        f"- shop_a: {'x' * REASON_CHARS}",
    ]
    assert "- shop_b: b.example: token rejected" in lines and "Did not finish: reconcile: not checked" in lines
    assert "Report statistic-exports/_runs/20261121.json: 3 shop(s), 12 variant(s), 24 file(s)." in lines
    assert lines[-2:] == [
        "Failed task: report",
        "Retry: clear the run's failed tasks, or trigger the day again with the date param.",
    ]


def test_a_fleet_wide_failure_lists_the_first_shops_and_counts_the_rest():
    failed = {f"shop_{n:03d}": "token rejected" for n in range(LISTED_SHOPS + 7)}
    text = failed_day_alert(RUN, ReportOfRun(stored(failedShops=failed)), []).text
    assert text.count("\n- shop_") == LISTED_SHOPS and "- ... and 7 more (the report lists them all)" in text


def test_without_the_runs_report_the_message_says_why():
    def absent() -> None:
        return None

    def broken() -> StoredReport:
        raise ConnectionError("bucket down")

    found = report_of_run(DAY, RUN, absent, "the run failed before writing it")
    assert found.stored is None and found.missing_why == (
        "No report of the day is in the bucket (statistic-exports/_runs/20261121.json): the run failed before "
        "writing it."
    )
    assert report_of_run(DAY, RUN, broken, "").missing_why == (
        "The day's report could not be read from the bucket (ConnectionError)."
    )
    earlier = stored(written_at=STARTED - timedelta(hours=2), failedShops={"shop_old": "old"})
    found = report_of_run(DAY, RUN, lambda: earlier, "")
    assert found.stored is None and "written at 2026-11-21 22:01 UTC, before this run started" in found.missing_why
    alert = failed_day_alert(RUN, found, ["plan_fleet"])
    assert alert.subject == "Statistics export 2026-11-21: the run failed" and "shop_old" not in alert.text
    # A deadline asks for any run's report of the day, whenever written.
    assert report_of_run(DAY, RUN, lambda: earlier, "", since_run_start=False).stored is earlier


def test_a_late_day_names_its_deadline_and_a_day_exported_after_all_is_not_late():
    deadline = datetime(2026, 11, 22, 6, tzinfo=timezone.utc)
    running = RunFacts("scheduled__x", "scheduled", "running", MIDNIGHT, None, None, {})
    late = missed_deadline_alert(running, deadline, ReportOfRun(None, "No report of the day is in the bucket."))
    assert late.subject == "Statistics export 2026-11-21: not exported by 2026-11-22 06:00 UTC"
    assert late.text.splitlines() == [
        "The statistics export of 2026-11-21 has not succeeded by 2026-11-22 06:00 UTC.",
        "Run: scheduled__x, running.",
        "No report of the day is in the bucket.",
    ]
    assert missed_deadline_alert(running, None, ReportOfRun(stored())).subject.endswith("not exported by its deadline")
    assert exported_after_all(ReportOfRun(stored(ok=True)))
    assert not exported_after_all(ReportOfRun(stored(failedTasks={"reconcile": "x"})))
    assert not exported_after_all(ReportOfRun(None, "absent"))
