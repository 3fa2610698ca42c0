"""The day's report: what each shop exported, how its numbers reconcile, and which shops failed and why.

It is logged, returned by the last task, and written to ``keys.report_key(day)``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from include.statistics_export.currencies import cap_note
from include.statistics_export.handoffs import BatchPlan, BatchResult, ShopPlan, ShopRef, ShopUnit, UnitResult
from include.statistics_export.pixel_health import merged_pixel_health

# The report's section of every listed shop's pixel health (tasks.check_pixel_health), merged shop by shop.
PIXEL_HEALTH = "pixelHealth"

_SUMMED = ("products", "variants", "files", "files_unchanged", "images_backed_up", "images_failed", "seconds")
# The document's own keys; any other key holding a dict with a "summary" is a section another task added.
_DOCUMENT_KEYS = frozenset(
    {
        "date", "ok", "shops", "products", "variants", "files", "filesUnchanged", "imagesBackedUp", "imagesFailed",
        "skippedProducts", "rejectedEvents", "failedShops", "failedTasks", "perShop", "reconciliation", "shopSizes",
    }
)  # fmt: skip


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


@dataclass
class RunReport:
    """Totals of one run, the shops that did not finish, and each shop's reconciliation."""

    date: str
    shops: int
    products: int = 0
    variants: int = 0
    files: int = 0
    files_unchanged: int = 0
    images_backed_up: int = 0
    images_failed: int = 0
    missing_products: int = 0
    rejected_events: int = 0
    failed_shops: dict[str, str] = field(default_factory=dict)
    # Tasks of the day that did not finish and whose failure is not one shop's (reconcile): the day is not whole.
    failed_tasks: dict[str, str] = field(default_factory=dict)
    per_shop: dict[str, dict[str, Any]] = field(default_factory=dict)
    reconciliation: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Sections other tasks add (pixel health, session links), each with the one-line summary it logs.
    # They inform and never fail the day.
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    section_lines: list[str] = field(default_factory=list)
    # Every shop's last measured size, carried forward (fleet.carried_sizes): how the next day packs its shops.
    shop_sizes: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_section(self, name: str, document: dict[str, Any], line: str) -> None:
        """Add a section to the report's document and its line to the report's text."""
        self.sections[name] = {"summary": line, **document}
        self.section_lines.append(line)

    @property
    def failed(self) -> bool:
        """Tell whether any shop failed to plan, export a batch, or reconcile, or a task of the day did not finish."""
        return bool(self.failed_shops or self.failed_tasks)

    def failure_message(self) -> str:
        """Return one line naming every failed task and shop and why."""
        tasks = "".join(f"{task} did not finish: {why}; " for task, why in sorted(self.failed_tasks.items()))
        details = "; ".join(f"{shop}: {why}" for shop, why in sorted(self.failed_shops.items()))
        return f"{tasks}{len(self.failed_shops)} shop(s) failed for {self.date}" + (f": {details}" if details else "")

    def listed(self) -> set[str]:
        """Return the shops the report covers: each listed shop was either planned (its figures) or failed."""
        return set(self.per_shop) | set(self.failed_shops)

    def recount(self) -> None:
        """Set the day's totals from its shops' figures and reconciliations (after a merge)."""
        figures = self.per_shop.values()
        self.shops = len(self.listed())
        for name, key in (
            ("products", "products"),
            ("variants", "variants"),
            ("files", "files"),
            ("files_unchanged", "files_unchanged"),
            ("images_backed_up", "images_backed_up"),
            ("images_failed", "images_failed"),
            ("missing_products", "missing_products"),
        ):
            setattr(self, name, int(sum(shop.get(key, 0) for shop in figures)))
        self.rejected_events = int(
            sum(sum(document.get("rejectedEvents", {}).values()) for document in self.reconciliation.values())
        )

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> RunReport:
        """Rebuild a report from the document it wrote (the day's report in the bucket)."""
        report = cls(date=str(document["date"]), shops=int(document.get("shops", 0)))
        report.failed_shops = dict(document.get("failedShops") or {})
        report.failed_tasks = dict(document.get("failedTasks") or {})
        report.per_shop = {shop: dict(figures) for shop, figures in (document.get("perShop") or {}).items()}
        report.reconciliation = dict(document.get("reconciliation") or {})
        report.shop_sizes = dict(document.get("shopSizes") or {})
        for name, section in document.items():
            if name not in _DOCUMENT_KEYS and isinstance(section, Mapping) and "summary" in section:
                report.sections[name] = dict(section)
                report.section_lines.append(str(section["summary"]))
        report.recount()
        return report

    def document(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "date": self.date,
            "ok": not self.failed,
            "shops": self.shops,
            "products": self.products,
            "variants": self.variants,
            "files": self.files,
            "filesUnchanged": self.files_unchanged,
            "imagesBackedUp": self.images_backed_up,
            "imagesFailed": self.images_failed,
            "skippedProducts": self.missing_products,
            "rejectedEvents": self.rejected_events,
            "failedShops": self.failed_shops,
            "failedTasks": self.failed_tasks,
            "perShop": self.per_shop,
            "reconciliation": self.reconciliation,
            "shopSizes": self.shop_sizes,
            **self.sections,
        }

    def json_bytes(self) -> bytes:
        """Return the report file's bytes: compact JSON (a day of 10,000 shops is megabytes; indenting it made it
        80% larger and took Python's slower encoder, 5 times the time; ``jq .`` indents it for reading)."""
        document = self.document()
        return (json.dumps(document, sort_keys=True, default=str, separators=(",", ":")) + "\n").encode("utf-8")

    def text(self) -> str:
        """Return a short human summary for the task log."""
        return (
            (
                f"Export of {self.date}: {self.shops} shop(s), {self.products} products, {self.variants} variants, "
                f"{self.files} files ({self.files_unchanged} unchanged), {self.images_backed_up} images backed up, "
                f"{self.images_failed} image failures, {self.missing_products} skipped products, "
                f"{self.rejected_events} rejected events, {len(self.failed_shops)} failed shop(s)"
            )
            + "".join(f"\n{task} did not finish: {why}" for task, why in sorted(self.failed_tasks.items()))
            + "".join(f"\n{line}" for line in self.section_lines)
        )


def summarize_run(
    day: str,
    shops: Sequence[ShopRef],
    plans: Sequence[ShopPlan],
    batches: Sequence[BatchPlan],
    results: Sequence[BatchResult],
    reconciliations: Sequence[dict[str, Any]] = (),
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
    per_shop: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for r in results:
        shop_figures = per_shop[r.shop_id]
        for name in _SUMMED:
            shop_figures[name] += getattr(r, name)
        shop_figures["batches"] += 1
        shop_figures["missing_products"] += len(r.missing_products)
        report.products += r.products
        report.variants += r.variants
        report.files += r.files
        report.files_unchanged += r.files_unchanged
        report.images_backed_up += r.images_backed_up
        report.images_failed += r.images_failed
        report.missing_products += len(r.missing_products)
    for plan in plans:
        per_shop[plan.shop_id]["catalog_read"] = plan.mode
        if plan.note:
            per_shop[plan.shop_id]["catalog_note"] = plan.note
        uncapped = cap_note(plan.batches[0].currency) if plan.batches else None
        if uncapped:
            per_shop[plan.shop_id]["revenue_cap_note"] = uncapped
    report.per_shop = {shop_id: {k: _rounded(v) for k, v in values.items()} for shop_id, values in per_shop.items()}
    for document in reconciliations:
        shop_id = document["shopId"]
        report.reconciliation[shop_id] = document
        report.rejected_events += sum(document.get("rejectedEvents", {}).values())
        if not document["ok"]:
            report.failed_shops.setdefault(shop_id, "; ".join(document["differences"]))
    return report


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


# The per-shop steps of a shop alone, in order: the first whose failure left a reason says why the shop failed.
SHOP_STEPS = ("shop.start_catalog_read", "shop.wait_for_catalog", "shop.plan_shop_batches")
BATCH_STEP = "export_product_batch"
UNIT_STEP = "export_shop_unit"


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
) -> DayOutcome:
    """Merge the shops alone's, the packed units' and the moved shops' plans and results, and say why each
    failed shop failed: ``reason_of(task_id, map_index)`` is the reason a failed task instance left."""
    reasons: dict[str, str] = {}
    missing = unfinished(alone, plans, batches, results)
    for index in missing.shops:
        for task_id in SHOP_STEPS:
            reason = reason_of(task_id, index)
            if reason:
                reasons[alone[index].shop_id] = f"{task_id.split('.')[-1]}: {reason}"
                break
    for index in missing.batches:
        reason = reason_of(BATCH_STEP, index)
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
            reason = reason_of(UNIT_STEP, index)
            reasons.update({shop.shop_id: f"{UNIT_STEP}: {reason}" for shop in unit.shops if reason})
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
    if earlier and now and "perShop" in earlier and "perShop" in now:
        health = merged_pixel_health(merged.date, earlier, now)
        merged.sections[PIXEL_HEALTH] = {"summary": health.text(), **health.document()}
    merged.section_lines = [str(section["summary"]) for section in merged.sections.values()]
    merged.recount()
    return merged
