"""The day's shops as units of work, so that the number of task instances follows the work, not the fleet.

- A small fleet (at most ``shop_tasks_up_to`` active shops) keeps one mapped task group per shop.
- Otherwise a shop whose last report says it is large (at least ``bulk_threshold`` products) stays alone,
  on the per-shop path (bulk read, batches mapped in parallel); every other shop is packed with others
  into units of at most ``unit_shops`` shops and about ``unit_variants`` variants, each exported by one
  task instance. Sizes come from the newest report (``shopSizes``: each shop's last measured size, carried
  forward over days it failed). A shop without one (new, or a first run) counts as small: it fits a unit in
  the common case, and if its first page shows it large it leaves the unit and is exported alone.
- About ``MAX_UNITS`` units at most (greedy packing may leave units half full: under 1,000 in the worst
  case) and ``MAX_SINGLE`` shops alone: past those, units take more shops and the smallest large shops are
  packed too; and about ``MAX_BATCHES`` batches for the shops alone: past those, the day's batches grow. So
  each mapped task stays under Airflow's ``max_map_length`` (1024) whatever the fleet's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from include.statistics_export.handoffs import FleetPlan, ShopRef, ShopUnit
from include.statistics_export.settings import Settings

MAX_UNITS = 500
# Large shops alone at most: past this (a fleet of giants), the smallest of them are packed too.
MAX_SINGLE = 500
# Batches of the shops alone the day aims at, at most, by their sizes in the last report: past it the batches
# grow, so export_product_batch stays under max_map_length with room for shops grown since.
MAX_BATCHES = 800
# What a shop without a report is assumed to hold: the long tail's typical size.
UNKNOWN_SHOP_VARIANTS = 10


@dataclass(frozen=True)
class ShopSize:
    """A shop's size as its last report saw it."""

    products: int
    variants: int


def sizes_from_report(document: Mapping[str, Any] | None) -> dict[str, ShopSize]:
    """Return each shop's size from a day's report: its ``shopSizes`` (every shop ever measured, carried
    forward), else, in a report from before they were kept, the ``perShop`` figures of the shops exported."""
    figures_by_shop = (document or {}).get("shopSizes") or (document or {}).get("perShop") or {}
    return {
        shop_id: ShopSize(int(figures.get("products", 0)), int(figures.get("variants", 0)))
        for shop_id, figures in figures_by_shop.items()
    }


def carried_sizes(
    previous: Mapping[str, ShopSize], per_shop: Mapping[str, Mapping[str, Any]], failed: Iterable[str]
) -> dict[str, dict[str, int]]:
    """Return the sizes the day's report keeps for the next day: each shop the day exported whole as it was
    measured, and every other shop as the last report that had it said, so a shop whose day failed is not
    taken for a small one tomorrow."""
    unfinished = set(failed)
    sizes = {shop_id: {"products": size.products, "variants": size.variants} for shop_id, size in previous.items()}
    for shop_id, figures in per_shop.items():
        if (shop_id not in unfinished or shop_id not in sizes) and "variants" in figures:
            sizes[shop_id] = {"products": int(figures.get("products", 0)), "variants": int(figures["variants"])}
    return dict(sorted(sizes.items()))


def plan_fleet(shops: Sequence[ShopRef], sizes: Mapping[str, ShopSize], settings: Settings) -> FleetPlan:
    """Split the active shops into shops alone and packed units (see the module's rules)."""
    if len(shops) <= settings.shop_tasks_up_to:
        return FleetPlan(single=list(shops), units=[], batch_variants=batch_variants(shops, sizes, settings))
    large = [s for s in shops if s.shop_id in sizes and sizes[s.shop_id].products >= settings.bulk_threshold]
    single = sorted(large, key=lambda s: -sizes[s.shop_id].variants)[:MAX_SINGLE]
    alone = {s.shop_id for s in single}
    small = [s for s in shops if s.shop_id not in alone]
    shops_per_unit = max(settings.unit_shops, math.ceil(len(small) / MAX_UNITS))
    variants_per_unit = max(settings.unit_variants, math.ceil(_variants(small, sizes) / MAX_UNITS))
    groups: list[list[ShopRef]] = []
    load = 0
    for shop in small:
        variants = sizes[shop.shop_id].variants if shop.shop_id in sizes else UNKNOWN_SHOP_VARIANTS
        if groups and len(groups[-1]) < shops_per_unit and load + variants <= variants_per_unit:
            groups[-1].append(shop)
            load += variants
        else:
            groups.append([shop])
            load = variants
    units = [ShopUnit(n, len(groups), group) for n, group in enumerate(groups, start=1)]
    return FleetPlan(single=single, units=units, batch_variants=batch_variants(single, sizes, settings))


def batch_variants(alone: Sequence[ShopRef], sizes: Mapping[str, ShopSize], settings: Settings) -> int:
    """Return the day's batch size: the setting, or the least above it that cuts the shops alone (by their last
    report) into at most MAX_BATCHES batches."""
    known = [sizes[s.shop_id].variants for s in alone if s.shop_id in sizes and sizes[s.shop_id].variants > 0]

    def batches(size: int) -> int:
        return sum(math.ceil(variants / size) for variants in known)

    low, high = settings.batch_variants, max([settings.batch_variants, *known])
    if batches(low) <= MAX_BATCHES:
        return low
    while low < high:  # batches() only falls as the size grows; at the largest shop's size it is len(known)
        middle = (low + high) // 2
        low, high = (low, middle) if batches(middle) <= MAX_BATCHES else (middle + 1, high)
    return low


def _variants(shops: Sequence[ShopRef], sizes: Mapping[str, ShopSize]) -> int:
    return sum(sizes[s.shop_id].variants if s.shop_id in sizes else UNKNOWN_SHOP_VARIANTS for s in shops)
