"""Which raw events count, and why the others are rejected: one rule shared by the batch metrics,
the rejected-event counts and the reconciliation.

An event of the shop's own tests ("ABTest".shop) created in the exported UTC day [D, D+1) is
checked in this order; the first failing check is its one rejection reason:

1. ``future_timestamp``: created after the moment of the query (a clock ahead of ours; a day still
   running counts only what has happened so far).
2. ``unknown_event_type``: "eventType" is not exactly IMPRESSION, ADD_TO_CART or PURCHASE (the app's
   column is a free Prisma String, so any value can arrive).
3. ``missing_variant_id``: "variantId" is null, empty or only whitespace (not attributable).
4. ``malformed_variant_id``: "variantId" is neither a bare number nor
   ``gid://shopify/ProductVariant/<number>`` exactly (``.../abc``, another resource's GID such as
   ``gid://shopify/Product/123``, padding whitespace, a query suffix).
5. ``negative_revenue``: a PURCHASE with revenue below 0 (a refund is not a purchase).
6. ``revenue_above_cap``: a PURCHASE with revenue above the shop's cap, almost surely a unit or parsing
   error. The cap knows the currency (:func:`revenue_cap`): STATISTICS_EXPORT_MAX_EVENT_REVENUE (a setting,
   default 1000000.00) is in units of about a US dollar, and a currency whose unit is worth far less
   (VND, IDR, KRW, COP, JPY, ...) has it times the power of ten at or above its units per dollar
   (``currencies.py``: every currency a shop can have), so an ordinary purchase of 30,000,000 VND (about
   1,200 USD) counts. A currency missing or unknown has no guessed cap, and the report names it.

Everything else counts: a PURCHASE with null revenue is an order worth 0.00, revenue on other
event types is ignored. Rejected events are never silently dropped: ``rejected_events`` counts them
by reason for the run report (``shops_rejected_events``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from include.statistics_export.currencies import cap_factor
from include.statistics_export.settings import Settings
from include.statistics_export.utc import day_bounds, naive_utc

DEFAULT_MAX_EVENT_REVENUE = Settings().max_event_revenue
EVENT_TYPES = ("IMPRESSION", "ADD_TO_CART", "PURCHASE")
REJECTION_REASONS = (
    "future_timestamp",
    "unknown_event_type",
    "missing_variant_id",
    "malformed_variant_id",
    "negative_revenue",
    "revenue_above_cap",
)

# SQL fragments over an "ABTestEvent" aliased ``e``, with the named parameters %(as_of)s and
# %(max_revenue)s. They are constants: values only ever travel as parameters.
AS_OF = "coalesce(%(as_of)s::timestamp, (now() AT TIME ZONE 'UTC'))"
WELL_FORMED_VARIANT = "e.\"variantId\" ~ '^(gid://shopify/ProductVariant/)?[0-9]{1,20}$'"


# A counted PURCHASE. Each shop's own cap is ``cap.max_revenue``, beside the shop in SHOPS_DAY_EVENTS: a day's or
# a packed unit's shops are of any currencies.
COUNTED_PURCHASE = (
    "e.\"eventType\" = 'PURCHASE' AND (e.revenue IS NULL OR (e.revenue >= 0 AND e.revenue <= cap.max_revenue))"
)

NUMERIC_VARIANT_ID = "regexp_replace(e.\"variantId\", '^gid://shopify/ProductVariant/', '')"

# An event's one rejection reason (NULL: counted).
REJECTION_REASON = f"""
CASE
    WHEN e."createdAt" > {AS_OF} THEN 'future_timestamp'
    WHEN e."eventType" NOT IN ('IMPRESSION', 'ADD_TO_CART', 'PURCHASE') THEN 'unknown_event_type'
    WHEN e."variantId" IS NULL OR e."variantId" ~ '^\\s*$' THEN 'missing_variant_id'
    WHEN NOT ({WELL_FORMED_VARIANT}) THEN 'malformed_variant_id'
    WHEN e."eventType" = 'PURCHASE' AND e.revenue < 0 THEN 'negative_revenue'
    WHEN e."eventType" = 'PURCHASE' AND e.revenue > cap.max_revenue THEN 'revenue_above_cap'
END
"""

# A counted event: not rejected by any rule above (the complement of REJECTION_REASON).
COUNTED_EVENT = f"""
e."createdAt" <= {AS_OF}
AND {WELL_FORMED_VARIANT}
AND (e."eventType" IN ('IMPRESSION', 'ADD_TO_CART') OR ({COUNTED_PURCHASE}))
"""


# Many shops' events of the day at once: each shop's tests, its cap beside it (``cap.max_revenue``), through
# ("testId", "createdAt"); the parameters %(shop_ids)b and %(max_revenues)b come from :func:`shops_parameters`.
SHOPS_DAY_EVENTS = """
FROM unnest(%(shop_ids)b::text[], %(max_revenues)b::numeric[]) AS cap(shop, max_revenue)
JOIN "ABTest" t ON t.shop = cap.shop
JOIN "ABTestEvent" e ON e."testId" = t.id
WHERE e."createdAt" >= %(start)s
  AND e."createdAt" < %(end)s
"""

_SHOPS_REJECTED = f"""
SELECT shop, reason, count(*)
FROM (SELECT cap.shop, {REJECTION_REASON} AS reason {SHOPS_DAY_EVENTS}) classified
WHERE reason IS NOT NULL
GROUP BY 1, 2
"""


# The most a "VariantDailyStatistics".revenue DECIMAL(12, 2) holds: the only cap of a currency the table lacks.
MAX_ROW_REVENUE = Decimal("9999999999.99")


def revenue_cap(currency: str | None, max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE) -> Decimal:
    """Return the largest PURCHASE revenue counted for a shop in ``currency`` (its ISO 4217 code): the setting
    times the currency's factor (currencies.cap_factor); a currency missing or unknown has no guessed cap (only
    what a row holds), and the day's report says so (currencies.cap_note)."""
    factor = cap_factor(currency)
    return max_revenue * factor if factor is not None else MAX_ROW_REVENUE


def day_parameters(
    day: date, *, max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE, as_of: datetime | None = None
) -> dict[str, Any]:
    """Return the named parameters of the day fragments above (``as_of`` None: the query's now)."""
    start, end = day_bounds(day)
    return {"start": start, "end": end, "max_revenue": max_revenue, "as_of": naive_utc(as_of) if as_of else None}


def shops_parameters(
    day: date,
    currencies: Mapping[str, str | None],
    *,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """Return the named parameters of :data:`SHOPS_DAY_EVENTS` for these shops (shop id -> currency): each
    shop's cap is its currency's."""
    shop_ids = sorted(currencies)
    return {
        **day_parameters(day, max_revenue=max_revenue, as_of=as_of),
        "shop_ids": shop_ids,
        "max_revenues": [revenue_cap(currencies[shop_id], max_revenue) for shop_id in shop_ids],
    }


def shops_rejected_events(
    conn: Any,
    day: date,
    currencies: Mapping[str, str | None],
    *,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
    as_of: datetime | None = None,
) -> dict[str, dict[str, int]]:
    """Return, for each shop (shop id -> currency), how many of its events of ``day`` were rejected, by reason
    (only reasons seen; a shop with none maps to ``{}``), in one query however many shops."""
    found: dict[str, dict[str, int]] = {shop_id: {} for shop_id in currencies}
    if not currencies:
        return found
    with conn.cursor() as cur:
        cur.execute(_SHOPS_REJECTED, shops_parameters(day, currencies, max_revenue=max_revenue, as_of=as_of))
        for shop_id, reason, count in cur.fetchall():
            found[shop_id][reason] = int(count)
    return {shop_id: {r: counts[r] for r in REJECTION_REASONS if r in counts} for shop_id, counts in found.items()}
