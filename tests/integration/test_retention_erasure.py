"""The retention period's erasure on a real PostgreSQL and S3 server: it waits for a batch writing the day, and a
run interrupted halfway is finished by the next one. (Through Airflow: tests/airflow/test_retention.py.)"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest

from export_hooks.r2 import R2Hook
from helpers import DAY, NOON_ON_DAY, add_event, bucket_objects, product, register_shop, run_shop, writer_for
from include.statistics_export import retention
from include.statistics_export.day_claims import day_fence
from include.statistics_export.retention import first_kept_day

SHOP = "shop_kept"
NEXT = DAY + timedelta(days=1)


def day_keys(s3, bucket: str) -> list[str]:
    """The keys of DAY's own files and Parquet part."""
    return sorted(
        key
        for key in bucket_objects(s3, bucket)
        if key.endswith((f"/{DAY:%Y%m%d}.csv", f"/{DAY:%Y%m%d}.json")) or f"/date={DAY.isoformat()}/" in key
    )


def day_rows(db) -> int:
    total = sum(
        db.execute(f'SELECT count(*) FROM "{table}" WHERE date = %s', (DAY,)).fetchone()[0]
        for table in ("StatisticsExport", "VariantDailyStatistics")
    )
    db.commit()
    return total


@pytest.fixture
def exported(db, sandbox, connections, s3):
    register_shop(db, sandbox, SHOP, [product(n, variants=2, images=1) for n in (1, 2)])
    add_event(db, SHOP, "1001", "IMPRESSION", NOON_ON_DAY)
    run_shop(SHOP)
    assert len(day_keys(s3, connections.bucket)) == 2 * 4 + 1 and day_rows(db) == 2 * 4
    return connections


def test_the_first_kept_day_ends_the_period_with_the_runs_day():
    assert first_kept_day(NEXT, 1) == NEXT and first_kept_day(NEXT, 30) == NEXT - timedelta(days=29)
    with pytest.raises(ValueError, match="at least 1 day, got 0"):
        first_kept_day(NEXT, 0)


def test_an_expiry_waits_for_a_batch_writing_the_day(db, exported, s3, app_db_url):
    with psycopg.connect(app_db_url) as in_flight:
        with day_fence(in_flight, writer_for(DAY)):  # a backfill's batch of the day, between upload and commit
            done = threading.Event()

            def expire() -> None:
                with psycopg.connect(app_db_url) as conn:
                    retention.expire_days(conn, R2Hook(), NEXT)
                done.set()

            worker = threading.Thread(target=expire, daemon=True)
            worker.start()
            deadline = time.monotonic() + 30
            while not db.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND NOT granted"
            ).fetchone()[0]:
                db.commit()
                assert time.monotonic() < deadline, "the expiry never waited for the day's fence"
                done.wait(0.02)  # a poll of the lock table, not a guess at a duration
            db.commit()
            assert not done.is_set() and day_keys(s3, exported.bucket) and day_rows(db)
        worker.join(30)
    assert done.is_set()
    assert day_keys(s3, exported.bucket) == [] and day_rows(db) == 0


def test_an_expiry_interrupted_halfway_is_finished_by_the_next_run(db, exported, s3, app_db_url, monkeypatch):
    with psycopg.connect(app_db_url) as conn:
        with monkeypatch.context() as patched:
            # The objects are gone, then the session is cut before the rows go (as when a worker dies): the next
            # run finds the day by its rows.
            patched.setattr(retention, "_DELETE_EXPORT_ROWS", "SELECT pg_terminate_backend(pg_backend_pid())")
            with pytest.raises(psycopg.OperationalError):
                retention.expire_days(conn, R2Hook(), NEXT)
    assert day_keys(s3, exported.bucket) == [] and day_rows(db) == 2 * 4

    with psycopg.connect(app_db_url) as conn:
        erased = retention.expire_days(conn, R2Hook(), NEXT)
    assert (erased.files, erased.parquet, erased.export_rows, erased.statistics_rows) == (8, 0, 4, 4)
    assert day_rows(db) == 0
    with psycopg.connect(app_db_url) as conn:
        assert retention.expire_days(conn, R2Hook(), NEXT).total == 0
