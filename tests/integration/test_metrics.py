"""Metrics aggregation on a real PostgreSQL: day boundaries, id spellings, other shops, null revenue."""

from datetime import date, datetime
from decimal import Decimal

from include.statistics_export.metrics import VariantMetrics
from local_stack.one_shop import variant_metrics

DAY = date(2026, 11, 21)


def test_day_is_half_open_utc(db, events):
    events("shop_a", "100", "IMPRESSION", datetime(2026, 11, 20, 23, 59, 59, 999000))  # day before
    events("shop_a", "100", "IMPRESSION", datetime(2026, 11, 21, 0, 0, 0))  # first instant: counts
    events("shop_a", "100", "IMPRESSION", datetime(2026, 11, 21, 23, 59, 59, 999000))  # last instant: counts
    events("shop_a", "100", "IMPRESSION", datetime(2026, 11, 22, 0, 0, 0))  # next day
    assert variant_metrics(db, "shop_a", ["100"], DAY)["100"].impressions == 2


def test_gid_and_bare_ids_both_count(db, events):
    at = datetime(2026, 11, 21, 12)
    events("shop_a", "100", "IMPRESSION", at)
    events("shop_a", "gid://shopify/ProductVariant/100", "IMPRESSION", at)
    events("shop_a", "gid://shopify/ProductVariant/100", "ADD_TO_CART", at)
    events("shop_a", "gid://shopify/Product/100", "IMPRESSION", at)  # a product id is not the variant's
    m = variant_metrics(db, "shop_a", ["100"], DAY)["100"]
    assert (m.impressions, m.add_to_carts) == (2, 1)


def test_other_shops_events_never_count(db, events):
    at = datetime(2026, 11, 21, 12)
    events("shop_a", "100", "IMPRESSION", at)
    events("shop_b", "100", "IMPRESSION", at)
    events("shop_b", "100", "PURCHASE", at, Decimal("5.00"))
    m = variant_metrics(db, "shop_a", ["100"], DAY)["100"]
    assert (m.impressions, m.orders, m.revenue) == (1, 0, Decimal("0"))


def test_purchase_with_null_revenue_is_an_order_worth_zero(db, events):
    at = datetime(2026, 11, 21, 12)
    events("shop_a", "100", "PURCHASE", at, None)
    events("shop_a", "100", "PURCHASE", at, Decimal("19.99"))
    events("shop_a", "100", "PURCHASE", at, Decimal("0.02"))
    m = variant_metrics(db, "shop_a", ["100"], DAY)["100"]
    assert (m.orders, m.revenue) == (2 + 1, Decimal("20.01"))
    assert isinstance(m.revenue, Decimal)


def test_variants_without_events_are_absent_and_others_grouped(db, events):
    at = datetime(2026, 11, 21, 8)
    for _ in range(3):
        events("shop_a", "101", "IMPRESSION", at)
    events("shop_a", "101", "ADD_TO_CART", at)
    result = variant_metrics(db, "shop_a", ["100", "101"], DAY)
    assert set(result) == {"101"}
    assert result["101"].ctr_rounded == Decimal("0.3333")


def test_rates():
    m = VariantMetrics(impressions=8, add_to_carts=2, orders=1, revenue=Decimal("3"))
    assert (m.ctr, m.conversion_rate) == (Decimal("0.25"), Decimal("0.125"))
    assert VariantMetrics().ctr == 0 and VariantMetrics().conversion_rate == 0


def test_the_batch_query_uses_the_variant_index(db, events):
    events("shop_a", "100", "IMPRESSION", datetime(2026, 11, 21, 8))
    with db.cursor() as cur:
        cur.execute("SET enable_seqscan = off")
        cur.execute(
            'EXPLAIN SELECT 1 FROM "ABTestEvent" e WHERE e."variantId" = ANY(%s::text[]) '
            'AND e."createdAt" >= %s AND e."createdAt" < %s',
            (["100", "gid://shopify/ProductVariant/100"], datetime(2026, 11, 21), datetime(2026, 11, 22)),
        )
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "ABTestEvent_variantId_createdAt_idx" in plan
