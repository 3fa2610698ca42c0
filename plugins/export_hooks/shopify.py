"""Shopify Admin GraphQL hook: one shop's reads, each stating its document, its variables and where its nodes
are. Underneath, one transport (``shopify_transport``: session, token, pacing, the one retry loop of
``shopify_retry``) and one pager (``shopify_pager``: cursors, page sizes, halving on MAX_COST_EXCEEDED)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from airflow.sdk import BaseHook

from export_hooks import shopify_queries as q
from export_hooks.shopify_bulk import (
    BulkAccessDenied,
    BulkOperation,
    BulkOperationFailed,
    BulkOperationInProgress,
)
from export_hooks.shopify_pager import IDS, PagedRead, Pager
from export_hooks.shopify_protocol import (  # noqa: F401 - the errors are part of the hook's interface
    ShopifyAuthError,
    ShopifyError,
    ShopifyNonExpiringTokenRejected,
    ShopifyQueryCostError,
    ShopifyRetryableError,
    ShopifyThrottledError,
    ShopifyTokenRefused,
    ShopifyTokenRejected,
    normalize_shop_domain,
)
from export_hooks.shopify_retry import SHOPIFY_ATTEMPTS  # noqa: F401 - the hook's tries, for the project's policy
from export_hooks.shopify_transport import (  # noqa: F401 - the connection is part of the hook's interface
    DEFAULT_CONN_ID,
    EXTRA_DEFAULTS,
    Renew,
    ShopifyConnection,
    ShopifyTransport,
)

log = logging.getLogger(__name__)

# The hook's paged reads. Each page size is the largest whose cost shopify_queries.py computes (<= 1000 points).
PRODUCT_SUMMARIES = PagedRead(
    q.PRODUCT_SUMMARIES_QUERY, {"first": q.PRODUCT_SUMMARIES_PAGE}, lambda data: data["products"], "product summary"
)
PRODUCTS_BY_ID = PagedRead(
    q.PRODUCTS_BY_ID_QUERY,
    {IDS: q.PRODUCTS_PER_QUERY, "variantsFirst": q.VARIANTS_FIRST},
    lambda data: data,
    "product with one variant",
)
SHOP_CATALOG = PagedRead(
    q.SHOP_CATALOG_QUERY, {"first": q.SHOP_CATALOG_PRODUCTS}, lambda data: data["products"], "product of the catalog"
)
PRODUCT_MEDIA = PagedRead(
    q.PRODUCT_MEDIA_PAGE_QUERY,
    {"first": q.MEDIA_PAGE},
    lambda data: data["product"]["media"],
    "media item of a product",
)
PRODUCT_VARIANTS = PagedRead(
    q.PRODUCT_VARIANTS_PAGE_QUERY, {"first": q.VARIANT_PAGE}, lambda data: data["product"]["variants"], "variant"
)
VARIANT_MEDIA = PagedRead(
    q.VARIANT_MEDIA_PAGE_QUERY, {"first": q.MEDIA_PAGE}, lambda data: data["node"]["media"], "media item of a variant"
)


@dataclass(frozen=True)
class ShopCatalogPage:
    """One answer of the shop-catalog document: the shop's currency and product count, and full products."""

    currency: str | None
    products_count: int
    products: list[dict[str, Any]]


class ShopifyHook(BaseHook):
    """
    Query one shop's Admin GraphQL API with its access token.

    Connection (conn_type ``generic``, id ``shopify_default``): extra ``api_version`` (default
    ``2026-07``), ``endpoint_template`` (default ``https://{shop}/admin/api/{api_version}/graphql.json``) and
    ``token_endpoint_template`` (default ``https://{shop}/admin/oauth/access_token``, where expiring tokens are
    refreshed: ``shopify_tokens.ShopifyTokenEndpoint``), optionally ``timeout`` (seconds per request, 60),
    ``max_attempts`` (tries per query on transport errors, 429 and 5xx, 8), ``max_throttle_waits`` (THROTTLED
    answers waited out per query, 60), ``retry_wait_base`` and ``retry_wait_max`` (exponential backoff, 0.5 s
    doubling up to 30 s), ``max_retry_after`` (the longest Retry-After obeyed, 60 s).

    The access token is masked in Airflow's task logs as soon as the hook holds it.

    Faults: what is tried again, how often and after what wait is ``shopify_retry``'s policy (transient faults,
    THROTTLED, one token renewal on a 401). Any other GraphQL error, even beside partial data, raises ShopifyError
    naming the shop and the error's path, so no product is ever dropped silently; MAX_COST_EXCEEDED halves the
    read's page sizes (``shopify_pager``); a 403, a 401 the hook cannot renew, and an API version Shopify no longer
    serves raise at once (a 403 saying non-expiring tokens are no longer accepted: ShopifyNonExpiringTokenRejected).

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
        settings = connection or ShopifyConnection.read(shopify_conn_id)
        self.transport = ShopifyTransport(shop_domain, access_token, settings, renew)
        self.pager = Pager(self.transport.execute, self.transport.shop_domain)
        self.shop_domain = self.transport.shop_domain
        self.shopify_conn_id = settings.conn_id
        self.api_version = settings.api_version

    def __enter__(self) -> ShopifyHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ShopifyHook(shop_domain={self.shop_domain!r}, api_version={self.api_version!r})"

    def get_conn(self) -> requests.Session:
        """Return the HTTP session this hook reuses for every request."""
        return self.transport.session()

    def close(self) -> None:
        """Close the HTTP session."""
        self.transport.close()

    @property
    def throttled(self) -> int:
        """How many THROTTLED answers the hook has waited out."""
        return self.transport.throttled

    @property
    def cost_charged(self) -> float:
        """The points Shopify charged the hook's queries (their actual cost)."""
        return self.transport.cost_charged

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one GraphQL document, pacing and retrying transient failures, and return its ``data``; a 401 is
        answered by renewing the token once (when the hook can) and running the document again."""
        return self.transport.execute(query, variables)

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
        variables = {
            "mediaFirst": q.SHOP_CATALOG_MEDIA_FIRST,
            "variantsFirst": q.SHOP_CATALOG_VARIANTS_FIRST,
            "variantMediaFirst": q.SHOP_CATALOG_VARIANT_MEDIA_FIRST,
        }
        for data in self.pager.pages(SHOP_CATALOG, variables):
            yield ShopCatalogPage(
                currency=(data.get("shop") or {}).get("currencyCode"),
                products_count=int(data["productsCount"]["count"]),
                products=[self._complete_product(node) for node in data["products"]["nodes"]],
            )

    def iter_product_summaries(self) -> Iterator[dict[str, Any]]:
        """Yield every product's id, legacy id, creation time and variant count, in id order."""
        return self.pager.nodes(PRODUCT_SUMMARIES, {})

    def iter_products(self, product_gids: Sequence[str]) -> Iterator[dict[str, Any] | None]:
        """Yield each requested product with all its variants and media, or None for a deleted one."""
        variables = {"mediaFirst": q.PRODUCT_MEDIA_FIRST, "variantMediaFirst": q.VARIANT_MEDIA_FIRST}
        for node in self.pager.by_ids(PRODUCTS_BY_ID, product_gids, variables):
            yield self._complete_product(node) if node else None

    def _complete_product(self, node: dict[str, Any]) -> dict[str, Any]:
        """Flatten the product's connections into lists, fetching the pages beyond the first."""
        product = {"id": node["id"]}
        media = list(self.pager.rest_of(node["media"], PRODUCT_MEDIA, product))
        variants = list(
            self.pager.rest_of(
                node["variants"], PRODUCT_VARIANTS, {**product, "variantMediaFirst": q.VARIANT_MEDIA_FIRST}
            )
        )
        for variant in variants:
            variant["media"] = list(self.pager.rest_of(variant["media"], VARIANT_MEDIA, {"id": variant["id"]}))
        return {**node, "media": media, "variants": variants}

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
