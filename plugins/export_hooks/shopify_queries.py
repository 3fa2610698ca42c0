"""GraphQL documents the Shopify hook sends, with the page sizes that keep each under Shopify's cost cap.

Costs follow Shopify's calculated query cost (objects 1, scalars 0, a connection 2 + first x node).
tests/unit/test_shopify_queries.py validates every document against the real Admin schema, checks it
uses no deprecated field, and checks the requested cost of each at these sizes stays <= 1000.
"""

from __future__ import annotations

MAX_QUERY_COST = 1000

# Catalog listing for planning: 2 + 250 x (product 1 + variantsCount 1) = 502 points.
PRODUCT_SUMMARIES_PAGE = 250
# Full products by id: per product 1 + media 2+10x2 + variants 2+20x(1 + media 2+3x2) = 205,
# so 4 products request 820 points.
PRODUCTS_PER_QUERY = 4
PRODUCT_MEDIA_FIRST = 10
VARIANTS_FIRST = 20
VARIANT_MEDIA_FIRST = 3
# Extra variant pages of one large product: 1 + 2 + 100 x 9 = 903 points.
VARIANT_PAGE = 100
# Extra media pages (product or variant): 1 + 2 + 250 x 2 = 503 points.
MEDIA_PAGE = 250

_MEDIA_FIELDS = """
fragment MediaFields on Media {
  id
  mediaContentType
  ... on MediaImage { image { url } }
}
"""

_VARIANT_FIELDS = """
fragment VariantFields on ProductVariant {
  id
  legacyResourceId
  title
  sku
  price
  media(first: $variantMediaFirst) {
    pageInfo { hasNextPage endCursor }
    nodes { ...MediaFields }
  }
}
"""

# A product with its first media and variants, as both full-product documents read it (their operation
# defines $mediaFirst, $variantsFirst and $variantMediaFirst).
_PRODUCT_FIELDS = """
fragment ProductFields on Product {
  id
  legacyResourceId
  title
  handle
  status
  createdAt
  media(first: $mediaFirst) {
    pageInfo { hasNextPage endCursor }
    nodes { ...MediaFields }
  }
  variants(first: $variantsFirst) {
    pageInfo { hasNextPage endCursor }
    nodes { ...VariantFields }
  }
}
"""

SHOP_QUERY = """
query ShopInfo {
  shop { name myshopifyDomain currencyCode }
}
"""

# Which shop a token belongs to, for linking a session to its shop: 1 (shop) + 1 (primaryDomain) = 2 points.
SHOP_DOMAINS_QUERY = """
query ShopDomains {
  shop { myshopifyDomain primaryDomain { host } }
}
"""

PRODUCT_SUMMARIES_QUERY = """
query ProductSummaries($first: Int!, $after: String) {
  products(first: $first, after: $after, sortKey: ID) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id
      legacyResourceId
      createdAt
      variantsCount { count }
    }
  }
}
"""

PRODUCTS_BY_ID_QUERY = (
    """
query ProductsForExport($ids: [ID!]!, $mediaFirst: Int!, $variantsFirst: Int!, $variantMediaFirst: Int!) {
  nodes(ids: $ids) {
    ...ProductFields
  }
}
"""
    + _PRODUCT_FIELDS
    + _VARIANT_FIELDS
    + _MEDIA_FIELDS
)

# A small shop whole, in one request when it fits: currency, product count, and a page of full products.
# 1 (shop) + 1 (productsCount) + 2 + 10 x (product 1 + media 2+5x2 + variants 2+10x(1 + media 2+2x2)) = 854
# points. A product with more media or variants than these first pages is completed like any other.
SHOP_CATALOG_PRODUCTS = 10
SHOP_CATALOG_MEDIA_FIRST = 5
SHOP_CATALOG_VARIANTS_FIRST = 10
SHOP_CATALOG_VARIANT_MEDIA_FIRST = 2

SHOP_CATALOG_QUERY = (
    """
query ShopCatalog($first: Int!, $after: String, $mediaFirst: Int!, $variantsFirst: Int!, $variantMediaFirst: Int!) {
  shop { currencyCode }
  productsCount(limit: null) { count }
  products(first: $first, after: $after, sortKey: ID) {
    pageInfo { hasNextPage endCursor }
    nodes { ...ProductFields }
  }
}
"""
    + _PRODUCT_FIELDS
    + _VARIANT_FIELDS
    + _MEDIA_FIELDS
)

PRODUCT_VARIANTS_PAGE_QUERY = (
    """
query ProductVariantsPage($id: ID!, $first: Int!, $after: String, $variantMediaFirst: Int!) {
  product(id: $id) {
    variants(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { ...VariantFields }
    }
  }
}
"""
    + _VARIANT_FIELDS
    + _MEDIA_FIELDS
)

PRODUCT_MEDIA_PAGE_QUERY = (
    """
query ProductMediaPage($id: ID!, $first: Int!, $after: String) {
  product(id: $id) {
    media(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { ...MediaFields }
    }
  }
}
"""
    + _MEDIA_FIELDS
)

VARIANT_MEDIA_PAGE_QUERY = (
    """
query VariantMediaPage($id: ID!, $first: Int!, $after: String) {
  node(id: $id) {
    ... on ProductVariant {
      media(first: $first, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { ...MediaFields }
      }
    }
  }
}
"""
    + _MEDIA_FIELDS
)


PRODUCTS_COUNT_QUERY = """
query ProductsCount {
  productsCount(limit: null) { count precision }
}
"""

# The catalog of a large shop in one bulk operation. Bulk queries have no page sizes (connections return
# every item) and no cost cap on the inner query; the lines come back unordered, each connection item
# naming its parent in ``__parentId``. Same fields as the paginated documents, so one parser reads both.
CATALOG_BULK_QUERY = """
{
  products {
    edges {
      node {
        id
        legacyResourceId
        title
        handle
        status
        createdAt
        media { edges { node { id mediaContentType ... on MediaImage { image { url } } } } }
        variants {
          edges {
            node {
              id
              legacyResourceId
              title
              sku
              price
              media { edges { node { id mediaContentType ... on MediaImage { image { url } } } } }
            }
          }
        }
      }
    }
  }
}
"""

BULK_RUN_MUTATION = """
mutation RunBulkQuery($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""

BULK_OPERATION_QUERY = """
query BulkOperationStatus($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount rootObjectCount url partialDataUrl }
}
"""
