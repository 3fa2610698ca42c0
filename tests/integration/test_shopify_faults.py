"""Shopify's fault modes, served by the sandbox over HTTP, and what the Shopify hook does with each.

Transient faults are retried or waited out and the export converges to exactly the files and rows of an
undisturbed run; permanent ones fail at once with the shop named and no secret in the message.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from export_hooks.shopify import (
    PRODUCTS_BY_ID,
    ShopifyAuthError,
    ShopifyError,
    ShopifyHook,
    ShopifyQueryCostError,
    ShopifyRetryableError,
)
from faults_support import SHOP, world_fixture  # noqa: F401 - provides the `world` fixture
from helpers import product
from shopify_sandbox.world import SandboxShop

DOMAIN = "faulty.myshopify.com"
TOKEN = "shpat_fault_test_token"
IDS = [f"gid://shopify/Product/{n}" for n in range(1, 7)]
# Small waits keep every test within seconds; a 20000 points/s bucket refills 820 points in 41 ms.
FAST = {"timeout": 1.0, "max_attempts": 4, "retry_wait_base": 0.02, "retry_wait_max": 0.2}


def shopify_env(endpoint_template: str, **extra) -> str:
    """Return the shopify_default connection as an AIRFLOW_CONN_ value."""
    return json.dumps(
        {"conn_type": "generic", "extra": {"api_version": "2026-07", "endpoint_template": endpoint_template, **extra}}
    )


@pytest.fixture
def shop(sandbox, connections, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SHOPIFY_DEFAULT", shopify_env(sandbox.endpoint_template, **FAST))
    shop = SandboxShop(
        domain=DOMAIN,
        access_token=TOKEN,
        restore_rate=20000,
        products=[product(1, variants=30, images=2), *[product(n, variants=3) for n in range(2, 7)]],
    )
    sandbox.add_shop(shop)
    return shop


def requests_made(sandbox) -> int:
    return sandbox.stats(DOMAIN)["requests"]


def complete(products) -> bool:
    return [p["legacyResourceId"] for p in products] == [str(n) for n in range(1, 7)] and len(
        products[0]["variants"]
    ) == 30


# --- throttling ------------------------------------------------------------------------------------------


def test_throttled_storm_is_waited_out_per_throttle_status(shop, sandbox, monkeypatch):
    # A read timeout is not what this test is about: on a loaded 2-core machine 1 s can pass mid-answer.
    monkeypatch.setenv(
        "AIRFLOW_CONN_SHOPIFY_DEFAULT", shopify_env(sandbox.endpoint_template, **{**FAST, "timeout": 15})
    )
    sandbox.throttle_next(DOMAIN, count=25, drain=True)  # each answer shows an empty bucket
    start = time.monotonic()
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        products = list(hook.iter_products(IDS))
        assert hook.throttled == 25
    elapsed = time.monotonic() - start
    assert complete(products)
    # 25 throttled + 2 product queries + 1 variant page, though max_attempts is 4: throttles spend no attempt.
    assert requests_made(sandbox) == 28 and sandbox.stats(DOMAIN)["throttled"] == 25
    # Each wait is the 820 requested points at 20000 points/s: the hook read throttleStatus.
    assert elapsed >= 25 * 820 / 20000 * 0.9


def test_a_document_not_yet_answered_is_paced_as_the_cap_and_not_sent_into_an_empty_bucket(shop, sandbox):
    # 2000 points/s: the shop query's few points are back within a millisecond, a product query's 820 in 0.41 s.
    shop.restore_rate = 2000
    sandbox.throttle_next(DOMAIN, count=1, drain=True)
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        hook.shop_info()  # throttled once into an empty bucket, then served after the wait for its own cost
        start = time.monotonic()
        assert complete(list(hook.iter_products(IDS)))
        # Sent as soon as the shop query was served, the first product query would find the bucket empty.
        assert hook.throttled == 1 and sandbox.stats(DOMAIN)["throttled"] == 1
    assert time.monotonic() - start >= 820 / 2000 * 0.9


def test_endless_throttling_gives_up_after_max_throttle_waits(shop, sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SHOPIFY_DEFAULT", shopify_env(sandbox.endpoint_template, **FAST, max_throttle_waits=3)
    )
    sandbox.throttle_next(DOMAIN, count=10, drain=True)
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        with pytest.raises(ShopifyError, match=f"Shop {DOMAIN}: still throttled after 3 waits"):
            hook.shop_info()
    assert requests_made(sandbox) == 4


# --- HTTP-level faults -----------------------------------------------------------------------------------


def test_429_with_retry_after_waits_what_shopify_says(shop, sandbox):
    sandbox.fail_next(DOMAIN, status=429, retry_after=0.4)
    start = time.monotonic()
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        assert hook.shop_info()["myshopifyDomain"] == DOMAIN
    assert time.monotonic() - start >= 0.4 and requests_made(sandbox) == 2


def test_429_without_retry_after_backs_off_and_retries(shop, sandbox):
    sandbox.fail_next(DOMAIN, status=429, count=2)
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        assert hook.shop_info()["myshopifyDomain"] == DOMAIN
    assert requests_made(sandbox) == 3


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried(shop, sandbox, status):
    sandbox.fail_next(DOMAIN, status=status, count=3)
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        assert complete(list(hook.iter_products(IDS)))
    assert requests_made(sandbox) == 3 + 3


def test_persistent_5xx_gives_up_after_max_attempts(shop, sandbox):
    sandbox.fail_next(DOMAIN, status=503, count=10)
    with ShopifyHook(DOMAIN, TOKEN) as hook, pytest.raises(ShopifyRetryableError, match=f"Shop {DOMAIN}: HTTP 503"):
        hook.shop_info()
    assert requests_made(sandbox) == FAST["max_attempts"]


def test_connection_reset_surfaces_as_a_retryable_requests_error(shop, sandbox):
    sandbox.reset_next(DOMAIN)
    url = sandbox.endpoint_template.format(shop=DOMAIN, api_version="2026-07")
    with pytest.raises(requests.ConnectionError) as raised:
        requests.post(url, json={"query": "{ shop { name } }"}, headers={"X-Shopify-Access-Token": TOKEN}, timeout=5)
    chain, error = [], raised.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__ or (error.args[-1] if error.args else None)
        error = error if isinstance(error, BaseException) else None
    assert any(isinstance(e, ConnectionResetError) for e in chain), chain


def test_connection_resets_are_retried(shop, sandbox):
    sandbox.reset_next(DOMAIN, count=2)
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        assert complete(list(hook.iter_products(IDS)))
    assert requests_made(sandbox) == 2 + 3


def test_read_timeout_is_retried_without_waiting_for_the_stall(shop, sandbox):
    sandbox.stall_next(DOMAIN, seconds=5)
    start = time.monotonic()
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        assert hook.shop_info()["myshopifyDomain"] == DOMAIN
    elapsed = time.monotonic() - start
    assert FAST["timeout"] <= elapsed < 4 and requests_made(sandbox) == 2


@pytest.mark.parametrize("status", [200, 502])
def test_a_body_that_is_not_json_is_retried(shop, sandbox, status):
    sandbox.html_next(DOMAIN, status=status, count=2)
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        assert hook.shop_info()["myshopifyDomain"] == DOMAIN
    assert requests_made(sandbox) == 3


def test_html_200_forever_names_the_content_type(shop, sandbox):
    sandbox.html_next(DOMAIN, count=10)
    with ShopifyHook(DOMAIN, TOKEN) as hook, pytest.raises(ShopifyRetryableError, match="not JSON .*text/html"):
        hook.shop_info()


# --- GraphQL-level faults ----------------------------------------------------------------------------------


def test_internal_error_beside_partial_data_is_retried_whole(shop, sandbox):
    sandbox.partial_error_next(DOMAIN, code="INTERNAL_SERVER_ERROR")
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        products = list(hook.iter_products(IDS))
    assert complete(products) and None not in products  # the nulled product is not taken as deleted
    assert requests_made(sandbox) == 1 + 3


def test_other_error_beside_partial_data_names_the_shop_and_path(shop, sandbox):
    sandbox.partial_error_next(DOMAIN, code="ACCESS_DENIED")
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        with pytest.raises(ShopifyError, match=rf"Shop {DOMAIN}: GraphQL errors: .*\[ACCESS_DENIED\] at nodes\.0"):
            list(hook.iter_products(IDS))
    assert requests_made(sandbox) == 1  # not retried: asking again cannot grant access


def test_max_cost_exceeded_halves_the_pages_and_goes_on(shop, sandbox):
    sandbox.set_max_query_cost(DOMAIN, 300)
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        products = list(hook.iter_products(IDS))
        summaries = list(hook.iter_product_summaries())
        assert hook.pager.sizes(PRODUCTS_BY_ID) == {"ids": 2, "variantsFirst": 10}
    assert complete(products) and len(summaries) == 6
    assert [v["legacyResourceId"] for v in products[0]["variants"]] == [str(1000 + n) for n in range(1, 31)]
    queries = sandbox.stats(DOMAIN)["queries"]
    assert sandbox.stats(DOMAIN)["cost_charged"] > 0 and len(queries) > 6


def test_max_cost_too_low_for_one_product_is_a_clear_error(shop, sandbox):
    sandbox.set_max_query_cost(DOMAIN, 20)
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        with pytest.raises(ShopifyQueryCostError, match="even one product with one variant exceeds"):
            list(hook.iter_products(IDS[:1]))


# --- permanent faults ------------------------------------------------------------------------------------


def test_unserved_api_version_is_a_clear_error(shop, sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SHOPIFY_DEFAULT",
        json.dumps(
            {
                "conn_type": "generic",
                "extra": {"api_version": "2024-01", "endpoint_template": sandbox.endpoint_template},
            }
        ),
    )
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        with pytest.raises(ShopifyError, match="no longer serves API version 2024-01 \\(it answered with 2026-01\\)"):
            hook.shop_info()
    assert requests_made(sandbox) == 1


def test_revoked_token_is_fatal_at_once_and_never_echoed(shop, sandbox):
    sandbox.revoke_token(DOMAIN)
    with ShopifyHook(DOMAIN, TOKEN) as hook:
        with pytest.raises(ShopifyAuthError, match=f"{DOMAIN}.*HTTP 401") as err:
            hook.shop_info()
    assert TOKEN not in str(err.value) and TOKEN not in repr(hook)
    assert requests_made(sandbox) == 1  # no retries


# --- convergence: a whole export through each transient fault --------------------------------------------


def _storm(sandbox, domain):
    sandbox.throttle_next(domain, count=6, drain=True)


CONVERGING_FAULTS = {
    "throttled_storm": _storm,
    "429": lambda sandbox, domain: sandbox.fail_next(domain, status=429, count=2, after=1),
    "503": lambda sandbox, domain: sandbox.fail_next(domain, status=503, count=2, after=1),
    "connection_reset": lambda sandbox, domain: sandbox.reset_next(domain, count=2, after=1),
    "read_timeout": lambda sandbox, domain: sandbox.stall_next(domain, seconds=5, after=1),
    "html_200": lambda sandbox, domain: sandbox.html_next(domain, status=200, after=1),
    "internal_error_partial": lambda sandbox, domain: sandbox.partial_error_next(domain, after=1),
    "max_cost": lambda sandbox, domain: sandbox.set_max_query_cost(domain, 300),
}


@pytest.mark.parametrize("inject", CONVERGING_FAULTS.values(), ids=CONVERGING_FAULTS.keys())
def test_export_converges_through_the_fault(world, sandbox, monkeypatch, inject):
    monkeypatch.setenv("AIRFLOW_CONN_SHOPIFY_DEFAULT", shopify_env(sandbox.endpoint_template, **FAST))
    domain = f"{SHOP.replace('_', '-')}.myshopify.com"
    sandbox.shop(domain).restore_rate = 20000
    sandbox.reset_stats(domain)
    inject(sandbox, domain)
    world.run()
    assert world.state() == world.expected
    stats = sandbox.stats(domain)
    assert stats["requests"] > 2 and sandbox.pending_faults(domain) == 0  # every queued fault was served
