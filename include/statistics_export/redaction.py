"""Erase everything the export wrote of one shop: Shopify's mandatory ``shop/redact`` webhook, sent 48 hours after a
merchant uninstalls the app, obliges the app to erase the shop's data (the ``shop_data_redaction`` DAG).

What goes: every object under the shop's prefixes (its CSV and JSON files, its image backups, its Parquet
partitions, its staged catalogs of any day and run), its rows of ``"StatisticsExport"``, ``"VariantDailyStatistics"``
and ``"ProductImageBackup"``, its entries in every day's sizes (``"StatisticsExportShopSizes"``) and in every day's
report (``report_redaction``: figures, failure, reconciliation, size, sections; the totals recounted).

The steps, in this order, each erasing what is left so a second run, or a run after a crash halfway, finishes:

1. refuse a shop still active (``"ShopCredential"."isActive"``) unless forced: nothing is recorded or erased;
2. record the redaction (``"StatisticsExportRedaction"``) and commit: from now on the export lists the shop no more
   and refuses to write it (``shop_fence``);
3. take the shop's fence exclusively: a publication of the shop already in flight finishes first;
4. erase the objects, then the rows and sizes in one transaction, then the reports under the reports' lock;
5. finish the record: when, and which run. Each step's counts by kind are added to the record as it ends (the
   rows' with their deletes, in one transaction), so the record counts what every run erased, a run that died
   halfway included. The record names the shop by id only, never a domain.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from typing import Any

from psycopg.types.json import Jsonb

from include.statistics_export.errors import ShopStillActive
from include.statistics_export.keys import (
    RUNS_PREFIX,
    STAGING_ROOT,
    is_staged_for_shop,
    safe_key_part,
    shop_export_prefix,
    shop_images_prefix,
    shop_parquet_prefix,
)
from include.statistics_export.protocols import ObjectStore
from include.statistics_export.report_redaction import report_without_shop
from include.statistics_export.report_schema import RunReport
from include.statistics_export.shop_fence import reports_fence, shop_erasure
from include.statistics_export.shops import display_domain
from include.statistics_export.utc import naive_utc, now_ms

log = logging.getLogger(__name__)

_SHOP = 'SELECT "isActive", "shopDomain" FROM "ShopCredential" WHERE id = %(shop)s'
_RECORD = """
INSERT INTO "StatisticsExportRedaction" ("shopId", "requestedAt", "runId") VALUES (%(shop)s, %(at)s, %(run_id)s)
ON CONFLICT ("shopId") DO UPDATE SET "runId" = EXCLUDED."runId", "finishedAt" = NULL
"""
_RECORDED_COUNTS = 'SELECT counts FROM "StatisticsExportRedaction" WHERE "shopId" = %(shop)s FOR UPDATE'
_COUNTS = 'UPDATE "StatisticsExportRedaction" SET counts = %(counts)s WHERE "shopId" = %(shop)s'
_FINISH = """
UPDATE "StatisticsExportRedaction" SET "finishedAt" = %(at)s, "runId" = %(run_id)s WHERE "shopId" = %(shop)s
RETURNING counts
"""
# Each of the export's output tables keys its rows by the shop's id in the column "shop" (migrations/0001).
_DELETE_ROWS = {
    "export_rows": 'DELETE FROM "StatisticsExport" WHERE shop = %(shop)s',
    "statistics_rows": 'DELETE FROM "VariantDailyStatistics" WHERE shop = %(shop)s',
    "image_rows": 'DELETE FROM "ProductImageBackup" WHERE shop = %(shop)s',
}
_DROP_SIZES = 'UPDATE "StatisticsExportShopSizes" SET sizes = sizes - %(shop)s::text WHERE sizes ? %(shop)s::text'


@dataclass
class Erased:
    """How many of each kind one redaction run erased (the record's ``counts``, added up over runs)."""

    files: int = 0
    images: int = 0
    parquet: int = 0
    staged: int = 0
    export_rows: int = 0
    statistics_rows: int = 0
    image_rows: int = 0
    size_days: int = 0
    reports: int = 0

    @property
    def total(self) -> int:
        return sum(asdict(self).values())

    def document(self) -> dict[str, int]:
        """Return the counts as the record keeps them (camelCase, as the app's JSON)."""
        return {_camel(name): value for name, value in asdict(self).items()}

    def plus(self, earlier: Any) -> Erased:
        """Return these counts added to an earlier run's (the record's ``counts``; odd values read as zero)."""
        before = earlier if isinstance(earlier, dict) else {}
        return Erased(**{f.name: getattr(self, f.name) + _count(before.get(_camel(f.name))) for f in fields(self)})

    def text(self) -> str:
        return ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in asdict(self).items())


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def check_may_redact(conn: Any, shop_id: str, *, force: bool) -> list[str]:
    """Refuse a shop that is still active unless ``force`` (ShopStillActive, naming it); return the shop's domains
    as the app knows them (none when the app has no credential left), to take out of the reports' text."""
    with conn.cursor() as cur:
        cur.execute(_SHOP, {"shop": shop_id})
        row = cur.fetchone()
    conn.rollback()
    if row is not None and row[0] and not force:
        raise ShopStillActive(
            f'Shop {shop_id} is still active ("ShopCredential"."isActive"): nothing was erased. Shopify sends '
            "shop/redact 48 hours after the merchant uninstalls; trigger with force true only to erase an installed "
            "shop's data on purpose"
        )
    return sorted({row[1], display_domain(row[1])}) if row is not None and row[1] else []


def record_request(conn: Any, shop_id: str, run_id: str) -> None:
    """Record that the shop's data is being erased, and commit: the export's fence from now on."""
    with conn.cursor() as cur:
        cur.execute(_RECORD, {"shop": shop_id, "at": naive_utc(now_ms()), "run_id": run_id})
    conn.commit()


def erase_objects(store: ObjectStore, shop_id: str) -> Erased:
    """Delete every object of the shop; return how many of each kind (deleted in requests of up to 1,000 keys,
    never logged one by one)."""
    kinds = {
        "files": list(store.keys_under(shop_export_prefix(shop_id))),
        "images": list(store.keys_under(shop_images_prefix(shop_id))),
        "parquet": list(store.keys_under(shop_parquet_prefix(shop_id))),
        "staged": [key for key in store.keys_under(STAGING_ROOT) if is_staged_for_shop(key, shop_id)],
    }
    erased = Erased()
    for kind, keys in kinds.items():
        store.delete_keys(keys)
        setattr(erased, kind, len(keys))
    return erased


def erase_rows(conn: Any, shop_id: str) -> Erased:
    """Delete the shop's rows of the three output tables and its entries in every day's sizes, in the caller's
    transaction (committed with their counts, :func:`add_to_record`); return how many of each."""
    erased = Erased()
    with conn.cursor() as cur:
        for kind, statement in _DELETE_ROWS.items():
            cur.execute(statement, {"shop": shop_id})
            setattr(erased, kind, cur.rowcount)
        cur.execute(_DROP_SIZES, {"shop": shop_id})
        erased.size_days = cur.rowcount
    return erased


def _stored_reports(store: ObjectStore) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in sorted(store.keys_under(RUNS_PREFIX)):
        if key.endswith(".json"):
            with closing(store.open_object(key)) as body:
                yield key, json.load(body)


def erase_from_reports(store: ObjectStore, shop_id: str, domains: list[str]) -> Erased:
    """Rewrite every day's report that names the shop without it (totals recounted), leave the others untouched;
    return how many were rewritten."""
    erased = Erased()
    for key, document in _stored_reports(store):
        rewritten = report_without_shop(document, shop_id, domains)
        if rewritten is not None:
            store.put_object(key, RunReport.from_document(rewritten).json_bytes(), "application/json")
            erased.reports += 1
    return erased


def add_to_record(conn: Any, shop_id: str, step: Erased) -> None:
    """Add one step's counts to the record's and commit (with the step's deletes, when it deleted rows): a run that
    dies after a step leaves that step counted, and the next run adds what it erases."""
    with conn.cursor() as cur:
        cur.execute(_RECORDED_COUNTS, {"shop": shop_id})
        row = cur.fetchone()
        cur.execute(_COUNTS, {"shop": shop_id, "counts": Jsonb(step.plus(row[0] if row else None).document())})
    conn.commit()


def finish_record(conn: Any, shop_id: str, run_id: str) -> Erased:
    """Mark the shop's record finished by this run; return its counts over every run."""
    with conn.cursor() as cur:
        cur.execute(_FINISH, {"shop": shop_id, "at": naive_utc(now_ms()), "run_id": run_id})
        row = cur.fetchone()
    conn.commit()
    return Erased().plus(row[0] if row else None)


def redact_shop(conn: Any, store: ObjectStore, shop_id: str, run_id: str, *, force: bool = False) -> Erased:
    """Erase everything the export wrote of the shop (the module's steps); return what this run erased."""
    safe_key_part(shop_id, "shop id")  # an id that cannot be in a key names nothing of ours: refused first
    domains = check_may_redact(conn, shop_id, force=force)
    record_request(conn, shop_id, run_id)
    log.info("Shop %s: redaction recorded by run %s; waiting for any export of it in flight", shop_id, run_id)
    with shop_erasure(conn, shop_id):
        objects = erase_objects(store, shop_id)
        add_to_record(conn, shop_id, objects)
        rows = erase_rows(conn, shop_id)
        add_to_record(conn, shop_id, rows)
        with reports_fence(conn, exclusive=True):
            reports = erase_from_reports(store, shop_id, domains)
        add_to_record(conn, shop_id, reports)
    total = finish_record(conn, shop_id, run_id)
    erased = objects.plus(rows.document()).plus(reports.document())
    if erased.total:
        log.info("Shop %s: erased %s", shop_id, erased.text())
    else:
        log.info("Shop %s: nothing left to erase (every object, row and report entry already gone)", shop_id)
    log.info("Shop %s: erased over every run: %s", shop_id, total.text())
    return erased
