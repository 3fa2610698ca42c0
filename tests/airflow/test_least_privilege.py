"""The whole DAG as a role holding exactly docs/least_privilege.sql's grants, and what that role cannot do;
the Statistics page's queries as the page role of the same file, which cannot read a session or write anything."""

import json
import logging
import re
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from helpers import DAY, NOON_ON_DAY, add_event, bucket_objects, product, register_shop, run_shop
from include.statistics_export.page.statistics_queries import fleet_days, shop_domains, shop_file, shop_files
from local_stack.services import Endpoints, connection_env, with_user

pytestmark = pytest.mark.airflow

GRANTS = Path(__file__).resolve().parents[2] / "docs" / "least_privilege.sql"
ROLE_VARIABLES = ("export_role", "page_role", "redaction_role")  # the file's psql variables: -v export_role=... etc.


def grant_statements(conn, role: str, variable: str = "export_role") -> list[sql.Composed]:
    """Return the GRANT statements of docs/least_privilege.sql for ``role`` as psql's :"<variable>" (the
    ``\\if :{?variable}`` lines around each role's part are psql's own and left out)."""
    lines = GRANTS.read_text().splitlines()
    # psql's own lines (\if, \endif, and the query whose \gset feeds an \if) are psql's, not grants; the test
    # databases have every column the file checks for.
    text = "\n".join(
        line for line in lines if not line.lstrip().startswith(("--", "\\")) and not line.rstrip().endswith("\\gset")
    )
    statements = [s.strip() for s in text.split(";") if s.strip()]
    assert statements and all(s.startswith("GRANT ") for s in statements)
    assert all(sum(f':"{v}"' in s for v in ROLE_VARIABLES) == 1 for s in statements)
    return [
        sql.SQL(s.replace("{", "{{").replace("}", "}}").replace(f':"{variable}"', "{role}")).format(
            role=sql.Identifier(role)
        )
        for s in statements
        if f':"{variable}"' in s
    ]


@contextmanager
def login_role(pg_server_url: str, app_db_url: str, *, granted: bool, variable: str = "export_role"):
    """Yield (name, URL) of a new login role, with the documented grants of psql's :"<variable>" when
    ``granted``; dropped at the end."""
    role = f"{variable.split('_')[0]}_lp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        if granted:
            with psycopg.connect(app_db_url, autocommit=True) as owner:
                for statement in grant_statements(owner, role, variable):
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


@pytest.fixture
def page_role(pg_server_url, app_db_url):
    """A login role with exactly the documented grants of the Statistics page's role on this test's database."""
    with login_role(pg_server_url, app_db_url, granted=True, variable="page_role") as role:
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
    "UPDATE \"Session\" SET scope = 'x'",
    "UPDATE \"Session\" SET shop = 'x'",
    'UPDATE "Session" SET "isOnline" = true',
    'UPDATE "ShopCredential" SET "apiSecret" = \'x\'',
    "INSERT INTO \"Session\" (id, shop, \"accessToken\") VALUES ('x', 'x', 'x')",
    "UPDATE \"ABTest\" SET status = 'ACTIVE'",
    "INSERT INTO \"ABTest\" (id, shop, name, \"productId\") VALUES ('x', 'x', 'x', 'x')",
    'DELETE FROM "ABTestEvent"',
    'UPDATE "ABTestEvent" SET revenue = 0',
    'SELECT state FROM "Session"',
    'SELECT scope FROM "Session"',
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
    # shop_gamma is on expiring tokens, its stored one expired: the role refreshes it and writes the pair back.
    register_shop(db, sandbox, "shop_gamma", [product(8)], expires=datetime.now(timezone.utc) - timedelta(hours=1))
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
    assert len(files) == 2 * (4 + 3 + 1)
    with db.cursor() as cur:
        cur.execute(
            'SELECT shop, "variantId", impressions, "addToCarts", orders, revenue FROM "VariantDailyStatistics" '
            'WHERE impressions + "addToCarts" + orders > 0 ORDER BY 1, 2'
        )
        assert cur.fetchall() == [("shop_alpha", "1001", 1, 0, 1, Decimal("4.50")), ("shop_beta", "5001", 0, 1, 0, 0)]
        cur.execute('SELECT count(*) FROM "StatisticsExport"')
        assert cur.fetchone()[0] == 8
        cur.execute('SELECT "refreshToken" FROM "Session" WHERE "shopId" = %s', ("shop_gamma",))
        assert cur.fetchone()[0] != "shprt_secret_shop_gamma"  # refreshed, and the new pair stored

        # The run really wrote as the role (the connection override took effect).
        cur.execute("SELECT DISTINCT writer FROM output_writers")
        assert [r[0] for r in cur.fetchall()] == [role]

    with psycopg.connect(role_url, autocommit=True) as conn:
        for statement in FORBIDDEN:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # What it may do, it can: read the sources' needed columns and its own outputs.
        assert conn.execute('SELECT count(*) FROM "VariantDailyStatistics"').fetchone()[0] == 8
        assert conn.execute('SELECT count(*) FROM "Session" WHERE "shopId" IS NOT NULL').fetchone()[0] == 3
    report = json.loads(bucket_objects(s3, connections.bucket)[f"statistic-exports/_runs/{DAY:%Y%m%d}.json"])
    assert [item["shop"] for item in report["sessionLinks"]["linked"]] == ["shop_beta (www.beta-example.com)"]
    assert "error" not in report["pixelHealth"] and report["pixelHealth"]["shops"] == 3
    assert (report["tokens"]["expiring"], report["tokens"]["nonExpiring"]) == (1, 2)


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


# The Statistics page's role: what the page reads, and not a column more.

PAGE_COLUMNS = {
    ("ShopCredential", "id", "SELECT"),
    ("ShopCredential", "shopDomain", "SELECT"),
    *(
        ("StatisticsExport", column, "SELECT")
        for column in ("shop", "date", "productId", "variantId", "csvR2Key", "jsonR2Key")
    ),
    *(("VariantDailyStatistics", column, "SELECT") for column in ("date", "impressions", "orders", "revenue")),
}
PAGE_FORBIDDEN = [
    'SELECT "accessToken" FROM "Session"',
    'SELECT id, shop FROM "Session"',
    'SELECT * FROM "Session"',
    'SELECT * FROM "ABTest"',
    'SELECT "eventType" FROM "ABTestEvent"',
    'SELECT "apiKey" FROM "ShopCredential"',
    'SELECT "apiSecret" FROM "ShopCredential"',
    'SELECT * FROM "ShopCredential"',
    'SELECT "metricsSnapshot" FROM "StatisticsExport"',
    'SELECT * FROM "ProductImageBackup"',
    'SELECT * FROM "ShopDailyStatistics"',  # the trend views of migration 0005: the page does not read them
    'UPDATE "Session" SET "shopId" = NULL',
    'UPDATE "StatisticsExport" SET "csvR2Key" = \'x\'',
    'DELETE FROM "StatisticsExport"',
    'UPDATE "VariantDailyStatistics" SET impressions = 0',
    'DELETE FROM "VariantDailyStatistics"',
    'TRUNCATE "VariantDailyStatistics"',
    "INSERT INTO \"ShopCredential\" (id, \"shopDomain\") VALUES ('x', 'x.example')",
    'UPDATE "ShopCredential" SET "shopDomain" = \'x\'',
    "CREATE TABLE stray (id int)",
]


def privileges(conn, role: str) -> set[tuple[str, str | None, str]]:
    """Return every privilege ``role`` holds (itself or through PUBLIC) on the relations of the public
    schema: (table, None, privilege) for a whole table, (table, column, privilege) for a column."""
    tables = conn.execute(
        "SELECT c.relname, p FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
        "unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p', 'f') AND has_table_privilege(%s, c.oid, p)",
        (role,),
    ).fetchall()
    columns = conn.execute(
        "SELECT c.relname, a.attname, p FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped, "
        "unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'REFERENCES']) p "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p', 'f') "
        "AND has_column_privilege(%s, c.oid, a.attnum, p)",
        (role,),
    ).fetchall()
    return {(t, None, p) for t, p in tables} | set(columns)


def seed_page_data(db) -> None:
    """Two shops with a session each (and its token), a day of export rows and statistics."""
    with db.cursor() as cur:
        for shop in ("shop_alpha", "shop_beta"):
            cur.execute(
                'INSERT INTO "ShopCredential" (id, "shopDomain", "apiKey", "apiSecret") VALUES (%s, %s, %s, %s)',
                (shop, f"{shop.replace('_', '-')}.myshopify.com", "key", "secret"),
            )
            cur.execute(
                'INSERT INTO "Session" (id, shop, "accessToken", "shopId") VALUES (%s, %s, %s, %s)',
                (f"offline_{shop}", f"{shop}.myshopify.com", f"shpat_{shop}", shop),
            )
        for variant, impressions in (("1001", 10), ("1002", 5)):
            cur.execute(
                'INSERT INTO "StatisticsExport" (id, shop, "productId", "variantId", date, "csvR2Key", "jsonR2Key", '
                '"csvUrl", "jsonUrl", "metricsSnapshot", "imagesSnapshot", "exportedAt") '
                "VALUES (%s, 'shop_alpha', '1', %s, %s, %s, %s, '', '', '{}', '[]', now())",
                (uuid.uuid4().hex, variant, DAY, f"k/{variant}.csv", f"k/{variant}.json"),
            )
            cur.execute(
                'INSERT INTO "VariantDailyStatistics" (id, shop, "productId", "variantId", date, impressions, orders, '
                "revenue) VALUES (%s, 'shop_alpha', '1', %s, %s, %s, 1, %s)",
                (uuid.uuid4().hex, variant, DAY, impressions, Decimal("2.50")),
            )
    db.commit()


def test_the_page_role_reads_what_the_page_shows_and_no_session(db, page_role):
    role, role_url = page_role
    seed_page_data(db)
    assert privileges(db, role) == PAGE_COLUMNS  # exactly these columns, read only; no table as a whole

    with psycopg.connect(role_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('SELECT "accessToken" FROM "Session"')
        for statement in PAGE_FORBIDDEN:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)

        # The page's own queries (statistics_queries, as app.py calls them) all succeed as that role.
        (fleet,) = fleet_days(conn, DAY - timedelta(days=1), DAY)
        assert (fleet.day, fleet.impressions, fleet.orders, fleet.revenue) == (DAY, 15, 2, Decimal("5.00"))
        assert shop_domains(conn, ["shop_alpha", "shop_unknown"]) == {"shop_alpha": "shop-alpha.myshopify.com"}
        assert [(f.variant_id, f.csv_key) for f in shop_files(conn, "shop_alpha", DAY)] == [
            ("1001", "k/1001.csv"),
            ("1002", "k/1002.csv"),
        ]
        found = shop_file(conn, "shop_alpha", DAY, "1002")
        assert found is not None and found.json_key == "k/1002.json"
        assert shop_file(conn, "shop_alpha", DAY, "9999") is None


def database_connection(url: str) -> str:
    """Return a postgres connection's AIRFLOW_CONN_* value logging in as ``url`` says."""
    return connection_env(Endpoints(url, "http://127.0.0.1:1", "unused", "http://127.0.0.1:1/{shop}"))[
        "AIRFLOW_CONN_APP_DB"
    ]


def test_the_page_reads_through_statistics_page_db_else_app_db_with_one_warning(
    db, app_db_url, page_role, monkeypatch, caplog
):
    from statistics_ui import page_connections

    role, role_url = page_role
    seed_page_data(db)
    monkeypatch.setattr(page_connections, "_warned", set())
    monkeypatch.setenv("AIRFLOW_CONN_APP_DB", database_connection(app_db_url))
    monkeypatch.delenv("AIRFLOW_CONN_STATISTICS_PAGE_DB", raising=False)
    with caplog.at_level(logging.WARNING, logger=page_connections.__name__):
        for _ in range(3):
            with page_connections.page_db() as conn:
                assert conn.execute("SELECT current_user").fetchone()[0] != role  # the export's (here the owner)
                assert conn.execute("SHOW transaction_read_only").fetchone()[0] == "on"  # still writes nothing
    warnings = [r.getMessage() for r in caplog.records if "statistics_page_db" in r.getMessage()]
    assert len(warnings) == 1 and "'app_db'" in warnings[0], warnings
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        with page_connections.page_db() as conn:
            conn.execute('DELETE FROM "StatisticsExport"')

    caplog.clear()
    monkeypatch.setenv("AIRFLOW_CONN_STATISTICS_PAGE_DB", database_connection(role_url))
    with page_connections.page_db() as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == role
        assert shop_domains(conn, ["shop_beta"]) == {"shop_beta": "shop-beta.myshopify.com"}
    with pytest.raises(page_connections.PagePermissionError, match="statistics_page_db connection's role"):
        with page_connections.page_db() as conn:
            conn.execute('SELECT "accessToken" FROM "Session"')
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def psql_binary() -> str:
    """Return a psql: the PATH's, else the one the embedded server's package ships."""
    found = shutil.which("psql")
    if found:
        return found
    try:
        import pgserver
    except ImportError:
        pytest.skip("no psql on PATH and no pgserver")
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    if not bundled.exists():
        pytest.skip("no psql on PATH or in pgserver")
    return str(bundled)


def run_grants_file(app_db_url: str, **roles: str) -> subprocess.CompletedProcess:
    """Run docs/least_privilege.sql with psql as the README says, with ``-v <variable>=<role>`` for each role."""
    variables = [arg for name, role in roles.items() for arg in ("-v", f"{name}={role}")]
    return subprocess.run(
        [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", *variables, "-f", str(GRANTS), "-d", app_db_url],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_psql_runs_the_file_for_the_export_role_alone_the_page_role_alone_or_both(
    db, pg_server_url, app_db_url, export_role, page_role
):
    with (
        login_role(pg_server_url, app_db_url, granted=False) as (export_name, export_url),
        login_role(pg_server_url, app_db_url, granted=False, variable="page_role") as (page_name, page_url),
    ):
        alone = run_grants_file(app_db_url, export_role=export_name)  # the command line before the page role
        assert alone.returncode == 0, alone.stderr
        assert privileges(db, export_name) == privileges(db, export_role[0])  # what the DAG test runs with
        assert ("Session", "accessToken", "SELECT") in privileges(db, export_name)
        assert ("StatisticsExport", None, "INSERT") in privileges(db, export_name)
        assert privileges(db, page_name) == set()

        page_alone = run_grants_file(app_db_url, page_role=page_name)
        assert page_alone.returncode == 0, page_alone.stderr
        assert privileges(db, page_name) == privileges(db, page_role[0]) == PAGE_COLUMNS

        both = run_grants_file(app_db_url, export_role=export_name, page_role=page_name)  # idempotent
        assert both.returncode == 0, both.stderr
        assert privileges(db, export_name) == privileges(db, export_role[0])
        assert privileges(db, page_name) == PAGE_COLUMNS
        with psycopg.connect(page_url, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute('SELECT "accessToken" FROM "Session"')
        with psycopg.connect(export_url, autocommit=True) as conn:
            conn.execute('SELECT "accessToken" FROM "Session"')


def test_psql_runs_the_file_on_an_app_not_yet_on_expiring_tokens_and_grants_no_token_write(
    db, pg_server_url, app_db_url
):
    with db.cursor() as cur:
        cur.execute('ALTER TABLE "Session" DROP COLUMN "refreshToken", DROP COLUMN "refreshTokenExpires"')
    db.commit()
    with login_role(pg_server_url, app_db_url, granted=False) as (name, _):
        result = run_grants_file(app_db_url, export_role=name)
        assert result.returncode == 0, result.stderr
        granted = privileges(db, name)
    assert ("Session", "shopId", "UPDATE") in granted and ("Session", "accessToken", "SELECT") in granted
    assert ("Session", "accessToken", "UPDATE") not in granted and ("Session", "expires", "UPDATE") not in granted


def test_the_redaction_role_alone_deletes_and_only_the_export_output_tables(db, pg_server_url, app_db_url, export_role):
    with login_role(pg_server_url, app_db_url, granted=False, variable="redaction_role") as (name, url):
        done = run_grants_file(app_db_url, redaction_role=name)
        assert done.returncode == 0, done.stderr
        held = privileges(db, name)
        assert {table for table, _, privilege in held if privilege in ("DELETE", "TRUNCATE")} == {
            "StatisticsExport",
            "VariantDailyStatistics",
            "ProductImageBackup",
        }
        assert {table for table, _, _ in held} == {
            "ShopCredential",
            "StatisticsExport",
            "VariantDailyStatistics",
            "ProductImageBackup",
            "StatisticsExportShopSizes",
            "StatisticsExportRedaction",
        }
        assert {column for table, column, _ in held if table == "ShopCredential"} == {"id", "shopDomain", "isActive"}
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in ('DELETE FROM "Session"', 'SELECT "accessToken" FROM "Session"', 'DELETE FROM "ABTest"'):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
    # The export's role keeps no DELETE anywhere.
    assert not [entry for entry in privileges(db, export_role[0]) if entry[2] in ("DELETE", "TRUNCATE")]
