"""The run report: what is missing between listing, planning and exporting is a failure."""

import json
from datetime import date

from include.statistics_export.handoffs import BatchPlan, BatchResult, ShopPlan, ShopRef
from include.statistics_export.keys import report_key
from include.statistics_export.report import summarize_run

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
    assert report.per_shop["a"]["batches"] == 1


def test_a_complete_run_is_not_failed():
    plans = [shop_plan(s.shop_id) for s in SHOPS]
    batches = [batch("a", 1, 1)]
    report = summarize_run("2026-11-21", SHOPS, plans, batches, [result("a", 1, 2)])
    assert not report.failed
    assert report.document()["variants"] == 2
    assert report.text().startswith("Export of 2026-11-21: 3 shop(s), 1 products, 2 variants")


def test_a_reconciliation_difference_fails_its_shop_and_rejected_events_are_counted():
    plans = [shop_plan("a", "bulk"), shop_plan("b", "pages")]
    reconciliations = [
        {"shopId": "a", "ok": True, "differences": [], "rejectedEvents": {"malformed_variant_id": 2, "future": 1}},
        {"shopId": "b", "ok": False, "differences": ["Shop b on 2026-11-21: orders differ: files 3, rows 2"]},
    ]
    shops = SHOPS[:2]
    report = summarize_run("2026-11-21", shops, plans, [], [result("a", 1, 2)], reconciliations)
    assert report.failed_shops == {"b": "Shop b on 2026-11-21: orders differ: files 3, rows 2"}
    document = report.document()
    assert document["rejectedEvents"] == 3 and document["ok"] is False
    assert document["perShop"]["a"]["catalog_read"] == "bulk"
    assert json.loads(report.json_bytes())["reconciliation"]["b"]["ok"] is False
    assert report_key(date(2026, 11, 21)) == "statistic-exports/_runs/20261121.json"
