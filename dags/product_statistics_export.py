"""
Daily export of Shopify product statistics: every variant of every product of every active shop.

resolve the export day, link unlinked sessions to their shops (sessions.py), list the active shops
-> plan the fleet (fleet.py): large shops (or every shop of a small fleet) alone, small shops packed in units
-> per shop alone (a mapped task group): start reading its catalog (a bulk operation for a large shop), wait
   for it without holding a worker slot, cut it into batches of about 500 variants; then every batch of every
   such shop (mapped): metrics, images, files in R2, rows
-> per packed unit (mapped): each small shop read on its own in about one request, all exported together
-> reconcile each shop (files = rows = events = catalog) -> report the day (keys.report_key), with each
   shop's pixel health (checked beside the export) and the session links
-> clean the staged catalogs once the day succeeded, and tell the asset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import Any, TypeVar

from airflow.sdk import Asset, Param, PokeReturnValue, TriggerRule, dag, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

from include.statistics_export import settings as export_settings
from include.statistics_export import tasks
from include.statistics_export.day_claims import DayWriter
from include.statistics_export.errors import ExportError, PermanentError
from include.statistics_export.handoffs import (
    BatchPlan,
    BatchResult,
    CatalogRead,
    FleetPlan,
    Handoff,
    ShopPlan,
    ShopRef,
    ShopUnit,
    UnitResult,
    fit_label,
)
from include.statistics_export.keys import EXPORTS_ASSET_NAME, EXPORTS_ASSET_URI
from include.statistics_export.report import summarize_run, unfinished
from include.statistics_export.utc import export_day, midnight, require_finished

log = logging.getLogger(__name__)

SETTINGS = export_settings.load()
DAG_ID = "product_statistics_export"
ACTIVE_RUN_STATES = ["queued", "running"]
UNIT_RESULT = "unit_result"
BATCH_VARIANTS = "batch_variants"
SENSOR_RETRIES = 6
# Which ready task instance takes a free slot first: a shop alone's short steps towards its batches (they gate
# the batches), then packed units (the longest tasks, so they start early), then batches (short, they fill the
# slots at the end). With Airflow's default (the downstream sum) the last unit could start after every batch
# and run alone at the end of the day.
SHOP_CHAIN_PRIORITY: dict[str, Any] = {"priority_weight": 3, "weight_rule": "absolute"}
PACKED_UNIT_PRIORITY: dict[str, Any] = {"priority_weight": 2, "weight_rule": "absolute"}
BATCH_PRIORITY: dict[str, Any] = {"priority_weight": 1, "weight_rule": "absolute"}
SHOP_TASKS = ("shop.start_catalog_read", "shop.wait_for_catalog", "shop.plan_shop_batches")
H = TypeVar("H", bound=Handoff)
# Updated once a day is fully exported; downstream DAGs schedule on it (README: "Downstream DAGs").
EXPORTS_ASSET = Asset(name=EXPORTS_ASSET_NAME, uri=EXPORTS_ASSET_URI)


def run(body: Callable[..., Any], *args: Any) -> Any:
    """Run a task body; the one place a PermanentError fails the task at once.

    Whatever fails, the reason goes to an XCom ``failure`` so the day's report can say why: the export's
    own errors name the shop and never carry a secret; others are reduced to their type.
    """
    try:
        result = body(*args)
    except PermanentError as exc:
        record_failure(str(exc))
        raise AirflowFailException(str(exc)) from None
    except Exception as exc:
        ours = isinstance(exc, (ExportError, ValueError))
        record_failure(str(exc)[:500] if ours else f"{type(exc).__name__} (see the task log)")
        raise
    return result.to_xcom() if isinstance(result, Handoff) else result


def record_failure(reason: str) -> None:
    """Leave the reason of this task instance's failure where the report task finds it."""
    get_current_context()["ti"].xcom_push(key="failure", value=reason)


def failure_reasons(
    ti: Any, shops: list[ShopRef], plans: list[ShopPlan], batches: list[BatchPlan], results: list[BatchResult]
) -> dict[str, str]:
    """Collect why each failed shop failed, from the XComs its failed task instances left."""
    reasons: dict[str, str] = {}
    missing = unfinished(shops, plans, batches, results)
    for index in missing.shops:
        for task_id in SHOP_TASKS:
            reason = ti.xcom_pull(task_ids=task_id, key="failure", map_indexes=index)
            if reason:
                reasons[shops[index].shop_id] = f"{task_id.split('.')[-1]}: {reason}"
                break
    for index in missing.batches:
        shop_id = batches[index].shop_id
        reason = ti.xcom_pull(task_ids="export_product_batch", key="failure", map_indexes=index)
        if reason and shop_id not in reasons:
            reasons[shop_id] = reason
    return reasons


def as_list(mapped_output: Any, kind: type[H]) -> list[H]:
    """Return the results of a mapped task as records.

    Airflow 3.3 hands a downstream task the bare value, not a one-item list, when a single map index of
    a task inside a mapped task group produced a result (one shop, or all but one failed).
    """
    items = [mapped_output] if isinstance(mapped_output, dict) else list(mapped_output or [])
    return [kind.from_xcom(item) for item in items]


def unit_results(ti: Any, task_id: str = "export_shop_unit") -> list[UnitResult]:
    """Return what every packed unit (or every shop that left one) pushed, finished or failed (a failed unit's
    healthy shops are in it)."""
    pushed = ti.xcom_pull(task_ids=task_id, key=UNIT_RESULT) or []
    return [UnitResult.from_xcom(item) for item in ([pushed] if isinstance(pushed, dict) else pushed) if item]


def label(name: str, value: str) -> None:
    """Name this mapped task instance in the UI (its map_index_template reads the context)."""
    get_current_context()[name] = fit_label(value)


def writer(day: str, run_id: str) -> DayWriter:
    """Return this run as the writer of its day."""
    return DayWriter(date.fromisoformat(day), run_id)


def only(ids: Sequence[str] | None) -> list[str] | None:
    """Return a list param as a filter: None when empty (everything)."""
    return list(ids) if ids else None


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=midnight(SETTINGS.start_date),
    catchup=True,
    max_active_runs=3,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True},
    params={
        "date": Param(None, type=["null", "string"], format="date", description="Export this UTC day (YYYY-MM-DD)"),
        "shop_ids": Param([], type="array", items={"type": "string"}, description="Only these shops (ids)"),
        "product_ids": Param([], type="array", items={"type": "string"}, description="Only these products"),
    },
    tags=["shopify", "statistics", "r2"],
    doc_md=__doc__,
)
def product_statistics_export():
    @task
    def resolve_export_day(params=None, logical_date=None, dag_run=None) -> str:
        """Fix, once per run, the UTC day every task of this run exports: a day that has ended, never today."""
        return run(
            require_finished, export_day(params.get("date"), logical_date, getattr(dag_run, "run_after", None))
        ).isoformat()

    # One day, one writer (day_claims): a second run of the day waits here, holding no worker slot, until the
    # run writing the day has finished; then it takes the day over. Every writing task checks the claim.
    @task.sensor(
        mode="reschedule",
        poke_interval=SETTINGS.bulk_poll_seconds,
        timeout=timedelta(hours=12).total_seconds(),
        **SHOP_CHAIN_PRIORITY,
    )
    def claim_export_day(day: str, run_id=None, ti=None) -> PokeReturnValue:
        """Claim the day for this run, or wait while another run of the same day is still going."""

        def is_active(other_run_id: str) -> bool:
            return ti.get_dr_count(dag_id=DAG_ID, run_ids=[other_run_id], states=ACTIVE_RUN_STATES) > 0

        claim = run(tasks.claim_export_day, writer(day, run_id), is_active)
        return PokeReturnValue(is_done=claim.held, xcom_value=claim.taken_from)

    @task
    def link_sessions(params=None) -> dict:
        """Link unlinked sessions to the shops that have no usable one, so they are exported in this run."""
        return tasks.link_unlinked_sessions(export_settings.load(), only(params.get("shop_ids")))

    @task
    def list_active_shops(params=None) -> list[dict]:
        """List the active shops to export (ids and domains only)."""
        return [shop.to_xcom() for shop in run(tasks.list_active_shops, only(params.get("shop_ids")))]

    @task
    def plan_fleet(shops: list[dict], day: str, params=None, ti=None) -> dict:
        """Split the shops into units of work: large shops (or every shop of a small fleet) alone, the rest packed."""
        listed = [ShopRef.from_xcom(s) for s in shops]
        settings = export_settings.load()
        if params.get("product_ids"):  # some products only: the per-shop path filters
            plan = FleetPlan(single=listed, units=[], batch_variants=settings.batch_variants)
        else:
            plan = FleetPlan.from_xcom(run(tasks.plan_fleet, listed, date.fromisoformat(day), settings))
        # The shops alone cut their catalogs by the day's batch size (it grows for a fleet of many large shops).
        ti.xcom_push(key=BATCH_VARIANTS, value=plan.batch_variants)
        return plan.to_xcom()

    @task
    def shops_alone(fleet: dict) -> list[dict]:
        """The shops exported one task group each: large shops, or every shop of a small fleet."""
        return fleet["single"]

    @task
    def packed_units(fleet: dict) -> list[dict]:
        """The units of small shops, one task instance each."""
        return fleet["units"]

    @task(map_index_template="{{ unit_label }}", **PACKED_UNIT_PRIORITY)
    def export_shop_unit(unit: dict, day: str, run_id=None, ti=None) -> int:
        """Export a unit of small shops, each on its own; fail afterwards, naming them, if any shop failed."""
        shop_unit = ShopUnit.from_xcom(unit)
        label("unit_label", shop_unit.label)
        outcome = UnitResult.from_xcom(run(tasks.export_unit, shop_unit, writer(day, run_id), export_settings.load()))
        # Pushed whatever happens next: the report and the reconciliation read the shops that did finish.
        ti.xcom_push(key=UNIT_RESULT, value=outcome.to_xcom())
        if outcome.failures:
            label("unit_label", outcome.failed_label(shop_unit))
        run(tasks.fail_unit_if_any_shop_failed, shop_unit, outcome)
        return len(outcome.results)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def moved_shops(ti=None) -> list[dict]:
        """The shops found large on their first page in a packed unit: each is exported alone."""
        return [shop.to_xcom() for unit in unit_results(ti) for shop in unit.moved]

    @task(map_index_template="{{ shop_label }}", **PACKED_UNIT_PRIORITY)
    def export_moved_shop(shop: dict, day: str, run_id=None, ti=None) -> int:
        """Export alone a shop that left its packed unit; fail afterwards, naming it, if it failed."""
        ref = ShopRef.from_xcom(shop)
        label("shop_label", ref.shop_domain)
        outcome = tasks.export_moved_shop(ref, writer(day, run_id), export_settings.load())
        ti.xcom_push(key=UNIT_RESULT, value=outcome.to_xcom())
        if outcome.failures:
            run(tasks.fail_unit_if_any_shop_failed, ShopUnit(0, 0, [ref]), outcome)
        return len(outcome.results)

    @task(map_index_template="{{ shop_label }}", **SHOP_CHAIN_PRIORITY)
    def start_catalog_read(shop: dict, params=None) -> dict:
        """Count the shop's products and, for a large shop, start a Shopify bulk query of its catalog."""
        ref = ShopRef.from_xcom(shop)
        label("shop_label", ref.shop_domain)
        return run(tasks.start_catalog_read, ref, export_settings.load(), only(params.get("product_ids")))

    # Airflow 3.3 may fail a poke whose predecessor's executor event arrives late (apache/airflow#71172): such a
    # failure is retried one poll later, not after the DAG's minute-long backoff, and has tries to spare.
    @task.sensor(
        map_index_template="{{ shop_label }}",
        mode="reschedule",
        poke_interval=SETTINGS.bulk_poll_seconds,
        timeout=timedelta(hours=6).total_seconds(),
        retries=SENSOR_RETRIES,
        retry_delay=timedelta(seconds=SETTINGS.bulk_poll_seconds),
        retry_exponential_backoff=False,
        **SHOP_CHAIN_PRIORITY,
    )
    def wait_for_catalog(read: dict) -> PokeReturnValue:
        """Wait, without holding a worker slot, until Shopify has finished the shop's bulk query."""
        catalog_read = CatalogRead.from_xcom(read)
        label("shop_label", catalog_read.shop_domain)
        ready = run(tasks.poll_catalog_read, catalog_read)
        return PokeReturnValue(is_done=ready is not None, xcom_value=ready)

    @task(map_index_template="{{ shop_label }}", **SHOP_CHAIN_PRIORITY)
    def plan_shop_batches(read: dict, day: str, batch_variants: int, params=None, run_id=None) -> dict:
        """Cut the shop's catalog into batches of the day's size (STATISTICS_EXPORT_BATCH_VARIANTS, or more)."""
        catalog_read = CatalogRead.from_xcom(read)
        label("shop_label", catalog_read.shop_domain)
        plan = run(
            tasks.plan_shop_batches,
            catalog_read,
            writer(day, run_id),
            replace(export_settings.load(), batch_variants=batch_variants),
            only(params.get("product_ids")),
        )
        log.info(
            "Shop %s: %d batch(es), %d variants, read by %s",
            plan["shop_domain"],
            len(plan["batches"]),
            plan["variants"],
            plan["mode"],
        )
        return plan

    @task(trigger_rule=TriggerRule.ALL_DONE, **SHOP_CHAIN_PRIORITY)
    def collect_batches(plans) -> list[dict]:
        """Flatten the batches of every shop that planned; a shop that failed has nothing here."""
        return [batch.to_xcom() for plan in as_list(plans, ShopPlan) for batch in plan.batches]

    @task(map_index_template="{{ batch_label }}", **BATCH_PRIORITY)
    def export_product_batch(batch: dict, run_id=None) -> dict:
        """Export one batch of one shop's products end to end."""
        plan = BatchPlan.from_xcom(batch)
        label("batch_label", plan.label)
        result = run(tasks.export_product_batch, plan, export_settings.load(), run_id)
        log.info(
            "%s: %d/%d variants, %d files (%d unchanged), %d images backed up, %d failed, %.2fs",
            plan.label,
            result["variants"],
            plan.variants,
            result["files"],
            result["files_unchanged"],
            result["images_backed_up"],
            result["images_failed"],
            result["seconds"],
        )
        return result

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def reconcile(day: str, plans, results, params=None, ti=None) -> list[dict]:
        """Check each finished shop: files, rows, the day's events and the catalog must agree."""
        if params.get("product_ids"):
            # Some products only: their files cannot add up to the whole shop's events and rows.
            log.info("Reconciliation skipped: the run exported some products only")
            return []
        units = unit_results(ti) + unit_results(ti, "export_moved_shop")
        return run(
            tasks.reconcile_day,
            date.fromisoformat(day),
            as_list(plans, ShopPlan) + [plan for unit in units for plan in unit.plans],
            as_list(results, BatchResult) + [result for unit in units for result in unit.results],
            export_settings.load(),
        )

    @task
    def check_pixel_health(day: str, shops: list[dict]) -> dict:
        """Per shop: the day's events by type, its active tests, a silent pixel, events for inactive tests."""
        return tasks.check_pixel_health(date.fromisoformat(day), [ShopRef.from_xcom(s) for s in shops])

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report(
        day: str,
        shops: list[dict],
        single,
        units,
        plans,
        batches: list[dict],
        results,
        reconciliations,
        pixel=None,
        links=None,
        run_id=None,
        ti=None,
    ) -> dict:
        """Log, return and write the day's report; fail the run when any shop failed or did not reconcile."""
        alone = [ShopRef.from_xcom(s) for s in single or []]
        planned, exported = as_list(plans, ShopPlan), as_list(results, BatchResult)
        mapped = [BatchPlan.from_xcom(b) for b in batches]
        reasons = failure_reasons(ti, alone, planned, mapped, exported)
        finished = {unit.index: unit for unit in unit_results(ti)}
        for index, unit in enumerate(ShopUnit.from_xcom(u) for u in units or []):
            if unit.index in finished:
                reasons.update(finished[unit.index].failures)
                planned += finished[unit.index].plans
                exported += finished[unit.index].results
                continue
            # The unit failed as a whole (its connection, a crash): its own failure reason stands for each shop.
            reason = ti.xcom_pull(task_ids="export_shop_unit", key="failure", map_indexes=index)
            reasons.update({shop.shop_id: f"export_shop_unit: {reason}" for shop in unit.shops if reason})
        for moved in unit_results(ti, "export_moved_shop"):
            reasons.update(moved.failures)
            planned += moved.plans
            exported += moved.results
        listed = [ShopRef.from_xcom(s) for s in shops]
        summary = summarize_run(day, listed, planned, mapped, exported, list(reconciliations or []), reasons)
        tasks.add_report_sections(summary, {"sessionLinks": links, "pixelHealth": pixel})
        tasks.carry_sizes(summary)
        return run(tasks.finish_day, summary, writer(day, run_id))

    @task(outlets=[EXPORTS_ASSET])
    def clean_staging(day: str, summary: dict, run_id=None, outlet_events=None) -> int:
        """Delete the run's staged catalogs once the whole day has succeeded; tell the asset what the day holds."""
        deleted = tasks.clean_day_staging(writer(day, run_id))
        outlet_events[EXPORTS_ASSET].extra = tasks.exports_asset_extra(summary)
        return deleted

    # A task group mapped per shop: each shop's three steps depend on that shop's own previous step, so
    # one shop failing leaves the others going (a task mapped over a mapped task's whole output would not).
    @task_group(group_id="shop")
    def read_shop_catalog(shop: dict, day: str, batch_variants: int):
        return plan_shop_batches(wait_for_catalog(start_catalog_read(shop)), day, batch_variants)

    day = resolve_export_day()
    claimed = claim_export_day(day)
    links = link_sessions()
    shops = list_active_shops()
    claimed >> links >> shops
    fleet = plan_fleet(shops, day)
    single = shops_alone(fleet)
    plans = read_shop_catalog.partial(day=day, batch_variants=fleet[BATCH_VARIANTS]).expand(shop=single)
    batches = collect_batches(plans)
    results = export_product_batch.expand(batch=batches)
    packed = packed_units(fleet)
    units = export_shop_unit.partial(day=day).expand(unit=packed)
    leaving = moved_shops()
    units >> leaving
    moved = export_moved_shop.partial(day=day).expand(shop=leaving)
    reconciliations = reconcile(day, plans, results)
    [units, moved] >> reconciliations
    pixel = check_pixel_health(day, shops)
    summary = report(day, shops, single, packed, plans, batches, results, reconciliations, pixel, links)
    clean_staging(day, summary)


product_statistics_export()
