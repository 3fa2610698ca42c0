"""What each task of the DAG does, with its connections opened: the one module of the package that uses the
hooks (and so Airflow). The DAG, the benchmark and the tests call these functions alike; the DAG only adds
Airflow's concerns (mapping, labels, retries, failing fast on PermanentError).

Per shop: ``start_catalog_read`` (count the products; bulk query above the threshold) ->
``poll_catalog_read`` (until Shopify finishes a bulk query) -> ``plan_shop_batches`` (batches of about
``batch_variants`` variants; a bulk catalog is staged in the bucket). Per batch: ``export_product_batch``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import replace
from datetime import date
from typing import Any, TypeVar

import psycopg
from airflow.providers.postgres.hooks.postgres import PostgresHook
from tenacity import Retrying, retry_if_not_exception_type, stop_after_attempt, wait_exponential

from export_hooks.r2 import R2Hook
from export_hooks.shopify import ShopifyAuthError, ShopifyError, ShopifyHook
from export_hooks.shopify_bulk import BulkAccessDenied, BulkOperationFailed, BulkOperationInProgress, iter_bulk_result
from export_hooks.shopify_queries import CATALOG_BULK_QUERY
from include.statistics_export import fleet
from include.statistics_export.bulk_catalog import assemble_products
from include.statistics_export.catalog import existed_on, parse_product
from include.statistics_export.errors import (
    DatabasePermissionError,
    DayFailed,
    ExportError,
    PermanentError,
    RevenueOverflow,
    ShopConfigurationError,
    StagedCatalogMissing,
    UnitShopsFailed,
    UnitShopsFailedPermanently,
)
from include.statistics_export.day_claims import Claim, DayWriter, check_writer, claim_day
from include.statistics_export.export import (
    PhaseClock,
    ShopPart,
    export_batch,
    export_parts,
    plan_shop,
    restage_batch,
    stage_shop,
)
from include.statistics_export.handoffs import (
    BatchPlan,
    BatchResult,
    CatalogRead,
    FleetPlan,
    ShopPlan,
    ShopRef,
    ShopUnit,
    UnitResult,
)
from include.statistics_export.images import ImageFetch, image_fetcher
from include.statistics_export.keys import EXPORTS_ROOT, RUNS_PREFIX, report_key
from include.statistics_export.pixel_health import pixel_health
from include.statistics_export.reconcile import reconcile_shop
from include.statistics_export.report import RunReport
from include.statistics_export.sessions import TokenAnswer, link_sessions
from include.statistics_export.settings import Settings
from include.statistics_export.keys import safe_key_part
from include.statistics_export.shops import ShopCredentials, active_shops, shop_credentials, shops_credentials
from include.statistics_export.staging import clean_staging
from include.statistics_export.totals import sum_totals
from include.statistics_export.utc import day_bounds

log = logging.getLogger(__name__)
T = TypeVar("T")

APP_DB_CONN_ID = "app_db"
# Tries of one shop inside a packed unit before it is recorded as failed (Airflow retries the unit later).
UNIT_SHOP_ATTEMPTS = 3


@contextmanager
def app_db() -> Iterator[Any]:
    """Open a connection to the Shopify app's database, closed when the block ends.

    A privilege the role lacks is the deployment's grants, not a passing fault: it becomes a
    DatabasePermissionError (do not retry).
    """
    with closing(PostgresHook(postgres_conn_id=APP_DB_CONN_ID).get_conn()) as conn:
        try:
            yield conn
        except Exception as exc:
            denied = next(
                (e for e in (exc, exc.__cause__) if isinstance(e, psycopg.errors.InsufficientPrivilege)), None
            )
            if denied is None:
                raise
            raise DatabasePermissionError(
                f"The app database refused the {APP_DB_CONN_ID} connection's role: {str(denied).splitlines()[0]} "
                "(grant what docs/least_privilege.sql lists)"
            ) from exc


def ask_token_shop(api_domain: str, token: str) -> TokenAnswer:
    """Ask Shopify which shop a session's token belongs to (the hook masks the token)."""
    try:
        with ShopifyHook(api_domain, token) as shopify:
            myshopify, primary_host = shopify.shop_domains()
    except ShopifyAuthError:
        return TokenAnswer(failure="revoked")
    return TokenAnswer(myshopify_domain=myshopify, primary_host=primary_host)


def link_unlinked_sessions(settings: Settings, shop_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """Link the sessions of shops that have no usable linked session; never raise (the shops' own tasks
    fail, naming the missing session, if nothing could be linked).

    Returns the report section: ``{"document": ..., "line": ...}``.
    """
    try:
        with app_db() as conn, ThreadPoolExecutor(settings.concurrency) as pool:
            links = link_sessions(conn, ask_token_shop, shop_ids=list(shop_ids) if shop_ids else None, pool=pool)
    except Exception as exc:  # e.g. the role lacks UPDATE ("shopId"): the report says so, the export goes on
        line = f"Session links: not done ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
        log.warning("%s", line)
        return {"document": {"error": line}, "line": line}
    line = links.text()
    (log.warning if links.revoked or links.ambiguous or links.no_match or links.unanswered else log.info)("%s", line)
    return {"document": links.document(), "line": line}


def list_active_shops(shop_ids: Sequence[str] | None = None) -> list[ShopRef]:
    """Return the active shops to export (ids and domains only)."""
    with app_db() as conn:
        return active_shops(conn, list(shop_ids) if shop_ids else None)


@contextmanager
def shopify_for(shop_id: str) -> Iterator[ShopifyHook]:
    """Open the Shopify hook of one shop with the token of its linked session (the hook masks it)."""
    with app_db() as conn:
        creds = shop_credentials(conn, shop_id)
    with ShopifyHook(creds.api_domain, creds.access_token) as hook:
        yield hook


def start_catalog_read(shop: ShopRef, settings: Settings, product_ids: Sequence[str] | None = None) -> CatalogRead:
    """Decide how to read a shop's catalog; above the threshold start the bulk query."""
    with shopify_for(shop.shop_id) as shopify:
        read = CatalogRead(shop.shop_id, shop.shop_domain, currency=shopify.shop_info().get("currencyCode"))
        if product_ids:
            return read.as_pages("some products only: read page by page")
        products = shopify.products_count()
        read = replace(read, products=products)
        if products < settings.bulk_threshold:
            return read
        try:
            operation = shopify.run_bulk_query(CATALOG_BULK_QUERY)
        except BulkOperationInProgress as exc:
            # Another bulk query of the shop (another app, or a run still going) holds the slot: the pages
            # still work, only slower, and the day's export stays on time.
            log.warning("%s; read page by page instead", exc)
            return read.as_pages(f"{exc}; read page by page instead")
    return replace(read, mode="bulk", operation_id=operation.id)


def poll_catalog_read(read: CatalogRead) -> CatalogRead | None:
    """Return the read once its catalog can be planned, or None while Shopify still runs the bulk query.

    A bulk query that ends FAILED, TIMEOUT, CANCELED or EXPIRED falls back to pages (noted in the report);
    ACCESS_DENIED is the shop's configuration and raises BulkAccessDenied (do not retry).
    """
    if read.mode != "bulk" or read.operation_id is None:
        return read
    with shopify_for(read.shop_id) as shopify:
        operation = shopify.bulk_operation(read.operation_id)
        if not operation.finished:
            log.info("Shop %s: bulk operation %s is %s", read.shop_domain, operation.id, operation.status)
            return None
        try:
            url = shopify.bulk_result_url(operation)
        except BulkAccessDenied:
            raise
        except BulkOperationFailed as exc:
            log.warning("%s; read page by page instead", exc)
            return read.as_pages(f"{exc}; read page by page instead")
    return replace(read, result_url=url, objects=operation.object_count)


def claim_export_day(writer: DayWriter, is_active: Callable[[str], bool]) -> Claim:
    """Claim the run's day unless another run that ``is_active`` is writing it (day_claims)."""
    with app_db() as conn:
        claim = claim_day(conn, writer, is_active)
    if not claim.held:
        log.warning(
            "Day %s is being written by run %s (still queued or running): run %s waits for it to finish",
            writer.day,
            claim.holder,
            writer.run_id,
        )
    return claim


def check_day_writer(writer: DayWriter) -> None:
    """Raise DayWrittenByAnotherRun unless the run still holds its day (before a task writes anything)."""
    with app_db() as conn:
        check_writer(conn, writer)
        conn.commit()


def plan_shop_batches(
    read: CatalogRead, writer: DayWriter, settings: Settings, product_ids: Sequence[str] | None = None
) -> ShopPlan:
    """Cut one shop's catalog into batches: a bulk result is staged under the run's own prefix, pages are listed
    by id."""
    day = writer.day
    if read.mode == "bulk":
        check_day_writer(writer)
        products = assemble_products(iter_bulk_result(read.result_url)) if read.result_url else ()
        batches = stage_shop(
            R2Hook(),
            read.shop,
            day,
            writer.run_id,
            products,
            batch_variants=settings.batch_variants,
            currency=read.currency,
            bulk_result_url=read.result_url,
        )
    else:
        with shopify_for(read.shop_id) as shopify:
            batches = plan_shop(
                shopify,
                read.shop,
                day,
                batch_variants=settings.batch_variants,
                product_ids=product_ids,
                currency=read.currency,
            )
    if product_ids:
        batches = [replace(batch, whole_shop=False) for batch in batches]
    return ShopPlan(
        read.shop_id, read.shop_domain, read.mode, read.note, sum(batch.variants for batch in batches), batches
    )


def export_product_batch(batch: BatchPlan, settings: Settings, run_id: str) -> BatchResult:
    """Export one batch end to end with one database connection, one R2 client, one image session, and a
    Shopify hook unless the batch's products are staged (staged again from the bulk result if its staging
    is gone)."""
    writer = DayWriter(date.fromisoformat(batch.date), run_id)
    fetch, images = image_fetcher(settings)
    with ExitStack() as stack:
        shopify = None if batch.staged_key else stack.enter_context(shopify_for(batch.shop_id))
        conn = stack.enter_context(app_db())
        check_writer(conn, writer)
        conn.commit()
        pool = stack.enter_context(ThreadPoolExecutor(settings.concurrency))
        stack.enter_context(closing(images))
        store = R2Hook(max_pool_connections=settings.concurrency)

        def export() -> BatchResult:
            return export_batch(
                conn, shopify, store, batch, fetch, pool=pool, max_revenue=settings.max_event_revenue, writer=writer
            )

        try:
            result = export()
        except StagedCatalogMissing:
            restage(store, batch)
            result = export()
    result.graphql_cost = shopify.cost_charged if shopify else 0.0
    return result


def restage(store: R2Hook, batch: BatchPlan) -> None:
    """Stage a batch again from the bulk result it was cut from; raise naming the clear that reads the shop's
    catalog again when that result is gone too (Shopify keeps it a week)."""
    log.warning("%s: its staged catalog is gone; staging it again from the bulk result", batch.label)
    try:
        if not batch.bulk_result_url:
            raise StagedCatalogMissing(f"{batch.label}: no bulk result recorded")
        restage_batch(store, batch, assemble_products(iter_bulk_result(batch.bulk_result_url)))
    except (StagedCatalogMissing, ShopifyError) as exc:
        raise StagedCatalogMissing(
            f"{batch.label}: its staged catalog is gone and cannot be staged again ({exc}). Clear the shop's "
            f"shop.start_catalog_read task ({batch.shop_domain}) with downstream: its catalog is read and staged "
            "anew"
        ) from None


def reconcile_day(
    day: date, plans: Sequence[ShopPlan], results: Sequence[BatchResult], settings: Settings
) -> list[dict[str, Any]]:
    """Reconcile every shop whose batches all finished: files, rows, events and catalog must agree.

    A product deleted from Shopify during the run leaves the planned variant count behind: such a shop's
    catalog count is the variants its batches found (the deletion is in the report as skipped products).
    """
    finished: dict[str, list[BatchResult]] = {}
    for result in results:
        finished.setdefault(result.shop_id, []).append(result)
    documents = []
    with app_db() as conn:
        for plan in plans:
            shop_results = finished.get(plan.shop_id, [])
            if len(shop_results) != len(plan.batches):
                continue  # a failed batch already fails the shop; its numbers cannot agree
            files = sum_totals(r.file_totals for r in shop_results)
            skipped = any(r.missing_products for r in shop_results)
            catalog = files.variants if skipped else plan.variants
            parts = [r.parquet_totals for r in shop_results]
            parquet = sum_totals(p for p in parts if p is not None) if all(p is not None for p in parts) else None
            reconciliation = reconcile_shop(
                conn,
                plan.shop_id,
                day,
                catalog,
                files,
                max_revenue=settings.max_event_revenue,
                currency=plan.batches[0].currency if plan.batches else None,
                parquet=parquet,
            )
            for difference in reconciliation.differences:
                log.error("%s", difference)
            documents.append(reconciliation.document())
    return documents


def check_pixel_health(day: date, shops: Sequence[ShopRef]) -> dict[str, Any]:
    """Read every listed shop's pixel health for the day and log it; never raise (it only informs).

    Returns the report section: ``{"document": ..., "line": ...}`` (the line is what the log shows).
    """
    try:
        with app_db() as conn:
            health = pixel_health(conn, shops, day)
    except Exception as exc:  # a read that failed must not fail the export: the report says so instead
        line = f"Pixel health of {day}: not checked ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
        log.warning("%s", line)
        return {"document": {"error": line}, "line": line}
    line = health.text()
    (log.warning if health.silent else log.info)("%s", line)
    return {"document": health.document(), "line": line}


def add_report_sections(report: RunReport, sections: dict[str, dict[str, Any] | None]) -> RunReport:
    """Add the informative sections (pixel health, session links) to the day's report; a missing one
    (its task failed) is noted as such."""
    for name, section in sections.items():
        if section is None:
            section = {"document": {"error": "its task did not finish"}, "line": f"{name}: its task did not finish"}
        report.add_section(name, section["document"], section["line"])
    return report


def nearest_report(day: date) -> dict[str, Any] | None:
    """Return the report nearest before ``day`` (a backfill of days long past: the oldest after it), or None."""
    store = R2Hook()
    own = report_key(day)
    keys = sorted(key for key in store.keys_under(RUNS_PREFIX) if key.endswith(".json") and key != own)
    before = [key for key in keys if key < own]
    chosen = before[-1] if before else next(iter(keys), None)
    if chosen is None:
        return None
    with closing(store.open_object(chosen)) as body:
        document: dict[str, Any] = json.load(body)
    return document


def carry_sizes(report: RunReport) -> RunReport:
    """Keep in the day's report every shop's last measured size, carried over the days it failed."""
    previous = fleet.sizes_from_report(nearest_report(date.fromisoformat(report.date)))
    report.shop_sizes = fleet.carried_sizes(previous, report.per_shop, report.failed_shops)
    return report


def plan_fleet(shops: Sequence[ShopRef], day: date, settings: Settings) -> FleetPlan:
    """Split the day's shops into shops alone and packed units, by their sizes in the nearest report."""
    previous = nearest_report(day)
    plan = fleet.plan_fleet(shops, fleet.sizes_from_report(previous), settings)
    log.info(
        "%d active shop(s): %d alone, %d in %d packed unit(s)%s",
        len(shops),
        len(plan.single),
        sum(len(u.shops) for u in plan.units),
        len(plan.units),
        "" if previous else " (no report yet: every shop counted as small)",
    )
    return plan


def export_unit(unit: ShopUnit, writer: DayWriter, settings: Settings) -> UnitResult:
    """Export the small shops of a packed unit, each on its own, together where it is cheaper.

    Each shop's catalog is read on its own (one Shopify request when it fits), concurrently, its transient
    failures retried; a shop that still fails is recorded and never stops the others. The shops read are
    then exported together: one query for the tokens, one for the metrics, one each for the image backups
    and the recorded hashes, and one transaction for the rows, however many shops the unit holds.
    """
    day = writer.day
    outcome = UnitResult(index=unit.index)
    fetch, images = image_fetcher(settings)
    store = R2Hook(max_pool_connections=settings.concurrency)
    clock = PhaseClock()
    with app_db() as conn, ThreadPoolExecutor(settings.concurrency) as pool, closing(images):
        with clock.phase("credentials"):
            check_writer(conn, writer)
            credentials = shops_credentials(conn, [shop.shop_id for shop in unit.shops])
            conn.commit()  # the reads below take a while: hold no transaction open meanwhile
        reads = {
            shop.shop_id: pool.submit(_retried, _read_packed_shop, shop, credentials[shop.shop_id], day, settings)
            for shop in unit.shops
        }
        parts: list[ShopPart] = []
        costs: dict[str, float] = {}
        for shop in unit.shops:
            try:
                with clock.phase("catalog"):
                    part, note, cost = reads[shop.shop_id].result()
            except ShopTooLargeForUnit as large:
                log.warning("%s", large)
                outcome.moved.append(shop)
                continue
            except Exception as exc:
                _record_failure(outcome, unit, shop, exc)
                continue
            parts.append(part)
            costs[shop.shop_id] = cost
            outcome.plans.append(
                ShopPlan(shop.shop_id, shop.shop_domain, "packed", note, part.plan.variants, [part.plan])
            )
        while parts:
            try:
                outcome.results = _retried(_export_together, conn, store, parts, fetch, pool, settings, clock, writer)
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
            for result in outcome.results:
                result.graphql_cost = costs[result.shop_id]
            break
    return outcome


def _retried(body: Callable[..., T], *args: Any) -> T:
    """Run ``body``, retrying what a retry may fix (not a PermanentError) with a short backoff."""
    for attempt in Retrying(
        retry=retry_if_not_exception_type((PermanentError, ShopTooLargeForUnit)),
        stop=stop_after_attempt(UNIT_SHOP_ATTEMPTS),
        wait=wait_exponential(multiplier=1, max=10),
        reraise=True,
    ):
        with attempt:
            return body(*args)
    raise AssertionError("unreachable: tenacity reraises the last error")


def failure_text(exc: BaseException) -> str:
    """Return why a shop failed, for the report: the export's own errors name the shop and carry no secret;
    any other is reduced to its type."""
    return str(exc)[:500] if isinstance(exc, (ExportError, ValueError)) else type(exc).__name__


def _record_failure(outcome: UnitResult, unit: ShopUnit, shop: ShopRef, exc: BaseException) -> None:
    outcome.permanent = outcome.permanent and isinstance(exc, PermanentError)
    reason = failure_text(exc)
    outcome.failures[shop.shop_id] = reason
    log.error("Shop %s failed in unit %d: %s", shop.shop_domain, unit.index, reason)


MOVED_NOTE = "found large on its first page in a packed unit: exported alone, page by page"


class ShopTooLargeForUnit(Exception):
    """A shop of a packed unit has, by its first page, as many products as a shop read alone: it leaves the unit."""


def _read_packed_shop(
    shop: ShopRef, credentials: ShopCredentials | ShopConfigurationError, day: date, settings: Settings
) -> tuple[ShopPart, str | None, float]:
    """Read a small shop's whole catalog (one request when it fits) as its share of the unit's batch; a shop
    found large on its first page leaves the unit (ShopTooLargeForUnit) before the rest is read."""
    if isinstance(credentials, ShopConfigurationError):
        raise credentials
    safe_key_part(shop.shop_id, "shop id")  # a hostile id fails its shop here, not the unit's shared export
    _, day_end = day_bounds(day)
    with ShopifyHook(credentials.api_domain, credentials.access_token) as shopify:
        pages = shopify.shop_catalog_pages()
        first = next(pages)
        if first.products_count >= settings.bulk_threshold:
            raise ShopTooLargeForUnit(
                f"Shop {shop.shop_domain}: {first.products_count} products (at least {settings.bulk_threshold}) on "
                "its first page in a packed unit: it leaves the unit and is exported alone"
            )
        raw = first.products + [product for page in pages for product in page.products]
        cost = shopify.cost_charged
    products = [p for p in map(parse_product, raw) if existed_on(p.created_at, day_end)]
    variants = sum(len(p.variants) for p in products)
    plan = BatchPlan(shop.shop_id, shop.shop_domain, day.isoformat(), 1, 1, [], first.currency, variants)
    return ShopPart(plan, products), None, cost


def export_moved_shop(shop: ShopRef, writer: DayWriter, settings: Settings) -> UnitResult:
    """Export alone, in this one task, a shop that left its packed unit: its catalog read page by page in
    batches, each batch exported in turn (memory stays that of one batch). From the next day its size in the
    report puts it on the per-shop path."""
    outcome = UnitResult(index=0)
    try:
        with shopify_for(shop.shop_id) as shopify:
            currency = shopify.shop_info().get("currencyCode")
        read = CatalogRead(shop.shop_id, shop.shop_domain, currency=currency, note=MOVED_NOTE)
        plan = plan_shop_batches(read, writer, settings)
        outcome.plans.append(plan)
        outcome.results = [export_product_batch(batch, settings, writer.run_id) for batch in plan.batches]
    except Exception as exc:
        outcome.plans = []
        outcome.results = []
        outcome.permanent = isinstance(exc, PermanentError)
        outcome.failures[shop.shop_id] = failure_text(exc)
        log.error("Shop %s failed, exported alone after leaving its unit: %s", shop.shop_domain, outcome.failures)
    return outcome


def _export_together(
    conn: Any,
    store: R2Hook,
    parts: list[ShopPart],
    fetch: ImageFetch,
    pool: ThreadPoolExecutor,
    settings: Settings,
    clock: PhaseClock,
    writer: DayWriter,
) -> list[BatchResult]:
    try:
        return export_parts(
            conn, store, parts, fetch, pool=pool, max_revenue=settings.max_event_revenue, clock=clock, writer=writer
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


def write_report(report: RunReport) -> str:
    """Write the day's report to the bucket and return its key."""
    key = report_key(date.fromisoformat(report.date))
    R2Hook().put_object(key, report.json_bytes(), "application/json")
    return key


def finish_day(report: RunReport, writer: DayWriter) -> dict[str, Any]:
    """Log and write the day's report and return it; raise DayFailed naming every failed shop if any failed."""
    log.info(report.text())
    check_day_writer(writer)
    log.info("Report written to %s", write_report(report))
    if report.failed:
        raise DayFailed(report.failure_message())
    return report.document()


def exports_asset_extra(report: dict[str, Any]) -> dict[str, Any]:
    """Return the extra of the day's asset event: where the files are and what the day's report counted."""
    return {
        "day": report.get("date"),
        "bucket": R2Hook().bucket,
        "prefix": EXPORTS_ROOT,
        "shops": report.get("shops", 0),
        "variants": report.get("variants", 0),
        "files": report.get("files", 0),
        "failedShops": sorted(report.get("failedShops") or {}),
    }


def clean_day_staging(writer: DayWriter) -> int:
    """Delete the run's own staged catalogs of its day (and staging written over a week ago)."""
    return clean_staging(R2Hook(), writer.day, writer.run_id)
