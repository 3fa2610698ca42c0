"""Apply the export's migrations to the Shopify app's database, safely on a live database.

The files in ``include/statistics_export/migrations/`` (``NNNN_name.sql``, applied in that order) hold
everything the export adds to the app's schema and nothing else. Each is idempotent and runnable on its
own with ``psql -f``; this runner does the same, plus one repair psql cannot do (below).

    PGPASSWORD=... python -m include.statistics_export.migrate --url postgresql://owner@host/dbname

(libpq reads the password from PGPASSWORD or ~/.pgpass, so it need not stand on the command line.)

Run it as the role that owns the app's tables (the app's migration role, or a DBA): adding a column and
building indexes need ownership. The export's own least-privilege role (docs/least_privilege.sql) has no
DDL rights and is not meant to run this.

How a file is run:

- in autocommit, one statement at a time, never inside a transaction block: ``CREATE INDEX
  CONCURRENTLY`` cannot run in one. With a URL, each file gets its own connection (its own session, as
  each ``psql -f`` does), so a ``SET lock_timeout`` in one file does not apply to the next one's index
  builds; on a connection passed in, the settings a file ``SET`` are ``RESET`` after it.
- statements are split by a deliberately simple rule, which the files must keep to: ``--`` starts a
  comment up to the end of the line (so ``--`` must not appear inside a string literal), and a statement
  ends with ``;`` as the last character of a line (comments stripped); a ``;`` anywhere else, text after
  the last ``;``, a psql backslash command, a dollar-quoted body (``$$``, hence functions and ``DO``
  blocks), ``DO``, and the transaction commands ``BEGIN``/``START``/``COMMIT``/``END``/``ROLLBACK``/
  ``ABORT`` make the runner refuse the file before running any of it.
- before ``CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS name``: if an index of that name exists but
  is INVALID (``pg_index.indisvalid`` false), the leftover of an interrupted or failed concurrent build,
  which IF NOT EXISTS would otherwise keep for ever (unused by queries, still maintained on every write),
  it is dropped with ``DROP INDEX CONCURRENTLY`` (logged) and then built again. An invalid index that a
  concurrent build is still working on (``pg_stat_progress_create_index``) is not touched: the runner
  fails instead.

What ran is recorded: the runner keeps a ledger, ``"StatisticsExportMigration"`` (a file's name, the SHA-256
of its text, when it was applied), which it creates itself if missing, as Prisma and Alembic keep theirs. A
file recorded with the same text is skipped; a file whose text changed since is applied again (the files are
idempotent), and ``--replay`` applies every file again, recorded or not (after restoring a database, say). A
file is recorded once all of its statements ran; one that failed half-way is not, and runs whole next time.
Files run by hand with ``psql -f`` are not recorded: the runner applies them once more, changing nothing.

The command prints the target's host and database (never the URL's password), then each file and a
one-line summary of each statement with the server's notices (e.g. "already exists, skipping").
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LEDGER = "StatisticsExportMigration"
_LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS "{LEDGER}" (
    name          TEXT PRIMARY KEY,
    checksum      TEXT NOT NULL,
    "appliedAt"   TIMESTAMP(3) NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
)"""
APPLICATION_NAME = "statistics_export_migrate"

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_CONCURRENT_INDEX = re.compile(
    r'^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)',
    re.IGNORECASE,
)
_TRANSACTION_WORD = re.compile(r"\b(BEGIN|COMMIT|ROLLBACK)\b", re.IGNORECASE)
_REFUSED_START = re.compile(r"^(DO|START|END|ABORT)\b", re.IGNORECASE)
_DOLLAR_QUOTE = re.compile(r"\$[A-Za-z_]*\$")
_SET = re.compile(r"^SET\s+(?:SESSION\s+)?(?!LOCAL\b)([A-Za-z_][A-Za-z0-9_.]*)", re.IGNORECASE)


class MigrationError(Exception):
    """A migration file breaks the rules above, or an index cannot be repaired safely."""


@dataclass(frozen=True)
class AppliedStatement:
    """One statement run: its file, a one-line summary, the server's notices, what was repaired."""

    file: str
    summary: str
    seconds: float
    notices: tuple[str, ...] = ()
    dropped_invalid_index: str | None = None


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """Return the migration files in the order they apply (by their four-digit prefix)."""
    files = sorted(directory.glob("*.sql"))
    numbers: dict[str, Path] = {}
    for path in files:
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        if match.group(1) in numbers:
            raise MigrationError(f"{path.name} and {numbers[match.group(1)].name} share the number {match.group(1)}")
        numbers[match.group(1)] = path
    return files


def split_statements(text: str, name: str = "<sql>") -> list[str]:
    """Split a migration file into statements by the module's rule, refusing what the rule forbids."""
    statements: list[str] = []
    current: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("--", 1)[0].rstrip()
        if not code.strip():
            continue
        if code.lstrip().startswith("\\"):
            raise MigrationError(f"{name}:{number}: psql backslash commands are not allowed")
        if ";" in code[:-1]:
            raise MigrationError(f"{name}:{number}: a ';' may only end a line (one statement per line end)")
        current.append(code)
        if code.endswith(";"):
            statement = "\n".join(current)[:-1].strip()
            current = []
            if not statement:
                raise MigrationError(f"{name}:{number}: empty statement")
            _check_statement(statement, f"{name}:{number}")
            statements.append(statement)
    if current:
        raise MigrationError(f"{name}: text after the last statement's ';': {current[0].strip()[:60]!r}")
    return statements


def _check_statement(statement: str, where: str) -> None:
    if _DOLLAR_QUOTE.search(statement):
        raise MigrationError(f"{where}: dollar-quoted bodies (functions, DO blocks) are not allowed")
    if _REFUSED_START.match(statement) or _TRANSACTION_WORD.search(statement):
        raise MigrationError(
            f"{where}: transaction control and DO blocks are not allowed (each statement runs on its own): "
            f"{summarize(statement)}"
        )


def summarize(statement: str) -> str:
    """Return a statement's first line, whitespace collapsed, without an opening parenthesis."""
    first = " ".join(statement.splitlines()[0].split()).rstrip(" (")
    return first if len(first) <= 110 else first[:107] + "..."


def checksum(text: str) -> str:
    """Return the SHA-256 of a migration file's text, as the ledger records it."""
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_migrations(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Return the ledger: each applied file's name and checksum (creating the ledger if missing)."""
    conn.execute(_LEDGER_DDL)
    return dict(conn.execute(sql.SQL("SELECT name, checksum FROM {}").format(sql.Identifier(LEDGER))).fetchall())


def apply_migrations(
    target: str | psycopg.Connection[Any],
    files: Sequence[Path] | None = None,
    *,
    on_statement: Callable[[AppliedStatement], None] | None = None,
    replay: bool = False,
) -> list[AppliedStatement]:
    """Apply the migration files (default: all, in order) not yet recorded with their text to a database;
    return what ran. ``replay`` applies every file, recorded or not.

    ``target`` is a libpq URL (one new autocommit connection per file) or an open connection in
    autocommit mode. Every file is checked before the first statement runs. ``on_statement`` is called
    after each statement, e.g. to print progress. A failing statement raises the server's error, with a
    note naming the file and the statement; the statements before it stay applied and the file unrecorded
    (rerun once fixed: the files are idempotent).
    """
    paths = list(migration_files() if files is None else files)
    texts = [(path.name, path.read_text()) for path in paths]
    scripts = [(name, checksum(text), split_statements(text, name)) for name, text in texts]
    if not isinstance(target, str) and not target.autocommit:
        raise MigrationError("apply_migrations needs a connection in autocommit mode (CONCURRENTLY)")
    with _connection(target) as conn:
        recorded = recorded_migrations(conn)
    applied: list[AppliedStatement] = []
    for name, digest, statements in scripts:
        if not replay and recorded.get(name) == digest:
            log.info("%s: applied before, unchanged: skipped", name)
            continue
        with _connection(target) as conn:
            try:
                _run_file(conn, name, statements, applied, on_statement)
            finally:
                if not isinstance(target, str):  # a connection passed in: leave it as it came
                    for setting in _settings_made(statements):
                        conn.execute(sql.SQL("RESET {}").format(sql.SQL(setting)))
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (name, checksum) VALUES (%s, %s) "
                    'ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, "appliedAt" = DEFAULT'
                ).format(sql.Identifier(LEDGER)),
                (name, digest),
            )
    return applied


@contextmanager
def _connection(target: str | psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A new autocommit connection for a URL (its own session, as each ``psql -f``), else the one given."""
    if isinstance(target, str):
        with psycopg.connect(target, autocommit=True, application_name=APPLICATION_NAME) as conn:
            yield conn
    else:
        yield target


def _settings_made(statements: Sequence[str]) -> list[str]:
    settings = []
    for statement in statements:
        match = _SET.match(statement)
        if match:
            word = match.group(1).lower()
            settings.append("SESSION AUTHORIZATION" if word == "authorization" else sql_identifier(word))
    return settings


def sql_identifier(setting: str) -> str:
    """Return a setting name safe to splice into RESET (letters, digits, '_' and '.' only)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_.]*", setting):
        raise MigrationError(f"unexpected setting name {setting!r}")
    return setting


def _run_file(
    conn: psycopg.Connection[Any],
    name: str,
    statements: Sequence[str],
    applied: list[AppliedStatement],
    on_statement: Callable[[AppliedStatement], None] | None,
) -> None:
    for statement in statements:
        notices: list[str] = []

        def collect(diagnostic: Any) -> None:
            notices.append(str(diagnostic.message_primary))

        conn.add_notice_handler(collect)
        started = time.monotonic()
        try:
            dropped = _drop_invalid_index(conn, statement, name)
            conn.execute(statement)
        except psycopg.Error as error:
            error.add_note(f"while applying {name}: {summarize(statement)}")
            raise
        finally:
            conn.remove_notice_handler(collect)
        result = AppliedStatement(name, summarize(statement), time.monotonic() - started, tuple(notices), dropped)
        applied.append(result)
        if on_statement:
            on_statement(result)


def index_name(statement: str) -> str | None:
    """Return the index a ``CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS`` names, else None."""
    match = _CONCURRENT_INDEX.match(statement)
    if not match:
        return None
    raw = match.group(1)
    return raw[1:-1].replace('""', '"') if raw.startswith('"') else raw.lower()


def _drop_invalid_index(conn: psycopg.Connection[Any], statement: str, file: str) -> str | None:
    name = index_name(statement)
    if name is None:
        return None
    row = conn.execute(
        """
        SELECT i.indisvalid,
               (SELECT min(p.pid) FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)
        FROM pg_index i
        WHERE i.indexrelid = to_regclass(%s)
        """,
        (sql.Identifier(name).as_string(conn),),
    ).fetchone()
    if row is None or row[0]:
        return None
    if row[1] is not None:
        raise MigrationError(
            f"{file}: index {name!r} is invalid and still being built by backend {row[1]}: "
            "wait for that build to end, then rerun"
        )
    log.warning(
        "%s: index %r exists but is INVALID (an interrupted concurrent build): DROP INDEX CONCURRENTLY, then build it again",
        file,
        name,
    )
    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
    return name


def describe_target(url: str) -> str:
    """Return 'database "db" on host h port p' for a URL, without its user or password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        raise MigrationError("the database URL cannot be parsed (not shown: it may hold a password)") from None
    host = params.get("host") or "libpq's default host"
    port = params.get("port") or "libpq's default port"
    dbname = params.get("dbname") or "libpq's default database"
    return f'database "{dbname}" on host {host} port {port}'


def _redact(message: str, url: str) -> str:
    """Hide the URL's password in a message, should a driver error ever quote it."""
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        return message
    return message.replace(str(password), "***") if password else message


def _print_statement(seen: set[str]) -> Callable[[AppliedStatement], None]:
    def report(result: AppliedStatement) -> None:
        if result.file not in seen:
            seen.add(result.file)
            print(result.file, flush=True)
        if result.dropped_invalid_index:
            print(f"  dropped the invalid index {result.dropped_invalid_index!r} left by an interrupted build")
        notes = f"  [{'; '.join(result.notices)}]" if result.notices else ""
        print(f"  {result.summary} ({result.seconds:.2f} s){notes}", flush=True)

    return report


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: apply every migration to the database of --url."""
    parser = argparse.ArgumentParser(
        prog="python -m include.statistics_export.migrate",
        description="Apply the export's migrations to the app's database (as the tables' owner or a DBA).",
    )
    parser.add_argument(
        "--url",
        required=True,
        help="libpq URL of the app's database (libpq's PG* variables fill what it leaves out); "
        "its password is never printed",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help=f'apply every file again, even those the ledger "{LEDGER}" records as applied unchanged',
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        files = migration_files()
        print(f"Applying {len(files)} migrations to {describe_target(args.url)}", flush=True)
        applied = apply_migrations(args.url, files, on_statement=_print_statement(set()), replay=args.replay)
    except (MigrationError, psycopg.Error) as error:
        notes = "".join(f"\n  {note}" for note in getattr(error, "__notes__", ()))
        message = _redact(f"Migration failed: {type(error).__name__}: {error}{notes}", args.url)
        print(message, file=sys.stderr)
        return 1
    ran = len({result.file for result in applied})
    print(f"Done: {len(applied)} statements in {ran} files; {len(files) - ran} already applied, unchanged: skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
