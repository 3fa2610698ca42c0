"""One day, one writer: the run that holds a day's claim is the only run that writes any of that day.

A day is written by many task instances of one run, in many processes, over hours, with retries and clears
in between; a second run of the same day (a manual run while the daily run is going, a backfill over it, a
reprocess) would overwrite the first's staged batches, export some products twice and others never, delete
its Parquet parts and race it for the report. The mechanism is a run fence in the rows, chosen over the two
alternatives:

- a PostgreSQL advisory lock belongs to one database session: it cannot be held across the run's task
  instances, and it dies with the worker that took it, so a retry would find the day free;
- an Airflow pool is static configuration: there is no pool per day, and a pool of one slot per day would
  also serialize the day's own batches.

``"StatisticsExportDay"`` maps a day to the run id that claimed it. A run claims its day first (a sensor in
reschedule mode: it waits, holding no worker slot, while another run that still is queued or running holds
the day, and takes the day over once that run has finished, successfully or not). Every task that writes
checks the claim before it writes anything, and the rows' transaction checks it again under ``FOR SHARE``,
so a takeover (``FOR UPDATE``) waits for rows being committed, and rows are never committed by a run that
lost the day. The claim stays with the last run that took it: clearing an older run of the day fails its
writing tasks with a message naming the run that now holds the day.

The rows' check alone would not cover the files: they are written before the rows, so a run marked failed by
hand while its batches still upload could put its bytes under a row the run that took the day over wrote
(never rewritten again: the content-hash skip trusts the row), or delete a Parquet part of the other run's
plan. So a batch holds the day's **fence** while it writes (:func:`day_fence`): a shared, session-level advisory
lock taken before it checks the claim and its first upload, released once its rows are committed; a takeover
needs that lock exclusively (``pg_try_advisory_xact_lock``), so it waits, in its sensor, for every write of
the old run still in flight. Chosen over the alternatives: write-then-verify leaves a window after the
verification; per-run keys promoted by the holder double every write; R2's conditional ``If-Match`` PUT needs
each object's ETag first (a HEAD per object) and still lets through an unchanged object's stale rewrite. A
session-level lock holds no transaction open across the uploads (an idle session, not idle in transaction),
and dies with a worker that dies, freeing the day.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from include.statistics_export.errors import DayWrittenByAnotherRun
from include.statistics_export.utc import naive_utc, now_ms

log = logging.getLogger(__name__)

_INSERT = """
INSERT INTO "StatisticsExportDay" (date, "runId", "claimedAt") VALUES (%(day)s, %(run_id)s, %(at)s)
ON CONFLICT (date) DO NOTHING
"""
_HOLDER = 'SELECT "runId" FROM "StatisticsExportDay" WHERE date = %(day)s FOR UPDATE'
_TAKE_OVER = 'UPDATE "StatisticsExportDay" SET "runId" = %(run_id)s, "claimedAt" = %(at)s WHERE date = %(day)s'
# FOR SHARE: held until the caller's transaction ends, so a takeover waits for rows being committed.
_CHECK = 'SELECT "runId" FROM "StatisticsExportDay" WHERE date = %(day)s FOR SHARE'
# The day's fence: an advisory lock keyed by this namespace and the day's ordinal (both int4).
FENCE_NAMESPACE = 0x53744578  # "StEx"
_FENCE_SHARED = "SELECT pg_advisory_lock_shared(%(namespace)s, %(day)s)"
_FENCE_RELEASE = "SELECT pg_advisory_unlock_shared(%(namespace)s, %(day)s)"
_FENCE_TAKE = "SELECT pg_try_advisory_xact_lock(%(namespace)s, %(day)s)"
_ERASURE_TAKE = "SELECT pg_advisory_lock(%(namespace)s, %(day)s)"
_ERASURE_RELEASE = "SELECT pg_advisory_unlock(%(namespace)s, %(day)s)"


@dataclass(frozen=True)
class DayWriter:
    """The day a run writes and the run's id: what every writing task checks against the day's claim."""

    day: date
    run_id: str


@dataclass(frozen=True)
class Claim:
    """The outcome of one attempt to claim a day: held by this run, or still by ``holder``."""

    held: bool
    holder: str
    # The finished run this run took the day over from, if any.
    taken_from: str | None = None


def claim_day(conn: Any, writer: DayWriter, is_active: Callable[[str], bool]) -> Claim:
    """Claim ``writer.day`` for ``writer.run_id`` unless a run that ``is_active`` holds it; commit either way."""
    params = {"day": writer.day, "run_id": writer.run_id, "at": naive_utc(now_ms())}
    with conn.cursor() as cur:
        cur.execute(_INSERT, params)
        cur.execute(_HOLDER, params)
        (holder,) = cur.fetchone()
        if holder == writer.run_id:
            conn.commit()
            return Claim(True, holder)
        if is_active(holder):
            conn.rollback()
            return Claim(False, holder)
        cur.execute(_FENCE_TAKE, _fence_key(writer))
        (fenced,) = cur.fetchone()
        if not fenced:  # the finished run's writes are still in flight (a run marked failed or success by hand)
            conn.rollback()
            log.warning("Day %s: run %s has ended but its writes are still in flight", writer.day, holder)
            return Claim(False, holder)
        cur.execute(_TAKE_OVER, params)
    conn.commit()
    log.info("Day %s: run %s takes the day over from the finished run %s", writer.day, writer.run_id, holder)
    return Claim(True, writer.run_id, taken_from=holder)


def check_writer(conn: Any, writer: DayWriter) -> None:
    """Raise DayWrittenByAnotherRun unless ``writer`` holds its day's claim (inside the caller's transaction)."""
    with conn.cursor() as cur:
        cur.execute(_CHECK, {"day": writer.day})
        row = cur.fetchone()
    if row is None or row[0] != writer.run_id:
        holder = f"run {row[0]!r} holds it now" if row else "no run has claimed it"
        raise DayWrittenByAnotherRun(
            f"Day {writer.day.isoformat()}: run {writer.run_id!r} may not write it, {holder}. Clear this run's "
            "claim_export_day task (with downstream) to wait for that run and take the day over"
        )


def _fence_key(writer: DayWriter) -> dict[str, int]:
    return _day_key(writer.day)


def _day_key(day: date) -> dict[str, int]:
    return {"namespace": FENCE_NAMESPACE, "day": day.toordinal()}


@contextlib.contextmanager
def day_fence(conn: Any, writer: DayWriter | None) -> Iterator[None]:
    """Hold the day's fence while writing files, Parquet parts and rows of ``writer.day``, and check first that
    the run holds the day: no other run can take the day over until the block ends (a no-op without a writer).

    The lock is the session's, not a transaction's: commit freely inside the block.
    """
    if writer is None:
        yield
        return
    key = _fence_key(writer)
    with conn.cursor() as cur:
        cur.execute(_FENCE_SHARED, key)
    conn.commit()
    try:
        check_writer(conn, writer)
        conn.commit()
        yield
    finally:
        # A connection the server dropped has released the lock with its session.
        with contextlib.suppress(Exception):
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute(_FENCE_RELEASE, key)
            conn.commit()


@contextlib.contextmanager
def day_erasure(conn: Any, day: date) -> Iterator[None]:
    """Hold the day's fence exclusively while erasing the day (a retention period's end): a batch writing it
    finishes first, and none writes it until the block ends. The lock is the session's: commit freely inside."""
    key = _day_key(day)
    with conn.cursor() as cur:
        cur.execute(_ERASURE_TAKE, key)
    conn.commit()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a connection the server dropped has released it with its session
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute(_ERASURE_RELEASE, key)
            conn.commit()
