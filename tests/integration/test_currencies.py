"""Money in every currency: the revenue cap knows the shop's currency, and a day's revenue the rows cannot
hold fails its shop alone, naming it and the numbers."""

from decimal import Decimal

import psycopg

from helpers import (
    DAY,
    NOON_ON_DAY,
    add_event,
    bucket_objects,
    current_settings,
    product,
    register_shop,
    writer_for,
)
from include.statistics_export import reconcile, tasks
from include.statistics_export.event_rules import MAX_ROW_REVENUE, revenue_cap, shops_parameters
from include.statistics_export.handoffs import ShopRef, ShopUnit
from include.statistics_export.reconcile import ShopCheck, reconcile_shops
from include.statistics_export.report import summarize_run
from include.statistics_export.totals import Totals
from local_stack.one_shop import reconcile_shop

# About 1,200 USD: an ordinary purchase, over the setting's 1,000,000.00 as a bare number.
VND_PURCHASE = "30000000.00"


def unit_of(*shop_ids: str) -> ShopUnit:
    return ShopUnit(1, 1, [ShopRef(shop_id, f"{shop_id.replace('_', '-')}.myshopify.com") for shop_id in shop_ids])


def test_the_cap_scales_with_the_currency_and_keeps_the_setting_for_dollar_sized_units():
    base = Decimal("1000000.00")
    assert revenue_cap("USD", base) == revenue_cap("EUR", base) == base
    assert revenue_cap("VND", base) == revenue_cap("IDR", base) == base * 100_000
    assert revenue_cap("KRW", base) == revenue_cap("COP", base) == base * 10_000
    assert revenue_cap("jpy", base) == base * 1_000
    # A missing or unknown currency gets no guessed (dollar) cap: only what a row holds; the report says why.
    assert revenue_cap(None, base) == revenue_cap("XXX", base) == MAX_ROW_REVENUE


def test_a_shop_of_an_unknown_currency_is_named_in_the_report_with_why_its_revenue_is_not_capped(
    db, sandbox, connections, s3
):
    register_shop(db, sandbox, "shop_x", [product(1, variants=1, images=0)], currency="XXX")
    register_shop(db, sandbox, "shop_us", [product(2, variants=1, images=0)])
    add_event(db, "shop_x", "1001", "PURCHASE", NOON_ON_DAY, VND_PURCHASE)
    outcome = tasks.export_unit(unit_of("shop_x", "shop_us"), writer_for(DAY), current_settings())
    assert outcome.failures == {}

    report = summarize_run(DAY.isoformat(), unit_of("shop_x", "shop_us").shops, outcome.plans, [], outcome.results)

    assert "shop's currency 'XXX' is not in the revenue-cap table" in report.per_shop["shop_x"].revenue_cap_note
    per_shop = report.document()["perShop"]
    assert per_shop["shop_x"]["revenueCapNote"] == report.per_shop["shop_x"].revenue_cap_note
    assert "revenueCapNote" not in per_shop["shop_us"]
    (x,) = [r for r in outcome.results if r.shop_id == "shop_x"]
    assert x.file_totals.revenue == Decimal(VND_PURCHASE)  # counted: no dollar cap was guessed


def test_a_vnd_shops_large_purchase_is_counted_and_reconciles(db, sandbox, connections):
    register_shop(db, sandbox, "shop_vn", [product(1, variants=1, images=0)], currency="VND")
    register_shop(db, sandbox, "shop_us", [product(2, variants=1, images=0)])
    add_event(db, "shop_vn", "1001", "PURCHASE", NOON_ON_DAY, VND_PURCHASE)
    add_event(db, "shop_us", "2001", "PURCHASE", NOON_ON_DAY, VND_PURCHASE)  # 30M USD: a unit error

    # A packed unit reads each shop's currency with its catalog, and its shops are of any currencies.
    outcome = tasks.export_unit(unit_of("shop_vn", "shop_us"), writer_for(DAY), current_settings())
    assert outcome.failures == {}
    vn, us = sorted(outcome.results, key=lambda r: r.shop_id != "shop_vn")

    assert (vn.file_totals.orders, vn.file_totals.revenue) == (1, Decimal(VND_PURCHASE))
    assert (us.file_totals.orders, us.file_totals.revenue) == (0, Decimal("0.00"))
    settings = current_settings()
    with psycopg.connect(connections.app_db_url) as conn:
        vn_check = reconcile_shop(
            conn, "shop_vn", DAY, 1, vn.file_totals, max_revenue=settings.max_event_revenue, currency="VND"
        )
        us_check = reconcile_shop(
            conn, "shop_us", DAY, 1, us.file_totals, max_revenue=settings.max_event_revenue, currency="USD"
        )
    assert vn_check.ok and vn_check.rejected_events == {}, vn_check.differences
    assert us_check.ok and us_check.rejected_events == {"revenue_above_cap": 1}


class CountingCursor(psycopg.Cursor):
    """A cursor that counts the statements it executes (on its connection's ``statements``)."""

    def execute(self, *args, **kwargs):
        self.connection.statements += 1
        return super().execute(*args, **kwargs)


def test_the_day_is_reconciled_in_three_queries_however_many_shops_each_with_its_currency(db, sandbox, connections):
    register_shop(db, sandbox, "shop_vn", [product(1, variants=1, images=0)], currency="VND")
    register_shop(db, sandbox, "shop_us", [product(2, variants=1, images=0)])
    register_shop(db, sandbox, "shop_quiet", [product(3, variants=2, images=0)])
    add_event(db, "shop_vn", "1001", "PURCHASE", NOON_ON_DAY, VND_PURCHASE)
    add_event(db, "shop_us", "2001", "PURCHASE", NOON_ON_DAY, VND_PURCHASE)  # over the USD cap: rejected
    add_event(db, "shop_us", "2001", "IMPRESSION", NOON_ON_DAY)
    add_event(db, "shop_us", "999999", "IMPRESSION", NOON_ON_DAY)  # a variant of no row
    unit = unit_of("shop_vn", "shop_us", "shop_quiet")
    outcome = tasks.export_unit(unit, writer_for(DAY), current_settings())
    assert outcome.failures == {}
    currencies = {"shop_vn": "VND", "shop_us": "USD", "shop_quiet": None}
    checks = [
        ShopCheck(r.shop_id, r.variants, r.file_totals, currencies[r.shop_id])
        for r in sorted(outcome.results, key=lambda r: r.shop_id)
    ]
    settings = current_settings()
    with psycopg.connect(connections.app_db_url, cursor_factory=CountingCursor) as conn:
        conn.statements = 0
        together = reconcile_shops(conn, DAY, checks, max_revenue=settings.max_event_revenue)
        assert conn.statements == 3
        alone = [
            reconcile_shop(
                conn,
                c.shop_id,
                DAY,
                c.catalog_variants,
                c.files,
                max_revenue=settings.max_event_revenue,
                currency=c.currency,
            )
            for c in checks
        ]
    assert [r.document() for r in together] == [r.document() for r in alone]
    # "Has a row" is one hashed lookup, whatever the fresh rows' statistics say (a join was planned as every
    # event against every row of its shop right after an export).
    currencies_params = {**shops_parameters(DAY, currencies, max_revenue=settings.max_event_revenue), "day": DAY}
    with psycopg.connect(connections.app_db_url) as conn:
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + reconcile._EVENT_TOTALS, currencies_params))
    assert "hashed SubPlan" in plan and "Left Join" not in plan, plan
    by_shop = {r.shop_id: r for r in together}
    assert all(r.ok for r in together), [r.differences for r in together]
    assert by_shop["shop_vn"].events.revenue == Decimal(VND_PURCHASE)
    assert by_shop["shop_us"].rejected_events == {"revenue_above_cap": 1}
    assert by_shop["shop_us"].unknown_variant_ids == ["999999"]
    assert by_shop["shop_quiet"].document()["rows"]["variants"] == 2
    assert by_shop["shop_quiet"].events == Totals() and by_shop["shop_quiet"].rejected_events == {}

    # A shop whose rows were tampered with is named alone; its neighbours still agree.
    with db.cursor() as cur:
        cur.execute('UPDATE "VariantDailyStatistics" SET impressions = impressions + 5 WHERE shop = %s', ("shop_us",))
    db.commit()
    with psycopg.connect(connections.app_db_url) as conn:
        again = {r.shop_id: r for r in reconcile_shops(conn, DAY, checks, max_revenue=settings.max_event_revenue)}
    assert [s for s, r in again.items() if not r.ok] == ["shop_us"]
    assert 'impressions differ: files 1, "VariantDailyStatistics" 6, events 1' in again["shop_us"].differences[0]


def test_a_day_revenue_over_what_the_rows_hold_fails_that_shop_alone_in_its_unit(db, sandbox, s3, connections):
    register_shop(db, sandbox, "shop_vn", [product(1, variants=1, images=0)], currency="VND")
    register_shop(db, sandbox, "shop_ok", [product(2, variants=1, images=0)])
    # Two purchases of 6,000,000,000 VND each: both under VND's cap, their sum over DECIMAL(12, 2).
    for _ in range(2):
        add_event(db, "shop_vn", "1001", "PURCHASE", NOON_ON_DAY, "6000000000.00")
    add_event(db, "shop_ok", "2001", "PURCHASE", NOON_ON_DAY, "19.90")

    outcome = tasks.export_unit(unit_of("shop_vn", "shop_ok"), writer_for(DAY), current_settings())

    assert [r.shop_id for r in outcome.results] == ["shop_ok"]
    assert [p.shop_id for p in outcome.plans] == ["shop_ok"]
    assert set(outcome.failures) == {"shop_vn"} and outcome.permanent
    reason = outcome.failures["shop_vn"]
    assert "Shop shop_vn on 2026-11-21" in reason and "product 1 variant 1001: 12000000000.00 VND" in reason
    assert "9999999999.99" in reason and "DECIMAL(12, 2)" in reason
    keys = bucket_objects(s3, connections.bucket)
    assert not [k for k in keys if k.startswith("statistic-exports/shop_vn/")]  # nothing of it written
    assert [k for k in keys if k.startswith("statistic-exports/shop_ok/")]
    with psycopg.connect(connections.app_db_url) as conn:
        rows = conn.execute('SELECT shop, revenue FROM "VariantDailyStatistics"').fetchall()
    assert rows == [("shop_ok", Decimal("19.90"))]
    assert outcome.results[0].file_totals == Totals(1, 0, 0, 1, Decimal("19.90"))
