"""A day's report without one shop (shop/redact): every entry of the shop goes, the totals are recounted from what
remains, and the result reads back as a valid report."""

import json

from include.statistics_export.report_redaction import REDACTED, names_shop, report_without_shop
from include.statistics_export.report_schema import RunReport, ShopFigures, ShopSize


def figures(variants: int, batches: int = 1) -> ShopFigures:
    return ShopFigures(
        products=variants // 2 or 1,
        variants=variants,
        files=2 * variants,
        files_unchanged=variants,
        images_backed_up=3,
        images_failed=1,
        skipped_products=0,
        seconds=1.0,
        batches=batches,
    )


def day_document() -> dict:
    """A day of three shops: alpha and gone exported, gone_b failed, with the informative sections' shapes."""
    report = RunReport(date="2026-11-21", shops=4)
    report.per_shop = {"shop_alpha": figures(6), "shop_gone": figures(4, batches=2)}
    report.failed_shops = {"shop_nosession": "shop-nosession.myshopify.com: no usable session is linked"}
    report.reconciliation = {
        "shop_alpha": {"shopId": "shop_alpha", "ok": True, "rejectedEvents": {"revenue_cap": 1}},
        "shop_gone": {"shopId": "shop_gone", "ok": True, "rejectedEvents": {"revenue_cap": 2}},
    }
    report.shop_sizes = {"shop_alpha": ShopSize(3, 6), "shop_gone": ShopSize(2, 4), "shop_gone_b": ShopSize(1, 1)}
    report.paused_shops = ["shop_gone", "shop_zeta"]
    report.add_section(
        "pixelHealth",
        {
            "shops": 2,
            "silentShops": ["shop_gone (gone.example.com)"],
            "perShop": {
                "shop_alpha": {"shopDomain": "alpha.example.com", "events": {"IMPRESSION": 1}},
                "shop_gone": {"shopDomain": "gone.example.com", "events": {}},
            },
        },
        "Pixel health of 2026-11-21: 2 shop(s); silent pixel: shop_gone (gone.example.com)",
    )
    report.add_section(
        "sessionLinks",
        {"linked": [{"shop": "shop_gone", "matchedBy": "domain"}], "revoked": [{"shops": ["shop_nosession (x)"]}]},
        "Session links: linked 1: shop_gone via domain",
    )
    report.recount()
    return json.loads(report.json_bytes())


def test_every_entry_of_the_shop_goes_and_the_totals_are_those_of_the_shops_that_remain():
    rewritten = report_without_shop(day_document(), "shop_gone")

    assert rewritten is not None
    text = json.dumps(rewritten)
    assert 'shop_gone"' not in text and "gone.example.com" not in text and "shop_gone " not in text
    assert set(rewritten["perShop"]) == {"shop_alpha"}
    assert set(rewritten["reconciliation"]) == {"shop_alpha"}
    assert set(rewritten["shopSizes"]) == {"shop_alpha", "shop_gone_b"}  # an id that only starts alike stays
    assert rewritten["pausedShops"] == ["shop_zeta"]
    assert rewritten["failedShops"] == {"shop_nosession": "shop-nosession.myshopify.com: no usable session is linked"}
    # The totals: alpha's and the failed shop's count only.
    assert (rewritten["shops"], rewritten["variants"], rewritten["files"]) == (2, 6, 12)
    assert (rewritten["filesUnchanged"], rewritten["imagesBackedUp"], rewritten["rejectedEvents"]) == (6, 3, 1)
    assert rewritten["ok"] is False  # shop_nosession still failed
    # The sections: the shop's entries and list items gone, its names out of the lines, the rest kept.
    pixel = rewritten["pixelHealth"]
    assert set(pixel["perShop"]) == {"shop_alpha"} and pixel["silentShops"] == []
    assert pixel["summary"] == f"Pixel health of 2026-11-21: 2 shop(s); silent pixel: {REDACTED} ({REDACTED})"
    assert rewritten["sessionLinks"]["linked"] == []
    assert rewritten["sessionLinks"]["revoked"] == [{"shops": ["shop_nosession (x)"]}]


def test_the_rewritten_report_reads_back_as_it_was_written():
    rewritten = report_without_shop(day_document(), "shop_gone")
    assert rewritten is not None
    again = RunReport.from_document(rewritten)
    assert again.document() == rewritten
    assert again.per_shop["shop_alpha"] == figures(6)
    assert "shop_gone" not in again.text()


def test_the_failed_shop_redacted_makes_the_day_whole_again():
    rewritten = report_without_shop(day_document(), "shop_nosession")
    assert rewritten is not None
    assert rewritten["ok"] is True and rewritten["failedShops"] == {}
    assert rewritten["shops"] == 2 and rewritten["sessionLinks"]["revoked"] == []


def test_a_report_that_does_not_name_the_shop_is_left_as_it_is():
    document = day_document()
    assert report_without_shop(document, "shop_never") is None
    assert report_without_shop(document, "shop_gon") is None  # a prefix of an id is not the id
    assert not names_shop(document, "shop_never")
    assert names_shop(document, "shop_gone_b")


def test_a_second_rewrite_finds_nothing_left():
    once = report_without_shop(day_document(), "shop_gone")
    assert once is not None
    assert report_without_shop(once, "shop_gone") is None


def test_the_domains_the_app_gives_are_taken_out_of_text_too():
    document = day_document()
    document["failedShops"]["shop_other"] = "failed after custom.gone-shop.com answered"
    rewritten = report_without_shop(document, "shop_gone", domains=["custom.gone-shop.com"])
    assert rewritten is not None
    assert rewritten["failedShops"]["shop_other"] == f"failed after {REDACTED} answered"
