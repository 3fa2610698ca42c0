"""Fixtures: real PostgreSQL, a real S3 server over HTTP, the Shopify sandbox over HTTP, and Airflow's env."""

from __future__ import annotations

import lzma
import os
import subprocess
import sys
import uuid
from functools import partial
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = REPO / "tests" / "reference"

# Airflow reads its configuration at import: give the test process its own home before anything imports it.
_AIRFLOW_HOME = Path(os.environ.get("TEST_AIRFLOW_HOME", REPO / ".airflow-local" / "test-home"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
# The tests' days are in November 2026 (tests/airflow sets its own where a test is about the start date).
os.environ.setdefault("STATISTICS_EXPORT_START_DATE", "2026-11-01")

from helpers import add_event  # noqa: E402
from local_stack.services import (  # noqa: E402
    Endpoints,
    airflow_env,
    connection_env,
    create_bucket,
    dags_test_env,
    image_hosts_env,
    postgres_server,
    s3_client,
    s3_server,
    scratch_database,
)


@pytest.fixture(scope="session")
def pg_server_url():
    """A PostgreSQL server: TEST_DATABASE_URL when set, else an embedded one for the session."""
    with postgres_server(os.environ.get("TEST_DATABASE_URL")) as url:
        yield url


@pytest.fixture
def app_db_url(pg_server_url):
    """A fresh database with the app schema, dropped after the test."""
    with scratch_database(pg_server_url, prefix="test") as url:
        yield url


@pytest.fixture
def db(app_db_url):
    """A psycopg connection to the test's database."""
    with psycopg.connect(app_db_url) as conn:
        yield conn


@pytest.fixture
def events(db):
    """Two shops with one test each; returns add(shop, variant_id, type, at, revenue=None)."""
    with db.cursor() as cur:
        for shop in ("shop_a", "shop_b"):
            cur.execute('INSERT INTO "ShopCredential" (id, "shopDomain") VALUES (%s, %s)', (shop, f"{shop}.example"))
            cur.execute(
                'INSERT INTO "ABTest" (id, shop, name, "productId") VALUES (%s, %s, %s, %s)',
                (f"test_{shop}", shop, "t", "1"),
            )
    db.commit()
    return partial(add_event, db)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on loopback for the session."""
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3_endpoint):
    """A fresh bucket for the test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    create_bucket(s3_endpoint, name)
    return name


@pytest.fixture
def s3(s3_endpoint):
    """A boto3 client on the local S3 server, for assertions."""
    return s3_client(s3_endpoint)


@pytest.fixture
def sandbox():
    """A running Shopify sandbox with no shops yet."""
    from shopify_sandbox import ShopifySandbox

    with ShopifySandbox() as sb:
        yield sb


@pytest.fixture
def endpoints(app_db_url, s3_endpoint, bucket, sandbox):
    """Where this test's three connections point."""
    return Endpoints(
        app_db_url=app_db_url,
        s3_endpoint=s3_endpoint,
        bucket=bucket,
        shopify_endpoint_template=sandbox.endpoint_template,
    )


@pytest.fixture
def connections(endpoints, monkeypatch):
    """Set the app_db, r2_default and shopify_default connections for hooks used in this process, and the image
    origins the sandbox's CDN needs."""
    for name, value in {**connection_env(endpoints), **image_hosts_env(endpoints)}.items():
        monkeypatch.setenv(name, value)
    return endpoints


@pytest.fixture(scope="session")
def airflow_home():
    """An AIRFLOW_HOME whose metadata database is migrated once per session."""
    _AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AIRFLOW_HOME": str(_AIRFLOW_HOME)}
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return _AIRFLOW_HOME


@pytest.fixture
def run_airflow(airflow_home, endpoints):
    """Run an airflow CLI command with exactly the configuration contract's environment."""

    def run(*args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        env = airflow_env(airflow_home, endpoints)
        env.update(dags_test_env())
        env.update(extra_env or {})
        return subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    return run


@pytest.fixture
def start_airflow(airflow_home, endpoints):
    """Start an airflow CLI command as run_airflow would, in a process group of its own (to be killed whole);
    return the process, its output merged and piped."""

    def start(*args: str, extra_env: dict | None = None) -> subprocess.Popen:
        env = {**airflow_env(airflow_home, endpoints), **dags_test_env(), **(extra_env or {})}
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    return start


def reference_text(shared: Path, vendored: str) -> str:
    """Return a reference document's text: ``../shared``'s copy when it is beside the clone (where newer ones
    arrive), else the one vendored in tests/reference (xz), so that every clone runs the tests using it."""
    if shared.exists():
        return shared.read_text(encoding="utf-8")
    return lzma.decompress((REFERENCE / vendored).read_bytes()).decode("utf-8")


def real_schema_sdl(version: str = "2026-07") -> str:
    """Return Shopify's real Admin schema (SDL) of ``version``."""
    return reference_text(SHARED / "shopify" / f"admin-{version}.graphql", f"shopify-admin-{version}.graphql.xz")


def skip_reasons(reports) -> list[tuple[int, str]]:
    """Return (count, reason) of skipped tests, most first; paths of this repo and ../shared shortened."""
    counts: dict[str, int] = {}
    for report in reports:
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
        reason = reason.removeprefix("Skipped: ").replace(f"{REPO}/", "").replace(f"{REPO.parent}/", "../")
        counts[reason] = counts.get(reason, 0) + 1
    return sorted(((n, reason) for reason, n in counts.items()), key=lambda item: (-item[0], item[1]))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After pytest's own summary (-ra included), say what was skipped and why, grouped by reason: the last
    lines before the closing count, so a newcomer's `make test` tells what it did not run."""
    result = yield
    reasons = skip_reasons(terminalreporter.stats.get("skipped", []))
    terminalreporter.write_sep("-", "skipped, by reason")
    if not reasons:
        terminalreporter.write_line("0 skipped")
    for count, reason in reasons:
        terminalreporter.write_line(f"{count} skipped: {reason}")
    return result
