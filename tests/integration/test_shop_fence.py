"""The shop's fence and the redaction's resumption, on a real PostgreSQL, a real S3 server and the Shopify sandbox:
a redacted shop is refused before any write, a redaction waits for an export of the shop in flight, a redaction
interrupted halfway is finished by the next run, and the day's shops leave out paused and redacted ones."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from export_hooks.r2 import R2Hook
from helpers import (
    DAY,
    NOON_ON_DAY,
    add_event,
    bucket_objects,
    current_settings,
    product,
    register_shop,
    run_shop,
    writer_for,
)
from include.statistics_export import redaction, tasks
from include.statistics_export.errors import ShopRedacted
from include.statistics_export.handoffs import ShopRef, ShopUnit
from include.statistics_export.keys import report_key
from include.statistics_export.report_schema import RunReport, ShopFigures, ShopSize
from include.statistics_export.shop_fence import shops_fence
from include.statistics_export.shops import active_shops

SHOP = "shop_fenced"


def shop_keys(s3, bucket: str, shop_id: str = SHOP) -> list[str]:
    return sorted(key for key in bucket_objects(s3, bucket) if shop_id in key)


def shop_rows(db, shop_id: str = SHOP) -> int:
    total = sum(
        db.execute(f'SELECT count(*) FROM "{table}" WHERE shop = %s', (shop_id,)).fetchone()[0]
        for table in ("StatisticsExport", "VariantDailyStatistics", "ProductImageBackup")
    )
    db.commit()
    return total


def record(db, shop_id: str = SHOP) -> None:
    db.execute(
        """INSERT INTO "StatisticsExportRedaction" ("shopId", "requestedAt", "runId") VALUES (%s, now(), 'test')""",
        (shop_id,),
    )
    db.commit()


@pytest.fixture
def exported(db, sandbox, connections, s3):
    register_shop(db, sandbox, SHOP, [product(n, variants=2, images=1) for n in (1, 2)])
    add_event(db, SHOP, "1001", "IMPRESSION", NOON_ON_DAY)
    run_shop(SHOP)
    assert shop_keys(s3, connections.bucket) and shop_rows(db)
    return connections


def test_a_redacted_shop_is_refused_before_anything_of_it_is_written(db, sandbox, connections, s3):
    register_shop(db, sandbox, SHOP, [product(n, variants=2, images=1) for n in (1, 2)])
    record(db)
    with pytest.raises(ShopRedacted, match=SHOP):
        run_shop(SHOP)
    assert shop_keys(s3, connections.bucket) == [] and shop_rows(db) == 0


def test_a_redaction_waits_for_an_export_of_the_shop_in_flight(db, exported, s3, app_db_url):
    with psycopg.connect(app_db_url) as in_flight:
        with shops_fence(in_flight, [SHOP]):  # an export of the shop between its first upload and its commit
            done = threading.Event()

            def redact() -> None:
                with psycopg.connect(app_db_url) as conn:
                    redaction.redact_shop(conn, R2Hook(), SHOP, "run_redact", force=True)
                done.set()

            worker = threading.Thread(target=redact, daemon=True)
            worker.start()
            # The redaction recorded itself, then waits on the shop's lock: nothing erased yet.
            deadline = time.monotonic() + 30
            while not db.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND NOT granted"
            ).fetchone()[0]:
                db.commit()
                assert time.monotonic() < deadline, "the redaction never waited for the shop's lock"
                done.wait(0.02)  # a poll of the lock table, not a guess at a duration
            db.commit()
            assert not done.is_set()
            assert db.execute('SELECT count(*) FROM "StatisticsExportRedaction"').fetchone() == (1,)
            db.commit()
            assert shop_keys(s3, exported.bucket) and shop_rows(db)
        worker.join(30)
    assert done.is_set()
    assert shop_keys(s3, exported.bucket) == [] and shop_rows(db) == 0


def test_a_redaction_interrupted_halfway_is_finished_by_the_next_run(db, exported, s3, app_db_url, monkeypatch):
    keys = shop_keys(s3, exported.bucket)

    def crash(*args, **kwargs):
        raise ConnectionError("the worker died here")

    # The first run erases the objects, then dies before the rows.
    with monkeypatch.context() as patch, psycopg.connect(app_db_url) as conn, pytest.raises(ConnectionError):
        patch.setattr(redaction, "erase_rows", crash)
        redaction.redact_shop(conn, R2Hook(), SHOP, "run_1", force=True)
    assert shop_keys(s3, exported.bucket) == [] and shop_rows(db) > 0

    with psycopg.connect(app_db_url) as conn:
        erased = redaction.redact_shop(conn, R2Hook(), SHOP, "run_2", force=True)
    assert (erased.files, erased.images) == (0, 0) and erased.export_rows == 4 and erased.image_rows == 2
    assert shop_rows(db) == 0
    ((run_id, counts, finished),) = db.execute(
        'SELECT "runId", counts, "finishedAt" FROM "StatisticsExportRedaction"'
    ).fetchall()
    db.commit()
    # Every run's erasures are counted: the first run's objects (it died after them), the second's rows.
    assert run_id == "run_2" and finished is not None and counts["exportRows"] == 4 and counts["imageRows"] == 2
    assert (
        (counts["files"], counts["images"], counts["parquet"])
        == (2 * 4, 2, 1)
        == (
            len([k for k in keys if k.startswith("statistic-exports/shop_")]),
            len([k for k in keys if "/products/" in k]),
            len([k for k in keys if "_parquet" in k]),
        )
    )


def test_the_days_shops_leave_out_paused_and_redacted_shops(db, events):
    record(db, "shop_b")
    assert [s.shop_id for s in active_shops(db)] == ["shop_a"]
    db.commit()
    db.execute('DELETE FROM "StatisticsExportRedaction"')
    db.commit()
    assert [s.shop_id for s in active_shops(db, paused=["shop_a"])] == ["shop_b"]
    assert [s.shop_id for s in active_shops(db, ["shop_a"], paused=["shop_a"])] == []
    assert [s.shop_id for s in active_shops(db, paused=["shop_other"])] == ["shop_a", "shop_b"]


def test_a_packed_unit_leaves_out_a_shop_redacted_since_it_was_listed_and_exports_the_others(
    db, sandbox, connections, s3
):
    for shop_id in ("shop_a", SHOP, "shop_c"):
        register_shop(db, sandbox, shop_id, [product(1, variants=2, images=1)])
    record(db)
    unit = ShopUnit(1, 1, [ShopRef(s, f"{s.replace('_', '-')}.myshopify.com") for s in ("shop_a", SHOP, "shop_c")])
    outcome = tasks.export_unit(unit, writer_for(), current_settings())
    # Not a failure of the unit: the redacted shop is simply not written, the others are.
    assert outcome.failures == {} and [r.shop_id for r in outcome.results] == ["shop_a", "shop_c"]
    assert [plan.shop_id for plan in outcome.plans] == ["shop_a", "shop_c"]
    assert shop_keys(s3, connections.bucket) == [] and shop_rows(db) == 0
    assert shop_keys(s3, connections.bucket, "shop_a") and shop_rows(db, "shop_c") > 0


def test_the_days_report_leaves_out_a_shop_redacted_while_the_day_ran(db, connections, s3):
    record(db, "shop_gone")
    report = RunReport(date=DAY.isoformat(), shops=2)
    report.per_shop = {"shop_kept": ShopFigures(variants=2, files=4, batches=1), "shop_gone": ShopFigures(variants=3)}
    report.shop_sizes = {"shop_kept": ShopSize(1, 2), "shop_gone": ShopSize(2, 3)}
    report.recount()

    figures = tasks.finish_day(report, writer_for())

    stored = bucket_objects(s3, connections.bucket)[report_key(DAY)]
    assert b"shop_gone" not in stored and json.loads(stored)["perShop"].keys() == {"shop_kept"}
    assert (figures.shops, figures.variants) == (1, 2)
    (sizes,) = db.execute('SELECT sizes FROM "StatisticsExportShopSizes" WHERE date = %s', (DAY,)).fetchone()
    db.commit()
    assert sizes == {"shop_kept": {"products": 1, "variants": 2}}
