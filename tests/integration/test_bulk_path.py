"""A large shop's catalog read with one Shopify bulk operation: staged, batched, exported byte for byte
like the paginated path, with every way a bulk operation can end."""

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from export_hooks.r2 import R2Hook
from export_hooks.shopify_bulk import BulkAccessDenied
from helpers import (
    DAY,
    NOON_ON_DAY,
    TEST_RUN,
    add_event,
    bucket_objects,
    current_settings,
    product,
    register_shop,
    writer_for,
)
from include.statistics_export import tasks
from include.statistics_export.errors import PermanentError, StagedCatalogMissing
from include.statistics_export.handoffs import ShopRef
from include.statistics_export.keys import STAGING_ROOT, run_staging_prefix
from include.statistics_export.settings import Settings
from include.statistics_export.staging import clean_staging


def bulk() -> Settings:
    """A task's settings with every shop read in bulk (the environment's, so the sandbox's images are allowed)."""
    return current_settings(batch_variants=7, bulk_threshold=1)


def pages() -> Settings:
    """A task's settings with every shop read page by page."""
    return current_settings(batch_variants=7, bulk_threshold=10_000)


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
    plan = tasks.plan_shop_batches(ready, writer_for(day), settings)
    results = [tasks.export_product_batch(batch, settings, TEST_RUN) for batch in plan.batches]
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
    read, ready, plan, results, polls = run_day(shop, bulk())
    assert (read.mode, plan.mode, polls) == ("bulk", "bulk", 2)
    assert plan.variants == sum(r.variants for r in results) == 8 + 12 + 12
    assert sum(r.images_failed for r in results) == 0 and sum(r.images_backed_up for r in results) > 0
    assert all(r.graphql_cost == 0.0 for r in results)  # the batches read their products from the bucket
    assert all(b.staged_key.startswith(f"{run_staging_prefix(DAY, TEST_RUN)}shop_big/") for b in plan.batches)
    assert all(b.product_ids == [] for b in plan.batches)  # XComs carry keys, not catalogs
    bulk_objects = bucket_objects(s3, connections.bucket)
    assert sandbox.stats(shop.shop_domain)["bulk_operations"] == 1

    # The paginated path on a fresh bucket prefix: same keys, same bytes.
    s3.delete_objects(Bucket=connections.bucket, Delete={"Objects": [{"Key": k} for k in exports_of(bulk_objects)]})
    with_db_cleared = tasks.app_db()
    with with_db_cleared as conn, conn.cursor() as cur:
        cur.execute('DELETE FROM "StatisticsExport"')
        conn.commit()
    read, _, plan, _, _ = run_day(shop, pages())
    assert (read.mode, plan.mode) == ("pages", "pages")
    assert exports_of(bucket_objects(s3, connections.bucket)) == exports_of(bulk_objects)
    assert len(exports_of(bulk_objects)) == 2 * 32


@pytest.mark.parametrize("outcome", ["FAILED", "TIMEOUT", "CANCELED", "EXPIRED"])
def test_a_bulk_operation_that_ends_badly_falls_back_to_pages_and_says_so(shop, sandbox, s3, connections, outcome):
    sandbox.bulk_behaviour(shop.shop_domain, outcome=outcome, partial_lines=3)
    _, ready, plan, results, _ = run_day(shop, bulk())
    assert plan.mode == "pages" and outcome in plan.note and "page by page" in plan.note
    assert sum(r.variants for r in results) == 32
    assert len(exports_of(bucket_objects(s3, connections.bucket))) == 64


def test_access_denied_fails_the_shop_with_a_clear_error(shop, sandbox):
    sandbox.bulk_behaviour(shop.shop_domain, outcome="ACCESS_DENIED")
    read = tasks.start_catalog_read(shop, bulk())
    with pytest.raises(BulkAccessDenied, match=r"shop-big\.myshopify\.com.*ACCESS_DENIED") as denied:
        while tasks.poll_catalog_read(read) is None:
            pass
    assert isinstance(denied.value, PermanentError)  # the DAG fails the shop at once, without retries


def test_a_bulk_query_already_running_falls_back_to_pages(shop, sandbox, s3, connections):
    sandbox.bulk_behaviour(shop.shop_domain, polls=50, max_concurrent=1)
    first = tasks.start_catalog_read(shop, bulk())
    assert first.mode == "bulk"
    _, _, plan, results, _ = run_day(shop, bulk())
    assert plan.mode == "pages" and "already running" in plan.note
    assert sum(r.variants for r in results) == 32


def test_a_run_deletes_only_its_own_staging_and_what_was_written_over_a_week_ago(shop, sandbox, s3, connections):
    run_day(shop, bulk())
    own = run_staging_prefix(DAY, TEST_RUN)
    staged = [k for k in bucket_objects(s3, connections.bucket) if k.startswith(own)]
    assert staged
    # Another run of the same day, and a backfill of a day a month back, both still going.
    other_run = f"{run_staging_prefix(DAY, 'manual__2026-11-22T09:00:00+00:00')}shop_big/batch-00001.jsonl.gz"
    old_day = (
        f"{run_staging_prefix(date(2026, 10, 21), 'backfill__2026-10-21T00:00:00+00:00')}shop_big/batch-00001.jsonl.gz"
    )
    for key in (other_run, old_day):
        s3.put_object(Bucket=connections.bucket, Key=key, Body=b"x")

    deleted = clean_staging(R2Hook(), DAY, TEST_RUN)
    left = sorted(k for k in bucket_objects(s3, connections.bucket) if k.startswith(STAGING_ROOT))
    assert deleted == len(staged) and left == sorted([other_run, old_day])

    # A week later, whatever was written before then goes with the next successful run, whichever day it held.
    later = datetime.now(timezone.utc) + timedelta(days=7, minutes=1)
    assert clean_staging(R2Hook(), date(2026, 11, 28), "scheduled__2026-11-28", now=later) == 2
    assert not [k for k in bucket_objects(s3, connections.bucket) if k.startswith(STAGING_ROOT)]


def test_a_batch_whose_staging_is_gone_stages_itself_again_from_the_bulk_result(shop, sandbox, s3, connections):
    _, _, plan, results, _ = run_day(shop, bulk())
    first = {k: v for k, v in bucket_objects(s3, connections.bucket).items() if k.startswith("statistic-exports/shop_")}
    batch = plan.batches[1]
    s3.delete_object(Bucket=connections.bucket, Key=batch.staged_key)

    # What clearing the batch alone does: it reads its products from the bulk result again, the same cut.
    again = tasks.export_product_batch(batch, bulk(), TEST_RUN)
    assert (again.variants, again.files_unchanged) == (results[1].variants, results[1].files)
    assert batch.staged_key in bucket_objects(s3, connections.bucket)
    assert exports_of(bucket_objects(s3, connections.bucket)) == exports_of(first)

    # Once the bulk result is gone too (Shopify keeps it a week), the message names the clear that works.
    s3.delete_object(Bucket=connections.bucket, Key=batch.staged_key)
    expired = replace(batch, bulk_result_url=f"{sandbox.base_url}/bulk/shop-big.myshopify.com/expired.jsonl")
    with pytest.raises(StagedCatalogMissing, match=r"Clear the shop's shop.start_catalog_read task .* with downstream"):
        tasks.export_product_batch(expired, bulk(), TEST_RUN)
