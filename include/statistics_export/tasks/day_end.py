"""The day's end: reconcile each shop, check pixel health, write the report, clean the run's staging."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import closing
from datetime import date
from typing import Any

from export_hooks.r2 import R2Hook
from include.statistics_export import fleet
from include.statistics_export import settings as settings_table
from include.statistics_export.connections import app_db
from include.statistics_export.day_claims import DayWriter, day_fence
from include.statistics_export.errors import (
    DayFailed,
)
from include.statistics_export.handoffs import (
    BatchResult,
    DayFigures,
    FleetPlan,
    ReportSection,
    ShopPlan,
    ShopRef,
)
from include.statistics_export.keys import EXPORTS_ROOT, report_key
from include.statistics_export.pixel_health import PixelHealth, pixel_health
from include.statistics_export.reconcile import ShopCheck, ShopReconciliation, reconcile_shops
from include.statistics_export.report import merge_into_day, summarize_run
from include.statistics_export.report_redaction import report_without_shop
from include.statistics_export.report_schema import PIXEL_HEALTH, SESSION_LINKS, TOKENS, RunReport
from include.statistics_export.settings import Settings
from include.statistics_export.shop_fence import redacted_among, reports_fence
from include.statistics_export.shop_sizes import store_sizes
from include.statistics_export.staging import clean_staging
from include.statistics_export.tasks.day_start import (
    list_active_shops,
    previous_sizes,
    report_section,
)
from include.statistics_export.tasks.runtime import day_outcome
from include.statistics_export.totals import sum_totals

log = logging.getLogger(__name__)

# The informative sections every day's report holds (each noted as not finished when its task failed).
REPORT_SECTIONS = (SESSION_LINKS, TOKENS, PIXEL_HEALTH)


def reconcile_day(
    day: date, plans: Sequence[ShopPlan], results: Sequence[BatchResult], settings: Settings
) -> list[ShopReconciliation]:
    """Reconcile every shop whose batches all finished: files, rows, events and catalog must agree.

    A product deleted from Shopify during the run leaves the planned variant count behind: such a shop's
    catalog count is the variants its batches found (the deletion is in the report as skipped products).
    """
    finished: dict[str, list[BatchResult]] = {}
    for result in results:
        finished.setdefault(result.shop_id, []).append(result)
    checks = []
    for plan in plans:
        shop_results = finished.get(plan.shop_id, [])
        if len(shop_results) != len(plan.batches):
            continue  # a failed batch already fails the shop; its numbers cannot agree
        files = sum_totals(r.file_totals for r in shop_results)
        skipped = any(r.missing_products for r in shop_results)
        parts = [r.parquet_totals for r in shop_results]
        parquet = sum_totals(p for p in parts if p is not None) if all(p is not None for p in parts) else None
        currency = plan.batches[0].currency if plan.batches else None
        checks.append(ShopCheck(plan.shop_id, files.variants if skipped else plan.variants, files, currency, parquet))
    with app_db() as conn:
        reconciliations = reconcile_shops(conn, day, checks, max_revenue=settings.max_event_revenue)
    for reconciliation in reconciliations:
        for difference in reconciliation.differences:
            log.error("%s", difference)
    return reconciliations


def check_pixel_health(day: date, shops: Sequence[ShopRef]) -> ReportSection:
    """Read every listed shop's pixel health for the day and log it; never raise (it only informs)."""

    def read() -> PixelHealth:
        with app_db() as conn:
            return pixel_health(conn, shops, day)

    return report_section(PIXEL_HEALTH, f"Pixel health of {day}: not checked", read, lambda health: bool(health.silent))


def add_report_sections(
    report: RunReport, sections: Sequence[ReportSection], expected: Sequence[str] = REPORT_SECTIONS
) -> RunReport:
    """Add the informative sections (session links, tokens, pixel health) to the day's report; an expected one
    that is missing (its task failed) is noted as such."""
    given = {section.name: section for section in sections}
    for name in expected:
        section = given.get(name) or ReportSection(
            name, {"error": "its task did not finish"}, f"{name}: its task did not finish"
        )
        report.add_section(name, section.document, section.line)
    return report


def carry_sizes(report: RunReport, measured: bool = True) -> RunReport:
    """Keep in the day's report every shop's last measured size, carried over the days it failed; ``measured``
    False (a run of some products only) measures no shop by what it exported."""
    previous = previous_sizes(date.fromisoformat(report.date)) or {}
    report.shop_sizes = fleet.carried_sizes(previous, report.per_shop if measured else {}, report.failed_shops)
    return report


def stored_day_report(day: date) -> RunReport | None:
    """Return the day's report as the bucket holds it (an earlier run's), or None when there is none."""
    try:
        with closing(R2Hook().open_object(report_key(day))) as body:
            return RunReport.from_document(json.load(body))
    except FileNotFoundError:
        return None


def report_day(
    day: str,
    shops: Sequence[ShopRef] | None,
    fleet_plan: FleetPlan | None,
    plans: Sequence[ShopPlan],
    results: Sequence[BatchResult],
    reconciliations: Sequence[ShopReconciliation] | None,
    sections: Sequence[ReportSection],
    writer: DayWriter,
    ti: Any,
    shop_ids: Sequence[str] | None = None,
    product_ids: Sequence[str] | None = None,
) -> DayFigures:
    """Report the day from what every task of the run handed over, whatever happened upstream, and fail it unless
    it is whole (``finish_day``).

    A task that handed over nothing (``None``) failed: without the day's shops (``list_active_shops``) nothing is
    reported at all; without the plan or the reconciliation the day is reported failed, naming the task. The
    batches each shop alone was to export come from its plan, not from what reached ``collect_batches``. A run of
    some shops or products is merged into the day's report, which must then cover every active shop.
    """
    if shops is None:
        raise DayFailed(
            f"Day {day}: list_active_shops did not finish, so the day's shops are unknown: no report is written "
            "and the day is not exported"
        )
    batches = [batch for plan in plans for batch in plan.batches]  # the shops alone's, in their map order
    planned = fleet_plan or FleetPlan([], [], 0)
    outcome = day_outcome(ti, planned.single, plans, batches, results, planned.units)
    summary = summarize_run(
        day, shops, outcome.plans, batches, outcome.results, list(reconciliations or []), outcome.reasons
    )
    if fleet_plan is None:
        summary.failed_tasks["plan_fleet"] = "the day's shops were not planned"
    if reconciliations is None:
        summary.failed_tasks["reconcile"] = "the day's files, rows, events and catalog were not checked"
    add_report_sections(summary, sections)
    carry_sizes(summary, measured=not product_ids)
    if shop_ids or product_ids:
        summary = merge_into_day(stored_day_report(writer.day), summary, whole_shops=not product_ids)
        require_every_shop(summary, list_active_shops())
    summary.paused_shops = list(settings_table.load().paused_shops)
    return finish_day(summary, writer)


def require_every_shop(report: RunReport, active: Sequence[ShopRef]) -> None:
    """Mark failed every active shop the day's report does not cover (its runs exported some shops only)."""
    covered = report.listed()
    for shop in active:
        if shop.shop_id not in covered:
            report.failed_shops[shop.shop_id] = (
                f"{shop.shop_domain}: not exported for {report.date}: the day's runs covered some shops only "
                "(run the day whole, or with this shop in shop_ids)"
            )
    report.recount()


def write_report(report: RunReport) -> str:
    """Write the day's report to the bucket and return its key."""
    key = report_key(date.fromisoformat(report.date))
    R2Hook().put_object(key, report.json_bytes(), "application/json")
    return key


def finish_day(report: RunReport, writer: DayWriter) -> DayFigures:
    """Log and write the day's report; raise DayFailed naming every failed shop if any failed, else return the
    day's figures for its asset event (the report itself is in the bucket: megabytes have no place in an XCom)."""
    # The run holds the day until the report is written; no redaction rewrites the reports meanwhile, and a shop
    # erased since the day's shops were listed is taken out of the report first (shop_fence).
    with app_db() as conn, day_fence(conn, writer), reports_fence(conn, exclusive=False):
        report = without_redacted_shops(conn, report)
        conn.commit()
        log.info(report.text())
        log.info("Report written to %s", write_report(report))
        store_sizes(conn, writer.day, report.shop_sizes, writer.run_id)  # the next day's plan reads them
        conn.commit()
    if report.failed:
        raise DayFailed(report.failure_message())
    return exports_asset_extra(report)


def without_redacted_shops(conn: Any, report: RunReport) -> RunReport:
    """Return the report without the shops whose data was erased (shop/redact) while the day ran."""
    listed = report.listed() | set(report.shop_sizes) | set(report.paused_shops)
    for shop_id in sorted(redacted_among(conn, listed)):
        log.warning("Shop %s was redacted while the day ran: the report leaves it out", shop_id)
        report = RunReport.from_document(report_without_shop(report.document(), shop_id) or report.document())
    return report


def exports_asset_extra(report: RunReport) -> DayFigures:
    """Return what the day's asset event tells: where the files are and what the day's report counted."""
    return DayFigures(
        report.date,
        R2Hook().bucket,
        EXPORTS_ROOT,
        report.shops,
        report.variants,
        report.files,
        sorted(report.failed_shops),
    )


def clean_day_staging(writer: DayWriter) -> int:
    """Delete the run's own staged catalogs of its day (and staging written over a week ago)."""
    return clean_staging(R2Hook(), writer.day, writer.run_id)
