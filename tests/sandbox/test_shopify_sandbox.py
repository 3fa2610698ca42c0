"""Tests for shopify_sandbox: real HTTP over loopback against a live ShopifySandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import graphql
import pytest
import requests
from conftest import real_schema_sdl

from shopify_sandbox import (
    SandboxMedia,
    SandboxProduct,
    SandboxShop,
    SandboxVariant,
    ShopifySandbox,
    load_world,
    requested_cost,
    save_world,
)
from shopify_sandbox.resolvers import SCHEMA_PATH, sandbox_schema

REPO = Path(__file__).resolve().parents[2]
ALPHA = "alpha.myshopify.com"
TINY = "tiny.myshopify.com"
TOKEN = "shpat_alpha"


# --- fixtures -------------------------------------------------------------------------


def make_alpha() -> SandboxShop:
    """Seven products; product 1 has 600 variants, product 2 a mix of media types."""
    created = datetime(2025, 3, 1, tzinfo=timezone.utc)
    products = []
    for pid in range(1, 8):
        media = [SandboxMedia(id=pid * 100 + 1, filename=f"p{pid}.jpg", alt=f"alt {pid}")]
        variants = [
            SandboxVariant(
                id=pid * 10_000 + 1, title="Default", sku=f"SKU-{pid}", price="12.50", media_ids=[pid * 100 + 1]
            )
        ]
        products.append(
            SandboxProduct(id=pid, title=f"Product {pid}", created_at=created, variants=variants, media=media)
        )
    products[0].variants = [SandboxVariant(id=10_000 + i, title=f"V{i}", sku=f"BIG-{i}") for i in range(1, 601)]
    products[1].media = [
        SandboxMedia(id=201, filename="front.jpg", alt="front"),
        SandboxMedia(id=202, content_type="VIDEO", filename=None),
        SandboxMedia(id=203, filename=None),  # still processing
        SandboxMedia(id=204, filename="back.png"),
        SandboxMedia(id=205, content_type="EXTERNAL_VIDEO", filename=None),
    ]
    products[1].variants = [
        SandboxVariant(id=20_001, title="Red", media_ids=[204, 201]),
        SandboxVariant(id=20_002, title="Blue", media_ids=[]),
    ]
    return SandboxShop(domain=ALPHA, access_token=TOKEN, name="Alpha Store", currency="EUR", products=products)


def make_tiny() -> SandboxShop:
    """A shop on a tiny plan (bucket 50, 1 point/s) to reach throttling quickly."""
    products = [SandboxProduct(id=i, title=f"T{i}") for i in range(1, 31)]
    return SandboxShop(domain=TINY, access_token="tiny", products=products, bucket_size=50.0, restore_rate=1.0)


@pytest.fixture(scope="module")
def real_schema() -> graphql.GraphQLSchema:
    return graphql.build_schema(real_schema_sdl("2026-07"), assume_valid=True)


@pytest.fixture()
def sandbox():
    with ShopifySandbox([make_alpha(), make_tiny()]) as sb:
        yield sb


class Client:
    """A minimal GraphQL client over requests, as the exporter would use."""

    def __init__(self, sandbox: ShopifySandbox, shop: str = ALPHA, token: str = TOKEN, version: str = "2026-07"):
        self.url = sandbox.endpoint_template.format(shop=shop, api_version=version)
        self.session = requests.Session()
        self.session.headers["X-Shopify-Access-Token"] = token

    def post(self, query: str, variables: dict | None = None) -> requests.Response:
        return self.session.post(self.url, json={"query": query, "variables": variables or {}}, timeout=10)

    def data(self, query: str, variables: dict | None = None) -> dict:
        body = self.post(query, variables).json()
        assert "errors" not in body, body
        return body["data"]


# --- schema fidelity ----------------------------------------------------------------------


def _default(arg) -> str | None:
    node = getattr(arg.ast_node, "default_value", None) if arg.ast_node else None
    return graphql.print_ast(node) if node is not None else None


def test_schema_is_a_faithful_subset_of_the_real_2026_07_schema(real_schema):
    ours = graphql.build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert ours.query_type.name == real_schema.query_type.name == "QueryRoot"
    checked = 0
    for name, our_type in ours.type_map.items():
        if name.startswith("__") or name in graphql.specified_scalar_types:
            continue
        real_type = real_schema.get_type(name)
        assert real_type is not None, f"{name} does not exist upstream"
        assert type(real_type) is type(our_type), name
        if isinstance(our_type, graphql.GraphQLEnumType):
            assert set(our_type.values) <= set(real_type.values), name
        if isinstance(our_type, (graphql.GraphQLObjectType, graphql.GraphQLInterfaceType)):
            assert {i.name for i in our_type.interfaces} <= {i.name for i in real_type.interfaces}, name
        if isinstance(our_type, graphql.GraphQLInputObjectType):
            for field_name, field in our_type.fields.items():
                real_field = real_type.fields.get(field_name)
                assert real_field is not None, f"{name}.{field_name}"
                assert str(field.type) == str(real_field.type), f"{name}.{field_name}"
                assert _default(field) == _default(real_field), f"{name}.{field_name} default"
        if isinstance(our_type, (graphql.GraphQLObjectType, graphql.GraphQLInterfaceType)):
            for field_name, field in our_type.fields.items():
                real_field = real_type.fields.get(field_name)
                assert real_field is not None, f"{name}.{field_name} does not exist upstream"
                assert str(field.type) == str(real_field.type), f"{name}.{field_name}"
                assert list(field.args) == [a for a in real_field.args if a in field.args], f"{name}.{field_name}"
                for arg_name, arg in field.args.items():
                    real_arg = real_field.args[arg_name]
                    assert str(arg.type) == str(real_arg.type), f"{name}.{field_name}({arg_name})"
                    assert _default(arg) == _default(real_arg), f"{name}.{field_name}({arg_name}) default"
                # Required upstream arguments must all be present in our subset.
                for arg_name, real_arg in real_field.args.items():
                    if graphql.is_required_argument(real_arg):
                        assert arg_name in field.args, f"{name}.{field_name} lacks required {arg_name}"
                checked += 1
    assert checked > 60
    # A document valid against our subset is valid against the real schema too.
    doc = graphql.parse(
        "{ products(first: 1, sortKey: ID) { nodes { id legacyResourceId variantsCount { count precision }"
        " media(first: 2) { nodes { id alt status mediaContentType ... on MediaImage { mimeType"
        " image { url(transform: {maxWidth: 10}) width } } } } } } shop { currencyCode } }"
    )
    assert graphql.validate(ours, doc) == [] and graphql.validate(real_schema, doc) == []


# --- auth, routing, versions -------------------------------------------------------------------


def test_bad_missing_and_revoked_tokens_get_401_and_unknown_shop_404(sandbox):
    query = "{ shop { name } }"
    bad = Client(sandbox, token="nope").post(query)
    assert bad.status_code == 401
    assert bad.json() == {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    missing = requests.post(Client(sandbox).url, json={"query": query}, timeout=10)
    assert missing.status_code == 401
    good = Client(sandbox)
    assert good.data(query) == {"shop": {"name": "Alpha Store"}}
    sandbox.revoke_token(ALPHA)
    assert good.post(query).status_code == 401
    sandbox.set_token(ALPHA, "rotated")
    assert Client(sandbox, token="rotated").post(query).status_code == 200
    unknown = Client(sandbox, shop="nobody.myshopify.com").post(query)
    assert unknown.status_code == 404 and unknown.json() == {"errors": "Not Found"}


def test_versions_served_and_unsupported_version_falls_back_to_oldest(sandbox):
    for version in ("2026-01", "2026-04", "2026-07", "2026-10"):
        response = Client(sandbox, version=version).post("{ shop { myshopifyDomain } }")
        assert response.status_code == 200
        assert response.headers["X-Shopify-API-Version"] == version
    old = Client(sandbox, version="2024-04").post("{ shop { myshopifyDomain currencyCode id } }")
    assert old.status_code == 200 and old.headers["X-Shopify-API-Version"] == "2026-01"
    assert old.json()["data"]["shop"] == {"myshopifyDomain": ALPHA, "currencyCode": "EUR", "id": "gid://shopify/Shop/1"}
    assert (
        Client(sandbox, token="x", version="1999-01").post("{ shop { id } }").headers["X-Shopify-API-Version"]
        == "2026-01"
    )


def test_syntax_validation_and_pagination_argument_errors(sandbox):
    client = Client(sandbox)
    syntax = client.post("{ products(first: 1) { nodes { id }")
    assert syntax.status_code == 200
    err = syntax.json()["errors"][0]
    assert err["locations"] and err["extensions"]["code"]
    undefined = client.post("{ shop { nope } }").json()["errors"][0]
    assert undefined["extensions"]["code"] == "undefinedField" and "nope" in undefined["message"]
    no_first = client.post("{ products { nodes { id } } }").json()
    assert no_first["errors"][0]["message"] == "you must provide one of first or last" and "data" not in no_first
    too_many = client.post("{ products(first: 251) { nodes { id } } }").json()
    assert "250" in too_many["errors"][0]["message"]
    ids = [f"gid://shopify/Product/{i}" for i in range(251)]
    assert "errors" in client.post("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ids}).json()
    assert sandbox.stats(ALPHA)["cost_charged"] == 0


# --- data and pagination -----------------------------------------------------------------------------


def test_products_pagination_forward_backward_and_reverse(sandbox):
    client = Client(sandbox)
    query = """query($first: Int, $after: String, $last: Int, $before: String, $reverse: Boolean) {
      products(first: $first, after: $after, last: $last, before: $before, reverse: $reverse) {
        edges { cursor node { id legacyResourceId title handle status vendor createdAt updatedAt } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""
    pages, after = [], None
    while True:
        conn = client.data(query, {"first": 3, "after": after})["products"]
        pages.append(conn)
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    ids = [[int(e["node"]["legacyResourceId"]) for e in p["edges"]] for p in pages]
    assert ids == [[1, 2, 3], [4, 5, 6], [7]]
    assert [p["pageInfo"]["hasPreviousPage"] for p in pages] == [False, True, True]
    assert pages[0]["pageInfo"]["startCursor"] == pages[0]["edges"][0]["cursor"]
    first = pages[0]["edges"][0]["node"]
    assert first == {
        "id": "gid://shopify/Product/1",
        "legacyResourceId": "1",
        "title": "Product 1",
        "handle": "product-1",
        "status": "ACTIVE",
        "vendor": "Sandbox",
        "createdAt": "2025-03-01T00:00:00Z",
        "updatedAt": "2025-03-01T00:00:00Z",
    }
    back = client.data(query, {"last": 2, "before": pages[2]["pageInfo"]["startCursor"]})["products"]
    assert [e["node"]["title"] for e in back["edges"]] == ["Product 5", "Product 6"]
    assert back["pageInfo"]["hasNextPage"] and back["pageInfo"]["hasPreviousPage"]
    rev = client.data(query, {"first": 2, "reverse": True})["products"]
    assert [e["node"]["legacyResourceId"] for e in rev["edges"]] == ["7", "6"]
    rev2 = client.data(query, {"first": 9, "reverse": True, "after": rev["pageInfo"]["endCursor"]})["products"]
    assert [e["node"]["legacyResourceId"] for e in rev2["edges"]] == ["5", "4", "3", "2", "1"]
    by_query = client.data('{ products(first: 10, query: "id:2 OR id:5") { nodes { id } } }')
    assert [n["id"] for n in by_query["products"]["nodes"]] == ["gid://shopify/Product/2", "gid://shopify/Product/5"]


def test_nested_variants_paginate_beyond_one_page(sandbox):
    client = Client(sandbox)
    query = """query($id: ID!, $after: String) { product(id: $id) { variantsCount { count precision }
      variants(first: 250, after: $after) { nodes { id legacyResourceId sku position price product { id } }
        pageInfo { hasNextPage endCursor } } } }"""
    seen, sizes, after = [], [], None
    while True:
        product = client.data(query, {"id": "gid://shopify/Product/1", "after": after})["product"]
        nodes = product["variants"]["nodes"]
        sizes.append(len(nodes))
        seen += nodes
        if not product["variants"]["pageInfo"]["hasNextPage"]:
            break
        after = product["variants"]["pageInfo"]["endCursor"]
    assert sizes == [250, 250, 100]
    assert product["variantsCount"] == {"count": 600, "precision": "EXACT"}
    assert [v["position"] for v in seen] == list(range(1, 601))
    assert len({v["id"] for v in seen}) == 600 and seen[599]["sku"] == "BIG-600"
    assert {v["product"]["id"] for v in seen} == {"gid://shopify/Product/1"} and seen[0]["price"] == "10.00"
    # Cursors of nested connections inside a products page work the same way.
    inner = client.data(
        """{ products(first: 1) { nodes { variants(first: 2, after: "%s") {
        nodes { legacyResourceId } } } } }"""
        % after
    )
    assert [v["legacyResourceId"] for v in inner["products"]["nodes"][0]["variants"]["nodes"]] == ["10501", "10502"]


def test_media_interface_processing_images_and_variant_media(sandbox):
    client = Client(sandbox)
    data = client.data("""{ product(id: "gid://shopify/Product/2") { mediaCount { count }
      media(first: 10) { nodes { __typename id alt status mediaContentType
        ... on MediaImage { mimeType image { id url altText width height } } } }
      variants(first: 5) { nodes { title media(first: 5) { nodes { id } } } } } }""")["product"]
    media = data["media"]["nodes"]
    assert data["mediaCount"]["count"] == 5
    assert [m["__typename"] for m in media] == ["MediaImage", "Video", "MediaImage", "MediaImage", "ExternalVideo"]
    assert media[0]["id"] == "gid://shopify/MediaImage/201" and media[1]["id"] == "gid://shopify/Video/202"
    assert media[0]["status"] == "READY" and media[0]["mimeType"] == "image/jpeg"
    assert media[0]["image"]["url"] == f"{sandbox.base_url}/cdn/{ALPHA}/201/front.jpg"
    assert media[0]["image"]["id"] == "gid://shopify/ImageSource/201" and media[0]["image"]["width"] > 0
    assert media[2]["image"] is None and media[2]["status"] == "PROCESSING"
    assert media[3]["mimeType"] == "image/png" and "image" not in media[1]
    variants = {v["title"]: [m["id"] for m in v["media"]["nodes"]] for v in data["variants"]["nodes"]}
    assert variants == {"Red": ["gid://shopify/MediaImage/204", "gid://shopify/MediaImage/201"], "Blue": []}
    video = client.data('{ node(id: "gid://shopify/Video/202") { id ... on Media { mediaContentType } } }')
    assert video["node"] == {"id": "gid://shopify/Video/202", "mediaContentType": "VIDEO"}
    assert client.data('{ node(id: "gid://shopify/MediaImage/202") { id } }')["node"] is None


def test_nodes_and_product_return_null_for_deleted_products(sandbox):
    client = Client(sandbox)
    assert sandbox.delete_product(ALPHA, 3) is True
    body = client.post("""{ nodes(ids: ["gid://shopify/Product/2", "gid://shopify/Product/3",
        "gid://shopify/ProductVariant/20001", "gid://shopify/Nope/1"]) { id ... on Product { title } }
        product(id: "gid://shopify/Product/3") { id } }""").json()
    assert body["data"]["nodes"] == [
        {"id": "gid://shopify/Product/2", "title": "Product 2"},
        None,
        {"id": "gid://shopify/ProductVariant/20001"},
        None,
    ]
    assert body["data"]["product"] is None
    # Requested: 4 ids x 1 + product 1 = 5; actual: 2 nodes returned, product null.
    assert body["extensions"]["cost"]["requestedQueryCost"] == 5
    assert body["extensions"]["cost"]["actualQueryCost"] == 2
    # Deleting through the live shop object is seen too.
    sandbox.shop(ALPHA).products.pop()  # product 7
    assert client.data('{ product(id: "gid://shopify/Product/7") { id } }')["product"] is None


# --- cost and throttling ---------------------------------------------------------------------------------

DOC_A = "{ products(first: 10) { edges { node { id title variantsCount { count } } } pageInfo { hasNextPage } } }"
DOC_B = """query { products(first: 5) { nodes { ...P } } }
fragment P on Product { id variants(first: 20) { nodes { id } }
  media(first: 4) { nodes { id ... on MediaImage { image { url } } ... on Video { alt } } } }"""


def test_cost_figures_requested_and_actual(sandbox):
    schema = sandbox_schema()
    # DOC_A: 2 + 10 x (1 product + 1 Count) = 22
    assert requested_cost(graphql.parse(DOC_A), {}, schema) == 22
    # DOC_B: 2 + 5 x (1 + variants (2 + 20 x 1) + media (2 + 4 x (1 + max(image 1, Video 0)))) = 167
    assert requested_cost(graphql.parse(DOC_B), {}, schema) == 167
    # nodes(ids:) costs len(ids) x one item; `edges { node }` and `nodes` count one node once.
    both = "query($ids: [ID!]!) { nodes(ids: $ids) { id } products(first: 3) { nodes { id } edges { node { id } } } }"
    assert requested_cost(graphql.parse(both), {"ids": ["a", "b", "c"]}, schema) == 3 + 2 + 3

    client = Client(sandbox)
    cost_a = client.post(DOC_A).json()["extensions"]["cost"]
    # 7 products exist: 2 + 7 x 2 = 16
    assert (cost_a["requestedQueryCost"], cost_a["actualQueryCost"]) == (22, 16)
    cost_b = client.post(DOC_B).json()["extensions"]["cost"]
    # Actual, products 1-5 returned: 2 + 5 nodes; variants returned 20, 2, 1, 1, 1 (each + 2);
    # media returned 1, 4, 1, 1, 1 (each + 2); non-null images 1, 2, 1, 1, 1 (product 2: one .jpg,
    # one .png, one still processing, one video) -> 7 + 35 + 18 + 6 = 66.
    assert (cost_b["requestedQueryCost"], cost_b["actualQueryCost"]) == (167, 66)
    throttle = cost_b["throttleStatus"]
    assert throttle["maximumAvailable"] == 2000.0 and throttle["restoreRate"] == 100.0
    stats = sandbox.stats(ALPHA)
    assert stats["cost_charged"] == 16 + 66 and stats["max_requested_cost"] == 167
    assert stats["requests"] == 2 and stats["queries"] == [DOC_A, DOC_B]


def test_max_cost_exceeded_is_refused_without_charge(sandbox):
    client = Client(sandbox)
    body = client.post("{ products(first: 250) { nodes { variants(first: 250) { nodes { id } } } } }").json()
    # 2 + 250 x (1 + 2 + 250 x 1) = 63252
    assert body == {
        "errors": [
            {
                "message": "Query cost is 63252, which exceeds the single query max cost limit (1000).",
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": 63252, "maxCost": 1000},
            }
        ]
    }
    assert sandbox.stats(ALPHA)["cost_charged"] == 0
    assert client.post(DOC_A).json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] >= 1984


def test_throttled_when_bucket_is_exhausted(sandbox):
    client = Client(sandbox, shop=TINY, token="tiny")
    query = "{ products(first: 19) { nodes { id variantsCount { count } } } }"  # 2 + 19 x 2 = 40
    ok = client.post(query).json()["extensions"]["cost"]
    assert ok["requestedQueryCost"] == ok["actualQueryCost"] == 40
    assert ok["throttleStatus"] == {"maximumAvailable": 50.0, "currentlyAvailable": 10, "restoreRate": 1.0}
    throttled = client.post(query)
    assert throttled.status_code == 200
    body = throttled.json()
    assert body["errors"] == [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 40 and cost["actualQueryCost"] is None
    assert cost["throttleStatus"]["maximumAvailable"] == 50.0 and cost["throttleStatus"]["restoreRate"] == 1.0
    assert cost["throttleStatus"]["currentlyAvailable"] in (10, 11)  # refilled by at most ~1 s of 1 point/s
    # A cheap query still fits: 2 + 3 x 1 = 5; nothing was charged for the throttled one.
    cheap = client.post("{ products(first: 3) { nodes { id } } }").json()["extensions"]["cost"]
    assert cheap["throttleStatus"]["currentlyAvailable"] in (5, 6, 7)
    stats = sandbox.stats(TINY)
    assert stats["throttled"] == 1 and stats["cost_charged"] == 45 and stats["requests"] == 3


def test_throttle_next_and_fail_next(sandbox):
    client = Client(sandbox)
    sandbox.throttle_next(ALPHA)
    forced = client.post(DOC_A).json()
    assert forced["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert forced["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 2000
    assert "data" in client.post(DOC_A).json()

    sandbox.fail_next(ALPHA, status=503, count=2)
    assert [client.post(DOC_A).status_code for _ in range(3)] == [503, 503, 200]
    sandbox.fail_next(ALPHA, status=429, retry_after=1)
    limited = client.post(DOC_A)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    sandbox.fail_next(ALPHA, status=429)
    bare = client.post(DOC_A)
    assert bare.status_code == 429 and "Retry-After" not in bare.headers
    assert client.post(DOC_A).status_code == 200
    with pytest.raises(ValueError):
        sandbox.fail_next(ALPHA, status=404)
    stats = sandbox.stats(ALPHA)
    assert stats["requests"] == 8 and stats["throttled"] == 1
    sandbox.reset_stats()
    assert sandbox.stats(ALPHA)["requests"] == 0


def test_latency_is_added_to_answers(sandbox):
    client = Client(sandbox)
    sandbox.set_latency(0.05)
    start = time.monotonic()
    client.post("{ shop { id } }")
    assert time.monotonic() - start >= 0.05
    sandbox.set_latency(0.0)


def test_concurrent_requests_are_all_answered(sandbox):
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        client = Client(sandbox)
        for _ in range(10):
            status = client.post("{ products(first: 7) { nodes { id } } }").status_code
            with lock:
                results.append(status)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 80 and sandbox.stats(ALPHA)["requests"] == 80
    assert sandbox.stats(ALPHA)["cost_charged"] == 80 * (2 + 7)


# --- CDN ---------------------------------------------------------------------------------------------------


def test_cdn_serves_deterministic_images_and_honours_faults(sandbox):
    base = f"{sandbox.base_url}/cdn/{ALPHA}"
    jpg = requests.get(f"{base}/201/front.jpg", timeout=10)
    assert jpg.status_code == 200 and jpg.headers["Content-Type"] == "image/jpeg"
    assert jpg.content[:2] == b"\xff\xd8" and jpg.content[-2:] == b"\xff\xd9" and 1000 < len(jpg.content) < 20000
    assert requests.get(f"{base}/201/front.jpg", timeout=10).content == jpg.content
    assert requests.get(f"{base}/101/p1.jpg", timeout=10).content != jpg.content
    png = requests.get(f"{base}/204/back.png", timeout=10)
    assert png.headers["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert requests.get(f"{base}/203/image.jpg", timeout=10).status_code == 404  # still processing
    assert requests.get(f"{base}/999/front.jpg", timeout=10).status_code == 404
    assert requests.get(f"{base}/201/other.jpg", timeout=10).status_code == 404
    assert requests.get(f"{sandbox.base_url}/cdn/nobody.myshopify.com/201/front.jpg", timeout=10).status_code == 404
    sandbox.image_fault(ALPHA, 201, 404)
    assert requests.get(f"{base}/201/front.jpg", timeout=10).status_code == 404
    sandbox.image_fault(ALPHA, 201, 503)
    assert requests.get(f"{base}/201/front.jpg", timeout=10).status_code == 503
    sandbox.image_fault(ALPHA, 201, None)
    assert requests.get(f"{base}/201/front.jpg", timeout=10).content == jpg.content
    url = Client(sandbox).data(
        '{ node(id: "gid://shopify/MediaImage/201") { ... on MediaImage {'
        " image { url(transform: {maxWidth: 40, maxHeight: 30}) } } } }"
    )
    small = requests.get(url["node"]["image"]["url"], timeout=10)
    assert small.status_code == 200 and small.content != jpg.content


# --- world files and the command line -------------------------------------------------------------------


def test_world_round_trips_through_json(tmp_path):
    shops = [make_alpha(), make_tiny()]
    path = tmp_path / "world.json"
    save_world(path, shops)
    loaded = load_world(path)
    assert [s.to_dict() for s in loaded] == [s.to_dict() for s in shops]
    assert loaded[0].products[0].created_at.tzinfo is not None
    assert SandboxShop.from_dict(json.loads(json.dumps(shops[0].to_dict()))) == shops[0]


def test_main_serves_a_saved_world_until_sigterm(tmp_path):
    path = tmp_path / "world.json"
    save_world(path, [make_tiny()])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shopify_sandbox", "--port", "0", "--world", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        response = requests.post(
            f"{base_url}/{TINY}/admin/api/2026-07/graphql.json",
            json={"query": "{ shop { myshopifyDomain } }"},
            headers={"X-Shopify-Access-Token": "tiny"},
            timeout=10,
        )
        assert response.json()["data"] == {"shop": {"myshopifyDomain": TINY}}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


# --- CDN fault modes --------------------------------------------------------------------------------------


def test_cdn_html_fault_answers_a_page_instead_of_the_image(sandbox):
    url = f"{sandbox.base_url}/cdn/{ALPHA}/201/front.jpg"
    sandbox.image_fault(ALPHA, 201, html=True)
    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.text.startswith("<!DOCTYPE html>")
    sandbox.image_fault(ALPHA, 201, 502, html=True)
    assert requests.get(url, timeout=10).status_code == 502
    sandbox.image_fault(ALPHA, 201)
    assert requests.get(url, timeout=10).headers["Content-Type"] == "image/jpeg"


def test_cdn_stall_times_out_a_short_client_and_stop_releases_it():
    with ShopifySandbox([make_alpha()]) as sb:
        url = f"{sb.base_url}/cdn/{ALPHA}/201/front.jpg"
        sb.image_fault(ALPHA, 201, stall_seconds=30)
        start = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(url, timeout=0.3)
        assert 0.3 <= time.monotonic() - start < 2
        before = threading.active_count()
    # stop() released the stalled answer: its handler thread is gone at once, not in 30 s.
    deadline = time.monotonic() + 2
    while threading.active_count() >= before and time.monotonic() < deadline:
        threading.Event().wait(0.02)
    assert threading.active_count() < before
    assert time.monotonic() - start < 3


def test_cdn_stall_shorter_than_the_client_timeout_still_serves_the_image(sandbox):
    sandbox.image_fault(ALPHA, 201, stall_seconds=0.2)
    start = time.monotonic()
    response = requests.get(f"{sandbox.base_url}/cdn/{ALPHA}/201/front.jpg", timeout=5)
    assert response.status_code == 200 and response.content[:2] == b"\xff\xd8"
    assert time.monotonic() - start >= 0.2


@pytest.mark.parametrize("chunked", [False, True])
def test_cdn_oversized_body_is_streamed(sandbox, chunked):
    size = 21 * 1024 * 1024
    sandbox.image_fault(ALPHA, 201, size_bytes=size, chunked=chunked)
    url = f"{sandbox.base_url}/cdn/{ALPHA}/201/front.jpg"
    head = requests.head(url, timeout=10)
    assert head.headers.get("Content-Length") == (None if chunked else str(size))
    with requests.get(url, stream=True, timeout=10) as response:
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
        assert response.headers.get("Content-Length") == (None if chunked else str(size))
        total = sum(len(piece) for piece in response.iter_content(1024 * 1024))
    assert total == size
    # A client that gives up early (as a size cap does) leaves the server healthy.
    with requests.get(url, stream=True, timeout=10) as response:
        next(response.iter_content(1024))
    sandbox.image_fault(ALPHA, 201)
    assert requests.get(url, timeout=10).status_code == 200
