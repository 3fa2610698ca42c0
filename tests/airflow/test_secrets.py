"""A whole DAG run with recognizable secrets, then every place a secret could leak to is scanned."""

import sqlite3
import uuid
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlsplit

import pytest

from helpers import DAY, NOON_ON_DAY, add_event, bucket_objects, product, register_shop
from local_stack.services import connection_env, with_user

pytestmark = pytest.mark.airflow

MARK = uuid.uuid4().hex[:8]
SECRETS = {
    "alpha token": f"shpat_SECRETalpha{MARK}",
    "beta token": f"shpat_SECRETbeta{MARK}",
    "revoked token": f"shpat_SECRETrevoked{MARK}",
    "R2 access key id": f"R2KEYIDSECRET{MARK}",
    "R2 secret": f"r2SecretAccessKey{MARK}",
    "app_db password": f"pgPasswordSecret{MARK}",
    "app api secret": f"appApiSecret{MARK}",
    "gamma token": f"shpat_SECRETgamma{MARK}",
    "gamma refresh token": f"shprt_SECRETgamma{MARK}",
}


def leaks(text: str, secrets: dict[str, str] = SECRETS) -> list[str]:
    """Return the names of the secrets ``text`` contains."""
    return [name for name, value in secrets.items() if value in text]


def metadata_dump(airflow_home) -> dict[str, str]:
    """Every row of every table of Airflow's metadata database, as text per table."""
    with closing(sqlite3.connect(airflow_home / "airflow.db")) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: "\n".join(map(repr, conn.execute(f'SELECT * FROM "{table}"'))) for table in tables}


def test_no_secret_reaches_output_logs_metadata_or_files(db, sandbox, connections, run_airflow, s3, airflow_home):
    register_shop(
        db, sandbox, "shop_alpha", [product(n, variants=2, images=2) for n in (1, 2)], token=SECRETS["alpha token"]
    )
    register_shop(
        db, sandbox, "shop_beta", [product(5, variants=1)], token=SECRETS["beta token"], domain="www.beta.example"
    )
    revoked = register_shop(db, sandbox, "shop_revoked", [product(9)], token=SECRETS["revoked token"])
    sandbox.revoke_token(revoked.domain)  # the error paths run too
    # On expiring tokens: its stored token expired an hour ago (refreshed before use), and the refreshed one
    # stops being accepted mid-run (renewed on the 401): every token the sandbox issues is looked for below.
    gamma = register_shop(
        db, sandbox, "shop_gamma", [product(7, variants=2)], token=SECRETS["gamma token"],
        refresh_token=SECRETS["gamma refresh token"], expires=datetime.now(timezone.utc) - timedelta(hours=1),
    )  # fmt: skip
    gamma.client_secret = SECRETS["app api secret"]
    sandbox.expire_tokens_after(gamma.domain, requests=2)
    with db.cursor() as cur:
        cur.execute('UPDATE "ShopCredential" SET "apiSecret" = %s', (SECRETS["app api secret"],))
    db.commit()
    add_event(db, "shop_alpha", "1001", "PURCHASE", NOON_ON_DAY, Decimal("12.00"))

    # moto ignores credentials and the machine's PostgreSQL trusts loopback: any value works.
    user = urlsplit(connections.app_db_url).username or "postgres"
    secret_endpoints = replace(
        connections,
        app_db_url=with_user(connections.app_db_url, user, SECRETS["app_db password"]),
        s3_key_id=SECRETS["R2 access key id"],
        s3_secret=SECRETS["R2 secret"],
    )
    logs_before = {p for p in (airflow_home / "logs").rglob("*") if p.is_file()}
    result = run_airflow(
        "dags", "test", "product_statistics_export", DAY.isoformat(), extra_env=connection_env(secret_endpoints)
    )
    output = result.stdout + result.stderr

    # The run used the secrets: healthy shops exported, the revoked one failed and is named.
    objects = bucket_objects(s3, connections.bucket)
    assert len([k for k in objects if k.startswith("statistic-exports/shop_")]) == 2 * (4 + 1 + 2), output[-3000:]
    assert result.returncode != 0 and "shop_revoked" in output and "1 shop(s) failed" in output
    assert sandbox.stats("shop-alpha.myshopify.com")["requests"] > 0
    # Gamma's refresh token and client secret were sent, and two pairs issued (before use, and on the 401).
    issued = sandbox.issued_tokens(gamma.domain)
    assert sandbox.stats(gamma.domain)["refreshes"] == 2 and len(issued) == 4
    secrets = SECRETS | {f"issued token {n}": token for n, token in enumerate(issued)}

    # `airflow dags test` runs the tasks in process: their logs (and the run report) are in its output;
    # any log file it leaves under AIRFLOW_HOME/logs is scanned as well.
    assert "batch 1/1: 4/4 variants" in output and "Export of 2026-11-21" in output
    assert leaks(output, secrets) == []
    new_logs = [p for p in (airflow_home / "logs").rglob("*") if p.is_file() and p not in logs_before]
    for path in new_logs:
        assert leaks(path.read_text(errors="replace"), secrets) == [], path
    metadata = metadata_dump(airflow_home)
    assert "shop_alpha" in metadata["xcom"]
    assert "rendered_task_instance_fields" in metadata
    for table, rows in metadata.items():
        assert leaks(rows, secrets) == [], table
    for key, body in objects.items():
        assert leaks(key, secrets) == [] and leaks(body.decode("utf-8", errors="replace"), secrets) == [], key


def test_the_scan_finds_a_secret():
    assert leaks(f"Authorization: token {SECRETS['R2 secret']}") == ["R2 secret"]
    assert leaks("nothing to see") == []
