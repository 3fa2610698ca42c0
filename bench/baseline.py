"""The seed's way, as the baseline B: one variant after another, every step waiting on the one before.

Per variant: one Shopify query for the variant (its product and media), one SQL query for its metrics,
its images fetched and uploaded one by one, its CSV then its JSON uploaded (with boto3, the seed's client),
its rows written. Timed
on a slice of the shop (1,000 variants by default) and scaled linearly to the shop: nothing in it
depends on the shop's size, so it is linear by construction.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import date

import psycopg

from export_hooks.r2 import R2Hook
from export_hooks.shopify import ShopifyHook
from include.statistics_export import settings
from include.statistics_export.catalog import ImageBackup, ImageOwner, parse_product
from include.statistics_export.connections import image_source
from include.statistics_export.formats import VariantExport, WrittenFiles, render_csv, render_json
from include.statistics_export.handoffs import ShopRef
from include.statistics_export.keys import export_key, image_key
from include.statistics_export.metrics import ZERO
from local_stack.one_shop import variant_metrics, write_rows

VARIANT_QUERY = """
query VariantForExport($id: ID!) {
  productVariant: node(id: $id) {
    ... on ProductVariant {
      id
      legacyResourceId
      title
      sku
      price
      media(first: 3) { nodes { id mediaContentType ... on MediaImage { image { url } } } }
      product {
        id
        legacyResourceId
        title
        handle
        status
        createdAt
        media(first: 10) { nodes { id mediaContentType ... on MediaImage { image { url } } } }
      }
    }
  }
}
"""


class Boto3Store:
    """The seed's object writes: boto3's put_object through the R2 hook's S3Hook client (before obstore)."""

    def __init__(self, hook: R2Hook) -> None:
        self.hook = hook

    def put_object(self, key: str, body: bytes, content_type: str) -> None:
        self.hook.client.put_object(Bucket=self.hook.bucket, Key=key, Body=body, ContentType=content_type)

    def object_url(self, key: str) -> str:
        return self.hook.object_url(key)


def export_variant(shopify, conn, store, images, shop: ShopRef, variant_id: int, day: date, currency) -> int:
    """Export one variant the seed's way; return the number of objects written."""
    node = shopify.execute(VARIANT_QUERY, {"id": f"gid://shopify/ProductVariant/{variant_id}"})["productVariant"]
    raw_product = dict(node["product"])
    raw_product["media"] = raw_product["media"]["nodes"]
    raw_product["variants"] = [{**node, "media": node["media"]["nodes"]}]
    product = parse_product(raw_product)
    variant = product.variants[0]
    metrics = variant_metrics(conn, shop.shop_id, [variant.variant_id], day).get(variant.variant_id, ZERO)
    backups, new_images = [], []
    for image in product.images_of(variant):
        data, content_type = images.start_fetch(image.url).result()
        key = image_key(shop.shop_id, product.product_id, image.media_gid, image.url)
        store.put_object(key, data, content_type)
        backup = ImageBackup(image.media_gid, image.url, key, store.object_url(key))
        backups.append(backup)
        new_images.append((ImageOwner(image, product.product_id, None), backup))
    export = VariantExport(day, shop.shop_id, shop.shop_domain, product, variant, metrics, tuple(backups), currency)
    ids = (shop.shop_id, product.product_id, variant.variant_id, day)
    csv_key, json_key = export_key(*ids, "csv"), export_key(*ids, "json")
    store.put_object(csv_key, render_csv(export), "text/csv; charset=utf-8")
    store.put_object(json_key, render_json(export), "application/json")
    files = WrittenFiles(csv_key, json_key, store.object_url(csv_key), store.object_url(json_key), "seed")
    write_rows(conn, shop.shop_id, [(export, files)], new_images)
    return 2 + len(backups)


def run_baseline(shop: ShopRef, api_domain: str, token: str, app_db_url: str, variant_ids, day: date) -> dict:
    """Export ``variant_ids`` one by one; return the slice's seconds, per-variant milliseconds and PUTs."""
    store = Boto3Store(R2Hook())
    with (
        ShopifyHook(api_domain, token) as shopify,
        psycopg.connect(app_db_url) as conn,
        image_source(replace(settings.load(), concurrency=1)) as images,
    ):
        currency = shopify.shop_info().get("currencyCode")
        started = time.monotonic()
        puts = sum(export_variant(shopify, conn, store, images, shop, v, day, currency) for v in variant_ids)
        seconds = time.monotonic() - started
    return {
        "slice_variants": len(variant_ids),
        "slice_seconds": round(seconds, 2),
        "ms_per_variant": round(1000 * seconds / max(1, len(variant_ids)), 1),
        "slice_puts": puts,
    }
