"""The shop's fence: once a shop's redaction is recorded, the export writes nothing of it again.

A redaction (``redaction.py``) first records the shop in ``"StatisticsExportRedaction"`` and commits, then takes the
shop's advisory lock **exclusively** and only then erases. An export of shops (``pipeline.run.export``, from its
first image copy to its rows' commit) takes the lock of each of its shops **shared** (session-level, like the day's
fence: no transaction stays open across the uploads), then checks the record, then writes, then releases. So
either the export took its lock first, and the redaction's erasing waits until its files and rows are in (and
erases them too), or the redaction took it first, and the record was committed before, so the export's check sees
it and refuses (``ShopRedacted``) before any upload. The rows' transaction checks the record once more
(:func:`refuse_redacted`), and listing the day's shops leaves redacted shops out (``shops.active_shops``), so a
redacted shop is normally never even read.

An export takes its shops' locks in one statement, in the order of their keys: two exports of overlapping shops and
two redactions waiting behind them cannot wait on each other in a circle. A key is a hash of the shop id: two
shops sharing one only make a redaction wait for the other shop's export too.

The day's report is fenced the same way with one lock for all reports: the report task holds it shared while it
takes redacted shops out of the day's report and writes it; the redaction holds it exclusively while it rewrites
the stored reports, so neither overwrites the other's version with one that names the shop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from include.statistics_export.errors import ShopRedacted

# Advisory lock keys (int4, int4): this namespace and a hash of the shop id; the reports' lock is (namespace + 1, 0).
SHOP_NAMESPACE = 0x53745264  # "StRd"
REPORTS_KEY = (SHOP_NAMESPACE + 1, 0)

# The condition every query listing the shops to export (or to report on) adds for its "ShopCredential" c.
NOT_REDACTED = 'NOT EXISTS (SELECT 1 FROM "StatisticsExportRedaction" r WHERE r."shopId" = c.id)'
_REDACTED = 'SELECT "shopId" FROM "StatisticsExportRedaction" WHERE "shopId" = ANY(%(shops)b::text[])'
# OFFSET 0 keeps the sorted subquery apart, so the locks are taken in key order.
_LOCK_SHARED = """
SELECT pg_advisory_lock_shared(%(ns)s, key)
FROM (SELECT hashtext(s) AS key FROM unnest(%(shops)b::text[]) AS s ORDER BY 1 OFFSET 0) AS keys
"""
_UNLOCK_SHARED = "SELECT pg_advisory_unlock_shared(%(ns)s, hashtext(s)) FROM unnest(%(shops)b::text[]) AS s"
_LOCK = "SELECT pg_advisory_lock(%(ns)s, hashtext(%(shop)s))"
_UNLOCK = "SELECT pg_advisory_unlock(%(ns)s, hashtext(%(shop)s))"
_REPORTS = {
    True: ("SELECT pg_advisory_lock(%s, %s)", "SELECT pg_advisory_unlock(%s, %s)"),
    False: ("SELECT pg_advisory_lock_shared(%s, %s)", "SELECT pg_advisory_unlock_shared(%s, %s)"),
}


def redacted_among(conn: Any, shop_ids: Iterable[str]) -> set[str]:
    """Return which of these shops have a redaction recorded (in the caller's transaction)."""
    shops = sorted(set(shop_ids))
    if not shops:
        return set()
    with conn.cursor() as cur:
        cur.execute(_REDACTED, {"shops": shops})
        return {row[0] for row in cur.fetchall()}


def refuse_redacted(conn: Any, shop_ids: Iterable[str]) -> None:
    """Raise ShopRedacted naming the shops whose redaction is recorded (in the caller's transaction)."""
    redacted = redacted_among(conn, shop_ids)
    if redacted:
        raise ShopRedacted(
            f"Shop(s) {', '.join(sorted(redacted))}: their data was erased (shop/redact); nothing of them is written",
            frozenset(redacted),
        )


def _release(conn: Any, statement: str, params: Any) -> None:
    # A connection the server dropped has released its locks with its session.
    with contextlib.suppress(Exception):
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(statement, params)
        conn.commit()


@contextlib.contextmanager
def shops_fence(conn: Any, shop_ids: Iterable[str]) -> Iterator[None]:
    """Hold the shops' fence shared while writing their files and rows, refusing first any shop whose redaction is
    recorded (ShopRedacted, before anything is written). Commit freely inside the block."""
    shops = sorted(set(shop_ids))
    params = {"ns": SHOP_NAMESPACE, "shops": shops}
    with conn.cursor() as cur:
        cur.execute(_LOCK_SHARED, params)
    conn.commit()
    try:
        refuse_redacted(conn, shops)
        conn.commit()
        yield
    finally:
        _release(conn, _UNLOCK_SHARED, params)


@contextlib.contextmanager
def shop_erasure(conn: Any, shop_id: str) -> Iterator[None]:
    """Hold the shop's fence exclusively: wait until every publication of it in flight has committed, and keep any
    new one out (it then finds the redaction recorded, which the caller commits before)."""
    params = {"ns": SHOP_NAMESPACE, "shop": shop_id}
    with conn.cursor() as cur:
        cur.execute(_LOCK, params)
    conn.commit()
    try:
        yield
    finally:
        _release(conn, _UNLOCK, params)


@contextlib.contextmanager
def reports_fence(conn: Any, *, exclusive: bool) -> Iterator[None]:
    """Hold the reports' lock: shared while a day's report is written, exclusive while the redaction rewrites them."""
    take, release = _REPORTS[exclusive]
    with conn.cursor() as cur:
        cur.execute(take, REPORTS_KEY)
    conn.commit()
    try:
        yield
    finally:
        _release(conn, release, REPORTS_KEY)
