"""The run report: what is missing between listing, planning and exporting is a failure."""

from include.statistics_export.report import summarize_run

SHOPS = [
    {"shop_id": "a", "shop_domain": "a.example"},
    {"shop_id": "b", "shop_domain": "b.example"},
    {"shop_id": "c", "shop_domain": "c.example"},
]


def result(shop_id, batch, variants):
    return {
        "shop_id": shop_id,
        "batch": batch,
        "products": 1,
        "variants": variants,
        "files": 2 * variants,
        "images_backed_up": 1,
        "images_failed": 0,
        "missing_products": [],
        "seconds": 1.5,
    }


def test_a_shop_that_did_not_plan_and_a_batch_that_did_not_finish_fail_the_run():
    plans = [{"shop_id": "a", "batches": []}, {"shop_id": "b", "batches": []}]
    batches = [{"shop_id": "a", "index": 1}, {"shop_id": "a", "index": 2}, {"shop_id": "b", "index": 1}]
    report = summarize_run("2026-11-21", SHOPS, plans, batches, [result("a", 1, 3), result("b", 1, 4)])
    assert report.failed
    assert set(report.failed_shops) == {"a", "c"}
    assert "batch 2 failed" in report.failed_shops["a"] and "planning failed" in report.failed_shops["c"]
    assert report.failure_message().startswith("2 shop(s) failed for 2026-11-21: a: a.example")
    assert (report.variants, report.files) == (7, 14)
    assert report.per_shop["a"]["batches"] == 1


def test_a_complete_run_is_not_failed():
    plans = [{"shop_id": s["shop_id"], "batches": []} for s in SHOPS]
    batches = [{"shop_id": "a", "index": 1}]
    report = summarize_run("2026-11-21", SHOPS, plans, batches, [result("a", 1, 2)])
    assert not report.failed
    assert report.document()["variants"] == 2
    assert report.text().startswith("Export of 2026-11-21: 3 shop(s), 1 products, 2 variants")
