"""Expiring offline tokens through `airflow dags test` against the sandbox over HTTP (Shopify's 2027 rule).

One run holds every case: a stored token that expired an hour ago, a token that stops being accepted mid-run, a
refresh token revoked, and a non-expiring token. A second run has the app refreshing the same session beside the
export, as shopify-app-js does (refresh, then an upsert by id, no lock).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import requests

from helpers import DAY, NOON_ON_DAY, add_event, api_domain, bucket_objects, product, register_shop, session_row
from local_stack.demo_world import client_of

pytestmark = pytest.mark.airflow


def an_hour_ago() -> datetime:
    """Computed when a test runs: the module is collected long before its last test runs."""
    return datetime.now(timezone.utc) - timedelta(hours=1)


REFRESHED, MIDRUN, REVOKED, FOREVER = "shop_refreshed", "shop_midrun", "shop_revoked", "shop_forever"


def exported_variants(objects: dict, shop_id: str) -> int:
    return len([key for key in objects if key.startswith(f"statistic-exports/{shop_id}/") and key.endswith(".csv")])


def test_one_run_refreshes_expired_and_expiring_tokens_fails_a_revoked_refresh_alone_and_leaves_non_expiring_rows(
    db, sandbox, connections, run_airflow, s3
):
    register_shop(db, sandbox, REFRESHED, [product(n, variants=2) for n in (1, 2)], expires=an_hour_ago())
    register_shop(
        db,
        sandbox,
        MIDRUN,
        [product(n, variants=2) for n in (3, 4, 5)],
        expires=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    register_shop(db, sandbox, REVOKED, [product(6)], expires=an_hour_ago())
    register_shop(db, sandbox, FOREVER, [product(7)])
    sandbox.revoke_refresh_tokens(api_domain(REVOKED))
    # Its hour ends at its fourth request: after planning, during its batches (STATISTICS_EXPORT_BATCH_VARIANTS 2).
    sandbox.expire_tokens_after(api_domain(MIDRUN), requests=4)
    add_event(db, REFRESHED, "1001", "PURCHASE", NOON_ON_DAY, "12.50")
    forever_before = session_row(db, FOREVER)
    revoked_before = session_row(db, REVOKED)

    result = run_airflow(
        "dags",
        "test",
        "product_statistics_export",
        DAY.isoformat(),
        extra_env={"STATISTICS_EXPORT_BATCH_VARIANTS": "2"},
    )
    output = result.stdout + result.stderr
    objects = bucket_objects(s3, connections.bucket)
    report = json.loads(objects["statistic-exports/_runs/20261121.json"])

    # Refreshed before use, and exported.
    assert exported_variants(objects, REFRESHED) == 4, output[-3000:]
    assert sandbox.stats(api_domain(REFRESHED))["refreshes"] == 1
    # Refreshed when its token stopped being accepted mid-run, and finished.
    assert exported_variants(objects, MIDRUN) == 6
    assert sandbox.stats(api_domain(MIDRUN))["refreshes"] == 1
    assert report["reconciliation"][MIDRUN]["ok"] is True
    # The refused refresh fails that shop alone, saying what to do; its row is untouched.
    assert result.returncode != 0 and set(report["failedShops"]) == {REVOKED}
    assert "merchant must open the app to authenticate again" in report["failedShops"][REVOKED]
    assert session_row(db, REVOKED) == revoked_before
    # A non-expiring token is used as before: its row is byte for byte what it was, and nothing was refreshed.
    assert exported_variants(objects, FOREVER) == 1
    assert session_row(db, FOREVER) == forever_before
    assert sandbox.stats(api_domain(FOREVER))["token_requests"] == 0
    # Every stored pair is one Shopify still accepts.
    for shop_id in (REFRESHED, MIDRUN, FOREVER):
        row = session_row(db, shop_id)
        assert sandbox.accepts(api_domain(shop_id), row["accessToken"], row["refreshToken"]), shop_id
    # The report counts the kinds of token; a non-expiring PUBLIC shop is named before the deadline.
    assert report["tokens"] | {"summary": ""} == {
        "expiring": 3, "nonExpiring": 1, "nonExpiringPublic": [FOREVER], "deadline": "2027-01-01", "summary": ""
    }  # fmt: skip


class AppRefresher(threading.Thread):
    """What shopify-app-js does with an offline session near its expiry: refresh, then upsert the row by id, no lock."""

    def __init__(self, db_url: str, token_endpoint: str, shop_id: str):
        super().__init__(daemon=True)
        self.db_url, self.token_endpoint, self.shop_id = db_url, token_endpoint, shop_id
        self.stop = threading.Event()
        self.requests = 0
        self.refreshed = 0
        self.refused = 0
        self.errors: list[str] = []

    def run(self) -> None:
        client_id, client_secret = client_of(self.shop_id)
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self.stop.is_set():
                try:
                    self._once(conn, client_id, client_secret)
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(repr(exc))
                self.stop.wait(0.05)

    def _once(self, conn, client_id: str, client_secret: str) -> None:
        row = conn.execute(
            'SELECT id, shop, "refreshToken", expires FROM "Session" WHERE "shopId" = %s', (self.shop_id,)
        ).fetchone()
        session_id, shop, refresh_token, expires = row
        if expires > datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(minutes=5):
            return
        self.requests += 1
        answer = requests.post(
            self.token_endpoint.format(shop=shop),
            json={"client_id": client_id, "client_secret": client_secret, "grant_type": "refresh_token",
                  "refresh_token": refresh_token},
            timeout=10,
        )  # fmt: skip
        if answer.status_code != 200:
            self.refused += 1  # the export rotated it meanwhile: the app re-reads next time
            return
        pair = answer.json()
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        conn.execute(
            'INSERT INTO "Session" (id, shop, "isOnline", "accessToken", expires, "refreshToken", "refreshTokenExpires") '
            "VALUES (%s, %s, false, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
            '"accessToken" = EXCLUDED."accessToken", expires = EXCLUDED.expires, "refreshToken" = EXCLUDED."refreshToken", '
            '"refreshTokenExpires" = EXCLUDED."refreshTokenExpires"',
            (session_id, shop, pair["access_token"], now + timedelta(seconds=pair["expires_in"]), pair["refresh_token"],
             now + timedelta(seconds=pair["refresh_token_expires_in"])),
        )  # fmt: skip
        self.refreshed += 1


def test_the_app_refreshing_the_same_session_beside_the_export_never_leaves_a_refresh_token_shopify_refuses(
    db, sandbox, connections, run_airflow, s3
):
    # Tokens of a few seconds: both the app and the export find the session stale again and again.
    sandbox.token_lifetime_seconds = 3
    register_shop(db, sandbox, REFRESHED, [product(n, variants=2) for n in range(1, 7)], expires=an_hour_ago())
    app = AppRefresher(connections.app_db_url, sandbox.token_endpoint_template, REFRESHED)
    app.start()
    try:
        result = run_airflow(
            "dags", "test", "product_statistics_export", DAY.isoformat(),
            extra_env={"STATISTICS_EXPORT_BATCH_VARIANTS": "2"},
        )  # fmt: skip
    finally:
        app.stop.set()
        app.join(timeout=30)
    output = result.stdout + result.stderr

    assert result.returncode == 0, output[-3000:]
    assert exported_variants(bucket_objects(s3, connections.bucket), REFRESHED) == 12
    assert app.errors == [] and app.refreshed > 0
    assert sandbox.stats(api_domain(REFRESHED))["token_requests"] > app.requests  # the export refreshed it too
    row = session_row(db, REFRESHED)
    assert sandbox.accepts(api_domain(REFRESHED), row["accessToken"], row["refreshToken"])
