"""Packed units: many small shops exported by one task instance, each on its own (a failed shop fails alone).

A shop's read, and the unit's shared export, are tried again on transient failures (``retry_policy.retried``:
the unit's layer of the one retry policy, whose worst case that module states).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import date
from typing import Any

import psycopg

from export_hooks.masking import mask_secrets
from export_hooks.r2 import R2Hook
from export_hooks.shopify import ShopifyConnection
from include.statistics_export.connections import app_db, image_source, object_store, shopify_hook
from include.statistics_export.day_claims import DayWriter, check_writer
from include.statistics_export.errors import (
    PermanentError,
    RevenueOverflow,
    ShopConfigurationError,
    ShopRedacted,
    UnitShopsFailed,
    UnitShopsFailedPermanently,
    failure_reason,
)
from include.statistics_export.handoffs import (
    BatchResult,
    ShopPlan,
    ShopRef,
    ShopUnit,
    UnitResult,
)
from include.statistics_export.keys import safe_key_part
from include.statistics_export.pipeline.clock import PhaseClock
from include.statistics_export.pipeline.read import ShopPart, ShopTooLargeForUnit, read_packed_shop
from include.statistics_export.pipeline.run import export
from include.statistics_export.protocols import ImageSource
from include.statistics_export.settings import Settings
from include.statistics_export.shops import ShopCredentials, shops_credentials
from include.statistics_export.tasks.retry_policy import retried

log = logging.getLogger(__name__)


def export_unit(unit: ShopUnit, writer: DayWriter, settings: Settings) -> UnitResult:
    """Export the small shops of a packed unit, each on its own, together where it is cheaper.

    Each shop's catalog is read on its own (one Shopify request when it fits), concurrently, its transient
    failures retried; a shop that still fails is recorded and never stops the others. The shops read are
    then exported together: one query for the tokens, one for the metrics, one each for the image backups
    and the recorded hashes, and one transaction for the rows, however many shops the unit holds.
    """
    day = writer.day
    outcome = UnitResult(index=unit.index)
    store = object_store(settings)
    clock = PhaseClock()
    with app_db() as conn, ThreadPoolExecutor(settings.concurrency) as pool, image_source(settings) as images:
        with clock.phase("credentials"):
            check_writer(conn, writer)
            credentials = shops_credentials(conn, [shop.shop_id for shop in unit.shops])
            conn.commit()  # the reads below take a while: hold no transaction open meanwhile
            # Masked where they are read, all at once: one by one, Airflow's masker costs O(shops²) per unit.
            mask_secrets([found.access_token for found in credentials.values() if isinstance(found, ShopCredentials)])
            shopify_connection = ShopifyConnection.read()  # once for the unit's hooks, not once per shop
        reads = {
            shop.shop_id: pool.submit(
                retried, _read_packed_shop, shop, credentials[shop.shop_id], shopify_connection, day, settings
            )
            for shop in unit.shops
        }
        parts: list[ShopPart] = []
        for shop in unit.shops:
            try:
                with clock.phase("catalog"):
                    part, note = reads[shop.shop_id].result()
            except ShopTooLargeForUnit as large:
                log.warning("%s", large)
                outcome.moved.append(shop)
                continue
            except Exception as exc:
                _record_failure(outcome, unit, shop, exc)
                continue
            parts.append(part)
            outcome.plans.append(
                ShopPlan(shop.shop_id, shop.shop_domain, "packed", note, part.plan.variants, [part.plan])
            )
        while parts:
            try:
                outcome.results = retried(_export_together, conn, store, images, parts, pool, settings, clock, writer)
            except RevenueOverflow as overflow:
                # Found before anything was written: those shops fail alone, the others are exported without them.
                for part in [part for part in parts if part.plan.shop_id in overflow.by_shop]:
                    ref = ShopRef(part.plan.shop_id, part.plan.shop_domain)
                    _record_failure(outcome, unit, ref, RevenueOverflow({ref.shop_id: overflow.by_shop[ref.shop_id]}))
                parts = [part for part in parts if part.plan.shop_id not in overflow.by_shop]
                outcome.plans = [plan for plan in outcome.plans if plan.shop_id not in overflow.by_shop]
                continue
            except ShopRedacted as redacted:
                # Erased (shop/redact) since the day's shops were listed, refused before anything of them was
                # written: not a failure, the report leaves them out; the others are exported without them.
                log.warning("Unit %d: %s", unit.index, redacted)
                parts = [part for part in parts if part.plan.shop_id not in redacted.shops]
                outcome.plans = [plan for plan in outcome.plans if plan.shop_id not in redacted.shops]
                continue
            except Exception as exc:
                for part in parts:
                    _record_failure(outcome, unit, ShopRef(part.plan.shop_id, part.plan.shop_domain), exc)
                outcome.plans = []
            break
    outcome.phases = clock.spent()
    return outcome


def _record_failure(outcome: UnitResult, unit: ShopUnit, shop: ShopRef, exc: BaseException) -> None:
    outcome.permanent = outcome.permanent and isinstance(exc, PermanentError)
    reason = failure_reason(exc)
    outcome.failures[shop.shop_id] = reason
    log.error("Shop %s failed in unit %d: %s", shop.shop_domain, unit.index, reason)


def _read_packed_shop(
    shop: ShopRef,
    credentials: ShopCredentials | ShopConfigurationError,
    connection: ShopifyConnection,
    day: date,
    settings: Settings,
) -> tuple[ShopPart, str | None]:
    """Read a small shop's whole catalog with its own hook (pipeline.read.read_packed_shop)."""
    if isinstance(credentials, ShopConfigurationError):
        raise credentials
    safe_key_part(shop.shop_id, "shop id")  # a hostile id fails its shop here, not the unit's shared export
    with shopify_hook(credentials, connection) as shopify:
        return read_packed_shop(shopify, shop, day, settings.bulk_threshold), None


def _export_together(
    conn: Any,
    store: R2Hook,
    images: ImageSource,
    parts: list[ShopPart],
    pool: ThreadPoolExecutor,
    settings: Settings,
    clock: PhaseClock,
    writer: DayWriter,
) -> list[BatchResult]:
    try:
        return export(
            conn,
            store,
            images,
            lambda: parts,
            pool=pool,
            max_revenue=settings.max_event_revenue,
            clock=clock,
            writer=writer,
        )
    except Exception:
        # A retry needs a connection out of the failed transaction.
        with suppress(psycopg.Error):
            conn.rollback()
        raise


def fail_unit_if_any_shop_failed(unit: ShopUnit, outcome: UnitResult) -> int:
    """Return how many shops the unit exported; raise naming every failed shop and why if any failed."""
    if not outcome.failures:
        return len(outcome.results)
    details = "; ".join(
        f"{shop.shop_domain}: {outcome.failures[shop.shop_id]}"
        for shop in unit.shops
        if shop.shop_id in outcome.failures
    )
    message = (
        f"{len(outcome.failures)} of {len(unit.shops)} shop(s) of unit {unit.index}/{unit.count} failed: {details}"
    )
    raise (UnitShopsFailedPermanently if outcome.permanent else UnitShopsFailed)(message)
