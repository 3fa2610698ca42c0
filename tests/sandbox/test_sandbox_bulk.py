"""Bulk query operations in the Shopify sandbox, over HTTP with plain requests, as Shopify serves them."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import graphql
import pytest
import requests
from conftest import real_schema_sdl
from graphql.validation.rules.custom.no_deprecated import NoDeprecatedCustomRule

from export_hooks import shopify_queries as q
from helpers import product
from shopify_sandbox.world import SandboxMedia, SandboxShop

DOMAIN = "bulky.myshopify.com"
TOKEN = "shpat_bulk_token"
CUTOFF = datetime(2026, 11, 21, 23, 59, 59, tzinfo=timezone.utc)

# The bulk query the export sends (see the lead's brief): the fields of PRODUCTS_BY_ID_QUERY, no paging.
EXPORT_BULK_QUERY = """
{ products(query: "created_at:<='2026-11-21T23:59:59Z'") { edges { node {
    id legacyResourceId title handle status createdAt
    media { edges { node { id mediaContentType status ... on MediaImage { image { url } } } } }
    variants { edges { node { id legacyResourceId title sku price
        media { edges { node { id } } } } } } } } } }
"""
RUN = """mutation($query: String!, $group: Boolean!) {
  bulkOperationRunQuery(query: $query, groupObjects: $group) {
    bulkOperation { id status url objectCount }
    userErrors { field message code } } }"""
RUN_DEFAULT = """mutation($query: String!) { bulkOperationRunQuery(query: $query) {
  bulkOperation { id status } userErrors { field message code } } }"""
POLL = """query($id: ID!) { bulkOperation(id: $id) {
  id status errorCode objectCount rootObjectCount fileSize url partialDataUrl createdAt completedAt query type } }"""
CANCEL = """mutation($id: ID!) { bulkOperationCancel(id: $id) {
  bulkOperation { id status } userErrors { field message } } }"""


def world() -> SandboxShop:
    """Twelve products: variant-own media, a video, an image still processing, one created after the cutoff."""
    products = [product(n, variants=1 + n % 4, images=1 + n % 3, own_media={1: [n * 100 + 1]}) for n in range(1, 12)]
    products[1].media += [
        SandboxMedia(id=290, content_type="VIDEO", filename=None),
        SandboxMedia(id=291, filename=None),  # still processing
    ]
    products.append(product(12, variants=2, created_at=datetime(2026, 11, 22, tzinfo=timezone.utc)))
    return SandboxShop(domain=DOMAIN, access_token=TOKEN, products=products)


@pytest.fixture
def shop(sandbox):
    shop = world()
    sandbox.add_shop(shop)
    return shop


class Admin:
    """A bare GraphQL client for one shop."""

    def __init__(self, sandbox, version: str = "2026-07"):
        self.url = sandbox.endpoint_template.format(shop=DOMAIN, api_version=version)
        self.session = requests.Session()
        self.session.headers["X-Shopify-Access-Token"] = TOKEN

    def body(self, document: str, **variables) -> dict:
        response = self.session.post(self.url, json={"query": document, "variables": variables}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def data(self, document: str, **variables) -> dict:
        body = self.body(document, **variables)
        assert "errors" not in body, body
        return body["data"]

    def start(self, query: str = EXPORT_BULK_QUERY, group: bool = False) -> dict:
        return self.data(RUN, query=query, group=group)["bulkOperationRunQuery"]

    def poll(self, operation_id: str) -> dict:
        return self.data(POLL, id=operation_id)["bulkOperation"]


def lines_of(url: str) -> list[dict]:
    response = requests.get(url, timeout=10)  # no token: the URL is signed, as Google Cloud Storage's
    assert response.status_code == 200
    return [json.loads(line) for line in response.content.splitlines()]


def finished(admin: Admin, group: bool = False, query: str = EXPORT_BULK_QUERY) -> tuple[dict, list[dict]]:
    started = admin.start(query, group)
    assert started["userErrors"] == [] and started["bulkOperation"]["status"] == "CREATED"
    operation = admin.poll(started["bulkOperation"]["id"])
    assert operation["status"] == "COMPLETED"
    return operation, lines_of(operation["url"])


# --- the export's query -----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["2026-07", "2026-01"])
def real_schema(request):
    return graphql.build_schema(real_schema_sdl(request.param), assume_valid=True)


@pytest.mark.parametrize("query", [EXPORT_BULK_QUERY, q.CATALOG_BULK_QUERY], ids=["brief", "catalog_bulk"])
def test_export_bulk_queries_are_valid_upstream_without_deprecated_fields(real_schema, query):
    document = graphql.parse(query)
    assert graphql.validate(real_schema, document) == []
    assert graphql.validate(real_schema, document, [NoDeprecatedCustomRule]) == []
    mutation = graphql.parse(RUN_DEFAULT)
    assert graphql.validate(real_schema, mutation) == [] and graphql.validate(real_schema, graphql.parse(POLL)) == []


def _leaf_paths(query: str) -> set[str]:
    """Return the scalar paths a document selects, with connection wrappers and fragments flattened away."""
    document = graphql.parse(query)
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, graphql.FragmentDefinitionNode)}
    operation = next(d for d in document.definitions if isinstance(d, graphql.OperationDefinitionNode))
    paths: set[str] = set()

    def walk(selection_set, prefix: str) -> None:
        for sel in selection_set.selections:
            if isinstance(sel, graphql.FieldNode):
                name = sel.name.value
                if name in ("pageInfo", "cursor"):
                    continue
                inner = prefix if name in ("edges", "node", "nodes", "products") else f"{prefix}{name}."
                if sel.selection_set is None:
                    paths.add(f"{prefix}{name}")
                else:
                    walk(sel.selection_set, inner)
            elif isinstance(sel, graphql.InlineFragmentNode):
                walk(sel.selection_set, prefix)
            else:
                walk(fragments[sel.name.value].selection_set, prefix)

    walk(operation.selection_set, "")
    return paths


def test_bulk_queries_select_the_fields_of_the_paged_query():
    paged = _leaf_paths(q.PRODUCTS_BY_ID_QUERY)
    assert "variants.media.image.url" in paged and "title" in paged
    assert _leaf_paths(q.CATALOG_BULK_QUERY) == paged
    # The brief's query names variant media by id only (their details are on the product's media) and
    # adds media status.
    brief = _leaf_paths(EXPORT_BULK_QUERY)
    assert brief - paged == {"media.status"}
    assert paged - brief == {"variants.media.mediaContentType", "variants.media.image.url"}


# --- results -------------------------------------------------------------------------------------------


def test_jsonl_joins_back_by_parent_id_to_exactly_the_world(sandbox, shop):
    admin = Admin(sandbox)
    operation, lines = finished(admin)
    expected = [p for p in shop.products if p.created_at <= CUTOFF]
    by_parent: dict[str | None, list[dict]] = {}
    for line in lines:
        by_parent.setdefault(line.get("__parentId"), []).append(line)
    roots = by_parent.pop(None)
    assert sorted(r["legacyResourceId"] for r in roots) == sorted(str(p.id) for p in expected)
    assert all("media" not in r and "variants" not in r and "edges" not in json.dumps(r) for r in roots)
    for p in expected:
        children = by_parent.pop(f"gid://shopify/Product/{p.id}")
        variants = [c for c in children if "ProductVariant" in c["id"]]
        media = [c for c in children if "ProductVariant" not in c["id"]]
        assert sorted(v["legacyResourceId"] for v in variants) == sorted(str(v.id) for v in p.variants)
        assert {v["sku"] for v in variants} == {v.sku for v in p.variants}
        assert sorted(m["id"].rsplit("/", 1)[1] for m in media) == sorted(str(m.id) for m in p.media)
        for variant in p.variants:
            own = by_parent.pop(f"gid://shopify/ProductVariant/{variant.id}", [])
            assert sorted(m["id"] for m in own) == sorted(f"gid://shopify/MediaImage/{i}" for i in variant.media_ids)
    assert by_parent == {}
    images = {m["id"]: m for m in lines if m.get("mediaContentType")}
    assert images["gid://shopify/Video/290"] == {
        "id": "gid://shopify/Video/290",
        "mediaContentType": "VIDEO",
        "status": "READY",
        "__parentId": "gid://shopify/Product/2",
    }
    assert images["gid://shopify/MediaImage/291"]["image"] is None
    assert images["gid://shopify/MediaImage/101"]["image"]["url"] == f"{sandbox.base_url}/cdn/{DOMAIN}/101/img1.jpeg"
    raw = requests.get(operation["url"], timeout=10).content
    assert operation["objectCount"] == str(len(lines)) and operation["rootObjectCount"] == str(len(expected))
    assert operation["fileSize"] == str(len(raw)) and raw.endswith(b"\n")
    assert operation["type"] == "QUERY" and operation["query"] == EXPORT_BULK_QUERY
    assert operation["completedAt"] >= operation["createdAt"]


def test_default_output_is_unordered_and_deterministic(sandbox, shop):
    admin = Admin(sandbox)
    started = admin.data(RUN_DEFAULT, query=EXPORT_BULK_QUERY)["bulkOperationRunQuery"]  # groupObjects omitted
    lines = lines_of(admin.poll(started["bulkOperation"]["id"])["url"])
    seen, orphans_first = set(), 0
    for line in lines:
        orphans_first += line.get("__parentId") is not None and line["__parentId"] not in seen
        seen.add(line["id"])
    assert orphans_first > 0  # some children come before their parent: a client must not assume order
    # The same shop and operation number always shuffle the same way.
    sandbox.add_shop(world())
    again = Admin(sandbox).start()
    assert again["bulkOperation"]["id"] != started["bulkOperation"]["id"]
    other = lines_of(admin.poll(again["bulkOperation"]["id"])["url"])
    assert sorted(map(json.dumps, other)) == sorted(map(json.dumps, lines)) and other != lines


def test_group_objects_true_puts_each_parent_before_its_children(sandbox, shop):
    _, lines = finished(Admin(sandbox), group=True)
    ancestors: list[str] = []  # the path from the current root to the last line
    for line in lines:
        parent = line.get("__parentId")
        if parent is None:
            ancestors = [line["id"]]
            continue
        assert parent in ancestors, f"{line['id']} is not under its parent {parent}"
        ancestors = ancestors[: ancestors.index(parent) + 1] + [line["id"]]
    assert [line["id"] for line in lines[:3]] == [
        "gid://shopify/Product/1",
        "gid://shopify/MediaImage/101",
        "gid://shopify/MediaImage/102",
    ]


def test_files_need_no_token_but_only_exist_for_their_shop(sandbox, shop):
    operation, _ = finished(Admin(sandbox))
    assert requests.get(operation["url"].replace(DOMAIN, "other.myshopify.com"), timeout=10).status_code == 404
    assert requests.get(f"{sandbox.base_url}/bulk/{DOMAIN}/1-result.jsonl", timeout=10).status_code == 404
    head = requests.head(operation["url"], timeout=10)
    assert head.status_code == 200 and head.headers["Content-Length"] == operation["fileSize"]


# --- progress and outcomes ---------------------------------------------------------------------------------


def test_status_moves_by_polls_not_by_time(sandbox, shop):
    sandbox.bulk_behaviour(DOMAIN, polls=3)
    admin = Admin(sandbox)
    operation_id = admin.start()["bulkOperation"]["id"]
    first, second, third = (admin.poll(operation_id) for _ in range(3))
    assert [first["status"], second["status"], third["status"]] == ["RUNNING", "RUNNING", "COMPLETED"]
    assert first["url"] is None and first["completedAt"] is None and third["url"]
    assert int(first["objectCount"]) < int(second["objectCount"]) < int(third["objectCount"])
    assert admin.poll(operation_id)["status"] == "COMPLETED"


@pytest.mark.parametrize(
    ("outcome", "status", "error_code"),
    [
        ("FAILED", "FAILED", "INTERNAL_SERVER_ERROR"),
        ("TIMEOUT", "FAILED", "TIMEOUT"),
        ("ACCESS_DENIED", "FAILED", "ACCESS_DENIED"),
        ("CANCELED", "CANCELED", None),
    ],
)
def test_failed_outcomes_carry_their_code_and_partial_data(sandbox, shop, outcome, status, error_code):
    sandbox.bulk_behaviour(DOMAIN, outcome=outcome, partial_lines=5)
    admin = Admin(sandbox)
    operation = admin.poll(admin.start()["bulkOperation"]["id"])
    assert (operation["status"], operation["errorCode"]) == (status, error_code)
    assert operation["url"] is None and operation["fileSize"] is None and operation["objectCount"] == "5"
    partial = lines_of(operation["partialDataUrl"])
    assert len(partial) == 5 and all("id" in line for line in partial)


def test_failure_without_partial_lines_has_no_partial_url(sandbox, shop):
    sandbox.bulk_behaviour(DOMAIN, outcome="TIMEOUT")
    admin = Admin(sandbox)
    operation = admin.poll(admin.start()["bulkOperation"]["id"])
    assert operation["errorCode"] == "TIMEOUT" and operation["partialDataUrl"] is None and operation["url"] is None


def test_expired_operation_has_no_file_any_more(sandbox, shop):
    sandbox.bulk_behaviour(DOMAIN, outcome="EXPIRED")
    admin = Admin(sandbox)
    operation = admin.poll(admin.start()["bulkOperation"]["id"])
    assert operation["status"] == "EXPIRED" and operation["url"] is None and int(operation["objectCount"]) > 0


def test_cancel_a_running_operation(sandbox, shop):
    sandbox.bulk_behaviour(DOMAIN, polls=5)
    admin = Admin(sandbox)
    operation_id = admin.start()["bulkOperation"]["id"]
    assert admin.poll(operation_id)["status"] == "RUNNING"
    canceling = admin.data(CANCEL, id=operation_id)["bulkOperationCancel"]
    assert canceling == {"bulkOperation": {"id": operation_id, "status": "CANCELING"}, "userErrors": []}
    assert admin.poll(operation_id)["status"] == "CANCELED"
    again = admin.data(CANCEL, id=operation_id)["bulkOperationCancel"]
    assert again["userErrors"] == [
        {"field": ["id"], "message": "A bulk operation cannot be canceled when it is canceled"}
    ]
    assert admin.data(CANCEL, id="gid://shopify/BulkOperation/1")["bulkOperationCancel"]["bulkOperation"] is None
    assert admin.poll("gid://shopify/BulkOperation/1") is None


# --- concurrency and rules ---------------------------------------------------------------------------------


def test_operation_in_progress_when_the_shop_allows_one(sandbox, shop):
    sandbox.bulk_behaviour(DOMAIN, polls=2, max_concurrent=1)
    admin = Admin(sandbox)
    running = admin.start()["bulkOperation"]["id"]
    refused = admin.start()
    assert refused["bulkOperation"] is None
    assert refused["userErrors"] == [
        {
            "field": ["query"],
            "message": f"A bulk query operation for this app and shop is already in progress: {running}.",
            "code": "OPERATION_IN_PROGRESS",
        }
    ]
    admin.poll(running), admin.poll(running)  # finishes it
    assert admin.start()["userErrors"] == []
    assert sandbox.stats(DOMAIN)["bulk_operations"] == 2


def test_five_run_at_once_since_2026_01(sandbox, shop):
    sandbox.bulk_behaviour(DOMAIN, polls=2)
    admin = Admin(sandbox, version="2026-01")
    assert all(admin.start()["userErrors"] == [] for _ in range(5))
    sixth = admin.start()
    assert sixth["bulkOperation"] is None and sixth["userErrors"][0]["code"] == "LIMIT_REACHED"
    assert sandbox.stats(DOMAIN)["bulk_operations"] == 5


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "{ products { edges { node { id a: media { nodes { id } } b: media { nodes { id } } "
            "c: media { nodes { id } } variants { nodes { id media { nodes { id } } } } } } } }",
            "Bulk queries cannot contain more than 5 connections, found 6.",
        ),
        (
            "{ products { nodes { id variants { nodes { id product { variants { nodes { id "
            "product { media { nodes { id } } } } } } } } } } }",
            "Bulk queries cannot contain connections with a nesting depth greater than 2: "
            "`media` is nested 3 levels deep.",
        ),
        ('{ node(id: "gid://shopify/Product/1") { id } }', "Bulk queries cannot contain a top level `node` field."),
        ("{ shop { name } }", "Bulk queries must contain at least one connection."),
        ("{ products { nodes { id nope } } }", "Invalid bulk query: Cannot query field 'nope' on type 'Product'."),
        ("{ products { nodes { id }", "Invalid bulk query: Syntax Error: Expected Name, found <EOF>."),
    ],
    ids=["six_connections", "too_deep", "top_level_node", "no_connection", "unknown_field", "syntax"],
)
def test_rule_violations_are_user_errors(sandbox, shop, query, message):
    started = Admin(sandbox).start(query)
    assert started == {
        "bulkOperation": None,
        "userErrors": [{"field": ["query"], "message": message, "code": "INVALID"}],
    }
    assert sandbox.stats(DOMAIN)["bulk_operations"] == 0


def test_mutations_cost_ten_points_and_polls_one(sandbox, shop):
    admin = Admin(sandbox)
    started = admin.body(RUN_DEFAULT, query=EXPORT_BULK_QUERY)
    cost = started["extensions"]["cost"]
    assert (cost["requestedQueryCost"], cost["actualQueryCost"]) == (10, 10)
    assert 1990 <= cost["throttleStatus"]["currentlyAvailable"] < 2000
    poll = admin.body(POLL, id=started["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"])
    assert (poll["extensions"]["cost"]["requestedQueryCost"], poll["extensions"]["cost"]["actualQueryCost"]) == (1, 1)
    assert sandbox.stats(DOMAIN)["cost_charged"] == 11
    # A refused start is charged too: Shopify costs the mutation, not its outcome.
    admin.body(RUN_DEFAULT, query="{ shop { name } }")
    assert sandbox.stats(DOMAIN)["cost_charged"] == 21


def test_mutations_are_throttled_through_the_same_bucket(sandbox, shop):
    shop.bucket_size, shop.restore_rate = 15.0, 0.01  # room for one mutation
    admin = Admin(sandbox)
    assert admin.body(RUN_DEFAULT, query=EXPORT_BULK_QUERY)["data"]["bulkOperationRunQuery"]["userErrors"] == []
    throttled = admin.body(RUN_DEFAULT, query=EXPORT_BULK_QUERY)
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED" and "data" not in throttled
    assert sandbox.stats(DOMAIN)["bulk_operations"] == 1
