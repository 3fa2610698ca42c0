"""Packed units: many small shops exported by one task instance, each on its own (a failed shop fails alone).

The retry budget of one Shopify query in a packed unit: the hook tries it up to ``max_attempts`` times (its
connection's extra, default 8) on throttles, 5xx and connection errors; the unit reads a shop again up to
UNIT_SHOP_ATTEMPTS times on a TransientError only (a bug such as a KeyError, or a PermanentError, is not
retried); Airflow retries the unit ``retries`` times (the DAG's default_args, 2) when a failure was not
permanent. Worst case: 8 x 3 x 3 = 72 tries, spread over the hook's backoff, the unit's and Airflow's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import date
from typing import Any, TypeVar

import psycopg
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from export_hooks.masking import mask_secrets
from export_hooks.r2 import R2Hook
from export_hooks.shopify import ShopifyConnection
from include.statistics_export.connections import app_db, image_source, shopify_hook
from include.statistics_export.day_claims import DayWriter, check_writer
from include.statistics_export.errors import (
    PermanentError,
    RevenueOverflow,
    ShopConfigurationError,
    TransientError,
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

log = logging.getLogger(__name__)


# Tries of one shop inside a packed unit before it is recorded as failed (Airflow retries the unit later).
UNIT_SHOP_ATTEMPTS = 3


T = TypeVar("T")


def export_unit(unit: ShopUnit, writer: DayWriter, settings: Settings) -> UnitResult:
    """Export the small shops of a packed unit, each on its own, together where it is cheaper.

    Each shop's catalog is read on its own (one Shopify request when it fits), concurrently, its transient
    failures retried; a shop that still fails is recorded and never stops the others. The shops read are
    then exported together: one query for the tokens, one for the metrics, one each for the image backups
    and the recorded hashes, and one transaction for the rows, however many shops the unit holds.
    """
    day = writer.day
    outcome = UnitResult(index=unit.index)
    store = R2Hook(max_pool_connections=settings.concurrency)
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
                _retried, _read_packed_shop, shop, credentials[shop.shop_id], shopify_connection, day, settings
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
                outcome.results = _retried(_export_together, conn, store, images, parts, pool, settings, clock, writer)
            except RevenueOverflow as overflow:
                # Found before anything was written: those shops fail alone, the others are exported without them.
                for part in [part for part in parts if part.plan.shop_id in overflow.by_shop]:
                    ref = ShopRef(part.plan.shop_id, part.plan.shop_domain)
                    _record_failure(outcome, unit, ref, RevenueOverflow({ref.shop_id: overflow.by_shop[ref.shop_id]}))
                parts = [part for part in parts if part.plan.shop_id not in overflow.by_shop]
                outcome.plans = [plan for plan in outcome.plans if plan.shop_id not in overflow.by_shop]
                continue
            except Exception as exc:
                for part in parts:
                    _record_failure(outcome, unit, ShopRef(part.plan.shop_id, part.plan.shop_domain), exc)
                outcome.plans = []
            break
    outcome.phases = clock.spent()
    return outcome


# What the unit retries: the failures a retry may fix. Anything else (a PermanentError, a bug) fails the shop at
# once; Airflow still retries the unit for a failure that is not permanent.
TRANSIENT = (TransientError, psycopg.OperationalError, requests.ConnectionError, requests.Timeout)


def _retried(body: Callable[..., T], *args: Any) -> T:
    """Run ``body``, retrying transient failures only, with a short backoff."""
    for attempt in Retrying(
        retry=retry_if_exception_type(TRANSIENT),
        stop=stop_after_attempt(UNIT_SHOP_ATTEMPTS),
        wait=wait_exponential(multiplier=1, max=10),
        reraise=True,
    ):
        with attempt:
            return body(*args)
    raise AssertionError("unreachable: tenacity reraises the last error")


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
