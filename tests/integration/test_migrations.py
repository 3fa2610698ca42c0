"""The export's migrations: exactly what they add to the app's schema, idempotence, each file on its own,
what the files may contain, that they do not block the app's writes on a live database, and the repair of
an invalid index left by an interrupted concurrent build."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import errors

from include.statistics_export.migrate import (
    LEDGER,
    MigrationError,
    apply_migrations,
    checksum,
    migration_files,
    split_statements,
)
from local_stack.services import FIXTURE_SCHEMA_SQL, database_url, with_user

REPO = Path(__file__).resolve().parents[2]
OUTPUT_TABLES = {"StatisticsExport", "VariantDailyStatistics", "ProductImageBackup"}
VARIANT_INDEX = "ABTestEvent_variantId_createdAt_idx"
TEST_INDEX = "ABTestEvent_testId_createdAt_idx"
DAY_INDEX = "VariantDailyStatistics_date_idx"
ADDED_INDEX_DEFINITIONS = {
    DAY_INDEX: f'CREATE INDEX "{DAY_INDEX}" ON public."VariantDailyStatistics" USING btree (date)'
    " INCLUDE (impressions, orders, revenue)",
    VARIANT_INDEX: f'CREATE INDEX "{VARIANT_INDEX}" ON public."ABTestEvent" USING btree ("variantId", "createdAt")',
    TEST_INDEX: f'CREATE INDEX "{TEST_INDEX}" ON public."ABTestEvent" USING btree ("testId", "createdAt")',
}
EVENTS = 3000
TREND_VIEWS = {
    "VariantWeeklyStatistics",
    "VariantMonthlyStatistics",
    "ShopDailyStatistics",
    "ShopWeeklyStatistics",
    "ShopMonthlyStatistics",
}


def views(url: str) -> set[str]:
    """The names of the public schema's views."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


def migration(prefix: str) -> Path:
    """Return the migration file whose name starts with prefix (e.g. "0003")."""
    return next(path for path in migration_files() if path.name.startswith(prefix))


@contextmanager
def fresh_database(server_url: str, *, fixture: bool) -> Iterator[str]:
    """Create a database (empty, or with the app's fixture schema only: no migrations), drop it at the end."""
    name = f"migrations_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(server_url, name)
    try:
        if fixture:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(FIXTURE_SCHEMA_SQL.read_text())
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fixture_db(pg_server_url):
    """A database with the app's fixture schema and none of the migrations."""
    with fresh_database(pg_server_url, fixture=True) as url:
        yield url


@pytest.fixture
def empty_db(pg_server_url):
    """A database without any table."""
    with fresh_database(pg_server_url, fixture=False) as url:
        yield url


def catalog(url: str, tables: set[str] | None = None) -> dict[str, set[tuple[Any, ...]]]:
    """Snapshot the public schema: columns, indexes with their definitions and state, constraints."""
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            """
            SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid)
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
            """
        ).fetchall()
        indexes = conn.execute(
            """
            SELECT t.relname, i.relname, pg_get_indexdef(x.indexrelid), x.indisvalid, x.indisready, x.indisunique
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_class t ON t.oid = x.indrelid
            WHERE t.relnamespace = 'public'::regnamespace
            """
        ).fetchall()
        constraints = conn.execute(
            """
            SELECT t.relname, k.conname, pg_get_constraintdef(k.oid)
            FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
            WHERE k.connamespace = 'public'::regnamespace
            """
        ).fetchall()
    snapshot = {"columns": set(columns), "indexes": set(indexes), "constraints": set(constraints)}
    if tables is not None:
        snapshot = {kind: {row for row in rows if row[0] in tables} for kind, rows in snapshot.items()}
    return snapshot


def index_state(conn: psycopg.Connection[Any], name: str) -> tuple[bool, bool, str] | None:
    """Return (indisvalid, indisunique, definition) of an index, or None when there is none."""
    return conn.execute(
        "SELECT indisvalid, indisunique, pg_get_indexdef(indexrelid) FROM pg_index WHERE indexrelid = to_regclass(%s)",
        (f'"{name}"',),
    ).fetchone()


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll condition until it returns something truthy; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Background:
    """Run a function in a thread, keeping its exception for the test to re-raise."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(function,), daemon=True)
        self.thread.start()

    def _run(self, function: Callable[[], Any]) -> None:
        try:
            function()
        except BaseException as error:  # handed to the test thread by join()
            self.error = error

    def join(self, timeout: float = 30.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout} s"
        if self.error:
            raise self.error


def seed_events(url: str) -> None:
    """One shop's test and EVENTS events (the ABTest row satisfies the events' foreign key)."""
    with psycopg.connect(url) as conn:
        conn.execute("""INSERT INTO "ABTest" (id, shop, name, "productId") VALUES ('test_1', 'shop_a', 't', '1')""")
        conn.execute(
            """
            INSERT INTO "ABTestEvent" (id, "testId", "sessionId", "eventType", "productId", "variantId", "createdAt")
            SELECT 'e' || g, 'test_1', 's' || (g %% 50), 'IMPRESSION', '1', 'gid://shopify/ProductVariant/' || (g %% 20),
                   timestamp '2026-11-01' + g * interval '1 minute'
            FROM generate_series(1, %s) AS g
            """,
            (EVENTS,),
        )


def repeatable_read(url: str) -> psycopg.Connection[Any]:
    """A connection whose transactions keep one snapshot from their first statement to their end."""
    conn = psycopg.connect(url)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    return conn


def insert_event(conn: psycopg.Connection[Any], event_id: str) -> None:
    conn.execute(
        """INSERT INTO "ABTestEvent" (id, "testId", "sessionId", "eventType", "productId", "variantId")
           VALUES (%s, 'test_1', 's', 'PURCHASE', '1', 'gid://shopify/ProductVariant/1')""",
        (event_id,),
    )


# a. On the app's schema: exactly the export's additions, valid; a second application changes nothing.


def test_migrations_add_exactly_the_exports_objects_and_a_rerun_changes_nothing(fixture_db):
    before = catalog(fixture_db)
    assert not {row for row in before["indexes"] if row[1] in ADDED_INDEX_DEFINITIONS}

    apply_migrations(fixture_db)
    after = catalog(fixture_db)

    assert before["columns"] <= after["columns"]
    assert after["columns"] - before["columns"] == {
        ("StatisticsExport", 13, "contentHash", "text", False, None),
        # The export's own table of which run writes a day (0006), new and empty.
        ("StatisticsExportDay", 1, "date", "date", True, None),
        ("StatisticsExportDay", 2, "runId", "text", True, None),
        ("StatisticsExportDay", 3, "claimedAt", "timestamp(3) without time zone", True, None),
        # The export's own table of every shop's size per day (0007), new and empty.
        ("StatisticsExportShopSizes", 1, "date", "date", True, None),
        ("StatisticsExportShopSizes", 2, "sizes", "jsonb", True, None),
        ("StatisticsExportShopSizes", 3, "runId", "text", True, None),
        ("StatisticsExportShopSizes", 4, "writtenAt", "timestamp(3) without time zone", True, None),
        # The export's own record of the shops it erased on Shopify's shop/redact (0008), new and empty.
        ("StatisticsExportRedaction", 1, "shopId", "text", True, None),
        ("StatisticsExportRedaction", 2, "requestedAt", "timestamp(3) without time zone", True, None),
        ("StatisticsExportRedaction", 3, "finishedAt", "timestamp(3) without time zone", False, None),
        ("StatisticsExportRedaction", 4, "runId", "text", True, None),
        ("StatisticsExportRedaction", 5, "counts", "jsonb", True, "'{}'::jsonb"),
        # The runner's ledger of the files it applied.
        ("StatisticsExportMigration", 1, "name", "text", True, None),
        ("StatisticsExportMigration", 2, "checksum", "text", True, None),
        (
            "StatisticsExportMigration",
            3,
            "appliedAt",
            "timestamp(3) without time zone",
            True,
            "(now() AT TIME ZONE 'UTC'::text)",
        ),
    }
    assert before["indexes"] <= after["indexes"]
    added = after["indexes"] - before["indexes"]
    day_key = 'CREATE UNIQUE INDEX "StatisticsExportDay_pkey" ON public."StatisticsExportDay" USING btree (date)'
    sizes_key = (
        'CREATE UNIQUE INDEX "StatisticsExportShopSizes_pkey" ON public."StatisticsExportShopSizes" USING btree (date)'
    )
    redaction_key = 'CREATE UNIQUE INDEX "StatisticsExportRedaction_pkey" ON public."StatisticsExportRedaction" USING btree ("shopId")'
    ledger_key = (
        'CREATE UNIQUE INDEX "StatisticsExportMigration_pkey" ON public."StatisticsExportMigration" USING btree (name)'
    )
    assert {(row[1], row[2], row[3], row[4], row[5]) for row in added} == {
        (name, definition, True, True, False) for name, definition in ADDED_INDEX_DEFINITIONS.items()
    } | {("StatisticsExportDay_pkey", day_key, True, True, True)} | {
        ("StatisticsExportShopSizes_pkey", sizes_key, True, True, True)
    } | {("StatisticsExportRedaction_pkey", redaction_key, True, True, True)} | {
        ("StatisticsExportMigration_pkey", ledger_key, True, True, True)
    }
    # Nothing of the app's dropped or changed; the constraints added are the new tables' primary keys.
    assert before["constraints"] <= after["constraints"]
    assert {row[0] for row in after["constraints"] - before["constraints"]} == {
        "StatisticsExportDay",
        "StatisticsExportShopSizes",
        "StatisticsExportRedaction",
        "StatisticsExportMigration",
    }
    assert views(fixture_db) == TREND_VIEWS

    # Again, while the app has a transaction open with a snapshot and a write on "ABTestEvent": every
    # statement sees its object exists and returns at once (statement_timeout would cancel a wait).
    seed_events(fixture_db)
    with (
        repeatable_read(fixture_db) as app,
        psycopg.connect(fixture_db, autocommit=True, options="-c statement_timeout=10s") as migrator,
    ):
        insert_event(app, "open_transaction")
        assert apply_migrations(migrator) == []  # every file is recorded with its text: nothing runs
        rerun = apply_migrations(migrator, replay=True)
        app.rollback()
    assert catalog(fixture_db) == after
    # CREATE OR REPLACE VIEW replaces silently (no notice): the view definitions are checked above.
    assert [r.summary for r in rerun if not r.notices and "VIEW" not in r.summary] == ["SET lock_timeout = '5s'"]
    assert views(fixture_db) == TREND_VIEWS
    assert all("already exists, skipping" in r.notices[0] for r in rerun if r.notices)


def test_migration_0001_creates_the_output_tables_exactly_as_the_fixture(empty_db, fixture_db):
    apply_migrations(empty_db, [migration("0001")])
    created = without_ledger(catalog(empty_db))
    fixture = catalog(fixture_db, OUTPUT_TABLES)
    assert {row[0] for row in created["columns"]} == OUTPUT_TABLES  # nothing else: no app table
    assert created["columns"] == fixture["columns"]
    assert created["indexes"] == fixture["indexes"]  # primary keys and the unique natural keys, valid
    assert created["constraints"] == fixture["constraints"]
    assert sum(1 for row in created["indexes"] if row[1].endswith("_key") and row[3] and row[5]) == 3


# b. Each file on its own, with psql -f (no transaction block needed) and with the runner.


def psql_binary() -> str | None:
    """psql from PATH, else the one shipped with the embedded server."""
    found = shutil.which("psql")
    if found:
        return found
    try:
        from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    candidate = POSTGRES_BIN_PATH / "psql"
    return str(candidate) if candidate.exists() else None


@pytest.mark.parametrize(
    ("prefix", "fixture", "check"),
    [
        (
            "0001",
            False,
            "SELECT count(*) = 3 FROM pg_index WHERE indisvalid AND indisunique AND NOT indisprimary"
            " AND indrelid IN ('\"StatisticsExport\"'::regclass, '\"VariantDailyStatistics\"'::regclass,"
            " '\"ProductImageBackup\"'::regclass)",
        ),
        (
            "0002",
            True,
            "SELECT count(*) = 1 FROM information_schema.columns"
            " WHERE table_name = 'StatisticsExport' AND column_name = 'contentHash' AND is_nullable = 'YES'"
            " AND column_default IS NULL",
        ),
        (
            "0003",
            True,
            f"SELECT count(*) = 2 FROM pg_index WHERE indisvalid"
            f" AND indexrelid IN ('\"{VARIANT_INDEX}\"'::regclass, '\"{TEST_INDEX}\"'::regclass)",
        ),
        (
            "0004",
            True,
            f"SELECT count(*) = 1 FROM pg_index WHERE indisvalid AND indexrelid = '\"{DAY_INDEX}\"'::regclass",
        ),
        (
            "0005",
            True,
            "SELECT count(*) = 5 FROM pg_views WHERE schemaname = 'public' AND viewname LIKE '%Statistics'",
        ),
    ],
)
def test_each_migration_runs_on_its_own(pg_server_url, prefix, fixture, check):
    path = migration(prefix)
    with fresh_database(pg_server_url, fixture=fixture) as url:
        psql = psql_binary()
        if psql:
            done = subprocess.run(
                [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
        else:
            apply_migrations(url, [path])
        with psycopg.connect(url) as conn:
            assert conn.execute(check).fetchone()[0] is True
        snapshot = without_ledger(catalog(url))
        apply_migrations(url, [path], replay=True)  # the runner, alone, on what psql made: idempotent
        assert without_ledger(catalog(url)) == snapshot


def without_ledger(snapshot: dict[str, set[tuple[Any, ...]]]) -> dict[str, set[tuple[Any, ...]]]:
    """A catalog snapshot without the runner's ledger table (which psql -f does not create)."""
    return {kind: {row for row in rows if row[0] != LEDGER} for kind, rows in snapshot.items()}


def test_the_runner_records_what_it_applied_and_applies_only_new_or_changed_files(fixture_db, tmp_path):
    applied = apply_migrations(fixture_db)
    assert {result.file for result in applied} == {path.name for path in migration_files()}
    with psycopg.connect(fixture_db) as conn:
        ledger = dict(conn.execute(f'SELECT name, checksum FROM "{LEDGER}"').fetchall())
    assert ledger == {path.name: checksum(path.read_text()) for path in migration_files()}
    assert apply_migrations(fixture_db) == []  # a second call replays nothing

    # A release adds a file: only it runs. Its text changes: it runs again, and the ledger follows.
    added = tmp_path / "0099_release_adds_this.sql"
    added.write_text("SET lock_timeout = '5s';\n")
    files = [*migration_files(), added]
    assert [r.file for r in apply_migrations(fixture_db, files)] == [added.name]
    assert apply_migrations(fixture_db, files) == []
    added.write_text("-- reworded\nSET lock_timeout = '6s';\n")
    assert [r.summary for r in apply_migrations(fixture_db, files)] == ["SET lock_timeout = '6s'"]
    # --replay: every file again, changing nothing.
    snapshot = catalog(fixture_db)
    assert {r.file for r in apply_migrations(fixture_db, files, replay=True)} == {p.name for p in files}
    assert catalog(fixture_db) == snapshot

    # A file failing half-way stays unrecorded, and runs whole next time.
    broken = tmp_path / "0100_fails.sql"
    broken.write_text("SET lock_timeout = '5s';\nSELECT 1 / 0;\n")
    with pytest.raises(psycopg.errors.DivisionByZero):
        apply_migrations(fixture_db, [broken])
    with psycopg.connect(fixture_db) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{LEDGER}" WHERE name = %s', (broken.name,)).fetchone()[0] == 0


# c. What the files may contain, and what the runner refuses.


def strip_comments(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


ALLOWED_STATEMENTS = [
    re.compile(
        r'^CREATE TABLE IF NOT EXISTS "(StatisticsExport|VariantDailyStatistics|ProductImageBackup|StatisticsExportDay|StatisticsExportShopSizes|StatisticsExportRedaction)" \('
    ),
    re.compile(r'^CREATE (UNIQUE )?INDEX CONCURRENTLY IF NOT EXISTS "\w+"\s+ON "\w+" \([^;]*\)$'),
    re.compile(r'^ALTER TABLE "StatisticsExport" ADD COLUMN IF NOT EXISTS "\w+" TEXT$'),
    re.compile(r"^SET lock_timeout = '\d+s'$"),
    re.compile(
        r'^CREATE OR REPLACE VIEW "(Variant|Shop)(Daily|Weekly|Monthly)Statistics" AS\s+SELECT\s.*\sFROM "VariantDailyStatistics"\s+GROUP BY ',
        re.S,
    ),
]


def test_migration_files_are_ordered_and_hold_only_safe_statements():
    files = migration_files()
    assert [path.name for path in files] == [
        "0001_export_tables.sql",
        "0002_statistics_export_content_hash.sql",
        "0003_abtestevent_indexes.sql",
        "0004_variant_daily_statistics_date_index.sql",
        "0005_trend_views.sql",
        "0006_statistics_export_day.sql",
        "0007_statistics_export_shop_sizes.sql",
        "0008_statistics_export_redaction.sql",
    ]
    for path in files:
        text = path.read_text()
        code = strip_comments(text)
        assert not re.search(r"\b(BEGIN|COMMIT|DROP)\b", text), path.name
        assert not re.search(r"\b(BEGIN|COMMIT|ROLLBACK|DROP|TRUNCATE|DELETE|UPDATE|RENAME)\b", code, re.I), path.name
        assert not re.search(r"\bCREATE\s+(UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY\b)", code, re.I), path.name
        for alter in re.findall(r"\bALTER\s+TABLE\b[^;]*", code, re.I):
            assert re.fullmatch(r'ALTER TABLE "StatisticsExport" ADD COLUMN IF NOT EXISTS "\w+" \w+', alter), alter
        statements = split_statements(text, path.name)
        assert statements, path.name
        for statement in statements:
            assert any(shape.search(statement) for shape in ALLOWED_STATEMENTS), statement


@pytest.mark.parametrize(
    "text",
    [
        'BEGIN;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS "x" ON "ABTestEvent" (id);\nCOMMIT;\n',
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "x" ON "ABTestEvent" (id);\ncommit;\n',
        "START TRANSACTION;\n",
        "DO $$ BEGIN PERFORM 1; END $$;\n",
        "DO LANGUAGE plpgsql 'BEGIN NULL; END';\n",
        "SET lock_timeout = '5s'; SELECT 1;\n",
        "SELECT 1;\nSELECT 2\n",
        "\\set ON_ERROR_STOP 1\nSELECT 1;\n",
    ],
)
def test_runner_refuses_files_breaking_the_rules_before_running_any_statement(tmp_path, text):
    path = tmp_path / "0009_bad.sql"
    path.write_text(text)
    # No server at this address: the file is refused before any connection is attempted.
    with pytest.raises(MigrationError):
        apply_migrations("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", [path])


# d. On a live database: a concurrent build lets the app insert; a plain CREATE INDEX would not.


@pytest.mark.parametrize(
    ("open_transaction", "expected_phase"),
    [
        ("snapshot", "waiting for old snapshots"),  # an unrelated read in REPEATABLE READ
        ("writer", "waiting for writers before build"),  # an uncommitted insert into "ABTestEvent"
    ],
)
def test_concurrent_index_build_does_not_block_the_apps_inserts(fixture_db, open_transaction, expected_phase):
    seed_events(fixture_db)
    # A is listed last so that, should an assertion fail, it ends first and releases the build.
    with (
        psycopg.connect(fixture_db, autocommit=True) as migrator,
        psycopg.connect(fixture_db, autocommit=True) as monitor,
        psycopg.connect(fixture_db) as c,
        repeatable_read(fixture_db) as a,
    ):
        if open_transaction == "snapshot":
            a.execute('SELECT 1 FROM "ShopCredential" LIMIT 1')
        else:
            insert_event(a, "a_uncommitted")
        pid = migrator.info.backend_pid
        build = Background(lambda: apply_migrations(migrator, [migration("0003")]))

        def build_waiting() -> Any:
            return monitor.execute(
                """
                SELECT p.phase, p.index_relid::regclass::text
                FROM pg_stat_progress_create_index p JOIN pg_stat_activity s USING (pid)
                WHERE p.pid = %s AND p.phase LIKE 'waiting%%' AND s.wait_event_type = 'Lock'
                """,
                (pid,),
            ).fetchone()

        phase, index = wait_until(build_waiting, "the concurrent build to wait for transaction A")
        assert (phase, index) == (expected_phase, f'"{VARIANT_INDEX}"')

        c.execute("SET lock_timeout = '3s'")
        started = time.monotonic()
        insert_event(c, "c_during_build")
        c.commit()
        assert time.monotonic() - started < 3

        # The build is still unfinished: the insert did not wait for it.
        assert build.thread.is_alive()
        assert build_waiting() == (expected_phase, f'"{VARIANT_INDEX}"')
        assert index_state(monitor, VARIANT_INDEX)[0] is False

        # A second runner meanwhile must not drop the index that build is working on (statement_timeout:
        # were it to start a build of its own, that would wait for A, which this thread holds open).
        with (
            psycopg.connect(fixture_db, autocommit=True, options="-c statement_timeout=5s") as second,
            pytest.raises(MigrationError, match="still being built"),
        ):
            apply_migrations(second, [migration("0003")])
        assert build.thread.is_alive()

        a.rollback()
        build.join()
        for name in (VARIANT_INDEX, TEST_INDEX):  # what 0003 builds
            assert index_state(monitor, name) == (True, False, ADDED_INDEX_DEFINITIONS[name])
        assert monitor.execute("""SELECT count(*) FROM "ABTestEvent" WHERE id = 'c_during_build'""").fetchone()[0] == 1


def test_control_a_plain_create_index_blocks_the_apps_inserts(fixture_db):
    """The check above can fail: a non-concurrent build waiting behind an open writer blocks inserts."""
    seed_events(fixture_db)
    with (
        psycopg.connect(fixture_db, autocommit=True) as builder,
        psycopg.connect(fixture_db, autocommit=True) as monitor,
        psycopg.connect(fixture_db) as c,
        psycopg.connect(fixture_db) as a,
    ):
        insert_event(a, "a_uncommitted")  # ROW EXCLUSIVE on "ABTestEvent", held until A ends
        pid = builder.info.backend_pid
        build = Background(
            lambda: builder.execute('CREATE INDEX "ABTestEvent_sessionId_idx" ON "ABTestEvent" ("sessionId")')
        )

        def build_waiting() -> Any:
            return monitor.execute(
                """
                SELECT mode FROM pg_locks
                WHERE pid = %s AND NOT granted AND relation = '"ABTestEvent"'::regclass
                """,
                (pid,),
            ).fetchone()

        assert wait_until(build_waiting, "the plain CREATE INDEX to wait for A") == ("ShareLock",)

        c.execute("SET lock_timeout = '3s'")
        with pytest.raises(errors.LockNotAvailable):
            insert_event(c, "c_during_build")
        c.rollback()

        assert build.thread.is_alive()
        a.rollback()
        build.join()
        assert index_state(monitor, "ABTestEvent_sessionId_idx")[0] is True


# e. An invalid index left by an interrupted concurrent build is dropped and built again.


def test_invalid_leftover_index_is_dropped_and_rebuilt(fixture_db, caplog):
    seed_events(fixture_db)
    with psycopg.connect(fixture_db, autocommit=True) as conn:
        insert_event(conn, "duplicate_1")
        insert_event(conn, "duplicate_2")
        conn.execute("""UPDATE "ABTestEvent" SET "createdAt" = timestamp '2026-12-01' WHERE id LIKE 'duplicate%'""")
        # A concurrent build that fails half-way leaves its index behind, INVALID, under the same name.
        with pytest.raises(errors.UniqueViolation):
            conn.execute(
                f'CREATE UNIQUE INDEX CONCURRENTLY "{VARIANT_INDEX}" ON "ABTestEvent" ("variantId", "createdAt")'
            )
        assert index_state(conn, VARIANT_INDEX)[:2] == (False, True)
        # IF NOT EXISTS alone (what psql -f does) keeps that leftover for ever.
        conn.execute(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{VARIANT_INDEX}" ON "ABTestEvent" ("variantId", "createdAt")'
        )
        assert index_state(conn, VARIANT_INDEX)[:2] == (False, True)

        with caplog.at_level(logging.WARNING, logger="include.statistics_export.migrate"):
            applied = apply_migrations(fixture_db)

        assert [r.dropped_invalid_index for r in applied if r.dropped_invalid_index] == [VARIANT_INDEX]
        assert any(VARIANT_INDEX in m and "INVALID" in m for m in caplog.messages)
        for name, definition in ADDED_INDEX_DEFINITIONS.items():
            assert index_state(conn, name) == (True, False, definition)


# The command line: prints files and statements, never the password.


def test_command_line_applies_everything_and_never_prints_the_password(fixture_db):
    secret = "s3cret-Pw-" + uuid.uuid4().hex[:6]
    url = with_user(fixture_db, "postgres", secret)  # trust authentication: the password is not checked
    done = subprocess.run(
        [sys.executable, "-m", "include.statistics_export.migrate", "--url", url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    dbname = urlsplit(fixture_db).path.lstrip("/")
    assert f'database "{dbname}"' in done.stdout
    for path in migration_files():
        assert path.name in done.stdout
    assert f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{TEST_INDEX}"' in done.stdout
    assert secret not in done.stdout + done.stderr
    with psycopg.connect(fixture_db) as conn:
        assert index_state(conn, TEST_INDEX)[0] is True

    missing = database_url(url, "no_such_database_" + uuid.uuid4().hex[:6])
    failed = subprocess.run(
        [sys.executable, "-m", "include.statistics_export.migrate", "--url", missing],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1
    assert "Migration failed" in failed.stderr
    assert secret not in failed.stdout + failed.stderr
