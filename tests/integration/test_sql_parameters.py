"""Hostile strings through every value that reaches SQL: tables intact, values back exactly; no SQL built from values."""

import ast
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from helpers import DAY, add_event
from include.statistics_export.catalog import ImageBackup, ImageOwner, ImageRef, Product, Variant
from include.statistics_export.formats import VariantExport, WrittenFiles
from include.statistics_export.metrics import VariantMetrics
from include.statistics_export.shops import active_shops, display_domain, shop_credentials
from include.statistics_export.totals import Totals
from local_stack.one_shop import existing_backups, reconcile_shop, rejected_events, variant_metrics, write_rows

REPO = Path(__file__).resolve().parents[2]
NOON = datetime(2026, 11, 21, 12)
HOSTILE = [
    '\'; DROP TABLE "ABTestEvent"; --',
    "x' OR '1'='1",
    '"',
    '"; DELETE FROM "ShopCredential"; --',
    "\\",
    "\\'; SELECT pg_sleep(5); --",
    "%s",
    "%(x)s",
    "%%",
    "$1",
    "{shop_id}",
    "ünïcödé ✨ שלום 🛒 e\u0301",
    "line\nbreak\r\ttab",
]
TABLES = (
    "ShopCredential",
    "Session",
    "ABTest",
    "ABTestEvent",
    "StatisticsExport",
    "VariantDailyStatistics",
    "ProductImageBackup",
)


def table_counts(db) -> dict[str, int]:
    counts = {}
    with db.cursor() as cur:
        for table in TABLES:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{table}"',))
            assert cur.fetchone()[0], f"{table} is gone"
            cur.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608 - fixed table names of this test
            counts[table] = cur.fetchone()[0]
    return counts


@pytest.fixture
def hostile_world(db):
    """One shop per hostile id, with that value as its domain, session token, test and event variant id."""
    with db.cursor() as cur:
        for n, value in enumerate(HOSTILE):
            cur.execute('INSERT INTO "ShopCredential" (id, "shopDomain") VALUES (%s, %s)', (value, value))
            cur.execute(
                'INSERT INTO "Session" (id, shop, "accessToken", "shopId") VALUES (%s, %s, %s, %s)',
                (f"session_{n}", f"api-{n}.myshopify.com", value, value),
            )
            cur.execute(
                'INSERT INTO "ABTest" (id, shop, name, "productId") VALUES (%s, %s, %s, %s)',
                (value, value, value, value),
            )
    db.commit()
    with db.cursor() as cur:
        for n, value in enumerate(HOSTILE):
            cur.execute(
                'INSERT INTO "ABTestEvent" (id, "testId", "sessionId", "eventType", "productId", "variantId", '
                '"createdAt") VALUES (%s, %s, %s, %s, %s, %s, %s)',
                (f"event_{n}", value, value, "IMPRESSION", value, value, NOON),
            )
    db.commit()
    return table_counts(db)


def test_shop_ids_and_domains_round_trip_exactly(db, hostile_world):
    # Domains come back as display domains (lower case, trimmed): the same transformation as for any domain.
    expected = sorted((v, display_domain(v)) for v in HOSTILE)
    assert sorted((s.shop_id, s.shop_domain) for s in active_shops(db)) == expected
    for value in HOSTILE:
        assert [(s.shop_id, s.shop_domain) for s in active_shops(db, [value])] == [(value, display_domain(value))]
        creds = shop_credentials(db, value)
        assert (creds.shop_id, creds.shop_domain, creds.access_token) == (value, display_domain(value), value)
    assert active_shops(db, ["%", "_", "' OR '1'='1"]) == []  # no pattern matching, no injection
    assert table_counts(db) == hostile_world


def test_event_variant_ids_reach_the_metrics_and_rules_as_plain_values(db, hostile_world):
    for value in HOSTILE:
        # A hostile variant id is matched literally, never interpreted.
        assert variant_metrics(db, value, [value], DAY) == {value: VariantMetrics(impressions=1)}
        assert variant_metrics(db, value, ["' OR '1'='1"], DAY) == {}
        assert rejected_events(db, value, DAY) == {"malformed_variant_id": 1}
        result = reconcile_shop(db, value, DAY, 0, Totals())
        assert result.ok, result.differences
        assert result.unknown_variant_ids == []  # the event was rejected, not attributed
    assert table_counts(db) == hostile_world


def test_rows_with_hostile_values_round_trip_exactly(db, hostile_world):
    for n, value in enumerate(HOSTILE):
        product = Product(gid=f"gid://shopify/Product/{n}", product_id=value, title=value)
        variant = Variant(gid=f"gid://shopify/ProductVariant/{n}", variant_id=value, title=value, sku=value)
        image = ImageBackup(value, value, r2_key=value, r2_url=value, backed_up_at=NOON)
        export = VariantExport(DAY, value, value, product, variant, VariantMetrics(impressions=2), (image,), value)
        files = WrittenFiles(csv_key=value, json_key=value, csv_url=value, json_url=value, content_hash=value)
        owner = ImageOwner(ImageRef(value, value), value, value)
        write_rows(db, value, [(export, files)], [(owner, image)])
        with db.cursor() as cur:
            cur.execute(
                'SELECT "productId", "variantId", "csvR2Key", "jsonUrl", "imagesSnapshot" FROM "StatisticsExport" '
                "WHERE shop = %s",
                (value,),
            )
            (row,) = cur.fetchall()
            assert row[:4] == (value, value, value, value)
            assert row[4][0]["mediaId"] == value and row[4][0]["shopifyUrl"] == value
            cur.execute('SELECT "variantId", impressions FROM "VariantDailyStatistics" WHERE shop = %s', (value,))
            assert cur.fetchall() == [(value, 2)]
        backups = existing_backups(db, value, [value, "' OR '1'='1"])
        assert list(backups) == [value] and backups[value].r2_key == value
    counts = table_counts(db)
    assert counts["StatisticsExport"] == counts["VariantDailyStatistics"] == len(HOSTILE)
    assert counts["ProductImageBackup"] == len(HOSTILE)
    assert {k: v for k, v in counts.items() if k in TABLES[:4]} == {k: hostile_world[k] for k in TABLES[:4]}


def test_hostile_event_types_are_stored_exactly_and_rejected_by_reason(db, hostile_world):
    with db.cursor() as cur:
        cur.execute(
            'INSERT INTO "ABTest" (id, shop, name, "productId") VALUES (%s, %s, %s, %s)', ("test_s", "s", "n", "p")
        )
    db.commit()
    for value in HOSTILE:
        add_event(db, "s", "42", value, NOON, Decimal("1.00"))
    with db.cursor() as cur:
        cur.execute('SELECT "eventType" FROM "ABTestEvent" WHERE "testId" = %s', ("test_s",))
        assert sorted(row[0] for row in cur.fetchall()) == sorted(HOSTILE)
    assert rejected_events(db, "s", DAY) == {"unknown_event_type": len(HOSTILE)}
    assert variant_metrics(db, "s", ["42"], DAY) == {"42": VariantMetrics()}
    assert table_counts(db)["ABTestEvent"] == hostile_world["ABTestEvent"] + len(HOSTILE)


# -- no SQL text is built from values ------------------------------------------------------------------

SQL_WORDS = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE|DELETE\s+FROM|DROP|CREATE|ALTER|TRUNCATE|GRANT|REVOKE)\b")
CONSTANT_NAME = re.compile(r"^_?[A-Z][A-Z0-9_]*$")
# Identifiers cannot be parameters. These quote a database name made from a generated uuid, or a
# table name from a fixed tuple: no outside value. psycopg.sql.Identifier would make them pass as is.
ALLOWED = {
    ("dev/local_stack/services.py", 'CREATE DATABASE "{name}"'),
    ("dev/local_stack/services.py", 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'),
    ("dev/local_stack/airflow_stack.py", 'CREATE DATABASE "{name}"'),
    ("dev/local_stack/airflow_stack.py", 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'),
    ("dev/local_stack/demo.py", 'SELECT count(*) FROM "{table}"'),
}


def _literal_text(node: ast.AST) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"
            for part in node.values
        )
    return ""


def sql_built_from_values(source: str) -> list[str]:
    """Return the SQL texts of ``source`` built by an f-string, str.format or % from anything but constants."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            text = _literal_text(node)
            values = [part.value for part in node.values if isinstance(part, ast.FormattedValue)]
            if SQL_WORDS.search(text) and not all(
                isinstance(v, ast.Name) and CONSTANT_NAME.match(v.id) for v in values
            ):
                found.append(text)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            text = _literal_text(node.func.value)
            if SQL_WORDS.search(text):
                found.append(text)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            text = _literal_text(node.left)
            if SQL_WORDS.search(text):
                found.append(text)
    return found


def test_the_checker_finds_sql_built_from_values():
    bad = """
q1 = f"SELECT * FROM t WHERE id = '{shop_id}'"
q2 = "DELETE FROM t WHERE id = {}".format(shop_id)
q3 = "UPDATE t SET a = '%s'" % value
ok1 = f"SELECT {NUMERIC_VARIANT_ID} FROM t WHERE id = %(id)s"
ok2 = "SELECT 1 WHERE a = %s"
"""
    assert sql_built_from_values(bad) == [
        "SELECT * FROM t WHERE id = '{shop_id}'",
        "DELETE FROM t WHERE id = {}",
        "UPDATE t SET a = '%s'",
    ]


def test_no_sql_is_built_from_values_in_the_project_code():
    files = sorted(p for folder in ("include", "dags", "plugins", "dev") for p in (REPO / folder).rglob("*.py"))
    assert len(files) > 20
    offenders = [
        (str(path.relative_to(REPO)), text)
        for path in files
        for text in sql_built_from_values(path.read_text())
        if (str(path.relative_to(REPO)), text) not in ALLOWED
    ]
    assert offenders == []
