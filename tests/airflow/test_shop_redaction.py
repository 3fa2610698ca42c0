"""Shopify's shop/redact through Airflow: a day exported for three shops, then `shop_data_redaction` erases one
shop's objects, rows and report entries (as the redaction's least-privileged role), refuses an active shop, runs
again to no effect, and the next export neither lists the redacted shop nor a paused one."""

import json
import os
import signal
import time
from dataclasses import replace

import psycopg
import pytest
from test_least_privilege import login_role

from helpers import DAY, NOON_ON_DAY, add_event, product, register_shop
from include.statistics_export.page.run_reports import parse_report
from local_stack.services import connection_env

pytestmark = pytest.mark.airflow

GONE = "shop_gone"
GONE_DOMAIN = "shop-gone.myshopify.com"
# A staged catalog a failed run left behind, for the redacted shop and for another one.
STAGED = "statistic-exports/_staging/20261121/manual-run-0123456789ab/{shop}/batch-00001.jsonl.gz"
OUTPUT_TABLES = ("StatisticsExport", "VariantDailyStatistics", "ProductImageBackup")


@pytest.fixture
def world(db, sandbox):
    register_shop(db, sandbox, "shop_alpha", [product(n, variants=3, images=2) for n in range(1, 4)])
    register_shop(db, sandbox, "shop_beta", [product(n, variants=2, images=1) for n in range(10, 12)])
    register_shop(db, sandbox, GONE, [product(n, variants=2, images=2) for n in range(20, 23)])
    add_event(db, "shop_alpha", "1001", "PURCHASE", NOON_ON_DAY, "9.90")
    add_event(db, GONE, "20001", "IMPRESSION", NOON_ON_DAY)
    add_event(db, GONE, "20001", "PURCHASE", NOON_ON_DAY, "5.00")


def listing(s3, bucket: str) -> dict[str, object]:
    """Every key of the bucket with its LastModified."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"]: item["LastModified"] for page in pages for item in page.get("Contents", [])}


def read_json(s3, bucket: str, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def rows_by_shop(db) -> dict[str, list[tuple]]:
    """Every row of the three output tables, by shop."""
    found: dict[str, list[tuple]] = {}
    with db.cursor() as cur:
        for table in OUTPUT_TABLES:
            cur.execute(f'SELECT shop, * FROM "{table}" ORDER BY id')
            for row in cur.fetchall():
                found.setdefault(row[0], []).append((table, *row[1:]))
    db.commit()
    return found


def sizes_rows(db) -> list[dict]:
    rows = [row[0] for row in db.execute('SELECT sizes FROM "StatisticsExportShopSizes" ORDER BY date').fetchall()]
    db.commit()
    return rows


def test_a_redaction_erases_one_shop_and_nothing_else_and_the_export_never_writes_it_again(
    world, db, run_airflow, s3, endpoints, pg_server_url, app_db_url
):
    exported = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat())
    assert exported.returncode == 0, (exported.stdout + exported.stderr)[-3000:]
    for shop in (GONE, "shop_alpha"):
        s3.put_object(Bucket=endpoints.bucket, Key=STAGED.format(shop=shop), Body=b"staged")
    before = listing(s3, endpoints.bucket)
    gone_keys = {key for key in before if GONE in key}
    # Its files, images, Parquet partition and staged catalog are there to erase.
    assert {k.split("/")[0] + "/" + k.split("/")[1] for k in gone_keys} >= {
        f"statistic-exports/{GONE}",
        f"{GONE}/products",
        "statistic-exports/_parquet",
        "statistic-exports/_staging",
    }
    rows_before = rows_by_shop(db)
    assert set(rows_before) == {"shop_alpha", "shop_beta", GONE}
    report_key = f"statistic-exports/_runs/{DAY:%Y%m%d}.json"
    assert GONE in read_json(s3, endpoints.bucket, report_key)["perShop"]

    with login_role(pg_server_url, app_db_url, granted=True, variable="redaction_role") as (_, role_url):
        as_role = {
            "AIRFLOW_CONN_APP_DB_REDACTION": connection_env(replace(endpoints, app_db_url=role_url))[
                "AIRFLOW_CONN_APP_DB"
            ]
        }

        def redact(conf: dict):
            result = run_airflow("dags", "test", "shop_data_redaction", "-c", json.dumps(conf), extra_env=as_role)
            return result.returncode, result.stdout + result.stderr

        # Still active: refused, naming the shop; nothing recorded, nothing erased.
        code, output = redact({"shop_id": GONE})
        assert code != 0 and f"Shop {GONE} is still active" in output
        assert listing(s3, endpoints.bucket) == before and rows_by_shop(db) == rows_before
        assert db.execute('SELECT count(*) FROM "StatisticsExportRedaction"').fetchone() == (0,)
        db.commit()

        db.execute('UPDATE "ShopCredential" SET "isActive" = false WHERE id = %s', (GONE,))
        db.commit()
        code, output = redact({"shop_id": GONE, "force": False})
        assert code == 0, output[-3000:]
        assert "permission denied" not in output

        after = listing(s3, endpoints.bucket)
        assert not [key for key in after if GONE in key]
        # Every other object is untouched (the day's report is rewritten: it named the shop).
        assert {k: v for k, v in after.items() if k != report_key} == {
            k: v for k, v in before.items() if k not in gone_keys and k != report_key
        }
        rows_after = rows_by_shop(db)
        assert GONE not in rows_after and rows_after == {k: v for k, v in rows_before.items() if k != GONE}
        assert all(GONE not in sizes for sizes in sizes_rows(db))

        report = read_json(s3, endpoints.bucket, report_key)
        text = json.dumps(report)
        assert GONE not in text and GONE_DOMAIN not in text
        assert report["ok"] is True and report["shops"] == 2 == len(report["perShop"])
        for total in ("products", "variants", "files", "filesUnchanged", "imagesBackedUp"):
            assert report[total] == sum(figures[total] for figures in report["perShop"].values()), total
        assert report["variants"] == 3 * 3 + 2 * 2
        assert report["files"] == len([k for k in after if k.startswith("statistic-exports/shop_")])
        # The Statistics page reads it as it did (the alerts read it through the same schema).
        day = parse_report(DAY, report)
        assert (day.ok, day.shops, [s.shop_id for s in day.shop_days]) == (True, 2, ["shop_alpha", "shop_beta"])

        # The record: when, which run, what was erased by kind; no domain.
        ((shop_id, requested, finished, run_id, counts),) = db.execute(
            'SELECT "shopId", "requestedAt", "finishedAt", "runId", counts FROM "StatisticsExportRedaction"'
        ).fetchall()
        db.commit()
        assert (shop_id, finished >= requested, run_id.startswith("manual__")) == (GONE, True, True)
        assert counts["files"] == 2 * 3 * 2 and counts["images"] == 3 * 2 and counts["staged"] == 1
        assert counts["parquet"] >= 1 and counts["reports"] == 1 and counts["sizeDays"] == 1
        assert counts["exportRows"] == counts["statisticsRows"] == 6 and counts["imageRows"] == 6
        assert GONE_DOMAIN not in json.dumps(counts)

        # Again: it succeeds, says nothing was left, and changes nothing.
        code, output = redact({"shop_id": GONE})
        assert code == 0, output[-3000:]
        assert f"Shop {GONE}: nothing left to erase" in output
        assert listing(s3, endpoints.bucket) == after and rows_by_shop(db) == rows_after

        # An active shop without force is refused, and nothing of it is erased.
        code, output = redact({"shop_id": "shop_beta"})
        assert code != 0 and "Shop shop_beta is still active" in output
        assert listing(s3, endpoints.bucket) == after and rows_by_shop(db) == rows_after

    # The merchant reinstalls: the redacted shop stays out of the export; a paused shop is skipped and named.
    db.execute('UPDATE "ShopCredential" SET "isActive" = true WHERE id = %s', (GONE,))
    db.commit()
    again = run_airflow(
        "dags",
        "test",
        "product_statistics_export",
        DAY.isoformat(),
        extra_env={"STATISTICS_EXPORT_PAUSED_SHOPS": "shop_beta"},
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    final = listing(s3, endpoints.bucket)
    assert not [key for key in final if GONE in key]
    assert {k: v for k, v in final.items() if "shop_beta" in k} == {k: v for k, v in after.items() if "shop_beta" in k}
    report = read_json(s3, endpoints.bucket, report_key)
    assert report["pausedShops"] == ["shop_beta"] and set(report["perShop"]) == {"shop_alpha"}
    assert report["ok"] is True and GONE not in json.dumps(report)
    assert GONE not in rows_by_shop(db)


def test_a_redaction_killed_halfway_is_finished_by_the_next_run(
    world, db, run_airflow, start_airflow, s3, endpoints, pg_server_url, app_db_url
):
    exported = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat())
    assert exported.returncode == 0, (exported.stdout + exported.stderr)[-3000:]
    db.execute('UPDATE "ShopCredential" SET "isActive" = false WHERE id = %s', (GONE,))
    db.commit()
    rows_before = rows_by_shop(db)

    with login_role(pg_server_url, app_db_url, granted=True, variable="redaction_role") as (_, role_url):
        as_role = {
            "AIRFLOW_CONN_APP_DB_REDACTION": connection_env(replace(endpoints, app_db_url=role_url))[
                "AIRFLOW_CONN_APP_DB"
            ]
        }
        conf = json.dumps({"shop_id": GONE})
        # Another session holds a row of the shop: the redaction erases the objects, then waits to delete the rows.
        with psycopg.connect(app_db_url) as holder:
            holder.execute('SELECT 1 FROM "StatisticsExport" WHERE shop = %s LIMIT 1 FOR UPDATE', (GONE,))
            redaction = start_airflow("dags", "test", "shop_data_redaction", "-c", conf, extra_env=as_role)
            try:
                deadline = time.monotonic() + 300
                while not (
                    not [key for key in listing(s3, endpoints.bucket) if GONE in key]
                    and db.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]
                ):
                    db.commit()
                    assert redaction.poll() is None, redaction.stdout.read()[-3000:]
                    assert time.monotonic() < deadline, "the redaction never reached its rows"
                    time.sleep(0.2)  # a poll of the bucket and the lock table, not a guess at a duration
                db.commit()
            finally:
                os.killpg(redaction.pid, signal.SIGKILL)  # the worker dies: no cleanup of any kind runs
                redaction.wait(30)
                redaction.stdout.close()
            holder.rollback()

        # Killed halfway: its objects are gone, its rows are not, and the record is not finished.
        assert rows_by_shop(db).get(GONE) == rows_before[GONE]
        assert db.execute('SELECT "finishedAt" FROM "StatisticsExportRedaction"').fetchone() == (None,)
        db.commit()

        again = run_airflow("dags", "test", "shop_data_redaction", "-c", conf, extra_env=as_role)
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        assert not [key for key in listing(s3, endpoints.bucket) if GONE in key]
        assert rows_by_shop(db) == {shop: rows for shop, rows in rows_before.items() if shop != GONE}
        ((finished, counts),) = db.execute('SELECT "finishedAt", counts FROM "StatisticsExportRedaction"').fetchall()
        db.commit()
        # Every kind counted once over both runs: the objects by the killed one, the rows by the second.
        assert finished is not None and counts["files"] == 2 * 3 * 2 and counts["exportRows"] == 6
