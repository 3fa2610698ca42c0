"""The day reports (``keys.report_key(day)``) read back for the Statistics page: one typed row per day and per shop.

Reports of past days rarely change, so a parsed report is kept by its key and ETag: a page load lists the
report prefix once and fetches only the reports that are new or were rewritten by a rerun.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, BinaryIO, Protocol

from include.statistics_export.keys import RUNS_PREFIX, report_key
from include.statistics_export.report_schema import RunReport, ShopFigures, reconciled_ok


class ReportStore(Protocol):
    """What reading the reports needs of the bucket."""

    def open_object(self, key: str) -> BinaryIO:
        """Return a stream of an object's bytes; raise FileNotFoundError when it is absent."""
        ...

    def etags_under(self, prefix: str, start_after: str = "") -> dict[str, str]:
        """Return {key: ETag} of the objects under ``prefix`` after ``start_after``."""
        ...


@dataclass(frozen=True)
class ShopDay:
    """One shop's line of a day's report."""

    shop_id: str
    failed: bool
    reason: str
    variants: int
    batches: int
    catalog_read: str
    catalog_note: str
    seconds: float
    reconciled: bool | None  # None: not reconciled (the shop failed before, or some products only)


@dataclass(frozen=True)
class DayReport:
    """A day's totals and its shops, as the report says."""

    day: date
    ok: bool
    shops: int
    failed_shops: int
    variants: int
    files: int
    files_unchanged: int
    images_backed_up: int
    images_failed: int
    rejected_events: int
    reconciliation_ok: bool
    seconds: float
    shop_days: tuple[ShopDay, ...]
    # The shops STATISTICS_EXPORT_PAUSED_SHOPS kept out of the day: neither exported nor failed.
    paused_shops: tuple[str, ...] = ()

    def shop(self, shop_id: str) -> ShopDay | None:
        """Return one shop's line, or None when the report does not name the shop."""
        return next((s for s in self.shop_days if s.shop_id == shop_id), None)


def parse_report(day: date, document: dict[str, Any]) -> DayReport:
    """Return a report document as a typed day (read through ``report_schema``, which reads the reports of the
    previous code too); missing or odd fields read as zero or empty."""
    report = RunReport.from_document(document)
    shop_days = []
    for shop_id in sorted(report.listed() | set(report.reconciliation)):
        figures = report.per_shop.get(shop_id, ShopFigures())
        checked = report.reconciliation.get(shop_id)
        shop_days.append(
            ShopDay(
                shop_id=shop_id,
                failed=shop_id in report.failed_shops,
                reason=report.failed_shops.get(shop_id, ""),
                variants=figures.variants,
                batches=figures.batches,
                catalog_read=figures.catalog_read,
                catalog_note=figures.catalog_note,
                seconds=figures.seconds,
                reconciled=None if checked is None else reconciled_ok(checked),
            )
        )
    return DayReport(
        day=day,
        ok=not report.failed,
        shops=report.shops,
        failed_shops=len(report.failed_shops),
        variants=report.variants,
        files=report.files,
        files_unchanged=report.files_unchanged,
        images_backed_up=report.images_backed_up,
        images_failed=report.images_failed,
        rejected_events=report.rejected_events,
        reconciliation_ok=all(reconciled_ok(entry) for entry in report.reconciliation.values()),
        seconds=round(sum(s.seconds for s in shop_days), 3),
        shop_days=tuple(shop_days),
        paused_shops=tuple(report.paused_shops),
    )


def read_report(store: ReportStore, day: date) -> DayReport | None:
    """Return a day's report, or None when the bucket has none ("no run")."""
    try:
        with store.open_object(report_key(day)) as stream:
            document = json.load(stream)
    except FileNotFoundError:
        return None
    return parse_report(day, document if isinstance(document, dict) else {})


def days_ending(last: date, count: int) -> list[date]:
    """Return ``count`` days ending with ``last``, newest first."""
    return [last - timedelta(days=n) for n in range(count)]


class ReportCache:
    """Parsed reports kept by (key, ETag), shared by the requests of one process."""

    def __init__(self, threads: int = 16) -> None:
        self.threads = threads
        self._parsed: dict[str, tuple[str, DayReport]] = {}
        self._lock = threading.Lock()

    def reports(self, store: ReportStore, days: Iterable[date]) -> dict[date, DayReport | None]:
        """Return each day's report (None: no run), fetching in parallel only what is new or changed."""
        wanted = sorted(set(days))
        if not wanted:
            return {}
        # One listing from the day before the first wanted: keys sort by day (YYYYMMDD).
        listed = store.etags_under(RUNS_PREFIX, start_after=report_key(wanted[0] - timedelta(days=1)))
        result: dict[date, DayReport | None] = {}
        to_fetch: list[tuple[date, str, str]] = []
        for day in wanted:
            key = report_key(day)
            etag = listed.get(key)
            cached = self._parsed.get(key)
            if etag is None:
                result[day] = None
            elif cached and cached[0] == etag:
                result[day] = cached[1]
            else:
                to_fetch.append((day, key, etag))
        if to_fetch:
            with ThreadPoolExecutor(min(self.threads, len(to_fetch))) as pool:
                fetched = list(pool.map(lambda item: read_report(store, item[0]), to_fetch))
            with self._lock:
                for (day, key, etag), report in zip(to_fetch, fetched):
                    result[day] = report
                    if report is not None:
                        self._parsed[key] = (etag, report)
        return result
