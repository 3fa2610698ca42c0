"""The Parquet copy of each shop's day, on the local S3 server: typed rows equal to the CSVs, read back
through pyarrow's S3 filesystem with partition filters over a month of the demo world, identical bytes not
rewritten, a re-planned day leaving no stale part, and a some-products run writing none."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from helpers import (
    DAY,
    NOON_ON_DAY,
    add_event,
    bucket_objects,
    current_settings,
    plan,
    product,
    register_shop,
    run_batch,
    run_shop,
)
from include.statistics_export import tasks
from include.statistics_export.keys import PARQUET_ROOT
from include.statistics_export.totals import Totals, csv_totals
from local_stack.demo_world import build_world, seed_database
from local_stack.services import S3_KEY_ID, S3_REGION, S3_SECRET


def s3_filesystem(endpoint: str) -> pafs.S3FileSystem:
    scheme, _, address = endpoint.partition("://")
    return pafs.S3FileSystem(
        access_key=S3_KEY_ID,
        secret_key=S3_SECRET,
        region=S3_REGION,
        endpoint_override=address,
        scheme=scheme,
        allow_bucket_creation=False,
    )


def parquet_dataset(endpoint: str, bucket: str) -> ds.Dataset:
    return ds.dataset(f"{bucket}/{PARQUET_ROOT}", filesystem=s3_filesystem(endpoint), format="parquet",
                      partitioning="hive")  # fmt: skip


def table_totals(table) -> Totals:
    rows = table.to_pylist()
    return Totals(
        len(rows),
        sum(r["impressions"] for r in rows),
        sum(r["addToCarts"] for r in rows),
        sum(r["orders"] for r in rows),
        sum((r["revenue"] for r in rows), Decimal("0.00")),
    )


def csv_files(objects: dict[str, bytes], shop_id: str | None = None, days=None) -> list[bytes]:
    return [
        body
        for key, body in objects.items()
        if key.endswith(".csv")
        and (shop_id is None or key.split("/")[1] == shop_id)
        and (days is None or key.rsplit("/", 1)[1][:8] in {f"{d:%Y%m%d}" for d in days})
    ]


def test_a_batch_writes_typed_rows_equal_to_its_csvs(db, sandbox, connections, s3):
    register_shop(db, sandbox, "shop_p", [product(1, variants=2, images=2), product(2, variants=3, images=0)])
    add_event(db, "shop_p", "1001", "IMPRESSION", NOON_ON_DAY)
    add_event(db, "shop_p", "1001", "ADD_TO_CART", NOON_ON_DAY)
    add_event(db, "shop_p", "gid://shopify/ProductVariant/2003", "PURCHASE", NOON_ON_DAY, Decimal("12.34"))

    (result,) = run_shop("shop_p")

    assert result.parquet_key == f"{PARQUET_ROOT}shop=shop_p/date=2026-11-21/part-00001-of-00001.parquet"
    assert result.parquet_written and result.parquet_totals == result.file_totals
    table = parquet_dataset(connections.s3_endpoint, connections.bucket).to_table()
    rows = {r["variantId"]: r for r in table.to_pylist()}
    assert set(rows) == {"1001", "1002", "2001", "2002", "2003"}
    first = rows["1001"]
    assert (first["day"], first["shop"], str(first["date"])) == (DAY, "shop_p", "2026-11-21")
    assert (first["impressions"], first["addToCarts"], first["ctr"]) == (1, 1, Decimal("1.0000"))
    assert rows["2003"]["revenue"] == Decimal("12.34") and rows["2003"]["orders"] == 1
    assert first["imageMediaIds"] == ["gid://shopify/MediaImage/101", "gid://shopify/MediaImage/102"]
    assert len(first["r2ImageKeys"]) == 2 and rows["2001"]["imageMediaIds"] == []
    assert (first["productTitle"], first["variantTitle"], first["sku"]) == ("Product 1", "V1", "SKU-1-1")
    assert table_totals(table) == csv_totals(csv_files(bucket_objects(s3, connections.bucket)))


def test_a_rerun_writes_nothing_and_a_replanned_day_keeps_no_stale_part(db, sandbox, connections, s3):
    register_shop(db, sandbox, "shop_q", [product(n, variants=2) for n in range(1, 5)])
    for batch in plan("shop_q", batch_variants=4):
        run_batch(batch)
    parts = lambda: sorted(k for k in bucket_objects(s3, connections.bucket) if k.startswith(PARQUET_ROOT))  # noqa: E731
    assert [k.rsplit("/", 1)[1] for k in parts()] == ["part-00001-of-00002.parquet", "part-00002-of-00002.parquet"]
    modified = {k: s3.head_object(Bucket=connections.bucket, Key=k)["LastModified"] for k in parts()}

    again = [run_batch(batch) for batch in plan("shop_q", batch_variants=4)]
    assert [r.parquet_written for r in again] == [False, False]
    assert {k: s3.head_object(Bucket=connections.bucket, Key=k)["LastModified"] for k in parts()} == modified

    # A stored part that no longer holds the batch's bytes (its ETag, the MD5, differs) is written again.
    first = parts()[0]
    s3.put_object(Bucket=connections.bucket, Key=first, Body=b"not the part")
    again = [run_batch(batch) for batch in plan("shop_q", batch_variants=4)]
    assert [r.parquet_written for r in again] == [True, False]
    assert parquet_dataset(connections.s3_endpoint, connections.bucket).count_rows() == 8

    (replanned,) = [run_batch(batch) for batch in plan("shop_q", batch_variants=500)]
    assert [k.rsplit("/", 1)[1] for k in parts()] == ["part-00001-of-00001.parquet"]
    assert parquet_dataset(connections.s3_endpoint, connections.bucket).count_rows() == 8 == replanned.variants


def test_a_run_for_some_products_writes_no_part(db, sandbox, connections, s3):
    register_shop(db, sandbox, "shop_r", [product(1), product(2)])
    (result,) = [run_batch(b) for b in plan("shop_r", product_ids=["2"])]
    assert result.parquet_key is None and result.variants == 1
    assert not [k for k in bucket_objects(s3, connections.bucket) if k.startswith(PARQUET_ROOT)]


def test_reconciliation_fails_a_shop_whose_parquet_rows_differ(db, sandbox, connections):
    from include.statistics_export.handoffs import ShopPlan

    register_shop(db, sandbox, "shop_s", [product(1, variants=2)])
    add_event(db, "shop_s", "1001", "IMPRESSION", NOON_ON_DAY)
    batches = plan("shop_s")
    results = [run_batch(b) for b in batches]
    shop_plan = ShopPlan("shop_s", "shop-s.myshopify.com", "pages", None, 2, batches)
    (good,) = tasks.reconcile_day(DAY, [shop_plan], results, current_settings())
    assert good.ok, good.differences
    lost_one = Totals(2, 0, 0, 0, Decimal("0.00"))  # one impression lost on the way
    results[0] = replace(results[0], parquet_totals=lost_one)
    (bad,) = tasks.reconcile_day(DAY, [shop_plan], results, current_settings())
    assert not bad.ok
    assert any("the Parquet rows differ from the CSVs" in d for d in bad.differences)


MONTH = [date(2026, 10, 1) + timedelta(days=n) for n in range(31)]


@pytest.fixture
def demo_month(app_db_url, db, sandbox, connections):
    """The demo world (small), its events repeated on every day of October 2026, each day exported."""
    world = build_world(MONTH[0], products=9)
    for shop in world.shops:
        sandbox.add_shop(shop.sandbox)
    with psycopg.connect(app_db_url) as conn:
        seed_database(conn, world)
        with (
            conn.cursor() as cur,
            cur.copy(
                'COPY "ABTestEvent" (id, "testId", "sessionId", "eventType", "productId", "variantId", revenue,'
                ' "createdAt") FROM STDIN'
            ) as copy,
        ):
            for offset in range(1, len(MONTH)):
                for e in world.events:
                    at = (e.created_at + timedelta(days=offset)).replace(tzinfo=None)
                    copy.write_row((uuid.uuid4().hex, e.test_id, "s", e.event_type, e.product_id, e.variant_id,
                                    e.revenue, at))  # fmt: skip
    tasks.link_unlinked_sessions(current_settings(), None)  # the custom-domain shop's session starts unlinked
    shops = [s.shop_id for s in world.shops if s.active]
    for day in MONTH:
        for shop_id in shops:
            for batch in plan(shop_id, day=day):
                run_batch(batch)
    return shops


def test_a_month_of_the_demo_world_read_through_pyarrow_s3_with_partition_filters(demo_month, connections, s3):
    dataset = parquet_dataset(connections.s3_endpoint, connections.bucket)
    objects = bucket_objects(s3, connections.bucket)
    assert {str(v) for v in ds.dataset(dataset.files, filesystem=dataset.filesystem).schema.names} >= {"day", "sku"}

    # One shop, the second half of the month: only its partitions are read.
    half = MONTH[15:]
    wanted = (ds.field("shop") == "shop_boutique") & (ds.field("date") >= str(half[0]))
    table = dataset.to_table(filter=wanted)
    assert {str(d) for d in table.column("date").to_pylist()} == {str(d) for d in half}
    assert table_totals(table) == csv_totals(csv_files(objects, "shop_boutique", half))
    assert table_totals(table).impressions > 0

    # Every shop, the whole month, shop by shop and in all.
    for shop_id in demo_month:
        shop_table = dataset.to_table(filter=ds.field("shop") == shop_id)
        assert table_totals(shop_table) == csv_totals(csv_files(objects, shop_id, MONTH)), shop_id
    everything = dataset.to_table(filter=ds.field("date").isin([str(d) for d in MONTH]))
    assert table_totals(everything) == csv_totals(csv_files(objects))
    assert everything.num_rows == len(csv_files(objects))
