"""Active shops and their tokens on a real PostgreSQL: sessions linked by "shopId", never by domain."""

import csv
import io
import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from helpers import DAY, add_event, bucket_objects, plan, product, register_shop, run_batch, run_shop
from include.statistics_export.errors import ShopConfigurationError
from include.statistics_export.keys import export_key, image_key
from include.statistics_export.shops import active_shops, shop_credentials
from local_stack.demo_world import insert_shop
from shopify_sandbox.world import SandboxShop


def add_shop(db, shop_id, domain, active=True):
    with db.cursor() as cur:
        cur.execute(
            'INSERT INTO "ShopCredential" (id, "shopDomain", "isActive") VALUES (%s, %s, %s)', (shop_id, domain, active)
        )
    db.commit()


def add_session(db, session_id, shop, token, shop_id, online=False, expires=None):
    with db.cursor() as cur:
        cur.execute(
            'INSERT INTO "Session" (id, shop, "isOnline", expires, "accessToken", "shopId") VALUES (%s, %s, %s, %s, %s, %s)',
            (session_id, shop, online, expires, token, shop_id),
        )
    db.commit()


def test_only_active_shops_are_listed_in_id_order(db):
    add_shop(db, "b", "b.myshopify.com")
    add_shop(db, "a", "a.myshopify.com")
    add_shop(db, "c", "c.myshopify.com", active=False)
    assert [s.shop_id for s in active_shops(db)] == ["a", "b"]
    assert [s.shop_id for s in active_shops(db, ["b", "c"])] == ["b"]


def test_custom_domain_shop_gets_its_token_through_the_linked_session(db):
    add_shop(db, "boutique", "www.boutique-example.com")
    add_session(db, "offline_boutique", "boutique.myshopify.com", "tok-boutique", "boutique")
    # A session whose domain happens to match but that is not linked must never be used.
    add_session(db, "stray", "www.boutique-example.com", "tok-stray", None)
    creds = shop_credentials(db, "boutique")
    assert (creds.api_domain, creds.access_token) == ("boutique.myshopify.com", "tok-boutique")
    assert "tok-boutique" not in repr(creds)


def test_offline_session_is_preferred_and_expired_online_ignored(db):
    add_shop(db, "s", "s.myshopify.com")
    now = datetime.utcnow()
    add_session(db, "online_fresh", "s.myshopify.com", "tok-online", "s", online=True, expires=now + timedelta(hours=1))
    add_session(db, "offline", "s.myshopify.com", "tok-offline", "s")
    assert shop_credentials(db, "s").access_token == "tok-offline"

    add_shop(db, "t", "t.myshopify.com")
    add_session(db, "online_old", "t.myshopify.com", "tok-expired", "t", online=True, expires=now - timedelta(hours=1))
    with pytest.raises(ShopConfigurationError, match="Shop t: no usable session"):
        shop_credentials(db, "t")


def test_shop_without_linked_session_is_a_clear_error(db):
    add_shop(db, "lonely", "lonely.myshopify.com")
    add_session(db, "unlinked", "lonely.myshopify.com", "tok", None)
    with pytest.raises(ShopConfigurationError, match="Shop lonely"):
        shop_credentials(db, "lonely")


# -- domains, sessions, inactive shops, awkward text and ids, a huge product: through real exports --------------

NOON = datetime(2026, 11, 21, 12)


def test_expired_online_and_offline_sessions_both_linked_use_the_offline_one(db):
    add_shop(db, "s", "s.myshopify.com")
    now = datetime.utcnow()
    add_session(db, "online_old", "s.myshopify.com", "tok-expired", "s", online=True, expires=now - timedelta(days=1))
    add_session(db, "offline", "s.myshopify.com", "tok-offline", "s")
    assert shop_credentials(db, "s").access_token == "tok-offline"


def test_domains_with_upper_case_scheme_or_trailing_slash_are_normalized(db, connections, sandbox, s3):
    register_shop(db, sandbox, "shop_upper", [product(1)], domain="  HTTPS://WWW.Upper-Example.com/ ")
    with db.cursor() as cur:  # the session's domain as a merchant's browser may have written it
        cur.execute('UPDATE "Session" SET shop = %s WHERE "shopId" = %s', ("Shop-Upper.MyShopify.com/", "shop_upper"))
    db.commit()
    assert [s.shop_domain for s in active_shops(db)] == ["www.upper-example.com"]
    run_shop("shop_upper")
    document = json.loads(bucket_objects(s3, connections.bucket)["statistic-exports/shop_upper/1/1001/20261121.json"])
    assert document["shopDomain"] == "www.upper-example.com"


def test_a_deactivated_shop_with_events_is_neither_exported_nor_counted(db, connections, sandbox, s3):
    register_shop(db, sandbox, "shop_on", [product(1)])
    register_shop(db, sandbox, "shop_off", [product(2)], active=False)
    add_event(db, "shop_off", "2001", "PURCHASE", NOON, Decimal("9.00"))
    for shop in active_shops(db):
        run_shop(shop.shop_id)
    keys = list(bucket_objects(s3, connections.bucket))
    assert "statistic-exports/shop_on/1/1001/20261121.csv" in keys
    assert [key for key in keys if "shop_off" in key] == []
    with db.cursor() as cur:
        cur.execute('SELECT DISTINCT shop FROM "VariantDailyStatistics"')
        assert cur.fetchall() == [("shop_on",)]


AWKWARD = 'Shirt, "classic"\nline two ✨ 🛒 שלום עולם, \u202eRTL\u202c; \\ end'


def test_awkward_titles_and_skus_come_back_exactly(db, connections, sandbox, s3):
    item = product(1, variants=1)
    item.title = AWKWARD
    item.variants[0].title = AWKWARD
    item.variants[0].sku = 'SKU,"1"\n2 ✨ א'
    register_shop(db, sandbox, "shop_text", [item])
    run_shop("shop_text")
    objects = bucket_objects(s3, connections.bucket)
    document = json.loads(objects["statistic-exports/shop_text/1/1001/20261121.json"].decode("utf-8"))
    assert document["product"]["title"] == AWKWARD
    assert (document["variant"]["title"], document["variant"]["sku"]) == (AWKWARD, 'SKU,"1"\n2 ✨ א')
    rows = list(csv.DictReader(io.StringIO(objects["statistic-exports/shop_text/1/1001/20261121.csv"].decode())))
    assert len(rows) == 1 and rows[0]["variantId"] == "1001"


def test_a_product_with_2048_variants_is_exported_whole(db, connections, sandbox, s3):
    # An Enterprise shop (2,000 points/s): the 2,048 variants' pages cost ~19,000 points, 3 minutes at Standard's 100.
    register_shop(db, sandbox, "shop_big", [product(7, variants=2048, images=1)], restore_rate=2000.0)
    add_event(db, "shop_big", "9048", "IMPRESSION", NOON)  # the last variant: 7 * 1000 + 2048
    batches = plan("shop_big", batch_variants=500)
    assert [b.product_ids for b in batches] == [["7"]]  # a product is never split
    result = run_batch(batches[0])
    assert (result.variants, result.files) == (2048, 4096)
    keys = bucket_objects(s3, connections.bucket)
    assert len([k for k in keys if k.endswith(".csv")]) == len([k for k in keys if k.endswith(".json")]) == 2048
    last = next(csv.DictReader(io.StringIO(keys["statistic-exports/shop_big/7/9048/20261121.csv"].decode())))
    assert last["impressions"] == "1"


@pytest.mark.parametrize("hostile", ["..", ".", "../escape", "a/b", "", "a\nb", "a\x07b", "a b", "é", "x" * 129])
def test_hostile_ids_cannot_make_an_object_key(hostile):
    with pytest.raises(ValueError, match=r"shop id .* cannot be used in an object key"):
        export_key(hostile, "1", "1001", DAY, "csv")
    with pytest.raises(ValueError, match=r"product id .* cannot be used in an object key"):
        export_key("shop", hostile, "1001", DAY, "csv")
    with pytest.raises(ValueError, match=r"variant id .* cannot be used in an object key"):
        export_key("shop", "1", hostile, DAY, "json")
    with pytest.raises(ValueError, match=r"shop id .* cannot be used in an object key"):
        image_key(hostile, "1", "gid://shopify/MediaImage/5", "https://cdn/x.jpg")


@pytest.mark.parametrize("shop_id", ["../escape", "shop/../../other", "shop\nnext"])
def test_a_shop_with_a_hostile_id_fails_by_name_and_writes_nothing(db, connections, sandbox, s3, shop_id):
    shop = SandboxShop(domain="hostile.myshopify.com", access_token="shpat_hostile", products=[product(1, images=1)])
    sandbox.add_shop(shop)
    with db.cursor() as cur:
        insert_shop(cur, shop_id, "hostile.example", shop.domain, shop.access_token)
    db.commit()
    batches = plan(shop_id)
    with pytest.raises(ValueError) as failure:
        run_batch(batches[0])
    assert f"shop id {shop_id!r} cannot be used in an object key" in str(failure.value)
    assert bucket_objects(s3, connections.bucket) == {}
