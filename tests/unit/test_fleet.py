"""How the day's shops become units of work: pure packing rules."""

import math

import pytest

from include.statistics_export.fleet import (
    MAX_BATCHES,
    MAX_UNITS,
    ShopSize,
    carried_sizes,
    plan_fleet,
    sizes_from_report,
)
from include.statistics_export.handoffs import FleetPlan, ShopRef
from include.statistics_export.settings import Settings

SETTINGS = Settings(shop_tasks_up_to=50, unit_shops=50, unit_variants=1000, bulk_threshold=150, batch_variants=500)


def fleet(n: int) -> list[ShopRef]:
    return [ShopRef(f"shop_{i:06d}", f"shop-{i}.myshopify.com") for i in range(n)]


def test_a_small_fleet_keeps_one_task_group_per_shop():
    shops = fleet(50)
    assert plan_fleet(shops, {}, SETTINGS) == FleetPlan(single=shops, units=[], batch_variants=500)


def test_large_shops_stay_alone_and_the_rest_are_packed_by_shop_and_variant_budgets():
    shops = fleet(120)
    sizes = {s.shop_id: ShopSize(products=2, variants=3) for s in shops}
    sizes["shop_000007"] = ShopSize(products=150, variants=4000)
    sizes["shop_000010"] = ShopSize(products=40, variants=900)  # big for a unit: fills one almost alone
    plan = plan_fleet(shops, sizes, SETTINGS)
    assert [s.shop_id for s in plan.single] == ["shop_000007"]
    packed = [s for unit in plan.units for s in unit.shops]
    assert sorted(s.shop_id for s in packed) == sorted(s.shop_id for s in shops if s.shop_id != "shop_000007")
    assert all(len(unit.shops) <= 50 for unit in plan.units)
    for unit in plan.units:
        assert sum(sizes[s.shop_id].variants for s in unit.shops) <= 1000
    assert [(u.index, u.count) for u in plan.units] == [(n, len(plan.units)) for n in range(1, len(plan.units) + 1)]
    assert plan.units[0].label == "50 shops · unit 1/4" or plan.units[0].label.endswith(f"unit 1/{len(plan.units)}")


def test_shops_without_a_report_count_as_small():
    plan = plan_fleet(fleet(51), {}, SETTINGS)
    assert plan.single == [] and [len(u.shops) for u in plan.units] == [50, 1]


@pytest.mark.parametrize("shops", [1_100, 10_000, 100_000])
def test_every_mapped_task_stays_under_max_map_length_whatever_the_fleet(shops):
    refs = fleet(shops)
    sizes = {s.shop_id: ShopSize(products=3, variants=60) for s in refs}
    plan = plan_fleet(refs, sizes, SETTINGS)
    assert len(plan.units) <= 2 * MAX_UNITS < 1024 and len(plan.single) < 1024
    assert sum(len(u.shops) for u in plan.units) == shops


def test_sizes_come_from_the_previous_report():
    report = {"perShop": {"a": {"products": 3.0, "variants": 7.0, "batches": 1}}}
    assert sizes_from_report(report) == {"a": ShopSize(3, 7)}
    assert sizes_from_report(None) == {}


def test_the_unit_records_cross_an_xcom():
    plan = plan_fleet(fleet(60), {}, SETTINGS)
    assert FleetPlan.from_xcom(plan.to_xcom()) == plan


def test_the_batches_of_the_shops_alone_stay_under_max_map_length_by_growing():
    refs = fleet(2_000)
    # 1,000 large shops of 1,000 variants: 2,000 batches of 500 would be over max_map_length.
    sizes = {s.shop_id: ShopSize(products=300, variants=1_000) for s in refs[:1_000]}
    plan = plan_fleet(refs, sizes, SETTINGS)
    batches = sum(math.ceil(sizes[s.shop_id].variants / plan.batch_variants) for s in plan.single)
    assert len(plan.single) == 500 and plan.batch_variants > 500 and batches <= MAX_BATCHES < 1024
    assert sum(math.ceil(sizes[s.shop_id].variants / (plan.batch_variants - 1)) for s in plan.single) > MAX_BATCHES
    # A fleet whose large shops fit keeps the configured size.
    assert plan_fleet(refs, dict(list(sizes.items())[:10]), SETTINGS).batch_variants == 500


def test_sizes_are_carried_over_a_failed_day_and_measured_again_once_exported():
    previous = {"big": ShopSize(400, 9000), "gone_small": ShopSize(2, 3)}
    per_shop = {"big": {"catalog_read": "bulk"}, "new": {"products": 3.0, "variants": 7.0}}
    # big's planning failed today: it keeps yesterday's size, so tomorrow it is alone again, not packed.
    carried = carried_sizes(previous, per_shop, failed=["big"])
    assert carried == {
        "big": {"products": 400, "variants": 9000},
        "gone_small": {"products": 2, "variants": 3},
        "new": {"products": 3, "variants": 7},
    }
    report = {"shopSizes": carried, "perShop": {"new": {"products": 3, "variants": 7}}}
    assert sizes_from_report(report)["big"] == ShopSize(400, 9000)
    plan = plan_fleet([ShopRef(s, f"{s}.example") for s in ("big", "new", *(f"s{n}" for n in range(60)))],
                      sizes_from_report(report), SETTINGS)  # fmt: skip
    assert [s.shop_id for s in plan.single] == ["big"]
    # A report from before shopSizes were kept: its perShop figures still count.
    assert sizes_from_report({"perShop": {"x": {"products": 5, "variants": 9}}}) == {"x": ShopSize(5, 9)}
