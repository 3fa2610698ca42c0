"""Stage 1, read: the products a unit of work exports, as one part per shop.

Three ways, one result: a batch listed page by page (its products by id from Shopify), a batch cut from a bulk
read (its staged catalog in the bucket), or a packed shop's whole catalog (one request when it fits a page).
The only stage that talks to Shopify.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

from include.statistics_export.catalog import Product, existed_on, parse_product
from include.statistics_export.handoffs import BatchPlan, ShopRef
from include.statistics_export.ids import gid
from include.statistics_export.protocols import Catalog, ObjectStore, ShopCatalog
from include.statistics_export.staging import read_staged_batch
from include.statistics_export.utc import day_bounds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShopPart:
    """One shop's share of a unit of work: its plan, its products already read, the ids Shopify no longer
    knows, and the GraphQL cost Shopify charged for reading them."""

    plan: BatchPlan
    products: list[Product]
    missing: list[str] = field(default_factory=list)
    graphql_cost: float = 0.0


class ShopTooLargeForUnit(Exception):
    """A shop of a packed unit has, by its first page, as many products as a shop read alone: it leaves the unit."""


def read_batch(catalog: Catalog | None, store: ObjectStore, plan: BatchPlan) -> ShopPart:
    """Return a batch's products, from its staged catalog or else from Shopify (``catalog``), with the ids gone
    missing since it was planned."""
    if plan.staged_key:
        return ShopPart(plan, [parse_product(raw) for raw in read_staged_batch(store, plan.staged_key)])
    if catalog is None:
        raise ValueError(f"{plan.label}: a batch planned page by page needs the Shopify catalog")
    products, missing = fetch_products(catalog, plan.product_ids, date.fromisoformat(plan.date))
    if missing:
        log.warning("Shop %s: products no longer in Shopify, skipped: %s", plan.shop_id, missing)
    # Reading the products is all the batch asks of Shopify: what it cost is known from here on.
    return ShopPart(plan, products, missing, catalog.cost_charged)


def fetch_products(catalog: Catalog, product_ids: list[str], day: date) -> tuple[list[Product], list[str]]:
    """Return the products of these ids that existed on ``day``, and the ids Shopify no longer knows."""
    _, day_end = day_bounds(day)
    products, missing = [], []
    for product_id, raw in zip(product_ids, catalog.iter_products([gid("Product", p) for p in product_ids])):
        if raw is None:
            missing.append(product_id)
            continue
        product = parse_product(raw)
        if existed_on(product.created_at, day_end):
            products.append(product)
    return products, missing


def read_packed_shop(catalog: ShopCatalog, shop: ShopRef, day: date, bulk_threshold: int) -> ShopPart:
    """Read a small shop's whole catalog (one request when it fits) as its share of a packed unit; a shop found
    large on its first page leaves the unit (ShopTooLargeForUnit) before the rest is read."""
    _, day_end = day_bounds(day)
    pages = catalog.shop_catalog_pages()
    first = next(pages)
    if first.products_count >= bulk_threshold:
        raise ShopTooLargeForUnit(
            f"Shop {shop.shop_domain}: {first.products_count} products (at least {bulk_threshold}) on "
            "its first page in a packed unit: it leaves the unit and is exported alone"
        )
    raw = first.products + [product for page in pages for product in page.products]
    products = [p for p in map(parse_product, raw) if existed_on(p.created_at, day_end)]
    variants = sum(len(p.variants) for p in products)
    plan = BatchPlan(shop.shop_id, shop.shop_domain, day.isoformat(), 1, 1, [], first.currency, variants)
    return ShopPart(plan, products, graphql_cost=catalog.cost_charged)
