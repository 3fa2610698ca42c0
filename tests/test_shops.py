"""Active shops and their tokens on a real PostgreSQL: sessions linked by "shopId", never by domain."""

from datetime import datetime, timedelta

import pytest

from include.statistics_export.shops import ShopConfigurationError, active_shops, shop_credentials


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
