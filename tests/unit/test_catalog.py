"""Pure functions: parsing the hook's products, the image rules and batch planning."""

from datetime import datetime, timezone

import pytest

from include.statistics_export.catalog import (
    ProductSummary,
    batched_by_variants,
    existed_on,
    image_owners,
    image_refs,
    parse_product,
)
from include.statistics_export.keys import image_extension, image_key


def media(n, kind="IMAGE", url="https://cdn.shopify.com/s/files/a/photo.jpeg?v=1"):
    node = {"id": f"gid://shopify/{'MediaImage' if kind == 'IMAGE' else 'Video'}/{n}", "mediaContentType": kind}
    if kind == "IMAGE":
        node["image"] = {"url": url} if url else None
    return node


RAW = {
    "id": "gid://shopify/Product/10",
    "legacyResourceId": "10",
    "title": "Shirt",
    "createdAt": "2026-01-01T10:00:00Z",
    "media": [media(1), media(2, "VIDEO"), media(3, url=None), media(4)],
    "variants": [
        {"id": "gid://shopify/ProductVariant/100", "legacyResourceId": "100", "title": "S", "media": []},
        {"id": "gid://shopify/ProductVariant/101", "legacyResourceId": "101", "title": "M", "media": [media(4)]},
    ],
}


def test_images_skip_videos_and_processing_images_and_keep_order():
    assert [r.media_gid for r in image_refs(RAW["media"])] == [
        "gid://shopify/MediaImage/1",
        "gid://shopify/MediaImage/4",
    ]


def test_variant_uses_own_media_else_the_products():
    product = parse_product(RAW)
    plain, own = product.variants
    assert [i.media_gid for i in product.images_of(plain)] == [
        "gid://shopify/MediaImage/1",
        "gid://shopify/MediaImage/4",
    ]
    assert [i.media_gid for i in product.images_of(own)] == ["gid://shopify/MediaImage/4"]


def test_image_owner_is_the_variant_whose_own_media_it_is():
    owners = image_owners([parse_product(RAW)])
    assert owners["gid://shopify/MediaImage/4"].variant_id == "101"
    assert owners["gid://shopify/MediaImage/1"].variant_id is None


@pytest.mark.parametrize(
    ("url", "ext"),
    [
        ("https://x/a/photo.jpeg?v=2", "jpg"),
        ("https://x/a/b.PNG", "png"),
        ("https://x/a/b.webp", "webp"),
        ("https://x/a/b", "bin"),
    ],
)
def test_image_extension_from_url_path(url, ext):
    assert image_extension(url) == ext


def test_image_key_layout():
    key = image_key("shop_1", "10", "gid://shopify/MediaImage/55", "https://cdn/x/y.jpeg")
    assert key == "shop_1/products/10/media/55.jpg"


def test_products_created_after_the_day_did_not_exist_yet():
    end = datetime(2026, 11, 22)
    assert existed_on(datetime(2026, 11, 21, 23, 59, 59, tzinfo=timezone.utc), end)
    assert not existed_on(datetime(2026, 11, 22, 0, 0, tzinfo=timezone.utc), end)


def test_batches_follow_variant_counts_and_never_split_a_product():
    created = datetime(2026, 1, 1, tzinfo=timezone.utc)
    summaries = [ProductSummary(str(n), created, v) for n, v in enumerate([200, 200, 200, 2048, 5, 5])]
    batches = batched_by_variants(summaries, lambda s: s.variants, 500)
    assert [[s.product_id for s in batch] for batch in batches] == [["0", "1"], ["2"], ["3"], ["4", "5"]]


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_variants"):
        list(batched_by_variants([], len, 0))
