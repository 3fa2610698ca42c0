"""Reconciliation after real exports: files, rows, events and catalog agree, and any tampering is named."""

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import pytest

from helpers import DAY, add_event, bucket_objects, plan, product, register_shop, run_batch, run_shop
from include.statistics_export.totals import Totals, csv_totals, sum_totals
from local_stack.one_shop import reconcile_shop

NOON = datetime(2026, 11, 21, 12)
CATALOG_VARIANTS = 3 * 2 + 1 * 3  # products 1-3 with 2 variants, product 4 with 3


def shop_catalog():
    return [product(n, variants=2, images=0) for n in (1, 2, 3)] + [product(4, variants=3, images=0)]


@pytest.fixture
def shop(db, connections, sandbox):
    """A shop with good events, bad events and events of a variant Shopify does not have."""
    register_shop(db, sandbox, "shop_r", shop_catalog())
    for _ in range(3):
        add_event(db, "shop_r", "1001", "IMPRESSION", NOON)
    add_event(db, "shop_r", "gid://shopify/ProductVariant/1001", "ADD_TO_CART", NOON)
    add_event(db, "shop_r", "1001", "PURCHASE", NOON, Decimal("19.99"))
    add_event(db, "shop_r", "3002", "PURCHASE", NOON, None)
    add_event(db, "shop_r", "4003", "PURCHASE", NOON, Decimal("0.01"))
    add_event(db, "shop_r", "4003", "IMPRESSION", NOON)
    # Rejected: counted by reason, in no total.
    add_event(db, "shop_r", "1001", "PURCHASE", NOON, Decimal("-19.99"))
    add_event(db, "shop_r", "gid://shopify/Product/1", "IMPRESSION", NOON)
    add_event(db, "shop_r", "1001", "HOVER", NOON)
    # A deleted variant: counted events that no file can hold.
    add_event(db, "shop_r", "999999", "IMPRESSION", NOON)
    add_event(db, "shop_r", "999999", "PURCHASE", NOON, Decimal("5.00"))
    return "shop_r"


def written_totals(s3, bucket):
    """The files' totals, read back from the bucket (what the batches wrote)."""
    objects = bucket_objects(s3, bucket)
    return csv_totals(body for key, body in objects.items() if key.endswith(".csv"))


def test_a_clean_export_reconciles_and_reports_rejected_and_unknown_variant_events(db, shop, s3, connections):
    run_shop(shop, batch_variants=4)
    result = reconcile_shop(db, shop, DAY, CATALOG_VARIANTS, written_totals(s3, connections.bucket))
    assert result.ok, result.differences
    doc = result.document()
    expected = {"variants": 9, "impressions": 4, "addToCarts": 1, "orders": 3, "revenue": "20.00"}
    assert doc["files"] == doc["rows"] == expected
    assert doc["events"] == {**expected, "variants": 3}  # only 3 variants had events
    assert doc["eventsOfUnknownVariants"] == {
        "variants": 1,
        "impressions": 1,
        "addToCarts": 0,
        "orders": 1,
        "revenue": "5.00",
        "variantIds": ["999999"],
    }
    assert doc["rejectedEvents"] == {"unknown_event_type": 1, "malformed_variant_id": 1, "negative_revenue": 1}
    assert (doc["shopId"], doc["date"], doc["ok"], doc["differences"]) == ("shop_r", "2026-11-21", True, [])


def test_a_deleted_row_fails_naming_the_shop_and_the_numbers(db, shop, s3, connections):
    run_shop(shop)
    with db.cursor() as cur:
        cur.execute('DELETE FROM "VariantDailyStatistics" WHERE shop = %s AND "variantId" = %s', (shop, "3001"))
        assert cur.rowcount == 1
    db.commit()
    result = reconcile_shop(db, shop, DAY, CATALOG_VARIANTS, written_totals(s3, connections.bucket))
    assert not result.ok
    assert result.differences == [
        'Shop shop_r on 2026-11-21: variants differ: catalog 9, files 9, "VariantDailyStatistics" rows 8'
    ]


def test_a_tampered_number_fails_naming_the_shop_and_the_numbers(db, shop, s3, connections):
    run_shop(shop)
    with db.cursor() as cur:
        cur.execute(
            'UPDATE "VariantDailyStatistics" SET impressions = impressions + 5, revenue = revenue + 0.01 '
            'WHERE shop = %s AND "variantId" = %s',
            (shop, "1001"),
        )
    db.commit()
    result = reconcile_shop(db, shop, DAY, CATALOG_VARIANTS, written_totals(s3, connections.bucket))
    assert result.differences == [
        'Shop shop_r on 2026-11-21: impressions differ: files 4, "VariantDailyStatistics" 9, events 4',
        'Shop shop_r on 2026-11-21: revenue differ: files 20.00, "VariantDailyStatistics" 20.01, events 20.00',
    ]


def test_a_tampered_file_total_fails(db, shop, s3, connections):
    run_shop(shop)
    totals = replace(written_totals(s3, connections.bucket), orders=4)
    result = reconcile_shop(db, shop, DAY, CATALOG_VARIANTS, totals)
    assert result.differences == [
        'Shop shop_r on 2026-11-21: orders differ: files 4, "VariantDailyStatistics" 3, events 3'
    ]


def test_a_missing_batch_fails_naming_the_shop_and_the_numbers(db, shop, s3, connections):
    batches = plan(shop, batch_variants=4)
    assert len(batches) == 3  # products 1+2, 3, 4
    for batch in batches[:-1]:  # the last batch (product 4) never ran
        run_batch(batch)
    totals = written_totals(s3, connections.bucket)
    result = reconcile_shop(db, shop, DAY, CATALOG_VARIANTS, totals)
    assert not result.ok
    assert result.differences == [
        'Shop shop_r on 2026-11-21: variants differ: catalog 9, files 6, "VariantDailyStatistics" rows 6'
    ]
    # The missing variant's events have no row: they show up as events of unknown variants too.
    assert "4003" in result.document()["eventsOfUnknownVariants"]["variantIds"]


def test_file_totals_of_several_batches_add_up_exactly():
    parts = [
        {"variants": 2, "impressions": 3, "addToCarts": 1, "orders": 1, "revenue": "0.10"},
        {"variants": 1, "impressions": 0, "addToCarts": 0, "orders": 2, "revenue": "0.20"},
    ]
    assert sum_totals(map(Totals.from_document, parts)).document() == {
        "variants": 3,
        "impressions": 3,
        "addToCarts": 1,
        "orders": 3,
        "revenue": "0.30",
    }
