"""Bad events on a real PostgreSQL: each is rejected for one reason, counted, and never reaches a metric."""

from datetime import date, datetime
from decimal import Decimal

import pytest

from helpers import DAY
from include.statistics_export import settings
from include.statistics_export.ids import variant_keys
from include.statistics_export.metrics import _VARIANT_METRICS, VariantMetrics
from local_stack.one_shop import rejected_events, variant_metrics

NOON = datetime(2026, 11, 21, 12)
AFTER_THE_DAY = datetime(2026, 11, 22, 6)  # the moment the export runs: the whole day is past


def metrics_and_rejections(db, variant_ids=("100",), **rules):
    return (
        variant_metrics(db, "shop_a", list(variant_ids), DAY, as_of=AFTER_THE_DAY, **rules),
        rejected_events(db, "shop_a", DAY, as_of=AFTER_THE_DAY, **rules),
    )


BASELINE = VariantMetrics(impressions=1, orders=1, revenue=Decimal("10.00"))

REJECTED = [
    ("gid://shopify/ProductVariant/abc", "IMPRESSION", None, "malformed_variant_id"),
    ("gid://shopify/Product/100", "IMPRESSION", None, "malformed_variant_id"),  # another resource's id
    ("gid://shopify/ProductVariant/100?x=1", "IMPRESSION", None, "malformed_variant_id"),
    (" 100 ", "ADD_TO_CART", None, "malformed_variant_id"),
    ("100abc", "ADD_TO_CART", None, "malformed_variant_id"),
    ("", "IMPRESSION", None, "missing_variant_id"),
    ("  \t", "IMPRESSION", None, "missing_variant_id"),
    (None, "PURCHASE", Decimal("5.00"), "missing_variant_id"),
    ("100", "CLICK", None, "unknown_event_type"),
    ("100", "purchase", Decimal("5.00"), "unknown_event_type"),  # types are case-sensitive, as the app writes them
    ("100", "PURCHASE", Decimal("-5.00"), "negative_revenue"),  # a refund is not a purchase
    ("100", "PURCHASE", Decimal("1000000.01"), "revenue_above_cap"),
    ("100", "PURCHASE", Decimal("9999999999.99"), "revenue_above_cap"),
]


@pytest.mark.parametrize(("variant_id", "event_type", "revenue", "reason"), REJECTED)
def test_a_bad_event_is_rejected_for_one_reason_and_counted(db, events, variant_id, event_type, revenue, reason):
    events("shop_a", "100", "IMPRESSION", NOON)
    events("shop_a", "gid://shopify/ProductVariant/100", "PURCHASE", NOON, Decimal("10.00"))
    events("shop_a", variant_id, event_type, NOON, revenue)
    metrics, rejected = metrics_and_rejections(db)
    assert metrics == {"100": BASELINE}
    assert rejected == {reason: 1}


def test_an_event_stamped_after_the_query_is_rejected_as_future(db, events):
    events("shop_a", "100", "IMPRESSION", NOON)
    events("shop_a", "100", "PURCHASE", datetime(2026, 11, 21, 18), Decimal("3.00"))
    during_the_day = datetime(2026, 11, 21, 15)
    assert variant_metrics(db, "shop_a", ["100"], DAY, as_of=during_the_day) == {"100": VariantMetrics(impressions=1)}
    assert rejected_events(db, "shop_a", DAY, as_of=during_the_day) == {"future_timestamp": 1}
    # Once the day is over the same event counts.
    assert variant_metrics(db, "shop_a", ["100"], DAY, as_of=AFTER_THE_DAY)["100"].orders == 1


def test_an_event_far_in_the_future_belongs_to_its_own_day_and_is_rejected_there(db, events):
    events("shop_a", "100", "IMPRESSION", datetime(2099, 1, 1, 12))
    assert metrics_and_rejections(db) == ({}, {})
    # Without as_of the database clock decides: 2099 has not happened yet.
    assert rejected_events(db, "shop_a", date(2099, 1, 1)) == {"future_timestamp": 1}
    assert variant_metrics(db, "shop_a", ["100"], date(2099, 1, 1)) == {}


def test_counted_edge_cases(db, events):
    events("shop_a", "100", "PURCHASE", NOON, None)  # an order worth 0.00
    events("shop_a", "100", "PURCHASE", NOON, Decimal("0.00"))
    events("shop_a", "100", "PURCHASE", NOON, Decimal("1000000.00"))  # exactly the cap counts
    events("shop_a", "100", "IMPRESSION", NOON, Decimal("-7.00"))  # revenue on an impression is ignored
    metrics, rejected = metrics_and_rejections(db)
    assert metrics == {"100": VariantMetrics(impressions=1, orders=3, revenue=Decimal("1000000.00"))}
    assert rejected == {}


def test_every_reason_at_once_is_counted_per_reason_for_the_shop_and_day_only(db, events):
    for variant_id, event_type, revenue, _ in REJECTED:
        events("shop_a", variant_id, event_type, NOON, revenue)
    events("shop_b", "abc", "CLICK", NOON)  # another shop's
    events("shop_a", "abc", "CLICK", datetime(2026, 11, 20, 12))  # another day's
    expected: dict[str, int] = {}
    for *_, reason in REJECTED:
        expected[reason] = expected.get(reason, 0) + 1
    assert rejected_events(db, "shop_a", DAY, as_of=AFTER_THE_DAY) == expected
    assert sum(expected.values()) == len(REJECTED)


def test_the_revenue_cap_comes_from_the_environment(db, events, monkeypatch):
    events("shop_a", "100", "PURCHASE", NOON, Decimal("250.00"))
    events("shop_a", "100", "PURCHASE", NOON, Decimal("50.00"))
    assert metrics_and_rejections(db)[0]["100"].revenue == Decimal("300.00")
    monkeypatch.setenv(settings.MAX_EVENT_REVENUE.env, "100.00")
    cap = settings.load().max_event_revenue
    assert cap == Decimal("100.00")
    metrics, rejected = metrics_and_rejections(db, max_revenue=cap)
    assert (metrics["100"].orders, metrics["100"].revenue) == (1, Decimal("50.00"))
    assert rejected == {"revenue_above_cap": 1}
    # An explicit cap wins over the environment.
    assert metrics_and_rejections(db, max_revenue=Decimal("1000"))[1] == {}


@pytest.mark.parametrize("value", ["lots", "-1", "NaN", "Infinity"])
def test_a_bad_revenue_cap_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(settings.MAX_EVENT_REVENUE.env, value)
    with pytest.raises(ValueError, match=settings.MAX_EVENT_REVENUE.env):
        settings.load()


def test_unknown_event_types_can_be_stored_as_in_production(db, events):
    # The app's column is a Prisma String: the schema must not refuse what production holds.
    events("shop_a", "100", "SOMETHING_NEW", NOON)
    with db.cursor() as cur:
        cur.execute('SELECT count(*) FROM "ABTestEvent" WHERE "eventType" = %s', ("SOMETHING_NEW",))
        assert cur.fetchone()[0] == 1


def test_the_batch_query_with_its_rules_is_served_by_the_variant_index(db, events):
    events("shop_a", "100", "PURCHASE", NOON, Decimal("1.00"))
    params = {
        "shop_ids": ["shop_a"],
        "variant_keys": variant_keys(["100", "101"]),
        "start": datetime(2026, 11, 21),
        "end": datetime(2026, 11, 22),
        "as_of": None,
        "max_revenue": Decimal("1000000"),
        "max_revenues": [Decimal("1000000")],
    }
    with db.cursor() as cur:
        cur.execute("SET enable_seqscan = off")  # a tiny table would be scanned anyway; what matters is the plan
        cur.execute("EXPLAIN " + _VARIANT_METRICS, params)
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "ABTestEvent_variantId_createdAt_idx" in plan, plan
    assert 'Seq Scan on "ABTestEvent"' not in plan, plan
