"""Every GraphQL document the hook sends validates against Shopify's real Admin schema, uses no
deprecated field, and requests at most 1000 points at the largest page sizes the hook uses."""

import pytest
from conftest import real_schema_sdl
from graphql import build_schema, parse, validate
from graphql.validation import NoDeprecatedCustomRule, specified_rules

from export_hooks import shopify_queries as q
from shopify_sandbox.cost import requested_cost


def example_variables() -> dict[str, dict]:
    """Return each document with the largest variables the hook sends it, for validation and cost tests."""
    gid = "gid://shopify/Product/1"
    return {
        q.SHOP_QUERY: {},
        q.SHOP_DOMAINS_QUERY: {},
        q.PRODUCT_SUMMARIES_QUERY: {"first": q.PRODUCT_SUMMARIES_PAGE, "after": None},
        q.PRODUCTS_BY_ID_QUERY: {
            "ids": [f"gid://shopify/Product/{n}" for n in range(1, q.PRODUCTS_PER_QUERY + 1)],
            "mediaFirst": q.PRODUCT_MEDIA_FIRST,
            "variantsFirst": q.VARIANTS_FIRST,
            "variantMediaFirst": q.VARIANT_MEDIA_FIRST,
        },
        q.SHOP_CATALOG_QUERY: {
            "first": q.SHOP_CATALOG_PRODUCTS,
            "after": "cursor",
            "mediaFirst": q.SHOP_CATALOG_MEDIA_FIRST,
            "variantsFirst": q.SHOP_CATALOG_VARIANTS_FIRST,
            "variantMediaFirst": q.SHOP_CATALOG_VARIANT_MEDIA_FIRST,
        },
        q.PRODUCT_VARIANTS_PAGE_QUERY: {
            "id": gid,
            "first": q.VARIANT_PAGE,
            "after": "cursor",
            "variantMediaFirst": q.VARIANT_MEDIA_FIRST,
        },
        q.PRODUCT_MEDIA_PAGE_QUERY: {"id": gid, "first": q.MEDIA_PAGE, "after": "cursor"},
        q.VARIANT_MEDIA_PAGE_QUERY: {"id": "gid://shopify/ProductVariant/1", "first": q.MEDIA_PAGE, "after": "c"},
        q.PRODUCTS_COUNT_QUERY: {},
        q.BULK_RUN_MUTATION: {"query": q.CATALOG_BULK_QUERY},
        q.BULK_OPERATION_QUERY: {"id": "gid://shopify/BulkOperation/1"},
    }


DOCUMENTS = example_variables()


@pytest.fixture(scope="module", params=["2026-07", "2026-01"])
def real_schema(request):
    return build_schema(real_schema_sdl(request.param), assume_valid=True)


@pytest.mark.parametrize("document", list(DOCUMENTS), ids=lambda d: d.split("(")[0].split()[1].split("{")[0])
def test_document_is_valid_and_uses_no_deprecated_field(real_schema, document):
    errors = validate(real_schema, parse(document), [*specified_rules, NoDeprecatedCustomRule])
    assert errors == []


@pytest.mark.parametrize("document", list(DOCUMENTS), ids=lambda d: d.split("(")[0].split()[1].split("{")[0])
def test_document_requests_at_most_1000_points(real_schema, document):
    cost = requested_cost(parse(document), DOCUMENTS[document], real_schema)
    assert 0 < cost <= q.MAX_QUERY_COST


def test_products_by_id_costs_what_the_module_says(real_schema):
    # The arithmetic in shopify_queries' comments: 4 products x (1 + 22 + 2 + 20 x 9) points.
    cost = requested_cost(parse(q.PRODUCTS_BY_ID_QUERY), DOCUMENTS[q.PRODUCTS_BY_ID_QUERY], real_schema)
    assert cost == 820


def test_the_shop_catalog_costs_what_the_module_says(real_schema):
    # shop 1 + productsCount 1 + 2 + 10 products x (1 + media 12 + variants 72).
    cost = requested_cost(parse(q.SHOP_CATALOG_QUERY), DOCUMENTS[q.SHOP_CATALOG_QUERY], real_schema)
    assert cost == 854


def test_every_document_of_the_module_is_checked():
    documents = {
        v
        for k, v in vars(q).items()
        if isinstance(v, str) and k.endswith(("_QUERY", "_MUTATION")) and k != "CATALOG_BULK_QUERY"
    }
    assert documents == set(DOCUMENTS)


def test_bulk_catalog_query_is_valid_and_within_shopifys_bulk_rules(real_schema):
    document = parse(q.CATALOG_BULK_QUERY)
    assert validate(real_schema, document, [*specified_rules, NoDeprecatedCustomRule]) == []
    # Shopify's bulk rules: at most 5 connections and 2 levels of nesting, no top-level node(s).
    connections = q.CATALOG_BULK_QUERY.count("edges")
    assert connections == 4
    top_level = document.definitions[0].selection_set.selections
    assert [field.name.value for field in top_level] == ["products"]
