"""Per-variant daily metrics, aggregated from the app's A/B test events in one query per batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from include.statistics_export.event_rules import (
    AS_OF,
    COUNTED_PURCHASE,
    DEFAULT_MAX_EVENT_REVENUE,
    NUMERIC_VARIANT_ID,
    shops_parameters,
)
from include.statistics_export.ids import variant_keys

CENTS = Decimal("0.01")
# The largest day's revenue of one variant the rows hold: "VariantDailyStatistics".revenue is DECIMAL(12, 2).
CTR_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class VariantMetrics:
    """One variant's counts and revenue for one day; rates are derived, never stored separately."""

    impressions: int = 0
    add_to_carts: int = 0
    orders: int = 0
    revenue: Decimal = Decimal("0.00")

    @property
    def ctr(self) -> Decimal:
        """Return addToCarts / impressions (0 without impressions), unrounded."""
        return Decimal(self.add_to_carts) / Decimal(self.impressions) if self.impressions else Decimal(0)

    @property
    def conversion_rate(self) -> Decimal:
        """Return orders / impressions (0 without impressions), unrounded."""
        return Decimal(self.orders) / Decimal(self.impressions) if self.impressions else Decimal(0)

    @property
    def ctr_rounded(self) -> Decimal:
        """Return the CTR with 4 decimals, as the export files show it."""
        return self.ctr.quantize(CTR_PLACES, rounding=ROUND_HALF_UP)

    @property
    def revenue_rounded(self) -> Decimal:
        """Return the revenue with 2 decimals."""
        return self.revenue.quantize(CENTS, rounding=ROUND_HALF_UP)


ZERO = VariantMetrics()


# Events carry a variant id as a GID or as a bare number: match both spellings through the
# ("variantId", "createdAt") index, then fold them into the numeric id. Only the shop's own tests
# count, and the day is the half-open interval [start, end). The rules of event_rules apply inside
# the aggregation (FILTER), so the index still serves the scan: well-formed ids come from the key
# list, unknown types match no FILTER, rejected purchases and future events are filtered out.
# The batch's events are read first, through the index, whatever the planner believes about "ABTest":
# without statistics on it (a fresh database) it chose a nested loop per test, 6x slower on 1M events.
_VARIANT_METRICS = f"""
WITH e AS MATERIALIZED (
    SELECT e."testId", e."variantId", e."eventType", e.revenue
    FROM "ABTestEvent" e
    WHERE e."variantId" = ANY(%(variant_keys)b::text[])
      AND e."createdAt" >= %(start)s
      AND e."createdAt" < %(end)s
      AND e."createdAt" <= {AS_OF}
)
SELECT t.shop, {NUMERIC_VARIANT_ID} AS variant_id,
       count(*) FILTER (WHERE e."eventType" = 'IMPRESSION') AS impressions,
       count(*) FILTER (WHERE e."eventType" = 'ADD_TO_CART') AS add_to_carts,
       count(*) FILTER (WHERE {COUNTED_PURCHASE}) AS orders,
       coalesce(sum(e.revenue) FILTER (WHERE {COUNTED_PURCHASE}), 0) AS revenue
FROM e
JOIN "ABTest" t ON t.id = e."testId"
JOIN unnest(%(shop_ids)b::text[], %(max_revenues)b::numeric[]) AS cap(shop, max_revenue) ON cap.shop = t.shop
GROUP BY 1, 2
"""


def shops_variant_metrics(
    conn: Any,
    variants_by_shop: Mapping[str, Iterable[str]],
    day: date,
    *,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
    currencies: Mapping[str, str | None] | None = None,
    as_of: datetime | None = None,
) -> dict[tuple[str, str], VariantMetrics]:
    """Return the day's metrics of each (shop, variant) that had counted events, for any number of shops in
    one query (see event_rules). A shop's events count only for that shop's own variants, each purchase up
    to the cap of the shop's currency (``currencies``: shop id -> ISO code)."""
    wanted = {shop_id: set(variant_ids) for shop_id, variant_ids in variants_by_shop.items()}
    keys = variant_keys(sorted(set().union(*wanted.values())))
    if not keys:
        return {}
    shop_currencies = {shop_id: (currencies or {}).get(shop_id) for shop_id in wanted}
    params = shops_parameters(day, shop_currencies, max_revenue=max_revenue, as_of=as_of)
    with conn.cursor() as cur:
        cur.execute(_VARIANT_METRICS, {**params, "variant_keys": keys})
        rows = cur.fetchall()
    return {
        (shop_id, variant_id): VariantMetrics(
            impressions=int(impressions),
            add_to_carts=int(add_to_carts),
            orders=int(orders),
            revenue=Decimal(revenue),
        )
        for shop_id, variant_id, impressions, add_to_carts, orders, revenue in rows
        if variant_id in wanted[shop_id]
    }
