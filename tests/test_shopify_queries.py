"""Every GraphQL document the hook sends validates against Shopify's real Admin schema, uses no
deprecated field, and requests at most 1000 points at the largest page sizes the hook uses."""

import pytest
from graphql import build_schema, parse, validate
from graphql.validation import NoDeprecatedCustomRule, specified_rules

from conftest import real_schema_path
from export_hooks import shopify_queries as q
from shopify_sandbox.cost import requested_cost

DOCUMENTS = q.example_variables()


@pytest.fixture(scope="module", params=["2026-07", "2026-01"])
def real_schema(request):
    return build_schema(real_schema_path(request.param).read_text(), assume_valid=True)


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


def test_bulk_catalog_query_is_valid_and_within_shopifys_bulk_rules(real_schema):
    document = parse(q.CATALOG_BULK_QUERY)
    assert validate(real_schema, document, [*specified_rules, NoDeprecatedCustomRule]) == []
    # Shopify's bulk rules: at most 5 connections and 2 levels of nesting, no top-level node(s).
    connections = q.CATALOG_BULK_QUERY.count("edges")
    assert connections == 4
    top_level = document.definitions[0].selection_set.selections
    assert [field.name.value for field in top_level] == ["products"]
