"""Rebuilding products from bulk JSONL lines in any order (pure, no server)."""

import random

import pytest

from include.statistics_export.bulk_catalog import assemble_products


def lines():
    product = {"id": "gid://shopify/Product/7", "legacyResourceId": "7", "title": "P"}
    other = {"id": "gid://shopify/Product/3", "legacyResourceId": "3", "title": "Q"}
    variant = {"id": "gid://shopify/ProductVariant/71", "title": "V", "__parentId": product["id"]}
    shared = {"id": "gid://shopify/MediaImage/9", "mediaContentType": "IMAGE", "image": {"url": "u9"}}
    return [
        product,
        other,
        variant,
        {"id": "gid://shopify/ProductVariant/70", "title": "W", "__parentId": product["id"]},
        {**shared, "__parentId": product["id"]},
        {"id": "gid://shopify/MediaImage/8", "mediaContentType": "IMAGE", "__parentId": product["id"]},
        # The same media is also the variant's own: both parents keep it.
        {**shared, "__parentId": variant["id"]},
    ]


@pytest.mark.parametrize("seed", range(5))
def test_children_join_their_parents_whatever_the_line_order(seed):
    shuffled = lines()
    random.Random(seed).shuffle(shuffled)
    products = list(assemble_products(shuffled + shuffled[:3]))  # a resumed download repeats lines
    assert [p["id"] for p in products] == ["gid://shopify/Product/3", "gid://shopify/Product/7"]
    seven = products[1]
    assert [v["id"] for v in seven["variants"]] == [
        "gid://shopify/ProductVariant/70",
        "gid://shopify/ProductVariant/71",
    ]
    assert [m["id"] for m in seven["media"]] == ["gid://shopify/MediaImage/8", "gid://shopify/MediaImage/9"]
    assert seven["variants"][1]["media"] == [
        {"id": "gid://shopify/MediaImage/9", "mediaContentType": "IMAGE", "image": {"url": "u9"}}
    ]
    assert seven["variants"][0]["media"] == [] and products[0]["variants"] == []
    assert all("__parentId" not in m for m in seven["media"])


def test_a_line_without_a_shopify_id_is_a_clear_error():
    with pytest.raises(ValueError, match="without an id"):
        list(assemble_products([{"title": "x"}]))
    with pytest.raises(ValueError, match="unexpected id 'abc'"):
        list(assemble_products([{"id": "abc"}]))
