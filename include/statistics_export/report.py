"""The day's report built from what the run's tasks handed over: what each shop exported, how its numbers
reconcile, which shops failed and why, and a run of some shops merged into the day's report.

The report's document (its keys, its typed form ``RunReport``) is ``report_schema``'s. It is logged, returned by
the last task, and written to ``keys.report_key(day)``. The task ids whose failures say why a shop failed are
the task layer's (``FailureSteps``, passed in): no task id is spelled here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from include.statistics_export import pixel_health
from include.statistics_export.currencies import cap_note
from include.statistics_export.handoffs import BatchPlan, BatchResult, ShopPlan, ShopRef, ShopUnit, UnitResult
from include.statistics_export.reconcile import ShopReconciliation
from include.statistics_export.report_schema import (
    PIXEL_HEALTH,
    SUMMARY,
    RunReport,
    ShopFigures,
)

# The figures of a batch summed into its shop's line (ShopFigures' fields of the same names).
_SUMMED = ("products", "variants", "files", "files_unchanged", "images_backed_up", "images_failed", "seconds")


@dataclass(frozen=True)
class Unfinished:
    """Which listed shops never planned and which planned batches never finished, by their map index."""

    shops: list[int]
    batches: list[int]


def unfinished(
    shops: Sequence[ShopRef], plans: Sequence[ShopPlan], batches: Sequence[BatchPlan], results: Sequence[BatchResult]
) -> Unfinished:
    """Compare what was listed and planned with what was planned and exported."""
    planned = {plan.shop_id for plan in plans}
    done = {(r.shop_id, r.batch) for r in results}
    return Unfinished(
        shops=[n for n, shop in enumerate(shops) if shop.shop_id not in planned],
        batches=[n for n, batch in enumerate(batches) if (batch.shop_id, batch.index) not in done],
    )


def summarize_run(
    day: str,
    shops: Sequence[ShopRef],
    plans: Sequence[ShopPlan],
    batches: Sequence[BatchPlan],
    results: Sequence[BatchResult],
    reconciliations: Sequence[ShopReconciliation] = (),
    reasons: dict[str, str] | None = None,
) -> RunReport:
    """Compare what was listed, planned, exported and reconciled; whatever is missing or differs failed.

    ``reasons`` maps a shop id to why its task failed, when the failing task said.
    """
    reasons = reasons or {}
    report = RunReport(date=day, shops=len(shops))
    missing = unfinished(shops, plans, batches, results)
    for n in missing.shops:
        shop = shops[n]
        report.failed_shops[shop.shop_id] = (
            f"{shop.shop_domain}: {reasons.get(shop.shop_id) or 'reading its catalog failed'}"
        )
    for n in missing.batches:
        batch = batches[n]
        why = reasons.get(batch.shop_id) or "see its task log"
        report.failed_shops.setdefault(
            batch.shop_id, f"{batch.shop_domain}: batch {batch.index}/{batch.count} failed: {why}"
        )
    per_shop: dict[str, ShopFigures] = defaultdict(ShopFigures)
    for r in results:
        figures = per_shop[r.shop_id]
        for name in _SUMMED:
            setattr(figures, name, getattr(figures, name) + getattr(r, name))
        figures.batches += 1
        figures.skipped_products += len(r.missing_products)
        report.products += r.products
        report.variants += r.variants
        report.files += r.files
        report.files_unchanged += r.files_unchanged
        report.images_backed_up += r.images_backed_up
        report.images_failed += r.images_failed
        report.skipped_products += len(r.missing_products)
    for plan in plans:
        figures = per_shop[plan.shop_id]
        figures.catalog_read = plan.mode
        figures.catalog_note = plan.note or ""
        figures.revenue_cap_note = (cap_note(plan.batches[0].currency) if plan.batches else None) or ""
    report.per_shop = dict(per_shop)
    for reconciliation in reconciliations:
        shop_id = reconciliation.shop_id
        report.reconciliation[shop_id] = reconciliation.document()
        report.rejected_events += sum(reconciliation.rejected_events.values())
        if not reconciliation.ok:
            report.failed_shops.setdefault(shop_id, "; ".join(reconciliation.differences))
    return report


@dataclass(frozen=True)
class FailureSteps:
    """The task ids whose failures say why a shop failed, as the DAG names its tasks (the task layer's ids)."""

    # A shop alone's steps, in order: the first whose failure left a reason says why the shop failed.
    shop_steps: tuple[str, ...]
    batch: str
    unit: str


@dataclass(frozen=True)
class DayOutcome:
    """Everything the day's shops did, whichever path they took, and why each failed shop failed."""

    plans: list[ShopPlan]
    results: list[BatchResult]
    reasons: dict[str, str]


def collect_failures(
    alone: Sequence[ShopRef],
    plans: Sequence[ShopPlan],
    batches: Sequence[BatchPlan],
    results: Sequence[BatchResult],
    units: Sequence[ShopUnit],
    unit_outcomes: Sequence[UnitResult],
    moved_outcomes: Sequence[UnitResult],
    reason_of: Callable[[str, int], str | None],
    steps: FailureSteps,
) -> DayOutcome:
    """Merge the shops alone's, the packed units' and the moved shops' plans and results, and say why each
    failed shop failed: ``reason_of(task_id, map_index)`` is the reason a failed task instance left, asked of
    the ``steps``."""
    reasons: dict[str, str] = {}
    missing = unfinished(alone, plans, batches, results)
    for index in missing.shops:
        for task_id in steps.shop_steps:
            reason = reason_of(task_id, index)
            if reason:
                reasons[alone[index].shop_id] = f"{task_id.split('.')[-1]}: {reason}"
                break
    for index in missing.batches:
        reason = reason_of(steps.batch, index)
        if reason:
            reasons.setdefault(batches[index].shop_id, reason)
    merged_plans, merged_results = list(plans), list(results)
    for outcome in [*unit_outcomes, *moved_outcomes]:
        reasons.update(outcome.failures)
        merged_plans += outcome.plans
        merged_results += outcome.results
    finished = {outcome.index for outcome in unit_outcomes}
    for index, unit in enumerate(units):
        if unit.index not in finished:  # failed as a whole (its connection, a crash): its reason stands for each shop
            reason = reason_of(steps.unit, index)
            reasons.update({shop.shop_id: f"{steps.unit}: {reason}" for shop in unit.shops if reason})
    return DayOutcome(merged_plans, merged_results, reasons)


def merge_into_day(previous: RunReport | None, current: RunReport, *, whole_shops: bool) -> RunReport:
    """Return the day's report once a run of some of its shops (``current``: a retry with ``shop_ids``, or a run
    of ``product_ids``) is merged into the report the day had (``previous``, None when it had none).

    ``whole_shops``: the run exported its shops whole, so their entries (figures, reconciliation, failure, size)
    replace the earlier ones. Otherwise (some products only) the shops' figures stay what the day had, and only a
    failure of the run is recorded; a shop the day has no figures of is failed, since some of its products are not
    its day. The other shops' entries are kept, the totals and ``ok`` recomputed from the merged whole, and the
    pixel health merged shop by shop.
    """
    if previous is None and whole_shops:
        return current
    shops = current.listed()
    if previous is None:  # some products of shops the day has nothing of: none of their figures is the day's
        previous = RunReport.from_document(current.document())
        for entries in (previous.per_shop, previous.failed_shops, previous.reconciliation):
            for shop_id in shops:
                entries.pop(shop_id, None)
    merged = RunReport.from_document(previous.document())
    if whole_shops:
        for entries in (merged.per_shop, merged.failed_shops, merged.reconciliation):
            for shop_id in shops:
                entries.pop(shop_id, None)
        merged.per_shop.update(current.per_shop)
        merged.failed_shops.update(current.failed_shops)
        merged.reconciliation.update(current.reconciliation)
        merged.shop_sizes.update({shop_id: size for shop_id, size in current.shop_sizes.items() if shop_id in shops})
    else:
        merged.failed_shops.update(current.failed_shops)
        for shop_id in sorted(shops - merged.listed()):
            merged.failed_shops[shop_id] = (
                f"{shop_id}: only some of its products were exported for {merged.date}: run the day, or the shop "
                "(shop_ids), whole"
            )
    merged.failed_tasks.update(current.failed_tasks)
    for name, section in current.sections.items():
        merged.sections.setdefault(name, section)
    earlier, now = (previous.sections.get(PIXEL_HEALTH), current.sections.get(PIXEL_HEALTH))
    if earlier and now and pixel_health.checked(earlier) and pixel_health.checked(now):
        health = pixel_health.merged_pixel_health(merged.date, earlier, now)
        merged.sections[PIXEL_HEALTH] = {SUMMARY: health.text(), **health.document()}
    merged.section_lines = [str(section[SUMMARY]) for section in merged.sections.values()]
    merged.recount()
    return merged
