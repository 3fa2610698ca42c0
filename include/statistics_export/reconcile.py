"""After a day's export, check one shop's numbers four ways: files, rows, events, catalog.

- files: the totals summed from the CSV rows the batches wrote or confirmed unchanged (``totals.csv_totals``);
- rows: the shop's "VariantDailyStatistics" rows of the day (one query);
- events: a whole-shop aggregation of the day's counted events (one query, the rules of
  event_rules, independent of the per-batch query), limited to variants that have a row;
- catalog: the number of variants planning found in Shopify.

Any difference is a failure naming the shop, the day and the numbers. Counted events of variants
without a row (a variant deleted from Shopify, an id of no variant of the shop) are not a failure:
they cannot be exported, and are reported as "events of unknown variants". A missing batch still
fails: its variants are missing from the files, the rows and the catalog comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from include.statistics_export.event_rules import (
    COUNTED_EVENT,
    COUNTED_PURCHASE,
    DEFAULT_MAX_EVENT_REVENUE,
    NUMERIC_VARIANT_ID,
    SHOP_DAY_EVENTS,
    rejected_events,
    revenue_cap,
    rule_parameters,
)
from include.statistics_export.totals import METRICS, Totals

UNKNOWN_VARIANT_SAMPLE = 20


_ROW_TOTALS = """
SELECT count(*), coalesce(sum(impressions), 0), coalesce(sum("addToCarts"), 0), coalesce(sum(orders), 0),
       coalesce(sum(revenue), 0)
FROM "VariantDailyStatistics"
WHERE shop = %(shop_id)s AND date = %(day)s
"""

# Counted events grouped by whether their variant has a row of the day: known ones must match the
# rows; the others are the events of unknown variants.
_EVENT_TOTALS = f"""
WITH counted AS (
    SELECT {NUMERIC_VARIANT_ID} AS variant_id, e."eventType", e.revenue,
           ({COUNTED_PURCHASE}) AS is_order
    {SHOP_DAY_EVENTS}
      AND {COUNTED_EVENT}
), exported AS (
    SELECT DISTINCT "variantId" FROM "VariantDailyStatistics" WHERE shop = %(shop_id)s AND date = %(day)s
)
SELECT x."variantId" IS NOT NULL AS known,
       count(DISTINCT c.variant_id),
       count(*) FILTER (WHERE c."eventType" = 'IMPRESSION'),
       count(*) FILTER (WHERE c."eventType" = 'ADD_TO_CART'),
       count(*) FILTER (WHERE c.is_order),
       coalesce(sum(c.revenue) FILTER (WHERE c.is_order), 0),
       (array_agg(DISTINCT c.variant_id ORDER BY c.variant_id))[1:{UNKNOWN_VARIANT_SAMPLE}]
FROM counted c
LEFT JOIN exported x ON x."variantId" = c.variant_id
GROUP BY 1
"""


@dataclass
class ShopReconciliation:
    """One shop's day seen four ways, and what differs."""

    shop_id: str
    day: date
    catalog_variants: int
    files: Totals
    rows: Totals
    events: Totals
    unknown_variant_events: Totals
    unknown_variant_ids: list[str] = field(default_factory=list)
    rejected_events: dict[str, int] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Tell whether files, rows, events and catalog agree."""
        return not self.differences

    def document(self) -> dict[str, Any]:
        """Return the reconciliation as a JSON-ready dict for the run report."""
        return {
            "shopId": self.shop_id,
            "date": self.day.isoformat(),
            "ok": self.ok,
            "catalogVariants": self.catalog_variants,
            "files": self.files.document(),
            "rows": self.rows.document(),
            "events": self.events.document(),
            "eventsOfUnknownVariants": {
                **self.unknown_variant_events.document(),
                "variantIds": self.unknown_variant_ids,
            },
            "rejectedEvents": dict(self.rejected_events),
            "differences": list(self.differences),
        }


def row_totals(conn: Any, shop_id: str, day: date) -> Totals:
    """Return the totals of the shop's "VariantDailyStatistics" rows of ``day``."""
    with conn.cursor() as cur:
        cur.execute(_ROW_TOTALS, {"shop_id": shop_id, "day": day})
        variants, impressions, add_to_carts, orders, revenue = cur.fetchone()
    return Totals(int(variants), int(impressions), int(add_to_carts), int(orders), Decimal(revenue))


def event_totals(
    conn: Any,
    shop_id: str,
    day: date,
    *,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
    as_of: datetime | None = None,
) -> tuple[Totals, Totals, list[str]]:
    """Return the counted events' totals of variants with a row, of the others, and a few of the others' ids."""
    params = {**rule_parameters(shop_id, day, max_revenue=max_revenue, as_of=as_of), "day": day}
    known, unknown, unknown_ids = Totals(), Totals(), []
    with conn.cursor() as cur:
        cur.execute(_EVENT_TOTALS, params)
        for is_known, variants, impressions, add_to_carts, orders, revenue, ids in cur.fetchall():
            totals = Totals(int(variants), int(impressions), int(add_to_carts), int(orders), Decimal(revenue))
            if is_known:
                known = totals
            else:
                unknown, unknown_ids = totals, list(ids or [])
    return known, unknown, unknown_ids


def reconcile_shop(
    conn: Any,
    shop_id: str,
    day: date,
    catalog_variants: int,
    files: Totals,
    *,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
    currency: str | None = None,
    as_of: datetime | None = None,
    parquet: Totals | None = None,
) -> ShopReconciliation:
    """Compare the shop's files, rows, counted events and catalog for ``day``; list every difference.

    Purchases count up to the cap of the shop's ``currency``, as in the batches' metrics."""
    max_revenue = revenue_cap(currency, max_revenue)
    rows = row_totals(conn, shop_id, day)
    events, unknown, unknown_ids = event_totals(conn, shop_id, day, max_revenue=max_revenue, as_of=as_of)
    result = ShopReconciliation(
        shop_id=shop_id,
        day=day,
        catalog_variants=catalog_variants,
        files=files,
        rows=rows,
        events=events,
        unknown_variant_events=unknown,
        unknown_variant_ids=unknown_ids,
        rejected_events=rejected_events(conn, shop_id, day, max_revenue=max_revenue, as_of=as_of),
    )
    where = f"Shop {shop_id} on {day.isoformat()}"
    if not catalog_variants == files.variants == rows.variants:
        result.differences.append(
            f"{where}: variants differ: catalog {catalog_variants}, files {files.variants}, "
            f'"VariantDailyStatistics" rows {rows.variants}'
        )
    for name in METRICS:
        seen = (getattr(files, name), getattr(rows, name), getattr(events, name))
        if len(set(seen)) > 1:
            shown = [f"{value:.2f}" if name == "revenue" else str(value) for value in seen]
            result.differences.append(
                f'{where}: {name} differ: files {shown[0]}, "VariantDailyStatistics" {shown[1]}, events {shown[2]}'
            )
    # The Parquet parts hold the same rows as the CSVs: same count, same sums (None: no parts this run).
    if parquet is not None and parquet != files:
        result.differences.append(
            f"{where}: the Parquet rows differ from the CSVs: Parquet {parquet.document()}, CSV {files.document()}"
        )
    return result
