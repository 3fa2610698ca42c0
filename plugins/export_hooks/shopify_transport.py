"""One shop's line to the Admin GraphQL API: the connection's settings, the HTTP session, the token (and its
renewal), pacing by the cost bucket, the reading of each answer, and the one retry loop every query runs in
(``shopify_retry``). The hook (shopify.py) reads the shop through it."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from airflow.sdk import BaseHook

from export_hooks import shopify_queries as q
from export_hooks.masking import mask_secret_once
from export_hooks.shopify_protocol import (
    ShopifyAuthError,
    ShopifyError,
    ShopifyNonExpiringTokenRejected,
    ShopifyQueryCostError,
    ShopifyRetryableError,
    ShopifyThrottledError,
    ShopifyTokenRejected,
    ThrottleState,
    backoff_seconds,
    describe_error,
    float_or_none,
    normalize_shop_domain,
    retry_after,
)
from export_hooks.shopify_retry import SHOPIFY_ATTEMPTS, SHOPIFY_THROTTLE_WAITS, ShopifyTries

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "shopify_default"
DEFAULT_API_VERSION = "2026-07"
DEFAULT_ENDPOINT_TEMPLATE = "https://{shop}/admin/api/{api_version}/graphql.json"
DEFAULT_TOKEN_ENDPOINT_TEMPLATE = "https://{shop}/admin/oauth/access_token"
# What Shopify answers (HTTP 403) a public app's non-expiring token after 2027-01-01 (observed for new apps).
NON_EXPIRING_REFUSAL = "Non-expiring access tokens are no longer accepted"
# The connection extra's numeric options and their defaults (ShopifyHook's docstring says what each means).
EXTRA_DEFAULTS: dict[str, float] = {
    "timeout": 60,
    "max_attempts": SHOPIFY_ATTEMPTS,
    "max_throttle_waits": SHOPIFY_THROTTLE_WAITS,
    "retry_wait_base": 0.5,
    "retry_wait_max": 30,
    "max_retry_after": 60,
}
_API_VERSION = re.compile(r"^\d{4}-(01|04|07|10)$|^unstable$")


@dataclass(frozen=True)
class ShopifyConnection:
    """What the ``shopify_default`` connection says, read and checked once: every shop's hook shares it.

    A packed unit opens a hook per shop; reading the connection once for them all spares each shop a lookup
    and the masking of the connection's extra (in a task, a message to the supervisor each time).
    """

    conn_id: str
    api_version: str
    endpoint_template: str
    token_endpoint_template: str
    timeout: float
    max_attempts: int
    max_throttle_waits: int
    retry_wait_base: float
    retry_wait_max: float
    max_retry_after: float

    @classmethod
    def read(cls, conn_id: str = DEFAULT_CONN_ID) -> ShopifyConnection:
        """Read the connection ``conn_id``; raise ValueError naming what is wrong in its extra."""
        extra = {**EXTRA_DEFAULTS, **BaseHook.get_connection(conn_id).extra_dejson}
        api_version = str(extra.get("api_version") or DEFAULT_API_VERSION)
        if not _API_VERSION.match(api_version):
            raise ValueError(f"api_version must look like 2026-07, got {api_version!r}")
        template = str(extra.get("endpoint_template") or DEFAULT_ENDPOINT_TEMPLATE)
        if "{shop}" not in template:
            raise ValueError("endpoint_template must contain {shop}")
        token_template = str(extra.get("token_endpoint_template") or DEFAULT_TOKEN_ENDPOINT_TEMPLATE)
        if "{shop}" not in token_template:
            raise ValueError("token_endpoint_template must contain {shop}")
        return cls(
            conn_id=conn_id,
            api_version=api_version,
            endpoint_template=template,
            token_endpoint_template=token_template,
            timeout=float(extra["timeout"]),
            max_attempts=int(extra["max_attempts"]),
            max_throttle_waits=int(extra["max_throttle_waits"]),
            retry_wait_base=float(extra["retry_wait_base"]),
            retry_wait_max=float(extra["retry_wait_max"]),
            max_retry_after=float(extra["max_retry_after"]),
        )

    def backoff(self, attempt: int, hinted: float | None) -> float:
        """Return the wait before try ``attempt + 1``: Retry-After when Shopify said, else exponential backoff."""
        return backoff_seconds(
            attempt, hinted, base=self.retry_wait_base, cap=self.retry_wait_max, max_retry_after=self.max_retry_after
        )


# Given the token Shopify just answered 401, return the token to ask again with (refreshed, or the one another
# process stored meanwhile), or None when the shop's session cannot be refreshed (a non-expiring token).
Renew = Callable[[str], str | None]


class ShopifyTransport:
    """Send one shop's GraphQL documents, paced by its cost bucket, each in the one retry loop.

    Thread-safe: a shop's pages of products are read by several threads through one transport.

    :param shop_domain: the shop's myshopify domain (never a custom domain).
    :param access_token: the shop's Admin API access token; it is only ever sent as a header, and masked in
        Airflow's task logs as soon as the transport holds it.
    :param connection: the ``shopify_default`` connection, read.
    :param renew: given the token Shopify answered 401, the token to ask again with, or None when it cannot be
        renewed.
    """

    def __init__(self, shop_domain: str, access_token: str, connection: ShopifyConnection, renew: Renew | None):
        if not access_token or not access_token.strip():
            raise ValueError(f"Shop {shop_domain}: the access token is empty")
        self._access_token = access_token.strip()
        mask_secret_once(self._access_token)
        self._renew = renew
        # Which token is held: a 401 names the generation it answered, so threads sharing the transport renew
        # once, not once each.
        self._token_generation = 0
        self._token_lock = threading.Lock()
        self.shop_domain = normalize_shop_domain(shop_domain)
        self.connection = connection
        self.endpoint = connection.endpoint_template.format(shop=self.shop_domain, api_version=connection.api_version)
        self._session: requests.Session | None = None
        self._throttle = ThrottleState()
        self._throttle_lock = threading.Lock()
        self._requested_cost: dict[str, float] = {}
        self.cost_charged = 0.0
        self.throttled = 0

    def session(self) -> requests.Session:
        """Return the HTTP session every request reuses."""
        if self._session is None:
            session = requests.Session()
            # The token goes with each request (_post): it may be renewed while the session lives.
            session.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one GraphQL document and return its ``data``, retrying as ``shopify_retry`` says."""
        tries = ShopifyTries(self.connection, self.shop_domain, renewal=self._renewed_since)
        return tries.run(lambda: self._post(query, variables or {}))

    def _renewed_since(self, generation: int) -> bool:
        """Hold a token newer than ``generation`` (renewing it now unless another thread just did); False when the
        token cannot be renewed."""
        with self._token_lock:
            if self._token_generation != generation:
                return True
            if self._renew is None:
                return False
            log.info("Shop %s: Shopify rejected the access token (HTTP 401); renewing it once", self.shop_domain)
            renewed = self._renew(self._access_token)
            if renewed is None or not renewed.strip():
                return False
            self._access_token = renewed.strip()
            mask_secret_once(self._access_token)
            self._token_generation += 1
            return True

    def _post(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Send the document once, paced, and return its ``data``; raise what the answer means."""
        self._pace(query)
        with self._token_lock:
            token, generation = self._access_token, self._token_generation
        response = self.session().post(
            self.endpoint,
            json={"query": query, "variables": variables},
            headers={"X-Shopify-Access-Token": token},
            timeout=self.connection.timeout,
        )
        self._raise_for_status(response, generation)
        served = response.headers.get("X-Shopify-API-Version")
        if served and served != self.connection.api_version:
            raise ShopifyError(
                f"Shop {self.shop_domain}: Shopify no longer serves API version {self.connection.api_version} "
                f"(it answered with {served}); set api_version in the {self.connection.conn_id} connection"
            )
        try:
            body = response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "unknown content type")
            raise ShopifyRetryableError(f"Shop {self.shop_domain}: the response body is not JSON ({kind})") from None
        if not isinstance(body, dict):
            raise ShopifyRetryableError(f"Shop {self.shop_domain}: the response body is not a JSON object")
        self._record_cost(query, body.get("extensions", {}).get("cost"))
        errors = body.get("errors")
        if errors:
            self._raise_for_errors(query, errors)
        if body.get("data") is None:
            raise ShopifyError(f"Shop {self.shop_domain}: response without data")
        return body["data"]

    def _raise_for_status(self, response: requests.Response, generation: int) -> None:
        status = response.status_code
        if status == 403 and NON_EXPIRING_REFUSAL in response.text:
            raise ShopifyNonExpiringTokenRejected(
                f"Shop {self.shop_domain}: Shopify no longer accepts its non-expiring access token (HTTP 403): "
                "public apps must use expiring offline tokens since 2027-01-01. Migrate the shop with "
                "`python -m include.statistics_export.tasks.token_migration --execute`, or have the merchant open "
                "the app"
            )
        if status in (401, 403):
            message = (
                f"Shop {self.shop_domain}: Shopify rejected the access token (HTTP {status}); "
                "reinstall the app or fix the shop's session"
            )
            raise ShopifyTokenRejected(message, generation) if status == 401 else ShopifyAuthError(message)
        if status == 429:
            raise ShopifyRetryableError(f"Shop {self.shop_domain}: HTTP 429 Too Many Requests", retry_after(response))
        if status >= 500:
            raise ShopifyRetryableError(f"Shop {self.shop_domain}: HTTP {status} from Shopify")
        if status == 404:
            raise ShopifyError(f"Shop {self.shop_domain}: HTTP 404 from {self.endpoint} (unknown shop?)")
        if status != 200:
            raise ShopifyError(f"Shop {self.shop_domain}: unexpected HTTP {status} from Shopify")

    def _raise_for_errors(self, query: str, errors: Any) -> None:
        if not isinstance(errors, list):
            raise ShopifyError(f"Shop {self.shop_domain}: {errors}")
        codes = {(e.get("extensions") or {}).get("code") for e in errors if isinstance(e, dict)}
        messages = "; ".join(describe_error(e) for e in errors)
        if "THROTTLED" in codes:
            self.throttled += 1
            raise ShopifyThrottledError(f"Shop {self.shop_domain}: throttled", self._throttled_wait(query))
        if "MAX_COST_EXCEEDED" in codes:
            raise ShopifyQueryCostError(f"Shop {self.shop_domain}: {messages}")
        if codes == {"INTERNAL_SERVER_ERROR"}:
            # Shopify's own failure, even beside partial data: the whole query is asked again.
            raise ShopifyRetryableError(f"Shop {self.shop_domain}: {messages}")
        raise ShopifyError(f"Shop {self.shop_domain}: GraphQL errors: {messages}")

    # -- the cost bucket -------------------------------------------------------------------------

    def _record_cost(self, query: str, cost: dict[str, Any] | None) -> None:
        if not cost:
            return
        if cost.get("requestedQueryCost") is not None:
            self._requested_cost[query] = float(cost["requestedQueryCost"])
        if cost.get("actualQueryCost") is not None:
            self.cost_charged += float(cost["actualQueryCost"])
        status = cost.get("throttleStatus") or {}
        with self._throttle_lock:
            self._throttle = ThrottleState(
                available=float_or_none(status.get("currentlyAvailable")),
                maximum=float_or_none(status.get("maximumAvailable")),
                restore_rate=float_or_none(status.get("restoreRate")),
                seen_at=time.monotonic(),
            )

    def _expected_cost(self, query: str) -> float:
        """Return what this document requested last time; one not answered yet is taken to request the cap
        every document stays under (sent unpaced into a bucket the previous query emptied, it would be
        THROTTLED for a guess)."""
        return self._requested_cost.get(query, float(q.MAX_QUERY_COST))

    def _seconds_until_affordable(self, query: str) -> float:
        """Return how long until the bucket should hold what this document requests."""
        with self._throttle_lock:
            return self._throttle.seconds_until(self._expected_cost(query))

    def _throttled_wait(self, query: str) -> float:
        """Return how long to wait after THROTTLED: until the requested points are back, per throttleStatus.

        When the status already shows enough points (other workers of the app spend them too), wait
        the time the bucket takes to restore this query's cost, so retries do not spin.
        """
        wait = self._seconds_until_affordable(query)
        if wait > 0:
            return wait
        with self._throttle_lock:
            rate = self._throttle.restore_rate
        return self._expected_cost(query) / rate if rate else self.connection.retry_wait_base

    def _pace(self, query: str) -> None:
        """Sleep until the bucket should hold what this document requests."""
        wait = self._seconds_until_affordable(query)
        if wait > 0:
            log.debug("Shop %s: pacing %.2fs for the cost bucket", self.shop_domain, wait)
            time.sleep(wait)
