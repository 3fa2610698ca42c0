"""
Daily export of Shopify product statistics: every variant of every product of every active shop.

resolve the day (one that has ended), claim it (one writer per day), link sessions, list the active shops
-> plan the fleet: large shops (or every shop of a small fleet) alone, small shops packed in units
-> per shop alone (a mapped task group): read its catalog (a bulk operation for a large shop, waited for
   without a worker slot), cut it into batches; then every batch (mapped): metrics, images, files, rows
-> per packed unit (mapped): its small shops read one request each, exported together; a shop found large
   on its first page leaves its unit and is exported alone
-> reconcile each shop (files = rows = events = catalog) -> report the day, with pixel health and session
   links -> clean the run's staged catalogs once the day succeeded, and tell the asset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from airflow.sdk import Asset, Param, PokeReturnValue, TriggerRule, dag, task, task_group
from airflow.timetables.interval import CronDataIntervalTimetable

from include.statistics_export import settings as export_settings
from include.statistics_export import tasks
from include.statistics_export.handoffs import (
    BatchPlan,
    BatchResult,
    BatchSizing,
    CatalogRead,
    DayFigures,
    FleetPlan,
    ReportSection,
    ShopPlan,
    ShopRef,
    ShopUnit,
)
from include.statistics_export.keys import EXPORTS_ASSET_NAME, EXPORTS_ASSET_URI
from include.statistics_export.reconcile import ShopReconciliation
from include.statistics_export.utc import export_day, midnight, require_finished

SETTINGS = export_settings.load()
DAG_ID = "product_statistics_export"
# Who takes a free slot first: a shop alone's steps (they gate its batches), packed units (longest), batches.
SHOP_CHAIN_PRIORITY: dict[str, Any] = {"priority_weight": 3, "weight_rule": "absolute"}
PACKED_UNIT_PRIORITY: dict[str, Any] = {"priority_weight": 2, "weight_rule": "absolute"}
BATCH_PRIORITY: dict[str, Any] = {"priority_weight": 1, "weight_rule": "absolute"}
# Airflow 3.3 may fail a poke whose predecessor's executor event arrives late (apache/airflow#71172): a sensor's
# failure is retried one poll later (not after the DAG's minute-long backoff), with tries to spare.
SENSOR: dict[str, Any] = {
    "mode": "reschedule",
    "poke_interval": SETTINGS.bulk_poll_seconds,
    "retries": 6,
    "retry_delay": timedelta(seconds=SETTINGS.bulk_poll_seconds),
    "retry_exponential_backoff": False,
}
# Updated once a day is fully exported; downstream DAGs schedule on it (docs/outputs.md: "Downstream DAGs").
EXPORTS_ASSET = Asset(name=EXPORTS_ASSET_NAME, uri=EXPORTS_ASSET_URI)


def exported(sensor: bool = False, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Return Airflow's @task (or @task.sensor) over a body that takes and returns records (tasks.export_task)."""
    decorator = task.sensor(**options) if sensor else task(**options)
    return lambda body: decorator(tasks.export_task(body))


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=midnight(export_settings.first_day(SETTINGS)),  # unset, the DAG does not load (README step 5)
    catchup=SETTINGS.catchup,
    max_active_runs=SETTINGS.max_active_runs,
    default_args={
        "retries": tasks.AIRFLOW_RETRIES,
        "retry_delay": timedelta(seconds=SETTINGS.retry_delay_seconds),
        "retry_exponential_backoff": True,
    },
    params={
        "date": Param(None, type=["null", "string"], format="date", description="Export this UTC day (YYYY-MM-DD)"),
        "shop_ids": Param([], type="array", items={"type": "string"}, description="Only these shops (ids)"),
        "product_ids": Param([], type="array", items={"type": "string"}, description="Only these products"),
    },
    tags=["shopify", "statistics", "r2"],
    on_failure_callback=tasks.alerts.notify_failed_day,
    deadline=tasks.alerts.export_deadline(SETTINGS),
    doc_md=__doc__,
)
def product_statistics_export():
    @exported()
    def resolve_export_day(params=None, logical_date=None, dag_run=None) -> str:
        """Fix, once per run, the UTC day every task of this run exports: a day that has ended, never today."""
        run_after = getattr(dag_run, "run_after", None)
        day = export_day(params.get("date"), logical_date, run_after)
        return require_finished(day, run_after=run_after).isoformat()

    # One day, one writer (day_claims): a second run of the day waits here, without a worker slot, for the first.
    @exported(sensor=True, timeout=43200, **SENSOR)
    def claim_export_day(day: str, run_id=None, ti=None) -> PokeReturnValue:
        """Claim the day for this run, or wait while another run of the same day is still going."""
        claim = tasks.claim_export_day(tasks.writer(day, run_id), tasks.run_is_active(ti, DAG_ID))
        return PokeReturnValue(is_done=claim.held, xcom_value=claim.taken_from)

    @exported(task_id=tasks.task_ids.LINK_SESSIONS)
    def link_sessions(params=None) -> list[ReportSection]:
        """Link unlinked sessions to the shops that have no usable one, so they are exported in this run; count the
        shops on expiring and on non-expiring tokens."""
        shop_ids = tasks.only(params, "shop_ids")
        return [tasks.link_unlinked_sessions(export_settings.load(), shop_ids), tasks.census_tokens(shop_ids)]

    @exported()
    def list_active_shops(params=None) -> list[ShopRef]:
        """List the active shops to export (ids and domains only)."""
        return tasks.list_active_shops(tasks.only(params, "shop_ids"))

    @exported()
    def plan_fleet(shops: list[ShopRef], day: str, params=None) -> FleetPlan:
        """Split the shops into units of work: large shops (or every shop of a small fleet) alone, the rest packed."""
        return tasks.plan_fleet(
            shops, date.fromisoformat(day), export_settings.load(), tasks.only(params, "product_ids"), tasks.map_limit()
        )

    @exported()
    def batch_sizing(fleet: FleetPlan) -> BatchSizing:
        """How the shops alone cut their catalogs: the day's batch size (it grows for a fleet of many large shops),
        each shop into at most its budget of batches (the day's stay under max_map_length)."""
        return fleet.batch_sizing()

    @exported()
    def shops_alone(fleet: FleetPlan) -> list[ShopRef]:
        """The shops exported one task group each: large shops, or every shop of a small fleet."""
        return fleet.single

    @exported()
    def packed_units(fleet: FleetPlan) -> list[ShopUnit]:
        """The units of small shops, one task instance each."""
        return fleet.units

    @exported(task_id=tasks.task_ids.EXPORT_SHOP_UNIT, map_index_template="{{ unit_label }}", **PACKED_UNIT_PRIORITY)
    def export_shop_unit(unit: ShopUnit, day: str, run_id=None, ti=None) -> int:
        """Export a unit of small shops, each on its own; fail afterwards, naming them, if any shop failed."""
        tasks.label("unit_label", unit.label)
        outcome = tasks.export_unit(unit, tasks.writer(day, run_id), export_settings.load())
        tasks.push_outcome(ti, outcome)
        if outcome.failures:
            tasks.label("unit_label", outcome.failed_label(unit))
        return tasks.fail_unit_if_any_shop_failed(unit, outcome)

    @exported(trigger_rule=TriggerRule.ALL_DONE)
    def moved_shops(ti=None) -> list[ShopUnit]:
        """The shops found large on their first page in a packed unit, in groups that fit a mapped task (one shop
        a group while they fit): each shop is exported alone."""
        return tasks.pushed_moved_shops(ti)

    @exported(task_id=tasks.task_ids.EXPORT_MOVED_SHOP, map_index_template="{{ shop_label }}", **PACKED_UNIT_PRIORITY)
    def export_moved_shop(group: ShopUnit, day: str, run_id=None, ti=None) -> int:
        """Export alone each shop of a group that left their packed units (in bulk when large); fail afterwards,
        naming them, if any failed."""
        tasks.label("shop_label", group.shops[0].shop_domain if len(group.shops) == 1 else group.label)
        outcome = tasks.export_moved_shops(group, tasks.writer(day, run_id), export_settings.load())
        tasks.push_outcome(ti, outcome)
        return tasks.fail_unit_if_any_shop_failed(group, outcome)

    @exported(task_id=tasks.task_ids.START_CATALOG_READ, map_index_template="{{ shop_label }}", **SHOP_CHAIN_PRIORITY)
    def start_catalog_read(shop: ShopRef, params=None) -> CatalogRead:
        """Count the shop's products and, for a large shop, start a Shopify bulk query of its catalog."""
        tasks.label("shop_label", shop.shop_domain)
        return tasks.start_catalog_read(shop, export_settings.load(), tasks.only(params, "product_ids"))

    @exported(
        sensor=True,
        task_id=tasks.task_ids.WAIT_FOR_CATALOG,
        map_index_template="{{ shop_label }}",
        timeout=21600,
        **SENSOR,
        **SHOP_CHAIN_PRIORITY,
    )
    def wait_for_catalog(read: CatalogRead) -> PokeReturnValue:
        """Wait, without holding a worker slot, until Shopify has finished the shop's bulk query."""
        tasks.label("shop_label", read.shop_domain)
        ready = tasks.poll_catalog_read(read)
        return PokeReturnValue(is_done=ready is not None, xcom_value=ready.to_xcom() if ready else None)

    @exported(task_id=tasks.task_ids.PLAN_SHOP_BATCHES, map_index_template="{{ shop_label }}", **SHOP_CHAIN_PRIORITY)
    def plan_shop_batches(read: CatalogRead, day: str, sizing: BatchSizing, params=None, run_id=None) -> ShopPlan:
        """Cut the shop's catalog into batches of the day's size (STATISTICS_EXPORT_BATCH_VARIANTS, or more), at
        most its budget of them (larger batches if it takes that)."""
        tasks.label("shop_label", read.shop_domain)
        settings = replace(export_settings.load(), batch_variants=sizing.batch_variants)
        return tasks.plan_shop_batches(
            read,
            tasks.writer(day, run_id),
            settings,
            tasks.only(params, "product_ids"),
            sizing.budget_of(read.shop_id),
        )

    # A mapped task's output lists what its finished instances returned; a mapped task group's is None when it had
    # no instance at all (no shop alone). Either way what is missing is judged against the plan, by the report.
    @exported(trigger_rule=TriggerRule.ALL_DONE, **SHOP_CHAIN_PRIORITY)
    def collect_batches(plans: list[ShopPlan] | None) -> list[BatchPlan]:
        """Flatten the batches of every shop that planned; a shop that failed has nothing here."""
        return [batch for plan in plans or [] for batch in plan.batches]

    @exported(task_id=tasks.task_ids.EXPORT_PRODUCT_BATCH, map_index_template="{{ batch_label }}", **BATCH_PRIORITY)
    def export_product_batch(batch: BatchPlan, run_id=None) -> BatchResult:
        """Export one batch of one shop's products end to end."""
        tasks.label("batch_label", batch.label)
        return tasks.export_product_batch(batch, export_settings.load(), run_id)

    @exported(trigger_rule=TriggerRule.ALL_DONE)
    def reconcile(
        day: str, plans: list[ShopPlan] | None, results: list[BatchResult] | None, params=None, ti=None
    ) -> list[ShopReconciliation]:
        """Check each finished shop: files, rows, the day's events and the catalog must agree."""
        if params.get("product_ids"):  # some products only: their files cannot add up to the shop's events
            return []
        outcome = tasks.day_outcome(ti, [], plans or [], [], results or [], [])
        return tasks.reconcile_day(date.fromisoformat(day), outcome.plans, outcome.results, export_settings.load())

    @exported()
    def check_pixel_health(day: str, shops: list[ShopRef]) -> ReportSection:
        """Per shop: the day's events by type, its active tests, a silent pixel, events for inactive tests."""
        return tasks.check_pixel_health(date.fromisoformat(day), shops)

    # None where a task failed (for the mapped ones, as in collect_batches: none of their instances finished).
    @exported(trigger_rule=TriggerRule.ALL_DONE)
    def report(
        day: str,
        shops: list[ShopRef] | None,
        fleet: FleetPlan | None,
        plans: list[ShopPlan] | None,
        results: list[BatchResult] | None,
        reconciliations: list[ShopReconciliation] | None,
        pixel: ReportSection | None,
        links: list[ReportSection] | None,
        params=None,
        run_id=None,
        ti=None,
    ) -> DayFigures:
        """Log and write the day's report; fail the run unless the day is whole: a task that did not finish, a
        shop that failed or did not reconcile. A run of some shops or products is merged into the day's report."""
        # A section whose task failed is missing here: the report notes it as not finished.
        sections = [*(links or []), *([pixel] if pixel is not None else [])]
        return tasks.report_day(
            day,
            shops,
            fleet,
            plans or [],
            results or [],
            reconciliations,
            sections,
            tasks.writer(day, run_id),
            ti,
            tasks.only(params, "shop_ids"),
            tasks.only(params, "product_ids"),
        )

    @exported(outlets=[EXPORTS_ASSET])
    def clean_staging(day: str, figures: DayFigures, run_id=None, outlet_events=None) -> int:
        """Delete the run's staged catalogs once the whole day has succeeded; tell the asset what the day holds."""
        deleted = tasks.clean_day_staging(tasks.writer(day, run_id))
        outlet_events[EXPORTS_ASSET].extra = figures.asset_extra()
        return deleted

    # Mapped per shop: each step depends on that shop's own previous step, so one shop failing leaves the others.
    @task_group(group_id=tasks.task_ids.SHOP_GROUP)
    def read_shop_catalog(shop: ShopRef, day: str, sizing: BatchSizing):
        return plan_shop_batches(wait_for_catalog(start_catalog_read(shop)), day, sizing)

    day = resolve_export_day()
    claim_export_day(day) >> (links := link_sessions()) >> (shops := list_active_shops())
    fleet = plan_fleet(shops, day)
    single = shops_alone(fleet)
    plans = read_shop_catalog.partial(day=day, sizing=batch_sizing(fleet)).expand(shop=single)
    batches = collect_batches(plans)
    results = export_product_batch.expand(batch=batches)
    # The units are handed out after the shops alone, so a large shop's first step is queued before the units
    # can take every slot: its batches then run beside the units instead of after them.
    single >> (packed := packed_units(fleet))
    units = export_shop_unit.partial(day=day).expand(unit=packed)
    units >> (leaving := moved_shops())
    moved = export_moved_shop.partial(day=day).expand(group=leaving)
    reconciliations = reconcile(day, plans, results)
    [units, moved] >> reconciliations
    pixel = check_pixel_health(day, shops)
    summary = report(day, shops, fleet, plans, results, reconciliations, pixel, links)
    clean_staging(day, summary)


product_statistics_export()
