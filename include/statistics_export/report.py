"""The day's report: what each shop exported, how its numbers reconcile, and which shops failed and why.

It is logged, returned by the last task, and written to ``statistic-exports/_runs/{YYYYMMDD}.json``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

RUNS_PREFIX = "statistic-exports/_runs/"
_SUMMED = ("products", "variants", "files", "files_unchanged", "images_backed_up", "images_failed", "seconds")


def report_key(day: date) -> str:
    """Return the key of a day's run report."""
    return f"{RUNS_PREFIX}{day:%Y%m%d}.json"


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
    per_shop: dict[str, dict[str, Any]] = field(default_factory=dict)
    reconciliation: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Tell whether any shop failed to plan, export a batch, or reconcile."""
        return bool(self.failed_shops)

    def failure_message(self) -> str:
        """Return one line naming every failed shop and why."""
        details = "; ".join(f"{shop}: {why}" for shop, why in sorted(self.failed_shops.items()))
        return f"{len(self.failed_shops)} shop(s) failed for {self.date}: {details}"

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
            "perShop": self.per_shop,
            "reconciliation": self.reconciliation,
        }

    def json_bytes(self) -> bytes:
        """Return the report file's bytes."""
        return (json.dumps(self.document(), indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")

    def text(self) -> str:
        """Return a short human summary for the task log."""
        return (
            f"Export of {self.date}: {self.shops} shop(s), {self.products} products, {self.variants} variants, "
            f"{self.files} files ({self.files_unchanged} unchanged), {self.images_backed_up} images backed up, "
            f"{self.images_failed} image failures, {self.missing_products} skipped products, "
            f"{self.rejected_events} rejected events, {len(self.failed_shops)} failed shop(s)"
        )


def summarize_run(
    day: str,
    shops: list[dict],
    plans: list[dict],
    batches: list[dict],
    results: list[dict],
    reconciliations: list[dict] | None = None,
    reasons: dict[str, str] | None = None,
) -> RunReport:
    """Compare what was listed, planned, exported and reconciled; whatever is missing or differs failed.

    ``reasons`` maps a shop id to why its task failed, when the failing task said.
    """
    reasons = reasons or {}
    domains = {s["shop_id"]: s["shop_domain"] for s in shops}
    report = RunReport(date=day, shops=len(shops))
    planned = {plan["shop_id"]: plan for plan in plans}
    for shop_id, domain in domains.items():
        if shop_id not in planned:
            report.failed_shops[shop_id] = f"{domain}: {reasons.get(shop_id) or 'reading its catalog failed'}"
    done = {(r["shop_id"], r["batch"]) for r in results}
    for batch in batches:
        if (batch["shop_id"], batch["index"]) not in done:
            why = reasons.get(batch["shop_id"]) or "see its task log"
            report.failed_shops.setdefault(
                batch["shop_id"], f"{batch['shop_domain']}: batch {batch['index']}/{batch['count']} failed: {why}"
            )
    per_shop: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for r in results:
        shop = per_shop[r["shop_id"]]
        for name in _SUMMED:
            shop[name] += r.get(name, 0)
        shop["batches"] += 1
        shop["missing_products"] += len(r["missing_products"])
        report.products += r["products"]
        report.variants += r["variants"]
        report.files += r["files"]
        report.files_unchanged += r.get("files_unchanged", 0)
        report.images_backed_up += r["images_backed_up"]
        report.images_failed += r["images_failed"]
        report.missing_products += len(r["missing_products"])
    for shop_id, plan in planned.items():
        per_shop[shop_id]["catalog_read"] = plan.get("mode")
        if plan.get("note"):
            per_shop[shop_id]["catalog_note"] = plan["note"]
    report.per_shop = {shop_id: {k: _rounded(v) for k, v in values.items()} for shop_id, values in per_shop.items()}
    for document in reconciliations or []:
        shop_id = document["shopId"]
        report.reconciliation[shop_id] = document
        report.rejected_events += sum(document.get("rejectedEvents", {}).values())
        if not document["ok"]:
            report.failed_shops.setdefault(shop_id, "; ".join(document["differences"]))
    return report


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value
