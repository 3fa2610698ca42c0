"""The Shopify side of the export's retry policy, in one place: what a request to Shopify is tried again for,
how many times, and how long it waits first. The hook's every query (``shopify_transport``) and the token
endpoint's every request (``shopify_tokens``) run through ``ShopifyTries``, the one retry loop of both.

Per query (the ``shopify_default`` connection's extra sets the numbers; the defaults are given):

- transient faults, tried at most ``max_attempts`` times in all (``SHOPIFY_ATTEMPTS``, 8): HTTP 429 (after
  its Retry-After, at most ``max_retry_after``, 60 s), 5xx, a body that is not a JSON object, a GraphQL
  INTERNAL_SERVER_ERROR (even beside partial data), connection errors (resets) and timeouts; between tries
  exponential backoff with jitter (``retry_wait_base`` 0.5 s doubling up to ``retry_wait_max``, 30 s). The last
  fault is raised as it is: a ShopifyRetryableError is a TransientError, which the packed unit and Airflow may
  try again (the project's whole policy multiplies these tries: hook x unit x Airflow).
- THROTTLED: pacing, not a failure, so it spends no attempt: waited out as throttleStatus says, at most
  ``max_throttle_waits`` (60) times, then ShopifyError ("still throttled after N waits").
- HTTP 401: the token is renewed once (when the hook can: an expiring token's session) and the query asked
  again, spending no attempt and not starting the count again; a second 401 raises ShopifyTokenRejected (a
  PermanentError). The renewal's request to the token endpoint is a request of its own, tried by the
  same rules.
- MAX_COST_EXCEEDED is not retried here: the pager (``shopify_pager``) asks again with half the page.
- Anything else is never tried again: 403, 404, another GraphQL error, an API version Shopify no longer
  serves, a token endpoint's refusal.

A bulk operation's result file (``shopify_bulk.iter_bulk_result``, a URL Shopify signed: no token, no cost)
is downloaded at most ``BULK_RESULT_ATTEMPTS`` (4) times on connection errors and timeouts, from its first line
each time (the lines read twice replace themselves: ``bulk_catalog`` keys them by id and parent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import requests
from tenacity import RetryCallState, Retrying

from export_hooks.shopify_protocol import (
    ShopifyError,
    ShopifyRetryableError,
    ShopifyThrottledError,
    ShopifyTokenRejected,
)

if TYPE_CHECKING:
    from export_hooks.shopify_transport import ShopifyConnection

log = logging.getLogger(__name__)

# Tries per query on transient faults: the connection's ``max_attempts`` unless its extra says otherwise.
SHOPIFY_ATTEMPTS = 8
# THROTTLED answers waited out per query (they spend no attempt).
SHOPIFY_THROTTLE_WAITS = 60
# Renewals of the token per query on HTTP 401 (they spend no attempt).
SHOPIFY_RENEWALS = 1
# Downloads of a bulk result on connection errors and timeouts.
BULK_RESULT_ATTEMPTS = 4
# What is tried again after a backoff (ShopifyThrottledError, a subclass, is waited out instead).
TRANSIENT = (ShopifyRetryableError, requests.ConnectionError, requests.Timeout)

T = TypeVar("T")
# Given the token generation Shopify answered 401, tell whether a newer token is now held (renewed, by this
# thread or another); False when the token cannot be renewed.
Renewal = Callable[[int], bool]


class ShopifyTries:
    """One request's tries under the policy above: tenacity runs the loop, this decides each turn of it.

    :param connection: the connection whose ``max_attempts``, ``max_throttle_waits`` and backoff apply.
    :param shop_domain: the shop, named in the log and in the error of endless throttling.
    :param renewal: how to renew the token after a 401 (None: a 401 is final).
    """

    def __init__(self, connection: ShopifyConnection, shop_domain: str, renewal: Renewal | None = None):
        self.connection = connection
        self.shop_domain = shop_domain
        self.renewal = renewal
        self.failures = 0
        self.throttle_waits = 0
        self.renewals = 0
        self._next_wait = 0.0

    def run(self, request: Callable[[], T]) -> T:
        """Return what ``request`` returns, trying it again as the policy allows; raise the last fault."""
        try:
            return Retrying(retry=self._again, wait=lambda _: self._next_wait, reraise=True)(request)
        except ShopifyThrottledError:
            raise ShopifyError(
                f"Shop {self.shop_domain}: still throttled after {self.throttle_waits} waits; the cost bucket "
                "never refilled"
            ) from None

    def _again(self, state: RetryCallState) -> bool:
        """Tell whether to try again after the fault ``state`` holds, and set how long to wait first."""
        fault = state.outcome.exception() if state.outcome else None
        if isinstance(fault, ShopifyThrottledError):
            if self.throttle_waits >= self.connection.max_throttle_waits:
                return False
            self.throttle_waits += 1
            self._next_wait = fault.wait_seconds or 0.0
            log.info("Shop %s: throttled, waiting %.2fs as throttleStatus says", self.shop_domain, self._next_wait)
            return True
        if isinstance(fault, ShopifyTokenRejected):
            if self.renewals >= SHOPIFY_RENEWALS or self.renewal is None or not self.renewal(fault.generation):
                return False
            self.renewals += 1
            self._next_wait = 0.0
            return True
        if isinstance(fault, TRANSIENT):
            self.failures += 1
            if self.failures >= self.connection.max_attempts:
                return False
            self._next_wait = self.connection.backoff(self.failures, getattr(fault, "wait_seconds", None))
            log.warning(
                "Shop %s: attempt %d failed (%s); retrying",
                self.shop_domain,
                self.failures,
                type(fault).__name__ if isinstance(fault, requests.RequestException) else fault,
            )
            return True
        return False
