"""How the day's shops become units of work: pure packing rules."""

import math
import random

import pytest

from include.statistics_export.batching import fitted_cut, streamed_batch_size
from include.statistics_export.catalog import batched_by_variants
from include.statistics_export.fleet import (
    MAX_BATCHES,
    MAX_UNITS,
    batch_budgets,
    carried_sizes,
    moved_groups,
    plan_alone,
    plan_fleet,
)
from include.statistics_export.handoffs import FleetPlan, ShopRef
from include.statistics_export.report_schema import RunReport, ShopFigures, ShopSize
from include.statistics_export.settings import Settings

SETTINGS = Settings(shop_tasks_up_to=50, unit_shops=50, unit_variants=1000, bulk_threshold=150, batch_variants=500)


def fleet(n: int) -> list[ShopRef]:
    return [ShopRef(f"shop_{i:06d}", f"shop-{i}.myshopify.com") for i in range(n)]


def test_a_small_fleet_keeps_one_task_group_per_shop():
    shops = fleet(50)
    # No sizes known yet: the day's 1,024 batches are shared alike (one each, and the rest in equal parts).
    budgets = {s.shop_id: 1 + (1024 - 50) // 50 for s in shops}
    assert plan_fleet(shops, {}, SETTINGS) == FleetPlan(
        single=shops, units=[], batch_variants=500, batch_budgets=budgets
    )


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
    # shop_000010's 900 variants close the first unit at 34 shops (27 + 900 + 24 x 3 variants).
    assert [unit.label for unit in plan.units] == ["34 shops · unit 1/3", "50 shops · unit 2/3", "35 shops · unit 3/3"]


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


def sizes_from_report(document: dict) -> dict[str, ShopSize]:
    return RunReport.from_document(document).known_sizes()


def test_sizes_come_from_the_previous_report():
    report = {"perShop": {"a": {"products": 3.0, "variants": 7.0, "batches": 1}}}
    assert sizes_from_report(report) == {"a": ShopSize(3, 7)}
    assert sizes_from_report({}) == {}


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
    per_shop = {"big": ShopFigures(catalog_read="bulk"), "new": ShopFigures(products=3, variants=7, batches=1)}
    # big's planning failed today: it keeps yesterday's size, so tomorrow it is alone again, not packed.
    carried = carried_sizes(previous, per_shop, failed=["big"])
    assert carried == {"big": ShopSize(400, 9000), "gone_small": ShopSize(2, 3), "new": ShopSize(3, 7)}
    report = RunReport("2026-11-21", 2, shop_sizes=carried, per_shop={"new": ShopFigures(3, 7, batches=1)})
    assert sizes_from_report(report.document())["big"] == ShopSize(400, 9000)
    plan = plan_fleet([ShopRef(s, f"{s}.example") for s in ("big", "new", *(f"s{n}" for n in range(60)))],
                      report.known_sizes(), SETTINGS)  # fmt: skip
    assert [s.shop_id for s in plan.single] == ["big"]
    # A report from before shopSizes were kept: its perShop figures still count.
    assert sizes_from_report({"perShop": {"x": {"products": 5, "variants": 9}}}) == {"x": ShopSize(5, 9)}


@pytest.mark.parametrize("map_limit", [1024, 64, 16])
@pytest.mark.parametrize("shops", [10, 300, 5_000, 60_000])
def test_no_mapped_list_exceeds_max_map_length_at_any_fleet_size(shops, map_limit):
    refs = fleet(shops)
    # A third large (bulk) shops, some giants, the rest small: every kind of mapped list at once.
    sizes = {
        s.shop_id: ShopSize(400, 900_000) if n % 97 == 0 else ShopSize(300, 2_000) if n % 3 == 0 else ShopSize(2, 4)
        for n, s in enumerate(refs)
    }
    plan = plan_fleet(refs, sizes, SETTINGS, map_limit)

    assert len(plan.single) <= map_limit // 2 and len(plan.units) <= map_limit
    assert sum(plan.batch_budgets.values()) <= map_limit and set(plan.batch_budgets) == {s.shop_id for s in plan.single}
    assert sum(len(u.shops) for u in plan.units) + len(plan.single) == shops
    # Every packed shop could turn out large and leave its unit: their groups still fit one mapped task.
    moved = [shop for unit in plan.units for shop in unit.shops]
    groups = moved_groups(moved, map_limit)
    assert len(groups) <= map_limit and [s for g in groups for s in g.shops] == moved


def test_batch_budgets_follow_the_shops_known_sizes_and_share_alike_when_none_is_known():
    refs = fleet(3)
    sizes = {"shop_000000": ShopSize(900, 600_000), "shop_000001": ShopSize(200, 1_000)}
    budgets = batch_budgets(refs, sizes, 500, 1024)
    # 1,200 and 2 batches expected; the unknown shop is taken to be as large as the largest known.
    assert sum(budgets.values()) <= 1024 and budgets["shop_000001"] == 1 + 1021 * 2 // 2402
    assert budgets["shop_000000"] == budgets["shop_000002"] > 400
    assert set(batch_budgets(refs, {}, 500, 1024).values()) == {1 + 1021 // 3}


@pytest.mark.parametrize("seed", range(20))
def test_a_cut_within_its_budget_never_exceeds_it_and_keeps_every_product(seed):
    rng = random.Random(seed)
    products = [rng.choice([1, 1, 2, 3, 50, 250, 2048]) for _ in range(rng.randint(1, 3_000))]
    budget = rng.randint(1, 120)

    batches = fitted_cut(products, lambda variants: variants, 1, budget)
    assert len(batches) <= budget and [p for b in batches for p in b] == products
    # A cut made as it streams (a bulk result), sized beforehand from the result's lines (a product and its
    # variants are a line each), stays within the budget too.
    lines = sum(1 + variants for variants in products)
    size = streamed_batch_size(lines, 1, budget)
    assert len(list(batched_by_variants(products, lambda variants: variants, size))) <= budget


def test_a_shop_that_failed_partway_without_an_earlier_size_gets_none():
    per_shop = {"new": ShopFigures(2, 40, batches=1), "fine": ShopFigures(3, 7, batches=1)}
    assert carried_sizes({}, per_shop, failed=["new"]) == {"fine": ShopSize(3, 7)}
    # A shop that planned but exported no batch is not measured by it: it keeps what it had.
    assert carried_sizes({"empty": ShopSize(5, 9)}, {"empty": ShopFigures(catalog_read="pages")}, []) == {
        "empty": ShopSize(5, 9)
    }


def test_a_run_of_some_products_keeps_its_shops_alone_and_refuses_more_than_a_mapped_task_holds():
    assert plan_alone(fleet(3), SETTINGS).single == fleet(3)
    with pytest.raises(ValueError, match="600 shops are more than 512; name the shops too"):
        plan_alone(fleet(600), SETTINGS)
