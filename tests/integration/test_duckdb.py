"""The README's DuckDB query, run as written over the Parquet parts in the bucket (the local S3 server over HTTP),
its totals checked against "VariantDailyStatistics".

DuckDB reads S3 through its httpfs extension, which it would download at run time; here it comes from PyPI
(``duckdb-extension-httpfs``, the extension built for the pinned DuckDB) and is loaded from that wheel, with
extension autoloading and autoinstalling off, so nothing is fetched. The only change to the README's query is
where it reads: ``s3://{bucket}/`` through a local S3 secret (endpoint, path-style URLs, no TLS) instead of
``r2://statistics/`` through an R2 secret, and the shop and day it filters on.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pytest

from helpers import DAY, add_event, product, register_shop, run_shop
from local_stack.services import S3_KEY_ID, S3_REGION, S3_SECRET

REPO = Path(__file__).resolve().parents[2]
DAYS = [DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)]


def readme_duckdb_query() -> str:
    """Return the DuckDB SELECT of the README's Parquet section (or of the docs it moved to)."""
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in re.findall(r"```sql\n(.*?)```", path.read_text(), re.S):
            if "DuckDB" in block and "read_parquet(" in block:
                select = block[block.index("SELECT") :].strip()
                return select.rstrip(";")
    raise AssertionError("no DuckDB query (```sql with read_parquet) in README.md or docs/")


def duckdb_on_local_s3(endpoint: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with httpfs loaded from its wheel and a secret for the local S3 server."""
    extension = files("duckdb_extension_httpfs") / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    assert extension.is_file(), f"{extension}: duckdb-extension-httpfs does not match duckdb {duckdb.__version__}"
    conn = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    conn.execute(f"LOAD '{extension}'")
    address = urlsplit(endpoint)
    conn.execute(
        "CREATE SECRET local_s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL false)",
        [S3_KEY_ID, S3_SECRET, S3_REGION, address.netloc],
    )
    return conn


@pytest.fixture
def exported_days(db, sandbox, connections):
    """Two shops exported on three days; shop_duck has events on each day, shop_other on the middle one."""
    register_shop(db, sandbox, "shop_duck", [product(1, variants=2), product(2, variants=3, images=0)])
    register_shop(db, sandbox, "shop_other", [product(7)])
    for n, day in enumerate(DAYS):
        noon = datetime.combine(day, time(12))
        for _ in range(n + 1):
            add_event(db, "shop_duck", "1001", "IMPRESSION", noon)
        add_event(db, "shop_duck", "gid://shopify/ProductVariant/2003", "PURCHASE", noon, Decimal(f"1{n}.25"))
        add_event(db, "shop_duck", "1002", "ADD_TO_CART", noon)
        if day == DAY:
            add_event(db, "shop_other", "7001", "PURCHASE", noon, Decimal("99.00"))
    for day in DAYS:
        for shop_id in ("shop_duck", "shop_other"):
            run_shop(shop_id, day=day)
    return connections


def rows_totals(db, shop_id: str, since) -> dict[str, tuple[int, int, Decimal]]:
    """Per variant: impressions, orders, revenue from "VariantDailyStatistics" of one shop since a day."""
    with db.cursor() as cur:
        cur.execute(
            'SELECT "variantId", sum(impressions), sum(orders), sum(revenue) FROM "VariantDailyStatistics" '
            'WHERE shop = %s AND date >= %s GROUP BY "variantId"',
            (shop_id, since),
        )
        return {variant: (int(i), int(o), Decimal(r)) for variant, i, o, r in cur.fetchall()}


def test_the_readme_duckdb_query_over_the_bucket_equals_the_rows(exported_days, db):
    query = readme_duckdb_query()
    assert "r2://statistics/statistic-exports/_parquet/" in query and "hive_partitioning = true" in query
    local = (
        query.replace("r2://statistics/", f"s3://{exported_days.bucket}/")
        .replace("'shop_123'", "'shop_duck'")
        .replace("'2026-09-01'", f"'{DAY.isoformat()}'")
    )
    conn = duckdb_on_local_s3(exported_days.s3_endpoint)
    found = {variant: (int(i), int(o), Decimal(r)) for variant, i, o, r in conn.execute(local).fetchall()}
    expected = rows_totals(db, "shop_duck", DAY)
    print(f"DuckDB totals of shop_duck since {DAY}: {sorted(found.items())}")

    assert found == expected
    # The filters prune: shop_other and the day before are left out; the two days in are summed.
    assert set(found) == {"1001", "1002", "2001", "2002", "2003"}
    assert found["1001"] == (2 + 3, 0, Decimal("0.00"))
    assert found["2003"] == (0, 2, Decimal("11.25") + Decimal("12.25"))
    everything = conn.execute(
        f"SELECT count(*), sum(orders), sum(revenue) FROM read_parquet("
        f"'s3://{exported_days.bucket}/statistic-exports/_parquet/*/*/*.parquet', hive_partitioning = true)"
    ).fetchone()
    assert everything == (3 * (5 + 1), 3 + 1, Decimal("10.25") + Decimal("11.25") + Decimal("12.25") + Decimal("99.00"))
