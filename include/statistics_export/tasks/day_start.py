"""The day's start: link unlinked sessions, count who holds which kind of token, list the active shops, claim the
day for the run, plan the fleet."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import date
from typing import Any, Protocol, TypeVar

from export_hooks.r2 import R2Hook
from export_hooks.shopify import ShopifyAuthError, ShopifyHook
from include.statistics_export import fleet
from include.statistics_export import settings as settings_table
from include.statistics_export.connections import app_db
from include.statistics_export.day_claims import Claim, DayWriter, check_writer, claim_day
from include.statistics_export.handoffs import (
    FleetPlan,
    ReportSection,
    ShopRef,
)
from include.statistics_export.keys import RUNS_PREFIX, report_key
from include.statistics_export.report_schema import SESSION_LINKS, TOKENS, RunReport, ShopSize
from include.statistics_export.sessions import SessionLinks, TokenAnswer, link_sessions
from include.statistics_export.settings import Settings
from include.statistics_export.shop_sizes import nearest_sizes
from include.statistics_export.shops import active_shops
from include.statistics_export.tokens import TokenCensus, token_census

log = logging.getLogger(__name__)


def ask_token_shop(api_domain: str, token: str) -> TokenAnswer:
    """Ask Shopify which shop a session's token belongs to (the hook masks the token)."""
    try:
        with ShopifyHook(api_domain, token) as shopify:
            myshopify, primary_host = shopify.shop_domains()
    except ShopifyAuthError:
        return TokenAnswer(failure="revoked")
    return TokenAnswer(myshopify_domain=myshopify, primary_host=primary_host)


class Section(Protocol):
    """What an informative section of the day's report holds: its document and its one line."""

    def document(self) -> dict[str, Any]: ...

    def text(self) -> str: ...


S = TypeVar("S", bound=Section)


def report_section(name: str, not_done: str, read: Callable[[], S], flagged: Callable[[S], bool]) -> ReportSection:
    """Read the informative section ``name`` of the day's report and log its line (a warning when it flags
    something).

    It never raises: a read that failed must not fail the export, and the section says so instead (``not_done``
    begins its line).
    """
    try:
        found = read()
    except Exception as exc:  # e.g. the role lacks a grant: the report says so, the export goes on
        line = f"{not_done} ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
        log.warning("%s", line)
        return ReportSection(name, {"error": line}, line)
    line = found.text()
    (log.warning if flagged(found) else log.info)("%s", line)
    return ReportSection(name, found.document(), line)


def link_unlinked_sessions(settings: Settings, shop_ids: Sequence[str] | None = None) -> ReportSection:
    """Link the sessions of shops that have no usable linked session; never raise (the shops' own tasks
    fail, naming the missing session, if nothing could be linked). Returns the report section."""

    def link() -> SessionLinks:
        with app_db() as conn, ThreadPoolExecutor(settings.concurrency) as pool:
            return link_sessions(conn, ask_token_shop, shop_ids=list(shop_ids) if shop_ids else None, pool=pool)

    return report_section(
        SESSION_LINKS,
        "Session links: not done",
        link,
        lambda links: bool(links.revoked or links.ambiguous or links.no_match or links.unanswered),
    )


def census_tokens(shop_ids: Sequence[str] | None = None) -> ReportSection:
    """Count the active shops on expiring and on non-expiring offline tokens, naming the PUBLIC ones Shopify will
    refuse from 2027-01-01; never raise (it only informs). Returns the report section."""

    def count() -> TokenCensus:
        with app_db() as conn:
            return token_census(conn, list(shop_ids) if shop_ids else None)

    return report_section(TOKENS, "Tokens: not counted", count, lambda census: bool(census.non_expiring_public))


def list_active_shops(shop_ids: Sequence[str] | None = None) -> list[ShopRef]:
    """Return the active shops to export (ids and domains only): none paused (STATISTICS_EXPORT_PAUSED_SHOPS), none
    whose data was erased (shop/redact)."""
    paused = settings_table.load().paused_shops
    if paused:
        log.info("Paused, not exported (%s): %s", settings_table.PAUSED_SHOPS.env, ", ".join(paused))
    with app_db() as conn:
        return active_shops(conn, list(shop_ids) if shop_ids else None, paused)


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


def previous_sizes(day: date) -> dict[str, ShopSize] | None:
    """Return every shop's last size as the nearest day before ``day`` left it (a backfill of days long past: the
    oldest after it), or None when no day has left any.

    Read from the sizes table (``shop_sizes``); only while it holds no day at all (the first days after
    migration 0007) from the nearest report in the bucket, as the export did before the table.
    """
    with app_db() as conn:
        nearest = nearest_sizes(conn, day)
    if nearest is not None:
        return nearest.sizes
    document = nearest_report(day)
    return None if document is None else RunReport.from_document(document).known_sizes()


def plan_fleet(
    shops: Sequence[ShopRef],
    day: date,
    settings: Settings,
    product_ids: Sequence[str] | None = None,
    map_limit: int = fleet.DEFAULT_MAP_LIMIT,
) -> FleetPlan:
    """Split the day's shops into shops alone and packed units, by their sizes the nearest day left (a run of
    some products only keeps every shop alone: the per-shop path filters); every mapped list within
    ``map_limit`` (Airflow's max_map_length)."""
    if product_ids:
        return fleet.plan_alone(shops, settings, map_limit)
    sizes = previous_sizes(day)
    plan = fleet.plan_fleet(shops, sizes or {}, settings, map_limit)
    log.info(
        "%d active shop(s): %d alone, %d in %d packed unit(s)%s",
        len(shops),
        len(plan.single),
        sum(len(u.shops) for u in plan.units),
        len(plan.units),
        "" if sizes is not None else " (no sizes yet: every shop counted as small)",
    )
    return plan
