"""The day's fence covers files, not only rows; and no database transaction stays open across a batch's network I/O.

Both on a real PostgreSQL, a real S3 server over HTTP and the Shopify sandbox, through the task functions the DAG
runs (``tasks.export_product_batch``, ``tasks.claim_export_day``).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import threading

import psycopg
import pytest

from export_hooks.r2 import R2Hook
from helpers import DAY, NOON_ON_DAY, add_event, bucket_objects, current_settings, product, register_shop
from include.statistics_export import tasks
from include.statistics_export.day_claims import DayWriter
from include.statistics_export.handoffs import CatalogRead
from include.statistics_export.shops import shop_credentials

SHOP = "shop_fenced"
EXPORTS = f"statistic-exports/{SHOP}/"


def rows_by_key(db) -> dict[str, str]:
    """Each export row's CSV and JSON keys with its recorded content hash."""
    with db.cursor() as cur:
        cur.execute('SELECT "csvR2Key", "jsonR2Key", "contentHash" FROM "StatisticsExport" WHERE shop = %s', (SHOP,))
        rows = cur.fetchall()
    db.commit()
    return {csv_key: (json_key, content_hash) for csv_key, json_key, content_hash in rows}


def assert_every_file_matches_its_row(db, objects: dict[str, bytes]) -> None:
    rows = rows_by_key(db)
    assert rows
    for csv_key, (json_key, content_hash) in rows.items():
        assert hashlib.sha256(objects[csv_key] + b"\0" + objects[json_key]).hexdigest() == content_hash, csv_key


def test_a_run_that_lost_the_day_by_hand_mid_upload_never_leaves_its_bytes_under_the_new_holders_rows(
    db, sandbox, connections, s3, monkeypatch
):
    register_shop(db, sandbox, SHOP, [product(n, variants=2) for n in (1, 2)])
    add_event(db, SHOP, "1001", "IMPRESSION", NOON_ON_DAY)
    assert tasks.claim_export_day(DayWriter(DAY, "run_a"), lambda run: False).held
    (batch,) = _plan_as(db, "run_a")

    # Run A's uploads stop in flight at its first export file, until the test lets them go.
    in_flight, release = threading.Event(), threading.Event()
    real_put = R2Hook.put_object_async

    async def put_object_async(hook, key, body, content_type):
        if key.startswith(EXPORTS) and not release.is_set():
            in_flight.set()
            await asyncio.to_thread(release.wait, 30)
        await real_put(hook, key, body, content_type)

    monkeypatch.setattr(R2Hook, "put_object_async", put_object_async)
    outcome: dict = {}
    run_a = threading.Thread(target=lambda: outcome.update(a=_run(batch, "run_a")), daemon=True)
    run_a.start()
    assert in_flight.wait(30)

    # Run A is marked failed by hand (not active any more): run B may take the day, but not while A writes.
    add_event(db, SHOP, "1001", "ADD_TO_CART", NOON_ON_DAY)  # so B's bytes differ from A's
    assert not tasks.claim_export_day(DayWriter(DAY, "run_b"), lambda run: False).held
    release.set()
    run_a.join(60)
    assert not isinstance(outcome.get("a"), Exception), outcome
    assert tasks.claim_export_day(DayWriter(DAY, "run_b"), lambda run: False).held

    result_b = _run(batch, "run_b")
    assert not isinstance(result_b, Exception) and result_b.files_unchanged == 6  # all but 1001's: the same bytes
    objects = bucket_objects(s3, connections.bucket)
    assert_every_file_matches_its_row(db, objects)
    row = next(csv.DictReader(io.StringIO(objects[f"{EXPORTS}1/1001/20261121.csv"].decode())))
    assert row["addToCarts"] == "1"  # B's bytes, under B's row


def test_a_run_that_lost_the_day_writes_no_file_at_all(db, sandbox, connections, s3):
    register_shop(db, sandbox, SHOP, [product(1)])
    assert tasks.claim_export_day(DayWriter(DAY, "run_a"), lambda run: False).held
    (batch,) = _plan_as(db, "run_a")
    assert tasks.claim_export_day(DayWriter(DAY, "run_b"), lambda run: False).held

    with pytest.raises(Exception, match="run 'run_a' may not write it, run 'run_b' holds it now"):
        tasks.export_product_batch(batch, current_settings(), "run_a")

    assert not [key for key in bucket_objects(s3, connections.bucket) if key.startswith(EXPORTS)]


def test_no_transaction_stays_open_across_a_batchs_downloads_and_uploads(db, sandbox, connections, monkeypatch):
    register_shop(db, sandbox, SHOP, [product(n, variants=2, images=2) for n in (1, 2, 3)])
    add_event(db, SHOP, "1001", "PURCHASE", NOON_ON_DAY, "4.20")
    assert tasks.claim_export_day(DayWriter(DAY, "run_a"), lambda run: False).held
    (batch,) = _plan_as(db, "run_a")
    seen: list[tuple[str, int]] = []
    real_put = R2Hook.put_object_async

    async def put_object_async(hook, key, body, content_type):
        # At every object written (image copies, files, the Parquet part), the export's sessions of this
        # database: none may be inside a transaction (idle in transaction, or running a statement in one).
        with psycopg.connect(connections.app_db_url, autocommit=True, application_name="watcher") as watcher:
            open_transactions = watcher.execute(
                "SELECT state, query FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL AND backend_type = 'client backend' "
                "AND application_name NOT IN ('pytest-db', 'watcher')"
            ).fetchall()
        seen.append((key, open_transactions))
        await real_put(hook, key, body, content_type)

    with db.cursor() as cur:
        cur.execute("SET application_name = 'pytest-db'")
    db.commit()
    monkeypatch.setattr(R2Hook, "put_object_async", put_object_async)
    result = tasks.export_product_batch(batch, current_settings(), "run_a")

    assert result.variants == 6 and result.images_backed_up == 6
    assert len(seen) == 6 + 12 + 1  # images, files, the Parquet part
    assert [(key, open_transactions) for key, open_transactions in seen if open_transactions] == []


def _plan_as(db, run_id: str):
    """The shop's batches as the run ``run_id`` plans them (the day is already claimed for it)."""
    with tasks.app_db() as conn:
        domain = shop_credentials(conn, SHOP).shop_domain
    return tasks.plan_shop_batches(CatalogRead(SHOP, domain), DayWriter(DAY, run_id), current_settings()).batches


def _run(batch, run_id: str):
    try:
        return tasks.export_product_batch(batch, current_settings(), run_id)
    except Exception as exc:  # noqa: BLE001 - the test asserts on it
        return exc
