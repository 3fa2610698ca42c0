"""A shop exported end to end on real components: PostgreSQL, the S3 server, the Shopify sandbox."""

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from helpers import DAY, add_event, bucket_objects, image_downloads, plan, product, register_shop, run_shop
from shopify_sandbox.world import SandboxMedia

NOON = datetime(2026, 11, 21, 12)


def catalog():
    return [
        # Variant 2 has its own media (102); variant 1 falls back to the product's media.
        product(1, variants=2, images=2, own_media={2: [102]}),
        # A video and an image still processing are skipped.
        product(
            2,
            variants=1,
            images=1,
            extra_media=[
                SandboxMedia(id=290, content_type="VIDEO", filename=None),
                SandboxMedia(id=291, filename=None),
            ],
        ),
        product(3, variants=3, images=0),
        # Created after the exported day: it did not exist yet.
        product(4, variants=1, images=1, created_at=datetime(2026, 11, 22, 0, 0, tzinfo=timezone.utc)),
    ]


def rows(db, table):
    with db.cursor() as cur:
        cur.execute(f'SELECT * FROM "{table}" ORDER BY 1')
        return cur.fetchall()


def test_every_variant_is_exported_with_its_metrics_images_and_rows(db, connections, sandbox, s3):
    register_shop(db, sandbox, "shop_a", catalog(), domain="www.shop-a.example")
    add_event(db, "shop_a", "1001", "IMPRESSION", NOON)
    add_event(db, "shop_a", "gid://shopify/ProductVariant/1001", "IMPRESSION", NOON)
    add_event(db, "shop_a", "1001", "ADD_TO_CART", NOON)
    add_event(db, "shop_a", "1001", "PURCHASE", NOON, Decimal("12.50"))
    add_event(db, "shop_a", "1001", "PURCHASE", NOON, None)

    results = run_shop("shop_a")
    assert sum(r.variants for r in results) == 6  # 2 + 1 + 3; product 4 is newer than the day
    assert all(r.graphql_cost > 0 for r in results)  # each batch read its products from Shopify
    # Every batch times its phases (wall, CPU) for the bench and the logs.
    phases = {"catalog", "metrics_sql", "images", "rendering", "rows", "uploads", "parquet"}
    assert all(set(r.phases) == phases for r in results)
    assert all(wall >= 0 and cpu >= 0 for r in results for wall, cpu in r.phases.values())
    assert sum(r.phases["uploads"][0] for r in results) > 0  # 12 files were written
    objects = bucket_objects(s3, connections.bucket)
    exports = sorted(k for k in objects if k.startswith("statistic-exports/shop_a/"))
    assert len(exports) == 12
    assert sorted(k for k in objects if k.startswith("statistic-exports/_parquet/")) == [
        f"statistic-exports/_parquet/shop=shop_a/date=2026-11-21/part-{n:05d}-of-{len(results):05d}.parquet"
        for n in range(1, len(results) + 1)
    ]
    assert "statistic-exports/shop_a/1/1001/20261121.csv" in exports
    assert not any("/4/" in k for k in exports)

    row = next(csv.DictReader(io.StringIO(objects["statistic-exports/shop_a/1/1001/20261121.csv"].decode())))
    assert (row["impressions"], row["addToCarts"], row["ctr"], row["orders"], row["revenue"]) == (
        "2",
        "1",
        "0.5000",
        "2",
        "12.50",
    )
    assert row["imageMediaIds"] == "gid://shopify/MediaImage/101|gid://shopify/MediaImage/102"
    assert row["r2ImageKeys"] == "shop_a/products/1/media/101.jpg|shop_a/products/1/media/102.jpg"

    own = json.loads(objects["statistic-exports/shop_a/1/1002/20261121.json"])
    assert own["shopDomain"] == "www.shop-a.example"
    assert [i["mediaId"] for i in own["variant"]["images"]] == ["gid://shopify/MediaImage/102"]
    assert own["variant"]["metrics"] == {"impressions": 0, "addToCarts": 0, "ctr": 0.0, "orders": 0, "revenue": 0.0}

    skipped = json.loads(objects["statistic-exports/shop_a/2/2001/20261121.json"])
    assert [i["mediaId"] for i in skipped["variant"]["images"]] == ["gid://shopify/MediaImage/201"]

    images = sorted(k for k in objects if "/media/" in k)
    assert images == [
        "shop_a/products/1/media/101.jpg",
        "shop_a/products/1/media/102.jpg",
        "shop_a/products/2/media/201.jpg",
    ]
    backups = {r[4]: r for r in rows(db, "ProductImageBackup")}
    assert backups["gid://shopify/MediaImage/102"][3] == "1002"  # the variant's own image
    assert backups["gid://shopify/MediaImage/101"][3] is None  # the product's image

    stats = {(r[2], r[3]): r for r in rows(db, "VariantDailyStatistics")}
    assert len(stats) == 6
    assert stats[("1", "1001")][5:9] == (2, 1, 2, Decimal("12.50"))
    assert stats[("1", "1001")][10] == 1.0  # conversionRate = orders / impressions
    exports_rows = rows(db, "StatisticsExport")
    assert {r[5] for r in exports_rows} == {k for k in exports if k.endswith(".csv")}


def test_rerun_converges_to_the_same_files_and_rows_without_downloading_again(db, connections, sandbox, s3):
    register_shop(db, sandbox, "shop_a", catalog())
    add_event(db, "shop_a", "1001", "IMPRESSION", NOON)
    run_shop("shop_a")
    first_downloads = image_downloads(sandbox, "shop_a")
    before_objects = bucket_objects(s3, connections.bucket)
    before_rows = {t: rows(db, t) for t in ("VariantDailyStatistics", "ProductImageBackup", "StatisticsExport")}
    before_modified = last_modified(s3, connections.bucket)

    results = run_shop("shop_a")
    assert image_downloads(sandbox, "shop_a") == first_downloads == 3
    assert bucket_objects(s3, connections.bucket) == before_objects
    # Identical files are not written again: same LastModified, and the rows (exportedAt too) untouched.
    assert sum(r.files_unchanged for r in results) == sum(r.files for r in results) == 12
    assert last_modified(s3, connections.bucket) == before_modified
    assert {t: rows(db, t) for t in before_rows} == before_rows


def test_a_changed_metric_rewrites_only_that_variants_files(db, connections, sandbox, s3):
    register_shop(db, sandbox, "shop_a", catalog())
    run_shop("shop_a")
    hashes = dict((r[3], r[12]) for r in rows(db, "StatisticsExport"))
    add_event(db, "shop_a", "3002", "ADD_TO_CART", NOON)

    result = run_shop("shop_a")[0]
    assert (result.files, result.files_unchanged) == (12, 10)
    assert result.file_totals.document() == {
        "variants": 6,
        "impressions": 0,
        "addToCarts": 1,
        "orders": 0,
        "revenue": "0.00",
    }
    changed = {r[3] for r in rows(db, "StatisticsExport") if hashes[r[3]] != r[12]}
    assert changed == {"3002"}
    row = next(
        csv.DictReader(
            io.StringIO(bucket_objects(s3, connections.bucket)["statistic-exports/shop_a/3/3002/20261121.csv"].decode())
        )
    )
    assert row["addToCarts"] == "1"


def last_modified(s3, bucket):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: (o["LastModified"], o["ETag"]) for page in pages for o in page.get("Contents", [])}


def test_failed_image_download_does_not_fail_the_export_and_is_retried_next_run(db, connections, sandbox, s3):
    shop = register_shop(db, sandbox, "shop_a", [product(1, variants=1, images=2)])
    sandbox.image_fault(shop.domain, 102, 404)
    result = run_shop("shop_a")[0]
    assert (result.images_backed_up, result.images_failed) == (1, 1)
    doc = json.loads(bucket_objects(s3, connections.bucket)["statistic-exports/shop_a/1/1001/20261121.json"])
    failed = doc["variant"]["images"][1]
    assert failed["mediaId"] == "gid://shopify/MediaImage/102" and failed["shopifyUrl"].endswith("img2.jpeg")
    assert (failed["r2Url"], failed["r2Key"], failed["backedUpAt"]) == (None, None, None)

    sandbox.image_fault(shop.domain, 102, None)
    downloads_before = image_downloads(sandbox, "shop_a")
    result = run_shop("shop_a")[0]
    assert (result.images_backed_up, result.images_reused) == (1, 1)
    assert image_downloads(sandbox, "shop_a") - downloads_before == 1
    assert "shop_a/products/1/media/102.jpg" in bucket_objects(s3, connections.bucket)


def test_product_deleted_between_planning_and_its_batch_is_skipped_and_reported(db, connections, sandbox):
    shop = register_shop(db, sandbox, "shop_a", [product(1), product(2)])
    batches = plan("shop_a")
    sandbox.delete_product(shop.domain, 2)
    from helpers import run_batch

    result = run_batch(batches[0])
    assert (result.variants, result.missing_products) == (1, ["2"])


def test_batches_split_by_variants_and_product_ids_filter(db, connections, sandbox):
    register_shop(db, sandbox, "shop_a", [product(n, variants=3) for n in range(1, 8)])
    batches = plan("shop_a", batch_variants=6)
    assert [b.product_ids for b in batches] == [["1", "2"], ["3", "4"], ["5", "6"], ["7"]]
    assert [(b.index, b.count) for b in batches] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [b.product_ids for b in plan("shop_a", product_ids=["6"])] == [["6"]]


def test_a_later_day_is_a_separate_file_set(db, connections, sandbox, s3):
    register_shop(db, sandbox, "shop_a", [product(1)])
    run_shop("shop_a")
    run_shop("shop_a", day=DAY + timedelta(days=1))
    keys = [k for k in bucket_objects(s3, connections.bucket) if k.endswith(".csv")]
    assert sorted(keys) == [
        "statistic-exports/shop_a/1/1001/20261121.csv",
        "statistic-exports/shop_a/1/1001/20261122.csv",
    ]
