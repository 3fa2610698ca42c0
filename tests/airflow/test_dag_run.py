"""The whole DAG through `airflow dags test`: mapped shops and batches, a failing shop failing alone."""

import csv
import io
import json
import sqlite3
from contextlib import closing
from datetime import timedelta

import pytest

from helpers import DAY, NOON_ON_DAY, add_event, bucket_objects, product, register_fleet, register_shop

pytestmark = pytest.mark.airflow

REVOKED_TOKEN = "shpat_revoked_secret_7f3a9c"


@pytest.fixture
def world(db, sandbox):
    register_shop(db, sandbox, "shop_alpha", [product(n, variants=3, images=2) for n in range(1, 6)])
    register_shop(
        db, sandbox, "shop_boutique", [product(n, variants=2) for n in range(10, 13)], domain="www.boutique-example.com"
    )
    revoked = register_shop(db, sandbox, "shop_revoked", [product(20)], token=REVOKED_TOKEN)
    # Its only session is unlinked and its token revoked: link_sessions cannot link it, and the shop fails.
    nosession = register_shop(db, sandbox, "shop_nosession", [product(30)], linked=False)
    register_shop(db, sandbox, "shop_inactive", [product(40)], active=False)
    sandbox.revoke_token(revoked.domain)
    sandbox.revoke_token(nosession.domain)
    add_event(db, "shop_alpha", "gid://shopify/ProductVariant/1001", "IMPRESSION", NOON_ON_DAY)
    add_event(db, "shop_alpha", "1001", "PURCHASE", NOON_ON_DAY, "9.90")
    add_event(db, "shop_boutique", "10001", "ADD_TO_CART", NOON_ON_DAY)
    return revoked


def exported_shops(objects):
    return {key.split("/")[1] for key in objects if key.startswith("statistic-exports/shop_")}


def xcom_dump(airflow_home) -> str:
    """Every XCom value the runs in this Airflow home stored, as text."""
    with closing(sqlite3.connect(airflow_home / "airflow.db")) as conn:
        return "\n".join(str(row) for row in conn.execute("SELECT task_id, map_index, value FROM xcom"))


def test_full_run_exports_every_healthy_shop_and_fails_only_the_broken_ones(
    world, run_airflow, sandbox, s3, endpoints, db, airflow_home
):
    result = run_airflow(
        "dags",
        "test",
        "product_statistics_export",
        DAY.isoformat(),
        extra_env={"STATISTICS_EXPORT_BATCH_VARIANTS": "4"},
    )
    output = result.stdout + result.stderr
    objects = bucket_objects(s3, endpoints.bucket)

    # The healthy shops are complete: 5 x 3 + 3 x 2 variants, two files each.
    assert exported_shops(objects) == {"shop_alpha", "shop_boutique"}
    assert len([k for k in objects if k.startswith("statistic-exports/shop_")]) == 2 * (15 + 6)
    alpha = next(csv.DictReader(io.StringIO(objects["statistic-exports/shop_alpha/1/1001/20261121.csv"].decode())))
    assert (alpha["impressions"], alpha["orders"], alpha["revenue"]) == ("1", "1", "9.90")
    boutique = json.loads(objects["statistic-exports/shop_boutique/10/10001/20261121.json"])
    assert boutique["shopDomain"] == "www.boutique-example.com"
    assert boutique["variant"]["metrics"]["addToCarts"] == 1

    # Batches were mapped over both shops (alpha's 15 variants in batches of 4 variants -> 5 batches).
    assert output.count("export_product_batch map_index=") >= 1
    assert "shop_alpha" in output and "batch 5/5" in output

    # The broken shops failed alone, without retries, named in the run's failure; the run failed.
    assert "shop_revoked" in output and "shop_nosession" in output
    assert "2 shop(s) failed" in output
    assert result.returncode != 0
    assert sandbox.stats(world.domain)["requests"] == 1
    # No token reaches a log line or an XCom; XComs carry ids and descriptors only.
    xcoms = xcom_dump(airflow_home)
    assert "shop_alpha" in xcoms and '"product_ids"' in xcoms
    for token in (REVOKED_TOKEN, sandbox.shop("shop-alpha.myshopify.com").access_token):
        assert token not in output and token not in xcoms
    with db.cursor() as cur:
        cur.execute('SELECT DISTINCT shop FROM "StatisticsExport" ORDER BY 1')
        assert [r[0] for r in cur.fetchall()] == ["shop_alpha", "shop_boutique"]

    # The day's report is in the bucket even though the run failed: reasons, reconciliation, per shop figures.
    report = json.loads(objects["statistic-exports/_runs/20261121.json"])
    assert report["ok"] is False and report["variants"] == 21 and report["files"] == 42
    assert "rejected the access token" in report["failedShops"]["shop_revoked"]
    assert "no usable session is linked" in report["failedShops"]["shop_nosession"]
    assert report["reconciliation"]["shop_alpha"]["ok"] is True
    assert report["reconciliation"]["shop_alpha"]["files"]["orders"] == 1
    assert report["perShop"]["shop_alpha"]["batches"] == 5
    # The informative sections: the session that could not be linked, each listed shop's pixel health.
    assert [entry["shops"] for entry in report["sessionLinks"]["revoked"]] == [
        ["shop_nosession (shop-nosession.myshopify.com)"]
    ]
    assert report["sessionLinks"]["linked"] == []
    assert set(report["pixelHealth"]["perShop"]) == {"shop_alpha", "shop_boutique", "shop_revoked", "shop_nosession"}
    assert report["pixelHealth"]["perShop"]["shop_alpha"]["events"] == {"IMPRESSION": 1, "PURCHASE": 1}
    assert "Pixel health of 2026-11-21" in output and "Session links:" in output
    # The Parquet parts of the healthy shops (5 batches of alpha, 2 of boutique) hold their 21 rows.
    parts = sorted(k for k in objects if k.startswith("statistic-exports/_parquet/"))
    assert len(parts) == 5 + 2 and all(k.endswith(".parquet") for k in parts)


def unit_instances(airflow_home) -> list[tuple[int, str, str]]:
    """(map index, label, state) of every packed-unit task instance of the latest run in this Airflow home."""
    with closing(sqlite3.connect(airflow_home / "airflow.db")) as conn:
        return conn.execute(
            "SELECT map_index, rendered_map_index, state FROM task_instance WHERE task_id = 'export_shop_unit' "
            "AND run_id = (SELECT run_id FROM dag_run ORDER BY id DESC LIMIT 1) ORDER BY map_index"
        ).fetchall()


def test_packed_units_export_every_healthy_shop_and_name_the_failed_ones(
    world, run_airflow, sandbox, s3, endpoints, airflow_home
):
    # Four active shops packed two by two in id order: alpha with boutique, nosession with revoked.
    packing = {"STATISTICS_EXPORT_SHOP_TASKS_UP_TO": "0", "STATISTICS_EXPORT_UNIT_SHOPS": "2"}
    result = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat(), extra_env=packing)
    output = result.stdout + result.stderr
    objects = bucket_objects(s3, endpoints.bucket)

    assert exported_shops(objects) == {"shop_alpha", "shop_boutique"}, output[-3000:]
    assert len([k for k in objects if k.startswith("statistic-exports/shop_")]) == 2 * (15 + 6)
    assert result.returncode != 0 and "2 shop(s) failed" in output
    # Each unit ran as one task instance, ended failed, and its label names its failed shop.
    assert unit_instances(airflow_home) == [
        (0, "2 shops · unit 1/2", "success"),
        (1, "2 shops · unit 2/2 · failed: shop-nosession.myshopify.com, shop-revoked.myshopify.com", "failed"),
    ]
    report = json.loads(objects["statistic-exports/_runs/20261121.json"])
    assert "rejected the access token" in report["failedShops"]["shop_revoked"]
    assert "no usable session is linked" in report["failedShops"]["shop_nosession"]
    assert report["perShop"]["shop_alpha"]["catalogRead"] == "packed"
    assert report["reconciliation"]["shop_alpha"]["ok"] is True and report["variants"] == 21
    # A revoked token costs one request and no retry, inside the unit as alone.
    assert sandbox.stats(world.domain)["requests"] == 1


def test_a_shop_found_large_in_its_unit_is_exported_alone_and_sized_for_the_next_day(
    world, run_airflow, s3, endpoints, airflow_home, db, connections
):
    # No report yet, so every shop is packed; alpha's first page shows 5 products, at the bulk threshold.
    packing = {"STATISTICS_EXPORT_SHOP_TASKS_UP_TO": "0", "STATISTICS_EXPORT_BULK_THRESHOLD": "5"}
    result = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat(), extra_env=packing)
    output = result.stdout + result.stderr
    objects = bucket_objects(s3, endpoints.bucket)

    assert exported_shops(objects) == {"shop_alpha", "shop_boutique"}, output[-3000:]
    assert len([k for k in objects if k.startswith("statistic-exports/shop_alpha/")]) == 2 * 15
    with closing(sqlite3.connect(airflow_home / "airflow.db")) as conn:
        moved = conn.execute(
            "SELECT rendered_map_index, state FROM task_instance WHERE task_id = 'export_moved_shop' "
            "AND run_id = (SELECT run_id FROM dag_run ORDER BY id DESC LIMIT 1)"
        ).fetchall()
    assert moved == [("shop-alpha.myshopify.com", "success")]
    report = json.loads(objects["statistic-exports/_runs/20261121.json"])
    assert "exported alone" in report["perShop"]["shop_alpha"]["catalogNote"]
    assert report["reconciliation"]["shop_alpha"]["ok"] is True
    # The next day reads these sizes: alpha is alone then; the two failed shops were never measured.
    sizes = {"shop_alpha": {"products": 5, "variants": 15}, "shop_boutique": {"products": 3, "variants": 6}}
    assert report["shopSizes"] == sizes
    # ... kept in the sizes table by the report task, where the next day's plan reads them without the bucket.
    (row,) = db.execute('SELECT sizes FROM "StatisticsExportShopSizes" WHERE date = %s', (DAY,)).fetchall()
    assert row[0] == sizes
    from include.statistics_export import tasks
    from include.statistics_export.report_schema import ShopSize

    assert tasks.previous_sizes(DAY + timedelta(days=1)) == {
        "shop_alpha": ShopSize(5, 15),
        "shop_boutique": ShopSize(3, 6),
    }


def test_a_fleet_over_max_map_length_exports_every_variant(db, sandbox, run_airflow, s3, endpoints, airflow_home):
    shop_ids = register_fleet(db, sandbox, 1_100)
    result = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    objects = bucket_objects(s3, endpoints.bucket)
    variants = 1_100
    assert len([k for k in objects if k.startswith("statistic-exports/fleet_")]) == 2 * variants
    report = json.loads(objects["statistic-exports/_runs/20261121.json"])
    assert (report["ok"], report["shops"], report["variants"]) == (True, 1_100, variants)
    assert set(report["reconciliation"]) == set(shop_ids)
    # 1,100 shops in 6 task instances of at most 200 shops, one Shopify request each.
    assert len(unit_instances(airflow_home)) == 6
    assert {sandbox.stats(f"{s.replace('_', '-')}.myshopify.com")["requests"] for s in shop_ids} == {1}


def test_a_large_shop_is_read_with_a_bulk_operation_and_its_staging_is_cleaned(db, sandbox, run_airflow, s3, endpoints):
    shop = register_shop(db, sandbox, "shop_big", [product(n, variants=n % 3 + 1) for n in range(1, 13)])
    add_event(db, "shop_big", "1002", "ADD_TO_CART", NOON_ON_DAY)
    sandbox.bulk_behaviour(shop.domain, polls=3)
    result = run_airflow(
        "dags",
        "test",
        "product_statistics_export",
        DAY.isoformat(),
        extra_env={
            "STATISTICS_EXPORT_BULK_THRESHOLD": "10",
            "STATISTICS_EXPORT_BULK_POLL_SECONDS": "0.2",
            "STATISTICS_EXPORT_BATCH_VARIANTS": "8",
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    objects = bucket_objects(s3, endpoints.bucket)
    assert len([k for k in objects if k.startswith("statistic-exports/shop_big/")]) == 2 * 24
    report = json.loads(objects["statistic-exports/_runs/20261121.json"])
    assert report["perShop"]["shop_big"]["catalogRead"] == "bulk" and report["ok"] is True
    assert report["perShop"]["shop_big"]["batches"] == 4  # 8-variant batches of 2,3,1,2 | 3,1,2 | 3,1,2 | 3,1
    # The sensor gave its slot back between polls, and the staged catalog is gone after the successful day.
    assert sandbox.stats(shop.domain)["bulk_operations"] == 1
    assert output.count("up_for_reschedule") + output.count("UP_FOR_RESCHEDULE") >= 1
    assert not [k for k in objects if k.startswith("statistic-exports/_staging/")]


def test_manual_run_with_params_exports_one_product_of_one_shop(world, run_airflow, s3, endpoints, sandbox):
    sandbox.set_token(world.domain, REVOKED_TOKEN)
    conf = json.dumps({"date": DAY.isoformat(), "shop_ids": ["shop_revoked", "shop_alpha"], "product_ids": ["20", "2"]})
    result = run_airflow("dags", "test", "product_statistics_export", "--conf", conf)
    objects = bucket_objects(s3, endpoints.bucket)
    keys = sorted(k for k in objects if k.endswith(".csv"))
    assert keys == [
        "statistic-exports/shop_alpha/2/2001/20261121.csv",
        "statistic-exports/shop_alpha/2/2002/20261121.csv",
        "statistic-exports/shop_alpha/2/2003/20261121.csv",
        "statistic-exports/shop_revoked/20/20001/20261121.csv",
    ], result.stdout[-3000:]
    # Some products of two shops are not the day: with no whole run of it before, the day is not reported ok,
    # and the shops no run of the day covered are named.
    assert result.returncode != 0, result.stdout[-3000:]
    report = json.loads(objects["statistic-exports/_runs/20261121.json"])
    assert report["ok"] is False
    assert {shop for shop, why in report["failedShops"].items() if "not exported for 2026-11-21" in why} == {
        "shop_boutique",
        "shop_nosession",
    }
    # Neither are the two shops themselves whole: some of their products are not their day.
    assert {shop for shop, why in report["failedShops"].items() if "only some of its products" in why} == {
        "shop_alpha",
        "shop_revoked",
    }
    assert report["shopSizes"] == {} and report["perShop"] == {}  # nothing measured from some products


def test_a_shop_retried_with_shop_ids_makes_the_day_whole_as_one_clean_run_would(
    db, sandbox, run_airflow, s3, endpoints, airflow_home
):
    register_shop(db, sandbox, "shop_alpha", [product(n, variants=2, images=1) for n in (1, 2)])
    beta = register_shop(db, sandbox, "shop_beta", [product(5, variants=3)], token="shpat_beta_revoked")
    add_event(db, "shop_alpha", "1001", "PURCHASE", NOON_ON_DAY, "9.90")
    add_event(db, "shop_beta", "5002", "IMPRESSION", NOON_ON_DAY)
    add_event(db, "shop_beta", "not-a-variant", "IMPRESSION", NOON_ON_DAY)  # a rejected event, counted per shop
    sandbox.revoke_token(beta.domain)

    first = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat())
    assert first.returncode != 0
    sandbox.set_token(beta.domain, beta.access_token)  # the cause is fixed: only beta is retried
    retry = run_airflow(
        "dags",
        "test",
        "product_statistics_export",
        "--conf",
        json.dumps({"date": DAY.isoformat(), "shop_ids": ["shop_beta"]}),
    )
    assert retry.returncode == 0, (retry.stdout + retry.stderr)[-3000:]
    merged = json.loads(bucket_objects(s3, endpoints.bucket)["statistic-exports/_runs/20261121.json"])
    with closing(sqlite3.connect(airflow_home / "airflow.db")) as conn:
        (extra,) = [row[0] for row in conn.execute("SELECT extra FROM asset_event") if endpoints.bucket in row[0]]

    clean = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat())  # the day run once, whole
    assert clean.returncode == 0
    whole = json.loads(bucket_objects(s3, endpoints.bucket)["statistic-exports/_runs/20261121.json"])

    assert merged["ok"] is True and merged["failedShops"] == {} and merged["failedTasks"] == {}
    figures = ("shops", "products", "variants", "files", "skippedProducts", "rejectedEvents", "ok")
    assert {key: merged[key] for key in figures} == {key: whole[key] for key in figures}
    assert merged["shops"] == 2 and merged["variants"] == 7 and merged["rejectedEvents"] == 1
    assert set(merged["perShop"]) == set(merged["reconciliation"]) == {"shop_alpha", "shop_beta"}
    assert {shop: merged["perShop"][shop]["variants"] for shop in merged["perShop"]} == {
        shop: whole["perShop"][shop]["variants"] for shop in whole["perShop"]
    }
    assert set(merged["pixelHealth"]["perShop"]) == {"shop_alpha", "shop_beta"}
    assert merged["shopSizes"] == whole["shopSizes"]
    # The asset event of the retry carries the whole day's figures, not the retried shop's.
    assert (json.loads(extra)["shops"], json.loads(extra)["variants"]) == (2, 7)


def test_a_day_without_active_shops_is_an_empty_successful_run(db, run_airflow):
    result = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Export of 2026-11-21: 0 shop(s)" in output


def test_a_fully_exported_day_emits_the_exports_asset_event_with_its_figures(
    db, sandbox, run_airflow, endpoints, airflow_home
):
    register_shop(db, sandbox, "shop_asset", [product(1, variants=2)])
    result = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat())
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]

    with closing(sqlite3.connect(airflow_home / "airflow.db")) as conn:
        events = conn.execute(
            "SELECT a.name, a.uri, e.extra, e.source_task_id FROM asset_event e JOIN asset a ON a.id = e.asset_id"
        ).fetchall()
    ours = [(name, uri, json.loads(extra), task) for name, uri, extra, task in events if endpoints.bucket in extra]
    assert ours == [
        (
            "statistic-exports",
            "r2://statistic-exports/",
            {
                "day": DAY.isoformat(),
                "bucket": endpoints.bucket,
                "prefix": "statistic-exports/",
                "shops": 1,
                "variants": 2,
                "files": 4,
                "failedShops": [],
            },
            "clean_staging",
        )
    ]
