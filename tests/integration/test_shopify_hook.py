"""The Shopify hook against the sandbox over HTTP: paging, pacing, retries (more faults: test_shopify_faults.py)."""

from dataclasses import replace

import pytest

from export_hooks.shopify import ShopifyConnection, ShopifyError, ShopifyHook, normalize_shop_domain
from helpers import product
from shopify_sandbox.world import SandboxMedia, SandboxShop

TOKEN = "shpat_hook_test_token"


@pytest.fixture
def shop(sandbox, connections):
    big = product(1, variants=600, images=1)
    big.media += [SandboxMedia(id=100 + n, filename=f"extra{n}.png") for n in range(2, 300)]
    big.variants[0].media_ids = [m.id for m in big.media[:7]]  # beyond the 3 the first page carries
    # A fast-refilling bucket: pacing is tested on its own below.
    shop = SandboxShop(
        domain="hooked.myshopify.com",
        access_token=TOKEN,
        restore_rate=20000,
        products=[big, *[product(n, variants=2) for n in range(2, 12)]],
    )
    sandbox.add_shop(shop)
    return shop


def hook(shop):
    return ShopifyHook(shop.domain, TOKEN)


def test_nested_variant_and_media_pages_are_followed(shop, sandbox):
    with hook(shop) as shopify:
        big, small = list(shopify.iter_products(["gid://shopify/Product/1", "gid://shopify/Product/2"]))
    assert len(big["variants"]) == 600
    assert len({v["id"] for v in big["variants"]}) == 600
    assert len(big["media"]) == 299
    assert [m["id"] for m in big["variants"][0]["media"]] == [
        f"gid://shopify/MediaImage/{m}" for m in (101, *range(102, 108))
    ]
    assert len(small["variants"]) == 2
    assert sandbox.stats(shop.domain)["max_requested_cost"] <= 1000


def test_product_listing_pages_through_every_product(shop):
    with hook(shop) as shopify:
        summaries = list(shopify.iter_product_summaries())
    assert [s["legacyResourceId"] for s in summaries] == [str(n) for n in range(1, 12)]
    assert summaries[0]["variantsCount"]["count"] == 600


def test_deleted_product_comes_back_as_none(shop, sandbox):
    sandbox.delete_product(shop.domain, 2)
    with hook(shop) as shopify:
        got = list(shopify.iter_products(["gid://shopify/Product/2", "gid://shopify/Product/3"]))
    assert got[0] is None and got[1]["legacyResourceId"] == "3"


def test_throttled_answers_are_retried_and_counted(shop, sandbox):
    sandbox.throttle_next(shop.domain, count=2)
    with hook(shop) as shopify:
        assert shopify.shop_info()["myshopifyDomain"] == shop.domain
        assert shopify.throttled == 2
    assert sandbox.stats(shop.domain)["throttled"] == 2


def test_5xx_and_429_are_retried(shop, sandbox):
    sandbox.fail_next(shop.domain, status=503, count=2)
    sandbox.fail_next(shop.domain, status=429, count=1, retry_after=0.1)
    with hook(shop) as shopify:
        assert shopify.shop_info()["myshopifyDomain"] == shop.domain


def test_persistent_5xx_gives_up_with_the_shop_named(shop, sandbox):
    sandbox.fail_next(shop.domain, status=502, count=50)
    connection = replace(ShopifyConnection.read(), max_attempts=2)
    with ShopifyHook(shop.domain, TOKEN, connection=connection) as shopify:
        with pytest.raises(ShopifyError, match="Shop hooked.myshopify.com: HTTP 502"):
            shopify.shop_info()


def test_the_hook_paces_itself_by_the_throttle_status(sandbox, connections):
    # A tiny bucket: each listing page requests 502 points, the bucket holds 600 and refills 2000/s.
    shop = SandboxShop(
        domain="paced.myshopify.com",
        access_token=TOKEN,
        bucket_size=600,
        restore_rate=2000,
        products=[product(n) for n in range(1, 700)],
    )
    sandbox.add_shop(shop)
    with ShopifyHook(shop.domain, TOKEN) as shopify:
        assert len(list(shopify.iter_product_summaries())) == 699
    assert sandbox.stats(shop.domain)["throttled"] == 0


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("Alpha.MyShopify.com/", "alpha.myshopify.com"), ("https://a-b.myshopify.com", "a-b.myshopify.com")],
)
def test_domains_are_normalized(raw, clean):
    assert normalize_shop_domain(raw) == clean


def test_custom_domains_are_refused_for_the_admin_api():
    with pytest.raises(ValueError, match="not a myshopify domain"):
        normalize_shop_domain("www.boutique-example.com")
