"""The Shopify side of the retry policy (export_hooks.shopify_retry), counted try by try: what a query is tried
again for and how many times. The project's worst case (hook x unit x Airflow) is built on these numbers."""

from collections.abc import Callable

import pytest
import requests

from export_hooks.errors import TransientError
from export_hooks.shopify_protocol import (
    ShopifyAuthError,
    ShopifyError,
    ShopifyQueryCostError,
    ShopifyRetryableError,
    ShopifyThrottledError,
    ShopifyTokenRejected,
)
from export_hooks.shopify_retry import SHOPIFY_ATTEMPTS, SHOPIFY_RENEWALS, ShopifyTries
from export_hooks.shopify_transport import EXTRA_DEFAULTS, ShopifyConnection

DOMAIN = "policy.myshopify.com"


def connection(max_attempts: int = SHOPIFY_ATTEMPTS, max_throttle_waits: int = 5) -> ShopifyConnection:
    """Return a connection with the default tries and no waiting between them."""
    return ShopifyConnection(
        conn_id="shopify_default",
        api_version="2026-07",
        endpoint_template="https://{shop}/graphql.json",
        token_endpoint_template="https://{shop}/token",
        timeout=1,
        max_attempts=max_attempts,
        max_throttle_waits=max_throttle_waits,
        retry_wait_base=0,
        retry_wait_max=0,
        max_retry_after=0,
    )


class Answers:
    """A request answering each try from a script: an exception is raised, anything else returned."""

    def __init__(self, *script: object):
        self.script = list(script)
        self.tries = 0

    def __call__(self) -> object:
        answer = self.script[min(self.tries, len(self.script) - 1)]
        self.tries += 1
        if isinstance(answer, BaseException):
            raise answer
        return answer


def test_the_default_is_eight_tries_and_the_connection_uses_it():
    assert SHOPIFY_ATTEMPTS == EXTRA_DEFAULTS["max_attempts"] == 8


@pytest.mark.parametrize(
    "fault",
    [
        ShopifyRetryableError(f"Shop {DOMAIN}: HTTP 503 from Shopify"),
        requests.ConnectionError("reset"),
        requests.Timeout("read timed out"),
    ],
    ids=["5xx", "connection_error", "timeout"],
)
def test_a_transient_fault_is_tried_max_attempts_times_and_then_raised_as_it_is(fault):
    request = Answers(fault)
    with pytest.raises(type(fault)):
        ShopifyTries(connection(), DOMAIN).run(request)
    assert request.tries == SHOPIFY_ATTEMPTS


def test_throttles_spend_no_attempt():
    throttled = ShopifyThrottledError(f"Shop {DOMAIN}: throttled", 0.0)
    failed = ShopifyRetryableError(f"Shop {DOMAIN}: HTTP 502 from Shopify")
    request = Answers(*[throttled, failed] * 4, throttled, {"shop": {}})
    tries = ShopifyTries(connection(max_attempts=5), DOMAIN)
    assert tries.run(request) == {"shop": {}}
    assert (tries.failures, tries.throttle_waits) == (4, 5)


def test_endless_throttling_ends_after_max_throttle_waits_naming_the_shop():
    request = Answers(ShopifyThrottledError(f"Shop {DOMAIN}: throttled", 0.0))
    with pytest.raises(ShopifyError, match=f"Shop {DOMAIN}: still throttled after 5 waits") as raised:
        ShopifyTries(connection(max_throttle_waits=5), DOMAIN).run(request)
    assert request.tries == 6 and not isinstance(raised.value, TransientError)


def test_a_401_renews_the_token_once_spending_no_attempt():
    renewed: list[int] = []

    def renewal(generation: int) -> bool:
        renewed.append(generation)
        return True

    request = Answers(ShopifyTokenRejected(f"Shop {DOMAIN}: HTTP 401", generation=0))
    with pytest.raises(ShopifyTokenRejected):
        ShopifyTries(connection(), DOMAIN, renewal=renewal).run(request)
    assert renewed == [0] * SHOPIFY_RENEWALS and request.tries == 1 + SHOPIFY_RENEWALS


@pytest.mark.parametrize("renewal", [None, lambda generation: False], ids=["cannot_renew", "renewal_refused"])
def test_a_401_that_cannot_be_renewed_is_final(renewal: Callable[[int], bool] | None):
    request = Answers(ShopifyTokenRejected(f"Shop {DOMAIN}: HTTP 401"))
    with pytest.raises(ShopifyTokenRejected):
        ShopifyTries(connection(), DOMAIN, renewal=renewal).run(request)
    assert request.tries == 1


@pytest.mark.parametrize(
    "fault",
    [
        ShopifyAuthError(f"Shop {DOMAIN}: HTTP 403"),
        ShopifyError(f"Shop {DOMAIN}: GraphQL errors: denied [ACCESS_DENIED]"),
        ShopifyQueryCostError(f"Shop {DOMAIN}: too costly [MAX_COST_EXCEEDED]"),
        KeyError("products"),
    ],
    ids=["403", "graphql_error", "max_cost_for_the_pager", "a_bug"],
)
def test_anything_else_is_tried_once(fault):
    request = Answers(fault)
    with pytest.raises(type(fault)):
        ShopifyTries(connection(), DOMAIN).run(request)
    assert request.tries == 1
