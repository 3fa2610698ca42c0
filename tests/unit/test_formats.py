"""The export files' exact formats, read back with the csv and json modules."""

import csv
import io
import json
from datetime import date, datetime, timezone
from decimal import Decimal

from include.statistics_export.catalog import ImageBackup, Product, Variant
from include.statistics_export.formats import VariantExport, render_csv, render_json
from include.statistics_export.keys import export_key
from include.statistics_export.metrics import VariantMetrics

HEADER = (
    "date,shopId,productId,variantId,shopifyProductId,shopifyVariantId,impressions,addToCarts,ctr,orders,"
    "revenue,imageMediaIds,shopifyImageUrls,r2ImageUrls,r2ImageKeys"
)


def record(metrics=VariantMetrics(), images=()):
    product = Product(gid="gid://shopify/Product/10", product_id="10", title='Shirt, "classic"\nline two ✨ שלום')
    variant = Variant(gid="gid://shopify/ProductVariant/100", variant_id="100", title="S", sku="SKU,1")
    return VariantExport(
        date(2026, 11, 21), "shop_1", "www.example.com", product, variant, metrics, tuple(images), "EUR"
    )


IMAGES = (
    ImageBackup(
        "gid://shopify/MediaImage/1",
        "https://cdn/1.jpg",
        "shop_1/products/10/media/1.jpg",
        "https://files.example.com/shop_1/products/10/media/1.jpg",
        datetime(2026, 11, 22, 0, 5, tzinfo=timezone.utc),
    ),
    ImageBackup("gid://shopify/MediaImage/2", "https://cdn/2.png"),
)


def test_csv_header_and_row():
    metrics = VariantMetrics(impressions=3, add_to_carts=2, orders=1, revenue=Decimal("10.005"))
    text = render_csv(record(metrics, IMAGES)).decode()
    assert text.splitlines()[0] == HEADER
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    row = rows[0]
    assert row["date"] == "2026-11-21"
    assert (row["shopId"], row["productId"], row["variantId"]) == ("shop_1", "10", "100")
    assert row["shopifyVariantId"] == "gid://shopify/ProductVariant/100"
    assert (row["impressions"], row["addToCarts"], row["orders"]) == ("3", "2", "1")
    assert row["ctr"] == "0.6667"
    assert row["revenue"] == "10.01"  # half up, from Decimal
    assert row["imageMediaIds"] == "gid://shopify/MediaImage/1|gid://shopify/MediaImage/2"
    assert row["r2ImageKeys"] == "shop_1/products/10/media/1.jpg|"  # positions line up


def test_zero_impressions_give_zero_ctr():
    row = next(csv.DictReader(io.StringIO(render_csv(record()).decode())))
    assert (row["ctr"], row["revenue"], row["imageMediaIds"]) == ("0.0000", "0.00", "")


def test_json_document_shape_and_numbers():
    metrics = VariantMetrics(impressions=7, add_to_carts=1, orders=1, revenue=Decimal("1234567.89"))
    doc = json.loads(render_json(record(metrics, IMAGES)))
    assert doc["exportDate"] == "2026-11-21"
    assert (doc["shopId"], doc["shopDomain"]) == ("shop_1", "www.example.com")
    assert doc["product"]["productId"] == "10" and doc["product"]["shopifyProductId"] == "gid://shopify/Product/10"
    assert doc["product"]["title"].endswith("שלום")
    m = doc["variant"]["metrics"]
    assert m == {"impressions": 7, "addToCarts": 1, "ctr": 0.1429, "orders": 1, "revenue": 1234567.89}
    assert isinstance(m["revenue"], float) and isinstance(m["impressions"], int)
    assert doc["variant"]["images"][0] == {
        "mediaId": "gid://shopify/MediaImage/1",
        "shopifyUrl": "https://cdn/1.jpg",
        "r2Url": "https://files.example.com/shop_1/products/10/media/1.jpg",
        "r2Key": "shop_1/products/10/media/1.jpg",
        "backedUpAt": "2026-11-22T00:05:00.000Z",
    }
    assert doc["variant"]["images"][1]["r2Key"] is None


def test_export_keys():
    assert export_key("shop_1", "10", "100", date(2026, 1, 2), "csv") == "statistic-exports/shop_1/10/100/20260102.csv"
