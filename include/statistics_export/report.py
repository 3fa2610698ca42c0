"""The day's report: what each shop exported, and which shops or batches failed."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunReport:
    """Totals of one run and the shops that did not finish."""

    date: str
    shops: int
    products: int = 0
    variants: int = 0
    files: int = 0
    images_backed_up: int = 0
    images_failed: int = 0
    missing_products: int = 0
    failed_shops: dict[str, str] = field(default_factory=dict)
    per_shop: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Tell whether any shop failed to plan or export a batch."""
        return bool(self.failed_shops)

    def failure_message(self) -> str:
        """Return one line naming every failed shop and why."""
        details = "; ".join(f"{shop}: {why}" for shop, why in sorted(self.failed_shops.items()))
        return f"{len(self.failed_shops)} shop(s) failed for {self.date}: {details}"

    def document(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "date": self.date,
            "shops": self.shops,
            "products": self.products,
            "variants": self.variants,
            "files": self.files,
            "imagesBackedUp": self.images_backed_up,
            "imagesFailed": self.images_failed,
            "missingProducts": self.missing_products,
            "failedShops": self.failed_shops,
            "perShop": self.per_shop,
        }

    def text(self) -> str:
        """Return a short human summary for the task log."""
        return (
            f"Export of {self.date}: {self.shops} shop(s), {self.products} products, {self.variants} variants, "
            f"{self.files} files, {self.images_backed_up} images backed up, {self.images_failed} image failures, "
            f"{len(self.failed_shops)} failed shop(s)"
        )


def summarize_run(
    day: str, shops: list[dict], plans: list[dict], batches: list[dict], results: list[dict]
) -> RunReport:
    """Compare what was listed, planned and exported; whatever is missing failed."""
    domains = {s["shop_id"]: s["shop_domain"] for s in shops}
    report = RunReport(date=day, shops=len(shops))
    planned = {plan["shop_id"] for plan in plans}
    for shop_id in domains:
        if shop_id not in planned:
            report.failed_shops[shop_id] = f"{domains[shop_id]}: planning failed (see plan_shop_batches)"
    done = {(r["shop_id"], r["batch"]) for r in results}
    expected: dict[str, int] = defaultdict(int)
    for batch in batches:
        expected[batch["shop_id"]] += 1
        if (batch["shop_id"], batch["index"]) not in done:
            report.failed_shops.setdefault(
                batch["shop_id"], f"{domains.get(batch['shop_id'], '?')}: batch {batch['index']} failed"
            )
    per_shop: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for r in results:
        shop = per_shop[r["shop_id"]]
        for name in ("products", "variants", "files", "images_backed_up", "images_failed", "seconds"):
            shop[name] += r[name]
        shop["batches"] += 1
        report.products += r["products"]
        report.variants += r["variants"]
        report.files += r["files"]
        report.images_backed_up += r["images_backed_up"]
        report.images_failed += r["images_failed"]
        report.missing_products += len(r["missing_products"])
    report.per_shop = {shop_id: dict(values) for shop_id, values in per_shop.items()}
    return report
