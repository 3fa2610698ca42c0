"""The day's shops as units of work, so that the number of task instances follows the work, not the fleet.

- A small fleet (at most ``shop_tasks_up_to`` active shops) keeps one mapped task group per shop.
- Otherwise a shop whose last report says it is large (at least ``bulk_threshold`` products) stays alone,
  on the per-shop path (bulk read, batches mapped in parallel); every other shop is packed with others
  into units of at most ``unit_shops`` shops and about ``unit_variants`` variants, each exported by one
  task instance. Sizes are the nearest earlier day's (``shop_sizes``: each shop's last measured size, carried
  forward over days it failed). A shop without one (new, or a first run) counts as small: it fits a unit in
  the common case, and if its first page shows it large it leaves the unit and is exported alone.
- About ``MAX_UNITS`` units and ``MAX_SINGLE`` shops alone at most: past those, units take more shops and the
  smallest large shops are packed too (a large shop a unit finds leaves it and is read in bulk all the same);
  and about ``MAX_BATCHES`` batches for the shops alone: past those, the day's batches grow.
- Every mapped list stays at or under Airflow's ``max_map_length`` (``map_limit``, 1024 by default) whatever
  the fleet and whatever the shops turn out to hold: at most ``map_limit // 2`` shops alone; units repacked
  with larger ones until there are at most ``map_limit``; each shop alone a budget of batches
  (:func:`batch_budgets`, together at most ``map_limit``) its cut never exceeds, its batches growing instead;
  and the shops that leave their units grouped into at most ``map_limit`` tasks (:func:`moved_groups`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from include.statistics_export.handoffs import FleetPlan, ShopRef, ShopUnit
from include.statistics_export.report_schema import ShopFigures, ShopSize
from include.statistics_export.settings import Settings

# Airflow's [core] max_map_length by default: the most task instances one mapped task may have.
DEFAULT_MAP_LIMIT = 1024
MAX_UNITS = 500
# Large shops alone at most: past this (a fleet of giants), the smallest of them are packed too.
MAX_SINGLE = 500
# Batches of the shops alone the day aims at, at most, by their sizes in the last report: past it the batches
# grow, so export_product_batch stays under max_map_length with room for shops grown since.
MAX_BATCHES = 800
# What a shop without a report is assumed to hold: the long tail's typical size.
UNKNOWN_SHOP_VARIANTS = 10


def carried_sizes(
    previous: Mapping[str, ShopSize], per_shop: Mapping[str, ShopFigures], failed: Iterable[str]
) -> dict[str, ShopSize]:
    """Return the sizes the day keeps for the next day: each shop the day exported whole as it was measured, and
    every other shop as the last day that had it said, so a shop whose day failed is not taken for a small one
    tomorrow. A shop that failed is never measured by what it exported before failing (a part of it): without an
    earlier size it has none."""
    unfinished = set(failed)
    sizes = dict(previous)
    for shop_id, figures in per_shop.items():
        if shop_id not in unfinished and figures.measured:
            sizes[shop_id] = ShopSize(figures.products, figures.variants)
    return dict(sorted(sizes.items()))


def plan_fleet(
    shops: Sequence[ShopRef], sizes: Mapping[str, ShopSize], settings: Settings, map_limit: int = DEFAULT_MAP_LIMIT
) -> FleetPlan:
    """Split the active shops into shops alone and packed units (see the module's rules)."""
    most_alone = min(MAX_SINGLE, map_limit // 2)
    if len(shops) <= min(settings.shop_tasks_up_to, most_alone):
        return _with_batches(list(shops), [], sizes, settings, map_limit)
    large = [s for s in shops if s.shop_id in sizes and sizes[s.shop_id].products >= settings.bulk_threshold]
    single = sorted(large, key=lambda s: -sizes[s.shop_id].variants)[:most_alone]
    alone = {s.shop_id for s in single}
    small = [s for s in shops if s.shop_id not in alone]
    target = min(MAX_UNITS, map_limit // 2)
    shops_per_unit = max(settings.unit_shops, math.ceil(len(small) / target))
    variants_per_unit = max(settings.unit_variants, math.ceil(_variants(small, sizes) / target))
    groups = _packed(small, sizes, shops_per_unit, variants_per_unit)
    while len(groups) > map_limit:  # greedy packing left too many half-full units: pack into larger ones
        shops_per_unit, variants_per_unit = 2 * shops_per_unit, 2 * variants_per_unit
        groups = _packed(small, sizes, shops_per_unit, variants_per_unit)
    units = [ShopUnit(n, len(groups), group) for n, group in enumerate(groups, start=1)]
    return _with_batches(single, units, sizes, settings, map_limit)


def plan_alone(shops: Sequence[ShopRef], settings: Settings, map_limit: int = DEFAULT_MAP_LIMIT) -> FleetPlan:
    """Keep every shop alone (a run of some products only: the per-shop path filters them); refuse more shops
    than a mapped task may hold."""
    if len(shops) > map_limit // 2:
        raise ValueError(
            f"A run of some products exports each of its shops alone: {len(shops)} shops are more than "
            f"{map_limit // 2}; name the shops too (the shop_ids param)"
        )
    return _with_batches(list(shops), [], {}, settings, map_limit)


def _packed(
    shops: Sequence[ShopRef], sizes: Mapping[str, ShopSize], shops_per_unit: int, variants_per_unit: int
) -> list[list[ShopRef]]:
    """Pack shops in order into groups of at most ``shops_per_unit`` shops and about ``variants_per_unit``."""
    groups: list[list[ShopRef]] = []
    load = 0
    for shop in shops:
        variants = sizes[shop.shop_id].variants if shop.shop_id in sizes else UNKNOWN_SHOP_VARIANTS
        if groups and len(groups[-1]) < shops_per_unit and load + variants <= variants_per_unit:
            groups[-1].append(shop)
            load += variants
        else:
            groups.append([shop])
            load = variants
    return groups


def _with_batches(
    single: list[ShopRef], units: list[ShopUnit], sizes: Mapping[str, ShopSize], settings: Settings, map_limit: int
) -> FleetPlan:
    size = batch_variants(single, sizes, settings, min(MAX_BATCHES, map_limit))
    return FleetPlan(single, units, size, batch_budgets(single, sizes, size, map_limit))


def batch_budgets(
    alone: Sequence[ShopRef], sizes: Mapping[str, ShopSize], day_size: int, map_limit: int
) -> dict[str, int]:
    """Return each shop alone's most batches: together at most ``map_limit``, whatever the shops hold.

    Each shop gets one, and the rest is shared in proportion to the batches it is expected to need at the day's
    size by its last report; a shop without one (new, or the first day) is expected to need as many as the
    largest known shop (every shop alike on a first day). A shop holding more than its budget allows at the
    day's size is cut into larger batches (export.fitted_cut), never into more.
    """
    if not alone:
        return {}
    expected = {s.shop_id: max(1, math.ceil(sizes[s.shop_id].variants / day_size)) for s in alone if s.shop_id in sizes}
    unknown = max(expected.values(), default=1)
    weights = {s.shop_id: expected.get(s.shop_id, unknown) for s in alone}
    spare, total = max(0, map_limit - len(alone)), sum(weights.values())
    return {shop_id: 1 + spare * weight // total for shop_id, weight in weights.items()}


def moved_groups(moved: Sequence[ShopRef], map_limit: int = DEFAULT_MAP_LIMIT) -> list[ShopUnit]:
    """Group the shops that left their units into at most ``map_limit`` tasks: one shop each while they fit."""
    per_task = max(1, math.ceil(len(moved) / map_limit))
    groups = [list(moved[n : n + per_task]) for n in range(0, len(moved), per_task)]
    return [ShopUnit(n, len(groups), group) for n, group in enumerate(groups, start=1)]


def batch_variants(
    alone: Sequence[ShopRef], sizes: Mapping[str, ShopSize], settings: Settings, target: int = MAX_BATCHES
) -> int:
    """Return the day's batch size: the setting, or the least above it that cuts the shops alone (by their last
    report) into at most ``target`` batches."""
    known = [sizes[s.shop_id].variants for s in alone if s.shop_id in sizes and sizes[s.shop_id].variants > 0]

    def batches(size: int) -> int:
        return sum(math.ceil(variants / size) for variants in known)

    low, high = settings.batch_variants, max([settings.batch_variants, *known])
    if batches(low) <= target:
        return low
    while low < high:  # batches() only falls as the size grows; at the largest shop's size it is len(known)
        middle = (low + high) // 2
        low, high = (low, middle) if batches(middle) <= target else (middle + 1, high)
    return low


def _variants(shops: Sequence[ShopRef], sizes: Mapping[str, ShopSize]) -> int:
    return sum(sizes[s.shop_id].variants if s.shop_id in sizes else UNKNOWN_SHOP_VARIANTS for s in shops)
