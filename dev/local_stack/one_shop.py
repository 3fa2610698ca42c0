"""One shop's view of the export's many-shop functions: what the tests and the baseline bench (the original's
per-variant way) call. The export itself always goes through the many-shop forms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from include.statistics_export.catalog import ImageBackup, ImageOwner
from include.statistics_export.event_rules import DEFAULT_MAX_EVENT_REVENUE, shops_rejected_events
from include.statistics_export.formats import VariantExport, WrittenFiles
from include.statistics_export.metrics import VariantMetrics, shops_variant_metrics
from include.statistics_export.reconcile import ShopCheck, ShopReconciliation, reconcile_shops
from include.statistics_export.rows import shops_existing_backups, write_shops_rows
from include.statistics_export.totals import Totals


def variant_metrics(
    conn: Any,
    shop_id: str,
    variant_ids: Iterable[str],
    day: date,
    *,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
    currency: str | None = "USD",
    as_of: datetime | None = None,
) -> dict[str, VariantMetrics]:
    """Return the day's metrics of one shop's variants that had counted events."""
    found = shops_variant_metrics(
        conn, {shop_id: variant_ids}, day, max_revenue=max_revenue, currencies={shop_id: currency}, as_of=as_of
    )
    return {variant_id: metrics for (_, variant_id), metrics in found.items()}


def existing_backups(conn: Any, shop_id: str, media_gids: Iterable[str]) -> dict[str, ImageBackup]:
    """Return the images of this list already backed up for one shop, in one query."""
    found = shops_existing_backups(conn, ((shop_id, gid) for gid in media_gids))
    return {gid: backup for (_, gid), backup in found.items()}


def write_rows(
    conn: Any,
    shop_id: str,
    exports: Sequence[tuple[VariantExport, WrittenFiles]],
    new_images: Sequence[tuple[ImageOwner, ImageBackup]],
) -> None:
    """Upsert one shop's image backups, daily statistics and export records in one transaction."""
    write_shops_rows(conn, exports, [(shop_id, owner, backup) for owner, backup in new_images])


def rejected_events(
    conn: Any,
    shop_id: str,
    day: date,
    *,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
    currency: str | None = "USD",
    as_of: datetime | None = None,
) -> dict[str, int]:
    """Return how many of one shop's events of ``day`` were rejected under its currency's cap, by reason."""
    currencies = {shop_id: currency}
    return shops_rejected_events(conn, day, currencies, max_revenue=max_revenue, as_of=as_of)[shop_id]


def reconcile_shop(
    conn: Any,
    shop_id: str,
    day: date,
    catalog_variants: int,
    files: Totals,
    *,
    max_revenue: Decimal = DEFAULT_MAX_EVENT_REVENUE,
    currency: str | None = "USD",
    as_of: datetime | None = None,
    parquet: Totals | None = None,
) -> ShopReconciliation:
    """Reconcile one shop (``reconcile_shops`` for one)."""
    check = ShopCheck(shop_id, catalog_variants, files, currency, parquet)
    (result,) = reconcile_shops(conn, day, [check], max_revenue=max_revenue, as_of=as_of)
    return result
