"""A large shop's catalog read with one Shopify bulk operation: staged, batched, exported byte for byte
like the paginated path, with every way a bulk operation can end."""

from datetime import date

import pytest

from export_hooks.r2 import R2Hook
from export_hooks.shopify_bulk import BulkAccessDenied
from helpers import DAY, NOON_ON_DAY, add_event, bucket_objects, product, register_shop
from include.statistics_export import tasks
from include.statistics_export.errors import PermanentError
from include.statistics_export.handoffs import ShopRef
from include.statistics_export.keys import STAGING_ROOT
from include.statistics_export.settings import Settings
from include.statistics_export.staging import clean_staging

BULK = Settings(batch_variants=7, concurrency=4, bulk_threshold=1)
PAGES = Settings(batch_variants=7, concurrency=4, bulk_threshold=10_000)


def catalog():
    # Variant media, product media, a product with 12 variants (one batch of its own), and a product
    # created after the day.
    products = [product(n, variants=(n % 4) + 1, images=2, own_media={1: [n * 100 + 2]}) for n in range(1, 9)]
    products.append(product(9, variants=12, images=1))
    return products


def run_day(shop, settings, day=DAY):
    """Run one shop through the same functions the DAG's tasks call, polling like the sensor."""
    read = tasks.start_catalog_read(shop, settings)
    polls = 0
    while (ready := tasks.poll_catalog_read(read)) is None:
        polls += 1
        assert polls < 20, "the bulk operation never finished"
    plan = tasks.plan_shop_batches(ready, day, settings)
    results = [tasks.export_product_batch(batch, settings) for batch in plan.batches]
    return read, ready, plan, results, polls


def exports_of(objects):
    return {k: v for k, v in objects.items() if k.startswith("statistic-exports/shop_")}


@pytest.fixture
def shop(db, sandbox, connections):
    registered = register_shop(db, sandbox, "shop_big", catalog())
    add_event(db, "shop_big", "1001", "IMPRESSION", NOON_ON_DAY)
    add_event(db, "shop_big", "gid://shopify/ProductVariant/9012", "PURCHASE", NOON_ON_DAY, "12.50")
    return ShopRef("shop_big", registered.domain)


def test_bulk_read_exports_exactly_what_the_paginated_read_exports(shop, sandbox, s3, connections):
    sandbox.bulk_behaviour(shop.shop_domain, polls=3)
    read, ready, plan, results, polls = run_day(shop, BULK)
    assert (read.mode, plan.mode, polls) == ("bulk", "bulk", 2)
    assert plan.variants == sum(r.variants for r in results) == 8 + 12 + 12
    assert all(b.staged_key.startswith(f"{STAGING_ROOT}20261121/shop_big/") for b in plan.batches)
    assert all(b.product_ids == [] for b in plan.batches)  # XComs carry keys, not catalogs
    bulk_objects = bucket_objects(s3, connections.bucket)
    assert sandbox.stats(shop.shop_domain)["bulk_operations"] == 1

    # The paginated path on a fresh bucket prefix: same keys, same bytes.
    s3.delete_objects(Bucket=connections.bucket, Delete={"Objects": [{"Key": k} for k in exports_of(bulk_objects)]})
    with_db_cleared = tasks.app_db()
    with with_db_cleared as conn, conn.cursor() as cur:
        cur.execute('DELETE FROM "StatisticsExport"')
        conn.commit()
    read, _, plan, _, _ = run_day(shop, PAGES)
    assert (read.mode, plan.mode) == ("pages", "pages")
    assert exports_of(bucket_objects(s3, connections.bucket)) == exports_of(bulk_objects)
    assert len(exports_of(bulk_objects)) == 2 * 32


@pytest.mark.parametrize("outcome", ["FAILED", "TIMEOUT", "CANCELED", "EXPIRED"])
def test_a_bulk_operation_that_ends_badly_falls_back_to_pages_and_says_so(shop, sandbox, s3, connections, outcome):
    sandbox.bulk_behaviour(shop.shop_domain, outcome=outcome, partial_lines=3)
    _, ready, plan, results, _ = run_day(shop, BULK)
    assert plan.mode == "pages" and outcome in plan.note and "page by page" in plan.note
    assert sum(r.variants for r in results) == 32
    assert len(exports_of(bucket_objects(s3, connections.bucket))) == 64


def test_access_denied_fails_the_shop_with_a_clear_error(shop, sandbox):
    sandbox.bulk_behaviour(shop.shop_domain, outcome="ACCESS_DENIED")
    read = tasks.start_catalog_read(shop, BULK)
    with pytest.raises(BulkAccessDenied, match=r"shop-big\.myshopify\.com.*ACCESS_DENIED") as denied:
        while tasks.poll_catalog_read(read) is None:
            pass
    assert isinstance(denied.value, PermanentError)  # the DAG fails the shop at once, without retries


def test_a_bulk_query_already_running_falls_back_to_pages(shop, sandbox, s3, connections):
    sandbox.bulk_behaviour(shop.shop_domain, polls=50, max_concurrent=1)
    first = tasks.start_catalog_read(shop, BULK)
    assert first.mode == "bulk"
    _, _, plan, results, _ = run_day(shop, BULK)
    assert plan.mode == "pages" and "already running" in plan.note
    assert sum(r.variants for r in results) == 32


def test_staging_is_cleaned_after_the_run_with_week_old_leftovers(shop, sandbox, s3, connections):
    run_day(shop, BULK)
    old = f"{STAGING_ROOT}20261101/shop_big/batch-00001.jsonl.gz"
    recent = f"{STAGING_ROOT}20261120/shop_big/batch-00001.jsonl.gz"
    for key in (old, recent):
        s3.put_object(Bucket=connections.bucket, Key=key, Body=b"x")
    staged = [k for k in bucket_objects(s3, connections.bucket) if k.startswith(STAGING_ROOT + "20261121/")]
    assert staged

    deleted = clean_staging(R2Hook(), DAY, today=date(2026, 11, 22))
    left = [k for k in bucket_objects(s3, connections.bucket) if k.startswith(STAGING_ROOT)]
    assert deleted == len(staged) + 1 and left == [recent]
