"""Every shop's last measured size, kept per exported day in the export's own table
``"StatisticsExportShopSizes"`` (migration 0007): how the next day's fleet plan packs its shops.

Why a table and not the day's report or one object in the bucket: the plan needs the sizes of the nearest day
before its own, and the reports only tell which days exist by listing the bucket's report prefix (a year of
days, every plan and every report task). One object holding "the latest sizes" would be overwritten by whichever
run wrote last: a backfill of a day long past, or two days of a catchup running at once, would leave today's
plan an old day's sizes. A row per day keeps each day's sizes apart, the nearest one is one indexed query
(the primary key), and the row is written under the day's claim like the day's other rows (one writer per day).

The semantics are the reports': the sizes of the nearest day before the planned one, else, for a backfill of
days long past, of the oldest day after it. The day's report keeps the same sizes in ``shopSizes`` for reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg.types.json import Jsonb

from include.statistics_export.report_schema import ShopSize, sizes_document, sizes_from_document

_NEAREST = """
SELECT date, sizes FROM (
    (SELECT date, sizes, 0 AS rank FROM "StatisticsExportShopSizes" WHERE date < %(day)s ORDER BY date DESC LIMIT 1)
    UNION ALL
    (SELECT date, sizes, 1 AS rank FROM "StatisticsExportShopSizes" WHERE date > %(day)s ORDER BY date LIMIT 1)
) AS nearest ORDER BY rank LIMIT 1
"""
_STORE = """
INSERT INTO "StatisticsExportShopSizes" (date, sizes, "runId", "writtenAt")
VALUES (%(day)s, %(sizes)s, %(run_id)s, (now() AT TIME ZONE 'UTC')::timestamp(3))
ON CONFLICT (date) DO UPDATE SET sizes = EXCLUDED.sizes, "runId" = EXCLUDED."runId", "writtenAt" = EXCLUDED."writtenAt"
"""


@dataclass(frozen=True)
class DaySizes:
    """The sizes a day left, and which day that was."""

    day: date
    sizes: dict[str, ShopSize]


def nearest_sizes(conn: Any, day: date) -> DaySizes | None:
    """Return the sizes of the nearest day before ``day`` (else the oldest after it), or None when no day has any."""
    with conn.cursor() as cur:
        cur.execute(_NEAREST, {"day": day})
        row = cur.fetchone()
    return None if row is None else DaySizes(row[0], sizes_from_document(row[1]))


def store_sizes(conn: Any, day: date, sizes: Mapping[str, ShopSize], run_id: str) -> None:
    """Keep the sizes ``day`` leaves (replacing what an earlier run of the day left), in the caller's transaction."""
    with conn.cursor() as cur:
        cur.execute(_STORE, {"day": day, "sizes": Jsonb(sizes_document(sizes)), "run_id": run_id})
