"""The run report: what is missing between listing, planning and exporting is a failure."""

import json
from datetime import date

from include.statistics_export.handoffs import BatchPlan, BatchResult, ShopPlan, ShopRef, ShopUnit, UnitResult
from include.statistics_export.keys import report_key
from include.statistics_export.reconcile import ShopReconciliation
from include.statistics_export.report import FailureSteps, collect_failures, merge_into_day, summarize_run
from include.statistics_export.report_schema import RunReport, ShopFigures, ShopSize
from include.statistics_export.totals import Totals

SHOPS = [ShopRef("a", "a.example"), ShopRef("b", "b.example"), ShopRef("c", "c.example")]


def result(shop_id, batch, variants):
    return BatchResult(
        shop_id=shop_id,
        shop_domain=f"{shop_id}.example",
        batch=batch,
        products=1,
        variants=variants,
        files=2 * variants,
        images_backed_up=1,
        images_failed=0,
        seconds=1.5,
    )


def batch(shop_id, index, count):
    return BatchPlan(shop_id, f"{shop_id}.example", "2026-11-21", index, count, [])


def shop_plan(shop_id, mode="pages"):
    return ShopPlan(shop_id, f"{shop_id}.example", mode, None, 0, [])


def test_a_shop_that_did_not_plan_and_a_batch_that_did_not_finish_fail_the_run():
    plans = [shop_plan("a"), shop_plan("b")]
    batches = [batch("a", 1, 2), batch("a", 2, 2), batch("b", 1, 1)]
    reasons = {"c": "start_catalog_read: Shop c.example: Shopify rejected the access token (HTTP 401)"}
    report = summarize_run("2026-11-21", SHOPS, plans, batches, [result("a", 1, 3), result("b", 1, 4)], [], reasons)
    assert report.failed
    assert set(report.failed_shops) == {"a", "c"}
    assert report.failed_shops["a"] == "a.example: batch 2/2 failed: see its task log"
    assert (
        report.failed_shops["c"]
        == "c.example: start_catalog_read: Shop c.example: Shopify rejected the access token (HTTP 401)"
    )
    assert report.failure_message().startswith("2 shop(s) failed for 2026-11-21: a: a.example")
    assert (report.variants, report.files) == (7, 14)
    assert report.per_shop["a"].batches == 1


def test_a_complete_run_is_not_failed():
    plans = [shop_plan(s.shop_id) for s in SHOPS]
    batches = [batch("a", 1, 1)]
    report = summarize_run("2026-11-21", SHOPS, plans, batches, [result("a", 1, 2)])
    assert not report.failed
    assert report.document()["variants"] == 2
    assert report.text().startswith("Export of 2026-11-21: 3 shop(s), 1 products, 2 variants")


def reconciliation(shop_id: str, **found) -> ShopReconciliation:
    """A shop's reconciliation of 2026-11-21 (agreeing unless ``differences`` are given)."""
    return ShopReconciliation(shop_id, date(2026, 11, 21), 2, Totals(), Totals(), Totals(), Totals(), **found)


def test_a_reconciliation_difference_fails_its_shop_and_rejected_events_are_counted():
    plans = [shop_plan("a", "bulk"), shop_plan("b", "pages")]
    reconciliations = [
        reconciliation("a", rejected_events={"malformed_variant_id": 2, "future": 1}),
        reconciliation("b", differences=["Shop b on 2026-11-21: orders differ: files 3, rows 2"]),
    ]
    shops = SHOPS[:2]
    report = summarize_run("2026-11-21", shops, plans, [], [result("a", 1, 2)], reconciliations)
    assert report.failed_shops == {"b": "Shop b on 2026-11-21: orders differ: files 3, rows 2"}
    document = report.document()
    assert document["rejectedEvents"] == 3 and document["ok"] is False
    assert document["perShop"]["a"]["catalogRead"] == "bulk"
    assert json.loads(report.json_bytes())["reconciliation"]["b"]["ok"] is False
    assert report_key(date(2026, 11, 21)) == "statistic-exports/_runs/20261121.json"


def day_of(*shops: tuple[str, int, bool]) -> RunReport:
    """A day's report of shops (id, variants, failed), each planned in one batch."""
    refs = [ShopRef(shop_id, f"{shop_id}.example") for shop_id, _, _ in shops]
    plans = [ShopPlan(s, f"{s}.example", "pages", None, v, [batch(s, 1, 1)]) for s, v, _ in shops]
    results = [result(s, 1, v) for s, v, failed in shops if not failed]
    reconciliations = [reconciliation(s, rejected_events={"future_timestamp": 1}) for s, _, f in shops if not f]
    report = summarize_run("2026-11-21", refs, plans, [b for p in plans for b in p.batches], results, reconciliations)
    report.shop_sizes = {s: ShopSize(1, v) for s, v, failed in shops if not failed}
    return report


def test_a_retried_shop_replaces_its_entries_and_the_day_is_recounted_from_the_merged_whole():
    first = RunReport.from_document(json.loads(day_of(("a", 3, False), ("b", 5, True)).json_bytes()))
    assert first.failed and first.variants == 3 and first.shops == 2

    merged = merge_into_day(first, day_of(("b", 5, False)), whole_shops=True)

    whole = day_of(("a", 3, False), ("b", 5, False))
    assert not merged.failed and merged.failed_shops == {}
    figures = ("shops", "products", "variants", "files", "images_backed_up", "rejected_events")
    assert {k: getattr(merged, k) for k in figures} == {k: getattr(whole, k) for k in figures}
    assert merged.shop_sizes == whole.shop_sizes and set(merged.reconciliation) == {"a", "b"}


def test_some_products_never_replace_a_shops_figures_and_never_make_a_shop_whole():
    first = day_of(("a", 3, False))
    some_products = day_of(("a", 1, False), ("z", 1, False))

    merged = merge_into_day(first, some_products, whole_shops=False)

    assert merged.per_shop["a"] == first.per_shop["a"] and merged.variants == 3  # a's day, not one product of it
    assert set(merged.failed_shops) == {"z"} and "only some of its products" in merged.failed_shops["z"]
    alone = merge_into_day(None, some_products, whole_shops=False)  # the day has no report yet
    assert set(alone.failed_shops) == {"a", "z"} and alone.per_shop == {} and alone.failed


def test_the_document_is_camel_case_throughout_and_reads_back_as_it_was_written():
    report = day_of(("a", 3, False), ("b", 5, True))
    document = json.loads(report.json_bytes())
    keys = set(document) | {key for figures in document["perShop"].values() for key in figures}
    assert not [key for key in keys if "_" in key], keys
    assert document["perShop"]["a"]["skippedProducts"] == 0 and document["perShop"]["a"]["filesUnchanged"] == 0
    again = RunReport.from_document(document)
    assert again.document() == report.document() and again.shop_sizes == {"a": ShopSize(1, 3)}


# A report the previous code wrote (users' buckets hold them): its perShop figures in snake_case, as floats.
EARLIER_REPORT = {
    "date": "2026-11-20",
    "ok": False,
    "shops": 2,
    "variants": 7,
    "files": 14,
    "filesUnchanged": 4,
    "failedShops": {"b": "b.example: start_catalog_read: token rejected"},
    "perShop": {
        "a": {
            "products": 3.0,
            "variants": 7.0,
            "files": 14.0,
            "files_unchanged": 4.0,
            "images_backed_up": 2.0,
            "images_failed": 1.0,
            "missing_products": 1.0,
            "seconds": 2.5,
            "batches": 2.0,
            "catalog_read": "bulk",
            "catalog_note": "bulk failed: read by pages",
            "revenue_cap_note": "currency XYZ is not in the revenue-cap table",
        }
    },
    "reconciliation": {"a": {"shopId": "a", "ok": True, "rejectedEvents": {"future_timestamp": 2}}},
    "shopSizes": {"a": {"products": 3, "variants": 7}},
    "pixelHealth": {"summary": "Pixel health of 2026-11-20: 2 shop(s)", "perShop": {}},
}


def test_a_report_of_the_previous_code_is_read_in_its_spelling_and_written_in_camel_case():
    report = RunReport.from_document(EARLIER_REPORT)
    assert report.per_shop["a"] == ShopFigures(
        products=3, variants=7, files=14, files_unchanged=4, images_backed_up=2, images_failed=1,
        skipped_products=1, seconds=2.5, batches=2, catalog_read="bulk", catalog_note="bulk failed: read by pages",
        revenue_cap_note="currency XYZ is not in the revenue-cap table",
    )  # fmt: skip
    assert (report.shops, report.variants, report.files_unchanged) == (2, 7, 4) and report.failed
    assert report.known_sizes() == {"a": ShopSize(3, 7)} and report.section_lines == [
        "Pixel health of 2026-11-20: 2 shop(s)"
    ]
    figures = report.document()["perShop"]["a"]
    assert figures["catalogRead"] == "bulk" and figures["revenueCapNote"].startswith("currency XYZ")
    assert "catalog_read" not in figures and "missing_products" not in figures
    # Merged with a run of shop b, the old report's shop a keeps its figures, now in camelCase.
    merged = merge_into_day(report, day_of(("b", 5, False)), whole_shops=True)
    assert merged.per_shop["a"] == report.per_shop["a"] and not merged.failed
    assert merged.variants == 12 and merged.rejected_events == 3


def test_a_report_of_odd_values_reads_as_zeros_and_empties():
    report = RunReport.from_document({"date": "2026-11-20", "shops": "many", "perShop": {"a": None}, "failedShops": []})
    assert report.shops == 0 and report.per_shop == {"a": ShopFigures()} and report.failed_shops == {}


STEPS = FailureSteps(shop_steps=("group.first", "group.second"), batch="batch_task", unit="unit_task")


def test_why_a_shop_failed_is_asked_of_the_task_ids_it_is_handed():
    alone = [ShopRef("a", "a.example"), ShopRef("b", "b.example")]
    units = [ShopUnit(1, 1, [ShopRef("u", "u.example")])]
    left = {("group.second", 0): "Shopify refused", ("batch_task", 0): "R2 refused", ("unit_task", 0): "crashed"}
    asked: list[tuple[str, int]] = []

    def reason_of(task_id: str, index: int) -> str | None:
        asked.append((task_id, index))
        return left.get((task_id, index))

    plans = [ShopPlan("b", "b.example", "pages", None, 1, [batch("b", 1, 1)])]
    outcome = collect_failures(alone, plans, plans[0].batches, [], units, [], [], reason_of, STEPS)
    assert outcome.reasons == {"a": "second: Shopify refused", "b": "R2 refused", "u": "unit_task: crashed"}
    assert {task_id for task_id, _ in asked} == {"group.first", "group.second", "batch_task", "unit_task"}
    finished = UnitResult(1, plans=[], results=[result("u", 1, 2)], failures={})
    assert collect_failures(alone[:0], [], [], [], units, [finished], [], reason_of, STEPS).reasons == {}


def test_the_statistics_page_reads_a_shops_line_alike_in_either_spelling():
    from include.statistics_export.page.run_reports import parse_report

    earlier = parse_report(date(2026, 11, 20), EARLIER_REPORT)
    today = parse_report(date(2026, 11, 20), RunReport.from_document(EARLIER_REPORT).document())
    assert earlier == today
    (a, b) = earlier.shop_days
    assert (a.shop_id, a.catalog_read, a.catalog_note, a.batches, a.seconds, a.reconciled) == (
        "a", "bulk", "bulk failed: read by pages", 2, 2.5, True
    )  # fmt: skip
    assert b.failed and b.reason.endswith("token rejected") and b.reconciled is None
    assert (earlier.ok, earlier.files_unchanged, earlier.rejected_events) == (False, 4, 0)
