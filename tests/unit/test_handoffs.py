"""What tasks hand each other crosses an XCom as JSON and comes back equal."""

import json
from decimal import Decimal

import pytest

from include.statistics_export.errors import MissingHandoff
from include.statistics_export.handoffs import (
    MAX_LABEL,
    BatchPlan,
    BatchResult,
    BatchSizing,
    CatalogRead,
    FleetPlan,
    ShopPlan,
    ShopRef,
    ShopUnit,
    UnitResult,
    fit_label,
    handoff_task,
)
from include.statistics_export.totals import Totals

BATCH = BatchPlan("shop_a", "a.example", "2026-11-21", 1, 2, ["1", "2"], "EUR", variants=5)
RECORDS = [
    ShopRef("shop_a", "a.example"),
    CatalogRead("shop_a", "a.example", "bulk", "EUR", 400, "gid://shopify/BulkOperation/1", objects=9),
    BATCH,
    ShopPlan("shop_a", "a.example", "pages", "some products only", 5, [BATCH]),
    BatchResult(
        "shop_a",
        "a.example",
        1,
        products=2,
        variants=5,
        files=10,
        missing_products=["3"],
        file_totals=Totals(5, 10, 2, 1, Decimal("12.30")),
        seconds=0.5,
        phases={"metrics_sql": [0.01, 0.002], "uploads": [0.3, 0.05]},
        parquet_key="part.parquet",
        parquet_totals=Totals(5, 10, 2, 1, Decimal("12.30")),
    ),
    FleetPlan([ShopRef("shop_a", "a.example")], [ShopUnit(1, 1, [ShopRef("shop_b", "b.example")])], 500, {"shop_a": 3}),
    BatchSizing(500, {"shop_a": 3}),
    UnitResult(
        2,
        failures={"shop_c": "Shop c.example: token refused"},
        permanent=False,
        moved=[ShopRef("shop_d", "d.example")],
    ),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_record_survives_the_xcom_round_trip(record):
    carried = json.loads(json.dumps(record.to_xcom()))
    assert type(record).from_xcom(carried) == record


def test_fields_left_at_their_defaults_are_not_carried():
    packed = BatchResult("shop_b", "b.example", 1, products=1, variants=2, files=4, file_totals=Totals(2, 3, 1, 0))
    carried = packed.to_xcom()
    assert set(carried) == {"shop_id", "shop_domain", "batch", "products", "variants", "files", "file_totals"}
    assert BatchResult.from_xcom(json.loads(json.dumps(carried))) == packed
    plan = ShopPlan(
        "shop_b", "b.example", "packed", None, 2, [BatchPlan("shop_b", "b.example", "2026-11-21", 1, 1, [])]
    )
    assert plan.to_xcom()["batches"] == [
        {
            "shop_id": "shop_b",
            "shop_domain": "b.example",
            "date": "2026-11-21",
            "index": 1,
            "count": 1,
            "product_ids": [],
        }
    ]
    assert ShopPlan.from_xcom(json.loads(json.dumps(plan.to_xcom()))) == plan
    outcome = UnitResult(1, [plan], [packed], phases={"rows": [0.5, 0.1]})
    assert UnitResult.from_xcom(json.loads(json.dumps(outcome.to_xcom()))) == outcome


def test_money_crosses_as_a_decimal_string():
    (result,) = [record for record in RECORDS if isinstance(record, BatchResult)]
    carried = result.to_xcom()
    assert carried["file_totals"]["revenue"] == carried["parquet_totals"]["revenue"] == "12.30"


def test_an_unknown_field_is_refused_by_name():
    with pytest.raises(ValueError, match=r"ShopRef has no field\(s\) \['token'\]"):
        ShopRef.from_xcom({"shop_id": "a", "shop_domain": "a.example", "token": "x"})


def test_a_catalog_read_falls_back_to_pages_saying_why():
    read = RECORDS[1].as_pages("FAILED; read page by page instead")
    assert (read.mode, read.operation_id, read.note) == ("pages", None, "FAILED; read page by page instead")
    assert BATCH.label == "a.example · batch 1/2"


def unit_with_failures(shops: int, failed: int, *, long_domains: bool = False) -> tuple[ShopUnit, UnitResult]:
    refs = [
        ShopRef(f"shop_{n:04d}", ("x" * 300 if long_domains else f"shop-{n:04d}") + ".myshopify.com")
        for n in range(shops)
    ]
    unit = ShopUnit(3, 20, refs)
    return unit, UnitResult(3, failures={ref.shop_id: "revoked" for ref in refs[:failed]})


def test_a_failed_unit_label_names_every_failed_shop_when_they_fit():
    unit, outcome = unit_with_failures(100, 3)
    assert outcome.failed_label(unit) == (
        "100 shops · unit 3/20 · failed: shop-0000.myshopify.com, shop-0001.myshopify.com, shop-0002.myshopify.com"
    )


def test_a_failed_unit_label_fits_airflow_s_column_and_counts_the_shops_it_cannot_name():
    unit, outcome = unit_with_failures(100, 30)
    label = outcome.failed_label(unit)
    assert len(label) <= MAX_LABEL and label.startswith("100 shops · unit 3/20 · failed: shop-0000.myshopify.com, ")
    named = label.count(".myshopify.com")
    assert label.endswith(f" and {30 - named} more") and 5 <= named < 30


def test_a_label_of_domains_too_long_to_name_still_fits():
    unit, outcome = unit_with_failures(4, 2, long_domains=True)
    assert outcome.failed_label(unit) == "4 shops · unit 3/20 · failed: 2 shops (see the day's report)"
    assert len(fit_label("x" * 400)) == MAX_LABEL and fit_label("short") == "short"


def test_a_failed_upstream_hands_over_none_and_a_list_argument_refuses_it():
    def body(shops: list[ShopRef], plan: FleetPlan | None) -> int:
        return len(shops)

    typed = handoff_task(body)
    assert typed([{"shop_id": "a", "shop_domain": "a.example"}], None) == 1
    # None is what a task gets from an upstream that failed: never taken for an empty list.
    with pytest.raises(MissingHandoff, match="body got no shops: the task that hands it over did not finish"):
        typed(None, None)

    def optional(shops: list[ShopRef] | None) -> int:
        return -1 if shops is None else len(shops)

    assert handoff_task(optional)(None) == -1  # a task that handles it says so in its annotation
