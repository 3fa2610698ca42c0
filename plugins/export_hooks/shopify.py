"""Shopify Admin GraphQL hook: one shop, one HTTP session, paced by Shopify's cost throttle."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from airflow.sdk import BaseHook
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from export_hooks import shopify_queries as q
from export_hooks.masking import mask_secret_once
from export_hooks.shopify_bulk import (
    BulkAccessDenied,
    BulkOperation,
    BulkOperationFailed,
    BulkOperationInProgress,
)
from export_hooks.shopify_protocol import (  # noqa: F401 - the errors are part of the hook's interface
    ShopifyAuthError,
    ShopifyError,
    ShopifyNonExpiringTokenRejected,
    ShopifyQueryCostError,
    ShopifyRetryableError,
    ShopifyThrottledError,
    ShopifyTokenRefused,
    ShopifyTokenRejected,
    ThrottleState,
    backoff_seconds,
    describe_error,
    float_or_none,
    normalize_shop_domain,
    retry_after,
)

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "shopify_default"
DEFAULT_API_VERSION = "2026-07"
DEFAULT_ENDPOINT_TEMPLATE = "https://{shop}/admin/api/{api_version}/graphql.json"
DEFAULT_TOKEN_ENDPOINT_TEMPLATE = "https://{shop}/admin/oauth/access_token"
# What Shopify answers (HTTP 403) a public app's non-expiring token after 2027-01-01 (observed for new apps).
NON_EXPIRING_REFUSAL = "Non-expiring access tokens are no longer accepted"
# The connection extra's numeric options and their defaults (the docstring below says what each means).
EXTRA_DEFAULTS: dict[str, float] = {
    "timeout": 60,
    "max_attempts": 8,
    "max_throttle_waits": 60,
    "retry_wait_base": 0.5,
    "retry_wait_max": 30,
    "max_retry_after": 60,
}
# Picks a connection (``{pageInfo, nodes}``) out of a query's data.
Selector = Callable[[dict[str, Any]], dict[str, Any]]
# Given the token Shopify just answered 401, return the token to ask again with (refreshed, or the one another
# process stored meanwhile), or None when the shop's session cannot be refreshed (a non-expiring token).
Renew = Callable[[str], str | None]
_API_VERSION = re.compile(r"^\d{4}-(01|04|07|10)$|^unstable$")


@dataclass(frozen=True)
class ShopCatalogPage:
    """One answer of the shop-catalog document: the shop's currency and product count, and full products."""

    currency: str | None
    products_count: int
    products: list[dict[str, Any]]


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


class ShopifyHook(BaseHook):
    """
    Query one shop's Admin GraphQL API with its access token.

    Connection (conn_type ``generic``, id ``shopify_default``): extra ``api_version`` (default
    ``2026-07``), ``endpoint_template`` (default ``https://{shop}/admin/api/{api_version}/graphql.json``) and
    ``token_endpoint_template`` (default ``https://{shop}/admin/oauth/access_token``, where expiring tokens are
    refreshed: ``shopify_tokens.ShopifyTokenEndpoint``), optionally ``timeout`` (seconds per request, 60), ``max_attempts`` (tries per query on transport
    errors, 429 and 5xx, 8), ``max_throttle_waits`` (THROTTLED answers waited out per query, 60),
    ``retry_wait_base`` and ``retry_wait_max`` (exponential backoff, 0.5 s doubling up to 30 s),
    ``max_retry_after`` (the longest Retry-After obeyed, 60 s).

    The access token is masked in Airflow's task logs as soon as the hook holds it.

    Faults: THROTTLED is waited out as throttleStatus says (not counted as a failed attempt); 429 waits
    Retry-After when given; 5xx, a body that is not JSON, connection errors and timeouts are retried
    with backoff; GraphQL errors coded INTERNAL_SERVER_ERROR are retried, any other GraphQL error (even
    beside partial data) raises ShopifyError naming the shop and the error's path, so no product is
    ever dropped silently; MAX_COST_EXCEEDED halves this hook's page sizes and tries again; 401/403 and
    an API version Shopify no longer serves raise at once, except that a hook given ``renew`` answers a 401 (an
    expiring token whose hour ended mid-run, or one the app rotated) by renewing its token once and asking again.
    A 403 saying non-expiring tokens are no longer accepted raises ShopifyNonExpiringTokenRejected.

    :param shop_domain: the shop's myshopify domain (never a custom domain).
    :param access_token: the shop's Admin API access token; it is only ever sent as a header.
    :param shopify_conn_id: the Airflow connection id.
    :param connection: the connection already read (``ShopifyConnection.read``), for many shops' hooks at once;
        ``shopify_conn_id`` is then not read again.
    :param renew: given the token Shopify answered 401, the token to ask again with, or None when it cannot be
        renewed (the shop's session has no refresh token).
    """

    conn_name_attr = "shopify_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "generic"
    hook_name = "Shopify Admin GraphQL"

    def __init__(
        self,
        shop_domain: str,
        access_token: str,
        shopify_conn_id: str = default_conn_name,
        *,
        connection: ShopifyConnection | None = None,
        renew: Renew | None = None,
    ):
        super().__init__()
        if not access_token or not access_token.strip():
            raise ValueError(f"Shop {shop_domain}: the access token is empty")
        self._access_token = access_token.strip()
        mask_secret_once(self._access_token)
        self._renew = renew
        # Which token the hook holds: a 401 names the generation it answered, so threads sharing the hook
        # renew once, not once each.
        self._token_generation = 0
        self._token_lock = threading.Lock()
        self.shop_domain = normalize_shop_domain(shop_domain)
        settings = connection or ShopifyConnection.read(shopify_conn_id)
        self.shopify_conn_id = settings.conn_id
        self.api_version = settings.api_version
        self.endpoint = settings.endpoint_template.format(shop=self.shop_domain, api_version=self.api_version)
        self.timeout = settings.timeout
        self.max_attempts = settings.max_attempts
        self.max_throttle_waits = settings.max_throttle_waits
        self.retry_wait_base = settings.retry_wait_base
        self.retry_wait_max = settings.retry_wait_max
        self.max_retry_after = settings.max_retry_after
        # Page sizes start at the documents' defaults and shrink if Shopify refuses a query as too costly.
        self.products_per_query = q.PRODUCTS_PER_QUERY
        self.variants_first = q.VARIANTS_FIRST
        self._page_first: dict[str, int] = {}
        self._session: requests.Session | None = None
        self._throttle = ThrottleState()
        self._throttle_lock = threading.Lock()
        self._requested_cost: dict[str, float] = {}
        self.cost_charged = 0.0
        self.throttled = 0

    def __enter__(self) -> ShopifyHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ShopifyHook(shop_domain={self.shop_domain!r}, api_version={self.api_version!r})"

    def get_conn(self) -> requests.Session:
        """Return the HTTP session this hook reuses for every request."""
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

    # -- one query -------------------------------------------------------------------------------

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one GraphQL document, pacing and retrying transient failures, and return its ``data``; a 401 is
        answered by renewing the token once (when the hook can) and running the document again."""
        try:
            return self._execute(query, variables)
        except ShopifyTokenRejected as rejected:
            if not self._renewed_since(rejected.generation):
                raise
            return self._execute(query, variables)

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

    def _execute(self, query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
        retrying = Retrying(
            retry=retry_if_exception_type((ShopifyRetryableError, requests.ConnectionError, requests.Timeout)),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._backoff,
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(self._post_until_served, query, variables or {})

    def _post_until_served(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Post, waiting out THROTTLED answers: they are pacing, not failures, so they spend no attempt."""
        waits = 0
        while True:
            try:
                return self._post(query, variables)
            except ShopifyThrottledError as exc:
                if waits >= self.max_throttle_waits:
                    raise ShopifyError(
                        f"Shop {self.shop_domain}: still throttled after {waits} waits; the cost bucket never refilled"
                    ) from None
                waits += 1
                log.info("Shop %s: throttled, waiting %.2fs as throttleStatus says", self.shop_domain, exc.wait_seconds)
                time.sleep(exc.wait_seconds or 0.0)

    def _post(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        self._pace(query)
        with self._token_lock:
            token, generation = self._access_token, self._token_generation
        response = self.get_conn().post(
            self.endpoint,
            json={"query": query, "variables": variables},
            headers={"X-Shopify-Access-Token": token},
            timeout=self.timeout,
        )
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
        served = response.headers.get("X-Shopify-API-Version")
        if served and served != self.api_version:
            raise ShopifyError(
                f"Shop {self.shop_domain}: Shopify no longer serves API version {self.api_version} "
                f"(it answered with {served}); set api_version in the {self.shopify_conn_id} connection"
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
        return self._expected_cost(query) / rate if rate else self.retry_wait_base

    def _backoff(self, state: RetryCallState) -> float:
        """Wait what Shopify asked for when it said, else exponential backoff with jitter."""
        exc = state.outcome.exception() if state.outcome else None
        return backoff_seconds(
            state.attempt_number,
            getattr(exc, "wait_seconds", None),
            base=self.retry_wait_base,
            cap=self.retry_wait_max,
            max_retry_after=self.max_retry_after,
        )

    def _pace(self, query: str) -> None:
        """Sleep until the bucket should hold what this document requests."""
        wait = self._seconds_until_affordable(query)
        if wait > 0:
            log.debug("Shop %s: pacing %.2fs for the cost bucket", self.shop_domain, wait)
            time.sleep(wait)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "Shop %s: attempt %d failed (%s); retrying",
            self.shop_domain,
            state.attempt_number,
            type(exc).__name__ if isinstance(exc, requests.RequestException) else exc,
        )

    # -- the shop and its catalog ------------------------------------------------------------------

    def shop_info(self) -> dict[str, Any]:
        """Return the shop's name, myshopify domain and currency."""
        return self.execute(q.SHOP_QUERY)["shop"]

    def shop_domains(self) -> tuple[str, str]:
        """Return the shop's myshopify domain and its primary domain's host (a custom domain, if any)."""
        shop = self.execute(q.SHOP_DOMAINS_QUERY)["shop"]
        return shop["myshopifyDomain"], shop["primaryDomain"]["host"]

    def products_count(self) -> int:
        """Return how many products the shop has (uncapped)."""
        return int(self.execute(q.PRODUCTS_COUNT_QUERY)["productsCount"]["count"])

    def shop_catalog_pages(self) -> Iterator[ShopCatalogPage]:
        """Yield the shop's currency, product count and full products, a page of products per request.

        A small shop is one request: everything fits the first page. A product with more media or variants
        than the document's first pages is completed with the same follow-up queries as ``iter_products``.
        """
        after: str | None = None
        first = q.SHOP_CATALOG_PRODUCTS
        while True:
            try:
                data = self.execute(
                    q.SHOP_CATALOG_QUERY,
                    {
                        "first": first,
                        "after": after,
                        "mediaFirst": q.SHOP_CATALOG_MEDIA_FIRST,
                        "variantsFirst": q.SHOP_CATALOG_VARIANTS_FIRST,
                        "variantMediaFirst": q.SHOP_CATALOG_VARIANT_MEDIA_FIRST,
                    },
                )
            except ShopifyQueryCostError:
                if first == 1:
                    raise
                first = max(1, first // 2)
                log.warning(
                    "Shop %s: query cost limit exceeded; catalog pages of %d products now", self.shop_domain, first
                )
                continue
            page = data["products"]
            yield ShopCatalogPage(
                currency=(data.get("shop") or {}).get("currencyCode"),
                products_count=int(data["productsCount"]["count"]),
                products=[self._complete_product(node) for node in page["nodes"]],
            )
            if not page["pageInfo"]["hasNextPage"]:
                return
            after = page["pageInfo"]["endCursor"]

    # -- bulk operations ---------------------------------------------------------------------------

    def run_bulk_query(self, query: str) -> BulkOperation:
        """Start a bulk query and return the operation Shopify created.

        Raises BulkOperationInProgress when the shop already runs as many bulk queries as Shopify allows.
        """
        payload = self.execute(q.BULK_RUN_MUTATION, {"query": query})["bulkOperationRunQuery"]
        errors = payload.get("userErrors") or []
        if errors:
            messages = "; ".join(str(e.get("message")) for e in errors)
            if any(e.get("code") in ("OPERATION_IN_PROGRESS", "LIMIT_REACHED") for e in errors):
                raise BulkOperationInProgress(f"Shop {self.shop_domain}: a bulk query is already running ({messages})")
            raise ShopifyError(f"Shop {self.shop_domain}: Shopify refused the bulk query: {messages}")
        operation = BulkOperation.from_node(payload["bulkOperation"])
        log.info("Shop %s: bulk operation %s started", self.shop_domain, operation.id)
        return operation

    def bulk_operation(self, operation_id: str) -> BulkOperation:
        """Return the current state of one bulk operation."""
        node = self.execute(q.BULK_OPERATION_QUERY, {"id": operation_id})["bulkOperation"]
        if node is None:
            raise ShopifyError(f"Shop {self.shop_domain}: Shopify does not know bulk operation {operation_id}")
        return BulkOperation.from_node(node)

    def bulk_result_url(self, operation: BulkOperation) -> str | None:
        """Return the result URL of a completed operation (None when it found nothing).

        Raises BulkAccessDenied when it ended ACCESS_DENIED, BulkOperationFailed for any other end.
        """
        if operation.status == "COMPLETED":
            return operation.url
        message = (
            f"Shop {self.shop_domain}: bulk operation {operation.id} ended {operation.outcome} "
            f"after {operation.object_count} objects"
        )
        if operation.error_code == "ACCESS_DENIED":
            raise BulkAccessDenied(message, operation)
        raise BulkOperationFailed(message, operation)

    # -- paging ----------------------------------------------------------------------------------

    def iter_product_summaries(self) -> Iterator[dict[str, Any]]:
        """Yield every product's id, legacy id, creation time and variant count, in id order."""
        yield from self._paginate(
            q.PRODUCT_SUMMARIES_QUERY, {"first": q.PRODUCT_SUMMARIES_PAGE}, lambda data: data["products"]
        )

    def iter_products(self, product_gids: Sequence[str]) -> Iterator[dict[str, Any] | None]:
        """Yield each requested product with all its variants and media, or None for a deleted one."""
        start = 0
        while start < len(product_gids):
            chunk = list(product_gids[start : start + self.products_per_query])
            try:
                data = self.execute(
                    q.PRODUCTS_BY_ID_QUERY,
                    {
                        "ids": chunk,
                        "mediaFirst": q.PRODUCT_MEDIA_FIRST,
                        "variantsFirst": self.variants_first,
                        "variantMediaFirst": q.VARIANT_MEDIA_FIRST,
                    },
                )
            except ShopifyQueryCostError:
                self._shrink_product_pages()
                continue
            start += len(chunk)
            for node in data["nodes"]:
                yield self._complete_product(node) if node else None

    def _shrink_product_pages(self) -> None:
        """Halve the products per query and the variants on their first page, or give up at one of each."""
        if self.products_per_query == 1 and self.variants_first == 1:
            raise ShopifyQueryCostError(
                f"Shop {self.shop_domain}: even one product with one variant exceeds the query cost limit"
            )
        self.products_per_query = max(1, self.products_per_query // 2)
        self.variants_first = max(1, self.variants_first // 2)
        log.warning(
            "Shop %s: query cost limit exceeded; now %d products per query, %d variants on their first page",
            self.shop_domain,
            self.products_per_query,
            self.variants_first,
        )

    def _complete_product(self, node: dict[str, Any]) -> dict[str, Any]:
        """Flatten the product's connections into lists, fetching the pages beyond the first."""
        product_id = node["id"]
        media = self._rest_of(
            node["media"],
            q.PRODUCT_MEDIA_PAGE_QUERY,
            {"id": product_id, "first": q.MEDIA_PAGE},
            lambda data: data["product"]["media"],
        )
        variants = list(
            self._rest_of(
                node["variants"],
                q.PRODUCT_VARIANTS_PAGE_QUERY,
                {"id": product_id, "first": q.VARIANT_PAGE, "variantMediaFirst": q.VARIANT_MEDIA_FIRST},
                lambda data: data["product"]["variants"],
            )
        )
        for variant in variants:
            variant["media"] = list(
                self._rest_of(
                    variant["media"],
                    q.VARIANT_MEDIA_PAGE_QUERY,
                    {"id": variant["id"], "first": q.MEDIA_PAGE},
                    lambda data: data["node"]["media"],
                )
            )
        return {**node, "media": list(media), "variants": variants}

    def _rest_of(
        self, first_page: dict[str, Any], query: str, variables: dict[str, Any], select: Selector
    ) -> Iterator[dict[str, Any]]:
        """Yield a connection's nodes from a page already fetched, then from the following pages."""
        yield from first_page["nodes"]
        page_info = first_page["pageInfo"]
        if page_info["hasNextPage"]:
            yield from self._paginate(query, {**variables, "after": page_info["endCursor"]}, select)

    def _paginate(self, query: str, variables: dict[str, Any], select: Selector) -> Iterator[dict[str, Any]]:
        """Yield every node of a connection, one page per request, halving the page if Shopify finds it too costly."""
        after = variables.get("after")
        while True:
            first = min(variables["first"], self._page_first.get(query, variables["first"]))
            try:
                connection = select(self.execute(query, {**variables, "first": first, "after": after}))
            except ShopifyQueryCostError:
                if first == 1:
                    raise
                self._page_first[query] = max(1, first // 2)
                log.warning("Shop %s: query cost limit exceeded; pages of %d now", self.shop_domain, first // 2)
                continue
            yield from connection["nodes"]
            if not connection["pageInfo"]["hasNextPage"]:
                return
            after = connection["pageInfo"]["endCursor"]
