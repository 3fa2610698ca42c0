"""Expiring offline tokens on a real PostgreSQL and the Shopify sandbox over HTTP: refreshed before use and on a
401, once per shop across threads, written back atomically; refusals, non-expiring tokens, an app database not
migrated yet, the day's census and the migration command (tokens.py, connections.py, shopify_tokens.py)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from export_hooks.shopify import ShopifyAuthError, ShopifyNonExpiringTokenRejected, ShopifyTokenRefused
from helpers import (
    DAY,
    bucket_objects,
    current_settings,
    fast_shopify_retries,
    product,
    register_shop,
    run_shop,
    session_row,
)
from include.statistics_export import tasks
from include.statistics_export.handoffs import ShopRef, ShopUnit
from include.statistics_export.tasks import token_migration
from include.statistics_export.tokens import REFRESH_MARGIN, token_census


def now() -> datetime:
    return datetime.now(timezone.utc)


def an_hour_ago() -> datetime:
    """Computed when a test runs: the module is collected long before its last test runs."""
    return now() - timedelta(hours=1)


SHOP, DOMAIN = "shop_exp", "shop-exp.myshopify.com"
REFRESH_TOKEN, CLIENT_SECRET = f"shprt_secret_{SHOP}", f"secret_{SHOP}"


def stats(sandbox, domain: str = DOMAIN) -> dict:
    return sandbox.stats(domain)


def shop_name() -> str:
    with tasks.shopify_for(SHOP) as shopify:
        return shopify.shop_info()["name"]


@pytest.fixture
def expired(db, sandbox, connections):
    """A shop on expiring tokens whose stored token expired an hour ago."""
    return register_shop(db, sandbox, SHOP, [product(1, variants=2)], expires=an_hour_ago())


def test_a_stored_token_that_expired_is_refreshed_before_use_and_the_pair_written_back_atomically(
    expired, sandbox, db, monkeypatch
):
    updates = []
    real_execute = psycopg.Cursor.execute

    def execute(cursor, query, *args, **kwargs):
        if 'UPDATE "Session"' in str(query):
            updates.append(str(query))
        return real_execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    assert shop_name()

    row = session_row(db, SHOP)
    assert stats(sandbox)["refreshes"] == 1
    assert row["accessToken"] != expired.access_token and row["refreshToken"] != REFRESH_TOKEN
    assert sandbox.accepts(DOMAIN, row["accessToken"], row["refreshToken"])
    expires = datetime.fromisoformat(row["expires"]).replace(tzinfo=timezone.utc)
    refresh_expires = datetime.fromisoformat(row["refreshTokenExpires"]).replace(tzinfo=timezone.utc)
    assert timedelta(minutes=59) < expires - now() < timedelta(minutes=61)
    assert timedelta(days=89) < refresh_expires - now() < timedelta(days=91)
    # One statement wrote the four columns: the app never reads half a pair.
    assert len(updates) == 1
    assert all(
        column in updates[0] for column in ('"accessToken"', "expires", '"refreshToken"', '"refreshTokenExpires"')
    )


@pytest.mark.parametrize(
    ("expires_in", "refreshed"), [(REFRESH_MARGIN - timedelta(minutes=1), 1), (timedelta(minutes=30), 0)]
)
def test_a_token_expiring_within_the_margin_is_refreshed_and_a_fresher_one_is_not(
    db, sandbox, connections, expires_in, refreshed
):
    register_shop(db, sandbox, SHOP, [product(1)], expires=datetime.now(timezone.utc) + expires_in)
    before = session_row(db, SHOP)

    assert shop_name()

    assert stats(sandbox)["refreshes"] == refreshed
    assert (session_row(db, SHOP) == before) is (refreshed == 0)


def test_many_tasks_needing_the_same_shop_refresh_it_once(expired, sandbox, db):
    errors = []

    def use() -> None:
        try:
            shop_name()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert stats(sandbox)["refreshes"] == 1  # the row lock, and the row read again under it
    row = session_row(db, SHOP)
    assert sandbox.accepts(DOMAIN, row["accessToken"], row["refreshToken"])


def test_a_token_rejected_mid_run_is_refreshed_once_and_the_request_asked_again(db, sandbox, connections):
    register_shop(db, sandbox, SHOP, [product(n, variants=2) for n in range(1, 6)], expires=now() + timedelta(hours=1))
    sandbox.expire_tokens_after(DOMAIN, requests=3)  # its hour ends during the shop's export

    results = run_shop(SHOP, batch_variants=4)

    assert sum(result.variants for result in results) == 10
    assert stats(sandbox)["refreshes"] == 1
    row = session_row(db, SHOP)
    assert sandbox.accepts(DOMAIN, row["accessToken"], row["refreshToken"])


def test_a_renewed_token_rejected_too_fails_the_shop_after_one_renewal(expired, sandbox):
    sandbox.revoke_token(DOMAIN)  # every token of the shop is answered 401 (the app was uninstalled)

    with pytest.raises(ShopifyAuthError, match=f"Shop {DOMAIN}: Shopify rejected the access token"):
        shop_name()
    # Refreshed before use (it had expired), renewed once on the 401, then the shop fails: no loop.
    assert (stats(sandbox)["refreshes"], stats(sandbox)["requests"]) == (2, 2)


def test_a_revoked_refresh_token_fails_the_shop_saying_the_merchant_must_authenticate_again(expired, sandbox, db):
    sandbox.revoke_refresh_tokens(DOMAIN)
    before = session_row(db, SHOP)

    with pytest.raises(
        ShopifyTokenRefused, match="invalid_grant.*merchant must open the app to authenticate again"
    ) as err:
        shop_name()

    assert DOMAIN in str(err.value)
    assert not {REFRESH_TOKEN, CLIENT_SECRET, expired.access_token} & set(str(err.value).split())
    assert session_row(db, SHOP) == before  # nothing written


def test_wrong_client_credentials_say_so_and_never_echo_the_secret(expired, sandbox, db):
    with db.cursor() as cur:
        cur.execute('UPDATE "ShopCredential" SET "apiSecret" = %s WHERE id = %s', ("secret_wrong", SHOP))
    db.commit()

    with pytest.raises(ShopifyTokenRefused, match="invalid_client.*client credentials") as err:
        shop_name()

    assert "secret_wrong" not in str(err.value) and REFRESH_TOKEN not in str(err.value)


def test_transient_token_endpoint_failures_are_retried_within_the_hooks_budget(expired, sandbox, monkeypatch):
    fast_shopify_retries(monkeypatch, attempts=3)
    sandbox.fail_token_requests(DOMAIN, 503, count=2)

    assert shop_name()
    assert (stats(sandbox)["token_requests"], stats(sandbox)["refreshes"]) == (3, 1)


def test_a_non_expiring_session_is_used_as_before_and_its_row_never_written(db, sandbox, connections):
    register_shop(db, sandbox, SHOP, [product(1)])
    before = session_row(db, SHOP)
    assert before["expires"] is None and before["refreshToken"] is None

    assert shop_name()
    sandbox.revoke_token(DOMAIN)
    with pytest.raises(ShopifyAuthError, match="rejected the access token"):
        shop_name()

    assert stats(sandbox)["token_requests"] == 0
    assert session_row(db, SHOP) == before


def test_after_the_deadline_a_non_expiring_token_fails_its_shop_with_a_reason_that_says_so(db, sandbox, connections):
    register_shop(db, sandbox, SHOP, [product(1)])
    sandbox.non_expiring_rejected = True

    with pytest.raises(ShopifyNonExpiringTokenRejected, match="no longer accepts its non-expiring access token"):
        shop_name()


def test_an_app_database_without_the_refresh_columns_exports_as_before(db, sandbox, connections, s3):
    register_shop(db, sandbox, SHOP, [product(1, variants=2)])
    with db.cursor() as cur:
        cur.execute('ALTER TABLE "Session" DROP COLUMN "refreshToken", DROP COLUMN "refreshTokenExpires"')
    db.commit()

    results = run_shop(SHOP)

    assert sum(result.variants for result in results) == 2
    assert [key for key in bucket_objects(s3, connections.bucket) if key.endswith(".csv")]
    census = token_census(db)
    assert (census.expiring, census.non_expiring) == ([], [SHOP])


def test_a_packed_unit_refreshes_its_expired_shops_and_exports_them(db, sandbox, connections):
    for n in range(3):
        register_shop(db, sandbox, f"shop_{n}", [product(n + 1)], expires=an_hour_ago() if n else None)
    unit = ShopUnit(1, 1, [ShopRef(f"shop_{n}", f"shop-{n}.myshopify.com") for n in range(3)])

    outcome = tasks.export_unit(unit, _writer(), current_settings())

    assert outcome.failures == {} and len(outcome.results) == 3
    assert [sandbox.stats(f"shop-{n}.myshopify.com")["refreshes"] for n in range(3)] == [0, 1, 1]


def _writer():
    from helpers import writer_for

    return writer_for(DAY)


def test_the_census_counts_expiring_and_non_expiring_tokens_and_names_the_public_ones(db, sandbox, connections):
    register_shop(db, sandbox, "shop_a", [product(1)], expires=an_hour_ago())
    register_shop(db, sandbox, "shop_b", [product(2)], expires=now() + timedelta(hours=1))
    register_shop(db, sandbox, "shop_c", [product(3)])
    register_shop(db, sandbox, "shop_d", [product(4)], mode="PRIVATE")  # a custom app: exempt
    register_shop(db, sandbox, "shop_e", [product(5)], active=False)

    section = tasks.census_tokens()

    assert section.document == {
        "expiring": 2,
        "nonExpiring": 2,
        "nonExpiringPublic": ["shop_c"],
        "deadline": "2027-01-01",
    }
    assert "migrate (1): shop_c" in section.line
    assert tasks.census_tokens(["shop_a"]).document["expiring"] == 1


def test_the_migration_dry_run_lists_exactly_the_public_non_expiring_shops_and_a_real_run_migrates_them(
    db, sandbox, connections, capsys
):
    register_shop(db, sandbox, "shop_a", [product(1)], expires=an_hour_ago())
    register_shop(db, sandbox, "shop_c", [product(3)])
    register_shop(db, sandbox, "shop_d", [product(4)], mode="PRIVATE")
    register_shop(db, sandbox, "shop_f", [product(6)])
    old_tokens = {shop_id: session_row(db, shop_id)["accessToken"] for shop_id in ("shop_c", "shop_f")}

    assert token_migration.main([]) == 0
    listed = capsys.readouterr().out
    assert "2 active PUBLIC shop(s)" in listed and "shop_c (" in listed and "shop_f (" in listed
    assert "shop_a" not in listed and "shop_d" not in listed
    assert [sandbox.stats(f"shop-{s}.myshopify.com")["exchanges"] for s in "cf"] == [0, 0]  # a dry run

    assert token_migration.main(["--execute"]) == 0
    out = capsys.readouterr().out
    assert out.count("migrated to expiring tokens") == 2
    for shop_id, old in old_tokens.items():
        row = session_row(db, shop_id)
        assert row["refreshToken"] and row["expires"] and row["accessToken"] != old
        assert sandbox.accepts(f"{shop_id.replace('_', '-')}.myshopify.com", row["accessToken"], row["refreshToken"])
        assert old not in out and row["accessToken"] not in out and row["refreshToken"] not in out
    assert token_migration.main([]) == 0 and "0 active PUBLIC shop(s)" in capsys.readouterr().out
    assert sum(result.variants for result in run_shop("shop_c")) == 1  # exportable on its new token


def test_an_unlinked_session_whose_token_expired_is_linked_by_its_shop_without_being_asked(db, sandbox, connections):
    register_shop(db, sandbox, SHOP, [product(1)], expires=an_hour_ago(), linked=False)

    document = tasks.link_unlinked_sessions(current_settings()).document

    assert [(item["shop"], item["matchedBy"]) for item in document["linked"]] == [
        (f"{SHOP} ({DOMAIN})", "session shop")
    ]
    assert stats(sandbox)["requests"] == 0  # an expired token is not asked
    assert shop_name()  # refreshed and used
