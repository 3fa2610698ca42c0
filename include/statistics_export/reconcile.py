"""After a day's export, check each shop's numbers four ways: files, rows, events, catalog.

- files: the totals summed from the CSV rows the batches wrote or confirmed unchanged (``totals.csv_totals``);
- rows: the shop's "VariantDailyStatistics" rows of the day;
- events: a whole-shop aggregation of the day's counted events (the rules of event_rules, independent of
  the per-batch query), limited to variants that have a row;
- catalog: the number of variants planning found in Shopify.

Any difference is a failure naming the shop, the day and the numbers. Counted events of variants
without a row (a variant deleted from Shopify, an id of no variant of the shop) are not a failure:
they cannot be exported, and are reported as "events of unknown variants". A missing batch still
fails: its variants are missing from the files, the rows and the catalog comparison.

The day's shops are reconciled together, in three queries however many there are (rows, counted events,
rejected events), so the day's end does not grow by a query per shop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from include.statistics_export.event_rules import (
    COUNTED_EVENT,
    COUNTED_PURCHASE,
    DEFAULT_MAX_EVENT_REVENUE,
    NUMERIC_VARIANT_ID,
    SHOPS_DAY_EVENTS,
    shops_parameters,
    shops_rejected_events,
)
from include.statistics_export.handoffs import Handoff
from include.statistics_export.report_schema import DIFFERENCES, OK, REJECTED_EVENTS, SHOP_ID
from include.statistics_export.totals import METRICS, Totals

UNKNOWN_VARIANT_SAMPLE = 20


_ROW_TOTALS = """
SELECT shop, count(*), coalesce(sum(impressions), 0), coalesce(sum("addToCarts"), 0), coalesce(sum(orders), 0),
       coalesce(sum(revenue), 0)
FROM "VariantDailyStatistics"
WHERE shop = ANY(%(shop_ids)b::text[]) AND date = %(day)s
GROUP BY shop
"""

# Counted events of every shop grouped by shop and by whether their variant has a row of the day: known
# ones must match the rows; the others are the events of unknown variants. Each shop's purchases count up
# to its own currency's cap (``cap.max_revenue``), as in the batches' metrics. "Has a row" is an IN over
# the day's rows, which PostgreSQL hashes once: a join there was planned, right after an export and before
# the rows' statistics, as a merge on the shop with every event compared to every row of its shop (8.8 s
# for 2,000 shops against 0.2 s).
_EVENT_TOTALS = f"""
WITH counted AS (
    SELECT cap.shop, {NUMERIC_VARIANT_ID} AS variant_id, e."eventType", e.revenue,
           ({COUNTED_PURCHASE}) AS is_order
    {SHOPS_DAY_EVENTS}
      AND {COUNTED_EVENT}
), classified AS (
    SELECT c.*, (c.shop, c.variant_id) IN (
        SELECT shop, "variantId" FROM "VariantDailyStatistics" WHERE shop = ANY(%(shop_ids)b::text[]) AND date = %(day)s
    ) AS known
    FROM counted c
)
SELECT shop,
       known,
       count(DISTINCT variant_id),
       count(*) FILTER (WHERE "eventType" = 'IMPRESSION'),
       count(*) FILTER (WHERE "eventType" = 'ADD_TO_CART'),
       count(*) FILTER (WHERE is_order),
       coalesce(sum(revenue) FILTER (WHERE is_order), 0),
       (array_agg(DISTINCT variant_id ORDER BY variant_id))[1:{UNKNOWN_VARIANT_SAMPLE}]
FROM classified
GROUP BY 1, 2
"""


@dataclass(frozen=True)
class ShopCheck:
    """What the export says of one shop's day, to be checked against the rows and the events."""

    shop_id: str
    catalog_variants: int
    files: Totals
    currency: str | None = None
    # The Parquet parts' totals (None: no parts this run).
    parquet: Totals | None = None


@dataclass(frozen=True)
class EventTotals:
    """One shop's counted events of the day: of variants with a row, of the others, and a few of the others."""

    known: Totals = field(default_factory=Totals)
    unknown: Totals = field(default_factory=Totals)
    unknown_ids: list[str] = field(default_factory=list)


@dataclass
class ShopReconciliation(Handoff):
    """One shop's day seen four ways, and what differs (handed by the reconcile task to the report)."""

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
            SHOP_ID: self.shop_id,
            "date": self.day.isoformat(),
            OK: self.ok,
            "catalogVariants": self.catalog_variants,
            "files": self.files.document(),
            "rows": self.rows.document(),
            "events": self.events.document(),
            "eventsOfUnknownVariants": {
                **self.unknown_variant_events.document(),
                "variantIds": self.unknown_variant_ids,
            },
            REJECTED_EVENTS: dict(self.rejected_events),
            DIFFERENCES: list(self.differences),
        }


def shops_row_totals(conn: Any, shop_ids: Sequence[str], day: date) -> dict[str, Totals]:
    """Return the totals of each shop's "VariantDailyStatistics" rows of ``day`` (a shop without any: zeros)."""
    found = {shop_id: Totals() for shop_id in shop_ids}
    with conn.cursor() as cur:
        cur.execute(_ROW_TOTALS, {"shop_ids": list(shop_ids), "day": day})
        for shop_id, variants, impressions, add_to_carts, orders, revenue in cur.fetchall():
            found[shop_id] = Totals(int(variants), int(impressions), int(add_to_carts), int(orders), Decimal(revenue))
    return found


def shops_event_totals(
    conn: Any,
    day: date,
    currencies: Mapping[str, str | None],
    *,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
    as_of: datetime | None = None,
) -> dict[str, EventTotals]:
    """Return each shop's counted events of ``day`` (shop id -> currency), split by whether a row holds them."""
    params = {**shops_parameters(day, currencies, max_revenue=max_revenue, as_of=as_of), "day": day}
    known: dict[str, Totals] = {}
    unknown: dict[str, tuple[Totals, list[str]]] = {}
    with conn.cursor() as cur:
        cur.execute(_EVENT_TOTALS, params)
        for shop_id, is_known, variants, impressions, add_to_carts, orders, revenue, ids in cur.fetchall():
            totals = Totals(int(variants), int(impressions), int(add_to_carts), int(orders), Decimal(revenue))
            if is_known:
                known[shop_id] = totals
            else:
                unknown[shop_id] = (totals, list(ids or []))
    return {
        shop_id: EventTotals(known.get(shop_id, Totals()), *unknown.get(shop_id, (Totals(), [])))
        for shop_id in currencies
    }


def reconcile_shops(
    conn: Any,
    day: date,
    checks: Sequence[ShopCheck],
    *,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
    as_of: datetime | None = None,
) -> list[ShopReconciliation]:
    """Compare each shop's files, rows, counted events and catalog for ``day``; list every difference.

    Three queries however many shops (rows, events, rejected events). Purchases count up to the cap of
    each shop's currency, as in the batches' metrics."""
    if not checks:
        return []
    currencies = {check.shop_id: check.currency for check in checks}
    rows = shops_row_totals(conn, list(currencies), day)
    events = shops_event_totals(conn, day, currencies, max_revenue=max_revenue, as_of=as_of)
    rejected = shops_rejected_events(conn, day, currencies, max_revenue=max_revenue, as_of=as_of)
    return [
        compare(day, check, rows[check.shop_id], events[check.shop_id], rejected[check.shop_id]) for check in checks
    ]


def compare(
    day: date, check: ShopCheck, rows: Totals, events: EventTotals, rejected: dict[str, int]
) -> ShopReconciliation:
    """Return one shop's reconciliation from its numbers, every difference named."""
    result = ShopReconciliation(
        shop_id=check.shop_id,
        day=day,
        catalog_variants=check.catalog_variants,
        files=check.files,
        rows=rows,
        events=events.known,
        unknown_variant_events=events.unknown,
        unknown_variant_ids=events.unknown_ids,
        rejected_events=rejected,
    )
    files = check.files
    where = f"Shop {check.shop_id} on {day.isoformat()}"
    if not check.catalog_variants == files.variants == rows.variants:
        result.differences.append(
            f"{where}: variants differ: catalog {check.catalog_variants}, files {files.variants}, "
            f'"VariantDailyStatistics" rows {rows.variants}'
        )
    for name in METRICS:
        seen = (getattr(files, name), getattr(rows, name), getattr(events.known, name))
        if len(set(seen)) > 1:
            shown = [f"{value:.2f}" if name == "revenue" else str(value) for value in seen]
            result.differences.append(
                f'{where}: {name} differ: files {shown[0]}, "VariantDailyStatistics" {shown[1]}, events {shown[2]}'
            )
    # The Parquet parts hold the same rows as the CSVs: same count, same sums.
    if check.parquet is not None and check.parquet != files:
        result.differences.append(
            f"{where}: the Parquet rows differ from the CSVs: Parquet {check.parquet.document()}, "
            f"CSV {files.document()}"
        )
    return result
