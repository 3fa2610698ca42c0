"""A packed unit of small shops on real components: each shop on its own, in about one Shopify request."""

import json
from dataclasses import replace

import psycopg
import pytest

from helpers import (
    DAY,
    NOON_ON_DAY,
    add_event,
    bucket_objects,
    current_settings,
    fast_shopify_retries,
    product,
    register_shop,
    writer_for,
)
from include.statistics_export import tasks
from include.statistics_export.errors import PermanentError, UnitShopsFailed
from include.statistics_export.handoffs import ShopRef, ShopUnit
from include.statistics_export.tasks import retry_policy


def unit_of(*shops) -> ShopUnit:
    return ShopUnit(1, 1, [ShopRef(shop_id, f"{shop_id.replace('_', '-')}.myshopify.com") for shop_id in shops])


def exported(s3, bucket, shop_id):
    return {k: v for k, v in bucket_objects(s3, bucket).items() if k.startswith(f"statistic-exports/{shop_id}/")}


@pytest.fixture
def small_shops(db, sandbox, connections):
    register_shop(db, sandbox, "shop_a", [product(1, variants=2, images=1)])
    register_shop(db, sandbox, "shop_b", [product(2, variants=1, images=0), product(3, variants=1, images=0)])
    register_shop(db, sandbox, "shop_c", [product(4, variants=1, images=1)])
    add_event(db, "shop_b", "2001", "PURCHASE", NOON_ON_DAY, "9.90")
    return ["shop_a", "shop_b", "shop_c"]


def test_each_small_shop_costs_one_shopify_request_and_every_variant_is_exported(small_shops, sandbox, s3, connections):
    outcome = tasks.export_unit(unit_of(*small_shops), writer_for(DAY), current_settings())
    assert outcome.failures == {} and [r.variants for r in outcome.results] == [2, 2, 1]
    for shop_id, result in zip(small_shops, outcome.results):
        stats = sandbox.stats(f"{shop_id.replace('_', '-')}.myshopify.com")
        assert stats["requests"] == 1 and result.graphql_cost == stats["cost_charged"] > 0
    assert [(p.mode, p.variants) for p in outcome.plans] == [("packed", 2), ("packed", 2), ("packed", 1)]
    row = json.loads(exported(s3, connections.bucket, "shop_b")["statistic-exports/shop_b/2/2001/20261121.json"])
    assert row["variant"]["metrics"]["revenue"] == 9.9 and row["variant"]["currency"] == "USD"
    assert tasks.fail_unit_if_any_shop_failed(unit_of(*small_shops), outcome) == 3


def test_a_unit_reads_each_connection_once_however_many_shops_it_holds(small_shops, connections, monkeypatch):
    # Per shop, a lookup would also mask the connection's extra again: in a task, a message to the supervisor.
    from airflow.sdk import BaseHook

    read = BaseHook.get_connection.__func__
    asked: list[str] = []

    def counted(cls, conn_id):
        asked.append(conn_id)
        return read(cls, conn_id)

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(counted))
    tasks.export_unit(unit_of(small_shops[0]), writer_for(DAY), current_settings())
    for_one, asked[:] = list(asked), []
    outcome = tasks.export_unit(unit_of(*small_shops), writer_for(DAY), current_settings())
    assert outcome.failures == {} and len(outcome.results) == 3
    assert asked == for_one and asked.count("shopify_default") == 1


def test_a_failed_shop_fails_alone_and_is_named_with_its_reason(small_shops, db, sandbox, s3, connections):
    sandbox.revoke_token("shop-b.myshopify.com")
    with db.cursor() as cur:
        cur.execute('UPDATE "Session" SET "shopId" = NULL WHERE "shopId" = %s', ("shop_c",))
    db.commit()
    unit = unit_of(*small_shops)
    outcome = tasks.export_unit(unit, writer_for(DAY), current_settings())
    assert [r.shop_id for r in outcome.results] == ["shop_a"]
    assert len(exported(s3, connections.bucket, "shop_a")) == 4
    assert exported(s3, connections.bucket, "shop_b") == {} == exported(s3, connections.bucket, "shop_c")
    assert "rejected the access token (HTTP 401)" in outcome.failures["shop_b"]
    assert "no usable session is linked" in outcome.failures["shop_c"]
    assert outcome.permanent and outcome.failed_domains(unit) == ["shop-b.myshopify.com", "shop-c.myshopify.com"]
    # The revoked token was asked once: a permanent failure is not retried.
    assert sandbox.stats("shop-b.myshopify.com")["requests"] == 1
    with pytest.raises(PermanentError, match=r"2 of 3 shop\(s\) of unit 1/1 failed: shop-b\.myshopify\.com: .*401"):
        tasks.fail_unit_if_any_shop_failed(unit, outcome)


def test_a_transient_failure_is_retried_inside_the_unit(small_shops, sandbox, s3, connections, monkeypatch):
    fast_shopify_retries(monkeypatch, attempts=2)
    sandbox.fail_next("shop-a.myshopify.com", 503, count=2)  # the hook's two attempts both fail: the unit tries again
    outcome = tasks.export_unit(unit_of(*small_shops), writer_for(DAY), current_settings())
    assert outcome.failures == {} and len(outcome.results) == 3
    assert sandbox.stats("shop-a.myshopify.com")["requests"] == 3


def test_a_transient_failure_that_lasts_fails_the_unit_for_airflow_to_retry(
    small_shops, sandbox, connections, monkeypatch
):
    fast_shopify_retries(monkeypatch, attempts=1)
    monkeypatch.setattr(retry_policy, "UNIT_SHOP_ATTEMPTS", 2)
    sandbox.fail_next("shop-c.myshopify.com", 503, count=5)
    unit = unit_of(*small_shops)
    outcome = tasks.export_unit(unit, writer_for(DAY), current_settings())
    assert sorted(r.shop_id for r in outcome.results) == ["shop_a", "shop_b"] and not outcome.permanent
    with pytest.raises(UnitShopsFailed) as failure:
        tasks.fail_unit_if_any_shop_failed(unit, outcome)
    assert not isinstance(failure.value, PermanentError) and "shop-c.myshopify.com: " in str(failure.value)


def test_a_rerun_of_the_unit_writes_nothing_new(small_shops, s3, connections):
    tasks.export_unit(unit_of(*small_shops), writer_for(DAY), current_settings())
    before = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=connections.bucket)["Contents"]}
    again = tasks.export_unit(unit_of(*small_shops), writer_for(DAY), current_settings())
    assert sum(r.files_unchanged for r in again.results) == sum(r.files for r in again.results) == 10
    after = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=connections.bucket)["Contents"]}
    assert after == before


def test_a_shop_found_large_on_its_first_page_leaves_the_unit_and_is_exported_alone(
    db, sandbox, s3, small_shops, connections
):
    register_shop(db, sandbox, "shop_big", [product(n, variants=1, images=0) for n in range(10, 35)])
    settings = current_settings(bulk_threshold=20, batch_variants=10)
    outcome = tasks.export_unit(unit_of("shop_a", "shop_big", "shop_b"), writer_for(DAY), settings)

    # Its first page said 25 products: the rest was never read, and the unit's other shops are exported.
    assert [s.shop_id for s in outcome.moved] == ["shop_big"]
    assert outcome.failures == {} and {r.shop_id for r in outcome.results} == {"shop_a", "shop_b"}
    assert sandbox.stats("shop-big.myshopify.com")["requests"] == 1
    assert not exported(s3, connections.bucket, "shop_big")

    # Large (25 products, at the threshold of 20): read in bulk, as every large shop is, wherever it was planned.
    alone = tasks.export_moved_shops(
        ShopUnit(1, 1, outcome.moved), writer_for(DAY), replace(settings, bulk_poll_seconds=0.1)
    )
    assert alone.failures == {}
    (plan,) = alone.plans
    assert (plan.mode, plan.variants, len(plan.batches)) == ("bulk", 25, 3)
    assert "exported alone" in plan.note
    assert sandbox.stats("shop-big.myshopify.com")["bulk_operations"] == 1
    assert sum(r.variants for r in alone.results) == 25
    assert len(exported(s3, connections.bucket, "shop_big")) == 2 * 25


def test_database_round_trips_do_not_grow_with_the_shops_of_a_unit(db, sandbox, connections, monkeypatch):
    counted = []
    real_execute = psycopg.Cursor.execute

    def execute(cursor, query, *args, **kwargs):
        counted.append(str(query)[:60])
        return real_execute(cursor, query, *args, **kwargs)

    statements = {}
    for size in (2, 6):
        shop_ids = [f"shop_{size}_{n}" for n in range(size)]
        for n, shop_id in enumerate(shop_ids):
            register_shop(db, sandbox, shop_id, [product(size * 100 + n, variants=2, images=1)])
        writer = writer_for(DAY)
        monkeypatch.setattr(psycopg.Cursor, "execute", execute)
        counted.clear()
        outcome = tasks.export_unit(unit_of(*shop_ids), writer, current_settings())
        monkeypatch.setattr(psycopg.Cursor, "execute", real_execute)
        assert outcome.failures == {} and len(outcome.results) == size
        statements[size] = list(counted)
    # The day's claim, whether "Session" has the refresh token columns, tokens, metrics, image backups, recorded
    # hashes, the day's fence taken and the claim checked under it, the claim again under the rows' transaction,
    # the three upserts, and the fence released; the shops' fence (shop_fence: every shop's lock in one statement,
    # the redactions checked under it and again in the rows' transaction, the locks released): the same for 2
    # shops as for 6.
    assert len(statements[2]) == len(statements[6]) == 17, statements
