"""The day's report document (``keys.report_key(day)``): its keys, spelled here once, and its typed form.

Every reader and writer of a report goes through this module: the report task writes ``RunReport.document()``,
and the merge of a run of some shops, the fleet plan's sizes, the alerts and the Statistics page read a stored
report with ``RunReport.from_document``. No other module spells a key of the document.

One casing, camelCase, for the whole document (its top level always was). Reports written before the figures of
``perShop`` were camelCase spell them in snake_case (``catalog_read``, ``files_unchanged``, ``missing_products``,
...); they stay in users' buckets, so they are read in either spelling and written in camelCase only.
A stored report is read leniently: a missing or odd value reads as zero or empty, never as an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# -- the keys --------------------------------------------------------------------------------------------------

DATE, OK, SHOPS, PRODUCTS, VARIANTS, FILES = "date", "ok", "shops", "products", "variants", "files"
FILES_UNCHANGED, IMAGES_BACKED_UP, IMAGES_FAILED = "filesUnchanged", "imagesBackedUp", "imagesFailed"
SKIPPED_PRODUCTS, REJECTED_EVENTS = "skippedProducts", "rejectedEvents"
FAILED_SHOPS, FAILED_TASKS = "failedShops", "failedTasks"
PER_SHOP, RECONCILIATION, SHOP_SIZES = "perShop", "reconciliation", "shopSizes"
# The shops STATISTICS_EXPORT_PAUSED_SHOPS kept out of the day (ids, sorted).
PAUSED_SHOPS = "pausedShops"
# A shop's figures in perShop, beside the totals' names above.
SECONDS, BATCHES = "seconds", "batches"
CATALOG_READ, CATALOG_NOTE, REVENUE_CAP_NOTE = "catalogRead", "catalogNote", "revenueCapNote"
# A shop's entry in reconciliation (reconcile.ShopReconciliation.document writes the rest of it).
SHOP_ID, DIFFERENCES = "shopId", "differences"
# The informative sections other tasks add, each {"summary": its one line, ...its document}.
SESSION_LINKS, TOKENS, PIXEL_HEALTH = "sessionLinks", "tokens", "pixelHealth"
SUMMARY = "summary"

# How reports of the previous code spelled a shop's figures (read, never written).
_EARLIER_SPELLING = {
    FILES_UNCHANGED: "files_unchanged",
    IMAGES_BACKED_UP: "images_backed_up",
    IMAGES_FAILED: "images_failed",
    SKIPPED_PRODUCTS: "missing_products",
    CATALOG_READ: "catalog_read",
    CATALOG_NOTE: "catalog_note",
    REVENUE_CAP_NOTE: "revenue_cap_note",
}
_DOCUMENT_KEYS = frozenset(
    {
        DATE, OK, SHOPS, PRODUCTS, VARIANTS, FILES, FILES_UNCHANGED, IMAGES_BACKED_UP, IMAGES_FAILED,
        SKIPPED_PRODUCTS, REJECTED_EVENTS, FAILED_SHOPS, FAILED_TASKS, PER_SHOP, RECONCILIATION, SHOP_SIZES,
        PAUSED_SHOPS,
    }
)  # fmt: skip


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _mapping(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _read(figures: Mapping[str, Any], key: str) -> Any:
    """Return a shop's figure in today's spelling, else in the previous code's."""
    earlier = _EARLIER_SPELLING.get(key)
    return figures[key] if key in figures else figures.get(earlier) if earlier else None


# -- a shop ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShopSize:
    """A shop's size as a day measured it: how the next day packs it (fleet)."""

    products: int
    variants: int

    def document(self) -> dict[str, int]:
        """Return the size as the report (and the sizes table) keeps it."""
        return {PRODUCTS: self.products, VARIANTS: self.variants}

    @classmethod
    def from_document(cls, document: Any) -> ShopSize:
        """Read a size back (odd values as zero)."""
        size = _mapping(document)
        return cls(_int(size.get(PRODUCTS)), _int(size.get(VARIANTS)))


@dataclass
class ShopFigures:
    """One shop's line of ``perShop``: what its batches exported and how its catalog was read."""

    products: int = 0
    variants: int = 0
    files: int = 0
    files_unchanged: int = 0
    images_backed_up: int = 0
    images_failed: int = 0
    skipped_products: int = 0
    seconds: float = 0.0
    batches: int = 0
    catalog_read: str = ""
    catalog_note: str = ""
    revenue_cap_note: str = ""

    @property
    def measured(self) -> bool:
        """Tell whether any batch of the shop finished: only then do its figures measure it."""
        return self.batches > 0

    def document(self) -> dict[str, Any]:
        """Return the shop's line (the notes only when there is one)."""
        document: dict[str, Any] = {
            PRODUCTS: self.products,
            VARIANTS: self.variants,
            FILES: self.files,
            FILES_UNCHANGED: self.files_unchanged,
            IMAGES_BACKED_UP: self.images_backed_up,
            IMAGES_FAILED: self.images_failed,
            SKIPPED_PRODUCTS: self.skipped_products,
            SECONDS: round(self.seconds, 3),
            BATCHES: self.batches,
        }
        notes = {
            CATALOG_READ: self.catalog_read,
            CATALOG_NOTE: self.catalog_note,
            REVENUE_CAP_NOTE: self.revenue_cap_note,
        }
        return document | {key: text for key, text in notes.items() if text}

    @classmethod
    def from_document(cls, document: Any) -> ShopFigures:
        """Read a shop's line, in today's spelling or the previous code's."""
        figures = _mapping(document)
        return cls(
            products=_int(_read(figures, PRODUCTS)),
            variants=_int(_read(figures, VARIANTS)),
            files=_int(_read(figures, FILES)),
            files_unchanged=_int(_read(figures, FILES_UNCHANGED)),
            images_backed_up=_int(_read(figures, IMAGES_BACKED_UP)),
            images_failed=_int(_read(figures, IMAGES_FAILED)),
            skipped_products=_int(_read(figures, SKIPPED_PRODUCTS)),
            seconds=_float(_read(figures, SECONDS)),
            batches=_int(_read(figures, BATCHES)),
            catalog_read=str(_read(figures, CATALOG_READ) or ""),
            catalog_note=str(_read(figures, CATALOG_NOTE) or ""),
            revenue_cap_note=str(_read(figures, REVENUE_CAP_NOTE) or ""),
        )


def reconciled_ok(entry: Mapping[str, Any]) -> bool:
    """Tell whether a shop's reconciliation entry says its files, rows, events and catalog agree."""
    return bool(entry.get(OK))


def rejected_events(entry: Mapping[str, Any]) -> int:
    """Return the events a shop's reconciliation entry rejected, all reasons together."""
    return sum(_int(n) for n in _mapping(entry.get(REJECTED_EVENTS)).values())


# The day's totals summed from its shops' lines (fields of both RunReport and ShopFigures).
_TOTALLED = (
    "products",
    "variants",
    "files",
    "files_unchanged",
    "images_backed_up",
    "images_failed",
    "skipped_products",
)

# -- the day ---------------------------------------------------------------------------------------------------


@dataclass
class RunReport:
    """The day's report: totals, the shops and tasks that did not finish, each shop's figures and
    reconciliation, every shop's last size, and the informative sections."""

    date: str
    shops: int
    products: int = 0
    variants: int = 0
    files: int = 0
    files_unchanged: int = 0
    images_backed_up: int = 0
    images_failed: int = 0
    skipped_products: int = 0
    rejected_events: int = 0
    failed_shops: dict[str, str] = field(default_factory=dict)
    # Tasks of the day that did not finish and whose failure is not one shop's (reconcile): the day is not whole.
    failed_tasks: dict[str, str] = field(default_factory=dict)
    per_shop: dict[str, ShopFigures] = field(default_factory=dict)
    reconciliation: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Sections other tasks add (pixel health, session links), each with the one-line summary it logs.
    # They inform and never fail the day.
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    section_lines: list[str] = field(default_factory=list)
    # Every shop's last measured size, carried forward (fleet.carried_sizes): how the next day packs its shops.
    shop_sizes: dict[str, ShopSize] = field(default_factory=dict)
    # The shops the operator paused (STATISTICS_EXPORT_PAUSED_SHOPS): not exported, and not a failure of the day.
    paused_shops: list[str] = field(default_factory=list)

    def add_section(self, name: str, document: dict[str, Any], line: str) -> None:
        """Add a section to the report's document and its line to the report's text."""
        self.sections[name] = {SUMMARY: line, **document}
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
        for name in _TOTALLED:
            setattr(self, name, sum(getattr(shop, name) for shop in figures))
        self.rejected_events = sum(rejected_events(entry) for entry in self.reconciliation.values())

    def known_sizes(self) -> dict[str, ShopSize]:
        """Return each shop's size the report knows: its ``shopSizes`` (every shop ever measured, carried
        forward), else, in a report from before they were kept, the figures of the shops it exported."""
        if self.shop_sizes:
            return dict(self.shop_sizes)
        return {shop_id: ShopSize(f.products, f.variants) for shop_id, f in self.per_shop.items()}

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> RunReport:
        """Rebuild a report from the document it wrote (the day's report in the bucket), its totals as stored."""
        report = cls(
            date=str(document.get(DATE) or ""),
            shops=_int(document.get(SHOPS)),
            products=_int(document.get(PRODUCTS)),
            variants=_int(document.get(VARIANTS)),
            files=_int(document.get(FILES)),
            files_unchanged=_int(document.get(FILES_UNCHANGED)),
            images_backed_up=_int(document.get(IMAGES_BACKED_UP)),
            images_failed=_int(document.get(IMAGES_FAILED)),
            skipped_products=_int(document.get(SKIPPED_PRODUCTS)),
            rejected_events=_int(document.get(REJECTED_EVENTS)),
        )
        report.failed_shops = {k: str(v) for k, v in _mapping(document.get(FAILED_SHOPS)).items()}
        report.failed_tasks = {k: str(v) for k, v in _mapping(document.get(FAILED_TASKS)).items()}
        report.per_shop = {k: ShopFigures.from_document(v) for k, v in _mapping(document.get(PER_SHOP)).items()}
        report.reconciliation = {k: _mapping(v) for k, v in _mapping(document.get(RECONCILIATION)).items()}
        report.shop_sizes = {k: ShopSize.from_document(v) for k, v in _mapping(document.get(SHOP_SIZES)).items()}
        paused = document.get(PAUSED_SHOPS)
        report.paused_shops = sorted(str(shop_id) for shop_id in paused) if isinstance(paused, list) else []
        for name, section in document.items():
            if name not in _DOCUMENT_KEYS and isinstance(section, Mapping) and SUMMARY in section:
                report.sections[name] = dict(section)
                report.section_lines.append(str(section[SUMMARY]))
        return report

    def document(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            DATE: self.date,
            OK: not self.failed,
            SHOPS: self.shops,
            PRODUCTS: self.products,
            VARIANTS: self.variants,
            FILES: self.files,
            FILES_UNCHANGED: self.files_unchanged,
            IMAGES_BACKED_UP: self.images_backed_up,
            IMAGES_FAILED: self.images_failed,
            SKIPPED_PRODUCTS: self.skipped_products,
            REJECTED_EVENTS: self.rejected_events,
            FAILED_SHOPS: self.failed_shops,
            FAILED_TASKS: self.failed_tasks,
            PER_SHOP: {shop_id: figures.document() for shop_id, figures in self.per_shop.items()},
            RECONCILIATION: self.reconciliation,
            SHOP_SIZES: sizes_document(self.shop_sizes),
            PAUSED_SHOPS: sorted(self.paused_shops),
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
                f"{self.images_failed} image failures, {self.skipped_products} skipped products, "
                f"{self.rejected_events} rejected events, {len(self.failed_shops)} failed shop(s)"
            )
            + "".join(f"\n{task} did not finish: {why}" for task, why in sorted(self.failed_tasks.items()))
            + (f"\nPaused, not exported: {', '.join(sorted(self.paused_shops))}" if self.paused_shops else "")
            + "".join(f"\n{line}" for line in self.section_lines)
        )


def sizes_document(sizes: Mapping[str, ShopSize]) -> dict[str, dict[str, int]]:
    """Return shop sizes as the report's ``shopSizes`` (and the sizes table's ``sizes``) keep them, by shop id."""
    return {shop_id: size.document() for shop_id, size in sorted(sizes.items())}


def sizes_from_document(document: Any) -> dict[str, ShopSize]:
    """Read shop sizes kept by :func:`sizes_document`."""
    return {shop_id: ShopSize.from_document(size) for shop_id, size in _mapping(document).items()}
