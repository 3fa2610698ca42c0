"""The whole DAG as a role holding exactly docs/least_privilege.sql's grants, and what that role cannot do."""

import json
import re
import uuid
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from helpers import DAY, NOON_ON_DAY, add_event, bucket_objects, product, register_shop, run_shop
from local_stack.services import connection_env, with_user

pytestmark = pytest.mark.airflow

GRANTS = Path(__file__).resolve().parents[2] / "docs" / "least_privilege.sql"


def grant_statements(conn, role: str) -> list[sql.Composed]:
    """Return the GRANT statements of docs/least_privilege.sql for ``role`` (psql's :"export_role")."""
    text = "\n".join(line for line in GRANTS.read_text().splitlines() if not line.lstrip().startswith("--"))
    statements = [s.strip() for s in text.split(";") if s.strip()]
    assert statements and all(s.startswith("GRANT ") for s in statements)
    return [
        sql.SQL(s.replace("{", "{{").replace("}", "}}").replace(':"export_role"', "{role}")).format(
            role=sql.Identifier(role)
        )
        for s in statements
    ]


@contextmanager
def login_role(pg_server_url: str, app_db_url: str, *, granted: bool):
    """Yield (name, URL) of a new login role, with the documented grants when ``granted``; dropped at the end."""
    role = f"export_lp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        if granted:
            with psycopg.connect(app_db_url, autocommit=True) as owner:
                for statement in grant_statements(owner, role):
                    owner.execute(statement)
        yield role, with_user(app_db_url, role)
    finally:
        with psycopg.connect(app_db_url, autocommit=True) as owner:
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def export_role(pg_server_url, app_db_url):
    """A login role with exactly the documented grants on this test's database."""
    with login_role(pg_server_url, app_db_url, granted=True) as role:
        yield role


def record_writers(db) -> None:
    """Record the session user of every later write to "VariantDailyStatistics" (a test-only audit trigger)."""
    with db.cursor() as cur:
        cur.execute("CREATE TABLE output_writers (writer text NOT NULL)")
        cur.execute(
            "CREATE FUNCTION record_writer() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS "
            "$$ BEGIN INSERT INTO output_writers VALUES (session_user); RETURN NEW; END $$"
        )
        cur.execute(
            'CREATE TRIGGER record_writer AFTER INSERT OR UPDATE ON "VariantDailyStatistics" '
            "FOR EACH ROW EXECUTE FUNCTION record_writer()"
        )
    db.commit()


FORBIDDEN = [
    'DELETE FROM "StatisticsExport"',
    'DELETE FROM "VariantDailyStatistics"',
    'DELETE FROM "ProductImageBackup"',
    'TRUNCATE "VariantDailyStatistics"',
    "INSERT INTO \"ShopCredential\" (id, \"shopDomain\") VALUES ('x', 'x.example')",
    'UPDATE "ShopCredential" SET "isActive" = false',
    'DELETE FROM "Session"',
    'UPDATE "Session" SET "accessToken" = \'x\'',
    "UPDATE \"Session\" SET shop = 'x'",
    "INSERT INTO \"Session\" (id, shop, \"accessToken\") VALUES ('x', 'x', 'x')",
    "UPDATE \"ABTest\" SET status = 'ACTIVE'",
    "INSERT INTO \"ABTest\" (id, shop, name, \"productId\") VALUES ('x', 'x', 'x', 'x')",
    'DELETE FROM "ABTestEvent"',
    'UPDATE "ABTestEvent" SET revenue = 0',
    'SELECT "apiSecret" FROM "ShopCredential"',
    'SELECT "apiKey" FROM "ShopCredential"',
    'SELECT state FROM "Session"',
    'SELECT * FROM "ABTestEvent"',
    "CREATE TABLE stray (id int)",
    'ALTER TABLE "VariantDailyStatistics" ADD COLUMN stray int',
    'DROP TABLE "ABTestEvent"',
]


def test_the_dag_runs_with_the_documented_grants_and_nothing_more(
    db, sandbox, connections, run_airflow, s3, export_role, app_db_url
):
    role, role_url = export_role
    register_shop(db, sandbox, "shop_alpha", [product(n, variants=2, images=2) for n in (1, 2)])
    # shop_beta's session predates "Session"."shopId": the run links it (UPDATE ("shopId")) and exports it.
    register_shop(
        db,
        sandbox,
        "shop_beta",
        [product(5, variants=3, images=1)],
        domain="www.beta-example.com",
        primary_domain="www.beta-example.com",
        linked=False,
    )
    add_event(db, "shop_alpha", "1001", "PURCHASE", NOON_ON_DAY, Decimal("4.50"))
    # Exported once by the owner, so the role's run updates rows, reads backups and hashes, and inserts others.
    run_shop("shop_alpha")
    add_event(db, "shop_alpha", "1001", "IMPRESSION", NOON_ON_DAY)
    add_event(db, "shop_beta", "gid://shopify/ProductVariant/5001", "ADD_TO_CART", NOON_ON_DAY)

    record_writers(db)

    env = connection_env(replace(connections, app_db_url=role_url))
    result = run_airflow("dags", "test", "product_statistics_export", DAY.isoformat(), extra_env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "permission denied" not in output

    files = [k for k in bucket_objects(s3, connections.bucket) if re.match(r"statistic-exports/shop_\w+/", k)]
    assert len(files) == 2 * (4 + 3)
    with db.cursor() as cur:
        cur.execute(
            'SELECT shop, "variantId", impressions, "addToCarts", orders, revenue FROM "VariantDailyStatistics" '
            'WHERE impressions + "addToCarts" + orders > 0 ORDER BY 1, 2'
        )
        assert cur.fetchall() == [("shop_alpha", "1001", 1, 0, 1, Decimal("4.50")), ("shop_beta", "5001", 0, 1, 0, 0)]
        cur.execute('SELECT count(*) FROM "StatisticsExport"')
        assert cur.fetchone()[0] == 7

        # The run really wrote as the role (the connection override took effect).
        cur.execute("SELECT DISTINCT writer FROM output_writers")
        assert [r[0] for r in cur.fetchall()] == [role]

    with psycopg.connect(role_url, autocommit=True) as conn:
        for statement in FORBIDDEN:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # What it may do, it can: read the sources' needed columns and its own outputs.
        assert conn.execute('SELECT count(*) FROM "VariantDailyStatistics"').fetchone()[0] == 7
        assert conn.execute('SELECT count(*) FROM "Session" WHERE "shopId" IS NOT NULL').fetchone()[0] == 2
    report = json.loads(bucket_objects(s3, connections.bucket)[f"statistic-exports/_runs/{DAY:%Y%m%d}.json"])
    assert [item["shop"] for item in report["sessionLinks"]["linked"]] == ["shop_beta (www.beta-example.com)"]
    assert "error" not in report["pixelHealth"] and report["pixelHealth"]["shops"] == 2


def test_an_upsert_needs_select_on_its_table_not_only_insert_and_update(db, export_role, app_db_url):
    role, role_url = export_role
    upsert = (
        'INSERT INTO "VariantDailyStatistics" (id, shop, "productId", "variantId", date, impressions) '
        "VALUES (%s, 's', '1', '1001', %s, %s) "
        'ON CONFLICT (shop, "productId", "variantId", date) DO UPDATE SET impressions = EXCLUDED.impressions'
    )
    with psycopg.connect(role_url, autocommit=True) as conn:
        conn.execute(upsert, ("row1", DAY, 1))
        conn.execute(upsert, ("row1", DAY, 2))  # the conflict path
    with db.cursor() as cur:
        cur.execute(sql.SQL('REVOKE SELECT ON "VariantDailyStatistics" FROM {}').format(sql.Identifier(role)))
    db.commit()
    with psycopg.connect(role_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(upsert, ("row1", DAY, 3))
        conn.execute(
            'INSERT INTO "VariantDailyStatistics" (id, shop, "productId", "variantId", date) '
            "VALUES ('row2', 's', '1', '1002', %s)",
            (datetime(2026, 11, 21),),
        )  # a plain INSERT still works
    with db.cursor() as cur:
        cur.execute('SELECT "variantId", impressions FROM "VariantDailyStatistics" ORDER BY 1')
        assert cur.fetchall() == [("1001", 2), ("1002", 0)]
