"""Linking unlinked sessions to their shops (tasks.link_unlinked_sessions) on a real PostgreSQL and the
Shopify sandbox over HTTP: custom and myshopify domains, ambiguity, revoked tokens, existing links, reruns."""

from __future__ import annotations

import pytest

from helpers import current_settings, product, register_shop
from include.statistics_export import tasks
from include.statistics_export.shops import shop_credentials


def link(shop_ids=None) -> dict:
    return tasks.link_unlinked_sessions(current_settings(), shop_ids).document


def sessions(db) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute('SELECT id, shop, "shopId", "accessToken" FROM "Session" ORDER BY id')
        return cur.fetchall()


def add_credential(db, shop_id: str, domain: str) -> None:
    """A credential without any session (as the app's older versions left some)."""
    with db.cursor() as cur:
        cur.execute('INSERT INTO "ShopCredential" (id, "shopDomain") VALUES (%s, %s)', (shop_id, domain))
    db.commit()


def test_custom_domain_shop_is_linked_through_its_primary_domain(db, sandbox, connections):
    register_shop(
        db, sandbox, "shop_custom", [product(1)], domain="www.custom-example.com",
        primary_domain="www.custom-example.com", linked=False,
    )  # fmt: skip
    with pytest.raises(Exception, match="no usable session is linked"):
        shop_credentials(db, "shop_custom")

    document = link()

    assert document["linked"] == [
        {"shop": "shop_custom (www.custom-example.com)", "sessionId": "offline_shop-custom.myshopify.com",
         "matchedBy": "primaryDomain"}
    ]  # fmt: skip
    assert shop_credentials(db, "shop_custom").api_domain == "shop-custom.myshopify.com"  # exportable now


def test_myshopify_shop_is_linked_through_its_domain(db, sandbox, connections):
    register_shop(db, sandbox, "shop_plain", [product(1)], linked=False)
    document = link()
    assert [(item["shop"], item["matchedBy"]) for item in document["linked"]] == [
        ("shop_plain (shop-plain.myshopify.com)", "session shop")
    ]
    assert shop_credentials(db, "shop_plain").shop_id == "shop_plain"


def test_two_credentials_claiming_one_session_is_ambiguous_and_nothing_is_written(db, sandbox, connections):
    register_shop(db, sandbox, "shop_one", [product(1)], primary_domain="www.twice-example.com", linked=False)
    add_credential(db, "shop_two", "www.twice-example.com")  # the same store, entered twice in the app
    before = sessions(db)

    document = link()

    assert document["linked"] == []
    assert document["ambiguous"] == [
        {"sessionId": "offline_shop-one.myshopify.com", "sessionShop": "shop-one.myshopify.com",
         "shops": ["shop_one (shop-one.myshopify.com)", "shop_two (www.twice-example.com)"]}
    ]  # fmt: skip
    assert sessions(db) == before


def test_a_revoked_candidate_token_is_reported_not_linked(db, sandbox, connections):
    shop = register_shop(db, sandbox, "shop_gone", [product(1)], linked=False)
    sandbox.revoke_token(shop.domain)

    section = tasks.link_unlinked_sessions(current_settings(), None)

    assert section.document["linked"] == []
    assert [entry["shops"] for entry in section.document["revoked"]] == [["shop_gone (shop-gone.myshopify.com)"]]
    assert "revoked tokens 1: shop_gone (shop-gone.myshopify.com)" in section.line
    assert shop.access_token not in repr(section)  # the report names the shop, never the token
    assert [row[2] for row in sessions(db)] == [None]


def test_a_shop_without_any_candidate_is_named_as_no_match(db, sandbox, connections):
    register_shop(db, sandbox, "shop_ok", [product(1)])
    add_credential(db, "shop_lonely", "lonely-example.com")
    document = link()
    assert document["shopsWithoutSession"] == ["shop_lonely (lonely-example.com)"]
    assert document["noMatch"] == ["shop_lonely (lonely-example.com)"]


def test_an_already_linked_session_is_left_untouched(db, sandbox, connections):
    # shop_x's only session is linked to shop_y (a mistake, perhaps, but not ours to undo); shop_x needs a
    # session and its domain equals that session's shop: it is not a candidate, as it is linked.
    register_shop(db, sandbox, "shop_y", [product(1)])
    add_credential(db, "shop_x", "shop-y.myshopify.com".replace("shop-y", "shop-x"))
    with db.cursor() as cur:
        cur.execute(
            'INSERT INTO "Session" (id, shop, "accessToken", "shopId") VALUES (%s, %s, %s, %s)',
            ("offline_x", "shop-x.myshopify.com", "shpat_x", "shop_y"),
        )
    db.commit()
    before = sessions(db)

    document = link()

    assert document["linked"] == [] and document["noMatch"] == ["shop_x (shop-x.myshopify.com)"]
    assert sessions(db) == before


def test_a_rerun_changes_nothing_and_asks_nothing_once_all_are_linked(db, sandbox, connections):
    register_shop(db, sandbox, "shop_c", [product(1)], domain="www.c-example.com",
                  primary_domain="www.c-example.com", linked=False)  # fmt: skip
    register_shop(db, sandbox, "shop_d", [product(2)], linked=False)
    first = link()
    assert sorted(item["shop"] for item in first["linked"]) == [
        "shop_c (www.c-example.com)",
        "shop_d (shop-d.myshopify.com)",
    ]
    after_first = sessions(db)
    calls = {domain: sandbox.stats(domain)["requests"] for domain in ("shop-c.myshopify.com", "shop-d.myshopify.com")}

    second = link()

    assert second == {key: [] for key in second}  # nothing to link, nothing asked, nothing reported
    assert sessions(db) == after_first
    assert {domain: sandbox.stats(domain)["requests"] for domain in calls} == calls


def test_only_the_runs_shops_are_considered(db, sandbox, connections):
    register_shop(db, sandbox, "shop_e", [product(1)], linked=False)
    register_shop(db, sandbox, "shop_f", [product(2)], linked=False)
    document = link(["shop_f"])
    assert [item["shop"] for item in document["linked"]] == ["shop_f (shop-f.myshopify.com)"]
    assert [row[2] for row in sessions(db)] == [None, "shop_f"]


def test_a_database_refusal_never_raises(db, sandbox, connections):
    register_shop(db, sandbox, "shop_g", [product(1)], linked=False)
    with db.cursor() as cur:
        cur.execute('ALTER TABLE "Session" RENAME TO "SessionGone"')
    db.commit()
    section = tasks.link_unlinked_sessions(current_settings(), None)
    assert section.document["error"].startswith("Session links: not done (UndefinedTable")
