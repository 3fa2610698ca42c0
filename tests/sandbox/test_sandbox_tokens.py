"""The sandbox's tokens, over HTTP: expiring offline tokens and Shopify's rotation rules (../shared/shopify/tokens.md)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from shopify_sandbox import SandboxShop, ShopifySandbox, load_world, save_world
from shopify_sandbox.tokens import EXCHANGE_GRANT, INVALID_TOKEN, NON_EXPIRING_REJECTED, OFFLINE_TOKEN_TYPE

DOMAIN = "rotating.myshopify.com"
CLIENT = {"client_id": "key_rotating", "client_secret": "secret_rotating"}
QUERY = {"query": "{ shop { name } }"}


def shop(**changes) -> SandboxShop:
    fields = {"domain": DOMAIN, "access_token": "shpat_first", "client_id": "key_rotating"}
    fields |= {"client_secret": "secret_rotating", "refresh_token": "shprt_first"}
    return SandboxShop(**(fields | changes))


@pytest.fixture
def sandbox():
    with ShopifySandbox([shop()], token_lifetime_seconds=600) as sb:
        yield sb


def graphql(sandbox, token: str) -> requests.Response:
    url = sandbox.endpoint_template.format(shop=DOMAIN, api_version="2026-07")
    return requests.post(url, json=QUERY, headers={"X-Shopify-Access-Token": token}, timeout=10)


def token_request(sandbox, **form) -> requests.Response:
    url = sandbox.token_endpoint_template.format(shop=DOMAIN)
    return requests.post(url, data={**CLIENT, **form}, headers={"Accept": "application/json"}, timeout=10)


def refresh(sandbox, refresh_token: str) -> requests.Response:
    return token_request(sandbox, grant_type="refresh_token", refresh_token=refresh_token)


def test_a_refresh_rotates_both_tokens_and_the_previous_access_token_lives_out_its_hour(sandbox):
    answer = refresh(sandbox, "shprt_first")

    assert answer.status_code == 200
    pair = answer.json()
    assert pair["access_token"] != "shpat_first" and pair["refresh_token"] != "shprt_first"
    assert pair["expires_in"] == 600  # the configured lifetime
    assert pair["refresh_token_expires_in"] == 90 * 86400
    assert graphql(sandbox, pair["access_token"]).status_code == 200
    assert graphql(sandbox, "shpat_first").status_code == 200  # still within its own hour
    assert sandbox.stats(DOMAIN)["refreshes"] == 1


def test_the_refresh_token_just_used_is_retained_until_its_replacement_is_used(sandbox):
    first = refresh(sandbox, "shprt_first").json()
    retry = refresh(sandbox, "shprt_first").json()  # a lost answer, asked again
    assert retry["access_token"] == first["access_token"] and retry["refresh_token"] == first["refresh_token"]
    assert sandbox.stats(DOMAIN)["refreshes"] == 1  # the retry issued nothing new

    second = refresh(sandbox, first["refresh_token"])
    assert second.status_code == 200
    retired = refresh(sandbox, "shprt_first")
    assert (retired.status_code, retired.json()["error"]) == (400, "invalid_grant")
    unknown = refresh(sandbox, "shprt_never_issued")
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_grant")


def test_wrong_client_credentials_are_invalid_client(sandbox):
    answer = token_request(sandbox, grant_type="refresh_token", refresh_token="shprt_first", client_secret="wrong")

    assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")


def test_an_expired_access_token_gets_shopifys_401_and_a_json_refresh_works_too(sandbox):
    sandbox.expire_access_tokens(DOMAIN)
    answer = graphql(sandbox, "shpat_first")
    assert (answer.status_code, answer.json()) == (401, {"errors": INVALID_TOKEN})

    # Shopify's libraries send the same fields as JSON.
    url = sandbox.token_endpoint_template.format(shop=DOMAIN)
    renewed = requests.post(
        url, json={**CLIENT, "grant_type": "refresh_token", "refresh_token": "shprt_first"}, timeout=10
    )
    assert graphql(sandbox, renewed.json()["access_token"]).status_code == 200


def test_tokens_expire_at_the_chosen_request_and_a_stored_expiry_in_the_past_is_refused():
    expired = shop(access_token_expires=datetime.now(timezone.utc) - timedelta(hours=1))
    with ShopifySandbox([expired]) as sandbox:
        assert graphql(sandbox, "shpat_first").status_code == 401
        pair = refresh(sandbox, "shprt_first").json()
        sandbox.expire_tokens_after(DOMAIN, requests=2)
        assert graphql(sandbox, pair["access_token"]).status_code == 200
        assert graphql(sandbox, pair["access_token"]).status_code == 401  # its hour ended at the second request
        assert sandbox.accepts(DOMAIN, pair["access_token"], pair["refresh_token"])  # expired, still refreshable


def test_revoked_refresh_tokens_are_invalid_grant(sandbox):
    sandbox.revoke_refresh_tokens(DOMAIN)

    answer = refresh(sandbox, "shprt_first")

    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
    assert not sandbox.accepts(DOMAIN, "shpat_first", "shprt_first")


def test_after_the_deadline_a_non_expiring_token_is_refused_with_shopifys_403():
    with ShopifySandbox([shop(refresh_token=None)]) as sandbox:
        assert graphql(sandbox, "shpat_first").status_code == 200
        sandbox.non_expiring_rejected = True
        answer = graphql(sandbox, "shpat_first")
    assert (answer.status_code, answer.json()) == (403, {"errors": NON_EXPIRING_REJECTED})


def test_token_exchange_revokes_the_non_expiring_token_and_a_retry_returns_the_same_pair():
    with ShopifySandbox([shop(refresh_token=None)]) as sandbox:
        exchange = {
            "grant_type": EXCHANGE_GRANT,
            "subject_token": "shpat_first",
            "subject_token_type": OFFLINE_TOKEN_TYPE,
            "requested_token_type": OFFLINE_TOKEN_TYPE,
            "expiring": "1",
        }
        pair = token_request(sandbox, **exchange).json()
        again = token_request(sandbox, **exchange).json()

        assert again == pair | {
            "expires_in": again["expires_in"],
            "refresh_token_expires_in": again["refresh_token_expires_in"],
        }
        assert graphql(sandbox, "shpat_first").status_code == 401  # revoked: it cannot be undone
        assert graphql(sandbox, pair["access_token"]).status_code == 200
        assert sandbox.stats(DOMAIN)["exchanges"] == 1
        assert refresh(sandbox, pair["refresh_token"]).status_code == 200


def test_a_world_file_keeps_the_shops_token_kind_and_client(tmp_path):
    expires = datetime(2026, 12, 1, 11, tzinfo=timezone.utc)
    save_world(tmp_path / "world.json", [shop(access_token_expires=expires)])

    (loaded,) = load_world(tmp_path / "world.json")

    assert (loaded.refresh_token, loaded.access_token_expires, loaded.client_id) == (
        "shprt_first",
        expires,
        "key_rotating",
    )
